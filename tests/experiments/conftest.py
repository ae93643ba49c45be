"""The experiments suite: the picker's tiny task (shared by the tuning and the picker tests)."""

import pytest
from task_helpers import registered_task

PICKER_TASK = "golden_picker"
"""Its name is part of the ``tuning.json`` recorded in ``picker_before.json``."""


@pytest.fixture
def picker_task():
    """A tiny task (two train MLPs, no statistics observed), registered for the test only."""
    overrides = {"batch_size": 16, "observations": ()}
    with registered_task(PICKER_TASK, train=("mlp_8", "mlp_6x6"), heldout=("mlp_4",), env_overrides=overrides) as task:
        yield task
