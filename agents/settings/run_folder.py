"""The run folder's rules: a training run starts clean, an evaluation keeps the run's config, models save atomically.

A ``train`` run into a folder that holds an earlier run's model (``best_model.*``, ``model.zip``), its prior
(``prior.json``) or its checkpoints stops with one line naming ``--resume`` and ``--run-dir``, instead of
silently reusing them (the prior would be read back, the best model compared, the checkpoints resumed by a
later ``--resume``): a run starts clean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsity_gym.core.io import atomic_write

LEFTOVERS = ("best_model.*", "model.zip", "prior.json", "checkpoints")
"""What an earlier training run leaves in its folder (glob patterns)."""


def leftovers(run_dir: str | Path) -> list[str]:
    """The names in ``run_dir`` an earlier training run left (sorted; empty for a missing or clean folder)."""
    folder = Path(run_dir)
    if not folder.is_dir():
        return []
    return sorted({p.name for pattern in LEFTOVERS for p in folder.glob(pattern)})


def check_fresh(run_dir: str | Path, resume: bool) -> None:
    """``ValueError`` when a new (not ``resume``) training run would reuse an earlier run's files."""
    found = leftovers(run_dir)
    if found and not resume:
        raise ValueError(
            f"run_dir={str(run_dir)!r} holds an earlier run ({', '.join(found)}); pass --resume to continue it, "
            "or a new --run-dir to start clean"
        )


def config_path(run_dir: str | Path, mode: str) -> Path:
    """Where a run of ``mode`` writes its config: ``config.json``, unless a training run's config is there.

    An evaluation in a training run's folder writes ``config_<mode>.json`` beside that run's ``config.json``.
    """
    path = Path(run_dir) / "config.json"
    if mode != "train" and path.exists():
        try:
            earlier = json.loads(path.read_text()).get("mode")
        except (ValueError, OSError):
            earlier = None
        if earlier == "train":
            return path.with_name(f"config_{mode}.json")
    return path


def save_model_atomic(model: Any, path: str | Path) -> Path:
    """``model.save`` through a temporary file renamed onto ``path`` (a killed run never leaves half a model)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            model.save(fh)

    return atomic_write(path, write)
