"""The training run's frozen configuration and its command line (parsed once, at the edge)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.policies import available as shipped_policies
from agents.ppo.layerwise_policy import POOLINGS, RESIDUAL_INITS
from agents.settings.generalist import check_generalist
from agents.settings.presets import PRESETS, task_settings
from baselines import available_policies
from baselines.handcrafted import is_cell
from baselines.static import is_static, parse_static
from sparsity_gym.core.checks import check_choice, check_number
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.tasks import available_tasks
from sparsity_gym.experiments.families import available_network_families, parse_network
from sparsity_gym.experiments.grid import BACKENDS
from sparsity_gym.experiments.populations import HELDOUT, comparison_family
from sparsity_gym.experiments.seeds import seed_start


def _opt(default: Any, help: str, choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """What ``train_agent.py`` runs: PPO on a family's train split, then the comparison on its held-out split.

    Fields are the command line's flags (``--n-envs`` for ``n_envs``). ``env`` is the env's own frozen
    :class:`~sparsity_gym.env.env_config.EnvConfig`, validated once when it is built and passed down whole (every
    network of the run shares it; the network comes from the family's specs); its flags are :data:`ENV_FLAGS`.

    Precedence (:func:`config_from`, what :func:`parse_args` builds): each setting, run or env, takes the value of
    the last of these layers that sets it:

    1. the field's default (this class's, or ``EnvConfig``'s);
    2. the preset (``--preset``, :data:`agents.settings.presets.PRESETS`);
    3. the task (``--task``, :func:`agents.settings.presets.task_settings`: the task's env settings, its family,
       ``run_dir=runs/<task>``, its selector as the comparison's and :data:`agents.settings.presets.TASK_PRESET`);
    4. a flag given on the command line.

    Under a task, ``eval_targets`` not given on the command line is ``(env.target_density,)``: the run's target
    (the task's first, or ``--target-density``). A config built directly (``TrainConfig(task=...)``) takes its
    fields as given: the layers are the command line's.
    """

    env: EnvConfig = field(default_factory=EnvConfig, metadata={"help": "the env settings (see ENV_FLAGS)"})

    mode: str = _opt(
        "train",
        "train: train PPO on the family's train split, then compare on its held-out split; evaluate: run a saved "
        "model (--model) and the baselines on --networks (also `train_agent.py evaluate ...`)",
    )
    preset: str = _opt(
        "default",
        "default: about 5 minutes on 2 cores; long: the headline run (30000 timesteps, 5 seeds); a task's settings "
        "and flags given override the preset's",
    )
    total_timesteps: int = _opt(
        3000,
        "PPO environment steps (decisions) to train for; an episode is total_iterations / decision_interval decisions",
    )
    run_dir: str = _opt("runs/default", "folder for TensorBoard events, checkpoints, the model and the results")
    seed: int = _opt(
        seed_start("training"), "seed of PPO and of the training episodes (evaluation seeds are eval_seed_start + i)"
    )
    resume: bool = _opt(False, "continue from run_dir/checkpoints/last.zip with the timestep count and curves")
    task: str | None = _opt(
        None,
        "a named benchmark task (sparsity_gym.env.tasks): its dataset, networks (train / held-out split), budget, "
        "targets, selector and training length override the preset's; flags given still win",
        choices=available_tasks,  # called when the parser is built: tasks registered later count
    )
    family: str = _opt("mlp", "network family: training samples its train split, reports use its held-out split")
    # training across settings (agents.settings.generalist)
    train_targets: tuple[float, ...] = _opt(
        (), "target densities training episodes draw from, one per episode (e.g. 0.01 0.03 0.1); default: the run's"
    )
    also_task: tuple[str, ...] = _opt(
        (),
        "more tasks whose families' train networks training episodes draw from, each with its own task settings "
        "(e.g. --task mnist1d_mlp --also-task mnist1d_cnn; one dataset, observation and action map)",
    )
    n_envs: int = _opt(2, "parallel training envs (subprocess vector envs when more than 1)")
    vec_env: str = _opt(
        "auto",
        "how the training envs run: auto (subproc when n_envs > 1, else dummy), dummy (in this process), subproc "
        "(one process each) or ray (Ray actors, agents.ppo.ray_vec_env; pip install -e '.[ray]')",
    )
    collect: str = _opt(
        "steps",
        "how rollouts are gathered: steps (the vector env, all envs in lockstep) or episodes (whole episodes on the "
        "process pool, each worker with a copy of the policy, no lockstep; agents.ppo.episode_ppo)",
    )
    ray_address: str = _opt("", "--vec-env ray: address of a running Ray cluster (default: start a local Ray)")
    env_cpus: float = _opt(1.0, "--vec-env ray: CPUs each env actor declares (its torch threads)")
    env_gpus: float = _opt(0.0, "--vec-env ray: GPUs each env actor declares (fractional allowed, e.g. 0.25)")
    n_steps: int = _opt(50, "PPO rollout length per env and update (an update sees n_steps * n_envs decisions)")
    batch_size: int = _opt(50, "PPO minibatch size")
    n_epochs: int = _opt(10, "PPO epochs per update")
    learning_rate: float = _opt(3e-4, "PPO learning rate")
    gamma: float = _opt(0.99, "PPO discount")
    ent_coef: float = _opt(0.0, "PPO entropy coefficient")
    policy_hidden: tuple[int, ...] = _opt((64, 64), "hidden widths of the per-layer actor MLP and the critic's rows")
    prior: str = _opt(
        "auto",
        "handcrafted schedule the actor's output is a residual on (agents.ppo.layerwise_policy): a schedule name, none "
        "(the actor alone), or auto (the schedule with the best validation accuracy on the train split, never the "
        "held-out one), or tuned (the tuned cell of --tune-cells: its schedule as the prior, its allocation rule "
        "as the env's, tilted by the actor), or a static point (poly[s=..,e=..,p=..]+rule[first=..,last=..]), or "
        "search (the TPE incumbent of a search run first, --prior-search-budget episodes; needs --task)",
    )
    prior_search_budget: int = _opt(1000, "--prior search: episodes of the search that picks the prior (TPE)")
    policy_pooling: str = _opt(
        "deepsets",
        "actor of a new model: deepsets (each layer's action sees the pooled rows of every layer) or none (its own "
        "row only; models saved without the option load as none)",
    )
    residual_init: str = _opt(
        "small",
        "the actor's last layer in a new model: small (SB3's orthogonal gain 0.01: the untrained policy is its prior "
        "plus a small seed-dependent residual) or zero (residual policy learning, Silver et al. 2018: it is its "
        "prior exactly)",
    )
    tune_cells: tuple[str, ...] = _opt(
        (),
        "handcrafted cells (shape@window+allocation, e.g. cubic@0.9+erk) tuned on the task's train split before "
        "training (agents.reports.tuned; needs --task): the best by validation accuracy is the report's reference and "
        "--prior tuned's schedule, and every cell runs in the comparison (the oracle's grid)",
    )
    tune_seeds: int = _opt(2, f"tuning episodes (seeds {seed_start('tuning')} + i) per train network and cell")
    # the equal-budget search opponents (agents.reports.opponent_runs; sparsity_gym.experiments.search)
    opponent: tuple[str, ...] = _opt(
        ("none",),
        "static-schedule searches to compare with (needs --task and Optuna: pip install -e '.[search]'): search "
        "(Optuna TPE), random (random search), or both; each searches the static schedule's knobs "
        "(baselines.static) on the train split with the PPO run's episode budget, and its best point runs in "
        "the comparison as 'search (N episodes)'; none: no search",
    )
    search_budget: int = _opt(
        0,
        "episodes each search may spend (a trial costs train networks x --search-seeds episodes); 0: the PPO "
        "run's own, its training episodes plus the paired reward reference's (run_dir's records, or --model's "
        "folder in evaluate mode)",
    )
    search_seeds: int = _opt(
        2, "search episodes per train network and trial, on the tuned grid's seeds (seeds('tuning', n))"
    )
    sampler_seeds: tuple[int, ...] = _opt(
        (), "sampler seeds of every --opponent search, one study each (default: --seed)"
    )
    reward: str = _opt(
        "env",
        "env: the env's reward; paired: the final validation accuracy minus that of --reward-reference on the same "
        "network and seed (agents.ppo.paired_reward; the reference runs once per network and seed, cached)",
    )
    reward_reference: str = _opt(
        "prior",
        "paired reward's reference: prior (the prior schedule; the tuned cell with --prior tuned) or a "
        "schedule or cell name",
    )
    seed_pool: int = _opt(
        0,
        f"training seeds per training network, drawn from a finite pool (seeds {seed_start('pool')}+; 0: a new seed "
        "each time)",
    )
    prior_seeds: int = _opt(2, f"auto prior: episodes (seeds {seed_start('prior')} + i) per train network and schedule")
    log_std_init: float = _opt(
        -2.0, "initial log standard deviation of the actions (shared by all layers; -2: about 0.06 in density)"
    )
    log_std_final: float | None = _opt(None, "log-std at the end of an exploration schedule from --log-std-init")
    log_std_decay: str = _opt("exp", "that schedule: exp (sigma geometric) or linear (agents.ppo.exploration)")
    norm_reward: bool = _opt(False, "normalise the rewards (VecNormalize, reward only; agents.ppo.exploration)")
    checkpoint_every: int = _opt(500, "save run_dir/checkpoints/last.zip every this many timesteps")
    eval_every: int = _opt(
        1000, "evaluate on the held-out split every this many timesteps and keep best_model.zip (0: never)"
    )
    select_on: str = _opt(
        "heldout",
        f"networks of the periodic evaluation that picks best_model.zip (validation accuracy, seeds "
        f"{seed_start('selection')}+): heldout "
        "(the family's held-out split, as the comparison) or train (the train split: the held-out networks stay "
        "unseen until the comparison, as the tuned handcrafted cell's)",
        choices=("heldout", "train"),
    )
    eval_episodes: int = _opt(
        1, f"seeds per held-out network in each periodic evaluation (seeds {seed_start('selection')} + i)"
    )
    eval_seeds: int = _opt(3, "evaluation episodes (seeds) per policy, network and setting in the comparison")
    eval_seed_start: int = _opt(
        seed_start("comparison"), "first seed of the comparison (sparsity_gym.experiments.seeds: apart from all others)"
    )
    eval_targets: tuple[float, ...] = _opt((0.1, 0.5), "target densities of the comparison")
    eval_selectors: tuple[str, ...] = _opt(("magnitude", "random"), "selectors of the comparison (MP-RR, RP-RR)")
    networks: tuple[str, ...] = _opt(
        (), "networks of the comparison (e.g. mlp_512x512 cnn_8x16 cnn); default: the family's held-out split"
    )
    heldout: str = _opt(
        "named",
        "held-out networks of the comparison: named (the family's held-out split) or population (the task's "
        "held-out population: its named held-out networks plus drawn ones, sparsity_gym.experiments.populations; "
        "periodic evaluation and model selection keep to the named ones or the train split)",
        choices=HELDOUT,
    )
    policies: tuple[str, ...] = _opt(
        ("all",),
        "baselines in the comparison: all, schedules, criteria, none, or names (cubic neq ...), handcrafted cells "
        "(cubic@0.9+erk) or static points (poly[s=0.1,e=0.8,p=2.5]+erk[first=3])",
    )
    reference: str = _opt(
        "card",
        "evaluate mode with a shipped policy under --prior tuned: the reference cell, card (its card's cell, the "
        "one its actor plays on: the card's command re-measures the card) or tuned (this run's tuning)",
        choices=("card", "tuned"),
    )
    backend: str = _opt("process", "how the comparison's episodes run: sequential, process (a pool) or ray")
    workers: int = _opt(0, "parallel workers of the comparison (0: one per usable core)")
    model: str = _opt(
        "",
        "evaluate mode: a model saved by train mode, or a shipped policy's name (python -m agents.policies list; e.g. "
        "mnist1d_mlp@0.01); default: run_dir/best_model.zip or model.zip",
    )
    showcase: tuple[str, ...] = _opt(
        (),
        "train mode: shipped policies (python -m agents.policies list) to play against the tuned handcrafted cell of "
        "their card on their own task's held-out networks, the verdict at the top of results.md (agents.run.showcase; "
        "the default preset: mnist1d_mlp@0.01)",
    )
    progress_bar: bool = _opt(True, "show progress bars")
    dry_run: bool = _opt(
        False,
        "run only the preflight (agents.run.preflight: device, run folder, every network built on the dataset, "
        "policies, model and its schema; the work and its time estimated from a probe episode), print the plan, write "
        "nothing",
    )

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("preset", self.preset, tuple(PRESETS))
        if self.task is not None:
            check_choice("task", self.task, available_tasks())
        check_choice("family", self.family, available_network_families())
        check_number("total_timesteps", self.total_timesteps, low=1, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("n_envs", self.n_envs, low=1, integer=True)
        check_choice("vec_env", self.vec_env, VEC_ENVS)
        check_choice("collect", self.collect, COLLECTS)
        if self.collect == "episodes" and (self.norm_reward or self.vec_env == "ray"):
            raise ValueError(
                f"collect='episodes' is not allowed with norm_reward={self.norm_reward} or vec_env={self.vec_env!r}; "
                "expected norm_reward False and vec_env auto, dummy or subproc (the episodes run on the process pool)"
            )
        check_number("env_cpus", self.env_cpus, low=0.0)
        check_number("env_gpus", self.env_gpus, low=0.0)
        check_number("n_steps", self.n_steps, low=2, integer=True)
        check_number("batch_size", self.batch_size, low=2, integer=True)
        check_number("n_epochs", self.n_epochs, low=1, integer=True)
        check_number("learning_rate", self.learning_rate, low=0.0, low_inclusive=False)
        check_number("gamma", self.gamma, low=0.0, high=1.0)
        check_number("ent_coef", self.ent_coef, low=0.0)
        for width in self.policy_hidden:
            check_number("policy_hidden", width, low=1, integer=True)
        self._check_prior()
        check_choice("policy_pooling", self.policy_pooling, POOLINGS)
        check_choice("residual_init", self.residual_init, RESIDUAL_INITS)
        check_choice("reward", self.reward, ("env", "paired"))
        if not is_cell(self.reward_reference):
            check_choice("reward_reference", self.reward_reference, ("prior", *available_policies("schedule")))
        self._check_tuning()
        self._check_opponents()
        check_generalist(self)
        check_number("seed_pool", self.seed_pool, low=0, integer=True)
        check_number("prior_seeds", self.prior_seeds, low=1, integer=True)
        check_number("log_std_init", self.log_std_init, low=-5.0, high=1.0)
        if self.log_std_final is not None:
            check_number("log_std_final", self.log_std_final, low=-10.0, high=1.0)
        check_choice("log_std_decay", self.log_std_decay, ("exp", "linear"))
        check_number("checkpoint_every", self.checkpoint_every, low=1, integer=True)
        check_number("eval_every", self.eval_every, low=0, integer=True)
        check_number("eval_episodes", self.eval_episodes, low=1, integer=True)
        check_choice("select_on", self.select_on, ("heldout", "train"))
        check_number("eval_seeds", self.eval_seeds, low=1, integer=True)
        for t in self.eval_targets:
            check_number("eval_targets", t, low=0.0, high=1.0, low_inclusive=False)
        for s in self.eval_selectors:
            check_choice("eval_selectors", s, ("magnitude", "random"))
        for name in self.networks:
            parse_network(name)
        check_choice("heldout", self.heldout, HELDOUT)
        if self.heldout == "population":
            comparison_family(self.family, self.heldout)  # a family without a population is refused here
        check_choice("backend", self.backend, BACKENDS)
        for name in self.showcase:
            check_choice("showcase", name, shipped_policies())
        check_number("workers", self.workers, low=0, integer=True)
        self._check_policies()

    def _check_policies(self) -> None:
        """The comparison's baselines: groups, registered names, cells or static points; the reference."""
        for name in self.policies:
            if is_static(name):
                parse_static(name)  # its own error: the knob and its range
            elif not is_cell(name):
                check_choice("policies", name, (*POLICY_GROUPS, *available_policies(), "a cell", "a static point"))
        check_choice("reference", self.reference, ("card", "tuned"))

    def _check_prior(self) -> None:
        """A prior: a choice, a schedule with its window (``cubic@0.9``) or a static point (``poly[...]``)."""
        if is_static(self.prior):
            parse_static(self.prior)
        elif not (is_cell(self.prior) and "+" not in self.prior):
            check_choice("prior", self.prior, (*PRIOR_CHOICES, *available_policies("schedule")))

    def _check_tuning(self) -> None:
        """The tuning grid: cells, unique, with a task; ``prior='tuned'`` needs one."""
        for cell in self.tune_cells:
            if is_static(cell):
                parse_static(cell)  # its own error: the knob and its range
            elif not is_cell(cell):
                raise ValueError(
                    f"tune_cells={cell!r} is not allowed; expected a cell like 'cubic@0.9+erk' or a static schedule "
                    "like 'poly[s=0.1,e=0.8,p=2.5]+erk[first=3]'"
                )
        if self.tune_cells and self.task is None:
            raise ValueError("tune_cells is not allowed without --task; the grid is tuned on a task's train split")
        if len(set(self.tune_cells)) != len(self.tune_cells):
            raise ValueError(f"tune_cells={self.tune_cells!r} is not allowed; expected unique cells")
        check_number("tune_seeds", self.tune_seeds, low=1, integer=True)
        if self.prior == "tuned" and not self.tune_cells:
            raise ValueError("prior='tuned' is not allowed without --tune-cells; expected a grid to tune")

    def _check_opponents(self) -> None:
        """The search opponents: known, ``none`` alone, with a task (Optuna's presence is the preflight's check)."""
        for name in self.opponent:
            check_choice("opponent", name, OPPONENTS)
        if len(set(self.opponent)) != len(self.opponent) or ("none" in self.opponent and len(self.opponent) > 1):
            raise ValueError(f"opponent={self.opponent!r} is not allowed; expected none, or search and/or random once")
        check_number("search_budget", self.search_budget, low=0, integer=True)
        check_number("search_seeds", self.search_seeds, low=1, integer=True)
        check_number("prior_search_budget", self.prior_search_budget, low=1, integer=True)
        for seed in self.sampler_seeds:
            check_number("sampler_seeds", seed, low=0, integer=True)
        if len(set(self.sampler_seeds)) != len(self.sampler_seeds):
            raise ValueError(f"sampler_seeds={self.sampler_seeds!r} is not allowed; expected unique seeds")
        if self.prior == "search" and self.task is None:
            raise ValueError("prior='search' is not allowed without --task; the search runs on a task's train split")
        if any(o != "none" for o in self.opponent) and self.task is None:
            raise ValueError(
                f"opponent={self.opponent!r} is not allowed without --task; the search runs on a task's train split"
            )

    def baseline_names(self) -> tuple[str, ...]:
        """The baselines ``policies`` selects: registered ones (groups expanded, registry order), then any other
        cell or static point in the order given; no duplicates.
        """  # noqa: D205
        groups = {
            "all": available_policies(),
            "schedules": available_policies("schedule"),
            "criteria": available_policies("criterion"),
            "none": (),
        }
        chosen = {n for name in self.policies for n in groups.get(name, (name,))}
        others = [n for n in self.policies if n not in groups and n not in available_policies()]
        return (*(n for n in available_policies() if n in chosen), *dict.fromkeys(others))

    def to_dict(self) -> dict[str, Any]:
        """The config as plain values: the run's fields, and ``env`` as the env config's fields."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "env"}
        values["env"] = self.env.to_dict()
        return values

    def to_json(self) -> str:
        """The config as JSON (saved in the run folder)."""
        return json.dumps(self.to_dict(), indent=2, default=str)


#: The env settings a command-line flag sets (``--target-density`` for ``EnvConfig.target_density``), with help.
ENV_FLAGS: dict[str, str] = {
    "dataset": "dataset: digits (ships with scikit-learn), or mnist, fashion_mnist, cifar10 read from --data-root",
    "data_root": "folder of mnist / fashion_mnist / cifar10 in torchvision's layout",
    "device": "torch device the pruned network trains on (cpu, cuda); PPO itself runs on the CPU",
    "precision": "training forward pass: float32, bfloat16 (autocast) or float16 (cuda only)",
    "selector": "pruning selector during training: magnitude (MP-RR) or random (RP-RR)",
    "target_density": "target density the agent trains for",
    "granularity": "weight or neuron",
    "total_iterations": "optimizer steps of the pruned network per episode",
    "decision_interval": "optimizer steps between two decisions",
}

MODES = ("train", "evaluate")
VEC_ENVS = ("auto", "dummy", "subproc", "ray")
COLLECTS = ("steps", "episodes")
PRIOR_CHOICES = ("auto", "none", "tuned", "search")
POLICY_GROUPS = ("all", "schedules", "criteria", "none")
OPPONENTS = ("none", "search", "random")


def config_from(given: Mapping[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of the settings ``given`` (flag names as fields: ``target_density``, ``preset``).

    Each setting takes its value from the last of these layers that sets it: the field's default, the preset
    (``given["preset"]``, :data:`agents.settings.presets.PRESETS`), the task (``given["task"]``,
    :func:`agents.settings.presets.task_settings`), ``given``. Under a task, ``eval_targets`` not given is the run's
    target density (a task compares at the target it trains for).
    A key that names neither a field nor an :data:`ENV_FLAGS` entry is a ``ValueError``.
    """
    known = {f.name for f in dataclasses.fields(TrainConfig) if f.name != "env"} | set(ENV_FLAGS)
    for key in given:
        check_choice("setting", key, tuple(sorted(known)))
    preset = given.get("preset", "default")
    check_choice("preset", preset, tuple(PRESETS))
    task_run, task_env = task_settings(given.get("task"))
    run = {**PRESETS[preset], **task_run, **{k: v for k, v in given.items() if k not in ENV_FLAGS}}
    env = EnvConfig(**{**task_env, **{k: v for k, v in given.items() if k in ENV_FLAGS}})
    if given.get("task") is not None and "eval_targets" not in given:
        run["eval_targets"] = (env.target_density,)
    return TrainConfig(env=env, **run)
