"""What outside code meets besides reset and step: the network probe, rendering, and copying an environment.

Kept apart from :mod:`sparsity_gym.env.sparsity_env` so the environment's episode logic stays readable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

RENDER_HEIGHT = 64
BAR_WIDTH = 12


def check_network_fits(model: nn.Module, inputs: torch.Tensor, num_classes: int, config: Any) -> None:
    """Run ``model`` on a small batch of the dataset's inputs (eval mode, no gradient, modes restored).

    ``config`` is the env's config (its ``network_name`` and ``dataset`` name the network in messages).

    Raises:
        ValueError: naming ``network`` when the network cannot take the dataset's inputs or does not return
            one logit per class, instead of a shape error deep inside the first training step.

    """
    network, dataset = config.network_name, config.dataset
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(inputs)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ValueError(
            f"network={network!r} cannot take dataset={dataset!r} inputs of shape {tuple(inputs.shape[1:])} "
            f"({type(err).__name__}: {err}); expected a network whose input matches the dataset (a factory may "
            "accept input_shape and num_classes to size itself)"
        ) from err
    finally:
        model.train(was_training)
    expected = (len(inputs), num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"network={network!r} returns {shape} for a batch of {len(inputs)} dataset={dataset!r} inputs; "
            f"expected logits of shape {expected} (one per class)"
        )


def render_densities(densities: np.ndarray, target: float | None) -> np.ndarray:
    """An RGB picture ``(64, 12·L, 3)`` uint8 of the layers' densities.

    One blue bar per layer, in action order, on white, and the target density as a red line (when set).
    """
    densities = np.clip(np.asarray(densities, dtype=np.float64), 0.0, 1.0)
    image = np.full((RENDER_HEIGHT, BAR_WIDTH * len(densities), 3), 255, dtype=np.uint8)
    for i, d in enumerate(densities):
        top = RENDER_HEIGHT - round(d * RENDER_HEIGHT)
        image[top:, i * BAR_WIDTH + 1 : (i + 1) * BAR_WIDTH - 1] = (40, 90, 200)
    if target is not None:
        row = min(RENDER_HEIGHT - round(target * RENDER_HEIGHT), RENDER_HEIGHT - 1)
        image[row, :] = (220, 30, 30)
    return image


def mid_episode_copy_error(decision: int, num_decisions: int) -> TypeError:
    """The error of stepping a copy of an environment taken in the middle of an episode (how to go on)."""
    return TypeError(
        f"this SparsityEnv is a copy taken in the middle of an episode (after decision {decision} of "
        f"{num_decisions}): the network, optimizer state, masks and statistics of that episode live in hooks a copy "
        "does not carry, so it cannot continue it. Call reset() (the copy continues the original's random stream: "
        "its next episode is the one the original's next reset() plays), or build a new env: "
        "gym.make('SparsityGym/Schedule-v0', config=env.unwrapped.config)"
    )


def copy_state(env: Any, data_given: bool) -> dict[str, Any]:
    """What a copy is rebuilt from.

    The config, the random stream, the render mode, the spec, and the data only when the caller passed it
    (otherwise it is loaded again from the config).
    """
    return {
        "config": env.config,
        "data": env.data if data_given else None,
        "render_mode": env.render_mode,
        "np_random": env._np_random,
        "np_random_seed": env._np_random_seed,
        "spec": env.spec,
    }
