"""The KD loss against a hand computation, and cached teacher logits against on-the-fly ones."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recipes.ml.distillation import distillation_loss, student_from_teacher, teacher_logits

from .tiny import tiny_bert


def hand_kd_loss(s, t, labels, alpha, T):
    """The loss written out with plain Python floats, example by example."""
    n = len(s)
    ce = 0.0
    kl = 0.0
    for i in range(n):
        log_z = math.log(sum(math.exp(v) for v in s[i]))
        ce += -(s[i][labels[i]] - log_z) / n
        ps = [math.exp(v / T) for v in s[i]]
        pt = [math.exp(v / T) for v in t[i]]
        ps = [p / sum(ps) for p in ps]
        pt = [p / sum(pt) for p in pt]
        kl += sum(q * math.log(q / p) for p, q in zip(ps, pt)) / n  # batchmean: / examples
    return alpha * ce + (1 - alpha) * T**2 * kl


@pytest.mark.parametrize("alpha, T", [(0.5, 2.0), (0.1, 4.0), (0.0, 1.0)])
def test_loss_matches_hand_computation(alpha, T):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    labels = torch.tensor([0, 3, 1, 4])
    got = distillation_loss(s, t, labels, alpha, T).item()
    assert got == pytest.approx(hand_kd_loss(s.tolist(), t.tolist(), labels.tolist(), alpha, T), rel=1e-5)


def test_alpha_one_is_plain_cross_entropy():
    s, t = torch.randn(6, 7), torch.randn(6, 7)
    labels = torch.randint(0, 7, (6,))
    assert torch.allclose(distillation_loss(s, t, labels, 1.0, 3.0), F.cross_entropy(s, labels))


def test_identical_logits_leave_only_the_ce_term():
    s = torch.randn(3, 4)
    labels = torch.tensor([1, 2, 3])
    assert torch.allclose(
        distillation_loss(s, s.clone(), labels, 0.3, 2.0), 0.3 * F.cross_entropy(s, labels), atol=1e-6
    )


def test_cached_teacher_logits_equal_on_the_fly(tmp_path):
    """Logits precomputed once (padded per batch of 64) give the loss the teacher gives live."""
    from datasets import Dataset
    from transformers import AutoTokenizer, DataCollatorWithPadding

    model_dir = tiny_bert(tmp_path / "teacher", num_labels=5)
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [
        "what is my balance",
        "book a flight to paris tomorrow please",
        "hi",
        "set an alarm for 7 am",
        "how do i say thank you in french",
        "tell me a joke",
    ] * 3
    labels = [i % 5 for i in range(len(texts))]
    ds = Dataset.from_dict({"text": texts, "label": labels}).map(
        lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"]
    )
    collator = DataCollatorWithPadding(tokenizer)
    cached = torch.tensor(teacher_logits(teacher, ds, collator, batch_size=4))

    student = student_from_teacher(teacher, [1])
    idx = [2, 5, 7, 11, 16]  # a training batch in another order and padding than the cache's
    batch = collator([ds[i] for i in idx])
    with torch.no_grad():
        live = teacher(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        ).logits
        s = student(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        ).logits
    assert torch.allclose(cached[idx], live, atol=1e-5)
    assert torch.allclose(
        distillation_loss(s, cached[idx], batch["labels"], 0.5, 2.0),
        distillation_loss(s, live, batch["labels"], 0.5, 2.0),
        atol=1e-6,
    )


def test_student_keeps_the_chosen_teacher_layers(tmp_path):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert(tmp_path / "t", num_labels=3, layers=3))
    student = student_from_teacher(teacher, [0, 2])
    assert student.config.num_hidden_layers == 2
    for new, old in enumerate([0, 2]):
        for (name, p_s), (_, p_t) in zip(
            student.bert.encoder.layer[new].named_parameters(), teacher.bert.encoder.layer[old].named_parameters()
        ):
            assert torch.equal(p_s, p_t), name
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    with pytest.raises(ValueError, match="out of range"):
        student_from_teacher(teacher, [3])
