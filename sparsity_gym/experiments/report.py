"""Comparison reports: mean ± std over seeds as CSV and Markdown, and PNG plots.

Standard deviations are sample standard deviations over seeds (ddof=1; 0 for a single seed). Every row says
which split (``train`` or ``heldout``) its network comes from.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsity_gym.core.io import atomic_write, atomic_write_text
from sparsity_gym.experiments.evaluation import EpisodeResult

GROUP_KEYS = ("split", "network", "selector", "granularity", "target_density", "policy")
METRICS = ("test_accuracy", "final_density", "inference_flops", "training_flops", "wall_time_s")
SELECTOR_LABELS = {"magnitude": "MP-RR", "random": "RP-RR"}


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarize(results: Sequence[EpisodeResult]) -> list[dict[str, Any]]:
    """One row per (split, network, selector, granularity, target, policy) with mean and std of each metric."""
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
        row["dense_flops"] = members[0].dense_flops
        row["diverged"] = sum(m.diverged for m in members)
        rows.append(row)
    return rows


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``rows`` (dicts with the same keys) as CSV, atomically."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def _method_label(row: dict[str, Any]) -> str:
    label = SELECTOR_LABELS.get(row["selector"], row["selector"])
    return label if row["granularity"] == "weight" else f"{label} ({row['granularity']})"


def markdown(rows: Sequence[dict[str, Any]], title: str = "Results", preamble: Sequence[str] = ()) -> str:
    """Markdown tables per (split, network), after ``preamble`` (lines of Markdown, e.g. :func:`headline`).

    First test accuracy (%) mean ± std by target density × policy × method, then every metric per row.
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
            "| Target | Method | Policy | Seeds | Test acc. (%) | Final density | Inference MFLOPs | "
            "Training GFLOPs | Wall time (s) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(members, key=lambda r: (_target_key(r["target_density"]), _method_label(r), r["policy"])):
            out.append(
                f"| {r['target_density']} | {_method_label(r)} | {r['policy']} | {r['seeds']} | "
                f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f} | "
                f"{r['final_density_mean']:.3f} | {r['inference_flops_mean'] / 1e6:.4f} | "
                f"{r['training_flops_mean'] / 1e9:.2f} | {r['wall_time_s_mean']:.2f} |"
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


def _pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt((_std(a) ** 2 + _std(b) ** 2) / 2.0))


def _versus(label: str, learned: np.ndarray, best_name: str, best: np.ndarray) -> str:
    diff = 100 * (learned.mean() - best.mean())
    sd = 100 * _pooled_sd(learned, best)
    in_sd = f"{diff / sd:+.2f} pooled standard deviations" if sd > 0 else "standard deviation 0"
    verdict = "**wins**" if diff >= 0 else "**does not win**"
    return (
        f"| {label} | {100 * learned.mean():.2f} ± {100 * _std(learned):.2f} | {best_name} | "
        f"{100 * best.mean():.2f} ± {100 * _std(best):.2f} | {diff:+.2f} ({in_sd}) | {verdict} |"
    )


