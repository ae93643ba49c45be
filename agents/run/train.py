"""Train PPO on a family's train split, then compare on its held-out split (what ``train_agent.py`` runs).

``train`` mode: PPO with :class:`agents.ppo.layerwise_policy.LayerwisePolicy` on ``n_envs`` :class:`FamilyEnv` copies
(subprocess vector envs when more than one), each sampling a network of the family's train split every
episode; periodic evaluation on the held-out split keeps ``best_model.zip``; checkpoints every
``checkpoint_every`` timesteps; then every handcrafted schedule, every criterion method and the learned policy
run on every held-out network with the same seeds, and the report is written. ``evaluate`` mode runs a saved
model and the chosen baselines on chosen networks and seeds, and writes the same report.

The learned policy in the comparison is ``best_model.zip`` when periodic evaluation ran (selected on held-out
*validation* accuracy with the ``selection`` seeds of :mod:`sparsity_gym.experiments.seeds`, apart from the
comparison's), else the final ``model.zip``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from agents.ppo.episode_ppo import EpisodeCollector, reference_cost
from agents.ppo.exploration import normalise_rewards
from agents.ppo.paired_reward import PairedReward, ReferenceCache
from agents.ppo.prior import RECORD_NAME as PRIOR_RECORD
from agents.ppo.prior import choose_prior
from agents.ppo.ray_vec_env import ActorRestartsCallback
from agents.reports.comparison import LEARNED, baseline_factory, compare, prior_note, write_reports
from agents.reports.costs import (
    REFERENCE_CACHE,
    cumulative_train_seconds,
    earlier_counts,
    ppo_run_dir,
    read_agent_cost,
    report_costs,
    tuning_record,
    write_timing,
)
from agents.reports.distill import distilled_opponent, dynamics_note, imitation_note
from agents.reports.opponent_runs import opponent_notes, run_opponents
from agents.reports.prior_search import incumbent, recorded_prior, static_prior, uses_static_prior
from agents.reports.tuned import card_reference, prior_from_cell, tune_run
from agents.run.callbacks import (
    AtomicCheckpointCallback,
    EpisodeLogCallback,
    EpisodeStatsCallback,
    HeldoutEvalCallback,
    HParamsCallback,
)
from agents.run.hybrid_run import attach_evaluation_log, exploration_callbacks, write_budget_curve
from agents.run.model import model_class, new_model
from agents.run.preflight import check_learned_env, preflight
from agents.run.preflight import model_path as preflight_model_path
from agents.run.showcase import run_showcase, showcase_lines
from agents.settings.generalist import generalist_notes, training_settings
from agents.settings.run_folder import check_fresh, config_path, save_model_atomic
from agents.settings.train_config import TrainConfig
from sparsity_gym.core.io import atomic_write_text
from sparsity_gym.core.threads import usable_cores
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.agent_cost import AgentCost
from sparsity_gym.experiments.comparison_report import seed_text
from sparsity_gym.experiments.families import Family, NetworkSpec, get_family, parse_network
from sparsity_gym.experiments.family_env import FamilyEnv
from sparsity_gym.experiments.plots import plot_learning_curve
from sparsity_gym.experiments.populations import comparison_family
from sparsity_gym.experiments.seeds import seeds as seed_range
from sparsity_gym.experiments.settings_env import Setting, SettingsEnv

TB_NAME = "PPO"
TRAINING_EPISODES = "training_episodes.csv"


def _family_env(
    specs: tuple[NetworkSpec, ...],
    config: EnvConfig,
    threads: int,
    paired: tuple | None = None,
    settings: tuple[Setting, ...] | None = None,
) -> FamilyEnv | PairedReward:
    """One training env (runs inside a vector-env worker: ``threads`` torch threads for this process).

    ``paired``: ``(reference schedule, cache file, seeds per network)`` wraps it in :class:`PairedReward`.
    ``settings``: a run across settings (:mod:`agents.settings.generalist`) draws from them instead of ``specs``.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    env = FamilyEnv(specs, config) if settings is None else SettingsEnv(settings)
    if paired is None:
        return env
    reference, cache, per_network = paired
    return PairedReward(env, baseline_factory(reference), ReferenceCache(cache), per_network)


