"""``distill``: knowledge distillation of a teacher into a smaller student."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..training import TrainingSpec, accuracy, fit_and_save, training_arguments
from .base import StageContext, register


class DistillSpec(TrainingSpec):
    """Distil ``input`` (the teacher) into a student on the train split.

    loss = alpha * CE + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T)).
    The student is either another model (``student:``, a key of ``models`` or an earlier
    stage) or the teacher cut down to ``keep_layers`` (the DistilBERT trick).

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
    input: str = Field(description="The teacher: a key of `models` or an earlier stage.")
    student: str | None = Field(None, description="Initial student: a key of `models` or an earlier stage.")
    keep_layers: list[int] | None = Field(None, min_length=1, description="Teacher layers the student keeps.")
    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _one_student(self):
        if (self.student is None) == (self.keep_layers is None):
            raise ValueError("set exactly one of `student` (a model) or `keep_layers` (layers of the teacher to keep)")
        if self.keep_layers is not None and len(set(self.keep_layers)) != len(self.keep_layers):
            raise ValueError(f"keep_layers has repeated layers: {self.keep_layers}")
        return self

    def refs(self) -> dict[str, str]:
        return {"input": self.input, **({"student": self.student} if self.student else {})}


@register("distill", DistillSpec)
def run(spec: DistillSpec, ctx: StageContext) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from ..distillation import TEACHER_LOGITS, DistillationTrainer, student_from_teacher, teacher_logits

    data = ctx.data
    teacher_dir = ctx.inputs["input"]
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    if teacher.config.num_labels != len(data.label_names):
        raise ValueError(
            f"the teacher has {teacher.config.num_labels} labels but the dataset has "
            f"{len(data.label_names)}: distil from a teacher fine-tuned on this dataset"
        )
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher_train = data.tokenized("train", teacher_tokenizer, spec.max_length)
    memo_key = ("teacher_logits", str(teacher_dir), spec.max_length)
    logits = ctx.memo.get(memo_key)
    if logits is None:
        ctx.log.info("Caching teacher logits for %d training examples", len(teacher_train))
        logits = ctx.memo[memo_key] = teacher_logits(teacher, teacher_train, DataCollatorWithPadding(teacher_tokenizer))

    if spec.keep_layers is not None:
        student, tokenizer, train = student_from_teacher(teacher, spec.keep_layers), teacher_tokenizer, teacher_train
    else:  # the student may have its own vocabulary: tokenize the same rows its way
        student = AutoModelForSequenceClassification.from_pretrained(
            ctx.inputs["student"],
            num_labels=len(data.label_names),
            id2label=data.id2label,
            label2id=data.label2id,
            ignore_mismatched_sizes=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(ctx.inputs["student"])
        train = data.tokenized("train", tokenizer, spec.max_length)
    del teacher
    train = train.add_column(TEACHER_LOGITS, [row.tolist() for row in logits])
    trainer = DistillationTrainer(
        model=student,
        args=training_arguments(spec, ctx.out_dir / "_trainer", ctx.seed, remove_unused_columns=False),
        train_dataset=train,
        eval_dataset=data.tokenized("eval", tokenizer, spec.max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        alpha=spec.alpha,
        temperature=spec.temperature,
    )
    result = fit_and_save(trainer, tokenizer, ctx.out_dir)
    result["student_layers"] = student.config.num_hidden_layers
    return result
