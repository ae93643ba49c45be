"""Where the budget goes: the best validation accuracy found against episodes spent, search and learning on one axis.

A search's trace is its study's completed trials in order (:mod:`sparsity_gym.experiments.search`): after trial
``i`` it has spent ``(i + 1) × per_trial`` episodes (networks × seeds) and its best is the best mean validation
accuracy (train split) so far. A learned policy's trace is its periodic evaluations (``--select-on train``: the
same split), the best so far at the training episodes spent, shifted by the episodes spent before training
began (the prior's search, for search-then-learn). ``budget_curve.csv`` holds the points (``curve``,
``episodes``, ``best_val_accuracy``) and ``budget_curve.png`` draws them as steps, so a reader sees whether an
extra thousand episodes buy more as search or as learning.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from sparsity_gym.core.io import atomic_write_text

Trace = list[tuple[int, float]]
COLUMNS = ("curve", "episodes", "best_val_accuracy")


def best_so_far(points: Sequence[tuple[int, float]]) -> Trace:
    """``(episodes, best value up to there)`` for points ``(episodes, value)`` in spending order."""
    out: Trace = []
    best = float("-inf")
    for episodes, value in points:
        best = max(best, float(value))
        out.append((int(episodes), best))
    return out


def study_trace(path: str | Path, sampler: str) -> Trace:
    """The best-so-far trace of the study in ``path`` (``search_tpe.db``; empty when there is none)."""
    from sparsity_gym.experiments.search import import_optuna

    if not Path(path).exists():
        return []
    optuna = import_optuna()
    study = optuna.load_study(study_name=f"search_{sampler}", storage=f"sqlite:///{path}")
    per_trial = int(study.user_attrs.get("per_trial", 1))
    done = optuna.trial.TrialState.COMPLETE
    trials = sorted(study.get_trials(deepcopy=False, states=(done,)), key=lambda t: t.number)
    return best_so_far([((i + 1) * per_trial, float(t.value)) for i, t in enumerate(trials)])


def evaluation_trace(rows: Sequence[Mapping[str, str]], offset: int = 0) -> Trace:
    """The best-so-far trace of periodic evaluations (rows with ``episodes`` and ``val_accuracy``), from ``offset``.

    A timestep evaluated twice (a resumed session re-evaluating) keeps its last row.
    """
    latest = {int(r["episodes"]): float(r["val_accuracy"]) for r in rows}
    return best_so_far([(offset + e, v) for e, v in sorted(latest.items())])


def write_budget_curve(folder: str | Path, curves: Mapping[str, Trace], title: str = "") -> Path | None:
    """``budget_curve.csv`` and ``budget_curve.png`` in ``folder`` (``None``, nothing written: no curve has a point)."""
    curves = {name: trace for name, trace in curves.items() if trace}
    if not curves:
        return None
    folder = Path(folder)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for name, trace in curves.items():
        writer.writerows((name, e, f"{v:.6f}") for e, v in trace)
    atomic_write_text(folder / "budget_curve.csv", out.getvalue())
    return plot_budget_curve(folder / "budget_curve.png", curves, title)


def plot_budget_curve(path: str | Path, curves: Mapping[str, Trace], title: str = "") -> Path:
    """Draw every trace as a step line (best validation accuracy, %, against episodes spent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, trace in curves.items():
        xs, ys = zip(*trace, strict=True)
        ax.step(xs, [100 * y for y in ys], where="post", label=name, marker="." if len(xs) < 30 else None)
    ax.set_xlabel("episodes spent")
    ax.set_ylabel("best validation accuracy, train split (%)")
    ax.set_title(title or "best validation accuracy against episodes spent")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
