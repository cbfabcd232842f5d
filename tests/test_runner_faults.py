"""What a run does when something goes wrong around it: an output folder it cannot write, a
SIGTERM or SIGINT, a SIGKILL at any point, a full disk, a stage record edited by hand. Each ends
with one clear message or a clean resume; none leaves a half-written file that looks finished,
and no written file holds the Hub token."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recipes.__main__ import main
from recipes.engine.runner import RecipeRun, Runner
from recipes.errors import RecipeNotFoundError, RunFolderError, StageFailedError
from recipes.plan.loader import load_recipe
from recipes.runfolder import RunFolder, atomic_write_text, hash_outputs
from recipes.stages import STAGE_TYPES

from .tiny import REPO_ROOT
from .tiny import quantize_recipe as make_quantize_recipe

STAGE_TYPE = "quantize-dynamic"
INTERRUPTED = "interrupted: finished stages are kept; rerun the same command to resume"

#: ``python -c WRAPPER WHERE MARKER ARGS...``: ``python -m recipes ARGS...`` that, at WHERE, writes
#: MARKER and blocks until the test signals it. WHERE: ``stage`` (the stage wrote all its files
#: into its temporary folder but has not returned) or ``swap`` (a rerun's finished result is
#: moving into place: the older result moved aside, the new one not yet renamed).
WRAPPER = """
import dataclasses, os, signal, sys, time
from pathlib import Path
from recipes.stages import STAGE_TYPES

where, marker = sys.argv[1], Path(sys.argv[2])
del sys.argv[1:3]

def block():
    marker.write_text("reached")
    time.sleep(600)  # until the test signals this process

if where == "stage":
    real = STAGE_TYPES["quantize-dynamic"]
    def run(spec, ctx):
        real.run(spec, ctx)
        block()
    run.__module__ = real.run.__module__  # the real stage's cache key
    STAGE_TYPES["quantize-dynamic"] = dataclasses.replace(real, run=run)
else:
    replace = os.replace
    def blocking_replace(src, dst):
        if ".old-" in Path(src).name:  # the older result moved aside, on its way into the run cache
            block()
        replace(src, dst)
    os.replace = blocking_replace
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started in the background
from recipes.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def quantize_recipe(tmp_path, clinc_dir) -> str:
    return str(make_quantize_recipe(tmp_path))


