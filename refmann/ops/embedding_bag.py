r"""Embedding bag: a weighted sum of table rows per bag, whose table gradient is one row per distinct row.

One op serves three readers: the product-key memory's value read (weights = the softmax over the
selected slots), a sketch read, and (weights 1, bags of one) the plain embedding lookup.
Derivations: ``docs/derivations/layers.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, as_index_array, check_dout, check_finite, enabled
from ..kernels.embedding_bag import embedding_bag_row_sums_kernel
from ._registry import register_op
from .memory import RowGrad


class EmbeddingBagCache(NamedTuple):
    rows: np.ndarray  # (..., R, D)  the looked-up rows (not the table: an optimizer may update it in place)
    weights: np.ndarray  # (..., R)
    indices: np.ndarray  # int (..., R)
    num_rows: int  # N


def embedding_bag_forward(table, weights, *, indices):
    r"""Per bag, a weighted sum of table rows: :math:`y[\ldots] = \sum_r w[\ldots, r]\, V[s[\ldots, r]]`.

    Costs O(J·D) for J = ``indices.size`` lookups, whatever N is: only the looked-up rows are read,
    checked and cached.

    Parameters
    ----------
    table : ndarray, shape (N, D)
        The table V, shared by every bag.
    weights : ndarray, shape (..., R)
        The weight of each lookup (in a product-key memory, the softmax over the k selected slots).
    indices : int ndarray, shape (..., R), keyword-only
        The rows :math:`s` in ``[0, N)``; repeats are allowed within a bag and across bags (they add up).

    Returns
    -------
    out : ndarray, shape (..., D)
    cache : EmbeddingBagCache

    Notes
    -----
    .. math:: y_b = \sum_{r} w_{b,r}\, V_{s_{b,r}}, \qquad
              \frac{\partial L}{\partial V_i} = \sum_{(b, r) : s_{b,r} = i} w_{b,r}\, dy_b, \qquad
              \frac{\partial L}{\partial w_{b,r}} = V_{s_{b,r}} \cdot dy_b

    With ``weights`` all 1 and R = 1 this is :func:`~refmann.ops.embedding_forward`.

    References
    ----------
    Lample et al. 2019, "Large memory layers with product keys", §3.1 (the value read).

    See Also
    --------
    embedding_bag_backward, densify_rows
    """
    if not isinstance(table, np.ndarray):
        raise TypeError(f"table: expected a float ndarray, got {type(table).__name__}")
    if table.ndim != 2 or table.dtype.type not in (np.float32, np.float64):
        raise ValueError(
            f"table: expected a float32/float64 array of shape (N, D), got {table.dtype} array of shape {table.shape}"
        )
    weights = as_float_array(weights, "weights")
    indices = as_index_array(indices, "indices", upper=table.shape[0])
    if indices.ndim == 0:
        raise ValueError("indices: expected shape (..., R) (a last axis of R lookups per bag), got ()")
    if weights.shape != indices.shape:  # always (cheap): the backward's kernel relies on it
        raise ValueError(f"weights: expected shape {indices.shape} (the indices'), got {weights.shape}")
    rows = table[indices]  # (..., R, D) a copy (fancy indexing)
    out = np.einsum("...r,...rd->...d", weights, rows)  # (..., D)
    # An inf or NaN in a looked-up row reaches the output whatever its weight (0·inf is NaN), so checking
    # the (..., D) output finds it without a pass over the (..., R, D) rows; only then are they searched.
    if not np.isfinite(out).all():
        check_finite(rows, "table (the looked-up rows)")  # the J rows only, never all N
        check_finite(weights, "weights")
        raise ValueError("out: the weighted sum of finite rows overflowed (scale the table or the weights down)")
    return out, EmbeddingBagCache(rows, weights, indices, table.shape[0])


def embedding_bag_backward(dout, cache):
    r"""VJP of :func:`embedding_bag_forward`: a row gradient over the distinct rows, and the weights' gradient.

    .. math:: \frac{\partial L}{\partial V_i} = \sum_{(b, r) : s_{b,r} = i} w_{b,r}\, dy_b, \qquad
              \frac{\partial L}{\partial w_{b,r}} = V_{s_{b,r}} \cdot dy_b

    The first sum is formed by reverse indices (count the lookups of each distinct row, prefix-sum the
    counts into segments, sum each segment in input order) in
    :mod:`refmann.kernels.embedding_bag`: deterministic, O(J log J + J·D), nothing of size N.

    Parameters
    ----------
    dout : ndarray, shape (..., D)
        ∂L/∂out.
    cache : EmbeddingBagCache

    Returns
    -------
    dtable : RowGrad
        ``indices`` of shape (U,): the U distinct rows looked up, ascending, each once; ``rows`` of
        shape (U, D): their summed gradients; ``num_rows`` N.
    dweights : ndarray, shape (..., R)
    """
    rows, weights, indices, N = cache
    R, D = rows.shape[-2:]
    if enabled():
        check_dout(dout, rows.shape[:-2] + (D,), "dout")
    dtype = np.result_type(rows.dtype, weights.dtype, dout.dtype)
    dweights = np.einsum("...rd,...d->...r", rows, dout)  # (..., R)
    unique, inverse = np.unique(indices.reshape(-1), return_inverse=True)  # (U,), (J,) inverse in [0, U)
    bags = math.prod(rows.shape[:-2])
    # reshape raises unless dout has exactly bags·D entries, so the kernel never reads past it
    dout2 = np.ascontiguousarray(dout, dtype).reshape(bags, D)  # (bags, D)
    w = np.ascontiguousarray(weights, dtype).reshape(-1)  # (J,)
    U, J = unique.size, w.size
    counts, offsets = np.empty(U, np.int64), np.empty(U + 1, np.int64)
    reverse, drows = np.empty(J, np.int64), np.empty((U, D), dtype)
    embedding_bag_row_sums_kernel(
        np.ascontiguousarray(inverse.reshape(-1), np.int64), w, dout2, max(R, 1), counts, offsets, reverse, drows
    )
    return RowGrad(unique.astype(np.int64, copy=False), drows, N), dweights


# -- registry (example inputs) -------------------------------------------------------------------------
def _embedding_bag_example(rng, s):
    idx = rng.integers(0, s.N, (s.B, s.H, s.K + 1))
    idx[..., -1] = idx[..., 0]  # a repeat in every bag (and, with N small, across bags)
    return (rng.standard_normal((s.N, s.W)), rng.standard_normal(idx.shape)), {"indices": idx}


register_op("embedding_bag", embedding_bag_forward, embedding_bag_backward, example=_embedding_bag_example)
