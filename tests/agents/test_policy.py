"""The layer-wise PPO policy: masking of padded rows, save/load, and acting on unseen networks (issue 5)."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import TINY_ENV, untrained_residual_policy
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from agents.ppo.agent import LayerwiseAgent
from agents.ppo.layerwise_policy import LayerwisePolicy
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.wrappers import pad_observation
from sparsity_gym.experiments.evaluation import evaluate
from sparsity_gym.experiments.family_env import FamilyEnv

TINY = TINY_ENV
TRAIN = ("mlp_8x8", "mlp_8")


def six_layer_net(input_shape, num_classes):
    """A user factory: five hidden Linear layers, deeper than anything in the train split."""
    n = int(np.prod(input_shape))
    return nn.Sequential(
        nn.Flatten(),
        *(
            m
            for w_in, w_out in ((n, 12), (12, 10), (10, 10), (10, 8), (8, 8))
            for m in (nn.Linear(w_in, w_out), nn.ReLU())
        ),
        nn.Linear(8, num_classes),
    )


def _policy(rows: int, features: int) -> LayerwisePolicy:
    obs = gym.spaces.Box(-1.0, 10.0, shape=(rows, features + 1), dtype=np.float32)
    act = gym.spaces.Box(-1.0, 1.0, shape=(rows,), dtype=np.float32)
    return LayerwisePolicy(obs, act, lambda _: 1e-3, hidden=(16,))


def test_padding_adds_nothing_to_log_prob_entropy_or_value():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, size=(3, 7)).astype(np.float32)
    small, big = _policy(3, 7), _policy(6, 7)
    big.load_state_dict(small.state_dict())  # the same weights: nothing depends on the number of rows
    unpadded = torch.as_tensor(pad_observation(raw, 3))[None]
    padded = torch.as_tensor(pad_observation(raw, 6))[None]
    actions = torch.as_tensor(rng.uniform(-1, 1, size=(1, 3)).astype(np.float32))
    junk = torch.as_tensor([[0.9, -0.7, 0.2]])  # whatever the padded action entries are
    v1, lp1, ent1 = small.evaluate_actions(unpadded, actions)
    v2, lp2, ent2 = big.evaluate_actions(padded, torch.cat([actions, junk], dim=1))
    torch.testing.assert_close(lp1, lp2)
    torch.testing.assert_close(ent1, ent2)
    torch.testing.assert_close(v1, v2)
    assert lp1.shape == (1,)
    mean = big.get_distribution(padded).distribution.mean
    assert not mean[0, 3:].any()  # padded rows ask for nothing


def test_bad_spaces_are_value_errors():
    flat = gym.spaces.Box(0.0, 1.0, shape=(12,), dtype=np.float32)
    with pytest.raises(ValueError, match="observation_space has shape"):
        LayerwisePolicy(flat, gym.spaces.Box(-1, 1, (3,), np.float32), lambda _: 1e-3)
    with pytest.raises(ValueError, match=r"expected agents\.ppo\.layerwise_policy\.LayerwisePolicy"):
        LayerwiseAgent(object())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    env = FamilyEnv(TRAIN, TINY)
    model = PPO(
        LayerwisePolicy,
        env,
        n_steps=8,
        batch_size=4,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs={"hidden": (16,), "feature_names": env.feature_names},
    )
    model.learn(16)
    path = tmp_path_factory.mktemp("model") / "model.zip"
    model.save(path)
    return model, path, env


def test_saved_policy_loads_with_ppo_load_alone(trained):
    _, path, _ = trained
    code = (
        "import sys; from stable_baselines3 import PPO; m = PPO.load(sys.argv[1]); "
        "print(type(m.policy).__module__, type(m.policy).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["agents.ppo.layerwise_policy", "LayerwisePolicy"]


@pytest.mark.parametrize(
    ("network", "kwargs"),
    [(six_layer_net, {}), ("cnn", {"channels": (4, 4)}), ("mlp", {"widths": (6,)})],
    ids=["user-factory-6-layers", "cnn", "mlp-2-layers"],
)
def test_trained_policy_runs_unchanged_on_held_out_networks(trained, network, kwargs):
    model, path, train_env = trained
    agent = LayerwiseAgent.load(path)
    config = {**TINY, "network": network, "network_kwargs": kwargs}
    env = SparsityEnv(**config)
    depth = env.action_space.shape[0]
    assert depth != train_env.max_layers or network == "cnn"
    obs, _ = env.reset(seed=0)
    action, _ = agent.bind(env).predict(obs)
    assert action.shape == (depth,) and action.dtype == np.float32
    # the loaded weights are the trained ones: same action as the in-memory model on the padded observation
    if depth <= train_env.max_layers:
        expected, _ = model.predict(pad_observation(obs, train_env.max_layers), deterministic=True)
        np.testing.assert_allclose(action, expected[:depth], atol=1e-6)
    [result] = evaluate(agent.bind, config, [3], "ppo", split="heldout")
    assert len(result.schedule[0]) == depth and result.final_density == pytest.approx(0.1, abs=0.05)
    assert result.invalid_actions == 0


def test_evaluate_policy_and_column_check(trained):
    model, _, train_env = trained
    mean_reward, _ = evaluate_policy(model, Monitor(train_env), n_eval_episodes=2)
    assert 0.0 <= mean_reward <= 1.0
    other = SparsityEnv(**TINY, observations=("snr",))
    with pytest.raises(ValueError, match=r"^observations="):
        LayerwiseAgent(model).bind(other)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("prior", ["quadratic", "cosine", "constant"])
def test_untrained_residual_policy_is_its_prior_schedule(prior):
    """With the residual head at zero, the learned policy plays exactly the prior's densities, decision by decision."""
    from baselines import make_policy

    env = FamilyEnv(("mlp_8x8",), {**TINY, "total_iterations": 60})
    policy = untrained_residual_policy(env, prior)
    config = {**TINY, "total_iterations": 60, "network": "mlp", "network_kwargs": {"widths": (8, 8)}}
    [learned] = evaluate(LayerwiseAgent(policy).bind, config, [5], "ppo")
    [schedule] = evaluate(lambda e: make_policy(prior, e), config, [5], prior)
    assert learned.schedule == schedule.schedule and len(learned.schedule) == 6
    assert learned.test_accuracy == schedule.test_accuracy
    # the prior is a constant of the observation: the residual head alone carries gradients
    obs = torch.as_tensor(pad_observation(env.reset(seed=0)[0][:, :-1], env.max_layers))[None]
    policy.get_distribution(obs).distribution.mean.sum().backward()
    assert policy.actor[-1].bias.grad is not None


