"""A hand-made comparison for the report's opponents: 5 policies × 3 networks × 3 seeds at one setting."""

from sparsity_gym.experiments.evaluation import EpisodeResult

NETWORKS = ("mlp_a", "mlp_b", "mlp_c")
SEEDS = (1000, 1001, 1002)
GRID = ("cubic@0.75+lamp", "linear@0.9+erk")
SEARCH, RANDOM = "search (30 episodes)", "random (30 episodes)"
# test accuracy per (policy, network) before the seed's luck: the learned policy is 2 points above the tuned
# cell on a and b and 1 below on c; the search matches it on a; linear@0.9+erk is the better cell on c only
BASE = {
    "ppo": (0.62, 0.52, 0.41),
    "cubic@0.75+lamp": (0.60, 0.50, 0.42),
    "linear@0.9+erk": (0.58, 0.49, 0.45),
    SEARCH: (0.62, 0.51, 0.40),
    RANDOM: (0.55, 0.45, 0.35),
}
RECORDS = [
    {"name": "search", "label": SEARCH, "episodes": 30, "seconds": 12.4},
    {"name": "random", "label": RANDOM, "episodes": 30, "seconds": 10.2},
    {"name": "tuned", "episodes": 12, "seconds": 3.1},
]


def result(policy, network, seed, acc):
    return EpisodeResult(
        policy=policy, network=network, split="heldout", seed=seed, selector="magnitude", granularity="weight",
        target_density=0.01, test_accuracy=acc, val_accuracy=acc, final_density=0.01, inference_flops=10,
        dense_flops=100, training_flops=1000, wall_time_s=1.0, diverged=False, invalid_actions=0,
        progress=[0.0, 0.5], schedule=[[0.5, 0.5], [0.01, 0.01]],
    )  # fmt: skip


def results_for():
    luck = {1000: 0.0, 1001: 0.013, 1002: -0.007}  # shared by every policy on a seed: pairing removes it
    wobble = {"ppo": (0.002, -0.003, 0.004)}  # the learned policy's own noise per seed
    out = []
    for policy, means in BASE.items():
        for net, mean in zip(NETWORKS, means, strict=True):
            for i, seed in enumerate(SEEDS):
                out.append(result(policy, net, seed, mean + luck[seed] + wobble.get(policy, (0, 0, 0))[i]))
    return out
