"""``python -m recipes worker RECIPE --stage NAME``: work on a stage of another process's run.

A worker plans RECIPE with the same ``--set`` items as the main run (``python -m recipes run
RECIPE ...``), finds the stage, its inputs and its cache key as the main run does
(:meth:`recipes.engine.runner.Runner.join`) and joins its work, as the stage type declares it
(``register(..., join=...)``): for a search, the Optuna study named after that key, in the
storage the recipe names (SQLite in the stage's state
folder by default, so a worker on this machine needs nothing more; a PostgreSQL URL for other
machines). It runs trials until the study has ``n_trials`` and exits. It never writes the
stage's output or the run folder's records, and takes no lock: the main run does both.

``run --workers N`` starts ``N - 1`` of these itself, each with ``threads // N`` threads.
"""

from __future__ import annotations

import logging

from ..errors import RecipeValidationError, StageFailedError
from ..plan.planning import make_plan

log = logging.getLogger("recipes")


def run_worker(
    recipe: str,
    stage: str,
    overrides: list[str] = (),
    output_dir: str = "outputs",
    recipe_name: str | None = None,
    threads: int | None = None,
    wait_s: float = 300.0,
) -> int:
    """Join ``stage`` of ``recipe_name`` (default: ``recipe`` itself) in the plan of ``recipe``
    with ``overrides``; return the number of trials this process ran."""
    from pathlib import Path

    from ..stages import STAGE_TYPES
    from .runner import Runner
    from .threads import restore_torch_threads

    plan = make_plan(str(recipe), list(overrides))
    spec, ctx = Runner(output_root=Path(output_dir)).join(plan, stage, recipe_name, threads)
    join = STAGE_TYPES[spec.type].join
    if join is None:
        joinable = sorted(name for name, t in STAGE_TYPES.items() if t.join is not None)
        raise RecipeValidationError(
            f"--stage {stage}: a {spec.type!r} stage runs in one process; workers can join: {', '.join(joinable)}"
        )
    import torch
    import transformers

    with restore_torch_threads():
        torch.set_num_threads(ctx.threads)
        transformers.set_seed(ctx.seed)
        log.info("Worker for stage %r (%s), %d thread(s), study %s", stage, spec.type, ctx.threads, ctx.stage_id)
        try:
            return join(spec, ctx, wait_s)
        except (StageFailedError, RecipeValidationError):
            raise
        except ValueError as err:
            raise StageFailedError(f"Worker for stage {stage!r}: {err}") from err
