"""A run across settings: its flags and each family's settings, the schema's ranges and the warnings outside
them, and a run across targets and two families from the command line, resumed after a stop."""

import csv
import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from task_helpers import TINY_CELLS, TINY_POPULATION, registered_task

from agents import policies
from agents.ppo.agent import LayerwiseAgent
from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.ppo.schema import OutsideTrainingWarning, model_schema, outside_training
from agents.reports.comparison import baseline_factory
from agents.reports.costs import read_agent_cost
from agents.reports.tuned import tune_run
from agents.run import generalist_eval, generalist_opponents
from agents.run.generalist_eval import run_generalist_eval, single_target_policies
from agents.run.generalist_opponents import load_run_config, run_generalist_opponents
from agents.run.workload import planned_work
from agents.settings.generalist import family_configs, train_names, training_ranges, training_settings
from agents.settings.train_config import config_from
from baselines import env_kwargs
from baselines.schedules import SCHEDULES
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.tasks import get_task, task_config
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.grid import GridJob, run_grid
from sparsity_gym.experiments.populations import POPULATIONS, get_population
from sparsity_gym.experiments.settings_env import SettingsEnv, expand_settings
from train_agent import main

A, B = "tiny_generalist_a", "tiny_generalist_b"


@pytest.fixture
def two_tasks():
    """Two tiny tasks on one synthetic dataset: B's episodes are twice as long (as mnist1d_cnn's are half); each
    has a held-out population of 8 tiny MLPs, its named network among them."""
    population = TINY_POPULATION
    with (
        registered_task(A, targets=(0.3, 0.5), population=population),
        registered_task(
            B,
            train=("mlp_6x6x6",),
            heldout=("mlp_10",),
            total_iterations=40,
            decision_interval=20,
            population=population,
        ),
    ):
        yield


def test_each_family_keeps_its_task_settings_unless_the_run_changed_them():
    cfg = config_from({"task": "mnist1d_mlp", "also_task": ("mnist1d_cnn",), "train_targets": (0.01, 0.03, 0.1)})
    configs = family_configs(cfg)
    assert (configs["mnist1d_mlp"].total_iterations, configs["mnist1d_cnn"].total_iterations) == (1000, 500)
    assert configs["mnist1d_cnn"].decision_interval == 50 and configs["mnist1d_cnn"].action_scale == "log"
    given = {"task": "mnist1d_mlp", "also_task": ("mnist1d_cnn",), "total_iterations": 20, "decision_interval": 10}
    short = family_configs(config_from(given))  # flags given: every family's
    assert {(c.total_iterations, c.decision_interval) for c in short.values()} == {(20, 10)}
    assert train_names(cfg, get_family("mnist1d_mlp")) == [
        *get_task("mnist1d_mlp").train,
        *get_task("mnist1d_cnn").train,
    ]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"also_task": ("mnist1d_cnn",)}, "also_task=.* is not allowed without --task"),
        ({"task": "mnist1d_mlp", "also_task": ("mnist1d_mlp",)}, "expected other tasks, each once"),
        ({"task": "mnist1d_mlp", "also_task": ("nope",)}, "also_task='nope' is not allowed"),
        ({"task": "mnist1d_mlp", "train_targets": (0.1, 0.1)}, "expected distinct target densities"),
        ({"task": "mnist1d_mlp", "train_targets": (0.0,)}, "train_targets=0.0 is not allowed"),
        ({"task": "mnist1d_mlp", "also_task": ("digits",)}, "^dataset='digits' of family 'digits' is not allowed"),
    ],
)
def test_bad_across_settings_flags_are_refused_in_one_line(given, message):
    with pytest.raises(ValueError, match=message):
        config_from(given)


def test_a_run_at_one_setting_has_no_settings_and_no_ranges():
    cfg = config_from({"task": "mnist1d_mlp"})
    assert training_settings(cfg) is None and training_ranges(None) is None


def test_the_plan_counts_the_reference_pool_per_setting():
    family = get_family("mnist1d_mlp")

    def pool(given):
        work = {w.phase: w for w in planned_work(config_from({"task": "mnist1d_mlp", **given}), family)}
        return work["reward reference"].episodes

    assert pool({}) == 4 * 4  # 4 train networks x a pool of 4 seeds
    assert pool({"also_task": ("mnist1d_cnn",), "train_targets": (0.01, 0.03, 0.1)}) == (4 + 3) * 3 * 4


