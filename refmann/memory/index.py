"""Nearest-neighbour indexes over the rows of a memory, one per batch element (Rae et al. 2016, §3.5).

Every index has the same interface::

    index = SomeIndex(memory, ...)      # memory: the (B, N, W) array the model writes in place
    index.rebuild()                     # re-index every row (O(N): initialisation and periodic rebuilds)
    journal = index.update(rows)        # rows (B, J) were modified in place: re-index them (O(J))
    index.undo(journal)                 # revert an update exactly (rollback), newest first
    index.query(keys, k)                # (B, H, W) -> (B, H, k) candidate rows, best first
    index.maybe_rebuild()               # between sequences: rebuild if N insertions have accumulated

An index's answers are a function of the memory's current contents and of the index's fixed
parameters, never of the order in which rows were written, updated or undone (for
:class:`LSHIndex`: its hyperplanes and its centre, see there), and rollback restores its state
exactly, so a model's outputs never depend on what it computed before.

Similarity is cosine (DESIGN decision 3), so the index and the read rank candidates alike.
:class:`LinearIndex` is exact (the oracle); :class:`LSHIndex` is approximate and never scans N.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.lsh import (
    SEGMENTS,
    lsh_codes_from_projections_kernel,
    lsh_link_kernel,
    lsh_query_kernel,
    lsh_undo_kernel,
    lsh_update_kernel,
)
from ..ops import cosine_similarity_forward, top_k
from ._lists import ListIndex


def cosine_scores(memory, keys, eps=1e-6):
    """Cosine similarity of each key with every row, (B, H, N): the read's own op, so both rank alike."""
    return cosine_similarity_forward(memory, keys, eps=eps)[0]


class LSHJournal(NamedTuple):
    """What :meth:`LSHIndex.update` changed, so that :meth:`LSHIndex.undo` restores it exactly."""

    rows: np.ndarray  # int (B, J)     the re-hashed rows
    codes: np.ndarray  # int32 (B, J, L)  their old bucket codes, per table (−1: the row did not move)
    prev: np.ndarray  # int32 (B, J, L)  their old list neighbours
    next: np.ndarray  # int32 (B, J, L)


class LinearJournal(NamedTuple):
    """What :meth:`LinearIndex.update` changed: the re-normed rows and their old norms."""

    rows: np.ndarray  # int (B, J)  the updated rows (−1: padding)
    norms: np.ndarray  # (B, J)     their norms before the update


class LinearIndex:
    """Exact cosine top-k by a scan of every row: O(N·W) per query. The oracle for the other indexes.

    It keeps the rows' norms ‖M(i)‖ (B, N), computed at :meth:`rebuild` and re-computed for the rows an
    :meth:`update` names, so a query costs one (H × W)·(W × N) product per batch element and no pass
    over N·W for the norms. The scores are the read's cosine, the same expression on the same numbers
    (:func:`cosine_scores` is the reference; a test checks they are equal bit for bit).
    """

    def __init__(self, memory: np.ndarray):
        self.memory = memory
        self.norms = None  # (B, N) float64, after rebuild()

    def rebuild(self):
        """The norm of every row (O(N·W))."""
        m = self.memory
        self.norms = np.sqrt(np.sum(m * m, axis=-1))

    def update(self, rows):
        """Re-norm ``rows`` (B, J) (in [0, N) or −1, checked), modified in place; returns a :class:`LinearJournal`."""
        from .._checks import check_index_rows, enabled

        if enabled():
            check_index_rows(rows, self.memory)
        if self.norms is None:
            self.rebuild()
        rows = np.asarray(rows)
        b, j = np.nonzero(rows >= 0)
        r = rows[b, j]
        old = np.zeros(rows.shape, self.norms.dtype)
        old[b, j] = self.norms[b, r]
        m = self.memory[b, r]  # (n, W)
        self.norms[b, r] = np.sqrt(np.sum(m * m, axis=-1))
        return LinearJournal(rows.copy(), old)

    def undo(self, journal):
        """Restore the norms an update changed (a repeated row had the same old norm each time)."""
        if journal is None:
            return
        b, j = np.nonzero(journal.rows >= 0)
        self.norms[b, journal.rows[b, j]] = journal.norms[b, j]

    def maybe_rebuild(self):
        """Nothing to rebuild: the norms are kept up to date."""

    def query(self, keys, k, fill=None):
        """The k rows of highest cosine similarity per key, (B, H, k): score descending, ties by index.
        (``fill`` is accepted for the interface's sake: an exact index never needs fill-ins.)"""
        from .._checks import check_index_query, enabled

        if enabled():
            keys, k = check_index_query(keys, k, self.memory)
        if self.norms is None:
            self.rebuild()
        eps = 1e-6  # the read's cosine eps (cosine_scores)
        key_norm = np.sqrt(np.sum(keys * keys, axis=-1, keepdims=True))  # (B, H, 1)
        dots = keys @ self.memory.transpose(0, 2, 1)  # (B, H, N)
        sim = dots / (key_norm * self.norms[:, None, :] + eps)
        return top_k(sim, k)[0]

    def nbytes(self) -> int:
        return 0 if self.norms is None else self.norms.nbytes

    @staticmethod
    def nbytes_for(batch_size: int, num_slots: int, word_size: int) -> int:
        """Bytes of the norms: one float64 per row."""
        return batch_size * num_slots * 8


