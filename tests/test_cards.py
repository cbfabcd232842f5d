"""Model cards rendered from hand-written runs with a fixed benchmark.json: metadata, numbers,
sections, and usage snippets executed against the local Hub."""

from __future__ import annotations

import contextlib
import io
import re

import jinja2
import pytest
import yaml
from huggingface_hub import ModelCard

from hubtools.card import CARDS_DIR, CardData, environment, parse_benchmark_table, render_card
from hubtools.push import push_run
from hubtools.runinfo import RunInfo, plan_layout

from .publish_fixtures import QUERY, fake_runs

RECIPES = ["kd-quant", "kd-onnx-quant"]
# Column -> (benchmark.json value, decimals shown).
NUMBERS = {
    "Accuracy": (lambda r: r["accuracy"], 4),
    "Δ accuracy": (lambda r: r["vs_baseline"]["accuracy_delta"], 4),
    "Size (MB)": (lambda r: r["size_mb"], 2),
    "Size ratio": (lambda r: r["vs_baseline"]["size_ratio"], 3),
    "p50 (ms)": (lambda r: r["latency_ms"]["p50"], 2),
    "p99 (ms)": (lambda r: r["latency_ms"]["p99"], 2),
    "Speed-up": (lambda r: r["vs_baseline"]["speedup"], 2),
}


@pytest.fixture(scope="module")
def runs():
    return fake_runs()


def card_for(run_dir, repo_id="local/fixture-card"):
    info = RunInfo(run_dir)
    layout = plan_layout(info)
    card = CardData(repo_id, base_model="org/base", base_model_relation="finetune").fill(info, layout)
    return info, card, render_card(card)


@pytest.mark.parametrize("recipe", RECIPES)
def test_metadata_validates_through_model_card_data(runs, recipe):
    info, _, card = card_for(runs[recipe])
    data = ModelCard(str(card)).data  # parsed again from the text, as the Hub reads it
    assert (data.license, data.language, data.library_name, data.pipeline_tag) == (
        "apache-2.0",
        "en",
        "transformers",
        "text-classification",
    )
    assert data.datasets == ["clinc_oos"] and data.metrics == ["accuracy"]
    assert data.base_model == "org/base" and data.base_model_relation == "finetune"
    expected_tags = {
        "kd-quant": {"distillation", "quantization"},
        "kd-onnx-quant": {"distillation", "quantization", "onnx"},
    }
    assert set(data.tags) == expected_tags[recipe] | {recipe}
    (result,) = data.eval_results
    published = next(r for r in info.benchmark.models if r["name"] == "quantize")
    assert (
        result.task_type,
        result.dataset_type,
        result.dataset_config,
        result.dataset_split,
        result.metric_type,
    ) == ("text-classification", "clinc_oos", "plus", "test", "accuracy")
    assert result.metric_value == published["accuracy"]
    front = yaml.safe_load(str(card).split("---\n")[1])
    assert front["model-index"][0]["name"] == "fixture-card"


def test_card_passes_the_hubs_yaml_validation(runs, local_hub):
    # ModelCard.validate() posts to huggingface.co whatever HF_ENDPOINT says; post to ours.
    import requests

    _, _, card = card_for(runs["kd-onnx-quant"])
    reply = requests.post(f"{local_hub.url}/api/validate-yaml", json={"repoType": "model", "content": str(card)})
    assert reply.status_code == 200 and reply.json()["errors"] == []


@pytest.mark.parametrize("recipe", RECIPES)
def test_table_numbers_equal_benchmark_json(runs, recipe):
    info, _, card = card_for(runs[recipe])
    table = parse_benchmark_table(card.text)
    assert list(table) == [r["name"] for r in info.benchmark.models]
    for row in info.benchmark.models:
        cells = table[row["name"]]
        for column, (value, decimals) in NUMBERS.items():
            shown = float(cells[column].rstrip("x"))
            assert shown == pytest.approx(value(row), abs=0.5 * 10**-decimals + 1e-12), (row["name"], column)
        mean, std = (float(x) for x in cells["Latency mean ± std (ms)"].split(" ± "))
        assert mean == pytest.approx(row["latency_ms"]["mean"], abs=0.005)
        assert std == pytest.approx(row["latency_ms"]["std"], abs=0.005)
    assert table["teacher"]["Model"] == "teacher (baseline)" and table["quantize"]["Model"] == "quantize (published)"


