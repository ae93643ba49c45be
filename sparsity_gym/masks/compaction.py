"""Physically remove inactive neurons: a smaller network that computes what the masked network computes.

At neuron granularity (:mod:`sparsity_gym.masks`) an inactive neuron has a zero fan-in row and bias and zero
fan-out columns in its successor layer, so it contributes nothing to the network's output whatever the
activation function. :func:`compact` turns those zeros into missing rows and columns: every prunable layer
(``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d``) of a deep copy is replaced by a smaller layer of the same kind
that keeps

* the active output units (rows of a Linear, output channels of a conv) with their bias, and
* the input columns (channels) fed by active units of its predecessor, the layer whose
  :meth:`MaskedNetwork.successors <sparsity_gym.masks.MaskedNetwork.successors>` include it
  (:func:`sparsity_gym.masks.successor_columns`): Linear -> Linear and conv -> conv column for unit,
  conv -> Linear through a channel-major flatten, where each channel owns ``in_features / channels``
  consecutive columns and an inactive channel's whole block is dropped.

A layer may feed several successors (the traced graph of :mod:`sparsity_gym.models.graph`); the columns are removed
in all of them. A ``BatchNorm`` between a layer and its successors (``LayerInfo.channel_modules``) is resized
with the layer's channels (weight, bias, running mean and variance). Layers whose output enters a residual
addition are never pruned at neuron granularity (``LayerInfo.neuron_prunable``), so they keep their width and
residual networks compact at their prunable layers only. The other modules in between (activations, pooling,
``nn.Flatten``) are kept as they are: they must be element-wise or per-channel without parameters of the pruned
width. Another per-feature module between two layers (``LayerNorm``, ``GroupNorm``) is not resized; pass
``example_input`` to :func:`compact` to have the result checked against the masked network on a real input.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models.graph import CONV_TYPES, PRUNABLE

__all__ = ["compact", "compaction_summary"]


def compact(
    model: nn.Module,
    masks: MaskedNetwork,
    *,
    example_input: torch.Tensor | None = None,
    atol: float = 1e-5,
) -> nn.Module:
    """A deep copy of ``model`` whose prunable layers keep only their active neurons.

    Parameters
    ----------
    model
        The masked network: the model whose prunable layers ``masks`` describes (``masks.all_layers[i].info
        .module`` must be the module named ``masks.all_layers[i].info.name`` in ``model``).
    masks
        Its :class:`~sparsity_gym.masks.MaskedNetwork`, at ``neuron`` granularity.
    example_input
        Optional batch to check the result on: both networks run it in eval mode (no gradient, their modes
        restored afterwards) and a ``ValueError`` is raised if the outputs differ by more than ``atol``
        (e.g. a per-feature module such as ``BatchNorm`` sits between two resized layers).
    atol
        Absolute tolerance of that check.

    Returns
    -------
    nn.Module
        A new module (``model`` is not changed) in which every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` named in
        ``masks`` whose width changes is replaced, on its parent, by a plain layer of its class
        the same dtype, device, bias presence, ``requires_grad`` and training mode (and for a conv the same
        kernel size, stride, padding, dilation and padding mode) holding the kept rows and columns. Layers
        whose width does not change are plain deep copies. Forward and backward hooks of ``model`` (for
        instance the environment's observers) are not copied. In eval mode the result's outputs equal the
        masked network's up to floating-point summation order.

    Raises
    ------
    ValueError
        If ``masks.granularity`` is not ``"neuron"``; if ``masks`` does not describe ``model``; if a layer
        with inactive units has no known successor (its fan-out columns could not be removed, so dropping the
        units could change the output); if a resized conv has ``groups != 1``; or if the ``example_input``
        check fails.

    """
    if masks.granularity != "neuron":
        raise ValueError(
            f"compact needs masks at granularity='neuron' (whole neurons / channels are removed); got "
            f"granularity={masks.granularity!r}, whose zeros are scattered weights that no smaller dense layer holds"
        )
    _check_masks_describe(model, masks)
    keep_out, keep_in = _kept_units(masks)

    compacted = _copy_without_hooks(model)
    modules = dict(compacted.named_modules())
    for layer in masks.all_layers:
        name = layer.info.name
        rows, cols = keep_out[name], keep_in[name]
        if rows is None and cols is None:
            continue
        old = modules[name]
        new = _smaller_layer(name, old, rows, cols)
        _set_submodule(compacted, name, new)
        for norm_name in layer.info.channel_modules if rows is not None else ():
            norm = modules.get(norm_name)
            if isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.num_features == layer.info.fan_out:
                _set_submodule(compacted, norm_name, _smaller_batch_norm(norm, rows))

    if example_input is not None:
        _check_equal(model, compacted, example_input, atol)
    return compacted


def compaction_summary(model: nn.Module, compacted: nn.Module) -> dict[str, Any]:
    """Parameter counts and the width of every prunable layer, before and after :func:`compact`.

    Parameters
    ----------
    model
        The original (masked) network.
    compacted
        What :func:`compact` returned for it.

    Returns
    -------
    dict
        ``params_before`` / ``params_after`` (every parameter entry of each module, biases and non-prunable
        layers included), ``param_ratio`` (after / before), and ``layers``: for every ``nn.Linear`` /
        ``nn.Conv1d`` / ``nn.Conv2d`` of ``model`` in ``named_modules()`` order, ``{"kind", "in_before", "in_after",
        "out_before", "out_after", "params_before", "params_after"}`` where ``in`` / ``out`` are input and
        output features (channels for a conv).

    Raises
    ------
    ValueError
        If a prunable layer of ``model`` has no layer of the same kind under its name in ``compacted``.

    """
    after_modules = dict(compacted.named_modules())
    layers: dict[str, dict[str, Any]] = {}
    for name, before in model.named_modules():
        if not isinstance(before, PRUNABLE):
            continue
        after = after_modules.get(name)
        kind = type(before) if isinstance(before, CONV_TYPES) else nn.Linear
        if not isinstance(after, kind):
            raise ValueError(f"layer {name!r} of the model has no {kind.__name__} of that name in `compacted`")
        layers[name] = {
            "kind": "conv" if isinstance(before, CONV_TYPES) else "linear",
            "in_before": int(before.weight.shape[1]),
            "in_after": int(after.weight.shape[1]),
            "out_before": int(before.weight.shape[0]),
            "out_after": int(after.weight.shape[0]),
            "params_before": _param_count(before),
            "params_after": _param_count(after),
        }
    params_before = _param_count(model)
    params_after = _param_count(compacted)
    return {
        "params_before": params_before,
        "params_after": params_after,
        "param_ratio": params_after / params_before if params_before else 1.0,
        "layers": layers,
    }


# --------------------------------------------------------------------------------------------------- internals
def _param_count(module: nn.Module) -> int:
    return sum(int(p.numel()) for p in module.parameters())


def _check_masks_describe(model: nn.Module, masks: MaskedNetwork) -> None:
    """Every layer of ``masks`` must be the module of the same name in ``model``."""
    modules = dict(model.named_modules())
    for layer in masks.all_layers:
        if modules.get(layer.info.name) is not layer.info.module:
            raise ValueError(
                f"masks do not describe this model: layer {layer.info.name!r} of the masks is not the module of "
                f"that name in the model (build the masks with find_prunable_layers(model, input_shape))"
            )


def _kept_units(
    masks: MaskedNetwork,
) -> tuple[dict[str, torch.Tensor | None], dict[str, torch.Tensor | None]]:
    """Per layer name: indices of kept output units and of kept input columns (``None``: keep all)."""
    keep_out: dict[str, torch.Tensor | None] = {m.info.name: None for m in masks.all_layers}
    keep_in: dict[str, torch.Tensor | None] = {m.info.name: None for m in masks.all_layers}
    for layer in masks.all_layers:
        active = layer.unit_mask.flatten()
        if bool(active.all()):
            continue
        successors = masks.successors(layer)
        if not successors:
            raise ValueError(
                f"layer {layer.info.name!r} has {layer.num_units - layer.num_active} inactive units but no known "
                f"successor layer (no prunable layer consumes its outputs through known ops), so their fan-out "
                f"could not be removed safely; keep this layer dense or make the shapes chain"
            )
        keep_out[layer.info.name] = _indices(active)
        for successor, cols in successors:
            keep_in[successor.info.name] = _indices(cols(active))
    return keep_out, keep_in


def _indices(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask.flatten()).flatten()


def _copy_without_hooks(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)`` with every module's forward and backward hooks left out.

    The hooks of ``model`` belong to its owners (the environment's observers push activations into their own
    buffers): a copy that kept them would feed those owners activations of the wrong widths.
    """
    memo: dict[int, Any] = {}
    for module in model.modules():
        for attr, value in vars(module).items():
            if attr.startswith(("_forward", "_backward")) and attr.endswith("hooks") and isinstance(value, dict):
                memo[id(value)] = type(value)()
    return copy.deepcopy(model, memo)


def _smaller_layer(
    name: str, old: nn.Module, rows: torch.Tensor | None, cols: torch.Tensor | None
) -> nn.Linear | nn.Conv1d | nn.Conv2d:
    """A new layer of ``old``'s kind and settings holding ``old``'s weight at ``rows`` x ``cols``."""
    weight = old.weight
    bias = old.bias
    with torch.no_grad():
        w = weight if rows is None else weight.index_select(0, rows.to(weight.device))
        w = w if cols is None else w.index_select(1, cols.to(weight.device))
        b = bias if bias is None or rows is None else bias.index_select(0, rows.to(bias.device))
    factory: dict[str, Any] = {"device": weight.device, "dtype": weight.dtype}
    new: nn.Linear | nn.Conv1d | nn.Conv2d
    if isinstance(old, (nn.Conv1d, nn.Conv2d)):
        if old.groups != 1:
            kind = type(old).__name__
            raise ValueError(f"layer {name!r} is a {kind} with groups={old.groups}; compact only resizes groups=1")
        new = nn.utils.skip_init(
            type(old),
            int(w.shape[1]),
            int(w.shape[0]),
            old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            groups=1,
            bias=bias is not None,
            padding_mode=old.padding_mode,
            **factory,
        )
    else:
        new = nn.utils.skip_init(nn.Linear, int(w.shape[1]), int(w.shape[0]), bias=bias is not None, **factory)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    new.weight.requires_grad_(weight.requires_grad)
    if bias is not None:
        new.bias.requires_grad_(bias.requires_grad)
    new.train(old.training)
    return new


def _smaller_batch_norm(old: nn.modules.batchnorm._BatchNorm, rows: torch.Tensor) -> nn.Module:
    """A copy of BatchNorm ``old`` keeping the channels ``rows`` (affine parameters and running statistics)."""
    new = copy.deepcopy(old)
    new.num_features = len(rows)
    with torch.no_grad():
        for attr in ("weight", "bias", "running_mean", "running_var"):
            value = getattr(old, attr)
            if value is None:
                continue
            kept = value.index_select(0, rows.to(value.device)).clone()
            if isinstance(value, nn.Parameter):
                setattr(new, attr, nn.Parameter(kept, requires_grad=value.requires_grad))
            else:
                setattr(new, attr, kept)
    return new


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the module at dotted ``name`` by setting the child attribute on its parent."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _modes(model: nn.Module) -> Mapping[nn.Module, bool]:
    return {m: m.training for m in model.modules()}


def _check_equal(model: nn.Module, compacted: nn.Module, x: torch.Tensor, atol: float) -> None:
    """Raise ``ValueError`` unless both networks give the same outputs on ``x`` in eval mode."""
    saved = {**_modes(model), **_modes(compacted)}
    try:
        model.eval()
        compacted.eval()
        with torch.no_grad():
            expected = model(x)
            try:
                got = compacted(x)
            except RuntimeError as exc:
                raise ValueError(
                    f"the compacted network fails on example_input ({exc}); a module between two resized layers "
                    f"probably has parameters of the pruned width (e.g. BatchNorm), which compact does not resize"
                ) from exc
    finally:
        for module, training in saved.items():
            module.training = training
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=0.0, atol=atol):
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("nan")
        raise ValueError(
            f"the compacted network differs from the masked network on example_input (max abs difference "
            f"{diff:.3g} > atol={atol}); a module between two resized layers is probably not element-wise"
        )
