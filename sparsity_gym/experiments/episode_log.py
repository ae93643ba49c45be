"""A grid's finished episodes, appended to a JSON-lines file as they end, so a killed run resumes where it stopped.

Every finished episode is one line of ``episodes.jsonl``: its key and its
:class:`~sparsity_gym.experiments.evaluation.EpisodeResult`. A line is written whole, then flushed and fsynced,
so after a kill the file holds complete lines and at most one partial last line, which :meth:`EpisodeLog.load`
ignores and cuts off before anything is appended again. The key is (policy, network, selector, target density,
seed, hash of the complete env config): an episode is a function of its config and seed, so a recorded
episode is the episode a rerun would play (a learned policy must be the same model: a fresh run starts a fresh
log, only a resumed one reads it).

:func:`run_logged` runs a grid through :func:`~sparsity_gym.experiments.grid.run_grid` one episode per job,
skips the recorded ones, records each new one as its job finishes, and returns every result in the order
``run_grid`` would have, so the report of a resumed run is the report of an uninterrupted one (wall times
aside: a recorded episode keeps the wall time it was measured with).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.experiments.evaluation import EpisodeResult
from sparsity_gym.experiments.grid import GridJob, run_grid


def _stable(value: Any) -> str:
    """A name for a value JSON cannot hold that is the same in every process (a callable: module.qualname)."""
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return repr(value)


def config_hash(config: EnvConfig) -> str:
    """A short, stable hash of every field of ``config`` (its JSON with sorted keys)."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=_stable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def episode_key(policy: str, network: str, config: EnvConfig, seed: int) -> str:
    """The key of one episode: policy, network, selector, target density, seed and the config's hash."""
    return "|".join(
        (policy, network, config.selector, repr(config.target_density), str(int(seed)), config_hash(config))
    )


def job_key(job: GridJob, seed: int) -> str:
    """:func:`episode_key` of ``job``'s episode with ``seed``."""
    return episode_key(job.policy_name, job.network or job.config.network_name, job.config, seed)


class EpisodeLog:
    """An append-only JSON-lines file of finished episodes (see the module docstring).

    Args:
        path: The file (its folder is created).
        fresh: Start empty (delete a previous file) instead of continuing it.

    """

    def __init__(self, path: str | Path, fresh: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            self.path.unlink()

    def load(self) -> dict[str, EpisodeResult]:
        """The recorded episodes by key; a partial last line (a kill while writing) is ignored and cut off."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
                os.fsync(f.fileno())
        records = {}
        for line in complete.decode().splitlines():
            if line.strip():
                entry = json.loads(line)
                records[entry["key"]] = EpisodeResult(**entry["result"])
        return records

    def append(self, entries: Sequence[tuple[str, EpisodeResult]]) -> None:
        """Append ``(key, result)`` lines, each whole, then flush and fsync."""
        if not entries:
            return
        text = "".join(json.dumps({"key": key, "result": dataclasses.asdict(result)}) + "\n" for key, result in entries)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def file_digest(path: str | Path) -> str:
    """A short sha256 of a file's bytes (e.g. a saved model, to key its episodes)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_logged(
    jobs: Sequence[GridJob], log: EpisodeLog, versions: Mapping[str, str] | None = None, **grid: Any
) -> list[EpisodeResult]:
    """``run_grid(jobs, **grid)``, one episode a job, skipping and recording episodes in ``log``.

    ``versions`` maps a policy name to a version string added to its episodes' keys (e.g. the learned policy's
    :func:`file_digest`: a model trained further after a resume does not reuse its old episodes). Returns every
    episode's result in job order, then seed order (recorded ones read back from the log).
    """
    recorded = log.load()
    versions = dict(versions or {})

    def key(job: GridJob, seed: int) -> str:
        version = versions.get(job.policy_name)
        return job_key(job, seed) + (f"|{version}" if version else "")

    singles = [(key(job, seed), dataclasses.replace(job, seeds=(seed,))) for job in jobs for seed in job.seeds]
    missing = [(key, job) for key, job in singles if key not in recorded]

    def record(index: int, results: list[EpisodeResult]) -> None:
        key = missing[index][0]
        log.append([(key, results[0])])
        recorded[key] = results[0]

    run_grid([job for _, job in missing], on_result=record, **grid)
    return [recorded[key] for key, _ in singles]
