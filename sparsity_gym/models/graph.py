"""Which prunable layers consume each prunable layer's outputs: the data-flow graph, from ``torch.fx``.

Neuron granularity removes a neuron (a conv channel) by zeroing its fan-in row and bias *and* the input columns
that carry it in every layer that consumes it. Those consumers are found here by symbolic tracing
(:func:`torch.fx.symbolic_trace`) and one shape-propagating probe forward in eval mode, not from the order of
``named_modules()``:

* **Channel-preserving ops** pass a layer's channels on unchanged, channel ``k`` in, channel ``k`` out:
  BatchNorm / InstanceNorm, every element-wise activation, dropout, max / average / adaptive pooling (and a
  ``mean`` over the spatial dimensions), identity, ``contiguous`` / ``clone``, and arithmetic with a Python scalar
  or a parameter / buffer (``x * 0.5``, ``x + self.bias``). LayerNorm and GroupNorm also keep channel ``k`` at
  index ``k`` and are passed through, but they normalise across channels, so a pruned channel still takes part in
  their statistics (as with the order-based rule; :func:`sparsity_gym.masks.compaction.compact` catches it).
* **Flatten** (``nn.Flatten``, ``torch.flatten``, ``view`` / ``reshape``) of ``(n, C, h, w)`` into ``(n, C·h·w)``
  (or of a Conv1d's ``(n, C, L)`` into ``(n, C·L)``) is channel-major: channel ``k`` owns ``h·w`` (``L``)
  consecutive columns (``columns_per_unit``), checked on the probe's shapes (``AdaptiveAvgPool2d(7) + flatten``
  in VGG gives 49 columns per channel).
* **Joins**: an element-wise op of two data tensors (``add``, ``sub``, ``mul``, ``div``, in-place or not) mixes
  channel ``k`` of its operands; every prunable layer whose output reaches one is **coupled**: its channel ``k``
  is summed with another layer's (or the input's) channel ``k`` in a residual addition, so it cannot be
  removed one layer at a time (masking the consumers' columns would remove the other operand too). The join's
  result carries the union of its operands' layers on to the next consumers. A prunable module called more than
  once also couples the layers feeding it (one weight tensor, several inputs).
* **Anything else** (``cat``, indexing, matmul, softmax, custom leaf modules, ...) stops the propagation: the
  layers whose outputs reach such an op are listed in :attr:`LayerGraph.unresolved` and get no successor through
  that path (their pruned outputs are zero where they are computed, but are not masked further on).

If tracing or the probe fails (data-dependent control flow in a user factory, unsupported ops),
:func:`trace_layer_graph` returns ``None`` and the callers fall back to the order-based rule: each layer feeds
the next prunable layer in ``named_modules()`` order when the shapes chain
(:func:`sparsity_gym.masks.successor_columns`), no layer is coupled.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["CONV_TYPES", "PRUNABLE", "Edge", "LayerGraph", "probe_batch", "trace_layer_graph"]

CONV_TYPES = (nn.Conv1d, nn.Conv2d)
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)

# single-input modules whose output channel k depends on input channel k only (shape checked on the probe)
_CHANNEL_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
# modules with parameters or buffers indexed by channel (resized with the channels by compaction)
_PARAMETRISED_CHANNEL_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.PReLU,
    nn.LayerNorm,
    nn.GroupNorm,
)
_CHANNEL_FUNCTIONS: set[Any] = {
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.celu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardtanh,
    F.hardswish,
    F.hardsigmoid,
    F.softplus,
    F.sigmoid,
    F.tanh,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.max_pool1d,
    F.max_pool2d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.batch_norm,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.clone,
}
_CHANNEL_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone", "float", "to"}
_FLATTEN_FUNCTIONS: set[Any] = {torch.flatten, torch.reshape}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_MEAN = {"mean", torch.mean}
_JOIN_FUNCTIONS: set[Any] = {
    operator.add,
    operator.iadd,
    operator.sub,
    operator.isub,
    operator.mul,
    operator.imul,
    operator.truediv,
    operator.itruediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
}
_JOIN_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_SHAPE_METHODS = {"size", "dim", "numel"}


@dataclass(frozen=True)
class Edge:
    """``layer`` feeds ``successor``: unit ``k`` owns input columns ``k·c .. k·c + c − 1`` (``c = columns_per_unit``).

    ``channel_modules`` are the modules with per-channel parameters or buffers on the way (e.g. BatchNorm).
    """

    successor: str
    columns_per_unit: int = 1
    channel_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerGraph:
    """The traced data flow between the prunable layers of one model (names as in ``named_modules()``).

    Attributes:
        successors: Per prunable layer, its consuming prunable layers in execution order (empty: none found).
        coupled: Layers whose output reaches a join (a residual addition, a product with another data tensor)
            or feeds a module called more than once: their units cannot be removed one layer at a time.
        unresolved: Layers whose output also reaches an op the tracer does not know (no successor that way).
        outputs: Layers whose output reaches the model's output through channel-preserving ops only (the output
            layers of the data flow; empty when an unknown op stands between).
        called: Layers called as modules in the traced graph (a layer whose weight a parent module uses directly,
            e.g. ``nn.MultiheadAttention.out_proj``, is not: where its outputs go is unknown).

    """

    successors: dict[str, tuple[Edge, ...]]
    coupled: frozenset[str] = frozenset()
    unresolved: frozenset[str] = frozenset()
    outputs: frozenset[str] = frozenset()
    called: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _State:
    """What a traced value carries: prunable layers' channels (with columns per channel) or nothing."""

    sources: frozenset[str] = frozenset()
    per_unit: int = 1
    channel_modules: tuple[str, ...] = ()
    data: bool = True  # derived from the input (not a constant, a parameter or a shape)


