"""Piece dropout for the ``kd-static-bigrams`` student, chosen by 5-fold cross-validation on the
train split (issue 21).

The validation split (3,000 in-scope rows, 100 oos) could not tell piece dropout 0, 0.05 and 0.1
apart over 4 seeds, so this script gives the choice five times as many held-out rows: the train
split (15,250 rows) in 5 folds. For each fold and rate, a student is trained by the stage's own
Trainer (:func:`recipes.stages.distill_static.student_trainer`, with the catalog recipe's
``static`` settings: model2vec's vectors of the teacher, 20,000 bigram rows at zero, one
teacher-labelled perturbed copy of each training text) on the other four folds and their copies;
its out-of-scope bias is chosen by the NLL rule on the validation split and its accuracy counted
on the held-out fold. The test split is not read.

Run (about 20 minutes on 2 cores, after ``make recipe NAME=teacher``)::

    TQDM_DISABLE=1 python docs/ablations/piece_dropout_cv.py outputs/<scope>/teacher/finetune
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset

from recipes.measure.stats import difference
from recipes.ml import static_vectors
from recipes.ml.augment import augment_texts, word_neighbours
from recipes.ml.calibration import nll_bias, shifted
from recipes.ml.data import tokenize
from recipes.ml.distillation import load_teacher, logits_of_rows, with_teacher_logits
from recipes.plan.loader import load_recipe
from recipes.stages.distill_static import student_trainer, text_pieces_only

DATA = "data/clinc_oos/plus"
RATES = (0.0, 0.05, 0.1)
FOLDS, SEED = 5, 42


def split(name: str) -> Dataset:
    frame = pd.read_parquet(f"{DATA}/{name}-00000-of-00001.parquet")
    return Dataset.from_dict({"text": list(frame["text"]), "label": frame["intent"].tolist()})


@torch.no_grad()
def logits_of(student, tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    out = []
    for start in range(0, len(texts), 256):
        enc = tokenizer(
            texts[start : start + 256], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        out.append(student(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy())
    return np.concatenate(out)


def main(teacher_dir: str) -> None:
    torch.set_num_threads(2)
    spec = next(stage for stage in load_recipe("kd-static-bigrams").recipe.stages if stage.type == "distill-static")
    train, validation = split("train"), split("validation")
    texts, labels = list(train["text"]), np.array(train["label"])
    teacher, tokenizer = load_teacher(teacher_dir, [None] * (labels.max() + 1))
    oos, id2label = teacher.config.label2id["oos"], teacher.config.id2label
    neighbours = word_neighbours(texts, tokenizer, teacher.get_input_embeddings().weight.detach().float().numpy())
    aug = spec.augment
    copies = augment_texts(texts, aug.copies, aug.word_prob, tuple(aug.ops), SEED, neighbours, tokenizer.mask_token)
    rows = Dataset.from_dict({"text": texts + copies, "label": labels.tolist() + [-100] * len(copies)})
    teacher_logits = logits_of_rows(teacher, tokenizer, rows, spec.max_length)
    table, init = static_vectors.teacher_vectors(teacher, tokenizer, spec.dim)
    student_tokenizer = text_pieces_only(tokenizer)
    eval_rows = tokenize(validation, student_tokenizer, spec.max_length)
    fold_of = np.random.default_rng(SEED).permutation(len(texts)) % FOLDS
    correct = {rate: np.zeros(len(texts), dtype=bool) for rate in RATES}
    for fold in range(FOLDS):
        kept = np.flatnonzero(fold_of != fold)
        kept = np.concatenate([kept + len(texts) * copy for copy in range(aug.copies + 1)])
        train_rows = with_teacher_logits(rows.select(kept), teacher_logits[kept], student_tokenizer, spec.max_length)
        held = np.flatnonzero(fold_of == fold)
        for rate in RATES:
            with tempfile.TemporaryDirectory() as work:
                trainer = student_trainer(
                    spec.model_copy(update={"piece_dropout": rate}),
                    student_tokenizer,
                    table,
                    init["dim"],
                    train_rows,
                    eval_rows,
                    id2label,
                    oos,
                    Path(work),
                    SEED,
                )
                trainer.train()
            student = trainer.model.eval()
            val_logits = logits_of(student, student_tokenizer, list(validation["text"]), spec.max_length)
            bias = nll_bias(val_logits, np.array(validation["label"]), oos, 0.0, 8.0)
            held_logits = logits_of(student, student_tokenizer, [texts[i] for i in held], spec.max_length)
            correct[rate][held] = shifted(held_logits, oos, bias).argmax(axis=1) == labels[held]
            print(f"fold {fold}, piece_dropout {rate}: {correct[rate][held].mean():.2%} held out, bias {bias:.3f}")
    for rate in RATES:
        diff = difference(correct[rate], correct[0.0])
        print(
            f"piece_dropout {rate}: {correct[rate].mean():.2%} of {len(texts)} held-out rows; vs 0: "
            f"{diff.difference * 100:+.2f} [{diff.low * 100:+.2f}, {diff.high * 100:+.2f}] points, "
            f"{diff.won} won, {diff.lost} lost, McNemar p {diff.p_value:.2g}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
