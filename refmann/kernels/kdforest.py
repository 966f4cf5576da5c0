"""Kernels of the randomized k-d forest index (:class:`refmann.memory.KDForestIndex`).

The trees are complete binary trees of depth D in heap layout: internal node n (0 <= n < 2**D − 1)
splits on dimension ``dims[b, t, n]`` at ``thresholds[b, t, n]``; its children are 2n + 1 (below the
threshold) and 2n + 2 (at or above it); node n >= 2**D − 1 is leaf n − (2**D − 1). Rows and keys are
compared as unit vectors x / ‖x‖ (a zero vector stays zero), computed by one helper in one order, so
a row files into the same leaf whichever kernel computes it.

Every leaf's rows form a doubly linked list sorted by row index (``heads`` (B, T, leaves), ``nxt`` and
``prv`` (B, N, T), ``codes`` (B, N, T): the leaf of each row in each tree), as the LSH index's buckets:
the lists are a function of the codes alone, and the codes of the memory's contents and the trees.
``sizes`` (B, T, 2**D − 1) counts the rows under each internal node (a function of the codes too), so
a query never descends into an empty subtree: on a clustered memory (a SAM's constant initial one
files every row into one leaf per tree) most leaves are empty, and a search that visited them paid
O(T · checks · D) for nothing.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit
from .candidates import _finish_query
from .lists import _insert_after, _unlink


def _unit_loops(x, out):
    """out = x / ‖x‖ in float64, summed in index order (zeros for a zero vector)."""
    W = x.shape[0]
    s = 0.0
    for c in range(W):
        v = np.float64(x[c])
        s += v * v
    if s > 0.0:
        inv = 1.0 / np.sqrt(s)
        for c in range(W):
            out[c] = np.float64(x[c]) * inv
    else:
        for c in range(W):
            out[c] = 0.0


_unit = njit(_unit_loops, inline=True)


def _descend_loops(u, dims, thresholds, b, t, depth):
    """The leaf unit vector ``u`` falls in, in tree t of batch element b."""
    n = 0
    for _ in range(depth):
        if u[dims[b, t, n]] >= thresholds[b, t, n]:
            n = 2 * n + 2
        else:
            n = 2 * n + 1
    return n - ((1 << depth) - 1)


_descend = njit(_descend_loops, inline=True)


def _kd_unit_rows_loops(memory, b, out):
    """The unit vectors of every row of ``memory[b]``, into ``out`` (N, W) float64."""
    N = memory.shape[1]
    for i in range(N):
        _unit(memory[b, i], out[i])


def _kd_level_stats_loops(units, local, counts, sums, squares):
    """Per node of one level: its row count, and the per-dimension sums of its rows' unit vectors and
    of their squares, accumulated over the rows in index order (``np.bincount``'s order, so the sums
    equal ``np.bincount(local, units[:, c])`` bit for bit). ``counts`` (m,), ``sums`` and ``squares``
    (m, W) are overwritten."""
    N, W = units.shape
    for n in range(counts.shape[0]):
        counts[n] = 0.0
        for c in range(W):
            sums[n, c] = 0.0
            squares[n, c] = 0.0
    for i in range(N):
        n = local[i]
        counts[n] += 1.0
        for c in range(W):
            v = units[i, c]
            sums[n, c] += v
            squares[n, c] += v * v


def _kd_level_medians_loops(values, local, counts, thr):
    """Per node of one level: the (count // 2)-th smallest of its rows' ``values`` (0 for an empty
    node), into ``thr`` (m,). The rows are grouped by node (a counting sort), then each group is
    partitioned at that rank (O(N) a level); the value at a rank is the same whatever order ties take."""
    N = values.shape[0]
    m = thr.shape[0]
    starts = np.empty(m + 1, np.int64)
    starts[0] = 0
    for n in range(m):
        starts[n + 1] = starts[n] + counts[n]
    pos = starts[:m].copy()
    buf = np.empty(N, np.float64)
    for i in range(N):
        n = local[i]
        buf[pos[n]] = values[i]
        pos[n] += 1
    for n in range(m):
        c = counts[n]
        if c > 0:
            thr[n] = np.partition(buf[starts[n] : starts[n] + c], c // 2)[c // 2]
        else:
            thr[n] = 0.0


def _kd_codes_loops(memory, dims, thresholds, depth, codes):
    """The leaf of every row in every tree, into ``codes`` (B, N, T)."""
    B, N, W = memory.shape
    T = dims.shape[1]
    u = np.empty(W, np.float64)
    for b in range(B):
        for i in range(N):
            _unit(memory[b, i], u)
            for t in range(T):
                codes[b, i, t] = _descend(u, dims, thresholds, b, t, depth)


def _kd_link_loops(b, codes, heads, nxt, prv):
    """Link every row of batch element b into its leaf's list, in index order (rebuild)."""
    N, T = codes.shape[1], codes.shape[2]
    tails = np.full(heads.shape[2], -1, np.int64)
    for t in range(T):
        for s in range(heads.shape[2]):
            heads[b, t, s] = -1
            tails[s] = -1
        for i in range(N):
            c = codes[b, i, t]
            p = tails[c]
            prv[b, i, t] = p
            nxt[b, i, t] = -1
            if p >= 0:
                nxt[b, p, t] = i
            else:
                heads[b, t, c] = i
            tails[c] = i


