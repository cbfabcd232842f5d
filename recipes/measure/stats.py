"""How sure an accuracy claim is: intervals, paired comparisons and threshold-free oos metrics.

Every number that compares two models on one test set carries its uncertainty here:

* :func:`proportion_interval`: one accuracy's own 95% interval (Wilson score, scipy);
* :func:`compare`: a model against its baseline on the SAME rows: the difference in accuracy,
  in-scope accuracy and oos recall, each with a 95% paired bootstrap interval (test rows
  resampled with a fixed seed, both models' rows together) and McNemar's exact p-value (a
  two-sided binomial test on the rows exactly one of the two gets right). A paired interval
  depends on the rows where the models disagree, so it is far tighter than two separate ones;
* :func:`verdict`: what a difference's interval lets one say. "No loss" is non-inferiority:
  the interval's lower bound above ``-NON_INFERIORITY_MARGIN`` (0.5 points); "better" only
  when the whole interval is above 0;
* :func:`oos_detection`: AUROC and AUPR of an out-of-scope score (the oos logit minus the best
  in-scope logit), which a bias on the oos logit does not move: a model's oos ability, apart
  from its calibration's luck.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
#: Bootstrap resamples of the test rows; with 5,500 rows the interval's ends move by well under
#: 0.1 points between seeds at this count.
RESAMPLES = 2000
BOOTSTRAP_SEED = 0
#: "No loss" means the difference's lower bound is above minus this (a fraction: 0.5 points).
NON_INFERIORITY_MARGIN = 0.005

#: :func:`verdict`'s answers, strongest first.
BETTER, NO_LOSS, WORSE, UNDECIDED = "better", "no loss", "worse", "loss not ruled out"

#: The metrics :func:`compare` compares, as ``classification_metrics`` names them.
COMPARED = ("accuracy", "in_scope_accuracy", "oos_recall")


def proportion_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of ``successes / n`` (scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def mcnemar_exact(correct: np.ndarray, baseline_correct: np.ndarray) -> float:
    """McNemar's exact two-sided p-value: of the rows exactly one model gets right, is the split
    further from half and half than chance allows? 1.0 when the models never disagree."""
    from scipy.stats import binomtest

    won, lost = _won_lost(correct, baseline_correct)
    if won + lost == 0:
        return 1.0
    return float(binomtest(won, won + lost, 0.5).pvalue)


def paired_bootstrap(
    correct: np.ndarray,
    baseline_correct: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """The percentile interval of ``mean(correct) - mean(baseline_correct)`` over bootstrap
    resamples of the rows, each resample taking both models' answers of a row together."""
    from scipy.stats import bootstrap

    diff = np.asarray(correct, dtype=float) - np.asarray(baseline_correct, dtype=float)
    if diff.size == 0:
        return (float("nan"), float("nan"))
    if not diff.any():  # the models agree on every row: every resample's difference is 0
        return (0.0, 0.0)
    result = bootstrap(
        (diff,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        batch=250,
        random_state=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def verdict(low: float, high: float, margin: float = NON_INFERIORITY_MARGIN) -> str:
    """What an interval of a difference (model minus baseline) lets one claim."""
    if low > 0:
        return BETTER
    if low > -margin:
        return NO_LOSS
    if high < 0:
        return WORSE
    return UNDECIDED


@dataclass(frozen=True)
class Difference:
    """One metric of a model against its baseline, on the same rows."""

    difference: float  # model minus baseline, as a fraction
    low: float
    high: float
    won: int  # rows the model gets right and the baseline wrong
    lost: int  # rows the baseline gets right and the model wrong
    p_value: float  # McNemar exact
    rows: int

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high)

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def difference(
    correct: np.ndarray, baseline_correct: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> Difference:
    correct, baseline_correct = np.asarray(correct, dtype=bool), np.asarray(baseline_correct, dtype=bool)
    won, lost = _won_lost(correct, baseline_correct)
    low, high = paired_bootstrap(correct, baseline_correct, resamples, seed)
    value = float(correct.mean() - baseline_correct.mean()) if correct.size else float("nan")
    return Difference(value, low, high, won, lost, mcnemar_exact(correct, baseline_correct), int(correct.size))


def metric_rows(labels: np.ndarray, oos_id: int | None) -> dict[str, np.ndarray]:
    """Which rows each compared metric is the accuracy of: all, the in-scope ones, the oos ones."""
    labels = np.asarray(labels)
    rows = {"accuracy": np.ones(labels.shape, dtype=bool)}
    if oos_id is not None:
        rows["in_scope_accuracy"] = labels != oos_id
        rows["oos_recall"] = labels == oos_id
    return rows


def compare(
    preds: np.ndarray,
    baseline_preds: np.ndarray,
    labels: np.ndarray,
    oos_id: int | None = None,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, dict]:
    """``{metric: Difference.to_dict()}`` for accuracy and, with an oos label, in-scope accuracy and
    oos recall: each metric is the accuracy on its own rows, resampled among those rows."""
    labels = np.asarray(labels)
    correct, base = np.asarray(preds) == labels, np.asarray(baseline_preds) == labels
    return {
        metric: difference(correct[rows], base[rows], resamples, seed).to_dict()
        for metric, rows in metric_rows(labels, oos_id).items()
    }


def intervals(preds: np.ndarray, labels: np.ndarray, oos_id: int | None = None) -> dict[str, list[float]]:
    """Each metric's own 95% interval (Wilson): ``{metric: [low, high]}``."""
    labels = np.asarray(labels)
    correct = np.asarray(preds) == labels
    return {
        metric: list(proportion_interval(int(correct[rows].sum()), int(rows.sum())))
        for metric, rows in metric_rows(labels, oos_id).items()
    }


def oos_scores(logits: np.ndarray, oos_id: int) -> np.ndarray:
    """How out of scope each row looks: the oos logit minus the best in-scope logit."""
    logits = np.asarray(logits, dtype=float)
    in_scope = np.delete(logits, oos_id, axis=1)
    return logits[:, oos_id] - in_scope.max(axis=1)


def oos_detection(logits: np.ndarray, labels: np.ndarray, oos_id: int) -> dict[str, float]:
    """Threshold-free out-of-scope detection: ``oos_auroc`` and ``oos_aupr`` (average precision,
    oos the positive class) of :func:`oos_scores` (scikit-learn). Empty without both classes."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    positive = np.asarray(labels) == oos_id
    if positive.all() or not positive.any():
        return {}
    score = oos_scores(logits, oos_id)
    return {
        "oos_auroc": float(roc_auc_score(positive, score)),
        "oos_aupr": float(average_precision_score(positive, score)),
    }


def _won_lost(correct: np.ndarray, baseline_correct: np.ndarray) -> tuple[int, int]:
    correct, baseline_correct = np.asarray(correct, dtype=bool), np.asarray(baseline_correct, dtype=bool)
    return int((correct & ~baseline_correct).sum()), int((~correct & baseline_correct).sum())
