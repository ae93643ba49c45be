import pickle

import gymnasium as gym
import pytest

import sparsity_gym  # noqa: F401 (registers the env ids)
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.tasks import TASKS, Task, available_tasks, get_task, register_task, task_config
from sparsity_gym.experiments.families import get_family


def test_registry_holds_the_benchmark_tasks():
    for name in ("digits", "mnist1d_mlp", "mnist1d_cnn", "mnist5k_mlp"):
        assert name in available_tasks()
    for name in ("mnist1d_mlp", "mnist1d_cnn", "mnist5k_mlp"):
        task = get_task(name)
        assert task.budget == "global" and task.targets == (0.1, 0.03, 0.01)
        assert (task.selector, task.regrowth) == ("magnitude", "random")
        assert str(task.total_iterations) in task.description  # the convergence measurement is recorded
    assert get_task("mnist1d_cnn").train[0].startswith("cnn1d_")
    with pytest.raises(ValueError, match="task"):
        get_task("nope")


def test_digits_task_is_todays_default_run():
    task = get_task("digits")
    family = get_family("mlp")
    assert task.train == tuple(s.name for s in family.train)
    assert task.heldout == tuple(s.name for s in family.heldout)
    assert (task.budget, task.targets, task.selector, task.regrowth) == ("layer", (0.1, 0.5), "magnitude", "random")
    cfg = task_config("digits")
    default = EnvConfig(network="mlp", network_kwargs={"widths": (256, 256)})
    assert cfg == default


def test_task_families_mirror_the_splits():
    family = get_family("mnist1d_mlp")
    task = get_task("mnist1d_mlp")
    assert tuple(s.name for s in family.train) == task.train
    assert tuple(s.name for s in family.heldout) == task.heldout


def test_env_kwargs_and_overrides():
    task = Task(
        "tiny",
        "synthetic",
        train=("mlp_8",),
        heldout=("mlp_4",),
        targets=(0.5, 0.2),
        total_iterations=20,
        decision_interval=10,
        env_overrides={"batch_size": 16},
    )
    register_task(task)
    try:
        cfg = task_config("tiny")
        assert (cfg.dataset, cfg.network, dict(cfg.network_kwargs)) == ("synthetic", "mlp", {"widths": (8,)})
        assert (cfg.target_density, cfg.total_iterations, cfg.batch_size) == (0.5, 20, 16)
        cfg = task_config("tiny", target_density=0.2, network="mlp_6x6", batch_size=8)
        assert (cfg.target_density, dict(cfg.network_kwargs), cfg.batch_size) == (0.2, {"widths": (6, 6)}, 8)
        env = gym.make("SparsityGym/Schedule-v0", task="tiny", lr=0.01)
        assert env.unwrapped.config.lr == 0.01 and env.unwrapped.config.dataset == "synthetic"
        env.close()
        with pytest.raises(ValueError, match="task"):
            SparsityEnv(config=cfg, task="tiny")
        assert pickle.loads(pickle.dumps(task)) == task
    finally:
        TASKS._items.pop("tiny")


def test_bad_tasks_are_refused():
    with pytest.raises(ValueError, match="both splits"):
        Task("bad", "digits", train=("mlp_8",), heldout=("mlp_8",))
    with pytest.raises(ValueError, match="budget"):
        Task("bad", "digits", train=("mlp_8",), heldout=("mlp_4",), budget="nope")
    with pytest.raises(ValueError, match="targets"):
        Task("bad", "digits", train=("mlp_8",), heldout=("mlp_4",), targets=(0.0,))
    with pytest.raises(ValueError, match="env_overrides"):
        Task("bad", "digits", train=("mlp_8",), heldout=("mlp_4",), env_overrides={"dataset": "x"})


def test_gym_make_builds_a_global_budget_task():
    env = gym.make("SparsityGym/Schedule-v0", task="mnist1d_mlp", total_iterations=20, decision_interval=10)
    cfg = env.unwrapped.config
    assert (cfg.dataset, cfg.budget, cfg.target_density) == ("mnist1d", "global", 0.1)
    env.close()


def test_cli_task_sets_defaults_and_explicit_flags_win():
    from agents.settings.command_line import parse_args

    cfg = parse_args(["--task", "mnist1d_mlp", "--total-iterations", "40", "--decision-interval", "20"])
    task = get_task("mnist1d_mlp")
    assert (cfg.task, cfg.family, cfg.env.dataset) == ("mnist1d_mlp", "mnist1d_mlp", "mnist1d")
    assert cfg.eval_targets == task.targets[:1] and cfg.env.target_density == task.targets[0]  # the training target
    assert cfg.env.total_iterations == 40 and cfg.env.budget == "global"
    default = parse_args([])
    assert default.task is None and default.family == "mlp" and default.env.budget == "layer"


def test_cli_unknown_task_names_the_choices(capsys):
    from train_agent import main

    with pytest.raises(SystemExit) as exc:
        main(["--task", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--task" in err and "invalid choice: 'nope'" in err and "mnist1d_mlp" in err