def _kd_sizes_loops(b, codes, depth, sizes):
    """The rows under every internal node of every tree of batch element b, from the codes (rebuild)."""
    N, T = codes.shape[1], codes.shape[2]
    first_leaf = (1 << depth) - 1
    for t in range(T):
        for n in range(first_leaf):
            sizes[b, t, n] = 0
        for i in range(N):
            n = codes[b, i, t] + first_leaf
            while n > 0:
                n = (n - 1) // 2
                sizes[b, t, n] += 1


def _move_size_loops(sizes, b, t, depth, old, new):
    """Row moved from leaf ``old`` to leaf ``new`` of tree t: the sizes of their ancestors follow."""
    first_leaf = (1 << depth) - 1
    n = old + first_leaf
    while n > 0:
        n = (n - 1) // 2
        sizes[b, t, n] -= 1
    n = new + first_leaf
    while n > 0:
        n = (n - 1) // 2
        sizes[b, t, n] += 1


_move_size = njit(_move_size_loops, inline=True)


def _occupied_loops(sizes, heads, b, t, node, first_leaf):
    """Whether any row lies under ``node`` (an internal node's size, or a leaf's list)."""
    if node < first_leaf:
        return sizes[b, t, node] > 0
    return heads[b, t, node - first_leaf] >= 0


_occupied = njit(_occupied_loops, inline=True)


def _kd_update_loops(memory, dims, thresholds, depth, rows, codes, heads, nxt, prv, sizes, j_code, j_prev, j_next):
    """Re-file each row of ``rows`` (B, J) (−1: padding), in order: in every tree whose leaf for the
    row's new contents differs from its current one, journal (old leaf, old neighbours), unlink it and
    insert it at its sorted place in the new leaf's list (found by a walk from the head: O(leaf size)).
    ``j_code[b, j, t]`` is −1 where the row did not move."""
    B, J = rows.shape
    W = memory.shape[2]
    T = dims.shape[1]
    u = np.empty(W, np.float64)
    for b in range(B):
        for j in range(J):
            i = rows[b, j]
            for t in range(T):
                j_code[b, j, t] = -1
                j_prev[b, j, t] = -1
                j_next[b, j, t] = -1
            if i < 0:
                continue
            _unit(memory[b, i], u)
            for t in range(T):
                code = _descend(u, dims, thresholds, b, t, depth)
                old = codes[b, i, t]
                if code == old:
                    continue
                j_code[b, j, t], j_prev[b, j, t], j_next[b, j, t] = old, prv[b, i, t], nxt[b, i, t]
                _unlink(heads, nxt, prv, b, t, old, i)
                codes[b, i, t] = code
                q = -1  # i's predecessor in leaf ``code``: the largest row < i there
                w = heads[b, t, code]
                while w >= 0 and w < i:
                    q = w
                    w = nxt[b, w, t]
                _insert_after(heads, nxt, prv, b, t, code, i, q)
                _move_size(sizes, b, t, depth, old, code)


def _kd_undo_loops(rows, codes, heads, nxt, prv, sizes, depth, j_code, j_prev, j_next):
    """Undo one update, newest move first: each moved row goes back between its old neighbours
    (adjacent again, since the later moves were undone before), so the lists are restored exactly."""
    B, J = rows.shape
    T = codes.shape[2]
    for b in range(B):
        for j in range(J - 1, -1, -1):
            i = rows[b, j]
            if i < 0:
                continue
            for t in range(T - 1, -1, -1):
                old = j_code[b, j, t]
                if old < 0:
                    continue
                cur = codes[b, i, t]
                _unlink(heads, nxt, prv, b, t, cur, i)
                codes[b, i, t] = old
                _insert_after(heads, nxt, prv, b, t, old, i, j_prev[b, j, t])
                _move_size(sizes, b, t, depth, cur, old)


def _heap_less(hd, ht, hn, a, c):
    """Heap order: distance, then tree, then node (a total order, so the visits are deterministic)."""
    if hd[a] != hd[c]:
        return hd[a] < hd[c]
    if ht[a] != ht[c]:
        return ht[a] < ht[c]
    return hn[a] < hn[c]


