"""A run starts clean (issue 14 item 4), and an evaluation's report can be rebuilt from its own files."""

import csv
import json

import pytest
from cli_helpers import TINY_ARGS
from cli_helpers import run as train_agent

from agents.settings.run_folder import check_fresh, config_path, leftovers


@pytest.mark.parametrize("name", ["best_model.zip", "best_model.json", "prior.json", "model.zip", "checkpoints"])
def test_a_new_run_into_an_earlier_runs_folder_stops(tmp_path, name):
    (tmp_path / name).mkdir() if name == "checkpoints" else (tmp_path / name).write_text("{}")
    with pytest.raises(ValueError, match=r"--resume.*--run-dir") as err:
        check_fresh(tmp_path, resume=False)
    assert name in str(err.value) and "\n" not in str(err.value)
    check_fresh(tmp_path, resume=True)  # --resume still continues it


def test_clean_or_missing_folders_are_fine(tmp_path):
    check_fresh(tmp_path / "missing", resume=False)
    (tmp_path / "results.md").write_text("an evaluation's report is no earlier training run")
    check_fresh(tmp_path, resume=False)
    assert leftovers(tmp_path) == []


def test_evaluation_keeps_a_training_runs_config(tmp_path):
    assert config_path(tmp_path, "evaluate") == tmp_path / "config.json"
    (tmp_path / "config.json").write_text(json.dumps({"mode": "train"}))
    assert config_path(tmp_path, "evaluate") == tmp_path / "config_evaluate.json"
    assert config_path(tmp_path, "train") == tmp_path / "config.json"


def test_cli_refuses_to_reuse_a_run_folder(tmp_path, capsys):
    from train_agent import main

    (tmp_path / "prior.json").write_text('{"prior": "cubic"}')
    assert main(["--run-dir", str(tmp_path), *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--run-dir" in err and "prior.json" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prior.json"]  # nothing written, nothing reused


@pytest.mark.slow
def test_baselines_only_evaluation_into_a_fresh_folder(tmp_path):
    out = tmp_path / "eval"
    train_agent(
        *("evaluate", "--run-dir", str(out), "--networks", "mlp_8", "--policies", "constant", "cubic"),
        *("--backend", "sequential", *TINY_ARGS),
    )
    config = json.loads((out / "config.json").read_text())
    assert config["mode"] == "evaluate" and config["env"]["dataset"] == "synthetic"
    text = (out / "results.md").read_text()
    assert "No learned model was compared" in text and "No `ppo`" not in text
    with open(out / "episodes.csv") as fh:
        episodes = list(csv.DictReader(fh))
    configs = json.loads((out / "configs.json").read_text())
    assert {e["config_hash"] for e in episodes} <= set(configs)
    for e in episodes:  # each row's settings rebuild from configs.json
        env = configs[e["config_hash"]]
        assert (env["selector"], env["regrowth"], str(env["target_density"])) == (
            e["selector"],
            e["regrowth"],
            e["target_density"],
        )
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["paired_reference"] for r in rows) and {"paired_diff_ci_low", "paired_diff_ci_high"} <= set(rows[0])
