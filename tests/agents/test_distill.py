"""Is it dynamic? The spread of learned schedules, and the static point fitted to them (``distilled``)."""

import dataclasses

import numpy as np
import pytest

from agents.ppo.prior_map import parse_prior
from agents.reports.distill import (
    DISTILLED_LABEL,
    distill,
    imitation_gaps,
    imitation_note,
    paired_episodes,
    predicted_schedules,
    schedule_spread,
    spread_note,
)
from baselines.static import parse_static
from sparsity_gym.experiments.evaluation import EpisodeResult

PROGRESS = [0.1 * k for k in range(10)]
WEIGHTS = {"a": [0.2, 0.7, 0.1], "b": [0.1, 0.3, 0.5, 0.1]}


def _static_schedule(start, end, p, first, last, weights, target=0.05):
    """A uniform-rule static point's densities, by brute force: the level found by bisection, layer by layer."""
    rows = []
    for t in PROGRESS:
        q = min(max((t - start) / (end - start), 0.0), 1.0)
        d = target + (1 - target) * (1 - q) ** p
        m = [first] + [1.0] * (len(weights) - 2) + [last]
        lo, hi = 0.0, 1e6
        for _ in range(200):
            c = (lo + hi) / 2
            mean = sum(w * min(max(c * mi * d, 0.0), 1.0) for w, mi in zip(weights, m, strict=True)) / sum(weights)
            lo, hi = (c, hi) if mean < d else (lo, c)
        rows.append([min(max(lo * mi * d, 0.0), 1.0) for mi in m])
    return rows


def _episodes(start, end, p, first=1.0, last=1.0, networks=("a", "b"), seeds=(1, 2)):
    return [
        {"network": n, "seed": s, "target": 0.05, "progress": PROGRESS, "weights": WEIGHTS[n],
         "schedule": _static_schedule(start, end, p, first, last, WEIGHTS[n])}
        for n in networks for s in seeds
    ]  # fmt: skip


def test_a_learned_policy_equal_to_its_prior_distils_to_the_prior():
    prior = "poly[s=0.2,e=0.8,p=3]+uniform[first=4,last=2]"
    same = {"prior": {"episodes": _episodes(0.2, 0.8, 3, 4, 2)}, "best": {"episodes": _episodes(0.2, 0.8, 3, 4, 2)}}
    fit = distill(same, prior)
    assert fit.point == prior and fit.gap == pytest.approx(0.0, abs=1e-6) and fit.gap == fit.prior_gap


def test_the_prediction_of_a_static_point_from_its_prior_is_its_own_schedule():
    prior = parse_prior("poly[s=0.2,e=0.8,p=3]+uniform[first=4,last=2]")
    other = parse_prior("poly[s=0.3,e=0.95,p=2]+uniform[first=8,last=0.5]")
    pairs = {"prior": {"episodes": _episodes(0.2, 0.8, 3, 4, 2)}, "best": {"episodes": _episodes(0.3, 0.95, 2, 8, 0.5)}}
    episodes = paired_episodes(pairs)
    predicted = predicted_schedules(other, prior, episodes)
    assert predicted[episodes.valid[:, None, :].repeat(10, 1)] == pytest.approx(
        episodes.learned[episodes.valid[:, None, :].repeat(10, 1)], rel=1e-6
    )


def test_distilled_recovers_the_static_point_the_learned_policy_plays():
    prior = "poly[s=0.2,e=0.8,p=3]+uniform[first=4,last=2]"
    learned = _episodes(0.3, 0.95, 2, 8.0, 0.5)
    fit = distill({"prior": {"episodes": _episodes(0.2, 0.8, 3, 4, 2)}, "best": {"episodes": learned}}, prior)
    knobs = parse_static(fit.point)
    assert knobs.start == pytest.approx(0.3, abs=0.02) and knobs.end == pytest.approx(0.95, abs=0.02)
    assert knobs.exponent == pytest.approx(2, rel=0.05) and knobs.allocation == "uniform"
    assert (knobs.first, knobs.last) == (pytest.approx(8.0, rel=0.05), pytest.approx(0.5, rel=0.05))
    assert fit.gap < 0.01 < fit.prior_gap
    with pytest.raises(ValueError, match=r"^schedules are not allowed without episodes"):
        distill({"prior": {"episodes": []}, "best": {"episodes": learned}}, prior)
    old = [{k: v for k, v in e.items() if k != "weights"} for e in learned]
    with pytest.raises(ValueError, match=r"^schedules without the layers' weights are not allowed"):
        distill({"prior": {"episodes": _episodes(0.2, 0.8, 3, 4, 2)}, "best": {"episodes": old}}, prior)


