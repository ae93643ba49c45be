"""Run any policy (an SB3 model or a fixed policy) for several seeds and collect one row per episode."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv


class Policy(Protocol):
    """Anything with stable-baselines3's ``predict`` signature."""

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """Return ``(action, state)``."""
        ...


PolicyLike = Policy | Callable[[SparsityEnv], Policy]


class Bindable(Protocol):
    """A policy that checks an env before acting on it: ``bind(env)`` returns the policy to act with, or raises."""

    def bind(self, env: Any) -> Any:
        """Check ``env`` (its ``unwrapped.layout.columns`` and ``unwrapped.config``); the policy to act with."""
        ...


def bind(policy: Policy, env: Any) -> Policy:
    """``policy.bind(env)`` when the policy has a ``bind`` (:class:`Bindable`), else ``policy`` unchanged."""
    method = getattr(policy, "bind", None)
    if not callable(method):
        return policy
    bound = method(env)
    return policy if bound is None else bound


@dataclass
class EpisodeResult:
    """One episode of one policy on one network and seed."""

    policy: str
    network: str
    split: str
    seed: int
    selector: str
    granularity: str
    target_density: float | None
    test_accuracy: float
    val_accuracy: float
    final_density: float
    inference_flops: int
    dense_flops: int
    training_flops: int
    wall_time_s: float
    diverged: bool
    invalid_actions: int
    progress: list[float] = field(default_factory=list)
    schedule: list[list[float]] = field(default_factory=list)
    regrowth: str = "random"
    base_dense_flops: int = 0
    config_hash: str = ""
    env: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The flat fields (without the per-decision schedule and the env settings), for CSV."""
        d = asdict(self)
        for key in ("progress", "schedule", "env"):
            d.pop(key)
        return d

    @property
    def flops_fraction(self) -> float:
        """Inference FLOPs over those of the dense network as specified (before any ``capacity`` widening)."""
        return self.inference_flops / (self.base_dense_flops or self.dense_flops)


def env_settings(config: EnvConfig) -> dict[str, Any]:
    """``config.to_dict()`` as JSON-ready values (a user's network factory by its qualified name)."""
    values = config.to_dict()
    if callable(values["network"]):
        net = values["network"]
        values["network"] = f"{getattr(net, '__module__', '?')}.{getattr(net, '__qualname__', config.network_name)}"
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def config_hash(settings: Mapping[str, Any]) -> str:
    """A short stable hash (10 hex digits of SHA-1) of :func:`env_settings`: the key of ``configs.json``."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def run_episode(env: SparsityEnv, policy: Policy, seed: int, deterministic: bool = True) -> tuple[dict, list, list]:
    """Play one episode; return the last ``info``, the progress at each decision and the layer densities.

    ``predict``'s returned state is passed back at the next step, with ``episode_start`` true at the first
    step only, as SB3's ``evaluate_policy`` does: a recurrent policy (sb3-contrib's ``RecurrentPPO``) keeps
    its memory through the episode and starts each episode afresh.
    """
    obs, info = env.reset(seed=seed)
    progress, schedule = [], []
    done, invalid = False, 0
    state: Any = None
    episode_start = np.ones((1,), dtype=bool)
    while not done:
        action, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        episode_start = np.zeros((1,), dtype=bool)
        progress.append(env.progress)
        obs, _, terminated, truncated, info = env.step(
            np.asarray(action, dtype=np.float32).reshape(env.action_space.shape)
        )
        invalid += info["invalid_actions"]
        schedule.append([float(d) for d in info["layer_densities"]])
        done = terminated or truncated
    info["invalid_actions"] = invalid
    return info, progress, schedule


def evaluate(
    policy: PolicyLike,
    config: EnvConfig | Mapping[str, Any],
    seeds: Iterable[int],
    policy_name: str,
    split: str = "train",
    network_name: str | None = None,
    progress_bar: Any = None,
) -> list[EpisodeResult]:
    """Run ``policy`` for each seed in a fresh env built from ``config``; one :class:`EpisodeResult` a seed.

    ``policy`` is an object with ``predict`` or a factory ``env -> policy`` (how fixed policies are built, as
    they read the env's layout). ``progress_bar`` (e.g. a ``tqdm``) is advanced once per episode.

    A policy that can check an env (:class:`Bindable`: a ``bind(env)`` method, as ``agents.ppo.agent.LayerwiseAgent``
    has) is bound to the episode's env before it acts, so a model whose observation columns or action map differ
    from the env's is refused (``ValueError``) before any episode runs; ``bind``'s result acts (``None``: the
    policy itself).
    """
    cfg = config if isinstance(config, EnvConfig) else EnvConfig(**config)
    settings = env_settings(cfg)
    env = SparsityEnv(config=cfg)
    try:
        agent = bind(policy if hasattr(policy, "predict") else policy(env), env)
        results = []
        for seed in seeds:
            start = time.perf_counter()
            info, progress, schedule = run_episode(env, agent, int(seed))
            results.append(
                EpisodeResult(
                    policy=policy_name,
                    network=network_name or cfg.network_name,
                    split=split,
                    seed=int(seed),
                    selector=cfg.selector,
                    granularity=cfg.granularity,
                    target_density=cfg.target_density,
                    test_accuracy=float(info["test_accuracy"]),
                    val_accuracy=float(info["val_accuracy"]),
                    final_density=float(info["density"]),
                    inference_flops=int(info["flops"]),
                    dense_flops=int(info["dense_flops"]),
                    training_flops=int(info["training_flops"]),
                    wall_time_s=time.perf_counter() - start,
                    diverged=bool(info["diverged"]),
                    invalid_actions=int(info["invalid_actions"]),
                    progress=progress,
                    schedule=schedule,
                    regrowth=cfg.regrowth,
                    base_dense_flops=int(info.get("base_dense_flops", info["dense_flops"])),
                    config_hash=config_hash(settings),
                    env=settings,
                )
            )
            if progress_bar is not None:
                progress_bar.update(1)
        return results
    finally:
        env.close()


def seeds_from(first: int, count: int) -> Sequence[int]:
    """``count`` consecutive evaluation seeds starting at ``first``."""
    return list(range(first, first + count))
