"""Input validation at the public boundary: errors name the argument, what was expected, what came.

Models validate their inputs once and then run their inner loops inside :func:`unchecked`, which
turns the per-op checks off (they would otherwise cost a scan of every array on every step).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


class _State(threading.local):
    enabled = True  # per thread; a class default, so reading it costs an attribute load (no getattr miss)


_state = _State()


def enabled() -> bool:
    """True unless inside :func:`unchecked` on this thread."""
    return _state.enabled


@contextlib.contextmanager
def unchecked():
    """Turn boundary checks off inside the block (for inner loops whose inputs were validated)."""
    old = enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = old


def as_float_array(x, name: str, *, ndim: int | None = None, finite: bool = True) -> np.ndarray:
    """Return ``x`` as a float32/float64 ndarray, or raise a TypeError/ValueError naming ``name``.

    Python floats, ints, lists and integer arrays become float64; other dtypes are refused.
    """
    if isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (int, float, list, tuple, np.number)) and not isinstance(x, bool):
        arr = np.asarray(x, dtype=np.float64)
    else:
        raise TypeError(f"{name}: expected a float ndarray, got {type(x).__name__}")
    if arr.dtype.type not in FLOAT_DTYPES:
        if np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.float64)
        else:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {arr.dtype}")
    if not enabled():
        return arr
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {arr.shape}")
    if finite:
        check_finite(arr, name)
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ValueError if ``arr`` holds NaN or inf."""
    if enabled() and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf entries")


