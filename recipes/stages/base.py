"""What every stage is: a strict pydantic spec plus a ``run(spec, ctx)`` function.

Lifecycle (owned by :mod:`recipes.engine.runner`, never by a stage):

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..plan.bounds import Name
from ..runfolder import NOT_PUBLISHED, PYTORCH, Publishing, read_format


class StrictSpec(BaseModel):
    """Base for every recipe section: unknown or misspelt keys are errors, not ignored, and
    values keep their type: ``true`` or ``'3'`` is no number, ``'yes'`` no boolean, ``1`` no text
    (a whole number still stands for a float: ``alpha: 0``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class StageSpec(StrictSpec):
    """Fields shared by every stage: a unique ``name`` and its ``type``."""

    name: Name = Field(description="Unique name; also the output folder.")
    #: Whether the stage writes a model that later stages or the benchmark can take.
    produces_model: ClassVar[bool] = True
    #: Whether every rank of a multi-process run (torchrun) runs the stage, data-parallel;
    #: False: rank 0 alone runs it while the others wait (see :mod:`recipes.engine.distributed`).
    distributed: ClassVar[bool] = False
    #: Whether the stage's result depends on the recipe's dataset section.
    uses_dataset: ClassVar[bool] = True
    #: Whether the stage needs the dataset's out-of-scope label (``dataset.oos_label``).
    needs_oos_label: ClassVar[bool] = False

    def refs(self) -> dict[str, str]:
        """Model references this stage reads, by role (e.g. ``{"input": "teacher"}``)."""
        return {}

    def labelled_roles(self) -> set[str]:
        """Roles whose model must already classify the dataset's labels (checked before any
        training); a model that gets a new head (a fine-tuning base, a student) is not one."""
        return set(self.refs())

    def output_traits(self) -> dict[str, str]:
        """What a later stage may need to know of the model this stage writes, beyond its format:
        trait -> the setting that gives it (``{"int8": "int8"}``, ``{"fp16": "fp16: true"}``); see
        :meth:`source_problem`."""
        return {}

    def source_problem(self, role: str, source: StageSpec) -> str | None:
        """Why this stage cannot take the model that the earlier stage ``source`` of the same
        recipe writes, beyond its format (which the registry's ``accepts`` covers); None if it can."""
        return None


@dataclass
class StageContext:
    """Everything a stage may read: its resolved inputs, the data, and where to write."""

    out_dir: Path
    inputs: dict[str, Path]  # role -> local model directory
    seed: int
    threads: int
    data: Any  # recipes.ml.data.RecipeData (lazy)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("recipes"))
    #: Scratch for one stage run, never saved: what a stage computes once and reuses across
    #: the calls it makes itself (``search-distill`` trials share the teacher's logits).
    memo: dict = field(default_factory=dict)
    #: The stage's own folder that outlives a failed or killed run (``<run folder>/.state/
    #: <stage>-<fingerprint[:12]>``): work a rerun with the same cache key resumes from (the
    #: ``search-distill`` study and its trials' models). The runner removes it once the stage
    #: finished; a changed key gets another folder. None: the stage has nothing to resume.
    state_dir: Path | None = None
    #: The stage's name beyond this process: ``<recipe>.<stage>.<fingerprint[:16]>``, the same
    #: on every machine with the same settings, inputs, data, code and libraries (the
    #: ``search-distill`` study's name).
    stage_id: str = ""
    #: False when the stage was forced (``--force``): start over instead of resuming.
    resume: bool = True
    #: Processes that work on the stage together (``run --workers N``): this one and N - 1
    #: workers that it starts; each gets ``threads // workers`` threads.
    workers: int = 1
    #: The ``python -m recipes worker`` arguments that join this stage from another process
    #: (the plan's recipe, ``--set`` items, output root, stage); empty where none can.
    worker_args: list[str] = field(default_factory=list)
    #: Trainer callbacks a training stage adds to its trainer (``search-distill`` reports each
    #: epoch's eval metric to Optuna through one, which may stop a hopeless trial).
    callbacks: list = field(default_factory=list)


StageFn = Callable[[Any, StageContext], dict]


#: Libraries whose versions shape a stage's output; each stage type names its own set, so an
#: upgrade reruns the stages it can change and no others (see :mod:`recipes.engine.cachekey`).
TRAINING_LIBRARIES = ("torch", "transformers", "accelerate", "datasets", "tokenizers")
ONNX_LIBRARIES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime")


#: What a worker process does when it joins a stage (``python -m recipes worker``):
#: ``join(spec, ctx, wait_s) -> summary``.
JoinFn = Callable[[Any, StageContext, float], dict]


@dataclass(frozen=True)
class StageType:
    """A registered stage type: everything the rest of the project asks about it.

    ``spec``/``run``: its settings and what it does. ``libraries``: the distributions whose
    versions shape its output (part of its cache key). ``publishing``: what the card and the push
    take from it (:class:`~recipes.runfolder.Publishing`; the runner copies it into ``run.json``).
    ``accepts``: the model formats its model inputs may have (None: any); ``makes``: the format
    of the model it writes (None: it writes no model). ``join``: the work another process does
    on the same stage (:mod:`recipes.engine.worker`), or None when the stage runs in one process.
    """

    spec: type[StageSpec]
    run: StageFn
    libraries: tuple[str, ...] = ()
    publishing: Publishing = NOT_PUBLISHED
    accepts: tuple[str, ...] | None = (PYTORCH,)
    makes: str | None = PYTORCH
    join: JoinFn | None = None

    def input_problems(self, spec: StageSpec, inputs: dict[str, Path]) -> list[str]:
        """Why the model folders given to ``spec`` (role -> folder) have formats it does not take."""
        if self.accepts is None:
            return []
        problems = []
        for role, folder in sorted(inputs.items()):
            found = read_format(folder).format
            if found not in self.accepts:
                problems.append(
                    f"{spec.type} takes {format_names(self.accepts)} as its {role}; {spec.refs()[role]!r} is a "
                    f"{found!r} model: {format_hint(self.accepts, spec.refs()[role])}"
                )
        return problems


#: The stage registry: ``type`` in a recipe -> :class:`StageType`. Filled as the stage modules are
#: imported (:mod:`recipes.stages` finds them), each by its own :func:`register`.
STAGE_TYPES: dict[str, StageType] = {}

#: How messages name a model format.
FORMAT_NAMES = {
    PYTORCH: "a PyTorch fp32 model",
    "onnx": "an ONNX model",
    "pytorch-dynamic-int8": "a PyTorch int8 model",
}


def format_names(formats: tuple[str, ...]) -> str:
    return " or ".join(FORMAT_NAMES.get(f, f"a {f!r} model") for f in formats)


def format_hint(accepts: tuple[str, ...], ref: str) -> str:
    """How to give a stage a model of a format it takes, from what the registered types make."""
    if PYTORCH in accepts:
        return "run it on the PyTorch fp32 model, before exporting or quantizing"
    makers = sorted(
        name for name, t in STAGE_TYPES.items() if t.makes in accepts and t.accepts and PYTORCH in t.accepts
    )
    if makers:
        article = "an" if makers[0][0] in "aeiou" else "a"
        return f"add {article} {' or '.join(makers)} stage with input {ref!r} and take its model"
    return f"give it {format_names(accepts)}"


def register(
    type_name: str,
    spec: type[StageSpec],
    libraries: tuple[str, ...],
    publishing: Publishing = NOT_PUBLISHED,
    *,
    accepts: tuple[str, ...] | None = (PYTORCH,),
    makes: str | None = PYTORCH,
    join: JoinFn | None = None,
) -> Callable[[StageFn], StageFn]:
    """Register ``run`` under ``type_name``; ``spec.type`` must be ``Literal[type_name]``. The
    arguments are the fields of :class:`StageType`: a stage module declares here everything
    other code asks about its type, and no other module names the type."""

    def decorator(fn: StageFn) -> StageFn:
        if type_name in STAGE_TYPES:
            raise RuntimeError(f"stage type {type_name!r} registered twice")
        if (makes is None) == spec.produces_model:
            raise RuntimeError(f"stage type {type_name!r}: makes={makes!r} but produces_model={spec.produces_model}")
        STAGE_TYPES[type_name] = StageType(
            spec=spec,
            run=fn,
            libraries=tuple(libraries),
            publishing=publishing,
            accepts=tuple(accepts) if accepts is not None else None,
            makes=makes,
            join=join,
        )
        return fn

    return decorator
