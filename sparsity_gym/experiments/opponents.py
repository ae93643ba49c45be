"""The learned policy against its opponents, side by side: who they are, what they cost, and the paired differences.

An *opponent* is a static policy the learned one must beat, with what it cost to choose it (DESIGN.md,
"Learning against searching"):

* ``tuned``: the handcrafted grid's cell with the best validation accuracy on the train split (the tuning's
  episodes and seconds);
* ``search`` and ``random``: the best point of the static-schedule search (Optuna's TPE, and random search)
  with the learned policy's budget in episodes;
* ``oracle``: per network, the grid cell with the best mean **test** accuracy there: an upper bound chosen on
  the very results it is scored on, so it has no cost and no fixed schedule chosen in advance can claim it.

**The record.** One type, :class:`Opponent`, is what the tuning and the searches write to the run folder's
``opponents.json`` and what the report reads back (:func:`write_opponents`, :func:`read_opponents`). The file
is a JSON list of objects, one per opponent name: ``name``; ``label``, the name its episodes carry in the
comparison (``search (1016 episodes)``; the tuned cell's name; default: ``name``); ``episodes`` and
``seconds`` spent choosing it (``null``: unknown); ``best``, the point it chose (printed beside the label);
``budget``, the episodes it was allowed (a search's); ``policy``, optional, the name its episodes carry when it
is not the label. A record needs only its ``name``; other keys are ignored.

**The report.** Every difference is learned − opponent in test accuracy points, paired by network and seed. On a
held-out *population* (networks drawn by a seeded generator) the pooled interval is the **hierarchical**
bootstrap's (:func:`sparsity_gym.experiments.paired_intervals.hierarchical_interval`: networks drawn, then seeds
within each), so the verdict is about networks like these, not only these ones. On hand-named networks (two per
task) it resamples the seeds within each network, the networks held fixed, as the headline does: two chosen
networks are no sample to resample, and a bootstrap over them would call two positive numbers a win. The learned
policy's own cost (:class:`AgentCost`) sits in the same column: its training and reference episodes and
seconds, and when its periodic evaluation first beat the reference (the cost of a win).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsity_gym.core.checks import check_number
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.experiments.agent_cost import AgentCost, AtSeconds, best_within_seconds
from sparsity_gym.experiments.comparison_report import headline_results, interval_text, mean_std_text, method_label
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.paired_intervals import RESAMPLES, Comparison, compare, mean_interval, paired_differences

__all__ = [
    "OPPONENTS_FILE",
    "ORACLE_LABEL",
    "AgentCost",
    "AtSeconds",
    "Opponent",
    "best_within_seconds",
    "opponent_columns",
    "opponent_rows",
    "opponents_section",
    "read_opponents",
    "report_opponents",
    "write_opponents",
]

OPPONENTS_FILE = "opponents.json"
ORDER = ("tuned", "search", "random")
"""Opponents in this order first, then any other record in the order given, then the oracle."""
ORACLE_LABEL = "oracle (upper bound: the best grid cell per network on its own test results)"


@dataclass(frozen=True)
class Opponent:
    """One opponent of the learned policy and what choosing it cost (a record of ``opponents.json``).

    Attributes:
        name: ``tuned``, ``search``, ``random``, ``oracle`` or another: the CSV columns' prefix, one per name.
        label: Its name in the report and, unless ``policy`` is given, the name its episodes carry in the results
            (``search (1014 episodes)``; the tuned cell's name).
        episodes: Episodes spent choosing it (a search's trials that count; the tuning's cells × networks × seeds;
            ``None``: unknown, or none for the oracle).
        seconds: Wall seconds of those episodes (``None``: not measured, or none for the oracle).
        best: The policy it chose, when the label is not that policy's name (a search's best point).
        budget: The episodes it was allowed (a search's budget; ``None``: none, the tuning's).
        policy: The name its episodes carry in the results (default: ``label``), or ``{network: name}`` (the
            oracle, whose cell differs by network).
        upper_bound: Chosen on the test results it is scored on (the oracle): no cost, not a rival.
        at_seconds: A search cut at the learned policy's seconds (:class:`AtSeconds`: the equal-wall-time view
            beside the equal-episode one); ``None``: not a search, or no learned seconds to cut at.

    Raises:
        ValueError: No name, or a negative or non-numeric cost (naming ``opponents[<name>].<field>``).

    """

    name: str
    label: str = ""
    episodes: int | None = None
    seconds: float | None = None
    best: str | None = None
    budget: int | None = None
    policy: str | Mapping[str, str] = ""
    upper_bound: bool = False
    at_seconds: AtSeconds | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"opponents: name={self.name!r} is not allowed; expected a record with a name")
        for key, integer in (("episodes", True), ("seconds", False), ("budget", True)):
            value = getattr(self, key)
            if value is not None:
                check_number(f"opponents[{self.name!r}].{key}", value, low=0, integer=integer)
        object.__setattr__(self, "label", str(self.label or self.name))
        object.__setattr__(self, "policy", self.policy or self.label)

    @classmethod
    def from_json(cls, record: Any) -> Opponent:
        """The opponent of one record of ``opponents.json`` (see the module; other keys are ignored)."""
        if not isinstance(record, Mapping) or not record.get("name"):
            raise ValueError(f"opponents={record!r} is not allowed; expected a record with a name")
        fields = ("label", "episodes", "seconds", "best", "budget", "policy")
        at = record.get("at_seconds")
        at_seconds = None if at is None else AtSeconds.from_json(at, f"opponents[{record['name']!r}].at_seconds")
        return cls(record["name"], **{k: record[k] for k in fields if record.get(k) is not None}, at_seconds=at_seconds)

    def to_json(self) -> dict[str, Any]:
        """The record as ``opponents.json`` holds it (``policy`` unless it is the label; ``at_seconds`` when set)."""
        record = {k: getattr(self, k) for k in ("name", "label", "episodes", "seconds", "best", "budget")}
        if self.at_seconds is not None:
            record["at_seconds"] = self.at_seconds.to_json()
        return record if self.policy == self.label else {**record, "policy": self.policy}

    @property
    def title(self) -> str:
        """What the report prints: ``tuned grid cell `c` (train split)``; else the label, the chosen point beside it."""
        if self.name == "tuned":
            return f"tuned grid cell `{self.policy}` (train split)"
        if self.best and self.best != self.policy:
            return f"{self.label}: `{self.best}`"
        return self.label

    def policy_on(self, network: str | None) -> str | None:
        """The name its episodes carry on ``network`` (the oracle's cell there; ``None``: none, or no network)."""
        if isinstance(self.policy, str):
            return self.policy
        return None if network is None else self.policy.get(network)

    def cost_text(self) -> str:
        """``1016 episodes, 1234 s``; the oracle's ``none (chosen on the test results)``; else ``n/a``.

        A search cut at the learned policy's seconds adds what it had then (:meth:`AtSeconds.text`).
        """
        if self.upper_bound:
            return "none (chosen on the test results)"
        parts = [
            f"{self.episodes} episodes" if self.episodes is not None else "",
            f"{self.seconds:.0f} s" if self.seconds is not None else "",
        ]
        text = ", ".join(p for p in parts if p) or "n/a"
        return text if self.at_seconds is None else f"{text}; {self.at_seconds.text(self.best)}"


def read_opponents(run_dir: str | Path) -> dict[str, Opponent]:
    """The opponents recorded in ``run_dir/opponents.json`` by name, in file order (empty when there is none).

    Raises:
        ValueError: The file holds anything but a list of records, a record without a name, two records of one
            name, or a negative or non-numeric cost.

    """
    path = Path(run_dir) / OPPONENTS_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(
            f"{path}: opponents={data!r} is not allowed; expected a list of records "
            '{"name": ..., "label": ..., "episodes": ..., "seconds": ...}'
        )
    out: dict[str, Opponent] = {}
    for record in data:
        opponent = Opponent.from_json(record)
        if opponent.name in out:
            raise ValueError(
                f"{path}: opponents: name={opponent.name!r} is not allowed twice; expected one record per opponent"
            )
        out[opponent.name] = opponent
    return out


def write_opponents(run_dir: str | Path, opponents: Iterable[Opponent]) -> Path:
    """Add (or replace, by name) ``opponents`` in ``run_dir/opponents.json`` (atomically); the file's path."""
    merged = {**read_opponents(run_dir), **{o.name: o for o in opponents}}
    path = Path(run_dir) / OPPONENTS_FILE
    atomic_write_text(path, json.dumps([o.to_json() for o in merged.values()], indent=2))
    return path


def report_opponents(
    recorded: Iterable[Opponent], reference: str | None, oracle: Mapping[str, str] | None = None
) -> list[Opponent]:
    """The opponents of a report: the ``recorded`` ones, the tuned cell ``reference`` and the oracle, in order.

    The ``tuned`` opponent is the ``reference`` (the report's reference is the tuned cell), with the ``tuned``
    record's cost when there is one (else unknown); without a ``reference`` it is left out. The others follow
    in :data:`ORDER`, then in the order given; the oracle (``{network: cell}``, when given and not empty) last.
    """
    by_name = {o.name: o for o in recorded}
    if reference is not None:
        tuned = by_name.get("tuned", Opponent("tuned"))
        by_name["tuned"] = Opponent("tuned", reference, tuned.episodes, tuned.seconds, reference, tuned.budget)
    else:
        by_name.pop("tuned", None)
    out = [by_name[n] for n in ORDER if n in by_name] + [o for n, o in by_name.items() if n not in ORDER]
    if oracle:
        out.append(Opponent("oracle", ORACLE_LABEL, policy=dict(oracle), upper_bound=True))
    return out


def _policy_names(opponents: Sequence[Opponent]) -> set[str]:
    """Every name the opponents' episodes carry (the oracle's cells on every network)."""
    return {n for o in opponents for n in ([o.policy] if isinstance(o.policy, str) else o.policy.values())}


def _comparisons(
    chosen: Sequence[EpisodeResult],
    learned: str,
    opponents: Sequence[Opponent],
    setting: tuple,
    resamples: int,
    population: bool,
) -> dict[str, Comparison]:
    return {
        o.name: compare(chosen, learned, o.policy, setting, resamples=resamples, hierarchical=population)
        for o in opponents
    }


def _interval_words(population: bool, resamples: int) -> str:
    """How the pooled interval was drawn, for the section's preamble."""
    if population:
        return (
            f"The 95% interval is a hierarchical bootstrap ({resamples} resamples): the networks drawn with "
            "replacement, then the seeds within each, so it covers how the difference varies from network to "
            "network, not only from seed to seed."
        )
    return (
        f"The 95% interval is a bootstrap of the seeds within each network ({resamples} resamples), the networks "
        "held fixed: a statement about these networks (`--heldout population` draws networks and resamples them "
        "too)."
    )


def opponents_section(
    results: Sequence[EpisodeResult],
    selector: str,
    target: float | None,
    opponents: Sequence[Opponent],
    agent: AgentCost | None = None,
    learned: str = "ppo",
    resamples: int = RESAMPLES,
    population: bool = True,
) -> list[str]:
    """Markdown lines: the learned policy against every opponent at (selector, target), pooled and per network.

    Uses the ``heldout`` split when present. Pooled: each opponent's cost, test accuracy (mean ± std over seeds of
    the network mean), learned − opponent with its 95% interval (hierarchical on a ``population``, else over seeds
    within the fixed networks) and verdict, the IQM of the differences and P(learned > opponent) (drawn the same
    way); then the learned policy's own row with its cost. Per network: learned − opponent over seeds. Empty
    without learned episodes or opponents.
    """
    names = _policy_names(opponents)
    chosen, setting = headline_results(results, selector, target, learned, names)
    if not opponents or not any(r.policy == learned for r in chosen):
        return []
    networks = list(dict.fromkeys(r.network for r in chosen))
    seeds = len({r.seed for r in chosen if r.policy == learned})
    vs = _comparisons(chosen, learned, opponents, setting, resamples, population)
    against = f"{len(opponents)} opponent{'s' if len(opponents) > 1 else ''}"
    lines = [
        f"## The learned policy against {against} ({method_label(*setting[:3])}, target density {target}): "
        f"{len(networks)} {chosen[0].split} networks × {seeds} seeds",
        "",
        f"Learned (`{learned}`) − opponent in test accuracy points, paired by network and seed. "
        f"{_interval_words(population, resamples)} **wins** when the interval lies above zero, **loses** below, "
        "**ties** otherwise. Cost: the episodes and wall seconds spent choosing each policy.",
        "",
        "| Opponent | Cost | Test acc. (%) | Learned − opponent [95% CI] | Verdict | IQM of the differences | "
        "P(learned > opponent) |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in opponents:
        c = vs[o.name]
        if c.pooled is None:
            lines.append(f"| {o.title} | {o.cost_text()} | no episodes paired with the learned policy's | | | | |")
            continue
        lines.append(
            f"| {o.title} | {o.cost_text()} | {mean_std_text(chosen, o.policy, setting, None)} | "
            f"{interval_text(c.pooled)} | **{c.pooled.verdict}** | {interval_text(c.iqm)} | "
            f"{interval_text(c.p_improvement, 1.0)} |"
        )
    cost = agent.cost_text() if agent is not None else "n/a"
    lines += [f"| **learned** `{learned}` | {cost} | {mean_std_text(chosen, learned, setting, None)} | | | | |", ""]
    lines += ["Per network: learned − opponent (points) over seeds [95% CI], verdict.", ""]
    lines.append("| Network | " + " | ".join(o.name for o in opponents) + " |")
    lines.append("|---|" + "---|" * len(opponents))
    for net in networks:
        cells = []
        for o in opponents:
            interval = vs[o.name].per_network.get(net)
            where = f" (`{o.policy.get(net, '')}`)" if isinstance(o.policy, Mapping) else ""
            cells.append("" if interval is None else f"{interval_text(interval)} {interval.verdict}{where}")
        lines.append(f"| {net} | " + " | ".join(cells) + " |")
    return lines


def opponent_rows(
    results: Sequence[EpisodeResult],
    selector: str,
    target: float | None,
    opponents: Sequence[Opponent],
    learned: str = "ppo",
    resamples: int = RESAMPLES,
    population: bool = True,
) -> list[dict[str, Any]]:
    """``opponents.csv``: per opponent, one pooled row and one row per network (over seeds).

    The pooled row's ``interval`` says how it was drawn: ``hierarchical`` on a ``population``, else ``seeds``.

    Differences are fractions (learned − opponent); ``network`` is ``all`` on the pooled rows.
    """
    names = _policy_names(opponents)
    chosen, setting = headline_results(results, selector, target, learned, names)
    rows: list[dict[str, Any]] = []
    comparisons = _comparisons(chosen, learned, opponents, setting, resamples, population)
    for o, c in zip(opponents, comparisons.values(), strict=True):
        at = o.at_seconds
        base = {
            "opponent": o.name,
            "label": o.title,
            "episodes": o.episodes,
            "seconds": o.seconds,
            **(
                {}
                if at is None
                else {"at_seconds": at.seconds, "at_seconds_trials": at.trials, "at_seconds_best": at.best}
            ),
        }
        if c.pooled is not None:
            rows.append(
                {
                    **base,
                    "network": "all",
                    "policy": o.policy if isinstance(o.policy, str) else "per network",
                    "interval": "hierarchical" if population else "seeds",
                    **_interval_columns("diff", c.pooled),
                    **_interval_columns("iqm", c.iqm),
                    **_interval_columns("p_improvement", c.p_improvement),
                }
            )
        for net, interval in c.per_network.items():
            policy = o.policy_on(net) or ""
            rows.append(
                {**base, "network": net, "policy": policy, "interval": "seeds", **_interval_columns("diff", interval)}
            )
    return rows


def _interval_columns(prefix: str, interval: Any) -> dict[str, Any]:
    if interval is None:
        return {}
    return {
        f"{prefix}_mean": interval.estimate,
        f"{prefix}_ci_low": interval.low,
        f"{prefix}_ci_high": interval.high,
        **({f"{prefix}_verdict": interval.verdict, "seeds": interval.n} if prefix == "diff" else {}),
    }


def opponent_columns(
    rows: Sequence[dict[str, Any]],
    results: Sequence[EpisodeResult],
    opponents: Sequence[Opponent],
    learned: str = "ppo",
    resamples: int = RESAMPLES,
) -> list[dict[str, Any]]:
    """``results.csv``'s rows, the learned policy's with ``vs_<opponent>_*`` columns: its difference on that network.

    Each learned row (a network at a setting) gets, per opponent that ran there, the opponent's policy on that
    network, the seeds paired, the mean difference (fraction) with its 95% interval over seeds, the verdict, and
    the opponent's cost; every other row leaves the columns empty.
    """
    fields = ("policy", "seeds", "diff_mean", "ci_low", "ci_high", "verdict", "episodes", "seconds")
    keys = [f"vs_{o.name}_{k}" for o in opponents for k in fields]
    out = []
    for row in rows:
        extra: dict[str, Any] = dict.fromkeys(keys, "")
        if row["policy"] == learned:
            setting = (row["selector"], row.get("regrowth", "random"), row["granularity"], row["target_density"])
            here = [r for r in results if r.network == row["network"] and r.split == row["split"]]
            for o in opponents:
                policy = o.policy_on(row["network"])
                diffs = paired_differences(here, learned, policy, setting) if policy is not None else {}
                if row["network"] not in diffs:
                    continue
                ci = mean_interval([diffs[row["network"]]], resamples)
                values = (policy, ci.n, ci.estimate, ci.low, ci.high, ci.verdict, o.episodes, o.seconds)
                extra.update({f"vs_{o.name}_{k}": "" if v is None else v for k, v in zip(fields, values, strict=True)})
        out.append({**row, **extra})
    return out
