"""A saved policy and an env agree or refuse, on every path the project provides (agents.ppo.schema)."""

import copy
import json
import pickle
import warnings
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import sparsity_gym  # noqa: F401  (registers the ids)
from agents.ppo.agent import LayerwiseAgent, load_agent
from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.ppo.schema import ENV_FIELDS, UncheckedPolicyWarning, model_schema, pad_for_model
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.wrappers import pad_observation
from sparsity_gym.experiments.evaluation import evaluate
from sparsity_gym.experiments.family_env import FamilyEnv

ORDER = ("snr", "rank", "contribution", "equilibrium")
SWAPPED = ("rank", "snr", "contribution", "equilibrium")


def make_model(settings: dict, prior: str = "none", schema: bool = True) -> PPO:
    """An untrained PPO model on a FamilyEnv of ``settings``, with the schema train_agent.py records."""
    env = FamilyEnv(("mlp_16x12",), settings)
    config = env.config
    kwargs = {
        "hidden": (8,),
        "feature_names": env.feature_names,
        "prior": prior,
        "density_range": (config.min_density, config.max_density),
        "action_scale": config.action_scale,
    }
    if schema:
        kwargs["schema"] = model_schema(env.feature_names[:-1], config, prior, None, ["mlp_16x12"])
    return PPO(LayerwisePolicy, env, n_steps=4, batch_size=4, device="cpu", policy_kwargs=kwargs)


def saved(model: PPO, tmp_path) -> str:
    path = tmp_path / "model.zip"
    model.save(path)
    return str(path)


def test_the_schema_travels_with_the_model_and_is_a_plain_dict(tiny, tmp_path):
    settings = {**tiny, "observations": ORDER, "action_scale": "log", "min_density": 0.01}
    model = make_model(settings, prior="cubic")
    agent = LayerwiseAgent.load(saved(model, tmp_path))
    schema = agent.schema
    assert json.loads(json.dumps(schema)) == schema  # plain values only
    env = SparsityEnv(**settings)
    assert schema["columns"] == list(env.layout.columns)  # names in order, not only the width
    config = env.config
    expected = {"action_mode": "density", "action_scale": "log", "min_density": 0.01, "max_density": 1.0}
    assert {k: schema[k] for k in expected} == expected
    assert (schema["allocation"], schema["allocation_tilt"], schema["prior"]) == ("policy", False, "cubic")
    assert set(schema["env"]) == set(ENV_FIELDS)
    assert schema["env"]["observations"] == list(ORDER)
    assert schema["env"]["total_iterations"] == config.total_iterations and schema["train_networks"] == ["mlp_16x12"]
    assert agent.bind(env) is agent


def test_columns_in_another_order_are_refused_on_every_path(tiny, tmp_path):
    model = make_model({**tiny, "observations": ORDER})
    path = saved(model, tmp_path)
    config = {**tiny, "observations": SWAPPED}
    env = SparsityEnv(**config)
    assert env.observation_space.shape[1] == model.policy.num_features  # same width: the arrays cannot tell
    message = r"^observations=\(.*\) is not allowed for this model \(the same columns in another order\)"
    agent = LayerwiseAgent.load(path)
    with pytest.raises(ValueError, match=message):
        agent.bind(env)
    with pytest.raises(ValueError, match=message):
        load_agent(path, gym.make("SparsityGym/Schedule-v0", **config))  # the comparison's factory
    with pytest.raises(ValueError, match=message):
        evaluate(agent, config, [0], "ppo")  # an agent passed as it is: evaluate binds it
    with pytest.raises(ValueError, match=message):
        evaluate(lambda e: agent, config, [0], "ppo")  # a factory that does not bind: evaluate binds
    with pytest.raises(ValueError, match=message):
        pad_for_model(model, env)


def test_predict_before_any_check_warns_once_and_a_checked_path_does_not(tiny):
    settings = {**tiny, "observations": ORDER}
    model = make_model(settings)
    env = SparsityEnv(**settings)
    obs, _ = env.reset(seed=0)
    agent = LayerwiseAgent(model)
    with pytest.warns(UncheckedPolicyWarning, match=r"LayerwiseAgent.predict\(\) before bind"):
        agent.predict(obs)
    padded = pad_observation(obs, model.policy.observation_space.shape[0])
    with pytest.warns(UncheckedPolicyWarning, match=r"PPO.predict\(\) before any check"):
        model.predict(padded)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncheckedPolicyWarning)
        agent.predict(obs)  # once per agent
        model.predict(padded)  # once per policy
        fresh = make_model(settings)
        wrapped = pad_for_model(fresh, env)  # the checked path for a bare PPO model
        padded_obs, _ = wrapped.reset(seed=0)
        np.testing.assert_array_equal(padded_obs, pad_observation(obs, wrapped.max_layers))
        fresh.predict(padded_obs)
        LayerwiseAgent(make_model(settings)).bind(env).predict(obs)


