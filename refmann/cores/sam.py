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

Every equation is an op: :func:`~refmann.ops.lra_interpolate_forward` (the write weights),
:func:`~refmann.ops.sparse_write_inplace` (the write), :func:`~refmann.ops.sparse_content_read_forward`
(the read). ``fused=True`` (default) runs the memory's side of a step as three kernel calls around
the index (:meth:`~refmann.memory.SparseMemory.lra_write`, :meth:`~refmann.memory.SparseMemory.read_touch`
and, backward, :meth:`~refmann.memory.SparseMemory.read_write_backward`; ``refmann/kernels/sam_step.py``);
``fused=False`` runs one op per equation, the ops' readable NumPy bodies — the same numbers (tested
to 1e-12, the discrete decisions equal). The memory, its index, ring and row-gradient table live in
one :class:`~refmann.memory.SparseMemory`.

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

from .. import ops
from ..memory.sparse_memory import SparseMemory, StepJournal
from .controller import Controller, Interface, Output
from .dam import heads_backward, memory_heads_layout
from .protocol import CoreBase, Step

BPTT_MODES = ("rollback", "cache")
READ_EPS = 1e-6  # the cosine's eps, as ops.cosine_similarity's default (and DAM's read)
RESTORE_MODES = ("initial", "final")


class SAMState(NamedTuple):
    h: np.ndarray  # (B, C)
    c: np.ndarray  # (B, C)
    read_idx: np.ndarray  # int (B, H, K)
    read_weights: np.ndarray  # (B, H, K)
    write_idx: np.ndarray  # int (B, H, K+1)  K previous read slots, then the LRA slot
    write_weights: np.ndarray  # (B, H, K+1)
    reads: np.ndarray  # (B, H, W)
    step: int


class SAMCache(NamedTuple):
    controller: object  # ops.lstm_step's cache
    interface: object  # InterfaceCache
    write_weights: object  # ops.lra_interpolate's cache (sparse form)
    write: object  # ops.sparse_write's cache: weights, words, rows (B, H, K+1), LRA rows (B, H)
    journal: StepJournal  # old rows, index and ring moves: what rollback reverts
    read: object  # ops.sparse_content_read's cache (rows dropped under rollback: O(H·K))
    output: object  # ops.linear's cache
    snapshot: np.ndarray | None  # (B, N, W) copy of M_t (bptt="cache" only)
    step: int  # t


class SAMTrace(NamedTuple):
    """The step's discrete decisions (finite-difference checks watch them for kinks)."""

    lra: np.ndarray  # int (B, H)       the least recently accessed slot of each head
    touched: np.ndarray  # int (B, H(2K+1)) slots whose summed weight exceeded δ, ascending, −1 padded
    read_idx: np.ndarray  # int (B, H, K)    the rows each head read, sorted


