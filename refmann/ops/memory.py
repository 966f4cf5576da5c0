r"""Reads and writes: dense (NTM, DAM) and sparse (SAM), plus row-gradient helpers.

A sparse op's backward never allocates anything of size N: it returns a :class:`RowGrad`
(indices + rows) that the caller scatter-adds into its own buffer; :func:`densify_rows` turns one
into a dense array for checking. Derivations: ``docs/derivations/memory.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import (
    as_float_array,
    as_index_array,
    check_dout,
    check_finite,
    check_positive_int,
    check_range,
    check_shape,
    describe,
    enabled,
)
from ..kernels import gather_rows_kernel, scatter_add_rows_kernel
from ._registry import distinct_indices, register_op, simplex


class RowGrad(NamedTuple):
    """The gradient of an array that is non-zero only on some rows; duplicates add up.

    Two forms: a batch of memories, (B, N, W) with ``indices`` (B, J) and ``rows`` (B, J, W); or one
    parameter table (a product-key value table, an embedding), (N, D) with ``indices`` (J,) and
    ``rows`` (J, D).
    """

    indices: np.ndarray  # int (B, J) or (J,)   rows of the dense array
    rows: np.ndarray  # (B, J, W) or (J, D)  gradient rows, duplicates accumulate
    num_rows: int  # N


def scatter_add_rows_inplace(out, indices, rows):
    """``out[b, indices[b, j]] += rows[b, j]`` with duplicate indices accumulated; modifies ``out``.

    Parameters
    ----------
    out : ndarray of shape (B, N, W)
        Written in place.
    indices : int ndarray of shape (B, J)
        Rows of ``out``, in ``[0, N)``.
    rows : ndarray of shape (B, J, W)
    """
    if enabled():  # the kernel trusts its arguments: an index past N would write outside ``out``
        if not isinstance(out, np.ndarray) or out.ndim != 3 or out.dtype.type not in (np.float32, np.float64):
            raise TypeError(f"out: expected a float32/float64 ndarray of shape (B, N, W), got {describe(out)}")
        if not out.flags.writeable:
            raise ValueError("out: expected a writeable array (it is written in place), got a read-only one")
        B, N, W = out.shape
        indices = as_index_array(indices, "indices", upper=N, shape=(B, None))
        rows = as_float_array(rows, "rows", ndim=3)
        check_shape(rows, "rows", (B, indices.shape[1], W))
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    rows = np.ascontiguousarray(rows, dtype=out.dtype)
    scatter_add_rows_kernel(out, indices, rows)
    return out


def _check_rowgrad(grad, name="grad"):
    """A RowGrad whose indices fit its rows and its ``num_rows`` (what :func:`densify_rows` scatters)."""
    if not isinstance(grad, RowGrad):
        raise TypeError(f"{name}: expected a RowGrad(indices, rows, num_rows), got {type(grad).__name__}")
    num_rows = check_positive_int(grad.num_rows, f"{name}.num_rows")
    rows = as_float_array(grad.rows, f"{name}.rows")
    if rows.ndim not in (2, 3):
        raise ValueError(f"{name}.rows: expected shape (J, D) or (B, J, W), got {rows.shape}")
    as_index_array(grad.indices, f"{name}.indices", upper=num_rows, shape=rows.shape[:-1])


def densify_rows(grad: RowGrad) -> np.ndarray:
    """The dense (B, N, W) or (N, D) array a :class:`RowGrad` stands for (for tests and checks, O(N))."""
    if enabled():
        _check_rowgrad(grad)
    if grad.rows.ndim == 2:  # one table: (J, D) rows of an (N, D) array
        return densify_rows(RowGrad(grad.indices[None], grad.rows[None], grad.num_rows))[0]
    B, J, W = grad.rows.shape
    out = np.zeros((B, grad.num_rows, W), grad.rows.dtype)
    return scatter_add_rows_inplace(out, grad.indices.reshape(B, J), grad.rows)


class ScatterAddCache(NamedTuple):
    indices: np.ndarray  # int (B, J)
    out_shape: tuple  # (B, N, W) the output's shape


def scatter_add_forward(rows, *, indices, num_rows):
    r"""Scatter rows into a zero (B, N, W) array, adding rows that share an index.

    Parameters
    ----------
    rows : ndarray of shape (B, J, W)
    indices : int ndarray of shape (B, J), keyword-only
        Destination rows in ``[0, num_rows)``; duplicates accumulate.
    num_rows : int, keyword-only
        N.

    Returns
    -------
    out : ndarray of shape (B, N, W)
    cache : ScatterAddCache

    Notes
    -----
    .. math:: \text{out}(b, i) = \sum_{j : \text{idx}(b,j) = i} \text{rows}(b, j)

    The backward is a gather: :math:`d\text{rows}(b, j) = d\text{out}(b, \text{idx}(b, j))`.
    """
    rows = as_float_array(rows, "rows", ndim=3)
    indices = as_index_array(indices, "indices", upper=num_rows, shape=rows.shape[:2])
    out = np.zeros((rows.shape[0], num_rows, rows.shape[2]), rows.dtype)
    scatter_add_rows_inplace(out, indices, rows)
    return out, ScatterAddCache(indices, out.shape)


def scatter_add_backward(dout, cache):
    """VJP of :func:`scatter_add_forward`: gather the rows of ``dout`` at the indices."""
    if enabled():
        check_dout(dout, cache.out_shape, "dout")
    B, J = cache.indices.shape
    drows = np.empty((B, J, dout.shape[2]), dout.dtype)
    gather_rows_kernel(drows, np.ascontiguousarray(dout), np.ascontiguousarray(cache.indices))
    return (drows,)


class DenseReadCache(NamedTuple):
    memory: np.ndarray  # (B, N, W)
    weights: np.ndarray  # (B, H, N)


def _check_memory_weights(memory, weights, wname="weights"):
    memory = as_float_array(memory, "memory", ndim=3)
    weights = as_float_array(weights, wname, ndim=3)
    check_shape(weights, wname, (memory.shape[0], None, memory.shape[1]))
    return memory, weights


def dense_read_forward(memory, weights):
    r"""Dense read :math:`r_h = \sum_i w_h(i)\, M(i)` (Graves et al. 2014, eq. 2; Rae et al. 2016, eq. 1).

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
    weights : ndarray of shape (B, H, N)

    Returns
    -------
    reads : ndarray of shape (B, H, W)
    cache : DenseReadCache
    """
    memory, weights = _check_memory_weights(memory, weights)
    reads = weights @ memory  # (B, H, W)
    return reads, DenseReadCache(memory, weights)


def dense_read_backward(dreads, cache):
    r"""VJP of :func:`dense_read_forward`: :math:`dM = w^\top dr`, :math:`dw = dr\, M^\top`."""
    if enabled():
        check_dout(dreads, cache.weights.shape[:2] + cache.memory.shape[2:], "dreads")
    dmemory = cache.weights.transpose(0, 2, 1) @ dreads  # (B, N, W)
    dweights = dreads @ cache.memory.transpose(0, 2, 1)  # (B, H, N)
    return dmemory, dweights


class DenseWriteCache(NamedTuple):
    memory: np.ndarray  # (B, N, W)
    weights: np.ndarray  # (B, H, N)
    erase: np.ndarray  # (B, H, W)
    add: np.ndarray  # (B, H, W)
    keep: np.ndarray  # (B, H, N, W)  1 − w_h e_hᵀ per head


def dense_write_forward(memory, weights, erase, add):
    r"""NTM write with H heads: erase then add (Graves et al. 2014, eqs. 3–4).

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
    weights : ndarray of shape (B, H, N)
        Write weights.
    erase : ndarray of shape (B, H, W)
        Erase vectors, in [0, 1].
    add : ndarray of shape (B, H, W)
        Add vectors.

    Returns
    -------
    new_memory : ndarray of shape (B, N, W)
    cache : DenseWriteCache

    Notes
    -----
    .. math:: M' = M \odot \prod_h \big(1 - w_h e_h^\top\big) + \sum_h w_h a_h^\top

    With one head this is the NTM's erase-then-add. The erase products commute, so the order of
    heads does not matter.
    """
    memory, weights = _check_memory_weights(memory, weights)
    erase = as_float_array(erase, "erase", ndim=3)
    add = as_float_array(add, "add", ndim=3)
    B, H, _ = weights.shape
    check_shape(erase, "erase", (B, H, memory.shape[2]))
    check_shape(add, "add", (B, H, memory.shape[2]))
    check_range(erase, "erase", 0.0, 1.0)
    keep = 1.0 - weights[..., None] * erase[:, :, None, :]  # (B, H, N, W)
    new_memory = memory * np.prod(keep, axis=1) + weights.transpose(0, 2, 1) @ add
    return new_memory, DenseWriteCache(memory, weights, erase, add, keep)


def dense_write_backward(dnew, cache):
    r"""VJP of :func:`dense_write_forward`.

    With :math:`P = \prod_h E_h`, :math:`E_h = 1 - w_h e_h^\top` and
    :math:`P_{\setminus h} = \prod_{g \ne h} E_g` (prefix and suffix products, no division):

    .. math::
        dM = dM' \odot P, \quad dE_h = dM' \odot M \odot P_{\setminus h}, \\
        dw_h = -dE_h\, e_h + dM'\, a_h, \quad de_h = -dE_h^\top w_h, \quad da_h = dM'^\top w_h
    """
    if enabled():
        check_dout(dnew, cache.memory.shape, "dnew")
    memory, weights, erase, add, keep = cache
    H = keep.shape[1]
    # prefix[h] = Π_{g<h} E_g, suffix[h] = Π_{g>h} E_g — no division, so an erase of exactly 1 is fine
    prefix = np.ones_like(keep)
    suffix = np.ones_like(keep)
    for h in range(1, H):
        prefix[:, h] = prefix[:, h - 1] * keep[:, h - 1]
        suffix[:, H - 1 - h] = suffix[:, H - h] * keep[:, H - h]
    dmemory = dnew * (prefix[:, -1] * keep[:, -1])  # (B, N, W)
    dkeep = (dnew * memory)[:, None] * prefix * suffix  # (B, H, N, W)
    dweights = -np.einsum("bhnw,bhw->bhn", dkeep, erase) + add @ dnew.transpose(0, 2, 1)
    derase = -np.einsum("bhnw,bhn->bhw", dkeep, weights)
    dadd = weights @ dnew  # (B, H, W)
    return dmemory, dweights, derase, dadd


class SparseReadCache(NamedTuple):
    rows: np.ndarray  # (B, H, K, W)  the K gathered rows per head (not the memory: it may change)
    weights: np.ndarray  # (B, H, K)
    indices: np.ndarray  # int (B, H, K)
    num_rows: int  # N


def sparse_read_forward(memory, weights, *, indices):
    r"""Sparse read over K rows per head: :math:`r_h = \sum_k w_h(k)\, M(s_{h,k})` (Rae et al. 2016, §3.1).

    Costs O(B·H·K·W) whatever N is: only the selected rows are looked at, validated or cached.

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
    weights : ndarray of shape (B, H, K)
        Weights of the selected rows (in SAM, a softmax over the K candidates).
    indices : int ndarray of shape (B, H, K), keyword-only
        The selected rows :math:`s_{h,k}` in ``[0, N)``; repeats are allowed and add up.

    Returns
    -------
    reads : ndarray of shape (B, H, W)
    cache : SparseReadCache

    See Also
    --------
    sparse_read_backward, densify_rows
    """
    if not isinstance(memory, np.ndarray):
        raise TypeError(f"memory: expected a float ndarray, got {type(memory).__name__}")
    if memory.ndim != 3 or memory.dtype.type not in (np.float32, np.float64):
        raise ValueError(
            f"memory: expected a float32/float64 array of shape (B, N, W), got "
            f"{memory.dtype} array of shape {memory.shape}"
        )
    weights = as_float_array(weights, "weights", ndim=3)
    B, N, W = memory.shape
    check_shape(weights, "weights", (B, None, None))
    indices = as_index_array(indices, "indices", upper=N, shape=weights.shape)
    _, H, K = weights.shape
    rows = np.empty((B, H * K, W), memory.dtype)
    gather_rows_kernel(rows, memory, np.ascontiguousarray(indices.reshape(B, H * K)))
    rows = rows.reshape(B, H, K, W)
    check_finite(rows, "memory (the selected rows)")
    reads = np.einsum("bhk,bhkw->bhw", weights, rows)  # (B, H, W)
    return reads, SparseReadCache(rows, weights, indices, N)


def sparse_read_backward(dreads, cache):
    r"""VJP of :func:`sparse_read_forward`, O(K·W) per head.

    .. math:: \frac{\partial L}{\partial M(s_{h,k})} \mathrel{+}= w_h(k)\, dr_h, \qquad
              \frac{\partial L}{\partial w_h(k)} = M(s_{h,k}) \cdot dr_h

    Returns
    -------
    dmemory : RowGrad
        Row gradients (indices of shape (B, H·K), rows of shape (B, H·K, W)); never an N-sized array.
        Scatter-add them into your own buffer, or call :func:`densify_rows`.
    dweights : ndarray of shape (B, H, K)
    """
    if enabled():
        check_dout(dreads, cache.rows.shape[:2] + cache.rows.shape[3:], "dreads")
    rows, weights, indices, N = cache
    B, H, K, W = rows.shape
    drows = weights[..., None] * dreads[:, :, None, :]  # (B, H, K, W)
    dweights = np.einsum("bhkw,bhw->bhk", rows, dreads)  # (B, H, K)
    return RowGrad(indices.reshape(B, H * K), drows.reshape(B, H * K, W), N), dweights


class LRAWriteCache(NamedTuple):
    keep: np.ndarray  # (B, N, 1)  0 on the erased rows, 1 elsewhere
    weights: np.ndarray  # (B, H, N)
    add: np.ndarray  # (B, H, W)


def lra_write_forward(memory, weights, add, *, erase_indices):
    r"""SAM/DAM write: erase whole rows (the least-recently-accessed ones), then add (Rae et al. 2016, eq. 5).

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
    weights : ndarray of shape (B, H, N)
        Write weights :math:`w^W_h`.
    add : ndarray of shape (B, H, W)
        Write words :math:`a_h`.
    erase_indices : int ndarray of shape (B, E), keyword-only
        Rows set to zero before the add (one per head in SAM/DAM: :math:`I^U`).

    Returns
    -------
    new_memory : ndarray of shape (B, N, W)
    cache : LRAWriteCache

    Notes
    -----
    .. math:: M_t = (1 - R_t) \odot M_{t-1} + \sum_h w^W_h a_h^\top, \qquad R_t = \sum_{i \in E} e_i 1^\top

    The erase is not gated (DESIGN decision 6); since the erased rows are overwritten, no gradient
    reaches their old contents.
    """
    memory, weights = _check_memory_weights(memory, weights)
    add = as_float_array(add, "add", ndim=3)
    B, H, N = weights.shape
    check_shape(add, "add", (B, H, memory.shape[2]))
    erase_indices = as_index_array(erase_indices, "erase_indices", upper=N, shape=(B, None))
    keep = np.ones((B, N, 1), memory.dtype)
    np.put_along_axis(keep[..., 0], erase_indices, 0.0, axis=1)
    new_memory = memory * keep + weights.transpose(0, 2, 1) @ add  # (B, N, W)
    return new_memory, LRAWriteCache(keep, weights, add)


def lra_write_backward(dnew, cache):
    r"""VJP of :func:`lra_write_forward`: :math:`dM = (1-R) \odot dM'`, :math:`dw_h = dM' a_h`,
    :math:`da_h = dM'^\top w_h`."""
    if enabled():
        check_dout(dnew, cache.keep.shape[:2] + cache.add.shape[2:], "dnew")
    keep, weights, add = cache
    dmemory = dnew * keep
    dweights = add @ dnew.transpose(0, 2, 1)  # (B, H, N)
    dadd = weights @ dnew  # (B, H, W)
    return dmemory, dweights, dadd


# -- registry (example inputs) -------------------------------------------------------------------------
def _dense_write_example(rng, s):
    memory = rng.standard_normal((s.B, s.N, s.W))
    return (
        memory,
        simplex(rng, s.B, s.H, s.N),
        rng.uniform(0.05, 0.95, (s.B, s.H, s.W)),
        rng.standard_normal((s.B, s.H, s.W)),
    ), {}


def _lra_write_example(rng, s):
    erase = np.stack([rng.choice(s.N, s.H, replace=False) for _ in range(s.B)])
    return (
        (rng.standard_normal((s.B, s.N, s.W)), simplex(rng, s.B, s.H, s.N), rng.standard_normal((s.B, s.H, s.W))),
        {"erase_indices": erase},
    )


register_op(
    "dense_read",
    dense_read_forward,
    dense_read_backward,
    example=lambda rng, s: ((rng.standard_normal((s.B, s.N, s.W)), simplex(rng, s.B, s.H, s.N)), {}),
)
register_op("dense_write", dense_write_forward, dense_write_backward, example=_dense_write_example)
register_op("lra_write", lra_write_forward, lra_write_backward, example=_lra_write_example)
register_op(
    "sparse_read",
    sparse_read_forward,
    sparse_read_backward,
    example=lambda rng, s: (
        (rng.standard_normal((s.B, s.N, s.W)), simplex(rng, s.B, s.H, s.K)),
        {"indices": distinct_indices(rng, s.B, s.H, s.N, s.K)},
    ),
)
register_op(
    "scatter_add",
    scatter_add_forward,
    scatter_add_backward,
    example=lambda rng, s: (
        (rng.standard_normal((s.B, s.H * s.K, s.W)),),
        {"indices": distinct_indices(rng, s.B, s.H, s.N, s.K).reshape(s.B, -1), "num_rows": s.N},
    ),
)
