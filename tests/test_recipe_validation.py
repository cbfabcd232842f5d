"""Bad recipes and bad overrides fail before any work, with one message naming the field."""

from __future__ import annotations

import copy

import pytest

from recipes.errors import RecipeNotFoundError, RecipeValidationError
from recipes.plan.loader import catalog, load_recipe

from .tiny import clinc_dataset, write_recipe

VALID = {
    "name": "demo",
    "description": "a valid recipe the cases below break one way each",
    "dataset": clinc_dataset(id="clinc_oos"),
    "models": {"teacher": "org/teacher"},
    "stages": [
        {"name": "distill", "type": "distill", "input": "teacher", "keep_layers": [0, 2], "alpha": 0.5},
        {"name": "quantize", "type": "quantize-dynamic", "input": "distill"},
        {"name": "benchmark", "type": "benchmark", "models": ["teacher", "quantize"]},
    ],
}


def broken(mutate):
    data = copy.deepcopy(VALID)
    mutate(data)
    return data


def test_valid_recipe_loads(tmp_path):
    loaded = load_recipe(str(write_recipe(tmp_path, VALID)))
    assert loaded.recipe.stage_names == ["distill", "quantize", "benchmark"]
    assert loaded.recipe.final_model == "quantize"


def test_catalog_recipes_are_valid():
    assert {"teacher", "kd", "kd-quant"} <= set(catalog())
    for name in catalog():
        load_recipe(name)


CASES = [
    (
        "misspelt stage field",
        lambda d: d["stages"][0].update(alhpa=0.3),
        ["unknown field 'alhpa'", "did you mean 'alpha'", "stages -> distill -> alhpa", "line "],
    ),
    (
        "unknown stage type",
        lambda d: d["stages"][1].update(type="prune-magic"),
        ["unknown stage type 'prune-magic'", "Allowed types:", "distill", "quantize-dynamic"],
    ),
    ("wrong type", lambda d: d["stages"][0].update(alpha="high"), ["stages -> distill -> alpha", "must be a number"]),
    (
        "out of range",
        lambda d: d["stages"][0].update(alpha=1.5),
        ["stages -> distill -> alpha", "less than or equal to 1"],
    ),
    (
        "reference to a missing stage",
        lambda d: d["stages"][1].update(input="distil"),
        ["stage 'quantize' input refers to 'distil'", "allowed: ['distill', 'teacher']"],
    ),
    (
        "reference to a later stage",
        lambda d: d["stages"][0].update(input="quantize"),
        ["refers to 'quantize' (it runs later"],
    ),
    (
        "duplicate stage names",
        lambda d: d["stages"][1].update(name="distill"),
        ["name 'distill' is already an earlier stage"],
    ),
    ("missing required field", lambda d: d.pop("dataset"), ["required field is missing", "in dataset"]),
    ("unknown top-level field", lambda d: d.update(epochs=3), ["unknown field 'epochs'", "Allowed fields:", "stages"]),
    (
        "student given twice",
        lambda d: d["stages"][0].update(student="teacher"),
        ["set exactly one of `student`", "stages -> distill"],
    ),
    (
        "benchmark baseline not measured",
        lambda d: d["stages"][2].update(baseline="distill"),
        ["baseline 'distill' is not one of models"],
    ),
    ("stage without a type", lambda d: d["stages"][1].pop("type"), ["stage has no 'type'"]),
    (
        "bad stage name",
        lambda d: d["stages"][1].update(name="Quant ize"),
        ["stages -> Quant ize -> name", "should match pattern"],
    ),
    ("unknown task", lambda d: d.update(task="translation"), ["task 'translation' is not supported"]),
    (
        "benchmark of a stage that makes no model",
        lambda d: d["stages"].append({"name": "bench2", "type": "benchmark", "models": ["benchmark"]}),
        ["refers to 'benchmark', which makes no model"],
    ),
]


