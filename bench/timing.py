"""Interleaved timing shared by the benchmarks: every configuration once per round, medians compared."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def interleaved_medians(runs: dict[str, Callable[[int], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each ``run(round) -> seconds`` after one warm-up call each, interleaved round by round.

    Interleaving spreads the machine's noise over every configuration alike, so their ratios hold.
    """
    for run in runs.values():
        run(0)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        for name, run in runs.items():
            times[name].append(run(r))
    return {name: statistics.median(values) for name, values in times.items()}
