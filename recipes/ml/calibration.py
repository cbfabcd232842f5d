"""Rules that choose the out-of-scope bias on the eval split, and how much each choice swings.

Adding ``b`` to the out-of-scope logit trades in-scope accuracy for oos recall. The rules:

* ``nll`` (the catalog's): the ``b`` that minimizes the eval split's mean negative
  log-likelihood. The loss is convex and smooth in ``b`` (a log-sum-exp minus a linear term),
  so it has one minimum, found to ``1e-6`` by a bounded scalar search, and every eval row
  informs it, in scope or not;
* ``accuracy`` / ``balanced`` (the old rule): the grid point with the best eval accuracy (or
  mean of in-scope accuracy and oos recall), the smallest on ties. A step function of ``b``
  that on CLINC150 hinges on a handful of the 100 oos eval rows, so near-identical models get
  biases 2 points apart;
* ``bagged-accuracy``: the median, over bootstrap resamples of the eval rows, of the grid
  rule's choice.

:func:`bias_interval` resamples the eval rows and reruns a rule: the spread a card shows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..measure.metrics import classification_metrics

#: The rules a ``calibrate-oos`` stage may take; the grid's two objectives, then the others.
GRID_RULES = ("accuracy", "balanced")
RULES = (*GRID_RULES, "nll", "bagged-accuracy")
#: Resamples of the eval rows behind a bias interval and behind the bagged rule.
BIAS_RESAMPLES = 200
BIAS_SEED = 0
BIAS_CONFIDENCE = 0.95

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


def resample_indices(n: int, resamples: int = BIAS_RESAMPLES, seed: int = BIAS_SEED) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bagged_bias(logits: np.ndarray, labels: np.ndarray, oos_id: int, grid: np.ndarray, objective: str) -> float:
    """The median over bootstrap resamples of the eval rows of the grid rule's bias."""
    picks = [grid_argmax(logits[i], labels[i], oos_id, grid, objective) for i in resample_indices(len(labels))]
    return float(np.median(picks))


def rule_for(name: str, oos_id: int, grid: np.ndarray) -> Rule:
    """``name`` of :data:`RULES` as ``rule(logits, labels) -> bias``."""
    if name in GRID_RULES:
        return lambda z, y: grid_argmax(z, y, oos_id, grid, name)
    if name == "nll":
        return lambda z, y: nll_bias(z, y, oos_id, float(grid[0]), float(grid[-1]))
    if name == "bagged-accuracy":
        return lambda z, y: bagged_bias(z, y, oos_id, grid, "accuracy")
    raise ValueError(f"unknown calibration rule {name!r}; allowed: {', '.join(RULES)}")


def bias_interval(
    rule: Rule,
    logits: np.ndarray,
    labels: np.ndarray,
    resamples: int = BIAS_RESAMPLES,
    seed: int = BIAS_SEED,
    confidence: float = BIAS_CONFIDENCE,
) -> dict:
    """The rule rerun on bootstrap resamples of the eval rows: the percentile interval of its
    bias, and the standard deviation (what a retrain or another eval sample could move it by)."""
    picks = np.array([rule(logits[i], labels[i]) for i in resample_indices(len(labels), resamples, seed)])
    tail = 100 * (1 - confidence) / 2
    return {
        "low": float(np.percentile(picks, tail)),
        "high": float(np.percentile(picks, 100 - tail)),
        "sd": float(picks.std()),
        "resamples": resamples,
        "confidence": confidence,
    }
