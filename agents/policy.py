"""A stable-baselines3 policy that acts on networks of any depth: one small MLP shared by every layer's row.

Design (issue 5, "a policy for any network"): the observation of a network with ``L`` prunable layers is an
``(L, F)`` array whose rows mean the same thing for every network (``sparsity_gym.observation.features``;
global features
repeated on each row). :class:`LayerwisePolicy` reads a padded observation ``(max_layers, F + 1)`` from
``sparsity_gym.env.wrappers.PadLayers`` (last column: 1 for a real layer, 0 for padding) and

* **actor**: applies one MLP to every row (shared weights, per-layer heads) giving that layer's Gaussian mean;
  one learned log-std shared by all layers. The layers' actions are independent given the observation.
  With ``pooling="deepsets"`` (what ``train_agent.py`` builds; issue 14, "an actor that sees the other
  layers") each layer's mean depends on its row *and* on a summary of every valid row: an MLP embeds each
  row, the embeddings are mean- and max-pooled over the valid rows (Deep Sets, Zaheer et al. 2017, §2:
  ``rho(pool(phi(x_i)))``, here concatenated back to every row as in their permutation-*equivariant* layer,
  §2.2 / Qi et al. 2017's PointNet segmentation head), and a per-row head maps ``[phi(x_l), mean, max]`` to
  the mean. So the actor can trade one layer's density against another's, which a global budget needs, and
  it is still one set of weights for any depth, equivariant to the order of the layers, blind to padding.
  ``pooling="none"`` (the default of the class, so models saved before the option load unchanged) is the
  row-only actor.
  With a ``prior`` (a handcrafted schedule's name, ``baselines.schedules``), the MLP's output is a *residual*
  added to the prior's action at the row's ``progress`` and ``target_density`` (residual policy learning,
  Silver et al. 2018; Johannink et al. 2019): the last layer starts near zero (gain 0.01), so the untrained
  policy follows the prior schedule and PPO searches around it instead of around a constant density.
* **critic**: embeds every row with a second MLP, pools the valid rows (mean and max, concatenated) and maps
  the pooled vector to the value.
* **masking**: padded rows add nothing to the log-probability, the entropy or the value (they are masked out),
  so PPO's probability ratios are those of the real layers only, and a padded observation has exactly the
  log-probability of the unpadded one.

Because nothing depends on the number of rows, the same weights act on a deeper network than any seen in
training: :class:`LayerwiseAgent` feeds an env's raw ``(L, F)`` observation (any ``L``) straight to the policy
with SB3's ``predict`` signature, so ``sparsity_gym.experiments.evaluation.evaluate`` and ``evaluate_policy``
run it like
any baseline. The policy records the training env's column names (``feature_names``, a policy keyword saved in
the model by ``PPO.save``); loading needs only ``PPO.load(path)`` (this class is pickled by reference to
``agents.policy``, which the unpickler imports).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule

from baselines.handcrafted import parse_cell
from baselines.schedules import SCHEDULES
from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.pruning.actions import ACTION_SCALES, to_action

NO_PRIOR = "none"
POOLINGS = ("none", "deepsets")


class MaskedDiagGaussianDistribution(DiagGaussianDistribution):
    """A diagonal Gaussian whose masked-out dimensions (padding rows) count in neither log-prob nor entropy."""

    def proba_distribution(
        self, mean_actions: torch.Tensor, log_std: torch.Tensor, mask: torch.Tensor | None = None
    ) -> MaskedDiagGaussianDistribution:
        """Set the distribution's parameters; ``mask`` (same shape as the mean) is 1 for real layers."""
        super().proba_distribution(mean_actions, log_std.expand_as(mean_actions))
        self.mask = torch.ones_like(mean_actions) if mask is None else mask.to(mean_actions.dtype)
        return self

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Sum of the per-layer log-densities over real layers."""
        return (self.distribution.log_prob(actions) * self.mask).sum(dim=-1)

    def entropy(self) -> torch.Tensor:
        """Sum of the per-layer entropies over real layers."""
        return (self.distribution.entropy() * self.mask).sum(dim=-1)


def _mlp(n_in: int, hidden: Sequence[int], n_out: int | None, activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, int(width)), activation()]
        n_in = int(width)
    if n_out is not None:
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class LayerwisePolicy(ActorCriticPolicy):
    """Row-wise actor and pooled critic over a padded ``(max_layers, F + 1)`` observation (see the module doc).

    Args:
        observation_space: ``Box((max_layers, F + 1))``, the last column the row's validity.
        action_space: ``Box(-1, 1, (max_layers,))``.
        lr_schedule: SB3's learning-rate schedule.
        hidden: Hidden widths of the per-row actor MLP and of the critic's row encoder.
        log_std_init: Initial log standard deviation (shared by all layers).
        feature_names: The training env's column names (validity last), kept with the model so that a loaded
            policy can check an env's columns before acting.
        activation_fn: Activation of both MLPs.
        prior: ``none``, or the handcrafted schedule (``linear``, ``quadratic``, ``cubic``, ``cosine``,
            ``constant``, optionally with its window end: ``cubic@0.9``, ``baselines.handcrafted``) whose action
            the actor's output is added to (see the module doc). Needs the ``progress`` and ``target_density``
            columns in ``feature_names``. An allocation rule is the env's (``EnvConfig.allocation`` with
            ``allocation_tilt``), not the prior's.
        density_range: The env's ``(min_density, max_density)``: how a prior density maps to an action.
        action_scale: The env's ``action_scale`` (``linear`` or ``log``), the other half of that map.
        pooling: ``none`` (each layer's mean from its own row) or ``deepsets`` (from its row and the mean- and
            max-pooled embeddings of every valid row; see the module doc).
        **kwargs: Other :class:`ActorCriticPolicy` keywords (``optimizer_class``...); ``net_arch`` is ignored.

    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        lr_schedule: Schedule,
        hidden: Sequence[int] = (64, 64),
        log_std_init: float = -0.5,
        feature_names: Sequence[str] = (),
        activation_fn: type[nn.Module] = nn.Tanh,
        prior: str = NO_PRIOR,
        density_range: tuple[float, float] = (0.02, 1.0),
        pooling: str = "none",
        action_scale: str = "linear",
        **kwargs: Any,
    ) -> None:
        if len(observation_space.shape) != 2:
            raise ValueError(
                f"observation_space has shape {observation_space.shape}; expected (max_layers, features + 1) "
                "(wrap the env in sparsity_gym.env.wrappers.PadLayers or use FamilyEnv)"
            )
        if action_space.shape != observation_space.shape[:1]:
            raise ValueError(f"action_space has shape {action_space.shape}; expected {observation_space.shape[:1]}")
        self.hidden = tuple(int(h) for h in hidden)
        self.feature_names = tuple(feature_names)
        self._window: dict[str, float] = {}
        if prior != NO_PRIOR:
            try:
                shape, end, allocation = parse_cell(prior)
            except ValueError:
                raise ValueError(
                    f"prior={prior!r} is not allowed; expected {NO_PRIOR!r} or a schedule of {tuple(SCHEDULES)!r}, "
                    "optionally with its window end (e.g. 'cubic@0.9')"
                ) from None
            if allocation is not None:
                raise ValueError(
                    f"prior={prior!r} is not allowed; expected a schedule without '+allocation' (e.g. "
                    f"{prior.partition('+')[0]!r}): the allocation rule is the env's (EnvConfig.allocation, with "
                    "allocation_tilt=True for a residual on it)"
                )
            self._shape = shape
            self._window = {} if end is None or shape == "constant" else {"p_end": end}
        low, high = (float(v) for v in density_range)
        check_number("density_range", low, low=0.0, high=1.0, low_inclusive=False)
        check_number("density_range", high, low=low, high=1.0, low_inclusive=False)
        if prior != NO_PRIOR:
            missing = [c for c in ("progress", "target_density") if c not in self.feature_names]
            if missing:
                raise ValueError(
                    f"prior={prior!r} is not allowed without the observation columns {missing}; pass the env's "
                    "feature_names (FamilyEnv.feature_names) or prior='none'"
                )
        self.prior = prior
        check_choice("pooling", pooling, POOLINGS)
        self.pooling = pooling
        self.density_range = (low, high)
        check_choice("action_scale", action_scale, ACTION_SCALES)
        self.action_scale = action_scale
        self._prior_cache: dict[tuple[float, float], float] = {}
        kwargs.pop("net_arch", None)
        kwargs.update(activation_fn=activation_fn, log_std_init=log_std_init)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    @property
    def num_features(self) -> int:
        """Feature columns per row, without the validity column."""
        shape = self.observation_space.shape
        assert shape is not None  # a Box
        return int(shape[1]) - 1

    def _build(self, lr_schedule: Schedule) -> None:
        n = self.num_features
        action_shape = self.action_space.shape
        assert action_shape is not None  # a Box
        self.action_dist = MaskedDiagGaussianDistribution(int(action_shape[0]))
        width = self.hidden[-1] if self.hidden else n
        if self.pooling == "deepsets":
            self.actor_rows = _mlp(n, self.hidden, None, self.activation_fn)
            self.actor = _mlp(3 * width, (width,), 1, self.activation_fn)  # the per-row head
        else:
            self.actor = _mlp(n, self.hidden, 1, self.activation_fn)
        self.critic_rows = _mlp(n, self.hidden, None, self.activation_fn)
        self.value_net = nn.Linear(2 * width, 1)
        self.log_std = nn.Parameter(torch.tensor(float(self.log_std_init)))
        if self.ortho_init:
            modules = [(self.actor, np.sqrt(2)), (self.critic_rows, np.sqrt(2)), (self.value_net, 1.0)]
            if self.pooling == "deepsets":
                modules.append((self.actor_rows, np.sqrt(2)))
            for module, gain in modules:
                module.apply(lambda m, g=gain: self.init_weights(m, gain=g))
            self.init_weights(self.actor[-1], gain=0.01)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            hidden=self.hidden,
            feature_names=self.feature_names,
            prior=self.prior,
            density_range=self.density_range,
            pooling=self.pooling,
            action_scale=self.action_scale,
        )
        data.pop("net_arch", None)
        return data

    # -------------------------------------------------------------------------------------------- the networks
    @staticmethod
    def _split(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = obs.float()
        if obs.dim() == 2:
            obs = obs[None]
        return obs[..., :-1], obs[..., -1] > 0.5

    def prior_actions(self, features: torch.Tensor) -> torch.Tensor:
        """The prior schedule's action for every row ``(n, rows)`` (zeros without a prior).

        Row ``(i, l)`` gets ``density_to_action(schedule(progress, target))`` with the row's own ``progress`` and
        ``target_density`` columns (a target of -1, none set, schedules towards density 1), with the env's own
        map (``sparsity_gym.env.to_action``, as ``SparsityEnv.density_to_action``).
        It is a constant of the observation: no gradient flows through it.
        """
        if self.prior == NO_PRIOR:
            return torch.zeros(features.shape[:-1], dtype=features.dtype, device=features.device)
        columns = {name: i for i, name in enumerate(self.feature_names)}
        pairs = features[..., [columns["progress"], columns["target_density"]]].detach().cpu().numpy()
        flat = pairs.reshape(-1, 2).astype(np.float64)
        keys = [(float(p), float(t)) for p, t in flat]
        out = np.fromiter((self._prior_action(*key) for key in keys), dtype=np.float32, count=len(keys))
        return torch.as_tensor(out.reshape(pairs.shape[:-1]), device=features.device)

    def _prior_action(self, progress: float, target: float) -> float:
        key = (progress, target)
        if key not in self._prior_cache:
            if len(self._prior_cache) > 100_000:
                self._prior_cache.clear()
            density = SCHEDULES[self._shape](progress, target if target > 0 else 1.0, **self._window)
            self._prior_cache[key] = float(to_action(density, *self.density_range, self.action_scale))
        return self._prior_cache[key]

    @staticmethod
    def _pool(rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(n, 2 * width)``: mean and max of the valid rows' embeddings ``(n, rows, width)`` (padding ignored)."""
        keep = valid.unsqueeze(-1)
        mean = rows.masked_fill(~keep, 0.0).sum(1) / keep.sum(1).clamp_min(1).to(rows.dtype)
        peak = rows.masked_fill(~keep, float("-inf")).amax(1)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        return torch.cat([mean, peak], dim=-1)

    def action_means(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The actor's output per row ``(n, rows)`` before the prior (padding rows: 0, whatever they hold)."""
        if self.pooling == "deepsets":
            rows = self.actor_rows(features)
            pooled = self._pool(rows, valid).unsqueeze(1).expand(-1, rows.shape[1], -1)
            out = self.actor(torch.cat([rows, pooled], dim=-1)).squeeze(-1)
        else:
            out = self.actor(features).squeeze(-1)
        return torch.where(valid, out, torch.zeros_like(out))

    def distribution(self, obs: torch.Tensor) -> MaskedDiagGaussianDistribution:
        """The action distribution for a batch ``(n, rows, F + 1)`` with any number of rows."""
        features, valid = self._split(obs)
        mean = self.action_means(features, valid) + self.prior_actions(features)
        mean = torch.where(valid, mean, torch.zeros_like(mean))
        dist = self.action_dist.proba_distribution(mean, self.log_std, valid)
        assert isinstance(dist, MaskedDiagGaussianDistribution)
        return dist

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """The critic's value ``(n, 1)``: mean and max of the valid rows' embeddings, then a linear map."""
        features, valid = self._split(obs)
        return self.value_net(self._pool(self.critic_rows(features), valid))

    # -------------------------------------------------------------------------------------- SB3's interface
    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, ...]:
        """Actions, values and log-probabilities (SB3's rollout collection)."""
        dist = self.distribution(obs)
        actions = dist.get_actions(deterministic=deterministic)
        return actions, self.value(obs), dist.log_prob(actions)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Values, log-probabilities and entropy of ``actions`` (PPO's update); padding is masked out."""
        dist = self.distribution(obs)
        return self.value(obs), dist.log_prob(actions), dist.entropy()

    def get_distribution(self, obs: torch.Tensor) -> MaskedDiagGaussianDistribution:
        """The action distribution (SB3's ``predict``)."""
        return self.distribution(obs)

    def predict_values(self, obs: torch.Tensor) -> torch.Tensor:
        """The critic's value (SB3's bootstrap)."""
        return self.value(obs)


class LayerwiseAgent:
    """A trained :class:`LayerwisePolicy` acting on raw ``(L, F)`` observations of any ``L`` (SB3 ``predict``).

    ``predict`` also accepts padded observations (``F + 1`` columns, validity last), single or batched.
    ``bind(env)`` checks that the env's observation columns are those the policy was trained on.

    Args:
        model: A PPO model (or its policy) whose policy is a :class:`LayerwisePolicy`.
        name: The label in reports.

    """

    def __init__(self, model: Any, name: str = "ppo") -> None:
        policy = getattr(model, "policy", model)
        if not isinstance(policy, LayerwisePolicy):
            raise ValueError(f"model has policy {type(policy).__name__}; expected agents.policy.LayerwisePolicy")
        self.policy = policy
        self.name = name

    @classmethod
    def load(cls, path: str | Path, name: str = "ppo") -> LayerwiseAgent:
        """Load a model saved with ``PPO.save`` (``ValueError`` if it is missing)."""
        from stable_baselines3 import PPO

        if not Path(path).exists():
            raise ValueError(f"model={str(path)!r} is not allowed: no such file; expected a model.zip saved by PPO")
        return cls(PPO.load(path, device="cpu"), name=name)

    def bind(self, env: gym.Env) -> LayerwiseAgent:
        """Return ``self`` after checking ``env``'s observation columns against the training env's."""
        columns = tuple(getattr(env.unwrapped, "layout").columns)  # noqa: B009 (any env with a column layout)
        expected = self.policy.feature_names[:-1]
        if expected and columns != expected:
            raise ValueError(
                f"observations={columns!r} is not allowed for this model; expected the columns it was trained "
                f"on, {expected!r} (build the env with the same observations=)"
            )
        scale = getattr(getattr(env.unwrapped, "config", None), "action_scale", None)
        if self.policy.prior != NO_PRIOR and scale is not None and scale != self.policy.action_scale:
            raise ValueError(
                f"action_scale={scale!r} is not allowed for this model; expected {self.policy.action_scale!r}, the "
                "action map its prior was trained with (build the env with the same action_scale=)"
            )
        return self

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """The action for one observation ``(L, F)`` or a batch ``(n, L, F)``, clipped to [-1, 1]."""
        obs = np.asarray(observation, dtype=np.float32)
        batched = obs.ndim == 3
        obs = obs if batched else obs[None]
        n = self.policy.num_features
        if obs.shape[-1] == n:
            obs = np.concatenate([obs, np.ones((*obs.shape[:-1], 1), np.float32)], axis=-1)
        elif obs.shape[-1] != n + 1:
            raise ValueError(f"observation has {obs.shape[-1]} columns; expected {n} (or {n + 1} when padded)")
        self.policy.set_training_mode(False)
        with torch.no_grad():
            actions = self.policy.distribution(torch.as_tensor(obs)).get_actions(deterministic=deterministic)
        out = np.clip(actions.cpu().numpy(), -1.0, 1.0).astype(np.float32)
        return (out if batched else out[0]), state


def load_agent(path: str | Path, env: gym.Env) -> LayerwiseAgent:
    """``LayerwiseAgent.load(path).bind(env)``: a picklable policy factory (``functools.partial(load_agent, p)``)."""
    return LayerwiseAgent.load(path).bind(env)
