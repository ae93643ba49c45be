"""Inference time of a compacted network over the masked network it came from (neuron granularity).

For the default MLP (64-256-256-10) and the zoo CNN on (1, 8, 8) inputs, every hidden layer is masked at
neuron density 0.25 (magnitude selector), then :func:`sparsity_gym.masks.compaction.compact` builds the smaller
network. Both run in this process in eval mode under ``torch.no_grad()`` on one batch, timed in interleaved
rounds (each round times ``--inner`` forwards of one network, then of the other, in alternating order); the
medians are compared (shared machines are noisy, the ratio holds better than the times).

    python bench/compaction.py [--rounds 200] [--inner 20] [--batch 256] [--density 0.25] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from sparsity_gym.masks.compaction import compact, compaction_summary
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.models.layers import find_prunable_layers
from sparsity_gym.models.zoo import build_network

SHAPE = (1, 8, 8)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model: nn.Module, x: torch.Tensor, inner: int) -> float:
    """Seconds per forward pass, averaged over ``inner`` passes."""
    _sync(x.device)
    start = time.perf_counter()
    for _ in range(inner):
        model(x)
    _sync(x.device)
    return (time.perf_counter() - start) / inner


def bench(network: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    torch.manual_seed(args.seed)
    model = build_network(network, SHAPE, 10).to(device)
    masks = MaskedNetwork(find_prunable_layers(model, SHAPE), "neuron", "magnitude")
    masks.set_densities([args.density] * len(masks.layers))
    compacted = compact(model, masks)
    model.eval()
    compacted.eval()
    x = torch.randn(args.batch, *SHAPE, device=device)
    masked_times: list[float] = []
    compact_times: list[float] = []
    with torch.no_grad():
        if not torch.allclose(model(x), compacted(x), atol=1e-5):
            raise RuntimeError(f"{network}: the compacted network's outputs differ from the masked network's")
        for _ in range(5):  # warm-up
            time_forward(model, x, args.inner)
            time_forward(compacted, x, args.inner)
        for r in range(args.rounds):
            pair = [(model, masked_times), (compacted, compact_times)]
            for net, times in pair if r % 2 == 0 else pair[::-1]:
                times.append(time_forward(net, x, args.inner))
    summary = compaction_summary(model, compacted)
    masked_s, compact_s = statistics.median(masked_times), statistics.median(compact_times)
    widths = [f"{v['out_before']}->{v['out_after']}" for v in summary["layers"].values()]
    print(
        f"{network:4s} widths {' '.join(widths)} | params {summary['params_before']} -> {summary['params_after']} "
        f"(ratio {summary['param_ratio']:.3f}) | masked {masked_s * 1e6:8.1f} us, compact {compact_s * 1e6:8.1f} us "
        f"per batch of {args.batch} | time ratio compact/masked {compact_s / masked_s:.3f}"
    )
    return {"time_ratio": compact_s / masked_s, "param_ratio": summary["param_ratio"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--density", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"{args.rounds} rounds x {args.inner} forwards, neuron density {args.density} per hidden layer"
    )
    for network in ("mlp", "cnn"):
        bench(network, args, device)


if __name__ == "__main__":
    main()
