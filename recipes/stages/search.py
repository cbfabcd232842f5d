"""``search-distill``: an Optuna search over distillation settings that survives a crash, prunes
hopeless trials, runs on many processes or machines, and keeps the best trial's student.

The study lives in a database (:mod:`recipes.ml.study`): SQLite in the stage's state folder by
default, any SQLAlchemy URL with ``storage:`` (PostgreSQL for several machines). A rerun after a
crash or Ctrl-C resumes it: finished trials count, the trial that was running is run again.
``python -m recipes worker RECIPE --stage NAME`` (or ``run --workers N``) joins the study from
other processes. Each trial trains into the state folder (``trials/<number>/``); only the best
trial's model is kept, and the stage's output is that model. A trial that ran on a machine
whose files this one cannot see is retrained here from its parameters (same seed).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError, field_validator, model_validator

from ..measure.metrics import Objective
from ..ml import study as studies
from ..plan.bounds import FiniteFloat, Fraction, LayerIndex, LongText, Seed, TrialCount
from ..runfolder import STUDY_DB, STUDY_DIR
from . import distill
from .base import TRAINING_LIBRARIES, Publishing, StageContext, StrictSpec, register
from .distill import DistillSpec, LayersOf

#: Where trials train, in the state folder. The stage's output keeps the study beside the best
#: student: ``study/`` holds ``trials.json``, the plots and ``study.db`` (see :mod:`recipes.ml.study`).
TRIALS_DIR = "trials"

#: DistillSpec fields a search may vary: the numeric ones, and ``keep_layers`` (which teacher
#: layers the student keeps, as ``choices``).
SEARCHABLE: dict[str, type] = {
    name: info.annotation for name, info in DistillSpec.model_fields.items() if info.annotation in (int, float)
}
SEARCHABLE["keep_layers"] = list
#: Each searchable field's own type and constraints (e.g. alpha: float in [0, 1]). Strict for a value a
#: trial takes as it is (a choice, an enqueued value); lax for a range's bounds, which Optuna turns into
#: the field's type (``suggest_int`` of ``low: 16.0`` samples ints).
_FIELD_CHECKS = {
    name: TypeAdapter(Annotated[(DistillSpec.model_fields[name].annotation, *DistillSpec.model_fields[name].metadata)])
    for name in SEARCHABLE
}
#: Second objectives a search may minimize together with the eval metric.
SecondObjective = Literal["size_mb"]


def _searchable(name: str) -> str:
    if name not in SEARCHABLE:
        raise ValueError(
            f"{name!r} cannot be searched; searchable (numeric distill fields, and keep_layers as choices): "
            f"{', '.join(sorted(SEARCHABLE))}"
        )
    return name


SearchableName = Annotated[str, AfterValidator(_searchable)]


def _field_problem(name: str, value, strict: bool) -> str | None:
    """Why ``value`` is no valid ``name`` (a searchable distill field), or None."""
    try:
        _FIELD_CHECKS[name].validate_python(value, strict=strict)
    except ValidationError as err:
        return f"{value!r} is not a valid {name} ({err.errors()[0]['msg']})"
    return None


def _layers_text(layers: list[int]) -> str:
    return ",".join(map(str, layers))


class SearchRange(StrictSpec):
    """One searched parameter: ``{low, high, log, step}`` (a range) or ``{choices: [...]}``. The
    values must be valid for the field (``alpha`` within 0 to 1, ...); an int field's range samples
    whole numbers."""

    low: FiniteFloat | None = Field(None, description="A range's lowest value (with `high`).")
    high: FiniteFloat | None = Field(None, description="A range's highest value, included (with `low`).")
    log: bool = Field(False, description="Sample the range on a log scale (needs low > 0).")
    step: FiniteFloat | None = Field(None, gt=0, description="Sample only low, low + step, ... (not with log).")
    choices: list[int | FiniteFloat | list[LayerIndex]] | None = Field(
        None, min_length=1, description="The values tried instead of a range: numbers, or layer lists for keep_layers."
    )

    @model_validator(mode="after")
    def _one_form(self):
        has_range = self.low is not None or self.high is not None
        if has_range == (self.choices is not None):
            raise ValueError("give either `low` and `high` (a range, optionally `log: true`) or `choices: [...]`")
        if self.choices is not None:
            if self.log or self.step is not None:
                raise ValueError("`log` and `step` apply to a range, not to `choices`")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both `low` and `high`")
        if not self.low < self.high:
            raise ValueError(
                f"low ({self.low:g}) must be less than high ({self.high:g}); for one value, fix the field instead"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("`step` and `log: true` do not go together (Optuna samples one or the other)")
        return self

    def values_to_check(self) -> dict[str, float | list]:
        if self.choices is not None:
            return {f"choices[{i}]": v for i, v in enumerate(self.choices)}
        return {"low": self.low, "high": self.high}

    def contains(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def suggest(self, trial, name: str):
        if name == "keep_layers":  # Optuna's categorical choices are scalars: "0,2,4"
            return trial.suggest_categorical(name, [_layers_text(c) for c in self.choices])
        if self.choices is not None:
            return trial.suggest_categorical(name, self.choices)
        if SEARCHABLE[name] is int:
            step = max(1, int(self.step or 1))
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log, step=step)
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


#: The common axis of a schedule: trials report at these percentages of their own training.
SCHEDULE_GRID = tuple(range(10, 101, 10))


def schedule_steps(epoch: int, epochs: int, reported: set[int]) -> list[int]:
    """The percentages of :data:`SCHEDULE_GRID` that epoch ``epoch`` of ``epochs`` is the first to
    reach (``reported``: the steps reported already). A 5-epoch trial reports 10 and 20 after its
    first epoch, a 10-epoch trial 10 after its first and 20 after its second: at step 20 both have
    trained a fifth of their schedule, with their learning rate decayed alike."""
    reached = 100 * epoch / max(epochs, 1)
    return [step for step in SCHEDULE_GRID if step <= reached + 1e-9 and step not in reported]


#: The warm-up setting of each pruner axis.
WARMUP_FIELD = {"schedule": "warmup_share", "epoch": "warmup_epochs"}


class PrunerSpec(StrictSpec):
    """How hopeless trials are stopped. Each trial reports its eval metric as it trains, on a
    common ``axis``: ``schedule`` (default) the share of its own schedule it has trained, in steps
    of 10% (:func:`schedule_steps`), so trials of 5 and 10 epochs are compared at the same point
    of their learning-rate decay; ``epoch`` the epoch, which compares a 10-epoch trial at epoch 4
    with a 5-epoch one near its end and stops long schedules for being behind early. ``median``
    stops a trial below the median of the earlier trials at the same step, ``threshold`` one below
    ``lower``, ``none`` never stops one. ``pruner: median`` is short for ``pruner: {type: median}``."""

    type: Literal["median", "threshold", "none"] = Field(
        "median", description="median, threshold (with `lower`) or none: see above."
    )
    axis: Literal["schedule", "epoch"] = Field(
        "schedule", description="What trials are compared at: the share of their schedule trained, or the epoch."
    )
    startup_trials: int = Field(3, ge=0, le=10_000, description="median: trials that finish before any is pruned.")
    warmup_epochs: int = Field(
        1, ge=0, le=1000, description="axis epoch: epochs every trial trains before it can be pruned."
    )
    warmup_share: Fraction = Field(
        0.2, description="axis schedule: the share of its schedule every trial trains before it can be pruned."
    )
    lower: FiniteFloat | None = Field(None, description="threshold: stop a trial whose eval metric is below this.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data):
        return {"type": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _fits_type(self):
        if (self.type == "threshold") != (self.lower is not None):
            raise ValueError("`lower` goes with `type: threshold`, and a threshold pruner needs it")
        fits = WARMUP_FIELD[self.axis]
        other = next(field for field in WARMUP_FIELD.values() if field != fits)
        if other in self.model_fields_set:
            raise ValueError(f"`{other}` does not apply to `axis: {self.axis}`; set `{fits}` instead")
        return self

    def _from(self) -> str:
        if self.axis == "schedule":
            return f"from {100 * self.warmup_share:.0f}% of each trial's schedule"
        return f"from epoch {self.warmup_epochs + 1}"

    def describe(self) -> str:
        if self.type == "none":
            return "none"
        if self.type == "threshold":
            return f"threshold (below {self.lower:g}, {self._from()})"
        return f"median (after {self.startup_trials} trials, {self._from()}, at equal {self.axis})"

    @property
    def warmup_steps(self) -> int:
        """The first step a trial can be stopped after, on its axis (trials report 1-based epochs,
        or percentages of their schedule)."""
        if self.axis == "schedule":
            return next((s for s in SCHEDULE_GRID if s > 100 * self.warmup_share - 1e-9), SCHEDULE_GRID[-1])
        return self.warmup_epochs + 1

    def make(self):
        """The Optuna pruner on the spec's axis."""
        import optuna

        if self.type == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_steps)
        if self.type == "threshold":
            return optuna.pruners.ThresholdPruner(lower=self.lower, n_warmup_steps=self.warmup_steps)
        return optuna.pruners.NopPruner()


