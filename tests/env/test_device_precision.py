"""Mixed precision (bfloat16 autocast on the CPU, float16 with a scaler on CUDA) and the CUDA path."""

import numpy as np
import pytest
import torch

from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv

KW = {"dataset": "synthetic", "total_iterations": 30, "decision_interval": 10, "batch_size": 32, "network": "cnn"}


def _episode(env, seed=0):
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(np.full(env.action_space.shape, -0.5, dtype=np.float32))
        done = term or trunc
        assert env.observation_space.contains(obs)
        for layer in env.masks.all_layers:
            w = layer.info.module.weight.detach()
            assert torch.all(w[~layer.active_weight_mask] == 0)
            assert w.dtype == torch.float32  # parameters and optimizer stay in float32
    return obs, info


def test_bfloat16_autocast_keeps_statistics_in_float32_and_close_to_full_precision():
    obs32, info32 = _episode(SparsityEnv(**KW))
    env = SparsityEnv(**KW, precision="bfloat16")
    obs16, info16 = _episode(env)
    assert all(t.dtype == torch.float32 for t in env.observers["snr"].unit_scores().values())
    cols = env.layout.columns
    for name in ("snr_above_one", "rank_ed", "contribution_q50", "eq_similarity"):
        np.testing.assert_allclose(obs16[:, cols[name]], obs32[:, cols[name]], atol=0.1)
    assert abs(info16["test_accuracy"] - info32["test_accuracy"]) <= 0.1
    assert info16["density"] == info32["density"]


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision='half' is not allowed"):
        EnvConfig(precision="half")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="precision='float16' is not allowed on device='cpu'"):
            SparsityEnv(**KW, precision="float16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["float32", "float16", "bfloat16"])
def test_cuda_episode_keeps_everything_on_the_device(precision):
    env = SparsityEnv(**KW, device="cuda", precision=precision, selector="snr")
    _, info = _episode(env)
    assert np.isfinite(info["test_accuracy"])
    assert all(t.device.type == "cuda" for t in env.observers["snr"].unit_scores().values())
    assert all(m.unit_mask.device.type == "cuda" for m in env.masks.layers)
