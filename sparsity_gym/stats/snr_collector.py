"""The gradient SNR of every weight, collected during ordinary training steps (Siems et al., seed 001; CRITERIA.md §1).

:class:`GradientMomentCollector` hooks the layers, turns each measured step's inputs and output gradients into
per-weight moments (:mod:`~sparsity_gym.stats.grad_moments`) and smooths the SNR of
:func:`~sparsity_gym.stats.snr.snr_from_moments` over steps; :func:`gradient_snr` is the SNR of one batch. The
conventions (per-sample gradients of the mean loss, population variance, smoothing) are those of
:mod:`sparsity_gym.stats.snr`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from sparsity_gym.core.explicit_state import check_keys, check_known_names, state_int, state_tensor
from sparsity_gym.stats.grad_moments import (
    DEFAULT_CHUNK_SIZE,
    conv1d_grad_moments,
    conv2d_grad_moments,
    linear_grad_moments,
)
from sparsity_gym.stats.inputs import check_positive_int
from sparsity_gym.stats.snr import DEFAULT_INF_CAP, smoothing_gamma, snr_from_moments

__all__ = ["GradientMomentCollector", "gradient_snr"]


def _functorch_active() -> bool:
    """Return True inside a torch.func transform (vmap/grad), where the collector does not capture."""
    check = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(check()) if check is not None else False


@dataclass
class _Capture:
    """One forward call of a tracked layer in an active step: its input and, after backward, δ."""

    inputs: Tensor
    out_grads: Tensor | None = None

    def set_grad(self, grad: Tensor) -> None:
        self.out_grads = grad.detach()


NamedModules = Iterable[tuple[str, nn.Module]] | Mapping[str, nn.Module]


class GradientMomentCollector:
    """Accumulate per-weight gradient moments during ordinary training steps and smooth the SNR.

    The collector does not run training steps itself.  It registers a forward hook on each given
    ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d``; on a step where :attr:`active` is True (grad mode on, outside
    torch.func transforms) the hook
    keeps the layer's input (detached, no copy) and registers a tensor hook on the layer's output that keeps
    the output gradient δ (detached).  :meth:`update`, called after ``loss.backward()``, turns them into
    ``ḡ`` and ``Σg²`` per weight (``grad_scale = B``: **the loss must be a mean over the batch**, or a
    common multiple of it — the SNR does not depend on a common scale), computes ``snr_now`` with
    :func:`snr_from_moments` and smooths it (CRITERIA.md §1):

    ``snr_t = γ·snr_{t−1} + (1−γ)·min(snr_now, inf_cap)``; the first update sets ``snr = min(snr_now,
    inf_cap)``.  Smoothed values below the smallest normal float are flushed to 0.

    The moments are those of the gradient w.r.t. the weight *as used in the forward pass* (e.g. θ⊙mask
    under DPF, whose gradient is applied to the dense θ), computed from the captured tensors, so they do not
    depend on ``.grad`` being zeroed between steps.  Several complete forward/backward pairs before one
    :meth:`update` (gradient accumulation) are pooled as more samples, each pair treated as a mean over its
    own batch; a forward that got no backward is replaced by the next forward and dropped at update.  A
    module called several times inside one forward (weight sharing) is not supported: its calls would be
    pooled as separate samples.

    Parameters
    ----------
    modules : iterable of (name, module) or mapping name -> module
        The prunable layers (``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d``).
    gamma : float, optional
        Smoothing factor in [0, 1).  Mutually exclusive with ``total_iterations``; 0 (no smoothing) when
        neither is given.
    total_iterations : int, optional
        T; sets ``gamma = smoothing_gamma(T, r_m)``.
    r_m : float, default 0.02
        See :func:`smoothing_gamma`.
    unbiased : bool, default False
        Variance convention of :func:`snr_from_moments`.
    inf_cap : float, default 1e12
        Cap applied to ``snr_now`` before smoothing, so the smoothed SNR is finite.
    conv_chunk_size : int, default 32
        Samples per chunk for conv per-sample gradients.

    Examples
    --------
    >>> collector = GradientMomentCollector(layers, total_iterations=1000).attach()
    >>> collector.active = True          # on the steps where the SNR is wanted
    >>> loss = loss_fn(model(x), y); loss.backward(); collector.update(); optimizer.step()
    >>> collector.active = False

    """

    def __init__(
        self,
        modules: NamedModules,
        *,
        gamma: float | None = None,
        total_iterations: int | None = None,
        r_m: float = 0.02,
        unbiased: bool = False,
        inf_cap: float = DEFAULT_INF_CAP,
        conv_chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        items = list(modules.items()) if isinstance(modules, Mapping) else list(modules)
        names = [name for name, _ in items]
        if len(set(names)) != len(names):
            raise ValueError("module names must be unique")
        for name, module in items:
            if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                kind = type(module).__name__
                raise TypeError(f"{name!r}: only nn.Linear, nn.Conv1d and nn.Conv2d are supported, got {kind}")
        if gamma is not None and total_iterations is not None:
            raise ValueError("give gamma or total_iterations, not both")
        if total_iterations is not None:
            gamma = smoothing_gamma(total_iterations, r_m)
        gamma = 0.0 if gamma is None else float(gamma)
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1); got {gamma}")
        if not inf_cap > 0:
            raise ValueError("inf_cap must be > 0")
        self._modules: dict[str, nn.Module] = dict(items)
        self.gamma = gamma
        self.unbiased = unbiased
        self.inf_cap = float(inf_cap)
        self.conv_chunk_size = check_positive_int(conv_chunk_size, "conv_chunk_size")
        self.active = False
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._pending: dict[str, list[_Capture]] = {name: [] for name in self._modules}
        self._snr: dict[str, Tensor] = {}
        self._snr_now: dict[str, Tensor] = {}
        self._moments: dict[str, tuple[Tensor, Tensor, int]] = {}
        self.num_updates = 0

    # -- hooks ---------------------------------------------------------------------------------------
    def attach(self) -> GradientMomentCollector:
        """Register the forward hooks (idempotent); returns ``self``."""
        if not self._handles:
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(partial(self._forward_hook, name)))
        return self

    def detach(self) -> None:
        """Remove every hook this collector registered and drop captured tensors."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._clear_pending()

    @property
    def attached(self) -> bool:
        """Whether the forward hooks are registered."""
        return bool(self._handles)

    def __enter__(self) -> GradientMomentCollector:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _forward_hook(self, name: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self.active or not torch.is_grad_enabled() or _functorch_active():
            return
        if not isinstance(output, Tensor) or not output.requires_grad:
            return
        captures = self._pending[name]
        if captures and captures[-1].out_grads is None:
            captures.pop()  # the previous forward never got a backward
        if not args or not isinstance(args[0], Tensor):
            raise RuntimeError(f"{name!r}: the layer's input must be passed positionally as a tensor")
        capture = _Capture(args[0].detach())
        captures.append(capture)
        output.register_hook(capture.set_grad)

    def _clear_pending(self) -> None:
        for captures in self._pending.values():
            captures.clear()

    # -- statistics ----------------------------------------------------------------------------------
    def _moments_of(self, module: nn.Module, captures: list[_Capture]) -> tuple[Tensor, Tensor, int]:
        grad_sum: Tensor | None = None
        sq_sum: Tensor | None = None
        total = 0
        for capture in captures:
            assert capture.out_grads is not None
            batch = capture.inputs.shape[0]
            if isinstance(module, nn.Conv2d):
                mean, sq = conv2d_grad_moments(
                    module, capture.out_grads, capture.inputs, batch, chunk_size=self.conv_chunk_size
                )
            elif isinstance(module, nn.Conv1d):
                mean, sq = conv1d_grad_moments(
                    module, capture.out_grads, capture.inputs, batch, chunk_size=self.conv_chunk_size
                )
            else:
                mean, sq = linear_grad_moments(capture.out_grads, capture.inputs, grad_scale=batch)
            if len(captures) == 1:
                return mean, sq, batch
            grad_sum = mean * batch if grad_sum is None else grad_sum + mean * batch
            sq_sum = sq if sq_sum is None else sq_sum + sq
            total += batch
        assert grad_sum is not None and sq_sum is not None
        return grad_sum / total, sq_sum, total

    def update(self) -> dict[str, Tensor]:
        """Turn this step's captures into ``snr_now`` and update the smoothed SNR.

        Call after ``loss.backward()`` on a step with :attr:`active` True.  Layers without a complete
        capture keep their previous smoothed value.  Captures are dropped afterwards.

        Returns
        -------
        dict of str to Tensor
            The smoothed SNR (:attr:`snr`).

        Raises
        ------
        RuntimeError
            If no layer has a complete capture (no active forward+backward since the last update).

        """
        updated = 0
        for name, module in self._modules.items():
            captures = [c for c in self._pending[name] if c.out_grads is not None]
            if not captures:
                continue
            grad_mean, grad_sq_sum, batch = self._moments_of(module, captures)
            snr_now = snr_from_moments(grad_mean, grad_sq_sum, batch, self.unbiased)
            self._moments[name] = (grad_mean, grad_sq_sum, batch)
            self._snr_now[name] = snr_now
            capped = snr_now.clamp_max(self.inf_cap)  # +inf -> cap (snr_now has no NaN)
            previous = self._snr.get(name)
            if previous is None or previous.shape != capped.shape:
                self._snr[name] = capped
            else:
                # γ·prev + (1−γ)·now in one op; values decaying below the smallest normal float are
                # flushed to 0 (denormal arithmetic is very slow on CPUs)
                smoothed = torch.lerp(capped, previous, self.gamma)
                self._snr[name] = smoothed.masked_fill_(smoothed < torch.finfo(smoothed.dtype).tiny, 0.0)
            updated += 1
        self._clear_pending()
        if updated == 0:
            raise RuntimeError(
                "nothing captured: set collector.active = True and run forward + backward before update()"
            )
        self.num_updates += 1
        return self.snr

    @property
    def snr(self) -> dict[str, Tensor]:
        """Smoothed SNR per layer name (finite: capped at ``inf_cap``)."""
        return dict(self._snr)

    @property
    def snr_now(self) -> dict[str, Tensor]:
        """Unsmoothed SNR of the last update per layer (``inf`` kept)."""
        return dict(self._snr_now)

    @property
    def moments(self) -> dict[str, tuple[Tensor, Tensor, int]]:
        """``(ḡ, Σg², B)`` of the last update per layer."""
        return dict(self._moments)

    @property
    def names(self) -> list[str]:
        """Names of the tracked layers, in the order given."""
        return list(self._modules)

    def reset(self) -> None:
        """Forget the smoothed SNR, last moments and pending captures (hooks stay attached)."""
        self._snr.clear()
        self._snr_now.clear()
        self._moments.clear()
        self._clear_pending()
        self.num_updates = 0

    def state_dict(self) -> dict[str, Any]:
        """What the collector carries from step to step, as plain tensors (copies).

        ``layers``: the tracked layer names, in order. ``snr``, ``snr_now``: layer name -> tensor shaped like the
        weight (the smoothed SNR and the last unsmoothed one; layers not yet updated are absent).
        ``moments``: layer name -> ``{"grad_mean", "grad_sq_sum"}`` (tensors shaped like the weight) and
        ``"batch_size"`` (int) of the last update. ``num_updates``: int. The hooks and :attr:`active` are not
        state. Called between a backward and :meth:`update` (a captured step not yet turned into moments), it
        raises ``RuntimeError``; a forward that got no backward is dropped, as the next forward would.
        """
        if any(c.out_grads is not None for captures in self._pending.values() for c in captures):
            raise RuntimeError("state_dict() was called between a backward and update(); call update() first")
        return {
            "layers": list(self._modules),
            "snr": {name: value.detach().clone() for name, value in self._snr.items()},
            "snr_now": {name: value.detach().clone() for name, value in self._snr_now.items()},
            "moments": {
                name: {"grad_mean": mean.detach().clone(), "grad_sq_sum": sq.detach().clone(), "batch_size": batch}
                for name, (mean, sq, batch) in self._moments.items()
            },
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` (tensors copied as they are; pending captures are dropped).

        A state of other layers (other names or weight shapes) is refused with a ``ValueError`` naming the layer.
        """
        owner = "GradientMomentCollector"
        check_keys(owner, state, ("layers", "snr", "snr_now", "moments", "num_updates"))
        layers = state["layers"]
        if not isinstance(layers, (list, tuple)) or list(layers) != list(self._modules):
            raise ValueError(f"{owner}: layers is {layers!r}; expected the tracked layers {list(self._modules)}")
        for field in ("snr", "snr_now", "moments"):
            check_known_names(owner, field, state[field], list(self._modules))
        for name, value in (*state["snr"].items(), *state["snr_now"].items()):
            state_tensor(owner, f"snr of {name!r}", value, self._modules[name].weight.shape)
        for name, moments in state["moments"].items():
            check_keys(f"{owner} moments of {name!r}", moments, ("grad_mean", "grad_sq_sum", "batch_size"))
            for key in ("grad_mean", "grad_sq_sum"):
                state_tensor(owner, f"{key} of {name!r}", moments[key], self._modules[name].weight.shape)
            state_int(owner, f"batch_size of {name!r}", moments["batch_size"], low=1)
        self._clear_pending()
        self._snr = {name: value.detach().clone() for name, value in state["snr"].items()}
        self._snr_now = {name: value.detach().clone() for name, value in state["snr_now"].items()}
        self._moments = {
            name: (m["grad_mean"].detach().clone(), m["grad_sq_sum"].detach().clone(), m["batch_size"])
            for name, m in state["moments"].items()
        }
        self.num_updates = state_int(owner, "num_updates", state["num_updates"])


def gradient_snr(
    model: nn.Module,
    inputs: Tensor,
    targets: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    unbiased: bool = False,
    conv_chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, Tensor]:
    """Per-weight gradient SNR of every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` weight of ``model`` on one batch.

    One forward and one backward of ``loss_fn(model(inputs), targets)``, which **must be the mean over the
    batch** (e.g. ``nn.CrossEntropyLoss()``; a common multiple of the mean gives the same SNR).  Moments
    come from hooks (Linear: no per-sample gradient, see :func:`linear_grad_moments`).  The model runs in
    its current train/eval mode (BatchNorm running statistics are updated in train mode, as by any forward).
    All hooks are removed and every parameter's ``.grad`` is restored to the object it was before (None
    included), also on error.

    Returns
    -------
    dict of str to Tensor
        Unsmoothed SNR (``inf`` kept) per weight, keyed by the module's name in ``model.named_modules()``
        (``""`` if ``model`` itself is a Linear/Conv2d), shaped like the weight.  Layers that received no
        gradient are absent.

    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    if not layers:
        raise ValueError("model has no nn.Linear, nn.Conv1d or nn.Conv2d layer")
    params = list(model.parameters())
    saved = [p.grad for p in params]
    collector = GradientMomentCollector(layers, unbiased=unbiased, conv_chunk_size=conv_chunk_size)
    try:
        collector.attach()
        collector.active = True
        for p in params:
            p.grad = None
        with torch.enable_grad():
            loss = loss_fn(model(inputs), targets)
            if loss.ndim != 0:
                raise ValueError("loss_fn must return a scalar (the mean over the batch)")
            loss.backward()
        collector.update()
        return collector.snr_now
    finally:
        collector.detach()
        for p, grad in zip(params, saved, strict=True):
            p.grad = grad
