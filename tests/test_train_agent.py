"""The command line, end to end on a tiny setting, in a subprocess like a user runs it."""

import csv
import json

import pytest
from cli_helpers import TINY_ARGS
from cli_helpers import run as train_agent


def test_help_explains_the_flags():
    out = train_agent("--help").stdout
    for flag in ("--total-timesteps", "--run-dir", "--seed", "--device", "--resume"):
        assert flag in out


def test_bad_value_is_a_message_not_a_traceback(tmp_path):
    proc = train_agent("--target-density", "2", "--run-dir", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "target_density=2.0" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_train_compare_and_resume(tmp_path):
    run = tmp_path / "run"
    train_agent("--total-timesteps", "16", "--run-dir", str(run), *TINY_ARGS)
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
    out = train_agent("--total-timesteps", "24", "--run-dir", str(run), "--resume", *TINY_ARGS).stdout
    assert "resuming from" in out and "at timestep 16" in out
    assert json.loads((run / "checkpoints/state.json").read_text())["num_timesteps"] == 24
    assert [p.name for p in (run / "tb").iterdir()] == ["PPO_1"]
