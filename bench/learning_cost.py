"""What an episode of learning costs against an episode of searching: PPO, TPE and the plain loop, like for like.

One process, one task (default ``mnist1d_mlp`` with a short training length), the same train networks, seeds
and ``--workers``, interleaved round by round (the machine is noisy; every configuration meets the same noise):

* **PPO**: the training phase of a task run (``agents.run.train.make_train_env``'s envs, here timed: subprocess
  envs, the layer-aware policy with the task's first tuned cell as its prior, the paired reward against it with
  the task's seed pool): ``--updates`` PPO updates per round, continued on one model (the workers started once).
  Its episodes are the training episodes plus the paired reward's reference episodes (what the equal-budget
  search is given).
* **PPO on whole episodes** (``--collect both``, the default): the same phase with ``--collect episodes``
  (``agents.ppo.episode_ppo``; ``bench/episode_phase.py``): whole episodes on the shared pool, no lockstep, with
  its own reference cache; its rate, the workers' busy share, and the same targets, beside the lockstep phase's.
* **TPE**: the equal-budget search's trials (``sparsity_gym.experiments.search.run_search``, Optuna's TPE, one
  study continued round by round) on the same networks and workers (the process pool).
* **plain**: the plain training loop (``sparsity_gym.env.training.TrainingLoop``: no env, masks or statistics)
  of the PPO round's episodes (the same networks and iterations) on the same pool.
* **statistics**: one episode of the task's first network with all four statistic families against none
  (``bench/stats_overhead.py``'s measure), in this process.

It prints each one's episodes per second; the PPO phase's wall time part by part, as fractions that sum to
about 1 (the env workers' own times, divided by the workers: training steps, statistics, validation passes,
the rest of the env; the lockstep waiting, i.e. the time a worker sits idle while the vector step waits for
its slowest env; the inter-process traffic; the policy's inference and the PPO updates in this process), the
share of the paired reward's reference episodes in it, and one held-out evaluation per round on the pool
(apart); then the three target ratios of issue 30: PPO episode / TPE episode (adjusted as well for the two
mixes of networks by the plain loop's seconds per network), PPO phase / plain loop of the same episodes at
the same parallelism, and all four statistic families / none. Medians over the rounds after a warm-up round.
The default takes 2-4 minutes on 2 cores; ``--rounds 1 --iterations 200 --interval 20 --n-steps 10`` about one.

    python bench/learning_cost.py [--rounds 3] [--iterations 500] [--interval 50] [--workers 2] [--updates 1]
                                  [--collect both|steps] [--reward paired|env]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from env_overhead import env_episode
from episode_phase import EpisodePhase
from throughput import PARTS, StepTimer, TimedEnv, _timed, plain_episode

from agents.ppo.paired_reward import PairedReward, ReferenceCache
from agents.reports.comparison import baseline_factory
from agents.reports.heldout import HeldoutEvaluator
from agents.reports.prior_search import search_configs
from agents.reports.tuned import prior_from_cell
from agents.run.model import new_model
from agents.settings.presets import TUNE_GRID
from agents.settings.train_config import TrainConfig, config_from
from baselines import SEARCH_SPACE, policy_cell, searched_name
from sparsity_gym.env.env_config import OBSERVATION_FAMILIES, EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.family_env import FamilyEnv
from sparsity_gym.experiments.pool import shared_pool
from sparsity_gym.experiments.search import run_search
from sparsity_gym.experiments.seeds import seeds as seed_range


def timed_train_env(specs: tuple, config: EnvConfig, paired: tuple | None) -> Any:
    """A task run's training env (``agents.run.train._family_env``), its parts timed; runs in the worker."""
    torch.set_num_threads(1)
    for owner, method, name in PARTS:
        if not hasattr(getattr(owner, method), "__wrapped__"):
            setattr(owner, method, _timed(name, getattr(owner, method)))
    env: Any = FamilyEnv(specs, config)
    if paired is not None:
        reference, cache, per_network = paired
        env = PairedReward(env, baseline_factory(reference), ReferenceCache(cache), per_network)
    return TimedEnv(env)


