"""The README and the documentation site stay true.

The README's two commands are the ones CI runs; every code block marked runnable (an HTML comment
``<!-- runnable -->`` on the line before a ```` ```python ```` fence, in README.md or docs/**/*.md) runs as written,
with the marker's ``OLD => NEW`` substitution applied first (``<!-- runnable: EPOCHS = 40 => EPOCHS = 1 -->``, to
keep it cheap); the README stays a front page whose numbers all stand on the site; every flag of
``train_agent.py`` has a row on the training page.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = (ROOT / "README.md", *sorted(DOCS.rglob("*.md")))
RUNNABLE = re.compile(
    r"<!-- runnable(?::\s*(?P<old>.*?)\s*=>\s*(?P<new>.*?))?\s*-->\n```python\n(?P<code>.*?)```", re.S
)
OWN_LOOP_OUTPUT = ["learned mnist1d_mlp@0.01", "handcrafted cubic@0.75+erk"]


def _commands(text: str) -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv[^\n]*)\n```", text)


def runnable_blocks() -> dict[str, tuple[str, list[str]]]:
    """Each distinct runnable block's code (substitution applied) and where it stands ('page:line')."""
    blocks: dict[str, tuple[str, list[str]]] = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in RUNNABLE.finditer(text):
            code, old, new = match["code"], match["old"], match["new"]
            where = f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            if old is not None:
                assert old in code, f"{where}: the runnable marker's {old!r} is not in its block"
                code = code.replace(old, new)
            blocks.setdefault(code, (code, []))[1].append(where)
    return blocks


BLOCKS = runnable_blocks()


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = _commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) == 2
    main, tests = commands
    assert main.endswith("train_agent.py") and "-c constraints.txt" in main
    assert tests.endswith("pytest") and '".[dev,ray]"' in tests  # CI runs the Ray tests too
    assert tests in (ROOT / ".ci" / "run").read_text()
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
    assert _commands((DOCS / "getting-started.md").read_text(encoding="utf-8")) == commands


def test_readme_is_a_front_page_whose_links_and_numbers_stand_on_the_site():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    broken = [link for link in links if not (ROOT / link).is_file()]
    assert links and not broken, f"README.md links to missing pages: {broken}"
    site = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md")).replace("−", "-")
    numbers = set(re.findall(r"[+-]?\d+\.\d+", text.replace("−", "-")))
    missing = sorted(n for n in numbers if n not in site)
    assert not missing, f"numbers in README.md that no docs page states: {missing}"


def test_the_docs_hold_the_own_loop_example_as_the_readme_does():
    """Both copies are one block (run once below); the site keeps the README's measured printout."""
    own_loop = [where for _, where in BLOCKS.values() if any(w.startswith("README.md") for w in where)]
    assert own_loop and any(w.startswith("docs/own-loop.md") for w in own_loop[0])
    printed = "learned mnist1d_mlp@0.01: test accuracy 50.53% (seeds (0, 1, 2): 52.1, 45.6, 53.9)"
    assert printed in (ROOT / "README.md").read_text() and printed in (DOCS / "own-loop.md").read_text()


@pytest.mark.parametrize("code", list(BLOCKS), ids=[where[0] for _, where in BLOCKS.values()])
def test_a_runnable_block_runs(code, tmp_path):
    """Each block marked runnable, as written (the marker's substitution applied), in a fresh interpreter."""
    script = tmp_path / "block.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, f"{BLOCKS[code][1]}: {proc.stderr[-2000:]}"
    if "EPOCHS, SEEDS = 1, (0,)" in code:  # the own-loop example: one line per policy, with its test accuracy
        lines = proc.stdout.strip().splitlines()
        assert [line.split(":")[0] for line in lines] == OWN_LOOP_OUTPUT
        assert all("test accuracy" in line for line in lines)


def test_every_flag_of_train_agent_has_a_row_on_the_training_page():
    from agents.settings.command_line import build_parser

    page = (DOCS / "training.md").read_text(encoding="utf-8")
    flags = [flag for action in build_parser()._actions for flag in action.option_strings if flag.startswith("--")]
    missing = [flag for flag in flags if flag != "--help" and f"`{flag}`" not in page]
    assert not missing, f"flags of train_agent.py without a row in docs/training.md (add one): {missing}"
