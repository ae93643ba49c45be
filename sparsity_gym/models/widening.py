"""Growth room on any network: the hidden layers of a built model made wider, the new units off.

DYNO (Maile et al., seed 000, §3) grows neurons into a layer; the environment gives a layer room to grow by
building it ``capacity`` times as wide with the spare units masked (``EnvConfig.capacity``). Widening is the
inverse of compaction (:func:`sparsity_gym.masks.compaction.compact`), and like it reads the traced data flow
(:mod:`sparsity_gym.models.graph`, through :class:`~sparsity_gym.models.layers.LayerInfo`) to find who consumes
each layer's units, so it works on any module, a user factory included:

* every **neuron-prunable hidden layer** (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` with ``groups=1``; not
  the output layer) gets ``ceil(capacity · width)`` units: the first ``width`` are the original units
  (weights and bias copied), the spare ones have zero fan-in and zero bias;
* every **consumer** gets the new units' inputs: the per-channel modules on the way (BatchNorm and
  InstanceNorm: weight 1, bias 0, running mean 0, running variance 1; PReLU: its first slope) and the input
  columns of every successor layer, zero: channel ``k`` owns columns ``k·c .. k·c + c − 1`` after a
  channel-major flatten (``c`` columns per unit), so the new units' columns come after the old ones;
* layers whose outputs enter a **residual addition** (coupled, ``neuron_prunable`` False) keep their width, as
  compaction keeps them; so do layers whose output passes a LayerNorm or GroupNorm (they normalise across
  channels, so an extra channel would change the others), layers with no traced successor, and grouped convs.

With the spare units off (zero fan-in and bias, zero fan-out) the widened network computes the original
network's function. That is checked on a random probe in eval mode: if the widened network fails or differs
(e.g. a forward that reshapes with a hard-coded width, ``x.view(-1, 320)``), the layers are widened one at a
time instead and each layer whose widening breaks the check keeps its width.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from sparsity_gym.core.checks import check_number
from sparsity_gym.models.layers import LayerInfo

__all__ = ["WIDENABLE", "WidenedNetwork", "widen_network", "widened_width"]

#: Layer kinds that widening can resize (output units and input units).
WIDENABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class WidenedNetwork:
    """What :func:`widen_network` returns.

    Attributes:
        model: The widened copy (the original model is not modified).
        active: Per widened layer name, a bool mask over its units: True on the original units, False on the
            spare ones (the masks to start from).
        widths: Per widened layer name, ``(width, widened width)``.

    """

    model: nn.Module
    active: Mapping[str, torch.Tensor]
    widths: Mapping[str, tuple[int, int]]


def widened_width(width: int, capacity: float) -> int:
    """``ceil(capacity · width)``, with products within float noise of an integer taken as that integer."""
    return max(int(width), math.ceil(capacity * width - 1e-9))


def widen_network(
    model: nn.Module,
    layers: Sequence[LayerInfo],
    capacity: float,
    input_shape: Sequence[int],
    atol: float = 1e-5,
) -> WidenedNetwork:
    """A copy of ``model`` whose neuron-prunable hidden layers hold ``ceil(capacity · width)`` units.

    Args:
        model: The built network (not modified).
        layers: Its prunable layers, traced (:func:`sparsity_gym.models.layers.find_prunable_layers`).
        capacity: Growth room, at least 1 (1 returns an unchanged copy).
        input_shape: One input sample's shape, for the equivalence probe.
        atol: Tolerance of the probe's comparison, relative to the largest output magnitude (the widened
            matrix products sum extra exact zeros, which can change the rounding of the sums).

    Returns:
        The widened copy, the start masks of the widened layers and their widths (see the module docstring).

    Raises:
        ValueError: ``capacity`` is below 1 or not a number; ``layers`` do not describe ``model``.

    """
    check_number("capacity", capacity, low=1.0)
    modules = dict(model.named_modules())
    for info in layers:
        if modules.get(info.name) is not info.module:
            raise ValueError(
                f"layers do not describe this model: layer {info.name!r} is not the module of that name "
                "(build them with find_prunable_layers(model, input_shape))"
            )
    candidates = [info for info in layers if _can_widen(info, modules)] if capacity > 1.0 else []
    plan = {info.name: (info.fan_out, widened_width(info.fan_out, capacity)) for info in candidates}
    plan = {name: w for name, w in plan.items() if w[1] > w[0]}
    chosen = [info for info in candidates if info.name in plan]
    widened = _widened(model, chosen, plan)
    if chosen and not _same_function(model, widened, input_shape, atol):
        accepted: list[LayerInfo] = []
        for info in chosen:  # one layer at a time: keep each widening that leaves the function unchanged
            trial = _widened(model, [*accepted, info], plan)
            if _same_function(model, trial, input_shape, atol):
                accepted.append(info)
        chosen = accepted
        widened = _widened(model, chosen, plan)
    active = {info.name: torch.arange(plan[info.name][1]) < plan[info.name][0] for info in chosen}
    return WidenedNetwork(widened, active, {info.name: plan[info.name] for info in chosen})


# --------------------------------------------------------------------------------------------------- internals
def _can_widen(info: LayerInfo, modules: Mapping[str, nn.Module]) -> bool:
    """A neuron-prunable hidden layer whose every consumer widening knows how to resize."""
    if info.is_output or not info.neuron_prunable or not info.successors:
        return False
    if not _resizable(info.module):
        return False
    for name, per_unit in info.successors:
        successor = modules.get(name)
        if successor is None or not _resizable(successor) or _in_units(successor) != info.fan_out * per_unit:
            return False
        if isinstance(successor, nn.modules.conv._ConvNd) and per_unit != 1:
            return False
    for name in info.channel_modules:
        norm = modules.get(name)
        if isinstance(norm, _NORMS) and norm.num_features == info.fan_out:
            continue
        if isinstance(norm, nn.PReLU) and norm.num_parameters in (1, info.fan_out):
            continue
        return False  # LayerNorm, GroupNorm, or a per-channel module of another size
    return True


def _resizable(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.conv._ConvNd):
        return isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups == 1 and not module.transposed
    return isinstance(module, nn.Linear)


def _in_units(module: Any) -> int:
    return int(module.weight.shape[1])


def _widened(model: nn.Module, chosen: Sequence[LayerInfo], plan: Mapping[str, tuple[int, int]]) -> nn.Module:
    """A deep copy of ``model`` with every layer of ``chosen`` widened to its planned width."""
    out = copy.deepcopy(model)
    for info in chosen:
        wide = plan[info.name][1]
        _replace(out, info.name, _pad(out.get_submodule(info.name), 0, wide))
        for name in info.channel_modules:
            norm = out.get_submodule(name)
            if isinstance(norm, nn.PReLU) and norm.num_parameters == 1:
                continue
            _replace(out, name, _pad_channels(norm, wide))
        for name, per_unit in info.successors or ():
            _replace(out, name, _pad(out.get_submodule(name), 1, wide * per_unit))
    return out


@torch.no_grad()
def _pad(old: Any, dim: int, size: int) -> nn.Module:
    """``old`` with its weight zero-padded to ``size`` along ``dim`` (0: outputs, with the bias; 1: inputs)."""
    new: Any = copy.deepcopy(old)
    weight = old.weight
    shape = list(weight.shape)
    shape[dim] = size
    padded = weight.new_zeros(shape)
    padded.narrow(dim, 0, weight.shape[dim]).copy_(weight)
    new.weight = nn.Parameter(padded, requires_grad=weight.requires_grad)
    if dim == 0 and old.bias is not None:
        bias = old.bias.new_zeros(size)
        bias[: old.bias.shape[0]] = old.bias
        new.bias = nn.Parameter(bias, requires_grad=old.bias.requires_grad)
    if isinstance(new, nn.Linear):
        new.out_features, new.in_features = int(padded.shape[0]), int(padded.shape[1])
    else:
        new.out_channels, new.in_channels = int(padded.shape[0]), int(padded.shape[1])
    return new


@torch.no_grad()
def _pad_channels(old: Any, size: int) -> nn.Module:
    """A copy of a per-channel module with ``size`` channels; the new ones as freshly initialised."""
    new: Any = copy.deepcopy(old)
    if isinstance(old, nn.PReLU):
        slope = old.weight.new_full((size,), float(old.weight[0]))
        slope[: old.num_parameters] = old.weight
        new.weight = nn.Parameter(slope, requires_grad=old.weight.requires_grad)
        new.num_parameters = size
        return new
    fill = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
    for attr, value in fill.items():
        tensor = getattr(old, attr, None)
        if tensor is None:
            continue
        grown = tensor.new_full((size,), value)
        grown[: tensor.shape[0]] = tensor
        if isinstance(tensor, nn.Parameter):
            setattr(new, attr, nn.Parameter(grown, requires_grad=tensor.requires_grad))
        else:
            setattr(new, attr, grown)
    new.num_features = size
    return new


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _same_function(model: nn.Module, widened: nn.Module, input_shape: Sequence[int], atol: float) -> bool:
    """Whether both networks give the same outputs on a seeded random probe in eval mode (modes restored)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    probe = torch.randn((4, *input_shape), generator=torch.Generator().manual_seed(0)).to(device, dtype)
    modes = {m: m.training for net in (model, widened) for m in net.modules()}
    try:
        model.eval()
        widened.eval()
        with torch.no_grad():
            expected, got = model(probe), widened(probe)
    except Exception:  # a forward that cannot take the wider layers (hard-coded shapes, ...)
        return False
    finally:
        for module, training in modes.items():
            module.training = training
    if not (isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)) or got.shape != expected.shape:
        return False
    scale = max(1.0, float(expected.abs().max()))
    return bool(torch.allclose(got, expected, rtol=0.0, atol=atol * scale))
