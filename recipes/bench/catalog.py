"""``make bench`` / ``python -m recipes bench``: the whole catalog in one comparison, on one machine.

1. Runs every catalog recipe (or those of ``--recipes``) with the same plan-wide overrides
   (``dataset.*``, ``models.*``, ``seed``); finished stages are reused, so a finished catalog
   costs only its cache checks.
2. Builds the two reference rows: the **floor** (:mod:`recipes.bench.floor`: the same ``pipeline()``
   call around an embedding bag and a linear layer, same tokenizer) and the **peer**
   (:mod:`recipes.bench.peer`: model2vec static embeddings + the better on validation of a
   scikit-learn logistic regression and model2vec's own trained classifier).
3. Measures the teacher, each recipe's published model, the floor and the peer with the one
   measuring engine (:mod:`recipes.measure`): all in this process, in interleaved rounds, with one
   thread budget (accuracy, throughput, latency in process); then each **alone**, in a fresh
   process per model and repeat, alternating models (latency as a user gets it, load time, peak
   memory: :mod:`recipes.measure.probe`).
4. Compares every row with the teacher, the floor and the peer, with paired intervals, and
   decides the targets (:mod:`recipes.bench.report`); writes ``results.json``
   (:class:`recipes.runfolder.BenchRecord`), ``table.md`` and ``accuracy_vs_latency.png`` to the
   bench folder (``<output dir>/bench``). ``python -m recipes bench --readme`` writes the README's
   section between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` from ``results.json`` alone.

Python (``recipes.bench_catalog``, the same as the command line)::

    import recipes

    result = recipes.bench_catalog(["kd-onnx-quant"], rounds=3)   # BenchResult
    result.table            # the Markdown tables (ratios to the teacher and the floor)
    result.targets          # [{"text": ..., "met": True/False/None, "detail": ...}, ...]
    result.to_dataframe()   # one row per subject
    result.plot()           # accuracy vs latency, Pareto front, floor as a vertical line
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RecipeError, RecipeValidationError
from ..measure.latency import DEFAULT_QUERY
from ..runfolder import BENCH_DIR, BENCH_RESULTS_FILE, BenchRecord, atomic_write_text
from .report import (
    CATALOG,
    FLOOR,
    PEER,
    PLOT_FILE,
    REFERENCE_RECIPE,
    TABLE_FILE,
    TEACHER,
    BenchResult,
    add_comparisons,
    bench_figure,
    evaluate_targets,
    pareto_names,
    results_markdown,
)

log = logging.getLogger("recipes")

#: Override prefixes that apply to every recipe of a plan (see recipes.plan.planning).
PLAN_WIDE = ("dataset", "models", "seed")


@dataclass
class BenchSettings:
    """How the subjects are measured (the command line's options)."""

    rounds: int = 5  # interleaved in-process rounds
    runs: int = 100  # timed seed-query calls per subject per round (and per fresh process)
    warmup: int = 10  # untimed calls before each subject's turn
    sample: int = 200  # real test queries (a fixed seeded sample), batch 1, per round
    batch_size: int = 32  # throughput batch over the test split
    threads: int | None = None  # default: every core this process may use
    query: str = DEFAULT_QUERY
    seed: int = 0  # of the query sample
    alone_repeats: int = 3  # fresh processes per subject (latency alone, load time, memory); 0: none
    serve_queries: int = 100  # real queries each fresh process serves before it is timed
    floor: bool = True
    floor_dim: int = 64
    floor_epochs: int = 3
    peer: bool = True
    peer_pca_dims: int = 256
    peer_c: float = 20.0

    def __post_init__(self):
        for name, least in (
            ("rounds", 1),
            ("runs", 1),
            ("batch_size", 1),
            ("warmup", 0),
            ("sample", 0),
            ("alone_repeats", 0),
        ):
            if getattr(self, name) < least:
                raise RecipeValidationError(f"bench: {name} must be at least {least}, not {getattr(self, name)}.")
        if self.threads is not None and self.threads < 1:
            raise RecipeValidationError(f"bench: threads must be at least 1, not {self.threads}.")


@dataclass
class Subject:
    """One row: a model folder and what it is."""

    name: str  # the row's label: the recipe, or "floor" / "peer"
    kind: str  # TEACHER | CATALOG | FLOOR | PEER
    path: Path
    recipe: str | None = None
    model: str | None = None  # its name in the recipe (the published stage)


# --- what to run ------------------------------------------------------------------------------------


def _key(item: str) -> list[str]:
    return item.partition("=")[0].strip().split(".")


def check_overrides(items: list[str]) -> None:
    """The bench runs every recipe on one dataset and one set of starting models: only the
    plan-wide fields may be overridden."""
    other = [item for item in items if _key(item)[0] not in PLAN_WIDE]
    if other:
        raise RecipeValidationError(
            f"bench --set {other[0]}: the bench takes only plan-wide overrides (dataset.*, models.*, seed), "
            "which apply alike to every recipe it runs. A stage setting would give the recipes that others "
            "depend on (teacher, kd) two settings, run twice. To change a budget (epochs, n_trials), copy "
            "recipes/catalog/ to a folder, edit it, and pass it with --catalog DIR."
        )


def catalog_recipes(catalog_dir: Path | None = None) -> dict[str, str]:
    """Recipe name -> what to pass to :func:`recipes.api.load`: the catalog's names, or the
    ``.yaml`` files of ``catalog_dir`` (their dependencies resolve in that folder first)."""
    if catalog_dir is None:
        from ..plan.loader import catalog

        return {name: name for name in catalog()}
    files = sorted(Path(catalog_dir).glob("*.yaml"))
    if not files:
        raise RecipeValidationError(f"--catalog {catalog_dir}: no .yaml recipe files there.")
    return {p.stem: str(p) for p in files}


def plan_recipes(names: Sequence[str] | None, overrides: list[str], catalog_dir: Path | None = None) -> dict:
    """The plan of each recipe to run (name -> Plan), the reference recipe first; every plan
    shares one scope. ``models.<key>`` items go to the plans that declare ``<key>``."""
    from ..plan.planning import make_plan
    from ..plan.preflight import load_plan

    check_overrides(overrides)
    available = catalog_recipes(catalog_dir)
    chosen = list(dict.fromkeys(names)) if names else list(available)
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise RecipeValidationError(f"bench --recipes: no recipe {unknown[0]!r}; recipes: {', '.join(available)}.")
    model_items = {_key(o)[1]: o for o in overrides if _key(o)[0] == "models" and len(_key(o)) == 2}
    base_items = [o for o in overrides if o not in model_items.values()]
    teacher_given = "teacher" in model_items
    if REFERENCE_RECIPE in available and not teacher_given and REFERENCE_RECIPE not in chosen:
        chosen.insert(0, REFERENCE_RECIPE)  # the reference row is always measured
    if teacher_given and REFERENCE_RECIPE in chosen:
        chosen.remove(REFERENCE_RECIPE)  # the given classifier is the teacher: nothing to fine-tune
    chosen.sort(key=lambda n: n != REFERENCE_RECIPE)
    plans, used = {}, set()
    for name in chosen:
        declared = {k for o in make_plan(available[name], base_items).order for k in o.recipe.models}
        mine = [item for key, item in model_items.items() if key in declared]
        used |= {key for key in model_items if key in declared}
        plans[name] = load_plan(available[name], base_items + mine)
    unused = sorted(set(model_items) - used)
    if unused:
        raise RecipeValidationError(
            f"bench --set {model_items[unused[0]]}: no recipe it runs declares a model {unused[0]!r}."
        )
    scopes = {plan.scope for plan in plans.values()}
    if len(scopes) > 1:
        raise RecipeValidationError(
            f"bench: the recipes run on different datasets or starting models ({', '.join(sorted(scopes))}); "
            "one comparison needs one dataset: give it once with --set dataset.*"
        )
    return plans


def run_recipes(plans: dict, output_dir: Path, run: bool = True) -> tuple[dict, dict[str, str]]:
    """Run (or, with ``run`` False, read) each plan's target. Returns the finished results by
    recipe, and why each other recipe has no row."""
    from ..engine.runner import Runner
    from ..results import RunResult
    from ..runfolder import RunFolder

    results, skipped = {}, {}
    for name, plan in plans.items():
        try:
            if run:
                log.info("bench: recipe %s", name)
                done = Runner(output_root=Path(output_dir)).run(plan)
                results[name] = RunResult.from_run_dir(done.out_dir)
            else:
                folder = RunFolder.of(output_dir, plan.scope, plan.target.recipe.name)
                result = RunResult.from_run_dir(folder.path)
                if result.status != "finished":
                    raise RecipeValidationError(f"its run is {result.status}")
                results[name] = result
        except RecipeError as err:
            log.error("bench: %s has no row: %s", name, err.message)
            skipped[name] = err.message.splitlines()[0]
    return results, skipped


def catalog_subjects(results: dict) -> list[Subject]:
    """The reference (the teacher recipe's model, or the ``teacher`` the recipes were given), then
    each recipe's published model, labelled by recipe."""
    subjects = []
    if REFERENCE_RECIPE in results:
        teacher = results[REFERENCE_RECIPE]
        subjects.append(
            Subject(
                REFERENCE_RECIPE, TEACHER, teacher.models[teacher.final_model], REFERENCE_RECIPE, teacher.final_model
            )
        )
    else:
        given = next((r.models["teacher"] for r in results.values() if "teacher" in r.models), None)
        if given is not None:
            subjects.append(Subject(REFERENCE_RECIPE, TEACHER, given, None, "teacher"))
    for name, result in results.items():
        if name != REFERENCE_RECIPE and result.final_model:
            subjects.append(Subject(name, CATALOG, result.models[result.final_model], name, result.final_model))
    return subjects


# --- floor and peer: built once per dataset and source, then reused ------------------------------------


def _files_digest(folder: Path, names: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name in names:
        path = Path(folder) / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _cached_build(folder: Path, key: dict, build: Callable[[Path], Any], what: str) -> Path:
    """``build(tmp)`` then move it to ``folder``, unless ``folder`` was built with the same ``key``."""
    key_file = folder / "bench_key.json"
    if key_file.is_file():
        try:
            if json.loads(key_file.read_text()) == key:
                log.info("bench: the %s in %s didn't change, reusing it", what, folder)
                return folder
        except ValueError:
            pass
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("bench: building the %s", what)
    build(tmp)
    (tmp / "bench_key.json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def make_floor(bench_dir: Path, teacher_dir: Path, data, settings: BenchSettings, threads: int) -> Subject:
    from ..engine.threads import restore_torch_threads
    from .floor import build_floor

    key = {
        "data": data.fingerprint,
        "tokenizer": _files_digest(teacher_dir, ["tokenizer.json", "vocab.txt", "tokenizer_config.json"]),
        "dim": settings.floor_dim,
        "epochs": settings.floor_epochs,
    }
    train = data.split("train")

    def build(out: Path) -> None:
        import torch

        with restore_torch_threads():
            torch.set_num_threads(threads)
            build_floor(
                teacher_dir,
                list(train["text"]),
                list(train["label"]),
                data.id2label,
                out,
                dim=settings.floor_dim,
                epochs=settings.floor_epochs,
            )

    path = _cached_build(Path(bench_dir) / FLOOR, key, build, "floor")
    return Subject(FLOOR, FLOOR, path, None, "embedding bag + linear")


def make_peer(bench_dir: Path, backbone: Path, data, settings: BenchSettings, threads: int) -> Subject:
    from threadpoolctl import threadpool_limits

    from ..engine.threads import restore_torch_threads
    from .peer import HEADS, build_peer, read_info

    key = {
        "data": data.fingerprint,
        "backbone": _files_digest(backbone, ["config.json", "tokenizer.json", "model.safetensors"]),
        "pca_dims": settings.peer_pca_dims,
        "C": settings.peer_c,
        "heads": list(HEADS),  # folders built before the trained head was a candidate are rebuilt
    }
    train, validation = data.split("train"), data.split("eval")

    def build(out: Path) -> None:
        import torch

        with restore_torch_threads(), threadpool_limits(limits=threads):
            torch.set_num_threads(threads)
            build_peer(
                backbone,
                (list(train["text"]), list(train["label"])),
                (list(validation["text"]), list(validation["label"])),
                out,
                settings.peer_pca_dims,
                settings.peer_c,
            )

    path = _cached_build(Path(bench_dir) / PEER, key, build, "peer")
    return Subject(PEER, PEER, path, None, f"model2vec + {read_info(path)['head']}")


# --- the whole run -------------------------------------------------------------------------------------------


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under ``taskset``), else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _dataset_label(spec) -> str:
    return Path(str(spec.id).rstrip("/")).name + (f" ({spec.config})" if spec.config else "")


def run_bench(
    recipes: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    output_dir: Path = Path("outputs"),
    bench_dir: Path | None = None,
    catalog_dir: Path | None = None,
    settings: BenchSettings | None = None,
    run: bool = True,
) -> BenchResult:
    """Run the recipes, build the floor and the peer, measure everything, write the report."""
    from ..measure.environment import machine_info
    from ..ml.data import RecipeData

    settings = settings or BenchSettings()
    threads = settings.threads or available_cores()
    output_dir = Path(output_dir)
    bench_dir = Path(bench_dir) if bench_dir else output_dir / BENCH_DIR
    items = list(overrides)
    plans = plan_recipes(recipes, items, catalog_dir)
    results, skipped = run_recipes(plans, output_dir, run)
    subjects = catalog_subjects(results)
    if not subjects:
        raise RecipeValidationError("bench: no recipe finished, nothing to measure; see the log above.")
    target = next(iter(plans.values())).target
    data = RecipeData(target.recipe.dataset, target.recipe.seed, target.base_dir)
    test = data.split("test")
    texts, labels = list(test["text"]), list(test["label"])
    bench_dir.mkdir(parents=True, exist_ok=True)
    teacher = next((s for s in subjects if s.kind == TEACHER), None)
    if settings.floor and teacher is not None:
        subjects.append(make_floor(bench_dir, teacher.path, data, settings, threads))
    if not settings.peer:
        skipped[PEER] = "left out (--no-peer)"
    else:
        from .peer import missing

        backbone = results.get(REFERENCE_RECIPE).models.get("base") if REFERENCE_RECIPE in results else None
        why = missing() or (None if backbone else "no backbone: the teacher recipe did not run")
        if why:
            log.warning("bench: no peer row: %s", why)
            skipped[PEER] = why
        else:
            subjects.append(make_peer(bench_dir, backbone, data, settings, threads))

    rng = np.random.default_rng(settings.seed)
    sample = [texts[i] for i in sorted(rng.choice(len(texts), size=min(settings.sample, len(texts)), replace=False))]
    rows, predictions = measure_subjects(subjects, texts, labels, data.oos_id, sample, settings, threads)
    floor_name = FLOOR if any(r["kind"] == FLOOR for r in rows) else None
    peer_name = PEER if any(r["kind"] == PEER for r in rows) else None
    reference = REFERENCE_RECIPE if any(r["kind"] == TEACHER for r in rows) else None
    add_comparisons(rows, reference, floor_name, peer_name, predictions, labels, data.oos_id)
    now = datetime.now(timezone.utc)
    record = BenchRecord(
        date=now.date().isoformat(),
        created=now.isoformat(timespec="seconds"),
        machine=machine_info(threads),
        settings={**asdict(settings), "threads": threads},
        recipes=list(plans),
        overrides=items,
        scope=next(iter(plans.values())).scope,
        dataset={
            "label": _dataset_label(data.spec),
            "split": data.spec.splits.test,
            "n_test": len(labels),
            "max_samples": data.spec.max_samples.test,
            "oos_label": data.spec.oos_label,
        },
        reference=reference,
        floor=floor_name,
        peer=peer_name,
        rows=rows,
        pareto=pareto_names(rows),
        targets=evaluate_targets(rows, reference, floor_name, peer_name),
        skipped=skipped,
    )
    return write_outputs(record, bench_dir)


#: The modules that register the model formats beyond modelio's (the floor's, the peer's,
#: model2vec's), imported by every process that loads them (the fresh processes of the probes too).
FORMAT_MODULES = (f"{__package__}.floor", f"{__package__}.peer", "recipes.ml.model2vec_io")


def measure_subjects(
    subjects: list[Subject],
    texts: list[str],
    labels: list[int],
    oos_id: int | None,
    sample: list[str],
    settings: BenchSettings,
    threads: int,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every subject loaded into this process and measured in interleaved rounds, then (with
    ``settings.alone_repeats``) each alone in fresh processes: one row each, and the label ids
    each predicted."""
    from threadpoolctl import threadpool_limits

    from ..engine.threads import restore_torch_threads
    from ..measure.probe import alone
    from ..measure.rows import Timing, add_sizes, load_models, measure_rows
    from ..ml import model2vec_io  # noqa: F401  (registers the model2vec format)
    from . import floor, peer  # noqa: F401  (register the floor's and the peer's formats)

    log.info(
        "bench: %d models, %d rounds, %d thread(s), %d test rows: %s",
        len(subjects),
        settings.rounds,
        threads,
        len(texts),
        ", ".join(s.name for s in subjects),
    )
    folders = {s.name: s.path for s in subjects}
    timing = Timing(
        settings.query, settings.warmup, settings.runs, settings.rounds, settings.batch_size, tuple(sample)
    )
    with restore_torch_threads(), threadpool_limits(limits=threads):
        models = load_models(folders, threads)
        on_turn = lambda r, name: log.debug("bench: round %d, %s", r + 1, name)  # noqa: E731
        rows, predictions = measure_rows(models, texts, labels, oos_id, timing, on_turn)
        del models
    add_sizes(rows, folders)
    if settings.alone_repeats:
        log.info("bench: each model alone, %d fresh process(es) each", settings.alone_repeats)
        queries = (sample or [settings.query])[: max(settings.serve_queries, 1)]
        found = alone(
            folders,
            threads,
            settings.query,
            settings.runs,
            settings.warmup,
            settings.alone_repeats,
            queries,
            FORMAT_MODULES,
        )
    for row, subject in zip(rows, subjects, strict=True):
        row.update(kind=subject.kind, recipe=subject.recipe, model=subject.model, path=_shown_path(subject.path))
        if subject.kind == FLOOR:
            row["epochs"] = settings.floor_epochs
        if subject.kind == PEER:
            row["peer"] = peer.read_info(subject.path)
        if settings.alone_repeats:
            row.update(found[subject.name])
    return rows, predictions


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (no home folder in a page)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def write_outputs(record: BenchRecord, bench_dir: Path) -> BenchResult:
    """``results.json``, ``table.md`` and the plot in ``bench_dir``."""
    bench_dir = Path(bench_dir)
    bench_dir.mkdir(parents=True, exist_ok=True)
    record.write(bench_dir)
    payload = record.to_dict()
    atomic_write_text(bench_dir / TABLE_FILE, results_markdown(payload))
    bench_figure(payload).savefig(bench_dir / PLOT_FILE, format="png")
    log.info("bench: wrote %s, %s and %s", bench_dir / BENCH_RESULTS_FILE, TABLE_FILE, PLOT_FILE)
    return BenchResult(bench_dir / BENCH_RESULTS_FILE, payload)
