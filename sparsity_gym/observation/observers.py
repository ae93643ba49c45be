"""The four statistics as observation column groups, collected from the training the env runs anyway.

Each observer hooks the network when an episode starts and turns what the hooks saw into a few finite,
O(1) features per controlled layer at every decision (the columns are registered with
:func:`sparsity_gym.observation.features.register_column_group`; the env's docstring lists them):

* ``snr`` (CRITERIA §1): per-weight gradient SNR from :class:`~sparsity_gym.stats.GradientMomentCollector`
  (the ``(δ²)ᵀ(x²)`` second moment for Linear, unfold/einsum for conv), smoothed with γ = 0.01^(1/(0.02·T)).
* ``rank`` (CRITERIA §2): effective dimension φ_ED (paper scaling 1/√n, ε = 1e-2, Gram-matrix eigenvalues)
  of a FIFO buffer of the layer's post-activations.
* ``contribution`` (CRITERIA §3): each neuron's C_avg over the window since the last decision, from
  post-activations and the successor's weight. The observation leaves out C_max (λ2 = 0, the weighting of the
  authors' code): it costs an S×M×N pass per batch, which made the episode 6× slower on the default task
  (``bench/stats_overhead.py``); ``ContributionObserver(lambda2=0.5)`` and the library compute the paper's
  λ1·C_avg + λ2·C_max.
* ``equilibrium`` (CRITERIA §4): NEq's similarity φ and velocity v of each neuron's outputs on the validation
  split (fixed order, eval mode), from the validation pass the env runs at every decision anyway.

*Which steps are measured*: the step-based statistics (snr, rank, contribution) collect only on the last
``stats_window`` optimizer steps of each decision interval, which is all the observation needs; the smoothing
of the SNR runs over measured steps. A layer's post-activations are the input of its (first) successor layer
(from the traced graph, as for neuron masks: after BatchNorm, the activation function, pooling and flattening);
a layer without a known successor uses its own output. For a layer whose output enters a residual addition
(observed at weight granularity only) that input is the post-activation of the sum.

*BatchNorm in train mode* couples the samples of a batch: the SNR's per-sample terms ``g_n = B·δ_n x_nᵀ`` are
then per-sample terms of the batch gradient (they still sum to ``B`` times ``.grad``), not gradients of each
sample's own loss. Features are computed over the layer's active units only, and are 0 until first
measured.

*State*: each observer's ``state_dict()`` holds what it carries from step to step (smoothed SNR, the FIFO, the
contribution window, the equilibrium trackers, the buffered inputs) as plain tensors; ``load_state_dict()`` on the
same layers of a copy of the network resumes it exactly. Hooks and the measuring flag are not state.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sparsity_gym.core.explicit_state import check_keys, check_names, load_together
from sparsity_gym.masks.layer_mask import LayerMask
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.observation.base import Observer, ObserverSettings
from sparsity_gym.observation.features import ColumnGroup, Feature, register_column_group
from sparsity_gym.observation.layer_inputs import LayerInputObserver
from sparsity_gym.observation.snapshot import TrainingSnapshot
from sparsity_gym.stats import (
    ActivationBuffer,
    ContributionAccumulator,
    EquilibriumTracker,
    GradientMomentCollector,
    contribution_score,
    effective_dimension_count,
)

SNR_LOG_SCALE = 4.0  # log10(1 + snr) / 4: snr = 1e4 -> ~1, the 1e12 cap -> 3


def _post_activation_hook(
    masks: MaskedNetwork, layer: LayerMask, fn: Callable[[torch.Tensor], None]
) -> torch.utils.hooks.RemovableHandle:
    """Call ``fn`` with ``layer``'s post-activations, shaped ``(n, N)`` or ``(n, C, h, w)``.

    They are the successor's input (a conv map flattened for a Linear successor is reshaped back to
    ``(n, C, p, 1)``, channel-major); without a known successor, the layer's own output.
    """
    succ = masks.successor(layer)
    channels = layer.info.fan_out
    if succ is None:
        return layer.info.module.register_forward_hook(lambda m, args, out: fn(out))

    def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        if x.dim() == 2 and x.shape[1] != channels:
            x = x.reshape(x.shape[0], channels, -1, 1)
        fn(x)

    return succ.info.module.register_forward_pre_hook(pre_hook)


class SNRObserver(Observer):
    """Fraction of active weights with smoothed SNR > 1 and mean log10(1 + SNR) / 4 over them."""

    name = "snr"

    def __init__(self, masks: MaskedNetwork, settings: ObserverSettings | None = None) -> None:
        super().__init__(masks, settings)
        modules = [(m.info.name, m.info.module) for m in self.masks.layers]
        self.collector = GradientMomentCollector(modules, total_iterations=self.settings.total_iterations)

    def set_measuring(self, on: bool) -> None:
        """Measure the following steps (or stop): the collector's hooks are on the network only while it does."""
        super().set_measuring(on)
        self.collector.active = on
        if on and not self._detached:
            self.collector.attach()
        elif not on:
            self.collector.detach()

    def after_backward(self) -> None:  # noqa: D102
        self.collector.update()

    def features(self) -> np.ndarray:  # noqa: D102
        out = np.zeros((len(self.masks.layers), 2))
        if self.collector.num_updates == 0:
            return out
        snr = self.collector.snr
        for i, layer in enumerate(self.masks.layers):
            values = snr[layer.info.name][layer.active_weight_mask]
            if values.numel():
                out[i, 0] = float((values > 1).float().mean())
                out[i, 1] = float(torch.log10(1 + values.float()).mean()) / SNR_LOG_SCALE
        return out

    def unit_scores(self) -> dict[str, torch.Tensor]:
        """The smoothed SNR of every weight (pruned ones included: under DPF they have gradients too)."""
        return dict(self.collector.snr) if self.collector.num_updates else {}

    def state_dict(self) -> dict[str, Any]:
        """``collector``: the collector's state (smoothed SNR, last moments, update count).

        See :meth:`sparsity_gym.stats.snr_collector.GradientMomentCollector.state_dict`.
        """
        return {"collector": self.collector.state_dict()}

    def load_state_dict(self, state: Any) -> None:  # noqa: D102
        check_keys("SNRObserver", state, ("collector",))
        self.collector.load_state_dict(self.on_device(state["collector"]))

    def detach(self) -> None:  # noqa: D102
        self.collector.detach()
        super().detach()


