r"""One step of the Sparse DNC (Rae et al. 2016, Supplementary D), and its dense twin, the oracle.

SAM's heads, sparse reads and writes and ring allocation, plus the DNC's temporal links kept sparse
(DESIGN decision 11; ``docs/sdnc.md``). Per step, for each of H heads (each reads and writes, as in SAM):

1. controller as SAM's: per head q, a, α, γ, β, and read modes π (a softmax over [backward, forward,
   content], DeepMind's order);
2. write (SAM's): :math:`w^W_h = \alpha(\gamma w^R_{h,t-1} + (1-\gamma) 1_{LRA})` on the 3K rows the head
   read at t−1 and its LRA row (3K + 1 entries); the LRA rows are erased, the words added, the index
   updated, everything journalled;
3. links: the heads' mean write weighting :math:`\bar w = \frac1H \sum_h w^W_h` (so that
   :math:`\sum_i \bar w(i) \le 1`, as the precedence needs; with H = 1 it is the DNC's one write head)
   updates the link tables pred ≈ L and succ ≈ Lᵀ and the precedence, K_L entries per row
   (:class:`~refmann.memory.SparseLinks`), journalled;
4. read: K content candidates from the index, :math:`c` = softmax over them of :math:`\beta\cos`; the
   forward weights :math:`f(i) = \sum_j w^R_{t-1}(j)\,\mathrm{succ}(j, i)` and backward weights
   :math:`b(i) = \sum_j w^R_{t-1}(j)\,\mathrm{pred}(j, i)`, each kept to its K largest slots; the read
   weights are the 3K entries :math:`[\pi_c c ; \pi_f f ; \pi_b b]` and :math:`r = \sum_k w^R_k M(i_k)`;
5. usage (SAM's): slots whose summed weight exceeds δ move to the back of the ring; output.

By default **no gradient flows through the link tables** (the paper's choice): f and b are linear in
:math:`w^R_{t-1}` with coefficients read from the tables, and backward differentiates through those
coefficients' product only. With ``link_grads=True`` (ours) the gradient also flows into the tables'
entries and back through each update into the write weights and the precedence, so ``loss_and_grads``
is the derivative of the loss (away from truncation ties, the clamps and the top-k/LRA/δ decisions):
:meth:`~refmann.memory.SparseLinks.follow_backward`, :meth:`~refmann.memory.SparseLinks.update_backward`
on a :class:`~refmann.memory.links.LinkGrads`; the dense twin differentiates its (B, N, N) recursion
(:func:`dense_links_backward`). Rollback BPTT reverts the memory (rows, index, ring) and the link
tables step by step, bit for bit.

:class:`DenseSDNCCore` applies the same rules to dense (B, N, N) link matrices and dense weights, with
nothing truncated: with K = N, K_L = N and the exact index, the SDNC is the same function (tested), as
SAM with K = N is DAM with timestamp usage.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import ops
from ..memory.links import LinkGrads, SparseLinks
from ..memory.sparse_memory import SparseMemory, StepJournal
from .controller import Controller, Field, HeadGroup, Interface, InterfaceLayout, Output
from .dam import DAMTrace, memory_heads_layout
from .protocol import CoreBase, Step
from .sam import BPTT_MODES, READ_EPS, RESTORE_MODES, SAMCore

MODES = ("backward", "forward", "content")  # the read modes' order (DeepMind's)


def sdnc_layout(H: int, W: int, strength: bool = True) -> InterfaceLayout:
    """SAM's head fields (q, a, α, γ, β) and the read modes π (3 entries, a softmax) per head."""
    (group,) = memory_heads_layout(H, W, strength).groups
    return InterfaceLayout(HeadGroup("head", H, group.fields + (Field("mode", len(MODES), "softmax"),)))


def heads_fields(values, B, H, dtype, strength):
    v = values["head"]
    beta = v["strength"] if strength else np.ones((B, H), dtype)
    return v, np.ascontiguousarray(v["query"]), np.ascontiguousarray(v["add"]), beta, v["mode"]


