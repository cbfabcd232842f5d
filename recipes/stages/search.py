"""``search-distill``: an Optuna search over distillation hyper-parameters; keeps the best student."""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError, field_validator, model_validator

from ..bounds import FiniteFloat, Seed, TrialCount
from ..metrics import Objective
from . import distill
from .base import TRAINING_LIBRARIES, Publishing, StageContext, StrictSpec, register
from .distill import DistillSpec

#: Trial folders inside the stage's output; only the best trial's files leave it.
TRIALS_DIR = "_trials"

#: DistillSpec fields a search may vary: the numeric ones.
SEARCHABLE: dict[str, type] = {
    name: info.annotation for name, info in DistillSpec.model_fields.items() if info.annotation in (int, float)
}
#: Each searchable field's own type and constraints (e.g. alpha: float in [0, 1]).
_FIELD_CHECKS = {
    name: TypeAdapter(Annotated[(DistillSpec.model_fields[name].annotation, *DistillSpec.model_fields[name].metadata)])
    for name in SEARCHABLE
}


def _searchable(name: str) -> str:
    if name not in SEARCHABLE:
        raise ValueError(
            f"{name!r} cannot be searched; searchable (numeric distill fields): {', '.join(sorted(SEARCHABLE))}"
        )
    return name


SearchableName = Annotated[str, AfterValidator(_searchable)]


class SearchRange(StrictSpec):
    """One searched parameter: ``{low, high, log}`` (a range) or ``{choices: [...]}``."""

    low: FiniteFloat | None = None
    high: FiniteFloat | None = None
    log: bool = Field(False, description="Sample the range on a log scale (needs low > 0).")
    choices: list[int | FiniteFloat] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self):
        has_range = self.low is not None or self.high is not None
        if has_range == (self.choices is not None):
            raise ValueError("give either `low` and `high` (a range, optionally `log: true`) or `choices: [...]`")
        if self.choices is not None:
            if self.log:
                raise ValueError("`log` applies to a range, not to `choices`")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both `low` and `high`")
        if not self.low < self.high:
            raise ValueError(
                f"low ({self.low:g}) must be less than high ({self.high:g}); for one value, fix the field instead"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g}")
        return self

    def values_to_check(self) -> dict[str, float]:
        if self.choices is not None:
            return {f"choices[{i}]": v for i, v in enumerate(self.choices)}
        return {"low": self.low, "high": self.high}

    def suggest(self, trial, name: str):
        if self.choices is not None:
            return trial.suggest_categorical(name, self.choices)
        if SEARCHABLE[name] is int:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)


