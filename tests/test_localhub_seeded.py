"""The seeded repos through the real clients: ``load_dataset("clinc_oos", "plus")`` equals
loading the shared folder directly (splits, rows, ClassLabel names), and the MiniLM backbone
loads by its Hub name."""

from __future__ import annotations


def test_load_dataset_matches_shared_copy(seeded_hub, clinc_dir):
    from datasets import load_dataset

    hub = load_dataset("clinc_oos", "plus")
    local = load_dataset(str(clinc_dir), "plus")
    assert sorted(hub) == sorted(local) == ["test", "train", "validation"]
    names = hub["train"].features["intent"].names
    assert names == local["train"].features["intent"].names
    assert names[42] == "oos"
    for split in local:
        assert hub[split].num_rows == local[split].num_rows
        assert hub[split]["text"] == local[split]["text"]
        assert hub[split]["intent"] == local[split]["intent"]


def test_seeded_backbone_loads_by_name(seeded_hub):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    model = AutoModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    assert model.config.hidden_size == 384
    assert model(**tokenizer("hello", return_tensors="pt")).last_hidden_state.shape[-1] == 384
