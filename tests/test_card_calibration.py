"""The model card's out-of-scope calibration section: the bias, objective and eval-split numbers of
the ``calibrate-oos`` stage on the published model's line, from a hand-written run; no section
for a line without one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hubtools.card import CardData, calibration_on_line, parse_markdown_table, render_card
from hubtools.runinfo import STARTING_MODEL, Hop, RunInfo, plan_layout
from recipes.runfolder import RunRecord
from recipes.stages import STAGE_TYPES

from .publish_fixtures import KD_QUANT_ROWS, STUDENT_ROW, TEACHER_REF, TEACHER_ROW, fake_runs, write_fake_run

BEFORE = {"accuracy": 0.87654321, "in_scope_accuracy": 0.93456789, "oos_recall": 0.51234, "oos_precision": 0.9}
AFTER = {"accuracy": 0.889876, "in_scope_accuracy": 0.941111, "oos_recall": 0.659999, "oos_precision": 0.8}
# The same numbers as the card prints them (4 decimals, as the benchmark table's accuracy).
SHOWN = {
    "before": {"Accuracy": "0.8765", "In-scope accuracy": "0.9346", "OOS recall": "0.5123"},
    "after": {"Accuracy": "0.8899", "In-scope accuracy": "0.9411", "OOS recall": "0.6600"},
}


def calibrate_metrics(bias: float, objective: str, before: dict = BEFORE, after: dict = AFTER) -> dict:
    """A ``calibrate-oos`` stage's metrics, shaped as recipes/stages/calibrate_oos.py returns them."""
    return {
        "oos_bias": bias,
        "objective": objective,
        "eval_before": dict(before),
        "eval_after": dict(after),
        "threshold_rule": {"threshold": 0.4, objective: 0.88},
        "grid": {"low": 0.0, "high": 8.0, "step": 0.25, "scores": [0.87, 0.88]},
    }


def calibrated_run(scope: Path, bias: float, objective: str) -> Path:
    """``student`` -> calibrate-oos -> dynamic int8 (published), the calibrate stage's metrics recorded."""
    runs = fake_runs()
    kd, kd_quant = runs["kd-quant"].parent / "kd", runs["kd-quant"]
    recipe = "kd-cal-quant"
    shutil.copytree(kd / "distill", scope / recipe / "calibrate")
    shutil.copytree(kd_quant / "quantize", scope / recipe / "quantize")
    run_dir = write_fake_run(
        scope,
        recipe,
        {"teacher": TEACHER_REF, "student": {"recipe": "kd", "stage": "distill"}},
        [
            {"name": "calibrate", "type": "calibrate-oos", "input": "student", "objective": objective},
            {"name": "quantize", "type": "quantize-dynamic", "input": "calibrate"},
            {"name": "benchmark", "type": "benchmark", "models": ["teacher", "student", "calibrate", "quantize"]},
        ],
        "quantize",
        [TEACHER_ROW, STUDENT_ROW, ("calibrate",) + STUDENT_ROW[1:], KD_QUANT_ROWS[2]],
        paths={"teacher": kd.parent / "teacher" / "finetune", "student": kd / "distill"},
    )
    record = RunRecord.read(run_dir)
    next(s for s in record.stages if s["name"] == "calibrate")["metrics"] = calibrate_metrics(bias, objective)
    record.write(run_dir)
    return run_dir


def card_text(run_dir: Path) -> tuple[CardData, str]:
    info = RunInfo(run_dir)
    card = CardData("local/calibrated").fill(info, plan_layout(info))
    return card, render_card(card).text


def section(text: str) -> str:
    start = text.index("## Out-of-scope calibration")
    return text[start : text.index("\n## ", start + 1)]


@pytest.mark.parametrize(
    "bias, objective, shown_bias, maximized",
    [
        (1.75, "accuracy", "+1.75", "to maximize accuracy;"),
        (3.5, "balanced", "+3.5", "to maximize the mean of in-scope accuracy and out-of-scope recall;"),
    ],
)
def test_card_shows_the_calibration_on_the_line(tmp_path, bias, objective, shown_bias, maximized):
    card, text = card_text(calibrated_run(tmp_path / "clinc_oos-plus_teacher_00000000", bias, objective))
    assert card.calibration["stage"] == "calibrate" and card.calibration["bias"] == bias
    body = section(text)
    assert "<!-- No out-of-scope calibration" not in text
    assert f"out-of-scope logit carries a bias of {shown_bias}, folded into the classifier's" in body
    assert "Stage `calibrate`\n(recipe `kd-cal-quant`)" in body
    assert "chose it on the `validation` split (the eval split)" in body  # the fixture's eval split
    assert maximized in " ".join(body.split())
    rows = parse_markdown_table(body, "Calibration")
    assert {r["Calibration"]: {k: v for k, v in r.items() if k != "Calibration"} for r in rows} == SHOWN
    # The benchmark table's row of the model before calibration is named as uncalibrated; the
    # teacher is not on this line and the calibrated ones are not named.
    assert card.calibration["uncalibrated"] == ["student"]
    assert (
        "The benchmark table measures the `test` split; `student` is from before this calibration on this model's "
        "line, so its row shows the model uncalibrated." in " ".join(body.split())
    )
    # The section comes after the benchmark table, before usage.
    assert text.index("## Benchmark") < text.index("## Out-of-scope calibration") < text.index("## How to use")


def test_without_the_split_names_the_card_says_the_eval_split(tmp_path):
    card, _ = card_text(calibrated_run(tmp_path / "clinc_oos-plus_teacher_00000000", 1.75, "accuracy"))
    card.measured_on = {k: v for k, v in card.measured_on.items() if k != "splits"}
    body = section(render_card(card).text)
    assert "chose it on the eval split\nto maximize accuracy" in body and "`validation`" not in body


def test_a_line_without_calibration_has_no_section():
    info = RunInfo(fake_runs()["kd-quant"])
    card = CardData("local/plain").fill(info, plan_layout(info))
    text = render_card(card).text
    assert card.calibration is None and card.calibration_table == ""
    assert "## Out-of-scope calibration" not in text and "Out-of-scope bias" not in text
    assert "<!-- No out-of-scope calibration on this model's line" in text


def hop(name: str, stage_type: str | None, metrics: dict | None = None) -> Hop:
    """A step of a line as ``RunInfo.lineage`` makes it, its publishing as ``run.json`` records it."""
    publishing = STAGE_TYPES[stage_type].publishing if stage_type else STARTING_MODEL
    return Hop(name, "r", stage_type, None, "pytorch", metrics=metrics or {}, publishing=publishing)


def test_calibration_on_line_takes_the_last_one_applied():
    first, last = calibrate_metrics(1.0, "accuracy"), calibrate_metrics(-0.5, "balanced", before=AFTER, after=BEFORE)
    hops = [  # newest first, as RunInfo.lineage gives them
        hop("quantize", "quantize-dynamic", {"size_mb": 1.0}),
        hop("cal2", "calibrate-oos", last),
        hop("cal1", "calibrate-oos", first),
        hop("student", None),
    ]
    keys = ("accuracy", "in_scope_accuracy", "oos_recall")
    assert calibration_on_line(hops) == {
        "stage": "cal2",
        "recipe": "r",
        "bias": -0.5,
        "rule": "grid",  # a record from before the rules had names
        "objective": "balanced",
        "interval": None,
        "eval_before": {k: AFTER[k] for k in keys},
        "eval_after": {k: BEFORE[k] for k in keys},
    }
    assert calibration_on_line(hops[2:])["stage"] == "cal1"
    assert calibration_on_line([hops[0], hops[3]]) is None
    assert calibration_on_line([]) is None
