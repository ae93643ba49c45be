"""How much room a learned schedule has: handcrafted schedules with other pruning windows, against seed noise.

Runs the polynomial schedules (linear, quadratic, cubic) with pruning windows ending at ``p_end`` in
``--p-ends``, plus constant, on the chosen networks at one setting (MP-RR, target density 0.1 by default) over
``--seeds`` seeds of their own (the ``benchmark`` range of ``sparsity_gym.experiments.seeds``), and prints per
network and pooled over networks the mean ± std of test and validation accuracy. The spread *between*
schedules set against the std *over seeds* says how large a difference an agent could find and how many
episodes it needs to see it::

    .venv/bin/python bench/schedule_landscape.py                       # the mlp family's held-out networks
    .venv/bin/python bench/schedule_landscape.py --networks mlp_256x256 --seeds 3 --p-ends 0.5 0.75
"""

from __future__ import annotations

import argparse
import functools
import itertools
from collections import defaultdict

import numpy as np

from baselines.fixed_policies import make_schedule_policy
from sparsity_gym.experiments.families import get_family, parse_network
from sparsity_gym.experiments.grid import GridJob, run_grid
from sparsity_gym.experiments.seeds import seeds as seed_range


def main() -> None:
    """Parse the flags, run the grid, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=[s.name for s in get_family("mlp").heldout])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--p-ends", nargs="*", type=float, default=[0.3, 0.5, 0.75, 0.9])
    parser.add_argument("--selector", default="magnitude")
    parser.add_argument("--target-density", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    seeds = seed_range("benchmark", args.seeds)
    jobs = []
    for name in args.networks:
        spec = parse_network(name)
        config = {"selector": args.selector, "target_density": args.target_density, **spec.env_kwargs()}
        for schedule, p_end in itertools.product(("linear", "quadratic", "cubic"), args.p_ends):
            factory = functools.partial(make_schedule_policy, name=schedule, p_end=p_end)
            jobs.append(GridJob(f"{schedule}@{p_end:g}", factory, config, seeds=seeds, network=spec.name))
        constant = functools.partial(make_schedule_policy, name="constant")
        jobs.append(GridJob("constant", constant, config, seeds=seeds, network=spec.name))
    results = run_grid(jobs, backend="process", workers=args.workers, progress=True)

    test: dict[tuple[str, str], list[float]] = defaultdict(list)
    val: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in results:
        test[(r.policy, r.network)].append(100 * r.test_accuracy)
        val[(r.policy, r.network)].append(100 * r.val_accuracy)
    policies = list(dict.fromkeys(r.policy for r in results))
    networks = list(dict.fromkeys(r.network for r in results))
    setting = f"{args.selector}, target {args.target_density}"
    print(f"\ntest accuracy (%), mean ± std over seeds {seeds[0]}-{seeds[-1]}; {setting}")
    print("| schedule | " + " | ".join(networks) + " | pooled test | pooled val |")
    print("|---" * (len(networks) + 3) + "|")
    for policy in policies:
        cells = [f"{np.mean(test[(policy, n)]):.2f} ± {np.std(test[(policy, n)], ddof=1):.2f}" for n in networks]
        pooled_test = np.concatenate([test[(policy, n)] for n in networks])
        pooled_val = np.concatenate([val[(policy, n)] for n in networks])
        print(f"| {policy} | " + " | ".join(cells) + f" | {pooled_test.mean():.2f} | {pooled_val.mean():.2f} |")
    seed_sd = np.mean([np.std(v, ddof=1) for v in test.values()])
    print(f"\nmean std over seeds of one schedule on one network: {seed_sd:.2f} points")


if __name__ == "__main__":
    main()
