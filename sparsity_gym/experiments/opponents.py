"""The learned policy against its opponents, side by side: paired differences over a population, and their costs.

An *opponent* is a static policy the learned one must beat, with what it cost to choose it (DESIGN.md,
"Learning against searching"):

* ``tuned``: the handcrafted grid's cell with the best validation accuracy on the train split (the tuning's
  episodes and seconds);
* ``search`` and ``random``: the best point of the static-schedule search (Optuna's TPE, and random search)
  with the learned policy's budget in episodes;
* ``oracle``: per network, the grid cell with the best mean **test** accuracy there: an upper bound chosen on
  the very results it is scored on, so it has no cost and no fixed schedule chosen in advance can claim it.

Opponents come as records ``{"name", "label", "episodes", "seconds"}`` (``opponents.json`` of a run folder,
:func:`opponents_from_records`): the label is the name its episodes carry in the comparison (``search (1016
episodes)``; ``policy`` overrides it; ``tuned``: the tuned cell passed in), ``best``, optional, the point it
chose (printed beside the label); other keys are ignored. Every difference is learned − opponent in test
accuracy points, paired by network and seed; the pooled interval is the **hierarchical** bootstrap's
(:func:`sparsity_gym.experiments.statistics.hierarchical_interval`: networks drawn, then seeds within each), so the
verdict is about networks like these, not only these ones. The learned policy's own cost (:class:`AgentCost`)
sits in the same column: its training and reference episodes and seconds, and when its periodic evaluation first
beat the reference (the cost of a win).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparsity_gym.core.checks import check_number
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.report import headline_results, interval_text, mean_std_text, method_label
from sparsity_gym.experiments.statistics import RESAMPLES, Comparison, compare, mean_interval, paired_differences

__all__ = [
    "ORACLE_LABEL",
    "AgentCost",
    "Opponent",
    "opponent_columns",
    "opponent_rows",
    "opponents_from_records",
    "opponents_section",
]

ORDER = ("tuned", "search", "random")
"""Opponents in this order first, then any other record in the order given, then the oracle."""
ORACLE_LABEL = "oracle (upper bound: the best grid cell per network on its own test results)"


@dataclass(frozen=True)
class Opponent:
    """One opponent of the learned policy.

    Attributes:
        name: A short name (``tuned``, ``search``, ``random``, ``oracle``): the CSV columns' prefix.
        label: What the report prints.
        policy: The policy name its episodes carry in the results, or ``{network: name}`` (the oracle).
        episodes: Episodes spent choosing it (``None``: unknown, or none for the oracle).
        seconds: Wall seconds spent choosing it (``None``: unknown, or none for the oracle).
        upper_bound: Chosen on the test results it is scored on (the oracle): no cost, not a rival.

    """

    name: str
    label: str
    policy: str | Mapping[str, str]
    episodes: int | None = None
    seconds: float | None = None
    upper_bound: bool = False

    def cost_text(self) -> str:
        """``1016 episodes, 1234 s``; the oracle's ``none (chosen on the test results)``; else ``n/a``."""
        if self.upper_bound:
            return "none (chosen on the test results)"
        parts = [
            f"{self.episodes} episodes" if self.episodes is not None else "",
            f"{self.seconds:.0f} s" if self.seconds is not None else "",
        ]
        return ", ".join(p for p in parts if p) or "n/a"


@dataclass(frozen=True)
class AgentCost:
    """What the learned policy cost, and when it first beat the reference during training.

    Attributes:
        episodes: Training episodes.
        seconds: Wall seconds of training (``None``: unknown); the reference's episodes ran inside them.
        reference_episodes: Episodes the paired reward's reference ran (cache misses).
        reference_seconds: Their wall seconds (part of ``seconds``).
        first_win: ``(episodes, seconds)`` at the first periodic evaluation whose validation accuracy beat the
            reference's on the same networks and seeds; ``None``: none did (or nothing to tell, see ``evaluations``).
        evaluations: Periodic evaluations read (0: none ran, or no reference to beat: no first win can be told).

    """

    episodes: int
    seconds: float | None = None
    reference_episodes: int = 0
    reference_seconds: float = 0.0
    first_win: tuple[int, float] | None = None
    evaluations: int = 0

    def cost_text(self) -> str:
        """Episodes and seconds, then the first win (``never`` when no evaluation beat the reference)."""
        episodes = f"{self.episodes} training" + (
            f" + {self.reference_episodes} reference" if self.reference_episodes else ""
        )
        text = f"{episodes} episodes" + (f", {self.seconds:.0f} s" if self.seconds is not None else "")
        if not self.evaluations:
            return f"{text}; first win over the reference: n/a (no periodic evaluation against it)"
        if self.first_win is None:
            return f"{text}; its periodic evaluation beat the reference: never ({self.evaluations} evaluations)"
        at, seconds_at = self.first_win
        return f"{text}; its periodic evaluation first beat the reference after {at} episodes ({seconds_at:.0f} s)"


def _record_number(record: Mapping[str, Any], key: str, integer: bool) -> Any:
    value = record.get(key)
    if value is None:
        return None
    check_number(f"opponents[{record.get('name')!r}].{key}", value, low=0, integer=integer)
    return int(value) if integer else float(value)


