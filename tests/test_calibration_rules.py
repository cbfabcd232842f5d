"""The out-of-scope bias rules against hand computations, and the NLL rule's stability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recipes.ml import calibration


def test_nll_bias_matches_the_closed_form():
    # K labels with equal logits: p(oos) = e^b / (e^b + K - 1); the NLL is least where p(oos) is
    # the share q of oos rows, so b = log(q (K - 1) / (1 - q))
    k, oos_id = 5, 2
    labels = np.array([oos_id] * 30 + [0, 1, 3, 4] * 10)  # q = 30 / 70
    logits = np.zeros((len(labels), k))
    q = 30 / 70
    hand = math.log(q * (k - 1) / (1 - q))
    assert calibration.nll_bias(logits, labels, oos_id, -8, 8) == pytest.approx(hand, abs=1e-5)


def test_nll_bias_does_not_depend_on_the_rows_order():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, 8)) * 3
    labels = rng.integers(0, 8, size=500)
    order = rng.permutation(500)
    assert calibration.nll_bias(logits, labels, 3, 0, 8) == calibration.nll_bias(logits[order], labels[order], 3, 0, 8)


def test_grid_rule_takes_the_smallest_best_bias():
    # one oos row (label 1) whose oos logit is 1.0 below the best intent: any bias >= 1.0 gets it
    logits = np.array([[2.0, 1.0], [3.0, 0.0]])
    labels = np.array([1, 0])
    grid = np.arange(0, 4.01, 0.25)
    assert calibration.grid_argmax(logits, labels, 1, grid, "accuracy") == 1.25  # 1.0 ties the logits
    assert calibration.grid_scores(logits, labels, 1, grid, "accuracy")[0] == 0.5


@pytest.mark.parametrize("rule", calibration.RULES)
def test_a_choice_is_seeded_and_its_interval_brackets_it(rule):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(400, 5))
    labels = rng.integers(0, 5, size=400)
    grid = np.arange(-4, 4.01, 0.25)
    first = calibration.choose(rule, logits, labels, 4, grid, resamples=40)
    assert first == calibration.choose(rule, logits, labels, 4, grid, resamples=40)
    assert first.low <= first.bias <= first.high and first.resamples == 40 and first.sd >= 0
    assert set(first.interval()) == {"low", "high", "sd", "resamples", "confidence"}


def test_the_bagged_rule_is_the_median_of_the_grid_rules_choices():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(300, 4))
    labels = rng.integers(0, 4, size=300)
    grid = np.arange(0, 3.01, 0.5)
    picks = calibration.rerun(calibration.rule_for("grid", 3, grid), logits, labels, resamples=25)
    assert calibration.choose("bagged-grid", logits, labels, 3, grid, resamples=25).bias == np.median(picks)


def test_without_resamples_there_is_no_interval():
    logits, labels = np.zeros((10, 3)), np.array([2] * 5 + [0] * 5)
    choice = calibration.choose("nll", logits, labels, 2, np.arange(0, 4.01, 0.5), resamples=0)
    assert choice.interval() is None and choice.bias == pytest.approx(math.log(0.5 * 2 / 0.5), abs=1e-5)


def test_unknown_rule_names_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: nll, grid, bagged-grid"):
        calibration.rule_for("median", 0, np.arange(0, 1, 0.5))
