"""The report's PNG plots: learned schedules against the baselines, and accuracy against density and FLOPs.

Policies with a role (``highlight``: the learned policy, the reference, the search's best point, random
search's, the oracle) are drawn in :data:`ROLE_COLOURS`, every other policy in grey, the legend outside the axes.
Every figure is closed whether or not writing it succeeds (no figure leaks into a long-running process).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from sparsity_gym.core.io import atomic_write

# Distinct colours, no greys (tab10 without its grey, then tab20's light partners without theirs); the learned
# policy is black and drawn larger.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)  # fmt: skip
LEARNED_COLOUR = "#000000"
ROLE_COLOURS = {
    "learned": LEARNED_COLOUR,
    "reference": "#1f77b4",
    "search": "#ff7f0e",
    "random search": "#2ca02c",
    "oracle": "#d62728",
}
"""Colour of a highlighted policy by its (first) role; a role not listed takes the next of :data:`PALETTE`."""
OTHER_COLOUR = "#a0a0a0"
MARKERS = "osD^vP*Xph<>"
DODGE = 0.01  # points that share an x are spread sideways by this fraction of the axis each, intervals apart
FENCE = 3.0  # points beyond FENCE interquartile ranges outside the quartiles are drawn at the axis edge


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, draw: Callable[[], None]) -> Path:
    """Run ``draw()``, write ``fig`` atomically as PNG, and close it whatever happens."""
    plt = _pyplot()
    try:
        draw()
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)


def role_colours(highlight: Mapping[str, str]) -> dict[str, str]:
    """``{policy: colour}`` of the highlighted policies: by the first role of each (``"reference, oracle"``)."""
    spare = iter(c for c in PALETTE if c not in ROLE_COLOURS.values())
    return {
        p: ROLE_COLOURS.get(role.split(",")[0].strip()) or next(spare, OTHER_COLOUR) for p, role in highlight.items()
    }


LOG_DENSITY_BELOW = 0.05
"""Targets below this density get a logarithmic density axis in the schedule plots."""


def schedule_figure(
    results: Sequence[Any],
    title: str = "",
    highlight: Mapping[str, str] | None = None,
    layer_names: Sequence[str] | None = None,
    references: Mapping[str, Callable[[float, float], float]] | None = None,
) -> Any:
    """Per-layer density against training progress, mean over seeds, one line per policy, one panel a layer.

    Each decision's density holds until the next one (a step line; the last until the end of training).
    ``highlight`` (``{policy: role}``; default: the policies named ``ppo*`` as ``learned``) are drawn in colour
    on top, labelled ``role: policy``; every other policy is a thin grey line, one legend entry for all.
    ``references`` (``{name: (progress, target) -> density}``, e.g. ``baselines.SCHEDULES``) are drawn as thin
    curves at 101 points of progress, at the episodes' target (density 1 without one). Panels are titled with
    ``layer_names`` (default ``layer 0``, ``layer 1``...); the legend sits right of the panels. At a target
    below :data:`LOG_DENSITY_BELOW` the density axis is logarithmic (a schedule to 1% is a flat line at the bottom
    of a linear axis for most of training). Returns the open
    matplotlib figure, the caller closes it (:func:`plot_schedules` writes and closes it; ``stable_baselines3``'s
    ``Figure(fig, close=True)`` closes it); a figure that fails to draw is closed here.
    """
    plt = _pyplot()
    by_policy: dict[str, list[Any]] = defaultdict(list)
    for r in results:
        by_policy[r.policy].append(r)
    roles = dict(highlight) if highlight is not None else {p: "learned" for p in by_policy if p.startswith("ppo")}
    colours = role_colours({p: role for p, role in roles.items() if p in by_policy})
    n_layers = max(len(r.schedule[0]) for r in results)
    names = list(layer_names) if layer_names is not None else [f"layer {j}" for j in range(n_layers)]
    fig, axes = plt.subplots(1, n_layers, figsize=(3.2 * n_layers, 3), squeeze=False, sharey=True)
    target = results[0].target_density if results[0].target_density is not None else 1.0
    try:
        fine = np.linspace(0.0, 1.0, 101)
        spare = iter(c for c in PALETTE if c not in colours.values())
        for name, fn in (references or {}).items():
            style = {"color": next(spare, OTHER_COLOUR), "lw": 0.8, "alpha": 0.7, "zorder": 2, "label": name}
            for layer in range(n_layers):
                axes[0, layer].plot(fine, [fn(p, target) for p in fine], **style)
        others = sorted(p for p in by_policy if p not in colours)
        for policy in [*others, *colours]:  # the highlighted ones on top
            members = by_policy[policy]
            sched = np.mean([m.schedule for m in members], axis=0)  # (decisions, layers)
            prog = np.append(np.asarray(members[0].progress), 1.0)
            sched = np.vstack([sched, sched[-1:]])
            role = roles.get(policy, "")
            label = policy if policy.startswith(role) else f"{role}: {policy}"
            style = (
                {
                    "color": colours[policy],
                    "lw": 2.5 if role.startswith("learned") else 1.6,
                    "zorder": 3,
                    "label": label,
                }
                if policy in colours
                else {"color": OTHER_COLOUR, "lw": 0.9, "alpha": 0.7, "zorder": 1, "label": "_other"}
            )
            for layer in range(sched.shape[1]):
                axes[0, layer].step(prog, sched[:, layer], where="post", **style)
        for layer, name in enumerate(names):
            axes[0, layer].set_title(name, fontsize=8)
            axes[0, layer].set_xlabel("training progress")
        axes[0, 0].set_ylabel("density")
        if target < LOG_DENSITY_BELOW:
            axes[0, 0].set_yscale("log")  # shared by every panel
            axes[0, 0].set_ylabel("density (log scale)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        if others:
            handles.append(plt.Line2D([], [], color=OTHER_COLOUR, lw=0.9))
            labels.append(f"every other policy ({len(others)})")
        fig.suptitle(title)
        fig.tight_layout()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    except BaseException:
        plt.close(fig)  # a figure that failed to draw does not leak
        raise
    return fig


def plot_schedules(
    path: str | Path, results: Sequence[Any], title: str = "", highlight: Mapping[str, str] | None = None
) -> Path:
    """:func:`schedule_figure` of ``results`` written to ``path`` as PNG (atomically; the figure closed)."""
    fig = schedule_figure(results, title, highlight)
    return _save(fig, path, lambda: None)


def pareto_front(x: ArrayLike, y: ArrayLike) -> list[int]:
    """Indices of the points no other point dominates (``x`` no larger and ``y`` no smaller, one strictly).

    Lower ``x`` (cost) and higher ``y`` (accuracy) are better; sorted by ``x``. Duplicated points all stay.
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    front = [i for i in range(len(xs)) if not np.any((xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i])))]
    return sorted(front, key=lambda i: (xs[i], -ys[i]))


