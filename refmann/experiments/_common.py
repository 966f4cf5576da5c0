"""What the experiment scripts share: argparse types, the run arguments' check, the progress bar, "m ± s"."""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from .. import _checks
from .._checks import check_seed

__all__ = ["check_common", "mean_sd", "positive_int", "progress_bar", "seed_int"]


def positive_int(text):
    """argparse type: an int >= 1 (a bad value: a one-line message, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def seed_int(text):
    """argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def check_common(seeds, steps, batch_size, dtype):
    """The shared run arguments, checked: ``(seeds tuple, steps, batch_size, dtype type)``.

    ``batch_size`` is at least 2 (a batch norm needs two rows); ``dtype`` float32 or float64.
    """
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds: expected at least one seed, got none")
    seeds = tuple(check_seed(s) for s in seeds)
    steps = _checks.check_positive_int(steps, "steps")
    batch_size = _checks.check_positive_int(batch_size, "batch_size", minimum=2)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
    return seeds, steps, batch_size, dtype.type


def progress_bar(total, desc, progress):
    """A tqdm bar on stderr, counting steps (disabled without ``progress``)."""
    from tqdm import tqdm

    return tqdm(total=total, disable=not progress, unit="step", desc=desc, file=sys.stderr)


def mean_sd(values, fmt=".3f") -> str:
    """``"m ± s"`` (sample s.d.) of the non-None values, one value as is, none as "—"."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], fmt)
    sd = format(float(np.std(values, ddof=1)), fmt.replace("+", ""))
    return f"{format(float(np.mean(values)), fmt)} ± {sd}"
