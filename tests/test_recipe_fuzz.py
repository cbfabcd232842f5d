"""Property-based fuzzing of recipe files and ``--set`` items: a valid recipe or one clear message.

Every input either loads, or raises a :class:`RecipeError` with a message; any other exception
(a traceback for the user) fails the test. Inputs known to be wrong (a duplicate key, nesting
past the limit) must not load, and no recipe that loads may hold a value that would only fail
mid-run (checked by :func:`assert_sane`, apart from the schema).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recipes.__main__ import main
from recipes.errors import RecipeError
from recipes.plan.loader import MAX_DEPTH, catalog, load_recipe
from recipes.plan.schema import DatasetSpec, PublishSpec, Recipe, SampleLimits, SplitNames
from recipes.stages import STAGE_TYPES

from .tiny import CLINC_DIR, minilm_dir, write_recipe

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CATALOG = catalog()
RECIPE_NAMES = st.sampled_from(sorted(CATALOG))


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    """One file the examples overwrite in turn."""
    return tmp_path_factory.mktemp("fuzz") / "recipe.yaml"


def outcome(path: Path, overrides: list[str] = ()):
    """The loaded recipe, or the RecipeError; any other exception propagates and fails the test."""
    try:
        loaded = load_recipe(str(path), overrides=list(overrides))
    except RecipeError as err:
        assert err.message.strip() and "Traceback" not in err.message
        return err
    assert_sane(loaded.recipe)
    return loaded


def assert_sane(recipe: Recipe) -> None:
    """What no accepted recipe may hold, however it was written."""
    assert 0 <= recipe.seed < 2**32
    for name in [recipe.name, *recipe.stage_names]:
        assert len(name) <= 64, name

    def walk(value, where: str) -> None:
        if isinstance(value, float):
            assert math.isfinite(value), where
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for item in value:
                walk(item, where)

    walk(recipe.model_dump(), "recipe")


# --- (1) random bytes and text ----------------------------------------------------------------

YAMLISH = st.text(alphabet=st.sampled_from(list("ab:-[]{},&*!|>'\"#%@`?\n \t09.e+~\\")), max_size=200)


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode), YAMLISH.map(str.encode)))
def test_random_bytes_are_a_recipe_or_one_message(recipe_file, data):
    recipe_file.write_bytes(data)
    outcome(recipe_file)


# --- (2) mutations of each catalog recipe -----------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["", "  ", "1e40", "-1", "0", "x" * 300, "2024-01-01", "=", "<<", "null"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def locations(data, found=None) -> list[tuple]:
    """Every (container, key) in ``data``: where a mutation can delete or replace a value."""
    found = [] if found is None else found
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in items:
        found.append((data, key))
        locations(value, found)
    return found


@st.composite
def mutated_data(draw) -> str:
    """A catalog recipe with a value deleted, replaced, or a key inserted, as YAML text."""
    data = yaml.safe_load(CATALOG[draw(RECIPE_NAMES)].read_text())
    for _ in range(draw(st.integers(1, 3))):
        container, key = draw(st.sampled_from(locations(data)))
        action = draw(st.sampled_from(["delete", "replace", "insert"]))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = draw(VALUES)
        elif isinstance(container, dict):
            container[draw(st.text(max_size=12))] = draw(VALUES)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()))


@FUZZ
@given(text=mutated_data())
def test_mutated_recipe_is_valid_or_one_message(recipe_file, text):
    recipe_file.write_text(text)
    outcome(recipe_file)


KEY_LINE = re.compile(r"^\s*[a-z_]+:")


@FUZZ
@given(name=RECIPE_NAMES, data=st.data())
def test_duplicated_key_is_refused(recipe_file, name, data):
    lines = CATALOG[name].read_text().splitlines()
    index = data.draw(st.sampled_from([i for i, line in enumerate(lines) if KEY_LINE.match(line)]))
    lines.insert(index + 1, lines[index])
    recipe_file.write_text("\n".join(lines) + "\n")
    result = outcome(recipe_file)
    assert isinstance(result, RecipeError) and "duplicate key" in result.message


@FUZZ
@given(name=RECIPE_NAMES, depth=st.integers(1, 80) | st.integers(80, 6000), data=st.data())
def test_deep_nesting_is_bounded(recipe_file, name, depth, data):
    lines = CATALOG[name].read_text().splitlines()
    index = data.draw(st.sampled_from([i for i, line in enumerate(lines) if re.match(r"^\s*[a-z_]+: \S", line)]))
    lines[index] = lines[index].split(":")[0] + ": " + "[" * depth + "1" + "]" * depth
    recipe_file.write_text("\n".join(lines) + "\n")
    result = outcome(recipe_file)
    if depth >= MAX_DEPTH:
        assert isinstance(result, RecipeError) and "nested deeper than" in result.message


# --- (3) random --set items -------------------------------------------------------------------


def field_paths(name: str) -> list[str]:
    """The real field paths of a catalog recipe, as ``--set`` names them."""
    raw = yaml.safe_load(CATALOG[name].read_text())
    paths = list(Recipe.model_fields)
    paths += [f"dataset.{f}" for f in DatasetSpec.model_fields]
    paths += [f"dataset.splits.{f}" for f in SplitNames.model_fields]
    paths += [f"dataset.max_samples.{f}" for f in SampleLimits.model_fields]
    paths += [f"publish.{f}" for f in PublishSpec.model_fields]
    paths += [f"models.{key}{suffix}" for key in raw["models"] for suffix in ("", ".recipe", ".stage")]
    for stage in raw["stages"]:
        paths += [f"{stage['name']}.{f}" for f in STAGE_TYPES[stage["type"]].spec.model_fields]
    return paths


JUNK_VALUES = [
    "[1",
    "{a",
    '"x',
    "\t1",
    "!!python/object:os.system x",
    "!foo 1",
    "*a",
    "&a 1",
    "1\n---\n2",
    "[" * 100,
    ".inf",
    ".nan",
    "1e40",
    "-1",
    "",
    "x" * 300,
    "a: b: c",
    "{a: 1, a: 2}",
]
VALUE_TEXTS = st.one_of(
    st.sampled_from(JUNK_VALUES),
    st.text(max_size=30),
    VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
)


@st.composite
def override_items(draw, name: str) -> str:
    real = st.sampled_from(field_paths(name))
    key = draw(st.one_of(real, real.map(lambda p: p + ".x"), st.text(max_size=20)))
    if draw(st.integers(0, 20)) == 0:
        return key  # no "=" at all
    return f"{key}={draw(VALUE_TEXTS)}"


@FUZZ
@given(name=RECIPE_NAMES, data=st.data())
def test_random_overrides_are_valid_or_one_message(name, data):
    items = data.draw(st.lists(override_items(name), min_size=1, max_size=3))
    outcome(CATALOG[name], items)


# --- the CLI: exit code 2 and a short message, no traceback -----------------------------------

CLI_CASES = [
    ("binary", b"\x00\x01\xff" * 20, []),
    ("not UTF-8", b"name: caf\xe9\n", []),
    ("deep", b"[" * 5000 + b"]" * 5000, []),
    ("duplicate key", CATALOG["kd"].read_bytes().replace(b"seed: 42", b"seed: 42\nseed: 7"), []),
    ("infinite float", CATALOG["kd"].read_bytes().replace(b"learning_rate: 2.0e-4", b"learning_rate: .inf"), []),
    ("long name", CATALOG["kd"].read_bytes().replace(b"name: kd", b"name: " + b"k" * 300), []),
    ("malformed --set", CATALOG["kd"].read_bytes(), ["--set", "dataset.max_samples.train=[1"]),
    ("empty --set part", CATALOG["kd"].read_bytes(), ["--set", "a..b=1"]),
]


@pytest.mark.parametrize("title, content, extra", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_check_cli_prints_one_message(tmp_path, capsys, title, content, extra):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(content)
    assert main(["check", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3, err


# --- (4) mutations that only a run used to find: types, sizes, data, layers, ids -----------------------
#
# The catalog offline (the repository's CLINC150 copy, the packaged MiniLM as models.base), each
# recipe mutated once, then `recipes check`. It never raises anything but a RecipeError; it refuses
# exactly what the checks a run makes before its first stage refuse (recipes.plan.preflight); and what it
# accepts holds each mutated value with the type the file gave it.

PREFLIGHT_FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HUGE = "__HUGE_INT__"  # a 5000-digit number, put into the YAML text (Python will not print one)


def offline(name: str) -> dict:
    """Catalog recipe ``name`` on the repository's CLINC150 copy and the packaged MiniLM."""
    data = yaml.safe_load(CATALOG[name].read_text())
    data["dataset"]["id"] = str(CLINC_DIR)
    if "base" in data["models"]:
        data["models"]["base"] = str(minilm_dir())
    return data


