"""The run cache: a stage's earlier results stay by cache key, so going back to earlier settings
(code, libraries, inputs) restores them instead of rerunning; it is bounded and prunable."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from recipes.engine import cachekey
from recipes.runfolder import CACHE_KEEP, RunFolder, hash_outputs

from .test_cache_key import run_once
from .tiny import quantize_recipe as make_quantize_recipe


@pytest.fixture
def recipe(tmp_path, clinc_dir):
    return str(make_quantize_recipe(tmp_path)), tmp_path / "out"


def torch_version(monkeypatch, version: str | None) -> None:
    """Make the stage's key say torch ``version`` (None: the real one): another key, same work."""
    monkeypatch.undo()
    if version is not None:
        real = cachekey.metadata.version
        monkeypatch.setattr(cachekey.metadata, "version", lambda name: version if name == "torch" else real(name))


def test_earlier_settings_come_back_from_the_cache(recipe, caplog, monkeypatch):
    status, _, run = run_once(*recipe, caplog)
    first = hash_outputs(run.out_dir / "quantize")
    torch_version(monkeypatch, "99.0.0")
    assert run_once(*recipe, caplog)[0] == "ran"  # another key: the first result goes into the cache
    torch_version(monkeypatch, None)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recipes"):
        status, _, run = run_once(*recipe, caplog)
    assert status == "cached"
    assert any("the run cache holds its result under this key" in r.getMessage() for r in caplog.records)
    assert hash_outputs(run.out_dir / "quantize") == first  # the very files of the first run


def test_a_damaged_cached_result_is_not_restored(recipe, caplog, monkeypatch):
    run_once(*recipe, caplog)
    torch_version(monkeypatch, "99.0.0")
    _, _, run = run_once(*recipe, caplog)
    (slot,) = RunFolder(run.out_dir).cache_entries("quantize")
    (slot / "quantized_state_dict.pt").write_bytes(b"\0" * 64)
    torch_version(monkeypatch, None)
    status, why, _ = run_once(*recipe, caplog)
    assert status == "ran" and "torch 99.0.0 ->" in why


def test_the_cache_keeps_the_newest_few_and_prunes_on_demand(recipe, caplog, monkeypatch):
    for minor in range(CACHE_KEEP + 3):
        torch_version(monkeypatch, f"9.{minor}.0")
        run = run_once(*recipe, caplog)[2]
    folder = RunFolder(run.out_dir)
    kept = folder.cache_entries("quantize")
    assert len(kept) == CACHE_KEEP
    out = recipe[1]
    command = [sys.executable, "-m", "recipes", "cache", "--output-dir", str(out)]
    listed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and all(slot.name in listed.stdout for slot in kept), listed.stdout
    pruned = subprocess.run([*command, "--prune", "--keep", "0"], capture_output=True, text=True, timeout=120)
    assert pruned.returncode == 0 and f"Removed {CACHE_KEEP}" in pruned.stdout, pruned.stdout
    assert folder.cache_entries() == []
    assert (run.out_dir / "quantize").is_dir()  # the current result is never pruned
