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


#: The Hub's ``base_model_relation`` values a stage type may declare, strongest change first:
#: a model whose line holds a fine-tune and a quantization is a fine-tune of its base.
RELATIONS = ("finetune", "merge", "adapter", "quantized")


@dataclass(frozen=True)
class Publishing:
    """What a stage type's model means on a model card and in a published Hub repo.

    Each stage module declares one and passes it to :func:`register`; ``hubtools`` reads it
    through :data:`STAGE_TYPES` and knows no stage type by name, so a new stage type needs no
    edit there (only, if it brings a new way to load a model, a card partial).

    ``tag``
        Card tag of a recipe that uses the type (``"quantization"``), or None.
    ``relation``
        What the type makes of its input, as the Hub's ``base_model_relation`` (one of
        :data:`RELATIONS`): ``"finetune"`` for a stage that trains weights, ``"quantized"``
        for one that only quantizes them; None for a conversion (an ONNX export).
    ``phrase``
        The card's line-of-descent text for a model it made; ``{field}`` is a field of the
        stage's spec: ``"distilled from `{input}`"``. Empty: a generic phrase.
    ``repo_dir``
        Where its model's weight files (its ``model_format.json`` ``weights``) go in the
        repo: ``""`` the root, for PyTorch fp32 that ``pipeline(model=repo_id)`` loads (its
        config and tokenizer come along); a folder (``"onnx"``); None: never published (it
        makes no model, or none a user would load).
    ``usage``
        The card partial, under ``cards/partials/``, that shows how to load its model from
        ``repo_dir`` (``"usage/onnx.md.j2"``), or None.
    """

    tag: str | None = None
    relation: str | None = None
    phrase: str = ""
    repo_dir: str | None = None
    usage: str | None = None

    def __post_init__(self):
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"relation {self.relation!r} is not a base_model_relation; allowed: {RELATIONS}")
        if self.usage is not None and self.repo_dir is None:
            raise ValueError("a usage partial needs a repo_dir: the snippet loads the model from there")
        if self.repo_dir and (self.repo_dir.startswith(("/", ".")) or "\\" in self.repo_dir):
            raise ValueError(f"repo_dir {self.repo_dir!r} must be a relative folder of the repo, e.g. 'onnx'")


#: A stage type that publishes nothing and adds nothing to the card (the benchmark).
NOT_PUBLISHED = Publishing()


@dataclass(frozen=True)
class StageType:
    spec: type[StageSpec]
    run: StageFn
    libraries: tuple[str, ...] = ()
    publishing: Publishing = NOT_PUBLISHED


#: The stage registry: ``type`` in a recipe -> (spec class, run function).
STAGE_TYPES: dict[str, StageType] = {}


def register(
    type_name: str, spec: type[StageSpec], libraries: tuple[str, ...], publishing: Publishing = NOT_PUBLISHED
) -> Callable[[StageFn], StageFn]:
    """Register ``run`` under ``type_name``; ``spec.type`` must be ``Literal[type_name]``.

    ``libraries``: the distributions (as pip names them) whose versions shape the output; they
    are part of the stage's cache key. ``publishing``: what the card and the push take from
    the type (:class:`Publishing`).
    """

    def decorator(fn: StageFn) -> StageFn:
        if type_name in STAGE_TYPES:
            raise RuntimeError(f"stage type {type_name!r} registered twice")
        STAGE_TYPES[type_name] = StageType(spec=spec, run=fn, libraries=tuple(libraries), publishing=publishing)
        return fn

    return decorator
