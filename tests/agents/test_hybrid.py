"""Search, then learn: --prior search end to end (killed and resumed), the whole budget, the noise schedule."""

import csv
import dataclasses
import json
import math

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pytest
from stable_baselines3 import PPO
from task_helpers import registered_task, tiny_run

import agents.reports.prior_search
import agents.run.train
from agents.ppo.exploration import LogStdSchedule, scheduled_log_std
from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.reports.costs import read_agent_cost
from agents.run.train import run
from agents.settings.command_line import parse_args
from baselines import policy_cell
from sparsity_gym.experiments.budget_curve import best_so_far, evaluation_trace
from sparsity_gym.experiments.family_env import FamilyEnv
from sparsity_gym.experiments.opponents import read_opponents

TINY_TASK = "tiny_hybrid_test"


@pytest.fixture(scope="module")
def tiny_task():
    """A task on synthetic data (two decisions per episode), registered for this module only."""
    with registered_task(TINY_TASK) as task:
        yield task


def _trials(path):
    study = optuna.load_study(study_name="search_tpe", storage=f"sqlite:///{path}")
    done = optuna.trial.TrialState.COMPLETE
    return sorted(study.get_trials(states=(done,)), key=lambda t: t.number)


def test_the_noise_schedule_decays_and_resumes_where_it_stood():
    assert scheduled_log_std(-1.0, -3.0, "exp", 0.0) == -1.0 and scheduled_log_std(-1.0, -3.0, "exp", 1.0) == -3.0
    assert scheduled_log_std(-1.0, -3.0, "exp", 0.5) == pytest.approx(-2.0)  # sigma geometric: log-std halfway
    sigma = (math.exp(-1.0) + math.exp(-3.0)) / 2  # linear: sigma halfway
    assert scheduled_log_std(-1.0, -3.0, "linear", 0.5) == pytest.approx(math.log(sigma))
    assert scheduled_log_std(-1.0, -3.0, "exp", 7.0) == -3.0  # clipped past the end
    env = FamilyEnv(("mlp_8",), {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10})
    model = PPO(LayerwisePolicy, env, n_steps=4, batch_size=4, n_epochs=1, device="cpu",
                policy_kwargs={"hidden": (8,), "feature_names": env.feature_names, "log_std_init": -1.0})  # fmt: skip
    schedule = LogStdSchedule(-1.0, -3.0, "exp", 16)
    model.learn(8, callback=schedule)
    # set before each rollout: the second rollout started at timestep 4; PPO did not learn it
    assert model.policy.log_std.item() == pytest.approx(schedule.value(4)) == pytest.approx(-1.5)
    assert not model.policy.log_std.requires_grad
    # a resumed model (its timestep count saved) continues the schedule where it stood
    model.learn(8, callback=LogStdSchedule(-1.0, -3.0, "exp", 16), reset_num_timesteps=False)
    assert model.policy.log_std.item() == pytest.approx(-1.0 - 2.0 * 12 / 16)
    with pytest.raises(ValueError, match=r"^log_std_decay='cosine' is not allowed"):
        LogStdSchedule(-1.0, -3.0, "cosine", 16)


