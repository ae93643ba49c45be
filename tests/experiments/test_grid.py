"""The evaluation grid: jobs, validation, and the same episodes from every backend."""

import dataclasses
import functools
import pickle
import sys

import numpy as np
import pytest

import baselines
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.evaluation import evaluate
from sparsity_gym.experiments.grid import GridJob, import_ray, make_grid, run_grid

TINY = {
    "dataset": "synthetic",
    "total_iterations": 4,
    "decision_interval": 2,
    "batch_size": 32,
    "network_kwargs": {"widths": (8, 8)},
    "target_density": 0.5,
}
POLICIES = {name: functools.partial(baselines.make_policy, name) for name in ("linear", "cubic")}
CONFIGS = {"mlp-8": TINY, "mlp-16": {**TINY, "network_kwargs": {"widths": (16,)}}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _comparable(result):
    fields = dataclasses.asdict(result)
    fields.pop("wall_time_s")
    return fields


def test_make_grid_is_the_product_in_order():
    jobs = make_grid(POLICIES, CONFIGS, seeds=[3, 4], split="held_out")
    assert [(j.policy_name, j.network, j.seeds) for j in jobs] == [
        (p, n, (s,)) for p in ("linear", "cubic") for n in ("mlp-8", "mlp-16") for s in (3, 4)
    ]
    assert all(j.split == "held_out" for j in jobs)
    assert jobs[0].config == EnvConfig(**TINY)  # validated once, held as the EnvConfig itself


def test_a_job_accepts_an_env_config_and_pickles():
    job = GridJob("linear", POLICIES["linear"], EnvConfig(**TINY), seeds=np.arange(2))
    assert job.seeds == (0, 1) and all(type(s) is int for s in job.seeds) and job.episodes == 2
    assert isinstance(job.config, EnvConfig) and job.config.to_dict()["network_kwargs"] == {"widths": (8, 8)}
    again = pickle.loads(pickle.dumps(job))
    assert again.config == job.config and again.seeds == job.seeds and again.policy_factory.args == ("linear",)
    assert again.config == EnvConfig(**TINY)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": -1}, r"seeds=-1 is not allowed"),
        ({"seeds": []}, r"seeds=\(\) is not allowed"),
        ({"seeds": [1, True]}, r"seeds=True is not allowed"),
        ({"policy_factory": "linear"}, r"policy_factory='linear' is not allowed"),
        ({"config": {**TINY, "batch_size": 0}}, r"batch_size=0 is not allowed"),
    ],
)
def test_bad_jobs_are_clear_errors(kwargs, message):
    args = {"policy_name": "linear", "policy_factory": POLICIES["linear"], "config": TINY, "seeds": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        GridJob(**args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "threads"}, r"backend='threads' is not allowed; expected one of: 'process', 'ray', 'sequential'"),
        ({"backend": "process", "workers": 0}, r"workers=0 is not allowed; expected an integer in \[1, inf\]"),
        ({"backend": "process", "workers": 1.5}, r"workers=1.5 is not allowed"),
        ({"backend": "process", "threads_per_worker": 0}, r"threads_per_worker=0 is not allowed"),
    ],
)
def test_bad_backend_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_grid(make_grid(POLICIES, {"tiny": TINY}, [0]), progress=False, **kwargs)


def test_jobs_must_be_grid_jobs():
    with pytest.raises(ValueError, match=r"jobs\[0\]=.* expected a GridJob"):
        run_grid([("linear", TINY)], progress=False)


def test_sequential_matches_evaluate_in_job_order():
    jobs = make_grid(POLICIES, {"tiny": TINY}, seeds=[0, 1])
    results = run_grid(jobs, backend="sequential", progress=False)
    assert [(r.policy, r.network, r.seed) for r in results] == [(j.policy_name, "tiny", j.seeds[0]) for j in jobs]
    for name, factory in POLICIES.items():
        direct = evaluate(factory, EnvConfig(**TINY), [0, 1], name, network_name="tiny")
        ours = [r for r in results if r.policy == name]
        assert [_comparable(r) for r in ours] == [_comparable(r) for r in direct]


def test_process_backend_returns_the_sequential_episodes():
    jobs = make_grid(POLICIES, CONFIGS, seeds=[0, 1])
    jobs.append(GridJob("linear", POLICIES["linear"], TINY, seeds=[5, 2], network="two seeds"))
    sequential = run_grid(jobs, backend="sequential", progress=False)
    parallel = run_grid(jobs, backend="process", workers=2, threads_per_worker=1, progress=False)
    assert len(parallel) == len(sequential) == 2 * 2 * 2 + 2
    assert [_comparable(r) for r in parallel] == [_comparable(r) for r in sequential]
    assert [r.seed for r in parallel[-2:]] == [5, 2]
    assert len({r.test_accuracy for r in sequential}) > 1  # not trivially equal


def test_a_failing_job_fails_the_process_grid():
    bad = GridJob("nope", functools.partial(baselines.make_policy, "no_such_policy"), TINY, seeds=0)
    with pytest.raises(ValueError, match="policy='no_such_policy' is not allowed"):
        run_grid([bad], backend="process", workers=1, progress=False)


def test_empty_grid():
    assert run_grid([], backend="process", progress=False) == []


def test_ray_missing_is_an_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        import_ray()
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        run_grid(make_grid(POLICIES, {"tiny": TINY}, [0]), backend="ray", progress=False)


def test_ray_backend_returns_the_sequential_episodes():
    pytest.importorskip("ray")
    jobs = make_grid({"linear": POLICIES["linear"]}, {"tiny": TINY}, seeds=[0, 1])
    sequential = run_grid(jobs, backend="sequential", progress=False)
    remote = run_grid(jobs, backend="ray", workers=2, threads_per_worker=1, progress=False)
    assert [_comparable(r) for r in remote] == [_comparable(r) for r in sequential]
