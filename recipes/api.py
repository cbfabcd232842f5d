"""The Python API: the catalog, recipes with overrides, runs and their results, from Python.

``python -m recipes`` is a thin layer over these functions. They raise the typed errors of
:mod:`recipes.errors`, which the command line turns into one ``error:`` line and an exit code.
Example::

    import recipes

    recipes.catalog()                                    # {"teacher": "Fine-tune ...", ...}
    plan = recipes.load("kd", {"distill.epochs": 2, "dataset.max_samples.train": 300})
    result = recipes.run(plan, output_dir="outputs")     # or recipes.run("kd", {...})
    result.stages[0].status, result.stages[0].wall_s     # ("ran", 412.3)
    result.models["distill"]                             # the student's folder
    result.benchmark                                     # one flat record per measured model
    result.to_dataframe()                                # the same, as a pandas DataFrame
    result.plot()                                        # accuracy vs latency (a Figure)

Progress: the API leaves progress bars as the libraries set them, so Jupyter shows widgets
(``tqdm.auto``); only the command line chooses bars or log lines
(:func:`recipes.engine.progress.configure_progress`). The run's log goes to the ``recipes`` logger
and to ``run.log`` in the run folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import RecipeValidationError
from .plan.bounds import MAX_INT_DIGITS
from .plan.planning import Plan, make_plan
from .runfolder import BENCHMARK_FILE, BenchmarkResult, RunFolder

if TYPE_CHECKING:
    from hubtools.push import PushResult

    from .bench.catalog import BenchResult

#: ``{"distill.alpha": 0.3}``, ``["distill.alpha=0.3"]`` or one ``"distill.alpha=0.3"``.
Overrides = Mapping[str, Any] | Sequence[str] | str | None

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
_LATENCIES = ("mean", "std", "p50", "p90", "p99")
_RATIOS = ("speedup", "size_ratio", "accuracy_delta")


def catalog() -> dict[str, str | None]:
    """The catalog's recipes: name -> the first line of its description, or None for a recipe
    that does not validate (``recipes.load(name)`` raises the reason)::

        >>> recipes.catalog()["kd-quant"]
        'The kd student with PyTorch dynamic int8 quantization of its Linear layers, ...'
    """
    from .errors import RecipeError
    from .plan.loader import catalog as catalog_files
    from .plan.loader import load_recipe

    described: dict[str, str | None] = {}
    for name, path in catalog_files().items():
        try:
            described[name] = load_recipe(str(path)).recipe.description.strip().splitlines()[0]
        except RecipeError:
            described[name] = None
    return described


def _yaml_value(key: str, value: Any) -> str:
    """``value`` as the YAML text of a ``--set`` item (``0.3``, ``[0, 2]``, ``null``, ``'a: b'``)."""
    if isinstance(value, Path):
        value = str(value)
    try:
        lines = yaml.safe_dump(value, default_flow_style=True, width=float("inf")).splitlines()
    except (yaml.YAMLError, ValueError):  # ValueError: an int Python will not print (over 4300 digits)
        raise RecipeValidationError(
            f"overrides[{key!r}]: this {type(value).__name__} cannot be a recipe value; a value is a number "
            f"(at most {MAX_INT_DIGITS} digits), text, true/false, None, or a list or dict of them."
        ) from None
    if lines and lines[-1] == "...":  # the end-of-document marker after a plain scalar
        lines = lines[:-1]
    return "\n".join(lines).strip()


def override_items(overrides: Overrides) -> list[str]:
    """The ``--set`` items of ``overrides``: ``{"distill.alpha": 0.3}`` -> ``["distill.alpha=0.3"]``;
    a list of ``"FIELD=VALUE"`` strings (or one string) is taken as it is."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, Mapping):
        return [f"{key}={_yaml_value(key, value)}" for key, value in overrides.items()]
    return [str(item) for item in overrides]


