"""Where a training phase's time goes: training episodes per second under PPO against the plain training loop.

The default run's training phase (``TrainConfig()``: the ``mlp`` family's train split, ``n_envs`` subprocess
envs, PPO with the layer-aware policy) runs ``--updates`` PPO updates. Each env worker times its own parts (the
methods of the episode's parts wrapped with timers in the worker): **training steps** (the optimizer steps and
the pruning driver's step; the observers' forward hooks on measured steps count here), **statistics** (the
observers' gradient work in the driver's step pre-hook, and the observation),
**validation passes** (validation and the final test pass), and the rest of the env (actions, masks, reset).
This process times the **PPO updates** and each vector step, and the **inter-process traffic** is a step's wall
time minus the slowest worker's time inside it (pickling, pipes, waiting). The floor is the plain training
loop (``sparsity_gym.env.training.TrainingLoop``, no env, masks or statistics) of the same episodes (the same
networks, data and iterations), run afterwards in this process with one thread, divided by ``n_envs`` as the
envs run in parallel. Every part is printed as a ratio to that floor, all measured in one run.

    python bench/throughput.py [--updates 1] [--n-envs 2]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import defaultdict
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnvWrapper

from agents.run.model import new_model
from agents.settings.train_config import TrainConfig
from sparsity_gym.datasets import load_dataset
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.episode import Episode
from sparsity_gym.env.training import TrainingLoop, make_optimizer
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.family_env import FamilyEnv
from sparsity_gym.models import build_network
from sparsity_gym.pruning.measurement import Statistics
from sparsity_gym.pruning.pruner import Pruner

PARTS: tuple[tuple[type, str, str], ...] = (
    (Episode, "train", "steps"),
    (Statistics, "after_backward", "statistics"),
    (Episode, "validate", "validation"),
    (Episode, "test_accuracy", "validation"),
    (Pruner, "observation", "observation"),
)


class TimedEnv(gym.Wrapper):
    """Times the env's step and reset and the wrapped methods of its parts; the deltas go into ``info``."""

    totals: dict[str, float] = defaultdict(float)  # noqa: RUF012 (one per worker process)

    def step(self, action: Any) -> Any:
        """The env's step, its part times in ``info["bench"]``."""
        before = dict(self.totals)
        start = time.perf_counter()
        out = self.env.step(action)
        out[4]["bench"] = self._delta(before, time.perf_counter() - start)
        return out

    def reset(self, **kwargs: Any) -> Any:
        """The env's reset, its part times in ``info["bench"]``."""
        before = dict(self.totals)
        start = time.perf_counter()
        obs, info = self.env.reset(**kwargs)
        info["bench"] = self._delta(before, time.perf_counter() - start)
        return obs, info

    def _delta(self, before: dict[str, float], total: float) -> dict[str, float]:
        delta = {k: v - before.get(k, 0.0) for k, v in self.totals.items()}
        delta["total"] = total
        return delta


def _timed(name: str, method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            TimedEnv.totals[name] += time.perf_counter() - start

    return wrapper


def timed_family_env(specs: tuple, config: EnvConfig) -> gym.Env:
    """A :class:`FamilyEnv` whose episode parts are timed (runs in the worker: one torch thread)."""
    torch.set_num_threads(1)
    for owner, method, name in PARTS:
        if not hasattr(getattr(owner, method), "__wrapped__"):
            setattr(owner, method, _timed(name, getattr(owner, method)))
    return TimedEnv(FamilyEnv(specs, config))


class StepTimer(VecEnvWrapper):
    """Wall time of every vector step and the slowest worker's time inside it."""

    def __init__(self, venv: Any) -> None:
        super().__init__(venv)
        self.traffic = 0.0
        self.parts: dict[str, float] = defaultdict(float)
        self.episodes: list[str] = []

    def reset(self) -> Any:
        """Reset the envs."""
        return self.venv.reset()

    def step_wait(self) -> Any:
        """Gather the step; add its traffic (wall minus the slowest worker) and the workers' part times."""
        start = time.perf_counter()
        obs, rewards, dones, infos = self.venv.step_wait()
        wall = time.perf_counter() - start + self._async
        times = [info.pop("bench", {}) for info in infos]
        self.traffic += wall - max(t.get("total", 0.0) for t in times)
        for t in times:
            for k, v in t.items():
                self.parts[k] += v
        self.episodes += [info["network"] for info, done in zip(infos, dones, strict=True) if done]
        return obs, rewards, dones, infos

    def step_async(self, actions: np.ndarray) -> None:
        """Send the actions (timed: part of the step's wall time)."""
        start = time.perf_counter()
        self.venv.step_async(actions)
        self._async = time.perf_counter() - start


def plain_episode(spec: Any, config: EnvConfig, seed: int) -> float:
    """Seconds of the plain training loop of one episode of ``spec`` (``total_iterations`` steps)."""
    cfg = config.replace(**spec.env_kwargs())
    data = load_dataset(cfg.dataset, cfg.data_seed, cfg.data_root)
    torch.manual_seed(seed)
    model = build_network(cfg.network, data.input_shape, data.num_classes, dict(cfg.network_kwargs))
    opt = make_optimizer(cfg, model)
    loop = TrainingLoop(model, opt, data, cfg, torch.device("cpu"), torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    float(loop.run(cfg.total_iterations))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1)
    parser.add_argument("--n-envs", type=int, default=2)
    args = parser.parse_args()
    cfg = TrainConfig(n_envs=args.n_envs)
    family = get_family(cfg.family)
    factory = functools.partial(timed_family_env, tuple(family.train), cfg.env)
    venv = StepTimer(make_vec_env(factory, n_envs=cfg.n_envs, seed=cfg.seed, vec_env_cls=SubprocVecEnv))
    torch.set_num_threads(1)
    model = new_model(cfg, venv, "none", family)
    update_time = [0.0]
    train = model.train

    def timed_train() -> None:
        start = time.perf_counter()
        train()
        update_time[0] += time.perf_counter() - start

    model.train = timed_train  # type: ignore[method-assign]
    start = time.perf_counter()
    model.learn(args.updates * cfg.n_steps * cfg.n_envs)
    wall = time.perf_counter() - start
    venv.close()

    specs = {s.name: s for s in family.train}
    floor = sum(plain_episode(specs[name], cfg.env, i) for i, name in enumerate(venv.episodes)) / cfg.n_envs
    p, n = venv.parts, cfg.n_envs
    stats = p["statistics"] + p["observation"]
    env_rest = p["total"] - p["steps"] - p["validation"] - p["observation"]
    rows = {
        "training steps (optimizer steps, masks, driver steps)": (p["steps"] - p["statistics"]) / n,
        "statistics (gradient statistics, observation)": stats / n,
        "validation passes (and the final test pass)": p["validation"] / n,
        "rest of the env (actions, selection, reset)": env_rest / n,
        "PPO updates": update_time[0],
        "inter-process traffic (step wall - slowest worker)": venv.traffic,
    }
    rows["rest of this process (policy inference, buffer)"] = wall - sum(rows.values())
    episodes = len(venv.episodes)
    print(f"default training phase: {args.updates} PPO update(s), {n} subprocess envs, {episodes} episodes")
    print(f"training episodes/s: {episodes / wall:.3f}   plain loop of the same episodes: {episodes / floor:.3f}")
    print(f"wall / plain loop: x{wall / floor:.2f}   (floor {floor:.1f} s, wall {wall:.1f} s)")
    for name, seconds in rows.items():
        print(f"  {name:62s} x{seconds / floor:.2f}")


if __name__ == "__main__":
    main()
