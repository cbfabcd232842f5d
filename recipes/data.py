"""The recipe's dataset: loaded once per run, limited per split, labels from its ClassLabel."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

from .errors import DatasetError

ROLES = ("train", "eval", "test")


class RecipeData:
    """Lazy access to the ``train``/``eval``/``test`` splits named by a recipe's dataset spec.

    Nothing is downloaded until a stage asks for a split, so ``recipes check`` stays fast.
    """

    def __init__(self, spec, seed: int, base_dir: Path | None = None):
        self.spec = spec
        self.seed = seed
        self.base_dir = base_dir

    def _source(self) -> str:
        """A Hub id, or a local folder (relative paths are resolved against the recipe file)."""
        ident = self.spec.id
        if ident.startswith((".", "/")) and self.base_dir is not None:
            return str((self.base_dir / ident).resolve())
        return ident

    @cached_property
    def _dataset(self):
        import datasets

        source = self._source()
        try:
            ds = datasets.load_dataset(source, self.spec.config, revision=self.spec.revision)
        except Exception as err:  # datasets raises many types; all mean "cannot load"
            raise DatasetError(
                f"Cannot load dataset {source!r} (config {self.spec.config!r}): {err}\n"
                "Check dataset.id / dataset.config in the recipe; for a Hub id, HF_ENDPOINT must "
                "point at a Hub that has it (`make hub` + `python -m hubtools hub seed`)."
            ) from err
        for role in ROLES:
            split = getattr(self.spec.splits, role)
            if split not in ds:
                raise DatasetError(f"dataset.splits.{role} is {split!r}, but {source!r} has splits {sorted(ds)}.")
        for column in (self.spec.text_column, self.spec.label_column):
            if column not in ds[self.spec.splits.train].column_names:
                raise DatasetError(
                    f"Column {column!r} not in dataset {source!r}; it has "
                    f"{ds[self.spec.splits.train].column_names} (set dataset.text_column / label_column)."
                )
        return ds

    @cached_property
    def label_names(self) -> list[str]:
        feature = self._dataset[self.spec.splits.train].features[self.spec.label_column]
        names = getattr(feature, "names", None)
        if not names:
            raise DatasetError(
                f"Column {self.spec.label_column!r} is not a ClassLabel, so the label names are "
                "unknown; use a dataset whose label column is a ClassLabel."
            )
        return list(names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    @cached_property
    def oos_id(self) -> int | None:
        """The id of ``dataset.oos_label``, or None when the recipe names none."""
        name = self.spec.oos_label
        if name is None:
            return None
        if name not in self.label2id:
            raise DatasetError(
                f"dataset.oos_label is {name!r}, which is not a label of column {self.spec.label_column!r}; "
                f"labels: {', '.join(self.label_names[:10])}{' ...' if len(self.label_names) > 10 else ''}. "
                "For a dataset without an out-of-scope class, set dataset.oos_label=null."
            )
        return self.label2id[name]

    def split(self, role: str):
        """The split for ``role`` with columns ``text`` and ``label``, cut to ``max_samples``.

        A cut takes a seeded shuffle first, so a few hundred rows still span many labels.
        """
        ds = self._dataset[getattr(self.spec.splits, role)]
        limit = getattr(self.spec.max_samples, role)
        if limit is not None and limit < len(ds):
            ds = ds.shuffle(seed=self.seed).select(range(limit))
        ds = ds.select_columns([self.spec.text_column, self.spec.label_column])
        if self.spec.text_column != "text":
            ds = ds.rename_column(self.spec.text_column, "text")
        if self.spec.label_column != "label":
            ds = ds.rename_column(self.spec.label_column, "label")
        return ds

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of exactly what stages read: label names and every role's (text, label) rows.

        Content, not the dataset id: the same rows from the local Hub or a local folder give
        the same fingerprint, and a changed ``max_samples`` or split gives another.
        """
        h = hashlib.sha256(json.dumps([self.label_names, self.spec.oos_label]).encode())
        for role in ROLES:
            split = self.split(role)
            h.update(f"\n{role}:{len(split)}\n".encode())
            h.update(json.dumps([list(split["text"]), list(split["label"])]).encode())
        return h.hexdigest()

    def tokenized(self, role: str, tokenizer, max_length: int = 128):
        """``split(role)`` tokenized without padding (the collator pads per batch)."""
        return tokenize(self.split(role), tokenizer, max_length, desc=f"Tokenizing {role}")


def tokenize(rows, tokenizer, max_length: int = 128, desc: str | None = None):
    """Rows with a ``text`` column, tokenized without padding; ``text`` is dropped."""
    return rows.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
        desc=desc,
    )