def load(recipe: str | Path, overrides: Overrides = None) -> Plan:
    """Load and validate ``recipe`` (a catalog name or a ``.yaml`` path) with ``overrides``, and
    the recipes it depends on, as the plan :func:`run` would run, then hold the plan against its
    dataset and models as :func:`run` does before its first stage (their schema and config.json:
    columns, splits, labels, layer counts; :func:`recipes.plan.preflight.check_plan`). Nothing runs.

    ``overrides`` are the command line's ``--set``: a dict ``{"distill.alpha": 0.3,
    "dataset.max_samples.train": 300}`` or a list ``["distill.alpha=0.3"]``. ``dataset.*``,
    ``models.*`` and ``seed`` apply to every recipe of the plan, other fields to ``recipe``.
    Raises :class:`~recipes.errors.RecipeNotFoundError`,
    :class:`~recipes.errors.RecipeValidationError`, :class:`~recipes.errors.DatasetError` or
    :class:`~recipes.errors.ModelSourceError` (the message names the field and what is allowed)::

        >>> plan = recipes.load("kd-quant", {"models.base": "org/tiny-bert", "dataset.max_samples.train": 300})
        >>> [item.recipe.name for item in plan.order], plan.scope
        (['teacher', 'kd', 'kd-quant'], 'clinc_oos-plus_tiny-bert_69482ef1')
    """
    from .plan.preflight import check_plan

    plan = make_plan(str(recipe), override_items(overrides))
    check_plan(plan)
    return plan


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
        record.update({f"latency_{k}_ms": latency.get(k) for k in _LATENCIES})
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
    published: PushResult | None = None

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, published: PushResult | None = None) -> RunResult:
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
                if e.type == "benchmark"
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


def run(
    recipe: str | Path | Plan,
    overrides: Overrides = None,
    output_dir: str | Path = "outputs",
    publish: bool = False,
    force: Sequence[str] = (),
    wait: bool = True,
    workers: int = 1,
) -> RunResult:
    """Run ``recipe`` (a catalog name, a ``.yaml`` path, or a :func:`load` plan) and, first, the
    recipes it takes models from; stages whose inputs and settings did not change are reused.

    ``overrides``: as for :func:`load` (give them there when passing a plan). ``output_dir``: the
    root of the run folders. ``publish``: push each recipe of the plan that has a ``publish:``
    section once it finishes, to the Hub ``HF_ENDPOINT`` names (``hubtools.publish``). ``force``:
    stages of ``recipe`` to rerun. ``wait``: when another run holds a run folder, wait for it, or
    raise :class:`~recipes.errors.RunFolderBusyError`. ``workers``: processes for a ``search-distill``
    stage, this one and ``workers - 1`` local workers (``python -m recipes worker``), each with its
    share of the cores. Raises the other errors of
    :mod:`recipes.errors` too: :class:`~recipes.errors.StageFailedError` (names the stage),
    :class:`~recipes.errors.PublishError`. Returns the result of ``recipe``::

        >>> result = recipes.run("kd-quant", {"dataset.max_samples.train": 300}, output_dir="outputs")
        >>> [(s.name, s.status) for s in result.stages]
        [('quantize', 'ran'), ('benchmark', 'ran')]
    """
    from .engine.runner import Runner

    if isinstance(recipe, Plan):
        if overrides:
            raise ValueError("overrides go to recipes.load() when run() is given a plan")
        plan = recipe
    else:
        plan = load(recipe, overrides)
    pushes: dict[Path, PushResult] = {}
    publisher = None
    if publish:
        from hubtools.push import publish as push_folder

        def publisher(run_dir: Path) -> str:
            pushes[Path(run_dir)] = pushed = push_folder(run_dir)
            return pushed.url

    done = Runner(
        output_root=Path(output_dir), force=tuple(force), publisher=publisher, wait=wait, workers=workers
    ).run(plan)
    return RunResult.from_run_dir(done.out_dir, published=pushes.get(Path(done.out_dir)))


def bench_catalog(
    recipes: Sequence[str] | None = None,
    overrides: Overrides = None,
    output_dir: str | Path = "outputs",
    bench_dir: str | Path | None = None,
    catalog_dir: str | Path | None = None,
    run: bool = True,
    **settings: Any,
) -> BenchResult:
    """Run the catalog's recipes (``recipes``: a subset; the teacher is always measured) with the
    plan-wide ``overrides`` (``dataset.*``, ``models.*``, ``seed``), then measure the teacher, each
    recipe's published model, the floor and the peer in this process, in interleaved rounds, and
    write ``results.json``, ``table.md`` and the plot to ``bench_dir`` (default
    ``<output_dir>/bench``). ``settings``: the fields of :class:`recipes.bench.catalog.BenchSettings`
    (``rounds``, ``runs``, ``warmup``, ``sample``, ``threads``, ``memory``, ``peer``, ...).
    ``run=False`` measures the finished runs only. Returns a :class:`recipes.bench.catalog.BenchResult`::

        >>> result = recipes.bench_catalog(["kd-onnx-quant"], rounds=3)
        >>> print(result.table); result.targets; result.plot()
    """
    from .bench.catalog import BenchSettings, run_bench

    return run_bench(
        recipes,
        override_items(overrides),
        Path(output_dir),
        Path(bench_dir) if bench_dir else None,
        Path(catalog_dir) if catalog_dir else None,
        BenchSettings(**settings),
        run=run,
    )
