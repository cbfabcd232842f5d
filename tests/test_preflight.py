"""``recipes check``, ``recipes.load`` and ``run`` hold a plan against its data and models before
anything runs: from the dataset's description (never its rows) and the models' config.json, each
mistake that would stop a run midway is one message naming the field and what is allowed."""

from __future__ import annotations

import json
import socket

import pytest

import recipes
from recipes.__main__ import main
from recipes.errors import DatasetError, ModelSourceError, RecipeValidationError
from recipes.plan.loader import catalog
from recipes.plan.planning import make_plan
from recipes.plan.preflight import check_plan

from .tiny import CLINC_DIR, clinc_dataset, minilm_dir, write_recipe

#: The catalog offline: the repository's CLINC150 copy and the packaged MiniLM (6 layers).
LOCAL = [f"dataset.id={CLINC_DIR}", f"models.base={minilm_dir()}"]


@pytest.fixture
def no_rows(monkeypatch):
    """Reading a dataset's rows fails the test: the checks read its description only."""
    import datasets

    def refuse(*args, **kwargs):
        raise AssertionError("the check loaded the dataset's rows")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


def config_folder(folder, layers: int, labels: list[str] | None = None):
    """A model folder that holds only a BERT config.json, what the checks read; a classifier of
    ``labels`` (default: 151 unnamed ones, as many as CLINC150 has)."""
    folder.mkdir(parents=True)
    labels = labels or [f"LABEL_{i}" for i in range(151)]
    config = {"model_type": "bert", "num_hidden_layers": layers, "id2label": dict(enumerate(labels))}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def refusal(error: type[Exception], name: str, overrides: list[str]) -> str:
    with pytest.raises(error) as err:
        check_plan(make_plan(name, overrides))
    return err.value.message


def test_every_catalog_plan_passes_without_reading_rows(no_rows):
    for name in catalog():
        check_plan(make_plan(name, LOCAL))


def test_the_ablation_recipes_pass_too(no_rows):
    from .tiny import REPO_ROOT

    ablations = sorted((REPO_ROOT / "docs" / "ablations").glob("*.yaml"))
    assert ablations  # docs/results.md runs them
    for path in ablations:
        check_plan(make_plan(str(path), LOCAL))


DATA_MISTAKES = [
    ("unknown config", ["dataset.config=nope"], ["dataset.config is 'nope'", "configs: plus, small, imbalanced"]),
    ("no config", ["dataset.config=null"], ["dataset.config is not set", "configs: plus, small, imbalanced"]),
    ("split role", ["dataset.splits.eval=dev"], ["dataset.splits.eval is 'dev'", "'train', 'validation', 'test'"]),
    ("text column", ["dataset.text_column=utterance"], ["dataset.text_column is 'utterance'", "'text', 'intent'"]),
    ("label column", ["dataset.label_column=label"], ["dataset.label_column is 'label'", "'text', 'intent'"]),
    (
        "label column of text",
        ["dataset.label_column=text"],
        ["label_column 'text' holds values of type string", "not a ClassLabel"],
    ),
    (
        "text column of labels",
        ["dataset.text_column=intent"],
        ["text_column 'intent' holds a ClassLabel of 151 labels", "not text"],
    ),
    (
        "oos label",
        ["dataset.oos_label=OOS"],
        ["dataset.oos_label is 'OOS'", "not a label of column 'intent'", "'restaurant_reviews'", "oos_label=null"],
    ),
    ("no such folder", [f"dataset.id={CLINC_DIR}-nope"], ["-nope' is neither a folder", "nor a Hub dataset id"]),
    ("300-character id", ["dataset.id=" + "d" * 300], ["is neither a folder", "each part 1-96"]),
]


@pytest.mark.parametrize("title, overrides, expected", DATA_MISTAKES, ids=[c[0] for c in DATA_MISTAKES])
def test_data_mistake_is_refused_from_the_description(no_rows, title, overrides, expected):
    message = refusal(DatasetError, "kd", LOCAL + overrides)
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def layers_recipe(folder, stages: list[dict], models: dict, dataset: dict | None = None):
    recipe = {
        "name": "layers",
        "description": "Layer indexes against the depth of the models they index.",
        "dataset": dataset or clinc_dataset(),
        "models": models,
        "stages": stages,
    }
    return str(write_recipe(folder, recipe, "layers.yaml"))


def test_keep_layers_past_a_teacher_fine_tuned_from_a_shallower_base(tmp_path):
    """kd's teacher is the teacher recipe's fine-tuned models.base: its depth is the base's."""
    base = config_folder(tmp_path / "base", layers=2)
    message = refusal(RecipeValidationError, "kd", [f"dataset.id={CLINC_DIR}", f"models.base={base}"])
    assert message.startswith(str(catalog()["kd"])), message
    assert "stage 'distill' keep_layers [0, 2, 4] names layers 2, 4" in message
    assert "its teacher 'teacher' has 2 layers (allowed: 0-1)" in message
    assert f"models -> base '{base}' (teacher): 2" in message


