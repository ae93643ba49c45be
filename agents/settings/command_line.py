"""The command line of ``train_agent.py``, parsed once into a config (:func:`parse_args`).

One ``--flag`` per :class:`~agents.settings.train_config.TrainConfig` field and per env flag.

The settings themselves, their checks and their precedence live in :mod:`agents.settings.train_config`; this
module only turns ``argv`` into the mapping :func:`~agents.settings.train_config.config_from` layers.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Sequence
from typing import Any

from agents.settings.train_config import ENV_FLAGS, MODES, TrainConfig, config_from
from sparsity_gym.env.env_config import EnvConfig

__all__ = ["build_parser", "parse_args"]


def build_parser() -> argparse.ArgumentParser:
    """An ``argparse`` parser with one ``--flag`` per :class:`TrainConfig` field and per :data:`ENV_FLAGS` entry.

    A flag not on the command line is absent from the parsed namespace (``argparse.SUPPRESS``), so the namespace
    holds exactly the settings given; the help shows each field's own default (presets and tasks change them).
    """
    parser = argparse.ArgumentParser(
        prog="train_agent.py",
        description="Train a PPO agent to schedule per-layer densities of networks in training (sampled from a "
        "family's train split), then compare it with every handcrafted schedule and criterion on the family's "
        "held-out networks; or (evaluate) run a saved model and the baselines on chosen networks and seeds. "
        "Writes TensorBoard events, the model, results.csv/.md and plots. Each setting comes from the last of: "
        "its default, --preset, --task, the flag itself.",
        argument_default=argparse.SUPPRESS,
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name != "env":
            choices = f.metadata.get("choices")
            choices = choices() if callable(choices) else choices
            _add_flag(parser, f.name, hints[f.name], f.default, f.metadata["help"], choices)
    env = parser.add_argument_group("env settings (sparsity_gym.env.env_config.EnvConfig)")
    env_hints = typing.get_type_hints(EnvConfig)
    env_defaults = EnvConfig()
    for name, help_text in ENV_FLAGS.items():
        _add_flag(env, name, env_hints[name], getattr(env_defaults, name), help_text)
    return parser


def _add_flag(
    parser: Any, name: str, hint: Any, default: Any, help_text: str, choices: Sequence[Any] | None = None
) -> None:
    """One ``--flag`` for a field of type ``hint`` (bool: ``--x/--no-x``; tuple: several values), no default."""
    flag = "--" + name.replace("_", "-")
    text = f"{help_text} (default: {default})".replace("%", "%%")
    if hint is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
    elif typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        parser.add_argument(flag, nargs="*", type=item, help=text)
    else:  # ``X | None`` parses as X (None is the default only)
        kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        parser.add_argument(flag, type=kind, choices=choices, help=text)


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse the command line once into a :class:`TrainConfig` (``ValueError`` on a bad value).

    A leading ``train`` or ``evaluate`` word is the same as ``--mode``. The flags given are layered over the
    preset's and the task's settings by :func:`config_from` (preset < task < flag).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in MODES:
        args = ["--mode", args[0], *args[1:]]
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(build_parser().parse_args(args)).items()}
    return config_from(given)
