"""The cost column's inputs: the PPO run's records, the periodic evaluations in TensorBoard, the first win."""

import json

import pytest
from conftest import TINY_ENV
from opponent_helpers import GRID, RANDOM, SEARCH, results_for

from agents.reports import costs
from agents.reports.comparison import write_reports
from agents.reports.costs import (
    agent_cost,
    cumulative_train_seconds,
    evaluation_curve,
    first_win,
    read_agent_cost,
    reference_selection_accuracy,
    report_costs,
)
from agents.settings.train_config import TrainConfig
from baselines import env_kwargs, make_policy
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.evaluation import evaluate
from sparsity_gym.experiments.families import Family, parse_network
from sparsity_gym.experiments.opponents import Opponent
from sparsity_gym.experiments.seeds import seeds

CELL = "cubic@0.75+lamp"
NETWORKS = (parse_network("mlp_8x8"), parse_network("mlp_8"))


def _cfg(**kw):
    env = EnvConfig(**TINY_ENV, budget="global", allocation="lamp", allocation_tilt=True)
    return TrainConfig(env=env, **{"eval_episodes": 2, "backend": "sequential", "progress_bar": False, **kw})


def _write_events(run_dir, points, folder="PPO_1"):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb" / folder))
    for step, wall, value in points:
        writer.add_scalar("eval/val_accuracy", value, step, walltime=wall)
        writer.add_scalar("eval/test_accuracy", value - 0.1, step, walltime=wall)
    writer.close()


def test_evaluation_curve_reads_steps_wall_times_and_values(tmp_path):
    points = [(0, 1000.0, 0.40), (1000, 1060.0, 0.39), (2000, 1130.5, 0.45), (3000, 1190.0, 0.47)]
    _write_events(tmp_path, points[:3])
    _write_events(tmp_path, [(2000, 5000.0, 0.99), points[3]], folder="PPO_1_resumed")  # a repeated step: first kept
    curve = evaluation_curve(tmp_path)
    assert [(s, pytest.approx(w), pytest.approx(v)) for s, w, v in curve] == points
    assert evaluation_curve(tmp_path / "nothing") == []


def test_first_win_counts_episodes_and_seconds_from_the_first_evaluation():
    curve = [(0, 100.0, 0.40), (1000, 160.0, 0.40), (2000, 230.0, 0.41), (3000, 300.0, 0.45)]
    assert first_win(curve, 0.40, decisions=10) == (200, 130.0)  # strictly above: 0.40 is no win
    assert first_win(curve, 0.45, decisions=10) is None
    assert first_win([(0, 5.0, 0.5)], 0.4, decisions=10) == (0, 0.0)


def test_train_seconds_add_up_over_resumed_sessions(tmp_path):
    assert cumulative_train_seconds(tmp_path, True, 12.0) == 12.0
    (tmp_path / "timing.json").write_text(json.dumps({"train_seconds": 100.0, "num_timesteps": 20, "episodes": 10}))
    assert cumulative_train_seconds(tmp_path, True, 12.0) == 112.0
    assert cumulative_train_seconds(tmp_path, False, 12.0) == 12.0


@pytest.mark.usefixtures("one_torch_thread")
def test_reference_runs_once_on_the_selection_networks_and_seeds_then_is_cached(tmp_path, monkeypatch):
    cfg = _cfg()
    value = reference_selection_accuracy(cfg, NETWORKS, CELL, tmp_path)
    plain = cfg.env.replace(allocation_tilt=False, **env_kwargs(CELL))  # the cell's own rule, untilted
    direct = [
        r.val_accuracy
        for spec in NETWORKS
        for r in evaluate(
            lambda env: make_policy(CELL, env), plain.replace(**spec.env_kwargs()), seeds("selection", 2), CELL
        )
    ]
    assert value == pytest.approx(sum(direct) / len(direct))
    cached = json.loads((tmp_path / "reference_selection.json").read_text())
    assert cached["episodes"] == 4 and cached["seeds"] == list(seeds("selection", 2))

    def no_run(*args, **kwargs):
        raise AssertionError("the cached reference ran again")

    monkeypatch.setattr(costs, "run_grid", no_run)
    assert reference_selection_accuracy(cfg, NETWORKS, CELL, tmp_path) == value


