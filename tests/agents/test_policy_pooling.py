"""The DeepSets actor: each layer's action sees every layer; order, padding and depth do not matter."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from agents.ppo.layerwise_policy import LayerwisePolicy

FEATURES = 6
NAMES = ("a", "b", "progress", "target_density", "c", "d", "valid")


def _policy(rows, pooling="deepsets", prior="none"):
    obs = gym.spaces.Box(-1.0, 10.0, shape=(rows, FEATURES + 1), dtype=np.float32)
    act = gym.spaces.Box(-1.0, 1.0, shape=(rows,), dtype=np.float32)
    policy = LayerwisePolicy(
        obs, act, lambda _: 1e-3, hidden=(16, 8), pooling=pooling, prior=prior, feature_names=NAMES
    )
    torch.manual_seed(0)
    for p in policy.parameters():  # larger weights than the init (last layer gain 0.01) so differences show
        torch.nn.init.normal_(p, std=0.5)
    return policy


def _obs(raw, rows, garbage=False, seed=1):
    out = np.zeros((1, rows, FEATURES + 1), np.float32)
    if garbage:
        out[0, :, :-1] = np.random.default_rng(seed).uniform(-100, 100, (rows, FEATURES))
    out[0, : len(raw), :-1] = raw
    out[0, : len(raw), -1] = 1.0
    return torch.as_tensor(out)


def _means(policy, obs):
    with torch.no_grad():
        return policy.get_distribution(obs).distribution.mean[0].numpy()


@pytest.fixture
def raw():
    x = np.random.default_rng(0).uniform(0, 1, (5, FEATURES)).astype(np.float32)
    x[:, 3] = 0.1  # target density column
    return x


@pytest.mark.parametrize("prior", ["none", "cubic"])
def test_permuting_layers_permutes_their_actions(raw, prior):
    policy = _policy(5, prior=prior)
    perm = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(_means(policy, _obs(raw[perm], 5)), _means(policy, _obs(raw, 5))[perm], atol=1e-6)


def test_padding_with_garbage_changes_nothing(raw):
    policy = _policy(9)
    clean, dirty = _obs(raw, 9), _obs(raw, 9, garbage=True)
    np.testing.assert_allclose(_means(policy, dirty), _means(policy, clean), atol=1e-6)
    assert not _means(policy, dirty)[5:].any()
    actions = torch.as_tensor(np.random.default_rng(2).uniform(-1, 1, (1, 9)).astype(np.float32))
    with torch.no_grad():
        for a, b in zip(policy.evaluate_actions(clean, actions), policy.evaluate_actions(dirty, actions), strict=True):
            torch.testing.assert_close(a, b)


def test_one_set_of_weights_for_any_depth(raw):
    small, big = _policy(5), _policy(12)
    big.load_state_dict(small.state_dict())
    np.testing.assert_allclose(_means(big, _obs(raw, 12))[:5], _means(small, _obs(raw, 5)), atol=1e-6)
    deeper = np.concatenate([raw, raw[:3] * 0.5])
    assert _means(big, _obs(deeper, 12))[:8].shape == (8,)


def test_each_layer_sees_the_others_only_with_pooling(raw):
    changed = raw.copy()
    changed[4, 0] += 3.0  # another layer's row
    pooled, alone = _policy(5), _policy(5, pooling="none")
    assert not np.allclose(_means(pooled, _obs(changed, 5))[0], _means(pooled, _obs(raw, 5))[0])
    np.testing.assert_allclose(_means(alone, _obs(changed, 5))[0], _means(alone, _obs(raw, 5))[0])


def test_bad_pooling_is_a_value_error():
    with pytest.raises(ValueError, match="pooling='attention'"):
        _policy(3, pooling="attention")


class _Env(gym.Env):
    """The smallest env with a padded layer-row observation."""

    observation_space = gym.spaces.Box(-1.0, 10.0, shape=(4, FEATURES + 1), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.ones(self.observation_space.shape, np.float32), 0.0, True, False, {}


@pytest.mark.parametrize("kwargs", [{"pooling": "deepsets"}, {}])  # {}: a model saved before the option
def test_save_load_roundtrip(tmp_path, raw, kwargs):
    model = PPO(LayerwisePolicy, _Env(), n_steps=4, batch_size=4, device="cpu", seed=0,
                policy_kwargs={"hidden": (8,), **kwargs})  # fmt: skip
    model.save(tmp_path / "m.zip")
    loaded = PPO.load(tmp_path / "m.zip", device="cpu")
    assert loaded.policy.pooling == kwargs.get("pooling", "none")
    obs = _obs(raw[:3], 4)
    np.testing.assert_allclose(_means(loaded.policy, obs), _means(model.policy, obs), atol=1e-6)
