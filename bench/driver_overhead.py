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

``--own-loop`` measures the README's own-loop example instead (:mod:`own_loop`: its 40-300-100-10 network on
MNIST-1D, 920 steps of batch 128, the ``cubic@0.75+erk`` cell at 1% on a global budget, ten decisions), the
plain loop against the same loop with ``pruner.step(loss)``, with and without the README's validation function,
on one torch thread (the README's target: at most 1.10x). ``--cpu-time`` times this process's CPU seconds
instead of wall-clock seconds (steadier when other processes share the machine).

    python bench/driver_overhead.py [--repeats 5] [--iterations 400] [--interval 40] [--device cpu]
    python bench/driver_overhead.py --own-loop [--repeats 9] [--cpu-time]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from env_overhead import plain_loop
from own_loop import own_loop, readme_data
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


def own_loop_overhead(repeats: int, steps: int, cpu_time: bool) -> None:
    """The README's own-loop example: the plain loop against the same loop with a Pruner, on one torch thread."""
    torch.set_num_threads(1)
    data = readme_data()
    policy = method("cubic@0.75+erk")
    clock = time.process_time if cpu_time else time.perf_counter
    runs = {
        "README's plain loop": lambda r: own_loop(data, steps, r, clock=clock),
        "loop + pruner.step(), no val_fn": lambda r: own_loop(data, steps, r, policy, False, clock),
        "loop + pruner.step(), README's val_fn": lambda r: own_loop(data, steps, r, policy, True, clock),
    }
    medians = interleaved_medians(runs, repeats)
    base = medians["README's plain loop"]
    kind = "CPU" if cpu_time else "wall-clock"
    print(f"torch threads: 1, cpu, median of {repeats} ({kind} seconds)")
    print(f"README's own loop (mlp 40-300-100-10 on MNIST-1D, {steps} steps of 128, cubic@0.75+erk to 1%, global)")
    for name, med in medians.items():
        print(f"{name:40s} {1e3 * med / steps:.3f} ms/iteration   x{med / base:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--interval", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--own-loop", action="store_true", help="the README's own-loop example (920 steps)")
    parser.add_argument("--cpu-time", action="store_true", help="CPU seconds of this process, not wall-clock")
    args = parser.parse_args()
    if args.own_loop:
        own_loop_overhead(args.repeats, 920, args.cpu_time)
        return
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
