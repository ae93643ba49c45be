"""Refuse before spending: what ``train_agent.py`` checks, in seconds, before it writes or trains anything.

:func:`preflight` runs first in ``train`` and ``evaluate`` mode (``--dry-run`` runs it alone and prints the
plan). Each check is a small function that raises a one-line ``ValueError`` naming the field, the value and what
is allowed (the command line prints it and exits with status 2, nothing written):

* the **device** exists (``cuda`` needs a GPU, ``cuda:1`` two); ``--vec-env ray`` / ``--backend ray`` need Ray;
* the **run folder** can be created and written (a file in its place or a read-only folder is refused), and a
  new training run does not reuse an earlier one's files (:func:`agents.run_dir.check_fresh`);
* every **network** the run touches (the family's train and held-out splits, ``--networks``, the task's tuning
  networks) is built on the dataset's input shape and runs one forward pass on two inputs
  (:func:`sparsity_gym.env.interop.check_network_fits`); any error becomes a ``ValueError`` naming the network,
  where it comes from, the dataset's input shape and the original message;
* every **policy** of the comparison (baselines, criteria, tuned cells), the prior and the reward reference
  resolve: each is built on an env of its own settings;
* the **model** resolves: ``evaluate`` mode's ``--model`` (or the run folder's ``best_model.zip`` /
  ``model.zip``), a resumed run's checkpoint; it is loaded and its schema checked against the run's env
  (:mod:`agents.schema`: columns, action map, action mode, allocation);
* the **work**: episodes of tuning, prior choice, training, reward reference, periodic evaluation and comparison,
  with a time estimate from a **probe**: one short real episode (:data:`PROBE_DECISIONS` decisions) of the
  first train network at the run's settings. Its reset, first decision and later decisions are timed; a full
  episode is estimated as reset + first decision + (decisions - 1) × the mean later decision, and a phase as its
  episodes × that time / its parallel workers. Every network is taken to cost what the probe's does; PPO's
  updates, process start-up and the baselines' lighter observations are not counted: a rough guide.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.comparison import LEARNED, comparison_jobs
from agents.config import PRIOR_CHOICES, TrainConfig
from agents.policies import model_path as shipped_model_path
from agents.run_dir import check_fresh
from agents.schema import AGREEMENT, check_agreement, describe
from agents.showcase import showcase_jobs, showcase_seeds
from baselines import available_policies, env_kwargs, make_policy
from baselines.handcrafted import parse_cell
from sparsity_gym.core.threads import usable_cores
from sparsity_gym.datasets import DatasetSplits, load_dataset
from sparsity_gym.env.config import EnvConfig
from sparsity_gym.env.interop import check_network_fits
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.tasks import get_task
from sparsity_gym.experiments.families import Family, NetworkSpec, get_family, parse_network
from sparsity_gym.experiments.grid import GridJob
from sparsity_gym.experiments.seeds import seed_start
from sparsity_gym.models import build_network

PROBE_DECISIONS = 2
"""Decisions of the probe episode (fewer when the run's episodes are shorter)."""


def one_line(text: object) -> str:
    """``text`` on one line (newlines and runs of spaces as single spaces)."""
    return " ".join(str(text).split())


@dataclass(frozen=True)
class Work:
    """One phase of the run: ``episodes`` episodes on ``parallel`` workers (``what``: how they are counted)."""

    phase: str
    episodes: int
    parallel: int
    what: str


@dataclass(frozen=True)
class Probe:
    """The probe episode: ``network``, ``decisions`` of the run's ``full`` per episode, timed."""

    network: str
    decisions: int
    full: int
    seconds: float
    episode_s: float


@dataclass(frozen=True)
class Plan:
    """What a run will do, as :func:`preflight` found it (:meth:`render` prints it)."""

    mode: str
    checks: tuple[str, ...]
    work: tuple[Work, ...]
    probe: Probe
    seconds: float

    @property
    def episodes(self) -> int:
        """Episodes of every phase."""
        return sum(w.episodes for w in self.work)

    @property
    def estimate_s(self) -> float:
        """Estimated seconds: each phase's episodes × the probe's episode time / its parallel workers."""
        return sum(w.episodes * self.probe.episode_s / max(1, w.parallel) for w in self.work)

    def render(self) -> str:
        """The plan as lines of text."""
        p = self.probe
        lines = [f"preflight ({self.mode}): every check passed in {self.seconds:.1f} s"]
        lines += [f"  {line}" for line in self.checks]
        lines.append("  work (episodes):")
        for w in self.work:
            on = f", {w.parallel} in parallel" if w.parallel > 1 else ""
            lines.append(f"    {w.phase}: {w.episodes} ({w.what}{on})")
        lines.append(f"    total: {self.episodes} episodes")
        lines.append(
            f"  probe: {p.decisions} of {p.full} decisions of {p.network} took {p.seconds:.2f} s -> about "
            f"{p.episode_s:.2f} s per episode (reset + first decision + later decisions scaled to {p.full})"
        )
        lines.append(
            f"  estimate: about {_duration(self.estimate_s)} (episodes x {p.episode_s:.2f} s / parallel workers; "
            "PPO updates and process start-up not counted)"
        )
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------------------------------------ the checks
def check_device(name: str) -> str:
    """``name`` as a torch device that exists here (``ValueError`` naming ``device`` otherwise)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device={name!r} is not allowed; expected a torch device such as 'cpu' or 'cuda'") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={name!r} is not allowed here: no CUDA GPU is available; expected 'cpu'")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device={name!r} is not allowed here; expected cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} is not allowed here: MPS is not available; expected 'cpu'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={name!r} is not allowed; expected 'cpu', 'cuda' or 'cuda:<index>'")
    return str(device)


def check_run_dir(run_dir: str, mode: str, resume: bool) -> str:
    """How the run folder will be used; ``ValueError`` when it cannot be created or written, or holds a run.

    Nothing is created: a missing folder's nearest existing parent must be a writable folder.
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"run_dir={run_dir!r} is not allowed: a file is in its place; expected a folder (new or writable)"
        )
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"run_dir={run_dir!r} is not allowed: the folder is not writable; expected a writable one")
        if mode == "train":
            check_fresh(path, resume)
        return f"run folder: {run_dir} (exists, writable)"
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"run_dir={run_dir!r} is not allowed: it cannot be created in {str(parent)!r} (not a writable folder); "
            "expected a path in a writable folder"
        )
    return f"run folder: {run_dir} (new)"


