"""∂L/∂M for the rows a sequence touched, and nothing else (Rae et al. 2016, §3.4: O(1) space per step)."""

from __future__ import annotations

import numpy as np

from .._checks import (
    as_float_array,
    as_index_array,
    check_dtype,
    check_positive_int,
    check_shape,
    enabled,
)
from ..kernels.rowacc import rowacc_add_kernel, rowacc_gather_kernel, rowacc_rehash_kernel, rowacc_zero_kernel
from ..ops.memory import RowGrad


class RowGradAccumulator:
    """A (B, N, W) gradient stored only on the rows it was given — a hash from slot to pool row per batch
    element, growing by doubling, so its size follows the rows touched and not N.

    It behaves like a dense zero-initialised (B, N, W) array restricted to three operations:
    :meth:`add` (scatter-add, duplicates accumulate), :meth:`gather` (absent rows read as zero) and
    :meth:`zero`. :meth:`to_rowgrad` hands the result out as a :class:`~refmann.ops.RowGrad`, each
    touched row listed once; :meth:`clear` empties it in O(rows held).

    Indices are checked at the boundary (integer, one row per batch element, in ``[0, num_rows)``, −1
    for padding where a method says so) unless inside :func:`refmann._checks.unchecked`.

    Parameters
    ----------
    batch_size, word_size : int
    dtype : numpy dtype
        float32 or float64.
    capacity : int
        Initial pool rows per batch element (grows as needed).
    num_rows : int, optional
        N, the rows of the dense array this stands for: indices must lie in ``[0, N)``. Default: any
        non-negative slot below 2**62 (the table itself needs no N).
    """

    def __init__(self, batch_size: int, word_size: int, dtype, capacity: int = 64, *, num_rows: int | None = None):
        self.B = check_positive_int(batch_size, "batch_size")
        self.W = check_positive_int(word_size, "word_size")
        self.dtype = check_dtype(dtype)
        capacity = check_positive_int(capacity, "capacity", minimum=0)
        self.num_rows = None if num_rows is None else check_positive_int(num_rows, "num_rows")
        self.count = np.zeros(batch_size, np.int64)
        self._allocate(max(1, capacity))

    def _allocate(self, capacity):
        B, W = self.B, self.W
        old = getattr(self, "pool", None)
        size = 1 << int(np.ceil(np.log2(2 * capacity)))
        self.keys = np.full((B, size), -1, np.int64)
        self.where = np.zeros((B, size), np.int64)
        slot_of, pool = np.full((B, capacity), -1, np.int64), np.zeros((B, capacity, W), self.dtype)
        if old is not None:
            used = old.shape[1]
            slot_of[:, :used], pool[:, :used] = self.slot_of, old
        self.slot_of, self.pool = slot_of, pool
        rowacc_rehash_kernel(self.keys, self.where, self.slot_of, self.count)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` new rows per batch element (a kernel that adds rows itself needs it)."""
        self._reserve(check_positive_int(extra, "extra", minimum=0) if enabled() else extra)

    def _reserve(self, extra):
        need = int(self.count.max()) + extra
        if need > self.pool.shape[1]:
            self._allocate(max(need, 2 * self.pool.shape[1]))

    @property
    def rows_held(self) -> int:
        """The most distinct rows held by one batch element."""
        return int(self.count.max())

    def _indices(self, indices, name="indices", *, ndim=2):
        """``indices`` checked: integer, (B, J) (``ndim=None``: (B, ...)), in [0, num_rows) or −1."""
        upper = 2**62 if self.num_rows is None else self.num_rows
        shape = (self.B, None) if ndim == 2 else None
        arr = as_index_array(indices, name, upper=upper, shape=shape, padding=True)
        if ndim is None and (arr.ndim < 1 or arr.shape[0] != self.B):
            raise ValueError(f"{name}: expected shape ({self.B}, ...) (one row per batch element), got {arr.shape}")
        return arr

    def add(self, indices, rows):
        """``G[b, indices[b, j]] += rows[b, j]`` (int (B, J), (B, J, W); −1 = padding)."""
        if enabled():
            indices = self._indices(indices)
            rows = as_float_array(rows, "rows", ndim=3)
            check_shape(rows, "rows", (self.B, indices.shape[1], self.W))
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        self._reserve(indices.shape[1])
        rowacc_add_kernel(
            self.keys,
            self.where,
            self.slot_of,
            self.count,
            self.pool,
            indices,
            np.ascontiguousarray(rows, dtype=self.dtype),
        )

    def gather(self, indices):
        """``G[b, indices[b, ...]]``, shape indices.shape + (W,); rows never added (and −1) read as zero."""
        if enabled():
            indices = self._indices(indices, ndim=None)
        B = indices.shape[0]
        flat = np.ascontiguousarray(indices.reshape(B, -1), dtype=np.int64)
        out = np.empty((B, flat.shape[1], self.W), self.dtype)
        rowacc_gather_kernel(self.keys, self.where, self.pool, flat, out)
        return out.reshape(indices.shape + (self.W,))

    def zero(self, indices):
        """``G[b, indices[b, j]] = 0`` (int (B, J); −1 = padding)."""
        if enabled():
            indices = self._indices(indices)
        rowacc_zero_kernel(self.keys, self.where, self.pool, np.ascontiguousarray(indices, dtype=np.int64))

    def to_rowgrad(self, num_rows: int) -> RowGrad:
        """The held rows as a RowGrad, each touched row once, in order of first touch; batch elements
        holding fewer rows are padded at the end with zero rows at their first index (0 if none), so
        ``densify_rows`` gives the dense gradient."""
        num_rows = check_positive_int(num_rows, "num_rows")
        R = max(1, int(self.count.max()))
        if enabled() and self.count.max() > 0:
            held = max(int(self.slot_of[b, : self.count[b]].max()) for b in range(self.B) if self.count[b])
            if held >= num_rows:
                raise ValueError(f"num_rows: expected more than the largest row held, {held}, got {num_rows}")
        indices = np.zeros((self.B, R), np.int64)
        rows = np.zeros((self.B, R, self.W), self.dtype)
        for b in range(self.B):
            n = int(self.count[b])
            indices[b, :n], rows[b, :n] = self.slot_of[b, :n], self.pool[b, :n]
            indices[b, n:] = self.slot_of[b, 0] if n else 0
        return RowGrad(indices, rows, num_rows)

    def clear(self):
        """Forget every row (O(table size), which follows the rows held, not N)."""
        self.keys.fill(-1)
        self.count[:] = 0

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.keys, self.where, self.slot_of, self.pool, self.count))
