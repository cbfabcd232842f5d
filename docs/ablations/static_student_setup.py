"""What the static student's ablation scripts share (issue 21): the recipe's data (its dataset
section, read from the repository's own copy, ``data/clinc_oos``, so no Hub is needed), the
teacher, the catalog recipe's ``distill-static`` and ``calibrate-oos`` settings, model2vec's table
of the teacher, and the train texts with their teacher-labelled copies and the teacher's logits,
all built the way ``distill-static`` builds them, so a student trained by
:func:`recipes.stages.distill_static.student_trainer` from them is the stage's student."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recipes.ml import static_vectors
from recipes.ml.augment import augment_texts, word_neighbours
from recipes.ml.calibration import nll_bias, shifted
from recipes.ml.data import RecipeData
from recipes.ml.distillation import load_teacher, logits_of_rows
from recipes.plan.loader import load_recipe
from recipes.stages.distill_static import text_pieces_only

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = "./data/clinc_oos"  # the recipes' `clinc_oos`, as the repository carries it
SEED = 42


@dataclass
class Setup:
    spec: object  # the catalog recipe's DistillStaticSpec
    calibration: object  # its CalibrateOosSpec of the student
    data: RecipeData
    texts: list[str]  # the train split
    labels: np.ndarray
    teacher: object
    tokenizer: object  # the teacher's
    student_tokenizer: object  # the text's pieces alone, as the recipe trains
    table: np.ndarray  # model2vec's vectors of the teacher
    dim: int
    neighbours: dict[str, list[str]]

    def labelled_rows(self, augment=None):
        """The train texts, then ``augment``'s copies of them (default: the recipe's), and the
        teacher's logits of each row; copies carry label -100 (the KL term alone trains on them)."""
        from datasets import Dataset

        aug = augment or self.spec.augment
        copies = augment_texts(
            self.texts, aug.copies, aug.word_prob, tuple(aug.ops), SEED, self.neighbours, self.tokenizer.mask_token
        )
        rows = Dataset.from_dict({"text": self.texts + copies, "label": self.labels.tolist() + [-100] * len(copies)})
        return rows, logits_of_rows(self.teacher, self.tokenizer, rows, self.spec.max_length)

    def eval_rows(self):
        return self.data.tokenized("eval", self.student_tokenizer, self.spec.max_length)

    def calibrated(self, model, tokenizer, *row_sets) -> list[np.ndarray]:
        """``model``'s predictions of each of ``row_sets`` (rows with a ``text`` column) with the
        out-of-scope bias the recipe's ``calibrate-oos`` stage (the NLL rule) chooses for it on
        the validation split."""
        oos, max_length = self.data.oos_id, self.spec.max_length
        validation = self.data.split("eval")
        val_logits = logits_of_rows(model, tokenizer, validation, max_length)
        bias = nll_bias(val_logits, np.array(validation["label"]), oos, self.calibration.low, self.calibration.high)
        return [
            shifted(logits_of_rows(model, tokenizer, rows, max_length), oos, bias).argmax(axis=1) for rows in row_sets
        ]


def prepare(teacher_dir: str, recipe: str = "kd-static-bigrams") -> Setup:
    torch.set_num_threads(2)
    stages = load_recipe(recipe).recipe
    spec = next(stage for stage in stages.stages if stage.type == "distill-static")
    calibration = next(stage for stage in stages.stages if stage.type == "calibrate-oos" and stage.input == spec.name)
    data = RecipeData(stages.dataset.model_copy(update={"id": DATA}), stages.seed, REPO_ROOT)
    train = data.split("train")
    texts, labels = list(train["text"]), np.array(train["label"])
    teacher, tokenizer = load_teacher(teacher_dir, data.label_names)
    neighbours = word_neighbours(texts, tokenizer, teacher.get_input_embeddings().weight.detach().float().numpy())
    table, init = static_vectors.teacher_vectors(teacher, tokenizer, spec.dim)
    return Setup(
        spec=spec,
        calibration=calibration,
        data=data,
        texts=texts,
        labels=labels,
        teacher=teacher,
        tokenizer=tokenizer,
        student_tokenizer=text_pieces_only(tokenizer),
        table=table,
        dim=init["dim"],
        neighbours=neighbours,
    )
