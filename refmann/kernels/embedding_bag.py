"""The table gradient of a weighted embedding bag by reverse indices (a CSR transpose), deterministically.

For J lookups ``s_j`` into a table, each with a weight ``w_j`` and belonging to bag ``j // R``, the
gradient of table row ``i`` is the sum of ``w_j · dout[j // R]`` over the lookups with ``s_j = i``.
The caller numbers the distinct rows ``0 .. U-1`` (``inverse[j]`` is the number of ``s_j``); the
kernel then

1. counts the lookups of each distinct row,
2. turns the counts into segment offsets (an exclusive prefix sum),
3. writes each lookup's position j into its row's segment, in input order (the reverse map),
4. sums each segment in that order.

No atomics and no dependence on thread order: the same inputs give the same bits. Only U rows are
written, never N.
"""

from __future__ import annotations

from .._jit import njit


def _embedding_bag_row_sums_loops(inverse, weights, dout, bag_size, counts, offsets, reverse, drows):
    """drows[u] = sum over j with inverse[j] = u, in increasing j, of weights[j] * dout[j // bag_size].

    inverse : int (J,) in [0, U);  weights : (J,);  dout : (J // bag_size, D);  bag_size : int >= 1 (R).
    Outputs, all written: counts : int (U,) lookups per row;  offsets : int (U + 1,) segment starts;
    reverse : int (J,) the lookups grouped by row;  drows : (U, D).
    """
    J = inverse.shape[0]
    U = counts.shape[0]
    D = dout.shape[1]
    for u in range(U):  # 1. count
        counts[u] = 0
    for j in range(J):
        counts[inverse[j]] += 1
    offsets[0] = 0  # 2. exclusive prefix sum
    for u in range(U):
        offsets[u + 1] = offsets[u] + counts[u]
    cursor = offsets[:U].copy()  # 3. reverse map, in input order (stable)
    for j in range(J):
        u = inverse[j]
        reverse[cursor[u]] = j
        cursor[u] += 1
    for u in range(U):  # 4. segment sums, in the fixed order of the reverse map
        for c in range(D):
            drows[u, c] = 0.0
        for p in range(offsets[u], offsets[u + 1]):
            j = reverse[p]
            w = weights[j]
            b = j // bag_size
            for c in range(D):
                drows[u, c] += w * dout[b, c]


embedding_bag_row_sums_kernel = njit(_embedding_bag_row_sums_loops)