class SearchDistillSpec(DistillSpec):
    """Distil ``input`` like ``distill`` once per Optuna trial; the best trial's student is the output.

    Every ``distill`` field may be fixed as usual; ``space`` names the numeric ones to search.
    A TPE sampler (seeded) maximizes each trial's final ``eval_accuracy`` on the eval split.
    The output folder is the best trial's student, so later stages take it like a ``distill``
    output; the metrics record every trial and ``best_trial`` (number, value, params).

    .. code-block:: yaml

        stages:
          - name: search
            type: search-distill
            input: teacher          # the teacher
            keep_layers: [0, 2, 4]  # or: student: some-model
            epochs: 3               # fixed for every trial
            batch_size: 32
            n_trials: 8
            space:
              alpha: {low: 0.0, high: 1.0}
              temperature: {low: 1.0, high: 10.0}
              learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}
              # epochs: {choices: [2, 3, 5]}  (only if not fixed above)
    """

    type: Literal["search-distill"]  # type: ignore[assignment]
    space: dict[SearchableName, SearchRange] = Field(
        description="Parameter name -> range or choices; any numeric distill field that is not fixed."
    )
    metric: Objective = Field(
        "accuracy",
        description="Eval metric the search maximizes; all but accuracy need "
        "dataset.oos_label (balanced: mean of in-scope accuracy and oos recall).",
    )
    n_trials: TrialCount = 10
    timeout_s: FiniteFloat | None = Field(None, gt=0, description="Start no new trial after this many seconds.")
    sampler_seed: Seed | None = Field(None, description="TPE sampler seed; default: the recipe seed.")
    startup_trials: TrialCount | None = Field(
        None, description="Random trials before TPE models the results; default: half of n_trials, at most 10."
    )

    @field_validator("space")
    @classmethod
    def _within_field_limits(cls, space: dict[str, SearchRange]) -> dict[str, SearchRange]:
        if not space:
            raise ValueError(f"space is empty: name at least one of {', '.join(sorted(SEARCHABLE))}")
        problems = []
        for name, rng in space.items():
            for where, value in rng.values_to_check().items():
                try:
                    _FIELD_CHECKS[name].validate_python(value)
                except ValidationError as err:
                    problems.append(
                        f"space -> {name} -> {where}: {value!r} is not a valid {name} ({err.errors()[0]['msg']})"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return space

    @model_validator(mode="after")
    def _fixed_or_searched(self):
        both = sorted(self.model_fields_set & set(self.space))
        if both:
            raise ValueError(
                f"{', '.join(map(repr, both))} both fixed and searched: remove the fixed value or the `space` entry"
            )
        return self

    @property
    def needs_oos_label(self) -> bool:  # type: ignore[override]
        return self.metric != "accuracy"

    def trial_spec(self, params: dict) -> DistillSpec:
        """The ``distill`` spec of one trial: this spec's fixed fields plus the sampled ``params``."""
        fixed = self.model_dump(include=set(DistillSpec.model_fields) - {"type"})
        return DistillSpec.model_validate({**fixed, **params, "type": "distill"})


def _summary(trial) -> dict:
    return {"number": trial.number, "value": trial.value, "params": trial.params}


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="distillation",
    relation="finetune",
    repo_dir="",
    usage="usage/pytorch.md.j2",
    phrase="distilled from `{input}`, the best of an Optuna search over the distillation settings",
)


@register("search-distill", SearchDistillSpec, libraries=(*TRAINING_LIBRARIES, "optuna"), publishing=PUBLISHING)
def run(spec: SearchDistillSpec, ctx: StageContext) -> dict:
    import optuna
    import transformers

    trials_dir = ctx.out_dir / TRIALS_DIR
    startup = spec.startup_trials or min(10, max(1, spec.n_trials // 2))
    sampler = optuna.samplers.TPESampler(
        seed=ctx.seed if spec.sampler_seed is None else spec.sampler_seed, n_startup_trials=startup
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, study_name=spec.name)
    results: dict[int, dict] = {}  # trial number -> what distill returned

    def objective(trial) -> float:
        params = {name: rng.suggest(trial, name) for name, rng in spec.space.items()}
        trial_ctx = dataclasses.replace(ctx, out_dir=trials_dir / str(trial.number))
        trial_ctx.out_dir.mkdir(parents=True)
        ctx.log.info("Trial %d of %d: %s", trial.number, spec.n_trials, params)
        transformers.set_seed(ctx.seed)  # every trial starts where a lone distill run would
        metrics = distill.run(spec.trial_spec(params), trial_ctx)
        if metrics.get(f"eval_{spec.metric}") is None:
            raise ValueError(f"trial {trial.number} recorded no eval {spec.metric}: train at least one full epoch")
        results[trial.number] = metrics
        return metrics[f"eval_{spec.metric}"]

    def keep_best_only(study, trial) -> None:
        """Delete each finished trial's model unless it is the best so far (then the old best's)."""
        best = study.best_trial.number
        for folder in trials_dir.iterdir():
            if folder.name != str(best):
                shutil.rmtree(folder)

    study.optimize(objective, n_trials=spec.n_trials, timeout=spec.timeout_s, callbacks=[keep_best_only])
    best = study.best_trial
    ctx.log.info("Best trial %d: eval_%s=%.4f %s", best.number, spec.metric, best.value, best.params)
    for path in (trials_dir / str(best.number)).iterdir():
        os.replace(path, ctx.out_dir / path.name)
    shutil.rmtree(trials_dir)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {**results[best.number], "best_trial": _summary(best), "trials": [_summary(t) for t in done]}
