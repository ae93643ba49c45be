"""The exploration noise as a schedule, and reward normalisation: what the field uses against noisy rewards.

**The noise.** By default PPO learns the actor's log standard deviation (one value shared by every layer,
:class:`agents.ppo.layerwise_policy.LayerwisePolicy`). With ``--log-std-final`` the noise is a *schedule* instead, as
AMC's truncated normal noise that starts wide and decays (He et al. 2018, "AMC", §3.2: sigma 0.5, decayed by 0.95
per episode): the log-std goes from ``--log-std-init`` at timestep 0 to ``--log-std-final`` at
``total_timesteps``, and PPO does not learn it (:class:`LogStdSchedule`). ``--log-std-decay exp`` moves the
log-std linearly, so sigma decays geometrically (AMC's kind); ``linear`` moves sigma itself linearly. The value
is a pure function of the model's timestep count, which a checkpoint keeps, so a resumed run (``--resume``)
continues the schedule where the killed one stood; the policy's ``log_std`` parameter is saved with the model.

**The reward.** ``--norm-reward`` wraps the training envs in stable-baselines3's ``VecNormalize`` with the
reward alone normalised (by the running standard deviation of the discounted return; ``norm_obs=False``: the
observation's columns have fixed, documented bounds). Its running statistics are saved beside the checkpoint
(``checkpoints/vecnormalize.pkl``) and loaded back on ``--resume``. ``--gamma 1`` gives undiscounted returns.
"""

from __future__ import annotations

import math
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sparsity_gym.core.checks import check_choice, check_number

DECAYS = ("exp", "linear")
VECNORMALIZE_FILE = "vecnormalize.pkl"


def scheduled_log_std(initial: float, final: float, decay: str, fraction: float) -> float:
    """The log-std at ``fraction`` (0 to 1, clipped) of training: ``exp`` linear in log-std, ``linear`` in sigma."""
    check_choice("log_std_decay", decay, DECAYS)
    f = min(max(float(fraction), 0.0), 1.0)
    if decay == "exp":
        return float(initial + (final - initial) * f)
    sigma = math.exp(initial) + (math.exp(final) - math.exp(initial)) * f
    return float(math.log(sigma))


class LogStdSchedule(BaseCallback):
    """Sets the policy's ``log_std`` from the schedule before every rollout; PPO no longer learns it.

    Args:
        initial: The log-std at timestep 0 (``--log-std-init``).
        final: The log-std at ``total_timesteps`` (``--log-std-final``).
        decay: ``exp`` (log-std linear, sigma geometric) or ``linear`` (sigma linear).
        total_timesteps: The run's whole length (across resumed sessions).

    """

    def __init__(self, initial: float, final: float, decay: str, total_timesteps: int) -> None:
        super().__init__()
        check_number("log_std_final", final, low=-10.0, high=2.0)
        check_choice("log_std_decay", decay, DECAYS)
        check_number("total_timesteps", total_timesteps, low=1, integer=True)
        self.initial, self.final, self.decay, self.total = float(initial), float(final), decay, int(total_timesteps)

    def value(self, timestep: int) -> float:
        """The scheduled log-std at ``timestep``."""
        return scheduled_log_std(self.initial, self.final, self.decay, timestep / self.total)

    def apply(self) -> float:
        """Write the value for the model's current timestep into the policy (no gradient); return it."""
        value = self.value(self.model.num_timesteps)
        log_std = self.model.policy.log_std
        log_std.requires_grad_(False)
        log_std.data.fill_(value)
        self.logger.record("train/log_std_scheduled", value)
        return value

    def _on_training_start(self) -> None:
        self.apply()

    def _on_rollout_start(self) -> None:
        self.apply()

    def _on_step(self) -> bool:
        return True


def normalise_rewards(vec_env: VecEnv, gamma: float, checkpoints: Path, resume: bool) -> VecNormalize:
    """``VecNormalize`` of the rewards alone; its statistics read back from ``checkpoints`` on ``resume``."""
    path = checkpoints / VECNORMALIZE_FILE
    if resume and path.exists():
        wrapped = VecNormalize.load(str(path), vec_env)
        wrapped.training = True
        return wrapped
    return VecNormalize(vec_env, norm_obs=False, norm_reward=True, gamma=gamma)


class SaveVecNormalize(BaseCallback):
    """Saves the ``VecNormalize`` statistics beside the checkpoint after every rollout (write, then rename)."""

    def __init__(self, checkpoints: Path) -> None:
        super().__init__()
        self.path = checkpoints / VECNORMALIZE_FILE

    def _on_rollout_end(self) -> None:
        env = self.model.get_env()
        if isinstance(env, VecNormalize):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            env.save(str(tmp))
            tmp.replace(self.path)

    def _on_step(self) -> bool:
        return True
