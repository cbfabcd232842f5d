"""``prune-structured``: remove whole attention heads and FFN neurons, then optionally recover.

Unstructured zeros do not make dense PyTorch or ONNX Runtime kernels faster; smaller matrices
do. This stage scores every head and FFN neuron on train rows (:func:`recipes.ml.pruning.importance`:
the gradient of the loss with respect to a mask on each, Michel et al. 2019, or the weights'
norms), removes the lowest-scored physically, and can recover with a short distillation from a
teacher (``recover:``, the ``distill`` stage's trainer with the pruned model as its student).

Heads: ``model.prune_heads`` removes them and records ``config.pruned_heads``, which
``from_pretrained`` and optimum's ONNX export replay, so a layer may keep any number of heads.
FFN neurons: transformers' config has one ``intermediate_size`` for every layer, so every layer
keeps the **same number** of neurons (its own highest-scored ones): the result loads through a
stock config everywhere (``pipeline()``, optimum, ONNX Runtime). Per-layer widths would need a
custom model class, which neither the Hub's loaders nor the exporter know.
"""

from __future__ import annotations

import dataclasses
import shutil
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ..ml.families import FamilyOf, ModelFamily, ffn_width
from ..plan.bounds import BatchSize, FiniteFloat, Fraction, LayerIndex, SampleCount, Text
from .base import TRAINING_LIBRARIES, Publishing, StageContext, StageSpec, StrictSpec, register
from .distill import AugmentSpec, DistillSpec

#: A share of parts to remove: 0 removes none; 1 would remove them all.
RemovedShare = FiniteFloat


class RecoverSpec(StrictSpec):
    """A short distillation of the pruned model from ``teacher``: a ``distill`` run with the
    pruned model as its student (loss ``alpha * CE + (1 - alpha) * T^2 * KL``, teacher logits
    cached); the fields mean what ``distill``'s do. The layer losses (``hidden_weight``,
    ``attention_weight``; with pruned heads the attention maps are compared averaged over heads)
    need ``layer_map``: the teacher layer of each of the pruned model's layers."""

    teacher: Text = Field(description="The teacher: a key of `models` or an earlier stage.")
    epochs: FiniteFloat = Field(2.0, gt=0, le=1000, description="Passes over the train split.")
    learning_rate: FiniteFloat = Field(1e-4, gt=0, le=1, description="Peak learning rate (AdamW).")
    batch_size: BatchSize = Field(32, description="Training examples per optimizer step.")
    weight_decay: Fraction = Field(0.01, description="AdamW weight decay.")
    warmup_ratio: FiniteFloat = Field(
        0.0, ge=0, lt=1, description="Share of the training steps over which the learning rate rises from 0."
    )
    max_length: int = Field(128, ge=1, le=8192, description="Tokens per text; longer texts are truncated.")
    alpha: Fraction = Field(0.5, description="Weight of the cross-entropy; 1 - alpha weighs the KL to the teacher.")
    temperature: FiniteFloat = Field(2.0, gt=0, le=100, description="Softmax temperature T of the KL term.")
    hidden_weight: FiniteFloat = DistillSpec.model_fields["hidden_weight"]
    attention_weight: FiniteFloat = DistillSpec.model_fields["attention_weight"]
    layer_map: list[LayerIndex] | None = DistillSpec.model_fields["layer_map"]
    augment: AugmentSpec = DistillSpec.model_fields["augment"]

    @model_validator(mode="after")
    def _layers_mapped(self):
        if (self.hidden_weight > 0 or self.attention_weight > 0) and self.layer_map is None:
            raise ValueError("hidden_weight/attention_weight need layer_map: the teacher layer of each pruned layer")
        return self


