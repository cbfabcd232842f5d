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
        "apache-2.0", "en", "transformers", "text-classification")
    assert data.datasets == ["clinc_oos"] and data.metrics == ["accuracy"]
    assert data.base_model == "org/base" and data.base_model_relation == "finetune"
    expected_tags = {"kd-quant": {"distillation", "quantization"}, "kd-onnx-quant": {"distillation", "quantization", "onnx"}}
    assert set(data.tags) == expected_tags[recipe] | {recipe}
    (result,) = data.eval_results
    published = next(r for r in info.benchmark["models"] if r["name"] == "quantize")
    assert (result.task_type, result.dataset_type, result.dataset_config, result.dataset_split, result.metric_type) == (
        "text-classification", "clinc_oos", "plus", "test", "accuracy")
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
    assert list(table) == [r["name"] for r in info.benchmark["models"]]
    for row in info.benchmark["models"]:
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
        "teacher": "not in this repo", "student": "model.safetensors", "quantize": "int8/quantized_state_dict.pt"}
    assert {k: v["File in this repo"] for k, v in parse_benchmark_table(onnx.text).items()} == {
        "teacher": "not in this repo", "student": "model.safetensors", "export": "onnx/model.onnx",
        "quantize": "onnx/model_quantized.onnx"}


def test_body_sections(runs):
    _, _, card = card_for(runs["kd-onnx-quant"])
    text = card.text
    for needle in ("## Benchmark", "![Accuracy vs latency](accuracy_vs_latency.png)", "Fixture CPU @ 2.0GHz",
                   "| onnxruntime | 1.32.0 |", "| keep_layers | [1] |", "<details>", "name: kd-onnx-quant",
                   "`oos`", "English only", "CC BY 3.0", "Larson", "D19-1131", "Tunstall", "O'Reilly",
                   "git commit `0123abc`", "ORTModelForSequenceClassification", 'file_name="model_quantized.onnx"'):
        assert needle in text, needle
    assert "PyTorch dynamic int8" not in text  # no int8 layout in this repo, so no int8 snippet
    assert "<!-- No hyper-parameter search" in text


def test_search_section_only_when_there_was_a_search(runs):
    info, card, _ = card_for(runs["kd-quant"])
    card.best_trial = {"stage": "search", "recipe": "kd", "number": 7, "value": 0.93,
                       "params": {"alpha": 0.7, "temperature": 3.0}}
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
