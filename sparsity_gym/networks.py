"""The network zoo and the discovery of prunable layers.

A network is a zoo name or any callable returning an ``nn.Module``. Prunable layers are found by walking the
module in ``named_modules()`` order and keeping every ``nn.Linear`` and ``nn.Conv2d``. Which layers consume a
layer's outputs (what neuron granularity masks as fan-out) comes from the traced data-flow graph
(:mod:`sparsity_gym.graph`): through BatchNorm, activations, pooling and flattening, to several consumers where
the graph branches. A layer whose output enters a residual addition (a *coupled* layer) is not pruned at neuron
granularity (``LayerInfo.neuron_prunable`` is False): its channel ``k`` is summed with another layer's channel ``k``,
so it cannot be removed one layer at a time. When tracing fails (e.g. data-dependent control flow in a user
factory) the data flow is assumed to follow ``named_modules()`` order, as for sequential networks.

The vision networks of the seeds (``simple_cnn``, ``resnet18``, ``vgg11``) live in
:mod:`sparsity_gym.vision_networks`, imported at the end of this module so that they are always registered.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from sparsity_gym.graph import trace_layer_graph
from sparsity_gym.registry import Registry

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


# The keyword arguments holding a zoo network's hidden widths, for growth capacity (``EnvConfig.capacity``).
# (resnet18 is left out: its residual-coupled layers are not neuron-prunable, so widening would leave them wide.)
WIDTH_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "mlp": ("widths",),
    "cnn": ("channels",),
    "simple_cnn": ("channels", "hidden"),
    "vgg11": ("width_multiplier", "classifier_width"),
}


def widened_kwargs(network: str | NetworkBuilder, network_kwargs: Mapping[str, Any], capacity: float) -> dict[str, Any]:
    """``network_kwargs`` with every hidden width multiplied by ``capacity`` (rounded), for growth room.

    Only zoo networks listed in :data:`WIDTH_ARGUMENTS` can be widened; the widths come from
    ``network_kwargs`` or the builder's default (a sequence of widths, an integer width, or a float multiplier).
    """
    kwargs = dict(network_kwargs)
    if capacity == 1.0:
        return kwargs
    if not isinstance(network, str) or network not in WIDTH_ARGUMENTS:
        raise ValueError(
            f"capacity={capacity!r} is not allowed for network={network!r}: growth capacity needs a zoo network "
            f"whose widths are arguments, one of: {', '.join(sorted(WIDTH_ARGUMENTS))}"
        )
    params = inspect.signature(NETWORKS.get(network)).parameters
    for arg in WIDTH_ARGUMENTS[network]:
        value = kwargs.get(arg, params[arg].default)
        if isinstance(value, float):
            kwargs[arg] = value * capacity
        elif isinstance(value, int):
            kwargs[arg] = round(value * capacity)
        else:
            kwargs[arg] = tuple(round(int(w) * capacity) for w in value)
    return kwargs


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
                f"arguments of sparsity_gym.networks.{builder.__name__}"
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


@dataclass(frozen=True)
class LayerInfo:
    """Static description of one prunable layer (``nn.Linear`` or ``nn.Conv2d``)."""

    name: str
    module: nn.Module
    index: int
    kind: str  # "linear" or "conv"
    fan_in: int  # inputs per output unit: in_features, or in_channels * kh * kw
    fan_out: int  # output units: out_features or out_channels
    in_units: int  # in_features or in_channels
    output_positions: int  # 1 for Linear, h_out * w_out for Conv2d (measured on a probe input)
    is_output: bool
    # (successor name, input columns per output unit) from the traced graph; None: not traced (module order)
    successors: tuple[tuple[str, int], ...] | None = None
    # False for coupled layers (output enters a residual addition): never pruned at neuron granularity
    neuron_prunable: bool = True
    # modules with per-channel parameters between this layer and its successors (e.g. BatchNorm)
    channel_modules: tuple[str, ...] = ()

    @property
    def num_weights(self) -> int:
        """Entries of the weight tensor."""
        return int(self.module.weight.numel())


def find_prunable_layers(model: nn.Module, input_shape: Sequence[int], trace: bool = True) -> list[LayerInfo]:
    """Every ``nn.Linear`` / ``nn.Conv2d`` of ``model`` in ``named_modules()`` order, with output positions.

    One probe forward pass of a single zero input (no gradient, modes restored) measures each layer's output
    positions. The last layer found is marked as the output layer. With ``trace`` (default) the data flow is
    traced (:func:`sparsity_gym.graph.trace_layer_graph`) and fills ``successors``, ``neuron_prunable`` and
    ``channel_modules``; when tracing fails, or with ``trace=False``, ``successors`` is ``None`` (module order is
    assumed) and every layer is neuron-prunable.
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not found:
        raise ValueError("network has no nn.Linear or nn.Conv2d layer to prune")
    positions: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=n: positions.__setitem__(name, _positions(out)))
        for n, m in found
    ]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    graph = trace_layer_graph(model, input_shape) if trace else None
    infos = []
    for i, (name, m) in enumerate(found):
        conv = isinstance(m, nn.Conv2d)
        edges = None if graph is None else graph.successors.get(name, ())
        infos.append(
            LayerInfo(
                name=name,
                module=m,
                index=i,
                kind="conv" if conv else "linear",
                fan_in=int(m.weight[0].numel()),
                fan_out=int(m.weight.shape[0]),
                in_units=int(m.weight.shape[1]),
                output_positions=positions.get(name, 1),
                is_output=i == len(found) - 1,
                successors=None if edges is None else tuple((e.successor, e.columns_per_unit) for e in edges),
                neuron_prunable=graph is None or name not in graph.coupled,
                channel_modules=_channel_modules(edges),
            )
        )
    return infos


def _channel_modules(edges: Sequence[Any] | None) -> tuple[str, ...]:
    """The per-channel modules on a layer's edges, each once, in order."""
    return () if edges is None else tuple(dict.fromkeys(c for e in edges for c in e.channel_modules))


def _positions(out: torch.Tensor) -> int:
    return int(out.shape[-1] * out.shape[-2]) if out.dim() == 4 else int(out[0].numel() // out.shape[-1])


# the seeds' vision networks register themselves in NETWORKS (torchvision is imported by vgg11 only when built)
from sparsity_gym import vision_networks as _vision_networks  # noqa: E402,F401
