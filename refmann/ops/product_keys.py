r"""Exact product-key search (Lample et al. 2019, §3.2): the top k of n² slots from two top-k's of n.

Per head h the query splits into halves :math:`q = (q^1, q^2)` and the head owns two sub-key tables
:math:`C^1_h, C^2_h \in \mathbb R^{n \times D/2}`; slot :math:`(i, j)` (id :math:`i n + j`) scores
:math:`s(i, j) = s^1_i + s^2_j` with :math:`s^1 = C^1_h q^1`, :math:`s^2 = C^2_h q^2`. The top k of the
n² scores lie among the k² pairs of the halves' top k's, so the search costs :math:`O(n D + k^2)`
instead of :math:`O(n^2 D)`. Derivation and proof: ``docs/derivations/product_keys.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_dout, check_positive_int, check_shape, enabled
from ._registry import register_op
from .topk import top_k


class ProductKeyTopKCache(NamedTuple):
    queries: np.ndarray  # (B, H, D)
    keys: np.ndarray  # (H, 2, n, D/2)
    rows: np.ndarray  # int64 (B, H, k)  i: the first half's sub-key of each selected slot
    cols: np.ndarray  # int64 (B, H, k)  j: the second half's sub-key
    slots: np.ndarray  # int64 (B, H, k)  i·n + j


def _check_inputs(queries, keys, k):
    queries = as_float_array(queries, "queries", ndim=3)
    keys = as_float_array(keys, "keys", ndim=4)
    if not enabled():
        return queries, keys, k
    B, H, D = queries.shape
    if D % 2 or D == 0:
        raise ValueError(
            f"queries: expected an even, positive last axis D (two halves of D/2), got shape {queries.shape}"
        )
    check_shape(keys, "keys", (H, 2, None, D // 2))
    n = keys.shape[2]
    k = check_positive_int(k, "k")
    if k > n:
        raise ValueError(f"k: expected 1 <= k <= n = {n} (the sub-keys per half), got {k}")
    return queries, keys, k


def _two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth's TwoSum, any magnitudes)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def product_key_topk(queries, keys, k):
    r"""The k best slots of each head by exact product-key search: ``(scores, slots)``.

    Parameters
    ----------
    queries : ndarray, shape (B, H, D)
        D even; head h's halves are ``queries[..., :D/2]`` and ``queries[..., D/2:]``.
    keys : ndarray, shape (H, 2, n, D/2)
        Head h's sub-key tables ``keys[h, 0]`` (first half) and ``keys[h, 1]`` (second half).
    k : int
        1 ≤ k ≤ n.

    Returns
    -------
    scores : ndarray, shape (B, H, k)
        :math:`s^1_i + s^2_j` of the selected slots, best first.
    slots : int64 ndarray, shape (B, H, k)
        :math:`i n + j`.

    Notes
    -----
    The order is by the exact sum :math:`s^1_i + s^2_j` descending, then by slot ascending. The exact
    sum is compared as the pair ``(fl(s¹ + s²), rounding error)`` from TwoSum, so two slots whose
    rounded scores coincide are still ordered as the real sums are; the returned scores are the rounded
    sums (non-increasing). With this order the result equals brute force over all n² slots exactly,
    ties included (proof: ``docs/derivations/product_keys.md``).
    """
    scores, cache = product_key_topk_forward(queries, keys, k=k)
    return scores, cache.slots


def product_key_topk_forward(queries, keys, *, k):
    r"""Scores of the top k of the n² product keys per head (Lample et al. 2019, eq. 3-4); slots in the cache.

    Parameters
    ----------
    queries : ndarray, shape (B, H, D)
        D even: the halves :math:`q^1 = q_{:D/2}`, :math:`q^2 = q_{D/2:}`.
    keys : ndarray, shape (H, 2, n, D/2)
        Sub-key tables :math:`C^1_h = ` ``keys[h, 0]``, :math:`C^2_h = ` ``keys[h, 1]``.
    k : int, keyword-only
        Slots kept per head, 1 ≤ k ≤ n.

    Returns
    -------
    scores : ndarray, shape (B, H, k)
        Best first (see :func:`product_key_topk` for the order and its tie rule).
    cache : ProductKeyTopKCache
        ``cache.slots`` (int64, (B, H, k)) are the selected slots :math:`i n + j`; ``cache.rows`` and
        ``cache.cols`` their halves' sub-keys :math:`i` and :math:`j`.

    Notes
    -----
    .. math::
        s^1 = C^1_h q^1,\quad s^2 = C^2_h q^2,\quad
        I^1 = \operatorname{top}_k s^1,\quad I^2 = \operatorname{top}_k s^2,\quad
        \{(i_r, j_r)\}_{r=1}^k = \operatorname{top}_k \{ s^1_i + s^2_j : i \in I^1, j \in I^2 \}

    Exact: every pair of the global top k has :math:`i \in I^1` and :math:`j \in I^2`
    (``docs/derivations/product_keys.md``). The selection is piecewise constant; the scores are
    differentiable away from ties (see :func:`product_key_topk_backward`).

    References
    ----------
    Lample, Sablayrolles, Ranzato, Denoyer, Jégou. Large Memory Layers with Product Keys. NeurIPS 2019.
    """
    queries, keys, k = _check_inputs(queries, keys, k)
    B, H, D = queries.shape
    n = keys.shape[2]
    half = D // 2
    s1 = np.einsum("bhd,hnd->bhn", queries[..., :half], keys[:, 0])  # (B, H, n)
    s2 = np.einsum("bhd,hnd->bhn", queries[..., half:], keys[:, 1])  # (B, H, n)
    # the halves' top k (score descending, index ascending), re-sorted by index: the k² grid is then
    # in ascending slot order, so "slot ascending" is "grid position ascending"
    top1 = np.sort(top_k(s1, k)[0], axis=-1)  # (B, H, k)
    top2 = np.sort(top_k(s2, k)[0], axis=-1)  # (B, H, k)
    a = np.take_along_axis(s1, top1, axis=-1)[..., :, None]  # (B, H, k, 1)
    b = np.take_along_axis(s2, top2, axis=-1)[..., None, :]  # (B, H, 1, k)
    grid, err = _two_sum(np.broadcast_to(a, (B, H, k, k)), np.broadcast_to(b, (B, H, k, k)))  # (B, H, k, k)
    grid, err = grid.reshape(B, H, k * k), err.reshape(B, H, k * k)
    position = np.broadcast_to(np.arange(k * k), grid.shape)
    # last key first: rounded sum descending, then its rounding error descending, then slot ascending
    order = np.lexsort((position, -err, -grid), axis=-1)[..., :k]  # (B, H, k)
    rows = np.take_along_axis(top1, order // k, axis=-1)  # (B, H, k)
    cols = np.take_along_axis(top2, order % k, axis=-1)  # (B, H, k)
    scores = np.take_along_axis(grid, order, axis=-1)  # (B, H, k)
    slots = rows * n + cols
    return scores, ProductKeyTopKCache(queries, keys, rows, cols, slots)


def product_key_topk_backward(dscores, cache):
    r"""VJP of :func:`product_key_topk_forward` (``docs/derivations/product_keys.md``).

    The selected pairs are constants; :math:`t_r = s^1_{i_r} + s^2_{j_r}`, so

    .. math::
        ds^1_i = \sum_{r: i_r = i} dt_r,\quad ds^2_j = \sum_{r: j_r = j} dt_r,\quad
        dq^1 = \sum_i ds^1_i C^1_{h,i},\quad dC^1_{h,i} = \sum_b ds^1_{b,h,i}\, q^1_{b,h}

    (the same for the second half). Nothing of size n² is built.

    Returns
    -------
    dqueries : ndarray, shape (B, H, D)
    dkeys : ndarray, shape (H, 2, n, D/2)
    """
    if enabled():
        check_dout(dscores, cache.slots.shape, "dscores")
    queries, keys = cache.queries, cache.keys
    B, H, D = queries.shape
    n, half = keys.shape[2], D // 2
    dtype = np.result_type(queries, keys, dscores)
    # ds¹, ds² (B, H, n): a deterministic segment sum of dt over the selected i's (j's)
    base = (np.arange(B * H).reshape(B, H, 1)) * n
    weights = np.ravel(dscores)
    ds1 = np.bincount(np.ravel(base + cache.rows), weights, minlength=B * H * n).reshape(B, H, n).astype(dtype)
    ds2 = np.bincount(np.ravel(base + cache.cols), weights, minlength=B * H * n).reshape(B, H, n).astype(dtype)
    dqueries = np.concatenate(
        [np.einsum("bhn,hnd->bhd", ds1, keys[:, 0]), np.einsum("bhn,hnd->bhd", ds2, keys[:, 1])], axis=-1
    )  # (B, H, D)
    dkeys = np.stack(
        [np.einsum("bhn,bhd->hnd", ds1, queries[..., :half]), np.einsum("bhn,bhd->hnd", ds2, queries[..., half:])],
        axis=1,
    )  # (H, 2, n, D/2)
    return dqueries.astype(dtype, copy=False), dkeys.astype(dtype, copy=False)


def separated_product_keys(rng, B, H, n, half):
    """``(queries (B, H, 2·half), keys (H, 2, n, half))`` whose n² sums per head differ by > 0.4.

    The first half's sub-scores are near multiples of n, the second half's near 0..n-1 (each a random
    permutation), the query carries a positive scale c ∈ [0.5, 1.5] on that direction; every vector is
    rotated by a random orthogonal matrix per head and half, and the orthogonal complement holds small
    noise (each noise term below 0.01 in absolute value per sub-score). So s(i, j) ≈ c (n p_i + r_j)
    stays > 0.4 from every other slot: no tie for a finite-difference step (or float32 rounding) to flip.
    """
    queries = np.empty((B, H, 2 * half))
    keys = np.empty((H, 2, n, half))
    scale = rng.uniform(0.5, 1.5, (B, H))
    noise = 0.1 / np.sqrt(half)  # |q⊥·k⊥| ≤ (half − 1) noise² < 0.01
    for h in range(H):
        for p, mult in ((0, n), (1, 1)):
            rot, _ = np.linalg.qr(rng.standard_normal((half, half)))
            k_raw = rng.uniform(-noise, noise, (n, half))
            k_raw[:, 0] = mult * rng.permutation(n)
            q_raw = rng.uniform(-noise, noise, (B, half))
            q_raw[:, 0] = scale[:, h]
            keys[h, p] = k_raw @ rot.T
            queries[:, h, p * half : (p + 1) * half] = q_raw @ rot.T
    return queries, keys


# -- registry (separated sums: no tie within a finite-difference stencil) -------------------------------
register_op(
    "product_key_topk",
    product_key_topk_forward,
    product_key_topk_backward,
    example=lambda rng, s: (separated_product_keys(rng, s.B, s.H, s.N, s.W), {"k": s.K}),
)
