"""The periodic evaluation's parts compose: an evaluator, a best-model keeper, the logging; and the episode logs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from stable_baselines3.common.logger import Figure, KVWriter, Logger

from agents.reports.heldout import HeldoutEvaluation, HeldoutEvaluator
from agents.run.callbacks import (
    BestModelKeeper,
    EpisodeStatsCallback,
    HeldoutTensorBoard,
    HParamsCallback,
    PeriodicEvalCallback,
)
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.plots import schedule_figure


class _Memory(KVWriter):
    """A logger output that keeps every recorded value (figures and hparams too)."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        self.values.update(key_values)
        for value in key_values.values():  # as TensorBoard's output does once a figure is written
            if isinstance(value, Figure) and value.close:
                plt.close(value.figure)

    def close(self) -> None:
        pass


def _model(memory: _Memory) -> SimpleNamespace:
    """What the callbacks use of a PPO model: its logger, timestep count and ``save``."""
    return SimpleNamespace(logger=Logger(None, [memory]), num_timesteps=0, save=lambda fh: fh.write(b"weights"))


def _result(
    network: str, seed: int, val: float, test: float = 0.5, schedule=((1.0, 0.5), (0.5, 0.25))
) -> EpisodeResult:
    return EpisodeResult(
        "ppo", network, "heldout", seed, "magnitude", "weight", 0.25, test, val, 0.3, 30, 100, 4e9, 0.0, False, 0,
        progress=[0.0, 0.5], schedule=[list(row) for row in schedule],
    )  # fmt: skip


def _evaluation(vals: dict[str, list[float]]) -> HeldoutEvaluation:
    results = [_result(net, i, v) for net, values in vals.items() for i, v in enumerate(values)]
    layers = {net: ("fc1", "fc2") for net in vals}
    return HeldoutEvaluation(tuple(vals), results, [], layers, {})


def test_the_keeper_saves_each_new_best_only_and_a_false_stops_training(tmp_path):
    scores = iter([_evaluation({"a": [0.4, 0.6]}), _evaluation({"a": [0.3, 0.3]}), _evaluation({"a": [0.8, 0.8]})])
    memory = _Memory()
    model = _model(memory)
    keeper = BestModelKeeper(tmp_path / "best_model.zip")
    logged: list[int] = []
    callback = PeriodicEvalCallback(
        lambda m: next(scores), every=10, callback_on_new_best=keeper, logs=[lambda lg, ev, t: logged.append(t)]
    )
    callback.init_callback(model)
    callback.on_training_start({}, {})  # the untrained policy, at timestep 0
    saved = [json.loads((tmp_path / "best_model.json").read_text())]
    for t in (5, 10, 15, 20):
        model.num_timesteps = t
        assert callback.on_step()
        saved.append(json.loads((tmp_path / "best_model.json").read_text()))
    saved = saved[::2]  # the evaluations: timesteps 0, 10 and 20
    assert [s["num_timesteps"] for s in saved] == [0, 0, 20] and logged == [0, 10, 20]
    assert saved[-1]["val_accuracy"] == pytest.approx(0.8) and callback.best == pytest.approx(0.8)
    assert (tmp_path / "best_model.zip").read_bytes() == b"weights"
    model.logger.dump(20)
    assert memory.values["eval/best_val_accuracy"] == pytest.approx(0.8)
    # a resumed run starts from the kept score: an evaluation at or below it keeps the model
    resumed_keeper = BestModelKeeper(tmp_path / "best_model.zip")
    assert resumed_keeper.recorded_best() == pytest.approx(0.8)
    resumed = PeriodicEvalCallback(
        lambda m: _evaluation({"a": [0.8]}), 10, resumed_keeper, best=resumed_keeper.recorded_best()
    )
    resumed.init_callback(model)
    model.num_timesteps = 30
    resumed.evaluate_now()
    assert json.loads((tmp_path / "best_model.json").read_text())["num_timesteps"] == 20

    class Stop(BestModelKeeper):
        def _on_step(self) -> bool:
            super()._on_step()
            return False

    stop = PeriodicEvalCallback(
        lambda m: _evaluation({"a": [0.9]}), every=1, callback_on_new_best=Stop(tmp_path / "s.zip")
    )
    stop.init_callback(model)
    model.num_timesteps = 21
    assert stop.on_step() is False and (tmp_path / "s.zip").exists()


