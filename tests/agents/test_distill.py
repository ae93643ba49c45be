"""Is it dynamic? The spread of learned schedules, and the static point fitted to them (``distilled``)."""

import numpy as np
import pytest

from agents.reports.distill import distill, schedule_spread, spread_note
from baselines.static import parse_static
from sparsity_gym.experiments.evaluation import EpisodeResult

PROGRESS = [0.1 * k for k in range(1, 11)]


def _episodes(start, end, p, target=0.05, multipliers=(1.0, 1.0, 1.0), networks=("a", "b"), seeds=(1, 2)):
    """Episodes whose layers follow the polynomial of (start, end, p), the final densities multiplied."""
    out = []
    for network in networks:
        for seed in seeds:
            rows = []
            for t in PROGRESS:
                q = min(max((t - start) / (end - start), 0.0), 1.0)
                rows.append([target + (1 - target) * (1 - q) ** p] * 3)
            rows[-1] = [target * m for m in multipliers]
            out.append({"network": network, "seed": seed, "progress": PROGRESS, "schedule": rows})
    return out


def test_a_learned_policy_equal_to_its_prior_distils_to_the_prior():
    prior = "poly[s=0.2,e=0.8,p=3]+uniform[first=4,last=2]"
    same = {"prior": {"episodes": _episodes(0.2, 0.8, 3)}, "best": {"episodes": _episodes(0.2, 0.8, 3)}}
    assert distill(same, prior) == prior


def test_distilled_moves_the_window_power_and_multipliers_towards_the_learned_schedules():
    prior = "poly[s=0.2,e=0.8,p=3]+uniform[first=4,last=2]"
    learned = _episodes(0.3, 0.95, 2, multipliers=(2.0, 1.0, 0.5))
    knobs = parse_static(distill({"prior": {"episodes": _episodes(0.2, 0.8, 3)}, "best": {"episodes": learned}}, prior))
    assert knobs.start == pytest.approx(0.3, abs=0.02) and knobs.end == pytest.approx(0.95, abs=0.04)
    assert knobs.exponent == pytest.approx(2, rel=0.1) and knobs.allocation == "uniform"
    assert (knobs.first, knobs.last) == (pytest.approx(8.0), pytest.approx(1.0))  # 4 x 2 and 2 x 0.5
    with pytest.raises(ValueError, match=r"^schedules are not allowed without episodes"):
        distill({"prior": {"episodes": []}, "best": {"episodes": learned}}, prior)


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
