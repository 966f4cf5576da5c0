r"""The gradient sink: the one object every backward pass adds its parameter gradients into.

A backward never writes ``grads[key] += …`` on a plain dict; it calls one of three methods, so
that the engine can choose *how* the sum is formed without any core or layer knowing:

- :meth:`Grads.add` — ``grads[key] += g`` (biases, small tensors);
- :meth:`Grads.add_outer` — ``grads[key] += xᵀ dy`` for a weight used as ``y = x @ weight``;
- :meth:`Grads.add_rows` — a :class:`~refmann.ops.RowGrad` for a table of which only some rows
  were used (product-key values, embeddings); the result stays row-sparse.

:class:`Grads` is the reference: every call is applied at once. :class:`DeferredGrads` is the fast
path BPTT uses: it keeps each weight's outer products and sums 16 time steps at a time as one BLAS
matrix product that adds in place — the same sum (tested equal), one large product instead of 16
small ones and 16 (in, out) additions.

:meth:`Grads.result` ends the pass and returns a plain ``dict[str, ndarray | RowGrad]`` with the
parameters' keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from scipy.linalg import get_blas_funcs

from .ops.memory import RowGrad

__all__ = ["DeferredGrads", "Grads"]


class Grads:
    """∂L/∂params keyed like the params; the reference sink (every addition applied at once).

    Parameters
    ----------
    params : Mapping[str, ndarray]
        The parameters; dense keys start at zeros of the same shape and dtype.
    sparse : iterable of str, optional
        Keys whose gradient is row-sparse: they accumulate :class:`~refmann.ops.RowGrad` values
        (:meth:`add_rows`) and are returned as one RowGrad (rows concatenated, duplicates not yet
        summed), never as an N-sized array.
    """

    def __init__(self, params: Mapping[str, np.ndarray], *, sparse: Iterable[str] = ()):
        self._sparse = {key: [] for key in sparse}
        unknown = sorted(set(self._sparse) - set(params))
        if unknown:
            raise ValueError(f"sparse: keys {unknown} are not parameters")
        self._params = params
        self._dense = {key: np.zeros_like(value) for key, value in params.items() if key not in self._sparse}

    def __getitem__(self, key: str) -> np.ndarray:
        """The dense gradient accumulated so far (pending deferred products not included)."""
        return self._dense[key]

    def __contains__(self, key: str) -> bool:
        return key in self._dense or key in self._sparse

    def add(self, key: str, g: np.ndarray) -> None:
        """``grads[key] += g`` (``g`` broadcast to the parameter's shape is an error: shapes must match)."""
        target = self._dense[key]
        if np.shape(g) != target.shape:
            raise ValueError(f"g: expected shape {target.shape} for {key!r}, got {np.shape(g)}")
        target += g

    def add_outer(self, key: str, x: np.ndarray, dy: np.ndarray) -> None:
        """``grads[key] += xᵀ dy`` for ``y = x @ weight``: x (B, in), dy (B, out), the weight (in, out)."""
        self._dense[key] += x.T @ dy

    def add_rows(self, key: str, grad: RowGrad) -> None:
        """Add a row gradient of the (N, D) table ``key`` (dense keys get it scatter-added)."""
        if key in self._sparse:
            self._sparse[key].append(grad)
            return
        target = self._dense[key]
        np.add.at(target, grad.indices, grad.rows)

    def flush(self) -> None:
        """Apply every pending addition (the reference has none)."""

    def result(self) -> dict:
        """The gradients as a plain dict with the parameters' keys (call once, after the last backward)."""
        self.flush()
        out = {}
        for key, value in self._params.items():
            if key in self._sparse:
                parts = self._sparse[key]
                width = value.shape[1:]
                indices = np.concatenate([p.indices.reshape(-1) for p in parts]) if parts else np.zeros(0, np.int64)
                rows = (
                    np.concatenate([p.rows.reshape((-1,) + width) for p in parts])
                    if parts
                    else np.zeros((0,) + width, value.dtype)
                )
                out[key] = RowGrad(indices, rows, value.shape[0])
            else:
                out[key] = self._dense[key]
        return out


class DeferredGrads(Grads):
    """The sink of one BPTT pass, which batches weight outer products over time (the fast path).

    A step's ``add_outer(key, x, dy)`` for a (B, in) input and a (B, out) upstream gradient is kept
    and summed ``every`` steps at a time as one ``[x_1; …; x_n]ᵀ [dy_1; …; dy_n]`` — the same sum,
    one large matrix product instead of n small ones and n (in, out) additions. At most ``every``
    pairs per key are held, so the extra memory does not grow with T.
    """

    every = 16

    def __init__(self, params, *, sparse=()):
        super().__init__(params, sparse=sparse)
        self._pending: dict[str, tuple[list, list]] = {}

    def add_outer(self, key, x, dy):
        xs, dys = self._pending.setdefault(key, ([], []))
        xs.append(x)
        dys.append(dy)
        if len(xs) >= self.every:
            self._flush_key(key)

    def _flush_key(self, key):
        xs, dys = self._pending.pop(key)
        x, dy, target = np.concatenate(xs), np.concatenate(dys), self._dense[key]
        if x.dtype == dy.dtype == target.dtype and target.flags.c_contiguous:
            # BLAS adds into the gradient in place (target.T is the Fortran-ordered (out, in) array:
            # target.T += dyᵀ x), so no (in, out) temporary is made — 755 KB for SAM's controller
            gemm = get_blas_funcs("gemm", (dy, x, target))
            out = gemm(1.0, dy, x, beta=1.0, c=target.T, trans_a=True, overwrite_c=True)
            if np.shares_memory(out, target):
                return
            target[...] = out.T  # pragma: no cover (BLAS copied)
        else:
            target += x.T @ dy

    def flush(self):
        """Add every pending outer product (:meth:`result` calls it)."""
        for key in list(self._pending):
            self._flush_key(key)
