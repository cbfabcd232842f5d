"""What a finished run holds, read back from its run folder: :class:`RunResult`.

:func:`recipes.run` returns one; :meth:`RunResult.from_run_dir` reads any finished run folder
(``python -m recipes runs`` lists them). Its benchmark rows come as flat records
(:data:`BENCHMARK_FIELDS`, :func:`flat_rows`), as a DataFrame, and as the card's plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .measure.latency import STATISTICS
from .runfolder import BENCHMARK_FILE, BenchmarkResult, RunFolder

#: The fields every :attr:`RunResult.benchmark` record has (ratios are against the baseline row); any
#: other number the benchmark measured (e.g. ``in_scope_accuracy``, ``oos_recall``) follows ``accuracy``.
BENCHMARK_FIELDS = (
    "name",
    "format",
    "accuracy",
    "size_mb",
    "latency_mean_ms",
    "latency_std_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "speedup",
    "size_ratio",
    "accuracy_delta",
    "n_test",
)
_RATIOS = ("speedup", "size_ratio", "accuracy_delta")


@dataclass
class StageSummary:
    """One stage of a run."""

    name: str
    type: str
    status: str  # "ran" | "cached"
    wall_s: float  # the time this run spent on it (0 when cached)
    run_wall_s: float  # the time it took when it ran
    metrics: dict = field(repr=False)  # what the stage reported (e.g. eval_accuracy)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flat_rows(rows: list[dict]) -> list[dict]:
    """``benchmark.json`` rows as flat records: the fields of :data:`BENCHMARK_FIELDS`, plus every
    other number of the row (after ``accuracy``) and of its ratios (after ``accuracy_delta``)."""
    out = []
    for row in rows:
        latency, ratios = row.get("latency_ms") or {}, row.get("vs_baseline") or {}
        known = {"name", "format", "accuracy", "size_mb", "n_test"}
        record = {"name": row["name"], "format": row.get("format"), "accuracy": row.get("accuracy")}
        record.update({k: v for k, v in row.items() if k not in known and _is_number(v)})
        record["size_mb"] = row.get("size_mb")
        record.update({f"latency_{k}_ms": latency.get(k) for k in STATISTICS})
        record.update({k: ratios.get(k) for k in _RATIOS})
        record.update({k: v for k, v in ratios.items() if k not in _RATIOS and _is_number(v)})
        record["n_test"] = row.get("n_test")
        out.append(record)
    return out


def _makes_model(stage_type: str) -> bool:
    from .stages import STAGE_TYPES

    known = STAGE_TYPES.get(stage_type)
    return known is None or known.spec.produces_model


@dataclass
class RunResult:
    """A finished run of one recipe: what :func:`run` returns, or :meth:`from_run_dir` reads back.

    ``stages``: each stage's status, wall time and metrics. ``models``: every model of the run
    (the models it starts from and those its stages made) -> its folder. ``benchmark``: the last
    benchmark stage's rows as flat records (:meth:`to_dataframe`, :meth:`plot`).
    ``published``: what was pushed when the run published (``run(..., publish=True)``)."""

    recipe: str
    run_dir: Path
    status: str  # "finished" | "failed at <stage>"
    stages: list[StageSummary]
    models: dict[str, Path]
    final_model: str | None = None  # the model the recipe publishes
    baseline: str | None = None  # the benchmark's baseline row
    benchmark_rows: list[dict] = field(default_factory=list, repr=False)  # benchmark.json rows, as written
    published: Any = None  # the publisher's result (hubtools.PushResult: .repo_id, .commit_id, .url)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, published: Any = None) -> RunResult:
        """The result recorded in a run folder (``<output root>/<scope>/<recipe>``, see
        ``python -m recipes runs``). Raises :class:`~recipes.errors.RunFolderError`."""
        folder = RunFolder(Path(run_dir))
        record = folder.read_run()
        entries = record.stage_entries()
        models = {name: Path(m["path"]) for name, m in record.models.items()}
        models.update({e.name: folder.stage_dir(e.name) for e in entries if _makes_model(e.type)})
        bench = next(
            (
                BenchmarkResult.from_file(folder.stage_dir(e.name) / BENCHMARK_FILE)
                for e in reversed(entries)
                if BENCHMARK_FILE in e.outputs
            ),
            None,
        )
        return cls(
            recipe=record.recipe,
            run_dir=folder.path,
            status=record.status,
            stages=[StageSummary(e.name, e.type, e.status, e.wall_s, e.run_wall_s, e.metrics or {}) for e in entries],
            models=models,
            final_model=record.final_model,
            baseline=bench.baseline if bench else None,
            benchmark_rows=bench.models if bench else [],
            published=published,
        )

    @property
    def benchmark(self) -> list[dict]:
        """The benchmark as flat records: name, format, accuracy (and the other metrics measured),
        size, latency mean/std/percentiles in ms, ratios against the baseline, test rows
        (:data:`BENCHMARK_FIELDS` and :func:`flat_rows`)."""
        return flat_rows(self.benchmark_rows)

    def stage(self, name: str) -> StageSummary:
        """The stage called ``name``."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.recipe!r} has no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}")

    def to_dataframe(self):
        """The benchmark as a pandas DataFrame indexed by model name (needs pandas)::

        >>> result.to_dataframe()[["accuracy", "latency_mean_ms", "speedup"]]
        """
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("to_dataframe() needs pandas: pip install pandas (or use .benchmark)") from err
        records = self.benchmark
        columns = list(dict.fromkeys(k for r in records for k in r)) if records else list(BENCHMARK_FIELDS)
        return pd.DataFrame(records, columns=columns).set_index("name")

    def plot(self, title: str | None = None):
        """Accuracy against mean latency, point area = size, the Pareto front as a step line, the
        published model circled: a :class:`matplotlib.figure.Figure` (the card's plot), which
        Jupyter shows inline; ``.savefig(path)`` writes it."""
        from .measure.plot import accuracy_latency_figure

        return accuracy_latency_figure(
            self.benchmark_rows,
            baseline=self.baseline,
            published=self.final_model if self.published else None,
            title=title or f"{self.recipe}: accuracy vs latency",
        )
