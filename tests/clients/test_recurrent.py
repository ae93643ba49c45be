"""A recurrent sb3-contrib model keeps its memory through an episode of ``evaluate``."""

import itertools

import numpy as np
from sb3_contrib import RecurrentPPO

from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.evaluation import evaluate


class Spy:
    """Passes every call on to the model and records what it was given and what it returned."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        action, new_state = self.model.predict(
            observation, state=state, episode_start=episode_start, deterministic=deterministic
        )
        self.calls.append((state, None if episode_start is None else episode_start.copy(), new_state, action))
        return action, new_state


def test_recurrent_ppo_gets_its_state_back_and_a_fresh_start_each_episode(tiny):
    env = SparsityEnv(**tiny)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        env,
        n_steps=4,
        batch_size=4,
        seed=0,
        device="cpu",
        policy_kwargs={"lstm_hidden_size": 8, "net_arch": [8]},
    )
    spy = Spy(model)
    results = evaluate(spy, EnvConfig(**tiny), [0, 1], "lstm")
    assert len(results) == 2 and len(spy.calls) == 8
    for episode in (spy.calls[:4], spy.calls[4:]):
        first_state, first_start, _, _ = episode[0]
        assert first_state is None and first_start.tolist() == [True]
        for (_, _, returned, _), (given, start, _, _) in itertools.pairwise(episode):
            assert given is returned and start.tolist() == [False]
        assert np.abs(episode[-1][2][0]).sum() > 0  # the LSTM's hidden state moved
    # independently: a hand-written loop that threads the state gives the same actions
    env.reset(seed=0)
    obs, _ = env.reset(seed=0)
    state, start = None, np.ones((1,), bool)
    for _, _, _, recorded in spy.calls[:4]:
        action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
        start = np.zeros((1,), bool)
        assert np.array_equal(action, recorded)
        obs, *_ = env.step(action)