class RankObserver(Observer):
    """φ_ED = E / N of the post-activation buffer, and E / (active units) (the active units' effective share)."""

    name = "rank"

    def __init__(self, masks: MaskedNetwork, settings: ObserverSettings | None = None) -> None:
        super().__init__(masks, settings)
        self.buffers = [ActivationBuffer(m.info.fan_out) for m in self.masks.layers]
        for layer, buf in zip(self.masks.layers, self.buffers, strict=True):
            self.add_hook(functools.partial(_post_activation_hook, self.masks, layer, self._pusher(buf)))

    def _pusher(self, buf: ActivationBuffer) -> Callable[[torch.Tensor], None]:
        def push(x: torch.Tensor) -> None:
            if self.measuring and torch.is_grad_enabled():
                buf.push(x.detach())

        return push

    def unit_scores(self) -> dict[str, torch.Tensor]:
        """The buffered post-activations ``(rows, N)`` of each layer whose FIFO is ready (the redundancy selector)."""
        return {
            layer.info.name: buf.rows for layer, buf in zip(self.masks.layers, self.buffers, strict=True) if buf.ready
        }

    def state_dict(self) -> dict[str, Any]:
        """``buffers``: controlled layer name -> its FIFO's state (the rows, oldest first).

        See :meth:`sparsity_gym.stats.rank.ActivationBuffer.state_dict`.
        """
        return {"buffers": {m.info.name: b.state_dict() for m, b in zip(self.masks.layers, self.buffers, strict=True)}}

    def load_state_dict(self, state: Any) -> None:  # noqa: D102
        check_keys("RankObserver", state, ("buffers",))
        names = [m.info.name for m in self.masks.layers]
        check_names("RankObserver", "buffers", state["buffers"], names)
        buffers = self.on_device(state["buffers"])
        load_together([(buf, buffers[name]) for name, buf in zip(names, self.buffers, strict=True)])

    def features(self) -> np.ndarray:  # noqa: D102
        out = np.zeros((len(self.masks.layers), 2))
        for i, (layer, buf) in enumerate(zip(self.masks.layers, self.buffers, strict=True)):
            if buf.ready:
                count = _safe_count(buf.rows)
                out[i, 0] = count / layer.info.fan_out
                out[i, 1] = min(count / max(int(layer.active_outputs.sum()), 1), 1.0)
        return out


def _safe_count(rows: torch.Tensor) -> int:
    """Effective dimension count; 0 for non-finite activations (a diverged network)."""
    return effective_dimension_count(rows) if bool(torch.isfinite(rows).all()) else 0


