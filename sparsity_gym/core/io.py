"""Atomic file writes: a temporary file in the same folder, flushed, then renamed over the target."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path


def _create_temporary(folder: Path, name: str) -> str:
    """Create an empty, unique temporary file in ``folder`` with the mode a plain ``open()`` would give it.

    ``tempfile.mkstemp`` creates mode 0600 whatever the umask; ``os.open(..., 0o666)`` lets the umask decide,
    as for any file the process creates.
    """
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return str(tmp)
    raise FileExistsError(f"no free temporary name for {name!r} in {folder}")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path``: readers see the old or the new file.

    The file ends up with the mode a plain ``open(path, "w")`` would leave: the existing file's mode when it is
    replaced, ``0o666`` less the process umask when it is new.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path.parent, path.name)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else stat.S_IMODE(os.stat(tmp).st_mode)
        write(tmp)
        os.chmod(tmp, mode)  # also when ``write`` re-created the file
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)
