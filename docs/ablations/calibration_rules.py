"""Each calibration rule of ``calibrate-oos`` on uncalibrated classifiers: the bias it chooses on
the validation split, that bias's 95% bootstrap interval and standard deviation over resamples
of the validation rows, and the test accuracy it gives (test is read only to report).

Run on the local Hub (the dataset is ``clinc_oos``), one folder per model, e.g.::

    python -m hubtools hub exec -- python docs/ablations/calibration_rules.py \\
        outputs/<scope>/teacher/finetune outputs/<scope>/kd/distill
"""

from __future__ import annotations

import sys

import numpy as np

from recipes.measure.metrics import classification_metrics
from recipes.ml import calibration
from recipes.ml.data import RecipeData
from recipes.ml.modelio import load_classifier
from recipes.plan.schema import DatasetSpec

DATASET = {"id": "clinc_oos", "config": "plus", "label_column": "intent", "oos_label": "oos"}
GRID = np.arange(0.0, 8.0 + 1e-9, 0.25)


def main(folders: list[str]) -> None:
    data = RecipeData(DatasetSpec(**DATASET), seed=42)
    oos = data.oos_id
    splits = {role: data.split(role) for role in ("eval", "test")}
    print("| model | rule | bias [95% interval] (sd) | test accuracy | test oos recall |")
    print("|---|---|---|---:|---:|")
    for folder in folders:
        model = load_classifier(folder, threads=2)
        logits = {role: model.logits(list(s["text"])) for role, s in splits.items()}
        labels = {role: np.asarray(s["label"]) for role, s in splits.items()}
        for rule in calibration.RULES:
            c = calibration.choose(rule, logits["eval"], labels["eval"], oos, GRID)
            preds = calibration.shifted(logits["test"], oos, c.bias).argmax(axis=1)
            m = classification_metrics(preds, labels["test"], oos)
            print(
                f"| {folder} | {rule} | {c.bias:+.2f} [{c.low:+.2f}, {c.high:+.2f}] ({c.sd:.2f}) "
                f"| {100 * m['accuracy']:.2f}% | {100 * m['oos_recall']:.1f}% |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
