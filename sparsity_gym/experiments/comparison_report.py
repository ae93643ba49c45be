"""Comparison reports: paired statistics, mean ± std over seeds, as CSV and Markdown; plots in :mod:`.plots`.

Standard deviations are sample standard deviations over seeds (ddof=1; 0 for a single seed). Every row says
which split (``train`` or ``heldout``) its network comes from. Differences between policies are paired by
seed and carry 95% bootstrap intervals (:mod:`sparsity_gym.experiments.paired_intervals`); a verdict is **wins** only
when the interval lies above zero, **loses** when below, **ties** otherwise.

The *reference* of a comparison is a policy name passed in (the task's tuned handcrafted schedule, once it is
chosen on the train split); without one it is the handcrafted schedule with the best mean **validation**
accuracy on the comparison's own networks and seeds, and the report says so. The *oracle* (per network, the
handcrafted schedule with the best mean **test** accuracy there) is an upper bound that no fixed schedule
chosen in advance can claim.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.experiments import plots
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.paired_intervals import (
    RESAMPLES,
    best_by_mean,
    compare,
    mean_interval,
    oracle,
    paired_differences,
    setting_of,
)
from sparsity_gym.experiments.plots import pareto_front, plot_schedules

__all__ = [
    "headline",
    "headline_results",
    "interval_text",
    "markdown",
    "mean_std_text",
    "pareto_front",
    "plot_accuracy_vs_cost",
    "plot_schedules",
    "seed_text",
    "summarize",
]

GROUP_KEYS = ("split", "network", "selector", "regrowth", "granularity", "target_density", "policy")
METRICS = ("test_accuracy", "final_density", "flops_fraction", "inference_flops", "training_flops", "wall_time_s")
METHOD_LABELS = {("magnitude", "random"): "MP-RR", ("random", "random"): "RP-RR"}
"""Names of (selector, regrowth) pairs from the literature; any other pair reads ``selector/regrowth``."""
PAIRED_COLUMNS = ("paired_reference", "paired_seeds", "paired_diff_mean", "paired_diff_ci_low", "paired_diff_ci_high")


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def method_label(selector: str, regrowth: str = "random", granularity: str = "weight") -> str:
    """``MP-RR`` (magnitude, random regrowth), ``RP-RR`` (random, random), else ``selector/regrowth``."""
    label = METHOD_LABELS.get((selector, regrowth), f"{selector}/{regrowth}")
    return label if granularity == "weight" else f"{label} ({granularity})"


def _method_label(row: dict[str, Any]) -> str:
    return method_label(row["selector"], row.get("regrowth", "random"), row["granularity"])


def summarize(results: Sequence[EpisodeResult]) -> list[dict[str, Any]]:
    """One row per (split, network, selector, regrowth, granularity, target, policy): mean and std of each metric.

    ``test_accuracy_ci_low``/``_high`` are the 95% percentile-bootstrap interval of the mean over seeds (NaN
    for one seed); ``flops_fraction`` is taken against the dense network as specified (before widening).
    """
    groups: dict[tuple, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        groups[tuple(getattr(r, k) for k in GROUP_KEYS)].append(r)
    rows = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(GROUP_KEYS, key, strict=True))
        row["seeds"] = len(members)
        for metric in METRICS:
            values = np.array([getattr(m, metric) for m in members], dtype=np.float64)
            row[f"{metric}_mean"] = float(values.mean())
            row[f"{metric}_std"] = _std(values)
        ci = mean_interval([[m.test_accuracy for m in members]])
        row["test_accuracy_ci_low"], row["test_accuracy_ci_high"] = ci.low, ci.high
        row["dense_flops"] = members[0].dense_flops
        row["base_dense_flops"] = members[0].base_dense_flops or members[0].dense_flops
        row["diverged"] = sum(m.diverged for m in members)
        rows.append(row)
    return rows


def reference_for(
    results: Sequence[EpisodeResult], setting: tuple, candidates: Sequence[str], reference: str | None = None
) -> str | None:
    """``reference`` if given, else the candidate with the best mean validation accuracy at ``setting``."""
    return reference or best_by_mean(results, candidates, setting, "val_accuracy")


def add_paired_columns(
    rows: Sequence[dict[str, Any]],
    results: Sequence[EpisodeResult],
    candidates: Sequence[str],
    headline_setting: tuple,
    reference: str | None = None,
) -> list[dict[str, Any]]:
    """Each row with its policy − reference paired difference over seeds (fractions) and its 95% interval.

    The reference runs at the row's setting when it ran there (:func:`reference_for` per setting); a row at a
    setting no handcrafted schedule ran at (a criterion method with its own settings) is paired, seed by seed
    on its network, with the reference at ``headline_setting``: ``paired_reference`` says which.
    """
    out = []
    for row in rows:
        setting = (row["selector"], row.get("regrowth", "random"), row["granularity"], row["target_density"])
        ref_setting = setting
        ref = reference_for(results, setting, candidates, reference)
        here = [r for r in results if r.network == row["network"] and r.split == row["split"]]
        if ref is None or not paired_differences(here, ref, ref, setting):
            ref_setting = headline_setting
            ref = reference_for(results, ref_setting, candidates, reference)
        diffs = paired_differences(here, row["policy"], ref, setting, ref_setting) if ref else {}
        extra: dict[str, Any] = dict.fromkeys(PAIRED_COLUMNS, "")
        if diffs:
            ci = mean_interval(list(diffs.values()))
            where = "" if ref_setting == setting else f" @ {method_label(*ref_setting[:3])} {ref_setting[3]}"
            extra.update(
                paired_reference=f"{ref}{where}",
                paired_seeds=ci.n,
                paired_diff_mean=ci.estimate,
                paired_diff_ci_low=ci.low,
                paired_diff_ci_high=ci.high,
            )
        out.append({**row, **extra})
    return out


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``rows`` as CSV (columns: the union of the rows' keys, in order of appearance), atomically."""
    buf = io.StringIO()
    if rows:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buf, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def _paired_text(row: dict[str, Any]) -> str:
    if row.get("paired_diff_mean", "") == "":
        return ""
    low, high = row["paired_diff_ci_low"], row["paired_diff_ci_high"]
    ci = f"[{100 * low:+.2f}, {100 * high:+.2f}]" if np.isfinite(low) else "[no interval]"
    return f"{100 * row['paired_diff_mean']:+.2f} {ci} vs {row['paired_reference']}"


