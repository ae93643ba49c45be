"""Nothing outlives its owner: a run's worker pool and resource tracker end with it, however it ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import ROOT

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

# The persistent pool of a run (sparsity_gym.experiments.pool.shared_pool), two workers started and busy; the
# owner then waits for a line on stdin and exits normally, or is killed while its workers are mid-job.
OWNER = """
import sys, time
from sparsity_gym.experiments.pool import shared_pool
pool = shared_pool(2, 1)
for future in [pool.submit(time.sleep, 0.5) for _ in range(2)]:
    future.result()  # both workers started and initialised
if sys.argv[1] != "exit":
    pool.submit(time.sleep, 600)
    pool.submit(time.sleep, 600)
print("ready", *pool.pids(), flush=True)
sys.stdin.readline()
"""


def proc_stat(pid: int) -> tuple[int, str, str] | None:
    """``(ppid, state, start time)`` of a process from ``/proc`` (``None`` when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command name: state, ppid, ... start time (22nd)
    return int(fields[1]), fields[0], fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: pid -> start time (to tell a reused pid apart)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := proc_stat(int(entry))) is not None:
            table[int(entry)] = stat
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state, start) in table.items():
            if ppid == parent and pid not in found and state not in "ZX":
                found[pid] = start
                frontier.append(pid)
    return found


def alive(pid: int, start: str) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[2] == start and stat[1] not in "ZX"


@pytest.mark.parametrize("end", ["exit", "sigterm", "sigkill"])
def test_no_child_process_outlives_the_run(end):
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, end],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = owner.stdout.readline().split()
        assert line and line[0] == "ready", line
        workers = {int(pid) for pid in line[1:]}
        children = descendants(owner.pid)
        assert len(workers) == 2 and workers <= set(children)  # the two workers (and the resource tracker)
        if end == "exit":
            owner.stdin.write("done\n")
            owner.stdin.flush()
        else:
            owner.send_signal(signal.SIGTERM if end == "sigterm" else signal.SIGKILL)
        owner.wait(timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(alive(pid, start) for pid, start in children.items()):
            time.sleep(0.2)
        left = [pid for pid, start in children.items() if alive(pid, start)]
        assert not left, f"processes left behind by the run ({end}): {left}"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for pid, start in locals().get("children", {}).items():  # never leave them to the machine
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)
