"""Off a terminal (a log file, CI), long work reports a few progress lines, never bar redraws."""

from __future__ import annotations

import subprocess
import sys

from .tiny import REPO_ROOT, clinc_dataset, tiny_bert, write_recipe


def test_training_logs_progress_lines_not_bars(tmp_path, clinc_dir):
    recipe = {
        "name": "ft",
        "description": "a tiny fine-tune and a distillation",
        "dataset": clinc_dataset(64, 16, 16),
        "models": {"base": str(tiny_bert(tmp_path / "bert"))},
        "stages": [
            {"name": "finetune", "type": "finetune", "input": "base", "epochs": 2, "batch_size": 8},
            {
                "name": "distill",
                "type": "distill",
                "input": "finetune",
                "keep_layers": [1],
                "epochs": 1,
                "batch_size": 8,
            },
        ],
    }
    path = write_recipe(tmp_path, recipe, "ft.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "recipes", "run", str(path), "--no-publish", "--output-dir", str(tmp_path / "out")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stderr
    assert "\r" not in log, "a progress bar was redrawn into the log"
    assert "it/s]" not in log and "Teacher logits:" not in log and "Map:" not in log
    steps = [line for line in log.splitlines() if "training step" in line]
    assert 2 <= len(steps) <= 25, steps  # about ten per training run
    assert any("(100%)" in line for line in steps)
    assert len(log.splitlines()) < 150
