import csv

import numpy as np
import pytest

from baselines import make_policy
from sparsity_gym.experiments.comparison_report import (
    headline,
    markdown,
    plot_accuracy_vs_cost,
    plot_schedules,
    summarize,
    write_csv,
)
from sparsity_gym.experiments.evaluation import EpisodeResult, evaluate


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


def _result(policy, network, seed, acc, split="heldout"):
    return EpisodeResult(
        policy=policy,
        network=network,
        split=split,
        seed=seed,
        selector="magnitude",
        granularity="weight",
        target_density=0.1,
        test_accuracy=acc,
        val_accuracy=acc,
        final_density=0.1,
        inference_flops=10,
        dense_flops=100,
        training_flops=1000,
        wall_time_s=1.0,
        diverged=False,
        invalid_actions=0,
        progress=[0.0, 0.5],
        schedule=[[0.5, 0.5], [0.1, 0.1]],
    )


def test_headline_pairs_by_seed_with_intervals_and_verdicts():
    accs = {"ppo": [0.64, 0.63, 0.62], "constant": [0.62, 0.62, 0.61], "cubic": [0.50, 0.52, 0.51]}
    results = [_result(p, "net_a", s, a) for p, values in accs.items() for s, a in enumerate(values)]
    results += [_result(p, "net_b", s, a - 0.1) for p, values in accs.items() for s, a in enumerate(values)]
    results.append(_result("ppo", "net_train", 0, 0.99, split="train"))  # other splits are left out
    text = headline(results, "magnitude", 0.1, learned="ppo", baselines=("constant", "cubic"))
    # paired differences ppo - constant per seed: +2, +1, +1 points; with 3 seeds the 95% interval is their range
    assert "| net_a | 3 | 63.00 ± 1.00 | constant 61.67 ± 0.58 | +1.33 [+1.00, +2.00] | **wins** |" in text
    assert "all 2 networks (mean)" in text and "net_train" not in text
    assert "Reference: `constant`" in text and "*validation*" in text and "upper bound" in text
    assert "interquartile mean" in text and "P(learned > reference)" in text
    worse = [_result("ppo", "net_a", s, 0.3) for s in range(3)] + [r for r in results if r.policy == "cubic"]
    assert "**loses**" in headline(worse, "magnitude", 0.1, baselines=("cubic",))
    mixed = [_result("ppo", "net_a", s, a) for s, a in enumerate([0.52, 0.50, 0.53])]
    mixed += [r for r in results if r.policy == "cubic" and r.network == "net_a"]
    assert "**ties**" in headline(mixed, "magnitude", 0.1, baselines=("cubic",))
    # the reference is a parameter: the merger passes the tuned handcrafted schedule
    assert "Reference: `cubic`, the tuned handcrafted" in headline(
        results, "magnitude", 0.1, baselines=("constant", "cubic"), reference="cubic"
    )


def test_baselines_only_headline_prints_their_table():
    results = [_result(p, "net_a", s, a + 0.01 * s) for p, a in (("cubic", 0.5), ("constant", 0.6)) for s in range(3)]
    text = headline(results, "magnitude", 0.1, learned="ppo", baselines=("constant", "cubic"))
    assert "No learned model was compared" in text and "No `ppo`" not in text
    assert "| constant (reference) |" in text and "| cubic |" in text and "**loses**" in text
