"""The stage cache reruns a stage when anything that shapes its result changed (a library
version, its code, one of its files) and says why; it skips it otherwise. Records round-trip."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from recipes.engine import cachekey
from recipes.engine.runner import Runner
from recipes.errors import RunFolderError
from recipes.plan.loader import load_recipe
from recipes.runfolder import SCHEMA_VERSION, STATE_DIR, STATE_KEY_FILE, BenchmarkResult, RunRecord, StageRecord
from recipes.stages import STAGE_TYPES

from .tiny import quantize_recipe as make_quantize_recipe

STAGE_MODULE = "recipes.stages.quantize_dynamic"


@pytest.fixture
def quantize_recipe(tmp_path, clinc_dir):
    return str(make_quantize_recipe(tmp_path)), tmp_path / "out"


def run_once(recipe_path, out, caplog):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recipes"):
        run = Runner(output_root=out).run(load_recipe(recipe_path))
    starts = [r.getMessage() for r in caplog.records if "starting" in r.getMessage()]
    return run.stages[0].status, " ".join(starts), run


def test_unchanged_stage_is_skipped(quantize_recipe, caplog):
    assert run_once(*quantize_recipe, caplog)[0] == "ran"
    assert run_once(*quantize_recipe, caplog)[0] == "cached"


def test_library_upgrade_reruns_and_says_which(quantize_recipe, caplog, monkeypatch):
    run_once(*quantize_recipe, caplog)
    real = cachekey.metadata.version
    monkeypatch.setattr(cachekey.metadata, "version", lambda name: "99.0.0" if name == "torch" else real(name))
    status, why, _ = run_once(*quantize_recipe, caplog)
    assert status == "ran" and f"torch {real('torch')} -> 99.0.0" in why, why
    assert run_once(*quantize_recipe, caplog)[0] == "cached"
    monkeypatch.setattr(
        cachekey.metadata, "version", lambda name: "99.0.0" if name in ("torch", "onnxruntime") else real(name)
    )
    assert run_once(*quantize_recipe, caplog)[0] == "cached"  # quantize-dynamic does not depend on onnxruntime


def test_stage_code_change_reruns_and_names_the_module(quantize_recipe, caplog, monkeypatch):
    run_once(*quantize_recipe, caplog)
    real = cachekey.code_fingerprints
    monkeypatch.setattr(cachekey, "code_fingerprints", lambda m: {**real(m), STAGE_MODULE: "edited"})
    status, why, _ = run_once(*quantize_recipe, caplog)
    assert status == "ran" and f"code changed: {STAGE_MODULE}" in why, why


def test_code_fingerprint_follows_code_not_comments(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "stage_under_test.py"
    module.write_text('"""Doc."""\nfrom recipes.ml import modelio\n\ndef run():\n    return 1\n')
    first = cachekey.code_fingerprints("stage_under_test")
    assert "recipes.ml.modelio" in first  # what it imports from the project counts too
    module.write_text('"""Other doc."""\n# a comment\nfrom recipes.ml import modelio\n\n\ndef run():\n    return 1\n')
    assert cachekey.code_fingerprints("stage_under_test") == first
    module.write_text('"""Doc."""\nfrom recipes.ml import modelio\n\ndef run():\n    return 2\n')
    assert cachekey.code_fingerprints("stage_under_test")["stage_under_test"] != first["stage_under_test"]


@pytest.mark.parametrize("damage", ["edit", "delete"])
def test_damaged_output_reruns_and_names_the_file(quantize_recipe, caplog, damage):
    _, _, run = run_once(*quantize_recipe, caplog)
    weights = run.out_dir / "quantize" / "quantized_state_dict.pt"
    if damage == "edit":
        weights.write_bytes(b"\0" * 64)
    else:
        weights.unlink()
    status, why, _ = run_once(*quantize_recipe, caplog)
    expected = "changed since the stage finished" if damage == "edit" else "is missing"
    assert status == "ran" and f"quantized_state_dict.pt {expected}" in why, why
    assert weights.stat().st_size > 64  # the real file is back


def test_records_round_trip(quantize_recipe, caplog):
    _, _, run = run_once(*quantize_recipe, caplog)
    stage_dir = run.out_dir / "quantize"
    record = StageRecord.read(stage_dir)
    assert record.to_dict() == json.loads((stage_dir / ".stage.json").read_text())
    assert record.key["libraries"]["torch"] and record.key["code"][STAGE_MODULE]
    run_record = RunRecord.read(run.out_dir)
    assert run_record.to_dict() == json.loads((run.out_dir / "run.json").read_text())
    assert run_record.schema_version == SCHEMA_VERSION and run_record.stage_entries()[0].name == "quantize"
    bench = BenchmarkResult("a", "q", 1, 2, {}, {}, [{"name": "a"}])
    bench.write(stage_dir)
    assert BenchmarkResult.from_file(stage_dir / "benchmark.json") == bench


def test_unknown_schema_version_is_a_clear_error(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "recipe": "x"}))
    with pytest.raises(RunFolderError, match=f"schema version {SCHEMA_VERSION + 1}.*Upgrade"):
        RunRecord.read(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"recipe": "x"}))
    with pytest.raises(RunFolderError, match="no schema_version"):
        RunRecord.read(tmp_path)


def test_record_of_an_older_version_is_a_cache_miss(quantize_recipe, caplog):
    _, _, run = run_once(*quantize_recipe, caplog)
    path = run.out_dir / "quantize" / ".stage.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 1}))
    status, why, _ = run_once(*quantize_recipe, caplog)
    assert status == "ran" and "schema version 1" in why, why


def test_work_left_under_another_key_is_named_then_dropped(quantize_recipe, caplog, monkeypatch):
    """A stage interrupted with work in its state folder (a search's study), then the code
    changes: the rerun starts afresh and the log names the left work and why it is not resumed."""
    real = STAGE_TYPES["quantize-dynamic"]

    def interrupted(spec, ctx):
        (ctx.state_dir / "study.db").write_text("an hour of trials")
        raise KeyboardInterrupt

    monkeypatch.setitem(STAGE_TYPES, "quantize-dynamic", dataclasses.replace(real, run=interrupted))
    with pytest.raises(KeyboardInterrupt):
        run_once(*quantize_recipe, caplog)
    monkeypatch.setitem(STAGE_TYPES, "quantize-dynamic", real)
    (left,) = (quantize_recipe[1]).glob(f"*/q/{STATE_DIR}/quantize-*")
    assert (left / "study.db").is_file() and json.loads((left / STATE_KEY_FILE).read_text())["code"]

    fingerprints = cachekey.code_fingerprints
    monkeypatch.setattr(cachekey, "code_fingerprints", lambda m: {**fingerprints(m), STAGE_MODULE: "edited"})
    status, _, run = run_once(*quantize_recipe, caplog)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert status == "ran" and any(
        f"{STATE_DIR}/{left.name} holds the work of an interrupted run" in w
        and "code changed: " in w
        and STAGE_MODULE in w
        for w in warnings
    ), warnings
    assert not (run.out_dir / STATE_DIR).exists()  # removed once the stage finished
