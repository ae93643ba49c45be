"""Selectors: *which* units of a layer go when it shrinks, one spec per selector (CRITERIA §1–§5).

A :class:`Selector` is registered once with everything about it: its scores (one per unit, flat; the lowest
go first), how it is thresholded in ``action_mode="threshold"`` (a :class:`ThresholdScale`, a whole-network
:data:`ThresholdRule`, or neither), the options it reads, its tie order, the statistics it needs collected and
the granularities it supports. :class:`~sparsity_gym.env.env_config.EnvConfig` checks a configuration against the
spec, so a combination the spec does not allow is refused when the env is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from sparsity_gym.core.registry import Registry
from sparsity_gym.criteria.dyno import select_prune
from sparsity_gym.criteria.snr_pruning import COMBINE_MODES, MAGNITUDE_SCOPES, snr_keep_masks
from sparsity_gym.masks.layer_mask import LayerMask

GRANULARITIES = ("weight", "neuron")


@dataclass
class SelectionContext:
    """What selectors and regrowth rules may use: the env's generator and the latest statistics."""

    generator: torch.Generator
    stats: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)  # the env's ``selector_options``


SelectorFn = Callable[[LayerMask, SelectionContext], torch.Tensor]
ThresholdRule = Callable[[Sequence[LayerMask], Sequence[float], SelectionContext], list[torch.Tensor]]


@dataclass(frozen=True)
class ThresholdScale:
    """How a selector is thresholded in ``action_mode="threshold"``.

    ``scores(layer, ctx)`` is on a fixed scale, monotone in the selector's own score, and ``[low, high]`` is the
    range that actions -1..1 map to. Units whose score reaches the threshold stay.
    """

    low: float
    high: float
    scores: SelectorFn


@dataclass(frozen=True)
class Selector:
    """Everything about one selector, registered once in :data:`SELECTORS`.

    Attributes:
        name: The ``EnvConfig.selector`` value.
        scores: ``fn(layer, ctx) -> scores``, one per unit (flat); higher is kept.
        threshold: Its threshold scale for ``action_mode="threshold"`` (``None``: no per-unit scale).
        rule: A whole-network threshold rule that decides the keep masks itself (e.g. SNR's ``snr > t OR
            global magnitude``); with a rule, ``threshold`` still gives the action range.
        options: The ``selector_options`` it reads: name -> allowed values.
        ties_high_index_first: Among equal scores the higher index goes first (CRITERIA §3); else the lower.
        statistics: The observers it reads from ``SelectionContext.stats`` (collected whether observed or not).
        granularities: The granularities its scores mean something at.

    """

    name: str
    scores: SelectorFn
    threshold: ThresholdScale | None = None
    rule: ThresholdRule | None = None
    options: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: MappingProxyType({}))
    ties_high_index_first: bool = False
    statistics: tuple[str, ...] = ()
    granularities: tuple[str, ...] = GRANULARITIES

    @property
    def thresholdable(self) -> bool:
        """Whether ``action_mode="threshold"`` is defined for this selector."""
        return self.threshold is not None


SELECTORS: Registry[Selector] = Registry("selector")


def register_selector(spec: Selector) -> Selector:
    """Register ``spec`` under ``spec.name`` (a later registration of the same name replaces it)."""
    SELECTORS.add(spec.name, spec)
    return spec


def available_selectors() -> tuple[str, ...]:
    """Names accepted as ``selector=``."""
    return SELECTORS.names()


def threshold_range(selector: str) -> tuple[float, float]:
    """The threshold range of ``selector`` (what actions -1 and +1 map to); ``ValueError`` if it has none."""
    spec = SELECTORS.get(selector)
    if spec.threshold is None:
        allowed = tuple(n for n, s in SELECTORS.items() if s.thresholdable)
        raise ValueError(
            f"selector={selector!r} is not allowed with action_mode='threshold'; expected one of: "
            + ", ".join(repr(a) for a in allowed)
        )
    return spec.threshold.low, spec.threshold.high


def magnitude_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """|θ| per weight, or the l2 norm of each neuron's fan-in (weights only, bias excluded).

    θ is the dense weight under ``feedback`` (DPF ranks pruned weights too), else the parameter itself.
    """
    w = layer.dense_weight.detach()
    if layer.granularity == "weight":
        return w.abs().flatten()
    return w.flatten(1).norm(dim=1)


