"""A stable-baselines3 policy that acts on networks of any depth: one small MLP shared by every layer's row.

Design: the observation of a network with ``L`` prunable layers is an ``(L, F)`` array whose rows mean the same
thing for every network (``sparsity_gym.observation.features``; global features repeated on each row).
:class:`LayerwisePolicy` reads a padded observation ``(max_layers, F + 1)`` from
``sparsity_gym.env.wrappers.PadLayers`` (last column: 1 for a real layer, 0 for padding) and

* **actor**: applies one MLP to every row (shared weights, per-layer heads) giving that layer's Gaussian mean;
  one learned log-std shared by all layers. The layers' actions are independent given the observation.
  With ``pooling="deepsets"`` (what ``train_agent.py`` builds: an actor that sees the other layers) each
  layer's mean depends on its row *and* on a summary of every valid row: an MLP embeds each row, the
  embeddings are mean- and max-pooled over the valid rows (Deep Sets, Zaheer et al. 2017, §2:
  ``rho(pool(phi(x_i)))``, here concatenated back to every row as in their permutation-*equivariant* layer,
  §2.2 / Qi et al. 2017's PointNet segmentation head), and a per-row head maps ``[phi(x_l), mean, max]`` to
  the mean. So the actor can trade one layer's density against another's, which a global budget needs, and
  it is still one set of weights for any depth, equivariant to the order of the layers, blind to padding.
  ``pooling="none"`` (the class's default: a model saved without the option loads as this) is the row-only
  actor.
  With a ``prior`` (a handcrafted schedule's name, ``baselines.schedules``, or any static point of
  ``baselines.static``, its first/last multipliers included: :mod:`agents.ppo.prior_map`), the MLP's output is a
  *residual* added to the prior's action at the row's ``progress`` and ``target_density`` (residual policy learning,
  Silver et al. 2018; Johannink et al. 2019): the last layer starts near zero (``residual_init="small"``:
  SB3's orthogonal gain 0.01, a residual that depends on the seed) or at zero (``"zero"``, as residual policy
  learning initialises it, §4 of Silver et al.), so the untrained policy follows the prior schedule (exactly, with
  ``"zero"``) and PPO searches around it instead of around a constant density.
* **critic**: embeds every row with a second MLP, pools the valid rows (mean and max, concatenated) and maps
  the pooled vector to the value.
* **masking**: padded rows add nothing to the log-probability, the entropy or the value (they are masked out),
  so PPO's probability ratios are those of the real layers only, and a padded observation has exactly the
  log-probability of the unpadded one.

Because nothing depends on the number of rows, the same weights act on a deeper network than any seen in
training: :class:`agents.ppo.agent.LayerwiseAgent` feeds an env's raw ``(L, F)`` observation (any ``L``) straight to
the policy with SB3's ``predict`` signature, so ``sparsity_gym.experiments.evaluation.evaluate`` and ``evaluate_policy``
run it like any baseline. Loading needs only ``PPO.load(path)`` (this class is pickled by reference to
its module, which the unpickler imports; a model saved before the class moved here names its old
module, kept as an alias for such models).

**A policy and an env agree or refuse.** The policy records its *schema* (:mod:`agents.ppo.schema`: the column
names in order, the action map and mode, the allocation, the prior, and the env settings, task and networks it
trained with) as the policy keyword ``schema``, which ``PPO.save`` stores with the other constructor keywords in
the zip's ``data`` and ``PPO.load`` passes back, so every copy of the model (checkpoints, ``best_model.zip``, a
resumed run) carries it without a second file to keep in step. ``LayerwiseAgent.bind`` (:mod:`agents.ppo.agent`) is
the checked path: it compares the schema with the env's columns and settings and refuses a mismatch in one line
naming both; :func:`agents.ppo.schema.pad_for_model` does the same for a bare PPO model on a padded env. A bare
``predict`` sees only arrays, so ``LayerwiseAgent.predict`` and ``PPO.predict`` before any check warn
once (:class:`agents.ppo.schema.UncheckedPolicyWarning`) instead of refusing: SB3's ``evaluate_policy`` and user
loops call ``predict`` with the SB3 signature, and a refusal would break them where a warning reaches the user.
A model saved without a schema loads with a warning (``LayerwiseAgent.load``) and is checked on what it
recorded: its column names and its action scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule

from agents.ppo.prior_map import NO_PRIOR, PriorMap
from agents.ppo.schema import (
    check_keywords,
    legacy_schema,
    normalize_schema,
    warn_unchecked,
)
from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.pruning.actions import ACTION_SCALES

POOLINGS = ("none", "deepsets")
RESIDUAL_INITS = ("small", "zero")


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
        prior: ``none``, the handcrafted schedule (``linear``, ``quadratic``, ``cubic``, ``cosine``,
            ``constant``, optionally with its window end: ``cubic@0.9``, ``baselines.handcrafted``) or a static
            point (``poly[s=..,e=..,p=..]+rule[first=..,last=..]``, ``baselines.static``) whose action the
            actor's output is added to (see the module doc). Needs the ``progress`` and ``target_density``
            columns in ``feature_names`` (and ``param_share`` with multipliers). An allocation rule is the env's
            (``EnvConfig.allocation`` with ``allocation_tilt``, :func:`agents.ppo.prior_map.prior_env`).
        density_range: The env's ``(min_density, max_density)``: how a prior density maps to an action.
        action_scale: The env's ``action_scale`` (``linear`` or ``log``), the other half of that map.
        pooling: ``none`` (each layer's mean from its own row) or ``deepsets`` (from its row and the mean- and
            max-pooled embeddings of every valid row; see the module doc).
        residual_init: ``small`` (the last layer's orthogonal gain 0.01) or ``zero`` (its weights and bias 0: the
            untrained actor's mean is the prior's action exactly).
        schema: What the model expects of an env (:func:`agents.ppo.schema.model_schema`); ``None``: the legacy
            schema of ``feature_names`` and ``action_scale`` (:func:`agents.ppo.schema.legacy_schema`). It must agree
            with ``feature_names``, ``density_range`` and ``action_scale`` when they are given.
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
        schema: Mapping[str, Any] | None = None,
        residual_init: str = "small",
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
        low, high = (float(v) for v in density_range)
        check_number("density_range", low, low=0.0, high=1.0, low_inclusive=False)
        check_number("density_range", high, low=low, high=1.0, low_inclusive=False)
        self.prior = prior
        check_choice("pooling", pooling, POOLINGS)
        self.pooling = pooling
        check_choice("residual_init", residual_init, RESIDUAL_INITS)
        self.residual_init = residual_init
        self.density_range = (low, high)
        check_choice("action_scale", action_scale, ACTION_SCALES)
        self.action_scale = action_scale
        self.prior_map = (
            None if prior == NO_PRIOR else PriorMap(prior, self.feature_names, self.density_range, action_scale)
        )
        self.recorded_schema = None if schema is None else normalize_schema(schema)
        if self.recorded_schema is not None:
            check_keywords(self.recorded_schema, self.feature_names, self.action_scale, self.density_range, prior)
        self.checked = False  # set by a schema check (LayerwiseAgent.bind, agents.ppo.schema.pad_for_model)
        kwargs.pop("net_arch", None)
        kwargs.update(activation_fn=activation_fn, log_std_init=log_std_init)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    @property
    def schema(self) -> dict[str, Any]:
        """What the model expects of an env: the recorded schema, else the legacy one (a fresh plain dict)."""
        if self.recorded_schema is not None:
            return normalize_schema(self.recorded_schema)
        return legacy_schema(self.feature_names, self.action_scale, self.prior)

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
        if self.residual_init == "zero":
            nn.init.zeros_(self.actor[-1].weight)
            nn.init.zeros_(self.actor[-1].bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            hidden=self.hidden,
            feature_names=self.feature_names,
            prior=self.prior,
            density_range=self.density_range,
            pooling=self.pooling,
            residual_init=self.residual_init,
            action_scale=self.action_scale,
            schema=self.recorded_schema,
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

    def prior_actions(self, features: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The prior's action for every row ``(n, rows)`` (zeros without a prior), in one vectorised pass.

        Row ``(i, l)`` gets ``density_to_action(request)`` from the row's ``progress`` and ``target_density``
        columns (a target of -1, none set, schedules towards density 1) and, for a static point with first/last
        multipliers, the rows' ``param_share`` (:class:`agents.ppo.prior_map.PriorMap`), with the env's own map
        (``sparsity_gym.env.to_action``). ``valid`` (default: every row) marks the real layers. It is a constant
        of the observation: no gradient flows through it.
        """
        if self.prior_map is None:
            return torch.zeros(features.shape[:-1], dtype=features.dtype, device=features.device)
        rows = features.detach().cpu().numpy()
        mask = np.ones(rows.shape[:-1], dtype=bool) if valid is None else valid.detach().cpu().numpy()
        flat = self.prior_map.actions(rows.reshape(-1, *rows.shape[-2:]), mask.reshape(-1, mask.shape[-1]))
        return torch.as_tensor(flat.reshape(rows.shape[:-1]), device=features.device)

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
        mean = self.action_means(features, valid) + self.prior_actions(features, valid)
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

    def predict(self, observation: Any, *args: Any, **kwargs: Any) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` (what ``PPO.predict`` calls); warns once when no env was checked (module doc)."""
        # four frames up: this method, then SB3's PPO.predict, then the user's call
        warn_unchecked(
            self,
            "PPO.predict() before any check of the env",
            "agents.ppo.schema.pad_for_model(model, env)",
            stacklevel=4,
        )
        return super().predict(observation, *args, **kwargs)
