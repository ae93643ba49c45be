"""One episode's wall time for every member of a task's held-out population, on one thread.

Each member of ``sparsity_gym.experiments.populations.get_population(task)`` plays one episode of a handcrafted
cell (``--cell``, with its allocation rule) at the task's first target (or ``--target``), with the task's env and
every observation family on, as the comparison's baselines do; one torch thread, one process, in order. Printed:
a Markdown table of network, named or drawn, its dense multiply-accumulates per sample and the episode's
seconds (a first, untimed episode loads the dataset). Timings share the machine with whatever else runs on it.

    python bench/population_cost.py [--tasks mnist1d_mlp mnist1d_cnn] [--cell cubic@0.75+lamp] [--target 0.01]
"""

from __future__ import annotations

import argparse
import functools
import time


def main() -> None:
    import torch

    from baselines import env_kwargs, make_policy
    from sparsity_gym.env.tasks import get_task, task_config
    from sparsity_gym.experiments.evaluation import evaluate
    from sparsity_gym.experiments.populations import available_populations, get_population, network_macs
    from sparsity_gym.experiments.seeds import seeds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=list(available_populations()))
    parser.add_argument("--cell", default="cubic@0.75+lamp")
    parser.add_argument("--target", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seed = seeds("benchmark", 1)
    for task in args.tasks:
        population = get_population(task)
        target = args.target or get_task(task).targets[0]
        named = {s.name for s in population.named()}
        print(f"\n{task} (target {target}, {args.cell}, seed {seed[0]}, one thread)\n")
        print("| network | | MACs / sample | episode (s) |\n|---|---|---|---|")
        members = population.members()
        for i, spec in enumerate((members[0], *members)):  # the first episode, untimed, loads the dataset
            config = task_config(task, network=spec.name, target_density=target, **env_kwargs(args.cell))
            start = time.perf_counter()
            evaluate(functools.partial(make_policy, args.cell), config, seed, args.cell, network_name=spec.name)
            seconds = time.perf_counter() - start
            if i == 0:
                continue
            macs = network_macs(spec, population.input_shape, population.num_classes)
            kind = "named" if spec.name in named else "drawn"
            print(f"| `{spec.name}` | {kind} | {macs} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
