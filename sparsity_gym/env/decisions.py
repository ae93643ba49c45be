"""How a decision becomes masks: the action map, allocation, the budget projection, thresholds, the gates.

:class:`DecisionsMixin` is the half of :class:`~sparsity_gym.env.sparsity_env.SparsityEnv` that turns an action
into this decision's densities, thresholds or exact unit counts and applies them to the masks (prune) or the
freezer (freeze); the env's docstring specifies it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sparsity_gym.criteria.snr_pruning import LossHold, burn_in_done
from sparsity_gym.env.actions import from_action, to_action
from sparsity_gym.env.budget import budget_counts, reallocate
from sparsity_gym.env.config import EnvConfig
from sparsity_gym.masks.freezing import RowFreezer
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.selectors import SelectionContext, threshold_range
from sparsity_gym.observation.observers import Observer


class DecisionsMixin:
    """Apply a decision's action to the masks (see the env's "Action Space" and "Episode End")."""

    config: EnvConfig
    masks: MaskedNetwork
    freezer: RowFreezer | None
    observers: dict[str, Observer]
    decision: int
    iteration: int
    mask_update: str
    last_train_loss: float
    allocation: np.ndarray
    _burn_in_iterations: int
    _loss_hold: LossHold
    _invalid_actions: int
    _generator: torch.Generator
    _rule_statistics: Callable[[], tuple[str, ...]]  # EpisodeMixin's

    @property
    def _action_shape(self) -> tuple[int, ...]:
        return (len(self.masks.layers),)

    def density_to_action(self, density: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``density`` (inverse of the action map), clipped to [-1, 1]."""
        return to_action(density, self.config.min_density, self.config.max_density, self.config.action_scale)

    def _apply_action(self, action: np.ndarray) -> list[float]:
        """Map ``action`` onto densities or thresholds and apply them (prune or freeze); return them.

        The last decision under a target is projected onto the budget (:meth:`_budget_counts`) in every action
        mode; a threshold action is then read as the densities its thresholds would give.
        """
        cfg = self.config
        projected = self.decision == cfg.num_decisions - 1 and cfg.target_density is not None
        thresholded = cfg.action_mode == "threshold" and not projected
        values, counts = self._decision_values(action, projected)
        self.mask_update = "applied" if projected else self._mask_update_gate()
        if self.mask_update != "applied":
            return values.tolist()
        ctx = self._selection_context()
        if thresholded:
            # pruning keeps at least one unit per layer; freezing may freeze a whole layer (NEq does)
            keeps = self.masks.keeps_from_thresholds(values.tolist(), ctx, minimum=0 if self.freezer else 1)
        else:
            if counts is None:
                counts = [m.target_count(float(d)) for m, d in zip(self.masks.layers, values, strict=True)]
            if self.freezer is None:
                self.masks.set_counts(counts, ctx)
                return values.tolist()
            keeps = self.masks.keep_masks(counts, ctx)
        if self.freezer is not None:
            for i, keep in enumerate(keeps):
                self.freezer.set_frozen(i, ~keep.view_as(self.masks.layers[i].unit_mask))
        else:
            self.masks.set_keep(keeps, ctx)
        return values.tolist()

    def _decision_values(self, action: np.ndarray, projected: bool) -> tuple[np.ndarray, list[int] | None]:
        """The decision's thresholds or densities (after the allocation rule), and the projection's unit counts.

        Sets :attr:`allocation` (``info["allocation"]``): the densities the rule and the projection produced, or
        the current densities at a threshold decision before the last.
        """
        cfg = self.config
        if cfg.action_mode == "threshold" and not projected:
            self.allocation = np.array(self.masks.densities, dtype=np.float32)
            return self.thresholds_from_action(action), None
        if cfg.action_mode == "threshold":
            values = self._threshold_densities(self.thresholds_from_action(action))
        else:
            values = self.densities_from_action(action)
            if cfg.allocation != "policy":
                values = self._allocated(values)
            if projected and cfg.budget == "layer":
                values = np.full(len(values), cfg.target_density)
        counts = None
        if projected and cfg.target_density is not None:
            counts = self._budget_counts(values, cfg.target_density)
            values = np.array([c / m.num_units for c, m in zip(counts, self.masks.layers, strict=True)])
        self.allocation = np.asarray(values, dtype=np.float32)
        return values, counts

    def _selection_context(self) -> SelectionContext:
        """What the selector and regrowth rules read now: the generator, the statistics, the options."""
        cfg = self.config
        stats = {name: self.observers[name].unit_scores() for name in self._rule_statistics()}
        return SelectionContext(self._generator, stats, cfg.selector_options)

    def _threshold_densities(self, thresholds: np.ndarray) -> np.ndarray:
        """The densities the thresholds would leave (masks untouched); the target's for every layer under ``layer``."""
        if self.config.budget == "layer":
            return np.full(len(thresholds), self.config.target_density)
        keeps = self.masks.keeps_from_thresholds(thresholds.tolist(), self._selection_context(), minimum=1)
        return np.array([int(k.sum()) / m.num_units for k, m in zip(keeps, self.masks.layers, strict=True)])

    def _allocated(self, densities: np.ndarray) -> np.ndarray:
        """The requested densities' parameter-weighted mean, shared out by the configured allocation rule (tilted)."""
        return reallocate(self.masks.layers, densities, self.config.allocation, self.config.allocation_tilt)

    def _budget_counts(self, densities: np.ndarray, target: float) -> list[int]:
        """Unit counts of the last decision on the configured budget (:func:`sparsity_gym.env.budget.budget_counts`)."""
        cfg = self.config
        return budget_counts(self.masks, densities, cfg.budget, target, grows=cfg.regrowth != "none")

    def _mask_update_gate(self) -> str:
        """``applied``, or why this decision leaves the masks as they are: ``burn_in`` or ``loss_hold``."""
        if not burn_in_done(self.iteration, self._burn_in_iterations):
            return "burn_in"
        # The hold sees every decision's interval mean (itself an average over decision_interval steps).
        allowed = self._loss_hold.update(self.last_train_loss) if self.iteration > 0 else True
        return "applied" if allowed or not self.config.loss_hold else "loss_hold"

    def threshold_to_action(self, threshold: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``threshold`` on the selector's score scale, clipped to [-1, 1]."""
        return to_action(threshold, *threshold_range(self.config.selector))

    def thresholds_from_action(self, action: np.ndarray) -> np.ndarray:
        """Validate ``action``, clip what is invalid (counted) and map it onto thresholds (NaN: no change)."""
        return from_action(self._validated(action), *threshold_range(self.config.selector))

    def _validated(self, action: np.ndarray) -> np.ndarray:
        arr = np.asarray(action)
        if arr.dtype.kind not in "fiub":
            raise ValueError(
                f"action has dtype {arr.dtype}; expected a real-valued array of shape {self._action_shape}"
            )
        if arr.shape != self._action_shape:
            raise ValueError(f"action has shape {arr.shape}; expected {self._action_shape} (one value per layer)")
        arr = arr.astype(np.float64)
        self._invalid_actions = int((~np.isfinite(arr) | (arr < -1.0) | (arr > 1.0)).sum())
        return arr

    def densities_from_action(self, action: np.ndarray) -> np.ndarray:
        """Validate ``action``, clip what is invalid (counted) and map it onto layer densities."""
        arr = self._validated(action)
        current = self.density_to_action(np.array(self.masks.densities)).astype(np.float64)
        cfg = self.config
        return from_action(np.where(np.isnan(arr), current, arr), cfg.min_density, cfg.max_density, cfg.action_scale)
