"""Network families, the seeded architecture generator, padding and the family-sampling env (issue 5)."""

import numpy as np
import pytest
from conftest import TINY_ENV
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.tasks import available_tasks
from sparsity_gym.env.wrappers import PadLayers
from sparsity_gym.experiments.families import (
    available_network_families,
    get_family,
    parse_network,
    random_family,
    random_mlp_specs,
)
from sparsity_gym.experiments.family_env import FamilyEnv

TINY = TINY_ENV
SMALL = ("mlp_8x8", "mlp_8", "mlp_8x8x8")


def test_sized_names_round_trip_and_bad_names_are_clear():
    spec = parse_network("mlp_256x128")
    assert spec.network == "mlp" and dict(spec.kwargs) == {"widths": (256, 128)} and spec.name == "mlp_256x128"
    assert dict(parse_network("cnn_8x16").kwargs) == {"channels": (8, 16)}
    assert parse_network("cnn").kwargs == {} and parse_network("cnn").network == "cnn"
    with pytest.raises(ValueError, match=r"^networks='resnet_9'"):
        parse_network("resnet_9")


@pytest.mark.parametrize("name", available_network_families())
def test_families_have_disjoint_splits(name):
    family = get_family(name)
    assert family.train and family.heldout
    assert not {s.name for s in family.train} & {s.name for s in family.heldout}
    trained_kinds = {s.network for s in family.train}
    if name == "mixed":  # conv layers are trained on, the held-out CNN's widths are not
        assert trained_kinds == {"mlp", "cnn"} and "cnn_16x32" in {s.name for s in family.heldout}
    elif name not in available_tasks():  # a task's family keeps to its kind of network (mnist1d_cnn: cnn1d)
        assert any(s.network not in trained_kinds for s in family.heldout)  # a kind never trained on


def test_unknown_family_is_a_value_error():
    with pytest.raises(ValueError, match=r"^family='nope' is not allowed"):
        get_family("nope")


def test_random_generator_is_seeded_and_distinct():
    a = random_mlp_specs(np.random.default_rng(3), 6)
    b = random_mlp_specs(np.random.default_rng(3), 6)
    assert [s.name for s in a] == [s.name for s in b]
    assert len({s.name for s in a}) == 6
    c = random_mlp_specs(np.random.default_rng(3), 4, exclude=[s.name for s in a])
    assert not {s.name for s in a} & {s.name for s in c}
    assert [s.name for s in random_family(5).train] == [s.name for s in random_family(5).train]


def test_pad_layers_pads_rows_and_slices_actions():
    env = PadLayers(SparsityEnv(**TINY, network_kwargs={"widths": (8,)}), max_layers=4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, env.unwrapped.layout.space.shape[1] + 1) and env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs[:, -1], [1, 1, 0, 0])
    assert not obs[2:].any()
    obs, *_ = env.step(np.array([1.0, -1.0, 0.3, 0.3], np.float32))  # padding entries are ignored
    assert env.unwrapped.action_space.shape == (2,)
    with pytest.raises(ValueError, match="expected \\(4,\\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="max_layers=1"):
        PadLayers(SparsityEnv(**TINY), max_layers=1)


def test_family_env_passes_both_checkers_and_is_seeded():
    env = FamilyEnv(SMALL, TINY)
    assert env.max_layers == 4 and env.observation_space.shape[0] == 4
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=False)
    first, info = env.reset(seed=11)
    again, info2 = env.reset(seed=11)
    np.testing.assert_array_equal(first, again)
    assert info["network"] == info2["network"]
    seen = {env.reset(seed=s)[1]["network"] for s in range(12)}
    assert seen == set(SMALL)  # every training network is sampled
    obs, _ = env.reset(seed=0)
    depth = len(env.layer_names)
    np.testing.assert_array_equal(obs[:, -1], [1.0] * depth + [0.0] * (4 - depth))
    done = False
    while not done:
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and len(info["layer_densities"]) == depth
        done = term or trunc
    assert "test_accuracy" in info and info["network"] in SMALL
