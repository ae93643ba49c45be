"""One picker: the prior, the tuned cell and the oracle choose as the code before it did, and write the same files.

``picker_before.json`` holds what the earlier code (``agents.ppo.prior.score_schedules`` / ``choose_prior``,
``experiments.tuning.tune`` and the two ``oracle`` functions) wrote and chose on the tiny task below: the
``prior.json`` and ``tuning.json`` files as text, and held-out episodes with its oracle's choices.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from agents.ppo.prior import choose_prior
from baselines import policy_cell
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.families import parse_network
from sparsity_gym.experiments.paired_intervals import best_by_mean, oracle
from sparsity_gym.experiments.tuning import tune

BEFORE = json.loads((Path(__file__).parent / "picker_before.json").read_text())
TINY = {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10, "batch_size": 16, "observations": ()}
CELLS = ["linear@0.75+uniform", "cubic@0.9+erk", "linear@0.9+lamp", "cubic@0.75"]


def _same(new, old):
    """Equal JSON values, floats to 1e-9 (another CPU may round a float differently; the choices must agree)."""
    if isinstance(old, dict):
        assert list(new) == list(old)
        for key in old:
            _same(new[key], old[key])
    elif isinstance(old, list):
        assert len(new) == len(old)
        for a, b in zip(new, old, strict=True):
            _same(a, b)
    elif isinstance(old, float):
        assert new == pytest.approx(old, abs=1e-9)
    else:
        assert new == old


@pytest.mark.usefixtures("one_torch_thread")
def test_prior_and_tuned_cell_write_and_choose_what_they_did(picker_task, tmp_path):
    train = (parse_network("mlp_8x8"), parse_network("mlp_8"))
    prior = choose_prior("auto", train, TINY, 2, tmp_path / "prior.json", backend="sequential", progress=False)
    table = tune(
        picker_task, [policy_cell(c) for c in CELLS], run_dir=tmp_path, seeds=(5000, 5001), backend="sequential"
    )
    assert (prior, table.best) == (BEFORE["choices"]["prior"], BEFORE["choices"]["tuned"])
    for name in ("prior.json", "tuning.json"):  # same keys in the same order, same values, same layout
        _same(json.loads((tmp_path / name).read_text()), json.loads(BEFORE[name]))
        assert (tmp_path / name).read_text().count("\n") == BEFORE[name].count("\n")


def test_oracle_and_reference_choose_what_they_did():
    results = [
        EpisodeResult(
            policy, network, "heldout", seed, "magnitude", "weight", 0.3, test, val, 0.3, 1, 1, 1, 0.0, False, 0
        )
        for policy, network, seed, val, test in BEFORE["heldout"]
    ]
    choices = BEFORE["choices"]
    assert oracle(results, CELLS, None) == choices["stats_oracle"]
    assert {n: [c, pytest.approx(v)] for n, (c, v) in choices["tuning_oracle"].items()} == {
        net: [cell, float(np.mean([r.test_accuracy for r in results if (r.network, r.policy) == (net, cell)]))]
        for net, cell in oracle(results, CELLS, None).items()
    }
    assert best_by_mean(results, CELLS, None, "val_accuracy") == choices["best_by_mean_val"]
    assert best_by_mean(results, CELLS, None, "test_accuracy") == choices["best_by_mean_test"]
