"""In-place sparse writes with a journal, and their undo (rollback BPTT, Rae et al. 2016 §3.4)."""

from __future__ import annotations

from .._jit import njit


def _sparse_write_inplace_loops(memory, erase, idx, w, add, per_head, journal):
    """Journal, erase, add — in place, touching only the listed rows.

    memory : (B, N, W) written in place
    erase : int (B, E)      rows set to zero first (each must also appear in ``idx``)
    idx : int (B, J)        rows that receive ``w[b, j] * add[b, j // per_head]``
    w : (B, J)
    add : (B, H, W)
    journal : (B, J, W)     receives the old contents of the ``idx`` rows
    """
    B, J = idx.shape
    E = erase.shape[1]
    W = memory.shape[2]
    for b in range(B):
        for j in range(J):
            i = idx[b, j]
            for c in range(W):
                journal[b, j, c] = memory[b, i, c]
        for e in range(E):
            i = erase[b, e]
            for c in range(W):
                memory[b, i, c] = 0.0
        for j in range(J):
            i = idx[b, j]
            h = j // per_head
            for c in range(W):
                memory[b, i, c] += w[b, j] * add[b, h, c]


def _restore_rows_loops(memory, idx, rows):
    """memory[b, idx[b, j]] = rows[b, j], newest entry last-written-first (reverse order)."""
    B, J = idx.shape
    W = memory.shape[2]
    for b in range(B):
        for j in range(J - 1, -1, -1):
            i = idx[b, j]
            for c in range(W):
                memory[b, i, c] = rows[b, j, c]


def _accessed_slots_loops(slots, values, delta, out):
    """Per batch element: the distinct slots whose summed value exceeds ``delta``, ascending; −1 pads ``out``.

    slots : int (B, J); values : (B, J); out : int (B, J)
    """
    B, J = slots.shape
    for b in range(B):
        order = slots[b].argsort(kind="mergesort")
        count = 0
        j = 0
        while j < J:
            s = slots[b, order[j]]
            total = 0.0
            while j < J and slots[b, order[j]] == s:
                total += values[b, order[j]]
                j += 1
            if total > delta:
                out[b, count] = s
                count += 1
        for j in range(count, J):
            out[b, j] = -1


sparse_write_inplace_kernel = njit(_sparse_write_inplace_loops)
restore_rows_kernel = njit(_restore_rows_loops)
accessed_slots_kernel = njit(_accessed_slots_loops)
