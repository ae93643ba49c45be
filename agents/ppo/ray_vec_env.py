"""A stable-baselines3 ``VecEnv`` whose envs are Ray actors: PPO collects training episodes from a cluster.

:class:`RayVecEnv` is a drop-in for ``SubprocVecEnv`` (``make_vec_env(..., vec_env_cls=RayVecEnv)``): every env
lives in a Ray actor that declares ``num_cpus`` / ``num_gpus`` (fractional GPUs allowed, e.g. 0.25 packs four
envs on a GPU); ``step_async`` issues one remote call per env and ``step_wait`` gathers them, so the envs step in
parallel. The actor runs SB3's own worker protocol (``SubprocVecEnv``'s ``_worker``: done = terminated or
truncated, ``terminal_observation`` and ``TimeLimit.truncated`` in ``info``, automatic reset), so for the same
seeds it gives the same episodes as ``SubprocVecEnv``.

**A dead actor** (its node lost, the process killed, ``ray.kill``) is replaced by a new actor built from the
same env factory, and the interrupted episode is **re-run**: the new env is reset exactly as the episode began
(with the episode's seed, or, for an automatic reset, with the env's random generator as it was just before
that reset) and the actions PPO already took in the episode are replayed, then the pending step is done. An
episode is a function of its seed and its actions, so the replay reproduces the observations and rewards PPO
has already stored: the rollout buffer stays consistent (no made-up ``done`` cutting an episode short, no
transition missing), at the cost of re-running the episode's prefix. The restarts are counted
(:attr:`RayVecEnv.actor_restarts`, ``info["actor_restarts"]`` on the step that restarted, and
:class:`ActorRestartsCallback` logs ``ray/actor_restarts`` to TensorBoard). What the replay cannot restore:
attributes set on the old env with ``set_attr`` / ``env_method`` since its start.

A local Ray is started when none is connected and no ``address`` is given (``num_cpus`` = what the actors
need, no dashboard, worker logs kept off the driver) and shut down by :meth:`RayVecEnv.close`. Ray is the
optional extra ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env.base_vec_env import (
    CloudpickleWrapper,
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from sparsity_gym.core.checks import check_number
from sparsity_gym.experiments.grid import import_ray

EpisodeStart = tuple[str, Any, Any]
"""How an episode began: ``("seed", seed, options)`` for an explicit reset, ``("rng", generator, None)`` for an
automatic one (the env's ``np_random`` just before it; ``None`` when the env had none yet)."""


def gymnasium_env(env: Any) -> gym.Env:
    """``env`` itself when it is a Gymnasium env, else ``ValueError`` (what the actor can step).

    SB3's worker passes its env through ``stable_baselines3.common.vec_env.patch_gym._patch_env`` (SB3 2.x), which
    returns a Gymnasium env unchanged and wraps an OpenAI Gym env with shimmy; here a Gym env is refused instead.
    """
    if not isinstance(env, gym.Env):
        raise ValueError(f"env={type(env).__name__!r} is not allowed; expected a gymnasium.Env")
    return env


def stack_observations(observations: Sequence[VecEnvObs], space: gym.spaces.Space) -> VecEnvObs:
    """One observation per env stacked along a new first axis (per key of a ``Dict``, per item of a ``Tuple``).

    The lines of ``stable_baselines3.common.vec_env.subproc_vec_env._stack_obs`` (SB3 2.x), which
    ``SubprocVecEnv`` uses, so both vector envs hand PPO the same arrays.
    """
    if isinstance(space, gym.spaces.Dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in space.spaces}  # type: ignore[call-overload]
    if isinstance(space, gym.spaces.Tuple):
        return tuple(np.stack([obs[i] for obs in observations]) for i in range(len(space.spaces)))  # type: ignore[index]
    return np.stack(observations)  # type: ignore[arg-type]


class EnvActor:
    """The body of one Ray actor: an env built from its factory, stepped with SB3's worker semantics."""

    def __init__(self, env_fn: CloudpickleWrapper) -> None:
        self.env = gymnasium_env(env_fn.var())

    def _generator(self) -> Any:
        return copy.deepcopy(getattr(self.env.unwrapped, "_np_random", None))

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        """``env.reset(seed=seed, options=options)`` (options only when given, as SB3 passes them)."""
        maybe_options = {"options": options} if options else {}
        return self.env.reset(seed=seed, **maybe_options)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, dict[str, Any], dict[str, Any], Any]:
        """One step; at the episode's end the automatic reset. Returns SB3's five values and the start record.

        The sixth value is the env's random generator just before an automatic reset (``None`` otherwise): the
        driver keeps it to re-run that episode on a new actor if this one dies.
        """
        observation, reward, terminated, truncated, info = self.env.step(action)
        done = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        reset_info: dict[str, Any] = {}
        generator = None
        if done:
            info["terminal_observation"] = observation
            generator = self._generator()
            observation, reset_info = self.env.reset()
        return observation, float(reward), done, info, reset_info, generator

    def replay(self, start: EpisodeStart, actions: Sequence[np.ndarray]) -> Any:
        """Begin an episode as ``start`` says and take ``actions``; the last step's result (or the reset's)."""
        kind, value, options = start
        if kind == "seed":
            result: Any = self.reset(value, options)
        else:
            if value is not None:
                self.env.unwrapped._np_random = copy.deepcopy(value)
            result = self.env.reset()
        for action in actions:
            result = self.step(action)
        return result

    def spaces(self) -> tuple[gym.spaces.Space, gym.spaces.Space]:
        """The env's observation and action spaces."""
        return self.env.observation_space, self.env.action_space

    def get_attr(self, name: str) -> Any:
        """An attribute of the env (through its wrappers)."""
        return self.env.get_wrapper_attr(name)

    def set_attr(self, name: str, value: Any) -> None:
        """Set an attribute on the (outer) env."""
        setattr(self.env, name, value)

    def env_method(self, name: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        """Call a method of the env (through its wrappers)."""
        return self.env.get_wrapper_attr(name)(*args, **kwargs)

    def is_wrapped(self, wrapper_class: type[gym.Wrapper]) -> bool:
        """Whether the env is wrapped in ``wrapper_class``."""
        from stable_baselines3.common.env_util import is_wrapped

        return is_wrapped(self.env, wrapper_class)

    def render(self) -> Any:
        """The env's render."""
        return self.env.render()

    def close(self) -> None:
        """Close the env."""
        self.env.close()


class RayVecEnv(VecEnv):
    """SB3 ``VecEnv`` of Ray actors (see the module docstring).

    Args:
        env_fns: One env factory per env (picklable with cloudpickle, as for ``SubprocVecEnv``).
        num_cpus: CPUs each actor declares (its env's torch threads should match; may be fractional).
        num_gpus: GPUs each actor declares (fractional allowed: 0.5 puts two envs on a GPU).
        address: Address of a running Ray cluster (``ray.init(address=...)``); default: the connected one,
            else a local Ray with the CPUs the actors need, started here and shut down by :meth:`close`.
        max_restarts: Dead actors replaced per env before the error is raised (each restart re-runs an episode).

    Raises:
        ValueError: A bad ``num_cpus``, ``num_gpus`` or ``max_restarts``.
        ImportError: Ray is not installed.

    """

    def __init__(
        self,
        env_fns: list[Callable[[], gym.Env]],
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        address: str | None = None,
        max_restarts: int = 10,
    ) -> None:
        check_number("num_cpus", num_cpus, low=0.0)
        check_number("num_gpus", num_gpus, low=0.0)
        check_number("max_restarts", max_restarts, low=0, integer=True)
        self._ray = import_ray()
        self.started_ray = False
        if not self._ray.is_initialized():
            if address:
                self._ray.init(address=address, log_to_driver=False)
            else:
                cpus = max(1, math.ceil(num_cpus * len(env_fns)))
                self._ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
                self.started_ray = True
        self._actor_cls = self._ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0)(EnvActor)
        self._env_fns = [CloudpickleWrapper(fn) for fn in env_fns]
        self.actors = [self._actor_cls.remote(fn) for fn in self._env_fns]
        self.max_restarts = int(max_restarts)
        self.actor_restarts = 0
        self.restarts_per_env = [0] * len(env_fns)
        self._starts: list[EpisodeStart | None] = [None] * len(env_fns)
        self._actions: list[list[np.ndarray]] = [[] for _ in env_fns]
        self._pending: list[tuple[Any, np.ndarray]] = []
        self.closed = False
        observation_space, action_space = self._ray.get(self.actors[0].spaces.remote())
        super().__init__(len(env_fns), observation_space, action_space)

    # --- stepping -------------------------------------------------------------------------------------------
    def reset(self) -> Any:
        """Reset every env with its pending seed and options (used once, as SB3 does)."""
        refs = [actor.reset.remote(self._seeds[i], self._options[i] or None) for i, actor in enumerate(self.actors)]
        self._starts = [("seed", self._seeds[i], self._options[i] or None) for i in range(self.num_envs)]
        self._actions = [[] for _ in range(self.num_envs)]
        results = [self._get(i, ref, functools.partial(self._replay, i, [])) for i, ref in enumerate(refs)]
        obs, reset_infos = zip(*results, strict=True)
        self.reset_infos = list(reset_infos)
        self._reset_seeds()
        self._reset_options()
        return stack_observations(obs, self.observation_space)

    def step_async(self, actions: np.ndarray) -> None:
        """Send every env its action (remote calls in flight together)."""
        self._pending = [
            (actor.step.remote(action), np.array(action, copy=True))
            for actor, action in zip(self.actors, actions, strict=True)
        ]

    def step_wait(self) -> VecEnvStepReturn:
        """Gather the steps; a dead actor is replaced and its episode re-run (see the module docstring)."""
        results = []
        for i, (ref, action) in enumerate(self._pending):
            restarts = self.restarts_per_env[i]
            obs, reward, done, info, reset_info, generator = self._get(
                i, ref, functools.partial(self._replay, i, [action])
            )
            if self.restarts_per_env[i] != restarts:
                info["actor_restarts"] = self.actor_restarts
            if done:
                self._starts[i] = ("rng", generator, None)
                self._actions[i] = []
            else:
                self._actions[i].append(action)
            self.reset_infos[i] = reset_info
            results.append((obs, reward, done, info))
        self._pending = []
        obs, rews, dones, infos = zip(*results, strict=True)
        return stack_observations(obs, self.observation_space), np.stack(rews), np.stack(dones), list(infos)

    def _get(self, i: int, ref: Any, recover: Callable[[], Any]) -> Any:
        """``ray.get(ref)``; if env ``i``'s actor died, replace it and return ``recover()`` instead."""
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayActorError:
            return self._restart(i, recover)

    def _restart(self, i: int, recover: Callable[[], Any]) -> Any:
        while True:
            if self.restarts_per_env[i] >= self.max_restarts:
                raise RuntimeError(f"env {i}: its Ray actor died {self.restarts_per_env[i] + 1} times; giving up")
            self.restarts_per_env[i] += 1
            self.actor_restarts += 1
            self.actors[i] = self._actor_cls.remote(self._env_fns[i])
            try:
                return recover()
            except self._ray.exceptions.RayActorError:
                continue

    def _replay(self, i: int, pending: list[np.ndarray]) -> Any:
        """On env ``i``'s (new) actor: begin its current episode again, replay its actions, then ``pending``."""
        start = self._starts[i]
        if start is None:
            raise RuntimeError(f"env {i}: its actor died before the first reset; nothing to re-run")
        return self._ray.get(self.actors[i].replay.remote(start, [*self._actions[i], *pending]))

    # --- attributes and methods -----------------------------------------------------------------------------
    def _targets(self, indices: VecEnvIndices) -> list[Any]:
        return [self.actors[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of each chosen env."""
        return self._ray.get([a.get_attr.remote(attr_name) for a in self._targets(indices)])

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute on each chosen env (not restored on a restarted actor)."""
        self._ray.get([a.set_attr.remote(attr_name, value) for a in self._targets(indices)])

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of each chosen env."""
        return self._ray.get(
            [a.env_method.remote(method_name, method_args, method_kwargs) for a in self._targets(indices)]
        )

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Whether each chosen env is wrapped in ``wrapper_class``."""
        return self._ray.get([a.is_wrapped.remote(wrapper_class) for a in self._targets(indices)])

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Each env's render (``rgb_array`` mode)."""
        return self._ray.get([a.render.remote() for a in self.actors])

    def close(self) -> None:
        """Close the envs, end the actors, and shut down a Ray started here."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(self._ray.exceptions.RayActorError):
            self._ray.get([a.close.remote() for a in self.actors])
        for actor in self.actors:
            self._ray.kill(actor)
        if self.started_ray:
            self._ray.shutdown()


class ActorRestartsCallback(BaseCallback):
    """Log ``ray/actor_restarts`` (dead Ray actors replaced so far) at the end of each rollout."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        env = self.training_env.unwrapped if self.training_env is not None else None
        restarts = getattr(env, "actor_restarts", None)
        if restarts is not None:
            self.logger.record("ray/actor_restarts", int(restarts))