@pytest.mark.parametrize("prior", ["none", "cubic"])
def test_the_linear_map_is_refused_on_a_log_env_with_or_without_a_prior(prior, tiny, tmp_path):
    model = make_model(tiny, prior=prior)
    agent = LayerwiseAgent.load(saved(model, tmp_path))
    log_env = SparsityEnv(**tiny, action_scale="log")
    with pytest.raises(ValueError, match=r"^action_scale='log' is not allowed for this model; expected 'linear'"):
        agent.bind(log_env)
    with pytest.raises(ValueError, match=r"^action_scale='log'"):
        pad_for_model(model, log_env)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_density": 0.05}, r"^min_density=0\.05 is not allowed for this model; expected 0\.02"),
        ({"max_density": 0.9}, r"^max_density=0\.9 is not allowed for this model; expected 1\.0"),
        ({"action_mode": "threshold"}, r"^action_mode='threshold' is not allowed for this model; expected 'density'"),
        ({"allocation": "erk"}, r"^allocation='erk' is not allowed for this model; expected 'policy'"),
    ],
)
def test_another_action_map_is_refused(change, message, tiny):
    agent = LayerwiseAgent(make_model(tiny))
    with pytest.raises(ValueError, match=message):
        agent.bind(SparsityEnv(**tiny, **change))
    agent.bind(SparsityEnv(**tiny, target_density=0.5, selector="random"))  # what a policy generalises over


def test_bind_takes_anything_with_a_layout_and_a_config(tiny):
    """The pruning driver exposes ``layout`` and ``config`` with the env's field names: bind reads only those."""
    agent = LayerwiseAgent(make_model(tiny))
    env = SparsityEnv(**tiny)
    driver = SimpleNamespace(layout=env.layout, config=env.config)
    assert agent.bind(driver) is agent
    with pytest.raises(ValueError, match=r"^action_scale='log'"):
        agent.bind(SimpleNamespace(layout=env.layout, config=env.config.replace(action_scale="log")))
    family = FamilyEnv(("mlp_16x12", "mlp_8"), tiny)
    assert agent.bind(family) is agent
    with pytest.raises(ValueError, match=r"^env=SimpleNamespace is not allowed; expected .*\.layout\.columns"):
        agent.bind(SimpleNamespace(config=env.config))


def test_a_model_without_a_schema_loads_with_a_warning_and_is_checked_on_what_it_recorded(tiny, tmp_path):
    model = make_model({**tiny, "observations": ORDER}, schema=False)
    with pytest.warns(UserWarning, match="saved without a schema; it is checked on what it recorded"):
        agent = LayerwiseAgent.load(saved(model, tmp_path))
    assert agent.schema["schema_version"] == 0 and agent.schema["action_scale"] == "linear"
    with pytest.raises(ValueError, match=r"same columns in another order"):
        agent.bind(SparsityEnv(**{**tiny, "observations": SWAPPED}))
    with pytest.raises(ValueError, match=r"^action_scale='log'"):
        agent.bind(SparsityEnv(**{**tiny, "observations": ORDER}, action_scale="log"))
    agent.bind(SparsityEnv(**{**tiny, "observations": ORDER}, min_density=0.05))  # its range was not recorded


def test_a_schema_that_contradicts_the_policy_keywords_is_refused(tiny):
    env = FamilyEnv(("mlp_16x12",), tiny)
    schema = model_schema(env.feature_names[:-1], env.config.replace(action_scale="log"))
    with pytest.raises(ValueError, match=r"^schema\['action_scale'\]='log' is not allowed with the policy's"):
        PPO(LayerwisePolicy, env, device="cpu", policy_kwargs={"feature_names": env.feature_names, "schema": schema})


@pytest.mark.parametrize(
    "how", [copy.deepcopy, lambda env: pickle.loads(pickle.dumps(env))], ids=["deepcopy", "pickle"]
)
def test_a_family_env_copied_mid_episode_says_how_to_build_a_family_env(how, tiny):
    env = FamilyEnv(("mlp_16x12", "mlp_8"), tiny)
    clone = how(env)  # before reset: a copy
    assert clone.specs == env.specs and clone.config == env.config
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, np.float32)
    env.step(action)
    clone = how(env)  # mid-episode: a copy that cannot continue the episode
    with pytest.raises(TypeError, match=r"FamilyEnv is a copy taken in the middle.*FamilyEnv\(env\.specs, env\.config"):
        clone.step(action)
    clone.reset(seed=1)
    clone.step(action)  # after a reset it plays its own episodes
    rebuilt = FamilyEnv(env.specs, env.config, env.max_layers)  # what the message says to do
    assert rebuilt.observation_space == env.observation_space and rebuilt.feature_names == env.feature_names
