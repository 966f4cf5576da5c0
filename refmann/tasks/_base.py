"""What every algorithmic task shares: the ``Batch`` it returns, the bit-error metric, padding, checks.

A task lays out *one* sequence at a time (``_sequence``), as a paper's figure would draw it; the
base class draws the per-sequence difficulty, stacks the sequences time-major and pads the short
ones with zeros that are never scored (mask 0).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from refmann._checks import as_float_array


class Batch(NamedTuple):
    """A time-major batch of task sequences.

    Sequences shorter than the longest one in the batch are padded at the end with zeros in all
    three arrays, so padding is never scored.

    Attributes
    ----------
    inputs : ndarray, shape (T, B, X)
        What the model reads at each step (float64).
    targets : ndarray, shape (T, B, Y)
        Binary targets (float64); zero wherever ``mask`` is zero.
    mask : ndarray, shape (T, B, Y)
        1.0 where the output is scored, 0.0 elsewhere (float64).
    """

    inputs: np.ndarray  # (T, B, X)
    targets: np.ndarray  # (T, B, Y)
    mask: np.ndarray  # (T, B, Y)


class _Sequence(NamedTuple):
    """One sequence before padding."""

    inputs: np.ndarray  # (T_b, X)
    targets: np.ndarray  # (T_b, Y)
    mask: np.ndarray  # (T_b, Y)


def bit_errors(logits, batch: Batch) -> np.ndarray:
    r"""Thresholded bit errors per sequence, counting only scored entries.

    The metric of the NTM and SAM papers ("bits per sequence"), as pytorch-ntm computes it.

    Parameters
    ----------
    logits : ndarray, shape (T, B, Y)
        Pre-sigmoid outputs; an output bit is 1 where ``logits > 0``.
    batch : Batch
        The batch the logits were computed for.

    Returns
    -------
    errors : ndarray, shape (B,)
        float64 counts of wrong scored bits per sequence.

    Notes
    -----
    .. math::

        e_b = \sum_{t, y} m_{t b y} \, \lvert [\ell_{t b y} > 0] - y^*_{t b y} \rvert

    References
    ----------
    Graves, Wayne & Danihelka (2014), *Neural Turing Machines*, arXiv:1410.5401, §4.
    Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
    arXiv:1610.09027, §4.2.
    """
    if not isinstance(batch, Batch):
        raise TypeError(f"batch: expected a refmann.tasks.Batch, got {type(batch).__name__}")
    logits = as_float_array(logits, "logits", ndim=3)
    if logits.shape != batch.targets.shape:
        raise ValueError(f"logits: expected shape {batch.targets.shape} (batch.targets), got {logits.shape}")
    wrong = np.abs((logits > 0) - batch.targets)  # (T, B, Y)
    return np.sum(batch.mask * wrong, axis=(0, 2))  # (B,)


# ----------------------------------------------------------------------------- checks


def _check_int(value, name: str, *, minimum: int) -> int:
    """Return ``value`` as an int, or raise naming ``name`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _check_order(lo: int, lo_name: str, hi: int, hi_name: str) -> None:
    if lo > hi:
        raise ValueError(f"{lo_name}: expected {lo_name} <= {hi_name} (= {hi}), got {lo}")


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng: expected a numpy.random.Generator (e.g. np.random.default_rng(0)), got {type(rng).__name__}"
        )
    return rng


def _check_distinct_capacity(width: int, width_desc: str, count: int, count_name: str) -> None:
    """Raise unless 2**width >= count, so ``count`` distinct binary rows of ``width`` bits exist."""
    if 2**width < count:
        raise ValueError(
            f"{count_name}: expected at most 2**{width_desc} = {2**width} (the number of distinct "
            f"binary patterns), got {count}"
        )


# ----------------------------------------------------------------------------- helpers


def _binary(rng: np.random.Generator, shape) -> np.ndarray:
    """Uniform random bits as float64."""
    return rng.integers(0, 2, size=shape).astype(np.float64)


def _distinct_rows(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """``n`` uniform random binary rows of ``width`` bits, all different, shape (n, width).

    Draws all rows, then redraws every row equal to an earlier one until none is left (rejection
    sampling: the result is uniform over sets of distinct rows). Requires ``2**width >= n``.
    """
    rows = rng.integers(0, 2, size=(n, width))  # (n, width)
    while True:
        _, first = np.unique(rows, axis=0, return_index=True)
        if first.size == n:
            return rows.astype(np.float64)
        repeated = np.ones(n, dtype=bool)
        repeated[first] = False
        rows[repeated] = rng.integers(0, 2, size=(int(repeated.sum()), width))


def _stack(seqs: list[_Sequence], input_size: int, output_size: int) -> Batch:
    """Stack sequences time-major, padding each at the end with zeros (mask 0) to the longest."""
    T = max(s.inputs.shape[0] for s in seqs)
    B = len(seqs)
    inputs = np.zeros((T, B, input_size))  # (T, B, X)
    targets = np.zeros((T, B, output_size))  # (T, B, Y)
    mask = np.zeros((T, B, output_size))  # (T, B, Y)
    for b, s in enumerate(seqs):
        t = s.inputs.shape[0]
        inputs[:t, b] = s.inputs
        targets[:t, b] = s.targets
        mask[:t, b] = s.mask
    return Batch(inputs, targets, mask)


def error_rate(logits, batch: Batch) -> np.ndarray:
    r"""Fraction of scored positions whose most likely class is wrong, per sequence.

    The metric of the classification tasks (bAbI answers, one-shot episode labels, next tokens),
    which train on ``"softmax_ce"``.

    Parameters
    ----------
    logits : ndarray, shape (T, B, Y)
        Class scores.
    batch : Batch
        ``targets`` int (T, B) class indices, ``mask`` (T, B) 1 where scored.

    Returns
    -------
    errors : ndarray, shape (B,)
        :math:`e_b = \sum_t m_{tb} [\arg\max_y \ell_{tby} \ne y^*_{tb}] / \sum_t m_{tb}` (0 where nothing is scored).
    """
    if not isinstance(batch, Batch):
        raise TypeError(f"batch: expected a refmann.tasks.Batch, got {type(batch).__name__}")
    logits = as_float_array(logits, "logits", ndim=3)
    if logits.shape[:2] != batch.targets.shape[:2] or batch.targets.ndim != 2:
        raise ValueError(f"logits: expected shape (T, B, Y) with (T, B) = {batch.targets.shape}, got {logits.shape}")
    wrong = (np.argmax(logits, axis=-1) != batch.targets).astype(np.float64)  # (T, B)
    scored = np.sum(batch.mask, axis=0)
    return np.where(scored > 0, np.sum(batch.mask * wrong, axis=0) / np.maximum(scored, 1), 0.0)


class Task:
    """Base class of the tasks: sampling, levels, and the loss and metric they are scored with.

    A subclass is a frozen dataclass of its configuration that defines ``input_size``,
    ``output_size``, ``level_range`` and ``_sequence(n, rng)``, which lays out one sequence of
    difficulty ``n``. The BPTT engine and the trainer ask the task for its loss (``loss``, a name
    from :data:`refmann.models.LOSSES`) and its metric (:meth:`metric`, named ``metric_name``,
    labelled ``metric_label``, "learned" below ``metric_target``). The algorithmic tasks use
    sigmoid cross-entropy and bit errors; a classification task sets ``loss = "softmax_ce"`` and
    uses :func:`error_rate`.
    """

    loss = "sigmoid_ce"
    metric_name = "bit_errors"
    metric_label = "bit errors per sequence"
    metric_target = 1.0

    def metric(self, logits, batch: Batch) -> np.ndarray:
        """The task's metric per sequence, shape (B,): bit errors for the algorithmic tasks."""
        return bit_errors(logits, batch)

    @property
    def input_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def output_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def level_range(self) -> tuple[int, int]:  # pragma: no cover - abstract
        """``(lowest, highest)`` level accepted by :meth:`sample` (inclusive)."""
        raise NotImplementedError

    def _sequence(self, n: int, rng: np.random.Generator) -> _Sequence:  # pragma: no cover - abstract
        raise NotImplementedError

    def _default_levels(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Levels used when ``level=None``: uniform over ``level_range``, one per sequence."""
        lo, hi = self.level_range
        return rng.integers(lo, hi + 1, size=batch_size)

    def sample(self, batch_size: int, rng: np.random.Generator, *, level: int | None = None) -> Batch:
        """Draw a batch of sequences.

        Parameters
        ----------
        batch_size : int
            Number of sequences B (>= 1).
        rng : numpy.random.Generator
            The only source of randomness; the same seed gives the same batch.
        level : int, optional
            Difficulty of every sequence in the batch (see the task's ``level_range``), for a
            curriculum. ``None`` draws a level per sequence (see the task's docstring).

        Returns
        -------
        Batch
            ``inputs`` (T, B, X), ``targets`` (T, B, Y), ``mask`` (T, B, Y), float64, where T is
            the length of the longest sequence; shorter sequences are zero-padded with mask 0.
        """
        batch_size = _check_int(batch_size, "batch_size", minimum=1)
        _check_rng(rng)
        if level is None:
            levels = self._default_levels(batch_size, rng)
        else:
            lo, hi = self.level_range
            if isinstance(level, bool) or not isinstance(level, numbers.Integral):
                raise TypeError(f"level: expected an integer in [{lo}, {hi}] or None, got {type(level).__name__}")
            if not lo <= level <= hi:
                raise ValueError(f"level: expected an integer in [{lo}, {hi}] for {self!r}, got {level}")
            levels = np.full(batch_size, int(level))
        seqs = [self._sequence(int(n), rng) for n in levels]
        return _stack(seqs, self.input_size, self.output_size)

    def bit_errors(self, logits, batch: Batch) -> np.ndarray:
        """Thresholded bit errors per sequence over scored entries; see :func:`bit_errors`."""
        return bit_errors(logits, batch)
