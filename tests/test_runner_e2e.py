"""teacher -> kd -> kd-quant end to end on a tiny BERT and a few hundred CLINC rows, through the
local Hub: the catalog recipes, shrunk by editing only sizes and the base model."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch
import yaml

from recipes.engine.runner import Runner
from recipes.errors import StageFailedError
from recipes.ml.modelio import load_classifier
from recipes.plan.loader import CATALOG_DIR, load_recipe
from recipes.stages import STAGE_TYPES

from .tiny import tiny_bert, write_recipe

ROWS = {"train": 300, "eval": 300, "test": 200}
FAST = {"epochs": 25, "learning_rate": 3.0e-3, "batch_size": 32, "warmup_ratio": 0.0}
#: benchmark.json's latency statistics, written out: the file's documented format, pinned here.
LATENCY_FIELDS = {"mean", "std", "p50", "p90", "p99", "spread_pct", "round_means", "calls"}
#: The module fixture trains three catalog recipes, within the first test's time limit.
pytestmark = pytest.mark.timeout(900)


def shrink(name: str, out_dir, base_model: str) -> None:
    """Write catalog recipe ``name`` into ``out_dir`` with tiny sizes and ``base_model``."""
    data = yaml.safe_load((CATALOG_DIR / f"{name}.yaml").read_text())
    # Train and evaluate on the same rows: a tiny model can fit 300 rows of 151 intents,
    # not generalise from them, and fitting is what "training moved accuracy" needs.
    data["dataset"]["splits"] = {"train": "train", "eval": "train", "test": "test"}
    data["dataset"]["max_samples"] = ROWS
    if "base" in data.get("models", {}):
        data["models"]["base"] = base_model
    for stage in data["stages"]:
        if stage["type"] in ("finetune", "distill"):
            stage.update(FAST)
        if stage["type"] == "distill":
            stage["keep_layers"] = [1]
        if stage["type"] == "benchmark":
            stage.update(warmup=2, runs=10)
    write_recipe(out_dir, data, f"{name}.yaml")


@pytest.fixture(scope="module")
def tiny_recipes(seeded_hub, tmp_path_factory):
    """The three catalog recipes, shrunk, with the tiny base model published on the local Hub."""
    from huggingface_hub import HfApi

    root = tmp_path_factory.mktemp("recipes")
    model_dir = tiny_bert(root / "tiny-bert")
    api = HfApi(endpoint=seeded_hub.url, token=seeded_hub.token)
    api.create_repo("org/tiny-bert", exist_ok=True)
    api.upload_folder(repo_id="org/tiny-bert", folder_path=model_dir)
    for name in ("teacher", "kd", "kd-quant"):
        shrink(name, root, "org/tiny-bert")
    return root


@pytest.fixture(scope="module")
def first_run(tiny_recipes):
    out = tiny_recipes / "out"
    runner = Runner(output_root=out)
    runner.run(load_recipe(str(tiny_recipes / "kd-quant.yaml")))
    return runner.runs["kd-quant"].out_dir.parent, runner


def test_dependencies_ran_first_and_outputs_are_complete(first_run):
    out, runner = first_run
    assert list(runner.runs) == ["teacher", "kd", "kd-quant"]
    for recipe, stages in {
        "teacher": ["finetune", "calibrate", "benchmark"],
        "kd": ["distill", "calibrate", "teacher-calibrated", "benchmark"],
        "kd-quant": ["teacher-calibrated", "quantize", "benchmark"],
    }.items():
        assert [s.name for s in runner.runs[recipe].stages] == stages
        assert all(s.status == "ran" for s in runner.runs[recipe].stages)
        for stage in stages:
            assert (out / recipe / stage / ".stage.json").is_file()
        assert not list((out / recipe).glob(".*.tmp-*")), "temporary folders left behind"


def test_student_keeps_the_chosen_layers(first_run):
    out, _ = first_run
    config = json.loads((out / "kd" / "distill" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    assert config["id2label"]["42"] == "oos" and len(config["id2label"]) == 151


def test_distilled_student_beats_random_init(first_run, tmp_path):
    out, _ = first_run
    record = json.loads((out / "kd" / "distill" / ".stage.json").read_text())
    student_acc = record["metrics"]["eval_accuracy"]

    # The same architecture, untrained, on the same eval rows.
    from recipes.ml.data import RecipeData

    recipe = load_recipe(str(out.parents[1] / "kd.yaml")).recipe
    rows = RecipeData(recipe.dataset, recipe.seed).split("eval")
    random_dir = tiny_bert(tmp_path / "random", layers=1, seed=1)
    random_acc = (load_classifier(random_dir, 1).logits(list(rows["text"])).argmax(-1) == list(rows["label"])).mean()
    assert student_acc > random_acc + 0.1, (student_acc, random_acc)


def test_quantized_model_has_int8_linear_layers(first_run):
    out, _ = first_run
    model = load_classifier(out / "kd-quant" / "quantize", 1).model
    kinds = {type(m) for m in model.modules()}
    assert torch.ao.nn.quantized.dynamic.Linear in kinds
    assert torch.nn.Linear not in kinds  # every float Linear was replaced


def test_benchmark_json_has_every_field_for_every_model(first_run):
    out, _ = first_run
    bench = json.loads((out / "kd-quant" / "benchmark" / "benchmark.json").read_text())
    assert bench["baseline"] == "teacher-calibrated"
    assert [r["name"] for r in bench["models"]] == ["teacher-calibrated", "student", "quantize"]
    assert [r["format"] for r in bench["models"]] == ["pytorch", "pytorch", "pytorch-dynamic-int8"]
    for row in bench["models"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["n_test"] == ROWS["test"]
        assert row["size_mb"] > 0 and row["files"] and row["device"] == "cpu"
        assert set(row["latency_ms"]) == LATENCY_FIELDS and row["latency_ms"]["p50"] > 0
        assert set(row["vs_baseline"]) == {"speedup", "size_ratio", "accuracy_delta", "paired"}
        assert (
            set(row["intervals"])
            == set(row["vs_baseline"]["paired"])
            == {"accuracy", "in_scope_accuracy", "oos_recall"}
        )
        assert (
            row["runtime"]["engine"] == "torch" and row["runtime"]["intra_op_threads"] == bench["machine"]["threads"]
        )
    assert bench["models"][0]["vs_baseline"]["speedup"] == pytest.approx(1.0)
    assert bench["machine"]["threads"] >= 1 and "torch" in bench["machine"]["libraries"]


def test_run_json_records_provenance(first_run):
    out, _ = first_run
    run = json.loads((out / "kd-quant" / "run.json").read_text())
    assert run["status"] == "finished" and len(run["recipe_sha256"]) == 64
    assert [s["type"] for s in run["resolved"]["stages"]] == ["calibrate-oos", "quantize-dynamic", "benchmark"]
    assert run["machine"]["cpu"] and run["machine"]["cores"] >= 1 and run["machine"]["libraries"]["transformers"]
    assert [s["name"] for s in run["stages"]] == ["teacher-calibrated", "quantize", "benchmark"]
    assert all(s["run_wall_s"] is not None for s in run["stages"])
    assert (out / "kd-quant" / "recipe.yaml").is_file() and (out / "kd-quant" / "run.log").stat().st_size > 0


def test_second_run_is_fully_cached_and_publishes(first_run):
    from huggingface_hub import HfApi

    out, _ = first_run
    from hubtools.push import push_run

    runner = Runner(output_root=out.parent, publisher=push_run)
    runner.run(load_recipe(str(out.parents[1] / "kd-quant.yaml")))
    statuses = {(r, s.name): s.status for r, run in runner.runs.items() for s in run.stages}
    assert set(statuses.values()) == {"cached"}, statuses
    # Every recipe with a `publish:` section was pushed once finished; the card came along.
    url = runner.runs["kd-quant"].published
    repo_id = url.split("/commit/")[0].rsplit("/", 2)[-2:]
    files = HfApi().list_repo_files("/".join(repo_id))
    assert {"README.md", "benchmark.json", "run.json", "config.json"} <= set(files)
    token = os.environ["HF_TOKEN"].encode()  # the push used it; no file it wrote may hold it
    assert [p for p in out.rglob("*") if p.is_file() and token in p.read_bytes()] == []


def test_crash_mid_stage_resumes_and_force_reruns(first_run, monkeypatch):
    out, _ = first_run
    recipe_path = str(out.parents[1] / "kd-quant.yaml")
    # A change to the quantize stage's input fingerprint is simulated by --force; the crash by
    # a benchmark that dies after writing part of its output.
    real = STAGE_TYPES["benchmark"]

    def dying(spec, ctx):
        if ctx.out_dir.parent.name != "kd-quant":  # the new code reruns every benchmark stage
            return real.run(spec, ctx)
        (ctx.out_dir / "benchmark.json").write_text("{half")
        raise RuntimeError("killed")

    monkeypatch.setitem(STAGE_TYPES, "benchmark", dataclasses.replace(real, run=dying))
    with pytest.raises(StageFailedError, match="Stage 'benchmark' \\(benchmark\\) of recipe 'kd-quant' failed"):
        Runner(output_root=out.parent, force=("quantize", "benchmark")).run(load_recipe(recipe_path))
    # The half-written output never replaced the finished one, nor was left looking finished.
    assert json.loads((out / "kd-quant" / "benchmark" / "benchmark.json").read_text())["models"]
    assert not list((out / "kd-quant").glob(".benchmark.tmp-*"))
    assert "failed at benchmark" in json.loads((out / "kd-quant" / "run.json").read_text())["status"]

    monkeypatch.setitem(STAGE_TYPES, "benchmark", real)
    stale = out / "kd-quant" / ".benchmark.tmp-99999"  # what a SIGKILL mid-stage leaves
    (stale / "partial").mkdir(parents=True)
    runner = Runner(output_root=out.parent)
    runner.run(load_recipe(recipe_path))
    assert [s.status for s in runner.runs["kd-quant"].stages] == ["cached", "cached", "cached"]
    assert not stale.exists()
