"""Clear errors where outside code goes wrong, and the inputs a sweep passes that must simply work."""

import gymnasium as gym
import numpy as np
import pytest
import torch.nn as nn

import sparsity_gym  # noqa: F401  (registers the ids)
from sparsity_gym.core.checks import UnknownFieldError
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv


def test_step_after_close_says_to_reset_and_reset_rebuilds(tiny):
    env = SparsityEnv(**tiny)
    env.reset(seed=0)
    env.close()
    with pytest.raises(RuntimeError, match=r"step\(\) after close\(\).*reset\(\)"):
        env.step(np.zeros(3, np.float32))
    env.reset(seed=0)
    assert env.step(np.zeros(3, np.float32))[4]["iteration"] == 2


def wrong_input_network():
    return nn.Sequential(nn.Flatten(), nn.Linear(7, 8), nn.ReLU(), nn.Linear(8, 4))


def wrong_output_network():
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (
            wrong_input_network,
            r"network='wrong_input_network' cannot take dataset='synthetic' inputs of shape \(1, 4, 4\)",
        ),
        (wrong_output_network, r"network='wrong_output_network' returns \(2, 3\).*expected logits of shape \(2, 4\)"),
    ],
)
def test_a_network_that_does_not_fit_the_dataset_is_refused_when_built(network, message, tiny):
    with pytest.raises(ValueError, match=message):
        SparsityEnv(**{**tiny, "network": network, "network_kwargs": {}})


def test_redundancy_at_weight_granularity_is_refused(tiny):
    with pytest.raises(ValueError, match="granularity='weight' is not allowed with selector='redundancy'"):
        EnvConfig(**tiny, selector="redundancy", regrowth="random")


@pytest.mark.parametrize(
    "make",
    [
        lambda kw: EnvConfig(**kw),
        lambda kw: SparsityEnv(**kw),
        lambda kw: gym.make("SparsityGym/Schedule-v0", **kw),
        lambda kw: EnvConfig().replace(**kw),
    ],
)
def test_an_unknown_field_names_the_close_match(make, tiny):
    with pytest.raises(UnknownFieldError, match=r"no field 'target_densty'; did you mean 'target_density'\?") as err:
        make({**tiny, "target_densty": 0.2})
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)


def test_numpy_scalars_from_a_sweep_are_python_numbers(tiny):
    cfg = EnvConfig(
        **{**tiny, "total_iterations": np.int64(8), "decision_interval": np.int32(2)},
        target_density=np.float32(0.1),
        lr=np.float32(0.05),
        loss_hold=np.bool_(False),
    )
    assert cfg == EnvConfig(**tiny, target_density=0.1, lr=0.05)
    assert type(cfg.total_iterations) is int and type(cfg.target_density) is float and cfg.target_density == 0.1
    assert type(cfg.loss_hold) is bool
    with pytest.raises(ValueError, match="total_iterations"):
        EnvConfig(total_iterations=np.float32(8.5))


def test_one_family_name_is_that_family(tiny):
    assert EnvConfig(**{**tiny, "observations": "snr"}).observations == ("snr",)
    assert EnvConfig(**{**tiny, "observations": np.array(["snr", "rank"])}).observations == ("snr", "rank")


def test_render_modes(tiny):
    env = SparsityEnv(**tiny, target_density=None, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.array([-1.0, 1.0, 0.0], np.float32))
    image = env.render()
    assert image.shape == (64, 36, 3) and image.dtype == np.uint8
    blue = (image == np.array([40, 90, 200], np.uint8)).all(axis=2)
    heights = [blue[:, 12 * i + 5].sum() for i in range(3)]  # bar heights follow the layers' densities
    assert heights == [1, 64, 32]  # densities 5/256, 1 and 24/48 (round(0.51·48) weights) of 64 rows
    with_target = SparsityEnv(**tiny, target_density=0.25, render_mode="rgb_array")
    with_target.reset(seed=0)
    assert (with_target.render()[48] == np.array([220, 30, 30], np.uint8)).all()  # the target: 64 - 16
    assert SparsityEnv(**tiny).render() is None
    with pytest.raises(ValueError, match=r"render_mode='human' is not allowed; expected None or one of: 'rgb_array'"):
        SparsityEnv(**tiny, render_mode="human")
