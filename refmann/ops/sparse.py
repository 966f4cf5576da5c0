r"""SAM's sparse write and its content read over K rows (Rae et al. 2016, §3.1–3.2).

Each op has a readable NumPy body — the reference — and, behind ``fused=True``, the Numba kernel
SAM runs by default; tests prove the two equal in values and gradients. Derivations:
``docs/derivations/memory.md`` (the sparse write; the sparse content read).

- :func:`sparse_write_forward` / :func:`sparse_write_backward`: the pure op,
  :math:`M_t = (1 - R_t) \odot M_{t-1} + \sum_h \sum_j w_{hj}\, e_{s_{hj}} a_h^\top`;
  :func:`sparse_write_rows_backward` is the part of its VJP that needs only the written rows' upstream
  gradient (what SAM's rollback backward calls against its row-gradient table);
- :func:`sparse_write_inplace`: the same write applied to the memory in place, returning the old
  rows (the journal rollback restores); nothing N-sized is touched;
- :func:`sparse_content_read_forward` / :func:`sparse_content_read_backward`: per head, cosine
  similarity with the query over its K rows, softmax with strength β, and the weighted sum — the
  composition of :func:`~refmann.ops.content_weights_forward` and :func:`~refmann.ops.sparse_read_forward`
  on the K rows, O(K·W) per head.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, as_index_array, check_dout, check_dout_tuple, check_shape, enabled
from ..kernels import gather_rows_kernel
from ..kernels.content_read import content_read_backward_kernel, content_read_forward_kernel
from ..kernels.sparse_write import sparse_write_inplace_kernel
from ._registry import distinct_indices, register_op
from .addressing import content_weights_backward, content_weights_forward
from .memory import RowGrad, scatter_add_rows_inplace, sparse_read_backward, sparse_read_forward

# -- the sparse write ---------------------------------------------------------------------------------


class SparseWriteCache(NamedTuple):
    weights: np.ndarray  # (B, H, J)   write weights on J rows per head (SAM: J = K + 1)
    add: np.ndarray  # (B, H, W)   write words a_h
    indices: np.ndarray  # int (B, H, J)  rows written (repeats add up)
    erase_indices: np.ndarray  # int (B, E)     rows zeroed first (SAM: the LRA rows; each also in indices)
    num_rows: int  # N


def _check_write(memory, weights, add, indices, erase_indices):
    if not enabled():  # (models validate once, then run their steps unchecked)
        return weights, add, indices, erase_indices
    if not isinstance(memory, np.ndarray):
        raise TypeError(f"memory: expected a float ndarray, got {type(memory).__name__}")
    if memory.ndim != 3 or memory.dtype.type not in (np.float32, np.float64):
        raise ValueError(
            f"memory: expected a float32/float64 array of shape (B, N, W), got "
            f"{memory.dtype} array of shape {memory.shape}"
        )
    B, N, W = memory.shape
    weights = as_float_array(weights, "weights", ndim=3)
    check_shape(weights, "weights", (B, None, None))
    add = as_float_array(add, "add", ndim=3)
    check_shape(add, "add", (B, weights.shape[1], W))
    indices = as_index_array(indices, "indices", upper=N, shape=weights.shape)
    erase_indices = as_index_array(erase_indices, "erase_indices", upper=N, shape=(B, None))
    return weights, add, indices, erase_indices


def sparse_write_forward(memory, weights, add, *, indices, erase_indices):
    r"""SAM's write: erase whole rows, then add on J rows per head (Rae et al. 2016, eq. 5 and §3.2).

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
        :math:`M_{t-1}` (not modified: this is the pure op; SAM uses :func:`sparse_write_inplace`).
    weights : ndarray of shape (B, H, J)
        :math:`w_{hj}`, the write weight of head h on row :math:`s_{hj}`.
    add : ndarray of shape (B, H, W)
        Write words :math:`a_h`.
    indices : int ndarray of shape (B, H, J), keyword-only
        Rows :math:`s_{hj}` written; repeats add up.
    erase_indices : int ndarray of shape (B, E), keyword-only
        Rows set to zero before the add (SAM: the least-recently-accessed row of each head).

    Returns
    -------
    new_memory : ndarray of shape (B, N, W)
    cache : SparseWriteCache

    Notes
    -----
    .. math:: M_t = (1 - R_t) \odot M_{t-1} + \sum_h \sum_j w_{hj}\, e_{s_{hj}} a_h^\top,
              \qquad R_t = \sum_{i \in E} e_i \mathbb 1^\top

    With J = N and ``indices`` listing every row this is :func:`~refmann.ops.lra_write_forward`.
    """
    weights, add, indices, erase_indices = _check_write(memory, weights, add, indices, erase_indices)
    B, H, J = weights.shape
    new = memory.copy()
    np.put_along_axis(new, erase_indices[..., None], 0.0, axis=1)  # erase: rows set to 0
    rows = weights[..., None] * add[:, :, None, :]  # (B, H, J, W)
    scatter_add_rows_inplace(new, indices.reshape(B, H * J), rows.reshape(B, H * J, -1))
    return new, SparseWriteCache(weights, add, indices, erase_indices, memory.shape[1])


def sparse_write_rows_backward(drows, cache):
    r"""The VJP's row part: from the upstream gradient of the written rows, ``drows`` (B, H, J, W),
    :math:`dw_{hj} = dM_t(s_{hj}) \cdot a_h` and :math:`da_h = \sum_j w_{hj}\, dM_t(s_{hj})`."""
    if enabled():
        check_dout(drows, cache.weights.shape + cache.add.shape[2:], "drows")
    dweights = np.einsum("bhjw,bhw->bhj", drows, cache.add)  # (B, H, J)
    dadd = np.einsum("bhj,bhjw->bhw", cache.weights, drows)  # (B, H, W)
    return dweights, dadd


def sparse_write_backward(dnew, cache):
    r"""VJP of :func:`sparse_write_forward`: :math:`dM_{t-1} = (1 - R_t) \odot dM_t` (erased rows get
    none), and the weights' and words' gradients from the written rows (:func:`sparse_write_rows_backward`)."""
    if enabled():
        check_dout(dnew, (cache.add.shape[0], cache.num_rows, cache.add.shape[2]), "dnew")
    B, H, J = cache.weights.shape
    drows = np.take_along_axis(dnew, cache.indices.reshape(B, H * J, 1), axis=1).reshape(B, H, J, -1)
    dweights, dadd = sparse_write_rows_backward(drows, cache)
    dmemory = dnew.copy()
    np.put_along_axis(dmemory, cache.erase_indices[..., None], 0.0, axis=1)
    return dmemory, dweights, dadd


def sparse_write_inplace(memory, weights, add, *, indices, erase_indices, fused=True):
    r""":func:`sparse_write_forward` applied to ``memory`` in place; returns ``(old_rows, cache)``.

    ``old_rows`` (B, H·J, W) are the rows ``indices`` listed, before the write, in the order listed
    (the journal: writing them back in reverse order undoes the step exactly). Touches only the
    listed rows: O(H·J·W) whatever N is. Every row of ``erase_indices`` must also be written (listed
    in ``indices`` for the same batch element), so that the journal holds its old contents.

    ``fused=True`` runs the write as one Numba kernel (journal, erase, add); ``fused=False`` runs the
    same three steps as NumPy calls — the readable reference, tested equal.
    """
    weights, add, indices, erase_indices = _check_write(memory, weights, add, indices, erase_indices)
    B, H, J = weights.shape
    flat_idx = np.ascontiguousarray(indices.reshape(B, H * J))
    if enabled():
        if not memory.flags.writeable:
            raise ValueError("memory: expected a writeable array (it is written in place), got a read-only one")
        # old_rows journals the written rows only: an erased row outside them could not be restored
        missing = [(b, int(e)) for b in range(B) for e in np.setdiff1d(erase_indices[b], flat_idx[b])]
        if missing:
            raise ValueError(
                f"erase_indices: expected every erased row to be among the written indices of its batch element "
                f"(so that old_rows can undo the write), got (b, row) = {missing[:4]} not written"
            )
    if fused:
        if not memory.flags.c_contiguous:
            raise ValueError("memory: expected a C-contiguous array (it is written in place)")
        old_rows = np.empty((B, H * J, memory.shape[2]), memory.dtype)
        sparse_write_inplace_kernel(
            memory,
            np.ascontiguousarray(erase_indices),
            flat_idx,
            np.ascontiguousarray(weights.reshape(B, H * J), dtype=memory.dtype),
            np.ascontiguousarray(add, dtype=memory.dtype),
            J,
            old_rows,
        )
    else:
        old_rows = np.take_along_axis(memory, flat_idx[..., None], axis=1)  # journal: (B, H·J, W)
        np.put_along_axis(memory, erase_indices[..., None], 0.0, axis=1)  # erase
        rows = weights[..., None] * add[:, :, None, :]  # (B, H, J, W)
        scatter_add_rows_inplace(memory, flat_idx, rows.reshape(B, H * J, -1))  # add
    return old_rows, SparseWriteCache(weights, add, indices, erase_indices, memory.shape[1])


def _write_example(rng, s):
    J = s.K + 1
    indices = rng.integers(0, s.N, (s.B, s.H, J))  # repeats (within and across heads) add up
    indices[:, -1, 0] = indices[:, 0, 0]  # at least one row written by two heads
    erase = indices[:, :, -1]  # the "LRA" row of each head
    return (
        (
            rng.standard_normal((s.B, s.N, s.W)),
            rng.uniform(0.05, 0.95, (s.B, s.H, J)),
            rng.standard_normal((s.B, s.H, s.W)),
        ),
        {"indices": indices, "erase_indices": erase},
    )


register_op("sparse_write", sparse_write_forward, sparse_write_backward, example=_write_example)


# -- the content read over K rows ---------------------------------------------------------------------


class SparseContentReadCache(NamedTuple):
    indices: np.ndarray  # int (B, H, K)  the rows read
    num_rows: int  # N
    keys: np.ndarray  # (B, H, W)      queries q
    strengths: np.ndarray  # (B, H)         β
    weights: np.ndarray  # (B, H, K)      softmax over the K rows
    sim: np.ndarray  # (B, H, K)      cosine similarities
    key_norm: np.ndarray  # (B, H)         ‖q‖
    row_norm: np.ndarray  # (B, H, K)      ‖M(s_hk)‖
    rows: np.ndarray | None  # (B, H, K, W)   the rows; rollback drops them and gathers them again from M_t
    eps: float
    fused: bool
    reference: tuple | None  # (content_weights cache, sparse_read cache) of the reference path


def gather_rows(memory, indices):
    """memory[b, indices[b, ...]] -> (B, ..., W), a copy (indices assumed valid: callers check them)."""
    B = indices.shape[0]
    flat = np.ascontiguousarray(indices.reshape(B, -1))
    out = np.empty((B, flat.shape[1], memory.shape[2]), memory.dtype)
    gather_rows_kernel(out, memory, flat)
    return out.reshape(indices.shape + (memory.shape[2],))


def sparse_content_read_forward(memory, keys, strengths, *, indices, eps=1e-6, fused=False):
    r"""Content read over K rows per head: :math:`w = \mathrm{softmax}_k(\beta \cos(q, M(s_k)))`,
    :math:`r = \sum_k w_k M(s_k)` (Rae et al. 2016, eqs. 1–2 restricted to the index's K candidates).

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
    keys : ndarray of shape (B, H, W)
        Queries :math:`q_h`.
    strengths : ndarray of shape (B, H)
        :math:`\beta_h`.
    indices : int ndarray of shape (B, H, K), keyword-only
        The candidate rows of each head (from the index).
    eps : float, keyword-only
        Inside the cosine's denominator, as :func:`~refmann.ops.cosine_similarity_forward`.
    fused : bool, keyword-only
        False (default): :func:`~refmann.ops.content_weights_forward` on each head's K rows, then
        :func:`~refmann.ops.sparse_read_forward` — the readable reference. True: one Numba pass per
        head (``refmann.kernels.content_read``), tested equal.

    Returns
    -------
    (weights, reads) : ndarrays of shape (B, H, K) and (B, H, W)
    cache : SparseContentReadCache

    Notes
    -----
    With K = N and every row listed, this is :func:`~refmann.ops.content_weights_forward` followed by
    :func:`~refmann.ops.dense_read_forward` — the property that makes SAM(K = N) ≡ DAM.
    """
    if enabled():  # (models validate once, then run their steps unchecked)
        if not isinstance(memory, np.ndarray) or memory.ndim != 3 or memory.dtype.type not in (np.float32, np.float64):
            raise TypeError(
                f"memory: expected a float32/float64 ndarray of shape (B, N, W), got "
                f"{type(memory).__name__} {getattr(memory, 'shape', '')}"
            )
        B, N, W = memory.shape
        keys = as_float_array(keys, "keys", ndim=3)
        check_shape(keys, "keys", (B, None, W))
        strengths = as_float_array(strengths, "strengths", ndim=2)
        check_shape(strengths, "strengths", keys.shape[:2])
        indices = as_index_array(indices, "indices", upper=N, shape=keys.shape[:2] + (None,))
    B, N, W = memory.shape
    H, K = keys.shape[1], indices.shape[2]
    rows = gather_rows(memory, indices)  # (B, H, K, W)
    if fused:
        keys, strengths = np.ascontiguousarray(keys), np.ascontiguousarray(strengths)
        w, sim, rnorm = (np.empty((B, H, K), memory.dtype) for _ in range(3))
        reads, qnorm = np.empty((B, H, W), memory.dtype), np.empty((B, H), memory.dtype)
        content_read_forward_kernel(rows, keys, strengths, eps, w, reads, sim, qnorm, rnorm)
        return (w, reads), SparseContentReadCache(
            indices, N, keys, strengths, w, sim, qnorm, rnorm, rows, eps, True, None
        )
    # the reference: each head's K rows as a memory of K slots, then the sparse read of those rows
    w, cw_cache = content_weights_forward(
        rows.reshape(B * H, K, W), keys.reshape(B * H, 1, W), strengths.reshape(B * H, 1), eps=eps
    )
    w = w.reshape(B, H, K)
    reads, sr_cache = sparse_read_forward(memory, w, indices=indices)
    return (w, reads), SparseContentReadCache(
        indices, N, keys, strengths, w, None, None, None, rows, eps, False, (cw_cache, sr_cache)
    )


def sparse_content_read_backward(dout, cache):
    r"""VJP of :func:`sparse_content_read_forward`: ``dout = (dweights, dreads)`` ->
    ``(dmemory as a RowGrad over the K rows of each head, dkeys, dstrengths)``.

    ``dweights`` is the gradient reaching the read weights from elsewhere (SAM: the next step's
    write weights interpolate them). O(K·W) per head; never N-sized.
    """
    if enabled():
        check_dout_tuple(dout, (cache.weights.shape, cache.keys.shape), ("dweights", "dreads"), "dout")
    dweights, dreads = dout
    B, H, K = cache.weights.shape
    W = cache.keys.shape[2]
    if cache.fused:
        if cache.rows is None:
            raise ValueError("cache: its rows were dropped; put them back with cache._replace(rows=...)")
        drows = np.empty((B, H, K, W), cache.rows.dtype)
        dq, dbeta = np.empty_like(cache.keys), np.empty_like(cache.strengths)
        content_read_backward_kernel(
            np.ascontiguousarray(dreads),
            np.ascontiguousarray(dweights),
            cache.rows,
            cache.keys,
            cache.strengths,
            cache.eps,
            cache.weights,
            cache.sim,
            cache.key_norm,
            cache.row_norm,
            drows,
            dq,
            dbeta,
        )
        return RowGrad(cache.indices.reshape(B, H * K), drows.reshape(B, H * K, W), cache.num_rows), dq, dbeta
    cw_cache, sr_cache = cache.reference
    dmem_read, dw_read = sparse_read_backward(dreads, sr_cache)  # RowGrad, (B, H, K)
    drows, dq, dbeta = content_weights_backward((dw_read + dweights).reshape(B * H, 1, K), cw_cache)
    drows = drows.reshape(B, H * K, W) + dmem_read.rows  # both on the same K rows per head
    return RowGrad(dmem_read.indices, drows, cache.num_rows), dq.reshape(B, H, W), dbeta.reshape(B, H)


def _read_example(rng, s):
    return (
        (rng.standard_normal((s.B, s.N, s.W)), rng.standard_normal((s.B, s.H, s.W)), 1.0 + 3 * rng.random((s.B, s.H))),
        {"indices": distinct_indices(rng, s.B, s.H, s.N, s.K)},
    )


register_op("sparse_content_read", sparse_content_read_forward, sparse_content_read_backward, example=_read_example)