def test_the_tensorboard_part_records_means_densities_and_figures():
    memory = _Memory()
    logger = Logger(None, [memory])
    evaluation = _evaluation({"a": [0.2, 0.4], "b": [0.9]})
    evaluation.observations = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[5.0, 6.0]])]
    evaluation.columns = {"progress": 0, "snr_mean": 1}  # progress is a plain column, snr_mean a statistic
    HeldoutTensorBoard(20, {"constant": lambda p, t: t})(logger, evaluation, 0)
    logger.dump(0)
    assert memory.values["eval/val_accuracy"] == pytest.approx(np.mean([0.2, 0.4, 0.9]))
    assert memory.values["eval/flops_fraction"] == pytest.approx(0.3)
    assert memory.values["eval/training_gflops"] == pytest.approx(4.0)
    assert memory.values["eval_stats/snr_mean"] == pytest.approx(np.mean([2.0, 4.0, 6.0]))
    assert "eval_stats/progress" not in memory.values
    assert memory.values["eval_density/b/fc2"] == pytest.approx(np.mean([0.5, 0.25]))
    assert isinstance(memory.values["eval_schedule/a"], Figure) and "eval_schedule/b" in memory.values


def test_the_schedule_figure_draws_the_episode_over_every_reference():
    result = _result("a", 0, 0.5)
    references = {"constant": lambda p, t: t, "dense": lambda p, t: 1.0}
    fig = schedule_figure([result], "a", {"ppo": "learned"}, ("fc1", "fc2"), references)
    try:
        assert [ax.get_title() for ax in fig.axes] == ["fc1", "fc2"]
        for j, ax in enumerate(fig.axes):
            lines = {line.get_label(): line for line in ax.get_lines()}
            assert set(lines) == {"constant", "dense", "learned: ppo"}
            np.testing.assert_allclose(lines["constant"].get_ydata(), 0.25)  # the episode's target
            np.testing.assert_allclose(lines["dense"].get_ydata(), 1.0)
            column = [row[j] for row in result.schedule]
            np.testing.assert_allclose(lines["learned: ppo"].get_ydata(), [*column, column[-1]])
    finally:
        plt.close(fig)


def test_the_evaluator_needs_a_snapshot_for_the_pool():
    with pytest.raises(ValueError, match=r"^snapshot=None is not allowed with workers=2"):
        HeldoutEvaluator((), {}, [0], workers=2)


def test_invalid_actions_sum_over_the_episode():
    memory = _Memory()
    callback = EpisodeStatsCallback()
    callback.init_callback(_model(memory))
    base = {"layer_densities": [1.0], "val_accuracy": 0.5, "density": 1.0, "flops": 1, "dense_flops": 2}
    base["training_flops"] = 1e9
    steps = [([2, 0], [False, False]), ([1, 5], [True, False]), ([0, 4], [False, True])]
    for counts, dones in steps:
        callback.locals = {"infos": [{**base, "invalid_actions": c} for c in counts], "dones": np.array(dones)}
        callback.on_step()
    callback.logger.dump(0)
    # env 0's episode ends at step 2 with 2 + 1 clipped; env 1's at step 3 with 0 + 5 + 4: the mean of the two sums
    assert memory.values["episode/invalid_actions"] == pytest.approx(np.mean([3, 9]))


def test_hparams_leave_out_unset_values():
    callback = HParamsCallback({"task": None, "seed": 0, "env": {"a": 1}, "family": "mlp"})
    assert callback.hparams == {"seed": 0, "env": "{'a': 1}", "family": "mlp"}