def heads_backward_with_modes(core, params, dh, dstate_h, dstate_c, cache, dq, dadd, dww, dbeta, dmodes, grads):
    """SAM's head backward plus the read modes: returns (dread_weights_prev, dreads_prev, dh_prev, dc_prev)."""
    dread_weights_prev, dalpha, dgate = ops.lra_interpolate_backward(dww, cache.write_weights)
    dvalues = {
        "head": {
            "query": dq,
            "add": dadd,
            "alpha": dalpha,
            "gate": dgate,
            "strength": dbeta if core.strength else None,
            "mode": dmodes,
        }
    }
    dh_heads = core.interface.backward(params, dvalues, cache.interface, grads)
    dreads_prev, dh_prev, dc_prev = core.controller.backward(
        params, dh + dh_heads + dstate_h, dstate_c, cache.controller, grads
    )
    return dread_weights_prev, dreads_prev.reshape(dadd.shape), dh_prev, dc_prev


# -- the sparse DNC ----------------------------------------------------------------------------------------


class SDNCState(NamedTuple):
    h: np.ndarray  # (B, C)
    c: np.ndarray  # (B, C)
    read_idx: np.ndarray  # int (B, H, 3K)  content K, forward K, backward K
    read_weights: np.ndarray  # (B, H, 3K)      π_c c, π_f f, π_b b
    write_idx: np.ndarray  # int (B, H, 3K+1) the previous read slots, then the LRA slot
    write_weights: np.ndarray  # (B, H, 3K+1)
    reads: np.ndarray  # (B, H, W)
    step: int


class SDNCCache(NamedTuple):
    controller: object
    interface: object
    write_weights: object  # ops.lra_interpolate's cache (sparse form)
    write: object  # ops.sparse_write's cache
    journal: StepJournal  # memory rows, index and ring moves
    links: object  # the SparseLinks journal of the step
    content: object  # ops.sparse_content_read's cache (rows dropped under rollback)
    temporal: object  # ops.sparse_read's cache over the 2K forward/backward rows
    coef: np.ndarray  # (B, H, 2K, 3K) f, b = coef @ w^R_{t-1} (forward K rows, then backward K)
    follow: tuple | None  # link_grads: (read_idx_{t-1} (B,H,3K), w^R_{t-1} (B,H,3K), f_idx (B,H,K), b_idx (B,H,K))
    modes: np.ndarray  # (B, H, 3)
    parts: tuple  # (c (B,H,K), f (B,H,K), b (B,H,K), reads_c (B,H,W))
    output: object
    snapshot: np.ndarray | None  # (B, N, W) copy of M_t (bptt="cache")
    step: int


class SDNCTrace(NamedTuple):
    lra: np.ndarray  # int (B, H)
    touched: np.ndarray  # int (B, ·) slots accessed above δ, ascending, −1 padded
    read_idx: np.ndarray  # int (B, H, K) the content candidates, sorted
    temporal_idx: np.ndarray  # int (B, H, 2K) the forward and backward slots kept, each K sorted
    # link_grads only (None otherwise): what truncation kept, so a finite difference that changes it is seen
    link_rows: np.ndarray | None = None  # int (B, 2J+K_L) the pred rows, then the succ rows, the step changed
    link_kept: np.ndarray | None = None  # int (B, 2J+K_L+1, K_L) their kept columns sorted, then the precedence's


