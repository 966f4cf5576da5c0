"""The least-recently-accessed ring: a circular doubly linked list of slots held in arrays.

Per batch element b: ``nxt[b, s]`` / ``prv[b, s]`` link slot s to its neighbours in order of last
access, ``head[b]`` is the least recently accessed slot and ``prv[b, head[b]]`` the most recent.
Touching a slot moves it to the back in O(1); undoing touches in reverse order restores the ring
exactly, because the neighbours a slot had are adjacent again when its move is undone.
"""

from __future__ import annotations

from .._jit import njit


def _ring_touch_loops(nxt, prv, head, stamps, slots, t, j_prev, j_next, j_head, j_stamp):
    """Move ``slots[b, j]`` (−1 = padding) to the back of ring b, in order, stamping them with t.

    Journal arrays (same shape as ``slots``) receive what is needed to undo each move.
    """
    B, J = slots.shape
    for b in range(B):
        for j in range(J):
            s = slots[b, j]
            if s < 0:
                continue
            j_prev[b, j] = prv[b, s]
            j_next[b, j] = nxt[b, s]
            j_head[b, j] = head[b]
            j_stamp[b, j] = stamps[b, s]
            stamps[b, s] = t
            h = head[b]
            if s == h:  # the oldest becomes the newest: advance the head
                head[b] = nxt[b, s]
                continue
            if prv[b, h] == s:  # already the newest
                continue
            p, n = prv[b, s], nxt[b, s]  # unlink
            nxt[b, p] = n
            prv[b, n] = p
            tail = prv[b, h]  # insert between the tail and the head
            nxt[b, tail] = s
            prv[b, s] = tail
            nxt[b, s] = h
            prv[b, h] = s


def _ring_undo_loops(nxt, prv, head, stamps, slots, j_prev, j_next, j_head, j_stamp):
    """Undo the moves of :func:`_ring_touch_loops` (called with the same slots and journal)."""
    B, J = slots.shape
    for b in range(B):
        for j in range(J - 1, -1, -1):
            s = slots[b, j]
            if s < 0:
                continue
            stamps[b, s] = j_stamp[b, j]
            old_head = j_head[b, j]
            p, n = j_prev[b, j], j_next[b, j]
            if s != old_head and nxt[b, p] != s:
                # s sits at the back (just before the head): unlink it and put it back between p and n
                sp, sn = prv[b, s], nxt[b, s]
                nxt[b, sp] = sn
                prv[b, sn] = sp
                nxt[b, p] = s
                prv[b, s] = p
                nxt[b, s] = n
                prv[b, n] = s
            head[b] = old_head


def _ring_oldest_loops(nxt, head, count, out):
    """out[b, :count] = the ``count`` least recently accessed slots of ring b, oldest first (O(count))."""
    B = head.shape[0]
    for b in range(B):
        s = head[b]
        for j in range(count):
            out[b, j] = s
            s = nxt[b, s]


ring_touch_kernel = njit(_ring_touch_loops)
ring_undo_kernel = njit(_ring_undo_loops)
ring_oldest_kernel = njit(_ring_oldest_loops)
