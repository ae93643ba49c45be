"""The observation: one fixed-length feature row per prunable layer, global features appended to each row.

Why rows: a policy that reads each layer's row on its own (shared weights across rows) acts on networks of
any depth; the observation of a network with L controlled layers is an ``(L, F)`` float32 array whose
columns mean the same thing for every network. Columns come in *column groups*: ``static`` and
``state`` are always on, the statistics' groups are added by name (``EnvConfig.observations``) through
:func:`register_column_group`, and the ``global`` group is repeated on every row. :class:`ObservationLayout` gives
every column's name, bounds and index; values are clipped into the declared bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from sparsity_gym.observation.snapshot import TrainingSnapshot


@dataclass(frozen=True)
class Feature:
    """One observation column: its name, bounds and a one-line meaning (for the env's docstring)."""

    name: str
    low: float
    high: float
    doc: str


@dataclass(frozen=True)
class ColumnGroup:
    """A group of columns computed together: ``compute(snapshot) -> (L, len(features))`` (global: ``(len,)``)."""

    name: str
    features: tuple[Feature, ...]
    compute: Callable[[TrainingSnapshot], np.ndarray]


_GROUPS: dict[str, ColumnGroup] = {}


def register_column_group(group: ColumnGroup) -> ColumnGroup:
    """Register a per-layer statistics column group under ``group.name``."""
    _GROUPS[group.name] = group
    return group


def registered_column_groups() -> tuple[str, ...]:
    """Statistics column groups that can be named in ``EnvConfig.observations``."""
    return tuple(sorted(_GROUPS))


def _static(snap: TrainingSnapshot) -> np.ndarray:
    layers = snap.layers
    total = sum(m.info.num_weights for m in snap.all_layers)
    n = max(len(snap.all_layers) - 1, 1)
    return np.array(
        [
            [
                m.info.index / n,
                float(m.info.kind == "conv"),
                float(m.info.is_output),
                math.log(m.info.fan_in) / 10.0,
                math.log(m.info.fan_out) / 10.0,
                m.info.num_weights / total,
            ]
            for m in layers
        ]
    )


def _state(snap: TrainingSnapshot) -> np.ndarray:
    target = snap.target_density
    return np.array([[m.density, -1.0 if target is None else target] for m in snap.layers])


def _global(snap: TrainingSnapshot) -> np.ndarray:
    loss_scale = math.log(snap.num_classes)
    return np.array(
        [
            snap.progress,
            snap.train_loss / loss_scale if math.isfinite(snap.train_loss) else 10.0,
            snap.val_accuracy,
            snap.global_density,
            snap.flops_fraction,
        ]
    )


STATIC = ColumnGroup(
    "static",
    (
        Feature("relative_depth", 0.0, 1.0, "layer index / (number of prunable layers - 1)"),
        Feature("is_conv", 0.0, 1.0, "1 for Conv1d and Conv2d, 0 for Linear"),
        Feature("is_output", 0.0, 1.0, "1 for the output layer"),
        Feature("log_fan_in", 0.0, 2.0, "ln(fan-in) / 10 (fan-in: inputs per output unit)"),
        Feature("log_fan_out", 0.0, 2.0, "ln(output units) / 10"),
        Feature("param_share", 0.0, 1.0, "the layer's weights / all prunable weights"),
    ),
    _static,
)
STATE = ColumnGroup(
    "state",
    (
        Feature("density", 0.0, 1.0, "active units / units now"),
        Feature("target_density", -1.0, 1.0, "the episode's target density (-1: none set)"),
    ),
    _state,
)
GLOBAL = ColumnGroup(
    "global",
    (
        Feature("progress", 0.0, 1.0, "optimizer steps done / total_iterations"),
        Feature("train_loss", 0.0, 10.0, "mean training loss over the last interval / ln(classes)"),
        Feature("val_accuracy", 0.0, 1.0, "validation accuracy now"),
        Feature("global_density", 0.0, 1.0, "active weights / weights over all prunable layers"),
        Feature("flops_fraction", 0.0, 1.0, "inference FLOPs / dense inference FLOPs"),
    ),
    _global,
)


class ObservationLayout:
    """The columns of the observation for a given set of statistics column groups, and its Gymnasium space."""

    def __init__(self, num_layers: int, groups: Sequence[str] = ()) -> None:
        unknown = [g for g in groups if g not in _GROUPS]
        if unknown:
            raise ValueError(
                f"observations={tuple(groups)!r}: unknown column group {unknown[0]!r}; "
                f"expected names from {registered_column_groups()!r}"
            )
        self.num_layers = num_layers
        self.layer_groups = (STATIC, STATE, *(_GROUPS[g] for g in groups))
        self.features = tuple(f for fam in (*self.layer_groups, GLOBAL) for f in fam.features)
        self.columns = {f.name: i for i, f in enumerate(self.features)}
        low = np.array([f.low for f in self.features], dtype=np.float32)
        high = np.array([f.high for f in self.features], dtype=np.float32)
        self._low = np.broadcast_to(low, (num_layers, len(low))).copy()
        self._high = np.broadcast_to(high, (num_layers, len(high))).copy()
        self.space = gym.spaces.Box(self._low, self._high, dtype=np.float32)

    def build(self, snapshot: TrainingSnapshot) -> np.ndarray:
        """The observation of ``snapshot``: finite, float32, clipped into the space."""
        parts = [
            np.asarray(fam.compute(snapshot), dtype=np.float64).reshape(self.num_layers, -1)
            for fam in self.layer_groups
        ]
        parts.append(
            np.broadcast_to(
                np.asarray(GLOBAL.compute(snapshot), dtype=np.float64), (self.num_layers, len(GLOBAL.features))
            )
        )
        obs = np.nan_to_num(np.concatenate(parts, axis=1), nan=0.0, posinf=self._high, neginf=self._low)
        return np.clip(obs, self._low, self._high).astype(np.float32)