@pytest.fixture(scope="module")
def offline_catalog(tmp_path_factory) -> Path:
    """The offline catalog in one folder, where a mutant's dependencies are found."""
    folder = tmp_path_factory.mktemp("offline-catalog")
    for name in CATALOG:
        write_recipe(folder, offline(name), f"{name}.yaml")
    return folder


def other_types(value) -> list:
    """Values of another YAML type than ``value``, as a slip in a recipe gives them."""
    if isinstance(value, bool):
        return ["yes", "true", 1, 0]
    if isinstance(value, (int, float)):
        return [True, False, str(value), "abc", None] + ([HUGE, 2**40] if isinstance(value, int) else [])
    return [1, 0.5, True, "", "  ", "x" * 300, "x" * 3000]


#: Mutations that pass the old schema but stop a run: (path, values); a path that a recipe lacks is skipped.
RUN_MUTATIONS = [
    (("dataset", "config"), ["nope", None, "small"]),
    (("dataset", "splits"), [{"train": "nope"}, {"eval": "dev"}, {"test": "validation"}]),
    (("dataset", "text_column"), ["nope", "intent", "label"]),
    (("dataset", "label_column"), ["nope", "text", "label"]),
    (("dataset", "oos_label"), ["nope", "OOS", "oos", None]),
    (("dataset", "id"), ["/nonexistent/data", "d" * 300, "/" + "d" * 300]),
    (("description",), ["", "  ", "\n", "d" * 3000]),
    (("seed",), [HUGE, 2**40, True, "42"]),
    (("publish", "repo_id"), ["org/name", "bad id", "org/name.", "org/name-", "a/b/c", "org/é", "o" * 97 + "/x"]),
    (("publish", "private"), ["yes", 1, True]),
]
#: Per stage type: field -> values (indexes past MiniLM's 6 layers; languages wordfreq has or not).
STAGE_MUTATIONS = {
    "distill": {"keep_layers": [[0, 2, 6], [7], [0, 5], [5, 127]], "layer_map": [[0, 2, 9], [0, 2, 5]]},
    "search-distill": {"keep_layers": [[0, 2, 6], [0, 5]]},
    "prune-vocab": {"language": ["xx", "EN", "en-US", "de", "english"]},
}


