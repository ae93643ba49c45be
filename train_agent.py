"""Train a PPO agent on pruning schedules and compare it, on held-out networks, with every baseline.

Usage: ``python train_agent.py --help``; ``python train_agent.py evaluate --model M --networks ...`` runs a
saved model. This file only parses the command line and calls the packages.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and turn a bad value into a one-line message and exit status 2."""
    from agents.run.train import run
    from agents.settings.command_line import parse_args

    try:
        config = parse_args(argv)
        run(config)
    except ValueError as exc:
        print(f"train_agent.py: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