def opponents_from_records(
    records: Sequence[Mapping[str, Any]], reference: str | None, oracle: Mapping[str, str] | None = None
) -> list[Opponent]:
    """The opponents of a report from ``records`` (see the module), the tuned cell ``reference`` and the oracle.

    A ``tuned`` record without a ``reference`` is left out; without a ``tuned`` record the reference is still an
    opponent, its cost unknown. The oracle (``{network: cell}``, when given and not empty) comes last.

    Raises:
        ValueError: A record without a name, two records of one name, or a negative or non-numeric cost.

    """
    by_name: dict[str, Mapping[str, Any]] = {}
    for record in records:
        name = record.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"opponents={record!r} is not allowed; expected a record with a name")
        if name in by_name:
            raise ValueError(f"opponents: name={name!r} is not allowed twice; expected one record per opponent")
        by_name[name] = record
    if reference is not None and "tuned" not in by_name:
        by_name["tuned"] = {"name": "tuned"}
    names = [n for n in ORDER if n in by_name] + [n for n in by_name if n not in ORDER]
    out = []
    for name in names:
        record = by_name[name]
        if name == "tuned" and reference is None and "policy" not in record:
            continue
        default = reference if name == "tuned" else record.get("label", name)
        policy = str(record.get("policy") or default)
        label = str(record.get("label", name))
        if name == "tuned":
            label = f"tuned grid cell `{policy}` (train split)"
        elif record.get("best") and record["best"] != policy:
            label = f"{label}: `{record['best']}`"
        out.append(
            Opponent(
                name, label, policy, _record_number(record, "episodes", True), _record_number(record, "seconds", False)
            )
        )
    if oracle:
        out.append(Opponent("oracle", ORACLE_LABEL, dict(oracle), upper_bound=True))
    return out


def _comparisons(
    chosen: Sequence[EpisodeResult], learned: str, opponents: Sequence[Opponent], setting: tuple, resamples: int
) -> dict[str, Comparison]:
    return {
        o.name: compare(chosen, learned, o.policy, setting, resamples=resamples, hierarchical=True) for o in opponents
    }


def opponents_section(
    results: Sequence[EpisodeResult],
    selector: str,
    target: float | None,
    opponents: Sequence[Opponent],
    agent: AgentCost | None = None,
    learned: str = "ppo",
    resamples: int = RESAMPLES,
) -> list[str]:
    """Markdown lines: the learned policy against every opponent at (selector, target), pooled and per network.

    Uses the ``heldout`` split when present. Pooled: each opponent's cost, test accuracy (mean ± std over seeds of
    the network mean), learned − opponent with its hierarchical 95% interval and verdict, the IQM of the
    differences and P(learned > opponent) (both hierarchical too); then the learned policy's own row with its
    cost. Per network: learned − opponent over seeds. Empty without learned episodes or opponents.
    """
    names = {n for o in opponents for n in ([o.policy] if isinstance(o.policy, str) else o.policy.values())}
    chosen, setting = headline_results(results, selector, target, learned, names)
    if not opponents or not any(r.policy == learned for r in chosen):
        return []
    networks = list(dict.fromkeys(r.network for r in chosen))
    seeds = len({r.seed for r in chosen if r.policy == learned})
    vs = _comparisons(chosen, learned, opponents, setting, resamples)
    against = f"{len(opponents)} opponent{'s' if len(opponents) > 1 else ''}"
    lines = [
        f"## The learned policy against {against} ({method_label(*setting[:3])}, target density {target}): "
        f"{len(networks)} {chosen[0].split} networks × {seeds} seeds",
        "",
        f"Learned (`{learned}`) − opponent in test accuracy points, paired by network and seed. The 95% interval is a "
        f"hierarchical bootstrap ({resamples} resamples): the networks drawn with replacement, then the seeds "
        "within each, so it covers how the difference varies from network to network, not only from seed to "
        "seed. **wins** when the interval lies above zero, **loses** below, **ties** otherwise. Cost: the "
        "episodes and wall seconds spent choosing each policy.",
        "",
        "| Opponent | Cost | Test acc. (%) | Learned − opponent [95% CI] | Verdict | IQM of the differences | "
        "P(learned > opponent) |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in opponents:
        c = vs[o.name]
        if c.pooled is None:
            lines.append(f"| {o.label} | {o.cost_text()} | no episodes paired with the learned policy's | | | | |")
            continue
        lines.append(
            f"| {o.label} | {o.cost_text()} | {mean_std_text(chosen, o.policy, setting, None)} | "
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
) -> list[dict[str, Any]]:
    """``opponents.csv``: per opponent, one pooled row (hierarchical) and one row per network (over seeds).

    Differences are fractions (learned − opponent); ``network`` is ``all`` on the pooled rows.
    """
    names = {n for o in opponents for n in ([o.policy] if isinstance(o.policy, str) else o.policy.values())}
    chosen, setting = headline_results(results, selector, target, learned, names)
    rows: list[dict[str, Any]] = []
    for o, c in zip(opponents, _comparisons(chosen, learned, opponents, setting, resamples).values(), strict=True):
        base = {"opponent": o.name, "label": o.label, "episodes": o.episodes, "seconds": o.seconds}
        if c.pooled is not None:
            rows.append(
                {
                    **base,
                    "network": "all",
                    "policy": o.policy if isinstance(o.policy, str) else "per network",
                    "interval": "hierarchical",
                    **_interval_columns("diff", c.pooled),
                    **_interval_columns("iqm", c.iqm),
                    **_interval_columns("p_improvement", c.p_improvement),
                }
            )
        for net, interval in c.per_network.items():
            policy = o.policy if isinstance(o.policy, str) else o.policy.get(net, "")
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
                policy = o.policy if isinstance(o.policy, str) else o.policy.get(row["network"])
                diffs = paired_differences(here, learned, policy, setting) if policy is not None else {}
                if row["network"] not in diffs:
                    continue
                ci = mean_interval([diffs[row["network"]]], resamples)
                values = (policy, ci.n, ci.estimate, ci.low, ci.high, ci.verdict, o.episodes, o.seconds)
                extra.update({f"vs_{o.name}_{k}": "" if v is None else v for k, v in zip(fields, values, strict=True)})
        out.append({**row, **extra})
    return out
