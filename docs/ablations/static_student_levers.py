"""Training levers for the ``kd-static-bigrams`` student that need no change to the model (issue 21):
how fast the table moves away from model2vec's vectors, an average of the weights, and which
teacher-labelled copies it learns from.

Each variant is the catalog recipe's student (the stage's own Trainer,
:func:`recipes.stages.distill_static.student_trainer`, seed 42) with one thing changed, trained on
the train split and its copies, its out-of-scope bias chosen by the NLL rule on validation. The
validation accuracy chooses; the test accuracy, against the teacher calibrated the same way, is
only reported.

Run (about 22 minutes on 2 cores for all ten, after ``make recipe NAME=teacher``)::

    python docs/ablations/static_student_levers.py outputs/<scope>/teacher/finetune [NAME ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from static_student_setup import SEED, prepare
from transformers import TrainerCallback

from recipes.engine.progress import configure_progress
from recipes.measure.stats import difference
from recipes.ml.distillation import with_teacher_logits
from recipes.stages.distill import AugmentSpec
from recipes.stages.distill_static import student_trainer


class WeightAverage(TrainerCallback):
    """An exponential moving average of the weights after every step, which replaces them at the end."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.average = {name: value.detach().clone() for name, value in model.state_dict().items()}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            for name, value in model.state_dict().items():
                self.average[name].mul_(self.decay).add_(value, alpha=1 - self.decay)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.load_state_dict(self.average)


class PullToStart(TrainerCallback):
    """After every step, moves each row of the table ``rate`` of the way back to its start."""

    def __init__(self, model, rate: float):
        self.rate = rate
        self.start = model.embeddings.weight.detach().clone()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            model.embeddings.weight.sub_(self.rate * (model.embeddings.weight - self.start))


def table_learning_rate(factor: float):
    def tweak(trainer):
        model, rate = trainer.model, trainer.args.learning_rate
        rest = [p for name, p in model.named_parameters() if not name.startswith("embeddings.")]
        groups = [{"params": [model.embeddings.weight], "lr": rate * factor}, {"params": rest, "lr": rate}]
        trainer.optimizer = torch.optim.AdamW(groups, lr=rate, weight_decay=0.0)

    return tweak


def callback(kind, value: float):
    return lambda trainer: trainer.add_callback(kind(trainer.model, value))


def copies(ops: str, word_prob: float, count: int = 1) -> AugmentSpec:
    return AugmentSpec(copies=count, word_prob=word_prob, ops=ops.split("+"))


#: name: (a change to the Trainer, the teacher-labelled copies); None: the recipe's.
VARIANTS = {
    "recipe": (None, None),
    "table-lr-x0.1": (table_learning_rate(0.1), None),
    "table-lr-x0.3": (table_learning_rate(0.3), None),
    "table-lr-x3": (table_learning_rate(3.0), None),
    "weight-average-0.998": (callback(WeightAverage, 0.998), None),
    "pull-to-start-3e-4": (callback(PullToStart, 3e-4), None),
    "copies-neighbour-0.15": (None, copies("neighbour", 0.15)),
    "copies-neighbour-0.3": (None, copies("neighbour", 0.3)),
    "copies-all-ops-0.3": (None, copies("mask+delete+swap+neighbour", 0.3)),
    "2-copies-neighbour-0.2": (None, copies("neighbour", 0.2, 2)),
}


def main(teacher_dir: str, names: list[str]) -> None:
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    configure_progress()  # bars on a terminal, none in a log file
    setup = prepare(teacher_dir)
    spec, tokenizer, data = setup.spec, setup.student_tokenizer, setup.data
    validation, test = data.split("eval"), data.split("test")
    val_labels, test_labels = np.array(validation["label"]), np.array(test["label"])
    (teacher_predicted,) = setup.calibrated(setup.teacher, setup.tokenizer, test)
    teacher_correct = teacher_predicted == test_labels
    print(f"teacher, calibrated: test {teacher_correct.mean():.2%}")
    eval_rows, labelled = setup.eval_rows(), {}
    for name in names or list(VARIANTS):
        tweak, augment = VARIANTS[name]
        key = augment.model_dump_json() if augment else ""
        if key not in labelled:
            rows, teacher_logits = setup.labelled_rows(augment)
            labelled[key] = with_teacher_logits(rows, teacher_logits, tokenizer, spec.max_length)
        with tempfile.TemporaryDirectory() as work:
            trainer = student_trainer(
                spec,
                tokenizer,
                setup.table,
                setup.dim,
                labelled[key],
                eval_rows,
                data.id2label,
                data.oos_id,
                Path(work),
                SEED,
            )
            if tweak:
                tweak(trainer)
            trainer.train()
        val_predicted, predicted = setup.calibrated(trainer.model.eval(), tokenizer, validation, test)
        correct, in_scope = predicted == test_labels, test_labels != data.oos_id
        diff = difference(correct, teacher_correct)
        print(
            f"{name}: validation {(val_predicted == val_labels).mean():.2%}, test {correct.mean():.2%}, vs teacher "
            f"{diff.difference * 100:+.2f} [{diff.low * 100:+.2f}, {diff.high * 100:+.2f}] points; test in-scope "
            f"{correct[in_scope].mean():.2%}, oos recall {correct[~in_scope].mean():.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
