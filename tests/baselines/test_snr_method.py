"""SNR pruning in the env (CRITERIA §1): DPF feedback, the snr selector's rule, burn-in and the loss hold."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from baselines import available_policies, env_kwargs, make_policy
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.regrowth import available_regrowth
from sparsity_gym.masks.selectors import SelectionContext
from sparsity_gym.models.layers import find_prunable_layers

KW = {
    "dataset": "synthetic",
    "total_iterations": 60,
    "decision_interval": 10,
    "batch_size": 32,
    "network_kwargs": {"widths": (16, 12)},
}


def _tiny(regrowth="feedback", update_pruned=True, optimizer="sgd"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-2)
    )
    masks = MaskedNetwork(
        find_prunable_layers(model, (5,)),
        regrowth=regrowth,
        optimizer=opt,
        feedback_updates_pruned=update_pruned,
    )
    return model, opt, masks


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def test_feedback_is_a_regrowth_choice():
    assert "feedback" in available_regrowth()
    with pytest.raises(ValueError, match="regrowth='feedback'"):
        EnvConfig(regrowth="feedback", effect="freeze", granularity="neuron", target_density=None)


def test_dpf_step_updates_the_dense_weights_with_the_gradient_at_the_masked_weights():
    model, opt, masks = _tiny()
    masks.set_counts([8, 6])
    x, y = torch.randn(7, 5), torch.randint(0, 3, (7,))
    theta = [m.dense.clone() for m in masks.layers]
    keep = [m.active_weight_mask.clone() for m in masks.layers]
    # independent: the gradient of the loss at W = θ ⊙ m, applied to the dense θ
    ws = [(t * k).requires_grad_() for t, k in zip(theta, keep, strict=True)]
    biases = [model[0].bias.detach().clone(), model[2].bias.detach().clone()]
    out = nn.functional.relu(x @ ws[0].T + biases[0]) @ ws[1].T + biases[1]
    grads = torch.autograd.grad(nn.functional.cross_entropy(out, y), ws)
    opt.zero_grad()
    _loss(model, x, y).backward()
    opt.step()
    for layer, t, k, g in zip(masks.layers, theta, keep, grads, strict=True):
        expected = t - 0.1 * g
        torch.testing.assert_close(layer.dense, expected)
        w = layer.info.module.weight.detach()
        assert torch.equal(w[~k], torch.zeros_like(w[~k]))  # the mask holds exactly after the step
        torch.testing.assert_close(w[k], expected[k])
        assert not torch.equal(layer.dense[~k], t[~k])  # pruned weights were updated (feedback)


def test_update_pruned_false_keeps_the_dense_weights_of_pruned_entries():
    model, opt, masks = _tiny(update_pruned=False)
    masks.set_counts([8, 6])
    theta = [m.dense.clone() for m in masks.layers]
    keep = [m.active_weight_mask.clone() for m in masks.layers]
    for _ in range(3):
        opt.zero_grad()
        _loss(model, torch.randn(7, 5), torch.randint(0, 3, (7,))).backward()
        opt.step()
    for layer, t, k in zip(masks.layers, theta, keep, strict=True):
        assert torch.equal(layer.dense[~k], t[~k])
        assert not torch.equal(layer.dense[k], t[k])


def test_reselection_among_all_weights_and_returning_weights_keep_their_value_and_state():
    model, opt, masks = _tiny(optimizer="adam")
    masks.set_counts([8, 6])
    for _ in range(5):
        opt.zero_grad()
        _loss(model, torch.randn(9, 5), torch.randint(0, 3, (9,))).backward()
        opt.step()
        for layer in masks.layers:  # masks hold after every step, whatever the optimizer
            w = layer.info.module.weight.detach()
            assert torch.equal(w[~layer.active_weight_mask], torch.zeros(int((~layer.active_weight_mask).sum())))
    before = [m.active_weight_mask.clone() for m in masks.layers]
    state = [opt.state[m.info.module.weight]["exp_avg"].clone() for m in masks.layers]
    masks.set_counts([12, 6])
    for layer, old, s in zip(masks.layers, before, state, strict=True):
        dense = layer.dense.flatten().numpy()
        k = int(layer.active_weight_mask.sum())
        top = np.argsort(-np.abs(dense), kind="stable")[:k]  # brute force: top-k |θ| among all weights
        expected = np.zeros(dense.size, dtype=bool)
        expected[top] = True
        assert np.array_equal(layer.active_weight_mask.flatten().numpy(), expected)
        back = layer.active_weight_mask & ~old
        w = layer.info.module.weight.detach()
        torch.testing.assert_close(w[back], layer.dense[back])  # returned with θ, not 0
        assert torch.equal(opt.state[layer.info.module.weight]["exp_avg"][back], s[back])  # state untouched
    assert int(masks.layers[0].active_weight_mask.sum()) == 12


def _rule_brute_force(snr, mags, t):
    """numpy: keep = snr > 10**t OR the count(keep_snr) largest |θ| over all layers (stable, lower index first)."""
    keep_snr = [s > 10.0**tt for s, tt in zip(snr, t, strict=True)]
    k = sum(int(ks.sum()) for ks in keep_snr)
    flat = np.concatenate(mags)
    order = np.argsort(-flat, kind="stable")[:k]
    keep_mag = np.zeros(flat.size, dtype=bool)
    keep_mag[order] = True
    out, offset = [], 0
    for ks, m in zip(keep_snr, mags, strict=True):
        out.append(ks | keep_mag[offset : offset + m.size])
        offset += m.size
    return out


@pytest.mark.parametrize("thresholds", [(0.0, 0.0), (0.5, -0.3)])
def test_snr_rule_keeps_high_snr_or_global_magnitude(thresholds):
    model, _, masks = _tiny()
    masks_snr = MaskedNetwork([m.info for m in masks.all_layers], selector="snr")
    rng = np.random.default_rng(1)
    snr = {m.info.name: torch.from_numpy(rng.exponential(1.0, m.info.module.weight.shape)) for m in masks.layers}
    snr[masks.layers[0].info.name][0, 0] = 1.0  # exactly 1 is pruned by the SNR mask (strict)
    ctx = SelectionContext(torch.Generator().manual_seed(0), {"snr": snr})
    keeps = masks_snr.keeps_from_thresholds(list(thresholds), ctx)
    expected = _rule_brute_force(
        [snr[m.info.name].flatten().numpy() for m in masks.layers],
        [m.info.module.weight.detach().abs().flatten().numpy() for m in masks.layers],
        thresholds,
    )
    for keep, exp in zip(keeps, expected, strict=True):
        assert np.array_equal(keep.numpy(), exp)


def test_snr_rule_options_and_the_minimum_of_one_weight():
    _, _, masks = _tiny()
    infos = [m.info for m in masks.all_layers]
    snr = {m.info.name: torch.zeros(m.info.module.weight.shape) for m in masks.layers}
    snr[infos[0].name][1, 2] = 5.0
    ctx = SelectionContext(torch.Generator().manual_seed(0), {"snr": snr}, {"combine": "and"})
    keeps = MaskedNetwork(infos, selector="snr").keeps_from_thresholds([0.0, 0.0], ctx)
    # combine="and": the one SNR-kept weight survives only if it is also the global magnitude top-1; each
    # layer keeps at least one weight, its highest-SNR one
    assert [int(k.sum()) for k in keeps] == [1, 1]
    assert int(keeps[0].nonzero()) == 1 * 5 + 2
    with pytest.raises(ValueError, match="selector_options"):
        EnvConfig(selector="snr", selector_options={"combine": "xor"})
    with pytest.raises(ValueError, match="selector_options"):
        EnvConfig(selector="magnitude", selector_options={"combine": "or"})


def test_snr_policy_in_the_env_matches_the_rule_at_every_applied_decision():
    env = SparsityEnv(**KW, **env_kwargs("snr"))
    policy = make_policy("snr", env)
    assert "snr" in available_policies("criterion")
    obs, _ = env.reset(seed=3)
    updates, compared = [], 0
    while True:
        snr = env.observers["snr"].unit_scores()
        expected = None
        if snr:
            expected = _rule_brute_force(
                [snr[m.info.name].flatten().numpy() for m in env.masks.layers],
                [m.dense.abs().flatten().numpy() for m in env.masks.layers],
                (0.0,) * len(env.masks.layers),
            )
        before = [m.unit_mask.clone() for m in env.masks.layers]
        action, _ = policy.predict(obs)
        assert action == pytest.approx(np.zeros(3))  # log10(1) on [-2, 2]
        obs, _, term, trunc, info = env.step(action)
        updates.append(info["mask_update"])
        for i, layer in enumerate(env.masks.layers):
            w = layer.info.module.weight.detach()
            assert torch.equal(w[~layer.active_weight_mask], torch.zeros(int((~layer.active_weight_mask).sum())))
            if info["mask_update"] == "applied" and expected is not None:
                assert np.array_equal(layer.unit_mask.flatten().numpy(), expected[i])
                compared += 1
            elif info["mask_update"] != "applied":
                assert torch.equal(layer.unit_mask, before[i])
        if term or trunc:
            break
    # synthetic: 240 training samples, batch 32 -> 8 steps an epoch: only the decision at step 0 is burn-in
    assert updates[0] == "burn_in" and updates[1] == "applied"
    assert compared >= 3 and info["density"] < 1.0


def test_loss_hold_skips_updates_while_the_interval_loss_is_above_its_best():
    env = SparsityEnv(**KW, selector="magnitude", loss_hold=True)
    env.reset(seed=0)
    decisions = env.pruner.decisions  # the episode's gates: burn-in, then the hold on each interval's mean loss
    gates = [decisions.gate(10, loss) for loss in (1.0, 0.9, 1.2, 0.95, 0.8, 0.85)]
    assert gates == ["applied", "applied", "loss_hold", "loss_hold", "applied", "loss_hold"]


@pytest.mark.parametrize(("epochs", "first_applied"), [(0.0, 0), (1.0, 10), (2.5, 20)])
def test_burn_in_epochs(epochs, first_applied):
    env = SparsityEnv(**KW, burn_in_epochs=epochs, target_density=0.5)
    env.reset(seed=0)
    applied_at = []
    for _ in range(3):
        iteration = env.iteration
        _, _, _, _, info = env.step(np.full(3, -1.0, dtype=np.float32))
        if info["mask_update"] == "applied":
            applied_at.append(iteration)
    assert applied_at[0] == first_applied
    assert math.ceil(epochs * 8) <= first_applied


def test_checkers_pass_in_the_snr_setting():
    short = {**KW, "total_iterations": 20}
    gym_check_env(SparsityEnv(**short, **env_kwargs("snr")), skip_render_check=True)
    sb3_check_env(SparsityEnv(**short, **env_kwargs("snr")))