class PruneStructuredSpec(StageSpec):
    """Remove ``remove_heads`` of ``input``'s attention heads and ``remove_ffn`` of its FFN neurons.

    Unstructured zeros make no dense PyTorch or ONNX Runtime kernel faster; smaller matrices do,
    so this stage removes whole heads and FFN neurons. It scores each on ``importance_samples``
    train rows (``importance: gradient``: the gradient of the loss with respect to a mask on
    each, Michel et al. 2019; ``magnitude``: the norms of the weights that serve it) and removes
    the lowest-scored. Heads go by lowest score within each layer (``head_scope: layer``) or
    across the model (``model``), every layer keeping at least ``min_heads``; ``prune_heads``
    records them in ``config.pruned_heads``. FFN neurons go by lowest score within each layer,
    the same number in every layer: transformers' config has one ``intermediate_size``. So
    ``from_pretrained``, ``pipeline()``, the ONNX export and int8 load the result unchanged.
    DeBERTa-v2 and ModernBERT have no ``prune_heads``: ``recipes check`` refuses ``remove_heads``
    above 0 for them (their FFN neurons can go); ALBERT's layers share weights, so its one
    shared layer is pruned.

    ``recover`` then distils the pruned model from a teacher with the ``distill`` loss. The
    record holds the heads removed, ``pruned_heads``, ``intermediate_size``, the parameters
    before and after, the heads and FFN width kept per layer (the card shows them), and the eval
    metrics before, after pruning and after recovery.

    .. code-block:: yaml

        stages:
          - name: prune
            type: prune-structured
            input: student
            remove_heads: 0.5       # half the heads of each layer
            remove_ffn: 0.5         # half the FFN neurons of each layer
            importance: gradient    # Michel et al. 2019; or magnitude
            recover: {teacher: teacher, epochs: 3, learning_rate: 1.0e-4}
    """

    type: Literal["prune-structured"]
    input: Text = Field(description="A PyTorch fp32 classifier: a key of `models` or an earlier stage.")
    keeps_layers: ClassVar[bool] = True  # its model has its input's layers (checked in recipes.plan.preflight)
    remove_heads: RemovedShare = Field(0.0, ge=0, lt=1, description="Share of attention heads removed.")
    head_scope: Literal["layer", "model"] = Field("layer", description="Heads ranked within each layer or overall.")
    min_heads: int = Field(1, ge=1, le=1024, description="Heads every layer keeps at least.")
    remove_ffn: RemovedShare = Field(0.0, ge=0, lt=1, description="Share of FFN neurons removed (each layer).")
    importance: Literal["gradient", "magnitude"] = Field("gradient", description="How parts are scored.")
    importance_samples: SampleCount = Field(512, description="Train rows the gradient scores are summed over.")
    batch_size: BatchSize = Field(32, description="Train rows per backward pass of the importance scoring.")
    max_length: int = Field(
        128, ge=1, le=8192, description="Tokens per text when scoring and evaluating; longer texts are truncated."
    )
    recover: RecoverSpec | None = Field(None, description="Distil the pruned model from a teacher; null: none.")

    @model_validator(mode="after")
    def _removes_something(self):
        if self.remove_heads == 0 and self.remove_ffn == 0:
            raise ValueError("nothing to remove: set remove_heads and/or remove_ffn above 0 (and below 1)")
        return self

    def refs(self) -> dict[str, str]:
        return {"input": self.input, **({"teacher": self.recover.teacher} if self.recover else {})}

    def family_problems(self, family_of: FamilyOf) -> list[str]:
        """Why ``input``'s family cannot lose what the spec removes (see :mod:`recipes.ml.families`):
        a family whose layout the project does not know; heads of one with no ``prune_heads``."""
        found = family_of(self.input)
        if found is None:
            return []
        if self.remove_heads > 0:
            problem = found.head_pruning_problem()
            fix = f"; set remove_heads: 0 (--set {self.name}.remove_heads=0) to remove FFN neurons only"
        else:
            problem, fix = found.layout_problem("removing FFN neurons"), ""
        return [f"stage {self.name!r} ({self.type}) on {self.input!r}: {problem}{fix}"] if problem else []


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="pruning",
    relation="finetune",
    phrase="structured pruning: {remove_heads} of the attention heads and {remove_ffn} of the FFN neurons removed "
    "by {importance} importance (recovery by distillation: see the settings)",
    repo_dir="",
    usage="usage/pytorch.md.j2",
    card_section="kept",
)


