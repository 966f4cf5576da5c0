r"""A sparse memory written in place, with everything rollback BPTT needs (SAM, and SDNC next).

:class:`SparseMemory` holds, for a batch of B sequences:

- ``memory``: the live (B, N, W) array, written in place (allocated once per batch size);
- ``index``: the nearest-neighbour index over its rows (exact ``LinearIndex`` or ``LSHIndex``);
- ``ring``: the usage ring (least recently accessed slot in O(1));
- ``grad``: a :class:`RowGradAccumulator`, the memory's gradient over the rows a pass touched.

A step talks to it in the paper's order — :meth:`write` (returning the old rows and the index's
journal), :meth:`query`, :meth:`gather`, :meth:`touch` (the usage rule: slots whose summed weight
exceeds δ move to the back of the ring) — and keeps the :class:`StepJournal` it is given.
:meth:`revert` undoes one step exactly (rows, index lists, ring), newest first; :meth:`reapply`
redoes one, oldest first. Nothing here looks at all N rows except :meth:`prepare` (once per
batch size) and the exact index's query.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..kernels import gather_rows_kernel
from ..kernels.sparse_write import accessed_slots_kernel, restore_rows_kernel
from ..ops.sparse import sparse_write_inplace
from .accumulator import RowGradAccumulator
from .ring import RingJournal, UsageRing


class StepJournal(NamedTuple):
    """What one step changed, so that :meth:`SparseMemory.revert` restores it bit for bit."""

    rows: np.ndarray  # int (B, J)     rows written, in the order written (J = H·(K+1) in SAM)
    old_rows: np.ndarray  # (B, J, W)      their contents before the write
    index: Any  # the index's journal of its update of those rows
    ring: RingJournal | None  # the ring's moves (None until touch)
    new_rows: np.ndarray | None  # (B, J, W)      the rows after the write (kept only to reapply)


class SparseMemory:
    """The in-place (B, N, W) memory with its index, usage ring and row-gradient table.

    Parameters
    ----------
    num_slots, word_size : int
        N and W.
    index_factory : callable
        ``memory -> index`` (see :func:`refmann.memory.make_index_factory`).
    """

    def __init__(self, num_slots: int, word_size: int, index_factory):
        self.N, self.W, self.index_factory = num_slots, word_size, index_factory
        self.B = None
        self.memory = self.index = self.ring = self.grad = None
        self.dirty = False  # True after steps that were not rolled back (the step API)

    # -- set-up -----------------------------------------------------------------------------------------
    def prepare(self, B: int, dtype, memory0) -> None:
        """Allocate memory, ring, index and gradient table for batch size B, all rows equal to ``memory0``
        (O(N); only when B or the dtype changes, or after :attr:`dirty` steps)."""
        dtype = np.dtype(dtype)
        if self.B == B and self.memory.dtype == dtype and not self.dirty:
            return
        self.B, self.dirty = B, False
        self.memory = np.ascontiguousarray(np.broadcast_to(memory0, (B, self.N, self.W)).astype(dtype))
        self.grad = RowGradAccumulator(B, self.W, dtype)
        self.ring = UsageRing(B, self.N)
        self.index = self.index_factory(self.memory)
        self.index.rebuild()

    def nbytes(self) -> dict[str, int]:
        """Bytes held by each part (after :meth:`prepare`)."""
        return {
            "memory": self.memory.nbytes,
            "index": self.index.nbytes(),
            "usage ring": self.ring.nbytes(),
            "gradient table": self.grad.nbytes(),
        }

    # -- one step -----------------------------------------------------------------------------------------
    def least_recent(self, count: int) -> np.ndarray:
        """int (B, count): the ``count`` least recently accessed slots, oldest first."""
        return self.ring.oldest(count)

    def write(self, weights, add, *, indices, erase_indices, fused=True, keep_new_rows=False):
        """Erase ``erase_indices``, add ``weights ⊗ add`` on ``indices`` (B, H, J), re-index the rows.

        Returns ``(journal, cache)``: the :class:`StepJournal` (ring moves still empty: see :meth:`touch`)
        and the write op's cache (:func:`refmann.ops.sparse_write_inplace`).
        """
        old_rows, cache = sparse_write_inplace(
            self.memory, weights, add, indices=indices, erase_indices=erase_indices, fused=fused
        )
        rows = np.ascontiguousarray(cache.indices.reshape(self.B, -1))
        index_journal = self.index.update(rows)
        new_rows = self.gather(rows) if keep_new_rows else None
        return StepJournal(rows, old_rows, index_journal, None, new_rows), cache

    def query(self, keys, k: int) -> np.ndarray:
        """int (B, H, k): the index's k candidates for each query (B, H, W)."""
        return self.index.query(keys, k)

    def gather(self, indices) -> np.ndarray:
        """memory[b, indices[b, ...]] -> (B, ..., W), a copy."""
        B = indices.shape[0]
        flat = np.ascontiguousarray(indices.reshape(B, -1))
        out = np.empty((B, flat.shape[1], self.W), self.memory.dtype)
        gather_rows_kernel(out, self.memory, flat)
        return out.reshape(indices.shape + (self.W,))

    def touch(self, slots, values, delta: float, t: float, journal: StepJournal):
        """The usage rule: slots (B, J) whose summed ``values`` exceed δ get time t (back of the ring).

        Returns ``(touched, journal)``: int (B, J) the accessed slots ascending, −1 padded, and the
        step's journal with the ring's moves filled in.
        """
        slots = np.ascontiguousarray(slots)
        touched = np.empty_like(slots)
        accessed_slots_kernel(slots, np.ascontiguousarray(values), delta, touched)
        return touched, journal._replace(ring=self.ring.touch(touched, t))

    # -- rollback -----------------------------------------------------------------------------------------
    def revert(self, journal: StepJournal) -> None:
        """Undo one step: rows from the journal (in reverse order), their index entries, the ring."""
        restore_rows_kernel(self.memory, journal.rows, journal.old_rows)
        self.index.undo(journal.index)
        if journal.ring is not None:
            self.ring.undo(journal.ring)

    def reapply(self, journal: StepJournal, t: float) -> None:
        """Redo one reverted step (its rows, index update, ring moves at time t); needs ``new_rows``."""
        restore_rows_kernel(self.memory, journal.rows, journal.new_rows)
        self.index.update(journal.rows)
        self.ring.touch(journal.ring.slots, t)

    def end_pass(self) -> None:
        """Between sequences: let the index rebuild if enough insertions accumulated (amortised O(1))."""
        self.index.maybe_rebuild()
