"""The equal-budget search opponent: a static schedule searched by Optuna with as many episodes as the agent's.

A learned (dynamic) schedule earns its cost only if it beats a *static* one searched with the same budget: the
question dynamic algorithm configuration asks of a learned policy, judged against the best static
configuration an algorithm configurator finds (Adriaensen et al. 2022, "Automated Dynamic Algorithm
Configuration", JAIR 75). This module runs that search; the caller passes what is searched, so it imports no
policy code:

* ``space``: ``{knob: Knob}``, each a float range (``log``: sampled on a log scale) or a set of choices
  (``baselines.static.SEARCH_SPACE``);
* ``to_name``: a point ``{knob: value}`` -> a policy name (``baselines.static.searched_name``);
* ``to_cell``: a name -> :class:`~sparsity_gym.experiments.tuning.Cell` (``baselines.policy_cell``).

**A trial** is one point, scored by the project's picker (:func:`~sparsity_gym.experiments.tuning.score_policies`)
on every network of the split with every seed: its value is the mean **validation** accuracy, and it costs
``networks × seeds`` episodes. The samplers: ``tpe`` (Optuna's ``TPESampler`` with its defaults: 10 random
trials, then the tree-structured Parzen estimator of Bergstra, Bardenet, Bengio & Kégl 2011, "Algorithms for
Hyper-Parameter Optimization", §4) and ``random`` (``RandomSampler``), trial
``n`` sampling with the seed :func:`trial_seed` derives from ``(seed, n)``, so a search is reproducible from its
seed and its history, and two sampler seeds draw unrelated sequences (a seed ``seed + n`` would make seed 2's
trials seed 1's shifted by one: two random searches sharing all points but one). With the same seed, TPE's
random startup trials are the points random search draws first: the two searches differ by TPE's model alone.

**The budget** is in episodes. The search runs ``budget // (networks × seeds)`` trials and stops when the next
trial would exceed it; the ``budget mod (networks × seeds)`` episodes left over are not spent (the search never
exceeds its budget and never runs a partial trial). The best point is the best value, the first trial on a tie
(:func:`sparsity_gym.experiments.paired_intervals.best_of`), and its cost an
:class:`~sparsity_gym.experiments.opponents.Opponent` record: the episodes of the trials that count and their
wall seconds (the caller adds it to the run folder's ``opponents.json``).

**Resume.** The study lives in the run folder as Optuna's SQLite storage (``search_tpe.db``,
``search_random.db``): a killed search resumes the same study with its trials counted. A trial that did not
finish (killed, or its episodes raised) stays ``RUNNING`` in the storage; the next run marks it ``FAIL`` and
re-runs its point as a new trial (``user_attrs["retry_of"]``), so it is counted once. A study that was run on
other networks, seeds, settings or another space is refused. One process runs a study at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.episode_log import config_hash
from sparsity_gym.experiments.opponents import Opponent
from sparsity_gym.experiments.paired_intervals import best_of
from sparsity_gym.experiments.tuning import Cell, Scores, score_policies

SAMPLERS = ("tpe", "random")
INSTALL_HINT = "pip install -e '.[search]'"


@dataclass(frozen=True)
class Knob:
    """One dimension of a search space: a float range ``[low, high]`` (``log``: a log scale) or ``choices``."""

    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple[str, ...] = ()

    def distribution(self, optuna: ModuleType) -> Any:
        """Optuna's distribution of this knob."""
        if self.choices:
            return optuna.distributions.CategoricalDistribution(self.choices)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Budget:
    """A search's budget in episodes and the cost of one trial (networks × seeds episodes)."""

    episodes: int
    per_trial: int

    def __post_init__(self) -> None:
        check_number("per_trial", self.per_trial, low=1, integer=True)
        if self.episodes < self.per_trial:
            raise ValueError(
                f"search_budget={self.episodes} episodes is not allowed; expected at least one trial's "
                f"{self.per_trial} episodes (train networks × search seeds)"
            )

    @property
    def trials(self) -> int:
        """Trials that fit: ``episodes // per_trial``."""
        return self.episodes // self.per_trial

    @property
    def leftover(self) -> int:
        """Episodes of the budget no trial spends: ``episodes mod per_trial``."""
        return self.episodes - self.trials * self.per_trial


