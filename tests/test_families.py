"""Every encoder family the project knows (:data:`recipes.ml.families.FAMILIES`: BERT, DistilBERT,
RoBERTa, DeBERTa-v2, ALBERT, ELECTRA, ModernBERT), on tiny random models with their own kind of
tokenizer: each family's layout is found; cutting layers, removing heads and FFN neurons and
magnitude pruning change what they should and nothing else; a model gets only the inputs its
forward takes; what a family cannot do is refused at ``recipes check``, naming the family, the stage
and what would work; and the catalog's ``kd-quant``, ``kd-onnx-quant`` and ``kd-prune-onnx-quant``
run end to end on each (teacher -> kd -> the three, a hundred CLINC150 rows, one or two epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from recipes.__main__ import main
from recipes.engine.runner import Runner
from recipes.errors import RecipeValidationError
from recipes.ml.families import FAMILIES, model_inputs
from recipes.ml.modelio import load_classifier, save_pretrained_model
from recipes.ml.pruning import (
    MagnitudePruner,
    importance,
    layer_shapes,
    remove_heads,
    shrink_ffn,
    sparsity_by_layer,
)
from recipes.plan.loader import CATALOG_DIR
from recipes.plan.planning import make_plan
from recipes.plan.preflight import check_plan

from .tiny import CLINC_DIR, clinc_dataset, tiny_model, write_recipe

#: The module fixture trains one family's chain per parameter, within its first test's time limit.
pytestmark = pytest.mark.timeout(600)

FAMILY_TYPES = tuple(FAMILIES)
HEAD_PRUNING = tuple(t for t, f in FAMILIES.items() if f.prunes_heads)
NO_HEAD_PRUNING = tuple(t for t, f in FAMILIES.items() if not f.prunes_heads)
LAYERS = 6
TEXTS = ["what is the pin number for my account", "book a table for two", "hi", "tell me a joke about cats"]


def _load(model_dir: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(
        model_dir
    )


def _logits(model, tokenizer) -> torch.Tensor:
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**model_inputs(model, enc)).logits


@pytest.fixture(scope="module")
def random_models(tmp_path_factory) -> dict[str, Path]:
    """A 6-layer random classifier of each family, with its family's kind of tokenizer."""
    root = tmp_path_factory.mktemp("families")
    return {family: tiny_model(family, root / family, layers=LAYERS) for family in FAMILY_TYPES}


# --- each family's layout, on random models -----------------------------------------------------------


@pytest.mark.parametrize("family", FAMILY_TYPES)
def test_the_layout_of_each_family_is_found(random_models, family):
    model, _ = _load(random_models[family])
    layout = FAMILIES[family]
    blocks = layout.encoder_blocks(model)
    assert len(blocks) == (1 if layout.shared_layers else LAYERS)  # ALBERT: one shared layer
    assert layer_shapes(model) == [{"heads": 2, "ffn": 37}] * len(blocks)
    assert [w.shape for w in layout.qkv_weights(blocks[0])] == [(32, 32)] * 3
    assert layout.attention_output(blocks[0]).in_features == 2 * layout.head_width(blocks[0]) == 32
    assert layout.classifier_head(model).out_features == 151


@pytest.mark.parametrize("family", FAMILY_TYPES)
def test_cutting_every_layer_keeps_the_logits_and_cutting_some_keeps_those(random_models, family):
    from recipes.ml.distillation import student_from_teacher

    teacher, tokenizer = _load(random_models[family])
    layout = FAMILIES[family]
    same = student_from_teacher(teacher, list(range(LAYERS))).eval()
    assert torch.allclose(_logits(same, tokenizer), _logits(teacher, tokenizer), atol=1e-5)
    student = student_from_teacher(teacher, [0, 2, 4])
    assert student.config.num_hidden_layers == 3
    pairs = [(0, 0)] if layout.shared_layers else [(0, 0), (1, 2), (2, 4)]  # ALBERT: its one layer, 3 times
    for new, old in pairs:
        weights = zip(
            layout.encoder_blocks(student)[new].parameters(), layout.encoder_blocks(teacher)[old].parameters()
        )
        assert all(torch.equal(s, t) for s, t in weights)
    assert torch.equal(layout.classifier_head(student).weight, layout.classifier_head(teacher).weight)


