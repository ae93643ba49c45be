"""Train PPO on the schedule env, then compare it with every handcrafted schedule (what train_agent.py runs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor
from tqdm.auto import tqdm

from agents.callbacks import AtomicCheckpointCallback, EpisodeStatsCallback, save_model_atomic
from agents.config import TrainConfig
from baselines import available_policies, make_policy
from sparsity_gym.config import EnvConfig
from sparsity_gym.env import SparsityEnv
from sparsity_gym.evaluation import EpisodeResult, evaluate, seeds_from
from sparsity_gym.io import atomic_write_text
from sparsity_gym.report import plot_accuracy_vs_cost, plot_schedules, summarize, write_csv, write_markdown

TB_NAME = "PPO"


def train_ppo(cfg: TrainConfig, run_dir: Path) -> PPO:
    """Train (or resume) PPO on the training env; the final model is saved to ``run_dir/model.zip``."""
    env_cfg = EnvConfig(**cfg.env_kwargs())
    vec_env = make_vec_env(lambda: Monitor(SparsityEnv(config=env_cfg)), n_envs=1, seed=cfg.seed)
    checkpoint = run_dir / "checkpoints" / "last.zip"
    if cfg.resume and checkpoint.exists():
        model = PPO.load(checkpoint, env=vec_env, device="cpu", tensorboard_log=str(run_dir / "tb"))
        # A resumed run draws training episodes from a fresh stream, so it does not replay seen ones.
        vec_env.seed(cfg.seed + model.num_timesteps)
        print(f"resuming from {checkpoint} at timestep {model.num_timesteps}")
    else:
        model = PPO(
            "MlpPolicy",
            vec_env,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            learning_rate=cfg.learning_rate,
            gamma=cfg.gamma,
            ent_coef=cfg.ent_coef,
            seed=cfg.seed,
            device="cpu",
            tensorboard_log=str(run_dir / "tb"),
        )
    remaining = cfg.total_timesteps - model.num_timesteps
    if remaining > 0:
        layer_names = vec_env.get_attr("layer_names")[0]
        callbacks = [
            EpisodeStatsCallback(layer_names),
            AtomicCheckpointCallback(checkpoint.parent, cfg.checkpoint_every),
        ]
        model.learn(
            remaining,
            callback=callbacks,
            tb_log_name=TB_NAME,
            reset_num_timesteps=not cfg.resume,
            progress_bar=cfg.progress_bar,
        )
        callbacks[1].save()
    save_model_atomic(model, run_dir / "model.zip")
    vec_env.close()
    return model


def compare(cfg: TrainConfig, model: PPO) -> list[EpisodeResult]:
    """Every handcrafted schedule and the PPO agent on every (selector, target) setting, same seeds."""
    schedules = available_policies("schedule")
    settings = [(s, t) for t in cfg.eval_targets for s in cfg.eval_selectors]
    seeds = seeds_from(cfg.eval_seed_start, cfg.eval_seeds)
    total = len(settings) * (len(schedules) + 1) * len(seeds)
    results: list[EpisodeResult] = []
    with tqdm(total=total, desc="evaluating", unit="episode", disable=not cfg.progress_bar) as bar:
        for selector, target in settings:
            kwargs = cfg.env_kwargs(selector=selector, target_density=target)
            for name in schedules:
                factory = lambda env, n=name: make_policy(n, env)  # noqa: E731
                results += evaluate(factory, kwargs, seeds, name, split="train", progress_bar=bar)
            results += evaluate(model, kwargs, seeds, "ppo", split="train", progress_bar=bar)
    return results


def write_reports(cfg: TrainConfig, results: list[EpisodeResult], run_dir: Path) -> list[dict]:
    """``results.csv`` (mean ± std), ``episodes.csv`` (one row per episode), ``results.md`` and the plots."""
    rows = summarize(results)
    write_csv(run_dir / "results.csv", rows)
    write_csv(run_dir / "episodes.csv", [r.row() for r in results])
    title = (
        f"sparsity-gym comparison: PPO trained on {cfg.network}/{cfg.dataset}, selector {cfg.selector}, "
        f"target density {cfg.target_density}, {cfg.total_timesteps} timesteps"
    )
    write_markdown(run_dir / "results.md", rows, title=title)
    # The schedules of the setting PPO trained on, or of the first one compared if that one was not.
    setting = (cfg.selector, cfg.target_density)
    if not any((r.selector, r.target_density) == setting for r in results):
        setting = (results[0].selector, results[0].target_density)
    plot_schedules(
        run_dir / "schedules.png",
        [r for r in results if (r.selector, r.target_density) == setting],
        title=f"{cfg.network}, selector {setting[0]}, target density {setting[1]}",
    )
    plot_accuracy_vs_cost(run_dir / "accuracy_vs_density.png", rows, title=f"{cfg.network} on {cfg.dataset}")
    return rows


def run(cfg: TrainConfig) -> Path:
    """Train, compare, report; return the run folder."""
    EnvConfig(**cfg.env_kwargs())  # fail fast on a bad env value, before any work
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.rglob(".*.tmp"):  # left by a run killed while writing; the targets are intact
        stale.unlink()
    atomic_write_text(run_dir / "config.json", cfg.to_json())
    start = time.perf_counter()
    model = train_ppo(cfg, run_dir)
    train_time = time.perf_counter() - start
    results = compare(cfg, model)
    write_reports(cfg, results, run_dir)
    timing = {"train_seconds": train_time, "total_seconds": time.perf_counter() - start}
    atomic_write_text(run_dir / "timing.json", json.dumps(timing, indent=2))
    print(f"done in {timing['total_seconds']:.0f}s: {run_dir}/results.md; tensorboard --logdir {run_dir}/tb")
    return run_dir
