r"""Embedding lookup: a gather of table rows whose backward is a row gradient, never an N-sized array.

Derivations: ``docs/derivations/layers.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, as_index_array, check_dout, enabled
from ._registry import register_op
from .memory import RowGrad


class EmbeddingCache(NamedTuple):
    indices: np.ndarray  # int (...)  the rows looked up, any shape
    num_rows: int  # N
    dim: int  # D, the size of a row (the output is (..., D))


def embedding_forward(table, *, indices):
    r"""Rows of a table by index: :math:`y[\ldots] = E[\text{indices}[\ldots]]`.

    Costs O(J·D) for J = ``indices.size`` lookups, whatever N is: only the looked-up rows are read
    and checked.

    Parameters
    ----------
    table : ndarray of shape (N, D)
        The embedding table E.
    indices : int ndarray of any shape (...), keyword-only
        Rows in ``[0, N)``; repeats are allowed (their gradients add up).

    Returns
    -------
    out : ndarray of shape (..., D)
    cache : EmbeddingCache

    Notes
    -----
    .. math:: y_{j} = E_{s_j}, \qquad \frac{\partial L}{\partial E_i} = \sum_{j : s_j = i} dy_j

    The backward returns the second sum unsummed, as a :class:`~refmann.ops.RowGrad` of J rows
    (see :func:`embedding_backward`).
    """
    if not isinstance(table, np.ndarray):
        raise TypeError(f"table: expected a float ndarray, got {type(table).__name__}")
    if table.ndim != 2 or table.dtype.type not in (np.float32, np.float64):
        raise ValueError(
            f"table: expected a float32/float64 array of shape (N, D), got {table.dtype} array of shape {table.shape}"
        )
    indices = as_index_array(indices, "indices", upper=table.shape[0])
    out = table[indices]  # (..., D) a copy (fancy indexing)
    as_float_array(out, "table (the looked-up rows)")  # finite check on the J rows only
    return out, EmbeddingCache(indices, table.shape[0], table.shape[1])


def embedding_backward(dout, cache):
    r"""VJP of :func:`embedding_forward`: the upstream rows, tagged with their table rows.

    Returns
    -------
    (dtable,) : tuple of one RowGrad
        ``indices`` of shape (J,), ``rows`` of shape (J, D) with J = ``indices.size``, ``num_rows`` N.
        Duplicate indices are kept as separate rows: whoever scatter-adds them (an optimizer,
        :func:`~refmann.ops.densify_rows`) must accumulate, as ``np.add.at`` does.
    """
    if enabled():
        check_dout(dout, cache.indices.shape + (cache.dim,), "dout")
    D = dout.shape[-1]
    rows = np.array(dout, copy=True).reshape(-1, D)  # (J, D) a copy: dout stays the caller's
    return (RowGrad(cache.indices.reshape(-1), rows, cache.num_rows),)


# -- registry (example inputs) -------------------------------------------------------------------------
def _embedding_example(rng, s):
    idx = rng.integers(0, s.N, (s.B, s.K + 1))
    idx[:, -1] = idx[:, 0]  # at least one repeat per row
    return (rng.standard_normal((s.N, s.W)),), {"indices": idx}


register_op("embedding", embedding_forward, embedding_backward, example=_embedding_example)
