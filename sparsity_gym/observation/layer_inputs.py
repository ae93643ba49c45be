"""The recent inputs of each controlled layer, buffered for NORTH-Select's growth (CRITERIA §2)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sparsity_gym.core.explicit_state import check_keys, check_known_names, state_tensor
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.observation.base import Observer, ObserverSettings


class LayerInputObserver(Observer):
    """The recent inputs of each controlled layer (NORTH-Select's buffered inputs); not an observation column group.

    A Linear layer keeps its last ``max(min_rows, 2·N)`` input rows (N its units), a conv layer its last batch,
    unfolded into patches ``(n·h·w, C·kh·kw)`` on demand (a Conv1d's ``(n, C, L)`` as an image of height one:
    ``(n·L_out, C·k)``) and thinned evenly to that many rows.
    """

    name = "layer_inputs"

    def __init__(self, masks: MaskedNetwork, settings: ObserverSettings | None = None, min_rows: int = 1024) -> None:
        super().__init__(masks, settings)
        self.recent: dict[str, list[torch.Tensor]] = {}
        self.max_rows = {m.info.name: max(min_rows, 2 * m.info.fan_out) for m in self.masks.layers}
        for layer in self.masks.layers:
            self.add_hook(functools.partial(layer.info.module.register_forward_pre_hook, self._keeper(layer.info.name)))

    def _keeper(self, name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def keep(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not (self.measuring and torch.is_grad_enabled()):
                return
            x = args[0].detach()
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                self.recent[name] = [x]
                return
            kept = [*self.recent.get(name, []), x.reshape(-1, x.shape[-1])]
            while len(kept) > 1 and sum(len(t) for t in kept[1:]) >= self.max_rows[name]:
                kept.pop(0)
            self.recent[name] = kept

        return keep

    def unit_scores(self) -> dict[str, torch.Tensor]:
        """``(rows, fan_in)`` input rows per layer name (layers whose inputs cannot be unfolded are left out)."""
        out = {}
        for layer in self.masks.layers:
            name, module = layer.info.name, layer.info.module
            if name not in self.recent:
                continue
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                patches = _patches(module, self.recent[name][0])
                if patches is None:
                    continue
                rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
                pick = torch.linspace(0, len(rows) - 1, min(len(rows), self.max_rows[name])).long()
                out[name] = rows[pick.to(rows.device)]
            else:
                out[name] = torch.cat(self.recent[name])[-self.max_rows[name] :]
        return out

    def state_dict(self) -> dict[str, Any]:
        """``recent``: layer name -> the buffered input tensors (copies), as the hooks kept them.

        A Linear layer's entry is a list of ``(rows, in_features)`` chunks, oldest first (the chunks matter: the
        oldest is dropped whole); a conv layer's is ``[x]``, its last input batch ``(n, C, ...)``. Layers not seen
        yet are absent.
        """
        return {"recent": {name: [t.detach().clone() for t in kept] for name, kept in self.recent.items()}}

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` onto the layers' device; inputs of other layers are a ``ValueError``."""
        check_keys("LayerInputObserver", state, ("recent",))
        modules = {m.info.name: m.info.module for m in self.masks.layers}
        check_known_names("LayerInputObserver", "recent", state["recent"], list(modules))
        recent = self.on_device(state["recent"])
        for name, kept in recent.items():
            _check_inputs(name, modules[name], kept)
        self.recent = {name: [t.clone() for t in kept] for name, kept in recent.items()}

    def features(self) -> np.ndarray:  # noqa: D102
        return np.zeros((len(self.masks.layers), 0))


def _check_inputs(name: str, module: nn.Module, kept: Any) -> None:
    """``ValueError`` unless ``kept`` is a non-empty list of inputs ``module`` takes (one batch for a conv)."""
    conv = isinstance(module, (nn.Conv1d, nn.Conv2d))
    if not isinstance(kept, list) or not kept or (conv and len(kept) != 1):
        expected = "[one input batch]" if conv else "a non-empty list of (rows, in_features) chunks"
        raise ValueError(f"LayerInputObserver: recent[{name!r}] is {type(kept).__name__}; expected {expected}")
    width = module.in_channels if conv else module.weight.shape[1]
    for i, x in enumerate(kept):
        field = f"recent[{name!r}][{i}]"
        state_tensor("LayerInputObserver", field, x, dim=module.weight.dim() if conv else 2)
        if x.shape[1] != width:
            raise ValueError(
                f"LayerInputObserver: {field} has shape {tuple(x.shape)}; expected {width} inputs on dim 1"
            )


def _patches(module: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> torch.Tensor | None:
    """``(n, C·kernel, positions)`` patches of a conv's input (``None`` for string padding or groups)."""
    if isinstance(module.padding, str) or module.groups != 1:
        return None
    if isinstance(module, nn.Conv2d):
        return nn.functional.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
    return nn.functional.unfold(
        x.unsqueeze(2),
        (1, module.kernel_size[0]),
        (1, module.dilation[0]),
        (0, module.padding[0]),
        (1, module.stride[0]),
    )
