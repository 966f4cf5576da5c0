"""Slow, obviously correct references for the kernels (the stumpy pattern): ``naive_*`` functions only.

Each one says what its kernel computes in the plainest terms available: Python lists for linked
lists, dicts for hash tables, ``sorted`` for selection, loops in the documented order. Where a
kernel's result depends on the order of a floating-point sum (LSH projections and scores, the
accessed-slot totals), the reference sums in that documented order, so the two agree bit for bit.
They work on copies and return new values; none writes into its arguments.
"""

import bisect

import numpy as np


def _sum_in_order(terms):
    """0.0 + t0 + t1 + ..., in that order: the order the kernels sum in."""
    total = 0.0
    for term in terms:
        total += term
    return total


# -- top-k ------------------------------------------------------------------------------------------------


def naive_top_k(scores, k):
    """Sort by (−score, index) with lexsort — the documented tie rule."""
    rows = scores.reshape(-1, scores.shape[-1])
    out = np.stack([np.lexsort((np.arange(r.size), -r))[:k] for r in rows])
    return out.reshape(scores.shape[:-1] + (k,))


# -- the usage ring (kernels/ring.py) -----------------------------------------------------------------------


def naive_ring_touch(orders, stamps, slots, t):
    """Each ring as a Python list, oldest first: a touched slot is removed and appended at the back.

    orders : list of B lists (each a permutation of range(N));  stamps : (B, N);  slots : int (B, J),
    −1 = padding. Returns the new orders and stamps.
    """
    orders = [list(order) for order in orders]
    stamps = np.array(stamps, dtype=np.float64)
    for b, order in enumerate(orders):
        for s in slots[b]:
            s = int(s)
            if s < 0:
                continue
            order.remove(s)
            order.append(s)
            stamps[b, s] = t
    return orders, stamps


def naive_ring_oldest(orders, count):
    """The first ``count`` slots of each list, (B, count)."""
    return np.array([order[:count] for order in orders], dtype=np.int64).reshape(len(orders), count)


# -- angular LSH (kernels/lsh.py) --------------------------------------------------------------------------


def naive_lsh_projections(memory, planes, centre=None):
    """proj[b, i, t, j] = Σ_c (memory[b, i, c] − centre[b, c]) · planes[t, j, c], summed by plain Python in
    the order c = 0..W−1, each difference taken in float64 (``centre`` (B, W), default zeros)."""
    B, N, W = memory.shape
    L, nbits, _ = planes.shape
    centre = np.zeros((B, W)) if centre is None else np.asarray(centre, np.float64)
    proj = np.zeros((B, N, L, nbits))
    for b in range(B):
        for i in range(N):
            row = [float(memory[b, i, c]) - float(centre[b, c]) for c in range(W)]
            for t in range(L):
                for j in range(nbits):
                    dot = 0.0
                    for c in range(W):
                        dot += row[c] * float(planes[t, j, c])
                    proj[b, i, t, j] = dot
    return proj


def naive_lsh_codes(memory, planes, centre=None):
    """Bucket codes (B, L, N): bit j of row i's code in table t is [projection on hyperplane (t, j) >= 0].

    The projections are :func:`naive_lsh_projections` (of the rows less ``centre``), in the kernels' order
    (the twin of the rebuild).
    """
    B, N, _ = memory.shape
    L, nbits, _ = planes.shape
    proj = naive_lsh_projections(memory, planes, centre)
    codes = np.zeros((B, L, N), np.int64)
    for b in range(B):
        for i in range(N):
            for t in range(L):
                for j in range(nbits):
                    codes[b, t, i] |= int(proj[b, i, t, j] >= 0.0) << j
    return codes


def naive_lsh_buckets(codes, num_buckets):
    """buckets[b][t][c] = the rows whose code in table t is c, in index order (what a rebuild links, and
    what the lists hold after any updates: they are kept sorted).

    codes : int (B, L, N).
    """
    B, L, N = codes.shape
    return [
        [[[i for i in range(N) if codes[b, t, i] == c] for c in range(num_buckets)] for t in range(L)] for b in range(B)
    ]


def naive_lsh_update(memory, planes, rows, codes, buckets, centre=None):
    """Re-hash the listed rows (int (B, J); −1 = padding; a repeated row is re-hashed once): a row whose
    code changed in a table leaves its bucket's list and is inserted in its new bucket's list at its place
    in index order (``bisect.insort``: the lists stay sorted).

    codes : int (B, L, N);  buckets : sorted lists, as :func:`naive_lsh_buckets`. Returns the new codes and
    buckets.
    """
    codes = np.array(codes)
    buckets = [[[list(bucket) for bucket in table] for table in per_b] for per_b in buckets]
    new_codes = naive_lsh_codes(memory, planes, centre)
    B, L, _ = codes.shape
    for b in range(B):
        done = set()
        for i in rows[b]:
            i = int(i)
            if i < 0 or i in done:
                continue
            done.add(i)
            for t in range(L):
                old, new = int(codes[b, t, i]), int(new_codes[b, t, i])
                if new != old:
                    buckets[b][t][old].remove(i)
                    bisect.insort(buckets[b][t][new], i)
                    codes[b, t, i] = new
    return codes, buckets


