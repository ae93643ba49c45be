"""A task run compared on its held-out population: selection on the named networks, the report with its costs."""

import csv
import json

import pytest
from task_helpers import TINY_CELLS, TINY_POPULATION, registered_task, tiny_run

from agents.train import run
from sparsity_gym.experiments.populations import get_population

TASK = "tiny_population_test"


@pytest.fixture
def tiny_population():
    """A task on synthetic data (two decisions per episode) with a population of 8 tiny MLPs, for this test only."""
    with registered_task(TASK, heldout=("mlp_12x6", "mlp_16"), population=TINY_POPULATION):
        yield get_population(TASK)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_population_run_selects_on_named_networks_and_reports_costs(tiny_population, tmp_path):
    cells = TINY_CELLS
    (tmp_path / "opponents.json").write_text(
        json.dumps(
            [{"name": "random", "label": "random (6 episodes)", "policy": cells[0], "episodes": 6, "seconds": 2}]
        )
    )
    # resume: the run folder already holds opponents.json
    cfg = tiny_run(TASK, tmp_path, heldout="population", eval_every=4, eval_episodes=1, resume=True)
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
