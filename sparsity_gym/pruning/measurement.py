"""What a run measures besides the masks: the observers, their measuring window, and each interval's loss.

:class:`Statistics` holds the observers of the statistic families a run needs
(:mod:`sparsity_gym.observation.observers`: the families in the observation, plus those the selector and the
regrowth rule read) and switches them on for the last ``stats_window`` optimizer steps of each decision
interval. The driver calls :meth:`Statistics.after_backward` from an optimizer *step pre-hook*, so gradients are
measured between ``loss.backward()`` and the parameter update in any training loop, the env's included.

:class:`IntervalLoss` sums the losses of an interval on their device (no synchronisation per step) as two partial
sums, the unmeasured steps and the measured window, added at the interval's end: the order of float32
additions the env's training loop has always used, so every interval mean is the same number.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sparsity_gym.core.explicit_state import check_keys, state_int, state_tensor
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.regrowth import REGROWTH
from sparsity_gym.masks.selectors import SELECTORS
from sparsity_gym.observation.observers import OBSERVERS, Observer, ObserverSettings
from sparsity_gym.pruning.pruning_config import PruningConfig


def rule_statistics(config: PruningConfig) -> tuple[str, ...]:
    """The statistics the selector and the regrowth rule read (collected whether observed or not)."""
    return (*SELECTORS.get(config.selector).statistics, *REGROWTH.get(config.regrowth).statistics)


class Statistics:
    """The observers of one run and their measuring window.

    Args:
        masks: The network's masks (the observers hook its layers).
        config: The run's configuration: ``observations``, ``stats_window``, ``total_steps`` (SNR smoothing) and
            the selector and regrowth rule (their statistics).

    Attributes:
        observers: The observers by family name, in the order: observed families, then the rules' statistics.
        window: Measured steps at the end of each interval (0 without observers).
        measuring: Whether the next optimizer steps are measured.

    """

    def __init__(self, masks: MaskedNetwork, config: PruningConfig) -> None:
        self.config = config
        self.rules = rule_statistics(config)
        needed = dict.fromkeys((*config.observations, *self.rules))
        settings = ObserverSettings(total_iterations=config.total_steps, selector=config.selector)
        self.observers: dict[str, Observer] = {name: OBSERVERS[name](masks, settings) for name in needed}
        self.window = config.window if self.observers else 0
        self.measuring = False

    def measures(self, position: int) -> bool:
        """Whether the step at ``position`` (0-based) of an interval is in the measuring window."""
        return self.window > 0 and position >= self.config.decision_interval - self.window

    def set_measuring(self, on: bool) -> None:
        """Switch the observers on or off for the following steps (a new window starts at each switch on)."""
        if on != self.measuring:
            for observer in self.observers.values():
                observer.set_measuring(on)
            self.measuring = on

    def after_backward(self) -> None:
        """Let every observer read the gradients of a measured step (before the parameter update)."""
        for observer in self.observers.values():
            observer.after_backward()

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """The validation pass: the equilibrium family reads the layers' outputs inside it."""
        for observer in self.observers.values():
            observer.begin_evaluation()
        try:
            yield
        finally:
            for observer in self.observers.values():
                observer.end_evaluation()

    def features(self, families: Sequence[str]) -> dict[str, np.ndarray]:
        """The ``(L, k)`` features of each family in ``families`` (the observation's statistics)."""
        return {name: self.observers[name].features() for name in families}

    def rule_scores(self) -> dict[str, Mapping[str, torch.Tensor]]:
        """The per-unit statistics the selector and the regrowth rule read, by statistic name."""
        return {name: self.observers[name].unit_scores() for name in self.rules}

    def detach(self) -> None:
        """Remove every observer's hooks."""
        for observer in self.observers.values():
            observer.detach()


class IntervalLoss:
    """The losses of one decision interval, summed on their device as two parts (unmeasured, measured)."""

    def __init__(self) -> None:
        self.parts: list[torch.Tensor | None] = [None, None]
        self.count = 0

    def add(self, loss: torch.Tensor | float, measured: bool) -> None:
        """Add one step's loss (a tensor stays on its device; float32 accumulation at least).

        A tensor of several values (a per-sample loss, ``reduction="none"``) counts as its mean.
        """
        value = loss.detach() if isinstance(loss, torch.Tensor) else torch.as_tensor(float(loss), dtype=torch.float64)
        part = self.parts[measured]
        if part is not None and value.dim() == 0:  # the common case, kept short: it runs after every step
            part += value
            self.count += 1
            return
        if value.numel() != 1:
            if value.numel() == 0 or not value.is_floating_point():
                raise ValueError(
                    f"loss of shape {tuple(value.shape)} and dtype {value.dtype} is not allowed in pruner.step(loss); "
                    "expected the step's training loss: a float tensor (one value, or per-sample values to average)"
                )
            value = value.float().mean()
        if part is None:
            dtype = torch.promote_types(value.dtype, torch.float32)
            self.parts[measured] = value.reshape(()).to(dtype=dtype, copy=True)
        else:
            part += value.reshape(())
        self.count += 1

    def mean(self) -> float | None:
        """The interval's mean loss (``None`` when no loss was added); the parts are then cleared."""
        unmeasured, measured = self.parts
        count = self.count
        self.parts, self.count = [None, None], 0
        if unmeasured is None or measured is None:
            total = measured if unmeasured is None else unmeasured
            return None if total is None else float(total) / count
        total = unmeasured + measured
        return float(total) / count

    def state_dict(self) -> dict[str, Any]:
        """The partial sums and the count (tensors as they are)."""
        return {"parts": [None if p is None else p.clone() for p in self.parts], "count": self.count}

    def load_state_dict(self, state: Any) -> None:
        """Restore :meth:`state_dict`'s partial sums and count; a malformed state is a ``ValueError``."""
        check_keys("IntervalLoss", state, ("parts", "count"))
        parts = state["parts"]
        if not isinstance(parts, (list, tuple)) or len(parts) != 2:
            raise ValueError(f"IntervalLoss: parts is {parts!r}; expected two partial sums (tensor or None)")
        for i, part in enumerate(parts):
            if part is not None:
                state_tensor("IntervalLoss", f"parts[{i}]", part, ())
        count = state_int("IntervalLoss", "count", state["count"])
        self.parts = [None if p is None else p.clone() for p in parts]
        self.count = count
