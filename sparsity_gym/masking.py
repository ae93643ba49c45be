"""Masks: which units of each prunable layer are active, and how they change (CRITERIA §5).

The mask contract, one for every method:

* A *unit* is a weight (granularity ``weight``) or a neuron / conv output channel (granularity ``neuron``).
  A layer at density d holds exactly ``k = max(1, round(d * n))`` active units after every mask update.
* Masks are enforced on the parameters themselves, so parameters keep their identity (the optimizer built
  before the masks keeps working): inactive weights are set to exactly zero when a mask changes and again by
  an optimizer *step post-hook* after every ``optimizer.step()``, whoever calls it. The forward pass therefore
  sees exact zeros with no per-forward cost.
* At neuron granularity an inactive neuron's fan-in row and bias are zero, and so are the matching fan-out
  columns of every successor layer (the layers that consume its output, from the traced data-flow graph of
  :mod:`sparsity_gym.graph`, or the next layer in module order when the shapes chain if tracing failed; see
  :func:`successor_columns`), so the neuron is removed exactly whatever the activation function or BatchNorm in
  between. The output layer, and every layer whose output enters a residual addition
  (``LayerInfo.neuron_prunable`` False), is never pruned at neuron granularity.
* *Which* units go is a selector's score (lowest go first, ties: the lower index goes first); *how* units
  return is a regrowth rule. Both are registries: ``register_selector`` / ``register_regrowth``.
* A regrown unit starts with optimizer state zero (every per-parameter state tensor of the parameter's shape:
  momentum buffers, Adam moments). A regrown *weight* starts at 0. A regrown *neuron* starts with a freshly
  drawn fan-in (uniform with bound 1/sqrt(fan_in), torch's default Linear/Conv2d bound), bias 0 and zero
  fan-out: the network's function is unchanged at the moment of regrowth (CRITERIA §5's "weight 0"), while the
  neuron can still learn (a neuron with an all-zero fan-in behind a ReLU would never receive a gradient).
* Exchange fraction f > 0: every update also drops ``round(f * k)`` more active units by the selector and
  regrows as many at random, chosen among units that were not dropped in this update (if enough exist).
* Regrowth ``feedback`` is DPF (Lin et al. 2019; CRITERIA §1, the SNR method's default): the network keeps
  its dense weights θ. Forward and backward see ``θ ⊙ mask`` (the parameter holds exactly that between
  steps), an optimizer *step pre-hook* puts θ back so the step updates the dense θ, pruned weights included,
  with the gradient taken at the masked weights, and the post-hook stores θ and masks again. Every mask update
  re-selects among *all* units (the ``k`` best by the selector's score on θ), so a pruned unit returns with
  its θ and its optimizer state, untouched. ``feedback_updates_pruned=False`` is the paper's §5.3 option:
  pruned weights keep their θ through the step (no update).
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
    options: Mapping[str, Any] = field(default_factory=dict)  # the env's ``selector_options``


@dataclass(frozen=True)
class Growth:
    """What a regrowth rule may return instead of bare indices: the units and their chosen fan-in rows.

    ``fan_in[i]`` (flattened row) initialises unit ``indices[i]`` (neuron granularity; NORTH-Select).
    """

    indices: torch.Tensor
    fan_in: torch.Tensor


SelectorFn = Callable[["LayerMask", SelectionContext], torch.Tensor]
RegrowthFn = Callable[["LayerMask", torch.Tensor, int, SelectionContext], "torch.Tensor | Growth"]
ThresholdRule = Callable[["MaskedNetwork", Sequence[float], SelectionContext], list[torch.Tensor]]
SELECTORS: Registry[SelectorFn] = Registry("selector")
REGROWTH: Registry[RegrowthFn] = Registry("regrowth")
THRESHOLD_SCALES: Registry[tuple[float, float, SelectorFn]] = Registry("selector")
THRESHOLD_RULES: Registry[ThresholdRule] = Registry("selector")
FEEDBACK = "feedback"  # the DPF regrowth: handled by MaskedNetwork itself (re-selection among all units)


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


def register_threshold_rule(name: str) -> Callable[[ThresholdRule], ThresholdRule]:
    """Register a whole-network threshold rule for selector ``name``: ``fn(masks, thresholds, ctx) -> keeps``.

    A selector with a rule decides its keep masks itself (e.g. SNR's ``snr > t OR global magnitude``);
    without one, :meth:`MaskedNetwork.keeps_from_thresholds` keeps the units whose threshold score passes.
    """
    return THRESHOLD_RULES.register(name)


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
    """Names accepted as ``regrowth=`` (the registered rules and ``feedback``, DPF)."""
    return tuple(sorted((*REGROWTH.names(), FEEDBACK)))


@register_selector("magnitude")
def magnitude_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """|θ| per weight, or the l2 norm of each neuron's fan-in (weights only, bias excluded).

    θ is the dense weight under ``feedback`` (DPF ranks pruned weights too), else the parameter itself.
    """
    w = layer.dense_weight.detach()
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


@register_selector("snr")
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


@register_threshold_scale("snr", -2.0, 2.0)
def snr_threshold_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """log10 of the smoothed SNR: the paper's ``snr > 1`` is the threshold 0 (the action 0)."""
    return torch.log10(snr_scores(layer, ctx).double()).float()


@register_threshold_rule("snr")
def snr_threshold_rule(masks: MaskedNetwork, thresholds: Sequence[float], ctx: SelectionContext) -> list[torch.Tensor]:
    """SNR pruning's keep masks (CRITERIA §1, Algorithm 1 with the text's combination).

    ``keep_snr = snr > 10**t`` per layer (strict; ``t = 0`` is the paper's ``snr > 1``), its sparsity ``sp``
    measured over all controlled layers; ``keep_mag`` keeps the ``(1 - sp)`` fraction of largest ``|θ|`` (the
    dense θ under feedback) over all layers together (``magnitude_scope="global"``, like DPF; ``"layer"``:
    per layer); ``keep = keep_snr OR keep_mag`` (``combine="or"``; ``"and"``: the Algorithm-1 reading). The
    options come from the env's ``selector_options``. See :func:`sparsity_gym.criteria.snr_keep_masks`.
    """
    from sparsity_gym.criteria.snr_pruning import snr_keep_masks

    names = [layer.info.name for layer in masks.layers]
    snr = {
        n: snr_scores(layer, ctx).double() / 10.0 ** float(t)
        for n, layer, t in zip(names, masks.layers, thresholds, strict=True)
    }
    magnitude = {n: magnitude_scores(layer, ctx) for n, layer in zip(names, masks.layers, strict=True)}
    keeps = snr_keep_masks(
        snr,
        magnitude,
        combine=ctx.options.get("combine", "or"),
        magnitude_scope=ctx.options.get("magnitude_scope", "global"),
    )
    return [keeps[n] for n in names]


@register_selector("redundancy")
def redundancy_scores(layer: LayerMask, ctx: SelectionContext) -> torch.Tensor:
    """DYNO's prune order (CRITERIA §2): dormant neurons first, then greedily the most redundant by cosine.

    The order of :func:`sparsity_gym.criteria.dyno.select_prune` over all active neurons, on the buffered
    post-activations ``ctx.stats["rank"][layer name]`` (the rank observer's FIFO): the unit selected ``j``-th
    scores ``j``, so the lowest scores go first. Neuron granularity only (a weight takes its neuron's score);
    without a buffer yet the layer falls back to magnitude.
    """
    from sparsity_gym.criteria.dyno import select_prune

    rows = ctx.stats.get("rank", {}).get(layer.info.name)
    if rows is None:
        return magnitude_scores(layer, ctx)
    active = layer.active_outputs.to(rows.device)
    order = select_prune(rows, int(active.sum()), active)
    scores = torch.full((layer.info.fan_out,), float(layer.info.fan_out), dtype=torch.float64)
    scores[order.cpu()] = torch.arange(len(order), dtype=torch.float64)
    scores = scores.to(layer.device)
    return scores.repeat_interleave(layer.info.fan_in) if layer.granularity == "weight" else scores


@register_regrowth("north")
def north_regrowth(layer: LayerMask, candidates: torch.Tensor, n: int, ctx: SelectionContext) -> Growth | torch.Tensor:
    """NORTH-Select growth (CRITERIA §2): the ``n`` lowest-index free slots get the best of ``100·n`` fan-ins.

    Candidates are drawn Kaiming-uniform (bound 1/sqrt(fan_in)) from the env's generator and scored by the
    norm of their ReLU activation's residual outside the span of the active neurons' activations on the
    layer's buffered inputs (``ctx.stats["layer_inputs"]``); bias, fan-out and optimizer state start at 0
    (done by :class:`MaskedNetwork`). Neuron granularity; without buffered inputs it falls back to random
    fan-ins. See :func:`sparsity_gym.criteria.dyno.north_select`.
    """
    from sparsity_gym.criteria.dyno import north_select

    slots = torch.nonzero(candidates.flatten()).flatten()[:n].to(layer.device)
    inputs = ctx.stats.get("layer_inputs", {}).get(layer.info.name)
    if inputs is None or layer.granularity != "neuron":
        return slots
    module = layer.info.module
    active = layer.unit_mask.flatten()
    fan_in, _ = north_select(
        inputs,
        module.weight.detach()[active].flatten(1),
        None if module.bias is None else module.bias.detach()[active],
        len(slots),
        torch.relu,
        ctx.generator,
    )
    return Growth(slots, fan_in)


# Options a selector reads from ``SelectionContext.options`` (the env's ``selector_options``): allowed values.
SELECTOR_OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "snr": {"combine": ("or", "and"), "magnitude_scope": ("global", "layer")},
}


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