@dataclass(frozen=True)
class SearchResult:
    """A finished search: its best point and what it spent."""

    sampler: str
    best: str
    best_value: float
    trials: int
    budget: Budget
    seconds: float

    @property
    def episodes(self) -> int:
        """Episodes spent: the completed trials × networks × seeds."""
        return self.trials * self.budget.per_trial

    @property
    def label(self) -> str:
        """The best point's name in the comparison: ``search (N episodes)`` or ``random (N episodes)``."""
        return f"{opponent_name(self.sampler)} ({self.episodes} episodes)"

    def opponent(self) -> Opponent:
        """The search as the report's opponent: its label, the episodes and seconds it spent, its best point."""
        name, seconds = opponent_name(self.sampler), round(self.seconds, 1)
        return Opponent(name, self.label, self.episodes, seconds, self.best, self.budget.episodes)


def opponent_name(sampler: str) -> str:
    """The opponent a sampler plays: ``tpe`` -> ``search``, ``random`` -> ``random``."""
    return "search" if sampler == "tpe" else sampler


def study_path(run_dir: str | Path, sampler: str) -> Path:
    """The study's SQLite file in the run folder: ``search_tpe.db`` or ``search_random.db``."""
    check_choice("sampler", sampler, SAMPLERS)
    return Path(run_dir) / f"search_{sampler}.db"


def import_optuna() -> ModuleType:
    """``import optuna``, or an ``ImportError`` saying how to install it."""
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(f"the search opponent needs Optuna, which is not installed: {INSTALL_HINT}") from exc
    return optuna


def trial_seed(seed: int, trial: int) -> int:
    """The sampler's seed for trial number ``trial`` of a search seeded ``seed``.

    A 32-bit word of NumPy's ``SeedSequence([seed, trial])``: the sequences of different seeds share no structure.
    """
    return int(np.random.SeedSequence([int(seed), int(trial)]).generate_state(1)[0])


def _sampler(optuna: ModuleType, kind: str, seed: int) -> Any:
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


@contextlib.contextmanager
def _quiet(optuna: ModuleType) -> Iterator[None]:
    """Optuna's per-trial INFO lines off (the progress bar shows the search), warnings kept."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _identity(space: Mapping[str, Knob], networks: Mapping[str, EnvConfig], seeds: Sequence[int]) -> str:
    """A digest of what a study's trials depend on: the space, every network's env config and the seeds."""
    payload = {
        "space": {k: asdict(v) for k, v in space.items()},
        "networks": {n: config_hash(c) for n, c in networks.items()},
        "seeds": [int(s) for s in seeds],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _open_study(optuna: ModuleType, path: Path, sampler: str, seed: int, identity: str, per_trial: int) -> Any:
    """Create or load the study in ``path``; ``ValueError`` when it holds another search."""
    path.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=f"sqlite:///{path}",
        study_name=f"search_{sampler}",
        direction="maximize",
        load_if_exists=True,
        sampler=_sampler(optuna, sampler, seed),
    )
    recorded = study.user_attrs.get("identity")
    if recorded is None:
        study.set_user_attr("identity", identity)
        study.set_user_attr("per_trial", per_trial)
    elif recorded != identity:
        raise ValueError(
            f"run_dir holds {path.name}, a search over other networks, seeds, env settings or knobs (identity "
            f"{recorded}, this one {identity}); expected the same search to resume (use another run folder)"
        )
    return study


def _requeue_unfinished(optuna: ModuleType, study: Any) -> None:
    """Mark trials left ``RUNNING`` by a killed search ``FAIL`` and queue their points again (once each)."""
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.state == state.RUNNING:
            if trial.number not in retried:
                study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
            study.tell(trial.number, state=state.FAIL)


def _complete(optuna: ModuleType, study: Any) -> list[Any]:
    """The study's completed trials in trial order."""
    return sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number)


