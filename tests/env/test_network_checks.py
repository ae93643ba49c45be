"""The env checks its network first: a network that does not fit the dataset is one ValueError naming network."""

import gymnasium as gym
import pytest
import torch.nn as nn

import sparsity_gym  # noqa: F401  (registers the ids)
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv


def test_a_zoo_network_that_does_not_fit_the_dataset_names_network_and_the_input_shape():
    # cnn is a 2-D conv net; MNIST-1D's samples are (1, 40) sequences: the builder fails on the shape
    with pytest.raises(
        ValueError, match=r"^network='cnn' cannot be built for dataset='mnist1d' \(inputs of shape \(1, 40\)"
    ) as err:
        gym.make("SparsityGym/Schedule-v0", task="mnist1d_mlp", network="cnn_8x16")
    assert "IndexError" in str(err.value)


def test_a_factory_that_raises_names_network_and_keeps_the_message():
    def broken(input_shape):
        raise RuntimeError("my factory is broken")

    with pytest.raises(ValueError, match=r"^network='broken' cannot be built .*my factory is broken"):
        SparsityEnv(dataset="synthetic", network=broken)


def test_a_factory_whose_network_cannot_take_the_inputs_names_network():
    def wrong_width():
        return nn.Sequential(nn.Flatten(), nn.Linear(99, 4))

    with pytest.raises(ValueError, match=r"^network='wrong_width' cannot take dataset='synthetic' inputs of shape"):
        SparsityEnv(dataset="synthetic", network=wrong_width)


def test_bad_network_kwargs_still_name_network_kwargs():
    with pytest.raises(ValueError, match=r"^network_kwargs="):
        SparsityEnv(dataset="synthetic", network_kwargs={"widths": (-3,)})


def test_a_sized_name_without_a_task_points_to_network_kwargs_and_task():
    with pytest.raises(
        ValueError, match=r"^network='mlp_512' is a sized name.*task=.*network_kwargs=\{'widths': \(512,\)\}"
    ):
        EnvConfig(network="mlp_512")
    with pytest.raises(ValueError, match=r"^network='resnet' is not allowed"):
        EnvConfig(network="resnet")


@pytest.mark.parametrize(("field", "value"), [("max_density", 0.05), ("min_density", 0.2)])
def test_a_density_range_that_excludes_the_target_is_refused(field, value):
    with pytest.raises(ValueError, match=rf"^{field}={value} is not allowed with target_density=0.1; expected"):
        EnvConfig(target_density=0.1, **{field: value})
    EnvConfig(target_density=0.1, action_mode="threshold", **{field: value})  # thresholds do not use the range