def robust_limits(values: ArrayLike, low: ArrayLike, high: ArrayLike, min_span: float) -> tuple:
    """Axis limits that hold every point inside the quartile fences (with its interval), and the rest's mask.

    A point beyond ``FENCE`` interquartile ranges outside the quartiles is off scale: ``(lo, hi, off)`` where
    ``off[i]`` is ``-1``/``+1`` for a point below/above the limits, else 0 (such points are drawn at the edge).
    """
    v = np.asarray(values, dtype=np.float64)
    q1, q3 = np.percentile(v, [25, 75])
    reach = FENCE * max(q3 - q1, min_span)
    off = np.where(v < q1 - reach, -1, np.where(v > q3 + reach, 1, 0))
    inside = off == 0
    lows = np.where(np.isfinite(low), low, v)[inside]
    highs = np.where(np.isfinite(high), high, v)[inside]
    lo, hi = float(np.min(lows)), float(np.max(highs))
    if hi - lo < min_span:  # all but equal: a span of min_span around them, not a magnified sliver
        lo, hi = (lo + hi - min_span) / 2, (lo + hi + min_span) / 2
    pad = 0.08 * (hi - lo)
    return lo - pad, hi + pad, off


def _styles(
    rows: Sequence[dict[str, Any]], label: Callable[[dict], str], learned: str, highlight: Mapping[str, str]
) -> dict[tuple, dict]:
    """One colour per policy, one marker per method: a legend entry per pair.

    Highlighted policies (``{policy: role}``) take their role's colour (:func:`role_colours`), the learned one
    black; the others distinct colours of :data:`PALETTE` while there are enough, else all grey.
    """
    policies = sorted({r["policy"] for r in rows}, key=lambda p: (p.startswith(learned), p in highlight, p))
    methods = sorted({label(r) for r in rows})
    colour = role_colours({p: role for p, role in highlight.items() if p in policies})
    colour.update({p: LEARNED_COLOUR for p in policies if p.startswith(learned)})
    others = [p for p in policies if p not in colour]
    spare = [c for c in PALETTE if c not in colour.values()]
    colour.update({p: spare[i] if len(others) <= len(spare) else OTHER_COLOUR for i, p in enumerate(others)})
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(methods)}
    used = {(r["policy"], label(r)) for r in rows}
    return {
        (p, m): {"color": colour[p], "marker": marker[m], "markersize": 10 if p.startswith(learned) else 7}
        for p in policies
        for m in methods
        if (p, m) in used
    }


