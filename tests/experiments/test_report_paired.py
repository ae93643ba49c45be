"""The report's paired columns, labels, episode table, Pareto front, robust limits and figure hygiene."""

import itertools

import matplotlib
import numpy as np
import pytest

from sparsity_gym.experiments.comparison_report import (
    add_paired_columns,
    episode_table,
    markdown,
    method_label,
    plot_accuracy_vs_cost,
    plot_schedules,
    summarize,
)
from sparsity_gym.experiments.evaluation import EpisodeResult, config_hash, env_settings
from sparsity_gym.experiments.plots import pareto_front, robust_limits

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SCHEDULES = ("cubic", "linear")


def _r(policy, network, seed, acc, selector="magnitude", regrowth="random", target=0.1, val=None, **kw):
    env = {"network": network, "selector": selector, "regrowth": regrowth, "target_density": target, **kw}
    return EpisodeResult(
        policy=policy,
        network=network,
        split="heldout",
        seed=seed,
        selector=selector,
        granularity=kw.get("granularity", "weight"),
        target_density=target,
        test_accuracy=acc,
        val_accuracy=acc if val is None else val,
        final_density=0.1 if target else 0.5,
        inference_flops=kw.get("flops", 10),
        dense_flops=kw.get("dense", 100),
        training_flops=1000,
        wall_time_s=1.0,
        diverged=False,
        invalid_actions=0,
        progress=[0.0, 0.5],
        schedule=[[0.5, 0.5], [0.1, 0.1]],
        regrowth=regrowth,
        base_dense_flops=kw.get("base", 100),
        config_hash=config_hash(env),
        env=env,
    )


def _results():
    out = []
    for s in range(4):
        luck = 0.01 * s
        out += [
            _r("cubic", "a", s, 0.80 + luck, val=0.9),
            _r("linear", "a", s, 0.79 + luck, val=0.5),
            _r("ppo", "a", s, 0.82 + luck),
            _r("dyno", "a", s, 0.85 + luck, selector="redundancy", regrowth="north", target=None, dense=200),
        ]
    return out


def test_labels_read_selector_and_regrowth():
    assert method_label("magnitude", "random") == "MP-RR"
    assert method_label("random", "random") == "RP-RR"
    assert method_label("magnitude", "none") == "magnitude/none"  # not MP-RR: no random regrowth
    assert method_label("magnitude", "north", "neuron") == "magnitude/north (neuron)"
    rows = summarize([_r("cubic", "a", 0, 0.5, regrowth="none")])
    assert "magnitude/none" in markdown(rows) and "MP-RR" not in markdown(rows)


def test_paired_columns_for_every_policy():
    results = _results()
    rows = add_paired_columns(summarize(results), results, SCHEDULES, ("magnitude", "random", "weight", 0.1))
    by = {r["policy"]: r for r in rows}
    # reference: best validation accuracy (cubic); ppo is +2 points on every seed
    assert by["ppo"]["paired_reference"] == "cubic"
    assert by["ppo"]["paired_diff_mean"] == pytest.approx(0.02)
    assert by["ppo"]["paired_diff_ci_low"] == pytest.approx(0.02) and by["ppo"]["paired_seeds"] == 4
    assert by["linear"]["paired_diff_ci_high"] == pytest.approx(-0.01)
    # a criterion at its own settings is paired with the reference at the headline setting, and says so
    assert by["dyno"]["paired_reference"] == "cubic @ MP-RR 0.1"
    assert by["dyno"]["paired_diff_mean"] == pytest.approx(0.05)
    # a reference passed in (the tuned one) wins over the validation choice
    rows = add_paired_columns(summarize(results), results, SCHEDULES, ("magnitude", "random", "weight", 0.1), "linear")
    assert {r["paired_reference"] for r in rows} == {"linear", "linear @ MP-RR 0.1"}
    assert "+2.00 [+2.00, +2.00] vs cubic" in markdown(
        add_paired_columns(summarize(results), results, SCHEDULES, ("magnitude", "random", "weight", 0.1))
    )


def test_flops_fraction_is_against_the_unwidened_network():
    rows = {r["policy"]: r for r in summarize(_results())}
    # dyno's built network has 2x the FLOPs (dense 200); its fraction is against the specified network (100)
    assert rows["dyno"]["flops_fraction_mean"] == pytest.approx(0.1)


def test_episode_table_carries_the_settings_and_their_hash():
    results = _results()
    rows, configs = episode_table(results)
    assert len(rows) == len(results) and set(configs) == {r.config_hash for r in results}
    row = next(r for r in rows if r["policy"] == "dyno")
    assert row["selector"] == "redundancy" and row["regrowth"] == "north" and row["config_hash"]
    assert configs[row["config_hash"]]["selector"] == "redundancy"
    assert "env_network" not in row  # already a column
    # the hash is of the settings: stable, and different for different settings
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1}) != config_hash({"a": 1, "b": 3})


def test_env_settings_name_a_user_factory():
    from sparsity_gym.env.env_config import EnvConfig

    def my_net(input_shape, num_classes):
        raise AssertionError

    settings = env_settings(EnvConfig(network=my_net, dataset="synthetic"))
    assert settings["network"].endswith("my_net") and "0x" not in settings["network"]


def _brute_pareto(x, y):
    def dominated(i):
        return any(x[j] <= x[i] and y[j] >= y[i] and (x[j] < x[i] or y[j] > y[i]) for j in range(len(x)))

    return sorted(i for i in range(len(x)) if not dominated(i))


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 5, 8).astype(float), rng.integers(0, 5, 8).astype(float)
        assert sorted(pareto_front(x, y)) == _brute_pareto(x, y)
    assert pareto_front([0.1, 0.5, 1.0, 0.5], [90, 95, 95, 80]) == [0, 1]  # hand-worked


def test_robust_limits_keep_an_outlier_from_squashing_the_axis():
    values = np.array([95.0, 95.5, 94.8, 96.0, 95.2, 19.9])
    lo, hi, off = robust_limits(values, values - 0.2, values + 0.2, min_span=1.0)
    assert list(off) == [0, 0, 0, 0, 0, -1] and 90 < lo < 94.6 and 96.2 < hi < 97
    assert not robust_limits(values[:5], values[:5], values[:5], 1.0)[2].any()


def test_a_failed_write_closes_the_figure(tmp_path):
    results = _results()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    before = len(plt.get_fignums())
    for call in (
        lambda: plot_accuracy_vs_cost(blocker / "a.png", summarize(results)),
        lambda: plot_schedules(blocker / "s.png", results),
    ):
        with pytest.raises(OSError):
            call()
        assert len(plt.get_fignums()) == before


def test_accuracy_plot_is_a_png_with_distinct_colours(tmp_path):
    from sparsity_gym.experiments.plots import LEARNED_COLOUR, PALETTE

    path = plot_accuracy_vs_cost(tmp_path / "a.png", summarize(_results()))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    colours = [*PALETTE, LEARNED_COLOUR]
    assert len(set(colours)) == len(colours)
    greys = [c for c in colours if c[1:3] == c[3:5] == c[5:7] and c != LEARNED_COLOUR]
    assert not greys
    assert not list(itertools.chain(plt.get_fignums()))


def test_seed_ranges_read_as_one_seed_or_a_range():
    from sparsity_gym.experiments.comparison_report import seed_text

    assert seed_text(1000, 1) == "seed 1000"
    assert seed_text(1000, 5) == "seeds 1000-1004"
