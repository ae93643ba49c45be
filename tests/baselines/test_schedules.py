import numpy as np
import pytest

from baselines import SCHEDULES, cubic, env_kwargs, make_policy, polynomial
from baselines.schedules import cosine, window_progress
from sparsity_gym.env.sparsity_env import SparsityEnv


@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5, 0.74, 0.75, 0.9, 1.0])
def test_cubic_is_the_agp_formula(p):
    d_t, t0, t1 = 0.1, 0.0, 0.75
    q = min(max((p - t0) / (t1 - t0), 0.0), 1.0)
    assert cubic(p, d_t) == pytest.approx(d_t + (1 - d_t) * (1 - q) ** 3, abs=1e-15)


def test_worked_points():
    assert polynomial(0.375, 0.1, power=1) == pytest.approx(0.55)
    assert polynomial(0.375, 0.1, power=2) == pytest.approx(0.1 + 0.9 * 0.25)
    assert cosine(0.375, 0.1) == pytest.approx(0.55)
    assert window_progress(0.5, 0.25, 0.75) == pytest.approx(0.5)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("target", [0.05, 0.1, 0.5, 1.0])
def test_monotone_with_right_ends(name, target):
    fn = SCHEDULES[name]
    ps = np.linspace(0, 1, 401)
    d = np.array([fn(p, target) for p in ps])
    assert np.all(np.diff(d) <= 1e-12)
    assert d[-1] == pytest.approx(target)
    assert d[0] == pytest.approx(target if name == "constant" else 1.0)
    assert fn(0.75, target) == pytest.approx(target)


def test_bad_window_is_a_clear_error():
    with pytest.raises(ValueError, match="p_end"):
        cubic(0.5, 0.1, p_start=0.5, p_end=0.5)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_policy_follows_its_schedule(name, fast_env_kwargs):
    env = SparsityEnv(**fast_env_kwargs, min_density=0.02, target_density=0.2)
    policy = make_policy(name, env)
    assert env_kwargs(name) == {}
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        action, state = policy.predict(obs)
        assert action.dtype == np.float32 and action.shape == env.action_space.shape and state is None
        expected = SCHEDULES[name](env.progress, 0.2)
        obs, _, term, trunc, info = env.step(action)
        done = term or trunc
        if not done:
            assert info["requested_densities"] == pytest.approx(np.full(3, expected), abs=1e-6)
    assert info["density"] == pytest.approx(0.2, abs=0.01)
    # batched observations, as from a VecEnv
    batch = np.stack([obs, obs])
    actions, _ = policy.predict(batch)
    assert actions.shape == (2, 3)


def test_unknown_policy_is_a_clear_error(fast_env_kwargs):
    with pytest.raises(ValueError, match="policy='nope'"):
        env_kwargs("nope")
