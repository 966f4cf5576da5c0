r"""A learned lookup table over :func:`refmann.ops.embedding_forward`, with a row gradient."""

from __future__ import annotations

import numpy as np

from .. import _checks, ops
from .base import LayerBase, check_dtype, check_seed


class Embedding(LayerBase):
    r"""Rows of a learned (N, D) table by integer index.

    Parameters
    ----------
    num_embeddings : int, keyword-only
        N, the number of rows.
    embedding_dim : int, keyword-only
        D.
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"weight"`` (N, D), standard normal (PyTorch's default for ``nn.Embedding``).

    Notes
    -----
    ``forward(indices)`` takes an int array of any shape (...) and returns (..., D). ``backward``
    returns ``dx = None`` (indices have no gradient) and ``grads["weight"]`` as a
    :class:`~refmann.ops.RowGrad` of ``indices.size`` rows — never an N-sized array; duplicates are
    separate rows that add up when scatter-added (:func:`refmann.ops.densify_rows`).

    .. math:: y_j = E_{s_j}, \qquad \frac{\partial L}{\partial E_i} = \sum_{j : s_j = i} dy_j
    """

    def __init__(self, *, num_embeddings, embedding_dim, seed=0, dtype=np.float64):
        self.num_embeddings = _checks.check_positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = _checks.check_positive_int(embedding_dim, "embedding_dim")
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng(check_seed(seed))
        self.params = {"weight": rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(self.dtype)}
        self.children = {}
        self._sizes = {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}

    def forward(self, x, *, params=None):
        """``weight[x]``: int (...) -> (..., embedding_dim). ``x`` is named ``indices`` in errors."""
        p = self._params(params)
        weight = p["weight"]
        if not isinstance(weight, np.ndarray) or weight.shape != (self.num_embeddings, self.embedding_dim):
            raise ValueError(
                f"params['weight']: expected shape {(self.num_embeddings, self.embedding_dim)}, got {np.shape(weight)}"
            )
        return ops.embedding_forward(weight, indices=x)  # cache: EmbeddingCache

    def backward(self, dy, cache):
        """``(None, {"weight": RowGrad})``."""
        if _checks.enabled():
            _checks.check_dout(dy, cache.indices.shape + (self.embedding_dim,), "dy")
        (dweight,) = ops.embedding_backward(dy, cache)
        return None, {"weight": dweight}
