"""Files are written atomically (a temporary file in the same folder, then ``os.replace``) and
``.npz`` files are always loaded with ``allow_pickle=False``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write(path, write, mode) -> Path:
    """Call ``write(f)`` on a temporary file opened with ``mode`` beside ``path``, then move it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
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


def load_npz(path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, never unpickling anything."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
