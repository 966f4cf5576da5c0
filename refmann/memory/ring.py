"""The usage ring of SAM (Rae et al. 2016, Supp. A.3): slots in order of last access, O(1) per touch."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.ring import ring_oldest_kernel, ring_touch_kernel, ring_undo_kernel


class RingJournal(NamedTuple):
    """What one :meth:`UsageRing.touch` changed, so :meth:`UsageRing.undo` can revert it."""

    slots: np.ndarray  # int (B, J), -1 = padding
    prev: np.ndarray  # int (B, J)
    next: np.ndarray  # int (B, J)
    head: np.ndarray  # int (B, J)
    stamp: np.ndarray  # float (B, J)


class UsageRing:
    """One least-recently-accessed ring per batch element, with timestamps beside it.

    Untouched slots start in index order with timestamps −N..−1, so they leave in index order, and
    :meth:`oldest` agrees with an argmin over timestamps (ties by index) — the definition DAM's
    ``usage="timestamp"`` uses.

    Parameters
    ----------
    batch_size, num_slots : int
    """

    def __init__(self, batch_size: int, num_slots: int):
        self.B, self.N = batch_size, num_slots
        self.reset()

    def reset(self):
        """Index order, timestamps −N..−1 (O(N): initialisation only)."""
        B, N = self.B, self.N
        idx = np.arange(N, dtype=np.int32)  # N < 2**31: int32 links halve the ring's footprint
        self.nxt = np.tile((idx + 1) % N, (B, 1))
        self.prv = np.tile((idx - 1) % N, (B, 1))
        self.head = np.zeros(B, np.int64)
        self.stamps = np.tile(np.arange(-N, 0, dtype=np.float64), (B, 1))

    def oldest(self, count: int) -> np.ndarray:
        """The ``count`` least recently accessed distinct slots per batch element, (B, count), oldest first."""
        if not 1 <= count <= self.N:
            raise ValueError(f"count: expected 1 <= count <= {self.N}, got {count}")
        out = np.empty((self.B, count), np.int64)
        ring_oldest_kernel(self.nxt, self.head, count, out)
        return out

    def touch(self, slots: np.ndarray, t: float) -> RingJournal:
        """Move ``slots`` (int (B, J), −1 = none) to the back in the given order and stamp them with ``t``."""
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        shape = slots.shape
        journal = RingJournal(
            slots,
            np.empty(shape, np.int32),
            np.empty(shape, np.int32),
            np.empty(shape, np.int64),
            np.empty(shape, np.float64),
        )
        ring_touch_kernel(
            self.nxt,
            self.prv,
            self.head,
            self.stamps,
            slots,
            float(t),
            journal.prev,
            journal.next,
            journal.head,
            journal.stamp,
        )
        return journal

    def undo(self, journal: RingJournal) -> None:
        """Revert one :meth:`touch`; touches must be undone newest first."""
        ring_undo_kernel(
            self.nxt,
            self.prv,
            self.head,
            self.stamps,
            journal.slots,
            journal.prev,
            journal.next,
            journal.head,
            journal.stamp,
        )

    def nbytes(self) -> int:
        """Bytes held by the ring (links, heads, timestamps)."""
        return self.nxt.nbytes + self.prv.nbytes + self.head.nbytes + self.stamps.nbytes

    def order(self, b: int = 0) -> np.ndarray:
        """All slots of ring ``b``, oldest first (O(N): for tests and pictures)."""
        out = np.empty(self.N, np.int64)
        s = self.head[b]
        for j in range(self.N):
            out[j] = s
            s = self.nxt[b, s]
        return out
