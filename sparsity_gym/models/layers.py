"""Discovery of a network's prunable layers and their static description.

Prunable layers are found by walking the module in ``named_modules()`` order and keeping every ``nn.Linear``,
``nn.Conv1d`` and ``nn.Conv2d`` (both convolutions have ``kind == "conv"``; ``kernel_dims`` tells them apart).
Which layers consume a layer's outputs (what neuron granularity masks as fan-out) comes from the traced data-flow
graph (:mod:`sparsity_gym.models.graph`): through BatchNorm, activations, pooling
and flattening, to several consumers where the graph branches. A layer whose output enters a residual addition
(a *coupled* layer) is not pruned at neuron granularity (``LayerInfo.neuron_prunable`` is False): its channel
``k`` is summed with another layer's channel ``k``, so it cannot be removed one layer at a time. When tracing
fails (e.g. data-dependent control flow in a user factory) the data flow is assumed to follow
``named_modules()`` order, as for sequential networks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from sparsity_gym.models.graph import CONV_TYPES, PRUNABLE, trace_layer_graph


@dataclass(frozen=True)
class LayerInfo:
    """Static description of one prunable layer (``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d``)."""

    name: str
    module: nn.Module
    index: int
    kind: str  # "linear" or "conv" (Conv1d and Conv2d)
    fan_in: int  # inputs per output unit: in_features, or in_channels * (kernel size product)
    fan_out: int  # output units: out_features or out_channels
    in_units: int  # in_features or in_channels
    output_positions: int  # 1 for Linear, L_out for Conv1d, h_out * w_out for Conv2d (measured on a probe input)
    is_output: bool
    # (successor name, input columns per output unit) from the traced graph; None: not traced (module order)
    successors: tuple[tuple[str, int], ...] | None = None
    # False for coupled layers (output enters a residual addition): never pruned at neuron granularity
    neuron_prunable: bool = True
    # modules with per-channel parameters between this layer and its successors (e.g. BatchNorm)
    channel_modules: tuple[str, ...] = ()
    # spatial dimensions of the kernel: 0 for Linear, 1 for Conv1d, 2 for Conv2d
    kernel_dims: int = 0

    @property
    def num_weights(self) -> int:
        """Entries of the weight tensor."""
        return int(self.module.weight.numel())


def find_prunable_layers(model: nn.Module, input_shape: Sequence[int], trace: bool = True) -> list[LayerInfo]:
    """Every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` of ``model`` in ``named_modules()`` order.

    One probe forward pass of a single zero input (no gradient, modes restored) measures each layer's output
    positions. The last layer found is marked as the output layer. With ``trace`` (default) the data flow is
    traced (:func:`sparsity_gym.models.graph.trace_layer_graph`) and fills ``successors``, ``neuron_prunable`` and
    ``channel_modules``; when tracing fails, or with ``trace=False``, ``successors`` is ``None`` (module order is
    assumed) and every layer is neuron-prunable.
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not found:
        raise ValueError("network has no nn.Linear, nn.Conv1d or nn.Conv2d layer to prune")
    positions: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=n: positions.__setitem__(name, _positions(mod, out)))
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
        conv = isinstance(m, CONV_TYPES)
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
                kernel_dims=m.weight.dim() - 2,
            )
        )
    return infos


class LayerCache:
    """:func:`find_prunable_layers` remembered per architecture, for networks rebuilt again and again.

    An env builds a fresh instance of the same network every episode; tracing its graph and probing its shapes
    again cost about 3% of a 400-iteration episode of the default MLP. The key is the model's class, its module
    tree (``repr``: every module's type and sizes), the input shape and the device; a known key returns the
    stored infos bound to the new instance's modules (the same names, kinds, sizes, positions and successors).
    At most ``size`` architectures are kept (the oldest forgotten first); the stored infos hold no module of
    an old instance.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._known: dict[tuple[Any, ...], list[LayerInfo]] = {}

    def __call__(self, model: nn.Module, input_shape: Sequence[int]) -> list[LayerInfo]:
        """``find_prunable_layers(model, input_shape)``, traced once per architecture."""
        key = (type(model), repr(model), tuple(input_shape), str(next(model.parameters()).device))
        known = self._known.get(key)
        if known is None:
            infos = find_prunable_layers(model, input_shape)
            if len(self._known) >= self.size:
                self._known.pop(next(iter(self._known)))
            self._known[key] = [dataclasses.replace(info, module=_UNBOUND) for info in infos]
            return infos
        modules = dict(model.named_modules())
        return [dataclasses.replace(info, module=modules[info.name]) for info in known]


_UNBOUND = nn.Module()


def _channel_modules(edges: Sequence[Any] | None) -> tuple[str, ...]:
    """The per-channel modules on a layer's edges, each once, in order."""
    return () if edges is None else tuple(dict.fromkeys(c for e in edges for c in e.channel_modules))


def _positions(module: nn.Module, out: torch.Tensor) -> int:
    """Output positions of one sample: the spatial size of a conv output, the leading positions of a Linear's."""
    if isinstance(module, CONV_TYPES):
        return int(out[0, 0].numel())
    return int(out[0].numel() // out.shape[-1])
