"""Any static point as the actor's prior: zero residual plays the point, the vectorised prior, the residual's reach."""

import numpy as np
import pytest
import torch
from conftest import TINY_ENV, untrained_residual_policy

from agents.ppo.agent import LayerwiseAgent
from agents.ppo.prior_map import PriorMap, parse_prior, prior_env, residual_for_factor
from baselines import env_kwargs, make_policy
from baselines.schedules import SCHEDULES, polynomial
from baselines.static import parse_static
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.wrappers import pad_observation
from sparsity_gym.experiments.evaluation import evaluate
from sparsity_gym.experiments.family_env import FamilyEnv
from sparsity_gym.pruning.actions import from_action, to_action
from sparsity_gym.pruning.budget import tilted

POINTS = [
    "poly[s=0.1,e=0.9,p=5]+uniform[first=12,last=15]",
    "poly[s=0.2,e=0.8,p=2]+erk[first=0.5]",
    "poly[s=0.05,e=0.7,p=1.5]+lamp",
    "poly[s=0.2,e=0.8,p=2]",
]
NET = {"network": "mlp", "network_kwargs": {"widths": (8, 8)}}


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("scale", ["linear", "log"])
def test_untrained_policy_with_a_static_prior_plays_the_static_point(point, scale):
    """Residual head at zero, any static point as the prior: the same episodes as the point itself (==)."""
    maps = {"action_scale": scale, "min_density": 0.001 if scale == "log" else 0.02}
    base = EnvConfig(**{**TINY_ENV, "total_iterations": 60}, budget="global", target_density=0.2, **maps)
    env_config = prior_env(point, base)
    env = FamilyEnv(("mlp_8x8",), env_config)
    policy = untrained_residual_policy(env, point)
    learned = evaluate(LayerwiseAgent(policy).bind, env_config.replace(**NET), [5, 6], "ppo")
    played = evaluate(lambda e: make_policy(point, e), base.replace(**NET, **env_kwargs(point)), [5, 6], point)
    for mine, theirs in zip(learned, played, strict=True):
        np.testing.assert_array_equal(np.asarray(mine.schedule), np.asarray(theirs.schedule))
        assert mine.test_accuracy == theirs.test_accuracy and mine.final_density == theirs.final_density
        assert len(mine.schedule) == 6


def _scalar_prior(prior, progress, target, shares, low):
    """The reference, one row at a time: the schedule's ``d(t)``, then StaticPolicy's tilted request."""
    target = target if target > 0 else 1.0
    if prior.startswith("poly["):
        knobs = parse_static(prior)
        d = polynomial(progress, target, knobs.exponent, knobs.start, knobs.end)
        if not knobs.multiplied:
            return np.full(len(shares), d)
        return tilted(np.full(len(shares), d), knobs.multipliers(len(shares)), shares, [low] * len(shares))
    shape, _, end = prior.partition("@")
    window = {"p_end": float(end)} if end and shape != "constant" else {}
    return np.full(len(shares), SCHEDULES[shape](progress, target, **window))