class SearchDistillSpec(DistillSpec):
    """Distil ``input`` like ``distill`` once per Optuna trial; the best trial's student is the output.

    Every ``distill`` field may be fixed as usual; ``space`` names the ones to search (numeric
    fields as ranges or choices; ``keep_layers`` as choices of layer lists). Each trial is a
    ``distill`` run with the recipe's seed. A seeded TPE sampler maximizes each trial's final
    eval ``metric``; trials report it after every epoch and the ``pruner`` stops hopeless ones.
    ``n_trials`` trials end COMPLETE or PRUNED, counted over every process that works on the
    study (``python -m recipes worker``, or ``run --workers N``).

    The study lives in a database: SQLite in the stage's state folder by default, any SQLAlchemy
    URL with ``storage:`` (PostgreSQL for several machines). A rerun after a crash or Ctrl-C
    resumes it: finished trials count, the trial that was running runs again. A trial that ran on
    a machine whose files this one cannot see is retrained here from its parameters.

    With ``minimize: size_mb`` the search is multi-objective (eval metric up, model size down,
    e.g. with ``keep_layers`` in the space): the stage keeps the Pareto-optimal trial with the
    smallest model whose metric is within ``select_within`` of the best. The output is the kept
    trial's student; ``study/`` holds every trial (``trials.json``), Optuna's plots (PNG) and
    ``study.db``; the metrics hold ``best_trial`` (with the rule that kept it), every trial and
    the counts of complete, pruned and failed trials.

    .. code-block:: yaml

        stages:
          - name: search
            type: search-distill
            input: teacher          # the teacher
            keep_layers: [0, 2, 4]  # or: student: some-model
            learning_rate: 2.0e-4   # fixed for every trial
            n_trials: 8
            space:
              epochs: {low: 5, high: 10, step: 1}
              alpha: {low: 0.0, high: 1.0}
              temperature: {low: 2.0, high: 20.0}
            enqueue:                # tried first: the hand-picked settings to beat
              - {epochs: 5, alpha: 0.5, temperature: 2.0}
            pruner: {type: median, startup_trials: 3, warmup_epochs: 1}
            # storage: postgresql+psycopg://recipes@db.example:5432/optuna   (several machines)
    """

    type: Literal["search-distill"]  # type: ignore[assignment]
    space: dict[SearchableName, SearchRange] = Field(
        description="Parameter name -> range or choices; any numeric distill field that is not fixed, or keep_layers."
    )
    metric: Objective = Field(
        "accuracy",
        description="Eval metric the search maximizes; all but accuracy need "
        "dataset.oos_label (balanced: mean of in-scope accuracy and oos recall).",
    )
    n_trials: TrialCount = Field(10, description="Trials that end COMPLETE or PRUNED, over every process.")
    timeout_s: FiniteFloat | None = Field(None, gt=0, description="Start no new trial after this many seconds.")
    sampler_seed: Seed | None = Field(None, description="TPE sampler seed; default: the recipe seed.")
    startup_trials: TrialCount | None = Field(
        None, description="Random trials before TPE models the results; default: half of n_trials, at most 10."
    )
    pruner: PrunerSpec | None = Field(
        None, description="median (default with one objective), threshold or none (default with two)."
    )
    enqueue: list[dict[SearchableName, int | FiniteFloat | list[LayerIndex]]] = Field(
        default_factory=list, description="Parameter sets tried first, in order (on a new study only)."
    )
    storage: LongText | None = Field(
        None,
        description="SQLAlchemy URL of the study's database, which workers share; default: SQLite in the "
        "stage's state folder. No password: give it to the driver (PGPASSWORD, ~/.pgpass).",
    )
    minimize: SecondObjective | None = Field(
        None, description="A second objective to minimize with the eval metric: size_mb (of the weights)."
    )
    select_within: Fraction = Field(
        0.0,
        description="With minimize: keep the Pareto-optimal trial with the lowest second objective whose "
        "eval metric is within this of the best one (0: the most accurate).",
    )

    @field_validator("space")
    @classmethod
    def _within_field_limits(cls, space: dict[str, SearchRange]) -> dict[str, SearchRange]:
        if not space:
            raise ValueError(f"space is empty: name at least one of {', '.join(sorted(SEARCHABLE))}")
        problems = []
        for name, rng in space.items():
            if (name == "keep_layers") != (rng.choices is not None and all(isinstance(c, list) for c in rng.choices)):
                problems.append(
                    f"space -> {name}: "
                    + (
                        "keep_layers takes `choices` of layer lists, e.g. [[0, 2, 4], [0, 5]]"
                        if name == "keep_layers"
                        else "a layer list is a choice for keep_layers only"
                    )
                )
                continue
            for where, value in rng.values_to_check().items():
                problem = _field_problem(name, value, strict=rng.choices is not None)
                if problem:
                    problems.append(f"space -> {name} -> {where}: {problem}")
                if name == "keep_layers" and len(set(value)) != len(value):
                    problems.append(f"space -> keep_layers -> {where}: {value} repeats a layer")
        if problems:
            raise ValueError("; ".join(problems))
        return space

    @field_validator("storage")
    @classmethod
    def _storage_url(cls, url: str | None) -> str | None:
        return None if url is None else studies.check_storage_url(url)

    @model_validator(mode="after")
    def _one_student(self):
        if "keep_layers" not in self.space:
            return DistillSpec._one_student(self)
        if self.student is not None:
            raise ValueError("keep_layers is searched, so the student is cut from the teacher: remove `student`")
        if self.layer_map is not None:
            raise ValueError("keep_layers is searched: remove layer_map (each trial pairs its kept layers)")
        return self

    @model_validator(mode="after")
    def _fixed_or_searched(self):
        both = sorted(self.model_fields_set & set(self.space))
        if both:
            raise ValueError(
                f"{', '.join(map(repr, both))} both fixed and searched: remove the fixed value or the `space` entry"
            )
        for i, params in enumerate(self.enqueue):
            outside = [f"{k}={v!r}" for k, v in params.items() if k not in self.space or not self.space[k].contains(v)]
            if outside:
                raise ValueError(
                    f"enqueue[{i}]: {', '.join(outside)} is not in the space "
                    f"({', '.join(sorted(self.space))}); an enqueued trial takes values the search may sample"
                )
            wrong = [f"{k}: {p}" for k, v in params.items() if (p := _field_problem(k, v, strict=True))]
            if wrong:
                raise ValueError(f"enqueue[{i}]: {'; '.join(wrong)}")
        if self.minimize is None and self.select_within:
            raise ValueError("select_within picks among Pareto-optimal trials: it needs `minimize`")
        if self.minimize is not None and self.pruner is not None and self.pruner.type != "none":
            raise ValueError(
                "Optuna prunes single-objective studies only: with `minimize`, set `pruner: none` (or leave it out)"
            )
        return self

    def output_layers(self, layers_of: LayersOf) -> int | None:
        """Layers of the kept student: as ``distill``'s, or the one length of every searched layer list."""
        if "keep_layers" not in self.space:
            return super().output_layers(layers_of)
        lengths = {len(choice) for choice in self.space["keep_layers"].choices}
        return lengths.pop() if len(lengths) == 1 else None

    def teacher_layers(self) -> dict[str, list[int]]:
        """As ``distill``'s, plus each searched ``keep_layers`` choice."""
        searched = self.space["keep_layers"].choices if "keep_layers" in self.space else []
        choices = {f"space -> keep_layers -> choices[{i}]": layers for i, layers in enumerate(searched)}
        return {**super().teacher_layers(), **choices}

    @property
    def needs_oos_label(self) -> bool:  # type: ignore[override]
        return self.metric != "accuracy"

    @property
    def active_pruner(self) -> PrunerSpec:
        if self.pruner is not None:
            return self.pruner
        return PrunerSpec(type="none" if self.minimize else "median")

    def trial_spec(self, params: dict) -> DistillSpec:
        """The ``distill`` spec of one trial: this spec's fixed fields plus the sampled ``params``."""
        fixed = self.model_dump(include=set(DistillSpec.model_fields) - {"type"})
        params = dict(params)
        if isinstance(params.get("keep_layers"), str):
            params["keep_layers"] = [int(i) for i in params["keep_layers"].split(",")]
        return DistillSpec.of(**{**fixed, **params})

    def optuna_params(self, params: dict) -> dict:
        """``params`` as Optuna stores them (a layer list as ``"0,2,4"``)."""
        return {k: _layers_text(v) if isinstance(v, list) else v for k, v in params.items()}


