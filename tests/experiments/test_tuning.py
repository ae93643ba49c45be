import functools
import json

import numpy as np
import pytest

from baselines.fixed_policies import make_schedule_policy
from sparsity_gym.experiments import tuning
from sparsity_gym.experiments.tuning import CACHE_NAME, Cell, tune


def _cells():
    def cell(shape, p_end=None):
        kw = {} if p_end is None else {"p_end": p_end}
        name = shape if p_end is None else f"{shape}@{p_end}"
        return Cell(name, functools.partial(make_schedule_policy, name=shape, **kw))

    return [cell("linear", 0.5), cell("cubic", 0.9), cell("constant")]


def test_pick_is_the_argmax_of_the_cached_table_and_the_cache_is_reused(
    picker_task, tmp_path, monkeypatch, one_torch_thread
):
    table = tune(picker_task, _cells(), run_dir=tmp_path, seeds=(5000, 5001), backend="sequential", progress=False)
    data = json.loads((tmp_path / CACHE_NAME).read_text())
    assert data["task"] == picker_task.name
    (entry,) = data["entries"].values()
    # independent recomputation from the file: mean validation accuracy over networks and seeds
    means = {c: np.mean([v for vals in entry["val"][c].values() for v in vals]) for c in entry["cells"]}
    assert all(len(entry["val"][c][n]) == 2 for c in entry["cells"] for n in picker_task.train)
    assert table.best == max(entry["cells"], key=lambda c: (means[c], -entry["cells"].index(c)))
    assert entry["best"] == table.best

    def no_run(*args, **kwargs):
        raise AssertionError("the cached table should have been reused")

    monkeypatch.setattr(tuning, "run_grid", no_run)
    again = tune(picker_task, _cells(), run_dir=tmp_path, seeds=(5000, 5001), backend="sequential", progress=False)
    assert again == table
    with pytest.raises(AssertionError, match="reused"):  # another target is another entry: it must run
        tune(picker_task, _cells(), target=0.5, run_dir=tmp_path, seeds=(5000, 5001), backend="sequential")


def test_a_cache_of_another_task_is_refused(picker_task, tmp_path):
    (tmp_path / CACHE_NAME).write_text(json.dumps({"task": "digits", "entries": {}}))
    with pytest.raises(ValueError, match="task='digits'"):
        tune(picker_task, _cells(), run_dir=tmp_path, backend="sequential", progress=False)


def test_bad_cells_are_refused(picker_task):
    with pytest.raises(ValueError, match="cells"):
        tune(picker_task, [], backend="sequential")
    with pytest.raises(ValueError, match="unique"):
        tune(picker_task, _cells()[:1] * 2, backend="sequential")