_CONSTANT = _State(data=False)


def probe_batch(
    model: nn.Module, input_shape: Sequence[int], example: torch.Tensor | None = None, n: int = 1
) -> torch.Tensor:
    """``n`` probe samples: copies of ``example``'s first sample (its dtype), or zeros in the model's float dtype.

    Zeros take the dtype of the model's first floating-point parameter (``bfloat16`` for a model in bfloat16),
    on its device.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if example is not None:
        return example[:1].to(device).expand(n, *example.shape[1:]).clone()
    floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
    return torch.zeros((n, *input_shape), device=device, dtype=floats[0] if floats else torch.float32)


def trace_layer_graph(
    model: nn.Module, input_shape: Sequence[int], example: torch.Tensor | None = None
) -> LayerGraph | None:
    """Trace ``model`` and return its :class:`LayerGraph`, or ``None`` when tracing or the probe fails.

    The probe is one forward pass of two inputs through the traced graph in eval mode (no gradient; every
    module's mode is restored), which gives every value's shape: :func:`probe_batch` (``example``'s first sample
    twice, or zeros of ``input_shape``).
    """
    prunable = {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}
    try:
        # the graph alone (no GraphModule: its Python code would be generated and compiled for nothing)
        graph = torch.fx.Tracer().trace(model)
        shapes = _probe_shapes(model, graph, probe_batch(model, input_shape, example, 2))
    except Exception:  # tracing raises many exception types (TraceError, TypeError, NotImplementedError, ...)
        return None
    flow = _Flow(prunable, dict(model.named_modules()), shapes)
    for node in graph.nodes:
        flow.visit(node)
    return flow.result()


class _Flow:
    """Propagates which prunable layers' channels each traced value carries, node by node (graph order)."""

    def __init__(self, prunable: dict[str, nn.Module], modules: dict[str, nn.Module], shapes: dict) -> None:
        self.prunable = prunable
        self.modules = modules
        self.shapes = shapes
        self.edges: dict[str, list[Edge]] = {name: [] for name in prunable}
        self.coupled: set[str] = set()
        self.unresolved: set[str] = set()
        self.calls: dict[str, list[frozenset[str]]] = {}
        self.states: dict[torch.fx.Node, _State] = {}
        self.outputs: set[str] = set()

    def state_of(self, arg: torch.fx.Node) -> _State:
        return self.states.get(arg, _CONSTANT)

    def visit(self, node: torch.fx.Node) -> None:
        """Set ``node``'s state from its arguments' states; record edges, joins and unknown ops."""
        data_args = [a for a in _node_args(node) if self.state_of(a).data]
        first = self.state_of(data_args[0]) if data_args else _CONSTANT
        if node.op == "placeholder":
            self.states[node] = _State()
        elif node.op == "call_module" and node.target in self.prunable:
            name = str(node.target)
            self.calls.setdefault(name, []).append(first.sources)
            for src in first.sources:
                self.edges[src].append(Edge(name, first.per_unit, first.channel_modules))
            self.states[node] = _State(frozenset({name}))
        elif node.op == "output":
            for a in data_args:
                self.outputs.update(self.state_of(a).sources)
            self.states[node] = _CONSTANT
        elif node.op == "get_attr" or not data_args or _is_shape_query(node):
            self.states[node] = _CONSTANT
        elif _is_join(node):
            if len(data_args) >= 2:  # a residual addition (or a product) of two data tensors
                union = frozenset().union(*(self.state_of(a).sources for a in data_args))
                self.coupled.update(union)
                self.states[node] = _State(union, max(self.state_of(a).per_unit for a in data_args))
            else:  # arithmetic with a scalar, a parameter or a buffer
                self.states[node] = first
        elif len(data_args) == 1 and _keeps_channels(node, self.modules, self.shapes):
            extra = (str(node.target),) if _parametrised(node, self.modules) else ()
            self.states[node] = _State(first.sources, first.per_unit, first.channel_modules + extra)
        elif len(data_args) == 1 and (per := _flatten_columns(node, self.modules, self.shapes)) is not None:
            self.states[node] = _State(first.sources, first.per_unit * per, first.channel_modules)
        else:
            for a in data_args:
                self.unresolved.update(self.state_of(a).sources)
            self.states[node] = _State()

    def result(self) -> LayerGraph:
        """The graph: deduplicated edges whose column counts match the modules' shapes."""
        for sources in self.calls.values():  # a module called several times: its inputs share one weight
            if len(sources) > 1:
                for s in sources:
                    self.coupled.update(s)
        successors: dict[str, tuple[Edge, ...]] = {}
        for name, found in self.edges.items():
            kept: list[Edge] = []
            for edge in found:
                if not _columns_match(self.prunable[name], self.prunable[edge.successor], edge.columns_per_unit):
                    self.unresolved.add(name)
                elif edge.successor not in [e.successor for e in kept]:
                    kept.append(edge)
            successors[name] = tuple(kept)
        return LayerGraph(
            successors,
            frozenset(self.coupled),
            frozenset(self.unresolved),
            frozenset(self.outputs),
            frozenset(self.calls),
        )


def _probe_shapes(model: nn.Module, graph: torch.fx.Graph, probe: torch.Tensor) -> dict:
    """Output shape of every node of ``graph`` run on ``probe`` (eval mode, no gradient, modes restored)."""
    shapes: dict[torch.fx.Node, tuple[int, ...] | None] = {}

    class _Shapes(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            result = super().run_node(n)
            shapes[n] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
            return result

    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            _Shapes(model, graph=graph).run(probe)
    finally:
        for module, training in modes.items():
            module.training = training
    return shapes


def _node_args(node: torch.fx.Node) -> list[torch.fx.Node]:
    """Every node among ``node``'s arguments, nested lists and dicts included (``torch.cat([a, b])``)."""
    found: list[torch.fx.Node] = []
    torch.fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


def _is_shape_query(node: torch.fx.Node) -> bool:
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    return node.op == "call_function" and node.target is getattr and len(node.args) > 1 and node.args[1] == "shape"


def _is_join(node: torch.fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _JOIN_FUNCTIONS
    return node.op == "call_method" and node.target in _JOIN_METHODS


def _parametrised(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    return node.op == "call_module" and isinstance(modules.get(str(node.target)), _PARAMETRISED_CHANNEL_MODULES)


def _input_shape(node: torch.fx.Node, shapes: dict) -> tuple[int, ...] | None:
    arg = node.args[0] if node.args else None
    return shapes.get(arg) if isinstance(arg, torch.fx.Node) else None


def _keeps_channels(node: torch.fx.Node, modules: dict[str, nn.Module], shapes: dict) -> bool:
    """A single-input op that keeps channel k at index k (batch and channel sizes checked on the probe)."""
    if node.op == "call_module":
        known = isinstance(modules.get(str(node.target)), _CHANNEL_MODULES)
    elif node.op == "call_function":
        known = node.target in _CHANNEL_FUNCTIONS or node.target in _MEAN
    else:
        known = node.target in _CHANNEL_METHODS or node.target in _MEAN
    if not known:
        return False
    before, after = _input_shape(node, shapes), shapes.get(node)
    if before is None or after is None or len(before) < 2 or len(after) < 2:
        return False
    if node.target in _MEAN and not _reduces_positions_only(node, len(before)):
        return False
    return before[:2] == after[:2]


def _reduces_positions_only(node: torch.fx.Node, ndim: int) -> bool:
    """A ``mean`` over spatial dimensions only (not over the batch or the channels)."""
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if dims is None:
        return False
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if not all(isinstance(d, int) for d in dims):
        return False
    return all(d % ndim >= 2 for d in dims)


def _flatten_columns(node: torch.fx.Node, modules: dict[str, nn.Module], shapes: dict) -> int | None:
    """Columns per channel of a channel-major flatten ``(n, C, ...) -> (n, C·rest)``; ``None`` if not one."""
    if node.op == "call_module":
        known = isinstance(modules.get(str(node.target)), nn.Flatten)
    elif node.op == "call_function":
        known = node.target in _FLATTEN_FUNCTIONS
    else:
        known = node.target in _FLATTEN_METHODS
    before, after = _input_shape(node, shapes), shapes.get(node)
    if not known or before is None or after is None or len(before) < 2 or len(after) != 2:
        return None
    rest = 1
    for d in before[2:]:
        rest *= int(d)
    if after[0] != before[0] or after[1] != before[1] * rest:
        return None
    return rest


def _columns_match(layer: nn.Module, successor: nn.Module, per_unit: int) -> bool:
    """The successor's input width is the layer's output units times ``per_unit`` (a conv takes channels)."""
    units = int(layer.weight.shape[0])
    if isinstance(successor, CONV_TYPES):
        return per_unit == 1 and successor.groups == 1 and int(successor.weight.shape[1]) == units
    return int(successor.weight.shape[1]) == units * per_unit
