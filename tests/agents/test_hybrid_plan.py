"""The preflight's plan of a search-then-learn run counts the prior search and every sampler seed's searches."""

import math

from agents.run.workload import planned_work, search_plan, search_work
from agents.settings.train_config import config_from
from sparsity_gym.env.tasks import get_task
from sparsity_gym.experiments.families import get_family


def test_the_plan_counts_the_prior_search_in_the_budget_and_each_sampler_seed(tmp_path):
    cfg = config_from(
        {
            "task": "mnist1d_mlp",
            "prior": "search",
            "prior_search_budget": 44,
            "total_timesteps": 200,
            "opponent": ("search", "random"),
            "sampler_seeds": (1, 2),
            "run_dir": str(tmp_path / "run"),
            "eval_every": 0,
        }
    )
    per_trial = len(get_task("mnist1d_mlp").train) * cfg.search_seeds  # 4 networks x 2 seeds
    work = planned_work(cfg, get_family(cfg.family))
    phases = {w.phase: w.episodes for w in work}
    prior = (44 // per_trial) * per_trial  # the trials the prior's budget buys: 5 of 8 = 40
    assert phases["prior search (Optuna TPE)"] == prior == 40
    rollout = cfg.n_steps * cfg.n_envs
    training = math.ceil(math.ceil(200 / rollout) * rollout / cfg.env.num_decisions)
    assert phases["training"] == training
    whole = training + phases["reward reference"] + prior  # the learned policy's cost, the search counted
    budget = search_plan(cfg, work)
    assert budget is not None and budget.episodes == whole
    searches = {w.phase: w.episodes for w in search_work(cfg, budget)}
    spent = budget.trials * per_trial
    assert searches == {
        "search (Optuna TPE)": spent - prior,  # it continues the prior's study
        "random search": spent,
        "search (Optuna TPE), sampler seed 2": spent,
        "random search, sampler seed 2": spent,
    }
    # the "fewer if" hint looks in each sampler seed's own folder: the first seed's study says nothing of the second's
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "search_random.db").touch()
    hints = {w.phase: "fewer if run_dir holds its study" in w.what for w in search_work(cfg, budget)}
    assert hints["random search"] and not hints["random search, sampler seed 2"]
    (tmp_path / "run" / "sampler_seed_2").mkdir()
    (tmp_path / "run" / "sampler_seed_2" / "search_random.db").touch()
    assert all("fewer if" in w.what for w in search_work(cfg, budget) if w.phase.startswith("random"))
