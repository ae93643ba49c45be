"""Neuron freezing mechanics for NEq (Bragagnolo et al., seed 004; CRITERIA.md §4), optimizer-agnostic.

Freezing is not pruning: the forward pass is unchanged, but a frozen neuron's fan-in row (``weight[k]``, the
whole kernel for a conv channel) and ``bias[k]`` must stay bit-identical through ``optimizer.step()``,
whatever the optimizer (SGD with momentum, Nesterov and weight decay; Adam; AdamW; ...).

:class:`RowFreezer` does this with optimizer step hooks, so it needs no cooperation from the optimizer:

- **pre-step hook**: for every frozen row it zeroes the gradient rows (optional, ``zero_grads``), and
  snapshots the parameter rows and the rows of every per-element optimizer state tensor
  (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ...);
- **post-step hook**: writes the snapshots back. State tensors that did not exist before the step (first
  step) get their frozen rows set to 0. The parameter rows are therefore bit-identical, and the optimizer
  state of frozen rows does not drift while frozen (it keeps its pre-freeze values).
- **thaw** (a neuron goes from frozen to unfrozen in :meth:`RowFreezer.set_frozen`): its first-moment rows
  (``momentum_buffer`` of SGD, ``exp_avg`` of Adam/AdamW; configurable via ``thaw_reset_keys``) restart
  at 0. Second moments (``exp_avg_sq``, ``max_exp_avg_sq``) are *kept* at their pre-freeze values: zeroing
  them while Adam's per-tensor ``step`` counter is large would disable the bias correction for those rows
  and make the first update after thawing about ``1/√(1−β2) ≈ 3×`` too large; the kept value keeps that
  first step cautious. Per-tensor scalars such as Adam's ``step`` cannot be frozen per row and keep counting.

Saved backward FLOPs (our convention, CRITERIA.md §4): a frozen neuron saves its weight-gradient FLOPs,
``2·B·P·F`` per iteration, with ``B`` the batch size, ``P`` the output positions (1 for Linear,
``L_out`` for Conv1d, ``h_out·w_out`` for Conv2d) and ``F`` the fan-in (``in_features``, or
``in_channels/groups`` times the kernel size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sparsity_gym.core.explicit_state import check_keys, state_tensor
from sparsity_gym.masks.optimizer_state import zero_optimizer_state

FREEZABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
DEFAULT_THAW_RESET_KEYS: tuple[str, ...] = ("momentum_buffer", "exp_avg")

__all__ = ["DEFAULT_THAW_RESET_KEYS", "FREEZABLE_TYPES", "RowFreezer"]


def _params(layer: nn.Module) -> list[Tensor]:
    bias = getattr(layer, "bias", None)
    return [layer.weight] if bias is None else [layer.weight, bias]


class RowFreezer:
    """Keep the fan-in rows and biases of frozen output neurons bit-identical through optimizer steps.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any optimizer; hooks are registered with ``register_step_pre_hook``/``register_step_post_hook``.
    layers : Sequence[nn.Module]
        ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` layers; neuron ``k`` of a layer is output feature / channel ``k``.
    thaw_reset_keys : tuple of str
        Optimizer state entries whose rows are zeroed when a neuron thaws (default: first moments
        ``momentum_buffer`` and ``exp_avg``; second moments are kept, see the module docstring).
    zero_grads : bool
        Zero the gradient rows of frozen neurons before each step (default True). They are restored
        anyway; this keeps ``.grad`` and freshly created optimizer state clean.

    Notes
    -----
    Masks are set with :meth:`set_frozen` between steps and may change at every step. With
    ``optimizer.step(closure)`` the closure runs after the pre-step hook, so gradients it computes are not
    zeroed, but the rows are restored all the same. Call :meth:`remove` (or use the object as a context
    manager) to detach the hooks.

    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        layers: Sequence[nn.Module],
        thaw_reset_keys: tuple[str, ...] = DEFAULT_THAW_RESET_KEYS,
        zero_grads: bool = True,
    ) -> None:
        for i, layer in enumerate(layers):
            if not isinstance(layer, FREEZABLE_TYPES):
                raise TypeError(f"layers[{i}] is {type(layer).__name__}; expected nn.Linear, nn.Conv1d or nn.Conv2d")
        self.optimizer = optimizer
        self.layers: list[nn.Module] = list(layers)
        self.thaw_reset_keys = tuple(thaw_reset_keys)
        self.zero_grads = bool(zero_grads)
        self._frozen: list[Tensor] = [
            torch.zeros(layer.weight.shape[0], dtype=torch.bool, device=layer.weight.device) for layer in self.layers
        ]
        self._snapshot: list[tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]] = []
        self._handles = [
            optimizer.register_step_pre_hook(self._pre_step),
            optimizer.register_step_post_hook(self._post_step),
        ]

    # ------------------------------------------------------------------ masks
    def _index(self, layer: int | nn.Module) -> int:
        if isinstance(layer, int):
            if not -len(self.layers) <= layer < len(self.layers):
                raise IndexError(f"layer index {layer} out of range for {len(self.layers)} layers")
            return layer % len(self.layers)
        for i, candidate in enumerate(self.layers):
            if candidate is layer:
                return i
        raise ValueError(f"module {type(layer).__name__} is not one of this freezer's layers")

    def set_frozen(self, layer: int | nn.Module, frozen: Tensor) -> None:
        """Set the frozen mask of one layer (bool over its output neurons / channels).

        Neurons that go from frozen to unfrozen get their ``thaw_reset_keys`` optimizer state rows set to 0.
        """
        i = self._index(layer)
        module = self.layers[i]
        width = module.weight.shape[0]
        new = frozen.detach().to(device=module.weight.device, dtype=torch.bool).flatten()
        if new.shape != (width,):
            raise ValueError(f"frozen mask for layer {i} must have shape ({width},); got {tuple(frozen.shape)}")
        thawed = self._frozen[i] & ~new
        if bool(thawed.any()) and self.thaw_reset_keys:
            for param in _params(module):
                rows = thawed.view(-1, *([1] * (param.dim() - 1)))
                zero_optimizer_state(self.optimizer, param, rows, keys=self.thaw_reset_keys)
        self._frozen[i] = new.clone()

    def frozen(self, layer: int | nn.Module) -> Tensor:
        """Return a copy of the frozen mask of one layer."""
        return self._frozen[self._index(layer)].clone()

    @property
    def frozen_masks(self) -> list[Tensor]:
        """Copies of all frozen masks, in layer order."""
        return [mask.clone() for mask in self._frozen]

    @property
    def frozen_fraction(self) -> float:
        """Fraction of frozen neurons over all layers (neuron-count weighted; 0.0 with no neurons)."""
        total = sum(mask.numel() for mask in self._frozen)
        if total == 0:
            return 0.0
        return sum(int(mask.sum()) for mask in self._frozen) / total

    def saved_backward_flops(
        self, batch_size: int, output_positions: Mapping[int | nn.Module, int] | None = None
    ) -> int:
        """Weight-gradient FLOPs saved per iteration by the frozen neurons: ``Σ 2·B·P·F``.

        Parameters
        ----------
        batch_size : int
            ``B``.
        output_positions : Mapping, optional
            ``P`` per layer, keyed by layer index or module. Linear layers default to 1; conv layers with
            frozen channels must be given (``L_out`` or ``h_out·w_out``), else ``ValueError``.

        Returns
        -------
        int
            Sum over layers of ``frozen_count · 2 · B · P · F`` with ``F = weight[0].numel()``
            (``in_features``, or ``in_channels/groups·kh·kw``).

        """
        positions: dict[int, int] = {}
        for key, value in (output_positions or {}).items():
            positions[self._index(key)] = int(value)
        total = 0
        for i, (layer, mask) in enumerate(zip(self.layers, self._frozen, strict=True)):
            n_frozen = int(mask.sum())
            if n_frozen == 0:
                continue
            if i in positions:
                p = positions[i]
            elif isinstance(layer, nn.Linear):
                p = 1
            else:
                raise ValueError(f"output_positions must give P (h_out·w_out) for conv layer {i}")
            fan_in = layer.weight[0].numel()
            total += n_frozen * 2 * int(batch_size) * p * fan_in
        return total

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The frozen rows, as plain tensors (copies): ``frozen``, one bool ``(out units,)`` mask per layer, in order.

        Between optimizer steps that is all the freezer holds: the values that keep a frozen row bit-identical
        are the parameter rows and their optimizer state as they are before the next step (snapshotted by its
        pre-step hook), which the model's and the optimizer's own ``state_dict`` carry. Called during a step
        (between the two hooks) it raises ``RuntimeError``.
        """
        if self._snapshot:
            raise RuntimeError("RowFreezer.state_dict() was called during an optimizer step; call it between steps")
        return {"frozen": self.frozen_masks}

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`: the frozen masks, as they were (no thaw reset: nothing thaws).

        A state of other layers (another count, other widths) is refused with a ``ValueError`` naming the layer.
        """
        check_keys("RowFreezer", state, ("frozen",))
        masks = state["frozen"]
        if not isinstance(masks, (list, tuple)) or len(masks) != len(self.layers):
            got = f"{len(masks)} masks" if isinstance(masks, (list, tuple)) else f"a {type(masks).__name__}"
            raise ValueError(f"RowFreezer: frozen has {got}; expected a list of {len(self.layers)} (one per layer)")
        for i, (mask, current) in enumerate(zip(masks, self._frozen, strict=True)):
            state_tensor("RowFreezer", f"frozen[{i}]", mask, current.shape, torch.bool)
        self._frozen = [mask.to(current.device, copy=True) for mask, current in zip(masks, self._frozen, strict=True)]

    # ------------------------------------------------------------------ hooks
    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._snapshot = []
        for layer, mask in zip(self.layers, self._frozen, strict=True):
            if not bool(mask.any()):
                continue
            rows = torch.nonzero(mask).flatten()
            for param in _params(layer):
                if self.zero_grads and param.grad is not None:
                    param.grad.index_fill_(0, rows.to(param.grad.device), 0)
                saved_state: dict[str, Tensor] = {}
                for key, value in optimizer.state.get(param, {}).items():
                    if isinstance(value, Tensor) and value.dim() > 0 and value.shape == param.shape:
                        saved_state[key] = value.index_select(0, rows.to(value.device)).clone()
                values = param.detach().index_select(0, rows).clone()
                self._snapshot.append((param, rows, values, saved_state))

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        with torch.no_grad():
            for param, rows, values, saved_state in self._snapshot:
                param.index_copy_(0, rows, values)
                for key, value in optimizer.state.get(param, {}).items():
                    if isinstance(value, Tensor) and value.dim() > 0 and value.shape == param.shape:
                        idx = rows.to(value.device)
                        if key in saved_state:
                            value.index_copy_(0, idx, saved_state[key])
                        else:
                            value.index_fill_(0, idx, 0)
        self._snapshot = []

    def remove(self) -> None:
        """Remove the optimizer hooks (idempotent); masks are kept but no longer enforced."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> RowFreezer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
