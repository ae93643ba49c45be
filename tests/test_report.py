import csv

import numpy as np
import pytest

from baselines import make_policy
from sparsity_gym.evaluation import evaluate
from sparsity_gym.report import markdown, plot_accuracy_vs_cost, plot_schedules, summarize, write_csv


@pytest.fixture(scope="module")
def results():
    kw = {"dataset": "synthetic", "total_iterations": 40, "decision_interval": 10, "batch_size": 32}
    out = []
    for name in ("cubic", "constant"):
        out += evaluate(lambda env, n=name: make_policy(n, env), kw, [0, 1, 2], name)
    return out


def test_evaluate_rows(results):
    assert len(results) == 6
    r = results[0]
    assert r.policy == "cubic" and r.network == "mlp" and r.split == "train" and r.seed == 0
    assert 0 <= r.test_accuracy <= 1 and r.final_density == pytest.approx(0.1, abs=0.01)
    assert len(r.schedule) == 4 and len(r.progress) == 4 and r.progress[0] == 0.0
    assert r.training_flops > 0 and r.inference_flops < r.dense_flops


def test_summary_matches_numpy(results, tmp_path):
    rows = summarize(results)
    assert len(rows) == 2
    cubic = next(r for r in rows if r["policy"] == "cubic")
    accs = np.array([r.test_accuracy for r in results if r.policy == "cubic"])
    assert cubic["test_accuracy_mean"] == pytest.approx(accs.mean())
    assert cubic["test_accuracy_std"] == pytest.approx(accs.std(ddof=1))
    assert cubic["seeds"] == 3
    path = write_csv(tmp_path / "r.csv", rows)
    with open(path) as fh:
        assert len(list(csv.DictReader(fh))) == 2
    text = markdown(rows)
    assert "| 10% | cubic |" in text and "±" in text and "(train split)" in text


def test_plots_are_pngs(results, tmp_path):
    for path in (
        plot_schedules(tmp_path / "s.png", results),
        plot_accuracy_vs_cost(tmp_path / "a.png", summarize(results)),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