def test_hybrid_flags():
    cfg = parse_args(["--task", "mnist1d_mlp", "--prior", "search", "--prior-search-budget", "40", "--gamma", "1"])
    assert (cfg.prior, cfg.prior_search_budget, cfg.gamma, cfg.norm_reward) == ("search", 40, 1.0, False)
    cfg = parse_args(["--prior", "poly[s=0.1,e=0.9,p=3]+uniform[first=3]", "--log-std-final", "-4", "--norm-reward"])
    assert (cfg.log_std_final, cfg.log_std_decay, cfg.norm_reward) == (-4.0, "exp", True)
    for args, message in (
        (["--prior", "search"], r"^prior='search' is not allowed without --task"),
        (["--prior", "poly[s=0.1,e=0.9,p=3]+uniform[first=0]"], r"first=0 is not allowed"),
        (["--task", "mnist1d_mlp", "--sampler-seeds", "1", "1"], r"^sampler_seeds=\(1, 1\) is not allowed"),
        (["--log-std-decay", "step"], r"^log_std_decay='step' is not allowed"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_args(args)


def test_budget_traces_take_the_best_so_far():
    assert best_so_far([(2, 0.4), (4, 0.3), (6, 0.5)]) == [(2, 0.4), (4, 0.4), (6, 0.5)]
    rows = [{"episodes": "0", "val_accuracy": "0.5"}, {"episodes": "4", "val_accuracy": "0.4"}]
    rows.append({"episodes": "4", "val_accuracy": "0.6"})  # a resumed session's re-evaluation wins
    assert evaluation_trace(rows, offset=10) == [(10, 0.5), (14, 0.6)]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_prior_search_runs_end_to_end_resumes_after_kills_and_counts_the_whole_budget(tiny_task, tmp_path, monkeypatch):
    fields = {"prior": "search", "prior_search_budget": 4, "search_seeds": 1, "eval_every": 4, "select_on": "train"}
    fields |= {"opponent": ("search", "random"), "sampler_seeds": (3, 4), "log_std_final": -4.0, "norm_reward": True}
    cfg = tiny_run(TINY_TASK, tmp_path, **fields)
    calls = []

    def killed_in_the_second_trial(name):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return policy_cell(name)

    with monkeypatch.context() as patch:  # killed during the prior's search
        patch.setattr(agents.reports.prior_search, "policy_cell", killed_in_the_second_trial)
        with pytest.raises(RuntimeError, match="killed"):
            run(cfg)
    with monkeypatch.context() as patch:  # killed after training, before the opponents
        patch.setattr(agents.run.train, "run_opponents", lambda *a: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError, match="killed"):
            run(dataclasses.replace(cfg, resume=True))
    prior_trials = _trials(tmp_path / "prior_search" / "search_tpe.db")
    assert len(prior_trials) == 2  # 4 episodes: 2 trials of 2 networks x 1 seed, the killed one re-run once
    assert (tmp_path / "checkpoints" / "vecnormalize.pkl").exists()
    run(dataclasses.replace(cfg, resume=True, total_timesteps=12))  # resumed: no new prior trial, more PPO
    assert [t.params for t in _trials(tmp_path / "prior_search" / "search_tpe.db")] == [t.params for t in prior_trials]
    opponents = read_opponents(tmp_path)
    prior = opponents["prior"]
    best = max(prior_trials, key=lambda t: (t.value, -t.number)).user_attrs["policy"]
    assert (prior.episodes, prior.best, prior.label) == (4, best, "prior: search (4 episodes)")
    model = PPO.load(tmp_path / "model.zip", device="cpu")
    assert model.policy.prior == best and model.num_timesteps == 12
    assert model.policy.log_std.item() == pytest.approx(-2.0 - 2.0 * 8 / 12)  # the last rollout began at 8
    # the hybrid's cost: the search's episodes plus PPO's (and the paired reference's)
    cost = read_agent_cost(tmp_path)
    assert (cost.episodes, cost.search_episodes) == (6, 4)  # 12 decisions of 2 an episode
    total = cost.episodes + cost.reference_episodes + cost.search_episodes
    assert cost.all_episodes == total and "+ 4 prior-search" in cost.cost_text()
    # the TPE study continues the prior's to the same total; random and the second seed spend it too
    continued = _trials(tmp_path / "search_tpe.db")
    assert [t.params for t in continued[:2]] == [t.params for t in prior_trials]
    for name in ("search", "random", "search_seed4", "random_seed4"):
        assert opponents[name].budget == total and opponents[name].episodes == total - total % 2, name
    assert opponents["search_seed4"].label == f"search seed 4 ({total - total % 2} episodes)"
    assert len(_trials(tmp_path / "sampler_seed_4" / "search_tpe.db")) == total // 2
    with open(tmp_path / "results.csv", newline="") as f:
        policies = {r["policy"] for r in csv.DictReader(f)}
    assert {"ppo", "prior: search (4 episodes)", opponents["search_seed4"].label} <= policies
    md = (tmp_path / "results.md").read_text()
    assert "`prior: search (4 episodes)`: the static schedule" in md and "sampler_seed_4/search_tpe.db" in md
    # the budget curve: the studies and the learned policy's evaluations from the search's episodes on
    with open(tmp_path / "budget_curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    curves = {r["curve"] for r in rows}
    assert {"TPE search", "random search", "TPE search seed 4", "learned (search, then PPO)"} <= curves
    learned = [int(r["episodes"]) for r in rows if r["curve"] == "learned (search, then PPO)"]
    assert learned[0] == 4 and learned == sorted(learned) and (tmp_path / "budget_curve.png").exists()
    tpe = [float(r["best_val_accuracy"]) for r in rows if r["curve"] == "TPE search"]
    assert tpe == sorted(tpe) and len(tpe) == total // 2
    schedules = json.loads((tmp_path / "evaluated_schedules.json").read_text())
    assert schedules["prior"]["timestep"] == 0 and np.asarray(schedules["best"]["episodes"][0]["schedule"]).ndim == 2
    for episode in schedules["best"]["episodes"]:  # each layer's share of the weights, for the distilled fit
        assert len(episode["weights"]) == len(episode["schedule"][0]) and sum(episode["weights"]) == pytest.approx(1)
    assert not plt.get_fignums()  # every figure closed, the last evaluation's TensorBoard figures too
    # is it dynamic? the spread is measured and the distilled point plays in the comparison
    distilled = opponents["distilled"]
    assert distilled.best.startswith("poly[") and distilled.label in policies and "distilled" in md
    fit = json.loads((tmp_path / "distilled_fit.json").read_text())
    assert fit["point"] == distilled.best and 0 <= fit["gap"] <= fit["prior_gap"]
    assert "Imitation gap (root mean square log10 density difference" in md
    assert set(json.loads((tmp_path / "dynamics.json").read_text())) >= {"log10_final_first", "reach_progress"}
