r"""Exact product-key search (Lample et al. 2019, §3.2): the top k of n² slots from two top-k's of n.

Per head h the query splits into halves :math:`q = (q^1, q^2)` and the head owns two sub-key tables
:math:`C^1_h, C^2_h \in \mathbb R^{n \times D/2}`; slot :math:`(i, j)` (id :math:`i n + j`) scores
:math:`s(i, j) = s^1_i + s^2_j` with :math:`s^1 = C^1_h q^1`, :math:`s^2 = C^2_h q^2`. The top k of the
n² scores lie among the k² pairs of the halves' top k's, so the search costs :math:`O(n D + k^2)`
instead of :math:`O(n^2 D)`. Derivation and proof: ``docs/derivations/product_keys.md``.

The forward has a readable NumPy body — the reference, ``fused=False``: the halves' top k, the k² sums,
one ``np.lexsort`` — and, behind ``fused=True`` (the default), a Numba kernel per (token, head) row
(``refmann.kernels.product_keys``) that visits only the ~k ln k pairs that can be in the top k. Both share
the sub-score products; the tests prove them equal bit for bit, ties included.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_dout, check_positive_int, check_shape, enabled
from ..kernels.product_keys import product_key_topk_kernel
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


def _sub_scores(queries, keys):
    """``s¹ = C¹_h q¹`` and ``s² = C²_h q²`` per head, both (B, H, n): the products both paths share."""
    half = queries.shape[-1] // 2
    q = queries.transpose(1, 0, 2)  # (H, B, dk) a view: one batched matmul per half (BLAS, ~7× an einsum)
    s1 = (q[..., :half] @ keys[:, 0].transpose(0, 2, 1)).transpose(1, 0, 2)  # (B, H, n)
    s2 = (q[..., half:] @ keys[:, 1].transpose(0, 2, 1)).transpose(1, 0, 2)  # (B, H, n)
    return s1, s2


def _check_sums(bounds):
    """Refuse (token, head) rows whose sums could overflow, ``bounds = max|s¹| + max|s²|`` (B, H).

    Below the overflow threshold TwoSum is exact, which both paths' order relies on."""
    bad = int(np.size(bounds) - np.count_nonzero(np.isfinite(bounds)))
    if bad:
        raise ValueError(
            f"queries, keys: expected sub-scores s¹ = C¹q¹, s² = C²q² whose sums are finite in {bounds.dtype}, "
            f"got {bad} (token, head) rows where max|s¹| + max|s²| overflows or is NaN (scale the queries or keys down)"
        )


def _two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth's TwoSum, any magnitudes)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def product_key_topk(queries, keys, k, *, fused=True):
    r"""The k best slots of each head by exact product-key search: ``(scores, slots)``.

    Parameters
    ----------
    queries : ndarray, shape (B, H, D)
        D even; head h's halves are ``queries[..., :D/2]`` and ``queries[..., D/2:]``.
    keys : ndarray, shape (H, 2, n, D/2)
        Head h's sub-key tables ``keys[h, 0]`` (first half) and ``keys[h, 1]`` (second half).
    k : int
        1 ≤ k ≤ n.
    fused : bool, keyword-only
        As :func:`product_key_topk_forward`: the Numba kernel (True, default) or the readable NumPy
        reference (False); the results are equal bit for bit.

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
    scores, cache = product_key_topk_forward(queries, keys, k=k, fused=fused)
    return scores, cache.slots


def product_key_topk_forward(queries, keys, *, k, fused=True):
    r"""Scores of the top k of the n² product keys per head (Lample et al. 2019, eq. 3-4); slots in the cache.

    Parameters
    ----------
    queries : ndarray, shape (B, H, D)
        D even: the halves :math:`q^1 = q_{:D/2}`, :math:`q^2 = q_{D/2:}`.
    keys : ndarray, shape (H, 2, n, D/2)
        Sub-key tables :math:`C^1_h = ` ``keys[h, 0]``, :math:`C^2_h = ` ``keys[h, 1]``.
    k : int, keyword-only
        Slots kept per head, 1 ≤ k ≤ n.
    fused : bool, keyword-only
        True (default): one Numba pass per (token, head) row after the sub-score products
        (``refmann.kernels.product_keys``): the halves' top k, then only the pairs :math:`(p, q)` of the
        halves' ranks with :math:`(p + 1)(q + 1) \le k`, ~k ln k of the k². False: the readable NumPy
        reference (the k² sums and one ``np.lexsort``). Equal bit for bit: scores, order and cache.

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

    With checks on, a (token, head) row with :math:`\max|s^1| + \max|s^2|` not finite in the dtype is refused
    (ValueError): beyond it a sum can overflow and the exact order is lost.

    References
    ----------
    Lample, Sablayrolles, Ranzato, Denoyer, Jégou. Large Memory Layers with Product Keys. NeurIPS 2019.
    """
    queries, keys, k = _check_inputs(queries, keys, k)
    B, H, D = queries.shape
    n = keys.shape[2]
    s1, s2 = _sub_scores(queries, keys)  # (B, H, n), (B, H, n)
    if fused:
        return _product_key_topk_fused(queries, keys, s1, s2, k)
    if enabled():
        with np.errstate(over="ignore"):
            _check_sums(np.abs(s1).max(axis=-1) + np.abs(s2).max(axis=-1))
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


def _product_key_topk_fused(queries, keys, s1, s2, k):
    """The forward's selection as one kernel call (``refmann.kernels.product_keys``); same result, bit for bit."""
    B, H, n = s1.shape
    # the kernel indexes the halves' first k: k is checked here even inside unchecked()
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k: expected an int with 1 <= k <= n = {n} (the sub-keys per half), got {k!r}")
    R = B * H
    rows = np.empty((B, H, k), np.int64)
    cols = np.empty((B, H, k), np.int64)
    scores = np.empty((B, H, k), s1.dtype)
    bounds = np.empty((B, H), s1.dtype)  # max|s¹| + max|s²| per row
    with np.errstate(over="ignore", invalid="ignore"):  # only the plain-Python kernel (JIT off) would warn
        product_key_topk_kernel(
            np.ascontiguousarray(s1).reshape(R, n),
            np.ascontiguousarray(s2).reshape(R, n),
            k,
            rows.reshape(R, k),
            cols.reshape(R, k),
            scores.reshape(R, k),
            bounds.reshape(R),
        )
    if enabled():
        _check_sums(bounds)
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
    d1, d2 = ds1.transpose(1, 0, 2), ds2.transpose(1, 0, 2)  # (H, B, n) views: batched matmuls per head
    q = queries.transpose(1, 0, 2)  # (H, B, D)
    dqueries = np.concatenate([d1 @ keys[:, 0], d2 @ keys[:, 1]], axis=-1).transpose(1, 0, 2)  # (B, H, D)
    dkeys = np.stack(
        [d1.transpose(0, 2, 1) @ q[..., :half], d2.transpose(0, 2, 1) @ q[..., half:]], axis=1
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
