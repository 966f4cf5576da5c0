"""The one place refmann imports numba.

Kernels are plain Python functions with explicit loops, compiled here by assignment::

    def _scatter_add_rows_loops(out, indices, rows): ...
    scatter_add_rows_kernel = njit(_scatter_add_rows_loops)

Both names stay importable, so tests check the compiled kernel against its Python twin.
With ``NUMBA_DISABLE_JIT=1`` (numba's own switch), ``REFMANN_DISABLE_NUMBA=1``, or when numba
is not installed, :func:`njit` returns the function unchanged and the very same code runs as
Python. Compilation is lazy (on first call) and cached on disk, so importing refmann never
compiles anything. Fast-math flags stay off (numba's default): kernel results are gradient-checked.

:data:`NUMBA_VERSION` is numba's version for reports (``refmann info``, the benchmarks), read from the
installed package's metadata when the JIT is switched off, so nothing else needs to import numba.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os

log = logging.getLogger(__name__)

_DISABLED_BY_ENV = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0") or os.environ.get(
    "REFMANN_DISABLE_NUMBA", "0"
) not in ("", "0")

try:
    if _DISABLED_BY_ENV:
        raise ImportError("disabled by environment")
    import numba as _numba
except ImportError as exc:  # pragma: no cover - depends on the environment
    _numba = None
    if not _DISABLED_BY_ENV:
        log.warning("numba is not available (%s); kernels run as plain Python", exc)

JIT_ENABLED: bool = _numba is not None


def _numba_version() -> str | None:
    if _numba is not None:
        return _numba.__version__
    if not _DISABLED_BY_ENV:  # pragma: no cover - depends on the environment
        return None  # numba failed to import: not (usably) installed
    try:  # switched off: still report what is installed, without importing it
        return importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - depends on the environment
        return None


#: The installed numba's version (also when the JIT is switched off), or None if numba cannot be imported.
NUMBA_VERSION: str | None = _numba_version()


def njit(func, *, inline: bool = False):
    """Compile ``func`` lazily with numba (``cache=True``; fast-math off, numba's default) or return it unchanged.

    ``inline=True`` is for small helpers called from other kernels: numba then inlines them at the
    IR level instead of calling them with every array argument boxed and reference-counted.
    """
    if _numba is None:
        return func
    return _numba.njit(cache=True, nogil=True, inline="always" if inline else "never")(func)
