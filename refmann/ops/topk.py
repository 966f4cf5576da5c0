r"""Top-k selection with deterministic ties (score descending, then index ascending)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_dout, check_positive_int, enabled
from ..kernels import top_k_kernel
from ._registry import register_op


def top_k(scores, k):
    """Indices and values of the ``k`` largest entries along the last axis.

    Parameters
    ----------
    scores : ndarray of shape (..., N)
    k : int
        1 ≤ k ≤ N.

    Returns
    -------
    indices : int64 ndarray of shape (..., k)
        Ordered by score descending; equal scores by index ascending (deterministic, unlike
        ``argpartition``).
    values : ndarray of shape (..., k)
    """
    scores = as_float_array(scores, "scores")
    if scores.ndim < 1:
        raise ValueError(f"scores: expected at least 1 dimension, got shape {scores.shape}")
    N = scores.shape[-1]
    k = check_positive_int(k, "k")
    if k > N:
        raise ValueError(f"k: expected 1 <= k <= N = {N}, got {k}")
    flat = np.ascontiguousarray(scores.reshape(-1, N))
    indices = np.empty((flat.shape[0], k), np.int64)
    top_k_kernel(flat, k, indices)
    indices = indices.reshape(scores.shape[:-1] + (k,))
    return indices, np.take_along_axis(scores, indices, axis=-1)


class TopKCache(NamedTuple):
    indices: np.ndarray  # int (..., k)
    shape: tuple  # (..., N)


def top_k_forward(scores, *, k):
    r"""The ``k`` largest scores (a differentiable gather; the selection itself is piecewise constant).

    Returns
    -------
    values : ndarray of shape (..., k)
    cache : TopKCache
        Holds the selected indices (``cache.indices``).

    Notes
    -----
    Backward scatters :math:`d\text{values}` back to the selected positions; it is exact away from
    ties between the k-th and (k+1)-th scores, where the selection jumps.
    """
    indices, values = top_k(scores, k)
    return values, TopKCache(indices, scores.shape)


def top_k_backward(dvalues, cache):
    """VJP of :func:`top_k_forward`: zeros except at the selected positions."""
    if enabled():
        check_dout(dvalues, cache.indices.shape, "dvalues")
    dscores = np.zeros(cache.shape, dvalues.dtype)
    np.put_along_axis(dscores, cache.indices, dvalues, axis=-1)
    return (dscores,)


# -- registry (distinct scores: no ties for a finite-difference step to flip) ----------------------------
register_op(
    "top_k",
    top_k_forward,
    top_k_backward,
    example=lambda rng, s: ((rng.permutation(s.B * s.N).reshape(s.B, s.N).astype(float),), {"k": s.K}),
)