def markdown(rows: Sequence[dict[str, Any]], title: str = "Results", preamble: Sequence[str] = ()) -> str:
    """Markdown tables per (split, network), after ``preamble`` (lines of Markdown, e.g. :func:`headline`).

    First test accuracy (%) mean ± std by target density × policy × method, then every metric per row (with
    the paired difference to the reference when the rows carry it, :func:`add_paired_columns`).
    """
    out = [f"# {title}", "", *preamble, ""]
    by_net: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        by_net[(row["split"], row["network"])].append(row)
    for (split, network), members in by_net.items():
        methods = sorted({_method_label(r) for r in members})
        out += [f"## {network} ({split} split)", "", "Test accuracy (%), mean ± std over seeds.", ""]
        out.append("| Target density | Policy | " + " | ".join(methods) + " |")
        out.append("|---|---|" + "---|" * len(methods))
        cells: dict[tuple, dict[str, str]] = defaultdict(dict)
        for r in members:
            cells[(r["target_density"], r["policy"])][_method_label(r)] = (
                f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f}"
            )
        for (target, policy), by_method in sorted(cells.items(), key=lambda kv: (_target_key(kv[0][0]), kv[0][1])):
            target_txt = "none" if target is None else f"{100 * target:g}%"
            out.append(f"| {target_txt} | {policy} | " + " | ".join(by_method.get(m, "") for m in methods) + " |")
        out += [
            "",
            "| Target | Method | Policy | Seeds | Test acc. (%) | − reference, paired (points) [95% CI] | "
            "Final density | FLOPs / dense | Inference MFLOPs | Training GFLOPs | Wall time (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(members, key=lambda r: (_target_key(r["target_density"]), _method_label(r), r["policy"])):
            out.append(
                f"| {r['target_density']} | {_method_label(r)} | {r['policy']} | {r['seeds']} | "
                f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f} | {_paired_text(r)} | "
                f"{r['final_density_mean']:.3f} | {r.get('flops_fraction_mean', float('nan')):.3f} | "
                f"{r['inference_flops_mean'] / 1e6:.4f} | {r['training_flops_mean'] / 1e9:.2f} | "
                f"{r['wall_time_s_mean']:.2f} |"
            )
        out.append("")
    return "\n".join(out)


def _target_key(target: float | None) -> float:
    return 2.0 if target is None else float(target)


def write_markdown(
    path: str | Path, rows: Sequence[dict[str, Any]], title: str = "Results", preamble: Sequence[str] = ()
) -> Path:
    """Write :func:`markdown` of ``rows`` atomically."""
    return atomic_write_text(path, markdown(rows, title, preamble))


