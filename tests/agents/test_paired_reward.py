"""Paired rewards on a tiny env: the reference on the same network and seed, run once and cached."""

import functools
import json

import numpy as np
import pytest

from agents.ppo.paired_reward import PairedReward, ReferenceCache, family_draw, seed_pool
from baselines import make_policy
from sparsity_gym.experiments.evaluation import evaluate
from sparsity_gym.experiments.family_env import FamilyEnv

TINY = {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10, "batch_size": 16}
NETS = ("mlp_8", "mlp_8x8")


def _episode(env, policy, seed=None):
    obs, _ = env.reset(seed=seed)
    done, reward, info = False, 0.0, {}
    while not done:
        action, _ = policy.predict(obs[:, :-1][obs[:, -1] > 0.5])
        padded = np.zeros(env.action_space.shape, np.float32)
        padded[: len(action)] = action
        obs, reward, terminated, truncated, info = env.step(padded)
        done = terminated or truncated
    return reward, info


def test_seed_pool_gives_each_network_its_seeds():
    pool = seed_pool(3, 4)
    assert [len(p) for p in pool] == [4, 4, 4] and len({s for p in pool for s in p}) == 12
    assert all(family_draw(s, 3)[0] == i for i, p in enumerate(pool) for s in p)


@pytest.mark.usefixtures("one_torch_thread")
def test_paired_reward_subtracts_the_reference_on_the_same_network_and_seed(tmp_path):
    cache = ReferenceCache(tmp_path / "reference.json")
    reference = functools.partial(make_policy, "constant")
    env = PairedReward(FamilyEnv(NETS, TINY), reference, cache, per_network=1)
    own = make_policy("constant", env.family.envs[0])
    # the reference itself acting: the same network, seed and schedule, so the paired reward is exactly 0
    reward, info = _episode(env, own, seed=0)
    assert reward == pytest.approx(0.0, abs=1e-12) and info["unpaired_reward"] == info["reference_val_accuracy"]
    # an independent computation of the reference: evaluate() on that network with the inner seed
    net = info["network"]
    inner = env._inner
    expected = evaluate(reference, env.family.envs[NETS.index(net)].config, [inner], "constant")[0].val_accuracy
    assert info["reference_val_accuracy"] == pytest.approx(expected)
    # another policy: its own final accuracy minus the reference's
    cubic = make_policy("cubic", env.family.envs[0])
    for _ in range(3):
        reward, info = _episode(env, cubic)
        assert reward == pytest.approx(info["unpaired_reward"] - info["reference_val_accuracy"])
    # the pool has 2 (network, seed) pairs, so the reference ran at most twice in 4 episodes, and is on disk
    assert cache.episodes <= 2 and len(json.loads((tmp_path / "reference.json").read_text())) == cache.episodes
    again = ReferenceCache(tmp_path / "reference.json")
    assert again.values == cache.values
    env.close()


def test_paired_reward_needs_the_final_accuracy_reward():
    with pytest.raises(ValueError, match="reward="):
        PairedReward(FamilyEnv(NETS, {**TINY, "reward": "delta_accuracy"}), make_policy, ReferenceCache())
