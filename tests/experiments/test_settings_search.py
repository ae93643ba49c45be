"""The opponents of a generalist at the same budget: the equal split, the search over every setting at once, a
point moved to another target; and the cost to catch up with the generalist, on hand-computed cases."""

import math

import pytest

from baselines import SEARCH_SPACE, policy_cell, searched_name
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.catch_up import break_even, catch_up, incumbent_curve, plot_catch_up, study_values
from sparsity_gym.experiments.search import study_path
from sparsity_gym.experiments.seeds import seeds
from sparsity_gym.experiments.settings_env import expand_settings
from sparsity_gym.experiments.settings_search import (
    Transfer,
    mean_over_settings,
    run_joint_search,
    run_setting_searches,
    setting_networks,
    split_budget,
    transfer_plan,
)
from sparsity_gym.experiments.tuning import Scores

optuna = pytest.importorskip("optuna")

TINY = {"dataset": "synthetic", "batch_size": 16, "budget": "global", "observations": ()}
A = EnvConfig(**TINY, total_iterations=20, decision_interval=10)
B = EnvConfig(**TINY, total_iterations=40, decision_interval=20)


def test_split_budget_gives_equal_shares_the_remainder_to_the_first_settings_and_whole_trials():
    plan = split_budget(100, {"a@0.1": 4, "a@0.3": 4, "b@0.1": 4})
    assert plan.episodes == {"a@0.1": 34, "a@0.3": 33, "b@0.1": 33}
    assert plan.trials == {"a@0.1": 8, "a@0.3": 8, "b@0.1": 8} and plan.leftover == 4
    uneven = split_budget(50, {"mlp": 8, "cnn": 6})  # 25 each: 3 trials of 8 (1 left), 4 trials of 6 (1 left)
    assert (uneven.trials, uneven.leftover) == ({"mlp": 3, "cnn": 4}, 2)
    for total in range(12, 80):
        for costs in ({"x": 3, "y": 4}, {"x": 1, "y": 2, "z": 4}):
            plan = split_budget(total, costs)
            shares = list(plan.episodes.values())
            assert sum(shares) == total and max(shares) - min(shares) <= 1
            spent = sum(plan.trials[s] * costs[s] for s in costs)
            assert spent + plan.leftover == total
            assert all(plan.episodes[s] - plan.trials[s] * costs[s] < costs[s] for s in costs)  # no trial that fits
    with pytest.raises(ValueError, match="setting 'y' gets 2, less than one trial's 4"):
        split_budget(5, {"x": 1, "y": 4})


def test_mean_over_settings_weighs_every_setting_the_same():
    val = {"p": {"a@0.1/n1": [0.2, 0.4], "a@0.1/n2": [0.6, 0.8], "b@0.1/n3": [0.1, 0.1]}}
    scores = Scores(cells=("p",), val=val, test=val)
    assert mean_over_settings(scores, "p") == pytest.approx((0.5 + 0.1) / 2)  # not (0.2+0.4+0.6+0.8+0.1+0.1)/6
    assert scores.mean_val("p") == pytest.approx(2.2 / 6)


def test_transfer_plan_takes_the_nearest_other_target_on_a_log_scale():
    found = {0.01: "p1", 0.03: "p3", 0.1: "p10"}
    plan = transfer_plan(found, (0.02, 0.05, 0.01))
    assert plan == [Transfer(0.03, 0.02, "p3"), Transfer(0.03, 0.05, "p3"), Transfer(0.03, 0.01, "p3")]
    far = transfer_plan({0.01: "p1", 0.1: "p10"}, (0.02, 0.05))  # 0.02 is 2x from 0.01, 0.05 is 2x from 0.1
    assert [(t.source, t.policy) for t in far] == [(0.01, "p1"), (0.1, "p10")]
    assert transfer_plan({0.01: "p1", 0.04: "p4"}, (0.02,))[0].source == 0.01  # a tie: the lower target
    assert far[0].label == "search@0.01 at 0.02"
    with pytest.raises(ValueError, match="expected a search elsewhere"):
        transfer_plan({0.1: "p"}, (0.1,))


