import pytest
import torch

FAST_ENV = {"dataset": "synthetic", "total_iterations": 40, "decision_interval": 10, "batch_size": 32}
"""The shared fast env: synthetic data, 4 decisions of 10 steps (``from conftest import FAST_ENV``)."""

TINY_ENV = {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10, "batch_size": 16}
"""The shared tiny env: synthetic data, 2 decisions of 10 steps, for tests that run many episodes."""


@pytest.fixture(autouse=True, scope="session")
def sb3_logs_in_a_temporary_folder(tmp_path_factory):
    """stable-baselines3's ``learn`` without a TensorBoard folder makes an empty ``SB3-<time>`` folder in the system's
    temporary directory each call; the tests' go under pytest's own temporary folder (``SB3_LOGDIR``)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3_logs")))
    yield
    mp.undo()


@pytest.fixture
def fast_env_kwargs() -> dict:
    """A tiny env: synthetic data, 4 decisions of 10 steps."""
    return dict(FAST_ENV)


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test (restored after): tiny ops on a busy 2-core machine otherwise stall,
    and the process grid's workers use one thread too, so sequential runs match their kernels."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def untrained_residual_policy(env, prior: str):
    """A ``LayerwisePolicy`` on a ``FamilyEnv`` with its residual head at zero: it plays its prior exactly.

    The density map (range and scale) is the env's own.
    """
    from agents.ppo.layerwise_policy import LayerwisePolicy

    config = env.current.config
    policy = LayerwisePolicy(
        env.observation_space,
        env.action_space,
        lambda _: 1e-3,
        hidden=(16,),
        feature_names=env.feature_names,
        prior=prior,
        density_range=(config.min_density, config.max_density),
        action_scale=config.action_scale,
        residual_init="zero",
    )
    assert not policy.actor[-1].weight.any() and not policy.actor[-1].bias.any()
    return policy


@pytest.fixture(scope="session", autouse=True)
def close_worker_pools():
    """Close every worker pool the session started (the persistent shared pool included) when the session ends,
    so no spawn worker or resource tracker outlives pytest."""
    yield
    from sparsity_gym.experiments.pool import live_pools, shutdown_pools

    shutdown_pools()
    assert not live_pools()
