"""The hierarchical (two-stage) bootstrap against an exact enumeration of every two-stage resample."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from sparsity_gym.experiments.paired_intervals import (
    compare,
    hierarchical_improvement,
    hierarchical_interval,
    hierarchical_resamples,
    iqm,
    iqm_interval,
    mean_interval,
    network_draws,
    probability_of_improvement,
)

R = 20_000


def _slot_draws(values):
    """Every ordered draw with replacement of ``values`` (as many as there are), each equally likely."""
    return [values[list(idx)] for idx in itertools.product(range(len(values)), repeat=len(values))]


def _exact(groups, statistic):
    """``(atoms, probabilities)`` of ``statistic(list of drawn slots)`` over every two-stage resample."""
    groups = [np.asarray(g, dtype=float) for g in groups]
    n = len(groups)
    outcomes: dict[float, float] = {}
    for picks in itertools.product(range(n), repeat=n):  # stage 1: every ordered draw of networks
        per_slot = [_slot_draws(groups[k]) for k in picks]
        for slots in itertools.product(*per_slot):  # stage 2: every draw of seeds within each drawn network
            p = (1 / n**n) * np.prod([1 / len(options) for options in per_slot])
            value = round(float(statistic(slots)), 12)
            outcomes[value] = outcomes.get(value, 0.0) + p
    atoms = np.array(sorted(outcomes))
    return atoms, np.array([outcomes[a] for a in atoms])


def _mean_of_means(slots):
    return np.mean([s.mean() for s in slots])


def _quantile(atoms, probs, q):
    """The exact distribution's ``q`` quantile: the smallest atom whose CDF reaches ``q``."""
    return atoms[np.searchsorted(np.cumsum(probs), q - 1e-12)]


def _check_against_exact(samples, atoms, probs, interval):
    mean, sd = float(atoms @ probs), float(np.sqrt(((atoms - atoms @ probs) ** 2) @ probs))
    assert abs(samples.mean() - mean) < 4.5 * sd / np.sqrt(len(samples))
    cdf = np.cumsum(probs)
    empirical = np.array([(samples <= a + 1e-9).mean() for a in atoms])
    assert np.all(np.abs(empirical - cdf) <= 4.5 * np.sqrt(cdf * (1 - cdf) / len(samples)) + 1e-9)
    # the percentile interval lies between the exact quantiles a Monte-Carlo step either side of 2.5% / 97.5%
    delta = 0.01
    assert (
        _quantile(atoms, probs, 0.025 - delta) - 1e-9 <= interval.low <= _quantile(atoms, probs, 0.025 + delta) + 1e-9
    )
    assert (
        _quantile(atoms, probs, 0.975 - delta) - 1e-9 <= interval.high <= _quantile(atoms, probs, 0.975 + delta) + 1e-9
    )


@pytest.mark.parametrize("groups", [([0.1, -0.2], [0.4, 0.7]), ([0.3], [-0.1, 0.2, 0.6])])
def test_mean_matches_the_exact_two_stage_distribution(groups):
    atoms, probs = _exact(groups, _mean_of_means)
    samples = np.nanmean(hierarchical_resamples(groups, R, np.random.default_rng(1)), axis=2).mean(axis=1)
    interval = hierarchical_interval(groups, "mean", R, np.random.default_rng(2))
    assert interval.estimate == pytest.approx(np.mean([np.mean(g) for g in groups]))
    _check_against_exact(samples, atoms, probs, interval)


def test_iqm_matches_the_exact_two_stage_distribution():
    groups = ([0.1, -0.2], [0.4, 0.7])

    def pooled_iqm(slots):
        return iqm(np.concatenate(slots))

    atoms, probs = _exact(groups, pooled_iqm)
    x = hierarchical_resamples(groups, R, np.random.default_rng(1))
    samples = iqm(x.reshape(R, -1))
    interval = hierarchical_interval(groups, "iqm", R, np.random.default_rng(2))
    assert interval.estimate == pytest.approx(iqm(np.array([0.1, -0.2, 0.4, 0.7])))
    _check_against_exact(samples, atoms, probs, interval)