class SAMCore(CoreBase):
    """SAM's step over a :class:`~refmann.memory.SparseMemory`; DAM's parameters and sandwich."""

    in_place = True

    def __init__(
        self,
        *,
        input_size,
        output_size,
        memory_size,
        word_size,
        num_heads,
        hidden_size,
        k,
        index_factory,
        bptt="rollback",
        restore="initial",
        fused=True,
        delta=0.005,
        strength=True,
    ):
        if bptt not in BPTT_MODES:
            raise ValueError(f"bptt: expected one of {BPTT_MODES}, got {bptt!r}")
        if restore not in RESTORE_MODES:
            raise ValueError(f"restore: expected one of {RESTORE_MODES}, got {restore!r}")
        if num_heads > memory_size:
            raise ValueError(
                f"num_heads: expected at most memory_size = {memory_size} (one LRA slot per head), got {num_heads}"
            )
        self.X, self.Y, self.N, self.W = input_size, output_size, memory_size, word_size
        self.H, self.C, self.K = num_heads, hidden_size, k
        self.memory_shape = (memory_size, word_size)
        self.bptt, self.restore, self.fused, self.delta, self.strength = bptt, restore, fused, delta, strength
        self.controller = Controller(input_size, num_heads * word_size, hidden_size)
        self.interface = Interface(hidden_size, memory_heads_layout(num_heads, word_size, strength))
        self.output = Output(hidden_size, num_heads * word_size, output_size)
        self.memory = SparseMemory(memory_size, word_size, index_factory)
        self.last_memory_grad = None

    def init_params(self, rng, dtype):
        """DAM's parameters: ``controller.*``, ``heads.*``, ``output.*`` (drawn in that order)."""
        return {
            **self.controller.init_params(rng, dtype),
            **self.interface.init_params(rng, dtype),
            **self.output.init_params(rng, dtype),
        }

    def initial_state(self, params, B, dtype, memory0):
        """Prepares the memory for batch size B (O(N), once per B); zero reads on slots 0..K−1 with weight 0."""
        self.memory.prepare(B, dtype, memory0)
        H, K, W, C = self.H, self.K, self.W, self.C
        read_idx = np.broadcast_to(np.arange(K, dtype=np.int64), (B, H, K)).copy()
        z = np.zeros
        return SAMState(
            z((B, C), dtype),
            z((B, C), dtype),
            read_idx,
            z((B, H, K), dtype),
            z((B, H, K + 1), np.int64),
            z((B, H, K + 1), dtype),
            z((B, H, W), dtype),
            0,
        )

    # -- forward -----------------------------------------------------------------------------------------
    def step_forward(self, params, x, state):
        """Controller; sparse write (K read slots + the LRA slot); K-sparse read; usage; output."""
        H, K = self.H, self.K
        B = x.shape[0]
        mem = self.memory
        (h, c), ctrl_cache = self.controller.forward(params, x, state.reads, state.h, state.c)
        values, iface_cache = self.interface.forward(params, h)
        v = values["head"]
        q, add = np.ascontiguousarray(v["query"]), np.ascontiguousarray(v["add"])  # copies: p is freed
        beta = v["strength"] if self.strength else np.ones((B, H), x.dtype)
        t = state.step + 1
        # write: K previous read slots and the least recently accessed one, per head
        lra, write_idx, write_weights, ww_cache, journal, write_cache = mem.lra_write(
            state.read_idx,
            state.read_weights,
            v["alpha"],
            v["gate"],
            add,
            keep_new_rows=self.restore == "final",
            fused=self.fused,
        )
        # read: K candidates per head from the index, softmax over those K
        # (a query whose buckets hold fewer than K rows is topped up with the rows just written, newest first)
        read_idx = mem.query(q, K, fill=journal.rows[:, ::-1])  # (B, H, K)
        if self.fused:  # the read and the usage rule in one kernel call (kernels/sam_step.py)
            (read_weights, reads), read_cache, touched, journal = mem.read_touch(
                q, beta, read_idx, journal, write_weights, eps=READ_EPS, delta=self.delta, t=t
            )
        else:  # the readable path: one op per equation
            (read_weights, reads), read_cache = ops.sparse_content_read_forward(
                mem.memory, q, beta, indices=read_idx, eps=READ_EPS, fused=False
            )
            # usage: slots whose summed weight exceeds δ move to the back of the ring
            slots = np.concatenate([journal.rows, read_idx.reshape(B, -1)], axis=1)
            access = np.concatenate([write_weights.reshape(B, -1), read_weights.reshape(B, -1)], axis=1)
            touched, journal = mem.touch(slots, access, self.delta, t, journal)
        y, out_cache = self.output.forward(params, h, reads)
        snapshot = mem.memory.copy() if self.bptt == "cache" else None
        cache = SAMCache(ctrl_cache, iface_cache, ww_cache, write_cache, journal, read_cache, out_cache, snapshot, t)
        state = SAMState(h, c, read_idx, read_weights, write_idx, write_weights, reads, t)
        return Step(y, state, cache, SAMTrace(lra, touched, np.sort(read_idx, axis=-1)))

    # -- backward ----------------------------------------------------------------------------------------
    def step_backward(self, params, dy, dstate, cache, grads):
        """VJP of one step against the live memory M_t, then revert the step's journal (M_t -> M_{t-1})."""
        H, W = self.H, self.W
        B = dy.shape[0]
        mem = self.memory
        dh, dreads = self.output.backward(params, dy, cache.output, grads)
        dreads = dreads.reshape(B, H, W) + dstate.reads
        if self.fused:  # one kernel: the read's VJP on M_t, the table, the write's VJP (kernels/sam_step.py)
            dq, dbeta, dwrite_weights, dadd = mem.read_write_backward(
                cache.read, dstate.read_weights, dreads, cache.write, memory=cache.snapshot
            )
        else:
            # read backward: rollback gathers the K rows again from the live memory, which is M_t; "cache"
            # recomputes the read from its full snapshot of M_t — two routes to the same numbers (tested)
            rc = cache.read
            if self.bptt == "cache":
                rc = ops.sparse_content_read_forward(
                    cache.snapshot, rc.keys, rc.strengths, indices=rc.indices, eps=READ_EPS, fused=False
                )[1]
            dmem_read, dq, dbeta = ops.sparse_content_read_backward((dstate.read_weights, dreads), rc)
            mem.grad.add(dmem_read.indices, dmem_read.rows)
            # write backward: M_t = (1 - R) ⊙ M_{t-1} + Σ_h Σ_j w_hj e_{s_hj} a_hᵀ
            dwrite_weights, dadd = ops.sparse_write_rows_backward(mem.grad.gather(cache.write.indices), cache.write)
            mem.grad.zero(cache.write.erase_indices)  # erased rows: no gradient
        mem.revert(cache.journal)  # the live memory is M_{t-1}
        dread_weights_prev, dreads_prev, dh_prev, dc_prev = heads_backward(
            self, params, dh, dstate, cache, dq, dadd, dwrite_weights, dbeta, grads
        )
        return SAMState(dh_prev, dc_prev, None, dread_weights_prev, None, None, dreads_prev, 0)

    def zero_dstate(self, state):
        """Zero gradients for h, c, the read weights (B, H, K) and the reads."""
        z = np.zeros_like
        return SAMState(z(state.h), z(state.c), None, z(state.read_weights), None, None, z(state.reads), 0)

    # -- ends of a forward or backward pass ---------------------------------------------------------------
    def end_forward(self, caches):
        """After a forward pass without backward: undo every step, newest first (O(T·K)), so the next
        sequence starts from the initial memory."""
        for cache in reversed(caches):
            self.memory.revert(cache.journal)
        self.memory.end_pass()

    def end_backward(self, caches):
        """After backward: the memory is back at M_0; empty the row-gradient table.

        ``last_memory_grad`` keeps ∂L/∂M_0 as a :class:`~refmann.ops.RowGrad`: each row the pass
        read listed once, padded at the end with zero rows (:func:`refmann.ops.densify_rows` gives
        the dense gradient). With ``restore="final"`` every step is then redone, oldest first: the
        memory is left at M_T (truncated BPTT)."""
        mem = self.memory
        self.last_memory_grad = mem.grad.to_rowgrad(self.N)
        mem.grad.clear()
        if self.restore == "final":
            for cache in caches:
                mem.reapply(cache.journal, cache.step)
        mem.end_pass()

    def dense_weights(self, state):
        """(B, H, N) read and write weights, the K (K+1) entries of each head scattered (for pictures)."""

        def scatter(idx, w):
            dense = np.zeros(w.shape[:2] + (self.N,), w.dtype)
            for j in range(idx.shape[-1]):  # repeated slots add up
                np.add.at(dense, (*np.indices(idx.shape[:2]), idx[..., j]), w[..., j])
            return dense

        return scatter(state.read_idx, state.read_weights), scatter(state.write_idx, state.write_weights)

    def forget_steps(self):
        """Steps were taken without their caches (the step API): the next initial_state starts afresh."""
        self.memory.dirty = True

    def footprint(self) -> dict[str, int]:
        """Bytes held by each part of the model-owned state (after :meth:`initial_state`)."""
        return self.memory.nbytes()
