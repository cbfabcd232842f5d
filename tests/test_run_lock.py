"""One run at a time per run folder: a second run waits (or, with --no-wait, refuses with a
clear message); the lock of a dead run is taken over; temporaries of live runs are kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from recipes.errors import RunFolderBusyError
from recipes.plan.planning import make_plan
from recipes.runfolder import RunFolder

from .tiny import REPO_ROOT
from .tiny import quantize_recipe as make_quantize_recipe

#: Holds a run folder's lock until its stdin closes.
HOLD = (
    "import sys; from recipes.runfolder import RunFolder\nwith RunFolder(sys.argv[1]).lock():\n"
    "    print('locked', flush=True); sys.stdin.read()\n"
)


def hold_lock(path) -> subprocess.Popen:
    """A process that holds ``path``'s lock until ``proc.stdin.close()`` (or its death)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_refuses_or_waits(tmp_path):
    folder = RunFolder(tmp_path / "scope" / "kd")
    holder = hold_lock(folder.path)
    with pytest.raises(RunFolderBusyError, match=f"in use by pid {holder.pid} on .* since"):
        with folder.lock(wait=False):
            pass
    told = []

    def waiting(message: str) -> None:  # the holder lets go only once this run waits for it
        told.append(message)
        holder.stdin.close()

    with folder.lock(wait=True, on_wait=waiting, poll_s=0.1):
        pass
    holder.stdin.close()  # (closed already, unless the lock was taken without waiting)
    assert holder.wait(timeout=60) == 0
    assert len(told) == 1 and "waiting for it to finish" in told[0]


def test_lock_of_a_dead_run_is_taken_over(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.lock_file.write_text(json.dumps({"pid": 999999, "host": "gone", "since": "2026-01-01"}))
    holder = hold_lock(folder.path)  # a run that is killed releases its lock with it
    holder.kill()
    holder.communicate()
    with folder.lock(wait=False):
        assert json.loads(folder.lock_file.read_text())["pid"] == os.getpid()


def test_only_temporaries_of_dead_runs_are_removed(tmp_path):
    folder = RunFolder(tmp_path / "run")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mine = folder.path / f".finetune.tmp-{live.pid}"
        dead = folder.path / ".distill.tmp-999999"
        old = folder.path / ".export.old-999999"
        for path in (mine, dead, old):
            (path / "part").mkdir(parents=True)
        removed = folder.remove_stale_temporaries()
        assert sorted(removed) == sorted([dead, old]) and mine.exists() and not dead.exists()
    finally:
        live.kill()
        live.wait()


@pytest.fixture
def quantize_recipe(tmp_path, clinc_dir):
    return make_quantize_recipe(tmp_path)


def run_cli(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "recipes", "run", *map(str, args), "--no-publish"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_runs_of_one_recipe_never_collide(quantize_recipe, tmp_path, clinc_dir):
    out = tmp_path / "out"
    folder = RunFolder.of(out, make_plan(str(quantize_recipe)).scope, "q")
    with folder.lock():  # another run is busy with this folder
        refused = run_cli(quantize_recipe, "--output-dir", out, "--no-wait")
        _, err = refused.communicate(timeout=120)
        assert refused.returncode == 3, err
        assert f"error: {folder.path} is in use by pid {os.getpid()}" in err and "Traceback" not in err
        waiting = run_cli(quantize_recipe, "--output-dir", out)
        told = next((line for line in waiting.stderr if "waiting for it to finish" in line), None)
        assert told is not None and waiting.poll() is None, "the second run did not wait"
        assert not (folder.path / "quantize").exists()
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert folder.read_run().finished and (folder.path / "quantize" / ".stage.json").is_file()
