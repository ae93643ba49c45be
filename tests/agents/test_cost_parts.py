"""The PPO run's cost records part by part (timing.json, checkpoints/state.json) and a search cut at its seconds."""

import json
from types import SimpleNamespace

import pytest

from agents.reports.costs import cumulative_train_seconds, earlier_counts, read_agent_cost
from agents.reports.opponent_runs import at_learned_seconds
from agents.run.callbacks import AtomicCheckpointCallback
from sparsity_gym.experiments.search import study_path

TIMING = {
    "train_seconds": 171.9,
    "tuning_seconds": 53.5,
    "tuning_episodes": 96,
    "training_seconds": 107.0,
    "evaluation_seconds": 11.0,
    "evaluation_episodes": 24,
    "evaluations": 3,
    "episodes": 150,
    "reference_episodes": 16,
    "reference_seconds": 9.5,
}


def test_each_part_is_read_with_its_own_episodes_and_seconds(tmp_path):
    (tmp_path / "timing.json").write_text(json.dumps(TIMING))
    cost = read_agent_cost(tmp_path)
    assert (cost.seconds, cost.training_seconds, cost.run_seconds) == (107.0, 107.0, 171.9)
    assert (cost.tuning_episodes, cost.tuning_seconds) == (96, 53.5)
    assert (cost.evaluation_episodes, cost.evaluation_seconds, cost.evaluations_run) == (24, 11.0, 3)
    assert (cost.episodes, cost.reference_episodes, cost.all_episodes) == (150, 16, 166)
    # a later session killed after its checkpoint: the checkpoint's counts over sessions are the larger
    (tmp_path / "checkpoints").mkdir()
    state = {"episodes": 170, "train_seconds": 140.0, "training_seconds": 125.0, "evaluations": 4}
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps({**state, "evaluation_seconds": 15.0}))
    cost = read_agent_cost(tmp_path)
    assert (cost.episodes, cost.seconds, cost.evaluations_run, cost.evaluation_seconds) == (170, 125.0, 4, 15.0)
    assert cost.run_seconds == 171.9 and cost.tuning_seconds == 53.5  # timing.json's whole run counts the tuning
    # a resumed session adds its seconds to the whole run's, not to the training phase's
    assert cumulative_train_seconds(tmp_path, True, 10.0) == pytest.approx(181.9)
    assert earlier_counts(cost) == {
        "training_seconds": 125.0,
        "evaluation_seconds": 15.0,
        "evaluation_episodes": 24,
        "evaluations": 4,
    }
    # an older record, the whole train_seconds alone: a resumed run counts them as its training phase's
    (tmp_path / "checkpoints" / "state.json").unlink()
    (tmp_path / "timing.json").write_text(json.dumps({"train_seconds": 90.0, "episodes": 40}))
    assert earlier_counts(read_agent_cost(tmp_path))["training_seconds"] == 90.0
    assert earlier_counts(None) == {}


def test_the_checkpoint_splits_its_seconds_into_training_and_evaluations(tmp_path):
    evaluation = SimpleNamespace(seconds=4.0, episodes=6, count=2)  # this session's evaluations so far
    earlier = {"training_seconds": 100.0, "evaluation_seconds": 10.0, "evaluation_episodes": 18, "evaluations": 3}
    callback = AtomicCheckpointCallback(tmp_path, 8, 5, seconds=110.0, evaluation=evaluation, earlier=earlier)
    callback.num_timesteps = 64
    state = callback.state()
    assert (state["evaluations"], state["evaluation_episodes"], state["evaluation_seconds"]) == (5, 24, 14.0)
    # the session's wall time goes to the whole count, less its evaluations to the training phase: they add up
    assert state["training_seconds"] + state["evaluation_seconds"] == pytest.approx(state["train_seconds"], abs=0.11)
    assert state["training_seconds"] < 100.0 + state["train_seconds"] - 110.0  # the evaluations are not in it
    assert (state["num_timesteps"], state["episodes"]) == (64, 5)


def test_the_search_is_cut_at_the_learned_seconds_from_its_study(tmp_path):
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(
        storage=f"sqlite:///{study_path(tmp_path, 'tpe')}", study_name="search_tpe", direction="maximize"
    )
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for x, value, seconds in ((0.1, 0.5, 10.0), (0.2, 0.6, 12.0), (0.3, 0.9, 30.0)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x},
                distributions=distributions,
                value=value,
                user_attrs={"policy": f"p{x}", "seconds": seconds},
            )
        )
    at = at_learned_seconds(tmp_path, "tpe", 25.0, per_trial=4)
    assert (at.trials, at.spent, at.best, at.episodes) == (2, 22.0, "p0.2", 8)
    assert at_learned_seconds(tmp_path, "tpe", 60.0, per_trial=4).best == "p0.3"
