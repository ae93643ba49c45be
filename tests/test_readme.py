"""The README's two commands stay true: CI runs the test command verbatim, the main command runs train_agent.py."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    return re.findall(r"```bash\n(python3 -m venv[^\n]*)\n```", (ROOT / "README.md").read_text())


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = _commands()
    assert len(commands) == 2
    main, tests = commands
    assert main.endswith("train_agent.py") and "-c constraints.txt" in main
    assert tests.endswith("pytest") and '".[dev,ray]"' in tests  # CI runs the Ray tests too
    assert tests in (ROOT / ".ci" / "run").read_text()
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