def test_residual_init_zero_starts_at_the_prior_for_any_seed_and_is_saved(tmp_path):
    """``residual_init="zero"`` (Silver et al. 2018): the untrained mean is the prior's action whatever the seed."""
    env = FamilyEnv(TRAIN, TINY)
    kwargs = {"hidden": (8,), "feature_names": env.feature_names, "prior": "cubic", "density_range": (0.05, 0.9)}
    obs = torch.as_tensor(pad_observation(env.reset(seed=0)[0][:, :-1], env.max_layers))[None]
    means = {}
    for init, seed in [("small", 1), ("small", 2), ("zero", 1), ("zero", 2)]:
        model = PPO(LayerwisePolicy, env, n_steps=4, batch_size=4, device="cpu", seed=seed,
                    policy_kwargs={**kwargs, "residual_init": init})  # fmt: skip
        with torch.no_grad():
            means[init, seed] = model.policy.get_distribution(obs).distribution.mean
        prior = model.policy.prior_actions(*model.policy._split(obs))
    assert torch.equal(means["zero", 1], prior) and torch.equal(means["zero", 2], prior)
    assert not torch.equal(means["small", 1], means["small", 2])  # the small residual depends on the seed
    model.save(tmp_path / "m.zip")
    assert PPO.load(tmp_path / "m.zip", device="cpu").policy.residual_init == "zero"
    with pytest.raises(ValueError, match=r"^residual_init="):
        LayerwisePolicy(env.observation_space, env.action_space, lambda _: 1e-3, residual_init="none")


def test_prior_is_saved_with_the_model_and_validated(tmp_path):
    env = FamilyEnv(TRAIN, TINY)
    kwargs = {"hidden": (8,), "feature_names": env.feature_names, "prior": "cubic", "density_range": (0.05, 0.9)}
    model = PPO(LayerwisePolicy, env, n_steps=4, batch_size=4, device="cpu", policy_kwargs=kwargs)
    model.save(tmp_path / "m.zip")
    loaded = PPO.load(tmp_path / "m.zip", device="cpu").policy
    assert (loaded.prior, loaded.density_range) == ("cubic", (0.05, 0.9))
    obs = gym.spaces.Box(-1.0, 10.0, shape=(3, 5), dtype=np.float32)
    act = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^prior='square'"):
        LayerwisePolicy(obs, act, lambda _: 1e-3, prior="square")
    with pytest.raises(ValueError, match=r"^prior='cubic' is not allowed without the observation columns"):
        LayerwisePolicy(obs, act, lambda _: 1e-3, prior="cubic", feature_names=("a", "b", "c", "d", "valid"))
    with pytest.raises(ValueError, match=r"^density_range="):
        LayerwisePolicy(obs, act, lambda _: 1e-3, density_range=(0.5, 0.2))
