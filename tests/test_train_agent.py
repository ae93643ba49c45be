"""The command line, end to end on a tiny setting, in a subprocess like a user runs it."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--dataset",
    "synthetic",
    "--total-iterations",
    "20",
    "--decision-interval",
    "10",
    "--n-steps",
    "8",
    "--batch-size",
    "4",
    "--n-epochs",
    "1",
    "--eval-seeds",
    "1",
    "--eval-targets",
    "0.5",
    "--eval-selectors",
    "magnitude",
    "--no-progress-bar",
    "--checkpoint-every",
    "8",
]


def _run(*args, check=True):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train_agent.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


def test_help_explains_the_flags():
    out = _run("--help").stdout
    for flag in ("--total-timesteps", "--run-dir", "--seed", "--device", "--resume"):
        assert flag in out


def test_bad_value_is_a_message_not_a_traceback(tmp_path):
    proc = _run("--target-density", "2", "--run-dir", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "target_density=2.0" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_train_compare_and_resume(tmp_path):
    run = tmp_path / "run"
    _run("--total-timesteps", "16", "--run-dir", str(run), *TINY)
    for name in (
        "model.zip",
        "results.csv",
        "results.md",
        "episodes.csv",
        "schedules.png",
        "accuracy_vs_density.png",
        "checkpoints/last.zip",
        "config.json",
    ):
        assert (run / name).exists(), name
    assert list((run / "tb").rglob("events.out.tfevents*"))
    with open(run / "results.csv") as fh:
        policies = {row["policy"] for row in csv.DictReader(fh)}
    assert policies == {"linear", "quadratic", "cubic", "cosine", "constant", "ppo"}
    assert json.loads((run / "checkpoints/state.json").read_text())["num_timesteps"] == 16
    # resume continues the timestep count and writes into the same TensorBoard run
    out = _run("--total-timesteps", "24", "--run-dir", str(run), "--resume", *TINY).stdout
    assert "resuming from" in out and "at timestep 16" in out
    assert json.loads((run / "checkpoints/state.json").read_text())["num_timesteps"] == 24
    assert [p.name for p in (run / "tb").iterdir()] == ["PPO_1"]
