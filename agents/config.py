"""The run's settings under their old import path: a re-export of :mod:`agents.settings.train_config`.

Kept so that users' code that imports ``TrainConfig``, ``config_from`` or ``parse_args`` from here keeps working.
"""

# Kept at this path on purpose: users' code imports it. Nothing in the project imports it.
from agents.settings.command_line import parse_args
from agents.settings.train_config import TrainConfig, config_from

__all__ = ["TrainConfig", "config_from", "parse_args"]
