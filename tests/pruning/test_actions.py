"""The action maps: affine and log-affine, inverse of each other, and what the env does with them."""

import numpy as np
import pytest
from conftest import TINY_ENV

from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.pruning.actions import from_action, to_action


def test_log_map_is_log_affine_and_inverts():
    a = np.linspace(-1.0, 1.0, 9)
    d = from_action(a, 0.001, 1.0, "log")
    np.testing.assert_allclose(np.log10(d), np.linspace(-3.0, 0.0, 9), atol=1e-12)  # equal steps, equal ratios
    np.testing.assert_allclose(to_action(d, 0.001, 1.0, "log"), a, atol=1e-6)
    assert to_action(0.0, 0.001, 1.0, "log") == -1.0 and to_action(2.0, 0.001, 1.0, "log") == 1.0
    np.testing.assert_allclose(from_action(a, 0.02, 1.0), 0.02 + (a + 1) / 2 * 0.98)  # the affine default


def test_env_maps_density_actions_on_its_scale():
    env = SparsityEnv(**TINY_ENV, action_scale="log", min_density=0.01, target_density=None)
    env.reset(seed=0)
    action = np.array([0.0, -1.0, 1.0], np.float32)
    np.testing.assert_allclose(env.densities_from_action(action), [0.1, 0.01, 1.0], rtol=1e-9)
    np.testing.assert_allclose(env.density_to_action(np.array([0.1, 0.01, 1.0])), action, atol=1e-6)
    with pytest.raises(ValueError, match="action_scale='cubic'"):
        EnvConfig(action_scale="cubic")
