"""transformers, optimum and ModelCard load what was pushed to the local Hub, including our
publishing layout: PyTorch files at the root, the ONNX export (with its config) in onnx/."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi, ModelCard

from hubtools.localhub.seed import find_model_dir

LABELS = ["greeting", "weather", "oos"]
CARD = """---
license: apache-2.0
tags:
- text-classification
- tiny
pipeline_tag: text-classification
---
# tiny

A 2-layer BERT for tests.
"""


@pytest.fixture(scope="module")
def tiny_dirs(local_hub, tmp_path_factory) -> dict[str, Path]:
    """A tiny 3-label BERT with the MiniLM tokenizer, its ONNX export, and the two in one layout."""
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=30522,
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    pt_dir = root / "pt"
    BertForSequenceClassification(config).save_pretrained(pt_dir)
    AutoTokenizer.from_pretrained(find_model_dir()).save_pretrained(pt_dir)
    (pt_dir / "README.md").write_text(CARD)

    onnx_dir = root / "onnx"
    ORTModelForSequenceClassification.from_pretrained(pt_dir, export=True).save_pretrained(onnx_dir)
    AutoTokenizer.from_pretrained(pt_dir).save_pretrained(onnx_dir)

    layout = root / "layout"
    shutil.copytree(pt_dir, layout)
    shutil.copytree(onnx_dir, layout / "onnx")

    api = HfApi()
    for repo_id, folder in (("org/tiny", pt_dir), ("org/tiny-onnx", onnx_dir), ("org/tiny-layout", layout)):
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder)
    return {"pt": pt_dir, "onnx": onnx_dir, "layout": layout}


def test_pipeline_loads_pushed_model(tiny_dirs):
    from transformers import pipeline

    classify = pipeline("text-classification", model="org/tiny")
    result = classify("what is the weather tomorrow")
    assert result[0]["label"] in LABELS


def test_ort_model_loads_pushed_export(tiny_dirs):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained("org/tiny-onnx")
    inputs = tokenizer(["set a timer", "hello there"], padding=True, return_tensors="pt")
    expected = AutoModelForSequenceClassification.from_pretrained("org/tiny")(**inputs).logits.detach().numpy()
    for model in (
        ORTModelForSequenceClassification.from_pretrained("org/tiny-onnx"),
        ORTModelForSequenceClassification.from_pretrained("org/tiny-layout", subfolder="onnx"),
    ):
        assert model.config.id2label[2] == "oos"
        np.testing.assert_allclose(model(**inputs).logits.numpy(), expected, atol=1e-4)


def test_model_card_loads_with_metadata(tiny_dirs):
    card = ModelCard.load("org/tiny")
    assert card.data.license == "apache-2.0"
    assert card.data.tags == ["text-classification", "tiny"]
    assert "A 2-layer BERT for tests." in card.text
    assert HfApi().model_info("org/tiny").card_data.pipeline_tag == "text-classification"
