"""The statistic families as the env observes them, against independent recomputations."""

import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import TINY_ENV
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from sparsity_gym.env.env_config import OBSERVATION_FAMILIES
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.stats import gradient_snr
from sparsity_gym.stats.rank import effective_dimension_count, positive_inertia

SUBSETS = [s for r in range(len(OBSERVATION_FAMILIES) + 1) for s in itertools.combinations(OBSERVATION_FAMILIES, r)]
TINY = {**TINY_ENV, "batch_size": 32}


@pytest.mark.parametrize("families", SUBSETS, ids=lambda s: "+".join(s) or "none")
def test_checkers_pass_for_every_subset(families):
    net = "cnn" if len(families) % 2 else "mlp"
    env = SparsityEnv(
        **TINY, network=net, network_kwargs={"channels": (4, 6)} if net == "cnn" else {}, observations=families
    )
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(SparsityEnv(**TINY, observations=families), warn=False)
    width = sum(len(env.layout.layer_groups[i].features) for i in range(len(env.layout.layer_groups)))
    assert env.observation_space.shape[1] == width + 5


def _episode(env, seed=0, action=0.0):
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(np.full(env.action_space.shape, action, np.float32))
        done = term or trunc
    return obs, info


def _cols(env, obs, *names):
    return np.stack([obs[:, env.layout.columns[n]] for n in names], axis=1)


def test_snr_features_match_gradient_snr_of_the_measured_step():
    env = SparsityEnv(
        dataset="synthetic",
        total_iterations=10,
        decision_interval=10,
        batch_size=64,
        stats_window=1,
        observations=("snr",),
        target_density=0.5,
    )
    seen = {}
    env.reset(seed=1)  # builds the training loop; no batch is drawn before the first step
    next_batch = env.loop.next_batch

    def recording_batch():
        seen["batch"] = next_batch()
        return seen["batch"]

    env.loop.next_batch = recording_batch
    # snapshot the network as the single measured (last) step sees it
    env.optimizer.register_step_pre_hook(
        lambda opt, a, k: seen.__setitem__("model", copy.deepcopy(env.model)) if env.model.training else None
    )
    obs, _, _, _, _ = env.step(np.zeros(3, np.float32))
    x, y = seen["batch"]
    snr = gradient_snr(seen["model"], x, y, nn.CrossEntropyLoss())
    for i, layer in enumerate(env.masks.layers):
        values = snr[layer.info.name][layer.weight_mask()].clamp(max=1e12)
        assert obs[i, env.layout.columns["snr_above_one"]] == pytest.approx(
            float((values > 1).float().mean()), abs=1e-6
        )
        expected = float(np.log10(1 + values.double().numpy()).mean()) / 4
        assert obs[i, env.layout.columns["snr_log_mean"]] == pytest.approx(expected, rel=1e-4)


def test_rank_features_match_numpy_svd_of_the_buffer():
    env = SparsityEnv(
        **{**TINY, "decision_interval": 20},
        stats_window=20,
        observations=("rank",),
        network_kwargs={"widths": (24, 16)},
    )
    obs, _ = _episode(env)
    observer = env.observers["rank"]
    for i, (layer, buf) in enumerate(zip(env.masks.layers, observer.buffers, strict=True)):
        rows = buf.rows.double().numpy()
        sigma = np.linalg.svd(rows / np.sqrt(len(rows)), compute_uv=False)
        count = int((sigma > 1e-2).sum())
        assert obs[i, env.layout.columns["rank_ed"]] == pytest.approx(count / layer.info.fan_out, abs=1e-6)
    # the buffer holds post-activations: the successor's input (non-negative after ReLU)
    assert float(observer.buffers[0].rows.min()) >= 0.0


def test_inertia_count_equals_eigenvalue_count():
    gen = torch.Generator().manual_seed(0)
    for m in (1, 2, 3, 7, 40):
        for _ in range(10):
            q, _ = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64))
            eig = torch.randn(m, generator=gen, dtype=torch.float64) * 3  # indefinite: exercises 2x2 pivots
            a = q @ torch.diag(eig) @ q.T
            assert positive_inertia(a) == int((eig > 0).sum())
    h = torch.relu(torch.randn(300, 64, generator=gen))
    h[:, 10:20] = h[:, :10] * 2  # rank deficiency
    assert effective_dimension_count(h, method="inertia") == effective_dimension_count(h, method="eig")


def test_contribution_features_match_brute_force_c_avg():
    env = SparsityEnv(**TINY, stats_window=10, observations=("contribution",), network_kwargs={"widths": (12, 8)})
    env.reset(seed=0)
    captured = []
    first, second = env.masks.layers[0], env.masks.layers[1]
    handle = second.info.module.register_forward_pre_hook(
        lambda m, args: (
            captured.append((args[0].detach().clone(), m.weight.detach().clone()))
            if m.training and env.observers["contribution"].measuring
            else None
        )
    )
    obs, *_ = env.step(np.zeros(3, np.float32))
    handle.remove()
    total, count = np.zeros(12), 0
    for a, w in captured:  # brute force over samples s, next neurons j, neurons k
        a, w = np.abs(a.double().numpy()), np.abs(w.double().numpy())
        for s in range(a.shape[0]):
            for j in range(w.shape[0]):
                denom = float((w[j] * a[s]).sum())
                if denom > 0:
                    total += w[j] * a[s] / denom
                count += 1
    score = (total / count)[first.active_outputs.numpy()]
    q = np.quantile(score / score.mean(), [0.1, 0.5])
    assert _cols(env, obs, "contribution_q10", "contribution_q50")[0] == pytest.approx(q, rel=1e-6)
    assert len(captured) == 10


