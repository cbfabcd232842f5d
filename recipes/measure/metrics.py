"""Classification metrics from predictions, with CLINC150's out-of-scope view (Larson et al. 2019).

For a dataset with an out-of-scope label (``dataset.oos_label``), a model is judged by its
in-scope accuracy (rows whose true label is an intent) and its out-of-scope recall (rows whose
true label is out of scope, predicted so) and precision, besides plain accuracy. numpy only.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal, get_args

import numpy as np

#: Metrics a search or calibration stage may select on.
Objective = Literal["accuracy", "in_scope_accuracy", "oos_recall", "oos_precision", "balanced"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)


def classification_metrics(preds, labels, oos_id: int | None = None) -> dict[str, float]:
    """``accuracy``; with ``oos_id`` also in-scope accuracy, oos recall and precision, and
    ``balanced`` (the mean of in-scope accuracy and oos recall)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    out = {"accuracy": float((preds == labels).mean()) if len(labels) else 0.0}
    if oos_id is None:
        return out
    in_scope, oos = labels != oos_id, labels == oos_id
    said_oos = preds == oos_id
    out["in_scope_accuracy"] = float((preds[in_scope] == labels[in_scope]).mean()) if in_scope.any() else 0.0
    out["oos_recall"] = float(said_oos[oos].mean()) if oos.any() else 0.0
    out["oos_precision"] = float(oos[said_oos].mean()) if said_oos.any() else 0.0
    out["balanced"] = (out["in_scope_accuracy"] + out["oos_recall"]) / 2
    return out


def top_confusions(preds, labels, names: list[str], baseline_preds=None, n: int = 10) -> dict:
    """What a model gets wrong: its most frequent (true -> predicted) pairs and, against a
    baseline's predictions on the same rows, the true labels of the rows it loses and wins."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    wrong = Counter((names[t], names[p]) for t, p in zip(labels, preds) if t != p)
    out = {"confusions": [{"true": t, "predicted": p, "count": c} for (t, p), c in wrong.most_common(n)]}
    if baseline_preds is not None:
        base = np.asarray(baseline_preds)
        lost = Counter(names[t] for t, p, b in zip(labels, preds, base) if b == t and p != t)
        won = Counter(names[t] for t, p, b in zip(labels, preds, base) if b != t and p == t)
        out["vs_baseline"] = {
            "rows_lost": sum(lost.values()),
            "rows_won": sum(won.values()),
            "lost_by_label": dict(lost.most_common(n)),
            "won_by_label": dict(won.most_common(n)),
        }
    return out
