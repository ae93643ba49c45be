"""The command line, end to end on a tiny setting, in a subprocess like a user runs it."""

import csv
import json

import pytest
from cli_helpers import TINY_ARGS
from cli_helpers import run as train_agent

from agents.settings.command_line import parse_args
from agents.settings.presets import PRESETS
from agents.settings.train_config import TrainConfig
from baselines import available_policies


def test_help_explains_the_flags():
    out = train_agent("--help").stdout
    for flag in ("--total-timesteps", "--run-dir", "--seed", "--device", "--resume", "--family", "--n-envs"):
        assert flag in out
    for flag in ("--eval-every", "--preset", "--mode", "--networks", "--model", "--policies"):
        assert flag in out


def test_presets_set_defaults_and_flags_win():
    long = parse_args(["--preset", "long"])
    assert long.total_timesteps == PRESETS["long"]["total_timesteps"] and long.eval_seeds >= 5
    assert parse_args(["--preset", "long", "--total-timesteps", "7"]).total_timesteps == 7
    assert parse_args([]) == TrainConfig(**PRESETS["default"])  # the default preset: the showcase
    evaluate = parse_args(["evaluate", "--networks", "mlp_64x64", "cnn", "--policies", "criteria", "cubic"])
    assert evaluate.mode == "evaluate" and evaluate.networks == ("mlp_64x64", "cnn")
    assert set(evaluate.baseline_names()) == {*available_policies("criterion"), "cubic"}


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--family", "nope"), "family='nope'"),
        (("--networks", "resnet_9"), "networks='resnet_9'"),
        (("--policies", "magic"), "policies='magic'"),
        (("--n-envs", "0"), "n_envs=0"),
        (("--prior", "square"), "prior='square'"),
        (("--log-std-init", "3"), "log_std_init=3.0"),
    ],
)
def test_bad_config_values_name_the_field(args, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        parse_args(list(args))


def test_bad_value_is_a_message_not_a_traceback(tmp_path):
    proc = train_agent("--target-density", "2", "--run-dir", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "target_density=2.0" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_train_compare_resume_and_evaluate(tmp_path):
    run = tmp_path / "run"
    train_agent("--total-timesteps", "16", "--eval-every", "16", "--run-dir", str(run), *TINY_ARGS)
    for name in (
        "model.zip",
        "results.csv",
        "results.md",
        "episodes.csv",
        "schedules.png",
        "accuracy_vs_density.png",
        "checkpoints/last.zip",
        "config.json",
        "best_model.zip",
        "best_model.json",
    ):
        assert (run / name).exists(), name
    assert list((run / "tb").rglob("events.out.tfevents*"))
    with open(run / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["policy"] for row in rows} == {*available_policies(), "ppo"}  # every schedule and criterion
    assert {row["split"] for row in rows} == {"heldout"}
    assert {row["network"] for row in rows} == {"mlp_192x192x192x192", "mlp_512", "cnn_16x32"}
    state = json.loads((run / "checkpoints/state.json").read_text())
    assert state["num_timesteps"] == 16 and state["episodes"] == 8  # 2 envs x 8 steps, 2 decisions an episode
    first_session = json.loads((run / "timing.json").read_text())["train_seconds"]
    assert 0 < state["train_seconds"] <= first_session + 0.1  # the checkpoint's clock starts with the training
    # each part with its own episodes and seconds, adding up: two evaluations (steps 0 and 16) of 3 networks x 1
    assert (state["evaluations"], state["evaluation_episodes"]) == (2, 6)
    assert state["training_seconds"] + state["evaluation_seconds"] == pytest.approx(state["train_seconds"], abs=0.2)
    timing = json.loads((run / "timing.json").read_text())
    assert timing["tuning_episodes"] is None  # no grid: only the prior's choice ran before training
    parts = timing["tuning_seconds"] + timing["training_seconds"] + timing["evaluation_seconds"]
    assert 0 < parts <= timing["train_seconds"] + 0.3
    assert "**8 training episodes**" in (run / "results.md").read_text()
    # the untrained policy was evaluated before the first update (step 0), then at the end of training
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb" / "PPO_1"))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/val_accuracy")] == [0, 16]
    # the auto prior was chosen on the train split only, and the report says which it is and how far ppo is from it
    prior = json.loads((run / "prior.json").read_text())
    assert prior["networks"] == ["mlp_256x256", "mlp_128x128", "mlp_256", "mlp_128x128x128"]
    assert f"residual on the `{prior['prior']}` schedule" in (run / "results.md").read_text()
    # resume continues the timestep count and writes into the same TensorBoard run (2 envs x 8 steps a rollout)
    resume = ("--total-timesteps", "32", "--run-dir", str(run), "--resume", *TINY_ARGS, "--policies", "constant")
    out = train_agent(*resume, "--networks", "mlp_8").stdout
    assert "resuming from" in out and "at timestep 16" in out
    state = json.loads((run / "checkpoints/state.json").read_text())
    assert (state["num_timesteps"], state["episodes"]) == (32, 16)
    assert state["train_seconds"] > first_session  # the earlier session's seconds carried on
    assert state["evaluations"] == 3  # the earlier two and the resumed session's at its end
    assert state["training_seconds"] > timing["training_seconds"]
    assert [p.name for p in (run / "tb").iterdir()] == ["PPO_1"]
    # resumed with nothing left to train (e.g. to add an opponent): the records still tell the run's whole training
    train_agent(*resume, "--networks", "mlp_8")
    after = json.loads((run / "timing.json").read_text())
    assert after["num_timesteps"] == 32 and "for 32 timesteps" in (run / "results.md").read_text()
    # evaluate mode: the saved model and one baseline on networks of other depths, chosen seeds
    out_dir = tmp_path / "eval"
    train_agent(
        *("evaluate", "--model", str(run / "model.zip"), "--run-dir", str(out_dir), "--networks", "mlp_6x6x6x6x6"),
        *("cnn_4x4", "--policies", "cubic", "--eval-seeds", "2", "--eval-seed-start", "7", "--backend", "sequential"),
        *TINY_ARGS[:6],
        *("--eval-targets", "0.1", "--eval-selectors", "magnitude", "--no-progress-bar"),
    )
    with open(out_dir / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["policy"], r["network"], r["split"], r["seeds"]) for r in rows} == {
        (p, n, "user", "2") for p in ("cubic", "ppo") for n in ("mlp_6x6x6x6x6", "cnn_4x4")
    }
    assert "Headline" in (out_dir / "results.md").read_text()
