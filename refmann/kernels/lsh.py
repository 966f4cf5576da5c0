"""Random-hyperplane (angular) LSH over the rows of a batch of memories, with O(1) bucket moves.

Layout, per batch element b and table l: ``codes[b, i, l]`` is row i's bucket; the rows of a bucket
form a doubly linked list (``nxt``/``prv`` over rows, ``heads[b, l, code]`` its first row, −1 when
empty), so a row moves bucket in O(1) when it changes. The bucket arrays are int32 (N < 2**31).

Hyperplanes are kept transposed, ``planes_t[c, l·bits + j]``, so that one pass over a vector's W
components accumulates all L·bits projections side by side (the inner loop vectorises without
reordering any sum: every projection is summed over c = 0..W−1 in order, the same rounding in the
update, the query and the fallback of the rebuild).

The list operations (unlink a row, push it to the front of a bucket) are written out inside each
kernel rather than called as helpers: measured, a numba call that passes the four bucket arrays costs
~100 ns (their reference counts are updated on every call, even when inlined) against ~10 ns written
out, and a step makes thousands of them.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit


def _project_loops(vec, planes_t, proj):
    """proj[p] = Σ_c vec[c] · planes_t[c, p], summed in the order c = 0, 1, ..., W−1."""
    W, P = planes_t.shape
    for p in range(P):
        proj[p] = 0.0
    for c in range(W):
        v = np.float64(vec[c])
        for p in range(P):
            proj[p] += v * planes_t[c, p]


_project = njit(_project_loops, inline=True)


def _lsh_codes_from_projections_loops(memory, b, start, proj, planes_t, plane_norms, nbits, codes):
    """codes[b, start + m, l] from BLAS projections ``proj`` (n, L·bits) of rows start..start+n−1.

    A BLAS sum may differ from the exact-order sum by at most ~W·2⁻⁵³·‖row‖‖plane‖, so a row with any
    projection within 4·W·2⁻⁵³·‖row‖‖plane‖ of zero is re-projected in the exact order first: the codes
    are then bit-for-bit what the update kernel computes."""
    n, P = proj.shape
    W = planes_t.shape[0]
    L = P // nbits
    exact = np.empty(P, np.float64)
    tol = 4.0 * W * 2.0**-53
    for m in range(n):
        row = memory[b, start + m]
        rn = 0.0
        for c in range(W):
            v = np.float64(row[c])
            rn += v * v
        bound = tol * np.sqrt(rn)
        unsure = False
        for p in range(P):
            if abs(proj[m, p]) <= bound * plane_norms[p]:
                unsure = True
                break
        if unsure:
            _project(row, planes_t, exact)
        else:
            for p in range(P):
                exact[p] = proj[m, p]
        for l in range(L):
            code = 0
            for j in range(nbits):
                if exact[l * nbits + j] >= 0.0:
                    code |= 1 << j
            codes[b, start + m, l] = code


def _lsh_link_loops(b, codes, heads, nxt, prv):
    """Rebuild the bucket lists of batch element b from ``codes[b]``: rows pushed in reverse index order,
    so each bucket lists its rows in index order (O(N·L))."""
    N, L = codes.shape[1], codes.shape[2]
    for l in range(L):
        for c in range(heads.shape[2]):
            heads[b, l, c] = -1
    for i in range(N - 1, -1, -1):  # push i to the front of its bucket in every table
        for l in range(L):
            code = codes[b, i, l]
            first = heads[b, l, code]
            nxt[b, i, l] = first
            prv[b, i, l] = -1
            if first >= 0:
                prv[b, first, l] = i
            heads[b, l, code] = i


def _lsh_update_loops(memory, planes_t, nbits, rows, codes, heads, nxt, prv, j_code, j_prev, j_next):
    """Re-hash the listed rows (−1 = padding; repeats are skipped); a row whose code changed moves to the
    front of its new bucket. The journal (B, J, L) records each row's old code and neighbours (old code
    −1: not moved)."""
    B, J = rows.shape
    L = codes.shape[2]
    W, P = planes_t.shape
    proj = np.empty(P, np.float64)
    for b in range(B):
        for j in range(J):
            i = rows[b, j]
            for l in range(L):
                j_code[b, j, l] = -1
            repeated = False  # a row listed twice is re-hashed once
            for j2 in range(j):
                if rows[b, j2] == i:
                    repeated = True
            if i < 0 or repeated:
                continue
            for p in range(P):  # the projections, in the exact order (_project)
                proj[p] = 0.0
            for c in range(W):
                v = np.float64(memory[b, i, c])
                for p in range(P):
                    proj[p] += v * planes_t[c, p]
            for l in range(L):
                code = 0
                for bit in range(nbits):
                    if proj[l * nbits + bit] >= 0.0:
                        code |= 1 << bit
                old = codes[b, i, l]
                if code == old:
                    continue
                p, n = prv[b, i, l], nxt[b, i, l]
                j_code[b, j, l], j_prev[b, j, l], j_next[b, j, l] = old, p, n
                if p >= 0:  # unlink i from bucket ``old``
                    nxt[b, p, l] = n
                else:
                    heads[b, l, old] = n
                if n >= 0:
                    prv[b, n, l] = p
                first = heads[b, l, code]  # push i to the front of bucket ``code``
                nxt[b, i, l] = first
                prv[b, i, l] = -1
                if first >= 0:
                    prv[b, first, l] = i
                heads[b, l, code] = i
                codes[b, i, l] = code


def _lsh_undo_loops(rows, codes, heads, nxt, prv, j_code, j_prev, j_next):
    """Undo one update, newest move first: each moved row goes back between its old neighbours
    (adjacent again, since later moves were undone before), so the lists are restored exactly."""
    B, J = rows.shape
    L = codes.shape[2]
    for b in range(B):
        for j in range(J - 1, -1, -1):
            i = rows[b, j]
            if i < 0:
                continue
            for l in range(L - 1, -1, -1):
                old = j_code[b, j, l]
                if old < 0:
                    continue
                p, n = prv[b, i, l], nxt[b, i, l]  # unlink i from its current bucket
                if p >= 0:
                    nxt[b, p, l] = n
                else:
                    heads[b, l, codes[b, i, l]] = n
                if n >= 0:
                    prv[b, n, l] = p
                p, n = j_prev[b, j, l], j_next[b, j, l]  # and put it back between its old neighbours
                codes[b, i, l] = old
                prv[b, i, l] = p
                nxt[b, i, l] = n
                if p >= 0:
                    nxt[b, p, l] = i
                else:
                    heads[b, l, old] = i
                if n >= 0:
                    prv[b, n, l] = i


def _lsh_query_loops(memory, planes_t, nbits, keys, k, max_per_bucket, probes, heads, nxt, recent, out, seen, counts):
    """For each key: gather candidates from its bucket (plus ``probes`` buckets one bit away, lowest
    margins first) in every table, at most ``max_per_bucket`` per bucket; rank them by exact cosine;
    write the best k to ``out[b, h]`` (score descending, index ascending). If fewer than k distinct
    candidates turn up, the most recently updated rows (``recent``), then rows 0, 1, ... fill in.

    ``seen`` (B, N) must be −1 everywhere on entry and is left so (only candidates are touched).
    ``counts[b, h]`` receives the number of rows scored for the key (what a query costs).
    """
    B, H, W = keys.shape
    L = heads.shape[1]
    cap = L * (probes + 1) * max_per_bucket + recent.shape[1] + k
    cand = np.empty(cap, np.int64)
    score = np.empty(cap, np.float64)
    proj = np.empty(planes_t.shape[1], np.float64)
    margin = np.empty(nbits, np.float64)
    P = probes + 1
    first = np.empty(L * P, np.int64)
    for b in range(B):
        for h in range(H):
            key = keys[b, h]
            knorm = 0.0
            for c in range(W):
                knorm += key[c] * key[c]
            knorm = np.sqrt(knorm)
            n = 0
            tag = b * H + h
            _project(key, planes_t, proj)
            # every probed bucket's first row, loaded in one sweep: the loads are independent, so the
            # CPU overlaps their cache misses (the heads table is large at large N)
            for l in range(L):
                code = 0
                for j in range(nbits):
                    v = proj[l * nbits + j]
                    margin[j] = abs(v)
                    if v >= 0.0:
                        code |= 1 << j
                first[l * P] = heads[b, l, code]
                for p in range(1, P):  # flip the bit of smallest remaining margin (ties: the lower bit)
                    best = 0
                    for j in range(1, nbits):
                        if margin[j] < margin[best]:
                            best = j
                    margin[best] = np.inf
                    first[l * P + p] = heads[b, l, code ^ (1 << best)]
            for t in range(L * P):
                l = t // P
                i = first[t]
                taken_rows = 0
                while i >= 0 and taken_rows < max_per_bucket:
                    if seen[b, i] != tag:
                        seen[b, i] = tag
                        cand[n] = i
                        n += 1
                    taken_rows += 1
                    i = nxt[b, i, l]
            # fill-ins when the buckets held fewer than k rows
            r = 0
            while n < k and r < recent.shape[1]:
                i = recent[b, r]
                if i >= 0 and seen[b, i] != tag:
                    seen[b, i] = tag
                    cand[n] = i
                    n += 1
                r += 1
            i = 0
            while n < k:
                if seen[b, i] != tag:
                    seen[b, i] = tag
                    cand[n] = i
                    n += 1
                i += 1
            counts[b, h] = n
            for m in range(n):
                i = cand[m]
                dot = 0.0
                rn = 0.0
                for c in range(W):
                    v = np.float64(memory[b, i, c])
                    dot += key[c] * v
                    rn += v * v
                score[m] = dot / (knorm * np.sqrt(rn) + 1e-6)
            # top-k: score descending, index ascending
            for j in range(k):
                best = j
                for m in range(j + 1, n):
                    if score[m] > score[best] or (score[m] == score[best] and cand[m] < cand[best]):
                        best = m
                score[j], score[best] = score[best], score[j]
                cand[j], cand[best] = cand[best], cand[j]
                out[b, h, j] = cand[j]
            for m in range(n):
                seen[b, cand[m]] = -1


lsh_codes_from_projections_kernel = njit(_lsh_codes_from_projections_loops)
lsh_link_kernel = njit(_lsh_link_loops)
lsh_update_kernel = njit(_lsh_update_loops)
lsh_undo_kernel = njit(_lsh_undo_loops)
lsh_query_kernel = njit(_lsh_query_loops)
