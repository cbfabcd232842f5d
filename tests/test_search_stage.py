"""``search-distill`` on a tiny BERT and 150 CLINC rows: 3 Optuna trials, the best one kept."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml

from recipes import distillation
from recipes.data import RecipeData
from recipes.errors import RecipeValidationError
from recipes.loader import load_recipe
from recipes.modelio import load_classifier
from recipes.runner import Runner

from .tiny import tiny_bert

ROWS = 150
SPACE = {
    "alpha": {"low": 0.0, "high": 1.0},
    "temperature": {"low": 1.0, "high": 10.0},
    "learning_rate": {"low": 3.0e-3, "high": 3.0e-2, "log": True},
}


def recipe(dataset_id: str) -> dict:
    return {
        "name": "search-demo",
        "description": "three trials of a 1-layer student cut from a 2-layer tiny BERT",
        "dataset": {
            "id": dataset_id,
            "config": "plus",
            "label_column": "intent",
            # Eval on the training rows: a tiny model can fit 150 rows of 151 intents, not generalise.
            "splits": {"train": "train", "eval": "train", "test": "test"},
            "max_samples": {"train": ROWS, "eval": ROWS, "test": 50},
        },
        "models": {"teacher": "./teacher"},
        "stages": [
            {
                "name": "search",
                "type": "search-distill",
                "input": "teacher",
                "keep_layers": [1],
                "epochs": 2,
                "batch_size": 16,
                "n_trials": 3,
                "space": copy.deepcopy(SPACE),
            },
        ],
    }


def write(folder, data) -> str:
    path = folder / "search-demo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def searched(clinc_dir, tmp_path_factory):
    """One run of the recipe, counting how often the teacher's logits were computed."""
    root = tmp_path_factory.mktemp("search")
    tiny_bert(root / "teacher", layers=2)
    path = write(root, recipe(str(clinc_dir)))
    calls = []
    real = distillation.teacher_logits
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distillation, "teacher_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
        run = Runner(output_root=root / "out").run(load_recipe(path))
    stage_dir = run.out_dir / "search"
    record = json.loads((stage_dir / ".stage.json").read_text())
    return root, path, stage_dir, record["metrics"], len(calls)


def test_best_trial_is_the_best_of_all_trials(searched):
    *_, metrics, _ = searched
    values = [t["value"] for t in metrics["trials"]]
    assert [t["number"] for t in metrics["trials"]] == [0, 1, 2]
    assert metrics["best_trial"]["value"] == max(values) == metrics["eval_accuracy"]
    best = metrics["trials"][metrics["best_trial"]["number"]]
    assert best == metrics["best_trial"]


def test_params_lie_within_the_space(searched):
    *_, metrics, _ = searched
    for trial in metrics["trials"]:
        assert set(trial["params"]) == set(SPACE)
        for name, value in trial["params"].items():
            assert SPACE[name]["low"] <= value <= SPACE[name]["high"], (name, value)
    assert len({json.dumps(t["params"], sort_keys=True) for t in metrics["trials"]}) == 3


def test_output_is_the_best_student_alone(searched):
    root, path, stage_dir, metrics, _ = searched
    assert not (stage_dir / "_trials").exists()
    assert (stage_dir / "model.safetensors").is_file()
    classifier = load_classifier(stage_dir, 1)
    assert classifier.model.config.num_hidden_layers == 1
    # Its accuracy on the eval rows is the value the search recorded for it.
    loaded = load_recipe(path)
    rows = RecipeData(loaded.recipe.dataset, loaded.recipe.seed, loaded.base_dir).split("eval")
    predicted = classifier.logits(list(rows["text"])).argmax(-1)
    accuracy = float(np.mean(predicted == np.array(rows["label"])))
    assert accuracy == pytest.approx(metrics["best_trial"]["value"])


def test_trials_share_the_teacher_logits(searched):
    *_, teacher_logit_calls = searched
    assert teacher_logit_calls == 1


def test_second_run_is_cached(searched):
    root, path, *_ = searched
    runner = Runner(output_root=root / "out")
    run = runner.run(load_recipe(path))
    assert [s.status for s in run.stages] == ["cached"]


BAD_SPACES = [
    (
        "unknown parameter",
        lambda s: s["space"].update(dropout={"low": 0.0, "high": 0.5}),
        [
            "'dropout' cannot be searched",
            "searchable (numeric distill fields): alpha, attention_weight, batch_size",
            "stages -> search -> space -> dropout",
        ],
    ),
    (
        "non-numeric field",
        lambda s: s["space"].update(keep_layers={"choices": [1]}),
        ["'keep_layers' cannot be searched"],
    ),
    (
        "low not below high",
        lambda s: s["space"].update(temperature={"low": 5.0, "high": 1.0}),
        ["low (5) must be less than high (1)", "stages -> search -> space -> temperature"],
    ),
    ("fixed and searched", lambda s: s.update(alpha=0.3), ["'alpha' both fixed and searched", "stages -> search"]),
    (
        "outside the field's limits",
        lambda s: s["space"].update(alpha={"low": 0.0, "high": 1.5}),
        ["space -> alpha -> high: 1.5 is not a valid alpha", "less than or equal to 1"],
    ),
    (
        "log range from zero",
        lambda s: s["space"].update(learning_rate={"low": 0.0, "high": 0.1, "log": True}),
        ["a log range needs low > 0"],
    ),
    (
        "range and choices",
        lambda s: s["space"].update(epochs={"low": 1, "choices": [1, 2]}),
        ["give either `low` and `high`", "or `choices: [...]`"],
    ),
]


@pytest.mark.parametrize("title, mutate, expected", BAD_SPACES, ids=[c[0] for c in BAD_SPACES])
def test_bad_space_is_refused(tmp_path, title, mutate, expected):
    data = recipe("clinc_oos")
    mutate(data["stages"][0])
    path = write(tmp_path, data)
    with pytest.raises(RecipeValidationError) as err:
        load_recipe(path)
    message = err.value.message
    assert message.startswith(path), message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
