"""A new stage type is one module: written here, outside the project, and found through the
``recipes.stages`` entry-point group; it validates, runs, takes workers and publishes with the
card saying what its module declared, with no edit anywhere else."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .tiny import clinc_dataset, tiny_bert, write_recipe

TOY_MODULE = '''
"""A stage type from another package: copies its input model."""

import shutil
from typing import Literal

from pydantic import Field

from recipes.stages.base import Publishing, StageSpec, register


class ToyCopySpec(StageSpec):
    type: Literal["toy-copy"]
    input: str = Field(description="The model to copy.")

    def refs(self):
        return {"input": self.input}


TOY = Publishing(tag="toy-tag", repo_dir="", usage="usage/pytorch.md.j2", phrase="copied by the toy stage")


@register("toy-copy", ToyCopySpec, libraries=(), publishing=TOY, join=lambda spec, ctx, wait_s: 0)
def run(spec, ctx):
    shutil.copytree(ctx.inputs["input"], ctx.out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    return {"copied": 1}
'''
ENTRY_POINTS = "[recipes.stages]\ntoy-copy = toy_stage\n"


@pytest.fixture
def plugin(tmp_path):
    """A folder on ``PYTHONPATH`` with the toy module and the installed-package record that
    lists it under the ``recipes.stages`` entry points."""
    site = tmp_path / "site"
    dist = site / "toy_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "toy_stage.py").write_text(TOY_MODULE)
    return site


def _run(args, env, cwd):
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.mark.timeout(300)
def test_a_stage_type_added_in_one_module_runs_joins_and_publishes(plugin, tmp_path, local_hub, new_repo_id):
    recipe = {
        "name": "toy",
        "description": "The toy stage type copies a tiny BERT.",
        "dataset": clinc_dataset(8, 8, 16),
        "models": {"base": str(tiny_bert(tmp_path / "bert"))},
        "stages": [
            {"name": "copy", "type": "toy-copy", "input": "base"},
            {"name": "benchmark", "type": "benchmark", "models": ["base", "copy"], "runs": 3, "warmup": 1},
        ],
        "publish": {"model": "copy"},
    }
    path = write_recipe(tmp_path, recipe, "toy.yaml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"

    ran = _run(["-m", "recipes", "run", str(path), "--no-publish", "--output-dir", str(out)], env, tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    (run_json,) = out.glob("*/toy/run.json")
    entry = next(s for s in json.loads(run_json.read_text())["stages"] if s["name"] == "copy")
    assert entry["type"] == "toy-copy" and entry["metrics"] == {"copied": 1}
    assert entry["publishing"]["tag"] == "toy-tag"  # the runner recorded what the module declared

    joined = _run(["-m", "recipes", "worker", str(path), "--stage", "copy", "--output-dir", str(out)], env, tmp_path)
    assert joined.returncode == 0 and "worker done: 0 trial(s)" in joined.stdout, joined.stderr[-3000:]

    repo_id = new_repo_id("toy")
    pushed = _run(["-m", "hubtools", "push", str(run_json.parent), "--repo-id", repo_id], os.environ, tmp_path)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    from huggingface_hub import hf_hub_download

    card = open(hf_hub_download(repo_id, "README.md")).read()
    assert "- toy-tag" in card and "copied by the toy stage" in card


def test_without_the_plugin_the_type_is_refused_with_the_known_ones(tmp_path):
    recipe = {
        "name": "toy",
        "description": "No plugin here.",
        "dataset": clinc_dataset(),
        "models": {"base": "x"},
        "stages": [{"name": "copy", "type": "toy-copy", "input": "base"}],
    }
    path = write_recipe(tmp_path, recipe, "toy.yaml")
    checked = _run(["-m", "recipes", "check", str(path)], os.environ, tmp_path)
    assert checked.returncode == 2 and "unknown stage type 'toy-copy'" in checked.stderr
    assert "export-onnx" in checked.stderr  # the message lists the types the registry found
