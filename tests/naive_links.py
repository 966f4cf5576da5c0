"""A dense, obviously correct oracle for the Sparse DNC's link tables (refmann/memory/links.py).

One batch element at a time, as plain N × N matrices: ``pred`` (row i: the slots written before i),
``succ`` (row i: the slots written after i, stored row-wise) and a dense precedence. One step applies
the rules of docs/sdnc.md to every entry at once, in the order they are written there
(``d · old + w · p``), then truncates each row to its K_L largest nonzero values, ties to the lower
column. The sparse kernels compute each surviving entry with the same operations in the same order,
so the two agree bit for bit. Everything here works on copies and returns new arrays.
"""

import numpy as np


def _sum_in_order(values):
    """0.0 + v0 + v1 + ..., in index order (the kernel sums the support in ascending slot order; the
    zero entries in between add nothing)."""
    total = 0.0
    for v in values:
        total += v
    return total


def naive_merge_weights(slots, weights, N):
    """The dense write weighting (N,): each slot's weights added up in the order given (np.add.at)."""
    w = np.zeros(N)
    np.add.at(w, np.asarray(slots), np.asarray(weights, dtype=np.float64))
    return w


def naive_truncate(rows, k):
    """Each row (last axis) keeps its k largest nonzero values, ties to the lower index; the rest become 0."""
    rows = np.array(rows, dtype=np.float64)
    flat = rows.reshape(-1, rows.shape[-1])
    out = np.zeros_like(flat)
    for r, row in enumerate(flat):
        keep = np.lexsort((np.arange(row.size), -row))[:k]
        keep = keep[row[keep] != 0]
        out[r, keep] = row[keep]
    return out.reshape(rows.shape)


def naive_links_step(pred, succ, prec, slots, weights, link_k, *, truncate=True):
    """One update of one batch element: returns the new (pred (N, N), succ (N, N), prec (N,)).

    With w the merged write weighting, d = max(0, 1 − w) and D = max(0, 1 − Σ w):
    pred ← d[:, None]·pred + w pᵀ, succ ← d[:, None]·succ + p wᵀ (zero diagonals), p ← D·p + w;
    a row outside the support of w (pred) or of w and p (succ) gets 1·x + 0 = x: unchanged.
    """
    N = prec.shape[0]
    w = naive_merge_weights(slots, weights, N)
    d = np.maximum(1.0 - w, 0.0)
    D = max(1.0 - _sum_in_order(w), 0.0)
    new_pred = d[:, None] * pred + np.outer(w, prec)
    new_succ = d[:, None] * succ + np.outer(prec, w)
    np.fill_diagonal(new_pred, 0.0)
    np.fill_diagonal(new_succ, 0.0)
    new_prec = D * prec + w
    if truncate:
        new_pred, new_succ = naive_truncate(new_pred, link_k), naive_truncate(new_succ, link_k)
        new_prec = naive_truncate(new_prec, link_k)
    return new_pred, new_succ, new_prec


class NaiveLinks:
    """B dense link structures, stepped by :func:`naive_links_step` (the oracle of SparseLinks)."""

    def __init__(self, B, N, link_k, *, truncate=True):
        self.pred = np.zeros((B, N, N))
        self.succ = np.zeros((B, N, N))
        self.prec = np.zeros((B, N))
        self.link_k, self.truncate = link_k, truncate

    def update(self, slots, weights):
        for b in range(self.prec.shape[0]):
            self.pred[b], self.succ[b], self.prec[b] = naive_links_step(
                self.pred[b], self.succ[b], self.prec[b], slots[b], weights[b], self.link_k, truncate=self.truncate
            )


def naive_follow(table, slots, weights, k):
    """One head: v = Σ_j weights[j]·table[slots[j]] over all N (summed in j order), the k slots of highest
    v (ties to the lower slot, zeros in slot order), and coef[a, j] = table[slots[j], out[a]].

    Returns (out (k,), coef (k, J), values (k,)).
    """
    N = table.shape[0]
    v = np.zeros(N)
    for s, wj in zip(slots, weights):
        v = v + wj * table[s]
    out = np.lexsort((np.arange(N), -v))[:k]
    coef = table[np.asarray(slots)][:, out].T
    return out, coef, v[out]