def _at(data, path):
    for part in path:
        data = data[part]
    return data


@st.composite
def run_mutant(draw) -> tuple[str, dict, tuple, object]:
    """(recipe name, mutated data, the path changed, the value put there)."""
    name = draw(RECIPE_NAMES)
    data = offline(name)
    kind = draw(st.sampled_from(["type", "run", "stage"]))
    if kind == "type":
        leaves = [(c, k) for c, k in locations(data) if not isinstance(c[k], (dict, list)) and k != "type"]
        container, key = draw(st.sampled_from(leaves))
        value = draw(st.sampled_from(other_types(container[key])))
        container[key] = value
        return name, data, _path_of(data, container, key), value
    if kind == "stage":
        stages = [(i, s) for i, s in enumerate(data["stages"]) if s["type"] in STAGE_MUTATIONS]
        if stages:
            i, stage = draw(st.sampled_from(stages))
            field, values = draw(st.sampled_from(sorted(STAGE_MUTATIONS[stage["type"]].items())))
            stage[field] = draw(st.sampled_from(values))
            return name, data, ("stages", i, field), stage[field]
    path, values = draw(st.sampled_from([m for m in RUN_MUTATIONS if _has_parent(data, m[0])]))
    value = draw(st.sampled_from(values))
    parent = _at(data, path[:-1])
    if isinstance(value, dict):
        parent.setdefault(path[-1], {}).update(value)
    elif value is None:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return name, data, path, value


def _has_parent(data, path) -> bool:
    try:
        return isinstance(_at(data, path[:-1]), dict)
    except KeyError:
        return False


def _path_of(data, container, key, prefix=()) -> tuple:
    """Where ``container[key]`` is in ``data``, as a path of keys and indexes."""
    if data is container:
        return prefix + (key,)
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for k, value in items:
        found = _path_of(value, container, key, prefix + (k,))
        if found:
            return found
    return ()


def keeps_its_type(given, kept) -> bool:
    """Whether an accepted value is what the file said: no bool or text became a number, no number text."""
    if given == HUGE or given is None or isinstance(given, (dict, list)):
        return True
    if isinstance(given, bool) or isinstance(kept, bool):
        return isinstance(given, bool) and isinstance(kept, bool)
    return isinstance(given, str) == isinstance(kept, str)


@PREFLIGHT_FUZZ
@given(mutant=run_mutant())
def test_check_refuses_what_a_run_would_and_converts_nothing(offline_catalog, mutant):
    from recipes.plan.planning import make_plan
    from recipes.plan.preflight import check_plan

    _, data, path, given = mutant
    target = offline_catalog / "mutant.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).replace(HUGE, "9" * 5000))
    if main(["check", str(target)]) != 0:  # a refusal is one message; anything but a RecipeError propagates
        return
    plan = make_plan(str(target))
    check_plan(plan)  # what check accepts, the run's own checks accept
    assert_sane(plan.target.recipe)
    assert keeps_its_type(given, _at(plan.target.recipe.model_dump(), path)), (path, given)
