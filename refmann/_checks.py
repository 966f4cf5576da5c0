"""Input validation at the public boundary: errors name the argument, what was expected, what came.

Models validate their inputs once and then run their inner loops inside :func:`unchecked`, which
turns the per-op checks off (they would otherwise cost a scan of every array on every step).
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)

_state = threading.local()


def enabled() -> bool:
    """True unless inside :func:`unchecked` on this thread."""
    return getattr(_state, "enabled", True)


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


def as_index_array(x, name: str, *, upper: int, shape: tuple | None = None) -> np.ndarray:
    """Return ``x`` as an int64 array with values in ``[0, upper)``, or raise naming ``name``."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if shape is not None:
        check_shape(arr, name, shape)
    if enabled() and arr.size and (arr.min() < 0 or arr.max() >= upper):
        raise ValueError(f"{name}: expected indices in [0, {upper}), got values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64, copy=False)


def check_real(value, name: str, lo: float = -np.inf, hi: float = np.inf) -> float:
    """Return ``value`` as a float in [lo, hi] or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not lo <= value <= hi:
        want = f"a value >= {lo:g}" if hi == np.inf else f"a value in [{lo:g}, {hi:g}]"
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