def test_each_row_names_its_file_in_the_repo(runs):
    _, _, int8 = card_for(runs["kd-quant"])
    _, _, onnx = card_for(runs["kd-onnx-quant"])
    assert {k: v["File in this repo"] for k, v in parse_benchmark_table(int8.text).items()} == {
        "teacher": "not in this repo",
        "student": "model.safetensors",
        "quantize": "int8/quantized_state_dict.pt",
    }
    assert {k: v["File in this repo"] for k, v in parse_benchmark_table(onnx.text).items()} == {
        "teacher": "not in this repo",
        "student": "model.safetensors",
        "export": "onnx/model.onnx",
        "quantize": "onnx/model_quantized.onnx",
    }


def test_body_sections(runs):
    _, _, card = card_for(runs["kd-onnx-quant"])
    text = card.text
    for needle in (
        "## Benchmark",
        "![Accuracy vs latency](accuracy_vs_latency.png)",
        "Fixture CPU @ 2.0GHz",
        "| Measured on | CPU |",
        "| onnxruntime | 1.32.0 |",
        "| keep_layers | [1] |",
        "<details>",
        "name: kd-onnx-quant",
        "`oos`",
        "English only",
        "CC BY 3.0",
        "Larson",
        "D19-1131",
        "Tunstall",
        "O'Reilly",
        "git commit `0123abc`",
        "ORTModelForSequenceClassification",
        'file_name="model_quantized.onnx"',
    ):
        assert needle in text, needle
    assert "PyTorch dynamic int8" not in text  # no int8 layout in this repo, so no int8 snippet
    assert "<!-- No hyper-parameter search" in text


def test_search_section_only_when_there_was_a_search(runs):
    info, card, _ = card_for(runs["kd-quant"])
    card.best_trial = {
        "stage": "search",
        "recipe": "kd",
        "number": 7,
        "value": 0.93,
        "params": {"alpha": 0.7, "temperature": 3.0},
    }
    text = render_card(card).text
    assert "### Hyper-parameter search" in text and "- `alpha` = 0.7" in text and "number 7" in text
    assert "<!-- No hyper-parameter search" not in text


def test_missing_value_is_an_error_not_an_empty_string():
    env = environment(CARDS_DIR)
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ card.no_such_field }}").render(card=CardData("a/b"))


def python_blocks(card_text: str) -> list[str]:
    usage = card_text.split("## How to use", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", usage, flags=re.S)


@pytest.mark.parametrize("recipe", RECIPES)
def test_usage_snippets_run_as_written(runs, local_hub, new_repo_id, recipe):
    repo_id = new_repo_id(recipe)
    push_run(runs[recipe], repo_id=repo_id)
    blocks = python_blocks(ModelCard.load(repo_id).text)
    assert len(blocks) == 2  # PyTorch root + the published layout (int8 or ONNX)
    for code in blocks:
        assert repo_id in code and QUERY in code
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"<{recipe} snippet>", "exec"), {})
        prediction = yaml.safe_load(out.getvalue())  # [{'label': ..., 'score': ...}] prints as a YAML flow list
        assert prediction[0]["label"].startswith("LABEL_") and 0 <= prediction[0]["score"] <= 1, out.getvalue()


# --- what the stage types declare, and the dataset the run used -------------------------------------


