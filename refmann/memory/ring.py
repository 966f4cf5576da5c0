"""The usage ring of SAM (Rae et al. 2016, Supp. A.3): slots in order of last access, O(1) per touch."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_index_array, check_finite_real, check_positive_int, check_shape, enabled
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

    The kernels behind it trust their arguments, so every method checks its own at the boundary
    (slots in range, one row per batch element) unless called inside :func:`refmann._checks.unchecked`
    (a model's steps, whose slots come from the ring and the index).

    Parameters
    ----------
    batch_size, num_slots : int
        B and N (N < 2**31: the links are int32).
    """

    def __init__(self, batch_size: int, num_slots: int):
        self.B = check_positive_int(batch_size, "batch_size")
        self.N = check_positive_int(num_slots, "num_slots")
        if self.N >= 2**31:
            raise ValueError(f"num_slots: expected fewer than 2**31 slots (the ring's links are int32), got {self.N}")
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
        if type(count) is not int or not 1 <= count <= self.N:  # (the common case costs one comparison)
            count = check_positive_int(count, "count")
            if count > self.N:
                raise ValueError(f"count: expected 1 <= count <= {self.N} (the number of slots), got {count}")
        out = np.empty((self.B, count), np.int64)
        ring_oldest_kernel(self.nxt, self.head, count, out)
        return out

    def touch(self, slots: np.ndarray, t: float) -> RingJournal:
        """Move ``slots`` to the back in the given order and stamp them with ``t``.

        Parameters
        ----------
        slots : int ndarray of shape (B, J)
            Row b lists slots of ring b in ``[0, N)``; −1 entries are padding (skipped), so rows may
            list different numbers of slots. A slot listed twice moves twice (it ends at the back).
        t : float
            The timestamp (finite).

        Returns
        -------
        RingJournal
            What :meth:`undo` needs to revert this touch.
        """
        if enabled():
            slots = as_index_array(slots, "slots", upper=self.N, shape=(self.B, None), padding=True)
            t = check_finite_real(t, "t")
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
        if enabled():
            self._check_journal(journal)
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

    def _check_journal(self, journal) -> None:
        """A journal of this ring's shape, slots and links in range (what the undo kernel indexes with)."""
        if not isinstance(journal, RingJournal):
            raise TypeError(f"journal: expected the RingJournal a touch returned, got {type(journal).__name__}")
        slots = as_index_array(journal.slots, "journal.slots", upper=self.N, shape=(self.B, None), padding=True)
        for name in ("prev", "next", "head", "stamp"):
            check_shape(np.asarray(getattr(journal, name)), f"journal.{name}", slots.shape)
        used = slots >= 0  # the kernel reads the links of the touched entries only
        for name in ("prev", "next", "head"):
            as_index_array(np.asarray(getattr(journal, name))[used], f"journal.{name}", upper=self.N)

    @staticmethod
    def nbytes_for(batch_size: int, num_slots: int) -> int:
        """Bytes a ring of this size holds (int32 links, int64 heads, float64 timestamps), before building one."""
        return batch_size * (num_slots * (4 + 4 + 8) + 8)

    def nbytes(self) -> int:
        """Bytes held by the ring (links, heads, timestamps)."""
        return self.nxt.nbytes + self.prv.nbytes + self.head.nbytes + self.stamps.nbytes

    def order(self, b: int = 0) -> np.ndarray:
        """All slots of ring ``b``, oldest first (O(N): for tests and pictures)."""
        b = check_positive_int(b, "b", minimum=0)
        if b >= self.B:
            raise ValueError(f"b: expected a batch element in [0, {self.B}), got {b}")
        out = np.empty(self.N, np.int64)
        s = self.head[b]
        for j in range(self.N):
            out[j] = s
            s = self.nxt[b, s]
        return out