def plot_accuracy_vs_cost(
    path: str | Path, rows: Sequence[dict[str, Any]], title: str = "", highlight: Mapping[str, str] | None = None
) -> Path:
    """:func:`sparsity_gym.experiments.plots.plot_accuracy_vs_cost` with this module's method labels."""
    return plots.plot_accuracy_vs_cost(path, rows, title, label=_method_label, highlight=highlight)


def mean_std_text(
    results: Sequence[EpisodeResult], policy: str | Mapping[str, str], setting: tuple, network: str | None
) -> str:
    """Test accuracy (%) ``mean ± std`` over seeds on ``network``.

    Pooled (``network=None``): each seed's mean over the networks (only seeds every network has), then mean ±
    std over seeds.
    """
    by_net: dict[str, dict[int, float]] = defaultdict(dict)
    for r in results:
        name = policy if isinstance(policy, str) else policy.get(r.network)
        if r.policy == name and setting_of(r) == setting and network in (None, r.network):
            by_net[r.network][r.seed] = r.test_accuracy
    if not by_net:
        return ""
    seeds = set.intersection(*(set(v) for v in by_net.values()))
    values = np.array([np.mean([v[s] for v in by_net.values()]) for s in sorted(seeds)])
    return f"{100 * values.mean():.2f} ± {100 * _std(values):.2f}" if len(values) else ""


def interval_text(interval: Any, scale: float = 100.0, digits: int = 2) -> str:
    """Points (``scale`` 100, signed) or a probability (``scale`` 1, unsigned) with its interval."""
    return "n/a" if interval is None else interval.scaled(scale).text(digits, signed=scale != 1.0)


def headline_results(
    results: Sequence[EpisodeResult], selector: str, target: float | None, learned: str, policies: Iterable[str]
) -> tuple[list[EpisodeResult], tuple]:
    """The episodes a headline compares, and their setting: ``learned``'s and ``policies``' at (selector, target).

    The ``heldout`` split when it is present (else every network); the setting (:func:`setting_of`) is the
    learned policy's, or the first episode's without one.
    """
    chosen = [r for r in results if r.selector == selector and r.target_density == target]
    if any(r.split == "heldout" for r in chosen):
        chosen = [r for r in chosen if r.split == "heldout"]
    chosen = [r for r in chosen if r.policy in {learned, *policies}]
    mine = [r for r in chosen if r.policy == learned] or chosen
    setting = setting_of(mine[0]) if mine else (selector, "random", "weight", target)
    return [r for r in chosen if setting_of(r) == setting], setting


def seed_text(start: int, count: int) -> str:
    """``seed 1000`` for one seed, ``seeds 1000-1004`` for several."""
    return f"seed {start}" if count == 1 else f"seeds {start}-{start + count - 1}"


