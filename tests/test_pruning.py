"""Pruning on tiny models: vocabulary trimming keeps the logits of texts whose pieces were kept and
never emits an id past the new embedding; structured pruning gives the requested shapes, reloads
through ``from_pretrained``, exports to ONNX and quantizes; magnitude pruning reaches its target
sparsity and its zeros stay zero; impossible settings are refused at ``recipes check``; the card
shows what was kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recipes.engine.runner import Runner
from recipes.errors import RecipeValidationError
from recipes.ml.pruning import (
    MagnitudePruner,
    cubic_sparsity,
    ffn_to_keep,
    heads_to_remove,
    make_callback,
    sparsity_by_matrix,
)
from recipes.ml.vocabulary import choose_vocabulary, save_trimmed_tokenizer, trim_embeddings
from recipes.plan.loader import load_recipe

from .tiny import CLINC_DIR, clinc_dataset, minilm_dir, tiny_bert, write_recipe

FAST = {"epochs": 1, "learning_rate": 3.0e-3, "batch_size": 32}
ODD_TEXTS = ["", "héllo wörld 東京 ☃", "zzzzqqqxxx", "a" * 300, "Ǆ ǅ ǆ ﬁ ﬂ", "@@@ ### $$$ 1234567890", "🙂🙃 emoji"]
#: The module fixture trains two catalog plans, within the first test's time limit.
pytestmark = pytest.mark.timeout(900)


def stage_metrics(run, name: str) -> dict:
    return json.loads((run.out_dir / name / ".stage.json").read_text())["metrics"]


BENCH = {"name": "benchmark", "type": "benchmark", "warmup": 1, "runs": 3, "threads": 1, "baseline": "base"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, clinc_dir):
    """The catalog's ``kd-prune-onnx-quant`` (teacher -> kd -> it: prune-structured + recovery ->
    prune-vocab -> ONNX -> int8) and ``prune-onnx-quant`` on 150 CLINC rows and a 6-layer tiny BERT
    (2 heads per layer, FFN width 37), one scope; and ``sparse`` (prune-magnitude) on a 2-layer one."""
    from recipes.plan.planning import make_plan

    root = tmp_path_factory.mktemp("pruning")
    overrides = [
        f"models.base={tiny_bert(root / 'tiny6', layers=6)}",
        f"dataset.id={CLINC_DIR}",
        "dataset.max_samples.train=150",
        "dataset.max_samples.eval=48",
        "dataset.max_samples.test=48",
        "benchmark.runs=3",
        "benchmark.warmup=1",
        "quantize.min_agreement=0.5",
    ]
    runner = Runner(output_root=root / "out")
    chain = runner.run(make_plan("kd-prune-onnx-quant", overrides))
    vocab = runner.run(make_plan("prune-onnx-quant", overrides))
    tiny_bert(root / "bert", layers=2)
    recipe = {
        "name": "sparse",
        "description": "prune-magnitude on a tiny BERT",
        "dataset": clinc_dataset(64, 48, 96, oos_label="oos"),
        "models": {"base": str(root / "bert")},
        "stages": [
            {
                "name": "sparse",
                "type": "prune-magnitude",
                "input": "base",
                "sparsity": 0.6,
                "end": 0.5,
                "every": 1,
                **{**FAST, "epochs": 2, "batch_size": 16},
            },
            {**BENCH, "models": ["base", "sparse"]},
        ],
        "publish": {"model": "sparse"},
    }
    sparse = runner.run(load_recipe(str(write_recipe(root, recipe, "sparse.yaml"))))
    return {"chain": chain, "vocab": vocab, "sparse": sparse}


# --- vocabulary ---------------------------------------------------------------------------------------


def test_trimmed_vocabulary_keeps_the_logits_of_kept_texts_and_ids_in_range(runs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertTokenizer

    from recipes.ml.data import RecipeData

    run = runs["chain"]  # kd-prune-onnx-quant: the pruned student is trimmed
    before_dir, after_dir = run.out_dir / "prune", run.out_dir / "trim"
    old_tok, new_tok = AutoTokenizer.from_pretrained(before_dir), AutoTokenizer.from_pretrained(after_dir)
    old = AutoModelForSequenceClassification.from_pretrained(before_dir).eval()
    new = AutoModelForSequenceClassification.from_pretrained(after_dir).eval()
    metrics = stage_metrics(run, "trim")
    kept = metrics["vocab_kept"]
    assert new.config.vocab_size == kept == new_tok.vocab_size == len(new_tok) < old_tok.vocab_size
    assert new.get_input_embeddings().weight.shape[0] == kept
    assert metrics["kept"]["vocabulary"] == {"kept": kept, "total": old_tok.vocab_size}
    assert metrics["embedding_mb_saved"] == pytest.approx((old_tok.vocab_size - kept) * 32 * 4 / 2**20)

    data = RecipeData(run.loaded.recipe.dataset, run.loaded.recipe.seed)
    texts = list(data.split("test")["text"]) + list(data.split("eval")["text"])
    same = [t for t in texts if old_tok.tokenize(t) == new_tok.tokenize(t)]
    assert 0 < len(same) < len(texts)  # train pieces + the 10k words' pieces: some texts split anew
    with torch.no_grad():
        a = old(**old_tok(same, padding=True, return_tensors="pt")).logits
        b = new(**new_tok(same, padding=True, return_tensors="pt")).logits
    assert torch.allclose(a, b, atol=1e-5) and torch.equal(a.argmax(-1), b.argmax(-1))

    all_texts = texts + list(data.split("train")["text"]) + ODD_TEXTS
    ids = new_tok(all_texts, truncation=True, max_length=128)["input_ids"]
    assert max(max(row) for row in ids) < kept
    slow = BertTokenizer.from_pretrained(after_dir)  # vocab.txt agrees with tokenizer.json
    assert all(slow(t)["input_ids"] == new_tok(t)["input_ids"] for t in all_texts[:50] + ODD_TEXTS)
    for token in ("pad", "unk", "cls", "sep", "mask"):
        name = getattr(old_tok, f"{token}_token")
        assert new_tok.convert_ids_to_tokens(getattr(new_tok, f"{token}_token_id")) == name
    assert new.config.pad_token_id == new_tok.pad_token_id
    unk_rate = metrics["test"]["unk_after"]
    assert unk_rate <= metrics["test"]["unk_before"] + 1e-9  # every single character kept: no new [UNK]
    assert 0 < metrics["test"]["texts_changed"] < 1


def test_trimmed_model_loads_in_a_pipeline(runs):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(runs["chain"].out_dir / "trim"), device="cpu")
    assert pipe("What is the pin number for my account?")[0]["label"] in pipe.model.config.id2label.values()


def test_vocabulary_rules(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    train = ["reset my pin", "reset the pin please", "transfer money"]
    vocab = tokenizer.get_vocab()
    plain = choose_vocabulary(tokenizer, train, characters="none")
    assert plain.added_by == {"special": 5, "train": 7}  # [PAD] [UNK] [CLS] [SEP] [MASK]; 7 words
    twice = choose_vocabulary(tokenizer, train, min_count=2, characters="none")
    assert {tokenizer.convert_ids_to_tokens(i) for i in twice.keep} - set(tokenizer.all_special_tokens) == {
        "reset",
        "pin",
    }
    seen = choose_vocabulary(tokenizer, train, characters="seen")
    every = choose_vocabulary(tokenizer, train, characters="all")
    singles = [i for p, i in vocab.items() if len(p.removeprefix("##")) == 1 or len(p) == 1]
    assert seen.added_by["characters"] < every.added_by["characters"] == len(singles) == 1994
    assert {vocab["z"], vocab["##z"]} <= set(every.keep) and vocab["z"] not in seen.keep
    words = choose_vocabulary(tokenizer, train, characters="none", words=["weather", "today"])
    assert vocab["weather"] in words.keep and words.added_by["words"] == 2
    trimmed = save_trimmed_tokenizer(tokenizer, seen.keep, tmp_path / "tok")
    assert trimmed.tokenize("reset pets zebra") == ["reset", "p", "##e", "##t", "##s", "[UNK]"]  # no z seen
    with pytest.raises(ValueError, match="special tokens"):
        save_trimmed_tokenizer(tokenizer, [i for i in seen.keep if i != vocab["[MASK]"]], tmp_path / "bad")


def test_embedding_rows_follow_the_new_ids():
    from transformers import AutoModelForSequenceClassification, BertConfig

    config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=4)
    model = AutoModelForSequenceClassification.from_config(config)
    old = model.get_input_embeddings().weight.detach().clone()
    trim_embeddings(model, [0, 3, 7])
    assert torch.equal(model.get_input_embeddings().weight, old[[0, 3, 7]])
    assert model.config.vocab_size == 3 and model.get_input_embeddings().padding_idx == 0


# --- structure ----------------------------------------------------------------------------------------


def test_structured_pruning_gives_the_requested_shapes_and_reloads(runs):
    from transformers import AutoModelForSequenceClassification

    run = runs["chain"]
    model = AutoModelForSequenceClassification.from_pretrained(run.out_dir / "prune")
    layers = model.base_model.encoder.layer
    assert len(layers) == 3  # the kd student: teacher layers 0, 2, 4
    assert [layer.attention.self.num_attention_heads for layer in layers] == [1, 1, 1]
    assert [layer.attention.self.query.out_features for layer in layers] == [16, 16, 16]
    assert [layer.attention.output.dense.in_features for layer in layers] == [16, 16, 16]
    assert model.config.intermediate_size == 19 == 37 - int(0.5 * 37)
    assert all(layer.intermediate.dense.out_features == 19 == layer.output.dense.in_features for layer in layers)
    assert {int(k): len(v) for k, v in model.config.pruned_heads.items()} == {0: 1, 1: 1, 2: 1}
    metrics = stage_metrics(run, "prune")
    assert metrics["params_after"] < metrics["params_before"]
    kept = [(e["heads"], e["heads_total"], e["ffn"], e["ffn_total"]) for e in metrics["kept"]["layers"]]
    assert kept == [(1, 2, 19, 37)] * 3
    assert metrics["recover"]["history"] and "eval_pruned" in metrics
    # The catalog recovers with kd's layer losses and teacher-labelled copies; its comparison stage
    # recovers on the logits alone.
    assert metrics["recover"]["train_rows"]["augmented"] == metrics["recover"]["train_rows"]["original"] > 0
    assert stage_metrics(run, "prune-logits-only")["recover"]["train_rows"]["augmented"] == 0


def test_pruned_model_exports_to_onnx_and_quantizes(runs):
    from recipes.ml.data import RecipeData
    from recipes.ml.modelio import load_classifier

    run = runs["chain"]
    for name in ("export", "quantize"):
        record = stage_metrics(run, name)
        assert record["parity"]["argmax_agreement"] >= (0.99 if name == "export" else 0.5), record
    recipe = run.loaded.recipe
    texts = list(RecipeData(recipe.dataset, recipe.seed).split("test")["text"])[:32]
    torch_logits = load_classifier(run.out_dir / "calibrate", 1).logits(texts)  # what was exported
    onnx_logits = load_classifier(run.out_dir / "export", 1).logits(texts)
    assert np.abs(torch_logits - onnx_logits).max() < 1e-3
    bench = json.loads((run.out_dir / "benchmark" / "benchmark.json").read_text())
    sizes = {r["name"]: r["size_mb"] for r in bench["models"]}
    assert sizes["quantize"] < sizes["quantize-int8"] < sizes["trim"] < sizes["prune"] < sizes["student"]
    assert sizes["student"] < sizes["teacher-calibrated"]
    vocab = runs["vocab"]  # prune-onnx-quant: the teacher trimmed, exported, quantized
    trim = stage_metrics(vocab, "trim")
    assert trim["kept_by_rule"]["words"] > 0 and trim["vocab_kept"] < trim["vocab_total"]
    assert stage_metrics(vocab, "export")["parity"]["argmax_agreement"] >= 0.99


def test_head_choice_never_empties_a_layer():
    scores = [torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.9, 0.8, 0.05])]
    assert heads_to_remove(scores, 0.5, "layer", 1) == {0: [0], 1: [2]}
    # overall: the 3 lowest are 0.05 (1:2), 0.1 (0:0), 0.2 (0:1); min_heads 2 keeps two per layer
    assert heads_to_remove(scores, 0.5, "model", 1) == {0: [0, 1], 1: [2]}
    assert heads_to_remove(scores, 0.5, "model", 2) == {0: [0], 1: [2]}
    assert heads_to_remove(scores, 0.99, "model", 1) == {0: [0, 1], 1: [1, 2]}


def test_ffn_keeps_the_same_width_in_every_layer():
    scores = [torch.tensor([3.0, 1.0, 2.0, 0.5]), torch.tensor([0.1, 0.2, 0.3, 0.4])]
    assert ffn_to_keep(scores, 0.5) == [[0, 2], [2, 3]]
    with pytest.raises(ValueError, match="widths differ"):
        ffn_to_keep([torch.ones(4), torch.ones(3)], 0.5)


# --- weights --------------------------------------------------------------------------------------------


def test_cubic_schedule():
    assert cubic_sparsity(0, 100, 0.9) == 0.0
    assert cubic_sparsity(50, 100, 0.9) == pytest.approx(0.9 + (0 - 0.9) * 0.5**3)
    assert cubic_sparsity(100, 100, 0.9) == 0.9 == cubic_sparsity(80, 100, 0.9, end=0.8)
    assert cubic_sparsity(10, 100, 0.9, initial=0.2, start=0.2) == 0.2
    values = [cubic_sparsity(t, 100, 0.8, 0.1, 0.1, 0.7) for t in range(101)]
    assert values == sorted(values) and values[0] == 0.1 and values[-1] == 0.8


def test_magnitude_pruning_reaches_its_target_and_zeros_stay_zero(tmp_path):
    from transformers import AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    from recipes.ml.pruning import prunable_linears

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert(tmp_path / "m", num_labels=3))
    rng = np.random.default_rng(0)
    rows = [
        {"input_ids": [101, *rng.integers(1000, 2000, 6).tolist(), 102], "labels": int(rng.integers(0, 3))}
        for _ in range(32)
    ]
    zeros_at: dict[int, dict] = {}

    class Capture(TrainerCallback):  # runs after the pruning callback: sees the masked weights
        def on_step_end(self, args, state, control, **kwargs):
            zeros_at[state.global_step] = {n: (m.weight == 0).clone() for n, m in prunable_linears(model)}

    pruner = MagnitudePruner(model, "model")
    args = TrainingArguments(
        output_dir=str(tmp_path / "t"),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    trainer.add_callback(make_callback(pruner, 0.7, 0.0, 0.0, 0.5, 2))
    trainer.add_callback(Capture())
    trainer.train()
    total = sum(m.weight.numel() for _, m in prunable_linears(model))
    zeros = sum(int((m.weight == 0).sum()) for _, m in prunable_linears(model))
    assert zeros == round(0.7 * total)
    reached = min(step for step in zeros_at if step >= 6)  # 12 steps; target at half of them
    for name, module in prunable_linears(model):
        assert torch.all(module.weight[zeros_at[reached][name]] == 0), name
    per_matrix = sparsity_by_matrix(model)
    assert len(set(round(v, 3) for v in per_matrix.values())) > 1  # "model" scope: matrices differ


def test_magnitude_stage_records_sparsity_per_layer_and_gzip_size(runs):
    from transformers import AutoModelForSequenceClassification

    run = runs["sparse"]
    metrics = stage_metrics(run, "sparse")
    model = AutoModelForSequenceClassification.from_pretrained(run.out_dir / "sparse")
    for layer in model.base_model.encoder.layer:
        for linear in (layer.attention.self.query, layer.intermediate.dense, layer.output.dense):
            w = linear.weight
            assert int((w == 0).sum()) == round(0.6 * w.numel())
    assert metrics["sparsity_per_layer"] == pytest.approx([0.6, 0.6], abs=1e-3)
    assert [e["sparsity"] for e in metrics["kept"]["layers"]] == metrics["sparsity_per_layer"]
    assert metrics["size_mb"] == pytest.approx(metrics["size_mb_before"], rel=0.01)  # zeros stored densely
    assert 0 < metrics["size_gzip_mb"] < metrics["size_mb"] and metrics["size_gzip_mb_before"] > 0
    assert model.base_model.embeddings.word_embeddings.weight.count_nonzero() > 0.99 * model.config.vocab_size * 32


def test_gzip_size_counts_what_zeros_save(tmp_path):
    from recipes.measure.size import gzip_size_mb

    dense, sparse = tmp_path / "dense.bin", tmp_path / "sparse.bin"
    values = np.random.default_rng(0).normal(size=2**18).astype(np.float32)
    dense.write_bytes(values.tobytes())
    values[: int(0.9 * len(values))] = 0
    sparse.write_bytes(values.tobytes())
    assert gzip_size_mb(sparse) < 0.2 * gzip_size_mb(dense) and 0.8 < gzip_size_mb(dense) < 1.01


# --- recipes check --------------------------------------------------------------------------------------

VALID = {
    "name": "p",
    "description": "pruning settings",
    "dataset": clinc_dataset(id="clinc_oos"),
    "models": {"teacher": "org/teacher"},
    "stages": [
        {"name": "prune", "type": "prune-structured", "input": "teacher", "remove_heads": 0.5},
        {"name": "trim", "type": "prune-vocab", "input": "prune"},
        {"name": "sparse", "type": "prune-magnitude", "input": "teacher", "sparsity": 0.5},
    ],
}

REFUSED = [
    ("prune", {"remove_heads": 1.0}, ["stages -> prune -> remove_heads", "less than 1"]),
    ("prune", {"remove_ffn": -0.1}, ["stages -> prune -> remove_ffn", "greater than or equal to 0"]),
    ("prune", {"remove_heads": 0.0}, ["nothing to remove"]),
    ("prune", {"min_heads": 0}, ["stages -> prune -> min_heads", "greater than or equal to 1"]),
    ("prune", {"importance": "random"}, ["stages -> prune -> importance", "'gradient' or 'magnitude'"]),
    ("prune", {"recover": {"teacher": "nobody"}}, ["stage 'prune' teacher refers to 'nobody'"]),
    ("prune", {"recover": {"teacher": "teacher", "epochs": 0}}, ["stages -> prune -> recover -> epochs"]),
    ("prune", {"recover": {"teacher": "teacher", "attention_weight": 1.0}}, ["attention_weight need layer_map"]),
    ("trim", {"min_count": 0}, ["stages -> trim -> min_count", "greater than or equal to 1"]),
    ("trim", {"top_words": -5}, ["stages -> trim -> top_words"]),
    ("trim", {"characters": "some"}, ["stages -> trim -> characters"]),
    ("sparse", {"sparsity": 1.0}, ["stages -> sparse -> sparsity", "less than 1"]),
    ("sparse", {"sparsity": 0.0}, ["stages -> sparse -> sparsity", "greater than 0"]),
    ("sparse", {"initial_sparsity": 0.8}, ["initial_sparsity (0.8) exceeds sparsity (0.5)"]),
    ("sparse", {"start": 0.8, "end": 0.5}, ["start (0.8) must come before end (0.5)"]),
    ("sparse", {"every": 0}, ["stages -> sparse -> every"]),
]


@pytest.mark.parametrize("stage, change, expected", REFUSED, ids=[f"{s}-{list(c)[0]}" for s, c, _ in REFUSED])
def test_impossible_settings_are_refused_at_check(tmp_path, stage, change, expected):
    data = json.loads(json.dumps(VALID))
    next(s for s in data["stages"] if s["name"] == stage).update(change)
    with pytest.raises(RecipeValidationError) as err:
        load_recipe(str(write_recipe(tmp_path, data, "p.yaml")))
    message = err.value.message
    assert ", line " in message or "stage 'prune'" in message, message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_valid_pruning_settings_and_catalog_recipes_load(tmp_path):
    path = write_recipe(tmp_path, VALID, "p.yaml")
    assert load_recipe(str(path)).recipe.stage_names == ["prune", "trim", "sparse"]
    for name in ("prune-onnx-quant", "kd-prune-onnx-quant"):
        recipe = load_recipe(name).recipe
        assert recipe.final_model == "quantize" and recipe.dataset.oos_label == "oos"


# --- the card ---------------------------------------------------------------------------------------------


def test_card_shows_what_was_kept(runs, tmp_path):
    from hubtools.card import CardData, parse_markdown_table, render_card, save_kept_plot
    from hubtools.runinfo import RunInfo, plan_layout

    info = RunInfo(runs["chain"].out_dir)
    card = CardData("local/pruned").fill(info, plan_layout(info))
    text = str(render_card(card))
    assert "## What was kept" in text and "pruning" in card.tags
    kept = stage_metrics(runs["chain"], "trim")["vocab_kept"]
    assert f"Vocabulary: {kept:,} of 30,522 embedding rows kept" in text
    rows = parse_markdown_table(text, "Layer")
    assert [(r["Attention heads kept"], r["FFN width kept"]) for r in rows] == [("1 / 2", "19 / 37")] * 3
    assert "![What was kept](kept.png)" in text and "Zero weights" not in text
    assert save_kept_plot(info.lineage(), tmp_path / "kept.png").read_bytes()[:4] == b"\x89PNG"

    info = RunInfo(runs["sparse"].out_dir)
    text = str(render_card(CardData("local/sparse").fill(info, plan_layout(info))))
    rows = parse_markdown_table(text, "Layer")
    assert [r["Zero weights"] for r in rows] == ["60.0%", "60.0%"] and "Vocabulary:" not in text
    assert "run this\nmodel no faster" in text


def test_pruned_model_is_pushed_loads_from_the_hub_and_verifies(runs, local_hub, new_repo_id):
    from huggingface_hub import list_repo_files
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hubtools.push import push_run
    from hubtools.verify import verify_repo

    repo_id = new_repo_id("pruned")
    push_run(runs["chain"].out_dir, repo_id=repo_id)
    assert {"kept.png", "model.safetensors", "vocab.txt", "onnx/model_quantized.onnx"} <= set(list_repo_files(repo_id))
    model = AutoModelForSequenceClassification.from_pretrained(repo_id)
    assert [layer.attention.self.num_attention_heads for layer in model.base_model.encoder.layer] == [1, 1, 1]
    assert AutoTokenizer.from_pretrained(repo_id).vocab_size == model.config.vocab_size < 30522
    report = verify_repo(repo_id, runs=1)
    assert report.passed, report.summary()


def test_card_without_pruning_says_so(tmp_path):
    from hubtools.card import CardData, render_card, save_kept_plot
    from hubtools.runinfo import RunInfo, plan_layout

    from .publish_fixtures import fake_runs

    info = RunInfo(fake_runs()["kd-quant"])
    text = str(render_card(CardData("local/plain").fill(info, plan_layout(info))))
    assert "## What was kept" not in text and "No pruning on this model's line" in text
    assert save_kept_plot(info.lineage(), tmp_path / "kept.png") is None
