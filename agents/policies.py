"""Learned policies that ship with the package: found by name, each with a card.

A shipped policy is a PPO model trained by ``train_agent.py`` that won its comparison, stored as
``agents/shipped/<name>.zip`` (a model saved with its schema, :mod:`agents.ppo.schema`) beside ``<name>.json``, its
**card**: the task and target it trained for, its train networks, training episodes and time, the verdict with
its interval on the held-out networks, and the commands that train and re-measure it. A name is
``<task>@<target density>`` (``mnist1d_mlp@0.01``)::

    from agents.policies import available, card, load

    available()                        # ('mnist1d_mlp@0.01', ...)
    print(card("mnist1d_mlp@0.01").text())
    agent = load("mnist1d_mlp@0.01")   # a LayerwiseAgent: bind it to an env or hand it to sparsity_gym.Pruner

:func:`load` also takes the path of any saved model. ``python -m agents.policies package ...`` makes a shipped
policy from a run folder (:func:`package`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.ppo.agent import LayerwiseAgent
from sparsity_gym.core.io import atomic_write_text

SHIPPED = Path(__file__).with_name("shipped")
"""The folder of the shipped policies (package data)."""

MAX_BYTES = 1 << 20
"""A shipped model is at most this large (1 MiB)."""


@dataclass(frozen=True)
class Verdict:
    """The learned policy against one opponent on held-out networks: learned - opponent, in points.

    Attributes:
        against: The opponent (e.g. ``tuned cell cubic@0.75+erk``, ``search (1017 episodes)``).
        networks: The networks compared on (a population or the named held-out networks).
        seeds: Seeds per network (the comparison's seeds).
        difference: Mean paired difference of test accuracy, in points.
        low: Lower end of the 95% interval.
        high: Upper end of the 95% interval.
        verdict: ``wins``, ``ties`` or ``loses`` (the interval above, across or below zero).
        interval: How the interval was drawn (``hierarchical``: networks then seeds; ``seeds``: seeds within the
            fixed networks).

    """

    against: str
    networks: tuple[str, ...]
    seeds: int
    difference: float
    low: float
    high: float
    verdict: str
    interval: str = "hierarchical"
    setting: str = ""
    """The (family, target) cell it was measured in (``mnist1d_cnn@0.02``) for a policy trained across settings;
    empty: the card's own task and target."""

    def text(self) -> str:
        """One line: the difference with its interval and verdict."""
        return (
            (f"{self.setting}: " if self.setting else "")
            + f"learned - {self.against}: {self.difference:+.2f} [{self.low:+.2f}, {self.high:+.2f}] points, "
            f"**{self.verdict}** ({len(self.networks)} networks x {self.seeds} seeds, {self.interval} 95% interval)"
        )


@dataclass(frozen=True)
class MachineRun:
    """One machine's measurement of the card's first verdict: what another user's run of it may read.

    Training is bit-exact on one machine and drifts between CPUs (torch's float arithmetic differs), so the same
    command gives other digits elsewhere; the verdict should not change.

    Attributes:
        machine: Which machine (``development machine, 2-core CPU``).
        difference: Learned - opponent, in points, as that machine measured it.
        low: Lower end of its 95% interval.
        high: Upper end of its 95% interval.
        verdict: ``wins``, ``ties`` or ``loses``.
        runs: How many times it was measured there (all identical: one machine is bit-exact).

    """

    machine: str
    difference: float
    low: float
    high: float
    verdict: str
    runs: int = 1

    def __post_init__(self) -> None:
        if not self.low <= self.difference <= self.high:
            raise ValueError(
                f"across_machines[{self.machine!r}].difference={self.difference} is not allowed; expected it "
                f"within its interval [{self.low}, {self.high}]"
            )
        if self.verdict not in ("wins", "ties", "loses"):
            raise ValueError(
                f"across_machines[{self.machine!r}].verdict={self.verdict!r} is not allowed; expected wins, ties "
                "or loses"
            )


@dataclass(frozen=True)
class Card:
    """What a shipped policy is and how well it did (see the module docstring)."""

    name: str
    task: str
    target_density: float
    train_networks: tuple[str, ...]
    reference: str
    episodes: int
    train_seconds: float
    ppo_seed: int
    train_command: str
    remeasure_command: str
    verdicts: tuple[Verdict, ...] = ()
    sha256: str = ""
    notes: tuple[str, ...] = field(default=())
    across_machines: tuple[MachineRun, ...] = ()
    """The first verdict as measured on several machines (:class:`MachineRun`): the spread to expect."""
    ranges: Mapping[str, Any] = field(default_factory=dict)
    """What a policy trained across settings saw (the schema's ``ranges``: ``targets``, ``families``, ``networks``,
    ``depths``); empty for a policy of one task and target."""

    @property
    def machine_spread(self) -> float:
        """How far the first verdict's difference moved across the machines measured, in points (0 with one)."""
        differences = [run.difference for run in self.across_machines]
        return round(max(differences) - min(differences), 2) if differences else 0.0

    def machines_text(self) -> str:
        """One line: the first verdict on each machine and the spread a user should expect ('' when none)."""
        if not self.across_machines:
            return ""
        runs = "; ".join(
            f"{run.machine}: {run.difference:+.2f} [{run.low:+.2f}, {run.high:+.2f}], {run.verdict}"
            + (f" ({run.runs} runs, identical)" if run.runs > 1 else "")
            for run in self.across_machines
        )
        against = self.verdicts[0].against if self.verdicts else "its reference"
        return (
            f"Across machines (the default run's showcase, learned - {against}): {runs}. Training is bit-exact on "
            f"one machine and drifts between CPUs: expect this difference to move by about {self.machine_spread:.2f} "
            "points on another machine, and the verdict not to."
        )

    def text(self) -> str:
        """The card as Markdown."""
        lines = [
            f"# {self.name}",
            "",
            f"Task `{self.task}` at global density {self.target_density:g}; trained on "
            f"{', '.join(self.train_networks)} for {self.episodes} episodes ({self.train_seconds:.0f} s, PPO seed "
            f"{self.ppo_seed}); its actor is a residual on `{self.reference}`. "
            + self.ranges_text()
            + "Test accuracy differences on held-out networks, paired by network and seed:",
            "",
            *[f"- {v.text()}" for v in self.verdicts],
            *[f"- {note}" for note in self.notes],
            *([f"- {self.machines_text()}"] if self.across_machines else []),
            "",
            f"Trained with: `{self.train_command}`",
            f"Re-measured with: `{self.remeasure_command}`",
        ]
        return "\n".join(lines) + "\n"

    def ranges_text(self) -> str:
        """A sentence on the settings a policy trained across saw ('' for one task and target)."""
        if not self.ranges:
            return ""
        targets = ", ".join(f"{t:g}" for t in self.ranges.get("targets", ()))
        families = ", ".join(self.ranges.get("families", ()))
        return (
            f"Trained across target densities {targets} and the families {families}: one policy for every such "
            "setting (the target is in its observation); used outside them it warns. "
        )

    def to_json(self) -> str:
        """The card as JSON (what ``<name>.json`` holds)."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Card:
        """A card read back from :meth:`to_json`."""
        data = json.loads(text)
        data["verdicts"] = tuple(Verdict(**{**v, "networks": tuple(v["networks"])}) for v in data.get("verdicts", ()))
        data["across_machines"] = tuple(MachineRun(**run) for run in data.get("across_machines", ()))
        for key in ("train_networks", "notes"):
            data[key] = tuple(data.get(key, ()))
        data["ranges"] = dict(data.get("ranges", {}))
        return cls(**data)


def available() -> tuple[str, ...]:
    """The names of the shipped policies (each has a model and a card)."""
    return tuple(sorted(p.stem for p in SHIPPED.glob("*.zip") if p.with_suffix(".json").exists()))


def card(name: str) -> Card:
    """The card of shipped policy ``name`` (``ValueError`` naming the shipped ones)."""
    return Card.from_json(_shipped(name).with_suffix(".json").read_text(encoding="utf-8"))


def _shipped(name: str) -> Path:
    path = SHIPPED / f"{name}.zip"
    if not path.exists() or not path.with_suffix(".json").exists():
        names = ", ".join(repr(n) for n in available()) or "none"
        raise ValueError(f"policy={name!r} is not allowed; expected a shipped policy ({names}) or a model.zip path")
    return path


def model_path(spec: str | Path) -> Path:
    """The model file ``spec`` names: a shipped policy's name, or the path of a saved model.

    Raises:
        ValueError: Neither a shipped name nor an existing file; the message names the shipped policies.

    """
    path = Path(spec)
    if path.suffix == ".zip" or path.exists():
        if not path.is_file():
            raise ValueError(f"model={str(spec)!r} is not allowed: no such file; expected a model.zip saved by PPO")
        return path
    return _shipped(str(spec))


def is_shipped(spec: str | Path) -> bool:
    """Whether ``spec`` names a shipped policy (rather than a file)."""
    return Path(spec).suffix != ".zip" and str(spec) in available()


def load(spec: str | Path, warn_outside: bool = True) -> LayerwiseAgent:
    """The :class:`~agents.ppo.agent.LayerwiseAgent` of a shipped policy's name or a saved model's path.

    A shipped policy is labelled with its name in reports and checked against its card's digest.
    """
    path = model_path(spec)
    shipped = is_shipped(spec)
    if shipped:
        expected = card(str(spec)).sha256
        if expected and digest(path) != expected:
            raise ValueError(f"policy={str(spec)!r}: {path} does not match its card's sha256; reinstall the package")
    return LayerwiseAgent.load(path, name=str(spec) if shipped else "ppo", warn_outside=warn_outside)


def digest(path: str | Path) -> str:
    """The sha256 of a file, in hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def verdicts_from_report(opponents_csv: str | Path, networks: Sequence[str]) -> list[Verdict]:
    """The pooled verdicts of a comparison's ``opponents.csv`` (one per opponent), in points.

    ``networks`` are the networks that comparison ran on (its ``results.md`` names them); each row's interval
    kind (``hierarchical`` over networks and seeds, ``seeds`` within fixed networks) is kept.
    """
    import csv

    verdicts = []
    with Path(opponents_csv).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["network"] != "all":
                continue
            verdicts.append(
                Verdict(
                    against=row["label"].replace("`", ""),
                    networks=tuple(networks),
                    seeds=int(row["seeds"]) // max(1, len(networks)),
                    difference=round(100 * float(row["diff_mean"]), 2),
                    low=round(100 * float(row["diff_ci_low"]), 2),
                    high=round(100 * float(row["diff_ci_high"]), 2),
                    verdict=row["diff_verdict"],
                    interval=row["interval"],
                )
            )
    return verdicts


def with_schema(model_file: Path, schema: Mapping[str, Any], out: Path) -> Path:
    """Save the model of ``model_file`` to ``out`` with ``schema`` recorded (for a model saved before schemas)."""
    from stable_baselines3 import PPO

    from agents.ppo.schema import check_keywords, normalize_schema

    model = PPO.load(model_file, device="cpu")
    policy = model.policy
    recorded = normalize_schema(schema)
    check_keywords(recorded, policy.feature_names, policy.action_scale, policy.density_range, policy.prior)
    policy.recorded_schema = recorded
    model.policy_kwargs = {**model.policy_kwargs, "schema": recorded}  # what PPO.save stores and PPO.load passes back
    model.save(out)
    return out


def package(
    model_file: str | Path,
    name: str,
    verdicts: Sequence[Verdict],
    reference: str,
    train_seconds: float,
    episodes: int,
    ppo_seed: int,
    train_command: str,
    remeasure_command: str,
    notes: Sequence[str] = (),
    folder: Path = SHIPPED,
) -> Card:
    """Copy a trained model into ``folder`` as shipped policy ``name`` with its card; returns the card.

    The model must carry a schema (:func:`with_schema` adds one to an older model) and be at most
    :data:`MAX_BYTES`; its task, target and train networks are read from the schema.
    """
    agent = LayerwiseAgent.load(model_file, warn_outside=False)
    schema = agent.schema
    if not schema.get("schema_version"):
        raise ValueError(f"model={str(model_file)!r} has no schema; add one with agents.policies.with_schema first")
    size = Path(model_file).stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"model={str(model_file)!r} is {size} bytes; expected at most {MAX_BYTES} for a shipped one")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.zip"
    target.write_bytes(Path(model_file).read_bytes())
    made = Card(
        name=name,
        task=str(schema.get("task")),
        target_density=float(schema["env"]["target_density"]),
        train_networks=tuple(schema.get("train_networks", ())),
        reference=reference,
        episodes=int(episodes),
        train_seconds=float(train_seconds),
        ppo_seed=int(ppo_seed),
        train_command=train_command,
        remeasure_command=remeasure_command,
        verdicts=tuple(verdicts),
        sha256=digest(target),
        notes=tuple(notes),
        ranges=dict(schema.get("ranges") or {}),
    )
    atomic_write_text(target.with_suffix(".json"), made.to_json())
    return made


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agents.policies [list | show NAME]``: the shipped policies and their cards."""
    parser = argparse.ArgumentParser(prog="python -m agents.policies", description=main.__doc__)
    parser.add_argument("command", choices=("list", "show"))
    parser.add_argument("name", nargs="?")
    args = parser.parse_args(argv)
    if args.command == "list":
        for shipped in available():
            print(shipped)
        return 0
    if args.name is None:
        parser.error("show needs a NAME")
    print(card(args.name).text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