def tiny_model(ranges):
    settings = expand_settings({"a": (("mlp_8x8",), SparsityEnv(**TINY).config)}, (0.1, 0.3))
    env = SettingsEnv(settings)
    config = env.config
    schema = model_schema(env.feature_names[:-1], config, "cubic", None, ["mlp_8x8"], ranges=ranges)
    kwargs = {
        "hidden": (8,),
        "feature_names": env.feature_names,
        "prior": "cubic",
        "density_range": (config.min_density, config.max_density),
        "action_scale": config.action_scale,
        "schema": schema,
    }
    return PPO(LayerwisePolicy, env, n_steps=4, batch_size=4, device="cpu", policy_kwargs=kwargs), env


TINY = {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10, "batch_size": 16, "budget": "global"}


def test_the_schema_records_the_ranges_and_a_policy_outside_them_warns():
    model, env = tiny_model(None)
    ranges = env.ranges()
    assert ranges == {"targets": [0.1, 0.3], "families": ["a"], "networks": ["mlp_8x8"], "depths": [3, 3]}
    model, _ = tiny_model(ranges)
    agent = LayerwiseAgent(model)
    assert agent.schema["ranges"] == ranges
    inside = SparsityEnv(network="mlp", network_kwargs={"widths": (8, 8)}, **{**TINY, "target_density": 0.2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agent.bind(inside)  # 0.2 lies between the training targets: no warning (the recorded 0.1 alone would warn)
    below = SparsityEnv(network="mlp", network_kwargs={"widths": (8, 8, 8)}, **{**TINY, "target_density": 0.05})
    with pytest.warns(OutsideTrainingWarning) as record:
        agent.bind(below)
        agent.bind(below)  # once per difference
    assert sorted(str(w.message) for w in record) == [
        "policy 'ppo': target_density=0.05 here; it was trained across target densities 0.1 to 0.3 (0.1, 0.3)",
        "policy 'ppo': this network has 4 layers; it was trained on networks of 3 to 3",
    ]
    assert outside_training(agent.schema, inside) == []


def test_the_prior_reads_each_episode_target_from_the_observation():
    model, env = tiny_model(None)
    policy, seen = model.policy, set()
    for seed in range(6):
        env.reset(seed=seed)
        obs, *_ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))  # progress 0.5: the schedule moves
        features = torch.as_tensor(obs[None, :, :-1])
        target = env.setting.target
        progress = obs[0, env.feature_names.index("progress")]
        expected = env.current.density_to_action(SCHEDULES["cubic"](float(progress), target))
        rows = len(env.layer_names)
        assert policy.prior_actions(features)[0, :rows].numpy() == pytest.approx(np.full(rows, expected), abs=1e-6)
        seen.add(target)
    assert seen == {0.1, 0.3}


