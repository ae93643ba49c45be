"""The periodic held-out evaluation: on the persistent pool it gives the same episodes and logs as in-process."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import TINY_ENV
from stable_baselines3 import PPO
from stable_baselines3.common.logger import KVWriter, Logger

from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.reports.heldout import HeldoutEvaluator
from agents.run.callbacks import BestModelKeeper, HeldoutEvalCallback, HeldoutTensorBoard
from sparsity_gym.experiments.families import parse_network
from sparsity_gym.experiments.family_env import FamilyEnv
from sparsity_gym.experiments.pool import shutdown_shared_pool


class _Memory(KVWriter):
    """A logger output that keeps every recorded scalar."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        self.values.update({k: v for k, v in key_values.items() if isinstance(v, float | int)})

    def close(self) -> None:
        pass


@pytest.mark.usefixtures("one_torch_thread")
def test_pool_evaluation_matches_the_in_process_one(tmp_path):
    env = FamilyEnv(("mlp_8x8",), TINY_ENV)
    model = PPO(
        LayerwisePolicy,
        env,
        n_steps=4,
        batch_size=4,
        seed=0,
        device="cpu",
        policy_kwargs={"hidden": (8,), "feature_names": env.feature_names, "log_std_init": -1.0},
    )
    networks = (parse_network("mlp_12x6"), parse_network("mlp_8"))
    logs, scores = [], []
    try:
        for workers in (1, 2):
            callback = HeldoutEvalCallback(
                networks, TINY_ENV, [2000, 2001], 1, tmp_path / f"w{workers}" / "best_model.zip", workers=workers
            )
            memory = _Memory()
            model.set_logger(Logger(None, [memory]))
            callback.init_callback(model)
            results = callback.evaluate_now()
            model.logger.dump(0)
            logs.append(memory.values)
            scores.append([(r.network, r.seed, r.val_accuracy, r.test_accuracy, r.schedule) for r in results])
            assert (tmp_path / f"w{workers}" / "best_model.zip").exists()
    finally:
        shutdown_shared_pool()
        plt.close("all")  # the schedule figures went to a writer that keeps scalars only
    assert scores[0] == scores[1] and len(scores[0]) == 4
    # the callback is its parts: the evaluator alone gives the same episodes; the keeper and the logging are in it
    alone = HeldoutEvaluator(networks, TINY_ENV, [2000, 2001])(model)
    assert [(r.network, r.seed, r.val_accuracy, r.test_accuracy, r.schedule) for r in alone.results] == scores[0]
    assert isinstance(callback.callback, BestModelKeeper) and isinstance(callback.logs[0], HeldoutTensorBoard)
    assert isinstance(callback.evaluator, HeldoutEvaluator) and callback.evaluator.workers == 2
    assert logs[0].keys() == logs[1].keys() and any(k.startswith("eval_stats/") for k in logs[0])
    for key, value in logs[0].items():
        assert np.isclose(logs[1][key], value), key
