"""Micro-benchmark of the gradient-moment capture (CRITERIA.md §1 cost claim).

Times, in one process, on an MLP 64-256-256-10 with batch 128 (CPU unless --device is given):

1. a plain forward + backward of the mean cross-entropy;
2. the same with :class:`~sparsity_gym.stats.GradientMomentCollector` active on the three Linear layers
   (capture + ``update()``: ḡ, Σg² = (δ²)ᵀ(x²), SNR and smoothing);
3. per-sample gradients with ``torch.func.vmap(torch.func.grad(...))`` (+ their moments).

Runs are interleaved; prints the median time of each and its ratio to the plain forward + backward.

Usage: ``python bench/stats_kernels.py [--repeats 200] [--threads N] [--device cpu]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sparsity_gym.stats import GradientMomentCollector


def timed(fns: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median seconds per function; the functions are interleaved so load changes hit all of them."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {label: [] for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            samples[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in samples.items()}


def kernel_times(batch: int, repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median seconds of a plain forward+backward, the same with the moment capture, and vmap(grad)."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    x = torch.randn(batch, 64, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    loss_fn = nn.CrossEntropyLoss()
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    collector = GradientMomentCollector(layers, total_iterations=1000).attach()

    def with_capture() -> None:
        collector.active = True
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        collector.update()
        collector.active = False

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))

    def with_vmap() -> None:
        grads = per_sample(params, x, y)
        for name, _ in layers:
            g = grads[f"{name}.weight"]
            g.mean(0)
            g.square().sum(0)

    results = timed(
        {
            "plain forward+backward": plain,
            "+ GradientMomentCollector (Linear (δ²)ᵀ(x²))": with_capture,
            "per-sample grads, torch.func vmap(grad)": with_vmap,
        },
        repeats,
        warmup,
        device,
    )
    collector.detach()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = kernel_times(args.batch, args.repeats, args.warmup, device)
    base = results["plain forward+backward"]
    print(
        f"MLP 64-256-256-10, batch {args.batch}, device {device}, threads {torch.get_num_threads()}, "
        f"median of {args.repeats}"
    )
    for label, seconds in results.items():
        print(f"{label:48s} {seconds * 1e3:8.3f} ms   x{seconds / base:5.2f}")


if __name__ == "__main__":
    main()
