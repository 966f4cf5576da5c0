"""Random-hyperplane (angular) LSH over the rows of a batch of memories, with O(1) bucket moves.

Layout, per batch element b and table l: ``codes[b, l, i]`` is row i's bucket; the rows of a bucket
form a doubly linked list (``nxt``/``prv`` over rows, ``heads[b, l, code]`` its first row, −1 when
empty), so a row moves bucket in O(1) when it changes.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit


def _code_of_loops(vec, planes, l):
    """Bucket code of ``vec`` in table l: bit j set when vec · planes[l, j] >= 0."""
    nbits, W = planes.shape[1], planes.shape[2]
    code = 0
    for j in range(nbits):
        dot = 0.0
        for c in range(W):
            dot += vec[c] * planes[l, j, c]
        if dot >= 0.0:
            code |= 1 << j
    return code


def _unlink_loops(b, l, i, codes, heads, nxt, prv):
    p, n = prv[b, l, i], nxt[b, l, i]
    if p >= 0:
        nxt[b, l, p] = n
    else:
        heads[b, l, codes[b, l, i]] = n
    if n >= 0:
        prv[b, l, n] = p


def _push_front_loops(b, l, i, code, codes, heads, nxt, prv):
    first = heads[b, l, code]
    nxt[b, l, i] = first
    prv[b, l, i] = -1
    if first >= 0:
        prv[b, l, first] = i
    heads[b, l, code] = i
    codes[b, l, i] = code


# helpers are compiled first so the kernels below can call them (plain functions without the JIT)
_code_of = njit(_code_of_loops)
_unlink = njit(_unlink_loops)
_push_front = njit(_push_front_loops)


def _lsh_rebuild_loops(memory, planes, codes, heads, nxt, prv):
    """Hash every row into every table (O(N·L·bits·W)); rows are pushed in reverse index order so each
    bucket lists its rows in index order."""
    B, N, _ = memory.shape
    L = planes.shape[0]
    for b in range(B):
        for l in range(L):
            for c in range(heads.shape[2]):
                heads[b, l, c] = -1
            for i in range(N - 1, -1, -1):
                _push_front(b, l, i, _code_of(memory[b, i], planes, l), codes, heads, nxt, prv)


def _lsh_update_loops(memory, planes, rows, codes, heads, nxt, prv, j_code, j_prev, j_next):
    """Re-hash the listed rows (−1 = padding); a row whose code changed moves to the front of its new
    bucket. The journal (B, J, L) records each row's old code and neighbours (old code −1: not moved)."""
    B, J = rows.shape
    L = planes.shape[0]
    for b in range(B):
        for j in range(J):
            i = rows[b, j]
            for l in range(L):
                j_code[b, j, l] = -1
            if i < 0:
                continue
            for l in range(L):
                code = _code_of(memory[b, i], planes, l)
                if code != codes[b, l, i]:
                    j_code[b, j, l] = codes[b, l, i]
                    j_prev[b, j, l] = prv[b, l, i]
                    j_next[b, j, l] = nxt[b, l, i]
                    _unlink(b, l, i, codes, heads, nxt, prv)
                    _push_front(b, l, i, code, codes, heads, nxt, prv)


def _lsh_undo_loops(rows, codes, heads, nxt, prv, j_code, j_prev, j_next):
    """Undo one update, newest move first: each moved row goes back between its old neighbours
    (adjacent again, since later moves were undone before), so the lists are restored exactly."""
    B, J = rows.shape
    L = codes.shape[1]
    for b in range(B):
        for j in range(J - 1, -1, -1):
            i = rows[b, j]
            if i < 0:
                continue
            for l in range(L - 1, -1, -1):
                old = j_code[b, j, l]
                if old < 0:
                    continue
                _unlink(b, l, i, codes, heads, nxt, prv)
                p, n = j_prev[b, j, l], j_next[b, j, l]
                codes[b, l, i] = old
                prv[b, l, i] = p
                nxt[b, l, i] = n
                if p >= 0:
                    nxt[b, l, p] = i
                else:
                    heads[b, l, old] = i
                if n >= 0:
                    prv[b, l, n] = i


def _lsh_query_loops(memory, planes, keys, k, max_per_bucket, probes, codes, heads, nxt, recent, out, seen, counts):
    """For each key: gather candidates from its bucket (plus ``probes`` buckets one bit away, lowest
    margins first) in every table, at most ``max_per_bucket`` per bucket; rank them by exact cosine;
    write the best k to ``out[b, h]`` (score descending, index ascending). If fewer than k distinct
    candidates turn up, the most recently updated rows (``recent``), then rows 0, 1, ... fill in.

    ``seen`` (B, N) int64 must be −1 everywhere on entry and is left so (only candidates are touched).
    ``counts[b, h]`` receives the number of rows scored for the key (what a query costs).
    """
    B, H, W = keys.shape
    L, nbits = planes.shape[0], planes.shape[1]
    cap = L * (probes + 1) * max_per_bucket + recent.shape[1] + k
    cand = np.empty(cap, np.int64)
    score = np.empty(cap, np.float64)
    margins = np.empty(nbits, np.float64)
    for b in range(B):
        for h in range(H):
            key = keys[b, h]
            knorm = 0.0
            for c in range(W):
                knorm += key[c] * key[c]
            knorm = np.sqrt(knorm)
            n = 0
            tag = b * H + h
            for l in range(L):
                code = 0
                for j in range(nbits):
                    dot = 0.0
                    for c in range(W):
                        dot += key[c] * planes[l, j, c]
                    margins[j] = abs(dot)
                    if dot >= 0.0:
                        code |= 1 << j
                order = np.argsort(margins)
                for p in range(probes + 1):
                    probe = code if p == 0 else code ^ (1 << order[p - 1])
                    i = heads[b, l, probe]
                    taken = 0
                    while i >= 0 and taken < max_per_bucket:
                        if seen[b, i] != tag:
                            seen[b, i] = tag
                            cand[n] = i
                            n += 1
                        taken += 1
                        i = nxt[b, l, i]
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
                    dot += key[c] * memory[b, i, c]
                    rn += memory[b, i, c] * memory[b, i, c]
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


lsh_rebuild_kernel = njit(_lsh_rebuild_loops)
lsh_update_kernel = njit(_lsh_update_loops)
lsh_undo_kernel = njit(_lsh_undo_loops)
lsh_query_kernel = njit(_lsh_query_loops)