class SDNCCore(CoreBase):
    """The Sparse DNC's step over a :class:`~refmann.memory.SparseMemory` and :class:`~refmann.memory.SparseLinks`.

    ``link_grads=True`` (ours) also differentiates through the link tables: during backward
    ``link_grad`` (a :class:`~refmann.memory.links.LinkGrads`) holds ∂L/∂ the live tables' entries; each
    step adds its follows' gradients, carries it back through its update (into the write weights) and
    reverts the tables it is then aligned with. ``False`` (default) treats the tables as constants.
    """

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
        link_k,
        index_factory,
        bptt="rollback",
        restore="initial",
        fused=True,
        delta=0.005,
        strength=True,
        link_grads=False,
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
        self.H, self.C, self.K, self.KL = num_heads, hidden_size, k, link_k
        self.memory_shape = (memory_size, word_size)
        self.bptt, self.restore, self.fused, self.delta, self.strength = bptt, restore, fused, delta, strength
        self.controller = Controller(input_size, num_heads * word_size, hidden_size)
        self.interface = Interface(hidden_size, sdnc_layout(num_heads, word_size, strength))
        self.output = Output(hidden_size, num_heads * word_size, output_size)
        self.memory = SparseMemory(memory_size, word_size, index_factory)
        self.links = SparseLinks(memory_size, link_k)
        #: differentiate through the link tables (ours); their gradient lives in ``link_grad`` during backward
        self.link_grads = bool(link_grads)
        self.link_grad = None
        self.last_memory_grad = None

    def init_params(self, rng, dtype):
        """``controller.*``, ``heads.*`` (SAM's fields and the read modes), ``output.*``."""
        return {
            **self.controller.init_params(rng, dtype),
            **self.interface.init_params(rng, dtype),
            **self.output.init_params(rng, dtype),
        }

    def initial_state(self, params, B, dtype, memory0):
        """Prepares the memory and empty link tables; zero read weights on slots 0, 1, … (mod N)."""
        links = self.links
        fresh = self.memory.dirty or links.B != B or links.pending or links.pred_val.dtype != np.dtype(dtype)
        self.memory.prepare(B, dtype, memory0)
        if fresh:  # O(N), only when B or the dtype changes, or after steps that were not undone
            links.prepare(B, dtype)
        if self.link_grads:
            g = self.link_grad
            if g is None or g.B != B or g.dtype != np.dtype(dtype):
                self.link_grad = LinkGrads(B, self.KL, dtype, num_slots=self.N)
            else:
                self.link_grad.clear()
        H, K, W, C = self.H, self.K, self.W, self.C
        read_idx = np.broadcast_to(np.arange(3 * K, dtype=np.int64) % self.N, (B, H, 3 * K)).copy()
        z = np.zeros
        return SDNCState(
            z((B, C), dtype),
            z((B, C), dtype),
            read_idx,
            z((B, H, 3 * K), dtype),
            z((B, H, 3 * K + 1), np.int64),
            z((B, H, 3 * K + 1), dtype),
            z((B, H, W), dtype),
            0,
        )

    def step_forward(self, params, x, state):
        """Controller; SAM's write; links; content + forward + backward read; usage; output."""
        H, K = self.H, self.K
        B = x.shape[0]
        mem = self.memory
        (h, c), ctrl_cache = self.controller.forward(params, x, state.reads, state.h, state.c)
        values, iface_cache = self.interface.forward(params, h)
        v, q, add, beta, modes = heads_fields(values, B, H, x.dtype, self.strength)
        # write: the 3K previous read slots and the LRA slot, per head
        lra, write_idx, write_weights, ww_cache, journal, write_cache = mem.lra_write(
            state.read_idx,
            state.read_weights,
            v["alpha"],
            v["gate"],
            add,
            keep_new_rows=self.restore == "final",
            fused=self.fused,
        )  # (B, H, 3K+1): one kernel (kernels/sam_step.py), or one op per equation with fused=False
        # links: the heads' mean write weighting
        link_journal = self.links.update(write_idx.reshape(B, -1), write_weights.reshape(B, -1) / H)
        # read: content candidates, then the links followed from the previous read weights
        read_c = mem.query(q, K, fill=journal.rows[:, ::-1])
        (cw, reads_c), content_cache = ops.sparse_content_read_forward(
            mem.memory, q, beta, indices=read_c, eps=READ_EPS, fused=self.fused
        )
        f_idx, f_coef = self.links.follow(state.read_idx, state.read_weights, K, "forward")
        b_idx, b_coef = self.links.follow(state.read_idx, state.read_weights, K, "backward")
        coef = np.concatenate([f_coef, b_coef], axis=2).astype(x.dtype, copy=False)  # (B, H, 2K, 3K)
        fb = np.einsum("bhaj,bhj->bha", coef, state.read_weights)  # (B, H, 2K)
        f, b = fb[..., :K], fb[..., K:]
        pi_b, pi_f, pi_c = modes[..., 0:1], modes[..., 1:2], modes[..., 2:3]
        temporal_idx = np.concatenate([f_idx, b_idx], axis=-1)  # (B, H, 2K)
        temporal_w = np.concatenate([pi_f * f, pi_b * b], axis=-1)
        reads_t, temporal_cache = ops.sparse_read_forward(mem.memory, temporal_w, indices=temporal_idx)
        reads = pi_c * reads_c + reads_t
        read_idx = np.concatenate([read_c, temporal_idx], axis=-1)  # (B, H, 3K)
        read_weights = np.concatenate([pi_c * cw, temporal_w], axis=-1)
        # usage
        t = state.step + 1
        slots = np.concatenate([journal.rows, read_idx.reshape(B, -1)], axis=1)
        access = np.concatenate([write_weights.reshape(B, -1), read_weights.reshape(B, -1)], axis=1)
        touched, journal = mem.touch(slots, access, self.delta, t, journal)
        y, out_cache = self.output.forward(params, h, reads)
        snapshot = mem.memory.copy() if self.bptt == "cache" else None
        if self.fused:
            content_cache = content_cache._replace(rows=None)  # backward gathers them again from M_t
        cache = SDNCCache(
            ctrl_cache,
            iface_cache,
            ww_cache,
            write_cache,
            journal,
            link_journal,
            content_cache,
            temporal_cache,
            coef,
            (state.read_idx, state.read_weights, f_idx, b_idx) if self.link_grads else None,
            modes,
            (cw, f, b, reads_c),
            out_cache,
            snapshot,
            t,
        )
        state = SDNCState(h, c, read_idx, read_weights, write_idx, write_weights, reads, t)
        trace = SDNCTrace(
            lra, touched, np.sort(read_c, axis=-1), np.concatenate([np.sort(f_idx, -1), np.sort(b_idx, -1)], -1)
        )
        if self.link_grads:
            lj = link_journal
            kept = [lj.pred.new_idx, lj.succ.new_idx, lj.new_prec_idx[:, None, :]]
            trace = trace._replace(
                link_rows=np.concatenate([lj.pred.rows, lj.succ.rows], axis=1),
                link_kept=np.sort(np.concatenate(kept, axis=1), axis=-1),
            )
        return Step(y, state, cache, trace)

    def step_backward(self, params, dy, dstate, cache, grads):
        """VJP of one step against the live memory M_t; then revert the step (memory, index, ring, links)."""
        H, K, W = self.H, self.K, self.W
        B = dy.shape[0]
        mem = self.memory
        dh, dreads = self.output.backward(params, dy, cache.output, grads)
        dreads = dreads.reshape(B, H, W) + dstate.reads
        dw = dstate.read_weights  # (B, H, 3K): [π_c c ; π_f f ; π_b b]
        cw, f, b, reads_c = cache.parts
        modes = cache.modes
        pi_c, pi_f, pi_b = modes[..., 2:3], modes[..., 1:2], modes[..., 0:1]
        # the temporal read r_t = Σ (π_f f ; π_b b) M(rows)
        dmem_t, dtw = ops.sparse_read_backward(dreads, cache.temporal)
        dtw = dtw + dw[..., K:]
        dmodes = np.empty_like(modes)
        dmodes[..., 1] = np.sum(dtw[..., :K] * f, axis=-1)
        dmodes[..., 0] = np.sum(dtw[..., K:] * b, axis=-1)
        dfb = np.concatenate([pi_f * dtw[..., :K], pi_b * dtw[..., K:]], axis=-1)  # (B, H, 2K)
        if self.link_grads:  # f, b = C w^R_{t-1}: into w^R_{t-1}, and into the entries of C (the live tables)
            idx_prev, w_prev, f_idx, b_idx = cache.follow
            follow = dict(indices=idx_prev, weights=w_prev, grads=self.link_grad)
            dread_weights_prev = self.links.follow_backward(dfb[..., :K], out_idx=f_idx, direction="forward", **follow)
            dread_weights_prev += self.links.follow_backward(
                dfb[..., K:], out_idx=b_idx, direction="backward", **follow
            )
        else:  # f, b are linear in w^R_{t-1}, the tables constants
            dread_weights_prev = np.einsum("bhaj,bha->bhj", cache.coef, dfb)
        # the content read, weighted by π_c
        dcw = pi_c * dw[..., :K]
        dmodes[..., 2] = np.sum(dreads * reads_c, axis=-1) + np.sum(dw[..., :K] * cw, axis=-1)
        rc = cache.content
        if self.fused:  # the temporal rows, then one kernel: the content read's VJP, the write's (kernels/sam_step.py)
            mem.grad.add(dmem_t.indices, dmem_t.rows)
            dq, dbeta, dwrite_weights, dadd = mem.read_write_backward(
                rc, dcw, pi_c * dreads, cache.write, memory=cache.snapshot
            )
        else:
            if self.bptt == "cache":
                rc = ops.sparse_content_read_forward(
                    cache.snapshot, rc.keys, rc.strengths, indices=rc.indices, eps=READ_EPS, fused=False
                )[1]
            dmem_c, dq, dbeta = ops.sparse_content_read_backward((dcw, pi_c * dreads), rc)
            mem.grad.add(dmem_c.indices, dmem_c.rows)
            mem.grad.add(dmem_t.indices, dmem_t.rows)
            # the write
            dwrite_weights, dadd = ops.sparse_write_rows_backward(mem.grad.gather(cache.write.indices), cache.write)
            mem.grad.zero(cache.write.erase_indices)  # erased rows: no gradient (the link update needs none)
        if self.link_grads:  # the links were updated by w̄ = (1/H) Σ_h w^W_h: back through the update
            write_idx = cache.write.indices
            dmean = self.links.update_backward(cache.links, indices=write_idx.reshape(B, -1), grads=self.link_grad)
            dwrite_weights = dwrite_weights + dmean.reshape(write_idx.shape) / H
        mem.revert(cache.journal)
        self.links.revert(cache.links)
        dprev, dreads_prev, dh_prev, dc_prev = heads_backward_with_modes(
            self, params, dh, dstate.h, dstate.c, cache, dq, dadd, dwrite_weights, dbeta, dmodes, grads
        )
        return SDNCState(dh_prev, dc_prev, None, dprev + dread_weights_prev, None, None, dreads_prev, 0)

    def zero_dstate(self, state):
        z = np.zeros_like
        return SDNCState(z(state.h), z(state.c), None, z(state.read_weights), None, None, z(state.reads), 0)

    def end_forward(self, caches):
        """Undo every step, newest first: memory, index, ring and links (O(T·K·K_L))."""
        for cache in reversed(caches):
            self.memory.revert(cache.journal)
            self.links.revert(cache.links)
        self.memory.end_pass()

    def end_backward(self, caches):
        """As SAM's: keep ∂L/∂M_0 as row gradients; with ``restore="final"`` redo every step (links too)."""
        mem = self.memory
        self.last_memory_grad = mem.grad.to_rowgrad(self.N)
        mem.grad.clear()
        if self.link_grad is not None:
            self.link_grad.clear()
        if self.restore == "final":
            for cache in caches:
                mem.reapply(cache.journal, cache.step)
                self.links.reapply(cache.links)
        mem.end_pass()

    # SAM's: the state has the same index/weight fields, and the links start afresh with the memory
    # (initial_state re-prepares both when the memory is dirty)
    dense_weights = SAMCore.dense_weights
    forget_steps = SAMCore.forget_steps

    def footprint(self) -> dict[str, int]:
        """Bytes held by each part of the model-owned state (after :meth:`initial_state`)."""
        parts = {**self.memory.nbytes(), "link tables": self.links.nbytes()}
        if self.link_grad is not None:
            parts["link gradients"] = self.link_grad.nbytes()
        return parts