def check_backends(cfg: TrainConfig) -> None:
    """``ValueError`` when ``--vec-env ray`` or ``--backend ray`` is asked for without Ray installed."""
    for name, value in (("vec_env", cfg.vec_env), ("backend", cfg.backend)):
        if value == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError(f"{name}='ray' is not allowed here: Ray is not installed; pip install -e '.[ray]'")


def load_data(config: EnvConfig) -> DatasetSplits:
    """The run's dataset (``ValueError`` naming ``dataset`` when it cannot be loaded)."""
    try:
        return load_dataset(config.dataset, config.data_seed, config.data_root)
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(
            f"dataset={config.dataset!r} cannot be loaded (data_root={config.data_root!r}: {type(err).__name__}: "
            f"{one_line(err)}); expected a dataset of sparsity_gym.datasets and, for a vision one, its data root"
        ) from err


def network_splits(cfg: TrainConfig, family: Family) -> dict[str, tuple[NetworkSpec, ...]]:
    """Every network the run touches, by where it comes from (a network is listed where it first appears)."""
    groups = {
        f"train split of family {cfg.family!r}": family.train,
        f"held-out split of family {cfg.family!r}": family.heldout,
        "--networks": tuple(parse_network(n) for n in cfg.networks),
    }
    if cfg.tune_cells and cfg.task is not None:
        groups[f"tuning networks of task {cfg.task!r}"] = tuple(parse_network(n) for n in get_task(cfg.task).train)
    seen: set[str] = set()
    out: dict[str, tuple[NetworkSpec, ...]] = {}
    for where, specs in groups.items():
        fresh = tuple(s for s in specs if s.name not in seen)
        seen.update(s.name for s in fresh)
        if fresh:
            out[where] = fresh
    return out


