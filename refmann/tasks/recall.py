"""Associative recall: the NTM form (items, query, next item) and the SAM form (key-value pairs, cue)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refmann.tasks._base import (
    Task,
    _binary,
    _check_distinct_capacity,
    _check_int,
    _check_order,
    _distinct_rows,
    _Sequence,
)


@dataclass(frozen=True)
class AssociativeRecall(Task):
    """Associative recall, NTM form: given a list of items and one of them, output the next item.

    An item is ``item_length`` random binary vectors of ``bits`` bits. Each sequence presents n
    items (n from ``min_items..max_items``, or ``level``), then a query item equal to item q, with
    q uniform over ``0 .. n-2``; the target is item q + 1.

    Parameters
    ----------
    bits : int
        Width of each vector (6 in the NTM paper).
    item_length : int
        Vectors per item (3 in the NTM paper).
    min_items, max_items : int
        Range of the number of items n (2–6 in the NTM paper); ``min_items >= 2``. The level is n.

    Notes
    -----
    Items within a sequence are all different (rejection sampling), so the answer is unique;
    this needs ``2**(bits * item_length) >= max_items``. The query index is drawn from all of
    ``0 .. n-2`` (one public generator never queries item n-2, so its answer is never the last
    item).

    With ``s = item_length + 1``, one sequence lasts ``(n + 2) s`` steps. Input channels
    (``input_size = bits + 2``)::

        step          i*s        i*s+1 .. i*s+item_length  (item i = 0..n-1)
        ch 0..bits-1  0          item i
        ch bits       1 (item)   0
        ch bits+1     0          0

        step          n*s        n*s+1 .. n*s+item_length   n*s+s      then item_length steps
        ch 0..bits-1  0          item q                     0          0
        ch bits       0          0                          0          0
        ch bits+1     1 (query)  0                          1 (query)  0

    Output channels (``output_size = bits``): target item q + 1 during the last ``item_length``
    steps, where the mask is 1 (``item_length * bits`` scored bits per sequence).

    References
    ----------
    Graves, Wayne & Danihelka (2014), *Neural Turing Machines*, arXiv:1410.5401, §4.3.
    """

    bits: int = 6
    item_length: int = 3
    min_items: int = 2
    max_items: int = 6

    def __post_init__(self):
        _check_int(self.bits, "bits", minimum=1)
        _check_int(self.item_length, "item_length", minimum=1)
        _check_int(self.min_items, "min_items", minimum=2)
        _check_int(self.max_items, "max_items", minimum=2)
        _check_order(self.min_items, "min_items", self.max_items, "max_items")
        _check_distinct_capacity(self.bits * self.item_length, "(bits * item_length)", self.max_items, "max_items")

    @property
    def input_size(self) -> int:
        return self.bits + 2

    @property
    def output_size(self) -> int:
        return self.bits

    @property
    def level_range(self) -> tuple[int, int]:
        """``(min_items, max_items)``: the level is the number of items."""
        return (self.min_items, self.max_items)

    def _sequence(self, n: int, rng: np.random.Generator) -> _Sequence:
        bits, L = self.bits, self.item_length
        items = _distinct_rows(rng, n, L * bits).reshape(n, L, bits)  # (n, L, bits)
        q = int(rng.integers(0, n - 1))  # query: 0 .. n-2
        s = L + 1  # steps per item
        T = (n + 2) * s
        x = np.zeros((T, bits + 2))
        listed = x[: n * s].reshape(n, s, bits + 2)  # view: one row per item
        listed[:, 0, bits] = 1.0  # item delimiters
        listed[:, 1:, :bits] = items
        qs = n * s  # query start
        x[qs, bits + 1] = 1.0
        x[qs + 1 : qs + 1 + L, :bits] = items[q]
        x[qs + s, bits + 1] = 1.0
        out = qs + s + 1  # first output step
        y = np.zeros((T, bits))
        y[out:] = items[q + 1]
        m = np.zeros((T, bits))
        m[out:] = 1.0
        return _Sequence(x, y, m)


@dataclass(frozen=True)
class KeyValueRecall(Task):
    """Associative recall, SAM form: given (key, value) pairs and then a cue key, output its value.

    Each sequence presents n pairs (n from ``min_pairs..max_pairs``, or ``level``), then one of the
    keys, chosen uniformly; the target is the value paired with it.

    Parameters
    ----------
    bits : int
        Width of each key and value (the SAM paper does not give it).
    min_pairs, max_pairs : int
        Range of the number of pairs n (3–6 in the SAM paper). The level is n.

    Notes
    -----
    Keys within a sequence are all different (so ``2**bits >= max_pairs``); values need not be.
    One sequence lasts ``2 n + 2`` steps. Input channels (``input_size = bits + 3``)::

        step          2i         2i+1        (pair i = 0..n-1)   2n          2n+1
        ch 0..bits-1  key i      value i                         key c       0
        ch bits       1 (key)    0                               0           0
        ch bits+1     0          1 (value)                       0           0
        ch bits+2     0          0                               1 (cue)     0

    Output channels (``output_size = bits``): target value c at step ``2n + 1``, the only scored
    step (``bits`` scored bits per sequence).

    References
    ----------
    Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
    arXiv:1610.09027, §4.2.
    """

    bits: int = 8
    min_pairs: int = 3
    max_pairs: int = 6

    def __post_init__(self):
        _check_int(self.bits, "bits", minimum=1)
        _check_int(self.min_pairs, "min_pairs", minimum=1)
        _check_int(self.max_pairs, "max_pairs", minimum=1)
        _check_order(self.min_pairs, "min_pairs", self.max_pairs, "max_pairs")
        _check_distinct_capacity(self.bits, "bits", self.max_pairs, "max_pairs")

    @property
    def input_size(self) -> int:
        return self.bits + 3

    @property
    def output_size(self) -> int:
        return self.bits

    @property
    def level_range(self) -> tuple[int, int]:
        """``(min_pairs, max_pairs)``: the level is the number of pairs."""
        return (self.min_pairs, self.max_pairs)

    def _sequence(self, n: int, rng: np.random.Generator) -> _Sequence:
        bits = self.bits
        keys = _distinct_rows(rng, n, bits)  # (n, bits)
        values = _binary(rng, (n, bits))  # (n, bits)
        c = int(rng.integers(0, n))  # cued pair
        T = 2 * n + 2
        x = np.zeros((T, bits + 3))
        x[0 : 2 * n : 2, :bits] = keys
        x[0 : 2 * n : 2, bits] = 1.0
        x[1 : 2 * n : 2, :bits] = values
        x[1 : 2 * n : 2, bits + 1] = 1.0
        x[2 * n, :bits] = keys[c]
        x[2 * n, bits + 2] = 1.0
        y = np.zeros((T, bits))
        y[2 * n + 1] = values[c]
        m = np.zeros((T, bits))
        m[2 * n + 1] = 1.0
        return _Sequence(x, y, m)
