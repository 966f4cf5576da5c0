"""Random-hyperplane (angular) LSH over the rows of a batch of memories, with sorted bucket lists.

Layout, per batch element b and table l: ``codes[b, i, l]`` is row i's bucket; the rows of a bucket
form a doubly linked list (``nxt``/``prv`` over rows, ``heads[b, l, code]`` its first row, −1 when
empty), **kept sorted by row index**. The lists are then a function of the codes alone, whatever order
the rows were written in, and so is every query (which takes the first ``max_per_bucket`` rows of a
bucket: its lowest-indexed rows). The bucket arrays are int32 (N < 2**31).

A row hashes relative to a centre (``centre[b]``, W float64s; zero for an uncentred index): bit j of
its code in table l is [Σ_c (row[c] − centre[c]) · planes_t[c, l·bits + j] ≥ 0]. Hyperplanes are kept
transposed, ``planes_t[c, l·bits + j]``, so that one pass over a vector's W components accumulates all
L·bits projections side by side (the inner loop vectorises without reordering any sum: every
projection is summed over c = 0..W−1 in order, the same rounding in the update, the query and the
fallback of the rebuild).

A row that changes bucket is unlinked in O(1) and inserted at its sorted place. Its predecessor is
searched two ways at once:

- walking the bucket's list forward from its first row in the row's index range:
  ``sheads[b, l, code, q − 1]`` is the bucket's first row in range q = 1..SEGMENTS−1 of
  ⌈N/SEGMENTS⌉ rows, ``heads`` covers range 0. The cost is the row's rank within its range, about
  s/(2·SEGMENTS) hops for a bucket of s rows, one dependent load per hop;
- scanning ``codes`` down from row i − 1 for the first row with the same code: the cost is the gap to
  the predecessor, about N/s rows of sequential loads, ``SCAN_PER_HOP`` rows per hop after the first
  ``SCAN_AFTER`` hops.

A move so costs about min(s/8, 3 + N/(8s)) hops: a few for the small buckets of spread-out rows, and
a few for the huge buckets of a constant or clustered memory too. The worst case, s ≈ √N, costs
about √N/8. Undo is O(1) per move (the journalled neighbours). ``sheads`` is a function of the lists,
so it is restored with them.

The list operations (unlink a row, insert it) are written out inside each kernel rather than called
as helpers: measured, a numba call that passes the four bucket arrays costs ~100 ns (their reference
counts are updated on every call, even when inlined) against ~10 ns written out, and a step makes
thousands of them.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit
from .candidates import _finish_query

SCAN_PER_HOP = 8  # rows of ``codes`` scanned per list hop when searching an insertion point ...
SCAN_AFTER = 3  # ... after this many hops (most buckets are small: their walks end first)
SEGMENTS = 4  # index ranges per bucket whose first row is kept (``sheads``): a search walks one range


def _project_loops(vec, centre, planes_t, proj):
    """proj[p] = Σ_c (vec[c] − centre[c]) · planes_t[c, p], summed in the order c = 0, 1, ..., W−1
    (each difference taken in float64)."""
    W, P = planes_t.shape
    for p in range(P):
        proj[p] = 0.0
    for c in range(W):
        v = np.float64(vec[c]) - centre[c]
        for p in range(P):
            proj[p] += v * planes_t[c, p]


_project = njit(_project_loops, inline=True)


def _float32_bound_loops(W):
    """τ such that a float32 projection ŝ with |ŝ| > τ‖x‖‖p‖ has the sign of the exact-order float64 one.

    With u = 2⁻²⁴, rounding x and p to float32 and summing the W products in float32 gives
    |ŝ − s| ≤ ((W + 2)u + O(u²)) Σ_c |x_c p_c| ≤ ((W + 2)u + O(u²)) ‖x‖‖p‖ for the real sum s, and the
    float64 sum in the exact order is within W·2⁻⁵³‖x‖‖p‖ of s. Twice (W + 2)u covers both and the
    rounding of the norms, so beyond τ‖x‖‖p‖ all three have one sign, and the float64 sum is not 0."""
    return 2.0 * (W + 2) * 2.0**-24


_float32_bound = njit(_float32_bound_loops, inline=True)


def _lsh_codes_from_projections_loops(memory, b, start, proj, centre, planes_t, plane_norms, nbits, codes):
    """codes[b, start + m, l] from BLAS projections ``proj`` (n, L·bits) of the centred rows
    ``float64(memory[b, start + m]) − centre`` (m = 0..n−1).

    A BLAS sum may differ from the exact-order sum by at most ~W·2⁻⁵³·‖row − centre‖‖plane‖, so a row
    with any projection within 4·W·2⁻⁵³·‖row − centre‖‖plane‖ of zero is re-projected in the exact order
    first: the codes are then bit-for-bit what the update kernel computes."""
    n, P = proj.shape
    W = planes_t.shape[0]
    L = P // nbits
    exact = np.empty(P, np.float64)
    tol = 4.0 * W * 2.0**-53
    for m in range(n):
        row = memory[b, start + m]
        rn = 0.0
        for c in range(W):
            v = np.float64(row[c]) - centre[c]
            rn += v * v
        bound = tol * np.sqrt(rn)
        unsure = False
        for p in range(P):
            if abs(proj[m, p]) <= bound * plane_norms[p]:
                unsure = True
                break
        if unsure:
            _project(row, centre, planes_t, exact)
        else:
            for p in range(P):
                exact[p] = proj[m, p]
        for l in range(L):
            code = 0
            for j in range(nbits):
                if exact[l * nbits + j] >= 0.0:
                    code |= 1 << j
            codes[b, start + m, l] = code


def _lsh_link_loops(b, codes, heads, sheads, nxt, prv):
    """Rebuild the bucket lists of batch element b from ``codes[b]``: rows pushed in reverse index order,
    so each bucket lists its rows in index order (O(N·L)); ``sheads[b, l, code, q − 1]`` is the first
    row of the bucket in index range q = 1..SEGMENTS−1 (−1: none)."""
    N, L = codes.shape[1], codes.shape[2]
    seg = (N + SEGMENTS - 1) // SEGMENTS
    for l in range(L):
        for c in range(heads.shape[2]):
            heads[b, l, c] = -1
            for q in range(SEGMENTS - 1):
                sheads[b, l, c, q] = -1
    for i in range(N - 1, -1, -1):  # push i to the front of its bucket in every table
        qi = i // seg
        for l in range(L):
            code = codes[b, i, l]
            first = heads[b, l, code]
            nxt[b, i, l] = first
            prv[b, i, l] = -1
            if first >= 0:
                prv[b, first, l] = i
            heads[b, l, code] = i
            if qi >= 1:
                sheads[b, l, code, qi - 1] = i


def _lsh_update_loops(
    memory,
    centre,
    planes_t,
    planes_t32,
    plane_norms,
    nbits,
    rows,
    codes,
    heads,
    sheads,
    nxt,
    prv,
    j_code,
    j_prev,
    j_next,
):
    """Re-hash the listed rows (−1 = padding; repeats are skipped); a row whose code changed leaves its
    bucket and is inserted in its new bucket at its place in index order (the lists stay sorted). The
    journal (B, J, L) records each row's old code and neighbours (old code −1: not moved).

    A row's predecessor in its new bucket is searched from the first row of the bucket in the row's
    index range (``sheads``; SEGMENTS ranges of ⌈N/SEGMENTS⌉ rows), walking forward, while ``codes`` is
    scanned down from the row, whichever gets there first. The searches of a row's moves in all L
    tables advance side by side (one hop per table per round, so the tables' cache misses overlap; one
    shared scan of ``codes[b, d, :]``, whose L entries share a cache line).

    The codes are those of the exact-order float64 projections (``_project``), computed faster: the
    projections are first summed in float32 (``planes_t32``, twice the numbers per vector
    instruction), whose sign is the exact one wherever it clears the float32 error bound
    (:func:`_float32_bound`, with ``plane_norms[p]`` = ‖plane p‖); a row with any projection inside the
    bound (about one row in two hundred of random data; or a row of tiny or huge norm) is projected
    again in float64, in the exact order."""
    B, J = rows.shape
    N, L = codes.shape[1], codes.shape[2]
    seg = (N + SEGMENTS - 1) // SEGMENTS
    W, P = planes_t.shape
    proj = np.empty(P, np.float64)
    proj32 = np.empty(P, np.float32)
    tol = _float32_bound(W)
    new = np.empty(L, np.int64)  # per table: the new code (−1: unchanged)
    target = np.empty(L, np.int32)  # the code still searched for (−1: none), compared with codes[b, d]
    pred = np.empty(L, np.int64)  # the predecessor found (−2: still searching)
    active = np.empty(L, np.int64)  # the tables still searching, active[:searching]
    walk_prev = np.empty(L, np.int64)
    walk = np.empty(L, np.int64)
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
            qi = i // seg
            lo, hi = qi * seg, qi * seg + seg  # i's index range (comparisons, not divisions, below)
            for p in range(P):  # the projections in float32, and the row's norm (relative to the centre)
                proj32[p] = 0.0
            nn = 0.0
            for c in range(W):
                v = np.float64(memory[b, i, c]) - centre[b, c]
                nn += v * v
                v32 = np.float32(v)
                for p in range(P):
                    proj32[p] += v32 * planes_t32[c, p]
            sure = 1e-60 < nn < 1e60  # no float32 underflow or overflow
            if sure:
                bound = tol * np.sqrt(nn)
                unsure = 0
                for p in range(P):  # branch-free, so that it vectorises
                    unsure += abs(np.float64(proj32[p])) <= bound * plane_norms[p]
                sure = unsure == 0
            if sure:
                for p in range(P):
                    proj[p] = proj32[p]
            else:  # in the exact order (_project)
                for p in range(P):
                    proj[p] = 0.0
                for c in range(W):
                    v = np.float64(memory[b, i, c]) - centre[b, c]
                    for p in range(P):
                        proj[p] += v * planes_t[c, p]
            searching = 0
            for l in range(L):
                code = 0
                for bit in range(nbits):
                    if proj[l * nbits + bit] >= 0.0:
                        code |= 1 << bit
                old = codes[b, i, l]
                new[l] = -1
                target[l] = -1
                if code == old:
                    continue
                new[l] = code
                p, n = prv[b, i, l], nxt[b, i, l]
                j_code[b, j, l], j_prev[b, j, l], j_next[b, j, l] = old, p, n
                if p >= 0:  # unlink i from bucket ``old`` (written out: see _lsh_undo_loops)
                    nxt[b, p, l] = n
                else:
                    heads[b, l, old] = n
                if n >= 0:
                    prv[b, n, l] = p
                if qi >= 1 and sheads[b, l, old, qi - 1] == i:
                    sheads[b, l, old, qi - 1] = n if lo <= n < hi else -1
                codes[b, i, l] = code
                # where the search for i's place in bucket ``code`` starts
                pred[l] = -2
                if qi == 0:
                    h = heads[b, l, code]
                    if h >= seg:
                        h = -1
                else:
                    h = sheads[b, l, code, qi - 1]
                if h >= 0:  # the first row of i's range
                    if h > i:
                        pred[l] = prv[b, h, l]
                    else:
                        walk_prev[l], walk[l] = h, nxt[b, h, l]
                else:  # none: i goes before the first row of a later range, else after the last row
                    for q in range(qi + 1, SEGMENTS):
                        h = sheads[b, l, code, q - 1]
                        if h >= 0:
                            pred[l] = prv[b, h, l]
                            break
                    if pred[l] == -2:
                        h = -1
                        for q in range(qi - 1, 0, -1):
                            if sheads[b, l, code, q - 1] >= 0:
                                h = sheads[b, l, code, q - 1]
                                break
                        if h < 0:
                            h = heads[b, l, code]
                        if h < 0:  # an empty bucket
                            pred[l] = -1
                        else:  # walk the last non-empty range before i's
                            walk_prev[l], walk[l] = h, nxt[b, h, l]
                if pred[l] == -2:
                    target[l] = code
                    active[searching] = l
                    searching += 1
            # i's predecessor in each new bucket (the largest row < i there; −1: none): walk forward and
            # scan codes down from i − 1, whichever gets there first
            d = i - 1
            hops = 0
            while searching > 0:
                hops += 1
                for t in range(searching - 1, -1, -1):
                    l = active[t]
                    w = walk[l]
                    if w < 0 or w > i:  # the walk passed i's place
                        pred[l] = walk_prev[l]
                        target[l] = -1
                        searching -= 1
                        active[t] = active[searching]
                    else:
                        walk_prev[l] = w
                        walk[l] = nxt[b, w, l]
                for _ in range(SCAN_PER_HOP if hops > SCAN_AFTER else 0):
                    if searching == 0:
                        break
                    if d < 0:  # no row below i left: i comes first wherever it is still unplaced
                        for t in range(searching):
                            pred[active[t]] = -1
                            target[active[t]] = -1
                        searching = 0
                        break
                    hits = 0  # branch-free over the L codes of row d (one cache line)
                    for l in range(L):
                        hits += codes[b, d, l] == target[l]
                    if hits > 0:
                        for t in range(searching - 1, -1, -1):
                            l = active[t]
                            if codes[b, d, l] == target[l]:
                                pred[l] = d
                                target[l] = -1
                                searching -= 1
                                active[t] = active[searching]
                    d -= 1
            for l in range(L):  # insert i after its predecessor
                code = new[l]
                if code < 0:
                    continue
                q = pred[l]
                if q >= 0:
                    n = nxt[b, q, l]
                    nxt[b, q, l] = i
                else:  # i is the bucket's new first row
                    n = heads[b, l, code]
                    heads[b, l, code] = i
                prv[b, i, l] = q
                nxt[b, i, l] = n
                if n >= 0:
                    prv[b, n, l] = i
                if qi >= 1 and q < lo:  # the first row of its range (q = −1 included)
                    sheads[b, l, code, qi - 1] = i


def _lsh_undo_loops(rows, codes, heads, sheads, nxt, prv, j_code, j_prev, j_next):
    """Undo one update, newest move first: each moved row goes back between its old neighbours
    (adjacent again, since later moves were undone before), so the lists are restored exactly."""
    B, J = rows.shape
    N, L = codes.shape[1], codes.shape[2]
    seg = (N + SEGMENTS - 1) // SEGMENTS
    for b in range(B):
        for j in range(J - 1, -1, -1):
            i = rows[b, j]
            if i < 0:
                continue
            qi = i // seg
            lo, hi = qi * seg, qi * seg + seg
            for l in range(L - 1, -1, -1):
                old = j_code[b, j, l]
                if old < 0:
                    continue
                cur = codes[b, i, l]
                # the list edits of kernels/lists.py, written out: a Numba call that passes the bucket
                # arrays costs its reference counting even inlined (measured in docs/benchmarks.md,
                # "What made SAM fast"; this kernel and the update run H·(K+1)·L moves a step)
                p, n = prv[b, i, l], nxt[b, i, l]  # unlink i from its current bucket
                if p >= 0:
                    nxt[b, p, l] = n
                else:
                    heads[b, l, cur] = n
                if n >= 0:
                    prv[b, n, l] = p
                if qi >= 1 and sheads[b, l, cur, qi - 1] == i:
                    sheads[b, l, cur, qi - 1] = n if lo <= n < hi else -1
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
                if qi >= 1 and p < lo:
                    sheads[b, l, old, qi - 1] = i


def _lsh_query_loops(
    memory, centre, planes_t, nbits, keys, k, max_per_bucket, probes, heads, nxt, fill, out, seen, counts
):
    """For each key: gather candidates from its bucket (plus ``probes`` buckets one bit away, lowest
    margins first) in every table, the first ``max_per_bucket`` rows of each (the lowest-indexed, the
    lists being sorted); rank them by exact cosine; write the best k to ``out[b, h]`` (score
    descending, index ascending). If fewer than k distinct candidates turn up, the caller's ``fill[b]``
    rows (in order; −1 = none), then rows 0, 1, ... fill in. Keys hash relative to ``centre[b]``.

    ``seen`` (B, N) must be −1 everywhere on entry and is left so (only candidates are touched).
    ``counts[b, h]`` receives the number of rows scored for the key (what a query costs).
    """
    B, H, W = keys.shape
    L = heads.shape[1]
    cap = L * (probes + 1) * max_per_bucket + k  # fill-ins only while fewer than k: n <= max(L·P·cap, k)
    cand = np.empty(cap, np.int64)
    score = np.empty(cap, np.float64)
    proj = np.empty(planes_t.shape[1], np.float64)
    margin = np.empty(nbits, np.float64)
    P = probes + 1
    first = np.empty(L * P, np.int64)
    for b in range(B):
        for h in range(H):
            key = keys[b, h]
            n = 0
            tag = b * H + h
            _project(key, centre[b], planes_t, proj)
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
            counts[b, h] = _finish_query(memory, b, key, k, fill, seen, tag, cand, score, n, out[b, h])


lsh_codes_from_projections_kernel = njit(_lsh_codes_from_projections_loops)
lsh_link_kernel = njit(_lsh_link_loops)
lsh_update_kernel = njit(_lsh_update_loops)
lsh_undo_kernel = njit(_lsh_undo_loops)
lsh_query_kernel = njit(_lsh_query_loops)