def test_equilibrium_features_match_a_manual_neq_recursion(monkeypatch):
    from sparsity_gym.stats import EquilibriumTracker

    fed = []  # every output matrix the first layer's tracker receives, recorded at the tracker's door
    original = EquilibriumTracker.update

    def recording(self, outputs):
        if self.num_neurons == 12:
            fed.append(outputs.double().numpy().reshape(len(outputs), -1))
        return original(self, outputs)

    monkeypatch.setattr(EquilibriumTracker, "update", recording)
    env = SparsityEnv(
        **{**TINY, "total_iterations": 40},
        observations=("equilibrium",),
        network_kwargs={"widths": (12, 8)},
        target_density=None,
    )
    env.reset(seed=0)
    last = []
    handle = env.masks.layers[0].info.module.register_forward_hook(
        lambda m, a, out: last.append(out.detach().double().numpy()) if not m.training else None
    )
    for _ in range(4):
        last.clear()
        obs, *_ = env.step(np.zeros(3, np.float32))
    handle.remove()
    assert len(fed) == 5  # the reset's validation pass and one per decision
    val_outputs = np.concatenate(last)[: len(env.data.val_y)]  # the last step also runs the test split
    np.testing.assert_allclose(fed[-1], val_outputs, rtol=1e-6)  # the layer's outputs on the val split
    phis, v = [], np.zeros(12)
    for a, b in itertools.pairwise(fed):  # one cosine per neuron over all samples
        na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
        cos = (a * b).sum(0) / np.where(na * nb > 0, na * nb, 1)
        phis.append(np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) ^ (nb == 0), 0.0, cos)))
    for t in range(1, len(phis)):
        v = (phis[t] - phis[t - 1]) - 0.5 * v
    tracker = env.observers["equilibrium"].trackers[0]
    np.testing.assert_allclose(tracker.phi.numpy(), phis[-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tracker.velocity.numpy(), v, rtol=1e-6, atol=1e-12)
    assert obs[0, env.layout.columns["eq_similarity"]] == pytest.approx(max(phis[-1].mean(), 0.0), rel=1e-5)
    assert obs[0, env.layout.columns["eq_frozen_share"]] == pytest.approx((np.abs(v) < 1e-3).mean())
    expected_v = (np.log10(np.abs(v).mean() + 1e-6) + 6) / 6
    assert obs[0, env.layout.columns["eq_log_velocity"]] == pytest.approx(min(max(expected_v, 0), 1), rel=1e-5)


def test_observers_hook_only_measured_steps_and_release_their_hooks_on_reset_and_close():
    env = SparsityEnv(**TINY)
    env.reset(seed=0)
    model = env.model

    def count():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    statistics = env.pruner.statistics
    assert not statistics.measuring and count() == 0  # an unmeasured step runs without hooks
    statistics.set_measuring(True)
    assert count() > 0
    statistics.set_measuring(False)
    assert count() == 0
    with env.pruner.evaluating():  # the validation pass: the equilibrium family's hooks alone
        assert count() == len(env.observers["equilibrium"].trackers)
    assert count() == 0
    statistics.set_measuring(True)
    env.reset(seed=1)
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0
    env.close()
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in env.model.modules()) == 0


def test_features_are_finite_and_inside_bounds_on_every_step():
    env = SparsityEnv(
        **{**TINY, "total_iterations": 60},
        network="cnn",
        network_kwargs={"channels": (4, 6)},
        granularity="neuron",
        selector="random",
    )
    obs, _ = env.reset(seed=0)
    for a in (-1.0, 0.5, -0.5, 1.0, 0.0, -1.0):
        obs, *_ = env.step(np.full(env.action_space.shape, a, np.float32))
        assert env.observation_space.contains(obs)
        stats = obs[:, env.layout.columns["snr_above_one"] : env.layout.columns["progress"]]
        assert np.isfinite(stats).all() and np.abs(stats).sum() > 0


def test_inertia_count_survives_an_exactly_singular_shifted_gram():
    assert positive_inertia(torch.ones(4, 4, dtype=torch.float64)) == 1  # eigenvalues 4, 0, 0, 0
    assert positive_inertia(torch.zeros(3, 3, dtype=torch.float64)) == 0
    h = torch.zeros(50, 8, dtype=torch.float64)
    h[:, 0] = 0.5  # σ = 0.5 > ε on one column; G − ε²I singular nowhere, and all-zero columns elsewhere
    assert effective_dimension_count(h, method="inertia") == effective_dimension_count(h, method="eig") == 1
