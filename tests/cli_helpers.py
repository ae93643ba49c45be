"""Launch ``train_agent.py`` in a subprocess, as a user does, on a tiny setting (shared by the CLI tests)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = [
    *("--dataset", "synthetic", "--total-iterations", "20", "--decision-interval", "10"),
    *("--n-steps", "8", "--batch-size", "4", "--n-epochs", "1", "--checkpoint-every", "8"),
    *("--eval-seeds", "1", "--eval-targets", "0.5", "--eval-selectors", "magnitude", "--no-progress-bar"),
    "--showcase",  # no shipped policy: their episodes are a full task's (tests/agents/test_shipped.py covers them)
]


def start(*args: str) -> subprocess.Popen:
    """``python train_agent.py ARGS`` with stdout and stderr captured together."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train_agent.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``train_agent.py ARGS`` to the end (stderr kept apart); raise with its output if ``check`` fails."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train_agent.py"), *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc
