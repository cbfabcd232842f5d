"""The recipe's dataset: loaded once per run, limited per split, labels from its ClassLabel.

Before anything runs, :meth:`RecipeData.check` holds the dataset section (config, split roles,
text and label columns, ``oos_label``) against the data's schema, read without its rows where
the data describes itself: the card's ``dataset_info`` (a Hub dataset, a folder with a
README.md), else a parquet file's schema; other data (CSV files) is loaded as ``run`` loads it.
Loading for a run refuses the same mistakes with the same messages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..errors import DatasetError
from ..plan.sources import REPO_ID_RULES, exists, is_repo_id

ROLES = ("train", "eval", "test")
TEXT_DTYPES = ("string", "large_string")


@dataclass(frozen=True)
class DataSchema:
    """What the dataset section is checked against: split names and each column's feature."""

    splits: list[str]
    features: Mapping  # column -> datasets feature (Value, ClassLabel, ...)

    @classmethod
    def of(cls, dataset_dict) -> DataSchema:
        """The schema of a loaded ``DatasetDict`` (its splits share one set of features)."""
        splits = list(dataset_dict)
        return cls(splits, dataset_dict[splits[0]].features if splits else {})


def _described(feature) -> str:
    """A column's feature in a few words: ``a ClassLabel of 151 labels``, ``values of type string``."""
    if getattr(feature, "names", None):
        return f"a ClassLabel of {len(feature.names)} labels"
    dtype = getattr(feature, "dtype", None)
    return f"values of type {dtype}" if dtype else f"a {type(feature).__name__}"


def _shown(names: list[str], limit: int = 10) -> str:
    return ", ".join(map(repr, names[:limit])) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def schema_problems(spec, schema: DataSchema) -> list[str]:
    """Why the dataset section ``spec`` does not fit data with ``schema``; empty when it does."""
    problems = [
        f"dataset.splits.{role} is {getattr(spec.splits, role)!r}, but the splits are {_shown(schema.splits)}"
        for role in ROLES
        if getattr(spec.splits, role) not in schema.splits
    ]
    columns = list(schema.features)
    for field, column in (("text_column", spec.text_column), ("label_column", spec.label_column)):
        if column not in schema.features:
            problems.append(f"dataset.{field} is {column!r}, but the columns are {_shown(columns)}")
    text = schema.features.get(spec.text_column)
    if text is not None and getattr(text, "dtype", None) not in TEXT_DTYPES:
        problems.append(f"dataset.text_column {spec.text_column!r} holds {_described(text)}, not text")
    label = schema.features.get(spec.label_column)
    names = list(getattr(label, "names", None) or [])
    if label is not None and not names:
        problems.append(
            f"dataset.label_column {spec.label_column!r} holds {_described(label)}, not a ClassLabel, so the label "
            "names are unknown; use a column whose feature is a ClassLabel"
        )
    if names and spec.oos_label is not None and spec.oos_label not in names:
        problems.append(
            f"dataset.oos_label is {spec.oos_label!r}, which is not a label of column {spec.label_column!r}; "
            f"labels: {_shown(names)}. For a dataset without an out-of-scope class, set dataset.oos_label=null"
        )
    return problems


