"""The one timing engine: the benchmark stage, ``make bench`` and ``hubtools verify`` all time here.

Subjects are loaded classifiers (:class:`recipes.ml.modelio.Classifier`); each is timed as a user
calls it: ``serve(query)``, batch 1 (its ``pipeline()``, or the peer's encode + predict).

:func:`interleaved_rounds` measures every subject in ``rounds`` rounds; round ``r`` visits every
subject once, starting ``r`` places further along (A B C, B C A, C A B, ...), so a burst of load
on a shared machine lands on every row rather than on one. In each round each subject gets
``warmup`` untimed calls, then ``runs`` timed calls of the seed query, then the ``sample`` of real
queries (each timed), then its 1/``rounds`` share of the test texts at ``batch_size`` (logits,
and throughput). Each statistic is the median over rounds of its per-round value; ``spread_pct``
is (max - min) / median of the per-round means.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: The query every latency row times unless told otherwise.
DEFAULT_QUERY = "What is the pin number for my account?"
STATISTICS = ("mean", "std", "p50", "p90", "p99")


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation and percentiles of ``seconds``, in milliseconds."""
    ms = np.asarray(seconds, dtype=float) * 1000.0
    return {
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
    }


def time_calls(serve: Callable[[str], Any], queries: Sequence[str]) -> list[float]:
    """Seconds of each ``serve(query)`` call, in order."""
    seconds = []
    for query in queries:
        start = time.perf_counter()
        serve(query)
        seconds.append(time.perf_counter() - start)
    return seconds


def summarize_rounds(per_round: list[list[float]]) -> dict:
    """Per-round latency statistics (ms) -> their medians over rounds, the spread of the per-round
    means ((max - min) / median, in %), the per-round means, and the number of timed calls."""
    stats = [latency_stats(s) for s in per_round if s]
    if not stats:
        return {}
    out = {k: float(np.median([st[k] for st in stats])) for k in STATISTICS}
    means = [st["mean"] for st in stats]
    out["spread_pct"] = 100.0 * (max(means) - min(means)) / out["mean"] if out["mean"] else 0.0
    out["round_means"] = means
    out["calls"] = sum(len(s) for s in per_round)
    return out


def order_of_round(names: list[str], r: int) -> list[str]:
    """Round ``r`` visits every subject once, starting ``r`` places along: A B C, B C A, C A B."""
    k = r % len(names) if names else 0
    return names[k:] + names[:k]


def interleaved_rounds(
    subjects: dict[str, Any],
    query: str,
    rounds: int,
    runs: int,
    warmup: int,
    sample: Sequence[str] = (),
    texts: Sequence[str] = (),
    batch_size: int = 32,
    on_turn: Callable[[int, str], None] | None = None,
) -> dict[str, dict]:
    """Measure every subject (``name -> Classifier`` with its pipeline made) as the module says.

    Returns, per subject: ``latency_ms`` (the seed query); with ``sample``, ``sample_latency_ms``;
    with ``texts``, ``logits`` of all of ``texts`` (in order) and ``throughput_qps`` (rows per
    second per round: median, spread, per round)."""
    names = list(subjects)
    chunks = np.array_split(np.arange(len(texts)), rounds) if len(texts) else []
    raw = {n: {"seed": [], "sample": [], "qps": [], "logits": [None] * rounds} for n in names}
    serve = {n: subjects[n].make_pipeline() for n in names}
    for r in range(rounds):
        gc.collect()  # once a round, so that no turn pays for another's garbage
        for name in order_of_round(names, r):
            if on_turn is not None:
                on_turn(r, name)
            record = raw[name]
            for _ in range(warmup):
                serve[name](query)
            record["seed"].append(time_calls(serve[name], [query] * runs))
            if sample:
                record["sample"].append(time_calls(serve[name], sample))
            if len(chunks) and len(chunks[r]):
                batch = [texts[i] for i in chunks[r]]
                start = time.perf_counter()
                record["logits"][r] = np.asarray(subjects[name].logits(batch, batch_size=batch_size))
                record["qps"].append(len(batch) / (time.perf_counter() - start))
    out = {}
    for name, record in raw.items():
        result = {"latency_ms": summarize_rounds(record["seed"])}
        if sample:
            result["sample_latency_ms"] = summarize_rounds(record["sample"])
        if record["qps"]:
            qps = record["qps"]
            median = float(np.median(qps))
            result["throughput_qps"] = {
                "median": median,
                "spread_pct": 100.0 * (max(qps) - min(qps)) / median,
                "rounds": qps,
            }
            result["logits"] = np.concatenate([z for z in record["logits"] if z is not None])
        out[name] = result
    return out
