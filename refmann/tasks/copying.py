"""Copy and Repeat Copy (Graves et al. 2014, §4.1–4.2; Rae et al. 2016, §4.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from refmann.tasks._base import Task, _binary, _check_int, _check_order, _Sequence


@dataclass(frozen=True)
class Copy(Task):
    """Copy: read a sequence of random binary vectors, then write it back.

    Each sequence has a length L drawn uniformly from ``min_length..max_length`` (or ``level``).

    Parameters
    ----------
    bits : int
        Width of each random vector (8 in both papers).
    min_length, max_length : int
        Range of the sequence length L (1–20 in both papers). The level is L.

    Notes
    -----
    One sequence lasts ``2 L + 1`` steps. Input channels (``input_size = bits + 1``)::

        step          0 .. L-1      L           L+1 .. 2L
        ch 0..bits-1  pattern       0           0           (no input while recalling)
        ch bits       0             1 (delim)   0

    Output channels (``output_size = bits``): the target is the pattern during steps
    ``L+1 .. 2L`` and the mask is 1 exactly there (``L * bits`` scored bits per sequence).

    References
    ----------
    Graves, Wayne & Danihelka (2014), *Neural Turing Machines*, arXiv:1410.5401, §4.1.
    Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
    arXiv:1610.09027, §4.2–4.3.

    Examples
    --------
    >>> import numpy as np
    >>> batch = Copy().sample(4, np.random.default_rng(0), level=5)
    >>> batch.inputs.shape, batch.targets.shape
    ((11, 4, 9), (11, 4, 8))
    """

    bits: int = 8
    min_length: int = 1
    max_length: int = 20

    def __post_init__(self):
        _check_int(self.bits, "bits", minimum=1)
        _check_int(self.min_length, "min_length", minimum=1)
        _check_int(self.max_length, "max_length", minimum=1)
        _check_order(self.min_length, "min_length", self.max_length, "max_length")

    @property
    def input_size(self) -> int:
        return self.bits + 1

    @property
    def output_size(self) -> int:
        return self.bits

    @property
    def level_range(self) -> tuple[int, int]:
        """``(min_length, max_length)``: the level is the sequence length."""
        return (self.min_length, self.max_length)

    def _sequence(self, n: int, rng: np.random.Generator) -> _Sequence:
        bits = self.bits
        pattern = _binary(rng, (n, bits))  # (L, bits)
        T = 2 * n + 1
        x = np.zeros((T, bits + 1))
        x[:n, :bits] = pattern
        x[n, bits] = 1.0  # delimiter
        y = np.zeros((T, bits))
        y[n + 1 :] = pattern  # recall phase
        m = np.zeros((T, bits))
        m[n + 1 :] = 1.0
        return _Sequence(x, y, m)


@dataclass(frozen=True)
class RepeatCopy(Task):
    r"""Repeat Copy: read a pattern and a repeat count, write the pattern that many times, then stop.

    Each sequence draws a pattern length L from ``min_length..max_length`` (or ``level``) and,
    independently, a repeat count R from ``min_repeats..max_repeats``.

    Parameters
    ----------
    bits : int
        Width of each random vector (8).
    min_length, max_length : int
        Range of the pattern length L (1–10 in the NTM paper). The level is L.
    min_repeats, max_repeats : int
        Range of the repeat count R (1–10 in the NTM paper); always drawn per sequence.

    Notes
    -----
    One sequence lasts ``L + 2 + L R + 1`` steps. Input channels (``input_size = bits + 2``)::

        step          0 .. L-1   L          L+1         L+2 ..
        ch 0..bits-1  pattern    0          0           0
        ch bits       0          1 (delim)  0           0
        ch bits+1     0          0          c(R)        0

    The count is normalised to mean 0 and variance 1 under the uniform distribution over the
    repeat range, as in pytorch-ntm:

    .. math::

        c(R) = \frac{R - \mu}{\sigma}, \quad \mu = \frac{R_{min} + R_{max}}{2}, \quad
        \sigma^2 = \frac{(R_{max} - R_{min} + 1)^2 - 1}{12}

    (σ = 1 when ``min_repeats == max_repeats``, so the count reads 0).

    Output channels (``output_size = bits + 1``): during steps ``L+2 .. L+1+L R`` the target is the
    pattern repeated R times with channel ``bits`` at 0; at the last step ``L+2+L R`` the target is
    all zeros except the end marker, channel ``bits`` = 1. The mask is 1 on every output channel
    over these ``L R + 1`` steps, so the model is also scored on *not* stopping early.

    References
    ----------
    Graves, Wayne & Danihelka (2014), *Neural Turing Machines*, arXiv:1410.5401, §4.2.
    """

    bits: int = 8
    min_length: int = 1
    max_length: int = 10
    min_repeats: int = 1
    max_repeats: int = 10

    def __post_init__(self):
        _check_int(self.bits, "bits", minimum=1)
        _check_int(self.min_length, "min_length", minimum=1)
        _check_int(self.max_length, "max_length", minimum=1)
        _check_order(self.min_length, "min_length", self.max_length, "max_length")
        _check_int(self.min_repeats, "min_repeats", minimum=1)
        _check_int(self.max_repeats, "max_repeats", minimum=1)
        _check_order(self.min_repeats, "min_repeats", self.max_repeats, "max_repeats")

    @property
    def input_size(self) -> int:
        return self.bits + 2

    @property
    def output_size(self) -> int:
        return self.bits + 1

    @property
    def level_range(self) -> tuple[int, int]:
        """``(min_length, max_length)``: the level is the pattern length."""
        return (self.min_length, self.max_length)

    @property
    def repeat_mean(self) -> float:
        """μ, the mean of the uniform distribution over ``min_repeats..max_repeats``."""
        return (self.min_repeats + self.max_repeats) / 2

    @property
    def repeat_std(self) -> float:
        """σ, its standard deviation (1.0 when the range is a single count)."""
        var = ((self.max_repeats - self.min_repeats + 1) ** 2 - 1) / 12
        return math.sqrt(var) if var > 0 else 1.0

    def _sequence(self, n: int, rng: np.random.Generator) -> _Sequence:
        bits = self.bits
        pattern = _binary(rng, (n, bits))  # (L, bits)
        R = int(rng.integers(self.min_repeats, self.max_repeats + 1))
        start = n + 2  # first output step
        end = start + n * R  # the end-marker step
        T = end + 1
        x = np.zeros((T, bits + 2))
        x[:n, :bits] = pattern
        x[n, bits] = 1.0  # delimiter
        x[n + 1, bits + 1] = (R - self.repeat_mean) / self.repeat_std
        y = np.zeros((T, bits + 1))
        y[start:end, :bits] = np.tile(pattern, (R, 1))  # (L R, bits)
        y[end, bits] = 1.0  # end marker
        m = np.zeros((T, bits + 1))
        m[start:] = 1.0
        return _Sequence(x, y, m)