def check_network(spec: NetworkSpec, config: EnvConfig, data: DatasetSplits, where: str) -> int:
    """Build ``spec`` on the dataset's input shape, run two inputs through it; its parameter count.

    Raises:
        ValueError: Naming the network, ``where`` it comes from, the dataset's input shape and the original error.

    """
    shape = tuple(data.input_shape)
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_network(spec.network, shape, data.num_classes, dict(spec.kwargs))
    except Exception as err:
        raise ValueError(
            f"network={spec.name!r} ({where}) cannot be built for dataset={config.dataset!r} inputs of shape "
            f"{shape} ({type(err).__name__}: {one_line(err)}); expected a network that fits the dataset"
        ) from err
    try:
        check_network_fits(model, data.val_x[:2], data.num_classes, spec.name, config.dataset)
    except Exception as err:
        raise ValueError(f"{one_line(err)} (network from the {where})") from err
    return sum(p.numel() for p in model.parameters())


def check_names(cfg: TrainConfig) -> None:
    """The prior and the paired reward's reference resolve (``TrainConfig`` checked their spelling)."""
    if cfg.mode != "train":
        return
    if cfg.prior not in PRIOR_CHOICES:
        parse_cell(cfg.prior)
    if cfg.reward == "paired" and cfg.reward_reference == "prior" and cfg.prior == "none":
        raise ValueError(
            "reward_reference='prior' is not allowed with prior='none'; expected a schedule or cell name, or a prior"
        )


def _policy_env(config: EnvConfig, data: DatasetSplits) -> SparsityEnv:
    return SparsityEnv(config=config, data=data)


def check_policies(cfg: TrainConfig, jobs: Sequence[GridJob], data: DatasetSplits) -> tuple[str, ...]:
    """Build every policy of the comparison (the first job of each) and the paired reward's reference."""
    first: dict[str, GridJob] = {}
    for job in jobs:
        first.setdefault(job.policy_name, job)
    names = [n for n in first if n != LEARNED]
    for name in names:
        env = _policy_env(first[name].config, data)
        try:
            first[name].policy_factory(env)
        finally:
            env.close()
    if cfg.mode == "train" and cfg.reward == "paired" and cfg.reward_reference != "prior":
        config = jobs[0].config if jobs else cfg.env
        config = config.replace(
            **{"allocation": "policy", "allocation_tilt": False, **env_kwargs(cfg.reward_reference)}
        )
        env = _policy_env(config, data)
        try:
            make_policy(cfg.reward_reference, env)
        finally:
            env.close()
    return tuple(names)


def model_path(cfg: TrainConfig) -> Path | None:
    """The model the run will load: ``evaluate``'s ``--model`` (a path or a shipped policy's name) or the run
    folder's; a resumed run's checkpoint.
    """  # noqa: D205
    run_dir = Path(cfg.run_dir)
    if cfg.mode == "train":
        checkpoint = run_dir / "checkpoints" / "last.zip"
        return checkpoint if cfg.resume and checkpoint.exists() else None
    if cfg.model:  # a saved model's path or a shipped policy's name (agents.policies)
        return shipped_model_path(cfg.model)
    found = [p for p in (run_dir / "best_model.zip", run_dir / "model.zip") if p.is_file()]
    return found[0] if found else None


