"""``calibrate-oos``: choose the out-of-scope decision rule on the eval split, fold it into the model.

Both CLINC150 models call about half of the out-of-scope queries an intent. Adding a constant
``b`` to the out-of-scope logit moves that trade-off; because the logit is ``W x + bias``,
adding ``b`` to the classifier's bias for that label is the same rule, carried by every
runtime (``pipeline()``, the ONNX export, int8) with no code. ``b`` is chosen on the eval
split only, for the recipe's objective; the test split is never looked at.
"""

from __future__ import annotations

import shutil
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from ..measure.metrics import classification_metrics
from ..plan.bounds import FiniteFloat, Text
from .base import TRAINING_LIBRARIES, Publishing, StageContext, StageSpec, register


class CalibrateOosSpec(StageSpec):
    """Choose the out-of-scope decision rule on the eval split and fold it into ``input``'s weights.

    The rule adds a constant ``b`` to the out-of-scope logit, which moves the trade-off between
    calling a query an intent and calling it out of scope; the test split is never looked at.
    ``rule`` chooses ``b`` on the eval split (:mod:`recipes.ml.calibration`):

    * ``nll`` (default): the ``b`` in ``[low, high]`` that minimizes the eval rows' mean negative
      log-likelihood, a smooth convex function of ``b`` with one minimum, found to 1e-6. Every eval
      row informs it, so it does not hinge on a handful of out-of-scope rows: on CLINC150 it
      swings 2.5-3.5x less over resamples of the eval split than ``grid`` (docs/results.md);
    * ``grid``: the grid point from ``low`` to ``high`` by ``step`` with the best ``objective``
      (the smallest on ties), the rule before;
    * ``bagged-grid``: the median of the grid rule's choice over ``resamples`` bootstrap resamples
      of the eval rows.

    The stage reruns the rule on ``resamples`` bootstrap resamples of the eval rows and records
    the bias's 95% percentile interval and standard deviation (``bias_interval``), which the card
    shows. Since the logit is ``W x + bias``, the stage adds ``b`` to the classifier's bias for
    that label, so ``pipeline()``, the ONNX export and int8 carry the rule unchanged, with no
    code. The max-probability threshold rule (call a row out of scope when no intent reaches
    probability t) is measured alongside for comparison, but only the bias can be folded into the
    weights. The record keeps ``b``, its interval, the rule, the eval metrics before and after and
    the threshold rule's best.

    The dataset must name its out-of-scope label (``dataset.oos_label``). ``without_oos_label:
    pass`` lets a recipe made for any dataset keep the stage: on a dataset with no ``oos_label``
    it passes ``input`` on unchanged (the catalog does this); the default refuses such a dataset
    at ``recipes check``.

    .. code-block:: yaml

        stages:
          - name: calibrate
            type: calibrate-oos
            input: distill
            rule: nll               # or grid (with objective: accuracy or balanced), bagged-grid
    """

    type: Literal["calibrate-oos"]
    input: Text = Field(description="A PyTorch fp32 classifier: a key of `models` or an earlier stage.")
    keeps_layers: ClassVar[bool] = True  # its model has its input's layers (checked in recipes.plan.preflight)
    rule: Literal["nll", "grid", "bagged-grid"] = Field(
        "nll",
        description="How the bias is chosen on the eval split: nll (the least negative log-likelihood), grid (the "
        "best `objective` on the grid), bagged-grid (the median of the grid rule over bootstrap resamples).",
    )
    objective: Literal["accuracy", "balanced"] = Field(
        "accuracy",
        description="What the grid rules maximize: accuracy, or balanced (the mean of in-scope accuracy and oos "
        "recall); also the threshold rule's objective.",
    )
    resamples: int = Field(
        200,
        ge=0,
        le=10_000,
        description="Bootstrap resamples of the eval rows behind the bias's 95% interval (and the bagged rule); "
        "0: no interval.",
    )
    low: FiniteFloat = Field(
        0.0, ge=-20, le=20, description="Smallest bias tried (the nll rule's lower bound), in logits."
    )
    high: FiniteFloat = Field(
        8.0, ge=-20, le=20, description="Largest bias tried (the nll rule's upper bound), in logits (at least `low`)."
    )
    step: FiniteFloat = Field(
        0.25, gt=0, le=10, description="Distance between the biases tried; at most 10,000 of them."
    )
    without_oos_label: Literal["error", "pass"] = Field(
        "error", description="On a dataset with no `oos_label`: error, or pass the model on unchanged."
    )

    @model_validator(mode="after")
    def _range(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if (self.high - self.low) / self.step > 10_000:
            raise ValueError("the grid from low to high by step has more than 10000 points; take a larger step")
        return self

    @property
    def needs_oos_label(self) -> bool:  # type: ignore[override]
        return self.without_oos_label == "error"

    def refs(self) -> dict[str, str]:
        return {"input": self.input}

    @property
    def grid(self) -> np.ndarray:
        return np.arange(self.low, self.high + self.step / 2, self.step)


def best_threshold(logits: np.ndarray, labels: np.ndarray, oos_id: int, objective: str) -> dict:
    """The max-probability rule for comparison: below ``t`` the row is called out of scope."""
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    intents = probs.copy()
    intents[:, oos_id] = -1
    top, pick = intents.max(-1), intents.argmax(-1)
    best = {"threshold": 0.0, objective: -1.0}
    for t in np.linspace(0, 1, 101):
        preds = np.where(top < t, oos_id, pick)
        score = classification_metrics(preds, labels, oos_id)[objective]
        if score > best[objective]:
            best = {"threshold": float(t), objective: score}
    return best


def classifier_head(model, num_labels: int):
    """The Linear layer whose bias is each label's: where the model's family keeps it
    (:mod:`recipes.ml.families`), else the last Linear layer with one output per label."""
    import torch

    from ..ml.families import family_of

    family = family_of(model.config)
    candidates = [family.classifier_head(model)] if family is not None else list(model.modules())
    heads = [m for m in candidates if isinstance(m, torch.nn.Linear) and m.out_features == num_labels]
    if not heads or heads[-1].bias is None:
        raise ValueError(f"{type(model).__name__} has no classification layer with a bias for its {num_labels} labels")
    return heads[-1]


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="calibration",
    relation=None,
    repo_dir="",
    usage="usage/pytorch.md.j2",
    phrase="out-of-scope bias calibrated on the eval split (rule {rule})",
    card_section="calibration",
)