def _summary(trial) -> dict:
    out = {"number": trial.number, "value": trial.values[0], "params": dict(trial.params)}
    if len(trial.values) > 1:
        out["values"] = list(trial.values)
    return out


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="distillation",
    relation="finetune",
    repo_dir="",
    usage="usage/pytorch.md.j2",
    phrase="distilled from `{input}`, the best of an Optuna search over the distillation settings",
    card_section="search",
)


# --- one trial ------------------------------------------------------------------------------------


def _epoch_reporter(trial, metric: str, axis: str = "schedule"):
    """A Trainer callback: report the eval metric after each epoch, at the 1-based epoch or (axis
    ``schedule``) at the percentages of the schedule the epoch reached (:func:`schedule_steps`); stop
    the trial when the pruner says so, except after its last epoch (then it completes)."""
    import optuna
    from transformers import TrainerCallback

    class ReportEpoch(TrainerCallback):
        def __init__(self):
            self.reported: set[int] = set()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get(f"eval_{metric}")
            if value is None:
                return
            epoch, epochs = int(round(state.epoch or 0)), math.ceil(args.num_train_epochs)
            steps = [epoch] if axis == "epoch" else schedule_steps(epoch, epochs, self.reported)
            for step in steps:
                trial.report(value, step)
            self.reported.update(steps)
            trial.set_user_attr(studies.EPOCHS_TRAINED, epoch)
            if steps and epoch < epochs and trial.should_prune():
                where = f"epoch {epoch}" if axis == "epoch" else f"{steps[-1]}% of its schedule (epoch {epoch})"
                raise optuna.TrialPruned(f"eval_{metric} {value:.4f} after {where}")

    return ReportEpoch()


