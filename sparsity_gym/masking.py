"""Masks: which units of each prunable layer are active, and how they change (CRITERIA §5).

The mask contract, one for every method:

* A *unit* is a weight (granularity ``weight``) or a neuron / conv output channel (granularity ``neuron``).
  A layer at density d holds exactly ``k = max(1, round(d * n))`` active units after every mask update.
* Masks are enforced on the parameters themselves, so parameters keep their identity (the optimizer built
  before the masks keeps working): inactive weights are set to exactly zero when a mask changes and again by
  an optimizer *step post-hook* after every ``optimizer.step()``, whoever calls it. The forward pass therefore
  sees exact zeros with no per-forward cost.
* At neuron granularity an inactive neuron's fan-in row and bias are zero, and so are the matching fan-out
  columns of its successor layer (found by shape, see :func:`successor_columns`), so the neuron is removed
  exactly whatever the activation function. The output layer is never pruned at neuron granularity.
* *Which* units go is a selector's score (lowest go first, ties: the lower index goes first); *how* units
  return is a regrowth rule. Both are registries: ``register_selector`` / ``register_regrowth``.
* A regrown unit starts with optimizer state zero (every per-parameter state tensor of the parameter's shape:
  momentum buffers, Adam moments). A regrown *weight* starts at 0. A regrown *neuron* starts with a freshly
  drawn fan-in (uniform with bound 1/sqrt(fan_in), torch's default Linear/Conv2d bound), bias 0 and zero
  fan-out: the network's function is unchanged at the moment of regrowth (CRITERIA §5's "weight 0"), while the
  neuron can still learn (a neuron with an all-zero fan-in behind a ReLU would never receive a gradient).
* Exchange fraction f > 0: every update also drops ``round(f * k)`` more active units by the selector and
  regrows as many at random, chosen among units that were not dropped in this update (if enough exist).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsity_gym.networks import LayerInfo
from sparsity_gym.registry import Registry
from sparsity_gym.validation import check_choice


@dataclass
class SelectionContext:
    """What selectors and regrowth rules may use: the env's generator and the latest statistics."""

    generator: torch.Generator
    stats: Mapping[str, Any] = field(default_factory=dict)


SelectorFn = Callable[["LayerMask", SelectionContext], torch.Tensor]
RegrowthFn = Callable[["LayerMask", torch.Tensor, int, SelectionContext], torch.Tensor]
SELECTORS: Registry[SelectorFn] = Registry("selector")
REGROWTH: Registry[RegrowthFn] = Registry("regrowth")
THRESHOLD_SCALES: Registry[tuple[float, float, SelectorFn]] = Registry("selector")


def register_selector(name: str) -> Callable[[SelectorFn], SelectorFn]:
    """Register ``fn(layer, ctx) -> scores`` (one score per unit, flat; higher = keep) under ``name``."""
    return SELECTORS.register(name)


def register_threshold_scale(name: str, low: float, high: float) -> Callable[[SelectorFn], SelectorFn]:
    """Register how selector ``name`` is thresholded (``action_mode="threshold"``).

    ``fn(layer, ctx)`` gives each unit's score on a fixed scale, monotone in the selector's own score, and
    ``[low, high]`` is the range an action of -1..1 maps to. Units whose threshold score is at least the
    threshold stay active.
    """

    def decorator(fn: SelectorFn) -> SelectorFn:
        THRESHOLD_SCALES.add(name, (low, high, fn))
        return fn

    return decorator


def threshold_range(selector: str) -> tuple[float, float]:
    """The threshold range of ``selector`` (what actions -1 and +1 map to)."""
    low, high, _ = THRESHOLD_SCALES.get(selector)
    return low, high


def register_regrowth(name: str) -> Callable[[RegrowthFn], RegrowthFn]:
    """Register ``fn(layer, candidates, n, ctx) -> flat unit indices`` (``n`` of the candidates) under ``name``."""
    return REGROWTH.register(name)


def available_selectors() -> tuple[str, ...]:
    """Names accepted as ``selector=``."""
    return SELECTORS.names()


def available_regrowth() -> tuple[str, ...]:
    """Names accepted as ``regrowth=``."""
    return REGROWTH.names()


