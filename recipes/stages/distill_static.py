"""``distill-static``: distil a teacher into a static-embedding student (no attention, no layers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..ml.training import TrainingSpec, eval_metrics, fit_and_save, training_arguments
from ..plan.bounds import FiniteFloat, Fraction, Text
from .base import TRAINING_LIBRARIES, Publishing, StageContext, register
from .distill import AugmentSpec, cached_teacher_logits, train_rows_record, training_rows


class DistillStaticSpec(TrainingSpec):
    """Distil ``input`` (a fine-tuned classifier) into a static student
    (:mod:`recipes.ml.static_model`): a table of one vector per token of the teacher's
    tokenizer, the mean of a query's rows (padding masked), optionally one hidden layer
    (``hidden`` units, GELU), and a linear head. A query costs a look-up per token and one small
    matrix product: the latency of the tokenizer and the pipeline, next to nothing more.
    ``bigrams`` adds a second table of that many rows for hashed pairs of adjacent pieces
    (fastText's bigrams; the table starts at zero), whose mean is added to the pieces' mean: the
    word order a mean of single pieces cannot see, for one more look-up per token.

    ``special_tokens: false`` trains (and saves) the student with a tokenizer that adds no
    ``[CLS]``/``[SEP]``, so the mean is over the text's pieces alone, as model2vec pools: what
    ``export-model2vec`` needs to write the student in model2vec's format. The teacher's logits
    are computed with its own tokenizer either way.

    ``init: model2vec`` (default) starts the table from the teacher's own encoder the way
    model2vec distils a sentence encoder (every vocabulary piece run through it once,
    mean-pooled, PCA to ``dim``, Zipf-weighted; :mod:`recipes.ml.static_vectors`); ``random``
    from small random values. Training is ``distill``'s: ``alpha * CE + (1 - alpha) * T^2 * KL``
    against the teacher's logits (cached once), with ``augment`` copies of the train texts
    labelled by the teacher alone; ``piece_dropout`` leaves each piece out of its text's mean
    with that chance in every training batch (word dropout, :class:`PieceDropout`). The table is
    trained with the head (``learning_rate`` is for both: static tables want a larger one than a
    transformer, hence the default).

    The model is a PyTorch fp32 classifier: ``calibrate-oos`` folds the out-of-scope bias into
    its head, and ``quantize-dynamic`` quantizes its linear layers. Its folder holds the model's
    code (``static_model.py``) and ``auto_map`` in ``config.json``, so a pushed repo loads with
    ``pipeline("text-classification", model=repo_id, trust_remote_code=True)``.

    .. code-block:: yaml

        stages:
          - name: static
            type: distill-static
            input: teacher
            dim: 256
            augment: {copies: 1}
    """

    type: Literal["distill-static"]
    input: Text = Field(description="The teacher: a fine-tuned classifier (a key of `models` or an earlier stage).")
    init: Literal["model2vec", "random"] = Field(
        "model2vec", description="The table's start: model2vec vectors of the teacher's encoder, or random."
    )
    dim: int = Field(
        256, ge=2, le=4096, description="Values per token vector (model2vec: PCA dims, at most the teacher's width)."
    )
    hidden: int = Field(0, ge=0, le=8192, description="Units of one hidden layer before the head; 0: none.")
    bigrams: int = Field(
        0, ge=0, le=2_000_000, description="Rows of a table of hashed pairs of adjacent pieces (word order); 0: none."
    )
    special_tokens: bool = Field(
        True,
        description="Average [CLS]/[SEP] in with the text's pieces; false: the text's pieces alone (as model2vec).",
    )
    dropout: Fraction = Field(0.0, description="Dropout on the pooled vector while training.")
    piece_dropout: FiniteFloat = Field(
        0.0,
        ge=0,
        le=0.9,
        description="While training, the chance that a piece is left out of its text's mean (word dropout).",
    )
    alpha: Fraction = Field(
        0.5, description="Weight of the cross-entropy on the gold labels; 1 - alpha weighs the KL to the teacher."
    )
    temperature: FiniteFloat = Field(2.0, gt=0, le=100, description="Softmax temperature T of the KL term.")
    augment: AugmentSpec = Field(
        AugmentSpec(), description="Teacher-labelled augmentation of the train split; default: none."
    )
    epochs: FiniteFloat = Field(4.0, gt=0, le=1000, description="Passes over the train split (and its copies).")
    learning_rate: FiniteFloat = Field(3e-3, gt=0, le=1, description="Peak learning rate (AdamW), table and head.")
    weight_decay: Fraction = Field(0.0, description="AdamW weight decay.")

    def refs(self) -> dict[str, str]:
        return {"input": self.input}

    def output_traits(self) -> dict[str, str]:
        traits = {"special-tokens": "special_tokens: true"} if self.special_tokens else {}
        if self.hidden:
            traits["hidden-layer"] = f"hidden: {self.hidden}"
        if self.bigrams:
            traits["bigrams"] = f"bigrams: {self.bigrams}"
        return traits


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="static-embeddings",
    relation="finetune",
    repo_dir="",
    usage="usage/pytorch.md.j2",
    phrase="distilled from `{input}` into a static-embedding student ({dim} values per token, init {init})",
)


@register("distill-static", DistillStaticSpec, libraries=(*TRAINING_LIBRARIES, "model2vec"), publishing=PUBLISHING)
def run(spec: DistillStaticSpec, ctx: StageContext) -> dict:
    from ..ml import static_vectors
    from ..ml.distillation import load_teacher, with_teacher_logits

    if spec.init == "model2vec" and (problem := static_vectors.missing()):
        raise ValueError(f"init: model2vec: {problem}; or set init: random")
    data = ctx.data
    teacher, tokenizer = load_teacher(ctx.inputs["input"], data.label_names)
    rows = training_rows(spec, ctx, teacher, tokenizer)
    logits = cached_teacher_logits(spec, ctx, teacher, tokenizer, rows)
    table, init = None, {"init": "random", "rows": len(tokenizer), "dim": spec.dim}
    if spec.init == "model2vec":
        ctx.log.info("Token vectors from the teacher's encoder (model2vec, PCA %d)", spec.dim)
        table, init = static_vectors.teacher_vectors(teacher, tokenizer, spec.dim)
    del teacher
    if not spec.special_tokens:
        tokenizer = text_pieces_only(tokenizer)

    trainer = student_trainer(
        spec,
        tokenizer,
        table,
        init["dim"],
        with_teacher_logits(rows, logits, tokenizer, spec.max_length),
        data.tokenized("eval", tokenizer, spec.max_length),
        data.id2label,
        data.oos_id,
        ctx.out_dir / "_trainer",
        ctx.seed,
        ctx.callbacks,
    )
    result = fit_and_save(trainer, tokenizer, ctx.out_dir)
    result["table"] = init
    result["bigram_buckets"] = spec.bigrams
    result["pooled"] = "text and special tokens" if spec.special_tokens else "text tokens only"
    result["parameters"] = sum(p.numel() for p in trainer.model.parameters())
    result["train_rows"] = train_rows_record(spec, rows)
    return result


def student_trainer(
    spec: DistillStaticSpec,
    tokenizer,
    table,
    dim: int,
    train,
    eval_rows,
    id2label: dict[int, str],
    oos_id: int | None,
    work_dir,
    seed: int,
    callbacks=(),
):
    """The Trainer that distils a new static student as ``spec`` says: the student is seeded by
    ``seed``, its table ``table`` (``dim`` values per piece of ``tokenizer``; ``None``: random), its
    bigram table zero; ``train`` is tokenized rows carrying the teacher's logits
    (:func:`recipes.ml.distillation.with_teacher_logits`), ``eval_rows`` tokenized rows evaluated
    each epoch. ``trainer.model`` is the student."""
    import torch
    from transformers import DataCollatorWithPadding

    from ..ml.distillation import DistillationTrainer
    from ..ml.static_model import StaticConfig, StaticForSequenceClassification

    torch.manual_seed(seed)
    config = StaticConfig(
        vocab_size=len(tokenizer),
        dim=dim,
        hidden=spec.hidden,
        dropout=spec.dropout,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
        pad_token_id=tokenizer.pad_token_id,
        bigram_buckets=spec.bigrams,
    )
    student = StaticForSequenceClassification(config)
    with torch.no_grad():
        if table is not None:
            student.embeddings.weight.copy_(torch.from_numpy(table))
        if student.bigrams is not None:  # the start is the single pieces' model; pairs learn what they add
            student.bigrams.weight.zero_()
    return DistillationTrainer(
        model=student,
        args=training_arguments(spec, work_dir, seed, remove_unused_columns=False),
        train_dataset=train,
        eval_dataset=eval_rows,
        data_collator=PieceDropout(DataCollatorWithPadding(tokenizer), spec.piece_dropout),
        compute_metrics=eval_metrics(oos_id),
        alpha=spec.alpha,
        temperature=spec.temperature,
        callbacks=list(callbacks),
    )


class PieceDropout:
    """A collator that pads with ``pad`` and then, in training batches (those that carry the
    teacher's logits; evaluation batches do not), leaves each piece out of its text's mean with
    probability ``rate``: the word dropout that deep averaging networks train with (Iyyer et al.,
    2015), which keeps a mean of vectors from leaning on a few pieces. A text keeps at least one
    piece; a left-out piece takes its bigrams with it (the model counts a pair when both pieces
    count)."""

    def __init__(self, pad, rate: float):
        self.pad = pad
        self.rate = rate

    def __call__(self, features):
        import torch

        from ..ml.distillation import TEACHER_LOGITS

        batch = self.pad(features)
        if self.rate and TEACHER_LOGITS in batch:
            mask = batch["attention_mask"]
            kept = mask * (torch.rand(mask.shape) >= self.rate).to(mask.dtype)
            emptied = kept.sum(dim=1) == 0
            kept[emptied] = mask[emptied]
            batch["attention_mask"] = kept
        return batch


def text_pieces_only(tokenizer):
    """A copy of the fast ``tokenizer`` that adds no special tokens (its post-processor keeps
    the sequence alone); ``save_pretrained`` keeps that, so ``pipeline()`` tokenizes the same way."""
    import copy

    from tokenizers.processors import TemplateProcessing

    out = copy.deepcopy(tokenizer)
    out.backend_tokenizer.post_processor = TemplateProcessing(single="$A", pair="$A $B:1", special_tokens=[])
    return out