def magnitude_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """|w| (or a neuron's fan-in norm) over its root mean square among the layer's active units."""
    scores = magnitude_scores(layer, ctx)
    active = layer.unit_mask.flatten()
    rms = scores[active].square().mean().sqrt() if bool(active.any()) else scores.new_tensor(0.0)
    return scores / rms.clamp_min(torch.finfo(scores.dtype).tiny)


def random_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """Uniform random scores from the env's generator: the units that go are a uniform random subset."""
    return torch.rand(layer.num_units, generator=ctx.generator).to(layer.device)


def random_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """Uniform random scores: a threshold t keeps each unit with probability 1 - t."""
    return random_scores(layer, ctx)


def equilibrium_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """NEq velocity |v| of each neuron (CRITERIA §4; +inf before v exists): the most settled go first.

    Read from ``ctx.stats["equilibrium"][layer name]``, which the env fills from its equilibrium tracker. At
    weight granularity a weight takes its neuron's score.
    """
    velocity = ctx.stats["equilibrium"][layer.info.name].to(layer.device)
    if layer.granularity == "weight":
        return velocity.repeat_interleave(layer.info.fan_in)
    return velocity


def equilibrium_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """log10 |v|: NEq's rule |v| < ε = 1e-3 (frozen) is the threshold -3 (the action 0)."""
    return torch.log10(equilibrium_scores(layer, ctx).double().clamp_min(1e-30)).float()


def contribution_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """λ1·C_avg + λ2·C_max of each neuron over the window since the last decision (CRITERIA §3).

    Read from ``ctx.stats["contribution"]``; a layer without contributions (no known successor, or no window
    measured yet) falls back to magnitude. At weight granularity a weight takes its neuron's score. Ties: the
    higher index goes first (the spec's ``ties_high_index_first``).
    """
    scores = ctx.stats.get("contribution", {}).get(layer.info.name)
    if scores is None:
        return magnitude_scores(layer, ctx)
    scores = scores.to(layer.device)
    return scores.repeat_interleave(layer.info.fan_in) if layer.granularity == "weight" else scores


def contribution_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """The contribution score over its mean among the layer's active units (1: an average neuron)."""
    scores = contribution_scores(layer, ctx).double()
    active = layer.unit_mask.flatten()
    mean = scores[active].mean() if bool(active.any()) else scores.new_tensor(1.0)
    return (scores / mean.clamp_min(1e-300)).float()


def snr_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """Smoothed gradient SNR of each weight (CRITERIA §1), from ``ctx.stats["snr"]``; lowest SNR goes first.

    A neuron's score is the mean SNR of its fan-in row. Before the first measured step the layer falls back
    to magnitude.
    """
    snr = ctx.stats.get("snr", {}).get(layer.info.name)
    if snr is None:
        return magnitude_scores(layer, ctx)
    snr = snr.to(layer.device)
    return snr.flatten() if layer.granularity == "weight" else snr.flatten(1).mean(dim=1)


def snr_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """log10 of the smoothed SNR: the paper's ``snr > 1`` is the threshold 0 (the action 0)."""
    return torch.log10(snr_scores(layer, ctx).double()).float()


def snr_threshold_rule(
    layers: Sequence[LayerMask], thresholds: Sequence[float], ctx: SelectionContext
) -> list[torch.Tensor]:
    """SNR pruning's keep masks (CRITERIA §1, Algorithm 1 with the text's combination).

    ``keep_snr = snr > 10**t`` per layer (strict; ``t = 0`` is the paper's ``snr > 1``), its sparsity ``sp``
    measured over all controlled layers; ``keep_mag`` keeps the ``(1 - sp)`` fraction of largest ``|θ|`` (the
    dense θ under feedback) over all layers together (``magnitude_scope="global"``, like DPF; ``"layer"``:
    per layer); ``keep = keep_snr OR keep_mag`` (``combine="or"``; ``"and"``: the Algorithm-1 reading). The
    options come from the env's ``selector_options``. See :func:`sparsity_gym.criteria.snr_keep_masks`.
    """
    names = [layer.info.name for layer in layers]
    snr = {
        n: snr_scores(layer, ctx).double() / 10.0 ** float(t)
        for n, layer, t in zip(names, layers, thresholds, strict=True)
    }
    magnitude = {n: magnitude_scores(layer, ctx) for n, layer in zip(names, layers, strict=True)}
    keeps = snr_keep_masks(
        snr,
        magnitude,
        combine=ctx.options.get("combine", "or"),
        magnitude_scope=ctx.options.get("magnitude_scope", "global"),
    )
    return [keeps[n] for n in names]


