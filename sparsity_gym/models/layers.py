"""Discovery of a network's prunable layers and their static description.

Prunable layers are every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` of the module (both convolutions have
``kind == "conv"``; ``kernel_dims`` tells them apart), in the order a probe forward pass runs them; the output
layers are those whose outputs reach the model's output in the traced graph.
Which layers consume a layer's outputs (what neuron granularity masks as fan-out) comes from the traced data-flow
graph (:mod:`sparsity_gym.models.graph`): through BatchNorm, activations, pooling
and flattening, to several consumers where the graph branches. A layer whose output enters a residual addition
(a *coupled* layer) is not pruned at neuron granularity (``LayerInfo.neuron_prunable`` is False): its channel
``k`` is summed with another layer's channel ``k``, so it cannot be removed one layer at a time. When tracing
fails (e.g. data-dependent control flow in a user factory) the data flow is assumed to follow the order the
layers run in, as for sequential networks. A layer the probe does not run as a module (its weight used
directly by its parent, as ``nn.MultiheadAttention`` uses ``out_proj``) is not neuron-prunable either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from sparsity_gym.models.graph import CONV_TYPES, PRUNABLE, probe_batch, trace_layer_graph


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


def find_prunable_layers(
    model: nn.Module, input_shape: Sequence[int], trace: bool = True, example: torch.Tensor | None = None
) -> list[LayerInfo]:
    """Every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` of ``model``, in the order the data flow runs them.

    One probe forward pass of a single sample (no gradient, modes restored) measures each layer's output
    positions and the order the layers run in (layers no forward pass calls as modules keep their place after
    the layer declared before them). The sample is ``example``'s first (its dtype: integer tokens for a model
    that starts with ``nn.Embedding``), or zeros of ``input_shape`` in the model's float dtype (integer zeros
    when that fails on a model with an ``nn.Embedding``). With ``trace`` (default) the data flow is traced
    (:func:`sparsity_gym.models.graph.trace_layer_graph`) and fills ``successors``, ``neuron_prunable`` and
    ``channel_modules``; when tracing fails, or with ``trace=False``, ``successors`` is ``None`` (the run order
    is assumed). The output layers are those whose outputs reach the model's output in the traced graph, else
    the last layer run. A layer that is not run as a module (e.g. ``nn.MultiheadAttention.out_proj``, whose
    weight its parent uses directly) or whose output enters a residual sum is not neuron-prunable.
    """
    declared = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not declared:
        raise ValueError("network has no nn.Linear, nn.Conv1d or nn.Conv2d layer to prune")
    positions: dict[str, int] = {}
    example = _probe(model, declared, input_shape, example, positions)
    run = list(positions)  # the order of the first calls
    found = sorted(declared, key=lambda item: _run_position(item[0], declared, run))
    graph = trace_layer_graph(model, input_shape, example) if trace else None
    outputs = graph.outputs if graph is not None and graph.outputs else frozenset(run[-1:] or [found[-1][0]])
    infos = []
    for i, (name, m) in enumerate(found):
        conv = isinstance(m, CONV_TYPES)
        edges = None if graph is None else graph.successors.get(name, ())
        coupled = name not in positions or (graph is not None and (name in graph.coupled or name not in graph.called))
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
                is_output=name in outputs,
                successors=None if edges is None else tuple((e.successor, e.columns_per_unit) for e in edges),
                neuron_prunable=not coupled,
                channel_modules=_channel_modules(edges),
                kernel_dims=m.weight.dim() - 2,
            )
        )
    return infos


def _probe(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    input_shape: Sequence[int],
    example: torch.Tensor | None,
    positions: dict[str, int],
) -> torch.Tensor | None:
    """One probe forward pass filling ``positions`` (in call order); the example that ran (``None``: float zeros)."""

    def record(name: str, module: nn.Module, out: torch.Tensor) -> None:
        if name not in positions:
            positions[name] = _positions(module, out)

    hooks = [m.register_forward_hook(lambda mod, inp, out, name=n: record(name, mod, out)) for n, m in layers]
    tries: list[torch.Tensor | None] = [example]
    if example is None and any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules()):
        tries.append(torch.zeros((1, *input_shape), dtype=torch.long))
    was_training = model.training
    try:
        model.eval()
        for k, probe in enumerate(tries):
            positions.clear()
            try:
                with torch.no_grad():
                    model(probe_batch(model, input_shape, probe))
                return probe
            except Exception as err:  # the model's own error, whatever its type
                if k + 1 < len(tries):
                    continue
                given = (
                    "example_input's first sample" if example is not None else f"zeros of shape {tuple(input_shape)}"
                )
                raise ValueError(
                    f"the probe forward pass ({given}) failed: {type(err).__name__}: {str(err).splitlines()[0]}; "
                    "expected example_input= a batch of real inputs (its dtype and shape are used), or input_shape="
                ) from err
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return example


def _run_position(name: str, declared: Sequence[tuple[str, nn.Module]], run: Sequence[str]) -> float:
    """Where ``name`` runs: its call index, or just after the last run layer declared before it."""
    if name in run:
        return float(run.index(name))
    names = [n for n, _ in declared]
    before = [run.index(n) for n in names[: names.index(name)] if n in run]
    return (max(before) if before else -1) + 0.5


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

    def __call__(
        self, model: nn.Module, input_shape: Sequence[int], example: torch.Tensor | None = None
    ) -> list[LayerInfo]:
        """``find_prunable_layers(model, input_shape, example=example)``, traced once per architecture."""
        param = next(model.parameters())
        probe = None if example is None else example.dtype
        key = (type(model), repr(model), tuple(input_shape), str(param.device), param.dtype, probe)
        known = self._known.get(key)
        if known is None:
            infos = find_prunable_layers(model, input_shape, example=example)
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
