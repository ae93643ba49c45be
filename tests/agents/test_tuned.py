"""The tuned handcrafted cell in a training run: the prior and env it sets, the presets, the report's reference."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import TINY_ENV, untrained_residual_policy
from task_helpers import TINY_CELLS, registered_task, tiny_run

from agents.ppo.agent import LayerwiseAgent
from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.reports.tuned import prior_from_cell, tuning_overrides
from agents.run.train import run
from agents.settings.command_line import parse_args
from agents.settings.presets import TASK_PRESET, TUNE_GRID
from agents.settings.train_config import TrainConfig
from baselines import env_kwargs, make_policy
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.evaluation import evaluate
from sparsity_gym.experiments.family_env import FamilyEnv

TINY_TASK = "tiny_tuned_test"


@pytest.fixture(scope="module")
def tiny_task():
    """A task on synthetic data (two decisions per episode), registered for this module only."""
    with registered_task(TINY_TASK) as task:
        yield task


def test_prior_from_cell_splits_schedule_and_allocation():
    env = EnvConfig(**TINY_ENV, budget="global")
    prior, tilted = prior_from_cell("cubic@0.9+erk", env)
    assert prior == "cubic@0.9" and (tilted.allocation, tilted.allocation_tilt) == ("erk", True)
    prior, plain = prior_from_cell("linear", tilted)
    assert prior == "linear" and (plain.allocation, plain.allocation_tilt) == ("policy", False)
    assert prior_from_cell("constant@0.9+lamp", env)[0] == "constant"
    assert "observations" in tuning_overrides(env) and "network" not in tuning_overrides(env)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("scale", ["linear", "log"])
def test_untrained_policy_on_the_tilted_env_is_the_tuned_cell(scale):
    """Residual head at zero, prior ``cubic@0.9``, env ERK with tilt: the same densities and accuracy as the cell."""
    cell = "cubic@0.9+erk"
    maps = {"action_scale": scale, "min_density": 0.001 if scale == "log" else 0.02}
    base = EnvConfig(**{**TINY_ENV, "total_iterations": 60}, budget="global", target_density=0.2, **maps)
    prior, env_config = prior_from_cell(cell, base)
    env = FamilyEnv(("mlp_8x8",), env_config)
    policy = untrained_residual_policy(env, prior)
    net = {"network": "mlp", "network_kwargs": {"widths": (8, 8)}}
    [learned] = evaluate(LayerwiseAgent(policy).bind, env_config.replace(**net), [5], "ppo")
    cell_config = base.replace(**net, **env_kwargs(cell))
    [played] = evaluate(lambda e: make_policy(cell, e), cell_config, [5], cell)
    np.testing.assert_array_equal(np.asarray(learned.schedule), np.asarray(played.schedule))
    assert learned.test_accuracy == played.test_accuracy
    with pytest.raises(ValueError, match=r"^prior='cubic\+erk' is not allowed"):
        LayerwisePolicy(
            env.observation_space, env.action_space, lambda _: 1e-3, prior="cubic+erk", feature_names=env.feature_names
        )


def test_task_preset_tunes_and_compares_with_five_seeds_at_the_training_target():
    cfg = parse_args(["--task", "mnist1d_mlp", "--target-density", "0.01"])
    assert cfg.eval_seeds >= 5 and cfg.tune_cells == TUNE_GRID and cfg.prior == "tuned"
    assert cfg.eval_targets == (0.01,) and cfg.run_dir == "runs/mnist1d_mlp" and cfg.reward == TASK_PRESET["reward"]
    assert parse_args(["--task", "mnist1d_mlp", "--eval-targets", "0.1", "0.01"]).eval_targets == (0.1, 0.01)
    assert parse_args(["--task", "mnist1d_mlp", "--eval-seeds", "7"]).eval_seeds == 7
    with pytest.raises(ValueError, match=r"^tune_cells is not allowed without --task"):
        TrainConfig(tune_cells=("cubic+erk",))
    with pytest.raises(ValueError, match=r"^prior='tuned' is not allowed without --tune-cells"):
        TrainConfig(prior="tuned")
    with pytest.raises(ValueError, match=r"^tune_cells='cubic\+magic'"):
        TrainConfig(task="digits", tune_cells=("cubic+magic",))


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_task_run_tunes_on_the_train_split_and_reports_against_the_tuned_cell(tiny_task, tmp_path):
    cells = TINY_CELLS
    cfg = tiny_run(TINY_TASK, tmp_path, policies=("criteria",))
    run(cfg)
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    [entry] = tuning["entries"].values()
    assert tuning["task"] == TINY_TASK and set(entry["val"]) == set(cells)
    assert set(entry["val"][cells[0]]) == {"mlp_8x8", "mlp_8"}  # the train split only
    best = entry["best"]
    md = (tmp_path / "results.md").read_text()
    assert f"**tuned handcrafted** cell `{best}`" in md
    rows = list(csv_rows(tmp_path / "results.csv"))
    assert {r["policy"] for r in rows} >= {*cells, "ppo", "snr", "dyno", "neq", "contribution"}
    learned = next(r for r in rows if r["policy"] == "ppo")
    assert learned["paired_reference"].startswith(best)
    configs = json.loads((tmp_path / "configs.json").read_text())
    episodes = list(csv_rows(tmp_path / "training_episodes.csv"))  # the learning curve, one row per episode
    assert len(episodes) == 4 and (tmp_path / "learning_curve.png").stat().st_size > 0
    for row in episodes:  # paired: the reward is the episode's validation accuracy minus the tuned cell's
        expected = float(row["val_accuracy"]) - float(row["reference_val_accuracy"])
        assert float(row["reward"]) == pytest.approx(expected, abs=1e-6)
    tilted = [c for c in configs.values() if c.get("allocation_tilt")]  # the learned policy's env only
    assert tilted and {c["allocation"] for c in tilted} == {best.partition("+")[2]}
    # evaluate mode reads the tuning back, runs the model on the env it trained on, reports against the cell
    (tmp_path / "results.csv").unlink()
    run(dataclasses.replace(cfg, mode="evaluate"))
    again = {r["policy"]: r for r in csv_rows(tmp_path / "results.csv")}
    assert again["ppo"]["test_accuracy_mean"] == learned["test_accuracy_mean"]
    assert again["ppo"]["paired_reference"].startswith(best)


def csv_rows(path):
    """The rows of a CSV file as dicts."""
    import csv

    with open(path, newline="") as f:
        yield from csv.DictReader(f)


def test_model_selection_split_is_a_choice():
    assert TrainConfig().select_on == "heldout" and parse_args(["--select-on", "train"]).select_on == "train"
    with pytest.raises(ValueError, match=r"^select_on='test'"):
        TrainConfig(select_on="test")
