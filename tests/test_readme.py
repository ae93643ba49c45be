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


def test_the_own_training_loop_example_runs(tmp_path):
    """The README's own-loop example, as written, with one epoch and one seed (CI keeps it true)."""
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    section = text.split("## Use a learned schedule in your own training loop", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "EPOCHS, SEEDS = 40, (0, 1, 2)" in code
    script = tmp_path / "own_loop.py"
    script.write_text(code.replace("EPOCHS, SEEDS = 40, (0, 1, 2)", "EPOCHS, SEEDS = 1, (0,)"))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["learned mnist1d_mlp@0.01", "handcrafted cubic@0.75+erk"]
    assert all("test accuracy" in line for line in lines)
