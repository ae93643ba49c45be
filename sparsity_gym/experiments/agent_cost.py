"""What the learned policy cost, part by part, and what a search had found when it had spent as many seconds.

:class:`AgentCost` is the learned policy's row of the opponents table (:mod:`sparsity_gym.experiments.opponents`):
its training, reference, tuning and periodic-evaluation episodes and seconds, and which of them the cost column
sums. :func:`best_within_seconds` compares at equal wall time: a search's trials cut where their cumulative
seconds reach the learned policy's (:class:`AtSeconds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sparsity_gym.core.checks import check_number
from sparsity_gym.experiments.paired_intervals import best_of

__all__ = ["AgentCost", "AtSeconds", "best_within_seconds"]


@dataclass(frozen=True)
class AgentCost:
    """What the learned policy cost, part by part, and when it first beat the reference during training.

    The parts, each with its own episodes and seconds: the **training** phase (PPO's rollouts and updates; the
    paired reward's **reference** episodes ran inside it, in the env workers), the **tuning** of the grid before
    training, and the **periodic evaluations** during training. The cost column sums the training and reference
    episodes (the equal-budget search's budget) and the training phase's seconds; the tuning (the tuned cell's
    own cost) and the evaluations (model selection) are given apart (:meth:`cost_text`). An older record holds
    only the run's whole ``train_seconds``: ``seconds`` is then that, and the text says it includes both.

    Attributes:
        episodes: Training episodes.
        seconds: Wall seconds the cost column counts: the training phase's (``training_seconds``) when recorded,
            else the older whole training run's (``None``: unknown).
        reference_episodes: Episodes the paired reward's reference ran.
        reference_seconds: Their seconds, summed over the env workers (they ran inside the training phase).
        first_win: ``(episodes, seconds)`` at the first periodic evaluation whose validation accuracy beat the
            reference's on the same networks and seeds; ``None``: none did (or nothing to tell, see ``evaluations``).
        evaluations: Periodic evaluations read (0: none ran, or no reference to beat: no first win can be told).
        training_seconds: The training phase's wall seconds without the periodic evaluations (``None``: an older
            record that does not split them).
        tuning_episodes: Episodes of the tuning before training (``None``: none ran, or not recorded).
        tuning_seconds: Its wall seconds.
        evaluation_episodes: Episodes of the periodic evaluations.
        evaluation_seconds: Their wall seconds.
        evaluations_run: Periodic evaluations run.
        run_seconds: The whole training run's wall seconds (``train_seconds``: the tuning, the training phase,
            the periodic evaluations and the saving; ``None``: unknown).
        search_episodes: Episodes of the search that chose its prior (``--prior search``; 0: none): part of the
            learned policy's budget (search, then learn).
        search_seconds: That search's wall seconds (0: none).

    """

    episodes: int
    seconds: float | None = None
    reference_episodes: int = 0
    reference_seconds: float = 0.0
    first_win: tuple[int, float] | None = None
    evaluations: int = 0
    training_seconds: float | None = None
    tuning_episodes: int | None = None
    tuning_seconds: float | None = None
    evaluation_episodes: int = 0
    evaluation_seconds: float = 0.0
    evaluations_run: int = 0
    run_seconds: float | None = None
    search_episodes: int = 0
    search_seconds: float = 0.0

    @property
    def all_episodes(self) -> int:
        """Training, reference and prior-search episodes: the budget an equal-budget search opponent gets."""
        return self.episodes + self.reference_episodes + self.search_episodes

    @property
    def all_seconds(self) -> float | None:
        """The seconds the cost column counts plus the prior search's: the cut of an equal-wall-time search."""
        return None if self.seconds is None else self.seconds + self.search_seconds

    def parts(self) -> dict[str, dict[str, float | int | None]]:
        """Each part's episodes and seconds: ``training``, ``reference`` (within it), ``tuning``, ``evaluations``."""
        return {
            "training": {"episodes": self.episodes, "seconds": self.training_seconds},
            "reference": {"episodes": self.reference_episodes, "seconds": self.reference_seconds},
            "tuning": {"episodes": self.tuning_episodes, "seconds": self.tuning_seconds},
            "prior search": {"episodes": self.search_episodes, "seconds": self.search_seconds},
            "evaluations": {
                "episodes": self.evaluation_episodes,
                "seconds": self.evaluation_seconds,
                "count": self.evaluations_run,
            },
        }

    def _apart(self) -> str:
        """The tuning and the periodic evaluations, which the column does not sum."""
        apart = []
        if self.tuning_seconds is not None:
            episodes = f"{self.tuning_episodes} episodes, " if self.tuning_episodes is not None else ""
            apart.append(f"the tuning {episodes}{self.tuning_seconds:.0f} s")
        if self.evaluations_run:
            apart.append(
                f"{self.evaluations_run} periodic evaluations {self.evaluation_episodes} episodes, "
                f"{self.evaluation_seconds:.0f} s"
            )
        return f" (apart: {'; '.join(apart)})" if apart else ""

    def cost_text(self) -> str:
        """Episodes and seconds and which parts they sum, then the first win (``never``: no evaluation beat it)."""
        episodes = (
            f"{self.episodes} training"
            + (f" + {self.reference_episodes} reference" if self.reference_episodes else "")
            + (f" + {self.search_episodes} prior-search" if self.search_episodes else "")
        )
        text = f"{episodes} episodes"
        search = f" + {self.search_seconds:.0f} s of the prior search" if self.search_episodes else ""
        if self.seconds is not None and self.training_seconds is not None:
            text += f", {self.seconds:.0f} s of the training phase{search}" + self._apart()
        elif self.seconds is not None:
            text += f", {self.seconds:.0f} s (the whole training run: tuning and periodic evaluations included)"
        if not self.evaluations:
            return f"{text}; first win over the reference: n/a (no periodic evaluation against it)"
        if self.first_win is None:
            return f"{text}; its periodic evaluation beat the reference: never ({self.evaluations} evaluations)"
        at, seconds_at = self.first_win
        return f"{text}; its periodic evaluation first beat the reference after {at} episodes ({seconds_at:.0f} s)"


