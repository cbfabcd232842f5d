"""The Python API end to end on a tiny BERT through the local Hub: ``recipes.run`` and its result
(stages, models, benchmark records, DataFrame, plot), ``hubtools.publish`` and
``hubtools.verify_repo``; the command lines give the same results and the same errors."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

import hubtools
import recipes
from hubtools.cli import main as hubtools_main
from recipes.__main__ import main as recipes_main

from .tiny import REPO_ROOT, clinc_dataset, tiny_bert, write_recipe

BASE_REPO = "org/tiny-bert-api"
OVERRIDES = {"finetune.epochs": 2, "dataset.max_samples.train": 160}
SET_FLAGS = ["--set", "finetune.epochs=2", "--set", "dataset.max_samples.train=160"]
STAGES = ["finetune", "quantize", "benchmark"]


def api_recipe(folder, repo_id: str):
    recipe = {
        "name": "api-tiny",
        "description": "Fine-tune a tiny BERT and quantize it: the API tests' recipe.",
        "seed": 42,
        "dataset": clinc_dataset(200, 100, 100, eval_on_train=True, id="clinc_oos", text_column="text"),
        "models": {"base": BASE_REPO},
        "stages": [
            {
                "name": "finetune",
                "type": "finetune",
                "input": "base",
                "epochs": 4,
                "learning_rate": 3.0e-3,
                "batch_size": 32,
            },
            {"name": "quantize", "type": "quantize-dynamic", "input": "finetune"},
            {
                "name": "benchmark",
                "type": "benchmark",
                "baseline": "finetune",
                "models": ["finetune", "quantize"],
                "warmup": 1,
                "runs": 5,
                "threads": 1,
            },
        ],
        "publish": {"model": "quantize", "repo_id": repo_id},
    }
    return write_recipe(folder, recipe, "api-tiny.yaml")


@pytest.fixture(scope="module")
def api_run(seeded_hub, tmp_path_factory):
    """The recipe run once through ``recipes.run(..., publish=True)``."""
    from huggingface_hub import HfApi

    root = tmp_path_factory.mktemp("api")
    api = HfApi(endpoint=seeded_hub.url, token=seeded_hub.token)
    api.create_repo(BASE_REPO, exist_ok=True)
    api.upload_folder(repo_id=BASE_REPO, folder_path=tiny_bert(root / "tiny-bert"))
    path = api_recipe(root, f"test/api-tiny-{uuid.uuid4().hex[:8]}")
    result = recipes.run(path, OVERRIDES, output_dir=root / "outputs", publish=True)
    return path, root / "outputs", result


def test_run_returns_each_stage_and_every_model(api_run):
    _, out, result = api_run
    assert isinstance(result, recipes.RunResult) and result.recipe == "api-tiny" and result.status == "finished"
    assert result.run_dir.parent.parent == out
    assert result.run_dir.parent.name.startswith("clinc_oos-plus_tiny-bert-api_")
    assert [(s.name, s.type, s.status) for s in result.stages] == [
        ("finetune", "finetune", "ran"),
        ("quantize", "quantize-dynamic", "ran"),
        ("benchmark", "benchmark", "ran"),
    ]
    assert all(s.wall_s >= 0 and s.run_wall_s == s.wall_s for s in result.stages)
    assert result.stage("finetune").wall_s > 0
    assert 0.0 <= result.stage("finetune").metrics["eval_accuracy"] <= 1.0
    assert set(result.models) == {"base", "finetune", "quantize"}
    assert result.models["quantize"] == result.run_dir / "quantize"
    assert all(
        (path / "config.json").is_file() or (path / "quantized_state_dict.pt").is_file()
        for path in result.models.values()
    )
    assert result.final_model == "quantize" and result.baseline == "finetune"
    with pytest.raises(KeyError, match="stages: finetune, quantize, benchmark"):
        result.stage("distill")


def test_benchmark_records_and_dataframe(api_run):
    pd = pytest.importorskip("pandas")
    _, _, result = api_run
    records = result.benchmark
    assert [r["name"] for r in records] == ["finetune", "quantize"]
    assert all(set(recipes.BENCHMARK_FIELDS) <= set(r) for r in records)
    core = [k for k in records[0] if k in recipes.BENCHMARK_FIELDS]
    assert core == list(recipes.BENCHMARK_FIELDS)  # in this order, other metrics after accuracy
    assert records[0]["speedup"] == pytest.approx(1.0) and records[1]["format"] == "pytorch-dynamic-int8"
    assert all(r["n_test"] == 100 and r["latency_p50_ms"] > 0 and 0 <= r["accuracy"] <= 1 for r in records)
    frame = result.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == ["finetune", "quantize"]
    assert frame.index.name == "name" and list(frame.columns) == list(records[0])[1:]
    assert frame.loc["quantize", "size_mb"] == records[1]["size_mb"]


def test_plot_is_a_figure_with_one_point_per_model(api_run):
    from matplotlib.figure import Figure

    _, _, result = api_run
    fig = result.plot()
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == len(result.benchmark)
    labels = {t.get_text() for t in ax.texts}
    assert labels == {"finetune (baseline)", "quantize"}
    assert "published: quantize" in ax.get_legend_handles_labels()[1]  # the run was published
    assert fig._repr_png_().startswith(b"\x89PNG")  # what Jupyter shows inline


def test_publish_pushes_the_run_and_verify_passes(api_run, new_repo_id):
    from huggingface_hub import HfApi

    _, _, result = api_run
    published = result.published
    assert isinstance(published, hubtools.PushResult) and published.repo_id.startswith("test/api-tiny-")
    assert published.url == f"{published.endpoint}/{published.repo_id}/commit/{published.commit_id}"
    # The same run pushed by hand to another repo: one commit, with every file it lists.
    pushed = hubtools.publish(result.run_dir, repo_id=new_repo_id("api-push"))
    files = set(HfApi().list_repo_files(pushed.repo_id))
    assert set(pushed.files) <= files and {
        "README.md",
        "benchmark.json",
        "accuracy_vs_latency.png",
        "int8/quantized_state_dict.pt",
        "model.safetensors",
    } <= set(pushed.files)
    assert HfApi().list_repo_commits(pushed.repo_id)[0].commit_id == pushed.commit_id
    report = hubtools.verify_repo(pushed.repo_id, runs=2)
    assert isinstance(report, hubtools.VerifyReport) and report.passed, report.summary()
    assert [r.name for r in report.rows] == ["finetune", "quantize"] and all(r.measured for r in report.rows)
    assert report.rows[1].measured["accuracy"] == result.benchmark[1]["accuracy"]


def test_command_lines_give_the_same_results(api_run, capsys):
    path, out, result = api_run
    argv = ["run", str(path), "--no-publish", "--output-dir", str(out), *SET_FLAGS]
    assert recipes_main(argv) == 0
    assert capsys.readouterr().out.strip() == str(result.run_dir)
    again = recipes.RunResult.from_run_dir(result.run_dir)
    assert [(s.name, s.status) for s in again.stages] == [(name, "cached") for name in STAGES]
    assert again.benchmark == result.benchmark and again.models == result.models
    # The API again, now cached too: the dict overrides are the command line's --set.
    cached = recipes.run(path, OVERRIDES, output_dir=out)
    assert [s.status for s in cached.stages] == ["cached"] * 3 and cached.published is None
    assert hubtools_main(["verify", result.published.repo_id, "--runs", "2"]) == 0
    assert "OK: every number the card states matches." in capsys.readouterr().out


def test_errors_are_the_typed_ones_the_command_lines_print(api_run, capsys):
    path, out, _ = api_run
    with pytest.raises(recipes.RecipeValidationError) as err:
        recipes.load(path, {"finetune.epochz": 2})
    assert "epochz" in err.value.message and err.value.exit_code == 2
    assert recipes_main(["run", str(path), "--output-dir", str(out), "--set", "finetune.epochz=2"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {err.value.message}"
    with pytest.raises(recipes.RecipeNotFoundError, match="Did you mean 'kd-quant'"):
        recipes.run("kd-quantt", output_dir=out)
    with pytest.raises(ValueError, match="overrides go to recipes.load"):
        recipes.run(recipes.load(path), OVERRIDES, output_dir=out)


def test_load_takes_the_same_overrides_as_set(api_run):
    path, _, _ = api_run
    from_dict = recipes.load(path, OVERRIDES)
    from_list = recipes.load(path, SET_FLAGS[1::2])
    assert isinstance(from_dict, recipes.Plan) and from_dict.scope == from_list.scope
    assert from_dict.target.overrides == from_list.target.overrides == SET_FLAGS[1::2]
    assert from_dict.target.recipe.stage("finetune").epochs == 2
    plan = recipes.load(
        "kd-quant", {"models.base": "sentence-transformers/all-MiniLM-L6-v2", "dataset.max_samples.train": 300}
    )
    assert [item.recipe.name for item in plan.order] == ["teacher", "kd", "kd-quant"]
    assert all(item.recipe.dataset.max_samples.train == 300 for item in plan.order)


def test_catalog_is_what_list_prints(capsys):
    described = recipes.catalog()
    assert {"teacher", "kd", "kd-quant", "kd-onnx-quant"} <= set(described) and all(described.values())
    assert recipes_main(["list"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"{name:<16} {text}" for name, text in described.items()]


def test_packages_import_light_and_export_what_they_list():
    code = (
        "import sys, recipes, hubtools\n"
        "heavy = ('torch', 'transformers', 'huggingface_hub', 'datasets', 'matplotlib', 'pandas')\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "assert sorted(recipes.__all__) == sorted(recipes._EXPORTS), 'recipes.__all__'\n"
        "assert sorted(hubtools.__all__) == sorted(hubtools._EXPORTS), 'hubtools.__all__'\n"
        "[getattr(recipes, n) for n in recipes.__all__]; [getattr(hubtools, n) for n in hubtools.__all__]\n"
        "assert 'torch' not in sys.modules, 'an exported name imports torch'\n"
        "from hubtools import push, verify\n"
        "assert push.__name__ == 'hubtools.push' and verify.__name__ == 'hubtools.verify', 'modules shadowed'\n"
        "assert callable(hubtools.publish) and recipes.catalog()['teacher']\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
