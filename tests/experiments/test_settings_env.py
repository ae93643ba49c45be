"""Training across settings: the seeded draw of (family, network, target), the per-episode target, the refusals."""

import numpy as np
import pytest

from agents.ppo.paired_reward import family_draw
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.settings_env import SettingsEnv, check_shared, expand_settings, setting_label

TINY = {"dataset": "synthetic", "batch_size": 16, "budget": "global", "action_scale": "log", "min_density": 0.001}
MLP = EnvConfig(**TINY, total_iterations=20, decision_interval=10)
DEEP = EnvConfig(**TINY, total_iterations=40, decision_interval=20)  # another training length, as mnist1d_cnn's
TARGETS = (0.05, 0.2, 0.5)


def groups():
    return {"a": (("mlp_8x8", "mlp_8"), MLP), "b": (("mlp_6x6x6",), DEEP)}


def draws(env, seeds):
    out = []
    for seed in seeds:
        _, info = env.reset(seed=seed)
        out.append((info["family"], info["network"], info["target_density"]))
    return out


def test_expand_settings_gives_every_family_network_and_target_with_the_family_own_config():
    settings = expand_settings(groups(), TARGETS)
    assert [s.label for s in settings[:3]] == ["a@0.05/mlp_8x8", "a@0.2/mlp_8x8", "a@0.5/mlp_8x8"]
    assert len(settings) == 3 * 3
    assert {(s.family, s.config.total_iterations) for s in settings} == {("a", 20), ("b", 40)}
    assert sorted({s.target for s in settings}) == list(TARGETS)
    assert setting_label("a", 0.010) == "a@0.01"


def test_the_same_seed_draws_the_same_settings_and_every_setting_is_drawn():
    env, again = SettingsEnv(expand_settings(groups(), TARGETS)), SettingsEnv(expand_settings(groups(), TARGETS))
    seeds = range(40)
    first = draws(env, seeds)
    assert first == draws(again, seeds)
    assert len(set(first)) == 9  # every (family, network, target) of the set
    # the draw is FamilyEnv's (the paired reward's seed pool predicts it from the seed alone)
    for seed in range(5):
        env.reset(seed=seed)
        assert env.index == family_draw(seed, len(env.settings))[0]
    # unseeded resets continue the env's own stream: the same after the same first seed
    env.reset(seed=7)
    again.reset(seed=7)
    assert draws(env, [None] * 6) == draws(again, [None] * 6)


def test_the_episode_target_is_observed_and_is_the_budget_the_episode_ends_on():
    env = SettingsEnv(expand_settings(groups(), TARGETS))
    column = env.feature_names.index("target_density")
    seen = set()
    for seed in range(8):
        obs, info = env.reset(seed=seed)
        target = info["target_density"]
        valid = obs[:, -1] == 1.0
        assert np.allclose(obs[valid, column], target) and np.all(obs[~valid] == 0.0)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
            done = terminated or truncated
        assert info["density"] == pytest.approx(target, rel=0.05)  # projected onto this episode's target
        seen.add(target)
    assert len(seen) > 1
    assert env.max_layers == 4 and env.observation_space.shape[0] == 4  # padded to the deepest (mlp_6x6x6)


def test_families_that_cannot_share_an_env_are_refused_in_one_line():
    other = {"a": (("mlp_8",), MLP), "b": (("mlp_8",), DEEP.replace(selector="random"))}
    with pytest.raises(ValueError, match=r"^selector='random' of family 'b' is not allowed with selector='magnitude'"):
        expand_settings(other, TARGETS)
    with pytest.raises(ValueError, match="distinct target densities"):
        expand_settings(groups(), (0.1, 0.1))
    with pytest.raises(ValueError, match="targets"):
        expand_settings(groups(), (1.5,))
    check_shared({"a": MLP, "b": DEEP})  # only the training length differs: allowed


def test_ranges_record_targets_families_networks_and_depths():
    env = SettingsEnv(expand_settings(groups(), TARGETS))
    assert env.ranges() == {
        "targets": [0.05, 0.2, 0.5],
        "families": ["a", "b"],
        "networks": ["mlp_6x6x6", "mlp_8", "mlp_8x8"],
        "depths": [2, 4],
    }
