"""The run's PPO constructor (``agents.run.model``): every setting of the config reaches the model, and a model
without a TensorBoard folder writes nothing anywhere."""

import dataclasses
import tempfile

from stable_baselines3.common.vec_env import DummyVecEnv
from task_helpers import registered_task, tiny_run

from agents.ppo.episode_ppo import EpisodePPO
from agents.run.model import model_class, new_model
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.family_env import FamilyEnv

TASK = "tiny_model_test"


def test_the_model_carries_the_config_and_logs_nowhere_without_a_folder(tmp_path, monkeypatch):
    with registered_task(TASK):
        cfg = tiny_run(TASK, tmp_path / "run", gamma=0.97, learning_rate=1e-3, ent_coef=0.01, residual_init="zero")
        family = get_family(cfg.family)
        venv = DummyVecEnv([lambda: FamilyEnv(family.train, cfg.env)])
        monkeypatch.delenv("SB3_LOGDIR", raising=False)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where stable-baselines3 would make SB3-<time>
        model = new_model(cfg, venv, "linear", family)
        assert (model.gamma, model.learning_rate, model.ent_coef, model.n_steps) == (0.97, 1e-3, 0.01, cfg.n_steps)
        assert model.policy.schema["prior"] == "linear" and model.policy.schema["train_networks"] == [
            s.name for s in family.train
        ]
        model.learn(cfg.n_steps)
        assert model.num_timesteps == cfg.n_steps and not list(tmp_path.glob("SB3-*"))
        assert model_class(dataclasses.replace(cfg, collect="episodes")) is EpisodePPO
