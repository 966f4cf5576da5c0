r"""Scaled dot-product attention (Vaswani et al. 2017, eq. 1) as a forward/backward pair.

Shapes: ``B`` batch, ``H`` heads, ``Tq`` queries, ``Tk`` keys, ``D`` key size, ``Dv`` value size.
The leading (B, H) axes of ``q``, ``k`` and ``v`` broadcast (keys shared by a batch, one key/value
head for several query heads); each gradient is summed back to its input's shape.
Derivations: ``docs/derivations/layers.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_bool, check_dout, check_real, enabled
from ._registry import register_op
from .activations import softmax


class AttentionCache(NamedTuple):
    q: np.ndarray  # (B, H, Tq, D)   as given (leading axes may be 1)
    k: np.ndarray  # (B, H, Tk, D)
    v: np.ndarray  # (B, H, Tk, Dv)
    weights: np.ndarray  # (B, H, Tq, Tk)  A = softmax(c q kᵀ) over the kept keys; masked entries are exactly 0
    scale: float  # c


def causal_mask(Tq: int, Tk: int | None = None) -> np.ndarray:
    """bool (Tq, Tk): query i may attend to key j ≤ i (lower triangular, diagonal included)."""
    return np.tri(Tq, Tq if Tk is None else Tk, dtype=bool)


def _sum_to_shape(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``g`` over the leading axes where ``shape`` has size 1 (the VJP of a broadcast)."""
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, g.shape)) if n == 1 and m != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _attention_mask(mask, causal, lead, Tq, Tk):
    """The combined bool mask broadcast to (B, H, Tq, Tk), or None when every entry is kept."""
    keep = None
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            got = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
            raise TypeError(f"mask: expected a bool ndarray (False = weight 0), got {got}")
        try:
            keep = np.broadcast_to(mask, lead + (Tq, Tk))
        except ValueError:
            raise ValueError(f"mask: expected a shape that broadcasts to {lead + (Tq, Tk)}, got {mask.shape}") from None
    if causal:
        if Tq != Tk:
            raise ValueError(f"causal: expected as many queries as keys (Tq == Tk), got Tq = {Tq}, Tk = {Tk}")
        tri = causal_mask(Tq)
        keep = np.broadcast_to(tri, lead + (Tq, Tk)) if keep is None else keep & tri
    if keep is not None and enabled():
        empty = ~keep.any(axis=-1)  # (B, H, Tq)
        if empty.any():
            where = tuple(int(i) for i in np.argwhere(empty)[0])
            raise ValueError(
                f"mask: every query must keep at least one key; query (b, h, i) = {where} keeps none "
                f"({int(empty.sum())} such rows)"
            )
    return keep


