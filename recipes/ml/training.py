"""Training pieces shared by the ``finetune`` and ``distill`` stages (HF Trainer based)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from pydantic import Field

from ..measure.metrics import OBJECTIVES
from ..plan.bounds import BatchSize, FiniteFloat, Fraction
from ..stages.base import StageSpec
from .modelio import save_pretrained_model


class TrainingSpec(StageSpec):
    """Hyper-parameters of every stage that trains with the Hugging Face Trainer (AdamW, the
    learning rate decaying linearly to 0 after the warm-up).

    The model is evaluated on the eval split after every epoch (the stage record keeps the
    per-epoch history and the last epoch's metrics); only the final model is saved. Training runs
    on a GPU (or MPS) when there is one, else on the CPU. Under ``torchrun`` / ``accelerate
    launch``, a stage that every rank runs trains data-parallel, and ``batch_size`` stays the
    recipe's batch: each of the N processes takes ``batch_size // N`` of it.
    """

    epochs: FiniteFloat = Field(
        3.0, gt=0, le=1000, description="Passes over the train split; a fraction trains part of the last one."
    )
    learning_rate: FiniteFloat = Field(5e-5, gt=0, le=1, description="Peak learning rate (AdamW).")
    batch_size: BatchSize = Field(32, description="Training examples per optimizer step, over all processes.")
    weight_decay: Fraction = Field(0.01, description="AdamW weight decay.")
    warmup_ratio: FiniteFloat = Field(
        0.0, ge=0, lt=1, description="Share of the training steps over which the learning rate rises from 0."
    )
    max_length: int = Field(128, ge=1, le=8192, description="Tokens per text; longer texts are truncated.")


def classifier_with_dataset_labels(model_dir, data):
    """``model_dir`` as a sequence classifier of ``data``'s labels; a head for other labels is
    replaced, never reused (fine-tuning bases, students, models to prune while training)."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=len(data.label_names),
        id2label=data.id2label,
        label2id=data.label2id,
        ignore_mismatched_sizes=True,
    )


def eval_metrics(oos_id: int | None = None):
    """``compute_metrics`` for the Trainer: accuracy, and the out-of-scope metrics when the
    dataset has an out-of-scope label (see :func:`recipes.measure.metrics.classification_metrics`)."""
    from ..measure.metrics import classification_metrics

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred
        return classification_metrics(np.argmax(logits, axis=-1), labels, oos_id)

    return compute


def training_arguments(spec: TrainingSpec, work_dir: Path, seed: int, **overrides):
    """TrainingArguments from a stage spec: evaluate each epoch, save only the final model.

    ``work_dir`` is scratch for the Trainer; :func:`fit_and_save` removes it. The Trainer places
    the model on a GPU (or MPS) when there is one, else on the CPU. Under ``torchrun`` /
    ``accelerate launch`` it trains data-parallel, and ``batch_size`` stays the recipe's batch:
    each of the N processes takes ``batch_size // N`` of it (see :mod:`recipes.engine.distributed`)."""
    from transformers import TrainingArguments

    from ..engine import distributed
    from ..engine.progress import bars_enabled

    per_device = max(1, spec.batch_size // distributed.world_size())

    args = dict(
        output_dir=str(work_dir),
        num_train_epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=max(64, per_device),
        weight_decay=spec.weight_decay,
        warmup_ratio=spec.warmup_ratio,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not distributed.accelerator_available(),
        dataloader_num_workers=0,
        disable_tqdm=not bars_enabled(),
    )
    args.update(overrides)
    return TrainingArguments(**args)


#: Per-epoch Trainer log entries kept in a stage's history.
HISTORY_KEYS = ("epoch", "eval_loss", *(f"eval_{m}" for m in OBJECTIVES))


def epoch_history(trainer) -> list[dict]:
    """Per-epoch eval metrics from the Trainer's log, for the stage record and the card."""
    return [
        {k: v for k, v in entry.items() if k in HISTORY_KEYS}
        for entry in trainer.state.log_history
        if "eval_accuracy" in entry
    ]


def fit_and_save(trainer, tokenizer, out_dir: Path) -> dict:
    """Train, save the final model into ``out_dir`` and return the per-epoch eval history."""

    from ..engine.progress import make_log_progress

    trainer.add_callback(make_log_progress())
    trainer.train()
    history = epoch_history(trainer)
    if trainer.args.should_save:  # the main process only, under torchrun
        save_pretrained_model(trainer.model, tokenizer, out_dir)
    shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    last = history[-1] if history else {}
    return {
        **{k: v for k, v in last.items() if k.startswith("eval_") and k != "eval_loss"},
        "eval_accuracy": last.get("eval_accuracy"),
        "history": history,
    }
