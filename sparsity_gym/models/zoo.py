"""The network zoo: named network builders (growth room for any network: :mod:`sparsity_gym.models.widening`).

A network is a zoo name or any callable returning an ``nn.Module`` (:func:`build_network`). The vision networks
of the seeds (``simple_cnn``, ``resnet18``, ``vgg11``) live in :mod:`sparsity_gym.models.vision_networks`; the package's
``__init__`` imports both, so every builder is registered whenever the zoo is.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.nn as nn

from sparsity_gym.core.registry import Registry

NetworkBuilder = Callable[..., nn.Module]
NETWORKS: Registry[NetworkBuilder] = Registry("network")


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Register ``builder(input_shape, num_classes, **kwargs) -> nn.Module`` under ``name`` (a decorator)."""
    return NETWORKS.register(name)


def available_networks() -> tuple[str, ...]:
    """Names accepted as ``network=``."""
    return NETWORKS.names()


@register_network("mlp")
def mlp(input_shape: Sequence[int], num_classes: int, widths: Sequence[int] = (256, 256)) -> nn.Module:
    """Flatten, then Linear-ReLU blocks of ``widths``, then a Linear output (default 64-256-256-10 on digits)."""
    in_features = 1
    for d in input_shape:
        in_features *= int(d)
    layers: list[nn.Module] = [nn.Flatten()]
    for width in widths:
        layers += [nn.Linear(in_features, int(width)), nn.ReLU()]
        in_features = int(width)
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


@register_network("cnn")
def small_cnn(input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (16, 32)) -> nn.Module:
    """A small conv net for 8x8 inputs.

    3x3 conv-ReLU blocks (padding 1), a 2x2 max-pool after the first, then a Linear output over the flattened
    channels (channel-major).
    """
    c_in, h, w = int(input_shape[0]), int(input_shape[1]), int(input_shape[2])
    layers: list[nn.Module] = []
    for i, c_out in enumerate(channels):
        layers += [nn.Conv2d(c_in, int(c_out), 3, padding=1), nn.ReLU()]
        if i == 0 and h >= 4 and w >= 4:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c_in = int(c_out)
    layers += [nn.Flatten(), nn.Linear(c_in * h * w, num_classes)]
    return nn.Sequential(*layers)


@register_network("cnn1d")
def cnn1d(
    input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 32), kernel_size: int = 5
) -> nn.Module:
    """A 1-D conv net for ``(C, L)`` sequences (MNIST-1D's ``(1, 40)``).

    Per entry of ``channels``: a Conv1d of ``kernel_size`` (odd, "same" length through padding ``k // 2``), ReLU,
    and a max-pool of 2 while the length is at least 4; then a Linear output over the flattened channels
    (channel-major). The conv-ReLU-pool stack follows MNIST-1D's CNN baseline (Greydanus 2020, §3), with pooling
    in place of strides.
    """
    if len(input_shape) != 2:
        raise ValueError(f"input_shape={tuple(input_shape)!r} is not allowed for cnn1d; expected (channels, length)")
    c_in, length = int(input_shape[0]), int(input_shape[1])
    layers: list[nn.Module] = []
    for c_out in channels:
        layers += [nn.Conv1d(c_in, int(c_out), int(kernel_size), padding=int(kernel_size) // 2), nn.ReLU()]
        if length >= 4:
            layers.append(nn.MaxPool1d(2))
            length //= 2
        c_in = int(c_out)
    layers += [nn.Flatten(), nn.Linear(c_in * length, num_classes)]
    return nn.Sequential(*layers)


def build_network(
    network: str | NetworkBuilder,
    input_shape: Sequence[int],
    num_classes: int,
    network_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build a zoo network or call a user factory with the arguments it accepts.

    A factory receives ``input_shape`` and ``num_classes`` only if its signature names them (or takes
    ``**kwargs``), plus ``network_kwargs``. Initialisation uses torch's global generator: callers that need a
    reproducible network wrap this in ``torch.random.fork_rng`` with a seed.
    """
    kwargs = dict(network_kwargs or {})
    if isinstance(network, str):
        builder = NETWORKS.get(network)
        try:
            model = builder(tuple(input_shape), num_classes, **kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"network_kwargs={kwargs!r} is not allowed for network={network!r}: {exc}; expected the keyword "
                f"arguments of sparsity_gym.models.zoo.{builder.__name__}"
            ) from exc
    else:
        offered = {"input_shape": tuple(input_shape), "num_classes": num_classes}
        try:
            params = inspect.signature(network).parameters
            takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
            accepted = {k: v for k, v in offered.items() if takes_all or k in params}
        except (TypeError, ValueError):
            accepted = {}
        model = network(**accepted, **kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"network={network!r} returned {type(model).__name__}; expected an nn.Module")
    return model