# -- the dense twin ----------------------------------------------------------------------------------------


class DenseLinksCache(NamedTuple):
    pred: np.ndarray  # (B, N, N) pred_{t-1}
    succ: np.ndarray  # (B, N, N) succ_{t-1}
    precedence: np.ndarray  # (B, N) p_{t-1}
    weights: np.ndarray  # (B, N) w̄, the heads' mean write weighting


def dense_links_forward(pred, succ, precedence, weights):
    r"""The SDNC's link rules on dense (B, N, N) tables, nothing truncated (:class:`~refmann.memory.SparseLinks`').

    Parameters
    ----------
    pred, succ : ndarray, shape (B, N, N)
    precedence : ndarray, shape (B, N)
        The old precedence p.
    weights : ndarray, shape (B, N)
        The write weighting w, in [0, 1] and summing to at most 1.

    Returns
    -------
    (pred, succ, precedence) after the step, and a :class:`DenseLinksCache`.

    Notes
    -----
    With :math:`d(i) = \max(1 - w(i), 0)` and :math:`D = \max(1 - \sum_i w(i), 0)`, zero diagonals:

    .. math::

        \mathrm{pred}(i, j) \leftarrow d(i)\,\mathrm{pred}(i, j) + w(i)\,p(j)\ (w(i) > 0), \quad
        \mathrm{succ}(i, j) \leftarrow d(i)\,\mathrm{succ}(i, j) + p(i)\,w(j), \quad
        p \leftarrow D\,p + w.
    """
    w, p = weights, precedence
    N = p.shape[1]
    keep = np.maximum(1.0 - w, 0.0)
    written = w > 0
    new_pred = np.where(written[:, :, None], keep[:, :, None] * pred + w[:, :, None] * p[:, None, :], pred)
    new_succ = keep[:, :, None] * succ + p[:, :, None] * w[:, None, :]
    diag = np.arange(N)
    new_pred[:, diag, diag] = 0.0
    new_succ[:, diag, diag] = 0.0
    new_prec = np.maximum(1.0 - w.sum(axis=1, keepdims=True), 0.0) * p + w
    return (new_pred, new_succ, new_prec), DenseLinksCache(pred, succ, precedence, weights)