class LSHIndex(ListIndex):
    """Random-hyperplane LSH (Charikar 2002) for cosine similarity, per batch element.

    ``num_tables`` tables of ``num_bits`` hyperplanes each. A query collects, in every table, up to
    ``max_per_bucket`` rows from its own bucket and from ``probes`` neighbouring buckets (the bits
    with the smallest margins flipped: multi-probe, Lv et al. 2007), then ranks the candidates by
    exact cosine (score descending, ties by index, as :class:`LinearIndex`). The work per query is
    O(num_tables · (probes + 1) · max_per_bucket · W), whatever N is.

    **What the answers are a function of.** Every bucket list is kept sorted by row index, so the
    ``max_per_bucket`` rows a query takes from a bucket are its lowest-indexed rows, and the lists
    are a function of the codes alone. Rows and keys hash relative to :attr:`centre` (bit j of table
    l: [(x − centre) · plane_lj ≥ 0]). So a query's answer is a function of (the memory's current
    contents, :attr:`planes`, :attr:`centre`), whatever the history of updates, undos and rebuilds:
    it equals the answer of a fresh index with the same hyperplanes built by
    ``fresh.rebuild(centre=index.centre)`` on the same memory (tested, exactly). The hyperplanes are
    fixed by ``seed``; the centre is the mean row of each batch element's memory at the last
    :meth:`rebuild` (zero with ``centring=False``), so it moves only at rebuilds. Too few candidates
    are topped up with rows 0, 1, ... (the rows an exact index ranks first among equal scores).

    An updated row moves bucket in O(num_tables · (num_bits · W + the search for its place)): it is
    unlinked in O(1) and inserted at its sorted place, found by walking the bucket from its first row
    in the row's quarter of the index range and by scanning the codes down from the row, side by side
    (about min(s/8, 3 + N/(8s)) hops for a bucket of s rows, at worst about √N/8; see
    ``kernels/lsh.py``). The moves are journalled so that rollback restores the lists
    exactly. As in the paper, the whole index is rebuilt after every N insertions (amortised O(1));
    the rebuild happens between sequences (:meth:`maybe_rebuild`), never inside a step, so rollback
    stays exact. A rebuild re-centres the hashes on the memory's current mean row, which re-files
    rows whose side of a hyperplane changed.

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
        The array the model writes in place; the index keeps a reference.
    num_tables, max_per_bucket, probes : int
        Defaults (16, 16, 4) were chosen from the recall/speed table in ``docs/sam.md``
        (``refmann bench lsh``).
    num_bits : int, optional
        Bits per table; default ``round(log2 N) − 3`` (about 8 rows per bucket), within [4, 24].
    centring : bool
        Hash ``x − centre`` with the centre the mean row at each rebuild (default True). Memories a
        SAM writes share a large common component (its rows lie in a narrow cone), which piles
        them into a few buckets of hundreds of rows; centring halves those buckets and raises
        recall (``docs/sam.md``, ``refmann bench lsh``). On rows spread around the origin the
        mean is near zero and nothing changes.
    seed : int
        Seeds the hyperplanes.
    """

    def __init__(self, memory, *, num_tables=16, num_bits=None, max_per_bucket=16, probes=4, centring=True, seed=0):
        from .._checks import check_positive_int

        self._check_memory_and_seed(memory, seed)
        B, N, W = memory.shape
        if num_bits is None:  # about 8 rows per bucket, so the per-bucket cap rarely truncates
            num_bits = int(min(24, max(4, round(np.log2(N)) - 3)))
        check_positive_int(num_tables, "num_tables")
        check_positive_int(num_bits, "num_bits")
        check_positive_int(max_per_bucket, "max_per_bucket")
        check_positive_int(probes, "probes", minimum=0)
        if not isinstance(centring, (bool, np.bool_)):
            raise TypeError(f"centring: expected True or False, got {centring!r}")
        if num_bits > 24:
            raise ValueError(f"num_bits: expected at most 24 (2**num_bits buckets per table), got {num_bits}")
        if probes > num_bits:
            raise ValueError(f"probes: expected at most num_bits = {num_bits}, got {probes}")
        self._init_lists(memory, num_tables, 2**num_bits, seed)
        self.num_tables, self.num_bits, self.max_per_bucket, self.probes = num_tables, num_bits, max_per_bucket, probes
        self.centring = bool(centring)
        self._centre = np.zeros((B, W), np.float64)  # set by rebuild()
        rng = np.random.default_rng([seed, 7])
        self.planes = rng.standard_normal((num_tables, num_bits, W))
        # the first row of each bucket in each index range but the first (where a sorted insertion starts)
        self._sheads = np.full((B, num_tables, 2**num_bits, SEGMENTS - 1), -1, np.int32)

    @property
    def centre(self) -> np.ndarray:
        """The point rows and keys are hashed relative to, (B, W) float64: the mean row of each batch
        element's memory at the last :meth:`rebuild` (zeros without centring). A copy; to build an
        index that answers exactly as this one, pass it to the other's ``rebuild(centre=...)``."""
        return self._centre.copy()

    @property
    def planes(self) -> np.ndarray:
        """Hyperplanes, (num_tables, num_bits, W); assigning new ones takes effect at the next rebuild."""
        return self._planes

    @planes.setter
    def planes(self, planes):
        self._planes = np.array(planes, dtype=np.float64)
        L, nbits, W = self._planes.shape
        self._planes_t = np.ascontiguousarray(self._planes.reshape(L * nbits, W).T)  # (W, L·bits)
        self._planes_t32 = self._planes_t.astype(np.float32)  # the update's first, float32 pass
        self._plane_norms = np.linalg.norm(self._planes_t, axis=0)  # (L·bits,)

    def rebuild(self, chunk: int = 65_536, *, centre=None):
        """Re-centre and re-hash every row (O(N)); called at initialisation and after every N insertions.

        The centre becomes the mean row of each batch element's memory (zeros with ``centring=False``),
        or ``centre`` (B, W) if given — another index's :attr:`centre`, to build its exact twin. The
        projections come from BLAS, chunk by chunk; a row with a projection too close to zero for
        BLAS's summation order to be trusted is re-projected in the kernels' exact order, so the codes
        equal what :meth:`update` would compute, bit for bit. The lists are linked in index order.
        """
        B, N, W = self.memory.shape
        if centre is not None:
            from .._checks import as_float_array, check_finite, check_shape

            centre = as_float_array(centre, "centre", ndim=2)
            check_shape(centre, "centre", (B, W))
            check_finite(centre, "centre")
            self._centre = np.array(centre, dtype=np.float64)
        elif self.centring:
            self._centre = np.mean(self.memory, axis=1, dtype=np.float64)
        else:
            self._centre = np.zeros((B, W), np.float64)
        plane_norms = self._plane_norms
        for b in range(B):
            centre_b = self._centre[b]
            for start in range(0, N, chunk):
                rows = np.asarray(self.memory[b, start : start + chunk], dtype=np.float64) - centre_b
                proj = rows @ self._planes_t
                lsh_codes_from_projections_kernel(
                    self.memory, b, start, proj, centre_b, self._planes_t, plane_norms, self.num_bits, self._codes
                )
            lsh_link_kernel(b, self._codes, self.heads, self._sheads, self._nxt, self._prv)
        self.insertions = 0
        self.rebuilds += 1

    def update(self, rows):
        """Re-hash the rows (B, J) that were modified in place; returns the journal :meth:`undo` takes."""
        from .._checks import check_index_rows, enabled

        if enabled():  # rows in [0, N) or −1, one row per batch element: the kernel trusts them
            rows = check_index_rows(rows, self.memory)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        B, J = rows.shape
        L = self.num_tables
        journal = LSHJournal(
            rows,
            np.empty((B, J, L), np.int32),
            np.empty((B, J, L), np.int32),
            np.empty((B, J, L), np.int32),
        )
        lsh_update_kernel(
            self.memory,
            self._centre,
            self._planes_t,
            self._planes_t32,
            self._plane_norms,
            self.num_bits,
            rows,
            self._codes,
            self.heads,
            self._sheads,
            self._nxt,
            self._prv,
            *journal[1:4],
        )
        self.insertions += J
        return journal

    def undo(self, journal):
        """Revert one :meth:`update` exactly (codes and bucket lists); newest first."""
        lsh_undo_kernel(
            journal.rows,
            self._codes,
            self.heads,
            self._sheads,
            self._nxt,
            self._prv,
            journal.codes,
            journal.prev,
            journal.next,
        )
        self.insertions -= journal.rows.shape[1]

    def query(self, keys, k, fill=None):
        """The k best candidates per key, (B, H, k), ranked by exact cosine (ties by index).

        ``fill``: int (B, R) rows (−1: none) that top up, in order, a key whose buckets held fewer than k
        rows, before rows 0, 1, ... (default none). The index keeps no history, so a caller that wants
        recently written rows as fill-ins (as earlier versions kept them) passes them, e.g. the rows
        its step just wrote, newest first; the answer is then a function of the contents, the
        hyperplanes, the centre and ``fill``.
        """
        from .._checks import check_index_query, enabled

        if enabled():  # keys (B, H, W) of this memory, 1 <= k <= N: the kernel trusts them
            keys, k = check_index_query(keys, k, self.memory)
        keys = np.ascontiguousarray(keys, dtype=np.float64)
        B, H, _ = keys.shape
        if fill is None:
            fill = np.full((B, 1), -1, np.int64)
        else:
            from .._checks import as_index_array

            fill = np.ascontiguousarray(
                as_index_array(fill, "fill", upper=self.memory.shape[1], shape=(B, None), padding=True), np.int64
            )
        out = np.empty((B, H, k), np.int64)
        self.last_counts = np.empty((B, H), np.int64)
        lsh_query_kernel(
            self.memory,
            self._centre,
            self._planes_t,
            self.num_bits,
            keys,
            k,
            self.max_per_bucket,
            self.probes,
            self.heads,
            self._nxt,
            fill,
            out,
            self._seen,
            self.last_counts,
        )
        return out

    def max_candidates(self, k) -> int:
        """The most rows one query can score: every probed bucket full (or k, with fill-ins)."""
        return max(self.num_tables * (self.probes + 1) * self.max_per_bucket, k)

    @staticmethod
    def nbytes_for(batch_size: int, num_slots: int, word_size: int, *, num_tables: int = 16, num_bits=None) -> int:
        """Bytes an index over a (batch_size, num_slots, word_size) memory holds, before building one (what
        :meth:`nbytes` then reports): per row and table a code and two links (int32), per bucket a head
        and SEGMENTS − 1 range heads (int32), a centre per batch element, the hyperplanes twice in float64
        and once in float32, and their norms."""
        from .._checks import check_positive_int

        B, N, W, L = batch_size, num_slots, word_size, num_tables
        check_positive_int(L, "num_tables")
        bits = int(min(24, max(4, round(np.log2(N)) - 3))) if num_bits is None else num_bits
        check_positive_int(bits, "num_bits")
        if bits > 24:  # as the constructor says it, before the estimate of 2**bits buckets is made
            raise ValueError(f"num_bits: expected at most 24 (2**num_bits buckets per table), got {bits}")
        per_batch = N * L * 4 * 3 + N * 4 + L * 2**bits * 4 * SEGMENTS + W * 8
        return B * per_batch + 2 * L * bits * W * 8 + L * bits * W * 4 + L * bits * 8

    def nbytes(self) -> int:
        """Bytes held by the index (hyperplanes, centre, codes, bucket lists)."""
        return sum(
            a.nbytes
            for a in (
                self._planes,
                self._planes_t,
                self._planes_t32,
                self._plane_norms,
                self._centre,
                self._codes,
                self.heads,
                self._sheads,
                self._nxt,
                self._prv,
                self._seen,
            )
        )