class LockstepTimer(StepTimer):
    """:class:`StepTimer` plus the lockstep waiting: per step, the mean over envs of (slowest env - this env).

    The inner vector env's ``step_wait`` is wrapped to read the workers' own step times before
    :class:`StepTimer` takes them out of ``info``.
    """

    def __init__(self, venv: Any) -> None:
        super().__init__(venv)
        self.lockstep = 0.0
        inner = venv.step_wait

        def step_wait() -> Any:
            obs, rewards, dones, infos = inner()
            totals = [info.get("bench", {}).get("total", 0.0) for info in infos]
            self.lockstep += sum(max(totals) - t for t in totals) / len(totals)
            return obs, rewards, dones, infos

        venv.step_wait = step_wait
        self.step_wall = 0.0

    def step_wait(self) -> Any:
        """Gather the step (see :class:`StepTimer`); add its wall time, the sending included."""
        start = time.perf_counter()
        out = super().step_wait()
        self.step_wall += time.perf_counter() - start + self._async
        return out


class TimedPPO(PPO):
    """PPO whose updates and policy forward passes (the rollout's inference) are timed into ``times``."""

    times: dict[str, float]

    def _setup_model(self) -> None:
        super()._setup_model()
        self.times = defaultdict(float)
        started: list[float] = []
        self.policy.register_forward_pre_hook(lambda *_: started.append(time.perf_counter()))
        self.policy.register_forward_hook(lambda *_: self._add("inference", started.pop()))

    def _add(self, name: str, start: float) -> None:
        self.times[name] += time.perf_counter() - start

    def train(self) -> None:
        """One PPO update, timed."""
        start = time.perf_counter()
        super().train()
        self._add("updates", start)