def naive_lsh_query(memory, planes, keys, k, max_per_bucket, probes, buckets, centre=None, fill=None):
    """The LSH query spelled out with sets and ``sorted``; returns (indices (B, H, k), counts (B, H)).

    Candidates of a key: in every table, the first ``max_per_bucket`` rows of its own bucket's list and of
    the ``probes`` buckets that differ from it in one bit, the bits of smallest margin |projection|
    first (ties: the lower bit); keys are projected less ``centre``. If fewer than k distinct rows turn
    up, the ``fill`` (B, R) rows (−1 = none), then rows 0, 1, ... fill in until there are k. The
    candidates are ranked by
    cos = k·m / (‖k‖‖m‖ + 1e-6), score descending, index ascending; counts = candidates scored.
    """
    B, N, W = memory.shape
    L, nbits, _ = planes.shape
    H = keys.shape[1]
    proj = naive_lsh_projections(keys, planes, centre)  # (B, H, L, nbits)
    out = np.zeros((B, H, k), np.int64)
    counts = np.zeros((B, H), np.int64)
    for b in range(B):
        for h in range(H):
            cand = []
            for t in range(L):
                code = sum(int(proj[b, h, t, j] >= 0.0) << j for j in range(nbits))
                by_margin = sorted(range(nbits), key=lambda j: (abs(proj[b, h, t, j]), j))
                probed = [code] + [code ^ (1 << j) for j in by_margin[:probes]]
                for c in probed:
                    for i in buckets[b][t][c][:max_per_bucket]:
                        if i not in cand:
                            cand.append(i)
            for i in [] if fill is None else fill[b]:
                if len(cand) >= k:
                    break
                if i >= 0 and i not in cand:
                    cand.append(int(i))
            for i in range(N):
                if len(cand) >= k:
                    break
                if i not in cand:
                    cand.append(i)
            counts[b, h] = len(cand)
            key = [float(v) for v in keys[b, h]]
            knorm = np.sqrt(_sum_in_order(v * v for v in key))

            def score(i, key=key, knorm=knorm, b=b):
                row = [float(v) for v in memory[b, i]]
                dot = _sum_in_order(a * m for a, m in zip(key, row))
                return dot / (knorm * np.sqrt(_sum_in_order(m * m for m in row)) + 1e-6)

            out[b, h] = sorted(cand, key=lambda i, score=score: (-score(i), i))[:k]
    return out, counts


# -- the row-gradient table (kernels/rowacc.py) -----------------------------------------------------------


def naive_rowacc_add(tables, idx, rows):
    """tables[b] is a dict slot -> row, in order of first touch; ``add`` sums rows in (−1 = padding).

    tables : list of B dicts;  idx : int (B, J);  rows : (B, J, W). Returns new tables.
    """
    tables = [{s: r.copy() for s, r in table.items()} for table in tables]
    for b, table in enumerate(tables):
        for j, s in enumerate(idx[b]):
            s = int(s)
            if s < 0:
                continue
            if s not in table:
                table[s] = np.zeros(rows.shape[2], rows.dtype)
            table[s] = table[s] + rows[b, j]
    return tables


def naive_rowacc_gather(tables, idx, width):
    """out[b, j] = tables[b][idx[b, j]], zeros for a slot never added (or −1): (B, J, width)."""
    B, J = idx.shape
    out = np.zeros((B, J, width))
    for b in range(B):
        for j in range(J):
            s = int(idx[b, j])
            if s in tables[b]:
                out[b, j] = tables[b][s]
    return out


def naive_rowacc_zero(tables, idx):
    """The listed slots' rows become zero; slots never added stay absent. Returns new tables."""
    tables = [{s: r.copy() for s, r in table.items()} for table in tables]
    for b, table in enumerate(tables):
        for s in idx[b]:
            s = int(s)
            if s in table:
                table[s] = np.zeros_like(table[s])
    return tables


# -- sparse writes and their undo (kernels/sparse_write.py) -----------------------------------------------


def naive_sparse_write(memory, erase, idx, w, add, per_head):
    """Returns (new memory, journal): the journal holds the ``idx`` rows as they were before the write;
    then the ``erase`` rows are set to zero and row idx[b, j] receives w[b, j] · add[b, j // per_head]
    (duplicates accumulate, in order: ``np.add.at``)."""
    memory = np.array(memory)
    B, J = idx.shape
    journal = np.stack([memory[b, idx[b]] for b in range(B)])  # (B, J, W)
    for b in range(B):
        memory[b, erase[b]] = 0.0
        heads = np.arange(J) // per_head
        np.add.at(memory[b], idx[b], w[b][:, None] * add[b, heads])
    return memory, journal


def naive_restore_rows(memory, idx, rows):
    """memory[b, idx[b, j]] = rows[b, j]; for a repeated row the *first* listed entry wins (the journal
    of a step holds a row's oldest contents at its first listing)."""
    memory = np.array(memory)
    for b in range(idx.shape[0]):
        for i in np.unique(idx[b]):
            first = int(np.flatnonzero(idx[b] == i)[0])
            memory[b, i] = rows[b, first]
    return memory


def naive_accessed_slots(slots, values, delta):
    """Per batch element: the distinct slots whose values, summed in listing order, exceed ``delta``,
    ascending, padded with −1 to (B, J)."""
    B, J = slots.shape
    out = np.full((B, J), -1, np.int64)
    for b in range(B):
        totals = {}
        for s, v in zip(slots[b], values[b]):
            totals[int(s)] = totals.get(int(s), 0.0) + float(v)
        chosen = sorted(s for s, total in totals.items() if total > delta)
        out[b, : len(chosen)] = chosen
    return out
