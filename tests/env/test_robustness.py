"""Bad input, divergence, resets and kills: nothing crashes a run or loses its results (issue 7)."""

import gc
import json
import os
import signal
import time
import weakref

import numpy as np
import pytest
from cli_helpers import TINY_ARGS, start
from conftest import TINY_ENV
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsity_gym.env.sparsity_env import SparsityEnv

TINY = {**TINY_ENV, "decision_interval": 5}

action_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([-1.0, 1.0, 0.0, float("nan"), float("inf"), -float("inf"), 1e30]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    granularity=st.sampled_from(["weight", "neuron"]),
    selector=st.sampled_from(["magnitude", "random"]),
    regrowth=st.sampled_from(["random", "none"]),
    exchange=st.sampled_from([0.0, 0.3]),
    target=st.sampled_from([None, 0.05, 0.5, 1.0]),
    min_density=st.sampled_from([0.01, 0.2]),
    actions=st.lists(st.lists(action_values, min_size=3, max_size=3), min_size=4, max_size=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_action_sequence_and_config(granularity, selector, regrowth, exchange, target, min_density, actions, seed):
    kwargs = {
        **TINY,
        "granularity": granularity,
        "selector": selector,
        "regrowth": regrowth,
        "exchange_fraction": exchange,
        "target_density": target,
        "min_density": min_density,
        "network_kwargs": {"widths": (6, 5)},
    }
    if target is not None and min_density > target:  # a schedule would sit at min_density and jump at the end
        with pytest.raises(ValueError, match=r"^min_density=.* target_density="):
            SparsityEnv(**kwargs)
        return
    env = SparsityEnv(**kwargs)
    obs, _ = env.reset(seed=seed)
    n = env.action_space.shape[0]
    for raw in actions:
        action = np.asarray(raw[:n], dtype=np.float32)
        expected_invalid = int((~np.isfinite(action) | (np.abs(action) > 1)).sum())
        obs, reward, term, trunc, info = env.step(action)
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        assert info["invalid_actions"] == expected_invalid
        for layer in env.masks.layers:  # exact counts, and masked weights exactly zero
            assert int(layer.unit_mask.sum()) == layer.num_active
            assert not bool(layer.info.module.weight[~layer.active_weight_mask].any())
        if term or trunc:
            break
    assert trunc or term
    if target is not None and not term and regrowth == "random":
        assert info["layer_densities"] == pytest.approx([target] * n, abs=0.21)  # round(d*n) of tiny layers


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"network_kwargs": {"widths": (-3,)}}, "network_kwargs"),
        ({"network_kwargs": {"depth": 3}}, "network_kwargs"),
        ({"stats_window": 99}, "stats_window"),
        ({"observations": ("snr", "snr")}, "observations"),
        ({"device": "tpu:9"}, "device"),
    ],
)
def test_more_bad_config_values(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}="):
        SparsityEnv(**TINY, **kwargs)


def test_same_seed_same_episode_after_divergence_and_reset():
    import torch

    env = SparsityEnv(**TINY)

    def trace(seed):
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in (0.3, -0.4, 0.1, 0.0):
            out.append(env.step(np.full(3, a, np.float32))[0])
        return np.stack(out)

    first = trace(5)
    env.reset(seed=1)
    with torch.no_grad():
        env.model[1].weight.fill_(float("inf"))  # a blow-up mid-episode
    obs, reward, term, trunc, info = env.step(np.zeros(3, np.float32))
    assert term and not trunc and info["diverged"] and reward == env.config.divergence_reward
    assert np.isfinite(obs).all()
    np.testing.assert_array_equal(first, trace(5))


def test_resets_release_network_optimizer_and_hooks():
    env = SparsityEnv(**TINY)
    env.reset(seed=0)

    def count_hooks(model):
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    assert count_hooks(env.model) == 0  # the observers hook the measured steps only
    env.pruner.statistics.set_measuring(True)
    per_episode = count_hooks(env.model)
    assert per_episode > 0
    refs = [weakref.ref(env.model), weakref.ref(env.optimizer), weakref.ref(env.masks)]
    for seed in range(1, 200):
        env.reset(seed=seed)
        env.step(np.zeros(3, np.float32))
    gc.collect()
    assert all(r() is None for r in refs)
    env.pruner.statistics.set_measuring(True)
    assert count_hooks(env.model) == per_episode  # one set of observer hooks, not 200
    assert len(env.optimizer._optimizer_step_post_hooks) == 1


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    run = tmp_path / "run"
    common = ["--run-dir", str(run), *TINY_ARGS]
    proc = start("--total-timesteps", "100000", *common)
    state = run / "checkpoints" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["num_timesteps"] >= 24:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = json.loads(state.read_text())["num_timesteps"]
    assert saved >= 24
    for path in run.rglob("*.zip"):  # complete archives only
        assert path.read_bytes()[:2] == b"PK" and path.stat().st_size > 1000
    target = saved + 16
    out = start("--total-timesteps", str(target), "--resume", *common).communicate(timeout=300)[0]
    assert f"at timestep {saved}" in out, out
    assert json.loads(state.read_text())["num_timesteps"] == target
    assert [p.name for p in (run / "tb").iterdir()] == ["PPO_1"]
    assert (run / "results.md").read_text().count("| ppo |") >= 1
    assert not list(run.rglob(".*.tmp"))
