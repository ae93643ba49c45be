"""The observer contract: hooks on the network for one episode, features at decisions, scores for selectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sparsity_gym.core.explicit_state import check_keys, map_tensors
from sparsity_gym.masks.masked_network import MaskedNetwork


@dataclass(frozen=True)
class ObserverSettings:
    """What observers need to know of the episode besides the masks."""

    total_iterations: int = 400  # SNR smoothing: γ = 0.01^(1/(0.02·T))
    selector: str = "magnitude"  # contribution: the paper's λ weighting when it selects units


class Observer:
    """Base class: hooks on the network for one episode, features at decisions."""

    name = ""

    def __init__(self, masks: MaskedNetwork, settings: ObserverSettings | None = None) -> None:
        self.settings = settings or ObserverSettings()
        self.masks: MaskedNetwork = masks
        self.handles: list[Any] = []
        self.measuring = False
        self._hook_makers: list[Callable[[], Any]] = []
        self._detached = False

    def add_hook(self, make: Callable[[], Any]) -> None:
        """Add a hook: ``make()`` registers it on the network and returns its handle.

        The hooks are on the network only while they can see something (:meth:`hooks_on`, :meth:`hooks_off`):
        by default while the observer measures. A hooked module takes PyTorch's slow call path on every step, so
        hooks kept on through the unmeasured steps (most of them) cost time for nothing; the values are the same.
        """
        self._hook_makers.append(make)

    def hooks_on(self) -> None:
        """Register the hooks (once; never after :meth:`detach`)."""
        if not self.handles and not self._detached:
            self.handles = [make() for make in self._hook_makers]

    def hooks_off(self) -> None:
        """Remove the hooks (they come back with :meth:`hooks_on`)."""
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def set_measuring(self, on: bool) -> None:
        """Collect on the following training steps (or stop): the hooks go on with it and off after it."""
        self.measuring = on
        if on:
            self.hooks_on()
        else:
            self.hooks_off()

    def after_backward(self) -> None:
        """Called after ``loss.backward()`` of a measured step, before the optimizer step."""

    def begin_evaluation(self) -> None:
        """Called before the validation pass at reset and at every decision."""

    def end_evaluation(self) -> None:
        """Called after that validation pass."""

    def features(self) -> np.ndarray:
        """``(L, k)`` features of the controlled layers."""
        raise NotImplementedError

    def unit_scores(self) -> dict[str, torch.Tensor]:
        """Per-unit statistics a selector reads (``SelectionContext.stats[self.name]``), by layer name."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What the observer carries from step to step and decision to decision, as plain tensors (copies).

        The base holds nothing: ``{}``. The hooks, the settings and the measuring flag (which the driver sets)
        are not state.
        """
        return {}

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; a state of another observer or other layers is a ``ValueError``.

        Set the measuring flag first (:meth:`set_measuring`): turning it on may open a new window (the contribution
        observer's), which would drop a restored one.
        """
        check_keys(type(self).__name__, state, ())

    def on_device(self, state: Any) -> Any:
        """``state`` with every tensor moved onto the device of the network's layers (a checkpoint mapped elsewhere)."""
        device = self.masks.all_layers[0].device
        return map_tensors(state, lambda t: t.to(device))

    def detach(self) -> None:
        """Remove every hook, for good (the episode is over)."""
        self._detached = True
        self.hooks_off()