class Search:
    """One process's part of the search: its study, its objective and its trial folders."""

    def __init__(self, spec: SearchDistillSpec, ctx: StageContext, study, role: str):
        self.spec, self.ctx, self.study, self.role = spec, ctx, study, role
        self.trials_dir = Path(ctx.state_dir) / TRIALS_DIR
        self.ran = 0

    def objective(self, trial):
        import optuna
        import transformers

        spec, log = self.spec, self.ctx.log
        trial.set_user_attr(studies.WORKER, studies.worker_tag())
        if studies.is_surplus(trial.study, trial.number, spec.n_trials):
            trial.set_user_attr(studies.SURPLUS, True)
            raise studies.SurplusTrial(f"trial {trial.number}: {spec.n_trials} trials are done or under way")
        params = {name: rng.suggest(trial, name) for name, rng in spec.space.items()}
        out = self.trials_dir / str(trial.number)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        done = studies.counted(trial.study.get_trials(deepcopy=False))
        log.info("Trial %d (%s; %d of %d done): %s", trial.number, self.role, done, spec.n_trials, params)
        reporters = [] if spec.minimize else [_epoch_reporter(trial, spec.metric, spec.pruner.axis)]
        trial_ctx = dataclasses.replace(self.ctx, out_dir=out, callbacks=[*self.ctx.callbacks, *reporters])
        transformers.set_seed(self.ctx.seed)  # every trial starts where a lone distill run would
        self.ran += 1
        try:
            metrics = distill.run(spec.trial_spec(params), trial_ctx)
        except optuna.TrialPruned as pruned:
            log.info("Trial %d pruned (%s pruner): %s", trial.number, spec.active_pruner.type, pruned)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(studies.INTERRUPTED, True)
            raise
        value = metrics.get(f"eval_{spec.metric}")
        if value is None:
            raise ValueError(f"trial {trial.number} recorded no eval {spec.metric}: train at least one full epoch")
        trial.set_user_attr(studies.RESULT, metrics)
        if spec.minimize:
            from ..measure.size import size_mb

            second = round(size_mb(out), 4)
            log.info(
                "Trial %d complete: eval_%s=%.4f, %s=%.2f", trial.number, spec.metric, value, spec.minimize, second
            )
            return value, second
        log.info("Trial %d complete: eval_%s=%.4f", trial.number, spec.metric, value)
        return value

    def keep_best(self, study, _trial=None) -> None:
        """Delete the models of finished trials that are not (or no longer) the best ones;
        running trials' folders, and the best (or Pareto-optimal) ones, stay."""
        if not self.trials_dir.is_dir():
            return
        trials = study.get_trials(deepcopy=False)
        best = studies.pareto_front(trials) if self.spec.minimize else [studies.best_single(trials)]
        keep = {str(t.number) for t in best if t is not None}
        finished = {str(t.number) for t in trials if t.state.is_finished()}
        for folder in self.trials_dir.iterdir():
            if folder.name in finished and folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    def sampler(self):
        """A TPE sampler seeded from the study's size (and, in a worker, its pid): a rerun or
        another process never replays the random draws of the trials before it, and one
        uninterrupted process samples what it sampled last time."""
        import optuna

        spec = self.spec
        base = self.ctx.seed if spec.sampler_seed is None else spec.sampler_seed
        salt = 0 if self.role == "main" else os.getpid()
        seed = zlib.crc32(f"{base}:{len(self.study.get_trials(deepcopy=False))}:{salt}".encode())
        startup = spec.startup_trials or min(10, max(1, spec.n_trials // 2))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)

    def run_one(self) -> None:
        self.study.sampler = self.sampler()
        self.study.optimize(self.objective, n_trials=1, callbacks=[self.keep_best], catch=(studies.SurplusTrial,))


# --- the study ------------------------------------------------------------------------------------


def _storage(spec: SearchDistillSpec, ctx: StageContext):
    url = studies.storage_url(spec.storage, ctx.state_dir)
    return url, studies.open_storage(url)


def _directions(spec: SearchDistillSpec) -> list[str]:
    return ["maximize"] + (["minimize"] if spec.minimize else [])


def _open_main(spec: SearchDistillSpec, ctx: StageContext):
    """Create the study, or resume the one an interrupted run left (a finished one, or any
    when the stage was forced, is dropped: the stage starts over)."""
    import optuna

    url, storage = _storage(spec, ctx)
    name = ctx.stage_id
    found = studies.find_study(storage, name)
    if found is not None and (not ctx.resume or found.user_attrs.get(studies.CLOSED) == "finished"):
        ctx.log.info("Starting study %s over (%s)", name, "forced" if not ctx.resume else "it finished before")
        optuna.delete_study(study_name=name, storage=storage)
        found = None
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=_directions(spec),
        pruner=spec.active_pruner.make(),
        load_if_exists=True,
    )
    if found is None:
        ctx.log.info("Study %s in %s: %d trials", name, studies.shown_url(url), spec.n_trials)
    else:
        trials = study.get_trials(deepcopy=False)
        ctx.log.info(
            "Resuming study %s in %s: %d of %d trials done",
            name,
            studies.shown_url(url),
            studies.counted(trials),
            spec.n_trials,
        )
        if study.user_attrs.get(studies.CLOSED):
            study.set_user_attr(studies.CLOSED, None)  # it timed out last time: this run has its own time
    if not study.user_attrs.get("enqueued"):
        for params in spec.enqueue:
            study.enqueue_trial(spec.optuna_params(params))
        study.set_user_attr("enqueued", True)
    return url, study


def _start_workers(ctx: StageContext, threads: int) -> list[tuple[subprocess.Popen, Path]]:
    """``ctx.workers - 1`` local worker processes, ``threads`` threads each, logging into the
    state folder."""
    if ctx.workers <= 1:
        return []
    if not ctx.worker_args:
        ctx.log.warning(
            "--workers %d: this run cannot start workers (no recipe to give them); running alone", ctx.workers
        )
        return []
    command = [sys.executable, "-m", "recipes", "worker", *ctx.worker_args, "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = []
    for index in range(1, ctx.workers):
        log_path = Path(ctx.state_dir) / f"worker-{index}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        ctx.log.info("Worker %d: pid %d, %d thread(s), log %s", index, proc.pid, threads, log_path)
        started.append((proc, log_path))
    return started


def _stop_workers(workers, ctx: StageContext, finished: bool) -> None:
    """End the local workers. Once the study has its trials none of them runs one (a worker
    still starting up, or between trials, has nothing to lose): each gets a few seconds to exit
    on its own, then SIGTERM; a worker that exited with an error is reported."""
    deadline = time.time() + (5 if finished else 0)
    for proc, log_path in workers:
        try:
            proc.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            continue
        if finished and proc.returncode != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            ctx.log.warning("Worker pid %d exited with %d:\n  %s", proc.pid, proc.returncode, "\n  ".join(tail))


def _collect(search: Search, choice, ctx: StageContext) -> tuple[dict, bool]:
    """Put the kept trial's student into ``ctx.out_dir``: its files if this machine has them,
    else retrained from its parameters. Returns its metrics and whether it was retrained."""
    from ..runfolder import FORMAT_FILE

    spec, trial = search.spec, choice.trial
    folder = search.trials_dir / str(trial.number)
    recorded = trial.user_attrs.get(studies.RESULT)
    if (folder / FORMAT_FILE).is_file() and recorded:
        for path in folder.iterdir():
            if path.is_file():
                shutil.copy2(path, ctx.out_dir / path.name)
        return recorded, False
    import transformers

    ctx.log.info(
        "Trial %d ran where this machine cannot see its files (%s): retraining its parameters here",
        trial.number,
        (trial.user_attrs.get(studies.WORKER) or {}).get("host", "another process"),
    )
    transformers.set_seed(ctx.seed)
    metrics = distill.run(spec.trial_spec(trial.params), dataclasses.replace(ctx, callbacks=list(ctx.callbacks)))
    ctx.log.info(
        "Retrained trial %d: eval_%s %.4f (the search recorded %.4f)",
        trial.number,
        spec.metric,
        metrics.get(f"eval_{spec.metric}") or float("nan"),
        trial.values[0],
    )
    return metrics, True


@register(
    "search-distill",
    SearchDistillSpec,
    libraries=(*TRAINING_LIBRARIES, "optuna"),
    publishing=PUBLISHING,
    join=lambda spec, ctx, wait_s: work(spec, ctx, wait_s),  # other processes run trials of the same study
)
def run(spec: SearchDistillSpec, ctx: StageContext) -> dict:
    """The main run: open (or resume) the study, start ``ctx.workers - 1`` workers, run trials
    until ``n_trials`` count, keep the best trial's student and write ``study/``."""
    import torch

    if ctx.state_dir is None:
        raise ValueError("search-distill needs a state folder (the runner gives one)")
    Path(ctx.state_dir).mkdir(parents=True, exist_ok=True)
    threads = max(1, ctx.threads // max(1, ctx.workers))
    torch.set_num_threads(threads)  # the runner restores it
    with studies.quiet_optuna():
        url, study = _open_main(spec, ctx)
        search = Search(spec, ctx, study, "main")
        workers = _start_workers(ctx, threads)
        deadline = time.time() + spec.timeout_s if spec.timeout_s else None
        finished = False
        try:
            studies.work(study, spec.n_trials, search.run_one, ctx.log, deadline=deadline)
            finished = True
        finally:
            _stop_workers(workers, ctx, finished)
        trials = study.get_trials(deepcopy=False)
        choice = studies.choose(trials, spec.metric, spec.minimize, spec.select_within)
        if choice is None:
            shown = studies.shown_trials(trials)
            raise ValueError(
                f"no trial completed ({len(shown)} ran: "
                + ", ".join(f"{t.number} {studies.state_name(t)}" for t in shown)
                + "); loosen the pruner or widen the space"
            )
        search.keep_best(study)
        best = choice.trial
        ctx.log.info("Kept trial %d (%s): values %s, %s", best.number, choice.rule, best.values, best.params)
        result, retrained = _collect(search, choice, ctx)
        record = studies.summary(
            trials,
            spec.n_trials,
            spec.metric,
            spec.minimize,
            choice,
            spec.active_pruner.describe(),
            studies.shown_url(url) if spec.storage else "sqlite (the stage's state folder)",
        )
        studies.write_outputs(study, Path(ctx.out_dir) / STUDY_DIR, record, spec.minimize, spec.metric, ctx.log)
        study.set_user_attr(studies.CLOSED, "finished")
    counts = record["counts"]
    return {
        **result,
        "best_trial": {**_summary(best), "rule": choice.rule, "retrained": retrained},
        "n_complete": counts["complete"],
        "n_pruned": counts["pruned"],
        "n_failed": counts["failed"],
        "trials": [
            {k: t[k] for k in ("number", "state", "values", "params", "duration_s", "worker")}
            for t in record["trials"]
        ],
    }


def work(spec: SearchDistillSpec, ctx: StageContext, wait_s: float = 300.0) -> int:
    """A worker: join the study of the stage's main run (waiting up to ``wait_s`` for it to
    appear), run trials until ``n_trials`` count, return how many it ran. Its trials train into
    its own state folder: the main run takes the best one's files from there when it shares
    this filesystem, else retrains its parameters."""
    import optuna

    with studies.quiet_optuna():
        url = studies.storage_url(spec.storage, ctx.state_dir)
        start, study = time.time(), None
        while True:
            if not url.startswith("sqlite") or (Path(ctx.state_dir) / STUDY_DB).is_file():
                found = studies.find_study(studies.open_storage(url), ctx.stage_id)
                if found is not None and found.user_attrs.get(studies.CLOSED) != "finished":
                    study = optuna.load_study(
                        study_name=ctx.stage_id, storage=found._storage, pruner=spec.active_pruner.make()
                    )
                    break
            if time.time() - start > wait_s:
                raise ValueError(
                    f"no open study {ctx.stage_id} in {studies.shown_url(url)} after {wait_s:g} s. Start the main run "
                    "first (python -m recipes run ...), with the same --set items; the name is the stage's cache "
                    "key, so this machine needs the same code, library versions, data and input models"
                )
            time.sleep(studies.POLL_S)
        Path(ctx.state_dir).mkdir(parents=True, exist_ok=True)  # its trials train there
        ctx.log.info("Joined study %s in %s (pid %d)", ctx.stage_id, studies.shown_url(url), os.getpid())
        search = Search(spec, ctx, study, "worker")
        studies.work(study, spec.n_trials, search.run_one, ctx.log, wait_for_others=False)
    ctx.log.info("The study has its %d trials; this worker ran %d", spec.n_trials, search.ran)
    return search.ran
