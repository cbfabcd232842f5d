"""CLINC150's own metrics and the out-of-scope calibration: metrics on hand-made predictions;
the folded bias changes exactly the predictions a hand computation says, and survives the ONNX
export and int8 quantization."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recipes.engine.runner import Runner
from recipes.measure.metrics import classification_metrics, top_confusions
from recipes.ml.calibration import grid_argmax, grid_scores
from recipes.ml.modelio import load_classifier
from recipes.plan.loader import load_recipe

from .tiny import clinc_dataset, tiny_bert_with_labels, write_recipe

OOS = 2  # in the hand-made set: labels 0, 1 are intents, 2 is out of scope


def test_metrics_on_hand_made_predictions():
    labels = [0, 0, 1, 1, 2, 2, 2, 2]
    preds = [0, 1, 1, 2, 2, 2, 0, 1]
    m = classification_metrics(preds, labels, OOS)
    assert m["accuracy"] == pytest.approx(4 / 8)
    assert m["in_scope_accuracy"] == pytest.approx(2 / 4)  # rows 0..3: right on 0 and 2
    assert m["oos_recall"] == pytest.approx(2 / 4)  # rows 4..7: two called oos
    assert m["oos_precision"] == pytest.approx(2 / 3)  # three oos calls, row 3 wrong
    assert m["balanced"] == pytest.approx(0.5)
    assert classification_metrics(preds, labels) == {"accuracy": 0.5}


def test_top_confusions_against_a_baseline():
    names = ["a", "b", "oos"]
    labels = [0, 1, 2, 2]
    out = top_confusions([0, 0, 0, 2], labels, names, baseline_preds=[0, 1, 2, 0])
    assert out["confusions"][0] == {"true": "b", "predicted": "a", "count": 1}
    assert out["vs_baseline"]["rows_lost"] == 2 and out["vs_baseline"]["lost_by_label"] == {"b": 1, "oos": 1}
    assert out["vs_baseline"]["rows_won"] == 1 and out["vs_baseline"]["won_by_label"] == {"oos": 1}


def test_chosen_bias_is_the_best_of_the_grid():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3))
    labels = rng.integers(0, 3, size=200)
    grid = np.arange(0, 4.01, 0.5)
    bias, scores = (
        grid_argmax(logits, labels, OOS, grid, "accuracy"),
        grid_scores(logits, labels, OOS, grid, "accuracy"),
    )
    by_hand = []
    for b in grid:
        shifted = logits.copy()
        shifted[:, OOS] += b
        by_hand.append(float((shifted.argmax(-1) == labels).mean()))
    assert scores == pytest.approx(by_hand) and bias == grid[int(np.argmax(by_hand))]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, clinc_dir):
    """A tiny BERT with CLINC's labels -> calibrate-oos -> ONNX export -> int8, one run."""
    root = tmp_path_factory.mktemp("oos")
    dataset = clinc_dataset(32, 200, 64, oos_label="oos")
    model_dir = tiny_bert_with_labels(root / "bert", dataset)
    recipe = {
        "name": "cal",
        "description": "calibrate a tiny BERT",
        "dataset": dataset,
        "models": {"base": str(model_dir)},
        "stages": [
            {
                "name": "calibrate",
                "type": "calibrate-oos",
                "input": "base",
                "rule": "grid",
                "low": 0,
                "high": 6,
                "step": 0.5,
                "resamples": 20,
            },
            {"name": "export", "type": "export-onnx", "input": "calibrate", "parity_samples": 32},
            {"name": "quantize", "type": "ort-quantize", "input": "export", "min_agreement": 0.8},
        ],
    }
    run = Runner(output_root=root / "out").run(load_recipe(str(write_recipe(root, recipe, "cal.yaml"))))
    return run, model_dir


def test_folded_bias_changes_exactly_the_predictions_it_should(calibrated):
    from recipes.ml.data import RecipeData

    run, model_dir = calibrated
    metrics = json.loads((run.out_dir / "calibrate" / ".stage.json").read_text())["metrics"]
    bias = metrics["oos_bias"]
    recipe = run.loaded.recipe
    texts = list(RecipeData(recipe.dataset, recipe.seed).split("test")["text"])
    before = load_classifier(model_dir, 1).logits(texts)
    oos = 42
    expected = before.copy()
    expected[:, oos] += bias  # the hand computation: the rule on the original logits
    after = load_classifier(run.out_dir / "calibrate", 1).logits(texts)
    assert np.allclose(after, expected, atol=1e-5)
    assert (after.argmax(-1) == expected.argmax(-1)).all()
    assert metrics["eval_after"][metrics["objective"]] >= metrics["eval_before"][metrics["objective"]]
    interval = metrics["bias_interval"]
    assert metrics["rule"] == "grid" and interval["resamples"] == 20 and interval["low"] <= bias <= interval["high"]
    assert bias > 0 and (after.argmax(-1) == oos).sum() > (before.argmax(-1) == oos).sum()


def test_bias_survives_onnx_export_and_int8(calibrated):
    from recipes.ml.data import RecipeData

    run, _ = calibrated
    recipe = run.loaded.recipe
    texts = list(RecipeData(recipe.dataset, recipe.seed).split("test")["text"])
    torch_preds = load_classifier(run.out_dir / "calibrate", 1).logits(texts).argmax(-1)
    onnx_preds = load_classifier(run.out_dir / "export", 1).logits(texts).argmax(-1)
    int8_preds = load_classifier(run.out_dir / "quantize", 1).logits(texts).argmax(-1)
    assert (onnx_preds == torch_preds).all()
    assert (int8_preds == torch_preds).mean() >= 0.8 and (int8_preds == 42).sum() > 0


def test_calibration_without_an_oos_label_is_refused_at_check(tmp_path):
    from recipes.errors import RecipeValidationError

    recipe = {
        "name": "cal",
        "description": "x",
        "dataset": {"id": "clinc_oos"},
        "models": {"base": "org/m"},
        "stages": [{"name": "calibrate", "type": "calibrate-oos", "input": "base"}],
    }
    with pytest.raises(RecipeValidationError, match="needs dataset.oos_label"):
        load_recipe(str(write_recipe(tmp_path, recipe, "cal.yaml")))


def test_calibration_passes_the_model_on_where_the_recipe_allows_no_oos_label(tmp_path):
    """``without_oos_label: pass`` (the catalog's setting): on a dataset with no out-of-scope
    label the stage is accepted and its output is the input, unchanged."""
    dataset = clinc_dataset(eval=20)
    model_dir = tiny_bert_with_labels(tmp_path / "bert", dataset)
    recipe = {
        "name": "cal",
        "description": "x",
        "dataset": dataset,
        "models": {"base": str(model_dir)},
        "stages": [{"name": "calibrate", "type": "calibrate-oos", "input": "base", "without_oos_label": "pass"}],
    }
    run = Runner(output_root=tmp_path / "out").run(load_recipe(str(write_recipe(tmp_path, recipe, "cal.yaml"))))
    out = run.out_dir / "calibrate"
    assert json.loads((out / ".stage.json").read_text())["metrics"]["oos_bias"] == 0.0
    texts = ["what is my balance", "play some jazz", "set an alarm"]
    assert np.allclose(load_classifier(out, 1).logits(texts), load_classifier(model_dir, 1).logits(texts))
