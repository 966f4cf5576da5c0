"""refmann's files: atomic, never pickled, and with the permissions the umask gives (0644 under 022)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from refmann import _io


@pytest.fixture
def umask():
    """Set the process umask for one test, and restore it."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


WRITERS = {
    "atomic_write": lambda path: _io.atomic_write(path, lambda f: f.write(b"bytes"), "wb"),
    "atomic_write_text": lambda path: _io.atomic_write_text(path, "text\n"),
    "atomic_savez": lambda path: _io.atomic_savez(path, a=np.arange(3)),
}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("writer", list(WRITERS))
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)])
def test_every_writer_honours_the_umask(tmp_path, umask, writer, mask, mode):
    umask(mask)
    path = WRITERS[writer](tmp_path / "sub" / "file.bin")
    assert _mode(path) == mode
    WRITERS[writer](path)  # overwriting gives the same mode (the temporary file's, set before writing)
    assert _mode(path) == mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_golden_file_is_0644_under_the_default_umask_in_a_fresh_process(tmp_path):
    code = textwrap.dedent(
        f"""
        import os, stat
        os.umask(0o022)
        from refmann import _io
        import numpy as np
        _io.atomic_savez({str(tmp_path / "g.npz")!r}, x=np.ones(2))
        _io.atomic_write_text({str(tmp_path / "log.jsonl")!r}, "{{}}\\n")
        for name in ("g.npz", "log.jsonl"):
            print(oct(stat.S_IMODE(os.stat(os.path.join({str(tmp_path)!r}, name)).st_mode)))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0o644", "0o644"]


def test_reading_the_umask_does_not_change_it(umask):
    umask(0o027)
    assert _io.current_umask() == 0o027
    assert os.umask(0o027) == 0o027


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = _io.atomic_write_text(tmp_path / "f.txt", "old")

    def boom(f):
        f.write("half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _io.atomic_write(path, boom, "w")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_savez_round_trips_without_pickle_and_refuses_object_arrays(tmp_path):
    path = _io.atomic_savez(tmp_path / "a.npz", x=np.arange(4.0), y=np.array(3))
    data = _io.load_npz(path)
    assert (data["x"] == np.arange(4.0)).all() and data["y"] == 3
    with pytest.raises(TypeError, match="z: object arrays cannot be saved without pickle"):
        _io.atomic_savez(tmp_path / "b.npz", z=np.array([{}], dtype=object))
    assert not (tmp_path / "b.npz").exists()
