"""Comparisons paired by seed, with bootstrap intervals, and rliable's pooled statistics.

Every comparison runs its policies on the same networks and seeds (same initialisation, same data order), so
the difference between a policy and a reference is taken seed by seed: ``d[network][seed] = policy −
reference`` at the same setting. A verdict rests on the 95% bootstrap interval of the mean paired difference
(DESIGN.md, "Statistics of a comparison"): **wins** when the whole interval lies above zero, **loses** when it
lies below, **ties** otherwise (an interval that touches zero, or none: fewer than two seeds give none).

Intervals are percentile bootstraps (Efron & Tibshirani 1993, ch. 13) with :data:`RESAMPLES` resamples drawn by
``np.random.default_rng(SEED)`` unless a generator is passed, so a report is the same every time it is written.
For one network the seeds are resampled; pooled over networks the bootstrap is *stratified*: seeds are
resampled within each network, every network kept (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice", §4, "stratified bootstrap confidence intervals"). Pooled over networks the module also gives
rliable's two aggregate statistics (ibid., §4.1 and §4.3), implemented here in numpy:

* the **interquartile mean** (IQM): the mean of the middle 50% of all (network, seed) values, i.e.
  ``scipy.stats.trim_mean(x, 0.25)`` (``int(0.25 n)`` values cut from each end);
* the **probability of improvement** P(X > Y): per network the Mann–Whitney statistic
  ``mean_ij([x_i > y_j] + ½[x_i = y_j])`` over every pair of runs, averaged over networks; its bootstrap
  resamples X's and Y's runs independently within each network (rliable's ``StratifiedIndependentBootstrap``).

Over a *population* of networks (a verdict about unseen networks) the bootstrap is **hierarchical** (two-stage,
both stages with replacement; Davison & Hinkley 1997, "Bootstrap Methods and their Application", §3.8): each
resample draws as many networks as there are, then the seeds within every drawn network (a network drawn twice
counts twice, with a draw of seeds each time), and takes the mean over drawn networks of each one's mean, the
IQM of every drawn value, or P(X > Y) averaged over the drawn networks. With one network it is the seed bootstrap.

Percentile intervals from few seeds are narrow (with 3 seeds the 95% interval of a mean is the range of the
three values), so a verdict from 3 seeds is weak evidence; the report prints the seed count beside it.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsity_gym.core.checks import check_choice

RESAMPLES = 10_000
"""Bootstrap resamples of every interval."""
SEED = 20211  # fixed: a report's intervals do not change when it is written again
"""Seed of the default ``np.random.Generator`` of the bootstrap."""
CONFIDENCE = 0.95
VERDICTS = ("wins", "loses", "ties")
SETTING_KEYS = ("selector", "regrowth", "granularity", "target_density")
"""The fields of an episode (besides network and seed) two policies must share to be paired at a setting."""


def verdict(low: float, high: float) -> str:
    """``wins`` if ``low > 0``, ``loses`` if ``high < 0``, else ``ties`` (also for an undefined interval)."""
    if np.isfinite(low) and low > 0:
        return "wins"
    if np.isfinite(high) and high < 0:
        return "loses"
    return "ties"


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval (``low``/``high`` are NaN when there is none)."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        """:func:`verdict` of the interval."""
        return verdict(self.low, self.high)

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (e.g. ``100`` for points)."""
        return Interval(self.estimate * factor, self.low * factor, self.high * factor, self.n)

    def text(self, digits: int = 2, signed: bool = True) -> str:
        """``+0.12 [-0.05, +0.30]`` (unsigned: ``0.62 [0.40, 0.81]``); without an interval it says so."""
        fmt = f"{'+' if signed else ''}.{digits}f"
        if not np.isfinite(self.low):
            return f"{self.estimate:{fmt}} [no interval: n={self.n}]"
        return f"{self.estimate:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng(SEED) if rng is None else rng


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _strata(groups: Sequence[Sequence[float]] | Sequence[np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError(f"groups={[a.size for a in arrays]!r} is not allowed; expected non-empty groups")
    return arrays


def stratified_resamples(
    groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    resamples: int = RESAMPLES,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``(resamples, N)``: each row draws every group's values with replacement within the group (N values)."""
    rng = _rng(rng)
    return np.concatenate([g[rng.integers(0, g.size, size=(resamples, g.size))] for g in _strata(groups)], axis=1)


def _interval(
    groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    statistic: Callable[[np.ndarray], np.ndarray],
    resamples: int,
    rng: np.random.Generator | None,
    confidence: float,
) -> Interval:
    """``statistic`` (rows of an ``(r, N)`` array -> ``(r,)``) of the pooled values, with a stratified interval."""
    strata = _strata(groups)
    pooled = np.concatenate(strata)
    estimate = float(statistic(pooled[None])[0])
    if all(g.size < 2 for g in strata):  # nothing to resample: no interval
        return Interval(estimate, float("nan"), float("nan"), pooled.size)
    low, high = _percentiles(statistic(stratified_resamples(strata, resamples, rng)), confidence)
    return Interval(estimate, low, high, pooled.size)


def _mean_of_means(sizes: Sequence[int]) -> Callable[[np.ndarray], np.ndarray]:
    """Rows of an ``(r, N)`` array (groups side by side) -> the mean of the groups' means (each group weighs 1)."""
    edges = np.cumsum([0, *sizes])

    def statistic(x: np.ndarray) -> np.ndarray:
        return np.mean([x[:, a:b].mean(axis=1) for a, b in itertools.pairwise(edges)], axis=0)

    return statistic


def mean_interval(
    groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    resamples: int = RESAMPLES,
    rng: np.random.Generator | None = None,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Mean of the groups' means (one group: the mean of its values) with a stratified percentile bootstrap.

    One group (one network's paired differences over seeds) is the plain percentile bootstrap over seeds.
    """
    strata = _strata(groups)
    return _interval(strata, _mean_of_means([g.size for g in strata]), resamples, rng, confidence)


def iqm(values: np.ndarray) -> np.ndarray:
    """Interquartile mean of each row of ``values`` (``(r, N)`` -> ``(r,)``; 1-D -> scalar array).

    The mean after cutting ``int(0.25 N)`` values from each end of the sorted row, as ``scipy.stats.trim_mean``
    with ``proportiontocut=0.25`` (what rliable's ``aggregate_iqm`` calls). NaN marks a missing value (rows of
    a hierarchical resample differ in length): ``N`` counts a row's other values.
    """
    x = np.sort(np.asarray(values, dtype=np.float64), axis=-1)  # NaN last
    n = np.isfinite(x).sum(axis=-1, keepdims=True)
    cut = n // 4  # int(0.25 n)
    position = np.arange(x.shape[-1])
    kept = (position >= cut) & (position < n - cut)
    return np.where(kept, x, 0.0).sum(axis=-1) / kept.sum(axis=-1)


def iqm_interval(
    groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    resamples: int = RESAMPLES,
    rng: np.random.Generator | None = None,
    confidence: float = CONFIDENCE,
) -> Interval:
    """IQM of every value of every group, with a stratified bootstrap interval (seeds within networks)."""
    return _interval(groups, iqm, resamples, rng, confidence)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann–Whitney P(X > Y) + ½ P(X = Y) per row of ``x`` ``(r, n)`` and ``y`` ``(r, m)``."""
    xs, ys = x[:, :, None], y[:, None, :]
    return ((xs > ys).astype(np.float64) + 0.5 * (xs == ys)).mean(axis=(1, 2))


def _improvement_estimate(
    x_groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    y_groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
) -> tuple[list[np.ndarray], list[np.ndarray], float, int]:
    """``(xs, ys, P(X > Y) averaged over the groups, X's value count)``; ``ValueError`` unless the groups pair up."""
    xs, ys = _strata(x_groups), _strata(y_groups)
    if len(xs) != len(ys):
        raise ValueError(f"x_groups has {len(xs)} groups and y_groups {len(ys)}; expected the same tasks (networks)")
    estimate = float(np.mean([_improvement(x[None], y[None])[0] for x, y in zip(xs, ys, strict=True)]))
    return xs, ys, estimate, sum(x.size for x in xs)


def probability_of_improvement(
    x_groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    y_groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    resamples: int = RESAMPLES,
    rng: np.random.Generator | None = None,
    confidence: float = CONFIDENCE,
) -> Interval:
    """P(X > Y) averaged over tasks (group ``k`` of X against group ``k`` of Y), with a stratified interval.

    The bootstrap resamples X's and Y's runs independently within each task (Agarwal et al. 2021, §4.3).
    """
    xs, ys, estimate, n = _improvement_estimate(x_groups, y_groups)
    if all(x.size < 2 and y.size < 2 for x, y in zip(xs, ys, strict=True)):
        return Interval(estimate, float("nan"), float("nan"), n)
    rng = _rng(rng)
    per_task = [
        _improvement(stratified_resamples([x], resamples, rng), stratified_resamples([y], resamples, rng))
        for x, y in zip(xs, ys, strict=True)
    ]
    low, high = _percentiles(np.mean(per_task, axis=0), confidence)
    return Interval(estimate, low, high, n)


def network_draws(networks: int, resamples: int = RESAMPLES, rng: np.random.Generator | None = None) -> np.ndarray:
    """``(resamples, networks)`` network indices drawn with replacement (one network: itself, drawing nothing)."""
    one = networks == 1
    return np.zeros((resamples, 1), np.int64) if one else _rng(rng).integers(0, networks, (resamples, networks))


def hierarchical_resamples(
    groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    resamples: int = RESAMPLES,
    rng: np.random.Generator | None = None,
    draws: np.ndarray | None = None,
) -> np.ndarray:
    """``(resamples, N, n_max)``: slot ``[r, j]`` holds a draw with replacement of the seeds of network ``draws[r, j]``.

    ``draws`` (default :func:`network_draws` from ``rng``) is the first stage; a slot's values beyond its
    network's seed count are NaN. With one network the rows are :func:`stratified_resamples`'s, value for value.
    """
    strata = _strata(groups)
    rng = _rng(rng)
    picks = network_draws(len(strata), resamples, rng) if draws is None else np.asarray(draws)
    out = np.full((*picks.shape, max(g.size for g in strata)), np.nan)
    for k, g in enumerate(strata):
        where = picks == k
        out[where, : g.size] = g[rng.integers(0, g.size, size=(int(where.sum()), g.size))]
    return out


def hierarchical_interval(
    groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    statistic: str = "mean",
    resamples: int = RESAMPLES,
    rng: np.random.Generator | None = None,
    confidence: float = CONFIDENCE,
) -> Interval:
    """The mean of the networks' means (``statistic="mean"``) or the IQM of every value (``"iqm"``), over networks.

    The interval is the hierarchical bootstrap's (module docstring): networks drawn, then seeds within each.
    None (NaN) for one network with one seed.
    """
    check_choice("statistic", statistic, ("mean", "iqm"))
    strata = _strata(groups)
    pooled = np.concatenate(strata)
    estimate = float(np.mean([g.mean() for g in strata]) if statistic == "mean" else iqm(pooled))
    if len(strata) == 1 and strata[0].size < 2:
        return Interval(estimate, float("nan"), float("nan"), pooled.size)
    x = hierarchical_resamples(strata, resamples, rng)
    samples = np.nanmean(x, axis=2).mean(axis=1) if statistic == "mean" else iqm(x.reshape(resamples, -1))
    low, high = _percentiles(samples, confidence)
    return Interval(estimate, low, high, pooled.size)


def hierarchical_improvement(
    x_groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    y_groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
    resamples: int = RESAMPLES,
    rng: np.random.Generator | None = None,
    confidence: float = CONFIDENCE,
) -> Interval:
    """P(X > Y) averaged over networks, with a hierarchical interval.

    Networks are drawn with replacement; within each drawn network X's and Y's runs are drawn independently
    (as :func:`probability_of_improvement` does within every network).
    """
    xs, ys, estimate, n = _improvement_estimate(x_groups, y_groups)
    if len(xs) == 1 and xs[0].size < 2 and ys[0].size < 2:
        return Interval(estimate, float("nan"), float("nan"), n)
    rng = _rng(rng)
    draws = network_draws(len(xs), resamples, rng)
    a, b = hierarchical_resamples(xs, resamples, rng, draws), hierarchical_resamples(ys, resamples, rng, draws)
    pairs = np.isfinite(a)[..., :, None] & np.isfinite(b)[..., None, :]
    wins = (a[..., :, None] > b[..., None, :]) + 0.5 * (a[..., :, None] == b[..., None, :])
    per_slot = wins.sum(axis=(2, 3)) / pairs.sum(axis=(2, 3))
    low, high = _percentiles(per_slot.mean(axis=1), confidence)
    return Interval(estimate, low, high, n)


# ------------------------------------------------------------------------------------------ paired comparisons
def setting_of(result: Any) -> tuple:
    """The (selector, regrowth, granularity, target) of an episode result (``regrowth`` ``random`` if absent)."""
    return tuple(getattr(result, key, "random") for key in SETTING_KEYS)


def scores(results: Iterable[Any], policy: str, setting: tuple | None, metric: str = "test_accuracy") -> dict:
    """``{network: {seed: value}}`` of ``policy``'s episodes at ``setting`` (any setting when ``None``)."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for r in results:
        if r.policy == policy and (setting is None or setting_of(r) == setting):
            out[r.network][int(r.seed)] = float(getattr(r, metric))
    return dict(out)


def paired_scores(
    results: Sequence[Any],
    policy: str | Mapping[str, str],
    reference: str | Mapping[str, str],
    setting: tuple | None = None,
    reference_setting: tuple | None = None,
    metric: str = "test_accuracy",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{network: (policy's values, reference's values)}`` over the seeds both ran there (in seed order).

    ``policy`` and ``reference`` are names, or ``{network: name}`` (the oracle differs by network). The policy
    runs at ``setting`` and the reference at ``reference_setting`` (default: the same setting); a network
    without a shared seed is left out.
    """
    ref_setting = setting if reference_setting is None else reference_setting
    out = {}
    for net in dict.fromkeys(r.network for r in results):
        pol = policy if isinstance(policy, str) else policy.get(net)
        ref = reference if isinstance(reference, str) else reference.get(net)
        if pol is None or ref is None:
            continue
        here = [r for r in results if r.network == net]
        a = scores(here, pol, setting, metric).get(net, {})
        b = scores(here, ref, ref_setting, metric).get(net, {})
        seeds = sorted(set(a) & set(b))
        if seeds:
            out[net] = (np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds]))
    return out


def paired_differences(
    results: Sequence[Any],
    policy: str | Mapping[str, str],
    reference: str | Mapping[str, str],
    setting: tuple | None = None,
    reference_setting: tuple | None = None,
    metric: str = "test_accuracy",
) -> dict[str, np.ndarray]:
    """``{network: policy − reference, seed by seed}`` (see :func:`paired_scores`)."""
    pairs = paired_scores(results, policy, reference, setting, reference_setting, metric)
    return {net: a - b for net, (a, b) in pairs.items()}


def best_of(means: Mapping[str, float]) -> str | None:
    """The name with the highest mean: the first in ``means``' order on a tie (``None`` when empty).

    The one rule every pick of the project follows: the prior schedule and the tuned cell (validation accuracy
    on the train split, :mod:`sparsity_gym.experiments.tuning`), the best point of a search, the report's
    reference and the oracle (test accuracy per network, :func:`oracle`).
    """
    return max(means, key=lambda name: means[name]) if means else None


def best_by_mean(results: Sequence[Any], candidates: Iterable[str], setting: tuple | None, metric: str) -> str | None:
    """:func:`best_of` the candidates' mean ``metric`` over every network and seed at ``setting``.

    Candidates without an episode there take no part; ``None`` when none has one.
    """
    means = {}
    for name in candidates:
        values = [v for by_seed in scores(results, name, setting, metric).values() for v in by_seed.values()]
        if values:
            means[name] = float(np.mean(values))
    return best_of(means)


def oracle(
    results: Sequence[Any], candidates: Iterable[str], setting: tuple | None, metric: str = "test_accuracy"
) -> dict[str, str]:
    """Per network, the candidate with the best mean **test** accuracy there: an upper bound, not a choice.

    :func:`best_by_mean` on each network's own episodes (no new episode runs). No fixed schedule chosen in
    advance can claim it (it is picked on the very results it is scored on).
    """
    names = list(candidates)
    out = {}
    for net in dict.fromkeys(r.network for r in results):
        best = best_by_mean([r for r in results if r.network == net], names, setting, metric)
        if best is not None:
            out[net] = best
    return out


@dataclass(frozen=True)
class Comparison:
    """A policy against a reference: per network and pooled mean paired difference, IQM and P(improvement).

    ``pooled``, ``iqm`` (of the paired differences) and ``p_improvement`` (P(policy > reference)) are ``None``
    when no network has a shared seed.
    """

    per_network: dict[str, Interval]
    pooled: Interval | None
    iqm: Interval | None
    p_improvement: Interval | None


def compare(
    results: Sequence[Any],
    policy: str | Mapping[str, str],
    reference: str | Mapping[str, str],
    setting: tuple | None = None,
    reference_setting: tuple | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    hierarchical: bool = False,
) -> Comparison:
    """Paired statistics of ``policy`` − ``reference`` (see :func:`paired_scores`), every interval 95%.

    Pooled over networks, the intervals keep every network and resample seeds within each (a statement about
    these networks), or with ``hierarchical`` resample the networks too (about the population they were drawn
    from; :func:`hierarchical_interval`). Each interval draws from its own ``np.random.default_rng(seed)``, so
    each is reproducible on its own.
    """
    pairs = paired_scores(results, policy, reference, setting, reference_setting)
    diffs, xs, ys = [a - b for a, b in pairs.values()], [a for a, _ in pairs.values()], [b for _, b in pairs.values()]
    per_network = {net: mean_interval([a - b], resamples, np.random.default_rng(seed)) for net, (a, b) in pairs.items()}
    if not pairs:
        return Comparison(per_network, None, None, None)
    rng = functools.partial(np.random.default_rng, seed)  # a fresh generator per interval
    if hierarchical:
        pooled = (
            hierarchical_interval(diffs, "mean", resamples, rng()),
            hierarchical_interval(diffs, "iqm", resamples, rng()),
        )
        return Comparison(per_network, *pooled, hierarchical_improvement(xs, ys, resamples, rng()))
    pooled = (mean_interval(diffs, resamples, rng()), iqm_interval(diffs, resamples, rng()))
    return Comparison(per_network, *pooled, probability_of_improvement(xs, ys, resamples, rng()))