class RecipeData:
    """Lazy access to the ``train``/``eval``/``test`` splits named by a recipe's dataset spec.

    Nothing is downloaded until a stage asks for a split; :meth:`check` (``recipes check``) reads
    the data's description alone where it has one.
    """

    def __init__(self, spec, seed: int, base_dir: Path | None = None):
        self.spec = spec
        self.seed = seed
        self.base_dir = base_dir

    @property
    def source(self) -> str:
        """A Hub id, or a local folder (relative paths are resolved against the recipe file)."""
        ident = self.spec.id
        if ident.startswith((".", "/")) and self.base_dir is not None:
            return str((self.base_dir / ident).resolve())
        return ident

    @property
    def _named(self) -> str:
        return f"{self.source!r}" + (f" (config {self.spec.config!r})" if self.spec.config else "")

    def check(self) -> None:
        """Refuse (:class:`DatasetError`) a dataset section that the data does not fit, from its schema."""
        self._refuse(schema_problems(self.spec, self.schema))

    def _refuse(self, problems: list[str]) -> None:
        if problems:
            raise DatasetError(f"Dataset {self._named}: " + "; ".join(problems) + ".")

    @cached_property
    def schema(self) -> DataSchema:
        """Split names and features, from the data's description where it has one, else as loaded."""
        return self._described_schema() or DataSchema.of(self._dataset)

    def _described_schema(self) -> DataSchema | None:
        import datasets

        self._refuse_unknown_source()
        try:
            builder = datasets.load_dataset_builder(self.source, self.spec.config, revision=self.spec.revision)
        except Exception as err:  # datasets raises many types; all mean "cannot load"
            raise self._load_error(err) from err
        data_files = getattr(builder.config, "data_files", None) or {}
        splits = [str(split) for split in (builder.info.splits or data_files)]
        features = builder.info.features or _parquet_features(data_files)
        return DataSchema(splits, features) if splits and features else None

    def _load_error(self, err: Exception) -> DatasetError:
        """What stops the data from loading: a config it lacks, or ``err``, with what to check."""
        configs = self._config_names()
        if configs and self.spec.config not in configs and not (self.spec.config is None and configs == ["default"]):
            now = f"is {self.spec.config!r}" if self.spec.config else "is not set"
            return DatasetError(
                f"dataset.config {now}, but {self.source!r} has configs: {', '.join(configs)} "
                f"(e.g. --set dataset.config={configs[0]})."
            )
        return DatasetError(
            f"Cannot load dataset {self._named}: {err}\n"
            "Check dataset.id / dataset.config / dataset.revision in the recipe; for a Hub id, HF_ENDPOINT must "
            "point at a Hub that has it (`make hub` + `python -m hubtools hub seed`)."
        )

    def _config_names(self) -> list[str]:
        import datasets

        try:
            return list(datasets.get_dataset_config_names(self.source, revision=self.spec.revision))
        except Exception:  # the data cannot be read at all: the load error says why
            return []

    def _refuse_unknown_source(self) -> None:
        if not exists(Path(self.source)) and not is_repo_id(self.source):
            raise DatasetError(
                f"dataset.id {self.spec.id!r} is neither a folder (a path starting with ./ or /, relative to the "
                f"recipe file) nor a Hub dataset id; {REPO_ID_RULES}."
            )

    @cached_property
    def _dataset(self):
        import datasets

        self._refuse_unknown_source()
        try:
            ds = datasets.load_dataset(self.source, self.spec.config, revision=self.spec.revision)
        except Exception as err:  # datasets raises many types; all mean "cannot load"
            raise self._load_error(err) from err
        self._refuse(schema_problems(self.spec, DataSchema.of(ds)))
        return ds

    @cached_property
    def label_names(self) -> list[str]:
        return list(self._dataset[self.spec.splits.train].features[self.spec.label_column].names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    @cached_property
    def oos_id(self) -> int | None:
        """The id of ``dataset.oos_label``, or None when the recipe names none."""
        return None if self.spec.oos_label is None else self.label2id[self.spec.oos_label]

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


def _parquet_features(data_files: Mapping):
    """The features in the first parquet file's schema (``datasets`` keeps a ClassLabel's names
    there), read from the file's footer alone; None for other files or an unreadable one."""
    files = [f for split_files in data_files.values() for f in split_files]
    if not files or not str(files[0]).endswith(".parquet"):
        return None
    import fsspec
    import pyarrow.parquet as pq
    from datasets import Features

    try:
        with fsspec.open(str(files[0]), "rb") as f:
            return Features.from_arrow_schema(pq.read_schema(f))
    except Exception:  # read as run reads it instead, which says what is wrong
        return None
