"""RayVecEnv: the same first PPO rollout as SubprocVecEnv, and a killed actor does not end the run.

One Ray rollout serves both tests (actor start-up is most of their time): an actor is killed in it, mid-episode.
"""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from agents.run.train import make_train_env
from agents.settings.train_config import TrainConfig
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.families import get_family

ray = pytest.importorskip("ray")

N_ENVS, N_STEPS = 2, 4  # episodes of 2 decisions: each env plays two episodes (an automatic reset) per rollout


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(vec_env: str) -> TrainConfig:
    env = EnvConfig(dataset="synthetic", total_iterations=4, decision_interval=2, observations=())
    return TrainConfig(env=env, vec_env=vec_env, n_envs=N_ENVS, n_steps=N_STEPS, batch_size=N_STEPS, seed=3)


class _KillActor(BaseCallback):
    """Kill env 0's actor after ``at`` steps of the rollout (mid-episode: the second episode's first decision)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls, self.reported = at, 0, []

    def _on_step(self) -> bool:
        self.calls += 1
        self.reported += [info["actor_restarts"] for info in self.locals["infos"] if "actor_restarts" in info]
        if self.calls == self.at:
            ray.kill(self.training_env.unwrapped.actors[0])
        return True


def _first_rollout(vec_env: str, callback: BaseCallback | None = None) -> tuple[dict[str, np.ndarray], int]:
    cfg = _cfg(vec_env)
    env = make_train_env(cfg, get_family(cfg.family))
    try:
        model = PPO("MlpPolicy", env, n_steps=N_STEPS, batch_size=N_STEPS, n_epochs=1, seed=cfg.seed, device="cpu")
        model.learn(N_STEPS * N_ENVS, callback=callback)  # one rollout, one update
        buffer = model.rollout_buffer
        rollout = {k: getattr(buffer, k).copy() for k in ("observations", "actions", "rewards", "episode_starts")}
        return rollout, getattr(env.unwrapped, "actor_restarts", 0)
    finally:
        env.close()


@pytest.fixture(scope="module")
def ray_run() -> tuple[dict[str, np.ndarray], int, list[int]]:
    killer = _KillActor(at=3)
    rollout, restarts = _first_rollout("ray", killer)
    return rollout, restarts, killer.reported


def test_ray_rollout_equals_subprocess_rollout(ray_run):
    ray_rollout = ray_run[0]
    subproc, restarts = _first_rollout("subproc")
    assert restarts == 0
    assert ray_rollout["episode_starts"][:, 0].tolist() == [1, 0, 1, 0]  # two episodes per env were played
    for key, expected in subproc.items():
        np.testing.assert_array_equal(ray_rollout[key], expected, err_msg=key)


def test_killed_actor_is_restarted_and_counted(ray_run):
    _, restarts, reported = ray_run
    assert restarts == 1  # the run went on: the rollout above is complete and equal to the subprocess one
    assert reported == [1]  # info["actor_restarts"] on the step that restarted
