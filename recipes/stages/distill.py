"""``distill``: knowledge distillation of a teacher into a smaller student."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ..ml.augment import OPS, Op
from ..ml.families import FamilyOf, ModelFamily
from ..ml.training import TrainingSpec, classifier_with_dataset_labels, eval_metrics, fit_and_save, training_arguments
from ..plan.bounds import MAX_LAYERS, FiniteFloat, Fraction, LayerIndex, Text
from .base import TRAINING_LIBRARIES, Publishing, StageContext, StrictSpec, register

#: A model's hidden layers by its reference (a key of ``models`` or a stage), None if unknown.
LayersOf = Callable[[str], int | None]


class AugmentSpec(StrictSpec):
    """Teacher-labelled augmentation (TinyBERT-style, word level): ``copies`` perturbed versions
    of each training text. Each word is, with probability ``word_prob``, changed by one of
    ``ops`` drawn uniformly: ``mask`` (the tokenizer's mask token), ``delete``, ``swap`` (with the
    next word) or ``neighbour`` (one of its nearest neighbours in the teacher's word-embedding
    matrix). The copies carry no gold label: only the teacher's soft targets (the KL term) train
    on them. Seeded by the recipe's seed, so the same texts give the same copies; only the train
    split is augmented (see :mod:`recipes.ml.augment`)."""

    copies: int = Field(0, ge=0, le=20, description="Perturbed copies of each training text; 0: none.")
    word_prob: Fraction = Field(0.15, description="Chance that a word is perturbed.")
    ops: list[Op] = Field(
        default_factory=lambda: list(OPS),
        min_length=1,
        description="Perturbations drawn from, uniformly: mask, delete, swap, neighbour.",
    )


class DistillSpec(TrainingSpec):
    """Distil ``input`` (the teacher) into a student on the train split.

    The student is either another model (``student:``, a key of ``models`` or an earlier
    stage, given a head for the dataset's labels) or the teacher cut down to the encoder layers
    ``keep_layers`` (DistilBERT-style; ALBERT, whose layers share one set of weights, repeats it
    ``len(keep_layers)`` times; ModernBERT's kept layers must start with 0 and keep its global
    attention every n-th layer, which ``recipes check`` verifies). The loss, with ``T`` the
    ``temperature``, is

    ``alpha * CE + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))``

    with ``reduction="batchmean"`` (the true KL per example; ``T^2`` keeps its gradients on the
    cross-entropy's scale). The teacher is frozen, so its logits are computed once per training
    example and cached: an epoch costs what a plain student epoch costs.

    Beyond logits, ``hidden_weight`` adds the MSE between each student layer's output and its
    teacher layer's (TinyBERT), ``attention_weight`` the KL between their self-attention
    distributions (MiniLM), student layer i paired with teacher layer ``layer_map[i]``; both
    average over the real tokens (padding never counts). The teacher then runs on each batch
    (its hidden states are too big to cache), and a ``student`` model must tokenize as the
    teacher does (and, for ``hidden_weight``, have its hidden size). Both 0 (the default) is
    exactly the logits-only loss.

    ``augment.copies: N`` adds N perturbed copies of each training text, trained on the
    teacher's soft targets only. The record holds the eval metrics (last epoch and per epoch),
    the student's layers and the training rows (original and augmented).

    .. code-block:: yaml

        stages:
          - name: distill
            type: distill
            input: teacher          # the teacher
            keep_layers: [0, 2, 4]  # or: student: some-model
            alpha: 0.5
            temperature: 2.0
            epochs: 5
            learning_rate: 1.0e-4
    """

    type: Literal["distill"]
    distributed: ClassVar[bool] = True  # every rank trains, data-parallel
    input: Text = Field(description="The teacher: a key of `models` or an earlier stage.")
    student: Text | None = Field(
        None, description="Initial student: a key of `models` or an earlier stage; set this or `keep_layers`."
    )
    keep_layers: list[LayerIndex] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LAYERS,
        description="Teacher encoder layers (0-based, no repeats) the student is built from; set this or `student`.",
    )
    alpha: Fraction = Field(
        0.5, description="Weight of the cross-entropy on the gold labels; 1 - alpha weighs the KL to the teacher."
    )
    temperature: FiniteFloat = Field(
        2.0, gt=0, le=100, description="Softmax temperature T of the KL term; higher: softer targets."
    )
    hidden_weight: FiniteFloat = Field(
        0.0, ge=0, le=1000, description="Weight of the hidden-state MSE (TinyBERT); 0: off."
    )
    attention_weight: FiniteFloat = Field(
        0.0, ge=0, le=1000, description="Weight of the self-attention KL (MiniLM); 0: off."
    )
    layer_map: list[LayerIndex] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LAYERS,
        description="Teacher layer (0-based) of each student layer for the layer losses; default: "
        "`keep_layers`; needed with a `student` model.",
    )
    augment: AugmentSpec = Field(
        AugmentSpec(), description="Teacher-labelled augmentation of the train split; default: none."
    )

    @model_validator(mode="after")
    def _one_student(self):
        if (self.student is None) == (self.keep_layers is None):
            raise ValueError("set exactly one of `student` (a model) or `keep_layers` (layers of the teacher to keep)")
        if self.keep_layers is not None and len(set(self.keep_layers)) != len(self.keep_layers):
            raise ValueError(f"keep_layers has repeated layers: {self.keep_layers}")
        if (
            self.keep_layers is not None
            and self.layer_map is not None
            and len(self.layer_map) != len(self.keep_layers)
        ):
            raise ValueError(
                f"layer_map has {len(self.layer_map)} entries but the student keeps {len(self.keep_layers)} "
                "layers: one teacher layer per student layer"
            )
        if self.uses_layers and self.student is not None and self.layer_map is None:
            raise ValueError(
                "hidden_weight/attention_weight with a `student` model need layer_map: the teacher "
                "layer of each student layer"
            )
        return self

    @property
    def uses_layers(self) -> bool:
        return self.hidden_weight > 0 or self.attention_weight > 0

    @classmethod
    def of(cls, **fields) -> DistillSpec:
        """A spec of this type from its fields, ``type`` filled in: what a stage that distils as part
        of its own work (a search's trials, a pruning's recovery) runs."""
        (own_type,) = typing.get_args(cls.model_fields["type"].annotation)
        return cls.model_validate({**fields, "type": own_type})

    def refs(self) -> dict[str, str]:
        return {"input": self.input, **({"student": self.student} if self.student else {})}

    def labelled_roles(self) -> set[str]:
        return {"input"}  # the teacher; a student gets a new head

    def output_layers(self, layers_of: LayersOf) -> int | None:
        """Layers of the student it makes: those it keeps, or the ``student`` model's."""
        return len(self.keep_layers) if self.keep_layers is not None else layers_of(self.student)

    def layer_problems(self, layers_of: LayersOf) -> list[str]:
        """What would stop the stage once its models are loaded: a teacher layer index past the
        teacher's depth, a ``layer_map`` of another length than the ``student`` model's depth."""
        problems = []
        teacher = layers_of(self.input)
        if teacher is not None:
            for where, layers in self.teacher_layers().items():
                past = sorted({i for i in layers if i >= teacher})
                if past:
                    problems.append(
                        f"stage {self.name!r} {where} {layers} names layer{'s' * (len(past) > 1)} "
                        f"{', '.join(map(str, past))}, but its teacher {self.input!r} has {teacher} layers "
                        f"(allowed: 0-{teacher - 1})"
                    )
        student = layers_of(self.student) if self.student is not None and self.layer_map is not None else None
        if student is not None and len(self.layer_map) != student:
            problems.append(
                f"stage {self.name!r} layer_map has {len(self.layer_map)} entries, but its student {self.student!r} "
                f"has {student} layers: one teacher layer per student layer"
            )
        return problems

    def teacher_layers(self) -> dict[str, list[int]]:
        """The lists of teacher layer indexes the spec sets, by field."""
        lists = {"keep_layers": self.keep_layers, "layer_map": self.layer_map}
        return {name: layers for name, layers in lists.items() if layers}

    def output_family(self, family_of: FamilyOf) -> ModelFamily | None:
        """The family of the student it makes: the ``student`` model's, or the teacher's it is cut from."""
        return family_of(self.student if self.student is not None else self.input)

    def family_problems(self, family_of: FamilyOf) -> list[str]:
        """What the models' families cannot do that the spec asks (see :mod:`recipes.ml.families`):
        a student cut from a teacher whose layout the project does not know, or whose layers cannot
        be kept as listed (ALBERT with several layer groups, ModernBERT's global layers out of
        place); attention maps that do not pair one per layer."""
        problems = []
        teacher = family_of(self.input)
        # the lists a student is cut by: keep_layers, and a search's keep_layers choices (not layer_map)
        cuts = {where: layers for where, layers in self.teacher_layers().items() if "keep_layers" in where}
        for where, layers in cuts.items():
            problem = teacher.cut_problem(layers) if teacher is not None else None
            if problem:
                problems.append(f"stage {self.name!r} ({self.type}) {where} of {self.input!r}: {problem}")
        if self.attention_weight > 0:
            for role, ref in self.refs().items():
                found = family_of(ref)
                problem = found.attention_maps_problem() if found is not None else None
                if problem:
                    problems.append(f"stage {self.name!r} ({self.type}) attention_weight, {role} {ref!r}: {problem}")
        return problems


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="distillation",
    relation="finetune",
    repo_dir="",
    usage="usage/pytorch.md.j2",
    phrase="distilled from `{input}` (knowledge distillation, layers cut from it)",
)