def test_a_new_stage_types_declaration_drives_the_card(runs, monkeypatch, tmp_path):
    """A stage type hubtools has never heard of: its tag, phrase, place in the repo and usage
    snippet come from its registration alone."""
    import shutil

    from recipes.stages import STAGE_TYPES
    from recipes.stages.base import Publishing, StageType

    from .publish_fixtures import KD_QUANT_ROWS, STUDENT_REF, TEACHER_REF, write_fake_run

    declared = Publishing(
        tag="pruning",
        relation="finetune",
        phrase="pruned from `{input}` to {sparsity:.0%} zeros",
        repo_dir="",
        usage="usage/pytorch.md.j2",
    )
    monkeypatch.setitem(STAGE_TYPES, "prune", StageType(spec=object, run=lambda spec, ctx: {}, publishing=declared))
    scope = tmp_path / "clinc_oos-plus_teacher_00000000"
    shutil.copytree(runs["kd-quant"].parent / "kd" / "distill", scope / "kd-prune" / "prune")
    kd = runs["kd-quant"].parent / "kd"
    run_dir = write_fake_run(
        scope,
        "kd-prune",
        {"teacher": TEACHER_REF, "student": STUDENT_REF},
        [
            {"name": "prune", "type": "prune", "input": "student", "sparsity": 0.5},
            {"name": "benchmark", "type": "benchmark", "models": ["teacher", "student", "prune"]},
        ],
        "prune",
        [*KD_QUANT_ROWS[:2], ("prune",) + KD_QUANT_ROWS[2][1:]],
        paths={"teacher": kd.parent / "teacher" / "finetune", "student": kd / "distill"},
    )
    info, card, rendered = card_for(run_dir)
    assert "pruning" in ModelCard(str(rendered)).data.tags
    assert "stage type `prune`): pruned from `student` to 50% zeros" in rendered.text
    assert parse_benchmark_table(rendered.text)["prune"]["File in this repo"] == "model.safetensors"
    assert [u.partial for u in card.usages] == ["usage/pytorch.md.j2"]

    from hubtools.push import relation

    assert relation(info.lineage()[:-1]) == "finetune"


def test_a_dataset_the_card_does_not_know_is_named_and_nothing_says_clinc(local_hub):
    from .publish_fixtures import other_dataset_run

    info, card, rendered = card_for(other_dataset_run(), repo_id="local/fixture-tickets")
    text = str(rendered)
    assert "clinc" not in text.lower() and "Larson" not in text and "intent" not in text.lower()
    assert "labels of `support-tickets`" in text and "Trained and evaluated on `support-tickets` only" in text
    (result,) = ModelCard(text).data.eval_results
    assert (result.dataset_type, result.dataset_name, result.dataset_config) == (
        "support-tickets",
        "support-tickets",
        None,
    )
    assert ModelCard(text).data.datasets == ["support-tickets"]
    assert "`support-tickets` (a local folder)" in text  # no link to a Hub page that is not there


def test_default_repo_id_names_base_model_dataset_and_config():
    from hubtools.runinfo import DatasetRef, default_repo_id

    clinc = DatasetRef.of({"id": "clinc_oos", "config": "plus"})
    assert (
        default_repo_id("local", "all-MiniLM-L6-v2", clinc, "kd-quant")
        == "local/all-MiniLM-L6-v2-clinc_oos-plus-kd-quant"
    )
    tickets = DatasetRef.of({"id": "/data/acme/support tickets/", "config": None})
    assert default_repo_id("me", "bert", tickets, "kd") == "me/bert-support-tickets-kd"
    assert DatasetRef.of({"id": "acme/reviews", "config": "en"}).short == "reviews"
    long = default_repo_id("me", "b" * 80, DatasetRef("d" * 40, "c" * 10), "kd-onnx-quant")
    name = long.split("/")[1]
    assert len(name) <= 96 and name.endswith("-kd-onnx-quant") and "--" not in name
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(long)


def test_default_repo_id_of_a_run_names_its_dataset(runs):
    from .publish_fixtures import other_dataset_run

    assert RunInfo(runs["kd-quant"]).default_repo_id("local") == "local/teacher-clinc_oos-plus-kd-quant"
    assert RunInfo(other_dataset_run()).default_repo_id("local") == "local/student-support-tickets-kd-quant"


def test_card_links_point_at_the_hub_it_is_served_from(runs):
    info = RunInfo(runs["kd-quant"])
    card = CardData(
        "local/x", base_model="org/base", base_model_relation="finetune", hub_url="http://127.0.0.1:5555/"
    ).fill(info, plan_layout(info))
    text = render_card(card).text
    assert "[org/base](http://127.0.0.1:5555/org/base)" in text
    assert "(http://127.0.0.1:5555/datasets/clinc_oos)" in text and "huggingface.co" not in text


def test_a_run_record_of_another_schema_version_is_one_clear_error(runs, tmp_path, capsys):
    import json
    import shutil

    from hubtools.cli import main
    from recipes.errors import RunFolderError

    run_dir = tmp_path / "scope" / "kd-quant"
    shutil.copytree(runs["kd-quant"], run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "schema_version": 99}))
    with pytest.raises(RunFolderError, match="schema version 99; this version reads"):
        push_run(run_dir, repo_id="local/never")
    assert main(["push", str(run_dir), "--repo-id", "local/never"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "run.json" in err and "Upgrade" in err and "Traceback" not in err
