"""``benchmark``: accuracy, size and latency of several models, side by side in one process."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Literal

from pydantic import Field, model_validator

from ..engine.threads import restore_torch_threads
from ..measure.environment import machine_info
from ..measure.latency import DEFAULT_QUERY
from ..plan.bounds import BatchSize, LongText, Text
from ..runfolder import BenchmarkResult
from .base import ONNX_LIBRARIES, StageContext, StageSpec, register


class BenchmarkSpec(StageSpec):
    """Measure every model in ``models`` on the test split and on one query, same settings.

    Accuracy is on the dataset's test split, with its 95% interval; size is the bytes of the
    serialized weights (and ``size_gzip_mb``, the same files after gzip); latency is batch-1
    ``query`` through the model's ``pipeline`` (``warmup`` untimed calls, then ``runs`` timed:
    mean, std, p50, p90, p99 in ms). All rows share one process and one thread budget
    (``threads``; ONNX Runtime sessions get it as ``intra_op_num_threads``, inter-op 1, like
    the PyTorch rows), so the ratios against ``baseline`` (``speedup`` of the mean latency,
    ``size_ratio``, ``accuracy_delta``, and a paired comparison: bootstrap interval and
    McNemar's exact p) compare like with like.

    With ``dataset.oos_label`` (CLINC150: ``oos``) each row also has in-scope accuracy, oos
    recall and precision (Larson et al., 2019) and the threshold-free oos AUROC and AUPR. Each
    row has ``errors``: its top confusions and, against the baseline, the labels of the rows it
    loses and wins. The stage writes ``benchmark.json`` (rows, machine, settings) and logs a
    table; it makes no model.

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
    query: LongText = Field(DEFAULT_QUERY, description="The text whose batch-1 latency is timed.")
    warmup: int = Field(10, ge=0, le=10_000, description="Untimed calls of `query` per model before the timed ones.")
    runs: int = Field(100, ge=1, le=100_000, description="Timed calls of `query` per model.")
    threads: int | None = Field(None, ge=1, le=1024, description="Intra-op threads per model; default: all cores.")
    batch_size: BatchSize = Field(64, description="Test rows per batch of the accuracy pass (not timed).")
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


@register(
    "benchmark",
    BenchmarkSpec,
    libraries=(*ONNX_LIBRARIES, "datasets", "tokenizers", "scipy", "scikit-learn"),
    accepts=None,
    makes=None,
)
def run(spec: BenchmarkSpec, ctx: StageContext) -> dict:
    from ..measure.rows import Timing, add_errors, add_sizes, compare_with, load_models, measure_rows

    threads = spec.threads or os.cpu_count() or 1
    test = ctx.data.split("test")
    texts, labels = list(test["text"]), list(test["label"])
    ctx.log.info("Benchmarking %d models on %d test rows, %d thread(s)", len(spec.models), len(texts), threads)
    folders = {name: ctx.inputs[name] for name in spec.models}
    timing = Timing(query=spec.query, warmup=spec.warmup, runs=spec.runs, batch_size=spec.batch_size)
    with restore_torch_threads():  # the rows set their own budget; the next stage gets the old one
        models = load_models(folders, threads)
        rows, predictions = measure_rows(models, texts, labels, ctx.data.oos_id, timing)
        del models
    add_sizes(rows, folders)
    compare_with(rows, spec.baseline_name, predictions, labels, ctx.data.oos_id)
    add_errors(rows, predictions, labels, ctx.data.label_names, spec.baseline_name)
    BenchmarkResult(
        baseline=spec.baseline_name,
        query=spec.query,
        warmup=spec.warmup,
        runs=spec.runs,
        dataset={**ctx.data.spec.model_dump(), "split_used": ctx.data.spec.splits.test},
        machine=machine_info(threads),
        models=rows,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    ).write(ctx.out_dir)
    table = format_table(rows)
    ctx.log.info("Benchmark:\n%s", table)
    return {"table": table}
