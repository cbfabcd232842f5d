"""Distillation beyond logits: the hidden-state and attention losses against hand computations,
zero weights give exactly the logits-only loss, and teacher-labelled augmentation is
deterministic for a seed and made from training rows only."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from recipes.engine.runner import Runner
from recipes.ml.augment import augment_texts, word_neighbours
from recipes.ml.distillation import DistillationTrainer, LayerTargets, distillation_loss
from recipes.ml.layer_losses import attention_loss, hidden_state_loss
from recipes.plan.loader import load_recipe

from .tiny import clinc_dataset, minilm_dir, tiny_bert, write_recipe


def test_hidden_state_loss_by_hand():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    student = tuple(torch.randn(2, 3, 4) for _ in range(3))  # embeddings + 2 layers
    teacher = tuple(torch.randn(2, 3, 4) for _ in range(5))  # embeddings + 4 layers
    layer_map = [1, 3]
    per_layer = []
    for s_layer, t_layer in enumerate(layer_map):
        total, count = 0.0, 0
        for b in range(2):
            for pos in range(3):
                if mask[b, pos]:
                    for d in range(4):
                        total += (student[s_layer + 1][b, pos, d].item() - teacher[t_layer + 1][b, pos, d].item()) ** 2
                        count += 1
        per_layer.append(total / count)
    assert hidden_state_loss(student, teacher, layer_map, mask).item() == pytest.approx(sum(per_layer) / 2, rel=1e-5)


def test_attention_loss_by_hand():
    torch.manual_seed(1)
    mask = torch.tensor([[1, 1, 0]])
    student = (torch.softmax(torch.randn(1, 2, 3, 3), -1),)
    teacher = (torch.softmax(torch.randn(1, 2, 3, 3), -1), torch.softmax(torch.randn(1, 2, 3, 3), -1))
    t, s = teacher[1], student[0]
    total = 0.0
    for q in range(2):  # real query positions
        for h in range(2):
            total += (
                sum(t[0, h, q, k].item() * math.log(t[0, h, q, k].item() / s[0, h, q, k].item()) for k in range(3)) / 2
            )
    assert attention_loss(student, teacher, [1], mask).item() == pytest.approx(total / 2, rel=1e-5)


def test_attention_loss_of_a_student_with_fewer_heads_compares_mean_maps():
    torch.manual_seed(2)
    mask = torch.tensor([[1, 1, 1]])
    student = (torch.softmax(torch.randn(1, 1, 3, 3), -1),)  # a layer pruned to 1 head
    teacher = (torch.softmax(torch.randn(1, 4, 3, 3), -1),)
    t, s = teacher[0].mean(1)[0], student[0][0, 0]
    by_hand = sum(t[q, k].item() * math.log(t[q, k].item() / s[q, k].item()) for q in range(3) for k in range(3)) / 3
    assert attention_loss(student, teacher, [0], mask).item() == pytest.approx(by_hand, rel=1e-5)


def test_zero_weights_give_exactly_the_logits_only_loss(tmp_path):
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert(tmp_path / "m", num_labels=3))
    inputs = {
        "input_ids": torch.tensor([[101, 2054, 102], [101, 2129, 102]]),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
        "labels": torch.tensor([0, 2]),
    }
    teacher_logits = torch.tensor([[2.0, 0.1, -1.0], [0.0, 0.5, 1.5]])
    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to=[], use_cpu=True)
    plain = DistillationTrainer(model=model, args=args, alpha=0.3, temperature=2.0)
    zero = DistillationTrainer(
        model=model, args=args, alpha=0.3, temperature=2.0, layers=LayerTargets(model, 0.0, 0.0, [0, 1])
    )
    expected = distillation_loss(
        model(**{k: v for k, v in inputs.items() if k != "labels"}).logits, teacher_logits, inputs["labels"], 0.3, 2.0
    )
    for trainer in (plain, zero):
        got = trainer.compute_loss(model, {**inputs, "teacher_logits": teacher_logits})
        assert torch.equal(got, expected)


def test_unlabelled_rows_count_in_the_kl_term_only():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, -100, 2, -100])
    kept = torch.tensor([0, 2])
    with_unlabelled = distillation_loss(s, t, labels, 1.0, 2.0)  # alpha 1: CE only
    assert torch.allclose(with_unlabelled, torch.nn.functional.cross_entropy(s[kept], labels[kept]))
    assert distillation_loss(s, t, torch.full((4,), -100), 1.0, 2.0).item() == 0.0


TEXTS = ["how do i pay my credit card bill", "what is the weather like today", "play my workout playlist"]


def test_augmentation_is_deterministic_for_a_seed():
    first = augment_texts(TEXTS, 3, 0.3, ("mask", "delete", "swap"), seed=7)
    assert first == augment_texts(TEXTS, 3, 0.3, ("mask", "delete", "swap"), seed=7)
    assert first != augment_texts(TEXTS, 3, 0.3, ("mask", "delete", "swap"), seed=8)
    assert len(first) == 9 and all(first)
    for i, text in enumerate(first):  # copy-major: copy k of text j is at k * len(TEXTS) + j
        source = set(TEXTS[i % len(TEXTS)].split())
        assert set(text.split()) <= source | {"[MASK]"}, (text, TEXTS[i % len(TEXTS)])


def test_neighbours_come_from_the_teacher_vocabulary():
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    embeddings = AutoModel.from_pretrained(minilm_dir()).get_input_embeddings().weight.detach().numpy()
    neighbours = word_neighbours(TEXTS, tokenizer, embeddings, k=3)
    assert set(neighbours) <= {w for t in TEXTS for w in t.split()} and "weather" in neighbours
    assert all(
        len(v) == 3 and w not in v and all(n in tokenizer.get_vocab() for n in v) for w, v in neighbours.items()
    )


@pytest.mark.parametrize("kind", ["byte-level BPE", "Unigram"])
def test_neighbours_are_words_whatever_the_vocabulary(kind, tmp_path):
    """A BPE (``Ġweather``) or SentencePiece (``▁weather``) vocabulary gives word neighbours too,
    written as plain words, so the augmentation perturbs RoBERTa's or ALBERT's texts as BERT's."""
    from transformers import AutoTokenizer

    from .tokenizers import byte_bpe_tokenizer, unigram_tokenizer

    build = byte_bpe_tokenizer if kind == "byte-level BPE" else unigram_tokenizer
    tokenizer = AutoTokenizer.from_pretrained(build(tmp_path / "tok"))
    embeddings = np.random.default_rng(0).normal(size=(len(tokenizer), 16))
    texts = ["what is the weather like", "book a flight"]
    neighbours = word_neighbours(texts, tokenizer, embeddings, k=3)
    one_piece = {w for t in texts for w in t.split() if len(tokenizer.tokenize(f" {w}")) == 1}
    assert {"book", "flight"} <= one_piece == set(neighbours)
    assert all(len(v) == 3 and all(n.isalpha() and n.islower() for n in v) for v in neighbours.values())


