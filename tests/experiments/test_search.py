"""The equal-budget search: trials that fit the budget, values from the picker, resume after a crash, its cost."""

import numpy as np
import pytest

from baselines import SEARCH_SPACE, policy_cell, searched_name
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.evaluation import evaluate
from sparsity_gym.experiments.families import parse_network
from sparsity_gym.experiments.search import Budget, run_search, study_path, trial_seed
from sparsity_gym.experiments.seeds import seeds

optuna = pytest.importorskip("optuna")  # the [search] extra (in [dev])

TINY = {
    "dataset": "synthetic",
    "total_iterations": 20,
    "decision_interval": 10,
    "batch_size": 16,
    "observations": (),
    "budget": "global",
    "target_density": 0.3,
}
NETWORKS = {n: EnvConfig(**TINY, **parse_network(n).env_kwargs()) for n in ("mlp_8", "mlp_6x6")}
SEEDS = seeds("tuning", 1)  # 2 networks x 1 seed: a trial costs 2 episodes


def _search(run_dir, budget, sampler="tpe", to_cell=policy_cell, seeds=SEEDS):
    return run_search(sampler, SEARCH_SPACE, searched_name, to_cell, NETWORKS, seeds, budget, run_dir, progress=False)


def _trials(run_dir, sampler="tpe"):
    study = optuna.load_study(study_name=f"search_{sampler}", storage=f"sqlite:///{study_path(run_dir, sampler)}")
    return study.get_trials()


def test_a_search_never_exceeds_its_budget():
    for episodes in range(1, 60):
        for per_trial in range(1, 13):
            if episodes < per_trial:
                with pytest.raises(ValueError, match=f"search_budget={episodes} episodes is not allowed"):
                    Budget(episodes, per_trial)
                continue
            plan = Budget(episodes, per_trial)
            spent = plan.trials * per_trial
            assert spent <= episodes < spent + per_trial  # the next trial would exceed it
            assert plan.leftover == episodes - spent
    assert (Budget(1016, 8).trials, Budget(1016, 8).leftover) == (127, 0)
    assert (Budget(1016, 6).trials, Budget(1016, 6).leftover) == (169, 2)


@pytest.mark.usefixtures("one_torch_thread")
def test_search_resumes_after_a_crash_and_counts_every_trial_once(tmp_path):
    calls = []

    def crash_on_the_second_trial(name):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return policy_cell(name)

    with pytest.raises(RuntimeError, match="killed"):
        _search(tmp_path, 7, to_cell=crash_on_the_second_trial)
    states = [t.state for t in _trials(tmp_path)]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]

    result = _search(tmp_path, 7)  # 7 episodes: 3 trials of 2, one episode left over
    trials = _trials(tmp_path)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [t.state for t in trials].count(optuna.trial.TrialState.FAIL) == 1
    assert len(complete) == 3 and result.trials == 3 and result.episodes == 6 and result.budget.leftover == 1
    [retry] = [t for t in complete if "retry_of" in t.user_attrs]
    assert retry.user_attrs["retry_of"] == 1 and retry.params == trials[1].params  # the crashed point, re-run
    assert retry.user_attrs["policy"] == calls[1]
    assert result.label == "search (6 episodes)" and result.best in {t.user_attrs["policy"] for t in complete}
    best = max(complete, key=lambda t: (t.value, -t.number))
    assert (result.best, result.best_value) == (best.user_attrs["policy"], best.value)
    # each trial's value: the mean validation accuracy of its point over the networks and seeds, recomputed
    for trial in complete:
        name = trial.user_attrs["policy"]
        factory = policy_cell(name).factory
        played = [
            r.val_accuracy
            for config in NETWORKS.values()
            for r in evaluate(factory, config.replace(**policy_cell(name).env_kwargs), SEEDS, name)
        ]
        assert trial.value == pytest.approx(np.mean(played))
    # a finished search runs nothing more; a larger budget continues the same study
    assert _search(tmp_path, 7) == result
    more = _search(tmp_path, 8)
    assert more.trials == 4 and sum(t.state == optuna.trial.TrialState.COMPLETE for t in _trials(tmp_path)) == 4
    cost = more.opponent()
    assert (cost.name, cost.label, cost.episodes, cost.best, cost.budget) == (
        "search",
        "search (8 episodes)",
        8,
        more.best,
        8,
    )
    assert cost.seconds > 0


@pytest.mark.usefixtures("one_torch_thread")
def test_random_search_runs_and_a_study_of_another_search_is_refused(tmp_path):
    result = _search(tmp_path, 5, sampler="random")
    trials = _trials(tmp_path, "random")
    assert result.trials == 2 and result.label == "random (4 episodes)" and len(trials) == 2
    assert trials[0].params != trials[1].params
    assert study_path(tmp_path, "random").exists() and not study_path(tmp_path, "tpe").exists()
    with pytest.raises(ValueError, match="a search over other networks, seeds"):
        _search(tmp_path, 5, sampler="random", seeds=seeds("tuning", 2))
    with pytest.raises(ValueError, match=r"search_budget=3 episodes is not allowed .*holds 2 trials"):
        _search(tmp_path, 3, sampler="random")
    with pytest.raises(ValueError, match="sampler='grid'"):
        _search(tmp_path, 5, sampler="grid")


@pytest.mark.usefixtures("one_torch_thread")
def test_sampler_seeds_draw_unrelated_points_and_a_seed_repeats_its_own(tmp_path):
    """Seed 2's trials are not seed 1's shifted by one (as a per-trial seed ``seed + n`` made them)."""

    def points(folder, seed):
        run_search("random", SEARCH_SPACE, searched_name, policy_cell, NETWORKS, SEEDS, 8, folder, seed=seed,
                   progress=False)  # fmt: skip
        return [t.user_attrs["policy"] for t in _trials(folder, "random")]

    first, second, again = points(tmp_path / "a", 1), points(tmp_path / "b", 2), points(tmp_path / "c", 1)
    assert len(first) == len(second) == 4
    assert first == again
    assert not set(first) & set(second)
    assert trial_seed(1, 1) != trial_seed(2, 0)
