"""Benchmark rows: models measured side by side in one process, each compared with a reference.

The benchmark stage, ``make bench`` and :func:`recipes.measure` (which ``hubtools verify`` uses)
all build their rows here, on the one timing engine of :mod:`recipes.measure.latency`:

* :func:`measure_rows`: per model, accuracy (and, with an out-of-scope label, in-scope accuracy,
  oos recall and precision) with each metric's own 95% interval, the threshold-free oos AUROC and
  AUPR, latency, runtime settings; the label ids it predicted, for the comparisons;
* :func:`add_sizes`: the weight files and their raw and gzip size;
* :func:`compare_with`: each row against a reference row (``vs_baseline`` in a recipe's
  benchmark, ``vs_teacher`` in the bench): speed-up, size ratio, accuracy change, and the paired
  statistics of :func:`recipes.measure.stats.compare` (difference, 95% paired bootstrap interval,
  McNemar's exact p, verdict) for accuracy, in-scope accuracy and oos recall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import stats
from .latency import DEFAULT_QUERY, interleaved_rounds
from .metrics import classification_metrics, top_confusions


@dataclass(frozen=True)
class Timing:
    """How the rows are timed (see :func:`recipes.measure.latency.interleaved_rounds`)."""

    query: str = DEFAULT_QUERY
    warmup: int = 10
    runs: int = 100
    rounds: int = 1
    batch_size: int = 64
    sample: tuple[str, ...] = ()  # real queries timed one by one in every round


def load_models(folders: dict[str, Path], threads: int) -> dict:
    """Every model folder loaded for serving on ``threads`` threads (name -> ``Classifier``)."""
    from ..ml.modelio import load_classifier

    return {name: load_classifier(Path(path), threads) for name, path in folders.items()}


def measure_rows(
    models: dict,
    texts: Sequence[str],
    labels: Sequence[int],
    oos_id: int | None,
    timing: Timing,
    on_turn: Callable[[int, str], None] | None = None,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """One row per model (in order) and the label ids each predicted for ``texts``; without
    ``texts``, rows of latency alone."""
    labels = np.asarray(labels)
    measured = interleaved_rounds(
        models,
        timing.query,
        timing.rounds,
        timing.runs,
        timing.warmup,
        timing.sample,
        texts,
        timing.batch_size,
        on_turn,
    )
    rows, predictions = [], {}
    for name, clf in models.items():
        m = measured[name]
        row = {"name": name, "format": clf.format}
        if len(texts):
            preds = predictions[name] = m["logits"].argmax(axis=-1)
            row.update(classification_metrics(preds, labels, oos_id))
            row.update(stats.oos_detection(m["logits"], labels, oos_id) if oos_id is not None else {})
            row.update(intervals=stats.intervals(preds, labels, oos_id), n_test=int(len(labels)))
        row.update(latency_ms=m["latency_ms"], runtime=clf.runtime, device=clf.device)
        if timing.sample:
            row["sample_latency_ms"] = m["sample_latency_ms"]
        if timing.rounds > 1 and len(texts):
            row["throughput_qps"] = m["throughput_qps"]
        rows.append(row)
    return rows, predictions


def add_sizes(rows: list[dict], folders: dict[str, Path]) -> None:
    """Each row's weight files and their raw and gzip size (``size_mb``, ``size_gzip_mb``)."""
    from ..runfolder import read_format
    from .size import weights_size_mb

    for row in rows:
        folder = folders[row["name"]]
        row["files"] = read_format(folder).weights
        row.update(weights_size_mb(folder))


def compare_with(
    rows: list[dict],
    reference: str,
    predictions: dict[str, np.ndarray],
    labels: Sequence[int],
    oos_id: int | None,
    key: str = "vs_baseline",
) -> None:
    """Each row against the ``reference`` row, under ``key``: ``speedup`` (of the mean latency),
    ``size_ratio``, ``accuracy_delta`` and ``paired`` (:func:`recipes.measure.stats.compare`)."""
    base = next(r for r in rows if r["name"] == reference)
    for row in rows:
        row[key] = {
            "speedup": base["latency_ms"]["mean"] / row["latency_ms"]["mean"],
            "size_ratio": row["size_mb"] / base["size_mb"],
            "accuracy_delta": row["accuracy"] - base["accuracy"],
            "paired": stats.compare(predictions[row["name"]], predictions[reference], labels, oos_id),
        }


def add_errors(rows: list[dict], predictions: dict, labels, names: list[str], baseline: str) -> None:
    """Each row's top confusions and, against the baseline, the labels of the rows it loses and
    wins: what explains an accuracy gap."""
    for row in rows:
        base = predictions[baseline] if row["name"] != baseline else None
        row["errors"] = top_confusions(predictions[row["name"]], labels, names, base)
