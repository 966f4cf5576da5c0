r"""Exact product-key selection (Lample et al. 2019, §3.2) per (token, head) row, from the halves' sub-scores.

For a row with sub-scores :math:`s^1, s^2 \in \mathbb R^n`, slot :math:`(i, j)` scores :math:`s^1_i + s^2_j`
and the order is the one of :func:`refmann.ops.product_key_topk`: exact sum descending, then slot
:math:`i n + j` ascending. The exact sum is compared as TwoSum's pair ``(fl(a + b), a + b − fl(a + b))``,
lexicographically. The kernel

1. takes each half's top k by (sub-score descending, index ascending), best first: :math:`A_0, A_1, …`
   and :math:`B_0, B_1, …` (the same scan as :mod:`refmann.kernels.topk`);
2. visits only the pairs :math:`(A_p, B_q)` with :math:`(p + 1)(q + 1) \le k`. Every pair
   :math:`(A_{p'}, B_{q'})` with :math:`p' \le p,\ q' \le q` precedes :math:`(A_p, B_q)` in the order (a
   larger exact sum, or an equal one from sub-scores that are each equal, hence from smaller i and j),
   so :math:`(A_p, B_q)` has at least :math:`(p + 1)(q + 1) - 1` predecessors in the k² grid and cannot be
   in the top k otherwise: :math:`\sum_p \lfloor k / (p + 1) \rfloor \approx k \ln k` pairs instead of k²;
3. keeps the best k of them in a sorted buffer. A row of the grid is visited in order, so the first pair
   that does not beat the buffer's k-th ends the row (the rest of it is worse), and if that is the row's
   first pair it ends the search (every later row starts lower).

The top k of the grid under this total order is one set in one order, whichever pairs are visited, so the
result is the readable NumPy path's (a ``np.lexsort`` of the whole k² grid) bit for bit.

The kernel trusts its arguments: ``s1`` and ``s2`` of one shape (R, n) and ``1 <= k <= n``. The Python
layer (:func:`refmann.ops.product_key_topk_forward`) checks them. It also writes, per row,
``max|s¹| + max|s²|`` (NaN if a sub-score is NaN), for the Python layer to refuse rows whose sums could
overflow (where TwoSum is no longer exact).
"""

from __future__ import annotations

import numpy as np

from .._jit import njit


def _half_top_k_loops(scores, r, k, out, vals):
    """Write to ``out`` (k,) the indices of the k largest of ``scores[r]`` (score descending, index ascending)
    and to ``vals`` (k,) their scores; return ``max |scores[r]|`` (NaN if the row holds a NaN).

    The scan of :func:`refmann.kernels.topk._top_k_loops`: an entry enters only if it beats the current k-th,
    and since indices arrive in ascending order an equal score never displaces an earlier index.
    """
    n = scores.shape[1]
    count = 0
    bound = abs(scores[r, 0])  # in the scores' dtype (n >= 1)
    kth = bound  # the k-th kept score, once k are kept
    for i in range(n):
        s = scores[r, i]
        m = abs(s)
        if s != s or m > bound:  # once NaN, bound stays NaN (every comparison with it is false)
            bound = m
        if count == k and s <= kth:
            continue
        # insertion point: after every kept entry whose score is >= s
        pos = count if count < k else k - 1
        while pos > 0 and vals[pos - 1] < s:
            out[pos] = out[pos - 1]
            vals[pos] = vals[pos - 1]
            pos -= 1
        out[pos] = i
        vals[pos] = s
        if count < k:
            count += 1
        kth = vals[k - 1]  # (used only once count == k)
    return bound


_half_top_k = njit(_half_top_k_loops, inline=True)


def _product_key_topk_loops(s1, s2, k, rows, cols, scores, bounds):
    """Per row r of the sub-scores ``s1``, ``s2`` (R, n): the top k slots, best first.

    Outputs, all written: ``rows``, ``cols`` int64 (R, k) the selected i and j; ``scores`` (R, k) their rounded
    sums ``fl(s1[r, i] + s2[r, j])``; ``bounds`` (R,) ``max|s1[r]| + max|s2[r]|``, rounded like the scores (all
    three float arrays of the sub-scores' dtype).
    """
    R, n = s1.shape
    top1 = np.empty(k, np.int64)
    top2 = np.empty(k, np.int64)
    val1 = np.empty(k, s1.dtype)  # s1[r, top1]
    val2 = np.empty(k, s1.dtype)  # s2[r, top2]
    errs = np.empty(k, scores.dtype)  # TwoSum's error term of each kept pair
    for r in range(R):
        bounds[r] = _half_top_k(s1, r, k, top1, val1) + _half_top_k(s2, r, k, top2, val2)
        count = 0
        for p in range(k):
            i = top1[p]
            a = val1[p]
            stop = False
            for q in range(k // (p + 1)):  # (p + 1)(q + 1) <= k
                j = top2[q]
                b = val2[q]
                s = a + b  # TwoSum: a + b = s + e exactly
                bb = s - a
                e = (a - (s - bb)) + (b - bb)
                if count == k:
                    ls, le, li, lj = scores[r, k - 1], errs[k - 1], rows[r, k - 1], cols[r, k - 1]
                    if s < ls or (s == ls and (e < le or (e == le and (i > li or (i == li and j > lj))))):
                        stop = q == 0  # the row's best pair loses: so does every later row
                        break
                # insertion point: after every kept pair that precedes (i, j)
                pos = count if count < k else k - 1
                while pos > 0:
                    ps, pe, pi, pj = scores[r, pos - 1], errs[pos - 1], rows[r, pos - 1], cols[r, pos - 1]
                    if ps > s or (ps == s and (pe > e or (pe == e and (pi < i or (pi == i and pj < j))))):
                        break
                    scores[r, pos] = ps
                    errs[pos] = pe
                    rows[r, pos] = pi
                    cols[r, pos] = pj
                    pos -= 1
                scores[r, pos] = s
                errs[pos] = e
                rows[r, pos] = i
                cols[r, pos] = j
                if count < k:
                    count += 1
            if stop:
                break


product_key_topk_kernel = njit(_product_key_topk_loops)
