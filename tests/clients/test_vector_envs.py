"""Gymnasium's and stable-baselines3's vector envs and helpers, called as their users call them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import sparsity_gym  # noqa: F401  (registers the ids)
from baselines import make_policy
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.evaluation import evaluate

ENV_ID = "SparsityGym/Schedule-v0"
ROOT = Path(__file__).resolve().parents[2]

# A user's script, run in a fresh interpreter: the parent runs torch with two threads first (its OpenMP pool
# exists), then starts workers the ways Gymnasium and SB3 do by default (fork; SB3's default is forkserver).
# Before the fix, every fork below waited forever in an OpenMP barrier inherited from the parent.
FORK_SCRIPT = r"""import functools, json, sys
import numpy as np, torch, gymnasium as gym
import sparsity_gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

if __name__ == "__main__":  # the forkserver and spawn children import this file (and so sparsity_gym) first
    kw = json.loads(sys.argv[1])
    kw["network_kwargs"] = {"widths": tuple(kw["network_kwargs"]["widths"])}
    torch.set_num_threads(2)
    a = torch.randn(256, 256)
    (a @ a).sum().item()
    ENV_ID = "SparsityGym/Schedule-v0"
    make = functools.partial(gym.make, ENV_ID, **kw)

    out = {"parent_threads": torch.get_num_threads()}
    for name, venv in (
        ("async", gym.vector.AsyncVectorEnv([make, make])),
        ("make_vec_async", gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="async", **kw)),
    ):
        obs, _ = venv.reset(seed=0)
        for _ in range(4):
            obs, reward, terminated, truncated, info = venv.step(np.zeros(venv.action_space.shape, np.float32))
        out[name] = {"truncated": truncated.tolist(), "test_accuracy": info["test_accuracy"].tolist()}
        venv.close()
    for name, venv in (
        ("subproc_fork", SubprocVecEnv([make, make], start_method="fork")),
        ("subproc_default", make_vec_env(ENV_ID, n_envs=1, env_kwargs=kw, vec_env_cls=SubprocVecEnv)),
    ):
        venv.reset()
        for _ in range(4):
            obs, reward, dones, infos = venv.step(np.zeros((venv.num_envs, *venv.action_space.shape), np.float32))
        out[name] = {"dones": dones.tolist(), "test_accuracy": [i["test_accuracy"] for i in infos]}
        venv.close()
    print("RESULT " + json.dumps(out))
"""


def test_forked_vector_envs_do_not_hang_after_the_parent_ran_torch(tiny, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    script = tmp_path / "user_script.py"
    script.write_text(FORK_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(tiny)],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["parent_threads"] == 2  # the parent keeps its setting; only forked children use one thread
    for name in ("async", "make_vec_async"):
        assert result[name]["truncated"] == [True, True]
        assert all(0.0 <= a <= 1.0 for a in result[name]["test_accuracy"])
    for name, n in (("subproc_fork", 2), ("subproc_default", 1)):
        assert result[name]["dones"] == [True] * n
        assert all(0.0 <= a <= 1.0 for a in result[name]["test_accuracy"])


def test_sync_make_vec_runs_a_batched_fixed_policy(tiny):
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", **tiny)
    policy = make_policy("linear", SparsityEnv(**tiny))
    obs, _ = venv.reset(seed=0)
    for _ in range(4):
        actions, _ = policy.predict(obs)
        obs, reward, terminated, truncated, info = venv.step(actions)
    assert truncated.tolist() == [True, True] and not terminated.any()
    assert np.allclose(info["density"], 0.1, atol=0.01) and np.all(info["_test_accuracy"])
    venv.close()


def test_sb3_make_vec_env_accepts_its_render_mode_and_evaluate_policy_matches_evaluate(tiny):
    venv = make_vec_env(ENV_ID, n_envs=2, env_kwargs=tiny, seed=3)
    assert isinstance(venv, DummyVecEnv) and venv.envs[0].unwrapped.render_mode == "rgb_array"
    policy = make_policy("cubic", venv.envs[0])
    rewards, lengths = evaluate_policy(policy, venv, n_eval_episodes=2, return_episode_rewards=True)
    assert lengths == [4, 4]
    images = venv.get_images()
    assert all(im.shape == (64, 12 * 3, 3) and im.dtype == np.uint8 for im in images)
    # independently: the same seeds through the library's own evaluation; final_accuracy pays val accuracy
    expected = [r.val_accuracy for r in evaluate(policy, EnvConfig(**tiny), [3, 4], "cubic")]
    assert sorted(rewards) == pytest.approx(sorted(expected))
    venv.close()


def test_ppo_learns_and_is_evaluated_by_sb3_and_by_evaluate(tiny):
    venv = make_vec_env(ENV_ID, n_envs=2, env_kwargs=tiny, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=4, batch_size=8, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=8)
    mean, std = evaluate_policy(model, venv, n_eval_episodes=2)
    assert 0.0 <= mean <= 1.0
    [result] = evaluate(model, EnvConfig(**tiny), [0], "ppo")
    assert 0.0 <= result.test_accuracy <= 1.0 and len(result.schedule) == 4
    venv.close()


def test_vec_normalize_saves_and_loads(tiny, tmp_path):
    venv = VecNormalize(make_vec_env(ENV_ID, n_envs=2, env_kwargs=tiny, seed=0))
    venv.reset()
    for _ in range(4):
        venv.step(np.zeros((2, 3), np.float32))
    venv.save(tmp_path / "vecnormalize.pkl")
    loaded = VecNormalize.load(tmp_path / "vecnormalize.pkl", make_vec_env(ENV_ID, n_envs=2, env_kwargs=tiny))
    assert np.array_equal(loaded.obs_rms.mean, venv.obs_rms.mean) and loaded.obs_rms.count == venv.obs_rms.count
    raw = venv.get_original_obs()
    assert np.allclose(loaded.normalize_obs(raw), venv.normalize_obs(raw))
    venv.close()
    loaded.close()


def test_an_env_built_before_a_fork_runs_in_the_child(tiny, tmp_path):
    script = tmp_path / "inherit.py"
    script.write_text(INHERIT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(tiny)], capture_output=True, text=True, timeout=150, cwd=ROOT, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("RESULT ", 1)[1].split() == ["1", "2"]  # child: one thread; parent: untouched


# The env is built (torch runs) in the parent, then a forked child resets and steps the inherited object.
INHERIT_SCRIPT = r"""import json, multiprocessing, sys
import numpy as np, torch
from sparsity_gym.env.sparsity_env import SparsityEnv

def child(env, queue):
    env.reset(seed=0)
    env.step(np.zeros(env.action_space.shape, np.float32))
    queue.put(torch.get_num_threads())

if __name__ == "__main__":
    torch.set_num_threads(2)
    kw = json.loads(sys.argv[1])
    env = SparsityEnv(**kw)
    env.reset(seed=0)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(env, queue))
    proc.start()
    threads = queue.get(timeout=120)
    proc.join()
    print("RESULT", threads, torch.get_num_threads())
"""
