"""The recipe file format: pydantic models that reject anything they do not know.

A recipe names a dataset, the models it starts from, and an ordered list of stages; each
stage takes models by reference: a key of ``models`` or the name of an earlier stage.
Cross-stage rules live in :meth:`Recipe._check_references`, the one place that sees all stages.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Discriminator, Field, PositiveInt, Tag, field_validator, model_validator

from ..stages import STAGE_TYPES
from ..stages.base import StrictSpec, format_hint, format_names
from .bounds import Description, Name, Seed, Source, Text
from .sources import REPO_ID_RULES, is_repo_id


class SplitNames(StrictSpec):
    """Which dataset split plays each role."""

    train: Text = "train"
    eval: Text = "validation"
    test: Text = "test"


class SampleLimits(StrictSpec):
    """Rows kept per role (a seeded shuffle, then the first N); null keeps the whole split."""

    train: PositiveInt | None = None
    eval: PositiveInt | None = None
    test: PositiveInt | None = None


class DatasetSpec(StrictSpec):
    id: Source = Field(description="Hub dataset id, or a local folder (relative to the recipe file).")
    config: Text | None = None
    revision: Text | None = None
    text_column: Text = "text"
    label_column: Text = "label"
    splits: SplitNames = SplitNames()
    max_samples: SampleLimits = SampleLimits()
    oos_label: Text | None = Field(
        None,
        description="The out-of-scope label (CLINC150: oos): benchmarks then report in-scope accuracy and "
        "oos recall/precision, and calibrate-oos can tune its decision rule.",
    )


class RecipeOutput(StrictSpec):
    """A model made by another recipe's stage; the runner builds that recipe first if needed."""

    recipe: Name
    stage: Name


def _source_kind(value) -> str:
    return "recipe-output" if isinstance(value, (dict, RecipeOutput)) else "hub-or-folder"


#: A Hub id or local folder, or another recipe's stage; a mapping is only ever the latter, so a
#: mistake in one gets that form's message alone.
ModelSource = Annotated[
    Annotated[Source, Tag("hub-or-folder")] | Annotated[RecipeOutput, Tag("recipe-output")],
    Discriminator(_source_kind),
]


class PublishSpec(StrictSpec):
    """Where the result is published (used by ``hubtools push``)."""

    repo_id: Text | None = Field(None, description="Default: <namespace>/<base>-<dataset>[-<config>]-<recipe>.")
    model: Text | None = Field(None, description="Model to publish; default: the last model-producing stage.")
    private: bool = False

    @field_validator("repo_id")
    @classmethod
    def _hub_repo_id(cls, v: str | None) -> str | None:
        if v is not None and not is_repo_id(v):
            raise ValueError(f"{v!r} is not a Hub repo id; {REPO_ID_RULES}, e.g. my-org/kd-quant-clinc")
        return v


def _stage_union():
    specs = tuple(t.spec for t in STAGE_TYPES.values())
    return Annotated[Union[specs], Field(discriminator="type")]  # type: ignore[valid-type]


StageEntry = _stage_union()


def format_problems(recipe) -> list[str]:
    """Stages of one recipe that take an earlier stage's model in a format their type does not take
    (the registry's ``accepts`` and ``makes``), or one their spec refuses (:meth:`StageSpec.source_problem`:
    quantizing twice, an fp16 graph ...). Models from ``models:`` are checked when the stage runs."""
    problems = []
    for i, stage in enumerate(recipe.stages):
        stage_type = STAGE_TYPES[stage.type]
        for role, ref in stage.refs().items():
            if ref not in recipe.stage_names[:i]:
                continue
            source = recipe.stage(ref)
            where = f"stage {stage.name!r} ({stage.type}) {role} {ref!r} ({source.type})"
            made = STAGE_TYPES[source.type].makes
            if stage_type.accepts is not None and made is not None and made not in stage_type.accepts:
                problems.append(
                    f"{where}: {stage.type} takes {format_names(stage_type.accepts)}; {ref!r} makes "
                    f"{format_names((made,))}: {format_hint(stage_type.accepts, ref)}"
                )
            elif problem := stage.source_problem(role, source):
                problems.append(f"{where}: {problem}")
    return problems


class Recipe(StrictSpec):
    name: Name
    description: Description
    task: Text = "text-classification"
    seed: Seed = 42
    requires: list[Name] = Field(default_factory=list, description="Recipes to run first (rarely needed).")
    dataset: DatasetSpec
    models: dict[Text, ModelSource] = Field(default_factory=dict)
    stages: list[StageEntry] = Field(min_length=1)
    publish: PublishSpec | None = None

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v != "text-classification":
            raise ValueError(f"task {v!r} is not supported; allowed: 'text-classification'")
        return v

    @model_validator(mode="after")
    def _check_references(self):
        problems = []
        known = set(self.models)
        for i, stage in enumerate(self.stages):
            if stage.needs_oos_label and self.dataset.oos_label is None:
                problems.append(f"stage {stage.name!r} ({stage.type}) needs dataset.oos_label, the out-of-scope label")
            if stage.name in known:
                what = "a key of models" if stage.name in self.models else "an earlier stage"
                problems.append(f"stages[{i}] name {stage.name!r} is already {what}")
            for role, ref in stage.refs().items():
                if ref not in known:
                    later = [s.name for s in self.stages[i + 1 :]]
                    hint = " (it runs later; stages run in the order listed)" if ref in later else ""
                    problems.append(
                        f"stage {stage.name!r} {role} refers to {ref!r}{hint}; "
                        f"allowed: {sorted(known) or 'nothing defined yet'}"
                    )
                elif ref in self.stage_names and not self.stage(ref).produces_model:
                    problems.append(f"stage {stage.name!r} {role} refers to {ref!r}, which makes no model")
            known.add(stage.name)
        problems += format_problems(self)
        if self.publish is not None and self.publish.model is not None and self.publish.model not in known:
            problems.append(f"publish.model {self.publish.model!r} is not a model; allowed: {sorted(known)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage(self, name: str):
        return next(s for s in self.stages if s.name == name)

    @property
    def final_model(self) -> str | None:
        """The model this recipe publishes: ``publish.model`` or its last model-producing stage."""
        if self.publish is not None and self.publish.model:
            return self.publish.model
        made = [s.name for s in self.stages if s.produces_model]
        return made[-1] if made else None