@register("prune-structured", PruneStructuredSpec, libraries=TRAINING_LIBRARIES, publishing=PUBLISHING)
def run(spec: PruneStructuredSpec, ctx: StageContext) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from ..measure.metrics import classification_metrics
    from ..ml.data import tokenize
    from ..ml.modelio import predictions, save_pretrained_model
    from ..ml.pruning import (
        ffn_to_keep,
        heads_to_remove,
        importance,
        kept_record,
        layer_shapes,
        remove_heads,
        shrink_ffn,
    )

    source = ctx.inputs["input"]
    model = AutoModelForSequenceClassification.from_pretrained(source)
    problems = spec.family_problems(lambda ref: ModelFamily.of(model.config))
    if problems:  # recipes check refuses them first; a model given another way gets the same message
        raise ValueError("; ".join(problems))
    tokenizer = AutoTokenizer.from_pretrained(source)
    before = layer_shapes(model)
    heads_total = model.config.num_attention_heads
    if spec.remove_heads and spec.min_heads > max(b["heads"] for b in before):
        raise ValueError(
            f"min_heads is {spec.min_heads} but the layers have at most {max(b['heads'] for b in before)}"
        )
    params_before = sum(p.numel() for p in model.parameters())

    eval_rows = ctx.data.split("eval")
    eval_texts, eval_labels = list(eval_rows["text"]), list(eval_rows["label"])

    def eval_metrics() -> dict:
        preds = predictions(model, tokenizer, eval_texts, spec.max_length)
        return classification_metrics(preds, eval_labels, ctx.data.oos_id)

    eval_before = eval_metrics()
    train = ctx.data.split("train")
    rows = train.shuffle(seed=ctx.seed).select(range(min(spec.importance_samples, len(train))))
    loader = torch.utils.data.DataLoader(
        tokenize(rows, tokenizer, spec.max_length),
        batch_size=spec.batch_size,
        collate_fn=DataCollatorWithPadding(tokenizer),
    )
    head_scores, ffn_scores = importance(model, loader, spec.importance)
    removed = heads_to_remove(head_scores, spec.remove_heads, spec.head_scope, spec.min_heads)
    remove_heads(model, removed)
    if spec.remove_ffn:
        shrink_ffn(model, ffn_to_keep(ffn_scores, spec.remove_ffn))
    after = layer_shapes(model)
    params_after = sum(p.numel() for p in model.parameters())
    eval_pruned = eval_metrics()
    ctx.log.info(
        "Pruned heads per layer %s -> %s, FFN width %s -> %s; eval accuracy %.4f -> %.4f",
        [b["heads"] for b in before],
        [a["heads"] for a in after],
        before[0]["ffn"],
        after[0]["ffn"],
        eval_before["accuracy"],
        eval_pruned["accuracy"],
    )

    recovered = None
    if spec.recover is None:
        save_pretrained_model(model, tokenizer, ctx.out_dir)
    else:
        recovered = _recover(spec, ctx, model, tokenizer)
    reloaded = AutoModelForSequenceClassification.from_pretrained(ctx.out_dir)
    if layer_shapes(reloaded) != after:  # the config must describe the shapes: stop before export does
        raise RuntimeError(f"{ctx.out_dir} reloads with shapes {layer_shapes(reloaded)}, not {after}")
    layers = [
        {"heads": a["heads"], "heads_total": heads_total, "ffn": a["ffn"], "ffn_total": b["ffn"]}
        for a, b in zip(after, before)
    ]
    return {
        "importance": spec.importance,
        "heads_removed": {str(i): hs for i, hs in removed.items()},  # current indices of the input
        "pruned_heads": {str(k): sorted(v) for k, v in reloaded.config.pruned_heads.items()},
        "intermediate_size": ffn_width(reloaded.config),
        "params_before": params_before,
        "params_after": params_after,
        "eval_before": eval_before,
        "eval_pruned": eval_pruned,
        **({"recover": recovered, "eval_accuracy": recovered.get("eval_accuracy")} if recovered else {}),
        "kept": kept_record(layers=layers),
    }


def _recover(spec: PruneStructuredSpec, ctx: StageContext, model, tokenizer) -> dict:
    """Distil the pruned ``model`` from the teacher into ``ctx.out_dir`` with the distill stage."""
    from ..ml.modelio import save_pretrained_model
    from . import distill

    pruned_dir = ctx.out_dir / "_pruned"
    save_pretrained_model(model, tokenizer, pruned_dir)
    recipe = spec.recover.model_dump(exclude={"teacher"})
    distill_spec = DistillSpec.of(name=spec.name, input="teacher", student="pruned", **recipe)
    sub = dataclasses.replace(ctx, inputs={"input": ctx.inputs["teacher"], "student": pruned_dir})
    ctx.log.info("Recovering the pruned model by distillation from %r", spec.recover.teacher)
    try:
        return distill.run(distill_spec, sub)
    finally:
        shutil.rmtree(pruned_dir, ignore_errors=True)
