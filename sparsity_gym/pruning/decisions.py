"""One decision: an action becomes this decision's densities or thresholds, then masks (prune) or frozen rows.

The pipeline of :meth:`Decisions.apply`, in order (the env's docstring, "Action Space" and "Episode End",
specifies each step):

1. validation and clipping: an action of the wrong shape or dtype raises ``ValueError``; non-finite or
   out-of-range values are clipped and counted (:attr:`Decisions.invalid_actions`), NaN keeps a layer's density;
2. the action map (:mod:`sparsity_gym.pruning.actions`) onto densities in ``[min_density, max_density]`` or
   onto the selector's threshold range;
3. an allocation rule, if configured: the requested densities' parameter-weighted mean shared out by the rule,
   optionally tilted by the request (:func:`sparsity_gym.pruning.budget.reallocate`);
4. at the last decision (index ``num_decisions - 1``) under a ``target_density``: the projection onto the budget
   (:func:`sparsity_gym.pruning.budget.budget_counts`), a threshold action read as the densities it would leave;
5. the gates: before ``burn_in_steps`` or while the loss hold is on, the masks stay as they are (the projection
   of the last decision always applies); both come from gradient-SNR pruning (Siems et al.; CRITERIA §1:
   no pruning in the first epoch, none while the training loss rises above its best);
6. the masks: exact unit counts (:meth:`MaskedNetwork.set_counts`), keep masks from thresholds, or, under
   ``effect="freeze"``, frozen fan-in rows (:class:`~sparsity_gym.masks.freezing.RowFreezer`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from sparsity_gym.core.explicit_state import check_keys, state_int, state_tensor
from sparsity_gym.criteria.snr_pruning import LossHold, burn_in_done
from sparsity_gym.masks.freezing import RowFreezer
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.selectors import SelectionContext, threshold_range
from sparsity_gym.pruning.actions import from_action, to_action
from sparsity_gym.pruning.budget import budget_counts, reallocate
from sparsity_gym.pruning.pruning_config import PruningConfig

RuleScores = Callable[[], Mapping[str, Any]]
"""What the selector and regrowth rules read now: per statistic name, its per-unit scores by layer name."""


class Decisions:
    """Apply a decision's action to the masks or the freezer; its own state is the gates' and the last decision's.

    Args:
        config: The run's pruning configuration.
        masks: The network's masks (changed in place).
        freezer: The row freezer under ``effect="freeze"``, else ``None``.
        generator: The CPU generator of random selection and regrowth.
        rule_scores: Returns the statistics the selector and regrowth rules read, at the moment of the decision.

    Attributes:
        mask_update: Why the last decision left the masks (``applied``, ``burn_in`` or ``loss_hold``).
        allocation: The per-layer densities the allocation rule and the projection produced at the last
            decision (the current densities at a threshold decision before the last), float32.
        invalid_actions: Non-finite or out-of-range values in the last action.
        loss_hold: SNR pruning's hold (:class:`~sparsity_gym.criteria.snr_pruning.LossHold`), fed every
            decision's interval mean after the first step.

    """

    def __init__(
        self,
        config: PruningConfig,
        masks: MaskedNetwork,
        freezer: RowFreezer | None,
        generator: torch.Generator,
        rule_scores: RuleScores,
    ) -> None:
        self.config = config
        self.masks = masks
        self.freezer = freezer
        self.generator = generator
        self._rule_scores = rule_scores
        self.loss_hold = LossHold()
        self.mask_update = "applied"
        self.allocation = np.array(masks.densities, dtype=np.float32)
        self.invalid_actions = 0

    def state_dict(self) -> dict[str, Any]:
        """The gates' and the last decision's state: ``loss_hold`` (its state), ``mask_update``, ``allocation``
        (float32 tensor), ``invalid_actions``.
        """  # noqa: D205
        return {
            "loss_hold": self.loss_hold.state_dict(),
            "mask_update": self.mask_update,
            "allocation": torch.from_numpy(np.array(self.allocation, dtype=np.float32)),
            "invalid_actions": self.invalid_actions,
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; a state of another network is a ``ValueError`` (nothing changed)."""
        check_keys("Decisions", state, ("loss_hold", "mask_update", "allocation", "invalid_actions"))
        allocation = state_tensor("Decisions", "allocation", state["allocation"], (len(self.masks.layers),))
        invalid = state_int("Decisions", "invalid_actions", state["invalid_actions"])
        if state["mask_update"] not in ("applied", "burn_in", "loss_hold"):
            raise ValueError(f"Decisions: mask_update={state['mask_update']!r}; expected applied, burn_in or loss_hold")
        self.loss_hold.load_state_dict(state["loss_hold"])
        self.mask_update = state["mask_update"]
        self.allocation = allocation.detach().cpu().numpy().astype(np.float32)
        self.invalid_actions = invalid

    @property
    def action_shape(self) -> tuple[int, ...]:
        """``(L,)``: one value per controlled layer."""
        return (len(self.masks.layers),)

    def apply(self, action: np.ndarray, *, decision: int, iteration: int, train_loss: float | None) -> list[float]:
        """Map ``action`` onto densities or thresholds and apply them (prune or freeze); return them.

        Args:
            action: One value per controlled layer in [-1, 1].
            decision: This decision's index (0 at the start); index ``num_decisions - 1`` is projected onto the
                budget under a ``target_density``, in every action mode.
            iteration: Optimizer steps taken so far (the burn-in gate).
            train_loss: The mean training loss of the interval that just ended (the loss hold), ``None`` when
                unknown.

        Returns:
            The requested values: densities, or thresholds before the last decision in threshold mode (the
            projected densities at the last decision).

        """
        cfg = self.config
        projected = decision == cfg.num_decisions - 1 and cfg.target_density is not None
        thresholded = cfg.action_mode == "threshold" and not projected
        values, counts = self._values(action, projected)
        self.mask_update = "applied" if projected else self.gate(iteration, train_loss)
        if self.mask_update != "applied":
            return values.tolist()
        ctx = self.selection_context()
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

    def gate(self, iteration: int, train_loss: float | None) -> str:
        """``applied``, or why a decision now leaves the masks as they are: ``burn_in`` or ``loss_hold``.

        The hold is fed every decision's interval mean after the first step (whether ``loss_hold`` is on or
        not, so its state is the same either way); ``ValueError`` when ``loss_hold`` is on and the interval's
        loss is unknown (no loss was passed to the driver's ``step``).
        """
        if not burn_in_done(iteration, self.config.burn_in_steps):
            return "burn_in"
        if iteration == 0:
            return "applied"
        if train_loss is None:
            if self.config.loss_hold:
                raise ValueError(
                    "loss_hold=True needs the training loss: pass it to the driver at every step "
                    "(pruner.step(loss)); expected a loss for the interval that just ended"
                )
            return "applied"
        # The hold sees every decision's interval mean (itself an average over decision_interval steps).
        allowed = self.loss_hold.update(train_loss)
        return "applied" if allowed or not self.config.loss_hold else "loss_hold"

    def selection_context(self) -> SelectionContext:
        """What the selector and regrowth rules read now: the generator, the statistics, the options."""
        return SelectionContext(self.generator, dict(self._rule_scores()), self.config.selector_options)

    def _values(self, action: np.ndarray, projected: bool) -> tuple[np.ndarray, list[int] | None]:
        """The decision's thresholds or densities (after the allocation rule), and the projection's unit counts.

        Sets :attr:`allocation`: the densities the rule and the projection produced, or the current densities
        at a threshold decision before the last.
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
                values = reallocate(self.masks.layers, values, cfg.allocation, cfg.allocation_tilt)
            if projected and cfg.budget == "layer":
                values = np.full(len(values), cfg.target_density)
        counts = None
        if projected and cfg.target_density is not None:
            grows = cfg.regrowth != "none"
            counts = budget_counts(self.masks, values, cfg.budget, cfg.target_density, grows=grows)
            values = np.array([c / m.num_units for c, m in zip(counts, self.masks.layers, strict=True)])
        self.allocation = np.asarray(values, dtype=np.float32)
        return values, counts

    def _threshold_densities(self, thresholds: np.ndarray) -> np.ndarray:
        """The densities the thresholds would leave (masks untouched); the target's for every layer under ``layer``."""
        if self.config.budget == "layer":
            return np.full(len(thresholds), self.config.target_density)
        keeps = self.masks.keeps_from_thresholds(thresholds.tolist(), self.selection_context(), minimum=1)
        return np.array([int(k.sum()) / m.num_units for k, m in zip(keeps, self.masks.layers, strict=True)])

    def density_to_action(self, density: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``density`` (inverse of the action map), clipped to [-1, 1]."""
        cfg = self.config
        return to_action(density, cfg.min_density, cfg.max_density, cfg.action_scale)

    def threshold_to_action(self, threshold: float | np.ndarray) -> np.ndarray:
        """The action that asks for ``threshold`` on the selector's score scale, clipped to [-1, 1]."""
        return to_action(threshold, *threshold_range(self.config.selector))

    def thresholds_from_action(self, action: np.ndarray) -> np.ndarray:
        """Validate ``action``, clip what is invalid (counted) and map it onto thresholds (NaN: no change)."""
        return from_action(self._validated(action), *threshold_range(self.config.selector))

    def densities_from_action(self, action: np.ndarray) -> np.ndarray:
        """Validate ``action``, clip what is invalid (counted) and map it onto layer densities (NaN: no change)."""
        arr = self._validated(action)
        current = self.density_to_action(np.array(self.masks.densities)).astype(np.float64)
        cfg = self.config
        return from_action(np.where(np.isnan(arr), current, arr), cfg.min_density, cfg.max_density, cfg.action_scale)

    def _validated(self, action: np.ndarray) -> np.ndarray:
        arr = np.asarray(action)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"action has dtype {arr.dtype}; expected a real-valued array of shape {self.action_shape}")
        if arr.shape != self.action_shape:
            raise ValueError(f"action has shape {arr.shape}; expected {self.action_shape} (one value per layer)")
        arr = arr.astype(np.float64)
        self.invalid_actions = int((~np.isfinite(arr) | (arr < -1.0) | (arr > 1.0)).sum())
        return arr