def dense_links_backward(dpred, dsucc, dprecedence, cache):
    r"""VJP of :func:`dense_links_forward`: ``(dpred, dsucc, dprecedence, dweights)`` of the step's inputs.

    Parameters
    ----------
    dpred, dsucc : ndarray, shape (B, N, N)
        ∂L/∂ the tables after the step (their diagonals, constants 0, are ignored).
    dprecedence : ndarray, shape (B, N)
    cache : DenseLinksCache

    Notes
    -----
    The rules of ``docs/sdnc.md`` (Gradients) on every entry; a clamped decay has zero derivative and
    ``dweights`` is kept to the support of w (the slots written), as the sparse tables keep it:

    .. math::

        d\mathrm{pred}_{t-1}(i,c) &= d(i)\,d\mathrm{pred}(i,c)\ (w(i) > 0), \qquad
        dw(i) \mathrel{+}= \textstyle\sum_c d\mathrm{pred}(i,c)\,(p(c) - \mathrm{pred}_{t-1}(i,c)), \qquad
        dp(c) \mathrel{+}= \textstyle\sum_i w(i)\,d\mathrm{pred}(i,c) \\
        d\mathrm{succ}_{t-1}(i,c) &= d(i)\,d\mathrm{succ}(i,c), \qquad
        dw(i) \mathrel{-}= \textstyle\sum_c d\mathrm{succ}(i,c)\,\mathrm{succ}_{t-1}(i,c), \qquad
        dp(i) \mathrel{+}= \textstyle\sum_c d\mathrm{succ}(i,c)\,w(c), \qquad
        dw(c) \mathrel{+}= \textstyle\sum_i p(i)\,d\mathrm{succ}(i,c) \\
        dp_{t-1} &\mathrel{+}= D\,dp_t, \qquad dw(i) \mathrel{+}= dp_t(i) - \textstyle\sum_c dp_t(c)\,p_{t-1}(c)
    """
    pred, succ, p, w = cache
    N = p.shape[1]
    diag = np.arange(N)
    G, S = dpred.copy(), dsucc.copy()  # the diagonals are constants: no gradient through them
    G[:, diag, diag] = 0.0
    S[:, diag, diag] = 0.0
    written = w > 0
    keep = np.maximum(1.0 - w, 0.0)
    dkeep = np.where(1.0 - w > 0.0, -1.0, 0.0)  # ∂d(i)/∂w(i)
    dpred_prev = np.where(written[:, :, None], keep[:, :, None] * G, G)
    dw = np.einsum("bic,bc->bi", G, p) + dkeep * np.einsum("bic,bic->bi", G, pred)
    dp = np.einsum("bi,bic->bc", w, G)
    dsucc_prev = keep[:, :, None] * S
    dw += dkeep * np.einsum("bic,bic->bi", S, succ) + np.einsum("bi,bic->bc", p, S)
    dp += np.einsum("bic,bc->bi", S, w)
    total = w.sum(axis=1, keepdims=True)
    D = np.maximum(1.0 - total, 0.0)
    dD = np.where(1.0 - total > 0.0, -1.0, 0.0)
    dp += D * dprecedence
    dw += dprecedence + dD * np.sum(dprecedence * p, axis=1, keepdims=True)
    return dpred_prev, dsucc_prev, dp, np.where(written, dw, 0.0)