def check_model(cfg: TrainConfig, path: Path, env: Any) -> str:
    """Load the model at ``path`` and check its schema against ``env`` (the run's env for its first network).

    With ``--prior tuned`` the env's allocation is the tuned cell's, known once the grid is tuned, so the
    allocation is checked then (when the comparison binds the model), not here.
    """
    from agents.agent import LayerwiseAgent

    try:
        agent = LayerwiseAgent.load(path)
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(
            f"model={str(path)!r} is not allowed: it cannot be loaded ({type(err).__name__}: {one_line(err)}); "
            "expected a model.zip saved by train_agent.py"
        ) from err
    tuned = cfg.prior == "tuned" and bool(cfg.tune_cells)
    fields = tuple(f for f in AGREEMENT if not (tuned and f.startswith("allocation")))
    check_agreement(agent.schema, env, fields)
    return f"model: {path} ({describe(agent.schema)}) agrees with the env"


# ---------------------------------------------------------------------------------------------- the work
def probe_episode(config: EnvConfig, spec: NetworkSpec, data: DatasetSplits) -> Probe:
    """One short real episode of ``spec`` at ``config`` (zero actions), timed (see the module doc)."""
    full = config.num_decisions
    short = min(full, PROBE_DECISIONS)
    env = SparsityEnv(
        config=config.replace(**spec.env_kwargs(), total_iterations=short * config.decision_interval), data=data
    )
    try:
        start = time.perf_counter()
        env.reset(seed=seed_start("benchmark"))
        reset_s = time.perf_counter() - start
        steps = []
        action = np.zeros(len(env.layer_names), np.float32)  # one value per prunable layer
        for _ in range(short):
            tick = time.perf_counter()
            env.step(action)
            steps.append(time.perf_counter() - tick)
    finally:
        env.close()
    later = steps[1:] or steps
    episode_s = reset_s + steps[0] + (full - 1) * float(np.mean(later))
    return Probe(spec.name, short, full, time.perf_counter() - start, episode_s)


def _parallel(cfg: TrainConfig) -> tuple[int, int]:
    """Workers of the pooled phases (tuning, prior, comparison) and of training."""
    cores = usable_cores()
    pooled = 1 if cfg.backend == "sequential" else min(cfg.workers or cores, cores)
    kind = cfg.vec_env if cfg.vec_env != "auto" else ("subproc" if cfg.n_envs > 1 else "dummy")
    training = 1 if kind == "dummy" else min(cfg.n_envs, cores)
    return pooled, training


def count_work(cfg: TrainConfig, family: Family, jobs: Sequence[GridJob]) -> tuple[Work, ...]:
    """The run's phases and their episodes (upper bounds where a cache in the run folder may hold some)."""
    run_dir = Path(cfg.run_dir)
    pooled, training = _parallel(cfg)
    work = []
    if cfg.tune_cells and cfg.task is not None:
        train = get_task(cfg.task).train
        cached = "; fewer if run_dir/tuning.json holds it" if (run_dir / "tuning.json").exists() else ""
        what = f"{len(cfg.tune_cells)} cells x {len(train)} train networks x {cfg.tune_seeds} seeds{cached}"
        work.append(Work("tuning", len(cfg.tune_cells) * len(train) * cfg.tune_seeds, pooled, what))
    if cfg.mode == "train":
        work += _training_work(cfg, family, pooled, training)
    settings = len(cfg.eval_targets) * len(cfg.eval_selectors)
    networks = len({j.network for j in jobs})
    what = (
        f"{len({j.policy_name for j in jobs})} policies x {networks} networks x {cfg.eval_seeds} seeds, schedules "
        f"and the learned policy at {settings} (target, selector) settings"
    )
    work.append(Work("comparison", sum(j.episodes for j in jobs), pooled, what))
    if cfg.mode == "train" and cfg.showcase:
        shown = [job for name in cfg.showcase for job in showcase_jobs(name, showcase_seeds(cfg))]
        what = f"{', '.join(cfg.showcase)} and the cells of their cards on their tasks' held-out networks"
        work.append(Work("showcase", sum(j.episodes for j in shown), pooled, what))
    return tuple(work)


