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

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import PublishError, RecipeValidationError
from .plan.bounds import MAX_INT_DIGITS
from .plan.planning import Plan
from .results import BENCHMARK_FIELDS, RunResult, StageSummary, flat_rows  # noqa: F401  (the public API)

if TYPE_CHECKING:
    from .bench.catalog import BenchResult

#: ``{"distill.alpha": 0.3}``, ``["distill.alpha=0.3"]`` or one ``"distill.alpha=0.3"``.
Overrides = Mapping[str, Any] | Sequence[str] | str | None


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
    from .plan.preflight import load_plan

    return load_plan(str(recipe), override_items(overrides))


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
    section once it finishes, to the Hub ``HF_ENDPOINT`` names, with the publisher installed in the
    ``recipes.publishers`` entry-point group (:func:`find_publisher`: ``hubtools.publish``). ``force``:
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
    pushes: dict[Path, Any] = {}
    publisher = None
    if publish:
        push_folder = find_publisher()

        def publisher(run_dir: Path) -> str:
            pushes[Path(run_dir)] = pushed = push_folder(run_dir)
            return pushed.url

    done = Runner(
        output_root=Path(output_dir), force=tuple(force), publisher=publisher, wait=wait, workers=workers
    ).run(plan)
    return RunResult.from_run_dir(done.out_dir, published=pushes.get(Path(done.out_dir)))


#: The entry-point group of the publisher ``run(..., publish=True)`` uses: this project's
#: ``hubtools`` registers ``hub = "hubtools.push:publish"`` (pyproject.toml). ``recipes`` names no
#: publisher: the Hub side depends on the recipes side, never the other way round.
PUBLISHER_GROUP = "recipes.publishers"


def find_publisher(name: str = "hub") -> Callable[[Path], Any]:
    """The publisher registered as ``name`` in :data:`PUBLISHER_GROUP`: ``publish(run_dir)`` pushes a
    finished run folder and returns a result with its ``.url``."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=PUBLISHER_GROUP)}
    if name not in found:
        raise PublishError(
            f"no publisher {name!r} is installed (entry points {PUBLISHER_GROUP!r}: {sorted(found) or 'none'}). "
            "Install the project (`pip install -e .`, which registers hubtools' publisher), or run with "
            "publish=False / --no-publish."
        )
    return found[name].load()


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


def measure_models(
    models: Mapping[str, str | Path],
    dataset: Mapping[str, Any],
    *,
    seed: int = 42,
    baseline: str | None = None,
    accuracy: bool = True,
    query: str | None = None,
    warmup: int = 10,
    runs: int = 100,
    rounds: int = 1,
    batch_size: int = 64,
    threads: int | None = None,
) -> list[dict]:
    """Measure model folders (name -> folder) as the benchmark stage does, all in this process, on
    the test split of ``dataset`` (a recipe's ``dataset`` section as a dict; ``seed`` shuffles a
    ``max_samples`` cut): rows as ``benchmark.json`` holds them: accuracy (and in-scope accuracy,
    oos recall) with 95% intervals, oos AUROC/AUPR, size, latency of ``runs`` batch-1 calls of
    ``query`` in ``rounds`` interleaved rounds; with ``baseline``, each row's ``vs_baseline``
    ratios and paired statistics. ``accuracy=False`` times the models only. ``hubtools verify``
    re-measures published models with it::

        >>> rows = recipes.measure_models({"student": "outputs/.../calibrate"}, {"id": "clinc_oos", "config": "plus"})
        >>> rows[0]["accuracy"], rows[0]["intervals"]["accuracy"], rows[0]["latency_ms"]["p50"]
    """
    import os

    from .engine.threads import restore_torch_threads
    from .measure.latency import DEFAULT_QUERY
    from .measure.rows import Timing, add_sizes, compare_with, load_models, measure_rows
    from .ml import model2vec_io  # noqa: F401  (registers the model2vec format's loader)
    from .ml.data import RecipeData
    from .plan.schema import DatasetSpec

    spec = DatasetSpec.model_validate({k: v for k, v in dict(dataset).items() if k in DatasetSpec.model_fields})
    data = RecipeData(spec, seed)
    test = data.split("test") if accuracy else None
    texts, labels = (list(test["text"]), list(test["label"])) if accuracy else ([], [])
    oos_id = data.oos_id if accuracy else None
    folders = {name: Path(path) for name, path in models.items()}
    timing = Timing(query=query or DEFAULT_QUERY, warmup=warmup, runs=runs, rounds=rounds, batch_size=batch_size)
    with restore_torch_threads():
        loaded = load_models(folders, threads or os.cpu_count() or 1)
        rows, predictions = measure_rows(loaded, texts, labels, oos_id, timing)
        del loaded
    add_sizes(rows, folders)
    if baseline is not None and accuracy:
        compare_with(rows, baseline, predictions, labels, oos_id)
    return rows
