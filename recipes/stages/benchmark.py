"""``benchmark``: accuracy, size and latency of several models, side by side in one process."""

from __future__ import annotations

import os
import time
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..engine.threads import restore_torch_threads
from ..measure.environment import machine_info
from ..plan.bounds import BatchSize, LongText, Text
from ..runfolder import BenchmarkResult
from .base import ONNX_LIBRARIES, StageContext, StageSpec, register

DEFAULT_QUERY = "What is the pin number for my account?"


class BenchmarkSpec(StageSpec):
    """Measure every model in ``models`` on the test split and on one query, same settings.

    Accuracy is on the dataset's test split; size is the bytes of the serialized weights (and
    ``size_gzip_mb``, the same files after gzip); latency is batch-1 through the model's
    ``pipeline`` (``warmup`` untimed calls, then ``runs`` timed). All rows share one process
    and one thread budget (``threads``), so the ratios against ``baseline`` compare like with like.

    .. code-block:: yaml

        stages:
          - name: benchmark
            type: benchmark
            baseline: teacher
            models: [teacher, distill, quantize]
            threads: 1
    """

    type: Literal["benchmark"]
    models: list[Text] = Field(min_length=1, description="Models to measure: keys of `models` or earlier stages.")
    baseline: Text | None = Field(None, description="Row the ratios are against; defaults to the first of `models`.")
    query: LongText = DEFAULT_QUERY
    warmup: int = Field(10, ge=0, le=10_000)
    runs: int = Field(100, ge=1, le=100_000)
    threads: int | None = Field(None, ge=1, le=1024, description="Intra-op threads per model; default: all cores.")
    batch_size: BatchSize = 64
    produces_model = False

    @model_validator(mode="after")
    def _baseline_is_measured(self):
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models lists a model twice: {self.models}")
        if self.baseline is not None and self.baseline not in self.models:
            raise ValueError(f"baseline {self.baseline!r} is not one of models {self.models}")
        return self

    def refs(self) -> dict[str, str]:
        return {name: name for name in self.models}

    @property
    def baseline_name(self) -> str:
        return self.baseline or self.models[0]


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
    }


def time_pipeline(pipe, query: str, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        pipe(query)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        pipe(query)
        seconds.append(time.perf_counter() - start)
    return seconds


def measure(
    name: str,
    model_dir,
    spec: BenchmarkSpec,
    texts,
    labels,
    threads: int,
    log,
    oos_id: int | None = None,
    predictions: dict | None = None,
) -> dict:
    """One benchmark row. ``oos_id``: also in-scope accuracy and oos recall/precision;
    ``predictions``: where to leave the row's test predictions, by model name."""
    from ..measure.metrics import classification_metrics
    from ..ml.modelio import load_classifier, read_format
    from ..ml.pruning import weights_size_mb

    clf = load_classifier(model_dir, threads)
    preds = clf.logits(texts, batch_size=spec.batch_size, desc=f"Accuracy of {name}").argmax(axis=-1)
    if predictions is not None:
        predictions[name] = preds
    latency = latency_stats(time_pipeline(clf.make_pipeline(), spec.query, spec.warmup, spec.runs))
    fmt = read_format(model_dir)
    row = {
        "name": name,
        "format": fmt.format,
        "files": fmt.weights,
        **classification_metrics(preds, labels, oos_id),
        "n_test": len(labels),
        **weights_size_mb(model_dir),  # size_mb, and size_gzip_mb: what the weights take on the wire
        "latency_ms": latency,
        "runtime": clf.runtime,
        "device": clf.device,
    }
    log.info(
        "  %-12s acc %.4f  size %7.2f MB  latency %.2f ms", name, row["accuracy"], row["size_mb"], latency["mean"]
    )
    return row


def add_errors(rows: list[dict], predictions: dict, labels, names: list[str], baseline: str) -> None:
    """Each row's top confusions and, against the baseline, the labels of the rows it loses and
    wins: what explains an accuracy gap."""
    from ..measure.metrics import top_confusions

    for row in rows:
        base = predictions[baseline] if row["name"] != baseline else None
        row["errors"] = top_confusions(predictions[row["name"]], labels, names, base)


def add_ratios(rows: list[dict], baseline: str) -> None:
    """Each row's speed-up, size reduction and accuracy change against the baseline row."""
    base = next(r for r in rows if r["name"] == baseline)
    for row in rows:
        row["vs_baseline"] = {
            "speedup": base["latency_ms"]["mean"] / row["latency_ms"]["mean"],
            "size_ratio": row["size_mb"] / base["size_mb"],
            "accuracy_delta": row["accuracy"] - base["accuracy"],
        }


def format_table(rows: list[dict]) -> str:
    width = max([len("model"), *(len(r["name"]) for r in rows)]) + 2
    head = f"{'model':<{width}}{'format':<22}{'acc':>8}{'size MB':>10}{'mean ms':>10}"
    head += f"{'p50':>8}{'p99':>8}{'speedup':>9}"
    oos = any("oos_recall" in r for r in rows)
    head += f"{'in-scope':>10}{'oos rec':>9}" if oos else ""
    lines = [head, "-" * len(head)]
    for r in rows:
        lat = r["latency_ms"]
        lines.append(
            f"{r['name']:<{width}}{r['format']:<22}{r['accuracy']:>8.4f}{r['size_mb']:>10.2f}"
            f"{lat['mean']:>10.2f}{lat['p50']:>8.2f}{lat['p99']:>8.2f}{r['vs_baseline']['speedup']:>8.2f}x"
            + (f"{r['in_scope_accuracy']:>10.4f}{r['oos_recall']:>9.4f}" if oos else "")
        )
    return "\n".join(lines)


@register("benchmark", BenchmarkSpec, libraries=(*ONNX_LIBRARIES, "datasets", "tokenizers"))
def run(spec: BenchmarkSpec, ctx: StageContext) -> dict:
    threads = spec.threads or os.cpu_count() or 1
    test = ctx.data.split("test")
    texts, labels = list(test["text"]), list(test["label"])
    ctx.log.info("Benchmarking %d models on %d test rows, %d thread(s)", len(spec.models), len(texts), threads)
    rows, predictions = [], {}
    for name in spec.models:
        with restore_torch_threads():  # each row sets its own budget; the next stage gets the old one
            rows.append(
                measure(name, ctx.inputs[name], spec, texts, labels, threads, ctx.log, ctx.data.oos_id, predictions)
            )
    add_ratios(rows, spec.baseline_name)
    add_errors(rows, predictions, labels, ctx.data.label_names, spec.baseline_name)
    BenchmarkResult(
        baseline=spec.baseline_name,
        query=spec.query,
        warmup=spec.warmup,
        runs=spec.runs,
        dataset={**ctx.data.spec.model_dump(), "split_used": ctx.data.spec.splits.test},
        machine=machine_info(threads),
        models=rows,
    ).write(ctx.out_dir)
    ctx.log.info("Benchmark:\n%s", format_table(rows))
    return {"table": format_table(rows)}
