"""The checks and conversions behind :meth:`Pruner.state_dict <sparsity_gym.pruning.pruner.Pruner.state_dict>`.

A driver's state is plain tensors, numbers, strings, ``None``, lists and dicts (``torch.load(...,
weights_only=True)`` reads it back); the parts' own states come from their ``state_dict()``
(:mod:`sparsity_gym.core.explicit_state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sparsity_gym.core.explicit_state import check_keys, state_int
from sparsity_gym.pruning.pruning_config import PruningConfig

STATE_KEYS = (
    "config",
    "counters",
    "train_loss",
    "losses",
    "masks",
    "measuring",
    "observers",
    "freezer",
    "decisions",
    "policy",
)
"""The keys of a driver's state."""


def check_step(iteration: int, total_steps: int, optimizer_steps: int, allow_skipped: bool) -> None:
    """Refuse ``pruner.step()`` past the end of the run, or with no optimizer step since the last one."""
    if iteration >= total_steps:
        raise RuntimeError(
            f"pruner.step() after total_steps={total_steps} steps: the run ended; expected total_steps= the "
            "optimizer steps of the whole run (build a new Pruner for another run)"
        )
    if optimizer_steps == 0 and not allow_skipped:
        raise RuntimeError(
            "pruner.step() without an optimizer.step() since the last one: it would advance the schedule without "
            "training; expected one pruner.step() after each optimizer.step() (a loop whose GradScaler skips "
            "steps: Pruner(..., allow_skipped_steps=True))"
        )


def check_loadable(pruner: Any, state: Any) -> dict[str, Any]:
    """The counters of ``state`` once it is known to be a state of ``pruner``'s run; ``ValueError`` otherwise.

    Its keys, config, policy, counters and observers are checked, and a model whose weights are still those the
    Pruner's first decision left (a checkpoint's model loaded before the Pruner was built) is refused.
    """
    check_keys("Pruner", state, STATE_KEYS)
    check_same_config(pruner.config, state["config"])
    check_same_policy(pruner.policy_name, state["policy"])
    counters = check_counters(state["counters"], pruner.batch_size is not None)
    start = pruner._start_fingerprint
    if start is not None and counters["iteration"] > 0 and torch.equal(start, fingerprint(pruner.model)):
        raise ValueError(
            "Pruner.load_state_dict: the model's weights are those the Pruner's first decision left when it "
            "was built; expected the checkpoint's model loaded after building the Pruner (build model, "
            "optimizer and Pruner, then load their states)"
        )
    check_keys("Pruner observers", state["observers"], tuple(pruner.statistics.observers))
    return counters


def check_same_config(config: PruningConfig, saved: Any) -> None:
    """``ValueError`` naming the first field where ``saved`` (a ``to_dict()``) differs from ``config``."""
    if not isinstance(saved, Mapping):
        raise ValueError(f"Pruner: config is a {type(saved).__name__}; expected the dict of PruningConfig.to_dict()")
    own = config.to_dict()
    for key, value in own.items():
        other = saved.get(key, "<missing>")
        if _normal(other) != _normal(value):
            raise ValueError(
                f"Pruner: the state was saved with {key}={other!r}; expected {key}={value!r} (this Pruner's config)"
            )


def check_same_policy(name: str | None, saved: Any) -> None:
    """``ValueError`` when ``saved`` (a state's ``policy`` part) names another policy than ``name``.

    A state saved before policies were named (no ``name``) is not checked.
    """
    if not isinstance(saved, Mapping):
        raise ValueError(f"Pruner: policy is a {type(saved).__name__}; expected a dict (recurrent, predictor, name)")
    other = saved.get("name", name)
    if other != name:
        raise ValueError(
            f"Pruner: the state was saved with policy={other!r}; expected policy={name!r} (this Pruner's policy)"
        )


def _normal(value: Any) -> Any:
    """Lists as tuples (a state read back may hold lists where the config holds tuples)."""
    return tuple(value) if isinstance(value, list) else value


def check_counters(counters: Any, flops: bool) -> dict[str, Any]:
    """The counters of a state, checked: non-negative ints (the FLOPs ones ``None`` when ``flops`` is False)."""
    check_keys("Pruner counters", counters, ("iteration", "decision", "training_flops", "saved_backward_flops"))
    out: dict[str, Any] = {key: state_int("Pruner", key, counters[key]) for key in ("iteration", "decision")}
    for key in ("training_flops", "saved_backward_flops"):
        value = counters[key]
        if flops:
            out[key] = state_int("Pruner", key, value)
        elif value is not None:
            raise ValueError(f"Pruner: {key}={value!r}; expected None (this Pruner counts no FLOPs: batch_size=None)")
        else:
            out[key] = None
    return out


def fingerprint(model: nn.Module) -> torch.Tensor:
    """One float64 sum per parameter: whether a model's weights were replaced since (e.g. by ``load_state_dict``)."""
    with torch.no_grad():
        return torch.stack([p.detach().double().sum().cpu() for p in model.parameters()])


def to_state(value: Any) -> Any:
    """A recurrent policy's state as plain types: numpy arrays as tensors, tuples as lists (``None`` stays)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, (tuple, list)):
        return [to_state(v) for v in value]
    return value


def from_state(value: Any) -> Any:
    """The inverse of :func:`to_state`: tensors as numpy arrays, lists as tuples."""
    if isinstance(value, torch.Tensor):
        return value.cpu().numpy()
    if isinstance(value, list):
        return tuple(from_state(v) for v in value)
    return value
