"""``prune-magnitude``: gradual magnitude pruning while fine-tuning or distilling (the book's section).

The smallest weights of the encoder's Linear layers are set to zero on the cubic schedule of
Zhu & Gupta (2017), ``s_t = s_f + (s_i - s_f)(1 - (t - t0) / (t1 - t0))^3``, masks recomputed
every ``every`` steps and applied after every optimizer step, then made permanent (multiplied
in) when training ends. The zeros are stored densely: dense PyTorch and ONNX Runtime kernels
multiply them like any other weight, so the model is as large and as fast as its input (the
benchmark measures it); only a compressed copy (``size_gzip_mb``) is smaller.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ..ml.families import FamilyOf
from ..ml.training import TrainingSpec, classifier_with_dataset_labels, eval_metrics, fit_and_save, training_arguments
from ..plan.bounds import FiniteFloat, Fraction, Text
from .base import TRAINING_LIBRARIES, Publishing, StageContext, register


class PruneMagnitudeSpec(TrainingSpec):
    """Zero the smallest weights of ``input``'s encoder Linear layers while fine-tuning or distilling it.

    ``input`` trains on the train split (cross-entropy, or with ``teacher:`` the ``distill``
    loss, teacher logits cached) while the share of zero weights follows the cubic schedule of
    Zhu & Gupta (2017), ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3``: from
    ``initial_sparsity`` (s_i) at ``start`` to ``sparsity`` (s_f) at ``end`` (t0, t1: shares of
    the training steps), then fine-tuned with fixed masks. Masks are recomputed every ``every``
    steps and applied after every optimizer step, each matrix ranked alone (``scope: layer``) or
    all together (``model``), and made permanent when training ends. Embeddings, pooler and
    classifier stay dense.

    The zeros are stored densely: dense PyTorch and ONNX Runtime kernels multiply them like any
    other weight, so the model is as large and as fast as its input (the benchmark measures it);
    only a compressed copy (``size_gzip_mb``) is smaller. The record holds the sparsity overall,
    per layer and per matrix, and the raw and gzip sizes of the input and the result; the card
    shows the sparsity per layer.

    .. code-block:: yaml

        stages:
          - name: sparse
            type: prune-magnitude
            input: teacher
            teacher: teacher        # optional: distil from it while pruning
            sparsity: 0.9
            end: 0.7                # target reached at 70% of training, then fine-tuned with fixed masks
            every: 10
            epochs: 3
            learning_rate: 5.0e-5
    """

    type: Literal["prune-magnitude"]
    input: Text = Field(description="Model to train and prune: a key of `models` or an earlier stage.")
    keeps_layers: ClassVar[bool] = True  # its model has its input's layers (checked in recipes.plan.preflight)
    teacher: Text | None = Field(None, description="Distil from this classifier while pruning; null: labels only.")
    alpha: Fraction = Field(0.5, description="With a teacher: weight of the cross-entropy term.")
    temperature: FiniteFloat = Field(2.0, gt=0, le=100, description="With a teacher: softmax temperature T of the KL.")
    sparsity: FiniteFloat = Field(0.5, gt=0, lt=1, description="Final share of zero encoder Linear weights (s_f).")
    initial_sparsity: FiniteFloat = Field(0.0, ge=0, lt=1, description="Share of zero weights at `start` (s_i).")
    start: Fraction = Field(0.0, description="Share of the training steps before pruning starts (t0); before `end`.")
    end: Fraction = Field(0.7, description="Share of the training steps by which `sparsity` is reached (t1).")
    every: int = Field(10, ge=1, le=1_000_000, description="Steps between mask updates.")
    scope: Literal["layer", "model"] = Field(
        "layer", description="layer: rank each matrix's weights alone; model: rank all the encoder's together."
    )

    @model_validator(mode="after")
    def _schedule(self):
        if self.initial_sparsity > self.sparsity:
            raise ValueError(f"initial_sparsity ({self.initial_sparsity}) exceeds sparsity ({self.sparsity})")
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must come before end ({self.end}): shares of the training steps")
        return self

    def refs(self) -> dict[str, str]:
        return {"input": self.input, **({"teacher": self.teacher} if self.teacher else {})}

    def family_problems(self, family_of: FamilyOf) -> list[str]:
        """A model family whose encoder layers the project does not know (:mod:`recipes.ml.families`)."""
        found = family_of(self.input)
        problem = found.layout_problem("magnitude pruning of the encoder's Linear layers") if found else None
        return [f"stage {self.name!r} ({self.type}) on {self.input!r}: {problem}"] if problem else []

    def labelled_roles(self) -> set[str]:
        return {"teacher"} if self.teacher else set()  # the input may get a new head, as in finetune


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="pruning",
    relation="finetune",
    phrase="magnitude-pruned to {sparsity} sparsity of the encoder's Linear weights while training "
    "(cubic schedule, Zhu & Gupta 2017; zeros stored densely)",
    repo_dir="",
    usage="usage/pytorch.md.j2",
    card_section="kept",
)


@register("prune-magnitude", PruneMagnitudeSpec, libraries=TRAINING_LIBRARIES, publishing=PUBLISHING)
def run(spec: PruneMagnitudeSpec, ctx: StageContext) -> dict:
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer

    from ..measure.size import weights_size_mb
    from ..ml.distillation import DistillationTrainer, load_teacher, logits_of_rows, with_teacher_logits
    from ..ml.pruning import (
        MagnitudePruner,
        kept_record,
        make_callback,
        sparsity_by_layer,
        sparsity_by_matrix,
    )

    data = ctx.data
    tokenizer = AutoTokenizer.from_pretrained(ctx.inputs["input"])
    model = classifier_with_dataset_labels(ctx.inputs["input"], data)
    common = dict(
        model=model,
        eval_dataset=data.tokenized("eval", tokenizer, spec.max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=eval_metrics(data.oos_id),
        callbacks=list(getattr(ctx, "callbacks", ())),  # what the runner adds to every trainer
    )
    work_dir = ctx.out_dir / "_trainer"
    if spec.teacher is None:
        trainer = Trainer(
            args=training_arguments(spec, work_dir, ctx.seed),
            train_dataset=data.tokenized("train", tokenizer, spec.max_length),
            **common,
        )
    else:
        teacher, teacher_tokenizer = load_teacher(ctx.inputs["teacher"], data.label_names)
        rows = data.split("train")
        ctx.log.info("Caching teacher logits for %d training examples", len(rows))
        logits = logits_of_rows(teacher, teacher_tokenizer, rows, spec.max_length)
        del teacher
        train = with_teacher_logits(rows, logits, tokenizer, spec.max_length)
        trainer = DistillationTrainer(
            args=training_arguments(spec, work_dir, ctx.seed, remove_unused_columns=False),
            train_dataset=train,
            alpha=spec.alpha,
            temperature=spec.temperature,
            **common,
        )
    pruner = MagnitudePruner(model, spec.scope)
    trainer.add_callback(make_callback(pruner, spec.sparsity, spec.initial_sparsity, spec.start, spec.end, spec.every))
    result = fit_and_save(trainer, tokenizer, ctx.out_dir)
    per_layer = sparsity_by_layer(trainer.model)
    per_matrix = sparsity_by_matrix(trainer.model)
    sizes, sizes_before = weights_size_mb(ctx.out_dir), weights_size_mb(ctx.inputs["input"])
    ctx.log.info(
        "Encoder sparsity per layer %s; %.2f MB (gzip %.2f MB; input gzip %.2f MB)",
        [round(s, 3) for s in per_layer],
        sizes["size_mb"],
        sizes["size_gzip_mb"],
        sizes_before["size_gzip_mb"],
    )
    return {
        **result,
        "sparsity": sum(per_matrix[n] * m.weight.numel() for n, m in pruner.modules)
        / sum(m.weight.numel() for _, m in pruner.modules),
        "sparsity_per_layer": per_layer,
        "sparsity_per_matrix": per_matrix,
        **sizes,
        "size_mb_before": sizes_before["size_mb"],
        "size_gzip_mb_before": sizes_before["size_gzip_mb"],
        "kept": kept_record(layers=[{"sparsity": s} for s in per_layer]),
    }