def test_depth_passes_through_stages_that_keep_the_architecture(tmp_path):
    base = str(config_folder(tmp_path / "base", layers=6))
    stages = [
        {"name": "finetune", "type": "finetune", "input": "base"},
        {"name": "calibrate", "type": "calibrate-oos", "input": "finetune", "without_oos_label": "pass"},
        {"name": "distill", "type": "distill", "input": "calibrate", "keep_layers": [0, 2, 6]},
        {"name": "again", "type": "distill", "input": "distill", "keep_layers": [0, 3]},
    ]
    message = refusal(RecipeValidationError, layers_recipe(tmp_path, stages, {"base": base}), [])
    assert "stage 'distill' keep_layers [0, 2, 6] names layer 6, but its teacher 'calibrate' has 6 layers" in message
    assert "stage 'again' keep_layers [0, 3] names layer 3, but its teacher 'distill' has 3 layers" in message
    stages[2]["keep_layers"], stages[3]["keep_layers"] = [0, 2, 5], [0, 2]
    check_plan(make_plan(layers_recipe(tmp_path, stages, {"base": base})))


LAYER_MISTAKES = [
    (
        {"type": "distill", "keep_layers": [0, 2], "layer_map": [0, 9], "hidden_weight": 1.0},
        "layer_map [0, 9] names layer 9, but its teacher 'teacher' has 6 layers (allowed: 0-5)",
    ),
    (
        {"type": "distill", "student": "student", "layer_map": [0, 2, 4], "hidden_weight": 1.0},
        "layer_map has 3 entries, but its student 'student' has 2 layers",
    ),
    (
        {"type": "search-distill", "n_trials": 2, "space": {"keep_layers": {"choices": [[0, 2, 4], [0, 6]]}}},
        "space -> keep_layers -> choices[1] [0, 6] names layer 6, but its teacher 'teacher' has 6 layers",
    ),
]


@pytest.mark.parametrize("stage, expected", LAYER_MISTAKES, ids=["layer_map", "student depth", "searched layers"])
def test_layer_mistakes_of_distillation_stages(tmp_path, stage, expected):
    models = {"teacher": str(config_folder(tmp_path / "teacher", 6)), "student": str(config_folder(tmp_path / "s", 2))}
    path = layers_recipe(tmp_path, [{"name": "s", "input": "teacher", **stage}], models)
    message = refusal(RecipeValidationError, path, [])
    assert expected in message, message


def test_given_classifier_of_other_labels_is_refused_at_check(tmp_path, no_rows):
    teacher = config_folder(tmp_path / "teacher", layers=6, labels=["billing", "weather", "music"])
    message = refusal(ModelSourceError, "kd", [f"dataset.id={CLINC_DIR}", f"models.teacher={teacher}"])
    assert "models -> teacher" in message and "it predicts 3 labels, the dataset has 151" in message


@pytest.mark.parametrize(
    "model, expected",
    [("/nonexistent/model", "is not a model folder"), ("m" * 300, "is neither a model folder")],
    ids=["missing folder", "300-character id"],
)
def test_missing_model_is_refused_at_check(model, expected):
    message = refusal(ModelSourceError, "teacher", [f"dataset.id={CLINC_DIR}", f"models.base={model}"])
    assert "models -> base" in message and expected in message, message


def test_parquet_folder_without_a_card_is_read_from_its_schema(tmp_path, no_rows):
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"utterance": Value("string"), "topic": ClassLabel(names=["a", "b"])})
    data = tmp_path / "topics"
    data.mkdir()
    for split in ("train", "validation", "test"):
        Dataset.from_dict({"utterance": ["x", "y"], "topic": [0, 1]}, features=features).to_parquet(
            data / f"{split}.parquet"
        )
    dataset = {"id": str(data), "text_column": "utterance", "label_column": "topic"}
    stages = [{"name": "finetune", "type": "finetune", "input": "base"}]
    path = layers_recipe(tmp_path, stages, {"base": str(config_folder(tmp_path / "base", 2))}, dataset)
    check_plan(make_plan(path))
    message = refusal(DatasetError, path, ["dataset.label_column=utterance", "dataset.oos_label=oos"])
    assert "label_column 'utterance' holds values of type string" in message and "not a ClassLabel" in message


def test_hub_dataset_and_model_are_read_from_their_descriptions(seeded_hub, no_rows):
    check_plan(make_plan("kd"))
    message = refusal(RecipeValidationError, "kd", ["distill.keep_layers=[0, 6]"])
    assert "names layer 6, but its teacher 'teacher' has 6 layers" in message
    assert "models -> base 'sentence-transformers/all-MiniLM-L6-v2' (teacher): 6" in message
    assert "configs: plus, small, imbalanced" in refusal(DatasetError, "kd", ["dataset.config=nope"])


def test_unreachable_hub_is_one_message_at_once(monkeypatch):
    from huggingface_hub import constants

    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    message = refusal(DatasetError, "kd", [])
    assert f"http://127.0.0.1:{port} cannot be reached" in message
    assert "dataset.id 'clinc_oos'" in message and "'sentence-transformers/all-MiniLM-L6-v2'" in message


def test_check_command_refuses_what_run_would(capsys):
    argv = ["check", "kd", *(a for item in LOCAL for a in ("--set", item)), "--set", "dataset.oos_label=OOS"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "dataset.oos_label is 'OOS'" in err


def test_load_and_run_refuse_before_the_first_stage(tmp_path):
    overrides = {"dataset.id": str(CLINC_DIR), "models.base": str(minilm_dir()), "dataset.splits.test": "tst"}
    with pytest.raises(DatasetError, match="dataset.splits.test is 'tst'"):
        recipes.load("kd", overrides)
    with pytest.raises(DatasetError, match="dataset.splits.test is 'tst'"):
        recipes.run("kd", overrides, output_dir=tmp_path)
    assert not list(tmp_path.rglob(".stage.json")), "a stage ran before the plan was checked"