def test_a_modernbert_student_keeps_each_layer_global_or_local():
    """ModernBERT attends globally every n-th layer (here 3: layers 0 and 3): a student cut to
    [0, 3] has two global layers (n 1), one cut to [0, 2, 4] keeps n 3; [0, 3, 4] fits no n."""
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    config = ModernBertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=8, pad_token_id=0
    )
    teacher = ModernBertForSequenceClassification(config)
    layout = FAMILIES["modernbert"]
    assert layout.cut(teacher, [0, 3]).config.global_attn_every_n_layers == 1
    assert layout.cut(teacher, [0, 2, 4]).config.global_attn_every_n_layers == 3
    for bad in ([0, 3, 4], [1, 2]):
        with pytest.raises(ValueError, match=r"cannot make a ModernBERT model.*keep_layers: \[0, 1"):
            layout.cut(teacher, bad)


@pytest.mark.parametrize("family", FAMILY_TYPES)
def test_removing_ffn_neurons_that_contribute_nothing_keeps_the_logits(random_models, family, tmp_path):
    model, tokenizer = _load(random_models[family])
    layout = FAMILIES[family]
    dead = [1, 5, 36]
    with torch.no_grad():
        for block in layout.encoder_blocks(model):
            layout.ffn_output(block).weight[:, dead] = 0
    before = _logits(model, tokenizer)
    shrink_ffn(model, [[j for j in range(37) if j not in dead]] * len(layout.encoder_blocks(model)))
    assert torch.allclose(_logits(model, tokenizer), before, atol=1e-5)
    save_pretrained_model(model, tokenizer, tmp_path)
    reloaded, _ = _load(tmp_path)
    assert layer_shapes(reloaded) == layer_shapes(model) and layer_shapes(model)[0]["ffn"] == 34
    assert torch.allclose(_logits(reloaded, tokenizer), before, atol=1e-5)


@pytest.mark.parametrize("family", HEAD_PRUNING)
def test_removing_a_head_that_contributes_nothing_keeps_the_logits(random_models, family, tmp_path):
    model, tokenizer = _load(random_models[family])
    layout = FAMILIES[family]
    blocks = layout.encoder_blocks(model)
    with torch.no_grad():
        for block in blocks:
            layout.attention_output(block).weight[:, 16:] = 0  # head 1's columns
    before = _logits(model, tokenizer)
    remove_heads(model, {i: [1] for i in range(len(blocks))})
    assert [s["heads"] for s in layer_shapes(model)] == [1] * len(blocks)
    assert torch.allclose(_logits(model, tokenizer), before, atol=1e-5)
    save_pretrained_model(model, tokenizer, tmp_path)
    reloaded, _ = _load(tmp_path)  # config.pruned_heads replayed
    assert torch.allclose(_logits(reloaded, tokenizer), before, atol=1e-5)


@pytest.mark.parametrize("family", NO_HEAD_PRUNING)
def test_removing_heads_is_refused_where_transformers_has_no_prune_heads(random_models, family):
    model, _ = _load(random_models[family])
    with pytest.raises(ValueError, match=f"{FAMILIES[family].name} model cannot lose attention heads.*prune_heads"):
        remove_heads(model, {0: [1]})


@pytest.mark.parametrize("family", FAMILY_TYPES)
def test_importance_scores_every_head_and_neuron_and_magnitude_pruning_reaches_its_sparsity(random_models, family):
    model, tokenizer = _load(random_models[family])
    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"), labels=torch.tensor([0, 1, 2, 3]))
    blocks = len(FAMILIES[family].encoder_blocks(model))
    for method in ("gradient", "magnitude"):
        heads, ffn = importance(model, [batch], method)
        assert [h.shape for h in heads] == [(2,)] * blocks and [f.shape for f in ffn] == [(37,)] * blocks
        assert all(torch.isfinite(s).all() and (s > 0).any() for s in heads + ffn)
    pruner = MagnitudePruner(model)
    pruner.make_permanent(0.5)
    assert sparsity_by_layer(model) == pytest.approx([0.5] * blocks, abs=0.01)