def headline(
    results: Sequence[EpisodeResult],
    selector: str,
    target: float | None,
    learned: str = "ppo",
    baselines: Sequence[str] = (),
) -> str:
    """Markdown: the learned policy against the best of ``baselines`` at one (selector, target) setting.

    Uses the ``heldout`` split when it is present (else every network). Per network, "best" is the baseline with
    the highest mean test accuracy over seeds; the last line pools the networks: each seed's accuracy averaged
    over the networks, then mean ± std over seeds (only seeds every network has). The difference is in points
    and in pooled standard deviations, sqrt((s_learned² + s_best²) / 2), both over seeds (ddof=1).
    """
    chosen = [r for r in results if r.selector == selector and r.target_density == target]
    if any(r.split == "heldout" for r in chosen):
        chosen = [r for r in chosen if r.split == "heldout"]
    policies = {learned, *baselines}
    chosen = [r for r in chosen if r.policy in policies]
    label = SELECTOR_LABELS.get(selector, selector)
    head = [
        f"## Headline: `{learned}` against the best handcrafted schedule ({label}, target density {target})",
        "",
    ]
    acc: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in chosen:
        acc[(r.network, r.policy)][r.seed] = r.test_accuracy
    networks = list(dict.fromkeys(r.network for r in chosen))
    if not any(net for net, pol in acc if pol == learned) or not any(pol != learned for _, pol in acc):
        return "\n".join([*head, f"No `{learned}` or no baseline results at this setting."])
    lines = [
        *head,
        f"Test accuracy (%), mean ± std over seeds; split: {chosen[0].split}.",
        "",
        "| Network | Learned | Best handcrafted | Its accuracy | Learned − best (points) | Verdict |",
        "|---|---|---|---|---|---|",
    ]

    def best_of(per_policy: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
        return max(((p, v) for p, v in per_policy.items() if p != learned), key=lambda pv: pv[1].mean())

    pooled: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for net in networks:
        per_policy = {p: np.array(list(acc[(n, p)].values())) for (n, p) in acc if n == net}
        for (n, p), by_seed in acc.items():
            if n == net:
                for seed, value in by_seed.items():
                    pooled[p][seed].append(value)
        if learned in per_policy and len(per_policy) > 1:
            name, best = best_of(per_policy)
            lines.append(_versus(net, per_policy[learned], name, best))
    if len(networks) > 1:
        full = {
            p: np.array([np.mean(v) for v in by_seed.values() if len(v) == len(networks)])
            for p, by_seed in pooled.items()
        }
        full = {p: v for p, v in full.items() if len(v)}
        if learned in full and len(full) > 1:
            name, best = best_of(full)
            lines.append(_versus(f"all {len(networks)} networks (mean)", full[learned], name, best))
    return "\n".join(lines)


def plot_schedules(path: str | Path, results: Sequence[EpisodeResult], title: str = "") -> Path:
    """Per-layer density against training progress, mean over seeds, one line per policy, one panel a layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_policy: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        by_policy[r.policy].append(r)
    n_layers = max(len(r.schedule[0]) for r in results)
    fig, axes = plt.subplots(1, n_layers, figsize=(3.2 * n_layers, 3), squeeze=False, sharey=True)
    for policy, members in sorted(by_policy.items()):
        sched = np.mean([m.schedule for m in members], axis=0)  # (decisions, layers)
        # each decision's density holds until the next one; the last holds until the end of training
        prog = np.append(np.asarray(members[0].progress), 1.0)
        sched = np.vstack([sched, sched[-1:]])
        for layer in range(sched.shape[1]):
            axes[0, layer].step(
                prog, sched[:, layer], where="post", label=policy, lw=2.5 if policy.startswith("ppo") else 1.2
            )
    for layer in range(n_layers):
        axes[0, layer].set_title(f"layer {layer}")
        axes[0, layer].set_xlabel("training progress")
    axes[0, 0].set_ylabel("density")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png")) and _close(fig, path)


def plot_accuracy_vs_cost(path: str | Path, rows: Sequence[dict[str, Any]], title: str = "") -> Path:
    """Test accuracy against final density and against inference FLOPs fraction, every policy and method.

    One row of two panels per network (its split in the title); colour: policy, marker: method.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    networks = list(dict.fromkeys((row["split"], row["network"]) for row in rows))
    fig, grid = plt.subplots(len(networks), 2, figsize=(10, 3.6 * len(networks)), squeeze=False)
    panel = {net: grid[i] for i, net in enumerate(networks)}
    policies = sorted({row["policy"] for row in rows})
    methods = sorted({_method_label(row) for row in rows})
    colors = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(policies)}
    markers = dict(zip(methods, "osD^vP", strict=False))
    for row in rows:
        acc, err = 100 * row["test_accuracy_mean"], 100 * row["test_accuracy_std"]
        style = {
            "color": colors[row["policy"]],
            "marker": markers.get(_method_label(row), "o"),
            "capsize": 2,
            "linestyle": "none",
            "markersize": 9 if row["policy"].startswith("ppo") else 6,
        }
        axes = panel[(row["split"], row["network"])]
        axes[0].errorbar(row["final_density_mean"], acc, yerr=err, **style)
        axes[1].errorbar(row["inference_flops_mean"] / row["dense_flops"], acc, yerr=err, **style)
    handles = [plt.Line2D([], [], color=colors[p], marker="o", linestyle="none", label=p) for p in policies]
    handles += [
        plt.Line2D([], [], color="grey", marker=markers.get(m, "o"), linestyle="none", label=m) for m in methods
    ]
    grid[0, 1].legend(handles=handles, fontsize=7, loc="lower right")
    for (split, network), axes in panel.items():
        axes[0].set_title(f"{network} ({split} split)", fontsize=9)
        axes[0].set_xlabel("final density")
        axes[1].set_xlabel("inference FLOPs / dense")
        axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle(title)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png")) and _close(fig, path)


def _close(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Path(path)
