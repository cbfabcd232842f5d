"""Run recipes: plan (dependencies first), resolve models, fingerprint, skip, record.

Each stage writes into ``outputs/<recipe>/<stage>/`` through a temporary folder that is
renamed into place only after the stage finished and its ``.stage.json`` record (the
fingerprint) was written, so a killed run never leaves a half model that looks done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .data import RecipeData
from .errors import PublishError, RecipeValidationError, StageFailedError
from .loader import LoadedRecipe, load_recipe
from .schema import RecipeOutput
from .sources import ResolvedModel, resolve_source
from .stages import STAGE_TYPES, StageContext
from .environment import machine_info

log = logging.getLogger("recipes")

STAGE_RECORD = ".stage.json"
RUN_FILE = "run.json"
RESOLVED_RECIPE_FILE = "recipe.yaml"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete what an interrupted run left: temporary stage folders and files (``.*.tmp-<pid>``)
    and replaced stage folders not yet removed (``.*.old-<pid>``)."""
    for stale in [*out_dir.glob(".*.tmp-*"), *out_dir.glob(".*.old-*")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def read_stage_record(stage_dir: Path) -> dict | None:
    """The finished stage's record, or None. An unreadable record is a warning and a miss."""
    path = stage_dir / STAGE_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("Ignoring unreadable stage record %s (%s): the stage will rerun", path, err)
        return None


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "cached"
    fingerprint: str
    wall_s: float
    record: dict


@dataclass
class RecipeRun:
    loaded: LoadedRecipe
    out_dir: Path
    stages: list[StageResult] = field(default_factory=list)
    models: dict[str, ResolvedModel] = field(default_factory=dict)  # every model name -> folder
    published: str | None = None  # commit URL when the run was pushed


class Runner:
    """Runs a recipe and, first, the recipes whose models it takes."""

    def __init__(self, output_root: Path = Path("outputs"), force: tuple[str, ...] = (), publish: bool = False):
        self.output_root = Path(output_root)
        self.force = set(force)
        self.publish = publish  # push each recipe that has a `publish:` section, once finished
        self.runs: dict[str, RecipeRun] = {}  # recipe name -> its run, in the order they ran

    # --- planning ------------------------------------------------------------------------

    def plan(self, loaded: LoadedRecipe) -> list[LoadedRecipe]:
        """The recipes to run, dependencies first; validates every one before anything runs."""
        order: list[LoadedRecipe] = []

        def visit(item: LoadedRecipe, stack: tuple[str, ...]) -> None:
            name = item.recipe.name
            if name in stack:
                raise RecipeValidationError(f"Recipes depend on each other in a cycle: {' -> '.join(stack + (name,))}")
            if any(o.recipe.name == name for o in order):
                return
            for dep_name in self._dependencies(item):
                dep = load_recipe(dep_name, search_dir=item.base_dir)
                visit(dep, stack + (name,))
            order.append(item)

        visit(loaded, ())
        by_name = {o.recipe.name: o for o in order}
        for item in order:
            for key, source in item.recipe.models.items():
                if isinstance(source, RecipeOutput):
                    dep = by_name[source.recipe].recipe
                    if source.stage not in dep.stage_names or not dep.stage(source.stage).produces_model:
                        made = [s.name for s in dep.stages if s.produces_model]
                        raise RecipeValidationError(
                            f"{item.path}: models -> {key} takes stage {source.stage!r} of recipe "
                            f"{source.recipe!r}, which has no such model-producing stage; allowed: {made}"
                        )
        unknown = self.force - set(loaded.recipe.stage_names)
        if unknown:
            raise RecipeValidationError(
                f"--force {', '.join(sorted(unknown))}: no such stage in {loaded.recipe.name!r}; "
                f"stages: {', '.join(loaded.recipe.stage_names)}"
            )
        return order

    @staticmethod
    def _dependencies(item: LoadedRecipe) -> list[str]:
        deps = list(item.recipe.requires)
        deps += [s.recipe for s in item.recipe.models.values() if isinstance(s, RecipeOutput)]
        return list(dict.fromkeys(deps))

    # --- running -------------------------------------------------------------------------

    def run(self, loaded: LoadedRecipe) -> RecipeRun:
        order = self.plan(loaded)
        for item in order[:-1]:
            if item.recipe.name not in self.runs:
                log.info("Recipe %r needs recipe %r: running it first (finished stages are reused)",
                         loaded.recipe.name, item.recipe.name)
        result = None
        for item in order:
            if item.recipe.name not in self.runs:
                self.runs[item.recipe.name] = self._run_one(item, forced=self.force if item is loaded else set())
            result = self.runs[item.recipe.name]
        return result

    def _resolve_models(self, loaded: LoadedRecipe) -> dict[str, ResolvedModel]:
        resolved = {}
        for key, source in loaded.recipe.models.items():
            if isinstance(source, RecipeOutput):
                stage_dir = self.output_root / source.recipe / source.stage
                record = read_stage_record(stage_dir)
                if record is None:
                    raise StageFailedError(f"models -> {key}: {stage_dir} is not finished; run recipe {source.recipe!r}")
                resolved[key] = ResolvedModel(stage_dir, f"stage:{record['fingerprint']}")
            else:
                resolved[key] = resolve_source(f"{loaded.path}: models -> {key}", source, loaded.base_dir)
        return resolved

    def _run_one(self, loaded: LoadedRecipe, forced: set[str]) -> RecipeRun:
        recipe = loaded.recipe
        out_dir = self.output_root / recipe.name
        out_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(out_dir / "run.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        previous_level = log.level
        log.setLevel(min(previous_level or logging.INFO, logging.INFO))  # run.log always gets INFO
        run = RecipeRun(loaded, out_dir)
        started = time.time()
        try:
            log.info("=== Recipe %r (%s) -> %s", recipe.name, loaded.path, out_dir)
            remove_stale_temporaries(out_dir)
            atomic_write_text(out_dir / RESOLVED_RECIPE_FILE, yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
            available = run.models = self._resolve_models(loaded)
            data = RecipeData(recipe.dataset, recipe.seed, loaded.base_dir)
            for index, spec in enumerate(recipe.stages):
                try:
                    result = self._run_stage(spec, available, data, recipe.seed, spec.name in forced, out_dir)
                except Exception as err:
                    skipped = recipe.stage_names[index + 1 :]
                    self._write_run_json(run, started, failed=spec.name)
                    if isinstance(err, StageFailedError):
                        raise
                    raise StageFailedError(
                        f"Stage {spec.name!r} ({spec.type}) of recipe {recipe.name!r} failed: "
                        f"{err.__class__.__name__}: {err}\n"
                        + (f"Not run: {', '.join(skipped)}. " if skipped else "")
                        + f"Finished stages are kept; rerun to resume. Log: {out_dir / 'run.log'}"
                    ) from err
                run.stages.append(result)
                if spec.produces_model:
                    available[spec.name] = ResolvedModel(out_dir / spec.name, f"stage:{result.fingerprint}")
            self._write_run_json(run, started)
            log.info("=== Recipe %r done in %.1f s\n%s", recipe.name, time.time() - started, summary_table(run))
            if self.publish and recipe.publish is not None:
                run.published = publish_run(out_dir)
        finally:
            log.setLevel(previous_level)
            log.removeHandler(handler)
            handler.close()
        return run

    def _run_stage(self, spec, available, data, seed, force, out_dir) -> StageResult:
        inputs = {role: available[ref] for role, ref in spec.refs().items()}
        fingerprint = stage_fingerprint(spec, inputs, data.fingerprint if spec.uses_dataset else None, seed)
        stage_dir = out_dir / spec.name
        record = read_stage_record(stage_dir)
        if record and record.get("fingerprint") == fingerprint and not force:
            log.info("--- Stage %r didn't change, skipping (cached, %s)", spec.name, stage_dir)
            return StageResult(spec.name, "cached", fingerprint, 0.0, record)
        reason = "forced" if force else ("changed" if record else "new")
        log.info("--- Stage %r (%s) starting [%s]", spec.name, spec.type, reason)
        tmp_dir = out_dir / f".{spec.name}.tmp-{os.getpid()}"
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
            metrics = STAGE_TYPES[spec.type].run(spec, ctx) or {}
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        wall = time.time() - start
        record = {
            "stage": spec.name,
            "type": spec.type,
            "fingerprint": fingerprint,
            "spec": spec.model_dump(mode="json"),
            "refs": spec.refs(),
            "inputs": {role: model.fingerprint for role, model in inputs.items()},
            "outputs": {str(p.relative_to(tmp_dir)): sha256_file(p) for p in sorted(tmp_dir.rglob("*")) if p.is_file()},
            "metrics": metrics,
            "wall_s": round(wall, 2),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_text(tmp_dir / STAGE_RECORD, json.dumps(record, indent=2) + "\n")
        if stage_dir.exists():
            old = out_dir / f".{spec.name}.old-{os.getpid()}"
            os.replace(stage_dir, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp_dir, stage_dir)
        log.info("--- Stage %r finished in %.1f s", spec.name, wall)
        return StageResult(spec.name, "ran", fingerprint, wall, record)

    def _write_run_json(self, run: RecipeRun, started: float, failed: str | None = None) -> None:
        loaded = run.loaded
        payload = {
            "recipe": loaded.recipe.name,
            "recipe_file": str(loaded.path),
            "recipe_sha256": loaded.sha256,
            "recipe_text": loaded.text,
            "overrides": loaded.overrides,
            "resolved": loaded.recipe.model_dump(mode="json"),
            "seed": loaded.recipe.seed,
            "status": f"failed at {failed}" if failed else "finished",
            "git_commit": git_commit(),
            "machine": machine_info(),
            "wall_s": round(time.time() - started, 2),
            "final_model": loaded.recipe.final_model,
            "models": {
                name: {"path": str(m.path.resolve()), "fingerprint": m.fingerprint} for name, m in run.models.items()
            },
            "stages": [
                {"name": s.name, "type": s.record.get("type"), "refs": s.record.get("refs"), "status": s.status,
                 "fingerprint": s.fingerprint, "wall_s": round(s.wall_s, 2), "run_wall_s": s.record.get("wall_s"), "inputs": s.record.get("inputs"),
                 "outputs": s.record.get("outputs"), "metrics": s.record.get("metrics")}
                for s in run.stages
            ],
        }
        atomic_write_text(run.out_dir / RUN_FILE, json.dumps(payload, indent=2) + "\n")


def publish_run(out_dir: Path) -> str:
    """Push a finished run with ``hubtools`` (one commit: model, card, benchmark, recipe)."""
    from hubtools.errors import HubToolsError
    from hubtools.push import push_run

    log.info("Publishing %s", out_dir)
    try:
        url = push_run(out_dir)
    except HubToolsError as err:
        raise PublishError(
            f"Every stage finished, but publishing failed: {err.message}\n"
            f"Retry with `python -m hubtools push {out_dir}`, or run with --no-publish."
        ) from err
    log.info("Published: %s", url)
    return url


def stage_fingerprint(spec, inputs: dict[str, ResolvedModel], data_fingerprint: str | None, seed: int) -> str:
    """sha256 of the stage's resolved spec, its inputs' fingerprints, and the data it reads."""
    payload = {
        "spec": spec.model_dump(mode="json"),
        "inputs": {role: model.fingerprint for role, model in sorted(inputs.items())},
        "data": data_fingerprint,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def summary_table(run: RecipeRun) -> str:
    lines = [f"{'stage':<16}{'status':<8}{'wall s':>9}  result", "-" * 60]
    for s in run.stages:
        metrics = s.record.get("metrics") or {}
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        lines.append(f"{s.name:<16}{s.status:<8}{s.record.get('wall_s', 0):>9.1f}  {text}")
    return "\n".join(lines)
