"""Criterion-driven methods as fixed policies: how many units per layer, from the observation.

Each method is a policy plus the settings it needs (:func:`baselines.env_kwargs`); the *which* units (the
selector's statistic) and *how* (prune or freeze) live in the env or the Pruner the policy is built on
(:func:`baselines.fixed_policies.pruning_context`).

* ``neq`` — NEq (Bragagnolo et al., seed 004; CRITERIA §4): every decision, neurons whose velocity is below
  ε = 1e-3 are frozen (not pruned) and the others thawed. As a policy it is a constant threshold action:
  log10 ε on the equilibrium selector's ``log10 |v|`` scale. No neuron is frozen before the velocity exists
  (the third validation pass); the env's saved backward FLOPs follow CRITERIA's convention.
* ``contribution`` — contribution-based neuron pruning (Reddy et al., seed 002; CRITERIA §3): after a
  maturity phase (progress ``start``), every decision is a prune round until the layer's share of neurons is
  at most ``keep``: the lowest-scoring ``ceil(x·N)`` active neurons of each hidden layer go (x = 10%), scored
  by λ1·C_avg + λ2·C_max (λ = 0.5) over all training steps since the last round, ties: the higher index goes.
* ``snr`` — gradient-SNR pruning with DPF feedback (Siems et al., seed 001; CRITERIA §1). As a policy it is
  the constant threshold 0 on the ``snr`` selector's log10 scale, i.e. ``snr > 1``; the env does the rest:
  ``keep = (snr > 1) OR (global magnitude of the same sparsity)`` re-selected among all weights at every
  decision (``regrowth="feedback"``: dense weights keep training under the mask), SNR smoothed over every
  step with γ = 0.01^(1/(0.02·T)), no update during the first epoch (``burn_in_epochs=1``) or while the
  interval's mean training loss is above its best (``loss_hold``). The mask-update frequency is the env's
  ``decision_interval`` (DPF tuned 16 steps; the reproduction uses 10).
* ``dyno`` — DYNO grow-and-prune (Maile et al., seed 000; CRITERIA §2): at every decision, per hidden layer,
  ``n_prune = max(int((1−δ)·φ*·N − E), 0)`` and ``n_grow = max(int(E' − (1+δ)·φ*·N), 0)`` from the effective
  dimension count E of the observation (``rank_active_share · N``, N the active width); E' = E, because
  removing neurons never raises the count (singular values interlace), so growth only happens on decisions
  that prune nothing. φ* starts at 1 and is re-measured at the first decision after a layer changed. A Linear
  layer keeps at least as many neurons as classes. The env prunes by ``redundancy`` (dormant first, then
  greedy cosine) and grows by ``north`` (NORTH-Select fan-ins, zero fan-out, bias and optimizer state) into
  the spare units of layers built ``capacity = 2`` times as wide.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from baselines.fixed_policies import FixedPolicy, density_map, pruning_context
from sparsity_gym.core.checks import check_number
from sparsity_gym.criteria.contribution_pruning import prune_count
from sparsity_gym.criteria.dyno import DEFAULT_DELTA, clamp_prune_count, prune_grow_counts


class ConstantThresholdPolicy(FixedPolicy):
    """Ask every layer for the same threshold at every decision (SB3 ``predict`` signature)."""

    def __init__(self, context: Any, threshold: float, name: str) -> None:
        base = pruning_context(context)
        if base.config.action_mode != "threshold":
            raise ValueError(
                f"action_mode={base.config.action_mode!r} is not allowed for policy {name!r}; expected 'threshold' "
                f"(build the env with baselines.env_kwargs({name!r}), or the Pruner with baselines.method({name!r}))"
            )
        super().__init__(context, name)
        self.threshold = threshold
        self._action = float(base.threshold_to_action(threshold))

    def actions(self, observations: np.ndarray) -> np.ndarray:  # noqa: D102
        return np.full(observations.shape[:2], self._action)


def make_neq_policy(context: Any, eps: float = 1e-3) -> ConstantThresholdPolicy:
    """NEq: freeze the neurons with velocity |v| < ``eps`` (threshold log10 ``eps``)."""
    return ConstantThresholdPolicy(context, math.log10(eps), name="neq")


def make_snr_policy(context: Any, threshold: float = 0.0) -> ConstantThresholdPolicy:
    """SNR pruning: keep weights with smoothed SNR > 10**``threshold`` (0: the paper's ``snr > 1``)."""
    return ConstantThresholdPolicy(context, threshold, name="snr")


SNR_ENV_KWARGS = {
    "selector": "snr",
    "regrowth": "feedback",
    "action_mode": "threshold",
    "granularity": "weight",
    "target_density": None,
    "stats_window": None,
    "burn_in_epochs": 1.0,
    "loss_hold": True,
}

NEQ_ENV_KWARGS = {
    "selector": "equilibrium",
    "effect": "freeze",
    "action_mode": "threshold",
    "granularity": "neuron",
    "target_density": None,
}


class ContributionPolicy(FixedPolicy):
    """Prune rounds of ``ceil(fraction·N_active)`` neurons per hidden layer (SB3 ``predict`` signature).

    The count is :func:`sparsity_gym.criteria.prune_count` (CRITERIA.md §3, with its float guard), keeping at
    least one neuron; which neurons go is the env's ``contribution`` selector.

    Args:
        context: The env, built with ``baselines.env_kwargs("contribution")``, or a Pruner with those settings.
        fraction: x, the share of a layer's active neurons removed per round (paper: 10%).
        start: Progress before which the network trains dense ("initial maturity").
        keep: Rounds stop once a layer's density (active / all neurons) is at most this: the pruning target.

    """

    reads = ("progress", "density")

    def __init__(self, context: Any, fraction: float = 0.1, start: float = 0.2, keep: float = 0.6) -> None:
        base = pruning_context(context)
        check_number("fraction", fraction, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        check_number("start", start, low=0.0, high=1.0)
        check_number("keep", keep, low=0.0, high=1.0, low_inclusive=False)
        self.units = np.array([layer.num_units for layer in base.masks.layers])
        super().__init__(context, "contribution", self.units)
        self.fraction, self.start, self.keep = fraction, start, keep
        self._progress = self.column("progress")
        self._density = self.column("density")
        self._to_action = density_map(context)

    def counts(self, progress: float, densities: np.ndarray) -> np.ndarray:
        """Active neurons per layer after this decision's round (if any)."""
        active = np.rint(densities * self.units).astype(int)
        if progress < self.start:
            return active
        prune = (active > self.keep * self.units) & (active > 1)
        removed = np.array([prune_count(int(a), self.fraction, min_keep=1) for a in active])
        return np.where(prune, active - removed, active)

    def actions(self, observations: np.ndarray) -> np.ndarray:  # noqa: D102
        return np.stack(
            [self._to_action(self.counts(o[0, self._progress], o[:, self._density]) / self.units) for o in observations]
        )


CONTRIBUTION_ENV_KWARGS = {
    "selector": "contribution",
    "granularity": "neuron",
    "target_density": None,
    "stats_window": None,
}


class DynoPolicy(FixedPolicy):
    """DYNO's per-layer prune and grow counts from the observed effective dimension (SB3 ``predict`` signature).

    Keeps φ* per layer and per episode (a new episode is recognised by progress 0); a batch of observations
    ``(n, L, F)`` is treated as ``n`` parallel episodes.

    Args:
        context: The env, built with ``baselines.env_kwargs("dyno")`` (the ``rank`` family must be observed). A
            Pruner refuses DYNO's settings: its growth room (``capacity = 2``) is built by the env only.
        delta: The trigger threshold δ (paper 3e-2).

    """

    reads = ("progress", "density", "rank_active_share", "rank_ed")

    def __init__(self, context: Any, delta: float = DEFAULT_DELTA) -> None:
        base = pruning_context(context)
        columns = base.layout.columns
        if "rank_active_share" not in columns:
            raise ValueError(
                f"observations={base.config.observations!r} is not allowed for policy 'dyno'; expected 'rank' among "
                "them (DYNO decides from the effective dimension)"
            )
        check_number("delta", delta, low=0.0, high=1.0, high_inclusive=False)
        self.units = np.array([layer.num_units for layer in base.masks.layers])
        super().__init__(context, "dyno", self.units)
        self.delta = delta
        classes = base.num_classes
        self.min_units = np.array([classes if layer.info.kind == "linear" else 1 for layer in base.masks.layers])
        self._cols = tuple(self.column(c) for c in self.reads)
        self._to_action = density_map(context)
        self.phi_star = np.ones((1, len(self.units)))
        self.pending = np.zeros((1, len(self.units)), dtype=bool)

    def counts(self, row: int, active: np.ndarray, e_count: np.ndarray, ready: np.ndarray) -> np.ndarray:
        """Active neurons per layer after this decision, for episode ``row``; updates its φ*."""
        out = active.copy()
        for i in np.flatnonzero(ready):
            n, e = int(active[i]), int(e_count[i])
            if self.pending[row, i]:  # φ* re-measured after the layer's last structural change
                self.phi_star[row, i] = e / max(n, 1)
                self.pending[row, i] = False
            n_prune, n_grow = prune_grow_counts(float(self.phi_star[row, i]), n, e, e, self.delta)
            n_prune = clamp_prune_count(n_prune, n, int(self.min_units[i]))
            n_grow = 0 if n_prune else min(n_grow, int(self.units[i]) - n)
            out[i] = n - n_prune + n_grow
            self.pending[row, i] = out[i] != n
        return out

    def actions(self, observations: np.ndarray) -> np.ndarray:  # noqa: D102
        obs = observations
        if len(obs) != len(self.phi_star):
            self.phi_star = np.ones((len(obs), len(self.units)))
            self.pending = np.zeros((len(obs), len(self.units)), dtype=bool)
        progress, density, share, ed = self._cols
        actions = []
        for row, o in enumerate(obs):
            if o[0, progress] == 0.0:  # a new episode
                self.phi_star[row] = 1.0
                self.pending[row] = False
            active = np.rint(o[:, density] * self.units).astype(int)
            e_count = np.rint(o[:, share] * active).astype(int)
            actions.append(self._to_action(self.counts(row, active, e_count, o[:, ed] > 0) / self.units))
        return np.stack(actions)


DYNO_ENV_KWARGS = {
    "selector": "redundancy",
    "regrowth": "north",
    "granularity": "neuron",
    "target_density": None,
    "stats_window": 10,  # 10 steps of 128 rows fill the rank FIFO (2·512 rows at capacity) with fresh activations
    "capacity": 2.0,
}