@register_selector("magnitude")
def magnitude_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """|w| per weight, or the l2 norm of each neuron's fan-in (weights only, bias excluded)."""
    w = layer.info.module.weight.detach()
    if layer.granularity == "weight":
        return w.abs().flatten()
    return w.flatten(1).norm(dim=1)


@register_threshold_scale("magnitude", 0.0, 3.0)
def magnitude_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """|w| (or a neuron's fan-in norm) over its root mean square among the layer's active units."""
    scores = magnitude_scores(layer, ctx)
    active = layer.unit_mask.flatten()
    rms = scores[active].square().mean().sqrt() if bool(active.any()) else scores.new_tensor(0.0)
    return scores / rms.clamp_min(torch.finfo(scores.dtype).tiny)


@register_selector("equilibrium")
def equilibrium_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """NEq velocity |v| of each neuron (CRITERIA §4; +inf before v exists): the most settled go first.

    Read from ``ctx.stats["equilibrium"][layer name]``, which the env fills from its equilibrium tracker. At
    weight granularity a weight takes its neuron's score.
    """
    velocity = ctx.stats["equilibrium"][layer.info.name].to(layer.device)
    if layer.granularity == "weight":
        return velocity.repeat_interleave(layer.info.fan_in)
    return velocity


@register_threshold_scale("equilibrium", -6.0, 0.0)
def equilibrium_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """log10 |v|: NEq's rule |v| < ε = 1e-3 (frozen) is the threshold -3 (the action 0)."""
    return torch.log10(equilibrium_scores(layer, ctx).double().clamp_min(1e-30)).float()


@register_selector("random")
def random_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """Uniform random scores from the env's generator: the units that go are a uniform random subset."""
    return torch.rand(layer.num_units, generator=ctx.generator).to(layer.device)


@register_selector("contribution")
def contribution_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """λ1·C_avg + λ2·C_max of each neuron over the window since the last decision (CRITERIA §3).

    Read from ``ctx.stats["contribution"]``; a layer without contributions (no known successor, or no window
    measured yet) falls back to magnitude. At weight granularity a weight takes its neuron's score. Ties: the
    higher index goes first (registered in ``TIES_HIGH_INDEX_FIRST``).
    """
    scores = ctx.stats.get("contribution", {}).get(layer.info.name)
    if scores is None:
        return magnitude_scores(layer, ctx)
    scores = scores.to(layer.device)
    return scores.repeat_interleave(layer.info.fan_in) if layer.granularity == "weight" else scores


@register_threshold_scale("contribution", 0.0, 2.0)
def contribution_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """The contribution score over its mean among the layer's active units (1: an average neuron)."""
    scores = contribution_scores(layer, ctx).double()
    active = layer.unit_mask.flatten()
    mean = scores[active].mean() if bool(active.any()) else scores.new_tensor(1.0)
    return (scores / mean.clamp_min(1e-300)).float()


@register_threshold_scale("random", 0.0, 1.0)
def random_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """Uniform random scores: a threshold t keeps each unit with probability 1 - t."""
    return random_scores(layer, ctx)


@register_regrowth("random")
def random_regrowth(layer: LayerMask, candidates: torch.Tensor, n: int, ctx: SelectionContext) -> torch.Tensor:
    """``n`` units drawn uniformly without replacement among ``candidates`` (a flat bool tensor)."""
    pool = torch.nonzero(candidates.cpu().flatten()).flatten()
    order = torch.randperm(len(pool), generator=ctx.generator)[:n]
    return pool[order].to(layer.device)


@register_regrowth("none")
def no_regrowth(layer: LayerMask, candidates: torch.Tensor, n: int, ctx: SelectionContext) -> torch.Tensor:
    """Never regrow: a layer's density can only fall."""
    return torch.empty(0, dtype=torch.long, device=layer.device)


# Selectors whose ties go the other way: among equal scores the higher index goes first (CRITERIA §3).
TIES_HIGH_INDEX_FIRST: set[str] = {"contribution"}


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


def zero_optimizer_state(optimizer: torch.optim.Optimizer | None, param: torch.Tensor, where: torch.Tensor) -> None:
    """Zero every per-parameter optimizer state tensor of ``param``'s shape where ``where`` is True."""
    if optimizer is None:
        return
    state = optimizer.state.get(param)
    if not state:
        return
    where = where.expand_as(param)
    for value in state.values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value.masked_fill_(where, 0)