class ContributionObserver(Observer):
    """Quantiles (10%, 50%) of the contribution score over active neurons, divided by its mean over them.

    The score is ``λ1·C_avg + λ2·C_max``; the default λ2 = 0 skips the costly C_max (see the module docstring).
    """

    name = "contribution"

    def __init__(
        self,
        masks: MaskedNetwork,
        settings: ObserverSettings | None = None,
        lambda1: float | None = None,
        lambda2: float | None = None,
    ) -> None:
        super().__init__(masks, settings)
        # the paper's weighting when it selects units (the method's cost), C_avg alone when only observed
        selecting = self.settings.selector == "contribution"
        self.lambdas = (
            (0.5 if selecting else 1.0) if lambda1 is None else lambda1,
            (0.5 if selecting else 0.0) if lambda2 is None else lambda2,
        )
        lambda2 = self.lambdas[1]
        self.accumulators: list[ContributionAccumulator | None] = []
        for layer in self.masks.layers:
            succ = self.masks.successor(layer)
            if succ is None:
                self.accumulators.append(None)
                continue
            acc = ContributionAccumulator(layer.info.fan_out, track_max=lambda2 != 0)
            self.accumulators.append(acc)
            self.add_hook(
                functools.partial(_post_activation_hook, self.masks, layer, self._updater(acc, succ.info.module))
            )

    def _updater(self, acc: ContributionAccumulator, successor: nn.Module) -> Callable[[torch.Tensor], None]:
        def update(x: torch.Tensor) -> None:
            if self.measuring and torch.is_grad_enabled():
                acc.update(x.detach(), successor.weight.detach())

        return update

    def set_measuring(self, on: bool) -> None:
        """A new window starts with each interval's measured steps."""
        if on:
            for acc in self.accumulators:
                if acc is not None:
                    acc.reset()
        super().set_measuring(on)

    def _tracked(self) -> dict[str, ContributionAccumulator]:
        return {
            layer.info.name: acc
            for layer, acc in zip(self.masks.layers, self.accumulators, strict=True)
            if acc is not None
        }

    def state_dict(self) -> dict[str, Any]:
        """``accumulators``: layer name -> its window so far, for every controlled layer with a known successor.

        See :meth:`sparsity_gym.stats.contribution.ContributionAccumulator.state_dict`.
        """
        return {"accumulators": {name: acc.state_dict() for name, acc in self._tracked().items()}}

    def load_state_dict(self, state: Any) -> None:  # noqa: D102
        check_keys("ContributionObserver", state, ("accumulators",))
        tracked = self._tracked()
        check_names("ContributionObserver", "accumulators", state["accumulators"], list(tracked))
        windows = self.on_device(state["accumulators"])
        load_together([(acc, windows[name]) for name, acc in tracked.items()])

    def _score(self, acc: ContributionAccumulator) -> torch.Tensor:
        l1, l2 = self.lambdas
        return l1 * acc.c_avg if l2 == 0 else contribution_score(acc.c_avg, acc.c_max, l1, l2)

    def unit_scores(self) -> dict[str, torch.Tensor]:
        """λ1·C_avg + λ2·C_max per neuron over the last window (layers with no window yet: absent)."""
        return {
            layer.info.name: self._score(acc)
            for layer, acc in zip(self.masks.layers, self.accumulators, strict=True)
            if acc is not None and acc.count > 0
        }

    def features(self) -> np.ndarray:  # noqa: D102
        out = np.zeros((len(self.masks.layers), 2))
        for i, (layer, acc) in enumerate(zip(self.masks.layers, self.accumulators, strict=True)):
            if acc is None or acc.count == 0:
                continue
            score = self._score(acc)[layer.active_outputs]
            mean = float(score.mean()) if score.numel() else 0.0
            if mean > 0:
                q = torch.quantile(score / mean, torch.tensor([0.1, 0.5], dtype=score.dtype, device=score.device))
                out[i] = q.cpu().numpy()
        return out