def test_probability_of_improvement_matches_the_exact_two_stage_distribution():
    xs, ys = ([0.5, 0.35], [0.9, 0.1]), ([0.3, 0.4], [0.2, 0.2])
    outcomes: dict[float, float] = {}
    for picks in itertools.product(range(2), repeat=2):
        per_slot = [list(itertools.product(_slot_draws(np.array(xs[k])), _slot_draws(np.array(ys[k])))) for k in picks]
        for slots in itertools.product(*per_slot):
            value = round(
                float(np.mean([np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y]) for x, y in slots])), 12
            )
            outcomes[value] = outcomes.get(value, 0.0) + 0.25 / 16**2
    atoms = np.array(sorted(outcomes))
    probs = np.array([outcomes[a] for a in atoms])
    assert probs.sum() == pytest.approx(1.0)
    interval = hierarchical_improvement(xs, ys, R, np.random.default_rng(3))
    # estimate: network 1 wins 3 of 4 pairs, network 2 wins 2 of 4: (0.75 + 0.5) / 2
    assert interval.estimate == pytest.approx(0.625)
    mean = float(atoms @ probs)
    q = lambda p: _quantile(atoms, probs, p)  # noqa: E731
    assert q(0.015) - 1e-9 <= interval.low <= q(0.035) + 1e-9
    assert q(0.965) - 1e-9 <= interval.high <= q(0.985) + 1e-9
    assert abs(mean - 0.625) < 1e-12  # the bootstrap distribution is centred on the estimate here


def test_one_network_is_the_seed_bootstrap():
    values = [np.array([0.3, -0.1, 0.7, 0.2])]
    assert hierarchical_interval(values, "mean") == mean_interval(values)
    assert hierarchical_interval(values, "iqm") == iqm_interval(values)
    other = [np.array([0.1, 0.0, 0.5])]
    assert hierarchical_improvement(values, other) == probability_of_improvement(values, other)
    one = hierarchical_interval([[0.5]])
    assert np.isnan(one.low) and one.verdict == "ties"
    assert np.isfinite(hierarchical_interval([[0.5], [0.7]]).low)  # one seed each, but networks to resample


def test_equal_differences_give_a_zero_width_interval():
    groups = [np.full(3, 0.25), np.full(2, 0.25), np.full(4, 0.25)]
    for statistic in ("mean", "iqm"):
        interval = hierarchical_interval(groups, statistic)
        assert interval.low == pytest.approx(0.25) and interval.high == pytest.approx(0.25)
        assert interval.verdict == "wins"
    assert hierarchical_improvement(groups, groups).low == pytest.approx(0.5)
    assert hierarchical_improvement(groups, groups).high == pytest.approx(0.5)


def test_slots_hold_only_their_network_and_networks_are_drawn_evenly():
    groups = [np.array([1.0, 2.0]), np.array([10.0, 20.0, 30.0]), np.array([100.0])]
    draws = network_draws(3, 6000, np.random.default_rng(0))
    x = hierarchical_resamples(groups, 6000, np.random.default_rng(1), draws)
    assert x.shape == (6000, 3, 3)
    for k, g in enumerate(groups):
        slots = x[draws == k]
        assert set(np.unique(slots[:, : g.size])) <= set(g) and np.isnan(slots[:, g.size :]).all()
    np.testing.assert_allclose(np.bincount(draws.ravel()) / draws.size, 1 / 3, atol=0.02)
    assert hierarchical_interval(groups) == hierarchical_interval(groups)  # fixed seed: the same every time
    with pytest.raises(ValueError, match="statistic"):
        hierarchical_interval(groups, "median")


def _r(policy, network, seed, acc):
    return SimpleNamespace(
        policy=policy, network=network, seed=seed, test_accuracy=acc, val_accuracy=acc,
        selector="magnitude", regrowth="random", granularity="weight", target_density=0.1,
    )  # fmt: skip


def test_compare_hierarchical_pools_over_networks():
    rng = np.random.default_rng(4)
    results = []
    for net in ("a", "b", "c"):
        shift = {"a": 0.02, "b": -0.01, "c": 0.05}[net]
        for seed in range(3):
            base = float(rng.uniform(0.5, 0.6))
            results += [_r("ref", net, seed, base), _r("ppo", net, seed, base + shift + 0.001 * seed)]
    fixed = compare(results, "ppo", "ref")
    sampled = compare(results, "ppo", "ref", hierarchical=True)
    diffs = [np.array([s + 0.001 * i for i in range(3)]) for s in (0.02, -0.01, 0.05)]
    for got, want in (
        (sampled.pooled, hierarchical_interval(diffs)),
        (sampled.iqm, hierarchical_interval(diffs, "iqm")),
    ):
        assert (got.estimate, got.low, got.high) == pytest.approx((want.estimate, want.low, want.high), abs=1e-12)
    assert sampled.pooled.estimate == pytest.approx(fixed.pooled.estimate)
    # the spread between networks widens the interval over the one with networks held fixed
    assert sampled.pooled.high - sampled.pooled.low > fixed.pooled.high - fixed.pooled.low
    assert sampled.per_network == fixed.per_network