@pytest.mark.parametrize("title, mutate, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_recipe_message(tmp_path, title, mutate, expected):
    path = write_recipe(tmp_path, broken(mutate))
    with pytest.raises(RecipeValidationError) as err:
        load_recipe(str(path))
    message = err.value.message
    assert message.startswith(str(path)), message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_error_points_at_the_offending_line(tmp_path):
    path = write_recipe(tmp_path, broken(lambda d: d["stages"][0].update(alhpa=0.3)))
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
    path = write_recipe(tmp_path, VALID)
    loaded = load_recipe(
        str(path),
        overrides=[
            "distill.alpha=0.3",
            "distill.keep_layers=[1]",
            "dataset.max_samples.train=200",
            "models.teacher=org/other",
        ],
    )
    distill = loaded.recipe.stage("distill")
    assert (distill.alpha, distill.keep_layers) == (0.3, [1])
    assert loaded.recipe.dataset.max_samples.train == 200
    assert loaded.recipe.models["teacher"] == "org/other"
    assert loaded.overrides == [
        "distill.alpha=0.3",
        "distill.keep_layers=[1]",
        "dataset.max_samples.train=200",
        "models.teacher=org/other",
    ]


def test_override_of_a_field_absent_from_the_file_wins(tmp_path):
    loaded = load_recipe(str(write_recipe(tmp_path, VALID)), overrides=["distill.epochs=2"])
    assert loaded.recipe.stage("distill").epochs == 2


@pytest.mark.parametrize(
    "item, expected",
    [
        ("distill.alpa=0.3", "stage 'distill' (distill) has no field 'alpa'. Did you mean 'alpha'?"),
        ("dataset.max_samples.tran=5", "'dataset.max_samples' has no field 'tran'. Did you mean 'train'?"),
        ("distil.alpha=0.3", "the recipe has no field 'distil'. Did you mean 'distill.<field>'?"),
        ("distill.alpha", "expected FIELD=VALUE"),
    ],
)
def test_override_naming_no_field_is_an_error(tmp_path, item, expected):
    assert expected in load_error(write_recipe(tmp_path, VALID), overrides=[item])


def test_override_value_is_validated(tmp_path):
    message = load_error(write_recipe(tmp_path, VALID), overrides=["distill.alpha=2"])
    assert "stages -> distill -> alpha" in message and "less than or equal to 1" in message


def test_override_of_an_upstream_recipe_stage_says_where_it_lives():
    with pytest.raises(RecipeValidationError) as err:
        load_recipe("kd-quant", overrides=["distill.alpha=0.3"])
    assert "has no field 'distill'" in err.value.message
    assert "to change a stage of kd, teacher, run that recipe with --set first" in err.value.message


# --- files that are not recipes: one message each, never a traceback -----------------------


def kd_text(old: str = "", new: str = "") -> str:
    """The catalog's kd recipe, with ``old`` replaced by ``new`` (once, and it must be there)."""
    text = catalog()["kd"].read_text()
    assert old in text
    return text.replace(old, new, 1)


def write_bytes(tmp_path, data: bytes | str, name="recipe.yaml"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


BILLION_LAUGHS = (
    "\n".join(
        [f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
        + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    )
    + "\n"
)

BAD_FILES = [
    (
        "binary",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00>\x00",
        ["binary file", "NUL byte at offset 7"],
    ),
    (
        "not UTF-8",
        "name: kd\ndescription: caf\xe9 cr\xe8me\n".encode("latin-1"),
        ["not UTF-8", "byte 0xe9 at offset 25", "line 2"],
    ),
    ("5,000-deep sequence", "[" * 5000 + "]" * 5000, ["nested deeper than", "line 1"]),
    ("5,000-deep mapping", "name: " + "{a: " * 5000 + "1" + "}" * 5000, ["nested deeper than"]),
    ("empty", b"", ["the file is empty", "a recipe is a YAML mapping"]),
    ("only a comment", b"# nothing yet\n", ["the file is empty"]),
    ("a list", b"- name: kd\n- seed: 1\n", ["is a list", "a recipe is a YAML mapping"]),
    ("a scalar", b"kd\n", ["is a string", "a recipe is a YAML mapping"]),
    ("syntax error keeps the line", b"name: kd\nseed: [1, 2\n", ["not valid YAML", "line 3"]),
    ("billion laughs", BILLION_LAUGHS, ["aliases", "more than"]),
    ("recursive alias", b"name: &a [*a]\n", ["alias", "refers to the value that contains it"]),
    (
        "python tag",
        kd_text("alpha: 0.5", "alpha: !!python/object/apply:os.system [echo]"),
        ["tag '!!python/object/apply:os.system' at line 17 is not allowed", "plain values"],
    ),
    (
        "duplicate stage key",
        kd_text("alpha: 0.5", "alpha: 0.5\n    temperature: 1.0\n    alpha: 0.7"),
        ["duplicate key 'alpha' at line 19 (first at line 17)"],
    ),
    (
        "duplicate top-level key",
        kd_text("seed: 42", "seed: 42\nseed: 7"),
        ["duplicate key 'seed' at line 4 (first at line 3)"],
    ),
    (
        "duplicate key in a flow mapping",
        kd_text("{recipe: teacher,", "{recipe: teacher, recipe: x,"),
        ["duplicate key 'recipe' at line 11 (first at line 11)"],
    ),
    ("control character", b"name: kd\x07\n", ["not valid YAML", "line 1", "'\\x07'"]),
    ("over 1 MB", b"# padding\n" * 100_001, ["1000010 bytes is too large for a recipe"]),
]


@pytest.mark.parametrize("title, content, expected", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_unreadable_recipe_file_gets_one_message(tmp_path, title, content, expected):
    path = write_bytes(tmp_path, content)
    message = load_error(path)
    assert message.startswith(str(path)), message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_merge_keys_are_not_duplicates(tmp_path):
    merged = "  - &base {name: distill, type: distill}\n  - <<: *base\n    name: distill2\n"
    text = kd_text("  - name: distill\n", merged)
    with pytest.raises(RecipeValidationError) as err:  # invalid for other reasons (two distill stages)
        load_recipe(str(write_bytes(tmp_path, text)))
    assert "duplicate key" not in err.value.message


def test_directory_named_like_a_recipe(tmp_path):
    (tmp_path / "kd.yaml").mkdir()
    with pytest.raises(RecipeNotFoundError, match="is a directory"):
        load_recipe(str(tmp_path / "kd.yaml"))


def test_unreadable_file(tmp_path, monkeypatch):
    path = write_bytes(tmp_path, kd_text())

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "read_bytes", refuse)
    with pytest.raises(RecipeNotFoundError, match=f"{path}: cannot read the file: Permission denied"):
        load_recipe(str(path))


def test_over_long_recipe_name_or_path_is_not_found(tmp_path):
    for name in ("k" * 300, str(tmp_path / ("k" * 300 + ".yaml"))):
        with pytest.raises(RecipeNotFoundError):
            load_recipe(name)


# --- bounds: values that would only fail in the middle of a run ------------------------------

OUT_OF_BOUNDS = [
    ("seed too large", "seed: 42", "seed: 1000000000000000000", ["in seed", "less than or equal to 4294967295"]),
    ("seed a float", "seed: 42", "seed: 1.0e+18", ["in seed", "must be a whole number", "not the number 1e+18"]),
    ("seed 1e30", "seed: 42", "seed: 1.0e+30", ["in seed"]),
    ("negative seed", "seed: 42", "seed: -1", ["in seed", "greater than or equal to 0"]),
    ("empty dataset id", "id: clinc_oos", "id: ''", ["in dataset -> id", "must not be empty"]),
    ("blank dataset config", "config: plus", "config: '  '", ["in dataset -> config", "must not be empty"]),
    (
        "infinite learning rate",
        "learning_rate: 2.0e-4",
        "learning_rate: .inf",
        ["in stages -> distill -> learning_rate", "must be a finite number"],
    ),
    ("NaN alpha", "alpha: 0.5", "alpha: .nan", ["in stages -> distill -> alpha", "must be a finite number"]),
    ("learning rate above 1", "learning_rate: 2.0e-4", "learning_rate: 3", ["less than or equal to 1"]),
    ("epochs 1e40", "epochs: 5", "epochs: 1e40", ["in stages -> distill -> epochs", "less than or equal to 1000"]),
    ("temperature 1e9", "temperature: 2.0", "temperature: 1.0e+9", ["in stages -> distill -> temperature"]),
    ("negative layer", "keep_layers: [0, 2, 4]", "keep_layers: [-1]", ["keep_layers", "greater than or equal to 0"]),
    (
        "too many layers",
        "keep_layers: [0, 2, 4]",
        f"keep_layers: {list(range(129))}",
        ["keep_layers", "at most 128 items"],
    ),
    ("300-character recipe name", "name: kd", "name: " + "k" * 300, ["in name", "at most 64 characters"]),
    ("300-character stage name", "name: distill", "name: " + "d" * 300, ["name", "at most 64 characters"]),
    (
        "300-character upstream recipe",
        "{recipe: teacher,",
        "{recipe: " + "t" * 300 + ",",
        ["models -> teacher -> recipe", "at most 64 characters"],
    ),
    (
        "benchmark runs 1e12",
        "models: [teacher, teacher-calibrated, distill, calibrate]",
        "models: [teacher, teacher-calibrated, distill, calibrate]\n    runs: 1000000000000",
        ["in stages -> benchmark -> runs", "less than or equal to 100000"],
    ),
    (
        "zero threads",
        "models: [teacher, teacher-calibrated, distill, calibrate]",
        "models: [teacher, teacher-calibrated, distill, calibrate]\n    threads: 0",
        ["in stages -> benchmark -> threads"],
    ),
]


@pytest.mark.parametrize("title, old, new, expected", OUT_OF_BOUNDS, ids=[c[0] for c in OUT_OF_BOUNDS])
def test_out_of_bounds_value_is_refused(tmp_path, title, old, new, expected):
    message = load_error(write_bytes(tmp_path, kd_text(old, new)))
    assert ", line " in message, message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_opset_beyond_the_exporter_is_refused(tmp_path):
    text = catalog()["onnx-opt"].read_text().replace("atol: 1.0e-3", "opset: 999")
    message = load_error(write_bytes(tmp_path, text))
    assert "stages -> export -> opset" in message and "less than or equal to 20" in message


def test_max_opset_is_what_the_installed_exporter_writes():
    """optimum exports with torch's TorchScript exporter; ONNX itself knows newer opsets."""
    import onnx
    from torch.onnx import _constants

    from recipes.plan.bounds import MAX_OPSET

    assert MAX_OPSET == min(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET, onnx.defs.onnx_opset_version())


def test_bounded_fields_stay_searchable():
    from recipes.stages.search import SEARCHABLE

    assert {"alpha", "temperature", "learning_rate", "epochs", "batch_size", "max_length"} <= set(SEARCHABLE)


# --- malformed --set items -------------------------------------------------------------------

BAD_OVERRIDES = [
    ("dataset.max_samples.train=[1", ["--set dataset.max_samples.train=[1:", "not valid YAML", "Values are YAML"]),
    ("distill.alpha={a", ["--set distill.alpha={a:", "not valid YAML"]),
    ('dataset.id="x', ['--set dataset.id="x:', "not valid YAML"]),
    ("seed=\t1", ["not valid YAML"]),
    ("seed=1\n---\n2", ["not valid YAML"]),
    (
        "seed=!!python/object/apply:os.system [echo]",
        ["tag '!!python/object/apply:os.system' at line 1 is not allowed"],
    ),
    ("seed=*a", ["not valid YAML"]),
    ("distill.alpha=" + "[" * 5000, ["nested deeper than"]),
    ("distill..alpha=1", ["field path 'distill..alpha' has an empty part"]),
    ("=1", ["field path '' has an empty part"]),
    (".x=1", ["field path '.x' has an empty part"]),
    ("seed.x=1", ["'seed' holds a value, not fields", "--set seed=VALUE"]),
    ("models.teacher.recipe.x=1", ["'models.teacher.recipe' holds a value"]),
    ("distill.keep_layers.x=1", ["'distill.keep_layers' holds a value"]),
    ("stages.x=1", ["'stages' holds a value", "a stage's field is set as STAGE.FIELD"]),
    ("distill=1", ["a stage is set field by field", "distill.<field>=VALUE"]),
    ("distill.space.alpha=1", ["stage 'distill' (distill) has no field 'space'"]),
]


@pytest.mark.parametrize("item, expected", BAD_OVERRIDES, ids=[b[0][:40] for b in BAD_OVERRIDES])
def test_malformed_override_gets_one_message(tmp_path, item, expected):
    message = load_error(write_bytes(tmp_path, kd_text()), overrides=[item])
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_override_into_a_value_that_is_not_a_mapping(tmp_path):
    text = kd_text("  teacher: {recipe: teacher, stage: finetune}", "  teacher: org/teacher")
    message = load_error(write_bytes(tmp_path, text), overrides=["models.teacher.stage=x"])
    assert "'models.teacher' is 'org/teacher', not a mapping" in message


def test_override_of_a_stage_in_a_malformed_stage_list(tmp_path):
    text = kd_text("  - name: distill\n", "  - name: [distill]\n  - 7\n  - name: distill\n")
    with pytest.raises(RecipeValidationError):
        load_recipe(str(write_bytes(tmp_path, text)), overrides=["distill.alpha=0.3"])


def test_nested_override_inside_a_stage(tmp_path):
    loaded = load_recipe("kd-search", overrides=["search.space.alpha.high=0.8", "search.n_trials=2"])
    search = loaded.recipe.stage("search")
    assert (search.space["alpha"].high, search.n_trials) == (0.8, 2)


def test_override_whole_section_as_json(tmp_path):
    loaded = load_recipe(
        str(write_bytes(tmp_path, kd_text())), overrides=['dataset={"id": "./mine", "label_column": "intent"}']
    )
    assert (loaded.recipe.dataset.id, loaded.recipe.dataset.config) == ("./mine", None)


# --- values keep their type; texts, numbers, ids and languages within what runs accept ----------

COERCIONS = [
    ("true as epochs", "epochs: 5", "epochs: true", ["stages -> distill -> epochs", "must be a number", "not true"]),
    (
        "quoted alpha",
        "alpha: 0.5",
        "alpha: '0.5'",
        ["stages -> distill -> alpha", "not the text '0.5'; write it without quotes"],
    ),
    ("quoted batch size", "batch_size: 32", "batch_size: '32'", ["must be a whole number", "without quotes"]),
    ("float batch size", "batch_size: 32", "batch_size: 32.0", ["must be a whole number", "not the number 32.0"]),
    ("true as a layer", "keep_layers: [0, 2, 4]", "keep_layers: [0, true]", ["keep_layers -> 1", "not true"]),
    ("number as a config", "config: plus", "config: 1", ["dataset -> config", "must be text", "quote it"]),
    ("true as a model", "stage: finetune}", "stage: true}", ["models -> teacher -> stage", "must be text"]),
    (
        "quoted private",
        "model: calibrate",
        "model: calibrate\n  private: 'yes'",
        ["publish -> private", "true or false"],
    ),
    (
        "1 as private",
        "model: calibrate",
        "model: calibrate\n  private: 1",
        ["must be true or false, not the number 1"],
    ),
]


@pytest.mark.parametrize("title, old, new, expected", COERCIONS, ids=[c[0] for c in COERCIONS])
def test_values_are_not_converted(tmp_path, title, old, new, expected):
    message = load_error(write_bytes(tmp_path, kd_text(old, new)))
    assert ", line " in message, message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_a_whole_number_stands_for_a_float_and_exponents_read_as_numbers(tmp_path):
    text = kd_text("alpha: 0.5", "alpha: 0").replace("learning_rate: 2.0e-4", "learning_rate: 2e-4")
    distill = load_recipe(str(write_bytes(tmp_path, text))).recipe.stage("distill")
    assert (distill.alpha, distill.learning_rate) == (0.0, 2e-4) and isinstance(distill.alpha, float)


def test_ort_level_true_is_not_level_1(tmp_path):
    text = catalog()["onnx-opt"].read_text().replace("level: 2 ", "level: true ")
    assert "must be a number, not true/false" in load_error(write_bytes(tmp_path, text))


HUGE = "9" * 5000


def test_5000_digit_seed_is_one_message(tmp_path):
    import recipes

    in_file = load_error(write_bytes(tmp_path, kd_text("seed: 42", f"seed: {HUGE}")))
    assert "'seed' at line 3 has 5000 digits; a recipe's whole numbers have at most 100" in in_file
    in_set = load_error(write_bytes(tmp_path, kd_text()), overrides=[f"seed={HUGE}"])
    assert "a number at line 1 has 5000 digits" in in_set and len(in_set) < 600, in_set
    with pytest.raises(RecipeValidationError, match="overrides\\['seed'\\]: this int cannot be a recipe value"):
        recipes.load("kd", {"seed": 10**5000})


TEXTS = [
    (
        "empty description",
        "description: Distil",
        "description: ''\nx: Distil",
        ["in description", "must not be empty"],
    ),
    ("blank description", "description: Distil", "description: '  '\nx: Distil", ["must not be empty"]),
    ("long description", "description: Distil", "description: " + "d" * 2001 + "\nx: Distil", ["at most 2000"]),
    ("long split name", "config: plus", "config: plus\n  splits: {train: " + "s" * 257 + "}", ["at most 256"]),
    ("long dataset id", "id: clinc_oos", "id: " + "d" * 1025, ["in dataset -> id", "at most 1024 characters"]),
    ("long label", "oos_label: oos", "oos_label: " + "o" * 300, ["in dataset -> oos_label", "at most 256"]),
]


@pytest.mark.parametrize("title, old, new, expected", TEXTS, ids=[c[0] for c in TEXTS])
def test_texts_are_bounded_and_not_blank(tmp_path, title, old, new, expected):
    text = kd_text(old, new)
    text = text.replace("\nx: Distil", "\n#")  # the rest of the replaced line becomes a comment
    message = load_error(write_bytes(tmp_path, text))
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_prune_vocab_language_is_one_wordfreq_has(tmp_path):
    text = catalog()["prune-onnx-quant"].read_text().replace("top_words: 20000", "top_words: 20000\n    language: EN")
    message = load_error(write_bytes(tmp_path, text))
    assert "language 'EN' has no wordfreq word list (did you mean 'en'?)" in message and "de, el, en, es" in message
    assert "stages -> trim -> language" in message
    for language in ("xx", "english"):
        assert "allowed: ar, bg" in load_error(write_bytes(tmp_path, text.replace("EN", language)))
    assert load_recipe(str(write_bytes(tmp_path, text.replace("EN", "de")))).recipe.stage("trim").language == "de"


@pytest.mark.parametrize(
    "repo_id",
    [
        "bad id",
        "org/name.",
        "org/name-",
        "org/.name",
        "a/b/c",
        "org--x/name",
        "org/name.git",
        "org/é",
        "o" * 97 + "/x",
    ],
)
def test_publish_repo_id_is_checked_by_the_hub_rules(tmp_path, repo_id):
    message = load_error(
        write_bytes(tmp_path, kd_text("model: calibrate", f"model: calibrate\n  repo_id: '{repo_id}'"))
    )
    assert f"{repo_id!r} is not a Hub repo id" in message and "each part 1-96 ASCII letters" in message
    assert "in publish -> repo_id" in message


def test_valid_repo_ids_load(tmp_path):
    for repo_id in ("name", "my-org/kd_quant.v2", "o" * 96 + "/" + "n" * 96):
        text = kd_text("model: calibrate", f"model: calibrate\n  repo_id: {repo_id}")
        assert load_recipe(str(write_bytes(tmp_path, text))).recipe.publish.repo_id == repo_id


@pytest.mark.parametrize(
    "items, expected",
    [
        (["dataset.id=" + "d" * 300, "models.base={minilm}"], "is neither a folder"),
        (["dataset.id=/" + "d" * 300, "models.base={minilm}"], "is neither a folder"),
        (["dataset.id={clinc}", "models.teacher=" + "m" * 300], "is neither a model folder"),
        (["dataset.id={clinc}", "models.base=" + "m" * 300], "is neither a model folder"),
    ],
    ids=["dataset id", "dataset path", "teacher id", "base id"],
)
def test_over_long_ids_are_one_message_not_an_os_error(tmp_path, capsys, items, expected):
    from recipes.__main__ import main

    from .tiny import CLINC_DIR, minilm_dir

    sets = [a for item in items for a in ("--set", item.format(minilm=minilm_dir(), clinc=CLINC_DIR))]
    assert main(["check", str(write_bytes(tmp_path, kd_text())), *sets]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err, err


def test_list_shows_a_recipe_without_a_description_as_invalid(tmp_path, monkeypatch, capsys):
    import recipes.plan.loader
    from recipes.__main__ import main

    write_bytes(tmp_path, kd_text("description: Distil", "description: '  '\n#"), name="kd.yaml")
    monkeypatch.setattr(recipes.plan.loader, "CATALOG_DIR", tmp_path)
    assert main(["list"]) == 0
    assert capsys.readouterr().out == f"{'kd':<16} (invalid: run `python -m recipes check kd`)\n"