def flags(run_dir, timesteps):
    return [
        *("--task", A, "--also-task", B, "--train-targets", "0.3", "0.5", "--run-dir", str(run_dir)),
        *("--tune-cells", *TINY_CELLS, "--tune-seeds", "1", "--seed-pool", "1"),
        *("--total-timesteps", str(timesteps), "--n-steps", "4", "--batch-size", "4", "--n-epochs", "1"),
        *("--n-envs", "1", "--eval-every", "0", "--eval-seeds", "1", "--policies", "none", "--checkpoint-every", "4"),
        *(
            "--search-seeds",
            "1",
        ),
        *("--eval-targets", "0.3", "0.4", "--backend", "sequential", "--no-progress-bar"),
    ]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_across_targets_and_two_families_trains_reports_and_resumes(two_tasks, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    assert main(flags(run_dir, 16)) == 0
    state = json.loads((run_dir / "checkpoints/state.json").read_text())
    assert state["num_timesteps"] == 16
    with open(run_dir / "training_episodes.csv", newline="") as fh:
        networks = {row["network"] for row in csv.DictReader(fh)}
    assert networks & {"mlp_8x8", "mlp_8"} and "mlp_6x6x6" in networks  # both families' networks trained
    schema = PPO.load(run_dir / "model.zip", device="cpu").policy.schema
    assert schema["ranges"] == {
        "targets": [0.3, 0.5],
        "families": [A, B],
        "networks": ["mlp_6x6x6", "mlp_8", "mlp_8x8"],
        "depths": [2, 4],
    }
    assert schema["train_networks"] == ["mlp_8x8", "mlp_8", "mlp_6x6x6"]
    with open(run_dir / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {float(r["target_density"]) for r in rows if r["policy"] == "ppo"} == {0.3, 0.4}
    assert f"across targets 0.3, 0.5 on families {A}, {B}" in (run_dir / "results.md").read_text()
    capsys.readouterr()
    assert main([*flags(run_dir, 24), "--resume"]) == 0
    assert "at timestep 16" in capsys.readouterr().out
    state = json.loads((run_dir / "checkpoints/state.json").read_text())
    assert state["num_timesteps"] == 24
    check_opponents(run_dir, state)
    # (e): the run's model shipped as a single-target policy of A at 0.3 (the card reads the task and target)
    verdict = policies.Verdict("tuned cell", ("mlp_12x6",), 1, 0.0, -1.0, 1.0, "ties")
    shipped = tmp_path / "shipped"
    made = policies.package(
        run_dir / "model.zip", f"{A}@0.3", [verdict], TINY_CELLS[0], 1.0, 8, 0, "t", "e", folder=shipped
    )
    assert (
        made.ranges == schema["ranges"] and "Trained across target densities 0.3, 0.5 and the families" in made.text()
    )
    assert policies.Card.from_json(made.to_json()) == made
    cell = dataclasses.replace(verdict, setting=f"{B}@0.4")
    assert cell.text().startswith(f"{B}@0.4: learned - tuned cell: +0.00")
    monkeypatch.setattr(policies, "SHIPPED", shipped)
    assert single_target_policies(A, 0.3) == {}  # a card with ranges is no single-target policy
    (shipped / f"{A}@0.3.json").write_text(dataclasses.replace(made, ranges={}).to_json())  # posing as one
    check_cells(run_dir, summary=json.loads((run_dir / "generalist" / "opponents.json").read_text()))
    check_population(run_dir)


def check_opponents(run_dir, state):
    """(a), (b), (c) and the catch-up at a held-out target on the run's folder, their budgets counted here."""
    summary = run_generalist_opponents(run_dir, [0.4], catch_up_budget=3, backend="sequential")
    agent = read_agent_cost(run_dir)
    assert summary["budget"] == agent.all_episodes == state["episodes"] + agent.reference_episodes
    cells = {f"{A}@0.3": 2, f"{A}@0.5": 2, f"{B}@0.3": 1, f"{B}@0.5": 1}  # train networks x 1 search seed
    assert set(summary["per_setting"]) == set(cells)
    spent = sum(r["episodes"] for r in summary["per_setting"].values())
    assert spent <= summary["budget"] and sum(r["budget"] for r in summary["per_setting"].values()) == summary["budget"]
    assert summary["joint"]["episodes"] == summary["budget"] // 6 * 6  # a trial: every setting's networks
    # (c): at 0.4, the point found at the nearer training target on a log scale (0.5: 1.25x, against 0.3: 1.33x)
    assert summary["transfer"][f"{A}@0.4"] == {
        "label": "search@0.5 at 0.4",
        "source": 0.5,
        "policy": summary["per_setting"][f"{A}@0.5"]["best"],
    }
    catch = summary["catch_up"]
    assert catch["generalist_episodes"] == summary["budget"] and set(catch["zero_shot_val"]) == {f"{A}@0.4", f"{B}@0.4"}
    for name, record in catch["settings"].items():
        assert record["threshold"] == catch["zero_shot_val"][name] and record["spent"] <= 3
    costs = [r["episodes"] for r in catch["settings"].values()]
    assert catch["break_even"]["settings"] == math.floor(catch["generalist_episodes"] / (sum(costs) / len(costs))) + 1
    assert (run_dir / "generalist" / "catch_up.png").exists()
    assert json.loads((run_dir / "generalist" / "opponents.json").read_text()) == summary


def check_cells(run_dir, summary):
    """Every (family, target) cell on the held-out networks: the generalist and (a)/(c), (b) on the same seeds."""
    rows = run_generalist_eval(run_dir, [0.3, 0.4], eval_seeds=2, with_tuned=True, backend="sequential")
    cells = [f"{A}@0.3", f"{A}@0.4", f"{B}@0.3", f"{B}@0.4"]
    opponents = ("per-setting search", "one search for all", "tuned cell")
    single = f"single-target {A}@0.3"
    assert [(r["cell"], r["policy"]) for r in rows] == [
        (c, p) for c in cells for p in ("generalist", *((single,) if c == f"{A}@0.3" else ()), *opponents)
    ]
    by = {(r["cell"], r["policy"]): r for r in rows}
    # (e) is the same model with the same settings and seeds: the same episodes, a difference of exactly 0
    assert by[(f"{A}@0.3", single)]["test_accuracy"] == by[(f"{A}@0.3", "generalist")]["test_accuracy"]
    assert by[(f"{A}@0.3", single)]["generalist_minus"].startswith("+0.00")
    # (d) at the run's own task and target: the cell the run itself tuned
    assert by[(f"{A}@0.3", "tuned cell")]["point"] == tune_run(load_run_config(run_dir), run_dir).best
    assert {by[(c, "tuned cell")]["point"] for c in cells} <= set(TINY_CELLS)
    point = {(r["cell"], r["policy"]): r["point"] for r in rows}
    assert point[(f"{A}@0.3", "per-setting search")] == summary["per_setting"][f"{A}@0.3"]["best"]  # (a)
    assert point[(f"{B}@0.4", "per-setting search")] == summary["transfer"][f"{B}@0.4"]["policy"]  # (c)
    assert {r["episodes"] for r in rows} == {2}  # one held-out network per family x 2 seeds
    # the joint point's accuracy in B@0.4, recomputed from a fresh env of that task
    joint = summary["joint"]["best"]
    config = task_config(B, network="mlp_10", target_density=0.4, **env_kwargs(joint))
    start = json.loads((run_dir / "config.json").read_text())["eval_seed_start"]
    seeds = (start, start + 1)
    results = run_grid([GridJob("j", baseline_factory(joint), config, seeds, "heldout", "mlp_10")])
    row = next(r for r in rows if r["cell"] == f"{B}@0.4" and r["policy"] == "one search for all")
    assert row["test_accuracy"] == pytest.approx(np.mean([r.test_accuracy for r in results]))
    assert "(held out)" in (run_dir / "generalist" / "results.md").read_text()


def check_population(run_dir):
    """The cells on each family's held-out population: the named network's episodes read back from the log, the
    drawn one's played, hierarchical intervals, its own results files; a family without a population refused."""
    log = run_dir / "generalist" / "comparison" / "episodes.jsonl"
    before = log.read_text().count("\n")
    rows = run_generalist_eval(run_dir, [0.3], eval_seeds=2, heldout="population", backend="sequential")
    drawn = [s.name for family in (A, B) for s in get_population(family).members()[1:]]
    assert {r["episodes"] for r in rows} == {16}  # 8 networks x 2 seeds
    assert log.read_text().count("\n") - before == len(rows) * 7 * 2  # only the drawn networks' episodes are new
    named = {(r["cell"], r["policy"]): r for r in run_generalist_eval(run_dir, [0.3], eval_seeds=2)}
    assert all(named[(r["cell"], r["policy"])]["episodes"] == 2 for r in rows)  # the named results stay as they were
    text = (run_dir / "generalist" / "results_population.md").read_text()
    assert "hierarchical" in text and all(name in text for name in drawn)
    assert (run_dir / "generalist" / "results_population.csv").exists()
    # another point in one cell: that cell's row plays again, every other row (same label elsewhere) is reused
    record = run_dir / "generalist" / "opponents.json"
    summary = json.loads(record.read_text())
    summary["per_setting"][f"{A}@0.3"]["best"] = "linear@0.75+uniform"
    record.write_text(json.dumps(summary))
    before = log.read_text().count("\n")
    rerun = run_generalist_eval(run_dir, [0.3], eval_seeds=2, heldout="population", backend="sequential")
    again = {(r["cell"], r["policy"]): r for r in rerun}
    assert log.read_text().count("\n") - before == 16  # the changed point's 8 networks x 2 seeds only
    changed = (f"{A}@0.3", "per-setting search")
    assert again[changed]["point"] == "linear@0.75+uniform"
    assert all(again[(r["cell"], r["policy"])] == r for r in rows if (r["cell"], r["policy"]) != changed)
    POPULATIONS._items.pop(B)
    with pytest.raises(ValueError, match=f"heldout='population' is not allowed for family='{B}'"):
        run_generalist_eval(run_dir, [0.3], eval_seeds=2, heldout="population", backend="sequential")


@pytest.mark.parametrize("module", [generalist_eval, generalist_opponents])
def test_the_generalist_commands_refuse_a_folder_without_a_run_in_one_line(module, tmp_path, capsys):
    name = module.__name__.rsplit(".", 1)[1]
    extra = ["--targets", "0.1", "--heldout", "population"] if module is generalist_eval else []
    assert module.main(["--run-dir", str(tmp_path / "nothing"), *extra, "--backend", "sequential"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{name}: error: run_dir=") and "no config.json" in err and err.count("\n") == 1
    bad = ["--targets", "low"] if module is generalist_eval else ["--workers", "x"]
    with pytest.raises(SystemExit):  # argparse: a value that is no number, before any work
        module.main(["--run-dir", str(tmp_path), *bad])
