"""What every stage is: a strict pydantic spec plus a ``run(spec, ctx)`` function.

Lifecycle (owned by :mod:`recipes.runner`, never by a stage):

1. the recipe is validated; each stage entry becomes its registered spec class;
2. the runner resolves the stage's model references (:meth:`StageSpec.refs`) to local
   directories and fingerprints the stage from its spec and its inputs' fingerprints;
3. on a cache miss it calls ``run(spec, ctx)`` with an empty temporary ``ctx.out_dir``;
4. when ``run`` returns, the runner marks the directory finished and moves it into place.

A stage reads only ``ctx`` and writes only under ``ctx.out_dir``; the dict it returns
(JSON-able metrics) is stored in the stage's record and in ``run.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, Field

STAGE_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"


class StrictSpec(BaseModel):
    """Base for every recipe section: unknown or misspelt keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid")


class StageSpec(StrictSpec):
    """Fields shared by every stage: a unique ``name`` and its ``type``."""

    name: str = Field(pattern=STAGE_NAME_PATTERN, description="Unique name; also the output folder.")
    #: Whether the stage writes a model that later stages or the benchmark can take.
    produces_model: ClassVar[bool] = True
    #: Whether the stage's result depends on the recipe's dataset section.
    uses_dataset: ClassVar[bool] = True

    def refs(self) -> dict[str, str]:
        """Model references this stage reads, by role (e.g. ``{"input": "teacher"}``)."""
        return {}


@dataclass
class StageContext:
    """Everything a stage may read: its resolved inputs, the data, and where to write."""

    out_dir: Path
    inputs: dict[str, Path]  # role -> local model directory
    seed: int
    threads: int
    data: Any  # recipes.data.RecipeData (lazy)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("recipes"))
    #: Scratch for one stage run, never saved: what a stage computes once and reuses across
    #: the calls it makes itself (``search-distill`` trials share the teacher's logits).
    memo: dict = field(default_factory=dict)


StageFn = Callable[[Any, StageContext], dict]


@dataclass(frozen=True)
class StageType:
    spec: type[StageSpec]
    run: StageFn


#: The stage registry: ``type`` in a recipe -> (spec class, run function).
STAGE_TYPES: dict[str, StageType] = {}


def register(type_name: str, spec: type[StageSpec]) -> Callable[[StageFn], StageFn]:
    """Register ``run`` under ``type_name``; ``spec.type`` must be ``Literal[type_name]``."""

    def decorator(fn: StageFn) -> StageFn:
        if type_name in STAGE_TYPES:
            raise RuntimeError(f"stage type {type_name!r} registered twice")
        STAGE_TYPES[type_name] = StageType(spec=spec, run=fn)
        return fn

    return decorator