@pytest.mark.parametrize("prior", [*POINTS, "cubic", "cosine@0.9", "constant", "linear@0.6"])
def test_vectorised_prior_equals_the_scalar_reference(prior):
    rng = np.random.default_rng(3)
    n, rows, low = 64, 6, 0.001
    names = ("progress", "target_density", "param_share", "density")
    features = np.zeros((n, rows, len(names)), dtype=np.float32)
    counts = rng.integers(1, rows + 1, size=n)
    valid = np.arange(rows)[None] < counts[:, None]
    features[..., 0] = rng.uniform(0, 1, size=(n, 1))
    features[..., 1] = np.where(rng.uniform(size=(n, 1)) < 0.2, -1.0, rng.uniform(0.005, 0.5, size=(n, 1)))
    shares = rng.uniform(0.01, 1, size=(n, rows)) * valid
    features[..., 2] = shares / shares.sum(1, keepdims=True)
    prior_map = PriorMap(prior, names, (low, 1.0), "log")
    got = prior_map.densities(features, valid)
    for i in range(n):
        k = counts[i]
        row = features[i].astype(np.float64)
        want = _scalar_prior(prior, row[0, 0], row[0, 1], row[:k, 2], low)
        np.testing.assert_allclose(got[i, :k], want, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(prior_map.actions(features, valid)[i, :k], to_action(want, low, 1.0, "log"))


def test_prior_parsing_and_its_env():
    assert parse_prior("cubic@0.9").exponent == 3.0 and parse_prior("cubic@0.9").end == 0.9
    spec = parse_prior("poly[s=0.1,e=0.9,p=5]+uniform[first=12,last=15]")
    assert (spec.first, spec.last, spec.allocation, spec.multiplied) == (12.0, 15.0, "uniform", True)
    base = EnvConfig(**TINY_ENV, budget="global", allocation="erk")
    tilted_env = prior_env("poly[s=0.1,e=0.9,p=5]+lamp", base)
    assert (tilted_env.allocation, tilted_env.allocation_tilt) == ("lamp", True)
    assert prior_env("poly[s=0.1,e=0.9,p=5]", base).allocation == "policy"
    assert prior_env("cubic", base) == base
    with pytest.raises(ValueError, match=r"^prior='poly\[s=0.9,e=0.5\]': .*end"):
        parse_prior("poly[s=0.9,e=0.5]")
    with pytest.raises(ValueError, match=r"^prior='cubic\+erk' is not allowed"):
        parse_prior("cubic+erk")
    with pytest.raises(ValueError, match=r"param_share"):
        PriorMap("poly[s=0.1,e=0.9,p=5]+uniform[first=3]", ("progress", "target_density"), (0.01, 1.0), "log")
    with pytest.raises(ValueError, match=r"^action_scale='linear' is not allowed"):
        residual_for_factor(20.0, (0.001, 1.0), "linear")


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_residual_of_log_20_moves_a_layer_by_20x_and_the_budget_holds(sign):
    """±log 20 on the first layer: its request is the prior's ×20 (÷20); the episode still ends on the target."""
    point, low = "poly[s=0.1,e=0.8,p=3]+uniform[last=2]", 0.001
    base = EnvConfig(**{**TINY_ENV, "total_iterations": 60}, budget="global", target_density=0.03, min_density=low)
    env_config = prior_env(point, base.replace(action_scale="log"))
    env = FamilyEnv(("mlp_8x8",), env_config)
    policy = untrained_residual_policy(env, point)
    shift = residual_for_factor(20.0, (low, 1.0)) * sign

    class Shifted:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            rows = torch.as_tensor(pad_observation(obs, env.max_layers))[None]
            features, valid = policy._split(rows)
            prior = policy.prior_actions(features, valid)[0, : len(obs)].numpy()
            action = prior.copy()
            action[0] += shift
            ratio = from_action(action, low, 1.0, "log") / from_action(prior, low, 1.0, "log")
            want = np.clip(from_action(prior, low, 1.0, "log")[0] * 20.0**sign, low, 1.0)
            assert ratio[1:] == pytest.approx(1.0)
            assert from_action(action, low, 1.0, "log")[0] == pytest.approx(want, rel=1e-5)
            self.moved = getattr(self, "moved", 0) + (abs(ratio[0] - 20.0**sign) < 1e-3 * 20.0)
            return action, state

    agent = Shifted()
    [result] = evaluate(agent, env_config.replace(**NET), [5], "shifted")
    [prior] = evaluate(LayerwiseAgent(policy).bind, env_config.replace(**NET), [5], "prior")
    assert agent.moved >= 1  # at least one decision moved the layer by exactly 20x (others hit the map's range)
    assert result.final_density == pytest.approx(0.03, abs=0.005) and prior.final_density == pytest.approx(
        0.03, abs=0.005
    )
    assert not np.allclose(np.asarray(result.schedule), np.asarray(prior.schedule))
