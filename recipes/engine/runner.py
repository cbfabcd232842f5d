"""Run a plan: each recipe in order (dependencies first), each stage cached by its key.

A stage is skipped only when its key (see :mod:`recipes.engine.cachekey`: settings, inputs, rows,
seed, code, library versions) matches its record AND its folder holds exactly the recorded
files with the recorded hashes; otherwise it reruns and the log says why. A stage writes into
a temporary folder that becomes the stage folder only when it finished (see
:mod:`recipes.runfolder`), so a killed run never leaves a half model that looks done. One run
at a time holds a run folder.

A stage may also keep work that a rerun resumes (the ``search-distill`` study) in its state
folder, ``<run folder>/.state/<stage>-<fingerprint[:12]>/``: it survives a failed or killed
run, belongs to one cache key (an interrupted run resumes; changed settings, code or libraries
start afresh, and the log names the work left under the old key and why) and is removed when
the stage finishes. :meth:`Runner.join` gives another process (``python -m
recipes worker``) the same stage, inputs and state folder, so it can work on the stage too.

Under ``torchrun`` / ``accelerate launch`` every rank runs the same plan; rank 0 alone decides
what is cached, holds the lock and writes the folders, training stages train on every rank
(data-parallel) and the rest on rank 0 while the others wait (see :mod:`recipes.engine.distributed`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from ..errors import DatasetError, ModelSourceError, PublishError, RecipeError, RecipeValidationError, StageFailedError
from ..measure.environment import machine_info
from ..ml.data import RecipeData
from ..plan.labels import check_labels
from ..plan.loader import LoadedRecipe
from ..plan.planning import Plan, make_plan
from ..plan.preflight import check_plan
from ..plan.schema import RecipeOutput
from ..plan.sources import ResolvedModel, resolve_source
from ..runfolder import (
    SCOPE_FILE,
    RunFolder,
    RunFolderError,
    RunRecord,
    StageEntry,
    StageRecord,
    changed_outputs,
    hash_outputs,
    write_json,
    writing,
)
from ..stages import STAGE_TYPES, StageContext
from . import cachekey
from . import distributed as dist
from .threads import restore_torch_threads

log = logging.getLogger("recipes")

#: Publishes a finished run folder and returns a URL; given by the entry point (e.g. hubtools).
Publisher = Callable[[Path], str]


def warn_left_work(folder: RunFolder, stage: str, fingerprint: str, key: dict) -> None:
    """Warn about work an interrupted run under another cache key left in a state folder, which
    this run does not resume: a search interrupted before ``git pull`` or a library upgrade
    starts a new study, and the log says why instead of leaving an hour of trials behind
    without a word."""
    mine = folder.state_dir(stage, fingerprint)
    for other in folder.state_dirs(stage):
        if other == mine or not folder.holds_work(other):
            continue
        old_key = folder.state_key(other)
        why = "; ".join(cachekey.key_changes(old_key, key)) if old_key else "its cache key differs"
        log.warning(
            "Stage %r: %s holds the work of an interrupted run under another cache key (%s); this run does "
            "not resume it and removes it when the stage finishes. To resume it instead, stop now and "
            "rerun with what it was started with.",
            stage,
            other.relative_to(folder.path),
            why,
        )


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "cached"
    wall_s: float
    record: StageRecord

    @property
    def fingerprint(self) -> str:
        return self.record.fingerprint


@dataclass
class RecipeRun:
    loaded: LoadedRecipe
    folder: RunFolder
    stages: list[StageResult] = field(default_factory=list)
    models: dict[str, ResolvedModel] = field(default_factory=dict)  # every model name -> folder
    published: str | None = None  # commit URL when the run was pushed

    @property
    def out_dir(self) -> Path:
        return self.folder.path


class Runner:
    """Runs a recipe and, first, the recipes whose models it takes.

    ``publisher``: called with each finished run folder whose recipe has a ``publish:``
    section (the command line passes ``hubtools.push_run``); None publishes nothing.
    ``wait``: when another run holds a run folder, wait for it (True) or refuse.
    ``workers``: processes that work on a stage that can share its work (``search-distill``):
    this one and ``workers - 1`` local workers it starts, each with its share of the threads.
    """

    def __init__(
        self,
        output_root: Path = Path("outputs"),
        force: tuple[str, ...] = (),
        publisher: Publisher | None = None,
        wait: bool = True,
        workers: int = 1,
    ):
        self.output_root = Path(output_root)
        self.force = set(force)
        self.publisher = publisher
        self.wait = wait
        self.workers = max(1, int(workers))
        self.runs: dict[str, RecipeRun] = {}  # recipe name -> its run, in the order they ran
        self._plan: Plan | None = None

    def run(self, recipe: Plan | LoadedRecipe) -> RecipeRun:
        """Run ``recipe`` (a plan, or a loaded recipe to plan) and the recipes it needs first."""
        plan = recipe if isinstance(recipe, Plan) else make_plan(str(recipe.path), recipe.overrides)
        if not plan.checked:
            check_plan(plan)  # data, model and layer mistakes, before any folder or stage
        self._plan = plan
        target = plan.target
        unknown = self.force - set(target.recipe.stage_names)
        if unknown:
            raise RecipeValidationError(
                f"--force {', '.join(sorted(unknown))}: no such stage in {target.recipe.name!r}; "
                f"stages: {', '.join(target.recipe.stage_names)}"
            )
        scope_dir = self.output_root / plan.scope
        if dist.is_main():
            with writing(scope_dir):
                scope_dir.mkdir(parents=True, exist_ok=True)
                write_json(scope_dir / SCOPE_FILE, plan.scope_info)
                dist.marker(scope_dir).unlink(missing_ok=True)
        log.info("Outputs: %s", scope_dir)
        if dist.enabled():
            log.info("Rank %d of %d: rank 0 writes the run folders", dist.rank(), dist.world_size())
            dist.barrier()
        try:
            return self._run_plan(plan)
        except BaseException as err:
            if not dist.enabled() or isinstance(err, KeyboardInterrupt):
                raise
            message = getattr(err, "message", None) or f"{err.__class__.__name__}: {err}"
            if dist.claim_failure(dist.marker(scope_dir), message):
                raise
            raise dist.PeerFailedError(f"rank {dist.rank()} stopped: another rank failed ({message})") from err

    def _run_plan(self, plan: Plan) -> RecipeRun:
        target = plan.target
        for item in plan.order[:-1]:
            if item.recipe.name not in self.runs:
                log.info(
                    "Recipe %r needs recipe %r: running it first (finished stages are reused)",
                    target.recipe.name,
                    item.recipe.name,
                )
        for item in plan.order:
            if item.recipe.name not in self.runs:
                folder = RunFolder.of(self.output_root, plan.scope, item.recipe.name)
                forced = self.force if item is target else set()
                self.runs[item.recipe.name] = self._run_locked(item, folder, forced)
        return self.runs[target.recipe.name]

    # --- one recipe ----------------------------------------------------------------------

    def _run_locked(self, loaded: LoadedRecipe, folder: RunFolder, forced: set[str]) -> RecipeRun:
        if not dist.is_main():  # rank 0 holds the lock and writes the folder and its log
            return self._run_one(loaded, folder, forced)
        with folder.lock(wait=self.wait, on_wait=log.warning):
            with writing(folder.path):
                handler = logging.FileHandler(folder.log_file)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            previous_level = log.level
            if log.getEffectiveLevel() > logging.INFO:
                log.setLevel(logging.INFO)  # run.log always gets INFO
            try:
                return self._run_one(loaded, folder, forced)
            finally:
                log.setLevel(previous_level)
                log.removeHandler(handler)
                handler.close()

    def _resolve_models(self, loaded: LoadedRecipe, folder: RunFolder) -> dict[str, ResolvedModel]:
        resolved = {}
        for key, source in loaded.recipe.models.items():
            if isinstance(source, RecipeOutput):
                dep = RunFolder(folder.path.parent / source.recipe, folder.scope)
                try:
                    record = dep.read_stage(source.stage)
                except RunFolderError:
                    raise StageFailedError(
                        f"models -> {key}: {dep.stage_dir(source.stage)} is not finished; run recipe {source.recipe!r}"
                    ) from None
                resolved[key] = ResolvedModel(dep.stage_dir(source.stage), f"stage:{record.content_fingerprint}")
            else:
                resolved[key] = resolve_source(f"{loaded.path}: models -> {key}", source, loaded.base_dir)
        return resolved

    def _run_one(self, loaded: LoadedRecipe, folder: RunFolder, forced: set[str]) -> RecipeRun:
        recipe = loaded.recipe
        run = RecipeRun(loaded, folder)
        started = time.time()
        log.info("=== Recipe %r (%s) -> %s", recipe.name, loaded.path, folder.path)
        if dist.is_main():
            for stale in folder.remove_stale_temporaries():
                log.info("Removed %s, left by an interrupted run", stale.name)
            folder.write_recipe(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
        available = run.models = self._resolve_models(loaded, folder)
        data = RecipeData(recipe.dataset, recipe.seed, loaded.base_dir)
        check_labels(loaded, available, data)
        for index, spec in enumerate(recipe.stages):
            try:
                result = self._run_stage(spec, available, data, recipe.seed, spec.name in forced, folder)
            except Exception as err:
                skipped = recipe.stage_names[index + 1 :]
                if dist.is_main():
                    try:
                        self._write_run(run, started, failed=spec.name)
                    except RunFolderError as unrecorded:  # a full disk: the stage's own error says more
                        log.warning("%s", unrecorded.message)
                if isinstance(err, (StageFailedError, DatasetError, ModelSourceError)):
                    raise
                detail = err.message if isinstance(err, RecipeError) else f"{err.__class__.__name__}: {err}"
                raise StageFailedError(
                    f"Stage {spec.name!r} ({spec.type}) of recipe {recipe.name!r} failed: {detail}\n"
                    + (f"Not run: {', '.join(skipped)}. " if skipped else "")
                    + f"Finished stages are kept; rerun to resume. Log: {folder.log_file}"
                ) from err
            run.stages.append(result)
            if spec.produces_model:
                available[spec.name] = ResolvedModel(
                    folder.stage_dir(spec.name), f"stage:{result.record.content_fingerprint}"
                )
        if dist.is_main():
            self._write_run(run, started)
            log.info("=== Recipe %r done in %.1f s\n%s", recipe.name, time.time() - started, summary_table(run))
            if self.publisher is not None and recipe.publish is not None:
                run.published = self._publish(folder)
        run.published = dist.broadcast(run.published)  # the other ranks wait for run.json and the push
        return run

    def _publish(self, folder: RunFolder) -> str:
        log.info("Publishing %s", folder.path)
        try:
            url = self.publisher(folder.path)
        except RecipeError:
            raise
        except Exception as err:
            message = getattr(err, "message", None) or f"{err.__class__.__name__}: {err}"
            raise PublishError(
                f"Every stage finished, but publishing failed: {message}\n"
                f"Retry with `python -m hubtools push {folder.path}`, or run with --no-publish."
            ) from err
        log.info("Published: %s", url)
        return url

    # --- one stage -----------------------------------------------------------------------

    def _cached(self, folder: RunFolder, name: str, key: dict, fingerprint: str) -> tuple[StageRecord | None, str]:
        """The stage's record if it can be reused as is (its folder, or a result of the run cache
        made under this key, which then becomes its folder again); else None and why it reruns."""
        record, why = self._current(folder, name, key, fingerprint)
        if record is not None:
            return record, ""
        if folder.cached_result(name, fingerprint) is not None:
            record = folder.restore_cached(name, fingerprint)
            log.info("--- Stage %r: the run cache holds its result under this key (%s); restored it", name, why)
            return record, ""
        return None, why

    @staticmethod
    def _current(folder: RunFolder, name: str, key: dict, fingerprint: str) -> tuple[StageRecord | None, str]:
        if not folder.stage_dir(name).exists():
            return None, "new"
        try:
            record = folder.read_stage(name)
        except RunFolderError as err:
            return None, err.message
        if record.fingerprint != fingerprint:
            return None, "; ".join(cachekey.key_changes(record.key, key))
        damaged = changed_outputs(folder.stage_dir(name), record.outputs)
        if damaged:
            return None, "its files changed: " + ", ".join(damaged)
        return record, ""

    @staticmethod
    def _key(spec, available, data, seed) -> tuple[dict[str, ResolvedModel], dict, str]:
        """The stage's inputs by role, its cache key and fingerprint."""
        stage_type = STAGE_TYPES[spec.type]
        inputs = {role: available[ref] for role, ref in spec.refs().items()}
        key = cachekey.stage_key(
            spec,
            stage_type,
            {r: m.fingerprint for r, m in inputs.items()},
            data.fingerprint if spec.uses_dataset else None,
            seed,
        )
        return inputs, key, cachekey.fingerprint(key)

    def _worker_args(self, recipe: str, stage: str) -> list[str]:
        """``python -m recipes worker`` arguments that plan what this run planned and join ``stage``."""
        if self._plan is None:
            return []
        target = self._plan.target
        sets = [item for o in target.overrides for item in ("--set", o)]
        return [
            str(Path(target.path).resolve()),
            "--recipe",
            recipe,
            "--stage",
            stage,
            "--output-dir",
            str(self.output_root.resolve()),
            *sets,
        ]

    def _run_stage(self, spec, available, data, seed, force, folder: RunFolder) -> StageResult:
        """Run or reuse one stage. With several ranks, rank 0 decides whether it is cached and
        alone writes it; a training stage (:func:`recipes.engine.distributed.runs_on_every_rank`) runs on
        every rank, the others into a scratch folder that is thrown away, and any other stage on
        rank 0 alone; every rank then takes rank 0's record."""
        stage_type = STAGE_TYPES[spec.type]
        inputs, key, fingerprint = self._key(spec, available, data, seed)
        record, why = self._cached(folder, spec.name, key, fingerprint) if dist.is_main() else (None, "")
        record, why = dist.broadcast((record, why))
        if record is not None and not force:
            log.info("--- Stage %r didn't change, skipping (cached, %s)", spec.name, folder.stage_dir(spec.name))
            return StageResult(spec.name, "cached", 0.0, record)
        log.info("--- Stage %r (%s) starting [%s]", spec.name, spec.type, "forced" if force and record else why)
        problems = stage_type.input_problems(spec, {role: model.path for role, model in inputs.items()})
        if problems:
            raise RecipeValidationError("; ".join(problems))
        if not dist.is_main():
            return self._follow_stage(spec, stage_type, inputs, data, seed, force, folder, fingerprint)
        tmp_dir = folder.temp_dir(spec.name)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        try:  # from here on an error, Ctrl-C or SIGTERM leaves no temporary folder behind
            tmp_dir.mkdir(parents=True)
            if force:
                folder.remove_state(spec.name)
            warn_left_work(folder, spec.name, fingerprint, key)
            folder.open_state(spec.name, fingerprint, key)
            import transformers

            transformers.set_seed(seed)
            ctx = self._context(spec, inputs, data, seed, force, folder, fingerprint, tmp_dir)
            start = time.time()
            with restore_torch_threads(), _alone(spec):
                metrics = stage_type.run(spec, ctx) or {}
            wall = time.time() - start
            record = StageRecord(
                stage=spec.name,
                type=spec.type,
                fingerprint=fingerprint,
                key=key,
                refs=spec.refs(),
                outputs=hash_outputs(tmp_dir),
                metrics=metrics,
                wall_s=round(wall, 2),
                finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            folder.finish_stage(tmp_dir, record)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        folder.remove_state(spec.name)
        log.info("--- Stage %r finished in %.1f s", spec.name, wall)
        dist.broadcast(record)  # the other ranks wait for the finished folder
        return StageResult(spec.name, "ran", wall, record)

    def _context(self, spec, inputs, data, seed, force, folder: RunFolder, fingerprint: str, out_dir: Path):
        return StageContext(
            out_dir=out_dir,
            inputs={role: model.path for role, model in inputs.items()},
            seed=seed,
            threads=os.cpu_count() or 1,
            data=data,
            log=log,
            state_dir=folder.state_dir(spec.name, fingerprint),
            stage_id=f"{folder.recipe}.{spec.name}.{fingerprint[:16]}",
            resume=not force,
            workers=self.workers,
            worker_args=self._worker_args(folder.recipe, spec.name),
        )

    def _follow_stage(self, spec, stage_type, inputs, data, seed, force, folder, fingerprint) -> StageResult:
        """A rank other than 0: train along (a distributed stage, into scratch), then take rank
        0's record once it finished the stage folder."""
        start = time.time()
        if dist.runs_on_every_rank(spec):
            import transformers

            scratch = Path(tempfile.mkdtemp(prefix=f"recipes-rank{dist.rank()}-{spec.name}-"))
            try:
                transformers.set_seed(seed)
                ctx = self._context(spec, inputs, data, seed, force, folder, fingerprint, scratch)
                with restore_torch_threads():
                    stage_type.run(spec, ctx)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        record = dist.broadcast()
        log.info("--- Stage %r finished on rank 0", spec.name)
        return StageResult(spec.name, "ran", time.time() - start, record)

    # --- another process on the same stage -------------------------------------------------

    def join(self, plan: Plan, stage: str, recipe: str | None = None, threads: int | None = None):
        """``(spec, ctx)`` for another process that works on ``stage`` of ``recipe`` (default:
        the plan's target) while a run of ``plan`` runs it: the same inputs, data, cache key,
        state folder and stage id. Stages before it that make models must be finished in this
        output root (a shared folder, or a copy), else it raises :class:`StageFailedError`.
        ``ctx.out_dir`` is the state folder: a joining process writes no stage output."""
        loaded = next((o for o in plan.order if o.recipe.name == (recipe or plan.target.recipe.name)), None)
        if loaded is None:
            raise RecipeValidationError(
                f"--recipe {recipe}: not in the plan ({', '.join(o.recipe.name for o in plan.order)})"
            )
        if stage not in loaded.recipe.stage_names:
            raise RecipeValidationError(
                f"--stage {stage}: recipe {loaded.recipe.name!r} has no such stage; "
                f"stages: {', '.join(loaded.recipe.stage_names)}"
            )
        self._plan = plan
        folder = RunFolder.of(self.output_root, plan.scope, loaded.recipe.name)
        available = self._resolve_models(loaded, folder)
        data = RecipeData(loaded.recipe.dataset, loaded.recipe.seed, loaded.base_dir)
        for earlier in loaded.recipe.stages:
            if earlier.name == stage:
                spec = earlier
                break
            if earlier.produces_model:
                try:
                    record = folder.read_stage(earlier.name)
                except RunFolderError:
                    raise StageFailedError(
                        f"stage {earlier.name!r} of recipe {loaded.recipe.name!r}, which {stage!r} follows, is not "
                        f"finished in {folder.path}: run the recipe there first, or share that folder"
                    ) from None
                available[earlier.name] = ResolvedModel(
                    folder.stage_dir(earlier.name), f"stage:{record.content_fingerprint}"
                )
        inputs, _key, fingerprint = self._key(spec, available, data, loaded.recipe.seed)
        state = folder.state_dir(spec.name, fingerprint)
        ctx = StageContext(
            out_dir=state,
            inputs={role: model.path for role, model in inputs.items()},
            seed=loaded.recipe.seed,
            threads=threads or os.cpu_count() or 1,
            data=data,
            log=log,
            state_dir=state,
            stage_id=f"{folder.recipe}.{spec.name}.{fingerprint[:16]}",
        )
        return spec, ctx

    def _write_run(self, run: RecipeRun, started: float, failed: str | None = None) -> None:
        loaded = run.loaded
        record = RunRecord(
            recipe=loaded.recipe.name,
            scope=run.folder.scope,
            recipe_file=str(loaded.path),
            recipe_sha256=loaded.sha256,
            recipe_text=loaded.text,
            overrides=loaded.overrides,
            resolved=loaded.recipe.model_dump(mode="json"),
            seed=loaded.recipe.seed,
            status=f"failed at {failed}" if failed else "finished",
            git_commit=git_commit(),
            machine=machine_info(),
            wall_s=round(time.time() - started, 2),
            final_model=loaded.recipe.final_model,
            models={
                name: {"path": str(m.path.resolve()), "fingerprint": m.fingerprint} for name, m in run.models.items()
            },
            stages=[
                StageEntry(
                    name=s.name,
                    type=s.record.type,
                    status=s.status,
                    fingerprint=s.fingerprint,
                    wall_s=round(s.wall_s, 2),
                    run_wall_s=s.record.wall_s,
                    refs=s.record.refs,
                    inputs=s.record.inputs,
                    outputs=s.record.outputs,
                    metrics=s.record.metrics,
                    publishing=dataclasses.asdict(STAGE_TYPES[s.record.type].publishing),
                ).__dict__
                for s in run.stages
            ],
        )
        run.folder.write_run(record)


def _alone(spec):
    """Rank 0 runs a stage that is not distributed as if it were the only process."""
    return contextlib.nullcontext() if dist.runs_on_every_rank(spec) else dist.single_process()


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def summary_table(run: RecipeRun) -> str:
    """One line per stage: name, ran or cached, wall seconds and its numeric metrics."""
    width = max([len("stage"), *(len(s.name) for s in run.stages)]) + 2
    lines = [f"{'stage':<{width}}{'status':<8}{'wall s':>9}  result", "-" * (width + 44)]
    for s in run.stages:
        metrics = s.record.metrics or {}
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        lines.append(f"{s.name:<{width}}{s.status:<8}{s.record.wall_s:>9.1f}  {text}")
    return "\n".join(lines)
