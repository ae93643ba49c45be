"""Steps per second of seed 003's simple CNN on CIFAR-shaped data (3×32×32, batch 128), CPU or GPU.

Three configurations, interleaved and repeated in this process: a plain training loop (the floor), the env
without statistics, and the env with all four statistic families (``stats_window=1``). The data are random
CIFAR-shaped tensors registered as the dataset ``cifar_shaped`` (no files needed); a step's cost does not
depend on pixel values. Prints steps/s and each env's ratio to the plain loop; ``--precision bfloat16`` /
``float16`` (GPU) measures mixed precision.

    python bench/cnn_speed.py [--device cpu] [--iterations 40] [--repeats 3] [--precision float32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from timing import interleaved_medians

from sparsity_gym.datasets.splits import DATASETS, splits_from_arrays
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.models.zoo import build_network


def cifar_shaped(seed: int, root: str | None = None):
    """2000 random 3×32×32 images in 10 classes (the shape and size of a CIFAR-10 batch, not its content)."""
    rng = np.random.default_rng(seed)
    return splits_from_arrays("cifar_shaped", rng.normal(size=(2000, 3, 32, 32)), np.arange(2000) % 10, seed)


def plain_loop(iterations: int, device: str, precision: str) -> float:
    data = cifar_shaped(0).to(device)
    model = build_network("simple_cnn", data.input_shape, 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    dtype = getattr(torch, precision)
    scaler = torch.amp.GradScaler(device) if precision == "float16" else None
    start = time.perf_counter()
    for i in range(iterations):
        idx = torch.arange(i * 128, (i + 1) * 128, device=device) % len(data.train_y)
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=precision != "float32"):
            out = model(data.train_x[idx])
        loss = F.cross_entropy(out.float(), data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def env_episode(iterations: int, device: str, precision: str, observations: tuple[str, ...]) -> float:
    env = SparsityEnv(
        network="simple_cnn",
        dataset="cifar_shaped",
        total_iterations=iterations,
        decision_interval=iterations // 2,
        observations=observations,
        device=device,
        precision=precision,
        eval_batch_size=512,
    )
    start = time.perf_counter()
    env.reset(seed=0)
    for _ in range(2):
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    env.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    args = parser.parse_args()
    DATASETS.add("cifar_shaped", cifar_shaped)
    it, dev, prec = args.iterations, args.device, args.precision
    families = ("snr", "rank", "contribution", "equilibrium")
    medians = interleaved_medians(
        {
            "plain loop": lambda r: plain_loop(it, dev, prec),
            "env, no statistics": lambda r: env_episode(it, dev, prec, ()),
            "env, all four statistics": lambda r: env_episode(it, dev, prec, families),
        },
        args.repeats,
    )
    print(f"simple_cnn, 3x32x32, batch 128, {it} steps, device {dev}, {prec}, torch threads {torch.get_num_threads()}")
    for name, seconds in medians.items():
        print(f"{name:>26}: {it / seconds:7.1f} steps/s   {seconds / medians['plain loop']:.2f}x the plain loop")


if __name__ == "__main__":
    main()
