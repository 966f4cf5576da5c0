r"""One step of Sparse Access Memory (Rae et al. 2016), forward and rollback backward.

The memory is one (B, N, W) array per model, written in place. Per step (DESIGN "SAM in one step"):

1. controller as DAM: LSTM on :math:`[x_t ; r_{t-1}]`; per head q, a, α, γ, β (same parameters);
2. write: the ring gives the H oldest slots :math:`I^U`; the write weights live on the K previous read
   slots plus the LRA slot, :math:`w^W = \alpha(\gamma w^R_{t-1} + (1-\gamma) I^U)` (K+1 entries per head);
   the old rows are journalled, the LRA rows erased, the words added; the index re-indexes those rows;
3. read: the index returns K candidates per head; :math:`w^R` = softmax over the K of
   :math:`\beta \cos(q, M(i))`; :math:`r = \sum_k w^R_k M(i_k)`;
4. usage: slots with :math:`\sum_h (w^W + w^R) > \delta` move to the back of the ring, stamped t;
5. output :math:`y_t = \mathrm{linear}([h_t ; r_t])`.

Backward at step t starts with the live memory equal to :math:`M_t`: it gathers again the K rows each
head read, takes the read's small cache (weights, norms, similarities), accumulates the memory
gradient into a table that holds only the touched rows (:class:`~refmann.memory.RowGradAccumulator`),
and then *reverts* step t's journal to recover :math:`M_{t-1}` (rollback). With ``bptt="cache"`` it
instead keeps a full copy of every :math:`M_t` (O(N) per step) and recomputes the read from it, for
comparison.
Nothing in a step looks at all N slots, except the exact ``LinearIndex`` query.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import gather_rows_kernel
from ..kernels.content_read import content_read_backward_kernel, content_read_forward_kernel
from ..kernels.sparse_write import (
    accessed_slots_kernel,
    restore_rows_kernel,
    sparse_write_inplace_kernel,
)
from ..memory.accumulator import RowGradAccumulator
from ..memory.ring import UsageRing
from ._common import controller_backward, controller_forward, output_backward, output_forward
from .dam import DAMCore

BPTT_MODES = ("rollback", "cache")
READ_EPS = 1e-6   # the cosine's eps, as ops.cosine_similarity's default (and DAM's read)
RESTORE_MODES = ("initial", "final")


class SAMState(NamedTuple):
    h: np.ndarray              # (B, C)
    c: np.ndarray              # (B, C)
    read_idx: np.ndarray       # int (B, H, K)
    read_weights: np.ndarray   # (B, H, K)
    write_idx: np.ndarray      # int (B, H, K+1)  K previous read slots, then the LRA slot
    write_weights: np.ndarray  # (B, H, K+1)
    reads: np.ndarray          # (B, H, W)
    step: int


class ReadCache(NamedTuple):
    """What the read's backward needs besides the rows, which it gathers again from M_t (rollback)."""

    q: np.ndarray       # (B, H, W)
    beta: np.ndarray    # (B, H)
    w: np.ndarray       # (B, H, K)     read weights
    sim: np.ndarray     # (B, H, K)     cosine similarities
    qnorm: np.ndarray   # (B, H)
    rnorm: np.ndarray   # (B, H, K)


class SAMStepCache(NamedTuple):
    ctrl: tuple
    heads: tuple                # DAMCore.heads_forward's cache
    alpha: np.ndarray           # (B, H)
    gate: np.ndarray            # (B, H)
    q: np.ndarray               # (B, H, W)
    beta_value: np.ndarray      # (B, H)
    add: np.ndarray             # (B, H, W)
    lra: np.ndarray             # int (B, H)
    read_weights_prev: np.ndarray  # (B, H, K)
    write_idx: np.ndarray       # int (B, H, K+1)
    write_weights: np.ndarray   # (B, H, K+1)
    journal_rows: np.ndarray    # (B, H(K+1), W)  old contents of the written rows
    index: object               # the index's journal of this step's update
    read_idx: np.ndarray        # int (B, H, K)
    read: ReadCache | None    # the read over the K rows (rollback only): O(H·K·W)
    ring: object                # RingJournal
    out: tuple
    snapshot: np.ndarray | None  # (B, N, W) copy of M_t (bptt="cache" only)
    new_rows: np.ndarray | None  # (B, H(K+1), W) the written rows after the write (restore="final" only)
    step: int


