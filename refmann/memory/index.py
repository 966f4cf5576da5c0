"""Nearest-neighbour indexes over the rows of a memory, one per batch element (Rae et al. 2016, §3.5).

Every index has the same interface::

    index = SomeIndex(memory, ...)      # memory: the (B, N, W) array the model writes in place
    index.rebuild()                     # re-index every row (O(N): initialisation and periodic rebuilds)
    journal = index.update(rows)        # rows (B, J) were modified in place: re-index them (O(J))
    index.undo(journal)                 # revert an update exactly (rollback), newest first
    index.query(keys, k)                # (B, H, W) -> (B, H, k) candidate rows, best first
    index.maybe_rebuild()               # between sequences: rebuild if N insertions have accumulated

An index's answers depend only on the memory and on its own state, and rollback restores that
state exactly, so a model's outputs never depend on what it computed before.

Similarity is cosine (DESIGN decision 3), so the index and the read rank candidates alike.
:class:`LinearIndex` is exact (the oracle); :class:`LSHIndex` is approximate and never scans N.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.lsh import (
    lsh_codes_from_projections_kernel,
    lsh_link_kernel,
    lsh_query_kernel,
    lsh_undo_kernel,
    lsh_update_kernel,
)
from ..ops import cosine_similarity_forward, top_k


def cosine_scores(memory, keys, eps=1e-6):
    """Cosine similarity of each key with every row, (B, H, N): the read's own op, so both rank alike."""
    return cosine_similarity_forward(memory, keys, eps=eps)[0]


class LSHJournal(NamedTuple):
    """What :meth:`LSHIndex.update` changed, so that :meth:`LSHIndex.undo` restores it exactly."""

    rows: np.ndarray  # int (B, J)     the re-hashed rows
    codes: np.ndarray  # int32 (B, J, L)  their old bucket codes, per table
    prev: np.ndarray  # int32 (B, J, L)  their old list neighbours
    next: np.ndarray  # int32 (B, J, L)
    recent: np.ndarray  # int (B, R)     the fill-in ring of recently written rows
    recent_pos: int  # its write position


class LinearIndex:
    """Exact cosine top-k by a scan of every row: O(N·W) per query. The oracle for the other indexes."""

    def __init__(self, memory: np.ndarray):
        self.memory = memory

    def rebuild(self):
        """Nothing to build: every query scans the memory."""

    def update(self, rows):
        """Nothing to update: every query scans the memory."""

    def undo(self, journal):
        """Nothing to undo."""

    def maybe_rebuild(self):
        """Nothing to rebuild."""

    def query(self, keys, k):
        """The k rows of highest cosine similarity per key, (B, H, k): score descending, ties by index."""
        return top_k(cosine_scores(self.memory, keys), k)[0]

    def nbytes(self) -> int:
        return 0


