"""Run a plan: each recipe in order (dependencies first), each stage cached by its key.

A stage is skipped only when its key (see :mod:`recipes.cachekey`: settings, inputs, rows,
seed, code, library versions) matches its record AND its files still have the recorded
hashes; otherwise it reruns and the log says why. A stage writes into a temporary folder
that becomes the stage folder only when it finished (see :mod:`recipes.runfolder`), so a
killed run never leaves a half model that looks done. One run at a time holds a run folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from . import cachekey
from .data import RecipeData
from .environment import machine_info
from .errors import DatasetError, ModelSourceError, PublishError, RecipeError, RecipeValidationError, StageFailedError
from .labels import check_labels
from .loader import LoadedRecipe
from .planning import Plan, make_plan
from .runfolder import (
    SCOPE_FILE,
    RunFolder,
    RunFolderError,
    RunRecord,
    StageEntry,
    StageRecord,
    changed_outputs,
    hash_outputs,
    write_json,
)
from .schema import RecipeOutput
from .sources import ResolvedModel, resolve_source
from .stages import STAGE_TYPES, StageContext
from .threads import restore_torch_threads

log = logging.getLogger("recipes")

#: Publishes a finished run folder and returns a URL; given by the entry point (e.g. hubtools).
Publisher = Callable[[Path], str]


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
    """

    def __init__(
        self,
        output_root: Path = Path("outputs"),
        force: tuple[str, ...] = (),
        publisher: Publisher | None = None,
        wait: bool = True,
    ):
        self.output_root = Path(output_root)
        self.force = set(force)
        self.publisher = publisher
        self.wait = wait
        self.runs: dict[str, RecipeRun] = {}  # recipe name -> its run, in the order they ran

    def run(self, recipe: Plan | LoadedRecipe) -> RecipeRun:
        """Run ``recipe`` (a plan, or a loaded recipe to plan) and the recipes it needs first."""
        plan = recipe if isinstance(recipe, Plan) else make_plan(str(recipe.path), recipe.overrides)
        target = plan.target
        unknown = self.force - set(target.recipe.stage_names)
        if unknown:
            raise RecipeValidationError(
                f"--force {', '.join(sorted(unknown))}: no such stage in {target.recipe.name!r}; "
                f"stages: {', '.join(target.recipe.stage_names)}"
            )
        scope_dir = self.output_root / plan.scope
        scope_dir.mkdir(parents=True, exist_ok=True)
        write_json(scope_dir / SCOPE_FILE, plan.scope_info)
        log.info("Outputs: %s", scope_dir)
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
        with folder.lock(wait=self.wait, on_wait=log.warning):
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
                self._write_run(run, started, failed=spec.name)
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
        self._write_run(run, started)
        log.info("=== Recipe %r done in %.1f s\n%s", recipe.name, time.time() - started, summary_table(run))
        if self.publisher is not None and recipe.publish is not None:
            run.published = self._publish(folder)
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
        """The stage's record if it can be reused as is; else None and why it reruns."""
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

    def _run_stage(self, spec, available, data, seed, force, folder: RunFolder) -> StageResult:
        stage_type = STAGE_TYPES[spec.type]
        inputs = {role: available[ref] for role, ref in spec.refs().items()}
        key = cachekey.stage_key(
            spec,
            stage_type,
            {r: m.fingerprint for r, m in inputs.items()},
            data.fingerprint if spec.uses_dataset else None,
            seed,
        )
        fingerprint = cachekey.fingerprint(key)
        record, why = self._cached(folder, spec.name, key, fingerprint)
        if record is not None and not force:
            log.info("--- Stage %r didn't change, skipping (cached, %s)", spec.name, folder.stage_dir(spec.name))
            return StageResult(spec.name, "cached", 0.0, record)
        log.info("--- Stage %r (%s) starting [%s]", spec.name, spec.type, "forced" if force and record else why)
        tmp_dir = folder.temp_dir(spec.name)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
        import transformers

        transformers.set_seed(seed)
        ctx = StageContext(
            out_dir=tmp_dir,
            inputs={role: model.path for role, model in inputs.items()},
            seed=seed,
            threads=os.cpu_count() or 1,
            data=data,
            log=log,
        )
        start = time.time()
        try:
            with restore_torch_threads():
                metrics = stage_type.run(spec, ctx) or {}
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
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
        log.info("--- Stage %r finished in %.1f s", spec.name, wall)
        return StageResult(spec.name, "ran", wall, record)

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
                ).__dict__
                for s in run.stages
            ],
        )
        run.folder.write_run(record)


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
    lines = [f"{'stage':<16}{'status':<8}{'wall s':>9}  result", "-" * 60]
    for s in run.stages:
        metrics = s.record.metrics or {}
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        lines.append(f"{s.name:<16}{s.status:<8}{s.record.wall_s:>9.1f}  {text}")
    return "\n".join(lines)
