"""The end of an approximate query, shared by the LSH and k-d forest kernels.

An index gathers candidate rows for a key (its buckets or leaves, marking each in ``seen``);
:func:`_finish_query` then tops them up to k, ranks them by exact cosine and writes the best k.
One helper, so the two indexes rank, break ties and fill in the same way to the last bit.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit


def _finish_query_loops(memory, b, key, k, fill, seen, tag, cand, score, n, out_row):
    """Rank the ``n`` candidates ``cand[:n]`` of ``key`` and write the best k rows to ``out_row``.

    Too few candidates (n < k) are topped up with the caller's ``fill[b]`` rows in order (−1: none),
    then rows 0, 1, .... Scores are ⟨key, row⟩ / (‖key‖‖row‖ + 1e-6) in float64, summed in index
    order; the top k come score descending, index ascending. The candidates were marked
    ``seen[b, i] = tag``; every mark is cleared to −1 on return. Returns the number of rows scored.
    """
    W = key.shape[0]
    r = 0  # fill-ins when the index gave fewer than k rows: the caller's, then 0, 1, ...
    while n < k and r < fill.shape[1]:
        i = fill[b, r]
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
    knorm = 0.0
    for c in range(W):
        knorm += key[c] * key[c]
    knorm = np.sqrt(knorm)
    for m in range(n):
        i = cand[m]
        dot = 0.0
        rn = 0.0
        for c in range(W):
            v = np.float64(memory[b, i, c])
            dot += key[c] * v
            rn += v * v
        score[m] = dot / (knorm * np.sqrt(rn) + 1e-6)
    for j in range(k):  # top-k: score descending, index ascending (a selection sort: k is small)
        best = j
        for m in range(j + 1, n):
            if score[m] > score[best] or (score[m] == score[best] and cand[m] < cand[best]):
                best = m
        score[j], score[best] = score[best], score[j]
        cand[j], cand[best] = cand[best], cand[j]
        out_row[j] = cand[j]
    for m in range(n):
        seen[b, cand[m]] = -1
    return n


_finish_query = njit(_finish_query_loops, inline=True)
