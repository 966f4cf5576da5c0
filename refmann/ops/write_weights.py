r"""SAM's and DAM's write weights: interpolate the previous read weights with the least-used slot.

:math:`w^W_t = \alpha_t \big(\gamma_t\, w^R_{t-1} + (1 - \gamma_t)\, \mathbb 1_{I^U_t}\big)`
(Rae et al. 2016, §3.2, eq. 5; DESIGN decisions 1 and 5). Derivation: ``docs/derivations/memory.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, as_index_array, check_dout, check_shape, enabled
from ._registry import distinct_indices, register_op, simplex


class LRAInterpolateCache(NamedTuple):
    alpha: np.ndarray  # (B, H)       write gates α
    gate: np.ndarray  # (B, H)       interpolation gates γ
    read_weights: np.ndarray  # (B, H, J)    w^R_{t-1}
    inner: np.ndarray  # (B, H, J+1) sparse, or (B, H, N) dense: γ w^R + (1 − γ) 1_LRA
    onehot: np.ndarray | None  # (B, H, N)    1_LRA (dense form only)


def lra_interpolate_forward(read_weights, alpha, gate, *, lra=None):
    r"""Write weights :math:`w^W = \alpha(\gamma w^R_{t-1} + (1-\gamma) \mathbb 1_{LRA})` (Rae et al. 2016, eq. 5).

    Two forms of the same formula:

    - **sparse** (SAM, ``lra=None``): ``read_weights`` are the K weights on the previously read rows;
      the result has J + 1 entries per head, the last one the LRA slot's (SAM lists the rows as
      "K read rows, then the LRA row");
    - **dense** (DAM, ``lra`` given): ``read_weights`` cover all N slots and the LRA slot of each
      head is a one-hot at ``lra``.

    Parameters
    ----------
    read_weights : ndarray of shape (B, H, J)
        :math:`w^R_{t-1}` (J = K sparse, J = N dense).
    alpha : ndarray of shape (B, H)
        Write gates α ∈ [0, 1].
    gate : ndarray of shape (B, H)
        Interpolation gates γ ∈ [0, 1].
    lra : int ndarray of shape (B, H), keyword-only, optional
        The least-recently-accessed slot of each head (dense form).

    Returns
    -------
    write_weights : ndarray of shape (B, H, J + 1) (sparse) or (B, H, N) (dense)
    cache : LRAInterpolateCache

    Notes
    -----
    .. math:: \frac{\partial L}{\partial \alpha} = \langle dw^W, \gamma w^R + (1-\gamma) \mathbb 1 \rangle,\quad
              \frac{\partial L}{\partial \gamma} = \alpha \langle dw^W, w^R - \mathbb 1 \rangle,\quad
              \frac{\partial L}{\partial w^R} = \alpha \gamma\, dw^W
    """
    if enabled():  # (models validate once, then run their steps unchecked)
        read_weights = as_float_array(read_weights, "read_weights", ndim=3)
        alpha = as_float_array(alpha, "alpha", ndim=2)
        gate = as_float_array(gate, "gate", ndim=2)
        check_shape(alpha, "alpha", read_weights.shape[:2])
        check_shape(gate, "gate", read_weights.shape[:2])
        if lra is not None:
            lra = as_index_array(lra, "lra", upper=read_weights.shape[2], shape=read_weights.shape[:2])
    B, H, J = read_weights.shape
    if lra is None:
        inner = np.concatenate([gate[..., None] * read_weights, (1.0 - gate)[..., None]], axis=-1)  # (B, H, J+1)
        onehot = None
    else:
        onehot = np.zeros((B, H, J), read_weights.dtype)
        np.put_along_axis(onehot, lra[..., None], 1.0, axis=-1)
        inner = gate[..., None] * read_weights + (1.0 - gate[..., None]) * onehot  # (B, H, N)
    return alpha[..., None] * inner, LRAInterpolateCache(alpha, gate, read_weights, inner, onehot)


def lra_interpolate_backward(dwrite_weights, cache):
    r"""VJP of :func:`lra_interpolate_forward` (``docs/derivations/memory.md``, the write weights)."""
    if enabled():
        check_dout(dwrite_weights, cache.inner.shape, "dwrite_weights")
    J = cache.read_weights.shape[-1]
    dalpha = np.sum(dwrite_weights * cache.inner, axis=-1)  # (B, H)
    dinner = cache.alpha[..., None] * dwrite_weights
    if cache.onehot is None:
        dgate = np.sum(dinner[..., :J] * cache.read_weights, axis=-1) - dinner[..., J]
        dread_weights = cache.gate[..., None] * dinner[..., :J]  # (B, H, K)
    else:
        dgate = np.sum(dinner * (cache.read_weights - cache.onehot), axis=-1)
        dread_weights = cache.gate[..., None] * dinner  # (B, H, N)
    return dread_weights, dalpha, dgate


def _example(rng, s):
    lra = distinct_indices(rng, s.B, s.H, s.N, 1)[..., 0] if rng.random() < 0.5 else None
    J = s.N if lra is not None else s.K
    return (
        (simplex(rng, s.B, s.H, J), rng.uniform(0.05, 0.95, (s.B, s.H)), rng.uniform(0.05, 0.95, (s.B, s.H))),
        {} if lra is None else {"lra": lra},
    )


register_op("lra_interpolate", lra_interpolate_forward, lra_interpolate_backward, example=_example)