def check_shape(arr: np.ndarray, name: str, expected: tuple) -> None:
    """Raise ValueError unless ``arr.shape`` matches ``expected`` (None matches any size)."""
    if not enabled():
        return
    ok = arr.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, arr.shape))
    if not ok:
        want = "(" + ", ".join("·" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {arr.shape}")


def check_range(arr: np.ndarray, name: str, lo: float, hi: float = np.inf) -> None:
    """Raise ValueError unless every entry of ``arr`` lies in ``[lo, hi]``."""
    if enabled() and arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{name}: expected values in [{lo}, {hi}], got values in [{arr.min():.6g}, {arr.max():.6g}]")


def as_index_array(x, name: str, *, upper: int, shape: tuple | None = None, padding: bool = False) -> np.ndarray:
    """Return ``x`` as an int64 array with values in ``[0, upper)``, or raise naming ``name``.

    ``padding=True`` also accepts −1 (an API's "no slot here" entry).
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if shape is not None:
        check_shape(arr, name, shape)
    lower = -1 if padding else 0
    if enabled() and arr.size and (arr.min() < lower or arr.max() >= upper):
        want = f"[0, {upper}) or -1 (padding)" if padding else f"[0, {upper})"
        raise ValueError(f"{name}: expected indices in {want}, got values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64, copy=False)


def check_index_rows(rows, memory: np.ndarray, name: str = "rows") -> np.ndarray:
    """An index's ``update`` argument: int (B, J) rows of ``memory`` (B, N, W) in ``[0, N)``, −1 = padding."""
    B, N = memory.shape[:2]
    return as_index_array(rows, name, upper=N, shape=(B, None), padding=True)


def check_index_query(keys, k, memory: np.ndarray) -> tuple[np.ndarray, int]:
    """An index's ``query`` arguments: keys (B, H, W) for ``memory`` (B, N, W), finite; 1 <= k <= N."""
    B, N, W = memory.shape
    keys = as_float_array(keys, "keys", ndim=3)
    check_shape(keys, "keys", (B, None, W))
    k = check_positive_int(k, "k")
    if k > N:
        raise ValueError(f"k: expected 1 <= k <= N = {N} (the rows of the memory), got {k}")
    return keys, k


def describe(value) -> str:
    """A short description of what came: its type, and its shape and dtype for an array."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{type(value).__name__} {value!r}" if isinstance(value, (int, float, complex)) else type(value).__name__


def _shape_text(shape: tuple) -> str:
    return "()" if not shape else "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_dout(dout, expected_shape: tuple, name: str = "dout"):
    """Check an upstream gradient before a backward uses it; returns ``dout`` unchanged.

    ``dout`` must be a float32/float64 array of exactly ``expected_shape`` (the forward output's shape:
    nothing is broadcast) with finite values. A Python or NumPy real number is accepted for a scalar
    output (shape ``()``). Complex, integer and bool values are a TypeError, a wrong shape or a NaN/inf
    a ValueError, each naming ``name``. Free inside :func:`unchecked`.
    """
    if not enabled():
        return dout
    expected = tuple(int(s) for s in expected_shape)
    if isinstance(dout, (np.ndarray, np.generic)):
        arr = np.asarray(dout)
    elif isinstance(dout, (int, float)) and not isinstance(dout, bool) and expected == ():
        arr = np.asarray(float(dout))
    else:
        raise TypeError(
            f"{name}: expected a float32/float64 ndarray of shape {_shape_text(expected)} (the forward output's), "
            f"got {describe(dout)}"
        )
    if arr.dtype.type not in FLOAT_DTYPES:
        why = " (a real function's gradient is real)" if np.issubdtype(arr.dtype, np.complexfloating) else ""
        raise TypeError(f"{name}: expected dtype float32 or float64{why}, got {arr.dtype}")
    if arr.shape != expected:
        raise ValueError(
            f"{name}: expected shape {_shape_text(expected)} (the forward output's; nothing is broadcast), "
            f"got {_shape_text(arr.shape)}"
        )
    check_finite(arr, name)
    return dout


def check_dout_tuple(dout, expected_shapes: tuple, parts: tuple, name: str = "dout", *, allow_none: bool = False):
    """Check the upstream gradient of an op with several outputs: a tuple, one entry per output.

    ``parts`` names the entries (``("dh", "dc")``); each is checked by :func:`check_dout` under the name
    ``"<part> (dout[i])"``. ``allow_none`` accepts None for an entry (read as zero). Returns ``dout``.
    """
    if not enabled():
        return dout
    want = "(" + ", ".join(parts) + ")"
    if not isinstance(dout, (tuple, list)):
        raise TypeError(f"{name}: expected a tuple {want} of {len(parts)} arrays, got {describe(dout)}")
    if len(dout) != len(parts):
        raise ValueError(f"{name}: expected a tuple {want} of {len(parts)} arrays, got {describe(dout)}")
    for i, (part, value, shape) in enumerate(zip(parts, dout, expected_shapes)):
        if value is None and allow_none:
            continue
        if value is None:
            raise TypeError(f"{part} ({name}[{i}]): expected an array of shape {_shape_text(tuple(shape))}, got None")
        check_dout(value, shape, f"{part} ({name}[{i}])")
    return dout


def check_real(value, name: str, lo: float = -np.inf, hi: float = np.inf) -> float:
    """Return ``value`` as a float in [lo, hi] or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not lo <= value <= hi:
        want = f"a value >= {lo:g}" if hi == np.inf else f"a value in [{lo:g}, {hi:g}]"
        raise ValueError(f"{name}: expected {want}, got {value}")
    return float(value)


def check_finite_real(value, name: str, lo: float = -np.inf) -> float:
    """Return ``value`` as a finite float >= ``lo`` (bools refused), or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not np.isfinite(value) or value < lo:
        want = "a finite number" if lo == -np.inf else f"a finite number >= {lo:g}"
        raise ValueError(f"{name}: expected {want}, got {value}")
    return float(value)


def check_bool(value, name: str) -> bool:
    """Return ``value`` if it is a bool, else raise naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum`` or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def check_int_value(value, name: str, minimum: int, *, expected: str | None = None) -> int:
    """Return ``value`` as an int >= ``minimum``, else raise ValueError naming ``name``.

    Unlike :func:`check_positive_int`, a value of the wrong type (a bool, a float) is also a ValueError:
    for the fields of a configuration, which promise "a bad field raises ValueError naming it".
    ``expected`` replaces the default "an int >= minimum" in the message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected {expected or f'an int >= {minimum}'}, got {value!r}")
    return int(value)


def check_positive_finite(value, name: str) -> float:
    """Return ``value`` as a float > 0 and finite, else raise ValueError naming ``name`` (also for a non-number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def check_dtype(dtype) -> np.dtype:
    """``dtype`` as float32 or float64, or a TypeError naming it."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def check_seed(seed) -> int:
    """``seed`` as a non-negative int (bools refused), or a TypeError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed: expected a non-negative int, got {seed!r}")
    return int(seed)


# -- size guards ---------------------------------------------------------------------------------------

#: The most bytes one call may plan to allocate (a model's memory and caches, a sparse memory's parts)
#: before it is refused with a :class:`FootprintError`: 8 GiB, unless the environment variable
#: ``REFMANN_MEMORY_BUDGET`` says otherwise (bytes, or with a binary suffix: ``512M``, ``16G``, ``1T``;
#: ``off`` removes the limit). Past :data:`WARN_FRACTION` of it a warning is logged.
DEFAULT_MEMORY_BUDGET = 8 * 2**30
WARN_FRACTION = 0.25
_SUFFIXES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}

log = logging.getLogger("refmann")


class FootprintError(MemoryError, ValueError):
    """An allocation was refused before it was attempted: its estimate exceeds :func:`memory_budget`.

    A MemoryError (what numpy would have raised, later and without a word) and a ValueError (the
    argument's value is what is wrong); the message names the argument and the bytes needed.
    """


def memory_budget() -> float:
    """The budget in bytes: ``REFMANN_MEMORY_BUDGET`` if set (``inf`` for ``off``), else 8 GiB."""
    raw = os.environ.get("REFMANN_MEMORY_BUDGET", "").strip()
    if not raw:
        return float(DEFAULT_MEMORY_BUDGET)
    if raw.lower() in ("off", "none", "inf", "unlimited"):
        return float("inf")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([kKmMgGtTpP]?)(?:i?[bB])?", raw)
    if not m:
        raise ValueError(
            f"REFMANN_MEMORY_BUDGET: expected a number of bytes, optionally with a suffix K, M, G or T "
            f"(8G), or 'off', got {raw!r}"
        )
    return float(m.group(1)) * _SUFFIXES[m.group(2).upper()]


def format_bytes(nbytes: float, *, exact: bool = True) -> str:
    """``12.5 GiB (13,421,772,800 bytes)`` (``exact=False``: ``12.5 GiB``)."""
    value, unit = float(nbytes), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    digits = 2 if value < 10 else 1 if value < 100 else 0
    short = f"{int(value)} bytes" if unit == "bytes" else f"{value:.{digits}f} {unit}"
    return short if unit == "bytes" or not exact or not np.isfinite(nbytes) else f"{short} ({int(nbytes):,} bytes)"


def check_footprint(parts: dict, name: str, *, what: str, hint: str | None = None, warn: bool = True) -> int:
    """Refuse, before anything is allocated, a plan whose estimated bytes exceed the budget.

    Parameters
    ----------
    parts : dict[str, int]
        Estimated bytes of each array to be allocated (``{"memory": B·N·W·itemsize, ...}``).
    name : str
        The argument that sets the size (``"memory_size"``, ``"inputs"``), named in the message.
    what : str
        What would be allocated (``"a SAM memory for batch size 8"``).
    hint : str, optional
        What to change, default ``"use a smaller <name>"``.
    warn : bool
        Log a warning past :data:`WARN_FRACTION` of the budget (False for a first, rough estimate that a
        measured one follows).

    Returns the total. Raises :class:`FootprintError` past :func:`memory_budget`; logs a warning past
    :data:`WARN_FRACTION` of it. Not switched off by :func:`unchecked` (it runs once per allocation).
    """
    total = int(sum(int(v) for v in parts.values()))
    budget = memory_budget()
    if total > budget or (warn and total > WARN_FRACTION * budget):
        detail = ", ".join(f"{key} {format_bytes(value, exact=False)}" for key, value in parts.items())
        text = f"{name}: {what} needs about {format_bytes(total)}" + (f" ({detail})" if len(parts) > 1 else "")
        if total > budget:
            raise FootprintError(
                f"{text}, more than the memory budget of {format_bytes(budget)}; {hint or f'use a smaller {name}'}, "
                f"or raise the budget with the environment variable REFMANN_MEMORY_BUDGET (e.g. 64G, or off)"
            )
        log.warning("%s (the memory budget is %s: REFMANN_MEMORY_BUDGET)", text, format_bytes(budget))
    return total
