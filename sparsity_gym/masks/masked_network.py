"""The masks of a whole network, kept exact through every optimizer step (CRITERIA §5).

See :mod:`sparsity_gym.masks` for the mask contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from sparsity_gym.core.checks import check_choice
from sparsity_gym.core.explicit_state import check_keys, check_names, state_tensor
from sparsity_gym.masks.layer_mask import LayerMask, successor_columns
from sparsity_gym.masks.optimizer_state import zero_optimizer_state
from sparsity_gym.masks.regrowth import FEEDBACK, REGROWTH, Growth, available_regrowth
from sparsity_gym.masks.selectors import GRANULARITIES, SELECTORS, SelectionContext, lowest_mask
from sparsity_gym.models.layers import LayerInfo


class MaskedNetwork:
    """Masks for every prunable layer of a model, kept exact through every optimizer step.

    Args:
        layers: The model's prunable layers (:func:`sparsity_gym.models.zoo.find_prunable_layers`).
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
        check_choice("granularity", granularity, GRANULARITIES)
        check_choice("regrowth", regrowth, available_regrowth())
        self.spec = SELECTORS.get(selector)
        self._select = self.spec.scores
        self.feedback = regrowth == FEEDBACK
        self._regrow = REGROWTH.get(regrowth).grow
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
            candidates: list[tuple[LayerMask, int | None]]
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
        # the (parameters, keep masks) multiplied after every step: rebuilt after each mask update (``_masked``)
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
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
        if self.feedback:
            for layer in self.all_layers:
                layer.after_step_()
            return
        # θ ⊙ mask for every masked parameter in one foreach kernel (the per-layer ``after_step_`` without DPF):
        # the same multiplications, one dispatch instead of one per tensor, over lists kept between mask updates
        # (layers whose masks are all ones are left out; bench/env_overhead.py, bench/driver_overhead.py)
        params, keeps = self._masked()
        if params:
            with torch.no_grad():
                torch._foreach_mul_(params, keeps)

    def _masked(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every parameter with inactive entries and its float keep mask, as two lists (cached until a mask changes)."""
        pairs = self._pairs
        if pairs is None:
            found = [pair for layer in self.all_layers for pair in layer.masked_tensors()]
            pairs = self._pairs = ([p for p, _ in found], [k for _, k in found])
        return pairs

    def apply_(self) -> None:
        """Set every parameter to ``θ ⊙ mask`` (every inactive weight exactly zero)."""
        for layer in self.all_layers:
            layer.apply_()

    def state_dict(self) -> dict[str, Any]:
        """What changes during an episode, as plain tensors (copies): resume with :meth:`load_state_dict`.

        ``layers``: layer name -> :meth:`LayerMask.state_dict <sparsity_gym.masks.layer_mask.LayerMask.state_dict>`
        for every prunable layer, in module order (unit and input-column masks; the dense θ under DPF).
        ``generator``: ``generator.get_state()`` (uint8), the source of random selection and regrowth. The
        parameters themselves and the optimizer's state belong to the model's and the optimizer's own
        ``state_dict``.
        """
        return {
            "layers": {m.info.name: m.state_dict() for m in self.all_layers},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` and set every parameter to ``θ ⊙ mask``.

        Load the model's parameters first: without DPF, θ is the parameter as it is. Everything is checked before
        anything changes: a state of another network (other layer names or shapes, DPF or not) is refused with a
        ``ValueError`` naming the layer.
        """
        check_keys("MaskedNetwork", state, ("layers", "generator"))
        check_names("MaskedNetwork", "layers", state["layers"], [m.info.name for m in self.all_layers])
        for layer in self.all_layers:
            layer.check_state_dict(state["layers"][layer.info.name])
        current = self.generator.get_state()
        generator = state_tensor("MaskedNetwork", "generator", state["generator"], current.shape, current.dtype)
        for layer in self.all_layers:
            layer.load_state_dict(state["layers"][layer.info.name])
        self._pairs = None
        self.generator.set_state(generator.cpu())

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
            mask[lowest_mask(scores, everything, layer.num_units - k, self.spec.ties_high_index_first)] = False
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

        A selector with a registered rule (its spec's ``rule``) decides them; otherwise a unit is
        kept when its threshold score reaches the threshold, among all units under feedback (re-selection),
        among the active ones otherwise. A layer keeps at least ``minimum`` units (the best by the selector's
        score among the candidates); a NaN threshold keeps the layer's current mask.
        """
        thr = [float(t) for t in thresholds]
        if len(thr) != len(self.layers):
            raise ValueError(f"thresholds has {len(thr)} values; expected {len(self.layers)} (one per layer)")
        finite = [math.inf if math.isnan(t) else t for t in thr]
        if self.spec.rule is not None:
            keeps = [k.flatten() for k in self.spec.rule(self.layers, finite, ctx)]
        elif self.spec.threshold is not None:
            scale = self.spec.threshold.scores
            keeps = [scale(layer, ctx).flatten() >= t for layer, t in zip(self.layers, finite, strict=True)]
        else:
            raise ValueError(f"selector={self.selector!r} has no threshold scale; it cannot be thresholded")
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
                keep |= lowest_mask(-scores.double(), candidates & ~keep, missing)
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
        self._pairs = None
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
            dropped = lowest_mask(scores, active, n_drop, self.spec.ties_high_index_first)
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
