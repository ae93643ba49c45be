"""Refuse before spending: ``train_agent.py`` checks everything first, fails in one line, and writes nothing."""

import importlib.util
import math
import os
import sys
import tempfile
import traceback
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY_ARGS
from stable_baselines3 import PPO

from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.ppo.schema import model_schema
from baselines import available_policies
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.tasks import get_task
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.family_env import FamilyEnv
from train_agent import main


def refused(capsys, args: list[str]) -> str:
    """Run the CLI in this process; assert exit 2 with one line and no traceback; the line."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("train_agent.py: error: ")
    return err


@pytest.mark.parametrize(
    ("args", "where"),
    [(("--networks", "cnn_8x16"), "(--networks)"), (("--family", "mixed"), "(train split of family 'mixed')")],
    ids=["networks", "family"],
)
def test_a_network_that_does_not_fit_the_task_dataset_fails_before_anything_runs(args, where, tmp_path, capsys):
    run = tmp_path / "run"
    err = refused(capsys, ["--task", "mnist1d_mlp", *args, "--run-dir", str(run)])
    assert f"network='cnn_8x16' {where} cannot be built for dataset='mnist1d' inputs of shape (1, 40)" in err
    assert "IndexError" in err  # the original error's type and message travel with it
    assert not run.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_a_missing_gpu_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    err = refused(capsys, ["--device", "cuda", "--run-dir", str(run), *TINY_ARGS])
    assert "device='cuda' is not allowed here" in err and "expected 'cpu'" in err
    assert not run.exists()


def test_a_file_in_place_of_the_run_folder_is_one_line(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    err = refused(capsys, ["--run-dir", str(taken), *TINY_ARGS])
    assert f"run_dir='{taken}' is not allowed: a file is in its place" in err
    err = refused(capsys, ["evaluate", "--run-dir", str(taken / "below"), *TINY_ARGS])
    assert "cannot be created in" in err
    assert taken.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def run_as_nobody(args: list[str]) -> tuple[int, str]:
    """``main(args)`` in a forked child that dropped root for ``nobody`` (root may write anywhere); exit, stderr.

    The refusal comes before any torch work, so the fork does not meet torch's thread pools; everything ``main``
    imports is imported here first (``nobody`` cannot read this interpreter's standard library).
    """
    import agents.run.train  # noqa: F401

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 99
        try:
            os.close(read)
            sys.stderr = os.fdopen(write, "w")
            os.setgid(65534)
            os.setuid(65534)
            code = main(args)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        err = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def test_a_read_only_run_folder_is_one_line(tmp_path, capsys):
    """As a user who cannot write there (root writes anywhere, so root runs the case as ``nobody``)."""

    def attempt(run_dir: Path) -> str:
        args = ["--run-dir", str(run_dir), *TINY_ARGS]
        if os.geteuid() != 0:
            return refused(capsys, args)
        code, err = run_as_nobody(args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        return err

    folder = Path(tempfile.mkdtemp(dir=None if os.geteuid() == 0 else tmp_path))  # nobody can reach /tmp
    folder.chmod(0o555)
    try:
        assert f"run_dir='{folder}' is not allowed: the folder is not writable" in attempt(folder)
        assert f"cannot be created in '{folder}'" in attempt(folder / "new")
        assert not list(folder.iterdir())
    finally:
        folder.chmod(0o755)
        folder.rmdir()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--dry-run", "--total-timesteps", "16", "--run-dir", str(run), *TINY_ARGS]) == 0
    out = capsys.readouterr().out
    assert not run.exists()
    family = get_family("mlp")
    for spec in (*family.train, *family.heldout):
        assert spec.name in out  # every network was built on the dataset
    schedules = len(available_policies("schedule"))
    # episodes counted independently: 2 envs x 8 steps a rollout = 16 timesteps, 2 decisions an episode
    decisions = 20 // 10
    expected = {
        "prior choice": schedules * len(family.train) * 2,
        "training": math.ceil(16 / (8 * 2)) * 16 // decisions,
        "periodic evaluation": 2 * len(family.heldout),  # before the first update and at the end
        "comparison": (len(available_policies()) + 1) * len(family.heldout),  # one setting, one seed, and ppo
    }
    for phase, episodes in expected.items():
        assert f"    {phase}: {episodes} (" in out
    assert f"total: {sum(expected.values())} episodes" in out
    assert "probe: 2 of 2 decisions of mlp_256x256" in out and "estimate: about" in out


def save_model(path: Path, config: EnvConfig) -> Path:
    """An untrained model on ``config`` with the schema train mode records."""
    env = FamilyEnv(("mlp_8",), config)
    kwargs = {
        "hidden": (8,),
        "feature_names": env.feature_names,
        "density_range": (config.min_density, config.max_density),
        "action_scale": config.action_scale,
        "schema": model_schema(env.feature_names[:-1], config, "none", None, ["mlp_8"]),
    }
    PPO(LayerwisePolicy, env, n_steps=4, batch_size=4, device="cpu", policy_kwargs=kwargs).save(path)
    return path


def test_evaluate_checks_the_model_against_the_env_before_anything_runs(tmp_path, capsys):
    model = save_model(
        tmp_path / "linear.zip", EnvConfig(dataset="synthetic", total_iterations=20, decision_interval=10)
    )
    run = tmp_path / "run"
    err = refused(
        capsys, ["evaluate", "--task", "mnist1d_cnn", "--prior", "none", "--model", str(model), "--run-dir", str(run)]
    )
    assert "action_scale='log' is not allowed for this model; expected 'linear'" in err
    assert not run.exists()
    err = refused(capsys, ["evaluate", "--model", str(tmp_path / "missing.zip"), "--run-dir", str(run), *TINY_ARGS])
    assert "model=" in err and "no such file" in err
    assert main(["evaluate", "--model", str(model), "--dry-run", "--run-dir", str(run), *TINY_ARGS]) == 0
    out = capsys.readouterr().out
    assert f"model: {model} (" in out and "agrees with the env" in out and not run.exists()


def test_the_paired_rewards_reference_resolves_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    err = refused(capsys, ["--reward", "paired", "--prior", "none", "--run-dir", str(run), *TINY_ARGS])
    assert "reward_reference='prior' is not allowed with prior='none'" in err and not run.exists()
    paired = ("--reward", "paired", "--reward-reference", "cubic@0.9+erk", "--seed-pool", "2")
    assert main(["--dry-run", *paired, "--total-timesteps", "64", "--run-dir", str(run), *TINY_ARGS]) == 0
    out = capsys.readouterr().out
    train = len(get_family("mlp").train)
    assert f"    training: {64 // 2} (" in out  # 64 timesteps, 2 decisions an episode
    assert f"    reward reference: {train * 2} (at most one per training network and pool seed" in out
    assert not run.exists()


def test_a_search_without_optuna_is_refused_in_one_line_before_anything_runs(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    run = tmp_path / "run"
    err = refused(capsys, ["--task", "mnist1d_mlp", "--opponent", "search", "random", "--run-dir", str(run)])
    assert err.endswith("opponent=('search', 'random') is not allowed here: Optuna is not installed; "
                        "pip install -e '.[search]'")  # fmt: skip
    assert not run.exists()


def test_a_search_budget_that_buys_no_trial_or_has_no_ppo_run_is_refused(tmp_path, capsys):
    pytest.importorskip("optuna")
    run = tmp_path / "run"
    task = ("--task", "mnist1d_mlp", "--opponent", "search", "--search-seeds", "2", "--run-dir", str(run))
    err = refused(capsys, [*task, "--search-budget", "3"])
    trial = 2 * len(get_task("mnist1d_mlp").train)  # train networks x search seeds
    assert f"search_budget=3 episodes is not allowed; expected at least one trial's {trial} episodes" in err
    err = refused(capsys, ["evaluate", *task])  # no model, no PPO run in the folder: no budget to match
    assert "holds no checkpoints/state.json" in err and "--search-budget N" in err
    assert not run.exists()
