"""Whole-episode collection (``--collect episodes``): trajectories, their packing and GAE, against references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from episode_helpers import ToyEnv
from stable_baselines3.common.buffers import RolloutBuffer
from time_limit import case_time_limit

from agents.ppo.episode_ppo import EpisodeCollector, EpisodePPO
from agents.ppo.episode_rollouts import pack

time_limit = case_time_limit(240)
GAMMA, LAMBDA = 0.9, 0.8


def _model(n_envs=2, n_steps=7, workers=2, seed=3):
    env = EpisodeCollector(ToyEnv, n_envs, workers=workers, episode_length=4, seed=seed)
    model = EpisodePPO(
        "MlpPolicy", env, n_steps=n_steps, batch_size=n_steps * n_envs, n_epochs=1, gamma=GAMMA,
        gae_lambda=LAMBDA, seed=seed, device="cpu", policy_kwargs={"net_arch": [8]},
    )  # fmt: skip
    return env, model


def _reference_gae(traj, m):
    """Per-episode GAE of the first ``m`` steps of ``traj`` (bootstrapped from the next value when cut)."""
    adv = np.zeros(m)
    last = 0.0
    for t in reversed(range(m)):
        end = t == len(traj) - 1
        next_value = 0.0 if end else traj.next_values[t]
        delta = traj.rewards[t] + GAMMA * next_value - traj.values[t]
        last = delta + (0.0 if end else GAMMA * LAMBDA * last)
        adv[t] = last
    return adv


def test_trajectories_are_what_a_per_step_loop_gives_for_the_same_actions():
    env, model = _model()
    trajectories = env.collect(model.policy, 7, GAMMA)
    for k, traj in enumerate(trajectories):
        seed = int(np.random.SeedSequence([3, k]).generate_state(2)[0])
        local = ToyEnv()
        obs, _ = local.reset(seed=seed)
        for t, action in enumerate(traj.actions):
            np.testing.assert_allclose(traj.observations[t], obs)
            with torch.no_grad():
                tensor = torch.as_tensor(obs[None])
                values, log_prob, _ = model.policy.evaluate_actions(tensor, torch.as_tensor(action[None]))
            assert traj.values[t] == pytest.approx(float(values), abs=1e-5)
            assert traj.log_probs[t] == pytest.approx(float(log_prob), abs=1e-4)
            obs, reward, terminated, truncated, _ = local.step(np.clip(action, -1.0, 1.0))
            assert traj.raw_rewards[t] == pytest.approx(reward, abs=1e-6)
        assert len(traj) == local.length
        assert traj.infos[-1]["TimeLimit.truncated"] == (truncated and not terminated)
        if truncated:  # SB3's timeout bootstrap: gamma * V(terminal observation)
            with torch.no_grad():
                v = float(model.policy.predict_values(torch.as_tensor(obs[None])))
            assert traj.rewards[-1] == pytest.approx(traj.raw_rewards[-1] + GAMMA * v, abs=1e-5)
        else:
            assert traj.rewards[-1] == traj.raw_rewards[-1]


def test_the_packed_buffer_has_the_advantages_and_returns_of_a_numpy_reference():
    env, model = _model(n_envs=3, n_steps=7)
    trajectories = env.collect(model.policy, 7, GAMMA)
    buffer = RolloutBuffer(7, env.observation_space, env.action_space, "cpu", gae_lambda=LAMBDA, gamma=GAMMA, n_envs=3)
    packed = pack(trajectories, buffer)
    buffer.compute_returns_and_advantage(torch.as_tensor(packed.last_values)[:, None], packed.last_dones)
    fill, checked = [0, 0, 0], 0
    for traj in trajectories[: packed.used]:
        c = int(np.argmin(fill))
        m = min(len(traj), 7 - fill[c])
        rows = slice(fill[c], fill[c] + m)
        adv = _reference_gae(traj, m)
        np.testing.assert_allclose(buffer.advantages[rows, c], adv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(buffer.returns[rows, c], adv + traj.values[:m], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(buffer.actions[rows, c], traj.actions[:m])
        assert buffer.episode_starts[fill[c], c] == 1.0
        assert packed.dones[fill[c] + m - 1, c] == (m == len(traj))
        fill[c] += m
        checked += m
    assert fill == [7, 7, 7] and checked == 21


def test_the_same_seed_gives_the_same_trajectories_for_any_worker_count():
    runs = []
    for workers in (1, 2, 2):
        env, model = _model(workers=workers)
        runs.append(env.collect(model.policy, 7, GAMMA))
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a.actions, b.actions)
            np.testing.assert_array_equal(a.rewards, b.rewards)
            np.testing.assert_array_equal(a.log_probs, b.log_probs)


def test_learn_runs_updates_and_counts_the_timesteps_and_episodes():
    env, model = _model()
    model.learn(28)
    assert model.num_timesteps == 28
    assert len(model.ep_info_buffer) > 0  # Monitor's episode records reached the rollout logs
    with pytest.raises(NotImplementedError, match="collect='episodes'"):
        env.step(np.zeros((2, 2), np.float32))


def test_too_few_trajectories_are_refused():
    env, model = _model()
    trajectories = env.collect(model.policy, 7, GAMMA)[:1]
    buffer = RolloutBuffer(7, env.observation_space, env.action_space, "cpu", gae_lambda=LAMBDA, gamma=GAMMA, n_envs=2)
    with pytest.raises(ValueError, match="trajectories fill"):
        pack(trajectories, buffer)


def test_a_task_run_trains_with_episodes_keeps_the_paired_reward_and_resumes(tmp_path):
    import dataclasses
    import json

    from task_helpers import registered_task, tiny_run

    from agents.run.train import train_ppo
    from sparsity_gym.experiments.families import get_family

    task = "tiny_episode_collection"
    with registered_task(task):
        cfg = tiny_run(task, tmp_path, collect="episodes", n_envs=2, prior="none", reward_reference="linear")
        (tmp_path / "checkpoints").mkdir()
        _, state = train_ppo(cfg, tmp_path, get_family(task), "none")
        assert state["num_timesteps"] == 8 and state["episodes"] == 4  # 2 columns x 4 rows, 2 decisions an episode
        assert state["reference_episodes"] > 0  # the paired reward's reference ran in the workers
        assert list((tmp_path / "tb").rglob("events.out.tfevents*"))
        assert (tmp_path / "checkpoints" / "last.zip").exists()
        resumed = dataclasses.replace(cfg, total_timesteps=16, resume=True)
        _, state = train_ppo(resumed, tmp_path, get_family(task), "none")
        assert (state["num_timesteps"], state["episodes"]) == (16, 8)
        assert json.loads((tmp_path / "checkpoints" / "state.json").read_text())["num_timesteps"] == 16
        cached = len(json.loads((tmp_path / "reference_cache.json").read_text()))
        assert state["reference_episodes"] == cached  # both sessions' (the first's are the cache's hits here)
        _, again = train_ppo(resumed, tmp_path, get_family(task), "none")  # nothing left: the run's totals stand
        assert (again["num_timesteps"], again["reference_episodes"]) == (16, cached)
    with pytest.raises(ValueError, match="collect='episodes' is not allowed with norm_reward=True"):
        tiny_run("mnist1d_mlp", tmp_path, collect="episodes", norm_reward=True)