def successor_columns(layer: LayerInfo, successor: LayerInfo) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Map a neuron mask of ``layer`` to an input-column mask of ``successor``, or ``None`` if unknown.

    Linear -> Linear and Conv2d -> Conv2d match when the successor's input units equal the layer's outputs;
    Conv2d -> Linear matches a channel-major flatten (each channel owns ``in_features / channels`` columns).
    """
    if successor.in_units == layer.fan_out and successor.kind == layer.kind:
        return lambda m: m
    if layer.kind == "conv" and successor.kind == "linear" and successor.in_units % layer.fan_out == 0:
        per_channel = successor.in_units // layer.fan_out
        return lambda m: m.repeat_interleave(per_channel)
    return None


class LayerMask:
    """The mask of one prunable layer: its units, which are active, and the cached masks of its tensors."""

    def __init__(self, info: LayerInfo, granularity: str, controlled: bool) -> None:
        self.info = info
        self.granularity = granularity
        self.controlled = controlled
        weight = info.module.weight
        self.device = weight.device
        shape = weight.shape if granularity == "weight" else weight.shape[:1]
        self.unit_mask = torch.ones(shape, dtype=torch.bool, device=self.device)
        self.in_mask: torch.Tensor | None = None
        self._inactive_count = 0
        self.active_weight_mask = (
            self.unit_mask if granularity == "weight" else torch.ones_like(weight, dtype=torch.bool)
        )
        self.active_outputs = torch.ones(weight.shape[0], dtype=torch.bool, device=self.device)
        self._weight_keep: torch.Tensor | None = None
        self._bias_keep: torch.Tensor | None = None
        self.num_units = int(self.unit_mask.numel())
        self.num_active = self.num_units

    @property
    def density(self) -> float:
        """Active units over units."""
        return self.num_active / self.num_units

    def target_count(self, density: float) -> int:
        """Exactly ``max(1, round(density * n))`` (Python's round: halves to even)."""
        return max(1, min(self.num_units, round(density * self.num_units)))

    def weight_mask(self) -> torch.Tensor:
        """Bool mask of the weight tensor's active entries (rows and input columns combined), computed anew.

        :attr:`active_weight_mask` and :attr:`active_outputs` (output units with an active weight) hold it as
        of the last mask update.
        """
        w = self.info.module.weight
        mask = torch.ones(w.shape, dtype=torch.bool, device=self.device)
        if self.granularity == "weight":
            mask &= self.unit_mask
        else:
            mask &= self.unit_mask.view(-1, *([1] * (w.dim() - 1)))
        if self.in_mask is not None:
            mask &= self.in_mask.view(1, -1, *([1] * (w.dim() - 2)))
        return mask

    def active_weights(self) -> int:
        """Weight entries that are active (what inference FLOPs and the global density count)."""
        return self.info.num_weights - self._inactive_count

    def refresh(self) -> None:
        """Recompute the cached masks after ``unit_mask`` or ``in_mask`` changed.

        The cache holds float 0/1 masks (``None`` where everything is active): multiplying by them is several
        times faster than ``masked_fill_`` with a bool mask, and this runs after every optimizer step.
        """
        mask = self.weight_mask()
        self.active_weight_mask = mask
        self.active_outputs = self.unit_mask if self.granularity == "neuron" else mask.flatten(1).any(dim=1)
        self._inactive_count = int((~mask).sum())
        self._weight_keep = None if self._inactive_count == 0 else mask.to(self.info.module.weight.dtype)
        bias = self.info.module.bias
        if self.granularity == "neuron" and bias is not None and not bool(self.unit_mask.all()):
            self._bias_keep = self.unit_mask.to(bias.dtype)
        else:
            self._bias_keep = None

    @torch.no_grad()
    def apply_(self) -> None:
        """Set inactive weights (and biases of inactive neurons) to zero (an inactive weight is exactly 0)."""
        if self._weight_keep is not None:
            self.info.module.weight.mul_(self._weight_keep)
        if self._bias_keep is not None:
            self.info.module.bias.mul_(self._bias_keep)


class MaskedNetwork:
    """Masks for every prunable layer of a model, kept exact through every optimizer step.

    Args:
        layers: The model's prunable layers (:func:`sparsity_gym.networks.find_prunable_layers`).
        granularity: ``weight`` or ``neuron``.
        selector: Registered selector name (which units go).
        regrowth: Registered regrowth name (which units return).
        exchange_fraction: Extra drop-and-regrow fraction per update (0 disables).
        generator: The only source of randomness (a CPU ``torch.Generator``).
        optimizer: If given, masks are re-applied after each of its steps and regrown units' state is zeroed.

    """

    def __init__(
        self,
        layers: Sequence[LayerInfo],
        granularity: str = "weight",
        selector: str = "magnitude",
        regrowth: str = "random",
        exchange_fraction: float = 0.0,
        generator: torch.Generator | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        check_choice("granularity", granularity, ("weight", "neuron"))
        self._select = SELECTORS.get(selector)
        self._regrow = REGROWTH.get(regrowth)
        self.granularity = granularity
        self.selector = selector
        self.regrowth = regrowth
        self.exchange_fraction = exchange_fraction
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.all_layers = [
            LayerMask(info, granularity, controlled=granularity == "weight" or not info.is_output) for info in layers
        ]
        self.layers = [m for m in self.all_layers if m.controlled]
        self._successors: dict[int, tuple[LayerMask, Callable[[torch.Tensor], torch.Tensor]]] = {}
        for a, b in zip(self.all_layers[:-1], self.all_layers[1:], strict=True):
            cols = successor_columns(a.info, b.info)
            if cols is not None:
                self._successors[id(a)] = (b, cols)
        self.optimizer: torch.optim.Optimizer | None = None
        self._hook: Any = None
        if optimizer is not None:
            self.attach(optimizer)

    def successor(self, layer: LayerMask) -> LayerMask | None:
        """The layer fed by ``layer``'s outputs, if found by shape (see :func:`successor_columns`)."""
        succ = self._successors.get(id(layer))
        return None if succ is None else succ[0]

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-apply the masks after every ``optimizer.step()`` and zero regrown units' state in ``optimizer``."""
        self.detach()
        self.optimizer = optimizer
        self._hook = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply_())

    def detach(self) -> None:
        """Remove the optimizer hook (masks stay as they are on the parameters)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.optimizer = None

    def apply_(self) -> None:
        """Set every inactive weight to exactly zero."""
        for layer in self.all_layers:
            layer.apply_()

    @property
    def densities(self) -> list[float]:
        """Density of each controlled layer (active units / units)."""
        return [m.density for m in self.layers]

    def global_density(self) -> float:
        """Active weights over weights, over every prunable layer (parameter-weighted, biases excluded)."""
        total = sum(m.info.num_weights for m in self.all_layers)
        return sum(m.active_weights() for m in self.all_layers) / total

    def counts_from_thresholds(self, thresholds: Sequence[float], ctx: SelectionContext, minimum: int = 1) -> list[int]:
        """Active units that pass each layer's threshold (at least ``minimum``; NaN keeps the layer as is).

        The selector's threshold score (:func:`register_threshold_scale`) is compared with the threshold;
        only units active now count, so a threshold never regrows units.
        """
        scale = THRESHOLD_SCALES.get(self.selector)[2]
        counts = []
        for layer, thr in zip(self.layers, thresholds, strict=True):
            if math.isnan(thr):
                counts.append(layer.num_active)
                continue
            passing = (scale(layer, ctx).flatten() >= thr) & layer.unit_mask.flatten()
            counts.append(max(minimum, int(passing.sum())))
        return counts

    def keep_masks(self, counts: Sequence[int], ctx: SelectionContext) -> list[torch.Tensor]:
        """Per controlled layer, the ``k`` units of highest selector score among all units (masks untouched).

        What ``effect="freeze"`` uses: the others are frozen, not pruned.
        """
        keep = []
        for layer, k in zip(self.layers, counts, strict=True):
            scores = self._select(layer, ctx).flatten()
            everything = torch.ones_like(scores, dtype=torch.bool)
            mask = torch.ones_like(everything)
            mask[lowest_among(scores, everything, layer.num_units - k, self.selector in TIES_HIGH_INDEX_FIRST)] = False
            keep.append(mask.view_as(layer.unit_mask))
        return keep

    def set_densities(self, densities: Sequence[float], ctx: SelectionContext | None = None) -> None:
        """Move every controlled layer to exactly ``round(d * n)`` active units (CRITERIA §5)."""
        if len(densities) != len(self.layers):
            raise ValueError(f"densities has {len(densities)} values; expected {len(self.layers)} (one per layer)")
        self.set_counts([layer.target_count(float(d)) for layer, d in zip(self.layers, densities, strict=True)], ctx)

    def set_counts(self, counts: Sequence[int], ctx: SelectionContext | None = None) -> None:
        """Move every controlled layer to exactly ``counts[i]`` active units (CRITERIA §5)."""
        if len(counts) != len(self.layers):
            raise ValueError(f"counts has {len(counts)} values; expected {len(self.layers)} (one per layer)")
        ctx = ctx or SelectionContext(self.generator)
        grown = [self._update_layer(layer, int(k), ctx) for layer, k in zip(self.layers, counts, strict=True)]
        # Fan-out columns are zeroed once every layer is initialised: a neuron grown in the successor in the
        # same update draws a fresh fan-in over all columns, including those of new neurons here.
        for layer, new in zip(self.layers, grown, strict=True):
            if new is not None and layer.granularity == "neuron":
                self._zero_fan_out(layer, new)
        for layer in self.all_layers:
            layer.refresh()
        self.apply_()

    def _update_layer(self, layer: LayerMask, k: int, ctx: SelectionContext) -> torch.Tensor | None:
        """Drop and regrow units of one layer to exactly ``k``; return the grown units' mask, if any."""
        active = layer.unit_mask.flatten().clone()
        n_active = int(active.sum())
        if self.regrowth == "none":
            k = min(k, n_active)
        n_exchange = round(self.exchange_fraction * k) if self.regrowth != "none" else 0
        n_exchange = min(n_exchange, n_active, k)
        n_drop = max(n_active - k, 0) + n_exchange
        dropped = torch.zeros_like(active)
        if n_drop > 0:
            scores = self._select(layer, ctx).flatten()
            dropped[lowest_among(scores, active, n_drop, self.selector in TIES_HIGH_INDEX_FIRST)] = True
            active &= ~dropped
        n_grow = k - int(active.sum())
        grown = torch.zeros_like(active)
        if n_grow > 0:
            candidates = ~active & ~dropped
            if int(candidates.sum()) < n_grow:
                candidates = ~active
            grown[self._regrow(layer, candidates, n_grow, ctx)] = True
            active |= grown
        if not bool(dropped.any()) and not bool(grown.any()):
            return None
        layer.unit_mask = active.view_as(layer.unit_mask)
        layer.num_active = int(active.sum())
        succ = self._successors.get(id(layer))
        if succ is not None and self.granularity == "neuron":
            successor, cols = succ
            successor.in_mask = cols(layer.unit_mask)
        if not bool(grown.any()):
            return None
        grown = grown.view_as(layer.unit_mask)
        self._initialise_grown(layer, grown, ctx)
        return grown

    @torch.no_grad()
    def _initialise_grown(self, layer: LayerMask, grown: torch.Tensor, ctx: SelectionContext) -> None:
        module = layer.info.module
        w = module.weight
        if layer.granularity == "weight":
            w.masked_fill_(grown, 0.0)
            zero_optimizer_state(self.optimizer, w, grown)
            return
        rows = grown.view(-1, *([1] * (w.dim() - 1)))
        bound = 1.0 / math.sqrt(layer.info.fan_in)
        fresh = (torch.rand(w.shape, generator=ctx.generator) * 2 - 1).mul_(bound).to(w.device, w.dtype)
        w.copy_(torch.where(rows, fresh, w))
        zero_optimizer_state(self.optimizer, w, rows)
        if module.bias is not None:
            module.bias.masked_fill_(grown, 0.0)
            zero_optimizer_state(self.optimizer, module.bias, grown)

    @torch.no_grad()
    def _zero_fan_out(self, layer: LayerMask, grown: torch.Tensor) -> None:
        succ = self._successors.get(id(layer))
        if succ is None:
            return
        successor, cols = succ
        sw = successor.info.module.weight
        col = cols(grown).view(1, -1, *([1] * (sw.dim() - 2)))
        sw.masked_fill_(col, 0.0)
        zero_optimizer_state(self.optimizer, sw, col)