def make_train_env(cfg: TrainConfig, family: Family, paired: tuple | None = None) -> VecEnv:
    """``n_envs`` Monitor-wrapped :class:`FamilyEnv` on the train split, seeded ``seed + i``.

    ``cfg.vec_env``: ``auto`` (subprocesses when ``n_envs > 1``, else this process), ``dummy``, ``subproc`` or
    ``ray`` (:class:`agents.ppo.ray_vec_env.RayVecEnv`: actors of ``env_cpus`` CPUs / ``env_gpus`` GPUs, each env
    with ``max(1, int(env_cpus))`` torch threads, on ``ray_address`` or a local Ray). ``paired``: the paired
    reward's reference, cache and seed pool (:class:`agents.ppo.paired_reward.PairedReward`), or ``None``.
    """
    kind = cfg.vec_env if cfg.vec_env != "auto" else ("subproc" if cfg.n_envs > 1 else "dummy")
    cores = usable_cores()
    threads = max(1, cores // cfg.n_envs) if kind == "subproc" else 0
    vec_kwargs: dict[str, Any] = {}
    vec_cls: Any = SubprocVecEnv if kind == "subproc" else DummyVecEnv
    if kind == "ray":
        from agents.ppo.ray_vec_env import RayVecEnv

        threads = max(1, int(cfg.env_cpus))
        vec_cls = RayVecEnv
        vec_kwargs = {"num_cpus": cfg.env_cpus, "num_gpus": cfg.env_gpus, "address": cfg.ray_address or None}
    settings = training_settings(cfg)
    if cfg.collect == "episodes":  # whole episodes on the process pool (agents.ppo.episode_ppo)
        factory = functools.partial(_family_env, tuple(family.train), cfg.env, 0, paired, settings)
        return EpisodeCollector(factory, cfg.n_envs, 0, max(1, cores // cfg.n_envs), cfg.env.num_decisions, cfg.seed)
    factory = functools.partial(_family_env, tuple(family.train), cfg.env, threads, paired, settings)
    return make_vec_env(factory, n_envs=cfg.n_envs, seed=cfg.seed, vec_env_cls=vec_cls, vec_env_kwargs=vec_kwargs)


def train_ppo(
    cfg: TrainConfig, run_dir: Path, family: Family, prior: str = "none", prior_cell: str | None = None
) -> tuple[PPO, dict[str, Any]]:
    """Train (or resume) PPO; the final model goes to ``run_dir/model.zip``. Returns it and the checkpoint state.

    ``prior`` is the new policy's residual schedule (a resumed model keeps the one it was built with);
    ``prior_cell`` the handcrafted cell it plays with ``cfg.env`` (``--prior tuned``), the paired reward's
    reference under ``--reward-reference prior``.
    """
    paired = None
    if cfg.reward == "paired":
        reference = paired_reference(cfg, prior_cell or prior)
        if reference == "none":
            raise ValueError("reward_reference='prior' is not allowed with prior='none'; pass a schedule name")
        paired = (reference, str(run_dir / REFERENCE_CACHE), cfg.seed_pool)
    vec_env = make_train_env(cfg, family, paired)
    checkpoint = run_dir / "checkpoints" / "last.zip"
    if cfg.norm_reward:
        vec_env = normalise_rewards(vec_env, cfg.gamma, checkpoint.parent, cfg.resume)
    threads = torch.get_num_threads()
    if cfg.n_envs > 1 or cfg.vec_env == "ray" or cfg.collect == "episodes":
        # The envs train in their own processes; PPO's tiny updates here gain nothing from intra-op threads,
        # whose spin-waiting took a whole core from the env workers (the default run went 10x slower).
        torch.set_num_threads(1)
    episodes, seconds = 0, 0.0  # finished training episodes and training seconds, counted across resumed sessions
    earlier = None
    try:
        if cfg.resume and checkpoint.exists():
            model = model_class(cfg).load(checkpoint, env=vec_env, device="cpu", tensorboard_log=str(run_dir / "tb"))
            earlier = read_agent_cost(run_dir)
            episodes = earlier.episodes if earlier is not None else 0
            seconds = (earlier.run_seconds or 0.0) if earlier is not None else 0.0
            # A resumed run draws training episodes from a fresh stream, so it does not replay seen ones.
            vec_env.seed(cfg.seed + model.num_timesteps)
            print(f"resuming from {checkpoint} at timestep {model.num_timesteps}")
        else:
            model = new_model(cfg, vec_env, prior, family, tensorboard_log=str(run_dir / "tb"))
        remaining = cfg.total_timesteps - model.num_timesteps
        evaluation = HeldoutEvalCallback(
            family.heldout if cfg.select_on == "heldout" else family.train,
            cfg.env,
            seed_range("selection", cfg.eval_episodes),
            cfg.eval_every,
            run_dir / "best_model.zip",
            workers=eval_workers(cfg),
        )
        checkpoints = AtomicCheckpointCallback(
            checkpoint.parent, cfg.checkpoint_every, episodes, seconds, 0, evaluation, earlier_counts(earlier)
        )
        if remaining > 0:
            callbacks = exploration_callbacks(cfg, checkpoint.parent)
            callbacks += [
                HParamsCallback(json.loads(cfg.to_json())),
                EpisodeStatsCallback(),
                EpisodeLogCallback(run_dir / TRAINING_EPISODES),
                evaluation,
                checkpoints,
                ActorRestartsCallback(),
            ]
            attach_evaluation_log(callbacks, run_dir, cfg.env.num_decisions)
            model.learn(
                remaining,
                callback=callbacks,
                tb_log_name=TB_NAME,
                reset_num_timesteps=not cfg.resume,
                progress_bar=cfg.progress_bar,
            )
            checkpoints.save()
        state = {k: v for k, v in checkpoints.state().items() if k != "train_seconds"}  # each part's own count
        state["num_timesteps"] = int(model.num_timesteps)  # a resume with nothing left to train runs no callback
        if paired is not None:
            state.update(reference_record(vec_env, earlier))
        save_model_atomic(model, run_dir / "model.zip")
    finally:
        vec_env.close()
        torch.set_num_threads(threads)
    return model, state


def reference_record(vec_env: VecEnv, earlier: AgentCost | None) -> dict[str, Any]:
    """The paired reward's reference cost over the run's sessions, for ``timing.json``.

    This session's episodes (the reference cache's misses) and seconds, plus the earlier sessions' (``earlier``,
    read before this one: the cache's entries and the last ``timing.json``'s seconds; a killed session's
    episodes are in the cache, its seconds are not recorded).
    """
    episodes, seconds = reference_cost(vec_env)
    if earlier is not None:
        episodes, seconds = episodes + earlier.reference_episodes, seconds + earlier.reference_seconds
    return {"reference_episodes": episodes, "reference_seconds": round(seconds, 1)}


def eval_workers(cfg: TrainConfig) -> int:
    """Workers of the periodic held-out evaluation: the comparison's pool (``--backend process``), else one."""
    return (cfg.workers or usable_cores()) if cfg.backend == "process" else 1


def paired_reference(cfg: TrainConfig, prior: str) -> str:
    """The paired reward's reference policy: the prior, or the schedule named by ``reward_reference``."""
    return prior if cfg.reward_reference == "prior" else cfg.reward_reference


def _prepare(cfg: TrainConfig) -> Path:
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.rglob(".*.tmp"):  # left by a run killed while writing; the targets are intact
        stale.unlink()
    return run_dir


def split_labeller(family: Family) -> Callable[[NetworkSpec], str]:
    """``spec -> split``: ``heldout`` or ``train`` for the family's networks, ``user`` for any other."""
    train = {s.name for s in family.train}
    heldout = {s.name for s in family.heldout}
    return lambda spec: "heldout" if spec.name in heldout else "train" if spec.name in train else "user"


def _networks(cfg: TrainConfig, family: Family) -> tuple[NetworkSpec, ...]:
    return tuple(parse_network(n) for n in cfg.networks) if cfg.networks else family.heldout


def run_train(cfg: TrainConfig) -> Path:
    """Train on the family's train split, compare on its held-out split, report; return the run folder."""
    check_fresh(cfg.run_dir, cfg.resume)
    run_dir = _prepare(cfg)
    atomic_write_text(run_dir / "config.json", cfg.to_json())
    family = get_family(cfg.family)
    start = time.perf_counter()
    table = tune_run(cfg, run_dir)
    tuned = None if table is None else table.best
    if tuned is not None:
        print(f"tuned handcrafted schedule (train split, validation accuracy): {tuned}")
    prior_label = None
    if cfg.prior == "tuned":
        assert tuned is not None
        prior, env = prior_from_cell(tuned, cfg.env)
        cfg = dataclasses.replace(cfg, env=env)
        prior_label = tuned
    elif uses_static_prior(cfg):
        prior, env = static_prior(cfg, run_dir)
        cfg = dataclasses.replace(cfg, env=env)
        prior_label = prior
    else:
        prior = choose_prior(
            cfg.prior,
            family.train,
            cfg.env,
            cfg.prior_seeds,
            run_dir / PRIOR_RECORD,
            backend=cfg.backend,
            workers=cfg.workers or None,
            progress=cfg.progress_bar,
        )
    print(f"prior schedule: {prior}" + (f" (env allocation {cfg.env.allocation}, tilted)" if prior_label else ""))
    state = tuning_record(cfg, run_dir, time.perf_counter() - start)  # the grid and the prior's choice
    _, trained = train_ppo(cfg, run_dir, family, prior, prior_label)
    state.update(trained)
    train_time = cumulative_train_seconds(run_dir, cfg.resume, time.perf_counter() - start)
    write_timing(run_dir, {"train_seconds": train_time, **state})  # the run's records, before the search reads them
    best = run_dir / "best_model.zip"
    model_path = best if cfg.eval_every and best.exists() else run_dir / "model.zip"
    chosen = "final model"
    if model_path == best:
        info = json.loads((run_dir / "best_model.json").read_text())
        split = "held-out" if cfg.select_on == "heldout" else "train-split"
        chosen = (
            f"best_model.zip (timestep {info['num_timesteps']}, {split} validation accuracy {info['val_accuracy']:.4f})"
        )
        if info["num_timesteps"] == 0:
            chosen += "; **no trained model beat the untrained policy**, so the learned policy is its prior"
    opponents = run_opponents(cfg, run_dir)  # the equal-budget searches, after training (its episodes set the budget)
    if uses_static_prior(cfg):  # search, then learn: is the learned policy more than a static point?
        opponents |= distilled_opponent(run_dir, prior, cfg.env.allocation)
    compared = comparison_family(cfg.family, cfg.heldout)  # the population stays unseen until here
    specs = _networks(cfg, compared)
    results = compare(cfg, specs, split_labeller(compared), model_path, run_dir, opponents)
    prior_shown = next(iter(incumbent(run_dir)), prior_label or prior)  # its name in the results
    notes = [
        f"Trained on the `{cfg.family}` family's train split ({', '.join(s.name for s in family.train)}) for "
        f"{state['num_timesteps']} timesteps = **{state['episodes']} training episodes**; compared on "
        f"{', '.join(s.name for s in specs)}, {seed_text(cfg.eval_seed_start, cfg.eval_seeds)}.",
        f"Learned policy (`{LEARNED}`): {chosen}.",
        prior_note(prior_shown, results, (cfg.env.selector, cfg.env.target_density)),
        dynamics_note(run_dir, results, LEARNED, distilled=uses_static_prior(cfg)),
    ]
    notes += [note for note in [imitation_note(results, LEARNED, prior_shown)] if note]
    if cfg.heldout == "population" and not cfg.networks:
        notes.append(f"Held-out population (`--heldout population`): {compared.description}.")
    notes += generalist_notes(cfg)
    if table is not None:
        notes.insert(
            0,
            f"Reference: the **tuned handcrafted** cell `{tuned}`, chosen before any held-out episode by mean "
            f"validation accuracy {100 * table.mean_val(table.best):.2f}% on the train split "
            f"({', '.join(s.name for s in family.train)}; seeds {', '.join(map(str, table.seeds))}) among "
            f"{len(table.cells)} cells: {', '.join(table.cells)} (run_dir/tuning.json).",
        )
    notes += opponent_notes(run_dir, opponents)
    if "reference_episodes" in state:
        reference = paired_reference(cfg, prior_label or prior)
        notes.append(
            f"Paired reward against `{reference}` (seed pool {cfg.seed_pool or 'none'} per "
            f"training network): the reference cost {state['reference_episodes']} episodes "
            f"({state['reference_seconds']} s) in this run."
        )
    title = (
        f"sparsity-gym comparison: PPO trained on family {cfg.family} ({cfg.env.dataset}), "
        f"selector {cfg.env.selector}, target density {cfg.env.target_density}"
    )
    recorded, agent = report_costs(cfg, run_dir, family, tuned)
    showcase = showcase_lines(cfg, run_showcase(cfg, run_dir))  # a shipped policy on its own task
    write_reports(cfg, results, run_dir, title, notes, tuned, recorded, agent, showcase)
    write_learning_curve(run_dir, f"{cfg.family}, target {cfg.env.target_density}, reward {cfg.reward}")
    write_budget_curve(run_dir, f"{cfg.family}, target {cfg.env.target_density}")
    timing = {"train_seconds": train_time, "total_seconds": time.perf_counter() - start, **state}
    write_timing(run_dir, timing)
    print(f"done in {timing['total_seconds']:.0f}s: {run_dir}/results.md; tensorboard --logdir {run_dir}/tb")
    return run_dir


def write_learning_curve(run_dir: Path, title: str) -> Path | None:
    """``learning_curve.png`` from the run's ``training_episodes.csv`` (``None`` when no episode finished)."""
    path = run_dir / TRAINING_EPISODES
    if not path.exists():
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rewards = [float(r["reward"]) for r in rows]
    val = [float(r["val_accuracy"]) for r in rows]
    return plot_learning_curve(run_dir / "learning_curve.png", rewards, val, title=title)


def run_evaluate(cfg: TrainConfig) -> Path:
    """Run a saved model and the chosen baselines on ``cfg.networks`` (default: held-out split) and report."""
    run_dir = _prepare(cfg)
    atomic_write_text(config_path(run_dir, cfg.mode), cfg.to_json())
    compared = comparison_family(cfg.family, cfg.heldout)
    model_path = preflight_model_path(cfg)  # --model (a path or a shipped policy's name), or the run folder's
    start = time.perf_counter()
    table = tune_run(cfg, run_dir)  # read back from the training run's tuning.json when it is there
    tuned = None if table is None else table.best
    picked, tuned = tuned, card_reference(cfg) or tuned  # a shipped policy: its card's cell (--reference)
    if cfg.prior == "tuned" and tuned is not None:  # the learned policy runs on the env it trained on
        cfg = dataclasses.replace(cfg, env=prior_from_cell(tuned, cfg.env)[1])
    elif uses_static_prior(cfg):
        cfg = dataclasses.replace(cfg, env=recorded_prior(cfg, ppo_run_dir(cfg))[1])
    if model_path is not None:  # what depends on the tuning's outcome, checked before the search spends anything
        check_learned_env(cfg, model_path)
    opponents = run_opponents(cfg, run_dir)
    specs = _networks(cfg, compared)
    results = compare(cfg, specs, split_labeller(compared), model_path, run_dir, opponents)
    seeds = seed_text(cfg.eval_seed_start, cfg.eval_seeds)
    notes = [
        f"Evaluation of `{model_path}` (`{LEARNED}`)" if model_path else "No learned model: baselines only,",
        f"on {', '.join(s.name for s in specs)}, {seeds}.",
    ]
    if tuned is not None and tuned != picked:
        notes.append(f"Reference: the card's cell `{tuned}` (this run's tuning picked `{picked}`; --reference tuned).")
    elif tuned is not None:
        notes.append(f"Reference: the tuned handcrafted cell `{tuned}` (train split, run_dir/tuning.json).")
    if cfg.heldout == "population" and not cfg.networks:
        notes.append(f"Held-out population (`--heldout population`): {compared.description}.")
    recorded, agent = report_costs(cfg, run_dir, get_family(cfg.family), tuned, training_dir=ppo_run_dir(cfg))
    title = f"sparsity-gym evaluation on {cfg.env.dataset}"
    write_reports(
        cfg,
        results,
        run_dir,
        title,
        [" ".join(notes), *opponent_notes(run_dir, opponents)],
        tuned,
        opponents=recorded,
        agent=agent,
    )
    print(f"done in {time.perf_counter() - start:.0f}s: {run_dir}/results.md")
    return run_dir


RUNNERS: dict[str, Callable[[TrainConfig], Path]] = {"train": run_train, "evaluate": run_evaluate}


def run(cfg: TrainConfig) -> Path:
    """Run the preflight (:mod:`agents.run.preflight`), then ``cfg.mode`` (``train`` or ``evaluate``); the run folder.

    ``cfg.dry_run``: the preflight alone (its plan printed, nothing written).
    """
    print(preflight(cfg).render(), flush=True)
    if cfg.dry_run:
        return Path(cfg.run_dir)
    return RUNNERS[cfg.mode](cfg)
