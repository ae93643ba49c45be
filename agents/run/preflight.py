"""Refuse before spending: what ``train_agent.py`` checks, in seconds, before it writes or trains anything.

:func:`preflight` runs first in ``train`` and ``evaluate`` mode (``--dry-run`` runs it alone and prints the
plan). Each check is a small function that raises a one-line ``ValueError`` naming the field, the value and what
is allowed (the command line prints it and exits with status 2, nothing written):

* the **device** exists (``cuda`` needs a GPU, ``cuda:1`` two); the optional packages the run needs are
  installed: Ray for ``--vec-env ray`` / ``--backend ray``, Optuna for ``--opponent search`` or ``random``;
* the **run folder** can be created and written (a file in its place or a read-only folder is refused), and a
  new training run does not reuse an earlier one's files (:func:`agents.settings.run_folder.check_fresh`);
* every **network** the run touches (the family's train and held-out splits, ``--networks``, the task's held-out
  population with ``--heldout population``, the task's train networks the tuning and the searches play) is built
  on the dataset's input shape and runs one forward pass on two inputs
  (:func:`sparsity_gym.env.interop.check_network_fits`); any error becomes a ``ValueError`` naming the network,
  where it comes from, the dataset's input shape and the original message;
* every **policy** of the comparison (baselines, criteria, tuned cells, a point of the searches' space), the
  prior and the reward reference resolve: each is built on an env of its own settings;
* the **model** resolves: ``evaluate`` mode's ``--model`` (or the run folder's ``best_model.zip`` /
  ``model.zip``), a resumed run's checkpoint; it is loaded and its schema checked against the run's env
  (:mod:`agents.ppo.schema`: columns, action map, action mode, allocation);
* the **work** (:mod:`agents.run.workload`): episodes of tuning, prior choice, training, reward reference, periodic
  evaluation, each search and the comparison, with a time estimate from a probe episode; a search's budget that
  buys no trial, or an ``evaluate`` run's search without a PPO run's records to set its budget, is refused.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agents.policies import model_path as shipped_model_path
from agents.ppo.schema import AGREEMENT, check_agreement, describe
from agents.reports.comparison import LEARNED, comparison_jobs
from agents.reports.opponent_runs import searching
from agents.reports.prior_search import uses_static_prior
from agents.reports.tuned import card_reference, prior_from_cell
from agents.run.workload import (
    Plan,
    comparison_work,
    planned_work,
    probe_episode,
    search_plan,
    search_points,
    search_work,
    showcase_work,
)
from agents.settings.run_folder import check_fresh
from agents.settings.train_config import PRIOR_CHOICES, TrainConfig
from baselines import env_kwargs, make_policy
from baselines.handcrafted import parse_cell
from sparsity_gym.datasets import DatasetSplits, load_dataset
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.episode import seeded_network
from sparsity_gym.env.interop import check_network_fits
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.tasks import get_task
from sparsity_gym.experiments.families import Family, NetworkSpec, get_family, parse_network
from sparsity_gym.experiments.grid import GridJob
from sparsity_gym.experiments.populations import comparison_family
from sparsity_gym.experiments.search import INSTALL_HINT


def one_line(text: object) -> str:
    """``text`` on one line (newlines and runs of spaces as single spaces)."""
    return " ".join(str(text).split())


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


def check_installed(cfg: TrainConfig) -> None:
    """``ValueError`` when the run needs an optional package that is not installed (Ray, Optuna)."""
    for name, value in (("vec_env", cfg.vec_env), ("backend", cfg.backend)):
        if value == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError(f"{name}='ray' is not allowed here: Ray is not installed; pip install -e '.[ray]'")
    if searching(cfg) and importlib.util.find_spec("optuna") is None:
        raise ValueError(f"opponent={cfg.opponent!r} is not allowed here: Optuna is not installed; {INSTALL_HINT}")


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


def network_splits(cfg: TrainConfig, family: Family, compared: Family) -> dict[str, tuple[NetworkSpec, ...]]:
    """Every network the run touches, by where it comes from (a network is listed where it first appears).

    ``compared``: the comparison's family (:func:`sparsity_gym.experiments.populations.comparison_family`).
    """
    groups = {
        f"train split of family {cfg.family!r}": family.train,
        f"held-out split of family {cfg.family!r}": family.heldout,
        "--networks": tuple(parse_network(n) for n in cfg.networks),
    }
    for name in cfg.also_task:  # a run across settings trains on these families too
        groups[f"train split of family {name!r} (--also-task)"] = get_family(name).train
    if cfg.heldout == "population" and not cfg.networks:
        groups[f"held-out population of {cfg.family!r}"] = compared.heldout
    if (cfg.tune_cells or searching(cfg)) and cfg.task is not None:
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

    The env's own checks (:func:`sparsity_gym.env.episode.seeded_network`,
    :func:`sparsity_gym.env.interop.check_network_fits`), run before anything is written.

    Raises:
        ValueError: Naming the network, ``where`` it comes from, the dataset's input shape and the original error.

    """
    shape = tuple(data.input_shape)
    net = config.replace(**spec.env_kwargs())
    try:
        model = seeded_network(net, data, seed=0, device=torch.device("cpu"))
        check_network_fits(model, data.val_x[:2], data.num_classes, net)
    except ValueError as err:
        cause = err.__cause__ or err
        raise ValueError(
            f"network={spec.name!r} ({where}) cannot be built for dataset={config.dataset!r} inputs of shape {shape} "
            f"({type(cause).__name__}: {one_line(cause)}); expected a network that fits the dataset"
        ) from err
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