def run_search(
    sampler: str,
    space: Mapping[str, Knob],
    to_name: Callable[[Mapping[str, Any]], str],
    to_cell: Callable[[str], Cell],
    networks: Mapping[str, EnvConfig],
    seeds: Sequence[int],
    budget: int,
    run_dir: str | Path,
    seed: int = 0,
    progress: bool = True,
    objective: Callable[[Scores, str], float] | None = None,
    **grid: Any,
) -> SearchResult:
    """Search ``space`` with ``sampler`` for ``budget`` episodes on ``networks`` × ``seeds`` (resumable).

    Args:
        sampler: ``tpe`` or ``random``.
        space: The knobs.
        to_name: A point -> the policy's name (the name is what a trial plays and records).
        to_cell: A name -> its :class:`Cell` (a picklable factory and its env settings).
        networks: ``{network: env config}`` of the split searched on (the train split).
        seeds: The seeds every trial plays on every network.
        budget: Episodes (see the module docstring for the trials it buys and the leftover).
        run_dir: Folder of the study's SQLite file (:func:`study_path`).
        seed: The samplers' seed (trial ``n`` samples with ``trial_seed(seed, n)``).
        progress: A tqdm bar over the budget's episodes.
        objective: ``(scores, policy) -> value`` a trial maximizes; default the mean validation accuracy over
            every network and seed (``Scores.mean_val``); :mod:`sparsity_gym.experiments.settings_search`
            passes the mean over settings.
        **grid: :func:`~sparsity_gym.experiments.grid.run_grid`'s ``backend``, ``workers``...

    Raises:
        ValueError: A bad sampler or budget, or a study in ``run_dir`` that holds another search or more trials
            than the budget buys.
        ImportError: Optuna is not installed (``pip install -e '.[search]'``).

    """
    check_choice("sampler", sampler, SAMPLERS)
    check_number("budget", budget, low=0, integer=True)
    if not seeds:
        raise ValueError("seeds=() is not allowed; expected at least one seed per network")
    plan = Budget(int(budget), len(networks) * len(seeds))
    optuna = import_optuna()
    path = study_path(run_dir, sampler)
    distributions = {name: knob.distribution(optuna) for name, knob in space.items()}
    from tqdm.auto import tqdm

    with _quiet(optuna):
        study = _open_study(optuna, path, sampler, seed, _identity(space, networks, seeds), plan.per_trial)
        _requeue_unfinished(optuna, study)
        done = len(_complete(optuna, study))
        if done > plan.trials:
            raise ValueError(
                f"search_budget={budget} episodes is not allowed for {path.name}: it holds {done} trials "
                f"({done * plan.per_trial} episodes); expected a budget of at least that"
            )
        total, initial = plan.trials * plan.per_trial, done * plan.per_trial
        with tqdm(total=total, initial=initial, desc=f"{opponent_name(sampler)} ({sampler})", unit="episode",
                  disable=not progress) as bar:  # fmt: skip
            for _ in range(plan.trials - done):
                study.sampler = _sampler(optuna, sampler, trial_seed(seed, len(study.trials)))
                trial = study.ask(distributions)
                name = to_name(trial.params)
                trial.set_user_attr("policy", name)
                start = time.perf_counter()
                run = {**grid, "progress": False, "on_result": lambda index, results: bar.update(len(results))}
                scores = score_policies([to_cell(name)], networks, seeds, "train", None, **run)
                trial.set_user_attr("seconds", time.perf_counter() - start)
                study.tell(trial, scores.mean_val(name) if objective is None else objective(scores, name))
        return _result(sampler, _complete(optuna, study), plan)


def _result(sampler: str, trials: Sequence[Any], plan: Budget) -> SearchResult:
    """The best of the completed ``trials`` (first on a tie) and their cost."""
    values: dict[str, float] = {}
    for t in trials:
        values.setdefault(str(t.user_attrs["policy"]), float(t.value))
    best = best_of(values)
    assert best is not None  # the budget buys at least one trial
    seconds = float(sum(float(t.user_attrs.get("seconds", 0.0)) for t in trials))
    return SearchResult(sampler, best, values[best], len(trials), plan, seconds)
