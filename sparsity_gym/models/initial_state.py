"""A pre-trained starting state for a freshly built network (``EnvConfig.initial_state``).

DYNO's setting (Maile et al., seed 000, §4) adapts a network trained on one task to a new one; an episode
starts from that network when the env's ``initial_state`` is a state-dict file (read with
``torch.load(..., weights_only=True)``, so a file can hold tensors but no code) or a callable that returns the
trained network (or its state dict). The state is loaded into the network the env built from its seed, so the
architecture must be the same: every key and every shape is checked first, and a mismatch is a ``ValueError``
naming ``initial_state``. :mod:`sparsity_gym.experiments.pretrain` trains and saves such a state.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn

__all__ = ["InitialState", "load_initial_state", "read_initial_state"]

InitialState = str | os.PathLike | Callable[[], Any]


def read_initial_state(source: InitialState) -> dict[str, torch.Tensor]:
    """The state dict ``source`` names: a file (``weights_only`` load on the CPU) or what a callable returns.

    Raises:
        ValueError: The file cannot be read as a state dict, or the callable returns neither an ``nn.Module``
            nor a mapping of tensors; the message names ``initial_state``.

    """
    if isinstance(source, (str, os.PathLike)):
        try:
            state = torch.load(os.fspath(source), map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling raises many types (UnpicklingError, RuntimeError, EOFError, ...)
            raise ValueError(
                f"initial_state={os.fspath(source)!r} is not allowed: it could not be read with "
                f"torch.load(weights_only=True) ({exc}); expected a file saved with torch.save(model.state_dict())"
            ) from exc
    elif callable(source):
        state = source()
        if isinstance(state, nn.Module):
            state = state.state_dict()
    else:
        raise ValueError(
            f"initial_state={source!r} is not allowed; expected None, a state-dict path or a callable returning the "
            "trained network"
        )
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"initial_state={_name(source)} is not allowed: it gave {type(state).__name__}; expected a state dict "
            "(a mapping of names to tensors) or an nn.Module"
        )
    return dict(state)


def load_initial_state(model: nn.Module, source: InitialState) -> None:
    """Load the state ``source`` names into ``model`` after checking that every key and shape matches.

    Raises:
        ValueError: Keys are missing or unexpected, or a tensor's shape differs (all of them are named).

    """
    state = read_initial_state(source)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        problems = [
            *([f"missing keys {missing}"] if missing else []),
            *([f"unexpected keys {unexpected}"] if unexpected else []),
            *([f"shapes differ ({'; '.join(shapes)})"] if shapes else []),
        ]
        raise ValueError(
            f"initial_state={_name(source)} is not allowed for this network: {', '.join(problems)}; expected the "
            "state dict of the same architecture (the env's network, network_kwargs and dataset)"
        )
    model.load_state_dict(state)


def _name(source: InitialState) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return getattr(source, "__name__", type(source).__name__)
