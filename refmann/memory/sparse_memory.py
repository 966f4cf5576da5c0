r"""A sparse memory written in place, with everything rollback BPTT needs (SAM, and SDNC next).

:class:`SparseMemory` holds, for a batch of B sequences:

- ``memory``: the live (B, N, W) array, written in place (allocated once per batch size);
- ``index``: the nearest-neighbour index over its rows (exact ``LinearIndex``, ``LSHIndex`` or ``KDForestIndex``);
- ``ring``: the usage ring (least recently accessed slot in O(1));
- ``grad``: a :class:`RowGradAccumulator`, the memory's gradient over the rows a pass touched.

A step talks to it in the paper's order — :meth:`write` (returning the old rows and the index's
journal), :meth:`query`, :meth:`gather`, :meth:`touch` (the usage rule: slots whose summed weight
exceeds δ move to the back of the ring) — and keeps the :class:`StepJournal` it is given.
:meth:`revert` undoes one step exactly (rows, index lists, ring), newest first; :meth:`reapply`
redoes one, oldest first. Nothing here looks at all N rows except :meth:`prepare` (once per
batch size) and the exact index's query.

Every method checks its arguments (shapes, dtypes, indices in range) before a kernel sees them, unless
called inside :func:`refmann._checks.unchecked` (a model's steps). :meth:`prepare` estimates the bytes
it is about to allocate first and refuses, with a :class:`~refmann._checks.FootprintError` naming
``memory_size``, a plan past the memory budget (``REFMANN_MEMORY_BUDGET``, default 8 GiB).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._checks import (
    as_float_array,
    as_index_array,
    check_dout,
    check_dtype,
    check_finite_real,
    check_footprint,
    check_positive_int,
    check_shape,
    enabled,
)
from ..kernels.sam_step import lra_write_kernel, read_touch_kernel, read_write_backward_kernel
from ..kernels.sparse_write import accessed_slots_kernel, restore_rows_kernel
from ..ops.sparse import SparseContentReadCache, SparseWriteCache, gather_rows, sparse_write_inplace
from ..ops.write_weights import LRAInterpolateCache, lra_interpolate_forward
from .accumulator import RowGradAccumulator
from .index import LinearIndex, LSHIndex
from .ring import RingJournal, UsageRing


def index_nbytes(index_factory, B: int, N: int, W: int) -> int:
    """Estimated bytes of the index ``index_factory`` builds over a (B, N, W) memory, before building it.

    Asks ``index_factory.nbytes_for(B, N, W)`` when the factory offers it; the exact index holds
    nothing; any other factory is costed as an :class:`~refmann.memory.LSHIndex` with its default
    options (:meth:`LSHIndex.nbytes_for`).
    """
    estimate = getattr(index_factory, "nbytes_for", None)
    if callable(estimate):
        return int(estimate(B, N, W))
    if index_factory is LinearIndex:
        return LinearIndex.nbytes_for(B, N, W)
    return LSHIndex.nbytes_for(B, N, W)


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
        self.N = check_positive_int(num_slots, "num_slots")
        self.W = check_positive_int(word_size, "word_size")
        if not callable(index_factory):
            raise TypeError(f"index_factory: expected a callable memory -> index, got {type(index_factory).__name__}")
        self.index_factory = index_factory
        self.B = None
        self.memory = self.index = self.ring = self.grad = None
        self.dirty = False  # True after steps that were not rolled back (the step API)

    # -- set-up -----------------------------------------------------------------------------------------
    def prepare(self, B: int, dtype, memory0) -> None:
        """Allocate memory, ring, index and gradient table for batch size B, all rows equal to ``memory0``
        (O(N); only when B or the dtype changes, or after :attr:`dirty` steps).

        ``memory0`` is an (N, W) array (or anything that broadcasts to it, such as a scalar). Before
        allocating, the footprint (:meth:`footprint_estimate`) is checked against the memory budget:
        a :class:`~refmann._checks.FootprintError` naming ``memory_size`` and the bytes needed refuses
        a plan past it."""
        B = check_positive_int(B, "batch_size")
        dtype = check_dtype(dtype)
        if self.B == B and self.memory.dtype == dtype and not self.dirty:
            return
        shape = np.shape(memory0)
        try:
            fits = np.broadcast_shapes(shape, (self.N, self.W)) == (self.N, self.W)
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"memory0: expected shape ({self.N}, {self.W}) (num_slots, word_size), got {shape}")
        parts = self.footprint_estimate(B, dtype)
        what = f"a sparse memory of {self.N:,} slots of {self.W} ({np.dtype(dtype).name}) for batch size {B}"
        check_footprint(parts, "memory_size", what=what)
        kind = np.asarray(memory0).dtype.kind
        if kind not in "fiub":
            raise TypeError(f"memory0: expected real values, got dtype {np.asarray(memory0).dtype}")
        self.B = self.memory = self.index = self.ring = self.grad = None  # free the old parts first
        memory = np.ascontiguousarray(np.broadcast_to(memory0, (B, self.N, self.W)).astype(dtype))
        grad = RowGradAccumulator(B, self.W, dtype, num_rows=self.N)
        ring = UsageRing(B, self.N)
        index = self.index_factory(memory)
        index.rebuild()
        self.memory, self.grad, self.ring, self.index = memory, grad, ring, index
        self.B, self.dirty = B, False

    def footprint_estimate(self, B: int, dtype) -> dict[str, int]:
        """Bytes :meth:`prepare` would allocate for batch size B, by part, computed without allocating."""
        itemsize = np.dtype(dtype).itemsize
        return {
            "memory": B * self.N * self.W * itemsize,
            "index": index_nbytes(self.index_factory, B, self.N, self.W),
            "usage ring": UsageRing.nbytes_for(B, self.N),
            "gradient table": B * 64 * (self.W * itemsize + 3 * 8),
        }

    def _ready(self) -> None:
        if self.memory is None:
            raise RuntimeError("SparseMemory: call prepare(B, dtype, memory0) before stepping it")

    def nbytes(self) -> dict[str, int]:
        """Bytes held by each part (after :meth:`prepare`)."""
        if self.memory is None:
            self._ready()
        return {
            "memory": self.memory.nbytes,
            "index": self.index.nbytes(),
            "usage ring": self.ring.nbytes(),
            "gradient table": self.grad.nbytes(),
        }

    # -- one step -----------------------------------------------------------------------------------------
    def least_recent(self, count: int) -> np.ndarray:
        """int (B, count): the ``count`` least recently accessed slots, oldest first."""
        if self.memory is None:
            self._ready()
        return self.ring.oldest(count)

    def write(self, weights, add, *, indices, erase_indices, fused=True, keep_new_rows=False):
        """Erase ``erase_indices``, add ``weights ⊗ add`` on ``indices`` (B, H, J), re-index the rows.

        Returns ``(journal, cache)``: the :class:`StepJournal` (ring moves still empty: see :meth:`touch`)
        and the write op's cache (:func:`refmann.ops.sparse_write_inplace`, which checks the arguments:
        ``indices`` in ``[0, N)``, every erased row also written).
        """
        if self.memory is None:
            self._ready()
        old_rows, cache = sparse_write_inplace(
            self.memory, weights, add, indices=indices, erase_indices=erase_indices, fused=fused
        )
        rows = np.ascontiguousarray(cache.indices.reshape(self.B, -1))
        index_journal = self.index.update(rows)
        new_rows = self.gather(rows) if keep_new_rows else None
        return StepJournal(rows, old_rows, index_journal, None, new_rows), cache

    def query(self, keys, k: int, fill=None) -> np.ndarray:
        """int (B, H, k): the index's k candidates for each query (B, H, W); 1 <= k <= N.

        ``fill``: int (B, R) rows (−1: none) that top up, in order, a query the index found fewer than
        k candidates for (see :meth:`LSHIndex.query`; an exact index ignores it)."""
        if self.memory is None:
            self._ready()
        return self.index.query(keys, k, fill=fill)

    def gather(self, indices) -> np.ndarray:
        """memory[b, indices[b, ...]] -> (B, ..., W), a copy; ``indices`` int (B, ...) in ``[0, N)``."""
        if self.memory is None:
            self._ready()
        if enabled():
            indices = as_index_array(indices, "indices", upper=self.N)
            if indices.ndim < 1 or indices.shape[0] != self.B:
                raise ValueError(
                    f"indices: expected shape ({self.B}, ...) (one row per batch element), got {indices.shape}"
                )
        return gather_rows(self.memory, indices)

    def touch(self, slots, values, delta: float, t: float, journal: StepJournal):
        """The usage rule: slots (B, J) whose summed ``values`` exceed δ get time t (back of the ring).

        ``slots`` int (B, J) in ``[0, N)`` (−1: padding), ``values`` (B, J), δ ≥ 0 and t finite.
        Returns ``(touched, journal)``: int (B, J) the accessed slots ascending, −1 padded, and the
        step's journal with the ring's moves filled in.
        """
        if self.memory is None:
            self._ready()
        if enabled():
            slots = as_index_array(slots, "slots", upper=self.N, shape=(self.B, None), padding=True)
            values = as_float_array(values, "values", ndim=2)
            check_shape(values, "values", slots.shape)
            delta = check_finite_real(delta, "delta", 0.0)
            t = check_finite_real(t, "t")
            self._check_journal(journal)
        slots = np.ascontiguousarray(slots)
        touched = np.empty_like(slots)
        accessed_slots_kernel(slots, np.ascontiguousarray(values), delta, touched)
        return touched, journal._replace(ring=self.ring.touch(touched, t))

    # -- one step in three kernel calls (SAM's fused path; kernels/sam_step.py) --------------------------
    def lra_write(self, read_idx, read_weights, alpha, gate, add, *, keep_new_rows=False, fused=True):
        r"""SAM's write in one kernel, then the index's update: the same as :meth:`least_recent`,
        :func:`~refmann.ops.lra_interpolate_forward` and :meth:`write` (tested equal), which
        ``fused=False`` runs instead, one op per equation (the readable reference).

        The write weights :math:`w^W = \alpha(\gamma w^R_{t-1} + (1-\gamma) 1_{LRA})` live on the J
        previous read slots ``read_idx`` (B, H, J) and each head's least recently accessed slot, which
        is erased; ``read_weights`` (B, H, J) are :math:`w^R_{t-1}`, ``alpha`` and ``gate`` (B, H),
        ``add`` (B, H, W) the words.

        Returns ``(lra (B, H), write_idx (B, H, J+1), write_weights (B, H, J+1), interpolate_cache,
        journal, write_cache)``: the caches are those of the ops it replaces
        (:class:`~refmann.ops.write_weights.LRAInterpolateCache`, :class:`~refmann.ops.sparse.SparseWriteCache`).
        """
        if self.memory is None:
            self._ready()
        if not fused:
            lra = self.least_recent(np.shape(read_idx)[1])  # (B, H)
            write_idx = np.concatenate([read_idx, lra[..., None]], axis=-1)  # (B, H, J+1)
            weights, interpolate_cache = lra_interpolate_forward(read_weights, alpha, gate)
            journal, write_cache = self.write(
                weights, add, indices=write_idx, erase_indices=lra, fused=False, keep_new_rows=keep_new_rows
            )
            return lra, write_idx, weights, interpolate_cache, journal, write_cache
        B, N, W = self.memory.shape
        dtype = self.memory.dtype
        if enabled():
            read_idx = as_index_array(read_idx, "read_idx", upper=N, shape=(B, None, None))
            H, J = read_idx.shape[1:]
            if H > N:
                raise ValueError(f"read_idx: expected at most N = {N} heads (one LRA slot each), got {H}")
            for name, value, shape in (
                ("read_weights", read_weights, (B, H, J)),
                ("alpha", alpha, (B, H)),
                ("gate", gate, (B, H)),
                ("add", add, (B, H, W)),
            ):
                check_shape(as_float_array(value, name, ndim=len(shape)), name, shape)
        H, J = read_idx.shape[1:]
        read_idx = np.ascontiguousarray(read_idx, dtype=np.int64)
        read_weights, alpha, gate, add = (
            np.ascontiguousarray(a, dtype=dtype) for a in (read_weights, alpha, gate, add)
        )
        lra = np.empty((B, H), np.int64)
        write_idx = np.empty((B, H, J + 1), np.int64)
        inner = np.empty((B, H, J + 1), dtype)
        weights = np.empty((B, H, J + 1), dtype)
        old_rows = np.empty((B, H * (J + 1), W), dtype)
        lra_write_kernel(
            self.memory, self.ring.nxt, self.ring.head, read_idx, read_weights, alpha, gate, add,
            lra, write_idx, inner, weights, old_rows,
        )  # fmt: skip
        rows = write_idx.reshape(B, -1)
        index_journal = self.index.update(rows)
        new_rows = self.gather(rows) if keep_new_rows else None
        journal = StepJournal(rows, old_rows, index_journal, None, new_rows)
        interpolate_cache = LRAInterpolateCache(alpha, gate, read_weights, inner, None)
        return lra, write_idx, weights, interpolate_cache, journal, SparseWriteCache(weights, add, write_idx, lra, N)

    def read_touch(self, keys, strengths, indices, journal, write_weights, *, eps, delta, t):
        """The K-sparse content read of every head, then the usage rule, in one kernel: the same as
        :func:`~refmann.ops.sparse_content_read_forward` and :meth:`touch` over the slots
        [written rows ; read rows] with weights [``write_weights`` ; read weights] (tested equal).

        ``keys`` (B, H, W), ``strengths`` (B, H), ``indices`` int (B, H, K) the index's candidates,
        ``journal`` the step's (from :meth:`lra_write` or :meth:`write`), ``write_weights`` (B, H, J)
        on its rows. Returns ``((weights, reads), read_cache, touched, journal)``: the read's cache has
        no rows (a backward gathers them again from M_t), the journal the ring's moves.
        """
        if self.memory is None:
            self._ready()
        B, N, W = self.memory.shape
        dtype = self.memory.dtype
        if enabled():
            keys = as_float_array(keys, "keys", ndim=3)
            check_shape(keys, "keys", (B, None, W))
            indices = as_index_array(indices, "indices", upper=N, shape=keys.shape[:2] + (None,))
            check_shape(as_float_array(strengths, "strengths", ndim=2), "strengths", keys.shape[:2])
            self._check_journal(journal)
            check_shape(as_float_array(write_weights, "write_weights", ndim=3), "write_weights", (B, None, None))
            if np.prod(write_weights.shape[1:]) != journal.rows.shape[1]:
                raise ValueError(
                    f"write_weights: expected one weight per written row ({journal.rows.shape[1]}), "
                    f"got shape {np.shape(write_weights)}"
                )
            delta = check_finite_real(delta, "delta", 0.0)
            t = check_finite_real(t, "t")
            eps = check_finite_real(eps, "eps", 0.0)
        H, K = indices.shape[1:]
        keys, strengths = np.ascontiguousarray(keys, dtype=dtype), np.ascontiguousarray(strengths, dtype=dtype)
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        w, sim, rnorm = (np.empty((B, H, K), dtype) for _ in range(3))
        reads, qnorm = np.empty((B, H, W), dtype), np.empty((B, H), dtype)
        J1 = journal.rows.shape[1]
        shape = (B, J1 + H * K)
        touched = np.empty(shape, np.int64)
        ring = RingJournal(
            touched, np.empty(shape, np.int32), np.empty(shape, np.int32), np.empty(shape, np.int64),
            np.empty(shape, np.float64),
        )  # fmt: skip
        read_touch_kernel(
            self.memory, indices, keys, strengths, float(eps), w, reads, sim, qnorm, rnorm,
            np.ascontiguousarray(journal.rows, dtype=np.int64),
            np.ascontiguousarray(np.reshape(write_weights, (B, J1)), dtype=dtype),
            float(delta), float(t), self.ring.nxt, self.ring.prv, self.ring.head, self.ring.stamps,
            touched, *ring[1:],
        )  # fmt: skip
        cache = SparseContentReadCache(indices, N, keys, strengths, w, sim, qnorm, rnorm, None, float(eps), True, None)
        return (w, reads), cache, touched, journal._replace(ring=ring)

    def read_write_backward(self, read_cache, dweights, dreads, write_cache, *, memory=None):
        """The read's and the write's VJP in one kernel, through :attr:`grad`: the same as
        :func:`~refmann.ops.sparse_content_read_backward`, ``grad.add``,
        :func:`~refmann.ops.sparse_write_rows_backward` on ``grad.gather`` and ``grad.zero`` of the
        erased rows (tested equal).

        ``read_cache`` from :meth:`read_touch`, ``write_cache`` from :meth:`lra_write`; ``dweights``
        (B, H, K) and ``dreads`` (B, H, W) the read's upstream gradients. The read's rows come from
        ``memory`` (default: the live memory, which must be M_t: rollback; ``bptt="cache"`` passes its
        snapshot). Returns ``(dkeys, dstrengths, dwrite_weights, dadd)``.
        """
        if self.memory is None:
            self._ready()
        rc, wc = read_cache, write_cache
        memory = self.memory if memory is None else memory
        if enabled():
            if not isinstance(rc, SparseContentReadCache) or not rc.fused or rc.sim is None:
                raise TypeError("read_cache: expected the SparseContentReadCache of read_touch")
            if not isinstance(wc, SparseWriteCache):
                raise TypeError(f"write_cache: expected a SparseWriteCache, got {type(wc).__name__}")
            memory = as_float_array(memory, "memory", ndim=3)
            check_shape(memory, "memory", self.memory.shape)
            check_dout(dweights, rc.weights.shape, "dweights")
            check_dout(dreads, rc.keys.shape, "dreads")
            as_index_array(rc.indices, "read_cache.indices", upper=self.N, shape=(self.B, None, None))
            as_index_array(wc.indices, "write_cache.indices", upper=self.N, shape=(self.B, None, None))
            as_index_array(wc.erase_indices, "write_cache.erase_indices", upper=self.N, shape=(self.B, None))
        dtype = self.memory.dtype
        B, H, K = rc.indices.shape
        self.grad.reserve(H * K)
        dq, dbeta = np.empty_like(rc.keys), np.empty_like(rc.strengths)
        dww, dadd = np.empty(wc.weights.shape, dtype), np.empty(wc.add.shape, dtype)
        g = self.grad
        read_write_backward_kernel(
            np.ascontiguousarray(memory), rc.indices, rc.keys, rc.strengths, rc.eps, rc.weights, rc.sim,
            rc.key_norm, rc.row_norm, np.ascontiguousarray(dreads, dtype=dtype),
            np.ascontiguousarray(dweights, dtype=dtype), g.keys, g.where, g.slot_of, g.count, g.pool,
            np.ascontiguousarray(wc.indices, dtype=np.int64), np.ascontiguousarray(wc.weights, dtype=dtype),
            np.ascontiguousarray(wc.add, dtype=dtype), np.ascontiguousarray(wc.erase_indices, dtype=np.int64),
            dq, dbeta, dww, dadd,
        )  # fmt: skip
        return dq, dbeta, dww, dadd

    # -- rollback -----------------------------------------------------------------------------------------
    def _check_journal(self, journal, *, new_rows=False) -> None:
        """A StepJournal whose rows fit this memory (what the restore kernel indexes with)."""
        if not isinstance(journal, StepJournal):
            raise TypeError(f"journal: expected the StepJournal of a write, got {type(journal).__name__}")
        rows = as_index_array(journal.rows, "journal.rows", upper=self.N, shape=(self.B, None))
        fields = ("old_rows", "new_rows") if new_rows else ("old_rows",)
        for name in fields:
            value = getattr(journal, name)
            if value is None:
                raise ValueError(
                    f"journal.{name}: expected the rows of the write, got None (write(keep_new_rows=True))"
                )
            value = as_float_array(value, f"journal.{name}", ndim=3)
            check_shape(value, f"journal.{name}", rows.shape + (self.W,))

    def revert(self, journal: StepJournal) -> None:
        """Undo one step: rows from the journal (in reverse order), their index entries, the ring."""
        if self.memory is None:
            self._ready()
        if enabled():
            self._check_journal(journal)
        restore_rows_kernel(self.memory, journal.rows, journal.old_rows)
        self.index.undo(journal.index)
        if journal.ring is not None:
            self.ring.undo(journal.ring)

    def reapply(self, journal: StepJournal, t: float) -> None:
        """Redo one reverted step (its rows, index update, ring moves at time t); needs ``new_rows``."""
        if self.memory is None:
            self._ready()
        if enabled():
            self._check_journal(journal, new_rows=True)
            if journal.ring is None:
                raise ValueError("journal.ring: expected the ring's moves of the step (touch), got None")
            t = check_finite_real(t, "t")
        restore_rows_kernel(self.memory, journal.rows, journal.new_rows)
        self.index.update(journal.rows)
        self.ring.touch(journal.ring.slots, t)

    def end_pass(self) -> None:
        """Between sequences: let the index rebuild if enough insertions accumulated (amortised O(1))."""
        self.index.maybe_rebuild()