def run_here(recipe: str, out: Path, caplog, **runner) -> tuple[str, str, RecipeRun]:
    """Run ``recipe`` in this process: the stage's status, why it started (if it did), the run."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recipes"):
        run = Runner(output_root=out, **runner).run(load_recipe(recipe))
    return run.stages[0].status, " ".join(m for m in caplog.messages if "starting" in m), run


def start_blocked(where: str, marker: Path, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRAPPER, where, str(marker), "run", *map(str, args), "--no-publish"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(marker: Path, proc: subprocess.Popen) -> None:
    """Poll until ``proc`` wrote ``marker``; fail with its output if it exits first."""
    deadline = time.time() + 300  # a hung process, not a slow one
    while not marker.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the run never got to {marker.name} (exit {proc.returncode}):\n{out}\n{err[-3000:]}")
        time.sleep(0.05)


def temporaries(run_dir: Path) -> list[Path]:
    return [*run_dir.glob(".*.tmp-*"), *run_dir.glob(".*.old-*")]


# --- an output folder it cannot write --------------------------------------------------------------


def test_unwritable_output_dir_is_one_clear_error(quantize_recipe, tmp_path, capsys):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    code = main(["run", quantize_recipe, "--no-publish", "--output-dir", str(not_a_folder / "out")])
    err = capsys.readouterr().err
    assert code == RunFolderError.exit_code == 2, err
    assert err.startswith(f"error: Cannot write the run folder {not_a_folder / 'out'}") and "--output-dir" in err, err


def test_read_only_lock_is_a_run_folder_error(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path / "scope" / "q")
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(RunFolderError, match="Cannot write the run folder .*Read-only file system.*--output-dir"):
        with folder.lock():
            pytest.fail("locked a folder it cannot write")


# --- SIGTERM and SIGINT ----------------------------------------------------------------------------


def test_entry_point_handles_sigterm_only_while_it_runs(monkeypatch, capsys):
    before = signal.getsignal(signal.SIGTERM)
    during = []

    def run(*args, **kwargs):
        during.append(signal.getsignal(signal.SIGTERM))
        raise RecipeNotFoundError("no such recipe")

    monkeypatch.setattr("recipes.api.run", run)
    assert main(["run", "nothing", "--no-publish"]) == 2
    assert during and during[0] not in (before, signal.SIG_DFL) and signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_stage_says_so_cleans_up_and_resumes(quantize_recipe, tmp_path, signum, code, caplog):
    out = tmp_path / "out"
    marker = tmp_path / "in-stage"
    proc = start_blocked("stage", marker, quantize_recipe, "--output-dir", out)
    wait_for(marker, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.rstrip().endswith(INTERRUPTED) and "Traceback" not in err, err
    (run_dir,) = out.glob("*/q")
    assert not temporaries(run_dir) and not (run_dir / "quantize").exists()
    status, why, _ = run_here(quantize_recipe, out, caplog)  # the same command again
    assert status == "ran" and "[new]" in why, why


# --- SIGKILL anywhere --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["stage", "swap"])
def test_kill_9_then_rerun_gives_the_same_bits(quantize_recipe, tmp_path, where, caplog):
    out = tmp_path / "out"
    reference = run_here(quantize_recipe, tmp_path / "reference" if where == "stage" else out, caplog)[2]
    expected = reference.stages[0].record.outputs
    marker = tmp_path / f"in-{where}"
    forced = ["--force", "quantize"] if where == "swap" else []
    proc = start_blocked(where, marker, quantize_recipe, "--output-dir", out, *forced)
    wait_for(marker, proc)
    proc.kill()
    proc.wait()
    (run_dir,) = out.glob("*/q")
    assert temporaries(run_dir), "the kill left nothing to clean up: it came at the wrong point"

    status, _, run = run_here(quantize_recipe, out, caplog)
    assert status == "ran" and not temporaries(run_dir)
    assert hash_outputs(run_dir / "quantize") == run.stages[0].record.outputs == expected


# --- a full disk -------------------------------------------------------------------------------------


def test_disk_full_in_a_stage_keeps_the_finished_result(quantize_recipe, tmp_path, monkeypatch, caplog):
    out = tmp_path / "out"
    finished = run_here(quantize_recipe, out, caplog)[2].stages[0].record.outputs
    real = STAGE_TYPES[STAGE_TYPE]

    def disk_full(spec, ctx):
        (ctx.out_dir / "quantized_state_dict.pt").write_bytes(b"half a model")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_write = Path.write_text

    def run_json_too(self, text, *args, **kwargs):
        if self.name.startswith(".run.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setitem(STAGE_TYPES, STAGE_TYPE, dataclasses.replace(real, run=disk_full))
    monkeypatch.setattr(Path, "write_text", run_json_too)
    with pytest.raises(StageFailedError, match="Stage 'quantize'.*No space left on device"):
        run_here(quantize_recipe, out, caplog, force=("quantize",))
    monkeypatch.undo()
    (run_dir,) = out.glob("*/q")
    assert hash_outputs(run_dir / "quantize") == finished and not temporaries(run_dir)
    assert "Cannot write the run folder" in caplog.text and "Free space on its disk" in caplog.text


def test_disk_full_writing_a_record_leaves_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    path.write_text('{"old": true}\n')
    real_write = Path.write_text

    def half_then_full(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(path, '{"new": true}\n')
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"] and path.read_text() == '{"old": true}\n'


# --- a stage record edited by hand -------------------------------------------------------------------


def _empty_record(stage_dir: Path) -> None:
    record = json.loads((stage_dir / ".stage.json").read_text())
    (stage_dir / ".stage.json").write_text(json.dumps({**record, "outputs": {}}))


def _drop_from_record(stage_dir: Path) -> None:
    record = json.loads((stage_dir / ".stage.json").read_text())
    del record["outputs"]["config.json"]
    (stage_dir / ".stage.json").write_text(json.dumps(record))


EDITS = {
    "record lists nothing": (_empty_record, "its record lists no files"),
    "record lists nothing, files gone": (
        lambda d: (_empty_record(d), (d / "quantized_state_dict.pt").unlink()),
        "its record lists no files",
    ),
    "record lists fewer files": (_drop_from_record, "config.json is not in its record"),
    "a file added": (lambda d: (d / "extra.bin").write_bytes(b"x"), "extra.bin is not in its record"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_record_that_does_not_match_the_folder_reruns_the_stage(quantize_recipe, tmp_path, edit, caplog):
    out = tmp_path / "out"
    stage_dir = run_here(quantize_recipe, out, caplog)[2].out_dir / "quantize"
    change, reason = EDITS[edit]
    change(stage_dir)
    status, why, run = run_here(quantize_recipe, out, caplog)
    assert status == "ran" and f"its files changed: {reason}" in why, why
    assert (
        hash_outputs(stage_dir) == run.stages[0].record.outputs and (stage_dir / "quantized_state_dict.pt").is_file()
    )


# --- secrets -----------------------------------------------------------------------------------------


def test_no_written_file_holds_the_token(quantize_recipe, tmp_path, monkeypatch, caplog):
    token = "hf_secret_token_that_must_not_be_written"
    monkeypatch.setenv("HF_TOKEN", token)
    out = tmp_path / "out"
    run_here(quantize_recipe, out, caplog)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "run.log" for p in written)
    assert [p for p in written if token.encode() in p.read_bytes()] == []