@register("distill", DistillSpec, libraries=TRAINING_LIBRARIES, publishing=PUBLISHING)
def run(spec: DistillSpec, ctx: StageContext) -> dict:
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from ..ml.distillation import DistillationTrainer, load_teacher, student_from_teacher, with_teacher_logits

    data = ctx.data
    teacher, teacher_tokenizer = load_teacher(ctx.inputs["input"], data.label_names)
    problems = spec.family_problems(lambda ref: ModelFamily.of(teacher.config) if ref == spec.input else None)
    if problems:  # recipes check refuses them first; a model given another way gets the same message
        raise ValueError("; ".join(problems))
    rows = training_rows(spec, ctx, teacher, teacher_tokenizer)
    logits = cached_teacher_logits(spec, ctx, teacher, teacher_tokenizer, rows)

    if spec.keep_layers is not None:
        student, tokenizer = student_from_teacher(teacher, spec.keep_layers), teacher_tokenizer
    else:  # the student may have its own vocabulary: tokenize the same rows its way
        student = classifier_with_dataset_labels(ctx.inputs["student"], data)
        tokenizer = AutoTokenizer.from_pretrained(ctx.inputs["student"])
    layers = layer_targets(spec, teacher, student, tokenizer, teacher_tokenizer) if spec.uses_layers else None
    if layers is None:
        del teacher
    train = with_teacher_logits(rows, logits, tokenizer, spec.max_length)
    trainer = DistillationTrainer(
        model=student,
        args=training_arguments(spec, ctx.out_dir / "_trainer", ctx.seed, remove_unused_columns=False),
        train_dataset=train,
        eval_dataset=data.tokenized("eval", tokenizer, spec.max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=eval_metrics(data.oos_id),
        alpha=spec.alpha,
        temperature=spec.temperature,
        layers=layers,
        callbacks=list(ctx.callbacks),
    )
    result = fit_and_save(trainer, tokenizer, ctx.out_dir)
    result["student_layers"] = student.config.num_hidden_layers
    result["train_rows"] = train_rows_record(spec, rows)
    return result


def augmented_count(spec: DistillSpec, rows) -> int:
    return sum(1 for label in rows["label"] if label == -100) if spec.augment.copies else 0


def train_rows_record(spec: DistillSpec, rows) -> dict[str, int]:
    """The record's count of training rows: the train split's, and the augmented copies'."""
    augmented = augmented_count(spec, rows)
    return {"original": len(rows) - augmented, "augmented": augmented}


def training_rows(spec: DistillSpec, ctx: StageContext, teacher, tokenizer):
    """The train split (``text``, ``label``), plus its augmented copies labelled -100."""
    from datasets import Dataset, Value, concatenate_datasets

    from ..ml.augment import augment_texts, word_neighbours

    train = ctx.data.split("train")
    aug = spec.augment
    if not aug.copies:
        return train
    key = ("augmented", aug.model_dump_json(), ctx.seed, str(ctx.inputs["input"]))
    texts = ctx.memo.get(key)
    if texts is None:
        originals = list(train["text"])
        neighbours = {}
        if "neighbour" in aug.ops:
            embeddings = teacher.get_input_embeddings().weight.detach().float().numpy()
            neighbours = word_neighbours(originals, tokenizer, embeddings)
        texts = ctx.memo[key] = augment_texts(
            originals,
            aug.copies,
            aug.word_prob,
            tuple(aug.ops),
            ctx.seed,
            neighbours,
            tokenizer.mask_token or "[MASK]",
        )
        ctx.log.info(
            "Augmented %d training texts with %d copies each (%s)", len(originals), aug.copies, ", ".join(aug.ops)
        )
    train = train.cast_column("label", Value("int64"))
    extra = Dataset.from_dict({"text": texts, "label": [-100] * len(texts)}, features=train.features)
    return concatenate_datasets([train, extra])


def cached_teacher_logits(spec: DistillSpec, ctx: StageContext, teacher, tokenizer, rows):
    """The teacher's logits for ``rows``, computed once per stage run (trials share them)."""
    from ..ml.distillation import logits_of_rows

    key = ("teacher_logits", str(ctx.inputs["input"]), spec.max_length, spec.augment.model_dump_json(), ctx.seed)
    if key not in ctx.memo:
        import numpy as np

        from ..engine import distributed

        if not distributed.enabled():
            ctx.log.info("Caching teacher logits for %d training examples", len(rows))
            ctx.memo[key] = logits_of_rows(teacher, tokenizer, rows, spec.max_length)
        else:  # each rank its block of rows, then every rank all of them, in row order
            mine = distributed.shard(len(rows))
            ctx.log.info(
                "Caching teacher logits for %d training examples: rows %d-%d here, rank %d of %d",
                len(rows),
                mine.start,
                mine.stop,
                distributed.rank(),
                distributed.world_size(),
            )
            part = logits_of_rows(teacher, tokenizer, rows.select(mine), spec.max_length)
            ctx.memo[key] = np.concatenate([p for p in distributed.all_gather(part) if len(p)])
    return ctx.memo[key]


def layer_targets(spec: DistillSpec, teacher, student, tokenizer, teacher_tokenizer):
    """What the hidden-state and attention losses need; refuses a student they cannot pair."""
    from ..ml.distillation import LayerTargets

    layer_map = spec.layer_map or spec.keep_layers
    t_conf, s_conf = teacher.config, student.config
    problems = []
    if len(layer_map) != s_conf.num_hidden_layers:
        problems.append(f"layer_map has {len(layer_map)} entries for a student of {s_conf.num_hidden_layers} layers")
    if max(layer_map) >= t_conf.num_hidden_layers:
        problems.append(f"layer_map {layer_map} names a layer past the teacher's {t_conf.num_hidden_layers}")
    if spec.hidden_weight > 0 and s_conf.hidden_size != t_conf.hidden_size:
        problems.append(f"hidden sizes differ (student {s_conf.hidden_size}, teacher {t_conf.hidden_size})")
    if tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        problems.append("student and teacher tokenize differently, so their positions do not pair")
    if problems:
        raise ValueError(
            "hidden_weight/attention_weight cannot pair this student with its teacher: " + "; ".join(problems)
        )
    if spec.attention_weight > 0:  # fused attention kernels return no attention maps
        for model in (teacher, student):
            model.set_attn_implementation("eager")
    return LayerTargets(teacher, spec.hidden_weight, spec.attention_weight, list(layer_map))
