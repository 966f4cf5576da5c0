"""Row scatter-add and gather over a batch of (N, W) tables, duplicates accumulated."""

from __future__ import annotations

from .._jit import njit


def _scatter_add_rows_loops(out, indices, rows):
    """out[b, indices[b, j]] += rows[b, j] for every b, j — duplicates accumulate (unlike ``out[idx] += rows``).

    out : (B, N, W), written in place;  indices : int (B, J);  rows : (B, J, W).
    """
    B, J = indices.shape
    W = out.shape[2]
    for b in range(B):
        for j in range(J):
            i = indices[b, j]
            for w in range(W):
                out[b, i, w] += rows[b, j, w]


def _gather_rows_loops(out, table, indices):
    """out[b, j] = table[b, indices[b, j]].  out : (B, J, W);  table : (B, N, W);  indices : int (B, J)."""
    B, J = indices.shape
    W = table.shape[2]
    for b in range(B):
        for j in range(J):
            i = indices[b, j]
            for w in range(W):
                out[b, j, w] = table[b, i, w]


scatter_add_rows_kernel = njit(_scatter_add_rows_loops)
gather_rows_kernel = njit(_gather_rows_loops)
