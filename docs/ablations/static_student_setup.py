"""What the static student's ablation scripts share (issue 21): the CLINC150 splits, the teacher,
the catalog recipe's ``distill-static`` settings, model2vec's table of the teacher, and the train
texts with their teacher-labelled copies and the teacher's logits, all built the way
``distill-static`` builds them, so a student trained by
:func:`recipes.stages.distill_static.student_trainer` from them is the stage's student."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from datasets import Dataset

from recipes.ml import static_vectors
from recipes.ml.augment import augment_texts, word_neighbours
from recipes.ml.data import tokenize
from recipes.ml.distillation import load_teacher, logits_of_rows
from recipes.plan.loader import load_recipe
from recipes.stages.distill_static import text_pieces_only

DATA = "data/clinc_oos/plus"
SEED = 42


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


@dataclass
class Setup:
    spec: object  # the catalog recipe's DistillStaticSpec
    texts: list[str]  # the train split
    labels: np.ndarray
    validation: Dataset
    teacher: object
    tokenizer: object  # the teacher's
    student_tokenizer: object  # the text's pieces alone, as the recipe trains
    oos: int
    id2label: dict[int, str]
    table: np.ndarray  # model2vec's vectors of the teacher
    dim: int
    neighbours: dict[str, list[str]]

    def labelled_rows(self, augment=None) -> tuple[Dataset, np.ndarray]:
        """The train texts, then ``augment``'s copies of them (default: the recipe's), and the
        teacher's logits of each row; copies carry label -100 (the KL term alone trains on them)."""
        aug = augment or self.spec.augment
        copies = augment_texts(
            self.texts, aug.copies, aug.word_prob, tuple(aug.ops), SEED, self.neighbours, self.tokenizer.mask_token
        )
        rows = Dataset.from_dict({"text": self.texts + copies, "label": self.labels.tolist() + [-100] * len(copies)})
        return rows, logits_of_rows(self.teacher, self.tokenizer, rows, self.spec.max_length)

    def eval_rows(self) -> Dataset:
        return tokenize(self.validation, self.student_tokenizer, self.spec.max_length)


def prepare(teacher_dir: str, recipe: str = "kd-static-bigrams") -> Setup:
    torch.set_num_threads(2)
    spec = next(stage for stage in load_recipe(recipe).recipe.stages if stage.type == "distill-static")
    train = split("train")
    texts, labels = list(train["text"]), np.array(train["label"])
    teacher, tokenizer = load_teacher(teacher_dir, [None] * (labels.max() + 1))
    neighbours = word_neighbours(texts, tokenizer, teacher.get_input_embeddings().weight.detach().float().numpy())
    table, init = static_vectors.teacher_vectors(teacher, tokenizer, spec.dim)
    return Setup(
        spec=spec,
        texts=texts,
        labels=labels,
        validation=split("validation"),
        teacher=teacher,
        tokenizer=tokenizer,
        student_tokenizer=text_pieces_only(tokenizer),
        oos=teacher.config.label2id["oos"],
        id2label=teacher.config.id2label,
        table=table,
        dim=init["dim"],
        neighbours=neighbours,
    )
