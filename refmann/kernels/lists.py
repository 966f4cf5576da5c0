"""Doubly linked lists of rows, the shared layout of the LSH and k-d forest indexes.

Per batch element b and table (or tree) t, the rows of list s are chained by ``nxt[b, i, t]`` and
``prv[b, i, t]`` (−1 at the ends) from ``heads[b, t, s]`` (−1 when empty). Both indexes keep every
list sorted by row index and make the same O(1) edits when a row moves between lists, journalling
``(old list, prv, nxt)`` before they unlink, so an undo is :func:`_insert_after` the journalled
predecessor. The k-d forest's kernels call the two helpers here; the LSH kernels write the same
edits out, because a Numba call that passes the list arrays pays their reference counting even when
inlined, and LSH makes up to H·(K+1)·L = 320 moves per batch element a step (measured: its update
7 % slower with the calls; ``docs/benchmarks.md``, "What made SAM fast"). ``tests/test_memory_kdforest.py``
pins the helpers.
"""

from __future__ import annotations

from .._jit import njit


def _unlink_loops(heads, nxt, prv, b, t, s, i):
    """Take row i out of list s of table t (its neighbours become adjacent)."""
    p, n = prv[b, i, t], nxt[b, i, t]
    if p >= 0:
        nxt[b, p, t] = n
    else:
        heads[b, t, s] = n
    if n >= 0:
        prv[b, n, t] = p


_unlink = njit(_unlink_loops, inline=True)


def _insert_after_loops(heads, nxt, prv, b, t, s, i, p):
    """Put row i into list s of table t right after row p (p = −1: at the head)."""
    if p >= 0:
        n = nxt[b, p, t]
        nxt[b, p, t] = i
    else:
        n = heads[b, t, s]
        heads[b, t, s] = i
    prv[b, i, t] = p
    nxt[b, i, t] = n
    if n >= 0:
        prv[b, n, t] = i


_insert_after = njit(_insert_after_loops, inline=True)
