"""Top-k selection with deterministic ties: score descending, then index ascending."""

from __future__ import annotations

from .._jit import njit


def _top_k_loops(scores, k, out_indices):
    """For each row of ``scores`` (R, N), write the indices of its k largest entries to ``out_indices`` (R, k).

    Order: score descending; equal scores by index ascending. A row is scanned once, keeping a sorted
    buffer of k candidates (O(N k) worst case, O(N) typical): an entry enters only if it beats the
    current k-th, and since indices arrive in ascending order an equal score never displaces an earlier
    index.
    """
    R, N = scores.shape
    for r in range(R):
        count = 0
        for i in range(N):
            s = scores[r, i]
            if count == k and s <= scores[r, out_indices[r, k - 1]]:
                continue
            # insertion point: after every kept entry whose score is >= s
            pos = count if count < k else k - 1
            while pos > 0 and scores[r, out_indices[r, pos - 1]] < s:
                out_indices[r, pos] = out_indices[r, pos - 1]
                pos -= 1
            out_indices[r, pos] = i
            if count < k:
                count += 1


top_k_kernel = njit(_top_k_loops)