def redundancy_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """DYNO's prune order (CRITERIA §2): dormant neurons first, then greedily the most redundant by cosine.

    The order of :func:`sparsity_gym.criteria.dyno.select_prune` over all active neurons, on the buffered
    post-activations ``ctx.stats["rank"][layer name]`` (the rank observer's FIFO): the unit selected ``j``-th
    scores ``j``, so the lowest scores go first. Neuron granularity only (a weight takes its neuron's score);
    without a buffer yet the layer falls back to magnitude.
    """
    rows = ctx.stats.get("rank", {}).get(layer.info.name)
    if rows is None:
        return magnitude_scores(layer, ctx)
    active = layer.active_outputs.to(rows.device)
    order = select_prune(rows, int(active.sum()), active)
    scores = torch.full((layer.info.fan_out,), float(layer.info.fan_out), dtype=torch.float64)
    scores[order.cpu()] = torch.arange(len(order), dtype=torch.float64)
    scores = scores.to(layer.device)
    return scores.repeat_interleave(layer.info.fan_in) if layer.granularity == "weight" else scores


def lowest_among(scores: torch.Tensor, active: torch.Tensor, n: int, high_index_first: bool = False) -> torch.Tensor:
    """Flat indices of the ``n`` lowest ``scores`` among ``active`` units.

    Ties: the lower index goes first, or the higher with ``high_index_first``.
    """
    if n <= 0:
        return torch.empty(0, dtype=torch.long, device=scores.device)
    masked = torch.where(active, scores.double(), torch.full_like(scores, math.inf, dtype=torch.float64))
    if high_index_first:
        flipped = torch.argsort(masked.flip(0), stable=True)[:n]
        return masked.numel() - 1 - flipped
    return torch.argsort(masked, stable=True)[:n]


def lowest_mask(scores: torch.Tensor, active: torch.Tensor, n: int, high_index_first: bool = False) -> torch.Tensor:
    """The units :func:`lowest_among` picks, as a bool mask of ``scores``' shape (the same set, found faster).

    The ``n``-th lowest value is found by selection (``kthvalue``, linear time) instead of a full sort: every unit
    below it is picked, and among the units equal to it the lowest indices (the highest with
    ``high_index_first``) until ``n`` are picked, the ties a stable sort breaks the same way. Scores with a NaN
    fall back to :func:`lowest_among`.
    """
    picked = torch.zeros_like(active, dtype=torch.bool)
    if n <= 0:
        return picked
    masked = torch.where(active, scores.double(), torch.full_like(scores, math.inf, dtype=torch.float64))
    if n >= masked.numel():
        return torch.ones_like(picked)
    if bool(torch.isnan(masked).any()):
        picked[lowest_among(scores, active, n, high_index_first)] = True
        return picked
    value = torch.kthvalue(masked, n).values
    below = masked < value
    ties = torch.nonzero(masked == value).flatten()
    need = n - int(below.sum())
    picked |= below
    picked[ties[-need:] if high_index_first else ties[:need]] = True
    return picked


register_selector(Selector("magnitude", magnitude_scores, ThresholdScale(0.0, 3.0, magnitude_threshold_scores)))
register_selector(Selector("random", random_scores, ThresholdScale(0.0, 1.0, random_threshold_scores)))
register_selector(
    Selector(
        "equilibrium",
        equilibrium_scores,
        ThresholdScale(-6.0, 0.0, equilibrium_threshold_scores),
        statistics=("equilibrium",),
    )
)
register_selector(
    Selector(
        "contribution",
        contribution_scores,
        ThresholdScale(0.0, 2.0, contribution_threshold_scores),
        ties_high_index_first=True,
        statistics=("contribution",),
    )
)
register_selector(
    Selector(
        "snr",
        snr_scores,
        ThresholdScale(-2.0, 2.0, snr_threshold_scores),
        rule=snr_threshold_rule,
        options=MappingProxyType({"combine": COMBINE_MODES, "magnitude_scope": MAGNITUDE_SCOPES}),
        statistics=("snr",),
    )
)
register_selector(Selector("redundancy", redundancy_scores, statistics=("rank",), granularities=("neuron",)))