class DenseSDNCState(NamedTuple):
    h: np.ndarray  # (B, C)
    c: np.ndarray  # (B, C)
    memory: np.ndarray  # (B, N, W)
    read_weights: np.ndarray  # (B, H, N)
    write_weights: np.ndarray  # (B, H, N)
    pred: np.ndarray  # (B, N, N) ≈ L (a gradient only with link_grads)
    succ: np.ndarray  # (B, N, N) ≈ Lᵀ (a gradient only with link_grads)
    precedence: np.ndarray  # (B, N)
    usage: np.ndarray  # (B, N) time of last access (−N..−1 before any)
    reads: np.ndarray  # (B, H, W)
    step: int


class DenseSDNCCache(NamedTuple):
    controller: object
    interface: object
    write_weights: object  # ops.lra_interpolate's cache (dense form)
    write: object  # ops.lra_write's cache
    content: object  # ops.content_weights' cache (on M_t)
    read: object  # ops.dense_read's cache
    tables: tuple  # (pred_t, succ_t) the links the read followed
    links: DenseLinksCache | None  # link_grads: the step's link update (old tables, old precedence, w̄)
    read_weights_prev: np.ndarray  # (B, H, N)
    modes: np.ndarray  # (B, H, 3)
    parts: tuple  # (c, f, b) each (B, H, N)
    output: object