class PPOPhase:
    """The PPO training phase, continued round by round on one model (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, prior: str, prior_cell: str, folder: Path, updates: int) -> None:
        family = get_family(cfg.family)
        paired = (prior_cell, str(folder / "reference_cache.json"), cfg.seed_pool) if cfg.reward == "paired" else None
        factory = functools.partial(timed_train_env, tuple(family.train), cfg.env, paired)
        self.venv = LockstepTimer(make_vec_env(factory, n_envs=cfg.n_envs, seed=cfg.seed, vec_env_cls=SubprocVecEnv))
        torch.set_num_threads(1)
        self.model = new_model(cfg, self.venv, prior, family, cls=TimedPPO)
        self.times = self.model.times
        self.steps = updates * cfg.n_steps * cfg.n_envs
        self.decisions = cfg.env.num_decisions
        self.reference = 0
        self.paired = paired is not None

    def run(self) -> tuple[float, float, dict[str, float], list[str]]:
        """One round: ``(seconds, episodes, parts, networks of the finished episodes)``."""
        before = {**self.times, **self.venv.parts, **self._venv_counts()}
        seen = len(self.venv.episodes)
        start = time.perf_counter()
        self.model.learn(self.steps, reset_num_timesteps=False)
        seconds = time.perf_counter() - start
        reference = sum(c.episodes for c in self.venv.get_attr("cache")) if self.paired else 0
        episodes = self.steps / self.decisions + reference - self.reference
        self.reference = reference
        after = {**self.times, **self.venv.parts, **self._venv_counts()}
        parts = {k: v - before.get(k, 0.0) for k, v in after.items()}
        return seconds, episodes, parts, self.venv.episodes[seen:]

    def _venv_counts(self) -> dict[str, float]:
        v = self.venv
        reference = sum(c.seconds for c in v.get_attr("cache")) if self.paired else 0.0
        return {"lockstep": v.lockstep, "traffic": v.traffic, "step_wall": v.step_wall, "reference": reference}

    def close(self) -> None:
        """Close the envs."""
        self.venv.close()


def search_round(cfg: TrainConfig, folder: Path, budget: int, workers: int) -> tuple[float, float]:
    """The TPE search continued to ``budget`` episodes: ``(seconds, episodes run this round)``."""
    configs = search_configs(cfg)
    seeds = seed_range("tuning", cfg.search_seeds)
    per_trial = len(configs) * len(seeds)
    done = len(_completed(folder)) * per_trial
    start = time.perf_counter()
    run_search(
        "tpe", SEARCH_SPACE, searched_name, policy_cell, configs, seeds, budget, folder,
        seed=cfg.seed, progress=False, backend="process", workers=workers,
    )  # fmt: skip
    return time.perf_counter() - start, budget - done


def _completed(folder: Path) -> list[Any]:
    path = folder / "search_tpe.db"
    if not path.exists():
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = optuna.get_all_study_summaries(f"sqlite:///{path}")
    if not studies:
        return []
    study = optuna.load_study(study_name=studies[0].study_name, storage=f"sqlite:///{path}")
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def plain_round(cfg: TrainConfig, networks: list[str], workers: int, offset: int) -> tuple[float, dict[str, float]]:
    """The plain loop of ``networks`` (one episode each) on the pool: ``(wall seconds, {network: s/episode})``."""
    specs = {s.name: s for s in get_family(cfg.family).train}
    pool = shared_pool(workers, 1)
    start = time.perf_counter()
    futures = [pool.submit(plain_episode, specs[n], cfg.env, offset + i) for i, n in enumerate(networks)]
    seconds = [f.result() for f in futures]
    wall = time.perf_counter() - start
    per: dict[str, list[float]] = defaultdict(list)
    for n, s in zip(networks, seconds, strict=True):
        per[n].append(s)
    return wall, {n: statistics.mean(v) for n, v in per.items()}


def task_config(args: argparse.Namespace) -> tuple[TrainConfig, str, str]:
    """The bench's run settings, the policy's prior and the tuned cell it plays (the task's first grid cell)."""
    given = {
        "task": args.task,
        "total_iterations": args.iterations,
        "decision_interval": args.interval,
        "n_envs": args.workers,
        "n_steps": args.n_steps,
        "batch_size": args.n_steps * args.workers,
        "eval_every": 0,
        "search_seeds": 1,
        "reward": args.reward,
    }
    cfg = config_from(given)
    prior, env = prior_from_cell(args.cell or TUNE_GRID[0], cfg.env)
    return dataclasses.replace(cfg, env=env), prior, args.cell or TUNE_GRID[0]


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d_mlp")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--iterations", type=int, default=500, help="optimizer steps per episode")
    parser.add_argument("--interval", type=int, default=50, help="optimizer steps per decision")
    parser.add_argument("--workers", type=int, default=2, help="PPO's subprocess envs = the pool's workers")
    parser.add_argument("--updates", type=int, default=1, help="PPO updates per round")
    parser.add_argument("--n-steps", type=int, default=20, help="PPO rollout length per env")
    parser.add_argument("--reward", default="paired", choices=("paired", "env"))
    parser.add_argument("--cell", default="", help="the tuned cell (default: the task grid's first)")
    parser.add_argument(
        "--collect", default="both", choices=("steps", "both"),
        help="steps: the PPO phase as a task run collects (vector env, lockstep); both: and whole episodes on the "
        "pool (--collect episodes, bench/episode_phase.py), interleaved",
    )  # fmt: skip
    parser.add_argument("--eval-episodes", type=int, default=1, help="held-out evaluation seeds per round (0: none)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg, prior, cell = task_config(args)
    family = get_family(cfg.family)
    folder = Path(tempfile.mkdtemp(prefix="learning_cost_"))
    ppo = PPOPhase(cfg, prior, cell, folder, args.updates)
    whole = EpisodePhase(cfg, prior, cell, folder, args.updates, timed_train_env) if args.collect != "steps" else None
    per_trial = len(family.train) * cfg.search_seeds
    evaluator = None
    if args.eval_episodes:
        evaluator = HeldoutEvaluator(
            family.heldout, cfg.env, seed_range("selection", args.eval_episodes), workers=args.workers,
            snapshot=folder / "eval_model.zip",
        )  # fmt: skip
    stats_envs = {
        name: SparsityEnv(cfg.env.replace(**family.train[0].env_kwargs(), observations=obs))
        for name, obs in (("none", ()), ("all four", OBSERVATION_FAMILIES))
    }
    rows: dict[str, list[float]] = defaultdict(list)
    parts_sum: dict[str, float] = defaultdict(float)
    whole_sum: dict[str, float] = defaultdict(float)
    seen_whole: list[str] = []
    per_network: dict[str, list[float]] = defaultdict(list)
    budget = 0
    for r in range(args.rounds + 1):
        whole_round = whole.run() if whole is not None else (0.0, 0.0, {}, [])
        ppo_s, ppo_eps, parts, networks = ppo.run()
        trials = max(1, round(ppo_eps / per_trial))
        budget += trials * per_trial
        tpe_s, tpe_eps = search_round(cfg, folder, budget, args.workers)
        plain_s, plain_per = plain_round(cfg, networks or [family.train[0].name], args.workers, 100 * r)
        if whole is not None:
            whole_plain_s, _ = plain_round(cfg, whole_round[3] or [family.train[0].name], args.workers, 100 * r + 50)
        eval_s = 0.0
        if evaluator is not None:
            start = time.perf_counter()
            evaluator(ppo.model)
            eval_s = time.perf_counter() - start
        stats = {name: env_episode(env, 1000 + r) for name, env in stats_envs.items()}
        if r == 0:
            continue  # warm-up: pools, caches, the reference's first episodes
        for n, s in plain_per.items():
            per_network[n].append(s)
        plain_ppo = plain_s * ppo_eps / max(1, len(networks))
        if whole is not None:
            record_whole(rows, whole_sum, seen_whole, whole_round, whole_plain_s)
        rows["ppo"].append(ppo_s / ppo_eps)
        rows["tpe"].append(tpe_s / tpe_eps)
        rows["plain"].append(plain_ppo / ppo_eps)
        rows["ppo/plain"].append(ppo_s / plain_ppo)
        rows["stats"].append(stats["all four"] / stats["none"])
        rows["eval/ppo"].append(eval_s / ppo_s)
        for k, v in parts.items():
            parts_sum[k] += v / ppo_s  # fractions of the round's wall time, summed over the rounds
        print(
            f"round {r}: PPO {ppo_eps:.1f} episodes {ppo_s:.1f} s, TPE {tpe_eps} episodes {tpe_s:.1f} s, "
            f"plain {len(networks)} episodes {plain_s:.1f} s, evaluation {eval_s:.1f} s",
            flush=True,
        )
    ppo.close()
    plain_net = {n: statistics.median(v) for n, v in per_network.items()}
    mix_ppo = statistics.mean(plain_net[n] for n in ppo.venv.episodes if n in plain_net)
    mix_tpe = statistics.mean(plain_net[s.name] for s in family.train if s.name in plain_net)
    n = args.rounds
    print(
        f"\n{args.task}: {cfg.env.total_iterations} iterations, a decision every {cfg.env.decision_interval}; "
        f"{args.workers} workers; reward {cfg.reward}, prior {prior} ({cell}); median of {n} rounds"
    )
    for name in ("ppo", "tpe", "plain"):
        print(f"  {name:6s} {1 / statistics.median(rows[name]):6.3f} episodes/s")
    print("PPO phase breakdown, fraction of its wall time (the env workers' times divided by the workers):")
    w, p = args.workers, {k: v / n for k, v in parts_sum.items()}
    workers = {
        "env: training steps (optimizer, masks, pruning driver)": (p["steps"] - p["statistics"]) / w,
        "env: statistics (gradient statistics, observation)": (p["statistics"] + p["observation"]) / w,
        "env: validation passes": p["validation"] / w,
        "env: the rest (actions, reset, paired reward)": (p["total"] - p["steps"] - p["validation"] - p["observation"])
        / w,
    }
    here = {
        "lockstep waiting (workers idle until the slowest env)": p["lockstep"] / w,
        "inter-process traffic (step wall - slowest worker)": p["traffic"],
        "policy inference (this process)": p["inference"],
        "PPO updates (this process)": p["updates"],
        "rest of this process (buffer, callbacks)": 1 - p["step_wall"] - p["inference"] - p["updates"],
    }
    for k, v in {**workers, **here}.items():
        print(f"  {k:62s} {v:5.3f}")
    print(f"  {'(sum)':62s} {sum(workers.values()) + sum(here.values()):5.3f}")
    print(f"  {'of which the reference episodes (env workers)':62s} {p['reference'] / w:5.3f}")
    print(
        f"  {'the plain loop of the same episodes, same workers':62s} {1 / statistics.median(rows['ppo/plain']):5.3f}"
    )
    print(f"  {'one held-out evaluation per round / the round (apart)':62s} {statistics.median(rows['eval/ppo']):5.3f}")
    ppo_tpe = _ratio(rows["ppo"], rows["tpe"])
    print("targets (issue 30):")
    print(f"  PPO episode / TPE episode                      x{ppo_tpe:.2f}   (<= 1.05)")
    print(f"    the same, adjusted for the networks' mixes   x{ppo_tpe * mix_tpe / mix_ppo:.2f}")
    print(f"  PPO phase / plain loop, same episodes, workers x{statistics.median(rows['ppo/plain']):.2f}   (<= 1.3)")
    print(f"  all four statistic families / none             x{statistics.median(rows['stats']):.2f}   (<= 1.10)")

    if whole is not None:
        print_whole(rows, whole_sum, n, mix_tpe, plain_net, seen_whole)


def record_whole(
    rows: dict[str, list[float]],
    parts: dict[str, float],
    networks: list[str],
    result: tuple[float, float, dict[str, float], list[str]],
    plain_s: float,
) -> None:
    """Add a whole-episode round (``EpisodePhase.run``'s result; ``plain_s``: the plain loop of its episodes)."""
    seconds, episodes, round_parts, round_networks = result
    plain = plain_s * episodes / max(1, len(round_networks))
    rows["whole"].append(seconds / episodes)
    rows["whole/plain"].append(seconds / plain)
    for k, v in round_parts.items():
        parts[k] += v
    networks += round_networks
    print(f"  PPO on whole episodes: {episodes:.1f} episodes {seconds:.1f} s", flush=True)


def print_whole(
    rows: dict[str, list[float]],
    parts: dict[str, float],
    rounds: int,
    mix_tpe: float,
    plain_net: dict[str, float],
    networks: list[str],
) -> None:
    """The whole-episode phase's rate, breakdown and targets, beside the lockstep phase's."""
    mix = statistics.mean(plain_net[n] for n in networks if n in plain_net) if networks else 1.0
    whole_tpe = _ratio(rows["whole"], rows["tpe"])
    print("PPO phase on whole episodes (--collect episodes), the same rounds:")
    print(f"  whole  {1 / statistics.median(rows['whole']):6.3f} episodes/s")
    for k, v in parts.items():
        print(f"  {k:62s} {v / rounds:5.3f}")
    rest = 1 - sum(parts.values()) / rounds
    print(f"  {'the rest (workers idle at rollout ends, shipping, packing)':62s} {rest:5.3f}")
    print(f"  PPO episode (whole) / PPO episode (steps)      x{_ratio(rows['whole'], rows['ppo']):.2f}")
    print(f"  PPO episode / TPE episode                      x{whole_tpe:.2f}   (<= 1.05)")
    print(f"    the same, adjusted for the networks' mixes   x{whole_tpe * mix_tpe / mix:.2f}")
    print(f"  PPO phase / plain loop, same episodes, workers x{statistics.median(rows['whole/plain']):.2f}   (<= 1.3)")


if __name__ == "__main__":
    main()
