"""Ratio of an env episode's time to a plain training loop of the same network, data and iterations.

Both run in this process, interleaved and repeated; the medians are compared (shared machines are noisy, the
ratio holds). The plain loop is written without the env: same model, optimizer, batches and iterations, with
no masks, no decisions and no validation passes; like the env's episode (``reset`` included), it builds its
network and optimizer inside the timing. The env is measured without statistics (its own machinery:
masks, decisions, validation) and as built by default (all four statistic families observed).

    python bench/env_overhead.py [--repeats 5] [--iterations 400] [--interval 40] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timing import interleaved_medians

from sparsity_gym.datasets.splits import DatasetSplits, load_dataset
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.models.zoo import build_network


def plain_loop(
    iterations: int,
    batch_size: int,
    device: str,
    seed: int,
    attach: Callable[[torch.nn.Module, torch.optim.Optimizer, DatasetSplits, torch.Generator], Callable[..., Any]]
    | None = None,
) -> float:
    """Seconds of the plain loop: the default MLP on digits, SGD, seeded batches, ``iterations`` steps, no masks.

    The network and optimizer are built inside the timing, as the env builds them in ``reset``. ``attach`` (the
    driver's benchmark) builds, also inside the timing, what is called with the loss after every optimizer step
    (``pruner.step``), from the model, the optimizer, the data and the loop's generator.
    """
    data = load_dataset("digits").to(device)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = build_network("mlp", data.input_shape, data.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    after_step = attach(model, opt, data, gen) if attach is not None else None
    n = len(data.train_y)
    order, cursor = torch.randperm(n, generator=gen).to(device), 0
    for _ in range(iterations):
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=gen).to(device), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(loss)
    float(loss.detach())  # synchronise
    return time.perf_counter() - start


def env_episode(env: SparsityEnv, seed: int) -> float:
    start = time.perf_counter()
    env.reset(seed=seed)
    done = False
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    while not done:
        _, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--interval", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    envs = {
        "env, no statistics": SparsityEnv(
            total_iterations=args.iterations, decision_interval=args.interval, device=args.device, observations=()
        ),
        "env, default (all four statistics)": SparsityEnv(
            total_iterations=args.iterations, decision_interval=args.interval, device=args.device
        ),
    }
    batch = envs["env, no statistics"].config.batch_size
    runs = {"plain training loop": partial(plain_loop, args.iterations, batch, args.device)}
    runs.update({name: partial(env_episode, env) for name, env in envs.items()})
    medians = interleaved_medians(runs, args.repeats)
    base = medians["plain training loop"]
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}, median of {args.repeats}")
    print(f"default task (mlp 64-256-256-10 on digits, {args.iterations} iterations, decisions every {args.interval})")
    for name, med in medians.items():
        print(f"{name:36s} {1e3 * med / args.iterations:.3f} ms/iteration   x{med / base:.3f}")


if __name__ == "__main__":
    main()
