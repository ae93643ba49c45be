"""The env's episode and a user's own loop stepping a Pruner are one mechanism: equal numbers, step for step.

The user loop below is written without the env: its own network factory, seeded the way the env seeds an
episode, the same batch order (a permutation drawn from one generator, which the Pruner's random selection
shares, as in the env), the same optimizer, and the same policy object. Masks, layer densities, observations
and validation accuracies must be *equal* (``==``), not close.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from policy_recorder import Recorder

from baselines import env_kwargs, make_policy, method
from sparsity_gym.datasets import load_dataset
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.pruning.pruner import Pruner

BASE = {"dataset": "synthetic", "total_iterations": 40, "decision_interval": 10, "batch_size": 32}


def user_network() -> nn.Module:
    """A user's own network (not from the zoo) on the synthetic data's 1x4x4 inputs."""
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 4))


def unit_state(masks, freezer) -> list[torch.Tensor]:
    """Each controlled layer's active units, and its frozen units under a freezer."""
    state = [m.unit_mask.clone() for m in masks.layers]
    return state + ([] if freezer is None else [freezer.frozen(i).clone() for i in range(len(masks.layers))])


def env_episode(settings: dict, name: str, seed: int, **policy_kwargs):
    """The env's episode: observations the policy saw, masks and densities after each decision, accuracies."""
    env = SparsityEnv(**BASE, network=user_network, **settings)
    policy = make_policy(name, env, **policy_kwargs)
    obs, _ = env.reset(seed=seed)
    seen, masks, densities, accuracies = [], [], [], []
    done = False
    while not done:
        seen.append(obs)
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        masks.append(unit_state(env.masks, env.freezer))
        densities.append(info["layer_densities"])
        accuracies.append(info["val_accuracy"])
        done = term or trunc
    weights = {k: v.clone() for k, v in env.model.state_dict().items()}
    return seen, masks, densities, accuracies, weights


def user_loop(settings: dict, name: str, seed: int, **policy_kwargs):
    """The same run in a plain PyTorch loop with a Pruner, seeded the way the env seeds an episode."""
    data = load_dataset("synthetic", 0, None)
    torch_seed = int(gym.utils.seeding.np_random(seed)[0].integers(0, 2**62))
    with torch.random.fork_rng():
        torch.manual_seed(torch_seed)
        model = user_network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(torch_seed)

    @torch.no_grad()
    def val_fn():
        out = model(data.val_x)
        correct = (out.argmax(1) == data.val_y).sum()
        return float(correct) / len(data.val_y), float(F.cross_entropy(out, data.val_y, reduction="sum")) / len(
            data.val_y
        )

    policy = Recorder(method(name, **policy_kwargs))
    n, b = len(data.train_y), BASE["batch_size"]
    pruner = Pruner(
        model,
        optimizer,
        policy,
        total_steps=BASE["total_iterations"],
        decision_interval=BASE["decision_interval"],
        input_shape=data.input_shape,
        val_fn=val_fn,
        batch_size=b,
        generator=generator,
        steps_per_epoch=-(-n // b),
        **settings,
    )
    masks, densities, accuracies = [], [], []
    order, cursor = torch.empty(0, dtype=torch.long), 0
    for step in range(BASE["total_iterations"]):
        if cursor + b > len(order):
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + b]
        cursor += b
        loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % BASE["decision_interval"] == 0:  # the decision that opened this interval, before the next
            masks.append(unit_state(pruner.masks, pruner.freezer))
            densities.append(np.array(pruner.masks.densities, dtype=np.float32))
            model.eval()
            accuracies.append(val_fn()[0])
            model.train()
        pruner.step(loss)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return policy.seen, masks, densities, accuracies, weights


CASES = {
    "cell cubic@0.9+erk, global budget": (
        {"budget": "global", "target_density": 0.2, "allocation": "erk", "observations": ()},
        "cubic@0.9+erk",
        {},
    ),
    "snr criterion, threshold mode": ({**env_kwargs("snr"), "observations": ()}, "snr", {}),
    "neq freezing": ({**env_kwargs("neq"), "observations": ("rank", "equilibrium")}, "neq", {}),
    "contribution criterion": ({**env_kwargs("contribution"), "observations": ()}, "contribution", {"start": 0.2}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_user_loop_with_a_pruner_reproduces_the_env_episode(case, one_torch_thread):
    settings, name, policy_kwargs = CASES[case]
    env_run = env_episode(settings, name, seed=3, **policy_kwargs)
    pruner_settings = {k: v for k, v in settings.items() if k not in env_kwargs(name) or k == "observations"}
    user_run = user_loop(pruner_settings, name, seed=3, **policy_kwargs)
    seen_env, masks_env, dens_env, acc_env, weights_env = env_run
    seen_user, masks_user, dens_user, acc_user, weights_user = user_run
    assert len(seen_env) == len(seen_user) == 4
    for a, b in zip(seen_env, seen_user, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(masks_env, masks_user, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    for a, b in zip(dens_env, dens_user, strict=True):
        np.testing.assert_array_equal(a, b)
    assert acc_env == acc_user
    assert weights_env.keys() == weights_user.keys()
    assert all(torch.equal(weights_env[k], weights_user[k]) for k in weights_env)
    changed = [not torch.equal(a, b) for a, b in zip(masks_env[0], masks_env[-1], strict=True)]
    assert any(changed) or any(bool(m.any()) for m in masks_env[-1][len(masks_env[-1]) // 2 :])  # not vacuous
