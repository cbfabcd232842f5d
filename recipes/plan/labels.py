"""Before any training: every given classifier must predict the dataset's labels."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from ..errors import ModelSourceError
from .schema import RecipeOutput

#: transformers' names for labels nobody named: they say nothing about which labels they are.
GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


def config_labels(config: dict) -> list[str] | None:
    """The labels a model's ``config.json`` (as a dict) names, in id order; None if unreadable."""
    id2label = config.get("id2label") or {}
    try:
        return [id2label[k] for k in sorted(id2label, key=int)]
    except (ValueError, TypeError, AttributeError):
        return None


def _labels_of(model_dir) -> list[str] | None:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config_labels(config) if isinstance(config, dict) else None


def label_problem(labels: list[str], expected: list[str]) -> str | None:
    """Why a classifier with ``labels`` cannot serve a dataset with ``expected`` (None: it can)."""
    if len(labels) != len(expected):
        return f"it predicts {len(labels)} labels, the dataset has {len(expected)}"
    if all(GENERIC_LABEL.match(name) for name in labels):
        return None
    wrong = [(i, a, b) for i, (a, b) in enumerate(zip(labels, expected)) if a != b]
    if wrong:
        shown = ", ".join(f"id {i}: {a!r} where the dataset has {b!r}" for i, a, b in wrong[:3])
        return f"{len(wrong)} of its labels differ from the dataset's ({shown})"
    return None


def check_labels(loaded, models: dict, data) -> None:
    """:func:`refuse_other_labels` with the labels of the resolved ``models`` (key -> folder)."""
    refuse_other_labels(loaded, lambda ref: _labels_of(models[ref].path), data.label_names, data.spec)


def refuse_other_labels(loaded, labels_of: Callable[[str], list[str] | None], expected: list[str], dataset) -> None:
    """Refuse, with one message, a given model (a ``models:`` Hub id or folder) that a stage
    uses as a classifier of the dataset's labels (a teacher, a model to export or measure)
    when its labels (``labels_of(key)``, None: unknown) are not ``expected``, the labels of the
    dataset section ``dataset``. Models that get a new head (a fine-tuning base, a distillation
    student) are not checked."""
    recipe = loaded.recipe
    for spec in recipe.stages:
        for role in sorted(spec.labelled_roles()):
            ref = spec.refs()[role]
            source = recipe.models.get(ref)
            if source is None or isinstance(source, RecipeOutput):
                continue  # made by a stage of this plan, on this dataset
            labels = labels_of(ref)
            problem = label_problem(labels, expected) if labels is not None else None
            if problem:
                raise ModelSourceError(
                    f"{loaded.path}: models -> {ref} ({source}) is the {role} of stage {spec.name!r}, but {problem}. "
                    f"Give a classifier fine-tuned on this dataset ({dataset.id}, "
                    f"column {dataset.label_column!r}), "
                    "or let the plan fine-tune one (drop the models override)."
                )