@dataclass(frozen=True)
class AtSeconds:
    """A search cut at the learned policy's seconds: its trials up to then and its best point among them.

    Attributes:
        seconds: The learned policy's seconds (the cut).
        trials: Trials whose cumulative seconds stay within the cut (0: even the first took longer).
        spent: Their seconds.
        best: The best point among them (the first on a tie; ``None``: no trial).
        value: Its mean validation accuracy.
        episodes: The episodes of those trials (``None``: not known).

    """

    seconds: float
    trials: int
    spent: float
    best: str | None = None
    value: float | None = None
    episodes: int | None = None

    @classmethod
    def from_json(cls, record: Any, where: str = "at_seconds") -> AtSeconds:
        """The record :meth:`to_json` writes; ``ValueError`` naming ``where`` when it is not one."""
        if not isinstance(record, dict) or not {"seconds", "trials", "spent"} <= set(record):
            raise ValueError(f"{where}={record!r} is not allowed; expected a record with seconds, trials and spent")
        fields = ("seconds", "trials", "spent", "best", "value", "episodes")
        return cls(**{k: record[k] for k in fields if record.get(k) is not None})

    def text(self, final_best: str | None) -> str:
        """``in the learned policy's 120 s: 7 trials (28 episodes, 118 s), best `x` (its final best)``."""
        episodes = f"{self.episodes} episodes, " if self.episodes is not None else ""
        head = f"in the learned policy's {self.seconds:.0f} s: {self.trials} trials ({episodes}{self.spent:.0f} s)"
        if self.best is None:
            return f"{head}, no point yet"
        same = " (its final best)" if self.best == final_best else ""
        return f"{head}, best `{self.best}`{same}"

    def to_json(self) -> dict[str, Any]:
        """The record ``opponents.json`` holds under ``at_seconds``."""
        return {k: getattr(self, k) for k in ("seconds", "trials", "spent", "best", "value", "episodes")}


def best_within_seconds(
    trials: Sequence[tuple[str, float, float]], seconds: float, per_trial: int | None = None
) -> AtSeconds:
    """A search's trials ``(point, value, seconds)`` in trial order, cut at ``seconds``; the best point kept.

    The best is the first on a tie, as the search picks its best (a point's first value counts).

    The cut never exceeds ``seconds``, as a search never exceeds its budget in episodes: a trial that would take
    the sum past it is not counted. ``per_trial``: the episodes of a trial (networks × seeds), for the count.
    """
    check_number("seconds", seconds, low=0)
    values: dict[str, float] = {}
    kept, spent = 0, 0.0
    for point, value, trial_seconds in trials:
        if spent + trial_seconds > seconds:
            break
        spent += trial_seconds
        kept += 1
        values.setdefault(point, float(value))  # a point's first value, as the search keeps it
    best = best_of(values)
    if best is None:
        return AtSeconds(float(seconds), 0, 0.0, episodes=0 if per_trial is not None else None)
    episodes = kept * per_trial if per_trial is not None else None
    return AtSeconds(float(seconds), kept, round(spent, 1), best, values[best], episodes)
