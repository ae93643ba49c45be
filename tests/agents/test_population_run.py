"""A task run compared on its held-out population: selection on the named networks, the report with its costs."""

import csv
import json

import pytest

from agents.config import TrainConfig
from agents.train import run
from sparsity_gym.env.tasks import TASKS, Task, task_config
from sparsity_gym.experiments.families import FAMILIES, task_family
from sparsity_gym.experiments.populations import POPULATIONS, Population, register_population

TASK = "tiny_population_test"


@pytest.fixture
def tiny_population():
    """A task on synthetic data (two decisions per episode) with a population of 8 tiny MLPs, for this test only."""
    task = Task(
        name=TASK,
        dataset="synthetic",
        train=("mlp_8x8", "mlp_8"),
        heldout=("mlp_12x6", "mlp_16"),
        budget="global",
        targets=(0.3,),
        total_iterations=20,
        decision_interval=10,
        env_overrides={"batch_size": 16},
    )
    TASKS.add(task.name, task)
    FAMILIES.add(task.name, lambda: task_family(task.name))
    population = register_population(Population(TASK, "mlp", 8, (1, 2), (4, 6, 10, 12), (1, 4, 4), num_classes=4))
    yield population
    for registry in (TASKS, FAMILIES, POPULATIONS):
        registry._items.pop(TASK)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_population_run_selects_on_named_networks_and_reports_costs(tiny_population, tmp_path):
    cells = ("linear+uniform", "cubic@0.9+erk")
    (tmp_path / "opponents.json").write_text(
        json.dumps(
            [{"name": "random", "label": "random (6 episodes)", "policy": cells[0], "episodes": 6, "seconds": 2}]
        )
    )
    cfg = TrainConfig(
        env=task_config(TASK),
        task=TASK,
        family=TASK,
        heldout="population",
        run_dir=str(tmp_path),
        tune_cells=cells,
        tune_seeds=1,
        prior="tuned",
        reward="paired",
        seed_pool=1,
        total_timesteps=8,
        n_steps=4,
        batch_size=4,
        n_epochs=1,
        n_envs=1,
        eval_every=4,
        eval_episodes=1,
        eval_seeds=2,
        eval_targets=(0.3,),
        eval_selectors=("magnitude",),
        policies=("none",),
        backend="sequential",
        progress_bar=False,
        resume=True,  # the run folder already holds opponents.json
    )
    run(cfg)
    members = {s.name for s in tiny_population.members()}
    with open(tmp_path / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["network"] for r in rows} == members and {r["split"] for r in rows} == {"heldout"}
    # model selection and the first win's reference ran on the named held-out networks, never on the drawn ones
    reference = json.loads((tmp_path / "reference_selection.json").read_text())
    assert reference["networks"] == ["mlp_12x6", "mlp_16"] and len(members) == 8
    md = (tmp_path / "results.md").read_text()
    assert "8 heldout networks × 2 seeds" in md and "seeds 1000-1001" in md
    assert "| random (6 episodes) | 6 episodes, 2 s |" in md
    assert "training + " in md and ("first beat the reference" in md or "never (" in md)
    assert "Held-out population (`--heldout population`)" in md
    assert (tmp_path / "opponents.csv").exists()