class EquilibriumObserver(Observer):
    """Mean φ over active neurons, their mean |v| on a log scale, and the fraction at equilibrium."""

    name = "equilibrium"

    def __init__(self, masks: MaskedNetwork, settings: ObserverSettings | None = None) -> None:
        super().__init__(masks, settings)
        self.trackers = [EquilibriumTracker(m.info.fan_out) for m in self.masks.layers]
        self.outputs: list[list[torch.Tensor]] = [[] for _ in self.masks.layers]
        self.capturing = False
        for i, layer in enumerate(self.masks.layers):
            self.add_hook(functools.partial(layer.info.module.register_forward_hook, self._catcher(i)))

    def set_measuring(self, on: bool) -> None:
        """The flag alone: this observer reads the validation passes, not the training steps."""
        self.measuring = on

    def _catcher(self, i: int) -> Callable[..., None]:
        def catch(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            if self.capturing:
                self.outputs[i].append(out.detach().float())

        return catch

    def begin_evaluation(self) -> None:
        """Catch the layers' outputs of the validation pass (the hooks are on the network only during it)."""
        self.hooks_on()
        self.capturing = True

    def unit_scores(self) -> dict[str, torch.Tensor]:
        """|v| per neuron (``+inf`` until the velocity exists, so nothing is frozen before the third pass)."""
        return {
            layer.info.name: tracker.velocity.abs()
            if tracker.velocity_ready
            else torch.full((layer.info.fan_out,), math.inf, dtype=torch.float64)
            for layer, tracker in zip(self.masks.layers, self.trackers, strict=True)
        }

    def end_evaluation(self) -> None:
        """Turn the validation pass's outputs into φ and v (each tracker's update); the hooks go off."""
        self.capturing = False
        self.hooks_off()
        for tracker, outs in zip(self.trackers, self.outputs, strict=True):
            if outs:
                tracker.update(torch.cat(outs))
            outs.clear()

    def state_dict(self) -> dict[str, Any]:
        """``trackers``: controlled layer name -> its tracker's state (last outputs, φ, Δφ, v).

        See :meth:`sparsity_gym.stats.equilibrium.EquilibriumTracker.state_dict`. Called during a validation pass
        (outputs caught, not yet turned into φ) it raises ``RuntimeError``.
        """
        if any(self.outputs):
            raise RuntimeError("EquilibriumObserver.state_dict() was called during a validation pass; call it after")
        return {
            "trackers": {m.info.name: t.state_dict() for m, t in zip(self.masks.layers, self.trackers, strict=True)}
        }

    def load_state_dict(self, state: Any) -> None:  # noqa: D102
        check_keys("EquilibriumObserver", state, ("trackers",))
        names = [m.info.name for m in self.masks.layers]
        check_names("EquilibriumObserver", "trackers", state["trackers"], names)
        trackers = self.on_device(state["trackers"])
        load_together([(tracker, trackers[name]) for name, tracker in zip(names, self.trackers, strict=True)])
        for outs in self.outputs:
            outs.clear()

    def features(self) -> np.ndarray:  # noqa: D102
        out = np.zeros((len(self.masks.layers), 3))
        for i, (layer, tracker) in enumerate(zip(self.masks.layers, self.trackers, strict=True)):
            active = layer.active_outputs
            if tracker.phi is not None:
                out[i, 0] = float(tracker.phi[active].mean())
            if tracker.velocity_ready:
                mean_v = float(tracker.velocity[active].abs().mean())
                out[i, 1] = min(max((math.log10(mean_v + 1e-6) + 6.0) / 6.0, 0.0), 1.0)
                out[i, 2] = float(tracker.at_equilibrium[active].float().mean())
        return out


OBSERVERS: dict[str, type[Observer]] = {
    cls.name: cls for cls in (SNRObserver, RankObserver, ContributionObserver, EquilibriumObserver, LayerInputObserver)
}


def _columns(name: str, features: tuple[Feature, ...]) -> ColumnGroup:
    return register_column_group(ColumnGroup(name, features, functools.partial(_statistics_of, name)))


def _statistics_of(name: str, snapshot: TrainingSnapshot) -> np.ndarray:
    """The ``(L, k)`` features of column group ``name`` in ``snapshot`` (filled from its observer by the env)."""
    return snapshot.statistics[name]


_columns(
    "snr",
    (
        Feature("snr_above_one", 0.0, 1.0, "fraction of active weights with smoothed SNR > 1"),
        Feature("snr_log_mean", 0.0, 3.0, "mean of log10(1 + smoothed SNR) / 4 over active weights"),
    ),
)
_columns(
    "rank",
    (
        Feature("rank_ed", 0.0, 1.0, "effective dimension φ_ED = E / N of the post-activations"),
        Feature("rank_active_share", 0.0, 1.0, "E / active units"),
    ),
)
_columns(
    "contribution",
    (
        Feature("contribution_q10", 0.0, 10.0, "10% quantile of the contribution score / its mean (active units)"),
        Feature("contribution_q50", 0.0, 10.0, "median of the contribution score / its mean (active units)"),
    ),
)
_columns(
    "equilibrium",
    (
        Feature("eq_similarity", 0.0, 1.0, "mean NEq similarity φ of active neurons (negative clipped to 0)"),
        Feature("eq_log_velocity", 0.0, 1.0, "(log10(mean |v| + 1e-6) + 6) / 6"),
        Feature("eq_frozen_share", 0.0, 1.0, "fraction of active neurons at equilibrium (|v| < 1e-3)"),
    ),
)