_less = njit(_heap_less, inline=True)


def _heap_swap(hd, ht, hn, a, c):
    hd[a], hd[c] = hd[c], hd[a]
    ht[a], ht[c] = ht[c], ht[a]
    hn[a], hn[c] = hn[c], hn[a]


_swap = njit(_heap_swap, inline=True)


def _kd_query_loops(memory, dims, thresholds, depth, keys, k, checks, heads, nxt, sizes, fill, out, seen, counts):
    """For each key: descend every tree, then visit further leaves best-bin-first (the branch not
    taken at a node is queued at the distance so far plus the squared distance to its split), taking
    the rows of each leaf lowest index first, until ``checks`` distinct rows are gathered (or T·checks
    rows read: the work is bounded whatever the leaves' sizes); empty subtrees are never entered nor
    queued (where the key's side of a split is empty the descent crosses to the other side, its
    distance growing by the squared distance to the split), so every leaf visited holds a row; rank
    them by exact cosine; write the best k to ``out[b, h]`` (score descending, index ascending). Too few
    candidates are topped up with ``fill[b]`` (−1: none), then rows 0, 1, ....

    ``seen`` (B, N) must be −1 everywhere on entry and is left so. ``counts[b, h]``: the rows scored.
    """
    B, H, W = keys.shape
    T = dims.shape[1]
    budget = T * checks
    cap = T + budget * (depth + 1)  # one pop per leaf visit, at most ``depth`` pushes per descent
    hd = np.empty(cap, np.float64)
    ht = np.empty(cap, np.int64)
    hn = np.empty(cap, np.int64)
    ncand = max(checks, k) + k
    cand = np.empty(ncand, np.int64)
    score = np.empty(ncand, np.float64)
    u = np.empty(W, np.float64)
    first_leaf = (1 << depth) - 1
    for b in range(B):
        for h in range(H):
            key = keys[b, h]
            tag = b * H + h
            _unit(key, u)
            size = 0
            for t in range(T):  # push every root at distance 0 (already in heap order)
                hd[size], ht[size], hn[size] = 0.0, t, 0
                size += 1
            n = 0
            reads = 0  # every leaf visited holds a row, so the visits are bounded by the reads too
            while size > 0 and n < checks and reads < budget:
                dist, t, node = hd[0], ht[0], hn[0]  # pop the best
                size -= 1
                if size > 0:
                    _swap(hd, ht, hn, 0, size)
                    a = 0
                    while True:
                        lo = 2 * a + 1
                        if lo >= size:
                            break
                        c = lo
                        if lo + 1 < size and _less(hd, ht, hn, lo + 1, lo):
                            c = lo + 1
                        if _less(hd, ht, hn, c, a):
                            _swap(hd, ht, hn, a, c)
                            a = c
                        else:
                            break
                while node < first_leaf:  # descend, queueing the other branch
                    diff = u[dims[b, t, node]] - thresholds[b, t, node]
                    if diff >= 0.0:
                        other, near = 2 * node + 1, 2 * node + 2
                    else:
                        other, near = 2 * node + 2, 2 * node + 1
                    if not _occupied(sizes, heads, b, t, near, first_leaf):  # (the node holds a row,
                        node = other  # so the other side does)
                        dist += diff * diff
                        continue
                    node = near
                    if not _occupied(sizes, heads, b, t, other, first_leaf):
                        continue
                    hd[size], ht[size], hn[size] = dist + diff * diff, t, other
                    a = size
                    size += 1
                    while a > 0:
                        p = (a - 1) // 2
                        if _less(hd, ht, hn, a, p):
                            _swap(hd, ht, hn, a, p)
                            a = p
                        else:
                            break
                i = heads[b, t, node - first_leaf]
                while i >= 0 and n < checks and reads < budget:
                    reads += 1
                    if seen[b, i] != tag:
                        seen[b, i] = tag
                        cand[n] = i
                        n += 1
                    i = nxt[b, i, t]
            counts[b, h] = _finish_query(memory, b, key, k, fill, seen, tag, cand, score, n, out[b, h])


kd_unit_rows_kernel = njit(_kd_unit_rows_loops)
kd_codes_kernel = njit(_kd_codes_loops)
kd_level_stats_kernel = njit(_kd_level_stats_loops)
kd_level_medians_kernel = njit(_kd_level_medians_loops)
kd_link_kernel = njit(_kd_link_loops)
kd_sizes_kernel = njit(_kd_sizes_loops)
kd_update_kernel = njit(_kd_update_loops)
kd_undo_kernel = njit(_kd_undo_loops)
kd_query_kernel = njit(_kd_query_loops)
