"""``torchrun --nproc_per_node 2 -m recipes run`` on the CPU (gloo): a tiny teacher -> distil
recipe trains data-parallel (then a prune-magnitude stage on rank 0 alone), rank 0 alone writes
each stage folder once, the result matches a single-process run's shape and quality class, a
rerun skips the cached stages on every rank, and a stage that fails on one rank stops both with
the error shown once."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .tiny import REPO_ROOT, clinc_dataset, tiny_bert, write_recipe

#: Accuracy gap allowed between the 2-process and the 1-process run of the tiny recipe, on its
#: 96 training rows (a tiny model on 96 rows of 151 intents learns some of them and nothing of the eval split):
#: the same data and global batch, but other sums and another order of the batches' rows.
ACCURACY_TOLERANCE = 0.15
#: What the single-process teacher must reach on those rows (chance: 1/151), so that the comparison
#: means something.
ACCURACY_FLOOR = 0.1

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux"),
    # the module fixture's two launches (up to 600 s each), within the first test's time limit
    pytest.mark.timeout(1500),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kd_recipe(root: Path) -> Path:
    fast = {"epochs": 40, "learning_rate": 1.0e-2, "batch_size": 16}
    recipe = {
        "name": "kd",
        "description": "tiny teacher -> distil",
        "dataset": clinc_dataset(96, 64, 32, oos_label="oos"),
        "models": {"base": str(tiny_bert(root / "bert", layers=4))},
        "stages": [
            {"name": "teacher", "type": "finetune", "input": "base", **fast},
            {"name": "student", "type": "distill", "input": "teacher", "keep_layers": [1, 3], **fast},
            # a Trainer stage that rank 0 runs alone (no data parallelism), while rank 1 waits
            {"name": "sparse", "type": "prune-magnitude", "input": "student", "sparsity": 0.5, "epochs": 1},
        ],
    }
    return write_recipe(root, recipe, "kd.yaml")


def launch(recipe: Path, out: Path, nproc: int, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(extra_path or ""), str(REPO_ROOT)])),
    }
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    run = ["-m", "recipes", "run", str(recipe), "--no-publish", "--output-dir", str(out)]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            *run,
        ]
    else:
        cmd = [sys.executable, *run]
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if affinity and shutil.which("taskset"):
        cmd = ["taskset", "-c", ",".join(map(str, affinity)), *cmd]
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def train_accuracy(recipe: Path, model_dir: Path) -> float:
    """The model's accuracy on the recipe's training rows."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from recipes.ml.data import RecipeData
    from recipes.plan.loader import load_recipe

    loaded = load_recipe(str(recipe))
    rows = RecipeData(loaded.recipe.dataset, loaded.recipe.seed, loaded.base_dir).split("train")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        batch = tokenizer(list(rows["text"]), padding=True, truncation=True, max_length=128, return_tensors="pt")
        predicted = model(**batch).logits.argmax(-1)
    return float((predicted == torch.tensor(rows["label"])).float().mean())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, clinc_dir):
    root = tmp_path_factory.mktemp("torchrun")
    recipe = kd_recipe(root)
    single = launch(recipe, root / "single", 1)
    assert single.returncode == 0, single.stderr[-4000:]
    multi = launch(recipe, root / "multi", 2)
    assert multi.returncode == 0, multi.stdout[-2000:] + multi.stderr[-6000:]
    return root, recipe, single, multi


def test_two_processes_train_the_recipe_and_rank_0_writes_it(runs):
    from safetensors.numpy import load_file

    root, recipe, _single, multi = runs
    (run_dir,) = list((root / "multi").glob("*/kd"))
    assert multi.stdout.count(str(run_dir)) == 1  # one result line, from rank 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished"
    assert [s["status"] for s in record["stages"]] == ["ran", "ran", "ran"]
    log = (run_dir / "run.log").read_text()
    for stage in ("teacher", "student", "sparse"):
        assert log.count(f"--- Stage {stage!r} finished") == 1  # written once
        assert not list(run_dir.glob(f".{stage}*"))  # no temporary folder left
    assert "rows 0-48 here, rank 0 of 2" in log  # the teacher's logits: each rank its half
    (single_dir,) = list((root / "single").glob("*/kd"))
    for stage in ("teacher", "student"):
        a = load_file(run_dir / stage / "model.safetensors")
        b = load_file(single_dir / stage / "model.safetensors")
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
        multi_acc, single_acc = train_accuracy(recipe, run_dir / stage), train_accuracy(recipe, single_dir / stage)
        assert single_acc >= ACCURACY_FLOOR or stage != "teacher", single_acc
        assert abs(multi_acc - single_acc) <= ACCURACY_TOLERANCE, (stage, multi_acc, single_acc)
    config = json.loads((run_dir / "student" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2


def test_rerun_under_torchrun_skips_cached_stages_on_every_rank(runs):
    root, recipe, _single, _multi = runs
    again = launch(recipe, root / "multi", 2)
    assert again.returncode == 0, again.stderr[-4000:]
    (run_dir,) = list((root / "multi").glob("*/kd"))
    record = json.loads((run_dir / "run.json").read_text())
    assert [s["status"] for s in record["stages"]] == ["cached"] * 3
    assert "training step" not in again.stdout + again.stderr  # no rank trained


SITECUSTOMIZE = """
import os
if os.environ.get("RANK") == "1":
    import recipes.stages.finetune as finetune
    from recipes.stages import STAGE_TYPES
    import dataclasses

    def broken(spec, ctx):
        raise RuntimeError("rank one cannot train today")

    STAGE_TYPES["finetune"] = dataclasses.replace(STAGE_TYPES["finetune"], run=broken)
"""


def test_a_stage_failing_on_one_rank_stops_all_with_one_error(tmp_path, clinc_dir):
    recipe = kd_recipe(tmp_path)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    failed = launch(recipe, tmp_path / "out", 2, extra_path=hook)
    assert failed.returncode != 0
    text = failed.stdout + failed.stderr
    assert text.count("rank one cannot train today") == 1, text[-6000:]
    (run_dir,) = list((tmp_path / "out").glob("*/kd"))
    assert not (run_dir / "teacher" / ".stage.json").exists()
    assert not (run_dir / "teacher").exists()