def headline(
    results: Sequence[EpisodeResult],
    selector: str,
    target: float | None,
    learned: str = "ppo",
    baselines: Sequence[str] = (),
    reference: str | None = None,
) -> str:
    """Markdown: ``learned`` against the reference at one (selector, target), paired by seed, with intervals.

    Uses the ``heldout`` split when it is present (else every network). Per network and pooled: mean ± std
    over seeds of each side, the mean paired difference (points) with its 95% bootstrap interval, the verdict,
    and the oracle; pooled also rliable's IQM of the paired differences and P(learned > reference). Without
    ``learned`` results it is the table of the baselines against the reference, and says no learned model was
    compared. ``reference`` defaults to the best of ``baselines`` by mean validation accuracy (see the module).
    """
    chosen, setting = headline_results(results, selector, target, learned, baselines)
    label = method_label(*setting[:3])
    ref = reference_for(chosen, setting, baselines, reference)
    has_learned = any(r.policy == learned for r in chosen)
    what = f"`{learned}` against the reference" if has_learned else "the handcrafted schedules"
    head = [f"## Headline: {what} ({label}, target density {target})", ""]
    if ref is None:
        return "\n".join([*head, "No handcrafted schedule ran at this setting: nothing to compare with."])
    orc = oracle(chosen, baselines, setting)
    networks = list(dict.fromkeys(r.network for r in chosen))
    how = (
        "the tuned handcrafted schedule passed in" if reference else
        "the handcrafted schedule with the best mean *validation* accuracy on these networks and seeds (picked "
        "on the comparison itself, not chosen in advance; pass the tuned handcrafted schedule to replace it)"
    )  # fmt: skip
    lines = [
        *head,
        f"Reference: `{ref}`, {how}. Oracle: per network, the handcrafted schedule with the best mean *test* "
        "accuracy there, an upper bound that no fixed schedule chosen in advance can claim.",
        "",
        f"Test accuracy (%), mean ± std over seeds; split: {chosen[0].split}. Differences are paired seed by seed "
        f"(same network, seed and setting), in points, with 95% percentile-bootstrap intervals ({RESAMPLES} "
        "resamples; pooled: seeds resampled within networks, the networks held fixed). Verdict: **wins** only "
        "when the interval lies above zero, **loses** when below, **ties** otherwise.",
        "",
    ]
    if not has_learned:
        return "\n".join([*lines, *_baselines_table(chosen, baselines, ref, setting, len(networks))])
    vs_ref = compare(chosen, learned, ref, setting)
    vs_orc = compare(chosen, learned, orc, setting)
    lines += [
        "| Network | Seeds | Learned | Reference | Learned − reference [95% CI] | Verdict | Oracle | "
        "Learned − oracle [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for net in networks:
        if net not in vs_ref.per_network:
            continue
        interval = vs_ref.per_network[net]
        lines.append(
            f"| {net} | {interval.n} | {mean_std_text(chosen, learned, setting, net)} | "
            f"{ref} {mean_std_text(chosen, ref, setting, net)} | {interval_text(interval)} | "
            f"**{interval.verdict}** | {orc.get(net, '')} {mean_std_text(chosen, orc, setting, net)} | "
            f"{interval_text(vs_orc.per_network.get(net))} |"
        )
    if vs_ref.pooled is not None and len(vs_ref.per_network) > 1:
        lines.append(
            f"| all {len(vs_ref.per_network)} networks (mean) | {vs_ref.pooled.n} | "
            f"{mean_std_text(chosen, learned, setting, None)} | {ref} {mean_std_text(chosen, ref, setting, None)} | "
            f"{interval_text(vs_ref.pooled)} | **{vs_ref.pooled.verdict}** | "
            f"oracle {mean_std_text(chosen, orc, setting, None)} | {interval_text(vs_orc.pooled)} |"
        )
    if vs_ref.pooled is not None:
        lines += [
            "",
            f"Pooled over {len(vs_ref.per_network)} network(s): interquartile mean of the paired differences "
            f"{interval_text(vs_ref.iqm)} points; probability of improvement P(learned > reference) "
            f"{interval_text(vs_ref.p_improvement, 1.0)} (Agarwal et al. 2021; ties count ½). Verdict: "
            f"**{vs_ref.pooled.verdict}**.",
        ]
    return "\n".join(lines)


def _baselines_table(
    chosen: Sequence[EpisodeResult], baselines: Sequence[str], ref: str, setting: tuple, n_networks: int
) -> list[str]:
    """The baselines-only headline: each handcrafted schedule, pooled, against the reference."""
    lines = [
        "No learned model was compared: the handcrafted schedules at this setting, pooled over "
        f"{n_networks} network(s).",
        "",
        "| Policy | Test acc. (%) | − reference [95% CI] | IQM of the differences | P(policy > reference) | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name in baselines:
        c = compare(chosen, name, ref, setting)
        if c.pooled is None:
            continue
        lines.append(
            f"| {name}{' (reference)' if name == ref else ''} | {mean_std_text(chosen, name, setting, None)} | "
            f"{interval_text(c.pooled)} | {interval_text(c.iqm)} | {interval_text(c.p_improvement, 1.0)} | "
            f"**{c.pooled.verdict}** |"
        )
    return lines


def _cell(value: Any) -> Any:
    """A CSV cell: containers as JSON (``{"widths": [192, 192]}``), anything else as is."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else value


def episode_table(results: Sequence[EpisodeResult]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """``episodes.csv``'s rows and ``configs.json``'s mapping: each episode with the env settings that made it.

    Every row carries ``config_hash`` (the key of its full ``EnvConfig.to_dict()`` in the mapping) and, as
    columns of their own, the env fields that differ between the episodes (``budget`` and ``allocation``
    always, when the env has them), so a row can be rerun from the two files alone.
    """
    configs = {r.config_hash: r.env for r in results if r.config_hash}
    fields = list(dict.fromkeys(k for env in configs.values() for k in env))
    varying = [
        k for k in fields if k in ("budget", "allocation") or len({repr(env.get(k)) for env in configs.values()}) > 1
    ]
    rows = []
    for r in results:
        row = r.row()
        row.update({f"env_{k}": _cell(r.env.get(k, "")) for k in varying if f"env_{k}" not in row and k not in row})
        rows.append(row)
    return rows, configs