def test_distilled_is_never_farther_than_the_prior():
    """A learned schedule no static point plays (layers swapped): the fit keeps the prior or comes closer."""
    prior = "poly[s=0.2,e=0.8,p=3]+uniform[first=4,last=2]"
    learned = _episodes(0.3, 0.95, 2, 8.0, 0.5)
    for e in learned:
        e["schedule"] = [row[::-1] for row in e["schedule"]]
    fit = distill({"prior": {"episodes": _episodes(0.2, 0.8, 3, 4, 2)}, "best": {"episodes": learned}}, prior)
    assert fit.gap <= fit.prior_gap


def test_imitation_gaps_pair_the_episodes_and_average_the_squares():
    learned = [_result("a", 1, [0.1, 0.1, 0.1]), _result("a", 2, [0.1, 0.1, 0.1])]
    near = [dataclasses.replace(r, policy=DISTILLED_LABEL, schedule=[[1.0] * 3, [0.1, 0.1, 1.0]]) for r in learned]
    far = [dataclasses.replace(r, policy="prior", schedule=[[1.0] * 3, [1.0, 1.0, 1.0]]) for r in learned[:1]]
    gaps = imitation_gaps(learned + near + far, "ppo", [DISTILLED_LABEL, "prior"])
    assert gaps[DISTILLED_LABEL] == pytest.approx(np.sqrt(1 / 6)) and gaps["prior"] == pytest.approx(np.sqrt(3 / 6))
    note = imitation_note(learned + near + far, "ppo", "prior")
    assert "`distilled` 0.408, the prior 0.707" in note and "imitates the learned policy better" in note


def _result(network, seed, final, target=0.1):
    return EpisodeResult("ppo", network, "heldout", seed, "magnitude", "weight", target, 0.5, 0.5, 0.1, 1, 1, 1, 0.0,
                         False, 0, progress=[0.5, 1.0], schedule=[[1.0, 1.0, 1.0], final])  # fmt: skip


def test_spread_between_networks_and_between_seeds():
    results = [_result("a", s, [0.1, 0.2, 0.4]) for s in (1, 2)] + [_result("b", s, [0.01, 0.2, 0.4]) for s in (1, 2)]
    results.append(_result("b", 3, [0.01, 0.2, 0.04]))
    spread = schedule_spread(results, "ppo")
    assert spread["log10_final_first"] == {"between_networks": pytest.approx(0.5), "between_seeds": 0.0}
    last_b = np.log10([0.4, 0.4, 0.04])
    assert spread["log10_final_last"]["between_seeds"] == pytest.approx(np.std(last_b) / 2)
    assert spread["reach_progress"]["between_networks"] == 0.0  # every layer reaches its final at the last decision
    assert "differ more than the seeds on" in spread_note(spread, 2) and schedule_spread(results, "none") == {}


def test_spread_is_measured_within_a_setting_then_averaged():
    # the same schedules at a second target ten times lower: the targets' difference is neither the seeds' nor the
    # networks'
    low = [0.01, 0.02, 0.04]
    results = [_result(n, s, [0.1, 0.2, 0.4]) for n in ("a", "b") for s in (1, 2)]
    results += [_result(n, s, low, target=0.01) for n in ("a", "b") for s in (1, 2)]
    spread = schedule_spread(results, "ppo")
    assert all(v == {"between_networks": 0.0, "between_seeds": 0.0} for v in spread.values())
    mixed = [_result("a", 1, [0.1, 0.2, 0.4]), _result("b", 1, [0.01, 0.2, 0.4])]
    mixed += [_result("a", 1, [0.01, 0.2, 0.4], target=0.01), _result("b", 1, [0.01, 0.2, 0.4], target=0.01)]
    first = schedule_spread(mixed, "ppo")["log10_final_first"]
    assert first == {"between_networks": pytest.approx((0.5 + 0.0) / 2), "between_seeds": 0.0}  # per setting, averaged


def test_the_note_names_distilled_only_when_the_comparison_holds_it():
    spread = schedule_spread([_result("a", 1, [0.1, 0.2, 0.4]), _result("b", 1, [0.01, 0.2, 0.4])], "ppo")
    assert "`distilled`" in spread_note(spread, 2) and "`distilled`" not in spread_note(spread, 2, distilled=False)
