"""One layer's mask: its units, which are active, and the cached masks that keep its tensors exact.

See :mod:`sparsity_gym.masks` for the mask contract every method shares (CRITERIA §5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sparsity_gym.core.explicit_state import check_keys, optional_tensor, snapshot, state_tensor
from sparsity_gym.models.layers import LayerInfo

STATE_KEYS = ("unit_mask", "in_mask", "dense", "dense_bias")


def successor_columns(
    layer: LayerInfo, successor: LayerInfo, per_unit: int | None = None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Map a neuron mask of ``layer`` to an input-column mask of ``successor``, or ``None`` if unknown.

    With ``per_unit`` (from the traced graph, ``LayerInfo.successors``): unit ``k`` owns the ``per_unit``
    consecutive columns from ``k * per_unit`` (a channel-major flatten; 1: column for unit), provided the
    successor's input width is ``fan_out * per_unit``. Without it (module order), by shape:
    Linear -> Linear and conv -> conv (Conv1d or Conv2d) match when the successor's input units equal the
    layer's outputs; conv -> Linear matches a channel-major flatten (each channel owns
    ``in_features / channels`` columns).
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

    def masked_tensors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(parameter, float keep mask)`` for each of this layer's parameters that has inactive entries."""
        module = self.info.module
        pairs = [] if self._weight_keep is None else [(module.weight, self._weight_keep)]
        return pairs if self._bias_keep is None else [*pairs, (module.bias, self._bias_keep)]

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
        for param, keep in self.masked_tensors():
            param.mul_(keep)

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
        for param, keep in self.masked_tensors():
            param.mul_(keep)

    def state_dict(self) -> dict[str, Any]:
        """What changes during an episode (copies): the masks, and under DPF the dense θ.

        ``unit_mask``: bool, ``weight.shape`` (granularity ``weight``) or ``(out units,)`` (``neuron``).
        ``in_mask``: bool ``(weight.shape[1],)``, the input columns left by the pruned neurons of the layers that
        feed this one, or ``None`` (no input column masked). ``dense`` / ``dense_bias``: the dense θ of the weight
        and bias under ``regrowth="feedback"`` (DPF), ``None`` otherwise (and ``dense_bias`` without a bias).
        Everything else (the cached keep masks, the counts) follows from these.
        """
        return {
            "unit_mask": snapshot(self.unit_mask),
            "in_mask": snapshot(self.in_mask),
            "dense": snapshot(self.dense),
            "dense_bias": snapshot(self.dense_bias),
        }

    def check_state_dict(self, state: Any) -> None:
        """``ValueError`` naming this layer unless ``state`` is a :meth:`state_dict` of a layer like this one."""
        owner = f"layer {self.info.name!r}"
        check_keys(owner, state, STATE_KEYS)
        unit = state_tensor(owner, "unit_mask", state["unit_mask"], self.unit_mask.shape, torch.bool)
        if not bool(unit.any()):
            raise ValueError(f"{owner}: unit_mask has no active unit; expected at least one")
        weight, bias = self.info.module.weight, self.info.module.bias
        if state["in_mask"] is not None:
            state_tensor(owner, "in_mask", state["in_mask"], weight.shape[1:2], torch.bool)
        optional_tensor(owner, "dense", state["dense"], self.dense is not None, weight.shape)
        shape = None if bias is None else bias.shape
        optional_tensor(owner, "dense_bias", state["dense_bias"], self.dense_bias is not None, shape)

    @torch.no_grad()
    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` (copied onto this layer's device), then set the parameters to ``θ ⊙ mask``.

        Under DPF θ is the restored dense copy; otherwise it is the parameter as it is. Loaded after the model's
        own state, this leaves the parameters bit-identical (the zeros of inactive entries keep their sign). A
        state of another layer (other shapes, DPF or not) is refused (``ValueError``).
        """
        self.check_state_dict(state)
        self.unit_mask = state["unit_mask"].to(self.device, copy=True)
        self.num_active = int(self.unit_mask.sum())
        self.in_mask = None if state["in_mask"] is None else state["in_mask"].to(self.device, copy=True)
        if self.dense is not None:
            self.dense.copy_(state["dense"])
        if self.dense_bias is not None:
            self.dense_bias.copy_(state["dense_bias"])
        self.refresh()
        module = self.info.module
        if self.dense is not None:  # θ where active; inactive entries become the parameter's own (signed) zeros
            module.weight.copy_(torch.where(self.active_weight_mask, self.dense, module.weight))
        if self.dense_bias is not None:
            active_bias = (
                self.unit_mask if self.granularity == "neuron" else torch.ones_like(self.dense_bias, dtype=torch.bool)
            )
            module.bias.copy_(torch.where(active_bias, self.dense_bias, module.bias))
        for param, keep in self.masked_tensors():
            param.mul_(keep)

    def _store(self, dense: torch.Tensor, param: torch.Tensor, keep: torch.Tensor | None) -> None:
        if self.update_pruned or keep is None:
            dense.copy_(param)
        else:  # paper §5.3 option: pruned weights keep their θ through the step
            dense.copy_(torch.lerp(dense, param, keep))