class DenseSDNCCore(CoreBase):
    """The SDNC's rules on dense memory, weights and (B, N, N) links, nothing truncated: the oracle.

    ``link_grads=True`` differentiates through the link recursion too (:func:`dense_links_backward`), the
    gradients of pred, succ and the precedence carried in ``dstate``; ``False`` (default) treats the links
    as constants (``dstate`` holds None for them).
    """

    def __init__(
        self,
        *,
        input_size,
        output_size,
        memory_size,
        word_size,
        num_heads,
        hidden_size,
        delta=0.005,
        strength=True,
        link_grads=False,
    ):
        if num_heads > memory_size:
            raise ValueError(
                f"num_heads: expected at most memory_size = {memory_size} (one LRA slot per head), got {num_heads}"
            )
        self.X, self.Y, self.N, self.W = input_size, output_size, memory_size, word_size
        self.H, self.C = num_heads, hidden_size
        self.memory_shape = (memory_size, word_size)
        self.delta, self.strength = delta, strength
        #: differentiate through the (B, N, N) link recursion (its gradients carried in dstate)
        self.link_grads = bool(link_grads)
        self.controller = Controller(input_size, num_heads * word_size, hidden_size)
        self.interface = Interface(hidden_size, sdnc_layout(num_heads, word_size, strength))
        self.output = Output(hidden_size, num_heads * word_size, output_size)
        #: For checking the stop-gradient: a list of (pred, succ) per step used instead of the links the
        #: step would compute, so that the loss is a function whose exact gradient ``loss_and_grads``
        #: returns (finite differences can check it). None (default): the links are computed. Only without
        #: ``link_grads`` (frozen tables have no gradient to flow through).
        self.frozen_links = None

    init_params = SDNCCore.init_params

    def state_nbytes(self, B, itemsize):
        N, W = self.memory_shape
        return {"memory state": 2 * B * N * W * itemsize, "link matrices": 4 * B * N * N * itemsize}

    def initial_state(self, params, B, dtype, memory0):
        H, N, W, C = self.H, self.N, self.W, self.C
        z = np.zeros
        return DenseSDNCState(
            z((B, C), dtype),
            z((B, C), dtype),
            np.broadcast_to(memory0, (B, N, W)).astype(dtype),
            z((B, H, N), dtype),
            z((B, H, N), dtype),
            z((B, N, N), dtype),
            z((B, N, N), dtype),
            z((B, N), dtype),
            np.broadcast_to(np.arange(-N, 0, dtype=np.float64), (B, N)).copy(),
            z((B, H, W), dtype),
            0,
        )

    def step_forward(self, params, x, state):
        H = self.H
        B = x.shape[0]
        (h, c), ctrl_cache = self.controller.forward(params, x, state.reads, state.h, state.c)
        values, iface_cache = self.interface.forward(params, h)
        v, q, add, beta, modes = heads_fields(values, B, H, x.dtype, self.strength)
        lra = ops.top_k(-state.usage, H)[0]  # the H oldest slots, ties by index (SAM's ring order)
        write_weights, ww_cache = ops.lra_interpolate_forward(state.read_weights, v["alpha"], v["gate"], lra=lra)
        memory, write_cache = ops.lra_write_forward(state.memory, write_weights, add, erase_indices=lra)
        # links, with SparseLinks' rules and nothing truncated
        w = write_weights.sum(axis=1) / H  # (B, N)
        (pred, succ, precedence), links_cache = dense_links_forward(state.pred, state.succ, state.precedence, w)
        if self.frozen_links is not None:
            if self.link_grads:
                raise ValueError(
                    "frozen_links: the links are constants, there is no gradient through them; "
                    "set link_grads=False to freeze them"
                )
            pred, succ = self.frozen_links[state.step]
        # read: content on M_t, forward f = succᵀ w^R_{t-1}, backward b = predᵀ w^R_{t-1}
        cw, content_cache = ops.content_weights_forward(memory, q, beta, eps=READ_EPS)
        f = np.einsum("bji,bhj->bhi", succ, state.read_weights)
        b = np.einsum("bji,bhj->bhi", pred, state.read_weights)
        read_weights = modes[..., 0:1] * b + modes[..., 1:2] * f + modes[..., 2:3] * cw
        reads, read_cache = ops.dense_read_forward(memory, read_weights)
        t = state.step + 1
        access = np.sum(write_weights + read_weights, axis=1)
        usage = np.where(access > self.delta, float(t), state.usage)
        y, out_cache = self.output.forward(params, h, reads)
        cache = DenseSDNCCache(
            ctrl_cache,
            iface_cache,
            ww_cache,
            write_cache,
            content_cache,
            read_cache,
            (pred, succ),
            links_cache if self.link_grads else None,
            state.read_weights,
            modes,
            (cw, f, b),
            out_cache,
        )
        state = DenseSDNCState(h, c, memory, read_weights, write_weights, pred, succ, precedence, usage, reads, t)
        return Step(y, state, cache, DAMTrace(lra, access > self.delta))

    def step_backward(self, params, dy, dstate, cache, grads):
        H, W = self.H, self.W
        B = dy.shape[0]
        dh, dreads = self.output.backward(params, dy, cache.output, grads)
        dreads = dreads.reshape(B, H, W) + dstate.reads
        dmemory, dread_weights = ops.dense_read_backward(dreads, cache.read)
        dmemory = dmemory + dstate.memory
        dread_weights = dread_weights + dstate.read_weights
        cw, f, b = cache.parts
        modes = cache.modes
        dmodes = np.stack(
            [np.sum(dread_weights * b, -1), np.sum(dread_weights * f, -1), np.sum(dread_weights * cw, -1)], axis=-1
        )
        pred, succ = cache.tables
        df, db = modes[..., 1:2] * dread_weights, modes[..., 0:1] * dread_weights  # (B, H, N)
        dprev = np.einsum("bji,bhi->bhj", succ, df)
        dprev += np.einsum("bji,bhi->bhj", pred, db)
        dmem_c, dq, dbeta = ops.content_weights_backward(modes[..., 2:3] * dread_weights, cache.content)
        dmemory_prev, dwrite_weights, dadd = ops.lra_write_backward(dmemory + dmem_c, cache.write)
        dlinks = (None, None, None)
        if self.link_grads:  # f = succᵀ w^R_{t-1}, b = predᵀ w^R_{t-1}; then back through the link update
            w_prev = cache.read_weights_prev
            dsucc = dstate.succ + np.einsum("bhj,bhi->bji", w_prev, df)
            dpred = dstate.pred + np.einsum("bhj,bhi->bji", w_prev, db)
            *dlinks, dw = dense_links_backward(dpred, dsucc, dstate.precedence, cache.links)
            dwrite_weights = dwrite_weights + dw[:, None, :] / H
        dread_prev, dreads_prev, dh_prev, dc_prev = heads_backward_with_modes(
            self, params, dh, dstate.h, dstate.c, cache, dq, dadd, dwrite_weights, dbeta, dmodes, grads
        )
        return DenseSDNCState(dh_prev, dc_prev, dmemory_prev, dread_prev + dprev, None, *dlinks, None, dreads_prev, 0)

    def zero_dstate(self, state):
        z = np.zeros_like
        links = (z(state.pred), z(state.succ), z(state.precedence)) if self.link_grads else (None, None, None)
        return DenseSDNCState(
            z(state.h),
            z(state.c),
            z(state.memory),
            z(state.read_weights),
            None,
            *links,
            None,
            z(state.reads),
            0,
        )

    def initial_memory_grad(self, dstate):
        return dstate.memory.sum(axis=0)
