"""Overhead of the pruning driver in a user's loop, beside the env's own overhead, both against the plain loop.

One process, every configuration once per round (interleaved), medians compared (the machine is noisy; the
ratios hold). The plain loop is ``bench/env_overhead.py``'s: the default MLP on digits, SGD, seeded batches,
``--iterations`` steps, no masks, the network built inside the timing. Against it:

* the same loop (``plain_loop``'s ``attach``) with ``pruner.step(loss)`` after every ``optimizer.step()``: a
  ``Pruner`` with a schedule policy (the ``cubic`` cell: no statistics collected, no validation), decisions every
  ``--interval`` steps, target 0.1; the Pruner is built inside the timing (layer discovery, its first decision);
* the same with a validation pass at every decision (``val_fn``, as the env runs one);
* the env's episode without statistics (``observations=()``: masks, decisions, validation passes) acting with the
  same policy (the ``cubic`` cell's actions), measured as ``bench/env_overhead.py`` measures an episode (reset
  included).

Both sides build their network and optimizer inside the timing (the env in ``reset``), run the same decisions on
the same masks, and neither collects statistics. The driver's ratio must be at most the env's.

    python bench/driver_overhead.py [--repeats 5] [--iterations 400] [--interval 40] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from env_overhead import plain_loop
from timing import interleaved_medians

from baselines import make_policy, method
from sparsity_gym.datasets.splits import DatasetSplits
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.seeds import seed_start
from sparsity_gym.pruning.pruner import Pruner


def validation(model: torch.nn.Module, data: DatasetSplits) -> tuple[float, float]:
    """Accuracy and mean loss on the validation split (what the env's validation pass computes)."""
    out = model(data.val_x)
    return float((out.argmax(1) == data.val_y).float().mean()), float(F.cross_entropy(out, data.val_y))


def driver_loop(iterations: int, interval: int, batch_size: int, device: str, validate: bool, seed: int) -> float:
    """Seconds of the plain loop with a Pruner stepped after every optimizer step (built inside the timing)."""

    def attach(
        model: torch.nn.Module, opt: torch.optim.Optimizer, data: DatasetSplits, gen: torch.Generator
    ) -> Callable[..., None]:
        pruner = Pruner(
            model,
            opt,
            method("cubic"),
            target_density=0.1,
            total_steps=iterations,
            decision_interval=interval,
            val_fn=partial(validation, model, data) if validate else None,
            generator=gen,
        )
        return pruner.step

    return plain_loop(iterations, batch_size, device, seed, attach)


def env_episode(env: SparsityEnv, seed: int) -> float:
    """Seconds of one env episode (reset included) acting with the ``cubic`` cell's policy."""
    policy = make_policy("cubic", env)
    start = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(policy.predict(obs)[0])
        done = terminated or truncated
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--interval", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = SparsityEnv(
        total_iterations=args.iterations,
        decision_interval=args.interval,
        device=args.device,
        observations=(),
        target_density=0.1,
    )
    batch = env.config.batch_size
    first = seed_start("benchmark")
    common = (args.iterations, args.interval, batch, args.device)
    runs = {
        "plain training loop": lambda r: plain_loop(args.iterations, batch, args.device, first + r),
        "loop + pruner.step(), schedule": lambda r: driver_loop(*common, False, first + r),
        "loop + pruner.step(), schedule, val_fn": lambda r: driver_loop(*common, True, first + r),
        "env, no statistics": lambda r: env_episode(env, first + r),
    }
    medians = interleaved_medians(runs, args.repeats)
    base = medians["plain training loop"]
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}, median of {args.repeats}")
    print(f"default task (mlp 64-256-256-10 on digits, {args.iterations} iterations, decisions every {args.interval})")
    for name, med in medians.items():
        print(f"{name:40s} {1e3 * med / args.iterations:.3f} ms/iteration   x{med / base:.3f}")
    driver, reference = medians["loop + pruner.step(), schedule, val_fn"], medians["env, no statistics"]
    print(f"driver (with validation) / env: {driver / reference:.3f}")


if __name__ == "__main__":
    main()
