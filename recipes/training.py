"""Training pieces shared by the ``finetune`` and ``distill`` stages (HF Trainer based)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from pydantic import Field, PositiveInt

from .modelio import save_pretrained_model
from .stages.base import StageSpec


class TrainingSpec(StageSpec):
    """Hyper-parameters common to every stage that trains with the HF Trainer."""

    epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: PositiveInt = 32
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_length: PositiveInt = 128


def accuracy(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def training_arguments(spec: TrainingSpec, work_dir: Path, seed: int, **overrides):
    """TrainingArguments from a stage spec: evaluate each epoch, save only the final model.

    ``work_dir`` is scratch for the Trainer; :func:`fit_and_save` removes it."""
    from transformers import TrainingArguments

    args = dict(
        output_dir=str(work_dir),
        num_train_epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=max(64, spec.batch_size),
        weight_decay=spec.weight_decay,
        warmup_ratio=spec.warmup_ratio,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    args.update(overrides)
    return TrainingArguments(**args)


def epoch_history(trainer) -> list[dict]:
    """Per-epoch eval metrics from the Trainer's log, for the stage record and the card."""
    return [
        {k: v for k, v in entry.items() if k in ("epoch", "eval_accuracy", "eval_loss")}
        for entry in trainer.state.log_history
        if "eval_accuracy" in entry
    ]


def fit_and_save(trainer, tokenizer, out_dir: Path) -> dict:
    """Train, save the final model into ``out_dir`` and return the per-epoch eval history."""

    trainer.train()
    history = epoch_history(trainer)
    save_pretrained_model(trainer.model, tokenizer, out_dir)
    shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    return {"eval_accuracy": history[-1]["eval_accuracy"] if history else None, "history": history}