def plot_accuracy_vs_cost(
    path: str | Path,
    rows: Sequence[dict[str, Any]],
    title: str = "",
    label: Callable[[dict], str] = lambda r: str(r["selector"]),
    learned: str = "ppo",
    highlight: Mapping[str, str] | None = None,
) -> Path:
    """Test accuracy against the policies (one target) or final density (several), and against FLOPs.

    One row of two panels per network (its split in the title). A point is the mean over seeds with its 95%
    bootstrap interval (``test_accuracy_ci_low``/``_high`` when the rows have them, else ± one std).

    * Left: when the network's rows share one target density (criterion methods, without one, aside), every
      policy × method on its own line, sorted by mean accuracy, its final density in the label: policies that
      reached the same density are not spread along a density axis. With several targets (a sweep), accuracy
      against final density, points within 1% of the axis spread sideways (``DODGE`` of the axis each).
    * Right: accuracy against the inference-FLOPs fraction (against the dense network as specified:
      ``flops_fraction_mean``; DYNO's widened network does not change it), points at their own x, the
      accuracy–FLOPs Pareto front ringed (spread sideways like the left panel in a sweep).

    A point far outside the others (see :func:`robust_limits`) is drawn at the axis edge with its value.
    ``highlight`` (``{policy: role}``) colours policies by role (:func:`role_colours`).
    """
    plt = _pyplot()
    networks = list(dict.fromkeys((row["split"], row["network"]) for row in rows))
    count = max(sum((r["split"], r["network"]) == key for r in rows) for key in networks)
    fig, grid = plt.subplots(
        len(networks), 2, figsize=(12, max(3.8, 0.24 * count + 1.4) * len(networks)), squeeze=False
    )
    styles = _styles(rows, label, learned, highlight or {})

    def draw() -> None:
        for (split, network), axes in zip(networks, grid, strict=True):
            members = [r for r in rows if (r["split"], r["network"]) == (split, network)]
            _panel_pair(axes, members, styles, label, highlight or {})
            axes[0].set_title(f"{network} ({split} split)", fontsize=9)
            axes[1].set_title(f"{network}: ringed = accuracy–FLOPs Pareto front", fontsize=9)
        handles = [
            plt.Line2D([], [], linestyle="none", label=f"{p} · {m}", **style) for (p, m), style in styles.items()
        ]
        handles.append(
            plt.Line2D([], [], linestyle="none", marker="o", markersize=13, markerfacecolor="none",
                       markeredgecolor="#d62728", label="Pareto front (accuracy–FLOPs)")
        )  # fmt: skip
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=8, frameon=False)
        note = "mean and 95% interval over seeds; ▼/▲/◀/▶: off scale, value printed"
        fig.suptitle(f"{title}\n{note}" if title else note, fontsize=10)
        fig.tight_layout()

    return _save(fig, path, draw)