def _training_work(cfg: TrainConfig, family: Family, pooled: int, training: int) -> list[Work]:
    """Prior choice, training, reward reference and periodic evaluation episodes of a training run."""
    run_dir = Path(cfg.run_dir)
    work = []
    if cfg.prior == "auto" and not (cfg.resume and (run_dir / "prior.json").exists()):
        schedules = available_policies("schedule")
        what = f"{len(schedules)} schedules x {len(family.train)} train networks x {cfg.prior_seeds} seeds"
        work.append(Work("prior choice", len(schedules) * len(family.train) * cfg.prior_seeds, pooled, what))
    rollout = cfg.n_steps * cfg.n_envs
    steps = math.ceil(cfg.total_timesteps / rollout) * rollout
    decisions = cfg.env.num_decisions
    episodes = math.ceil(steps / decisions)
    what = f"{steps} timesteps in rollouts of {rollout} / {decisions} decisions per episode"
    work.append(Work("training", episodes, training, what))
    if cfg.reward == "paired":
        pool = len(family.train) * cfg.seed_pool
        reference = min(episodes, pool) if cfg.seed_pool else episodes
        what = f"at most one per training network and pool seed ({pool})" if cfg.seed_pool else "one per episode"
        work.append(Work("reward reference", reference, training, what))
    if cfg.eval_every:
        evaluations = 1 + steps // cfg.eval_every + (1 if steps % cfg.eval_every else 0)
        networks = family.heldout if cfg.select_on == "heldout" else family.train
        workers = pooled if cfg.backend == "process" else 1
        what = f"about {evaluations} evaluations x {len(networks)} networks x {cfg.eval_episodes} seeds"
        work.append(Work("periodic evaluation", evaluations * len(networks) * cfg.eval_episodes, workers, what))
    return work


# ------------------------------------------------------------------------------------------------ the run
def preflight(cfg: TrainConfig) -> Plan:
    """Check everything a run of ``cfg`` needs, write nothing; the plan (``ValueError``: one line, see module)."""
    start = time.perf_counter()
    checks = [f"device: {check_device(cfg.env.device)}", check_run_dir(cfg.run_dir, cfg.mode, cfg.resume)]
    check_backends(cfg)
    check_names(cfg)
    family = get_family(cfg.family)
    data = load_data(cfg.env)
    built = []
    for where, specs in network_splits(cfg, family).items():
        for spec in specs:
            check_network(spec, cfg.env, data, where)
        built.append(f"{where}: {', '.join(s.name for s in specs)}")
    checks.append(
        f"dataset: {cfg.env.dataset}, inputs {tuple(data.input_shape)}, {data.num_classes} classes; every network "
        f"built and run on it: {'; '.join(built)}"
    )
    path = model_path(cfg)
    specs = tuple(parse_network(n) for n in cfg.networks) if cfg.networks else family.heldout
    learned = path if cfg.mode == "evaluate" else Path(cfg.run_dir) / "model.zip"
    jobs = comparison_jobs(cfg, specs, lambda spec: "heldout", learned)
    names = check_policies(cfg, jobs, data)
    checks.append(f"policies: {', '.join(names) or 'none'}" + (f" and {LEARNED}" if learned else ""))
    first = family.train[0]
    if path is not None:
        env = _policy_env(cfg.env.replace(**first.env_kwargs()), data)
        try:
            checks.append(check_model(cfg, path, env))
        finally:
            env.close()
    elif cfg.mode == "evaluate":
        checks.append("model: none found (baselines only)")
    work = count_work(cfg, family, jobs)
    probe = probe_episode(cfg.env, first, data)
    return Plan(cfg.mode, tuple(checks), work, probe, time.perf_counter() - start)
