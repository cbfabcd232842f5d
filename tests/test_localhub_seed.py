"""Seeding is idempotent, a missing source is one clear line (exit 2), and the
``python -m hubtools hub`` commands serve and run a command against a Hub."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from hubtools.localhub import Storage, seed
from hubtools.localhub.seed import DATASET_REPO, MODEL_REPO


def hubtools(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hubtools", *args], capture_output=True, text=True, timeout=60, **kwargs
    )


def test_seed_is_idempotent(tmp_path, clinc_dir):
    first = seed(tmp_path, dataset_dir=clinc_dir)
    second = seed(tmp_path, dataset_dir=clinc_dir)
    assert [(r.repo_id, r.changed) for r in first] == [(DATASET_REPO, True), (MODEL_REPO, True)]
    assert [r.commit for r in second] == [r.commit for r in first]
    assert not any(r.changed for r in second)

    storage = Storage(tmp_path)
    dataset = storage.get_repo("dataset", DATASET_REPO)
    tree = storage.get_commit(dataset, storage.resolve(dataset, "main")).tree
    assert {"README.md", "plus/train-00000-of-00001.parquet"} <= set(tree)
    assert tree["plus/train-00000-of-00001.parquet"].lfs
    model = storage.get_repo("model", MODEL_REPO)
    assert "model.safetensors" in storage.get_commit(model, storage.resolve(model, "main")).tree


def test_missing_source_is_one_line(tmp_path):
    result = hubtools("hub", "seed", "--data", str(tmp_path / "data"), "--dataset-dir", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: Dataset source missing") and "--dataset-dir" in result.stderr


def test_exec_runs_command_against_a_hub(tmp_path):
    child = textwrap.dedent("""
        import json, os, sys, urllib.request
        req = urllib.request.Request(os.environ["HF_ENDPOINT"] + "/api/whoami-v2",
                                     headers={"Authorization": "Bearer " + os.environ["HF_TOKEN"]})
        print(json.load(urllib.request.urlopen(req))["name"])
        sys.exit(7)
    """)
    result = hubtools("hub", "exec", "--data", str(tmp_path), "--no-seed", "--", sys.executable, "-c", child)
    assert (result.returncode, result.stdout.strip()) == (7, "local")


def test_serve_logs_requests_and_stops_on_ctrl_c(tmp_path):
    import signal
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "hubtools", "hub", "serve", "--data", str(tmp_path), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stderr.readline().split(" at ")[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        assert b"Local Hub" in urllib.request.urlopen(url + "/").read()
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "GET / 200" in stderr and "Traceback" not in stderr
