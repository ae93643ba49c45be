"""Atomic writes leave the mode a plain ``open()`` would: the umask's for a new file, the old one's on replace."""

import os
import stat

import pytest

from sparsity_gym.core.io import atomic_write, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for the test (restored after)."""
    before = os.umask(0o022)
    os.umask(before)

    def set_mask(mask):
        os.umask(mask)

    yield set_mask
    os.umask(before)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_a_new_file_gets_the_umask_mode(mask, umask, tmp_path):
    umask(mask)
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as fh:
        fh.write("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert mode(tmp_path / "atomic.txt") == mode(plain) == 0o666 & ~mask
    assert (tmp_path / "atomic.txt").read_text() == "x"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_replaced_file_keeps_its_mode_even_if_the_writer_recreates_it(umask, tmp_path):
    umask(0o022)
    target = tmp_path / "state.json"
    target.write_text("old")
    os.chmod(target, 0o640)

    def recreate(tmp):
        os.unlink(tmp)
        with open(tmp, "w") as fh:
            fh.write("new")

    atomic_write(target, recreate)
    assert mode(target) == 0o640 and target.read_text() == "new"
