"""The training run's frozen configuration and its command line (parsed once, at the edge)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sparsity_gym.validation import check_choice, check_number


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """What ``train_agent.py`` runs: PPO on the schedule env, then the comparison with every baseline."""

    total_timesteps: int = _opt(
        3000,
        "PPO environment steps (decisions) to train for; an episode is total_iterations / decision_interval decisions",
    )
    run_dir: str = _opt("runs/default", "folder for TensorBoard events, checkpoints, the model and the results")
    seed: int = _opt(0, "seed of PPO and of the training episodes (evaluation seeds are eval_seed_start + i)")
    device: str = _opt("cpu", "torch device the pruned network trains on (cpu, cuda); PPO itself runs on the CPU")
    resume: bool = _opt(False, "continue from run_dir/checkpoints/last.zip with the timestep count and curves")
    network: str = _opt("mlp", "network the agent trains on (a zoo name)")
    dataset: str = _opt("digits", "dataset (digits ships with scikit-learn; nothing is downloaded)")
    selector: str = _opt("magnitude", "pruning selector during training: magnitude (MP-RR) or random (RP-RR)")
    target_density: float = _opt(0.1, "target density the agent trains for")
    granularity: str = _opt("weight", "weight or neuron")
    total_iterations: int = _opt(400, "optimizer steps of the pruned network per episode")
    decision_interval: int = _opt(40, "optimizer steps between two decisions")
    n_steps: int = _opt(100, "PPO rollout length per update")
    batch_size: int = _opt(50, "PPO minibatch size")
    n_epochs: int = _opt(10, "PPO epochs per update")
    learning_rate: float = _opt(3e-4, "PPO learning rate")
    gamma: float = _opt(0.99, "PPO discount")
    ent_coef: float = _opt(0.0, "PPO entropy coefficient")
    checkpoint_every: int = _opt(500, "save run_dir/checkpoints/last.zip every this many timesteps")
    eval_seeds: int = _opt(3, "evaluation episodes (seeds) per policy and setting")
    eval_seed_start: int = _opt(1000, "first evaluation seed (kept apart from training episodes)")
    eval_targets: tuple[float, ...] = _opt((0.1, 0.5), "target densities of the comparison")
    eval_selectors: tuple[str, ...] = _opt(("magnitude", "random"), "selectors of the comparison (MP-RR, RP-RR)")
    progress_bar: bool = _opt(True, "show progress bars")

    def __post_init__(self) -> None:
        check_number("total_timesteps", self.total_timesteps, low=1, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("n_steps", self.n_steps, low=2, integer=True)
        check_number("batch_size", self.batch_size, low=2, integer=True)
        check_number("n_epochs", self.n_epochs, low=1, integer=True)
        check_number("learning_rate", self.learning_rate, low=0.0, low_inclusive=False)
        check_number("gamma", self.gamma, low=0.0, high=1.0)
        check_number("ent_coef", self.ent_coef, low=0.0)
        check_number("checkpoint_every", self.checkpoint_every, low=1, integer=True)
        check_number("eval_seeds", self.eval_seeds, low=1, integer=True)
        for t in self.eval_targets:
            check_number("eval_targets", t, low=0.0, high=1.0, low_inclusive=False)
        for s in self.eval_selectors:
            check_choice("eval_selectors", s, ("magnitude", "random"))

    def env_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The ``EnvConfig`` fields of the training env (validated when the env is built)."""
        kwargs = {
            "network": self.network,
            "dataset": self.dataset,
            "selector": self.selector,
            "target_density": self.target_density,
            "granularity": self.granularity,
            "total_iterations": self.total_iterations,
            "decision_interval": self.decision_interval,
            "device": self.device,
        }
        kwargs.update(overrides)
        return kwargs

    def to_json(self) -> str:
        """The config as JSON (saved in the run folder)."""
        return json.dumps(dataclasses.asdict(self), indent=2)


def build_parser() -> argparse.ArgumentParser:
    """An ``argparse`` parser with one ``--flag`` per :class:`TrainConfig` field, help from its metadata."""
    parser = argparse.ArgumentParser(
        prog="train_agent.py",
        description="Train a PPO agent to schedule per-layer densities of a network in training, then compare it "
        "with the handcrafted schedules. Writes TensorBoard events, the model, results.csv/.md and plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            parser.add_argument(flag, nargs="+", type=item, default=f.default, help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=hint, default=f.default, help=f.metadata["help"])
    return parser


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse the command line into a :class:`TrainConfig` (``ValueError`` on a bad value)."""
    ns = build_parser().parse_args(argv)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items()}
    return TrainConfig(**values)