def test_agent_cost_reads_the_run_folder_and_says_never(tmp_path, monkeypatch):
    cfg = _cfg()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps({"num_timesteps": 300, "episodes": 30}))
    assert agent_cost(cfg, tmp_path, NETWORKS, CELL).seconds is None
    (tmp_path / "timing.json").write_text(
        json.dumps({"train_seconds": 88.0, "episodes": 30, "reference_episodes": 4, "reference_seconds": 2.0})
    )
    _write_events(tmp_path, [(0, 10.0, 0.30), (100, 20.0, 0.31), (200, 35.0, 0.36)])
    monkeypatch.setattr(costs, "reference_selection_accuracy", lambda *a: 0.33)
    cost = agent_cost(cfg, tmp_path, NETWORKS, CELL)
    assert (cost.episodes, cost.seconds, cost.reference_episodes) == (30, 88.0, 4)
    assert cfg.env.num_decisions == 2  # 20 iterations, a decision every 10
    assert cost.first_win == (100, 25.0) and cost.evaluations == 3  # timestep 200 / 2 decisions per episode
    monkeypatch.setattr(costs, "reference_selection_accuracy", lambda *a: 0.5)
    assert "never (3 evaluations)" in agent_cost(cfg, tmp_path, NETWORKS, CELL).cost_text()
    # the reference's episodes: every entry of its cache (resumed sessions included), over one session's count
    (tmp_path / "reference_cache.json").write_text(json.dumps({f"mlp_8|{s}|h": 0.5 for s in range(6)}))
    assert agent_cost(cfg, tmp_path, NETWORKS, CELL).reference_episodes == 6
    assert read_agent_cost(tmp_path).all_episodes == 30 + 6  # what the equal-budget search gets
    # the latest checkpoint's count wins over an earlier session's timing.json
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps({"num_timesteps": 900, "episodes": 90}))
    assert agent_cost(cfg, tmp_path, NETWORKS, CELL).episodes == 90
    # a session killed after its checkpoint: the checkpoint's seconds (earlier sessions' + its own) count
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps({"episodes": 90, "train_seconds": 250.0}))
    assert read_agent_cost(tmp_path).seconds == 250.0
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps({"episodes": 90, "train_seconds": 80.0}))
    assert read_agent_cost(tmp_path).seconds == 88.0  # a finished session's timing.json also counts the tuning
    assert agent_cost(cfg, tmp_path / "empty", NETWORKS, CELL) is None


def test_an_evaluation_tells_the_first_win_on_the_networks_and_seeds_its_training_run_evaluated(tmp_path, monkeypatch):
    # the PPO run evaluated on the train split with 3 seeds; the evaluation run's own flags say held-out, 1 seed
    training, evaluation = tmp_path / "ppo", tmp_path / "eval"
    training.mkdir()
    evaluation.mkdir()
    (training / "config.json").write_text(_cfg(select_on="train", eval_episodes=3).to_json())
    (training / "timing.json").write_text(json.dumps({"train_seconds": 9.0, "episodes": 30}))
    _write_events(training, [(0, 10.0, 0.30), (100, 20.0, 0.36)])
    family = Family("tiny", NETWORKS[:1], NETWORKS[1:])
    asked = []

    def reference(cfg, networks, cell, run_dir):
        asked.append(([s.name for s in networks], cfg.eval_episodes, run_dir))
        return 0.33

    monkeypatch.setattr(costs, "reference_selection_accuracy", reference)
    _, cost = report_costs(_cfg(eval_episodes=1), evaluation, family, CELL, training_dir=training)
    assert asked == [(["mlp_8x8"], 3, evaluation)] and cost.first_win == (50, 10.0)
    # a training run reads its own config: the same settings
    asked.clear()
    report_costs(_cfg(select_on="train", eval_episodes=3), training, family, CELL)
    assert asked == [(["mlp_8x8"], 3, training)]
    # a folder without config.json (a shipped policy's): the run's own settings
    (training / "config.json").unlink()
    asked.clear()
    report_costs(_cfg(eval_episodes=1), evaluation, family, CELL, training_dir=training)
    assert asked == [(["mlp_8"], 1, evaluation)]


def test_write_reports_puts_the_opponents_and_costs_in_every_output(tmp_path):
    cfg = TrainConfig(
        env=EnvConfig(**TINY_ENV, target_density=0.01, min_density=0.001),
        task="mnist1d_mlp",
        tune_cells=GRID,
        progress_bar=False,
    )
    records = [Opponent("search", SEARCH, 30, 12.4), Opponent("random", RANDOM, 30, 10.2)]
    agent = costs.AgentCost(episodes=100, seconds=250.0, evaluations=4)
    write_reports(cfg, results_for(), tmp_path, "t", ["a note"], GRID[0], opponents=records, agent=agent)
    md = (tmp_path / "results.md").read_text()
    for label in (f"tuned grid cell `{GRID[0]}`", SEARCH, RANDOM, "oracle (upper bound"):
        assert f"| {label}" in md
    assert "never (4 evaluations)" in md and "30 episodes, 12 s" in md
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert all(f"vs_{name}_diff_mean" in header for name in ("tuned", "search", "random", "oracle"))
    assert len((tmp_path / "opponents.csv").read_text().splitlines()) == 1 + 4 * (1 + 3)
    for png in ("accuracy_vs_density.png", "schedules.png", "schedules_mlp_a.png"):
        assert (tmp_path / png).stat().st_size > 0