def _panel_pair(
    axes: Any, rows: Sequence[dict[str, Any]], styles: dict, label: Callable[[dict], str], roles: Mapping[str, str]
) -> None:
    """Draw one network's two panels: the policies (one target) or density (several), and the FLOPs fraction."""
    acc = np.array([100 * r["test_accuracy_mean"] for r in rows])
    std = np.array([100 * r["test_accuracy_std"] for r in rows])
    low = np.array([100 * r.get("test_accuracy_ci_low", np.nan) for r in rows], dtype=np.float64)
    high = np.array([100 * r.get("test_accuracy_ci_high", np.nan) for r in rows], dtype=np.float64)
    low, high = np.where(np.isfinite(low), low, acc - std), np.where(np.isfinite(high), high, acc + std)
    density = np.array([r["final_density_mean"] for r in rows])
    flops = np.array([r.get("flops_fraction_mean", r["inference_flops_mean"] / r["dense_flops"]) for r in rows])
    y_lo, y_hi, y_off = robust_limits(acc, low, high, min_span=1.0)
    one_target = len({r["target_density"] for r in rows if r["target_density"] is not None}) <= 1
    if one_target:  # one budget: zoom in on the FLOPs its allocations reach
        x_lo, x_hi, x_off = robust_limits(flops, flops, flops, min_span=max(0.25 * float(np.median(flops)), 1e-4))
    else:
        x_lo, x_hi, x_off = robust_limits(flops, flops, flops, min_span=0.1)
        x_lo, x_hi = min(x_lo, 0.0), max(x_hi, 0.2)
    keys = list(styles)
    order = [keys.index((r["policy"], label(r))) for r in rows]
    panels = [(axes[1], flops, x_off, (x_lo, x_hi))]
    if one_target:
        _strip_panel(axes[0], rows, (acc, low, high), density, styles, label, (y_lo, y_hi, y_off), roles)
    else:
        d_hi = min(1.05, max(0.2, 1.15 * float(density.max()) + 0.02))  # zoom in when every density is small
        panels.insert(0, (axes[0], density, np.zeros(len(rows)), (0.0, d_hi)))
        axes[0].set_xlabel("final density (parameter-weighted)")
    for ax, xs, x_out, (xa, xb) in panels:
        ax.set_xlim(xa, xb)
        dodge = np.zeros(len(rows)) if one_target else _dodge(xs, order, xb - xa)
        for i, r in enumerate(rows):
            style = styles[(r["policy"], label(r))]
            x = float(np.clip(xs[i] + dodge[i], xa, xb))
            if y_off[i] or x_out[i]:
                _off_scale(ax, x, acc[i], xs[i], int(y_off[i]), (y_lo, y_hi), style, r["policy"])
                continue
            ax.errorbar(x, acc[i], yerr=[[acc[i] - low[i]], [high[i] - acc[i]]], linestyle="none", capsize=2,
                        alpha=0.8 if one_target else 1.0, **style)  # fmt: skip
        ax.set_xlim(xa, xb)
        ax.set_ylim(y_lo, y_hi)
        ax.grid(alpha=0.3)
        ax.set_ylabel("test accuracy (%), mean and 95% CI")
    front = pareto_front(flops, acc)
    shift = np.zeros(len(rows)) if one_target else _dodge(flops, order, x_hi - x_lo)
    fx = np.clip(flops[front] + shift[front], x_lo, x_hi)
    axes[1].step(fx, np.clip(acc[front], y_lo, y_hi), where="post", color="#d62728", lw=0.8, alpha=0.7)
    axes[1].plot(fx, np.clip(acc[front], y_lo, y_hi), linestyle="none", marker="o", markersize=14,
                 markerfacecolor="none", markeredgecolor="#d62728")  # fmt: skip
    axes[1].set_xlabel("inference FLOPs / the dense network's (as specified, before widening)")
    axes[1].locator_params(axis="x", nbins=6)


