"""The PPO model a task run trains, built from its config: one constructor for ``train_agent.py`` and the benches.

:func:`new_model` passes every PPO and policy setting of :class:`~agents.settings.train_config.TrainConfig`
(rollout size, learning rate, γ, entropy, the layer-aware actor's prior, reach, exploration and schema), so a
bench that times "the task run's PPO" times exactly the model the run would build.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv

from agents.ppo.episode_ppo import EpisodePPO
from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.ppo.schema import model_schema
from agents.settings.generalist import train_names, training_ranges, training_settings
from agents.settings.train_config import TrainConfig
from sparsity_gym.experiments.families import Family


def model_class(cfg: TrainConfig) -> type[PPO]:
    """:class:`EpisodePPO` for ``--collect episodes`` (whole trajectories), else stable-baselines3's PPO."""
    return EpisodePPO if cfg.collect == "episodes" else PPO


def policy_kwargs(cfg: TrainConfig, feature_names: list[str], prior: str, family: Family) -> dict[str, Any]:
    """The layer-aware actor's settings: its prior, reach, exploration, pooling and the schema it records."""
    return {
        "hidden": cfg.policy_hidden,
        "feature_names": feature_names,
        "prior": prior,
        "density_range": (cfg.env.min_density, cfg.env.max_density),
        "action_scale": cfg.env.action_scale,
        "log_std_init": cfg.log_std_init,
        "pooling": cfg.policy_pooling,
        "residual_init": cfg.residual_init,
        "schema": model_schema(
            feature_names[:-1],
            cfg.env,
            prior,
            cfg.task,
            train_names(cfg, family),
            ranges=training_ranges(training_settings(cfg)),
        ),
    }


def new_model(
    cfg: TrainConfig,
    vec_env: VecEnv,
    prior: str,
    family: Family,
    cls: type[PPO] | None = None,
    tensorboard_log: str | None = None,
) -> PPO:
    """A fresh model of the run on ``vec_env`` (``cls``: a subclass of :func:`model_class`'s, e.g. a timed one).

    Without ``tensorboard_log`` the model logs nowhere (stable-baselines3 would make an empty ``SB3-<time>`` folder
    in the system's temporary directory at each ``learn``).
    """
    feature_names = vec_env.get_attr("feature_names")[0]
    model = (cls or model_class(cfg))(
        LayerwisePolicy,
        vec_env,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        learning_rate=cfg.learning_rate,
        gamma=cfg.gamma,
        ent_coef=cfg.ent_coef,
        seed=cfg.seed,
        device="cpu",
        tensorboard_log=tensorboard_log,
        policy_kwargs=policy_kwargs(cfg, feature_names, prior, family),
    )
    if tensorboard_log is None:
        model.set_logger(Logger(None, []))
    return model