def successor_columns(
    layer: LayerInfo, successor: LayerInfo, per_unit: int | None = None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Map a neuron mask of ``layer`` to an input-column mask of ``successor``, or ``None`` if unknown.

    With ``per_unit`` (from the traced graph, ``LayerInfo.successors``): unit ``k`` owns the ``per_unit``
    consecutive columns from ``k * per_unit`` (a channel-major flatten; 1: column for unit), provided the
    successor's input width is ``fan_out * per_unit``. Without it (module order), by shape:
    Linear -> Linear and Conv2d -> Conv2d match when the successor's input units equal the layer's outputs;
    Conv2d -> Linear matches a channel-major flatten (each channel owns ``in_features / channels`` columns).
    """
    if per_unit is not None:
        if successor.in_units != layer.fan_out * per_unit or (successor.kind == "conv" and per_unit != 1):
            return None
        return (lambda m: m) if per_unit == 1 else (lambda m: m.repeat_interleave(per_unit))
    if successor.in_units == layer.fan_out and successor.kind == layer.kind:
        return lambda m: m
    if layer.kind == "conv" and successor.kind == "linear" and successor.in_units % layer.fan_out == 0:
        per_channel = successor.in_units // layer.fan_out
        return lambda m: m.repeat_interleave(per_channel)
    return None


class LayerMask:
    """The mask of one prunable layer: its units, which are active, and the cached masks of its tensors."""

    def __init__(
        self, info: LayerInfo, granularity: str, controlled: bool, feedback: bool = False, update_pruned: bool = True
    ) -> None:
        self.info = info
        self.granularity = granularity
        self.controlled = controlled
        weight = info.module.weight
        # DPF: the dense θ of the weight and bias (None without feedback); see the module docstring.
        self.dense: torch.Tensor | None = weight.detach().clone() if feedback else None
        bias = info.module.bias
        self.dense_bias: torch.Tensor | None = bias.detach().clone() if feedback and bias is not None else None
        self.update_pruned = update_pruned
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
    def dense_weight(self) -> torch.Tensor:
        """The dense weight θ: the feedback copy under DPF, otherwise the (masked) parameter itself."""
        return self.info.module.weight if self.dense is None else self.dense

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
        """Set the parameters to ``θ ⊙ mask``: inactive weights (and biases of inactive neurons) exactly 0.

        Without feedback θ is the parameter itself; under DPF it is the dense copy, so units that return get
        their θ back.
        """
        module = self.info.module
        if self.dense is not None:
            module.weight.copy_(self.dense)
            if self.dense_bias is not None:
                module.bias.copy_(self.dense_bias)
        if self._weight_keep is not None:
            module.weight.mul_(self._weight_keep)
        if self._bias_keep is not None:
            module.bias.mul_(self._bias_keep)

    @torch.no_grad()
    def before_step_(self) -> None:
        """DPF: put the dense θ back into the parameters so the optimizer step updates it (no-op otherwise)."""
        if self.dense is None or (self._weight_keep is None and self._bias_keep is None):
            return
        module = self.info.module
        module.weight.copy_(self.dense)
        if self.dense_bias is not None:
            module.bias.copy_(self.dense_bias)

    @torch.no_grad()
    def after_step_(self) -> None:
        """After an optimizer step: store the updated θ (DPF), then mask the parameters again."""
        module = self.info.module
        if self.dense is not None:
            self._store(self.dense, module.weight, self._weight_keep)
            if self.dense_bias is not None:
                self._store(self.dense_bias, module.bias, self._bias_keep)
        if self._weight_keep is not None:
            module.weight.mul_(self._weight_keep)
        if self._bias_keep is not None:
            module.bias.mul_(self._bias_keep)

    def _store(self, dense: torch.Tensor, param: torch.Tensor, keep: torch.Tensor | None) -> None:
        if self.update_pruned or keep is None:
            dense.copy_(param)
        else:  # paper §5.3 option: pruned weights keep their θ through the step
            dense.copy_(torch.lerp(dense, param, keep))


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
        feedback_updates_pruned: Under ``regrowth="feedback"`` (DPF), whether the optimizer step updates the
            dense θ of pruned weights (True, DPF and the SNR paper's default) or leaves it (paper §5.3).

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
        feedback_updates_pruned: bool = True,
    ) -> None:
        check_choice("granularity", granularity, ("weight", "neuron"))
        check_choice("regrowth", regrowth, available_regrowth())
        self._select = SELECTORS.get(selector)
        self.feedback = regrowth == FEEDBACK
        self._regrow = None if self.feedback else REGROWTH.get(regrowth)
        self.granularity = granularity
        self.selector = selector
        self.regrowth = regrowth
        self.exchange_fraction = exchange_fraction
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.all_layers = [
            LayerMask(
                info,
                granularity,
                controlled=granularity == "weight" or (not info.is_output and info.neuron_prunable),
                feedback=self.feedback,
                update_pruned=feedback_updates_pruned,
            )
            for info in layers
        ]
        self.layers = [m for m in self.all_layers if m.controlled]
        # every consumer of each layer's outputs with its column map: from the traced graph
        # (info.successors), or the next layer in module order when the network could not be traced
        self._successors: dict[int, list[tuple[LayerMask, Callable[[torch.Tensor], torch.Tensor]]]] = {}
        by_name = {m.info.name: m for m in self.all_layers}
        for i, a in enumerate(self.all_layers):
            if a.info.successors is None:
                candidates = [(b, None) for b in self.all_layers[i + 1 : i + 2]]
            else:
                candidates = [(by_name[n], per) for n, per in a.info.successors if n in by_name]
            for b, per in candidates:
                cols = successor_columns(a.info, b.info, per)
                if cols is not None:
                    self._successors.setdefault(id(a), []).append((b, cols))
        self.optimizer: torch.optim.Optimizer | None = None
        self._hooks: list[Any] = []
        if optimizer is not None:
            self.attach(optimizer)

    def successor(self, layer: LayerMask) -> LayerMask | None:
        """The first layer fed by ``layer``'s outputs (see :meth:`successors`), or ``None``."""
        succ = self._successors.get(id(layer))
        return succ[0][0] if succ else None

    def successors(self, layer: LayerMask) -> list[tuple[LayerMask, Callable[[torch.Tensor], torch.Tensor]]]:
        """Every layer fed by ``layer``'s outputs, in execution order, with its column map.

        A column map turns a neuron mask of ``layer`` into an input-column mask of the successor
        (:func:`successor_columns`).
        """
        return list(self._successors.get(id(layer), ()))

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-apply the masks after every ``optimizer.step()`` and zero regrown units' state in ``optimizer``.

        Under feedback (DPF) a step pre-hook also puts the dense θ back before each step.
        """
        self.detach()
        self.optimizer = optimizer
        if self.feedback:
            self._hooks.append(optimizer.register_step_pre_hook(lambda opt, args, kwargs: self._before_step()))
        self._hooks.append(optimizer.register_step_post_hook(lambda opt, args, kwargs: self._after_step()))

    def detach(self) -> None:
        """Remove the optimizer hooks (masks stay as they are on the parameters)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self.optimizer = None

    def _before_step(self) -> None:
        for layer in self.all_layers:
            layer.before_step_()

    def _after_step(self) -> None:
        for layer in self.all_layers:
            layer.after_step_()

    def apply_(self) -> None:
        """Set every parameter to ``θ ⊙ mask`` (every inactive weight exactly zero)."""
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
        """Move every controlled layer to exactly ``counts[i]`` active units (CRITERIA §5).

        Under feedback (DPF) the ``k`` units of highest score among *all* units are kept (re-selection).
        """
        if len(counts) != len(self.layers):
            raise ValueError(f"counts has {len(counts)} values; expected {len(self.layers)} (one per layer)")
        ctx = ctx or SelectionContext(self.generator)
        if self.feedback:
            self.set_keep(self.keep_masks([int(k) for k in counts], ctx), ctx)
            return
        self._finish([self._update_layer(layer, int(k), ctx) for layer, k in zip(self.layers, counts, strict=True)])

    def set_keep(self, keeps: Sequence[torch.Tensor], ctx: SelectionContext | None = None) -> None:
        """Make each controlled layer's active units exactly ``keeps[i]`` (a bool mask over its units).

        Units that become active are regrown as any regrown unit (weight 0 or a fresh fan-in, zero optimizer
        state), except under feedback, where they return with their dense θ.
        """
        if len(keeps) != len(self.layers):
            raise ValueError(f"keeps has {len(keeps)} masks; expected {len(self.layers)} (one per layer)")
        ctx = ctx or SelectionContext(self.generator)
        grown = []
        for layer, keep in zip(self.layers, keeps, strict=True):
            keep = torch.as_tensor(keep, device=layer.device).to(torch.bool).flatten()
            if keep.numel() != layer.num_units or not bool(keep.any()):
                raise ValueError(
                    f"keeps for layer {layer.info.name!r} has {keep.numel()} entries, {int(keep.sum())} active; "
                    f"expected {layer.num_units} entries with at least one active"
                )
            grown.append(self._commit(layer, keep, keep & ~layer.unit_mask.flatten(), ctx))
        self._finish(grown)

    def keeps_from_thresholds(
        self, thresholds: Sequence[float], ctx: SelectionContext, minimum: int = 1
    ) -> list[torch.Tensor]:
        """Keep masks from per-layer thresholds on the selector's threshold scale (masks untouched).

        A selector with a registered rule (:func:`register_threshold_rule`) decides them; otherwise a unit is
        kept when its threshold score reaches the threshold, among all units under feedback (re-selection),
        among the active ones otherwise. A layer keeps at least ``minimum`` units (the best by the selector's
        score among the candidates); a NaN threshold keeps the layer's current mask.
        """
        thr = [float(t) for t in thresholds]
        if len(thr) != len(self.layers):
            raise ValueError(f"thresholds has {len(thr)} values; expected {len(self.layers)} (one per layer)")
        finite = [math.inf if math.isnan(t) else t for t in thr]
        if self.selector in THRESHOLD_RULES:
            keeps = [k.flatten() for k in THRESHOLD_RULES.get(self.selector)(self, finite, ctx)]
        else:
            scale = THRESHOLD_SCALES.get(self.selector)[2]
            keeps = [scale(layer, ctx).flatten() >= t for layer, t in zip(self.layers, finite, strict=True)]
        out = []
        for layer, keep, t in zip(self.layers, keeps, thr, strict=True):
            current = layer.unit_mask.flatten()
            if math.isnan(t):
                out.append(current.clone())
                continue
            candidates = torch.ones_like(current) if self.feedback else current
            keep = keep.to(layer.device) & candidates
            missing = minimum - int(keep.sum())
            if missing > 0:
                scores = self._select(layer, ctx).flatten()
                extra = lowest_among(-scores.double(), candidates & ~keep, missing)
                keep[extra] = True
            out.append(keep)
        return out

    def _finish(self, grown: Sequence[torch.Tensor | None]) -> None:
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
        fan_in: Growth | None = None
        if n_grow > 0 and self._regrow is not None:
            candidates = ~active & ~dropped
            if int(candidates.sum()) < n_grow:
                candidates = ~active
            picked = self._regrow(layer, candidates, n_grow, ctx)
            if isinstance(picked, Growth):
                fan_in = picked
                picked = picked.indices
            grown[picked] = True
            active |= grown
        if not bool(dropped.any()) and not bool(grown.any()):
            return None
        return self._commit(layer, active, grown, ctx, fan_in)

    def _commit(
        self,
        layer: LayerMask,
        active: torch.Tensor,
        grown: torch.Tensor,
        ctx: SelectionContext,
        fan_in: Growth | None = None,
    ) -> torch.Tensor | None:
        """Set ``layer``'s active units (flat bool); initialise ``grown`` ones; return them if initialised."""
        layer.unit_mask = active.view_as(layer.unit_mask)
        layer.num_active = int(active.sum())
        if self.granularity == "neuron":
            for successor, cols in self._successors.get(id(layer), ()):
                successor.in_mask = cols(layer.unit_mask)
        if self.feedback or not bool(grown.any()):
            return None  # under feedback a returning unit keeps its dense θ and optimizer state
        grown = grown.view_as(layer.unit_mask)
        self._initialise_grown(layer, grown, ctx, fan_in)
        return grown

    @torch.no_grad()
    def _initialise_grown(
        self, layer: LayerMask, grown: torch.Tensor, ctx: SelectionContext, chosen: Growth | None = None
    ) -> None:
        module = layer.info.module
        w = module.weight
        if layer.granularity == "weight":
            w.masked_fill_(grown, 0.0)
            zero_optimizer_state(self.optimizer, w, grown)
            return
        rows = grown.view(-1, *([1] * (w.dim() - 1)))
        bound = 1.0 / math.sqrt(layer.info.fan_in)
        if chosen is None:
            fresh = (torch.rand(w.shape, generator=ctx.generator) * 2 - 1).mul_(bound).to(w.device, w.dtype)
        else:  # the rule chose the fan-ins (NORTH-Select)
            fresh = w.detach().clone()
            idx = chosen.indices.to(w.device)
            fresh[idx] = chosen.fan_in.reshape(len(idx), *w.shape[1:]).to(w.device, w.dtype)
        w.copy_(torch.where(rows, fresh, w))
        zero_optimizer_state(self.optimizer, w, rows)
        if module.bias is not None:
            module.bias.masked_fill_(grown, 0.0)
            zero_optimizer_state(self.optimizer, module.bias, grown)

    @torch.no_grad()
    def _zero_fan_out(self, layer: LayerMask, grown: torch.Tensor) -> None:
        for successor, cols in self._successors.get(id(layer), ()):
            sw = successor.info.module.weight
            col = cols(grown).view(1, -1, *([1] * (sw.dim() - 2)))
            sw.masked_fill_(col, 0.0)
            zero_optimizer_state(self.optimizer, sw, col)
