"""Bad recipes and bad overrides fail before any work, with one message naming the field."""

from __future__ import annotations

import copy

import pytest
import yaml

from recipes.errors import RecipeNotFoundError, RecipeValidationError
from recipes.loader import catalog, load_recipe

VALID = {
    "name": "demo",
    "description": "a valid recipe the cases below break one way each",
    "dataset": {"id": "clinc_oos", "config": "plus", "label_column": "intent"},
    "models": {"teacher": "org/teacher"},
    "stages": [
        {"name": "distill", "type": "distill", "input": "teacher", "keep_layers": [0, 2], "alpha": 0.5},
        {"name": "quantize", "type": "quantize-dynamic", "input": "distill"},
        {"name": "benchmark", "type": "benchmark", "models": ["teacher", "quantize"]},
    ],
}


def write(tmp_path, data, name="demo.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def broken(mutate):
    data = copy.deepcopy(VALID)
    mutate(data)
    return data


def test_valid_recipe_loads(tmp_path):
    loaded = load_recipe(str(write(tmp_path, VALID)))
    assert loaded.recipe.stage_names == ["distill", "quantize", "benchmark"]
    assert loaded.recipe.final_model == "quantize"


def test_catalog_recipes_are_valid():
    assert {"teacher", "kd", "kd-quant"} <= set(catalog())
    for name in catalog():
        load_recipe(name)


CASES = [
    ("misspelt stage field", lambda d: d["stages"][0].update(alhpa=0.3),
     ["unknown field 'alhpa'", "did you mean 'alpha'", "stages -> distill -> alhpa", "line "]),
    ("unknown stage type", lambda d: d["stages"][1].update(type="prune-magic"),
     ["unknown stage type 'prune-magic'", "Allowed types:", "distill", "quantize-dynamic"]),
    ("wrong type", lambda d: d["stages"][0].update(alpha="high"),
     ["stages -> distill -> alpha", "valid number"]),
    ("out of range", lambda d: d["stages"][0].update(alpha=1.5),
     ["stages -> distill -> alpha", "less than or equal to 1"]),
    ("reference to a missing stage", lambda d: d["stages"][1].update(input="distil"),
     ["stage 'quantize' input refers to 'distil'", "allowed: ['distill', 'teacher']"]),
    ("reference to a later stage", lambda d: d["stages"][0].update(input="quantize"),
     ["refers to 'quantize' (it runs later"]),
    ("duplicate stage names", lambda d: d["stages"][1].update(name="distill"),
     ["name 'distill' is already an earlier stage"]),
    ("missing required field", lambda d: d.pop("dataset"),
     ["required field is missing", "in dataset"]),
    ("unknown top-level field", lambda d: d.update(epochs=3),
     ["unknown field 'epochs'", "Allowed fields:", "stages"]),
    ("student given twice", lambda d: d["stages"][0].update(student="teacher"),
     ["set exactly one of `student`", "stages -> distill"]),
    ("benchmark baseline not measured", lambda d: d["stages"][2].update(baseline="distill"),
     ["baseline 'distill' is not one of models"]),
    ("stage without a type", lambda d: d["stages"][1].pop("type"),
     ["stage has no 'type'"]),
    ("bad stage name", lambda d: d["stages"][1].update(name="Quant ize"),
     ["stages -> Quant ize -> name", "should match pattern"]),
    ("unknown task", lambda d: d.update(task="translation"),
     ["task 'translation' is not supported"]),
    ("benchmark of a stage that makes no model", lambda d: d["stages"].append(
        {"name": "bench2", "type": "benchmark", "models": ["benchmark"]}),
     ["refers to 'benchmark', which makes no model"]),
]


@pytest.mark.parametrize("title, mutate, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_recipe_message(tmp_path, title, mutate, expected):
    path = write(tmp_path, broken(mutate))
    with pytest.raises(RecipeValidationError) as err:
        load_recipe(str(path))
    message = err.value.message
    assert message.startswith(str(path)), message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_error_points_at_the_offending_line(tmp_path):
    path = write(tmp_path, broken(lambda d: d["stages"][0].update(alhpa=0.3)))
    message = load_error(path)
    line_no = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if "alhpa" in line)
    assert f"line {line_no}," in message and "alhpa: 0.3" in message


def load_error(path, **kwargs) -> str:
    with pytest.raises(RecipeValidationError) as err:
        load_recipe(str(path), **kwargs)
    return err.value.message


def test_not_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    assert "not valid YAML" in load_error(path)


def test_unknown_recipe_name_suggests():
    with pytest.raises(RecipeNotFoundError, match="Did you mean 'kd-quant'"):
        load_recipe("kd-qaunt")


# --- overrides ---------------------------------------------------------------------------


def test_overrides_reach_stage_and_nested_fields(tmp_path):
    path = write(tmp_path, VALID)
    loaded = load_recipe(str(path), overrides=["distill.alpha=0.3", "distill.keep_layers=[1]",
                                               "dataset.max_samples.train=200", "models.teacher=org/other"])
    distill = loaded.recipe.stage("distill")
    assert (distill.alpha, distill.keep_layers) == (0.3, [1])
    assert loaded.recipe.dataset.max_samples.train == 200
    assert loaded.recipe.models["teacher"] == "org/other"
    assert loaded.overrides == ["distill.alpha=0.3", "distill.keep_layers=[1]",
                                "dataset.max_samples.train=200", "models.teacher=org/other"]


def test_override_of_a_field_absent_from_the_file_wins(tmp_path):
    loaded = load_recipe(str(write(tmp_path, VALID)), overrides=["distill.epochs=2"])
    assert loaded.recipe.stage("distill").epochs == 2


@pytest.mark.parametrize("item, expected", [
    ("distill.alpa=0.3", "stage 'distill' (distill) has no field 'alpa'. Did you mean 'alpha'?"),
    ("dataset.max_samples.tran=5", "'dataset.max_samples' has no field 'tran'. Did you mean 'train'?"),
    ("distil.alpha=0.3", "the recipe has no field 'distil'. Did you mean 'distill.<field>'?"),
    ("distill.alpha", "expected FIELD=VALUE"),
])
def test_override_naming_no_field_is_an_error(tmp_path, item, expected):
    assert expected in load_error(write(tmp_path, VALID), overrides=[item])


def test_override_value_is_validated(tmp_path):
    message = load_error(write(tmp_path, VALID), overrides=["distill.alpha=2"])
    assert "stages -> distill -> alpha" in message and "less than or equal to 1" in message


def test_override_of_an_upstream_recipe_stage_says_where_it_lives():
    with pytest.raises(RecipeValidationError) as err:
        load_recipe("kd-quant", overrides=["distill.alpha=0.3"])
    assert "has no field 'distill'" in err.value.message
    assert "to change a stage of kd, teacher, run that recipe with --set first" in err.value.message
