"""Is the learned policy dynamic? How much its schedules differ, and the static point that imitates it (``distilled``).

DESIGN.md: a learned policy that acts the same on every network is a static schedule in disguise.

**Spread** (:func:`schedule_spread`, on the comparison's episodes of the learned policy): per episode, each
layer's final density (``log10``; the first layer, the last, the mean of the others) and the progress at which
each layer first comes within 5% of its final density (mean over layers). *Between networks*: the standard
deviation over networks of the per-network means; *between seeds*: the mean over networks of the standard
deviation over one network's seeds. A between-network spread no larger than the between-seed one says the
policy does not tell the networks apart.

**Distilled** (:func:`distill`): a static point fitted to the learned policy's schedules on the train split
(``evaluated_schedules.json`` of the periodic evaluation, :mod:`agents.run.hybrid_run`: the untrained policy's
episodes, which are the prior's, and the best model's, same networks and seeds). The fit starts at the prior's
knobs and moves them by least squares (``scipy.optimize.least_squares``) so that the learned episodes' mean
pruning shape ``h_k = (m_k - m_K) / (1 - m_K)`` (``m_k``: the mean layer density after decision ``k``) differs
from the prior's as the polynomial ``(1 - q)**p`` of the moved window and power differs from the prior's; the
shift cancels what the mean of densities does not capture (weights, the rule), so a learned policy equal to its
prior distils to the prior's own knobs. The first and last multipliers move by the geometric mean ratio of the
learned to the prior final density of that layer, relative to the other layers' (the rest water-filled as
ever). The rule is the prior's. ``distilled`` then runs in the comparison like any opponent: if it ties the
learned policy, the policy acts as a static schedule would (open-loop) on these networks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.ppo.prior_map import parse_prior
from baselines.static import RANGES, searched_name
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.opponents import Opponent, write_opponents

DISTILLED = "distilled"
_NEAR = 0.05


def _shape(schedule: Sequence[Sequence[float]]) -> np.ndarray:
    """``h_k = (m_k - m_K) / (1 - m_K)`` of one episode (``m_k``: mean layer density after decision ``k``)."""
    m = np.asarray(schedule, dtype=np.float64).mean(axis=1)
    return np.clip((m - m[-1]) / max(1.0 - m[-1], 1e-9), 0.0, 1.0)


def _model(x: np.ndarray, progress: np.ndarray) -> np.ndarray:
    start, end, log_p = x
    q = np.clip((progress - start) / max(end - start, 1e-6), 0.0, 1.0)
    return (1.0 - q) ** np.exp(log_p)


def _paired(entry: Mapping[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(e["network"], int(e["seed"])): e for e in entry["episodes"]}


def _log_ratio(learned: Sequence[float], prior: Sequence[float]) -> tuple[float, float, float]:
    """``log(learned / prior)`` of the final densities: first layer, last layer, mean of the others."""
    r = np.log(np.maximum(learned, 1e-9)) - np.log(np.maximum(prior, 1e-9))
    middle = float(r[1:-1].mean()) if len(r) > 2 else float(r.mean())
    return float(r[0]), float(r[-1]), middle


def distill(schedules: Mapping[str, Any], prior: str, allocation: str | None = None) -> str:
    """The static point fitted to the best model's schedules (see the module doc) from the prior's knobs.

    ``schedules``: ``evaluated_schedules.json`` (``prior`` and ``best``, each with its ``episodes``). ``prior``:
    the prior's name (a static point or a handcrafted schedule; its rule, else ``allocation``, is the point's).
    """
    from scipy.optimize import least_squares

    spec = parse_prior(prior)
    rule = spec.allocation or allocation
    before, after = _paired(schedules["prior"]), _paired(schedules["best"])
    keys = [k for k in after if k in before]
    if not keys:
        raise ValueError("schedules are not allowed without episodes of one network and seed in both prior and best")
    progress = np.concatenate([np.asarray(after[k]["progress"], dtype=np.float64) for k in keys])
    gap = np.concatenate([_shape(after[k]["schedule"]) - _shape(before[k]["schedule"]) for k in keys])
    x0 = np.array([spec.start, spec.end, np.log(spec.exponent)])
    fit = least_squares(
        lambda x: _model(x, progress) - _model(x0, progress) - gap,
        x0,
        bounds=([0.0, 0.05, np.log(0.05)], [0.95, 1.0, np.log(100.0)]),
    )
    start, end, log_p = (float(v) for v in fit.x)
    end = max(end, start + 0.01)
    knobs: dict[str, Any] = {"start": start, "end": min(end, 1.0), "exponent": float(np.exp(log_p))}
    if rule is not None and rule != "policy":
        ratios = np.array([_log_ratio(after[k]["schedule"][-1], before[k]["schedule"][-1]) for k in keys])
        first, last, middle = ratios.mean(axis=0)
        low, high = 1e-3, RANGES["first"][1]
        knobs |= {"allocation": rule, "first": float(np.clip(spec.first * np.exp(first - middle), low, high))}
        knobs["last"] = float(np.clip(spec.last * np.exp(last - middle), low, high))
    return searched_name(knobs)


def distilled_opponent(run_dir: Path, prior: str, allocation: str | None) -> dict[str, str]:
    """Fit ``distilled`` from ``run_dir/evaluated_schedules.json`` and record it; ``{label: point}`` (``{}``: none).

    Nothing is fitted without the prior's and a best evaluation (no periodic evaluation, or no prior).
    """
    path = run_dir / "evaluated_schedules.json"
    if prior == "none" or not path.exists():
        return {}
    schedules = json.loads(path.read_text())
    if "prior" not in schedules or "best" not in schedules:
        return {}
    point = distill(schedules, prior, allocation)
    label = "distilled (static point fitted to the learned schedules)"
    write_opponents(run_dir, [Opponent(DISTILLED, label, 0, 0.0, point)])
    return {label: point}


def _reach(progress: Sequence[float], schedule: Sequence[Sequence[float]]) -> float:
    """Mean over layers of the progress at which a layer first comes within 5% of its final density."""
    d = np.asarray(schedule, dtype=np.float64)
    near = np.abs(d - d[-1]) <= _NEAR * d[-1]
    return float(np.mean([progress[int(np.argmax(near[:, layer]))] for layer in range(d.shape[1])]))


def schedule_spread(results: Sequence[EpisodeResult], policy: str) -> dict[str, dict[str, float]]:
    """``{measure: {"between_networks": std, "between_seeds": std}}`` of ``policy``'s episodes (module doc).

    Measured within each setting (target density, selector), then averaged over the settings: a comparison at
    two targets would otherwise count the targets' difference as the seeds' (or the networks').
    """
    groups: dict[tuple[float | None, str], dict[str, list[np.ndarray]]] = {}
    for r in results:
        if r.policy != policy or not r.schedule:
            continue
        final = np.log10(np.maximum(np.asarray(r.schedule[-1], dtype=np.float64), 1e-9))
        middle = final[1:-1].mean() if len(final) > 2 else final.mean()
        row = np.array([final[0], final[-1], middle, _reach(r.progress, r.schedule)])
        groups.setdefault((r.target_density, r.selector), {}).setdefault(r.network, []).append(row)
    names = ("log10_final_first", "log10_final_last", "log10_final_middle", "reach_progress")
    if not groups:
        return {}
    networks, seeds = [], []
    for per_network in groups.values():
        networks.append(np.array([np.mean(rows, axis=0) for rows in per_network.values()]).std(axis=0))
        seeds.append(np.array([np.std(rows, axis=0) for rows in per_network.values()]).mean(axis=0))
    between_networks, between_seeds = np.mean(networks, axis=0), np.mean(seeds, axis=0)
    return {
        name: {"between_networks": float(between_networks[i]), "between_seeds": float(between_seeds[i])}
        for i, name in enumerate(names)
    }


def spread_note(spread: Mapping[str, Mapping[str, float]], networks: int, distilled: bool = True) -> str:
    """One line for ``results.md``: the spreads, and whether the networks differ more than the seeds."""
    if not spread:
        return "Dynamics: no learned episodes to measure."
    parts = [f"{k} {v['between_networks']:.3f} / {v['between_seeds']:.3f}" for k, v in spread.items()]
    wider = sum(v["between_networks"] > v["between_seeds"] for v in spread.values())
    return (
        f"Dynamics of the learned schedules on {networks} networks (std between networks / between seeds of one "
        f"network; run_dir/dynamics.json): {'; '.join(parts)}. The networks differ more than the seeds on {wider} of "
        f"{len(spread)} measures."
        + (
            " `distilled` is the static point fitted to the learned schedules on the train split: a tie with it says "
            "the learned policy acts open-loop, as a static schedule would."
            if distilled
            else ""
        )
    )


def dynamics_note(run_dir: Path, results: Sequence[EpisodeResult], policy: str, distilled: bool = True) -> str:
    """Measure ``policy``'s spread on the comparison's episodes, write ``run_dir/dynamics.json``; the note.

    ``distilled``: whether the comparison holds the ``distilled`` opponent (a run with a static prior), which the
    note then names.
    """
    spread = schedule_spread(results, policy)
    atomic_write_text(Path(run_dir) / "dynamics.json", json.dumps(spread, indent=2))
    return spread_note(spread, len({r.network for r in results if r.policy == policy}), distilled)
