"""Rules that choose the out-of-scope bias on the eval split, and how much each choice swings.

Adding ``b`` to the out-of-scope logit trades in-scope accuracy for oos recall. The rules:

* ``nll`` (the catalog's): the ``b`` that minimizes the eval split's mean negative
  log-likelihood. The loss is convex and smooth in ``b`` (a log-sum-exp minus a linear term),
  so it has one minimum, found to ``1e-6`` by a bounded scalar search, and every eval row
  informs it, in scope or not;
* ``grid`` (the rule before): the grid point with the best eval ``objective`` (accuracy, or the
  mean of in-scope accuracy and oos recall), the smallest on ties. A step function of ``b`` that
  on CLINC150 hinges on a handful of the 100 oos eval rows, so near-identical models get biases
  2 points apart;
* ``bagged-grid``: the median, over bootstrap resamples of the eval rows, of the grid rule's choice.

:func:`choose` applies a rule and also returns its bootstrap spread (:func:`bias_interval`):
the rule rerun on resamples of the eval rows, what a card shows next to the bias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..measure.metrics import classification_metrics

RULES = ("nll", "grid", "bagged-grid")
OBJECTIVES = ("accuracy", "balanced")
#: Resamples of the eval rows behind a bias interval and the bagged rule, and their seed.
RESAMPLES = 200
SEED = 0
CONFIDENCE = 0.95

Rule = Callable[[np.ndarray, np.ndarray], float]


def shifted(logits: np.ndarray, oos_id: int, bias: float) -> np.ndarray:
    out = np.array(logits, dtype=float, copy=True)
    out[:, oos_id] += bias
    return out


def grid_scores(logits: np.ndarray, labels: np.ndarray, oos_id: int, grid: np.ndarray, objective: str) -> list[float]:
    """``objective`` on the eval rows at each bias of ``grid``."""
    return [classification_metrics(shifted(logits, oos_id, b).argmax(-1), labels, oos_id)[objective] for b in grid]


def grid_argmax(logits: np.ndarray, labels: np.ndarray, oos_id: int, grid: np.ndarray, objective: str) -> float:
    """The bias of ``grid`` with the best ``objective`` (the smallest on ties)."""
    return float(grid[int(np.argmax(grid_scores(logits, labels, oos_id, grid, objective)))])


def mean_nll(logits: np.ndarray, labels: np.ndarray, oos_id: int, bias: float) -> float:
    """The rows' mean negative log-likelihood with ``bias`` on the oos logit. The per-row losses
    are summed in sorted order, so the value (and the bias that minimizes it) does not depend on
    the rows' order."""
    z = shifted(logits, oos_id, bias)
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    losses = log_norm - z[np.arange(len(labels)), labels]
    return float(np.sort(losses).sum() / len(losses))


def nll_bias(logits: np.ndarray, labels: np.ndarray, oos_id: int, low: float, high: float) -> float:
    """The bias in ``[low, high]`` that minimizes :func:`mean_nll` (bounded Brent search)."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(
        lambda b: mean_nll(logits, labels, oos_id, b), bounds=(low, high), method="bounded", options={"xatol": 1e-6}
    )
    return float(found.x)


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``resamples`` bootstrap resamples of ``n`` rows (row indices, with replacement)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def rerun(rule: Rule, logits: np.ndarray, labels: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED):
    """The rule's bias on each bootstrap resample of the eval rows."""
    return np.array([rule(logits[i], labels[i]) for i in resample_indices(len(labels), resamples, seed)])


@dataclass(frozen=True)
class Choice:
    """A rule's bias and its spread over resamples of the eval rows (``resamples`` 0: not measured)."""

    bias: float
    low: float | None = None
    high: float | None = None
    sd: float | None = None
    resamples: int = 0

    def interval(self) -> dict | None:
        if not self.resamples:
            return None
        return {
            "low": self.low,
            "high": self.high,
            "sd": self.sd,
            "resamples": self.resamples,
            "confidence": CONFIDENCE,
        }


def spread(bias: float, picks: np.ndarray) -> Choice:
    """``bias`` with the percentile interval and standard deviation of ``picks``."""
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(picks, [tail, 100 - tail])
    return Choice(bias, float(low), float(high), float(picks.std()), len(picks))


def rule_for(rule: str, oos_id: int, grid: np.ndarray, objective: str = "accuracy") -> Rule:
    """``rule`` of :data:`RULES` but ``bagged-grid`` as ``fn(logits, labels) -> bias``."""
    if rule == "grid":
        return lambda z, y: grid_argmax(z, y, oos_id, grid, objective)
    if rule == "nll":
        return lambda z, y: nll_bias(z, y, oos_id, float(grid[0]), float(grid[-1]))
    raise ValueError(f"unknown calibration rule {rule!r}; allowed: {', '.join(RULES)}")


def choose(
    rule: str,
    logits: np.ndarray,
    labels: np.ndarray,
    oos_id: int,
    grid: np.ndarray,
    objective: str = "accuracy",
    resamples: int = RESAMPLES,
) -> Choice:
    """The bias ``rule`` chooses on the eval rows and its spread over ``resamples`` bootstrap
    resamples of them (none with 0). ``bagged-grid`` is the median of the grid rule's choices on
    the resamples, so its spread is theirs."""
    if rule == "bagged-grid":
        picks = rerun(rule_for("grid", oos_id, grid, objective), logits, labels, max(resamples, 1))
        return spread(float(np.median(picks)), picks)
    fn = rule_for(rule, oos_id, grid, objective)
    bias = fn(logits, labels)
    return spread(bias, rerun(fn, logits, labels, resamples)) if resamples else Choice(bias)
