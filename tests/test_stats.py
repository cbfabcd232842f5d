"""The statistics every comparison carries, against hand computations (issue: honest numbers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recipes.measure import stats


def _pair(won: int, lost: int, ties_right: int, ties_wrong: int = 0):
    """Correct-answer vectors of a model and a baseline with the given disagreement counts."""
    model = [True] * won + [False] * lost + [True] * ties_right + [False] * ties_wrong
    base = [False] * won + [True] * lost + [True] * ties_right + [False] * ties_wrong
    return np.array(model), np.array(base)


def test_identical_models_differ_by_nothing_for_sure():
    labels = np.array([0, 1, 2, 2, 1, 0, 2])
    preds = np.array([0, 1, 1, 2, 0, 0, 2])
    out = stats.compare(preds, preds.copy(), labels, oos_id=2)
    for metric in ("accuracy", "in_scope_accuracy", "oos_recall"):
        d = out[metric]
        assert (d["difference"], d["low"], d["high"], d["won"], d["lost"], d["p_value"]) == (0, 0, 0, 0, 0, 1.0)
        assert d["verdict"] == stats.NO_LOSS


def test_mcnemar_exact_p_of_a_known_flip_count():
    model, base = _pair(won=3, lost=7, ties_right=90)
    # two-sided binomial, 3 of 10 at p=1/2: 2 * (C(10,0)+C(10,1)+C(10,2)+C(10,3)) / 2**10
    hand = 2 * sum(math.comb(10, k) for k in range(4)) / 2**10
    assert stats.mcnemar_exact(model, base) == pytest.approx(hand) == pytest.approx(0.34375)
    d = stats.difference(model, base)
    assert (d.won, d.lost, d.rows) == (3, 7, 100)
    assert d.difference == pytest.approx(-0.04)


def test_paired_bootstrap_of_two_rows_by_hand():
    # one row won, one tied: a resample's mean difference is 0, 1/2 or 1 with chances 1/4, 1/2, 1/4,
    # so the 2.5th and 97.5th percentiles are 0 and 1
    low, high = stats.paired_bootstrap(np.array([True, True]), np.array([False, True]), seed=3)
    assert (low, high) == (0.0, 1.0)


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    model, base = _pair(won=12, lost=8, ties_right=900, ties_wrong=80)
    first = stats.paired_bootstrap(model, base, seed=7)
    assert first == stats.paired_bootstrap(model, base, seed=7)
    low, high = first
    assert low < 0.004 < high
    # the paired interval depends on the 20 disagreements only: far tighter than one accuracy's own
    own_low, own_high = stats.proportion_interval(int(model.sum()), len(model))
    assert high - low < own_high - own_low


def test_constant_differences_have_no_spread():
    model, base = _pair(won=5, lost=0, ties_right=0)
    assert stats.paired_bootstrap(model, base) == (1.0, 1.0)


def test_verdicts_follow_the_interval():
    assert stats.verdict(0.001, 0.01) == stats.BETTER
    assert stats.verdict(-0.0049, 0.01) == stats.NO_LOSS
    assert stats.verdict(-0.012, -0.0003) == stats.WORSE
    assert stats.verdict(-0.012, 0.004) == stats.UNDECIDED


def test_proportion_interval_is_wilson():
    low, high = stats.proportion_interval(4890, 5500)
    z = 1.959963984540054
    p, n = 4890 / 5500, 5500
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_oos_score_and_threshold_free_metrics_by_hand():
    assert stats.oos_scores(np.array([[1.0, 5.0, 2.0]]), oos_id=1).tolist() == [3.0]
    # oos rows score 3 and 1, in-scope rows 2 and 0: 3 of the 4 (oos, in-scope) pairs are ordered
    # right; average precision = 1/2 * 1 + 1/2 * 2/3
    logits = np.array([[0.0, 3.0], [0.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    labels = np.array([1, 1, 0, 0])
    out = stats.oos_detection(logits, labels, oos_id=1)
    assert out == pytest.approx({"oos_auroc": 0.75, "oos_aupr": 0.5 + 1 / 3})


def test_threshold_free_metrics_agree_with_scikit_learn_and_ignore_the_bias():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 6))
    labels = rng.integers(0, 6, size=300)
    logits[labels == 4, 4] += 1.5
    out = stats.oos_detection(logits, labels, oos_id=4)
    score = logits[:, 4] - np.delete(logits, 4, axis=1).max(axis=1)
    assert out["oos_auroc"] == pytest.approx(roc_auc_score(labels == 4, score))
    assert out["oos_aupr"] == pytest.approx(average_precision_score(labels == 4, score))
    biased = logits.copy()
    biased[:, 4] += 2.5
    assert stats.oos_detection(biased, labels, oos_id=4) == pytest.approx(out)


def test_metrics_without_an_oos_label():
    labels = np.array([0, 1, 1, 0])
    assert set(stats.compare(np.array([0, 1, 0, 0]), labels, labels)) == {"accuracy"}
    assert set(stats.intervals(labels, labels)) == {"accuracy"}
