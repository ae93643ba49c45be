"""Per-sample gradient moments of Linear and conv layers from their inputs and output gradients (CRITERIA §1).

For the SNR of a weight the collector needs, per step, the batch mean of the per-sample gradients and the sum of
their squares. Linear: ``g_n = δ_n x_nᵀ`` and the second moment is ``(δ²)ᵀ(x²)`` (one extra matmul); conv: the
input is unfolded into patches and the per-sample products are summed in chunks with einsum; Conv1d is a Conv2d
of height one. Every function is checked against per-sample ``torch.func`` gradients in ``tests/stats``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsity_gym.stats.inputs import as_float, check_positive_int

DEFAULT_CHUNK_SIZE = 32


def _check_grad_inputs(out_grads: Tensor, inputs: Tensor) -> None:
    if out_grads.ndim < 2 or inputs.ndim != out_grads.ndim:
        raise ValueError(
            "out_grads and inputs must both be (B, features) or (B, ..., features); got "
            f"{tuple(out_grads.shape)} and {tuple(inputs.shape)}"
        )
    if out_grads.shape[:-1] != inputs.shape[:-1]:
        raise ValueError(f"leading dims differ: {tuple(out_grads.shape)} vs {tuple(inputs.shape)}")


def linear_grad_moments(
    out_grads: Tensor, inputs: Tensor, grad_scale: float = 1.0, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[Tensor, Tensor]:
    """First moment and sum of squares of a Linear weight's per-sample gradients.

    The per-sample gradient is ``g_n = grad_scale · δ_nᵀ x_n`` (shape ``(out, in)``).

    Parameters
    ----------
    out_grads : Tensor
        δ, gradients w.r.t. the layer's outputs, ``(B, out)`` or ``(B, T, out)`` (any number of middle
        dims, which are flattened into T).
    inputs : Tensor
        x, the layer's inputs, ``(B, in)`` or ``(B, T, in)``.
    grad_scale : float, default 1.0
        Factor that turns ``δ_n x_nᵀ`` into the per-sample gradient: 1 when δ holds per-sample output
        gradients ``∂ℓ_n/∂y_n``; B when δ is the gradient of the *mean* loss over B samples.
    chunk_size : int, default 32
        Samples per chunk for the 3-D case.

    Returns
    -------
    tuple of Tensor
        ``(ḡ, Σ_n g_n²)``, each ``(out, in)``.  2-D inputs: ``ḡ = s·δᵀx/B`` and ``Σg² = s²·(δ²)ᵀ(x²)`` —
        two matmuls, no per-sample gradient.  3-D inputs: the per-sample gradient is
        ``s·Σ_t δ_{n,t} x_{n,t}ᵀ`` (summed over positions *before* squaring), so it is materialised with
        an einsum, ``chunk_size`` samples at a time.

    """
    _check_grad_inputs(out_grads, inputs)
    check_positive_int(chunk_size, "chunk_size")
    delta = as_float(out_grads)
    x = as_float(inputs).to(delta.dtype)
    batch = delta.shape[0]
    if delta.ndim == 2:
        grad_mean = delta.T @ x
        if grad_scale != batch:
            grad_mean.mul_(grad_scale / batch)
        # scale δ² (B×out), not the (out×in) result
        grad_sq_sum = delta.square().mul_(grad_scale**2).T @ x.square()
        return grad_mean, grad_sq_sum
    else:
        delta = delta.reshape(batch, -1, delta.shape[-1])
        x = x.reshape(batch, -1, x.shape[-1])
        grad_mean = torch.einsum("bto,bti->oi", delta, x)
        grad_sq_sum = torch.zeros_like(grad_mean)
        for start in range(0, batch, chunk_size):
            per_sample = torch.einsum("bto,bti->boi", delta[start : start + chunk_size], x[start : start + chunk_size])
            grad_sq_sum += per_sample.square().sum(0)
    return grad_mean * (grad_scale / batch), grad_sq_sum * (grad_scale**2)


def linear_grad_sq_sum(out_grads: Tensor, inputs: Tensor, grad_scale: float = 1.0) -> Tensor:
    """``Σ_n g_n²`` for a Linear weight: ``grad_scale²·(δ²)ᵀ(x²)`` (see :func:`linear_grad_moments`).

    Worked example (CRITERIA.md §1): δ=[[1,2],[3,−1]], x=[[1,0,2],[0,1,1]] → [[1,9,13],[4,1,17]].
    Pass ``grad_scale=B`` when ``out_grads`` are gradients of the mean loss over B samples.
    """
    _check_grad_inputs(out_grads, inputs)
    if out_grads.ndim == 2:
        delta = as_float(out_grads)
        return (delta.square().T @ as_float(inputs).to(delta.dtype).square()) * (grad_scale**2)
    return linear_grad_moments(out_grads, inputs, grad_scale)[1]


def _explicit_padding(module: nn.Conv2d) -> tuple[int, int, int, int]:
    """Return the padding as ``F.pad`` wants it, ``(left, right, top, bottom)``; handles "same"/"valid"."""
    kh, kw = module.kernel_size
    dh, dw = module.dilation
    if module.padding == "valid":
        return (0, 0, 0, 0)
    if module.padding == "same":  # same split as nn.Conv2d: the extra pixel goes right/bottom
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    ph, pw = module.padding
    return (pw, pw, ph, ph)


def conv2d_grad_moments(
    module: nn.Conv2d,
    out_grads: Tensor,
    inputs: Tensor,
    grad_scale: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """First moment and sum of squares of a Conv2d weight's per-sample gradients.

    Per-sample gradients are built with ``F.unfold`` and an einsum, ``chunk_size`` samples at a time, so
    at most ``chunk_size × C_out × (C_in/groups)·kh·kw`` extra elements are alive.  Supports stride,
    dilation, integer / tuple / ``"same"`` / ``"valid"`` padding, every ``padding_mode`` and any
    ``groups``.

    Parameters
    ----------
    module : nn.Conv2d
        The layer (its hyper-parameters define the unfolding; its weight is not read).
    out_grads : Tensor
        δ, gradients w.r.t. the layer's output, ``(B, C_out, H_out, W_out)``.
    inputs : Tensor
        x, the layer's input, ``(B, C_in, H, W)``.
    grad_scale : float, default 1.0
        1 for per-sample output gradients; B when δ is the gradient of a mean loss over B samples.
    chunk_size : int, default 32
        Samples per chunk.

    Returns
    -------
    tuple of Tensor
        ``(ḡ, Σ_n g_n²)``, each shaped like ``module.weight``.

    """
    if not isinstance(module, nn.Conv2d):
        raise TypeError(f"module must be nn.Conv2d; got {type(module).__name__}")
    if inputs.ndim != 4 or out_grads.ndim != 4:
        raise ValueError(
            f"inputs and out_grads must be 4-D (batched); got {tuple(inputs.shape)}, {tuple(out_grads.shape)}"
        )
    if inputs.shape[0] != out_grads.shape[0]:
        raise ValueError("inputs and out_grads must have the same batch size")
    check_positive_int(chunk_size, "chunk_size")
    groups = module.groups
    c_out = module.out_channels
    delta = as_float(out_grads)
    x = as_float(inputs).to(delta.dtype)
    unfold_padding: tuple[int, int] | int = 0
    if module.padding_mode != "zeros":
        mode = module.padding_mode
        x = F.pad(x, _explicit_padding(module), mode=mode)
    elif isinstance(module.padding, str):
        x = F.pad(x, _explicit_padding(module))
    else:
        unfold_padding = module.padding
    batch = x.shape[0]
    weight_shape = (c_out, module.in_channels // groups, *module.kernel_size)
    fan = weight_shape[1] * weight_shape[2] * weight_shape[3]
    grad_sum = torch.zeros((groups, c_out // groups, fan), dtype=delta.dtype, device=delta.device)
    grad_sq_sum = torch.zeros_like(grad_sum)
    for start in range(0, batch, chunk_size):
        xb = x[start : start + chunk_size]
        db = delta[start : start + chunk_size]
        cols = F.unfold(
            xb, module.kernel_size, dilation=module.dilation, padding=unfold_padding, stride=module.stride
        )  # (b, C_in·kh·kw, L), channel-major, so groups split it contiguously
        b, _, length = cols.shape
        if db.shape[2] * db.shape[3] != length:
            raise ValueError("out_grads' spatial size does not match the unfolded input")
        db = db.reshape(b, groups, c_out // groups, length)
        per_sample = torch.einsum("bgol,bgkl->bgok", db, cols.reshape(b, groups, fan, length))
        grad_sum += per_sample.sum(0)
        grad_sq_sum += per_sample.square().sum(0)
    grad_mean = (grad_sum * (grad_scale / batch)).reshape(weight_shape)
    return grad_mean, (grad_sq_sum * grad_scale**2).reshape(weight_shape)


def conv2d_grad_sq_sum(
    module: nn.Conv2d,
    out_grads: Tensor,
    inputs: Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    grad_scale: float = 1.0,
) -> Tensor:
    """``Σ_n g_n²`` for a Conv2d weight (see :func:`conv2d_grad_moments` for conventions)."""
    return conv2d_grad_moments(module, out_grads, inputs, grad_scale=grad_scale, chunk_size=chunk_size)[1]


def conv1d_grad_moments(
    module: nn.Conv1d,
    out_grads: Tensor,
    inputs: Tensor,
    grad_scale: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """First moment and sum of squares of a Conv1d weight's per-sample gradients.

    A Conv1d of kernel ``k`` on ``(B, C, L)`` is the Conv2d of kernel ``(1, k)`` on ``(B, C, 1, L)``: the
    sequence is viewed as an image of height one and unfolded into patches by :func:`conv2d_grad_moments`
    (same conventions: stride, dilation, integer / ``"same"`` / ``"valid"`` padding, every ``padding_mode``,
    any ``groups``). ``out_grads`` is ``(B, C_out, L_out)``, ``inputs`` ``(B, C_in, L)``; the moments come
    back shaped like ``module.weight``, ``(C_out, C_in/groups, k)``.
    """
    if not isinstance(module, nn.Conv1d):
        raise TypeError(f"module must be nn.Conv1d; got {type(module).__name__}")
    if inputs.ndim != 3 or out_grads.ndim != 3:
        raise ValueError(
            f"inputs and out_grads must be 3-D (batched); got {tuple(inputs.shape)}, {tuple(out_grads.shape)}"
        )
    padding = module.padding if isinstance(module.padding, str) else (0, module.padding[0])
    as_2d = nn.Conv2d(
        module.in_channels,
        module.out_channels,
        (1, module.kernel_size[0]),
        stride=(1, module.stride[0]),
        padding=padding,
        dilation=(1, module.dilation[0]),
        groups=module.groups,
        bias=False,
        padding_mode=module.padding_mode,
        device="meta",
    )
    mean, sq = conv2d_grad_moments(
        as_2d, out_grads.unsqueeze(2), inputs.unsqueeze(2), grad_scale=grad_scale, chunk_size=chunk_size
    )
    return mean.squeeze(2), sq.squeeze(2)
