r"""SAM's memory step in three kernel calls: the fast path of ``SAMCore(fused=True)`` (and the SDNC's write).

A SAM step (Rae et al. 2016, §3; ``refmann/cores/sam.py``) talks to its memory about ten times: the
ring's oldest slots, the write weights, the journalled write, the index's update and query, the
gather of the K rows, the content read, the usage rule and the ring's moves; and in backward the
gather, the read's VJP, the row-gradient table's add, gather and zero, the write's VJP. Each is an op
or a method with its own arguments, allocations and (for the kernels) a Numba dispatch of several
microseconds — together more time than their arithmetic. Here they are grouped into three kernels
around the index, whose update and query stay its own (they differ by index):

- :func:`_lra_write_loops`: the ring's H oldest slots, :math:`w^W = \alpha(\gamma w^R_{t-1} + (1-\gamma)
  1_{LRA})` on the K previous read slots and the LRA slot, and the write (journal, erase, add);
- :func:`_read_touch_loops` (after the index's query): the K-sparse content read of every head and
  the usage rule with the ring's moves;
- :func:`_read_write_backward_loops`: the read's VJP on the rows gathered again from :math:`M_t`, its
  rows added to the gradient table, the write's VJP from the table's written rows, the erased rows
  zeroed.

Each calls the kernels of the ops it replaces (``content_read``, ``sparse_write``, ``ring``,
``rowacc``, ``scatter``) on the same arrays in the same order, so the numbers are the ops' own; the
readable path (``fused=False``: the ops' NumPy bodies) is the reference a test holds them to.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit
from .content_read import content_read_backward_kernel, content_read_forward_kernel
from .ring import ring_touch_kernel
from .rowacc import rowacc_add_kernel, rowacc_gather_kernel, rowacc_zero_kernel
from .scatter import gather_rows_kernel
from .sparse_write import accessed_slots_kernel, sparse_write_inplace_kernel


def _lra_write_loops(
    memory, ring_nxt, ring_head, read_idx, read_w, alpha, gate, add, lra, write_idx, inner, ww, old_rows
):
    """The H oldest slots, the write weights on [read slots ; LRA slot] and the journalled write.

    memory (B, N, W) written in place; ring_nxt int32 (B, N), ring_head int (B,): the usage ring;
    read_idx int (B, H, J), read_w (B, H, J): the previous read; alpha, gate (B, H); add (B, H, W).
    Out: lra int (B, H) oldest first; write_idx int (B, H, J+1); inner, ww (B, H, J+1) (γ w^R, 1 − γ,
    and α times that); old_rows (B, H·(J+1), W) the written rows before the write.
    """
    B, H, J = read_idx.shape
    for b in range(B):  # ring_oldest_kernel: walk H slots from the head
        s = ring_head[b]
        for h in range(H):
            lra[b, h] = s
            s = ring_nxt[b, s]
    for b in range(B):  # ops.lra_interpolate_forward (sparse form)
        for h in range(H):
            g = gate[b, h]
            a = alpha[b, h]
            for j in range(J):
                write_idx[b, h, j] = read_idx[b, h, j]
                inner[b, h, j] = g * read_w[b, h, j]
                ww[b, h, j] = a * inner[b, h, j]
            write_idx[b, h, J] = lra[b, h]
            inner[b, h, J] = 1.0 - g
            ww[b, h, J] = a * inner[b, h, J]
    J1 = J + 1
    sparse_write_inplace_kernel(memory, lra, write_idx.reshape(B, H * J1), ww.reshape(B, H * J1), add, J1, old_rows)


def _read_touch_loops(
    memory,
    read_idx,
    q,
    beta,
    eps,
    w,
    reads,
    sim,
    qnorm,
    rnorm,
    write_rows,
    ww,
    delta,
    t,
    ring_nxt,
    ring_prv,
    ring_head,
    ring_stamps,
    touched,
    j_prev,
    j_next,
    j_head,
    j_stamp,
):
    """The content read of every head over its K rows, then the usage rule and the ring's moves.

    read_idx int (B, H, K) the index's candidates; q (B, H, W), beta (B, H). Out: w, sim, rnorm
    (B, H, K), reads (B, H, W), qnorm (B, H) as ``content_read_forward_kernel``. write_rows int (B, J1)
    and ww (B, J1): the step's written rows and weights. Slots [written ; read] whose summed weight
    exceeds δ (``accessed_slots_kernel``) go to touched (B, J1 + H·K), ascending, −1 padded, and to the
    back of the ring at time t; j_* (B, J1 + H·K) receive the ring's journal.
    """
    B, H, K = read_idx.shape
    W = memory.shape[2]
    rows = np.empty((B, H * K, W), memory.dtype)
    gather_rows_kernel(rows, memory, read_idx.reshape(B, H * K))
    content_read_forward_kernel(rows.reshape(B, H, K, W), q, beta, eps, w, reads, sim, qnorm, rnorm)
    J1 = write_rows.shape[1]
    slots = np.empty((B, J1 + H * K), np.int64)
    values = np.empty((B, J1 + H * K), w.dtype)
    for b in range(B):
        for j in range(J1):
            slots[b, j] = write_rows[b, j]
            values[b, j] = ww[b, j]
        for h in range(H):
            for k in range(K):
                slots[b, J1 + h * K + k] = read_idx[b, h, k]
                values[b, J1 + h * K + k] = w[b, h, k]
    accessed_slots_kernel(slots, values, delta, touched)
    ring_touch_kernel(ring_nxt, ring_prv, ring_head, ring_stamps, touched, t, j_prev, j_next, j_head, j_stamp)


def _read_write_backward_loops(
    memory,
    read_idx,
    q,
    beta,
    eps,
    w,
    sim,
    qnorm,
    rnorm,
    dreads,
    dread_w,
    acc_keys,
    acc_where,
    acc_slot_of,
    acc_count,
    acc_pool,
    write_idx,
    ww,
    add,
    erase,
    dq,
    dbeta,
    dww,
    dadd,
):
    """The read's and the write's VJP against the memory M_t, through the row-gradient table.

    memory (B, N, W) is M_t (the live memory under rollback, or a snapshot); read_idx .. rnorm the
    read's cache; dreads (B, H, W) and dread_w (B, H, K) its upstream gradients. acc_*: the
    :class:`~refmann.memory.RowGradAccumulator`'s arrays, with room for H·K new rows. write_idx int
    (B, H, J1), ww (B, H, J1), add (B, H, W), erase int (B, H): the write's cache. Out: dq (B, H, W),
    dbeta (B, H); dww (B, H, J1), dadd (B, H, W). The table gains the read rows' gradients, and the
    erased rows' are zeroed (what M_{t−1} gets is (1 − R) ⊙ dM_t).
    """
    B, H, K = read_idx.shape
    W = memory.shape[2]
    J1 = write_idx.shape[2]
    rows = np.empty((B, H * K, W), memory.dtype)
    flat_read = read_idx.reshape(B, H * K)
    gather_rows_kernel(rows, memory, flat_read)
    drows = np.empty((B, H * K, W), memory.dtype)
    content_read_backward_kernel(
        dreads,
        dread_w,
        rows.reshape(B, H, K, W),
        q,
        beta,
        eps,
        w,
        sim,
        qnorm,
        rnorm,
        drows.reshape(B, H, K, W),
        dq,
        dbeta,
    )
    rowacc_add_kernel(acc_keys, acc_where, acc_slot_of, acc_count, acc_pool, flat_read, drows)
    g = np.empty((B, H * J1, W), acc_pool.dtype)
    rowacc_gather_kernel(acc_keys, acc_where, acc_pool, write_idx.reshape(B, H * J1), g)
    for b in range(B):  # ops.sparse_write_rows_backward: dw_hj = dM(s_hj)·a_h, da_h = Σ_j w_hj dM(s_hj)
        for h in range(H):
            for c in range(W):
                dadd[b, h, c] = 0.0
            for j in range(J1):
                r = h * J1 + j
                acc = 0.0
                for c in range(W):
                    acc += g[b, r, c] * add[b, h, c]
                    dadd[b, h, c] += ww[b, h, j] * g[b, r, c]
                dww[b, h, j] = acc
    rowacc_zero_kernel(acc_keys, acc_where, acc_pool, erase)


lra_write_kernel = njit(_lra_write_loops)
read_touch_kernel = njit(_read_touch_loops)
read_write_backward_kernel = njit(_read_write_backward_loops)