def _strip_panel(
    ax: Any,
    rows: Sequence[dict[str, Any]],
    accuracy: tuple[np.ndarray, np.ndarray, np.ndarray],
    density: np.ndarray,
    styles: dict,
    label: Callable[[dict], str],
    limits: tuple[float, float, np.ndarray],
    roles: Mapping[str, str],
) -> None:
    """Every row on its own line (best mean on top), accuracy and its interval along x, final density in the label.

    A policy with a role (``roles``) has it in front of its name, unless its name starts with it.
    """
    acc, low, high = accuracy
    lo, hi, off = limits
    order = np.argsort(acc, kind="stable")
    names = []
    for line, i in enumerate(order):
        r, style = rows[i], styles[(rows[i]["policy"], label(rows[i]))]
        role = roles.get(r["policy"], "")
        prefix = f"{role}: " if role and not r["policy"].startswith(role) else ""
        name = f"{prefix}{r['policy']} · {label(r)} (density {density[i]:.4f})"
        if off[i]:
            name += f" ({acc[i]:.1f}%, off scale)"
            edge = lo + 0.02 * (hi - lo) if off[i] < 0 else hi - 0.02 * (hi - lo)
            ax.plot(edge, line, linestyle="none", **{**style, "marker": "<" if off[i] < 0 else ">"})
        else:
            ax.errorbar(acc[i], line, xerr=[[acc[i] - low[i]], [high[i] - acc[i]]], linestyle="none", capsize=2,
                        **style)  # fmt: skip
        names.append(name)
    ax.set_yticks(range(len(order)), names, fontsize=7)
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.set_xlim(lo, hi)
    ax.grid(alpha=0.3, axis="x")
    ax.set_xlabel("test accuracy (%), mean and 95% CI")


def _dodge(xs: np.ndarray, order: Sequence[int], span: float) -> np.ndarray:
    """Sideways offsets: points within 1% of the axis of each other spread ``DODGE * span`` apart, by ``order``."""
    out = np.zeros(len(xs))
    groups: dict[int, list[int]] = defaultdict(list)
    for i, x in enumerate(xs):
        groups[round(float(x) / (0.01 * span))].append(i)
    for members in groups.values():
        members.sort(key=lambda i: order[i])
        for j, i in enumerate(members):
            out[i] = DODGE * span * (j - (len(members) - 1) / 2)
    return out


def _off_scale(ax: Any, x: float, acc: float, raw_x: float, side: int, ylim: tuple, style: dict, name: str) -> None:
    """Draw an off-scale point at the axis edge as an arrow head pointing out, with its true values."""
    y_lo, y_hi = ylim
    inset = 0.04 * (y_hi - y_lo)
    y = y_lo + inset if side < 0 else y_hi - inset if side > 0 else float(np.clip(acc, y_lo, y_hi))
    marker = "v" if side < 0 else "^" if side > 0 else ">"
    ax.plot(x, y, linestyle="none", **{**style, "marker": marker})
    ax.annotate(
        f"{name}: {acc:.1f}% at x={raw_x:.2f} (off scale)",
        (x, y),
        xytext=(8 if x < sum(ax.get_xlim()) / 2 else -8, 4 if side < 0 else -10),
        ha="left" if x < sum(ax.get_xlim()) / 2 else "right",
        textcoords="offset points",
        fontsize=7,
        color=style["color"],
    )


def plot_learning_curve(
    path: str | Path, rewards: ArrayLike, val_accuracy: ArrayLike, window: int = 20, title: str = ""
) -> Path:
    """The training episodes' final rewards and validation accuracies in order, with their running means.

    ``rewards`` is the reward of each episode's last step (under paired rewards: the validation accuracy minus the
    reference's on the same network and seed, so above 0 means better than the reference); ``window`` episodes
    make one point of the running mean (fewer at the start).
    """
    plt = _pyplot()
    r = np.asarray(rewards, dtype=float)
    v = np.asarray(val_accuracy, dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))

    def running(x: np.ndarray) -> np.ndarray:
        sums = np.cumsum(np.insert(x, 0, 0.0))
        starts = np.maximum(np.arange(1, len(x) + 1) - window, 0)
        return (sums[1:] - sums[starts]) / (np.arange(1, len(x) + 1) - starts)

    def draw() -> None:
        episodes = np.arange(1, len(r) + 1)
        for ax, values, name in ((axes[0], r, "final reward"), (axes[1], 100 * v, "validation accuracy (%)")):
            ax.plot(episodes, values, ".", ms=3, alpha=0.35, color="tab:gray", label="episode")
            if len(values):
                ax.plot(episodes, running(values), color="tab:blue", lw=2, label=f"running mean ({window})")
            ax.set_xlabel("training episode")
            ax.set_ylabel(name)
        axes[0].axhline(0.0, color="black", lw=0.8)
        axes[0].legend(fontsize=7)
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()

    return _save(fig, path, draw)
