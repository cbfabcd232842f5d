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

    python docs/ablations/piece_dropout_cv.py outputs/<scope>/teacher/finetune
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from static_student_setup import SEED, prepare

from recipes.engine.progress import configure_progress
from recipes.measure.stats import difference
from recipes.ml.distillation import with_teacher_logits
from recipes.stages.distill_static import student_trainer

RATES = (0.0, 0.05, 0.1)
FOLDS = 5


def main(teacher_dir: str) -> None:
    configure_progress()  # bars on a terminal, none in a log file
    setup = prepare(teacher_dir)
    spec, texts, labels = setup.spec, setup.texts, setup.labels
    rows, teacher_logits = setup.labelled_rows()
    student_tokenizer, eval_rows = setup.student_tokenizer, setup.eval_rows()
    fold_of = np.random.default_rng(SEED).permutation(len(texts)) % FOLDS
    correct = {rate: np.zeros(len(texts), dtype=bool) for rate in RATES}
    for fold in range(FOLDS):
        kept = np.flatnonzero(fold_of != fold)
        kept = np.concatenate([kept + len(texts) * copy for copy in range(spec.augment.copies + 1)])
        train_rows = with_teacher_logits(rows.select(kept), teacher_logits[kept], student_tokenizer, spec.max_length)
        held = np.flatnonzero(fold_of == fold)
        for rate in RATES:
            with tempfile.TemporaryDirectory() as work:
                trainer = student_trainer(
                    spec.model_copy(update={"piece_dropout": rate}),
                    student_tokenizer,
                    setup.table,
                    setup.dim,
                    train_rows,
                    eval_rows,
                    setup.data.id2label,
                    setup.data.oos_id,
                    Path(work),
                    SEED,
                )
                trainer.train()
            (predicted,) = setup.calibrated(trainer.model.eval(), student_tokenizer, rows.select(held))
            correct[rate][held] = predicted == labels[held]
            print(f"fold {fold}, piece_dropout {rate}: {correct[rate][held].mean():.2%} held out")
    for rate in RATES:
        diff = difference(correct[rate], correct[0.0])
        print(
            f"piece_dropout {rate}: {correct[rate].mean():.2%} of {len(texts)} held-out rows; vs 0: "
            f"{diff.difference * 100:+.2f} [{diff.low * 100:+.2f}, {diff.high * 100:+.2f}] points, "
            f"{diff.won} won, {diff.lost} lost, McNemar p {diff.p_value:.2g}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
