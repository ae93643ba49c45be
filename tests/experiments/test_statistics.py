"""Paired statistics against independent computations: enumeration, scipy, hand-worked numbers."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from sparsity_gym.experiments.paired_intervals import (
    Interval,
    best_by_mean,
    compare,
    iqm,
    iqm_interval,
    mean_interval,
    oracle,
    paired_differences,
    probability_of_improvement,
    stratified_resamples,
    verdict,
)


def test_verdict_wins_only_above_zero_loses_only_below_ties_otherwise():
    assert verdict(0.01, 0.5) == "wins"
    assert verdict(-0.5, -0.01) == "loses"
    assert verdict(-0.1, 0.2) == "ties"
    assert verdict(0.0, 0.3) == "ties"  # an interval that touches zero does not win
    assert verdict(-0.3, 0.0) == "ties"
    assert verdict(float("nan"), float("nan")) == "ties"  # no interval (one seed)
    assert Interval(0.2, 0.1, 0.3, 3).verdict == "wins"


def test_three_seeds_interval_is_the_range_hand_worked():
    # 27 equally likely resamples; the smallest mean (all three = min) has mass 1/27 = 3.7% > 2.5%,
    # so the 2.5th and 97.5th percentiles are the min and the max of the three differences
    ci = mean_interval([[0.01, 0.02, 0.06]])
    assert ci.estimate == pytest.approx(0.03)
    assert (ci.low, ci.high) == (pytest.approx(0.01), pytest.approx(0.06))
    assert ci.verdict == "wins"
    assert mean_interval([[-0.01, 0.02, 0.06]]).verdict == "ties"
    assert mean_interval([[-0.01, -0.02, -0.06]]).verdict == "loses"


def _exact_bootstrap_cdf(values, at):
    """Exact bootstrap distribution of the mean by enumerating all n^n index tuples (equally likely)."""
    values = np.asarray(values)
    means = np.array([values[list(idx)].mean() for idx in itertools.product(range(len(values)), repeat=len(values))])
    return np.array([(means <= t + 1e-12).mean() for t in at])


def test_bootstrap_matches_brute_force_enumeration():
    values = np.array([0.3, -0.1, 0.7, 0.2, 0.05])
    samples = stratified_resamples([values], 20_000, np.random.default_rng(1)).mean(axis=1)
    grid = np.linspace(-0.1, 0.7, 17)
    empirical = np.array([(samples <= t + 1e-12).mean() for t in grid])
    np.testing.assert_allclose(empirical, _exact_bootstrap_cdf(values, grid), atol=0.01)
    ci = mean_interval([values])
    exact = _exact_bootstrap_cdf(values, [ci.low, ci.high])
    assert exact[0] >= 0.02 and exact[1] >= 0.97  # the percentiles of the exact distribution, up to MC error


def test_stratified_bootstrap_keeps_every_network_and_its_size():
    groups = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0])]
    rows = stratified_resamples(groups, 500, np.random.default_rng(0))
    assert rows.shape == (500, 5)
    assert set(np.unique(rows[:, :3])) <= {1.0, 2.0, 3.0} and set(np.unique(rows[:, 3:])) <= {10.0, 20.0}
    # pooled mean weighs each network once: (2 + 15) / 2
    assert mean_interval(groups).estimate == pytest.approx(8.5)
    # a single network with a single seed: no interval, so no verdict but ties
    one = mean_interval([[0.5]])
    assert np.isnan(one.low) and one.verdict == "ties"


def test_intervals_are_reproducible_and_depend_on_the_generator():
    values = [np.random.default_rng(3).normal(size=7)]
    assert mean_interval(values) == mean_interval(values)
    assert mean_interval(values, rng=np.random.default_rng(5)) != mean_interval(values, rng=np.random.default_rng(6))


def test_iqm_matches_scipy_trim_mean_and_hand_worked():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (1, 3, 4, 7, 8, 13):
        x = rng.normal(size=n)
        assert float(iqm(x)) == pytest.approx(stats.trim_mean(x, 0.25))
    assert float(iqm(np.array([100.0, 1.0, 2.0, 3.0, 4.0, -50.0, 5.0, 6.0]))) == pytest.approx(3.5)  # middle 4
    ci = iqm_interval([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    assert ci.estimate == pytest.approx(4.5) and ci.low <= 4.5 <= ci.high


def _brute_force_p(x, y):
    return np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y])


def test_probability_of_improvement_matches_mann_whitney_and_brute_force():
    stats = pytest.importorskip("scipy.stats")
    x1, y1 = [0.9, 0.8, 0.8, 0.95], [0.8, 0.85, 0.7]
    x2, y2 = [0.5, 0.6], [0.6, 0.6, 0.4]
    p = probability_of_improvement([x1, x2], [y1, y2])
    expected = (_brute_force_p(x1, y1) + _brute_force_p(x2, y2)) / 2
    assert p.estimate == pytest.approx(expected)
    u1 = stats.mannwhitneyu(x1, y1, alternative="two-sided").statistic / (len(x1) * len(y1))
    u2 = stats.mannwhitneyu(x2, y2, alternative="two-sided").statistic / (len(x2) * len(y2))
    assert p.estimate == pytest.approx((u1 + u2) / 2)
    assert 0 <= p.low <= p.estimate <= p.high <= 1
    # hand-worked: every x above every y -> 1; all equal -> 1/2 (ties count half)
    assert probability_of_improvement([[2, 3]], [[0, 1]]).estimate == 1.0
    assert probability_of_improvement([[1, 1]], [[1, 1]]).estimate == 0.5
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement([[1.0]], [[1.0], [2.0]])


def _r(policy, network, seed, acc, target=0.1, val=None):
    return SimpleNamespace(
        policy=policy,
        network=network,
        seed=seed,
        test_accuracy=acc,
        val_accuracy=acc if val is None else val,
        selector="magnitude",
        regrowth="random",
        granularity="weight",
        target_density=target,
    )


def test_paired_differences_pair_by_network_seed_and_setting():
    results = [_r("ppo", "a", s, 0.9 + 0.01 * s) for s in range(3)]
    results += [_r("cubic", "a", s, 0.88 + 0.01 * s) for s in (0, 1, 5)]  # seed 2 missing, seed 5 unpaired
    results += [_r("cubic", "a", s, 0.1, target=0.5) for s in range(3)]  # another setting: never paired
    setting = ("magnitude", "random", "weight", 0.1)
    diffs = paired_differences(results, "ppo", "cubic", setting)
    np.testing.assert_allclose(diffs["a"], [0.02, 0.02])


def test_oracle_picks_the_best_test_mean_per_network_and_the_first_of_a_tie():
    results = [
        _r("a", "n1", 0, 0.5),
        _r("a", "n1", 1, 0.7),  # mean 0.6
        _r("b", "n1", 0, 0.65),
        _r("b", "n1", 1, 0.65),  # mean 0.65
        _r("a", "n2", 0, 0.9),
        _r("b", "n2", 0, 0.8),
    ]
    assert oracle(results, ["a", "b"], None) == {"n1": "b", "n2": "a"}
    assert oracle(results, ["a"], None)["n1"] == "a"
    tie = [_r("a", "n1", 0, 0.5), _r("b", "n1", 0, 0.5)]
    assert oracle(tie, ["b", "a"], None) == {"n1": "b"}  # the first candidate of a tie


def test_compare_reference_and_oracle():
    rng = np.random.default_rng(0)
    results = []
    for net, shift in (("a", 0.0), ("b", -0.1)):
        for s in range(5):
            base = 0.8 + shift + rng.normal(0, 0.02)  # the seed's luck, shared by every policy (pairing)
            results += [
                _r("ppo", net, s, base + 0.01 + rng.normal(0, 0.002)),
                _r("cubic", net, s, base, val=0.5),
                _r("linear", net, s, base - 0.005 + (0.03 if net == "b" else 0.0), val=0.6),
            ]
    setting = ("magnitude", "random", "weight", 0.1)
    assert best_by_mean(results, ["cubic", "linear"], setting, "val_accuracy") == "linear"
    assert oracle(results, ["cubic", "linear"], setting) == {"a": "cubic", "b": "linear"}
    vs_cubic = compare(results, "ppo", "cubic", setting)
    assert vs_cubic.pooled.verdict == "wins" and vs_cubic.per_network["a"].verdict == "wins"
    assert vs_cubic.pooled.estimate == pytest.approx(
        np.mean(np.concatenate(list(paired_differences(results, "ppo", "cubic", setting).values())))
    )
    assert vs_cubic.p_improvement.n == 10 and vs_cubic.iqm.low > 0
    vs_oracle = compare(results, "ppo", oracle(results, ["cubic", "linear"], setting), setting)
    assert vs_oracle.per_network["b"].verdict == "loses"
    assert compare(results, "ppo", "nope", setting).pooled is None