def check_model(cfg: TrainConfig, path: Path, env: Any, known_allocation: bool = False) -> str:
    """Load the model at ``path`` and check its schema against ``env`` (the run's env for its first network).

    With ``--prior tuned`` (or a static point's prior, ``search``) the env's allocation is the tuned cell's (the
    point's), known once the grid is tuned (the point searched), so the allocation is checked then (when the
    comparison binds the model), not here.
    A shipped policy's card names its cell (``known_allocation``), which is checked here.
    """
    from agents.ppo.agent import LayerwiseAgent

    try:
        agent = LayerwiseAgent.load(path)
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(
            f"model={str(path)!r} is not allowed: it cannot be loaded ({type(err).__name__}: {one_line(err)}); "
            "expected a model.zip saved by train_agent.py"
        ) from err
    tuned = (cfg.prior == "tuned" and bool(cfg.tune_cells) and not known_allocation) or uses_static_prior(cfg)
    fields = tuple(f for f in AGREEMENT if not (tuned and f.startswith("allocation")))
    check_agreement(agent.schema, env, fields)
    return f"model: {path} ({describe(agent.schema)}) agrees with the env"


def check_learned_env(cfg: TrainConfig, path: Path) -> None:
    """The model at ``path`` against ``cfg.env`` (the tuned cell's allocation set): ``ValueError`` in one line.

    What the preflight cannot check before the tuning (the allocation under ``--prior tuned``), checked right after
    it, before the search or the comparison spends anything.
    """
    data = load_data(cfg.env)
    env = _policy_env(cfg.env.replace(**get_family(cfg.family).train[0].env_kwargs()), data)
    try:
        check_model(cfg, path, env, known_allocation=True)
    finally:
        env.close()


# ------------------------------------------------------------------------------------------------ the run
def preflight(cfg: TrainConfig) -> Plan:
    """Check everything a run of ``cfg`` needs, write nothing; the plan (``ValueError``: one line, see module)."""
    start = time.perf_counter()
    checks = [f"device: {check_device(cfg.env.device)}", check_run_dir(cfg.run_dir, cfg.mode, cfg.resume)]
    check_installed(cfg)
    check_names(cfg)
    family = get_family(cfg.family)
    compared = comparison_family(cfg.family, cfg.heldout)
    data = load_data(cfg.env)
    built = []
    for where, specs in network_splits(cfg, family, compared).items():
        for spec in specs:
            check_network(spec, cfg.env, data, where)
        built.append(f"{where}: {', '.join(s.name for s in specs)}")
    checks.append(
        f"dataset: {cfg.env.dataset}, inputs {tuple(data.input_shape)}, {data.num_classes} classes; every network "
        f"built and run on it: {'; '.join(built)}"
    )
    work = planned_work(cfg, family)
    budget = search_plan(cfg, work)
    path = model_path(cfg)
    specs = tuple(parse_network(n) for n in cfg.networks) if cfg.networks else compared.heldout
    learned = path if cfg.mode == "evaluate" else Path(cfg.run_dir) / "model.zip"
    jobs = comparison_jobs(cfg, specs, lambda spec: "heldout", learned, search_points(cfg, budget))
    names = check_policies(cfg, jobs, data)
    checks.append(f"policies: {', '.join(names) or 'none'}" + (f" and {LEARNED}" if learned else ""))
    first = family.train[0]
    if path is not None:
        reference = card_reference(cfg)  # a shipped policy's card: the allocation is known now
        config = cfg.env if reference is None else prior_from_cell(reference, cfg.env)[1]
        env = _policy_env(config.replace(**first.env_kwargs()), data)
        try:
            checks.append(check_model(cfg, path, env, known_allocation=reference is not None))
        finally:
            env.close()
    elif cfg.mode == "evaluate":
        checks.append("model: none found (baselines only)")
    population = cfg.heldout == "population" and not cfg.networks
    work += [*search_work(cfg, budget), comparison_work(cfg, jobs, population), *showcase_work(cfg)]
    probe = probe_episode(cfg.env, first, data)
    return Plan(cfg.mode, tuple(checks), tuple(work), probe, time.perf_counter() - start)
