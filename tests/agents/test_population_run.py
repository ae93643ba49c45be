"""Every part together, from the command line: the preflight's plan, a task run with both searches on its held-out
population, then the evaluation of its model with the same flags; the report holds four opponents and costs."""

import csv
import json
import math

import pytest
from task_helpers import TINY_CELLS, TINY_POPULATION, registered_task

from sparsity_gym.experiments.opponents import ORACLE_LABEL, read_opponents
from sparsity_gym.experiments.populations import get_population
from train_agent import main

TASK = "tiny_population_test"
N_STEPS, TIMESTEPS, DECISIONS = 4, 8, 2  # the task's episodes: 20 steps, a decision every 10


@pytest.fixture
def tiny_population():
    """A task on synthetic data (two decisions per episode) with a population of 8 tiny MLPs, for this test only."""
    with registered_task(TASK, heldout=("mlp_12x6", "mlp_16"), population=TINY_POPULATION):
        yield get_population(TASK)


def flags(run_dir) -> list[str]:
    """The run's command line: the task's preset made tiny, both searches, the held-out population."""
    return [
        *("--task", TASK, "--run-dir", str(run_dir), "--opponent", "search", "random", "--heldout", "population"),
        *("--tune-cells", *TINY_CELLS, "--tune-seeds", "1", "--seed-pool", "1", "--search-seeds", "1"),
        *("--total-timesteps", str(TIMESTEPS), "--n-steps", str(N_STEPS), "--batch-size", "4", "--n-epochs", "1"),
        *("--n-envs", "1", "--eval-every", "4", "--eval-episodes", "1", "--eval-seeds", "2", "--policies", "none"),
        *("--backend", "sequential", "--no-progress-bar"),
    ]


def report(run_dir) -> tuple[str, list[dict]]:
    """``results.md`` and the rows of ``results.csv``."""
    with open(run_dir / "results.csv", newline="") as fh:
        return (run_dir / "results.md").read_text(), list(csv.DictReader(fh))


def opponent_rows(md: str) -> dict[str, str]:
    """The opponents' table of ``results.md``: its first column -> the row."""
    start = md.index("| Opponent | Cost |")
    table = md[start:].split("\n\n")[0].splitlines()[2:]
    return {line.split(" | ")[0].lstrip("| "): line for line in table}


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_task_run_with_both_searches_on_its_population_then_its_evaluation(tiny_population, tmp_path, capsys):
    run_dir, members = tmp_path / "run", {s.name for s in tiny_population.members()}
    # the plan, counted independently: PPO's episodes set the searches' budget, a trial is 2 networks x 1 seed
    assert main([*flags(run_dir), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    training = math.ceil(TIMESTEPS / N_STEPS) * N_STEPS // DECISIONS
    budget = training + 2  # the paired reward's reference: once per train network (a pool of one seed)
    spent = budget // 2 * 2
    assert (
        f"    search (Optuna TPE): {spent} ({budget // 2} trials x 2 train networks x 1 seeds of a budget of {budget}"
        in plan
    )
    assert f"    random search: {spent} (" in plan
    compared = (len(TINY_CELLS) + 2 + 1) * len(members) * 2  # cells, the searches' best points, ppo; 2 seeds
    assert f"    comparison: {compared} (5 policies x 8 networks of the held-out population x 2 seeds" in plan
    assert "held-out population of 'tiny_population_test': " in plan and not run_dir.exists()

    assert main(flags(run_dir)) == 0
    recorded = read_opponents(run_dir)
    assert {n: o.episodes for n, o in recorded.items()} == {"tuned": 4, "search": spent, "random": spent}
    md, rows = report(run_dir)
    assert {r["network"] for r in rows} == members and {r["split"] for r in rows} == {"heldout"}
    assert f"{len(members)} heldout networks × 2 seeds" in md and "seeds 1000-1001" in md
    assert "Held-out population (`--heldout population`)" in md
    opponents = opponent_rows(md)
    for name, record in recorded.items():
        title = f"tuned grid cell `{record.label}` (train split)" if name == "tuned" else record.title
        assert opponents[title].split(" | ")[1].startswith(f"{record.episodes} episodes, ")
    assert opponents[ORACLE_LABEL].split(" | ")[1] == "none (chosen on the test results)"
    assert opponents["**learned** `ppo`"].split(" | ")[1].startswith(f"{training} training + 2 reference episodes, ")
    # each search cut at the PPO run's training seconds (equal wall time): a prefix of its trials, counted
    learned = json.loads((run_dir / "timing.json").read_text())
    assert "of the training phase" in opponents["**learned** `ppo`"]
    for name in ("search", "random"):
        at = recorded[name].at_seconds
        assert at.seconds == learned["training_seconds"] and 0 <= at.trials <= spent // 2
        assert at.episodes == 2 * at.trials and at.spent <= at.seconds
        assert "in the learned policy's" in opponents[recorded[name].title]
    # model selection and the first win's reference ran on the named held-out networks, never on the drawn ones
    assert json.loads((run_dir / "reference_selection.json").read_text())["networks"] == ["mlp_12x6", "mlp_16"]

    # the evaluation of its model, with the same flags: the searches' budget and the agent's cost from its folder
    evaluated = tmp_path / "evaluated"
    model = ["evaluate", "--model", str(run_dir / "best_model.zip")]
    assert main([*model, *flags(evaluated), "--dry-run"]) == 0
    assert f"of a budget of {budget} (the PPO run's training + reference episodes)" in capsys.readouterr().out
    assert main([*model, *flags(evaluated)]) == 0
    md, rows = report(evaluated)
    assert {r["network"] for r in rows} == members
    assert set(opponent_rows(md)) == set(opponents)  # the same four opponents and the learned policy's row
    assert {n: o.episodes for n, o in read_opponents(evaluated).items()} == {n: o.episodes for n, o in recorded.items()}
    assert opponent_rows(md)["**learned** `ppo`"].split(" | ")[1].startswith(f"{training} training + 2 reference")
