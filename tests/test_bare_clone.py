"""A bare clone runs the main job: a ``git clone`` of this repository's HEAD, with nothing beside
it, seeds its own Hub from ``data/clinc_oos`` and takes ``kd-quant``'s plan to its first stage
(the teacher's fine-tuning). The clone holds what is committed, so this tests the committed state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .tiny import REPO_ROOT

FIRST_STAGE = "--- Stage 'finetune' (finetune) starting"
#: What a checkout that depends on a folder beside it would mention.
OUTSIDE = ("../shared", "shared/datasets")


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("bare") / "clone"  # alone in its folder: no shared/ beside it
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(target)], check=True, capture_output=True)
    return target


def test_no_tracked_file_refers_outside_the_clone(clone):
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=clone, check=True, capture_output=True).stdout
    names = [n for n in listed.decode().split("\0") if n and n != Path(__file__).relative_to(REPO_ROOT).as_posix()]
    assert len(names) > 50
    assert [n for n in names if any(s.encode() in (clone / n).read_bytes() for s in OUTSIDE)] == []


@pytest.mark.timeout(600)
def test_the_main_job_reaches_its_first_stage(clone, tmp_path):
    assert not (clone.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LOCALHUB_"))}  # not the tests' Hub
    env.update(PYTHONPATH=str(clone), HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    command = [
        *(sys.executable, "-m", "hubtools", "hub", "exec", "--"),
        *(sys.executable, "-m", "recipes", "run", "kd-quant", "--no-publish"),
        *("--output-dir", str(tmp_path / "out"), "--set", "dataset.max_samples.train=64"),
    ]
    proc = subprocess.Popen(
        command,
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        for line in proc.stdout:  # until the first stage starts, or the job ends without getting there
            lines.append(line)
            if FIRST_STAGE in line:
                break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the Hub and the run: the test needs no more
        proc.communicate(timeout=120)
    log = "".join(lines)
    assert FIRST_STAGE in log, log[-4000:]
    assert f"=== Recipe 'teacher' ({clone}/recipes/catalog/teacher.yaml)" in log, "not the clone's code"