def test_a_distilbert_with_a_tokenizer_that_returns_token_types_still_predicts(tmp_path):
    """The issue's DistilBERT: a BERT tokenizer returns token_type_ids, which DistilBERT's forward
    does not take; the loaders, ``pipeline()`` and the saved tokenizer pass only what it takes."""
    model_dir = tiny_model("distilbert", tmp_path / "in", tokenizer="bert")
    classifier = load_classifier(model_dir, threads=1)
    assert classifier.logits(TEXTS).shape == (4, 151)
    assert classifier.make_pipeline()(TEXTS[0])[0]["label"].startswith("LABEL_")
    model, tokenizer = _load(model_dir)
    assert "token_type_ids" in tokenizer(TEXTS[0])
    save_pretrained_model(model, tokenizer, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert saved["model_input_names"] == ["input_ids", "attention_mask"]


# --- refused at recipes check, before any stage runs ----------------------------------------------------


def config_folder(folder: Path, model_type: str, **settings) -> Path:
    """A model folder that holds only a config.json (what the checks read) of a 6-layer model."""
    folder.mkdir(parents=True)
    labels = {i: f"LABEL_{i}" for i in range(151)}  # a classifier of as many labels as CLINC150 has
    config = {"model_type": model_type, "num_hidden_layers": LAYERS, "id2label": labels, **settings}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def checked(recipe: str, *overrides: str):
    """``recipes check`` of ``recipe`` (a catalog name or a path) on the repository's CLINC150."""
    check_plan(make_plan(recipe, [f"dataset.id={CLINC_DIR}", *overrides]))


def refusal(recipe: str, *overrides: str) -> str:
    """The check's message on ``recipe``: one line, no traceback."""
    with pytest.raises(RecipeValidationError) as err:
        checked(recipe, *overrides)
    message = err.value.message
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    return message


@pytest.mark.parametrize("family", NO_HEAD_PRUNING)
def test_head_pruning_is_refused_for_families_without_prune_heads(tmp_path, family, capsys):
    base = config_folder(tmp_path / family, family)
    message = refusal("kd-prune-onnx-quant", f"models.base={base}")
    name = FAMILIES[family].name
    assert f"stage 'prune' (prune-structured) on 'student': a {name} model cannot lose attention heads" in message
    assert "set remove_heads: 0 (--set prune.remove_heads=0) to remove FFN neurons only" in message
    assert "families that can: BERT, RoBERTa, ELECTRA, DistilBERT, ALBERT" in message
    args = ["check", "kd-prune-onnx-quant", "--set", f"dataset.id={CLINC_DIR}", "--set", f"models.base={base}"]
    assert main(args) == RecipeValidationError.exit_code
    assert f"a {name} model cannot lose attention heads" in capsys.readouterr().err
    checked("kd-prune-onnx-quant", f"models.base={base}", "prune.remove_heads=0", "prune-logits-only.remove_heads=0")


def test_modernbert_layers_cut_out_of_place_are_refused(tmp_path):
    base = config_folder(tmp_path / "modernbert", "modernbert", global_attn_every_n_layers=3)
    message = refusal("kd", f"models.base={base}", "distill.keep_layers=[0, 3, 4]")
    assert (
        "stage 'distill' (distill) keep_layers of 'teacher': keep_layers [0, 3, 4] cannot make a ModernBERT" in message
    )
    assert "the first layers always do: keep_layers: [0, 1, 2]" in message
    checked("kd", f"models.base={base}")  # the catalog's [0, 2, 4]


def test_a_search_over_layers_is_held_to_the_family_too(tmp_path):
    teacher = config_folder(tmp_path / "modernbert", "modernbert", global_attn_every_n_layers=3)
    stage = {"name": "search", "type": "search-distill", "input": "teacher", "n_trials": 2}
    stage["space"] = {"keep_layers": {"choices": [[0, 2, 4], [1, 2]]}}
    recipe = {"name": "search", "description": "Layers searched.", "dataset": clinc_dataset()}
    recipe.update(models={"teacher": str(teacher)}, stages=[stage])
    message = refusal(str(write_recipe(tmp_path, recipe)))
    assert "space -> keep_layers -> choices[1] of 'teacher': keep_layers [1, 2] cannot make a ModernBERT" in message
    assert "choices[0]" not in message


def test_albert_cut_needs_one_layer_group_and_attention_maps_one_inner_layer(tmp_path):
    groups = config_folder(tmp_path / "groups", "albert", num_hidden_groups=2)
    assert "has num_hidden_groups 2: give the student as a model (student:)" in refusal("kd", f"models.base={groups}")
    inner = config_folder(tmp_path / "inner", "albert", inner_group_num=2)
    message = refusal("kd", f"models.base={inner}")
    assert (
        "attention_weight, input 'teacher': an ALBERT model with inner_group_num 2 returns 2 attention maps" in message
    )
    checked("kd", f"models.base={inner}", "distill.attention_weight=0")


def test_a_family_the_project_does_not_know_is_refused_where_its_layers_are_needed(tmp_path):
    base = config_folder(tmp_path / "mpnet", "mpnet")
    message = refusal("kd", f"models.base={base}")
    assert (
        "keep_layers of 'teacher': cutting layers (keep_layers) needs to know where the model's layers are" in message
    )
    assert "it is a model of model_type 'mpnet'; the project knows BERT (bert), RoBERTa (roberta)" in message
    checked("teacher", f"models.base={base}")  # no layers needed
    stage = {"name": "prune", "type": "prune-structured", "input": "base", "remove_ffn": 0.5}
    recipe = {"name": "ffn", "description": "FFN of an MPNet.", "dataset": clinc_dataset()}
    recipe.update(models={"base": str(base)}, stages=[stage])
    message = refusal(str(write_recipe(tmp_path, recipe)))
    assert "stage 'prune' (prune-structured) on 'base': removing FFN neurons needs to know where" in message


# --- the catalog chain, end to end, per family -------------------------------------------------------------

ROWS = {"train": 100, "eval": 48, "test": 48}
#: Each catalog recipe as it is, with these settings of its stages (by type) changed: sizes only.
SHRUNK = {
    "finetune": {"epochs": 2, "learning_rate": 3.0e-3},
    "distill": {"epochs": 1, "learning_rate": 3.0e-3},
    "benchmark": {"warmup": 1, "runs": 2, "threads": 1},
    "ort-quantize": {"min_agreement": 0.0},  # int8 of a random-ish tiny model may flip its argmax
}
CHAIN = ("teacher", "kd", "kd-quant", "kd-onnx-quant", "kd-prune-onnx-quant")


def shrink(name: str, folder: Path, base: Path) -> Path:
    """Catalog recipe ``name`` in ``folder``, on ``base``, ``ROWS`` of the repository's CLINC150 and
    :data:`SHRUNK` settings; the chain's dependencies without their own benchmark."""
    recipe = yaml.safe_load((CATALOG_DIR / f"{name}.yaml").read_text())
    recipe["dataset"] = {**recipe["dataset"], "id": str(CLINC_DIR), "max_samples": ROWS}
    recipe["models"] = {k: str(base) if k == "base" else v for k, v in recipe["models"].items()}
    keep_benchmark = name not in ("teacher", "kd")
    recipe["stages"] = [
        {**stage, **SHRUNK.get(stage["type"], {})}
        for stage in recipe["stages"]
        if stage["type"] != "benchmark" or keep_benchmark
    ]
    for stage in recipe["stages"]:
        if "recover" in stage:
            stage["recover"] = {**stage["recover"], "epochs": 1, "learning_rate": 3.0e-3}
    return write_recipe(folder, recipe, f"{name}.yaml")


@pytest.fixture(scope="module", params=FAMILY_TYPES)
def chain(request, tmp_path_factory):
    """One family's teacher -> kd -> kd-quant, kd-onnx-quant and kd-prune-onnx-quant (without heads
    removed where the family cannot lose them, after the check refused them)."""
    family = request.param
    root = tmp_path_factory.mktemp(f"chain-{family}")
    base = tiny_model(family, root / "base", layers=LAYERS)
    for name in CHAIN:
        shrink(name, root, base)
    runner = Runner(output_root=root / "out")
    for name in ("kd-quant", "kd-onnx-quant"):
        runner.run(make_plan(str(root / f"{name}.yaml")))
    prune = make_plan(str(root / "kd-prune-onnx-quant.yaml"))
    if family in NO_HEAD_PRUNING:
        with pytest.raises(RecipeValidationError, match="cannot lose attention heads"):
            check_plan(prune)
        no_heads = ["prune.remove_heads=0", "prune-logits-only.remove_heads=0"]
        prune = make_plan(str(root / "kd-prune-onnx-quant.yaml"), no_heads)
    runner.run(prune)
    return family, runner


def _stage_dir(runner, recipe: str, stage: str) -> Path:
    return runner.runs[recipe].out_dir / stage


def _benchmark(runner, recipe: str) -> dict:
    return json.loads((_stage_dir(runner, recipe, "benchmark") / "benchmark.json").read_text())


def test_kd_onnx_quant_runs_on_every_family(chain):
    family, runner = chain
    assert all(s.status == "ran" for name in ("teacher", "kd", "kd-onnx-quant") for s in runner.runs[name].stages)
    student = json.loads((_stage_dir(runner, "kd", "distill") / "config.json").read_text())
    assert student["model_type"] == family and student[FAMILIES[family].layers_key] == 3
    rows = _benchmark(runner, "kd-onnx-quant")["models"]
    assert [r["format"] for r in rows] == ["pytorch", "onnx", "pytorch", "onnx", "onnx", "onnx"]
    assert all(r["latency_ms"]["p50"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    quantized = load_classifier(_stage_dir(runner, "kd-onnx-quant", "quantize"), threads=1)
    assert quantized.make_pipeline()(TEXTS[0])[0]["label"] in student["label2id"]


def test_kd_quant_runs_on_every_family(chain):
    _, runner = chain
    assert all(s.status == "ran" for s in runner.runs["kd-quant"].stages)
    rows = _benchmark(runner, "kd-quant")["models"]
    assert [r["format"] for r in rows] == ["pytorch", "pytorch", "pytorch-dynamic-int8"]
    assert load_classifier(_stage_dir(runner, "kd-quant", "quantize"), threads=1).logits(TEXTS).shape == (4, 151)


def test_kd_prune_onnx_quant_runs_on_every_family(chain):
    family, runner = chain
    assert all(s.status == "ran" for s in runner.runs["kd-prune-onnx-quant"].stages)
    kept = json.loads((_stage_dir(runner, "kd-prune-onnx-quant", "prune") / ".stage.json").read_text())["metrics"]
    heads = 1 if family in HEAD_PRUNING else 2
    blocks = 1 if FAMILIES[family].shared_layers else 3
    assert [(e["heads"], e["ffn"]) for e in kept["kept"]["layers"]] == [(heads, 19)] * blocks
    assert kept["intermediate_size"] == 19 and "recover" in kept
    rows = _benchmark(runner, "kd-prune-onnx-quant")["models"]
    assert [r["name"] for r in rows][-1] == "quantize" and rows[-1]["format"] == "onnx"
    quantized = load_classifier(_stage_dir(runner, "kd-prune-onnx-quant", "quantize"), threads=1)
    assert quantized.logits(TEXTS).shape == (4, 151)