@pytest.mark.usefixtures("one_torch_thread")
def test_per_setting_and_joint_searches_spend_the_same_budget(tmp_path):
    settings = expand_settings({"a": (("mlp_8",), A), "b": (("mlp_6x6",), B)}, (0.2, 0.5))
    cells = setting_networks(settings)
    assert list(cells) == ["a@0.2", "a@0.5", "b@0.2", "b@0.5"] and list(cells["b@0.5"]) == ["b@0.5/mlp_6x6"]
    assert cells["b@0.5"]["b@0.5/mlp_6x6"].total_iterations == 40
    one = seeds("tuning", 1)
    args = ("tpe", SEARCH_SPACE, searched_name, policy_cell, cells, one, 9, tmp_path)
    per_setting = run_setting_searches(*args, progress=False, backend="sequential")
    assert {k: r.trials for k, r in per_setting.items()} == {"a@0.2": 3, "a@0.5": 2, "b@0.2": 2, "b@0.5": 2}
    assert sum(r.episodes for r in per_setting.values()) == 9
    assert study_path(tmp_path / "settings" / "a@0.2", "tpe").exists()
    joint = run_joint_search(*args, progress=False, backend="sequential")
    assert (joint.trials, joint.episodes) == (2, 8)  # a trial plays 4 settings x 1 network x 1 seed
    values, per_trial = study_values(study_path(tmp_path / "joint", "tpe"))
    assert per_trial == 4 and joint.best_value == max(values)
    # the value is the mean over settings: recomputed from the trial's own episodes
    from sparsity_gym.experiments.tuning import score_policies

    networks = {label: c for nets in cells.values() for label, c in nets.items()}
    again = score_policies([policy_cell(joint.best)], networks, one, backend="sequential", progress=False)
    assert mean_over_settings(again, joint.best) == pytest.approx(joint.best_value)


def test_catch_up_and_break_even_on_hand_computed_numbers(tmp_path):
    values = [0.5, 0.4, 0.62, 0.6, 0.7]
    assert incumbent_curve(values, 4) == [(4, 0.5), (8, 0.5), (12, 0.62), (16, 0.62), (20, 0.7)]
    first = catch_up(values, 4, 0.6, "a@0.02")
    assert (first.episodes, first.reached, first.spent, first.text) == (12, True, 20, "12 episodes")
    second = catch_up([0.3, 0.65], 6, 0.6, "b@0.02")
    assert second.episodes == 12
    never = catch_up([0.1, 0.2], 5, 0.6, "a@0.05")
    assert (never.episodes, never.reached, never.text) == (10, False, "> 10 episodes")
    even = break_even(100, [first, second])  # 100 / 12 = 8.33: 9 settings make the generalist cheaper
    assert (even.mean_cost, even.settings, even.censored, even.text) == (12.0, 9, False, "9 settings")
    assert even.ratio == pytest.approx(100 / 12)
    bound = break_even(100, [first, second, never])  # mean (12 + 12 + 10) / 3; 100 / 11.33 = 8.82
    assert (bound.settings, bound.censored, bound.text) == (9, True, "at most 9 settings")
    assert break_even(24, [first]).settings == 3  # 24 / 12 = 2 exactly: equal at 2, cheaper from 3
    assert catch_up([0.6], 4, 0.6).episodes == 4  # reaching counts (>=)
    path = plot_catch_up(
        tmp_path / "catch_up.png",
        {"a@0.02": incumbent_curve(values, 4), "a@0.05": incumbent_curve([0.1, 0.2], 5)},
        {"a@0.02": 0.6, "a@0.05": 0.6},
        100,
        "catch-up",
    )
    assert path.stat().st_size > 1000 and math.isfinite(even.ratio)
    with pytest.raises(ValueError, match=r"values=\(\)"):
        catch_up([], 4, 0.6)