def attention_forward(q, k, v, *, mask=None, causal=False, scale=None):
    r"""Scaled dot-product attention :math:`O = \mathrm{softmax}(c\,QK^\top)\,V` (Vaswani et al. 2017, eq. 1).

    Parameters
    ----------
    q : ndarray of shape (B, H, Tq, D)
        Queries.
    k : ndarray of shape (B, H, Tk, D)
        Keys. The leading axes of ``q``, ``k``, ``v`` broadcast (a size of 1 is shared).
    v : ndarray of shape (B, H, Tk, Dv)
        Values.
    mask : bool ndarray broadcastable to (B, H, Tq, Tk), keyword-only, optional
        True keeps a key, False gives it weight exactly 0 (padding, or any pattern). Every query
        must keep at least one key, else ValueError. A key-padding mask of shape (B, Tk) is passed
        as ``mask[:, None, None, :]``.
    causal : bool, keyword-only
        Query i attends to keys j ≤ i only (needs Tq == Tk); combined with ``mask`` by "and".
    scale : float, keyword-only, optional
        c, default :math:`1/\sqrt{D}`.

    Returns
    -------
    out : ndarray of shape (B, H, Tq, Dv)
    cache : AttentionCache
        ``cache.weights`` holds the attention weights A (for pictures).

    Notes
    -----
    .. math::
        S = c\, Q K^\top, \qquad
        A_{ij} = \frac{m_{ij}\, e^{S_{ij}}}{\sum_l m_{il}\, e^{S_{il}}}, \qquad O = A V

    with :math:`m_{ij} \in \{0, 1\}` the mask (masked scores are set to :math:`-\infty` before a
    max-shifted softmax, so their weights are exact zeros). Backward: see :func:`attention_backward`.

    References
    ----------
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017, §3.2.1.
    """
    q = as_float_array(q, "q", ndim=4)
    k = as_float_array(k, "k", ndim=4)
    v = as_float_array(v, "v", ndim=4)
    causal = check_bool(causal, "causal")
    D, Tk = q.shape[-1], k.shape[-2]
    if k.shape[-1] != D:
        raise ValueError(f"k: expected shape (B, H, Tk, {D}) (the key size of q), got {k.shape}")
    if v.shape[-2] != Tk:
        raise ValueError(f"v: expected shape (B, H, {Tk}, Dv) (one value per key), got {v.shape}")
    try:
        lead = np.broadcast_shapes(q.shape[:2], k.shape[:2], v.shape[:2])
    except ValueError:
        raise ValueError(
            f"k: expected leading axes (B, H) that broadcast with q's {q.shape[:2]} and v's "
            f"{v.shape[:2]}, got {k.shape[:2]}"
        ) from None
    if scale is None:
        scale = 1.0 / np.sqrt(D)
    scale = check_real(scale, "scale")
    if not np.isfinite(scale):
        raise ValueError(f"scale: expected a finite number, got {scale}")
    keep = _attention_mask(mask, causal, lead, q.shape[2], Tk)
    scores = scale * (q @ k.swapaxes(-1, -2))  # (B, H, Tq, Tk)
    if keep is not None:
        scores = np.where(keep, scores, -np.inf)
    weights = softmax(scores, axis=-1)  # (B, H, Tq, Tk), exp(-inf) = 0
    out = weights @ v  # (B, H, Tq, Dv)
    return out, AttentionCache(q, k, v, weights, scale)


def attention_backward(dout, cache):
    r"""VJP of :func:`attention_forward` (``docs/derivations/layers.md``, the attention VJP).

    .. math::
        dV = A^\top dO, \quad dA = dO\, V^\top, \quad
        dS = A \odot \big(dA - \textstyle\sum_j A_{\cdot j}\, dA_{\cdot j}\big), \quad
        dQ = c\, dS\, K, \quad dK = c\, dS^\top Q

    Masked entries have :math:`A_{ij} = 0`, so :math:`dS_{ij} = 0` there: no gradient flows
    through a masked score. Gradients of broadcast inputs are summed back to their shapes.

    Returns
    -------
    dq : ndarray of shape (B, H, Tq, D)
    dk : ndarray of shape (B, H, Tk, D)
    dv : ndarray of shape (B, H, Tk, Dv)
    """
    if enabled():
        check_dout(dout, cache.weights.shape[:-1] + cache.v.shape[-1:], "dout")
    q, k, v, A, c = cache
    dv = A.swapaxes(-1, -2) @ dout  # (B, H, Tk, Dv)
    dA = dout @ v.swapaxes(-1, -2)  # (B, H, Tq, Tk)
    dS = A * (dA - np.sum(A * dA, axis=-1, keepdims=True))  # softmax VJP
    dq = c * (dS @ k)  # (B, H, Tq, D)
    dk = c * (dS.swapaxes(-1, -2) @ q)  # (B, H, Tk, D)
    return _sum_to_shape(dq, q.shape), _sum_to_shape(dk, k.shape), _sum_to_shape(dv, v.shape)


# -- registry (example inputs) -------------------------------------------------------------------------
def _attention_example(rng, s):
    """Causal self-attention over N positions with a key-padding mask (key 0 always kept)."""
    B, H, T, D, Dv = s.B, s.H, s.N, s.W, s.X
    pad = rng.random((B, 1, 1, T)) > 0.3
    pad[..., 0] = True
    return (
        (rng.standard_normal((B, H, T, D)), rng.standard_normal((B, H, T, D)), rng.standard_normal((B, H, T, Dv))),
        {"mask": pad, "causal": True},
    )


register_op("attention", attention_forward, attention_backward, example=_attention_example)
