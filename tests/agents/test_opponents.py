"""The search opponents in a run: the budget from the PPO run's records, the flags, opponents.json, the report."""

import csv
import dataclasses
import json

import pytest
from task_helpers import registered_task, tiny_run

from agents.reports.costs import read_agent_cost
from agents.reports.opponent_runs import search_budget
from agents.reports.tuned import record_tuning
from agents.run.train import run
from agents.settings.command_line import parse_args
from agents.settings.train_config import TrainConfig
from sparsity_gym.experiments.opponents import read_opponents
from sparsity_gym.experiments.tuning import TuningTable

TINY_TASK = "tiny_opponents_test"


@pytest.fixture(scope="module")
def tiny_task():
    """A task on synthetic data (two decisions per episode), registered for this module only."""
    with registered_task(TINY_TASK) as task:
        yield task


def test_the_budget_is_the_ppo_runs_training_and_reference_episodes(tmp_path):
    cfg = parse_args(["--task", "mnist1d_mlp", "--opponent", "search"])
    with pytest.raises(ValueError, match=r"holds no checkpoints/state.json .*--search-budget N"):
        search_budget(cfg, tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps({"num_timesteps": 3500, "episodes": 350}))
    assert search_budget(cfg, tmp_path) == 350  # no paired reward: no reference episodes
    reference = {f"mlp_{n}|{6000 + s}|abc": 0.5 for n in range(4) for s in range(4)}  # one entry per episode run
    (tmp_path / "reference_cache.json").write_text(json.dumps(reference))
    assert search_budget(cfg, tmp_path) == 366
    assert search_budget(dataclasses.replace(cfg, search_budget=100), tmp_path) == 100


def test_opponent_flags():
    assert TrainConfig().opponent == ("none",) and parse_args(["--task", "mnist1d_mlp"]).opponent == ("none",)
    cfg = parse_args(
        ["--task", "mnist1d_mlp", "--opponent", "search", "random", "--search-budget", "500", "--search-seeds", "3"]
    )
    assert (cfg.opponent, cfg.search_budget, cfg.search_seeds) == (("search", "random"), 500, 3)
    for args, message in (
        (["--task", "mnist1d_mlp", "--opponent", "none", "search"], r"^opponent=\('none', 'search'\) is not allowed"),
        (["--task", "mnist1d_mlp", "--opponent", "grid"], r"^opponent='grid' is not allowed"),
        (["--opponent", "search"], r"^opponent=\('search',\) is not allowed without --task"),
        (["--task", "mnist1d_mlp", "--search-seeds", "0"], r"^search_seeds=0 is not allowed"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_args(args)


def test_the_tuning_cost_is_recorded(tmp_path):
    val = {c: {"a": [0.5, 0.6], "b": [0.4, 0.5]} for c in ("linear", "cubic+erk", "cubic")}
    table = TuningTable(cells=tuple(val), val=val, task="t", key="k", target=0.1, seeds=(5000, 5001), seconds=12.34)
    cost = record_tuning(tmp_path, table)
    assert (cost.name, cost.label, cost.episodes, cost.seconds, cost.best) == ("tuned", "linear", 12, 12.3, "linear")
    again = dataclasses.replace(table, seconds=None)  # read back from tuning.json: the recorded seconds stay
    assert record_tuning(tmp_path, again).seconds == 12.3
    assert read_opponents(tmp_path)["tuned"].seconds == 12.3


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_task_run_with_both_opponents_reports_them(tiny_task, tmp_path):
    cfg = tiny_run(TINY_TASK, tmp_path, opponent=("search", "random"), search_seeds=1)
    run(cfg)
    cost = read_agent_cost(tmp_path)
    assert (cost.episodes, cost.reference_episodes) == (4, 2)  # 8 decisions of 2 an episode; a reference per network
    opponents = read_opponents(tmp_path)
    assert set(opponents) == {"tuned", "search", "random"}
    assert opponents["tuned"].episodes == 2 * 2 * 1  # cells x train networks x seeds
    for name in ("search", "random"):  # 6 episodes: 3 trials of 2 networks x 1 seed
        assert (opponents[name].episodes, opponents[name].label) == (6, f"{name} (6 episodes)")
    with open(tmp_path / "results.csv", newline="") as f:
        rows = {r["policy"]: r for r in csv.DictReader(f)}
    assert {"search (6 episodes)", "random (6 episodes)", "ppo", "linear+uniform"} <= set(rows)
    md = (tmp_path / "results.md").read_text()
    assert f"`search (6 episodes)`: the static schedule `{opponents['search'].best}`" in md
    # evaluate mode: the run folder's records give the budget, the studies resume (nothing left to run)
    (tmp_path / "results.csv").unlink()
    run(dataclasses.replace(cfg, mode="evaluate", resume=True))
    assert read_opponents(tmp_path) == opponents
    with open(tmp_path / "results.csv", newline="") as f:
        again = {r["policy"]: r for r in csv.DictReader(f)}
    assert again["search (6 episodes)"]["test_accuracy_mean"] == rows["search (6 episodes)"]["test_accuracy_mean"]
