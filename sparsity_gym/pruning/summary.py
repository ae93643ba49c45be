"""What a pruned network holds now: per-layer densities, the global density and the FLOPs fraction, as a table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sparsity_gym.masks.layer_mask import LayerMask


@dataclass(frozen=True)
class LayerSummary:
    """One prunable layer: its units and weights, all, active and non-zero (biases are not counted).

    ``nonzero_weights`` counts the weight entries that are not exactly zero: at most ``active_weights`` (an active
    weight may be zero, e.g. regrown at zero), what a dense copy of the network stores.
    """

    name: str
    kind: str
    units: int
    active_units: int
    weights: int
    active_weights: int
    nonzero_weights: int

    @property
    def density(self) -> float:
        """Active weights / weights of the layer."""
        return self.active_weights / self.weights


@dataclass(frozen=True)
class PruningSummary:
    """The network's sparsity at one moment of the run.

    Attributes:
        layers: Every prunable layer, in the order they were found (the output layer too).
        global_density: Active weights / weights over every prunable layer (parameter-weighted).
        nonzero_density: Non-zero weights / weights over every prunable layer (what remains after ``remove()``).
        flops_fraction: Inference FLOPs of the active network / those of the dense network
            (:mod:`sparsity_gym.pruning.flops`: ``2 * P`` per active weight and sample).
        inference_flops: Inference FLOPs per sample of the active network.
        dense_flops: Inference FLOPs per sample with every weight active.
        iteration: Optimizer steps taken.
        decision: Decisions made.

    """

    layers: tuple[LayerSummary, ...]
    global_density: float
    nonzero_density: float
    flops_fraction: float
    inference_flops: int
    dense_flops: int
    iteration: int
    decision: int

    @classmethod
    def of(
        cls, layers: Sequence[LayerMask], inference: int, dense: int, iteration: int, decision: int
    ) -> PruningSummary:
        """The summary of ``layers`` (every prunable layer's mask) with the driver's counters."""
        rows = tuple(
            LayerSummary(
                m.info.name,
                m.info.kind,
                m.num_units,
                m.num_active,
                m.info.num_weights,
                int(m.active_weights()),
                int(torch.count_nonzero(m.info.module.weight.detach())),
            )
            for m in layers
        )
        total = sum(r.weights for r in rows)
        density = sum(r.active_weights for r in rows) / total
        nonzero = sum(r.nonzero_weights for r in rows) / total
        return cls(rows, density, nonzero, inference / dense, inference, dense, iteration, decision)

    def table(self) -> str:
        """A plain-text table: one row per layer, then the totals."""
        head = f"{'layer':24s} {'kind':6s} {'units':>13s} {'active weights':>21s} {'density':>8s} {'non-zero':>10s}"
        lines = [head, "-" * len(head)]
        for r in self.layers:
            units = f"{r.active_units}/{r.units}"
            weights = f"{r.active_weights}/{r.weights}"
            lines.append(
                f"{r.name:24s} {r.kind:6s} {units:>13s} {weights:>21s} {r.density:8.4f} {r.nonzero_weights:>10d}"
            )
        lines.append("-" * len(head))
        lines.append(f"{'global density':24s} {self.global_density:.4f}")
        lines.append(f"{'non-zero density':24s} {self.nonzero_density:.4f}")
        lines.append(f"{'FLOPs fraction':24s} {self.flops_fraction:.4f} ({self.inference_flops} of {self.dense_flops})")
        lines.append(f"{'steps, decisions':24s} {self.iteration}, {self.decision}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def scalars(self) -> dict[str, float]:
        """The values :meth:`Pruner.log <sparsity_gym.pruning.pruner.Pruner.log>` writes, by TensorBoard tag."""
        out = {
            "pruning/global_density": self.global_density,
            "pruning/nonzero_density": self.nonzero_density,
            "pruning/flops_fraction": self.flops_fraction,
        }
        out.update({f"pruning/density/{r.name}": r.density for r in self.layers})
        return out

    def log(self, writer: Any, step: int) -> None:
        """Write :meth:`scalars` with ``writer.add_scalar(tag, value, step)`` (a ``SummaryWriter``)."""
        for tag, value in self.scalars().items():
            writer.add_scalar(tag, value, step)
