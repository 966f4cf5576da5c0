"""Files are written atomically (a temporary file in the same folder, fsync, then ``os.replace``) with the
permissions a plain ``open(path, "w")`` would give (``0o666 & ~umask``: 0644 under the usual umask 022),
and ``.npz`` files are always loaded with ``allow_pickle=False``."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status; elsewhere set and restored
    at once, under a lock)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o077)  # the strictest value for the instant it is set
        os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, mode) -> Path:
    """Call ``write(f)`` on a temporary file opened with ``mode`` beside ``path``, then move it to ``path``.

    The file gets mode ``0o666 & ~umask`` (as a newly created file would: ``tempfile.mkstemp`` alone
    gives 0600), set before anything is written; readers see either the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        perms = 0o666 & ~current_umask()
        if hasattr(os, "fchmod"):
            os.fchmod(fd, perms)
        else:  # pragma: no cover - Windows
            os.chmod(tmp, perms)
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_savez(path, **arrays) -> Path:
    """``np.savez`` to ``path`` atomically; object arrays are refused (they would need pickle)."""
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"{key}: object arrays cannot be saved without pickle")
    return atomic_write(path, lambda f: np.savez(f, **arrays), "wb")


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text), "w")


def read_jsonl(path) -> list:
    """The JSON values of a JSON-lines file (a run's ``log.jsonl``), blank lines skipped."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def load_npz(path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, never unpickling anything."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
