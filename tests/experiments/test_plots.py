"""The report's plots: one target as a strip of policies, a sweep on a density axis, schedules by role."""

import dataclasses

import matplotlib
import pytest
from opponent_helpers import GRID, RANDOM, SEARCH, result, results_for

from sparsity_gym.experiments import plots
from sparsity_gym.experiments.comparison_report import summarize
from sparsity_gym.experiments.plots import (
    OTHER_COLOUR,
    ROLE_COLOURS,
    plot_accuracy_vs_cost,
    plot_schedules,
    role_colours,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROLES = {"ppo": "learned", GRID[0]: "reference, oracle", SEARCH: "search", RANDOM: "random search"}


def _png(path):
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.get_fignums()  # every figure closed


def test_roles_take_their_colours_and_the_first_role_wins():
    colours = role_colours({**ROLES, "custom": "mine"})
    assert colours["ppo"] == ROLE_COLOURS["learned"] and colours[GRID[0]] == ROLE_COLOURS["reference"]
    assert colours[RANDOM] == ROLE_COLOURS["random search"]
    assert colours["custom"] not in ROLE_COLOURS.values() and colours["custom"] != OTHER_COLOUR
    assert len(set(ROLE_COLOURS.values())) == len(ROLE_COLOURS)


def test_one_target_is_a_strip_of_policies_not_a_density_axis(tmp_path, monkeypatch):
    calls = []
    original_dodge = plots._dodge

    def dodge(*args):
        calls.append(args)
        return original_dodge(*args)

    monkeypatch.setattr(plots, "_dodge", dodge)
    strip = []
    original = plots._strip_panel
    monkeypatch.setattr(plots, "_strip_panel", lambda ax, rows, *a: strip.append(len(rows)) or original(ax, rows, *a))
    _png(plot_accuracy_vs_cost(tmp_path / "one.png", summarize(results_for()), "t", highlight=ROLES))
    assert strip == [5, 5, 5] and not calls  # one strip per network, every policy on it; nothing spread sideways


def test_a_sweep_over_targets_keeps_the_density_axis(tmp_path, monkeypatch):
    sweep = [*results_for(), result("ppo", "mlp_a", 1000, 0.7)]
    sweep[-1].target_density, sweep[-1].final_density = 0.1, 0.1
    strip = []
    monkeypatch.setattr(plots, "_strip_panel", lambda *a: strip.append(a))
    _png(plot_accuracy_vs_cost(tmp_path / "sweep.png", summarize(sweep)))
    assert len(strip) == 2  # mlp_a has two targets: its density axis stays; the other networks have one


@pytest.mark.parametrize("highlight", [None, ROLES])
def test_schedules_are_written_with_thirteen_policies(tmp_path, highlight):
    many = [result(f"cell{i}", "mlp_a", 1000, 0.5) for i in range(13)] + results_for()
    _png(plot_schedules(tmp_path / "s.png", [r for r in many if r.network == "mlp_a"], "t", highlight))


@pytest.mark.parametrize(("target", "scale"), [(0.01, "log"), (0.1, "linear")])
def test_a_target_below_five_percent_gets_a_log_density_axis(target, scale):
    results = [r for r in results_for() if r.network == "mlp_a"]
    results = [dataclasses.replace(r, target_density=target) for r in results]
    fig = plots.schedule_figure(results, highlight={"ppo": "learned"})
    try:
        assert {ax.get_yscale() for ax in fig.axes} == {scale}
    finally:
        plt.close(fig)
