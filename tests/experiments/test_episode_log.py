"""The comparison's episode log: a SIGKILLed comparison, resumed, writes the report of an uninterrupted one."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import ROOT

from agents.reports.comparison import COMPARISON_LOG
from agents.run.train import run
from agents.settings.command_line import parse_args
from agents.settings.train_config import TrainConfig
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.episode_log import EpisodeLog, episode_key
from sparsity_gym.experiments.evaluation import EpisodeResult

ARGS = [
    *("evaluate", "--backend", "sequential", "--dataset", "synthetic", "--no-progress-bar"),
    *("--total-iterations", "20", "--decision-interval", "10", "--eval-seeds", "2", "--eval-targets", "0.5"),
    *("--eval-selectors", "magnitude", "--policies", "schedules", "--networks", "mlp_16", "mlp_16x16"),
]
EPISODES = 5 * 2 * 2  # schedules × networks × seeds
# The comparison in a subprocess, as train_agent.py evaluate runs it, without the statistics (fast episodes).
SCRIPT = """
import dataclasses, sys
import torch
torch.set_num_threads(1)
from agents.settings.command_line import parse_args
from agents.run.train import run
cfg = parse_args(sys.argv[1:])
run(dataclasses.replace(cfg, env=cfg.env.replace(observations=())))
"""


def _cfg(*extra: str) -> TrainConfig:
    cfg = parse_args([*ARGS, *extra])
    return dataclasses.replace(cfg, env=cfg.env.replace(observations=()))


def _result(seed: int, accuracy: float) -> EpisodeResult:
    return EpisodeResult(
        "p",
        "n",
        "heldout",
        seed,
        "magnitude",
        "weight",
        0.5,
        accuracy,
        0.1,
        0.5,
        1,
        2,
        3,
        0.01,
        False,
        0,
        [0.0, 0.5],
        [[1.0], [0.5]],
    )


def test_log_round_trips_and_ignores_a_partial_last_line(tmp_path):
    log = EpisodeLog(tmp_path / "episodes.jsonl")
    config = EnvConfig(dataset="synthetic")
    first, second = _result(1, 0.1 + 0.2), _result(2, 1 / 3)
    log.append([(episode_key("p", "n", config, 1), first)])
    with open(log.path, "ab") as f:
        f.write(b'{"key": "p|n|magnitude|0.5|2|abc", "resu')  # a kill while writing
    assert log.load() == {episode_key("p", "n", config, 1): first}  # floats exactly, lists included
    log.append([(episode_key("p", "n", config, 2), second)])  # after the cut: a whole line of its own
    assert list(log.load().values()) == [first, second]
    assert episode_key("p", "n", config, 1) != episode_key("p", "n", config.replace(total_iterations=80), 1)
    assert EpisodeLog(log.path, fresh=True).load() == {}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if not k.startswith("wall_time")} for row in csv.DictReader(f)]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: a second thread only waits (and spins on a busy machine)
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_comparison_resumes_to_the_same_results(tmp_path, one_thread):
    killed = tmp_path / "killed"
    log = killed / COMPARISON_LOG
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, *ARGS, "--run-dir", str(killed)], cwd=ROOT)
    try:
        while proc.poll() is None and len(_lines(log)) < 3:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = _lines(log)
    assert 3 <= len(before) < EPISODES, "the comparison ended before it could be killed"
    assert not (killed / "results.csv").exists()

    run(_cfg("--run-dir", str(killed), "--resume"))
    after = _lines(log)
    assert after[: len(before)] == before and len(after) == EPISODES  # only the missing episodes ran

    whole = tmp_path / "whole"
    run(_cfg("--run-dir", str(whole)))
    assert _rows(killed / "results.csv") == _rows(whole / "results.csv")
    assert len(_rows(whole / "results.csv")) == 5 * 2


def test_run_logged_skips_recorded_episodes_unless_the_policy_version_changed(tmp_path):
    import functools

    import baselines
    from sparsity_gym.experiments.episode_log import run_logged
    from sparsity_gym.experiments.grid import GridJob

    config = EnvConfig(dataset="synthetic", total_iterations=4, decision_interval=2, observations=())
    job = GridJob("linear", functools.partial(baselines.make_policy, "linear"), config, seeds=(1, 2))
    log = EpisodeLog(tmp_path / "episodes.jsonl")
    first = run_logged([job], log, {"linear": "v1"}, progress=False)
    assert [r.seed for r in first] == [1, 2] and len(_lines(log.path)) == 2
    assert run_logged([job], log, {"linear": "v1"}, progress=False) == first and len(_lines(log.path)) == 2
    again = run_logged([job], log, {"linear": "v2"}, progress=False)  # a new model: its episodes run again
    assert len(_lines(log.path)) == 4
    assert [dataclasses.replace(r, wall_time_s=0) for r in again] == [
        dataclasses.replace(r, wall_time_s=0) for r in first
    ]