def _gather(table, idx):
    """table[b, idx[b, ...]] for an int index array of shape (B, ...) -> (B, ..., W)."""
    B = idx.shape[0]
    flat = np.ascontiguousarray(idx.reshape(B, -1))
    out = np.empty((B, flat.shape[1], table.shape[2]), table.dtype)
    gather_rows_kernel(out, table, flat)
    return out.reshape(idx.shape + (table.shape[2],))


class SAMCore(DAMCore):
    """SAM's step; shares DAM's parameters and controller (see the module docstring)."""

    def __init__(self, *, k, index_factory, bptt="rollback", restore="initial", **dam_kwargs):
        super().__init__(usage="timestamp", **dam_kwargs)
        if bptt not in BPTT_MODES:
            raise ValueError(f"bptt: expected one of {BPTT_MODES}, got {bptt!r}")
        if restore not in RESTORE_MODES:
            raise ValueError(f"restore: expected one of {RESTORE_MODES}, got {restore!r}")
        self.K, self.bptt, self.restore, self.index_factory = k, bptt, restore, index_factory
        self.B = None

    # -- the model-owned, in-place state -------------------------------------------------------------
    def prepare(self, B, dtype, memory0):
        """Allocate memory, ring and index for batch size B (O(N), once per B) and the row-gradient table."""
        if self.B == B and self.memory.dtype == dtype:
            return
        self.B = B
        self.memory = np.ascontiguousarray(np.broadcast_to(memory0, (B, self.N, self.W)).astype(dtype))
        self.dmemory = RowGradAccumulator(B, self.W, dtype)
        self.ring = UsageRing(B, self.N)
        self.index = self.index_factory(self.memory)
        self.index.rebuild()

    def footprint(self) -> dict[str, int]:
        """Bytes held by each part of the model-owned state (after :meth:`prepare`)."""
        return {"memory": self.memory.nbytes, "index": self.index.nbytes(), "usage ring": self.ring.nbytes(),
                "gradient table": self.dmemory.nbytes()}

    def initial_state(self, params, B, dtype, memory0):
        self.prepare(B, np.dtype(dtype), memory0)
        H, K, W, C = self.H, self.K, self.W, self.C
        read_idx = np.broadcast_to(np.arange(K, dtype=np.int64), (B, H, K)).copy()
        z = np.zeros
        return SAMState(z((B, C), dtype), z((B, C), dtype), read_idx, z((B, H, K), dtype),
                        z((B, H, K + 1), np.int64), z((B, H, K + 1), dtype), z((B, H, W), dtype), 0)

    # -- forward -----------------------------------------------------------------------------------------
    def step_forward(self, params, x, state):
        H, W, K = self.H, self.W, self.K
        B = x.shape[0]
        (h, c), ctrl_cache = controller_forward(params, x, state.reads, state.h, state.c)
        q, add, alpha, gate, beta, heads_cache = self.heads_forward(params, h)
        q, add = np.ascontiguousarray(q), np.ascontiguousarray(add)   # (copies: the heads' output p is freed)
        # write: K previous read slots and the least recently accessed one, per head
        lra = self.ring.oldest(H)                                              # (B, H)
        write_idx = np.concatenate([state.read_idx, lra[..., None]], axis=-1)  # (B, H, K+1)
        write_weights = alpha[..., None] * np.concatenate(
            [gate[..., None] * state.read_weights, (1.0 - gate)[..., None]], axis=-1)   # (B, H, K+1)
        flat_idx = np.ascontiguousarray(write_idx.reshape(B, -1))
        journal = np.empty((B, H * (K + 1), W), self.memory.dtype)
        sparse_write_inplace_kernel(self.memory, lra, flat_idx, np.ascontiguousarray(write_weights.reshape(B, -1)),
                                    add, K + 1, journal)
        index_journal = self.index.update(flat_idx)
        # read: K candidates per head from the index, softmax over those K
        read_idx = self.index.query(q, K)                                      # (B, H, K)
        rows = _gather(self.memory, read_idx)                                  # (B, H, K, W)
        read_weights, reads, read_cache = self._read(rows, q, beta)
        # usage: slots whose summed weight exceeds δ move to the back of the ring
        t = state.step + 1
        slots = np.concatenate([flat_idx, read_idx.reshape(B, -1)], axis=1)
        values = np.concatenate([write_weights.reshape(B, -1), read_weights.reshape(B, -1)], axis=1)
        touched = np.empty_like(slots)
        accessed_slots_kernel(slots, values, self.delta, touched)
        ring_journal = self.ring.touch(touched, t)
        self.trace = (lra, touched, np.sort(read_idx, axis=-1))  # decisions, for kink detection
        y, out_c = output_forward(params, h, reads)
        snapshot = self.memory.copy() if self.bptt == "cache" else None
        new_rows = _gather(self.memory, flat_idx) if self.restore == "final" else None
        cache = SAMStepCache(ctrl_cache, heads_cache, alpha, gate, q, beta, add, lra,
                             state.read_weights, write_idx, write_weights, journal, index_journal, read_idx,
                             read_cache if self.bptt == "rollback" else None, ring_journal, out_c,
                             snapshot, new_rows, t)
        return y, SAMState(h, c, read_idx, read_weights, write_idx, write_weights, reads, t), cache

    def _read(self, rows, q, beta):
        """Content weights over the K gathered rows and the read (eqs. 1–2): ``ops.content_weights`` and
        ``ops.dense_read`` on each head's K rows, fused in one kernel; returns (weights, reads, cache)."""
        B, H, K, W = rows.shape
        q, beta = np.ascontiguousarray(q), np.ascontiguousarray(beta)
        w, sim, rnorm = (np.empty((B, H, K), rows.dtype) for _ in range(3))
        reads, qnorm = np.empty((B, H, W), rows.dtype), np.empty((B, H), rows.dtype)
        content_read_forward_kernel(rows, q, beta, READ_EPS, w, reads, sim, qnorm, rnorm)
        return w, reads, ReadCache(q, beta, w, sim, qnorm, rnorm)

    # -- backward ----------------------------------------------------------------------------------------
    def step_backward(self, params, dy, dstate, cache, grads):
        H, W, K = self.H, self.W, self.K
        B = dy.shape[0]
        dh, dreads = output_backward(dy, cache.out, grads, self.C)
        dreads = dreads.reshape(B, H, W) + dstate.reads
        # read backward: rollback keeps the read's caches (K rows per head); "cache" recomputes them from
        # its full snapshot of M_t — two routes to the same numbers, compared by the tests
        if self.bptt == "cache":
            rows = _gather(cache.snapshot, cache.read_idx)
            rc = self._read(rows, cache.q, cache.beta_value)[2]
        else:
            rows, rc = _gather(self.memory, cache.read_idx), cache.read          # the live memory is M_t
        drows = np.empty_like(rows)                                           # (B, H, K, W)
        dq, dbeta = np.empty_like(rc.q), np.empty_like(rc.beta)
        content_read_backward_kernel(np.ascontiguousarray(dreads), np.ascontiguousarray(dstate.read_weights),
                                     rows, rc.q, rc.beta, READ_EPS, rc.w, rc.sim, rc.qnorm, rc.rnorm,
                                     drows, dq, dbeta)
        read_flat = np.ascontiguousarray(cache.read_idx.reshape(B, -1))
        self.dmemory.add(read_flat, drows.reshape(B, H * K, W))
        # write backward: M_t = (1 - R) ⊙ M_{t-1} + Σ_h Σ_k w_hk e_{i_hk} a_hᵀ
        drows_w = self.dmemory.gather(cache.write_idx)                         # (B, H, K+1, W)
        dwrite_w = np.einsum("bhkw,bhw->bhk", drows_w, cache.add)             # (B, H, K+1)
        dadd = np.einsum("bhk,bhkw->bhw", cache.write_weights, drows_w)       # (B, H, W)
        self.dmemory.zero(cache.lra)                                           # erased rows: no gradient to M_{t-1}
        self._revert(cache)
        # write weights w = α (γ w^R_{t-1} ⊕ (1-γ)) -> α, γ, w^R_{t-1}
        alpha, gate = cache.alpha, cache.gate
        inner = np.concatenate([gate[..., None] * cache.read_weights_prev, (1.0 - gate)[..., None]], axis=-1)
        dalpha = np.sum(dwrite_w * inner, axis=-1)
        dinner = alpha[..., None] * dwrite_w
        dgate = np.sum(dinner[..., :K] * cache.read_weights_prev, axis=-1) - dinner[..., K]
        dread_weights_prev = gate[..., None] * dinner[..., :K]
        dh_heads = self.heads_backward(dq.reshape(B, H, W), dadd, dalpha, dgate, dbeta.reshape(B, H), cache.heads,
                                       grads)
        dreads_prev, dh_prev, dc_prev = controller_backward(dh + dh_heads + dstate.h, dstate.c, cache.ctrl, grads,
                                                            self.X)
        return SAMState(dh_prev, dc_prev, None, dread_weights_prev, None, None, dreads_prev.reshape(B, H, W), 0)

    def _revert(self, cache):
        """Undo one step: memory rows from the journal, their index entries, the ring."""
        B = cache.journal_rows.shape[0]
        flat_idx = np.ascontiguousarray(cache.write_idx.reshape(B, -1))
        restore_rows_kernel(self.memory, flat_idx, cache.journal_rows)
        self.index.undo(cache.index)
        self.ring.undo(cache.ring)

    # -- ends of a forward or backward pass ---------------------------------------------------------------
    def end_forward(self, caches):
        """After a forward pass without backward: undo every step, newest first (O(T·K)), so the next
        sequence starts from the initial memory."""
        for cache in reversed(caches):
            self._revert(cache)
        self.index.maybe_rebuild()

    def end_backward(self, caches):
        """After backward: the memory is back at M_0; empty the row-gradient table.

        ``last_memory_grad`` keeps ∂L/∂M_0 as a :class:`~refmann.ops.RowGrad`: each row the pass
        read listed once, padded at the end with zero rows (:func:`refmann.ops.densify_rows` gives
        the dense gradient)."""
        self.last_memory_grad = self.dmemory.to_rowgrad(self.N)
        self.dmemory.clear()
        if self.restore == "final":
            self._reapply(caches)
        self.index.maybe_rebuild()

    def _reapply(self, caches):
        """Redo every step's write, index update and ring moves, oldest first: memory back at M_T
        (O(T·K), for truncated BPTT; the next sequence then starts from this memory)."""
        for cache in caches:
            B = cache.new_rows.shape[0]
            flat_idx = np.ascontiguousarray(cache.write_idx.reshape(B, -1))
            restore_rows_kernel(self.memory, flat_idx, cache.new_rows)
            self.index.update(flat_idx)
            self.ring.touch(cache.ring.slots, cache.step)

    def zero_dstate(self, B, dtype):
        H, K, W, C = self.H, self.K, self.W, self.C
        z = np.zeros
        return SAMState(z((B, C), dtype), z((B, C), dtype), None, z((B, H, K), dtype), None, None,
                        z((B, H, W), dtype), 0)