class LSHIndex:
    """Random-hyperplane LSH (Charikar 2002) for cosine similarity, per batch element.

    ``num_tables`` tables of ``num_bits`` hyperplanes each. A query collects, in every table, up to
    ``max_per_bucket`` rows from its own bucket and from ``probes`` neighbouring buckets (the bits
    with the smallest margins flipped: multi-probe, Lv et al. 2007), then ranks the candidates by
    exact cosine. The work per query is O(num_tables · (probes + 1) · max_per_bucket · W), whatever N is.

    An updated row moves bucket in O(num_tables · num_bits · W), journalled so that rollback
    restores the bucket lists exactly. As in the paper, the whole index is rebuilt after every N
    insertions (amortised O(1)); the rebuild happens between sequences (:meth:`maybe_rebuild`),
    never inside a step, so rollback stays exact. With fixed hyperplanes a rebuild re-packs the
    bucket lists in index order but cannot change which bucket a row is in.

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
        The array the model writes in place; the index keeps a reference.
    num_tables, max_per_bucket, probes : int
        Defaults (16, 16, 4) were chosen from the recall/speed table in ``docs/sam.md``
        (``refmann bench lsh``).
    num_bits : int, optional
        Bits per table; default ``round(log2 N) − 3`` (about 8 rows per bucket), within [4, 24].
    recent : int
        How many recently updated rows are remembered as fill-ins for a query whose buckets are
        nearly empty.
    seed : int
        Seeds the hyperplanes.
    """

    def __init__(self, memory, *, num_tables=16, num_bits=None, max_per_bucket=16, probes=4, recent=16, seed=0):
        from .._checks import check_positive_int

        B, N, W = memory.shape
        if num_bits is None:  # about 8 rows per bucket, so the per-bucket cap rarely truncates
            num_bits = int(min(24, max(4, round(np.log2(N)) - 3)))
        check_positive_int(num_tables, "num_tables")
        check_positive_int(num_bits, "num_bits")
        check_positive_int(max_per_bucket, "max_per_bucket")
        check_positive_int(probes, "probes", minimum=0)
        check_positive_int(recent, "recent", minimum=0)
        if num_bits > 24:
            raise ValueError(f"num_bits: expected at most 24 (2**num_bits buckets per table), got {num_bits}")
        if probes > num_bits:
            raise ValueError(f"probes: expected at most num_bits = {num_bits}, got {probes}")
        self.memory = memory
        self.num_tables, self.num_bits, self.max_per_bucket, self.probes = num_tables, num_bits, max_per_bucket, probes
        rng = np.random.default_rng([seed, 7])
        self.planes = rng.standard_normal((num_tables, num_bits, W))
        i32 = np.int32  # N < 2**31 rows: int32 halves the index's footprint
        # row-major per row: a row's entries for all tables share a cache line (see kernels/lsh.py)
        self._codes = np.zeros((B, N, num_tables), i32)
        self.heads = np.full((B, num_tables, 2**num_bits), -1, i32)
        self._nxt = np.full((B, N, num_tables), -1, i32)
        self._prv = np.full((B, N, num_tables), -1, i32)
        self.recent = np.full((B, max(recent, 1)), -1, np.int64)
        self._recent_pos = 0
        self._seen = np.full((B, N), -1, i32)
        self.last_counts = None  # int (B, H): the rows each query of the last query() scored
        self.insertions = 0
        self.rebuilds = 0

    @property
    def codes(self) -> np.ndarray:
        """Bucket of every row in every table, a (B, num_tables, N) view."""
        return self._codes.transpose(0, 2, 1)

    @property
    def nxt(self) -> np.ndarray:
        """Next row in the same bucket (−1: last), a (B, num_tables, N) view."""
        return self._nxt.transpose(0, 2, 1)

    @property
    def prv(self) -> np.ndarray:
        """Previous row in the same bucket (−1: first), a (B, num_tables, N) view."""
        return self._prv.transpose(0, 2, 1)

    @property
    def planes(self) -> np.ndarray:
        """Hyperplanes, (num_tables, num_bits, W); assigning new ones takes effect at the next rebuild."""
        return self._planes

    @planes.setter
    def planes(self, planes):
        self._planes = np.array(planes, dtype=np.float64)
        L, nbits, W = self._planes.shape
        self._planes_t = np.ascontiguousarray(self._planes.reshape(L * nbits, W).T)  # (W, L·bits)

    def rebuild(self, chunk: int = 65_536):
        """Re-hash every row (O(N)); called at initialisation and after every N insertions.

        The projections come from BLAS, chunk by chunk; a row with a projection too close to zero for
        BLAS's summation order to be trusted is re-projected in the kernels' exact order, so the codes
        equal what :meth:`update` would compute, bit for bit.
        """
        B, N, _ = self.memory.shape
        plane_norms = np.linalg.norm(self._planes_t, axis=0)  # (L·bits,)
        for b in range(B):
            for start in range(0, N, chunk):
                proj = np.asarray(self.memory[b, start : start + chunk], dtype=np.float64) @ self._planes_t
                lsh_codes_from_projections_kernel(
                    self.memory, b, start, proj, self._planes_t, plane_norms, self.num_bits, self._codes
                )
            lsh_link_kernel(b, self._codes, self.heads, self._nxt, self._prv)
        self.insertions = 0
        self.rebuilds += 1

    def update(self, rows):
        """Re-hash the rows (B, J) that were modified in place; returns the journal :meth:`undo` takes."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        B, J = rows.shape
        L = self.num_tables
        journal = LSHJournal(
            rows,
            np.empty((B, J, L), np.int32),
            np.empty((B, J, L), np.int32),
            np.empty((B, J, L), np.int32),
            self.recent.copy(),
            self._recent_pos,
        )
        lsh_update_kernel(
            self.memory,
            self._planes_t,
            self.num_bits,
            rows,
            self._codes,
            self.heads,
            self._nxt,
            self._prv,
            *journal[1:4],
        )
        R = self.recent.shape[1]
        for j in range(min(J, R)):  # a tiny ring buffer of recently written rows
            self.recent[:, (self._recent_pos + j) % R] = rows[:, J - 1 - j]
        self._recent_pos = (self._recent_pos + min(J, R)) % R
        self.insertions += J
        return journal

    def undo(self, journal):
        """Revert one :meth:`update` exactly (bucket lists, fill-in buffer); newest first."""
        lsh_undo_kernel(
            journal.rows, self._codes, self.heads, self._nxt, self._prv, journal.codes, journal.prev, journal.next
        )
        self.recent[:] = journal.recent
        self._recent_pos = journal.recent_pos
        self.insertions -= journal.rows.shape[1]

    def maybe_rebuild(self):
        """Rebuild when N insertions have accumulated since the last rebuild (call between sequences).

        Insertions that were rolled back do not count: undo restores the lists exactly, so after a
        sequence that was fully rolled back the index already *is* its rebuilt state."""
        if self.insertions >= self.memory.shape[1]:
            self.rebuild()

    def query(self, keys, k):
        """Up to the k best candidates per key, (B, H, k), ranked by exact cosine."""
        keys = np.ascontiguousarray(keys, dtype=np.float64)
        B, H, _ = keys.shape
        out = np.empty((B, H, k), np.int64)
        self.last_counts = np.empty((B, H), np.int64)
        lsh_query_kernel(
            self.memory,
            self._planes_t,
            self.num_bits,
            keys,
            k,
            self.max_per_bucket,
            self.probes,
            self.heads,
            self._nxt,
            self.recent,
            out,
            self._seen,
            self.last_counts,
        )
        return out

    def max_candidates(self, k) -> int:
        """The most rows one query can score: every probed bucket full, plus the fill-ins."""
        return self.num_tables * (self.probes + 1) * self.max_per_bucket + self.recent.shape[1] + k

    def nbytes(self) -> int:
        """Bytes held by the index (hyperplanes, codes, bucket lists)."""
        return sum(
            a.nbytes
            for a in (
                self._planes,
                self._planes_t,
                self._codes,
                self.heads,
                self._nxt,
                self._prv,
                self.recent,
                self._seen,
            )
        )