@register("calibrate-oos", CalibrateOosSpec, libraries=TRAINING_LIBRARIES, publishing=PUBLISHING)
def run(spec: CalibrateOosSpec, ctx: StageContext) -> dict:
    import torch
    from transformers import AutoTokenizer

    from ..ml import calibration
    from ..ml.modelio import auto_classifier, load_classifier, save_pretrained_model

    oos_id = ctx.data.oos_id
    if oos_id is None:  # without_oos_label: pass (the spec refuses the dataset otherwise)
        shutil.copytree(ctx.inputs["input"], ctx.out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        ctx.log.info("  the dataset has no out-of-scope label: %s passed on unchanged", spec.input)
        return {"oos_bias": 0.0, "objective": spec.objective, "passed": "the dataset has no out-of-scope label"}
    eval_rows = ctx.data.split("eval")
    clf = load_classifier(ctx.inputs["input"], ctx.threads)
    logits = clf.logits(list(eval_rows["text"]), desc="Eval logits")
    labels = np.asarray(eval_rows["label"])
    choice = calibration.choose(spec.rule, logits, labels, oos_id, spec.grid, spec.objective, spec.resamples)
    bias = choice.bias
    model = auto_classifier(ctx.inputs["input"])
    with torch.no_grad():
        classifier_head(model, model.config.num_labels).bias[oos_id] += bias
    save_pretrained_model(model, AutoTokenizer.from_pretrained(ctx.inputs["input"]), ctx.out_dir)
    interval = choice.interval()
    ctx.log.info(
        "  oos bias %+.3f chosen by %s on %d eval rows%s",
        bias,
        spec.rule,
        len(labels),
        f" (95% interval over {choice.resamples} resamples: {choice.low:+.2f} to {choice.high:+.2f})"
        if interval
        else "",
    )
    after = calibration.shifted(logits, oos_id, bias)
    return {
        "oos_bias": bias,
        "rule": spec.rule,
        "objective": spec.objective,
        "bias_interval": interval,
        "eval_before": classification_metrics(logits.argmax(-1), labels, oos_id),
        "eval_after": classification_metrics(after.argmax(-1), labels, oos_id),
        "eval_nll": {
            "before": calibration.mean_nll(logits, labels, oos_id, 0.0),
            "after": calibration.mean_nll(logits, labels, oos_id, bias),
        },
        "threshold_rule": best_threshold(logits, labels, oos_id, spec.objective),
        "grid": {
            "low": spec.low,
            "high": spec.high,
            "step": spec.step,
            "scores": calibration.grid_scores(logits, labels, oos_id, spec.grid, spec.objective),
        },
    }
