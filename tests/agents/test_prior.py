"""Choosing the learned policy's prior schedule on the train split only, and reporting its distance (issue 5)."""

import json

import numpy as np
import pytest
from conftest import TINY_ENV

from agents.ppo.prior import choose_prior
from agents.reports.comparison import LEARNED, prior_note
from baselines import available_policies, make_policy
from sparsity_gym.experiments.evaluation import EpisodeResult, evaluate
from sparsity_gym.experiments.families import parse_network
from sparsity_gym.experiments.seeds import seeds

TINY = TINY_ENV
TRAIN = (parse_network("mlp_8x8"), parse_network("mlp_8"))


@pytest.mark.usefixtures("one_torch_thread")
def test_auto_prior_is_the_best_schedule_on_the_train_split_by_validation_accuracy(tmp_path):
    record = tmp_path / "prior.json"
    chosen = choose_prior("auto", TRAIN, TINY, 2, record)
    saved = json.loads(record.read_text())
    scores = saved["val_accuracy"]
    assert list(scores) == list(available_policies("schedule"))  # registry order: the order of ties
    # independent recomputation of one score: the plain evaluation loop over the same networks and seeds
    cubic = [
        r.val_accuracy
        for spec in TRAIN
        for r in evaluate(
            lambda e: make_policy("cubic", e),
            {**TINY, **spec.env_kwargs()},
            seeds("prior", 2),
            "c",
        )
    ]
    assert scores["cubic"] == pytest.approx(np.mean(cubic))
    first_best = next(name for name, value in scores.items() if value == max(scores.values()))
    assert chosen == first_best
    assert saved["prior"] == chosen and saved["networks"] == ["mlp_8x8", "mlp_8"] and saved["seeds"] == 2
    # a resumed run keeps the recorded choice; an explicit name is used as given and records nothing
    record.write_text(json.dumps({**saved, "prior": "cosine"}))
    assert choose_prior("auto", TRAIN, TINY, 2, record) == "cosine"
    assert choose_prior("linear", TRAIN, TINY, 2, tmp_path / "other.json") == "linear"
    assert not (tmp_path / "other.json").exists()


def _result(policy, seed, schedule, target=0.1):
    return EpisodeResult(
        policy,
        "net",
        "heldout",
        seed,
        "magnitude",
        "weight",
        target,
        0.9,
        0.9,
        0.1,
        1,
        2,
        3,
        0.0,
        False,
        0,
        [0.0, 0.5],
        schedule,
    )


def test_prior_note_reports_the_mean_absolute_density_difference():
    results = [
        _result(LEARNED, 1, [[0.5, 0.6], [0.1, 0.1]]),
        _result("quadratic", 1, [[0.7, 0.6], [0.1, 0.1]]),  # |diff| = 0.2 on one of four entries
        _result(LEARNED, 2, [[0.5, 0.5], [0.1, 0.1]]),
        _result("quadratic", 2, [[0.5, 0.5], [0.1, 0.1]]),
        _result(LEARNED, 3, [[0.9, 0.9], [0.5, 0.5]], target=0.5),  # another setting: left out
    ]
    note = prior_note("quadratic", results, ("magnitude", 0.1))
    assert "`quadratic`" in note and note.endswith(": 0.025.")
    assert "not in the comparison" in prior_note("cubic", results, ("magnitude", 0.1))
    assert prior_note("none", results, ("magnitude", 0.1)).startswith("Prior: none")