@pytest.fixture(scope="module")
def layer_run(tmp_path_factory, clinc_dir):
    """A tiny teacher fine-tuned, then distilled with hidden + attention losses and 2 augmented copies."""
    root = tmp_path_factory.mktemp("layers")
    fast = {"epochs": 2, "learning_rate": 3.0e-3, "batch_size": 32}
    recipe = {
        "name": "layers",
        "description": "layer losses",
        "dataset": clinc_dataset(96, 64, 32, oos_label="oos"),
        "models": {"base": str(tiny_bert(root / "bert", layers=4))},
        "stages": [
            {"name": "teacher", "type": "finetune", "input": "base", **fast},
            {"name": "plain", "type": "distill", "input": "teacher", "keep_layers": [1, 3], **fast},
            {
                "name": "rich",
                "type": "distill",
                "input": "teacher",
                "keep_layers": [1, 3],
                **fast,
                "hidden_weight": 1.0,
                "attention_weight": 1.0,
                "augment": {"copies": 2, "word_prob": 0.3},
            },
        ],
    }
    path = write_recipe(root, recipe, "layers.yaml")
    return Runner(output_root=root / "out").run(load_recipe(str(path)))


def test_layer_losses_and_augmentation_train_another_student(layer_run):
    from safetensors.numpy import load_file

    metrics = {s.name: s.record.metrics for s in layer_run.stages}
    assert metrics["rich"]["train_rows"] == {"original": 96, "augmented": 192}
    assert metrics["plain"]["train_rows"] == {"original": 96, "augmented": 0}
    assert {"eval_in_scope_accuracy", "eval_oos_recall"} <= set(metrics["rich"]["history"][-1])
    plain = load_file(layer_run.out_dir / "plain" / "model.safetensors")
    rich = load_file(layer_run.out_dir / "rich" / "model.safetensors")
    assert any(not np.allclose(plain[k], rich[k]) for k in plain)
    config = json.loads((layer_run.out_dir / "rich" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2


def test_layer_map_that_cannot_pair_is_refused(tmp_path):
    from recipes.errors import RecipeValidationError

    recipe = {
        "name": "x",
        "description": "x",
        "dataset": {"id": "clinc_oos"},
        "models": {"t": "org/t"},
        "stages": [
            {
                "name": "d",
                "type": "distill",
                "input": "t",
                "keep_layers": [0, 2],
                "layer_map": [1],
                "hidden_weight": 1.0,
            }
        ],
    }
    path = write_recipe(tmp_path, recipe, "x.yaml")
    with pytest.raises(RecipeValidationError, match="layer_map has 1 entries but the student keeps 2"):
        load_recipe(str(path))
