"""A randomized k-d forest over the rows of a memory for cosine similarity (Muja & Lowe 2009, 2014).

The index the paper's Figure 1 uses (FLANN's randomized k-d trees, Rae et al. 2016, §3.5 and
Supp.), under the interface of :mod:`refmann.memory.index`: rebuild / update → journal / undo /
maybe_rebuild / query, with the same exactness contract as :class:`~refmann.memory.LSHIndex`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.kdforest import (
    kd_codes_kernel,
    kd_level_medians_kernel,
    kd_level_stats_kernel,
    kd_link_kernel,
    kd_query_kernel,
    kd_sizes_kernel,
    kd_undo_kernel,
    kd_unit_rows_kernel,
    kd_update_kernel,
)
from ._lists import ListIndex

RAND_DIM = 5  # FLANN's choice: split on one of the 5 dimensions of highest variance


class KDTrees(NamedTuple):
    """The splits of a forest, fixed at :meth:`KDForestIndex.rebuild` (heap layout, depth D)."""

    dims: np.ndarray  # int32 (B, T, 2**D − 1)       the dimension each internal node splits on
    thresholds: np.ndarray  # float64 (B, T, 2**D − 1)  where (a unit vector at or above goes right)


class KDForestJournal(NamedTuple):
    """What :meth:`KDForestIndex.update` changed, so that :meth:`KDForestIndex.undo` restores it exactly."""

    rows: np.ndarray  # int (B, J)          the re-filed rows (−1: padding)
    codes: np.ndarray  # int32 (B, J, T)    their old leaves, per tree (−1: the row did not move)
    prev: np.ndarray  # int32 (B, J, T)     their old list neighbours
    next: np.ndarray  # int32 (B, J, T)


def level_stats_numpy(units, local, m):
    """The reference of :func:`level_stats_kernel`: each node's row count and the sums of its rows'
    unit vectors and of their squares, (m,), (m, W), (m, W), with ``np.bincount`` (2·W + 1 passes)."""
    W = units.shape[1]
    counts = np.bincount(local, minlength=m).astype(np.float64)
    sums = np.stack([np.bincount(local, units[:, c], minlength=m) for c in range(W)], axis=1)
    squares = np.stack([np.bincount(local, units[:, c] ** 2, minlength=m) for c in range(W)], axis=1)
    return counts, sums, squares


def level_stats_kernel(units, local, m):
    """:func:`level_stats_numpy` in one pass over the rows (a Numba kernel), equal to it bit for bit."""
    W = units.shape[1]
    counts, sums, squares = np.empty(m), np.empty((m, W)), np.empty((m, W))
    kd_level_stats_kernel(units, local, counts, sums, squares)
    return counts, sums, squares


def level_medians_numpy(values, local, counts, m):
    """The reference of :func:`level_medians_kernel`: per node, the (count // 2)-th smallest of its rows'
    ``values`` (0 for an empty node), by one ``np.lexsort`` of all the rows by (node, value)."""
    order = np.lexsort((values, local))
    starts = np.concatenate([[0], np.cumsum(counts[:-1])]).astype(np.int64)
    occupied = counts > 0
    thr = np.zeros(m, np.float64)
    thr[occupied] = values[order[starts[occupied] + counts[occupied].astype(np.int64) // 2]]
    return thr


def level_medians_kernel(values, local, counts, m):
    """:func:`level_medians_numpy` by a counting sort and a sort per node (a Numba kernel); equal values."""
    thr = np.empty(m, np.float64)
    kd_level_medians_kernel(values, local, counts.astype(np.int64), thr)
    return thr


def _depth(N: int, leaf_size: int) -> int:
    """Tree depth: about ``leaf_size`` rows per leaf at a rebuild, and at most N leaves."""
    if N < 2 * leaf_size:
        return 0
    return int(min(24, np.floor(np.log2(N / leaf_size))))


class KDForestIndex(ListIndex):
    """Randomized k-d forest (Silpa-Anan & Hartley 2008; Muja & Lowe 2009) for cosine similarity, per batch element.

    ``num_trees`` trees split the rows' unit vectors x / ‖x‖ (Euclidean distance between unit vectors
    is monotone in cosine). At :meth:`rebuild` every node of every tree splits on a dimension drawn at
    random among the ``RAND_DIM`` = 5 of highest variance of the rows that reach it, at their median,
    as in FLANN; the trees are complete, of depth ``floor(log2(N / leaf_size))``, so a leaf holds
    about ``leaf_size`` rows after a rebuild. (Centring would change nothing: a median split is
    translation-equivariant.)

    Between rebuilds the splits stay fixed and a row's code in tree t is the leaf its current contents
    fall in. Every leaf keeps its rows in a list sorted by row index, as the LSH index's buckets, so
    :meth:`update` re-files the written rows (O(T · (D + leaf size)) each) and journals the moves, and
    :meth:`undo` restores the lists bit for bit. A query's answer is a function of (the memory's
    current contents, :attr:`trees`), whatever the history of updates and undos: it equals that of a
    fresh index built by ``fresh.rebuild(trees=index.trees)`` on the same memory (tested, exactly).

    A query descends every tree, then visits further leaves best-bin-first (by the squared distances
    to the splits it crossed, accumulated over the path), taking each leaf's rows lowest index first,
    until ``checks`` distinct rows are gathered (or T · checks rows read); empty subtrees are never
    entered (each tree counts the rows under its nodes), so every leaf visited holds a row; the
    candidates are ranked by exact cosine (score descending, ties by index, as
    :class:`~refmann.memory.LinearIndex`), and too few are topped up with ``fill``, then rows 0, 1, ...
    The work per query is O(T · checks · (W + D)), whatever N is. With ``checks >= N`` the answer is
    :class:`~refmann.memory.LinearIndex`'s exactly. As the LSH index, the trees are rebuilt after N
    insertions, between sequences (:meth:`maybe_rebuild`).

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
        The array the model writes in place; the index keeps a reference.
    num_trees : int
        Trees in the forest (default 4, FLANN's usual choice).
    checks : int
        Distinct rows a query gathers before it stops (default 256; FLANN's ``checks``).
    leaf_size : int
        Rows per leaf after a rebuild, about (default 8).
    seed : int
        Seeds the draws of the split dimensions.

    References
    ----------
    Muja, M. and Lowe, D. G. (2014). Scalable nearest neighbor algorithms for high dimensional data.
    IEEE TPAMI 36(11).
    """

    SIZING_OPTIONS = ("num_trees", "leaf_size")

    def __init__(self, memory, *, num_trees=4, checks=256, leaf_size=8, seed=0):
        from .._checks import check_positive_int

        check_positive_int(num_trees, "num_trees")
        check_positive_int(checks, "checks")
        check_positive_int(leaf_size, "leaf_size")
        self._check_memory_and_seed(memory, seed)
        B, N, W = memory.shape
        self.num_trees, self.checks, self.leaf_size = int(num_trees), int(checks), int(leaf_size)
        self.depth = _depth(N, self.leaf_size)
        inner, leaves = 2**self.depth - 1, 2**self.depth
        self._init_lists(memory, self.num_trees, leaves, seed)
        self.dims = np.zeros((B, num_trees, inner), np.int32)
        self.thresholds = np.zeros((B, num_trees, inner), np.float64)
        self._sizes = np.zeros((B, num_trees, inner), np.int32)  # rows under each internal node

    @property
    def trees(self) -> KDTrees:
        """The splits (copies); pass them to another index's ``rebuild(trees=...)`` to build its exact twin."""
        return KDTrees(self.dims.copy(), self.thresholds.copy())

    def _grow(self, units, rng, b, t, level_stats, level_medians):
        """Draw the splits of tree t of batch element b from the unit rows ``units`` (N, W), level by level."""
        N, W = units.shape
        local = np.zeros(N, np.int64)  # each row's node, numbered within its level
        rows = np.arange(N)
        for level in range(self.depth):
            m, offset = 2**level, 2**level - 1
            counts, sums, squares = level_stats(units, local, m)
            safe = np.maximum(counts, 1.0)[:, None]
            var = squares / safe - (sums / safe) ** 2
            top = np.argsort(-var, axis=1, kind="stable")[:, : min(RAND_DIM, W)]  # (m, ≤5)
            dim = top[np.arange(m), rng.integers(0, top.shape[1], m)]  # (m,)
            values = units[rows, dim[local]]
            thr = level_medians(values, local, counts, m)
            self.dims[b, t, offset : offset + m] = dim
            self.thresholds[b, t, offset : offset + m] = thr
            local = 2 * local + (values >= thr[local])

    def rebuild(self, *, trees=None, reference=False):
        """Draw new trees from the memory's current rows (or take ``trees``, another index's
        :attr:`trees`) and re-file every row; O(T · N · (W + log N)). Lists are linked in index order.

        ``reference=True`` computes each level's statistics with ``np.bincount`` and its medians with
        ``np.lexsort`` (:func:`level_stats_numpy`, :func:`level_medians_numpy`: the readable path)
        instead of the two kernels; the trees are the same bit for bit (tested)."""
        from .._checks import check_bool

        reference = check_bool(reference, "reference")
        B, N, W = self.memory.shape
        if trees is not None:
            if not isinstance(trees, KDTrees):
                raise TypeError(f"trees: expected a KDTrees (another index's .trees), got {type(trees).__name__}")
            if trees.dims.shape != self.dims.shape or trees.thresholds.shape != self.thresholds.shape:
                raise ValueError(
                    f"trees: expected splits of shape {self.dims.shape} (same B, num_trees and depth), "
                    f"got {trees.dims.shape}"
                )
            self.dims[...] = trees.dims
            self.thresholds[...] = trees.thresholds
        else:
            rng = np.random.default_rng([self.seed, 17])
            units = np.empty((N, W), np.float64)
            for b in range(B):
                kd_unit_rows_kernel(self.memory, b, units)
                for t in range(self.num_trees):
                    if reference:
                        self._grow(units, rng, b, t, level_stats_numpy, level_medians_numpy)
                    else:
                        self._grow(units, rng, b, t, level_stats_kernel, level_medians_kernel)
        kd_codes_kernel(self.memory, self.dims, self.thresholds, self.depth, self._codes)
        for b in range(B):
            kd_link_kernel(b, self._codes, self.heads, self._nxt, self._prv)
            kd_sizes_kernel(b, self._codes, self.depth, self._sizes)
        self.insertions = 0
        self.rebuilds += 1

    def update(self, rows):
        """Re-file the rows (B, J) that were modified in place; returns the journal :meth:`undo` takes."""
        from .._checks import check_index_rows, enabled

        if enabled():
            rows = check_index_rows(rows, self.memory)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        B, J = rows.shape
        T = self.num_trees
        journal = KDForestJournal(
            rows, np.empty((B, J, T), np.int32), np.empty((B, J, T), np.int32), np.empty((B, J, T), np.int32)
        )
        kd_update_kernel(
            self.memory,
            self.dims,
            self.thresholds,
            self.depth,
            rows,
            self._codes,
            self.heads,
            self._nxt,
            self._prv,
            self._sizes,
            *journal[1:4],
        )
        self.insertions += J
        return journal

    def undo(self, journal):
        """Revert one :meth:`update` exactly (codes and leaf lists); newest first."""
        if journal is None:
            return
        kd_undo_kernel(
            journal.rows, self._codes, self.heads, self._nxt, self._prv, self._sizes, self.depth, *journal[1:4]
        )
        self.insertions -= journal.rows.shape[1]

    def query(self, keys, k, fill=None):
        """The k best candidates per key, (B, H, k), ranked by exact cosine (ties by index).

        ``fill``: int (B, R) rows (−1: none) that top up, in order, a key whose leaves held fewer than
        k rows, before rows 0, 1, ... (as :meth:`LSHIndex.query`)."""
        from .._checks import check_index_query, enabled

        if enabled():
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
        kd_query_kernel(
            self.memory,
            self.dims,
            self.thresholds,
            self.depth,
            keys,
            k,
            self.checks,
            self.heads,
            self._nxt,
            self._sizes,
            fill,
            out,
            self._seen,
            self.last_counts,
        )
        return out

    def max_candidates(self, k) -> int:
        """The most rows one query can score: ``checks`` (or k, with fill-ins)."""
        return max(self.checks, k)

    def nbytes(self) -> int:
        arrays = (self.dims, self.thresholds, self._sizes, self._codes, self.heads, self._nxt, self._prv, self._seen)
        return int(sum(a.nbytes for a in arrays))

    @staticmethod
    def nbytes_for(batch_size: int, num_slots: int, word_size: int, *, num_trees: int = 4, leaf_size: int = 8) -> int:
        """Bytes an index over a (B, N, W) memory holds: codes and links (3 int32 per row and tree),
        the leaf heads (int32), the splits and sizes (int32 + float64 + int32 per internal node), and the
        seen marks."""
        B, N, T = batch_size, num_slots, num_trees
        D = _depth(N, leaf_size)
        return B * (3 * N * T * 4 + T * 2**D * 4 + T * (2**D - 1) * 16 + N * 4)
