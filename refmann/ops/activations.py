r"""Elementwise activations and the softmax, as forward/backward pairs.

Each backward is the vector-Jacobian product of its forward: given ``dout`` = ∂L/∂out it returns
∂L/∂x. Derivations: ``docs/derivations/activations.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import expit

from .._checks import as_float_array


class ActivationCache(NamedTuple):
    x: np.ndarray    # (...) input
    out: np.ndarray  # (...) output


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-x)), accurate in both tails, no overflow at ±1e4 (scipy's expit)."""
    return expit(x)


def sigmoid_forward(x):
    r"""Logistic sigmoid :math:`\sigma(x) = 1 / (1 + e^{-x})`.

    Parameters
    ----------
    x : ndarray of any shape

    Returns
    -------
    out : ndarray, same shape as ``x``
    cache : ActivationCache

    Notes
    -----
    Backward: :math:`\partial L/\partial x = \partial L/\partial y \cdot y (1 - y)`.
    """
    x = as_float_array(x, "x")
    out = sigmoid(x)
    return out, ActivationCache(x, out)


def sigmoid_backward(dout, cache):
    """VJP of :func:`sigmoid_forward`: dx = dout * y * (1 - y)."""
    y = cache.out
    return (dout * y * (1.0 - y),)


def tanh_forward(x):
    r"""Hyperbolic tangent. Backward: :math:`dx = dy\,(1 - y^2)`."""
    x = as_float_array(x, "x")
    out = np.tanh(x)
    return out, ActivationCache(x, out)


def tanh_backward(dout, cache):
    """VJP of :func:`tanh_forward`: dx = dout * (1 - y²)."""
    return (dout * (1.0 - cache.out**2),)


def relu_forward(x):
    r"""Rectifier :math:`\max(x, 0)`; its derivative at 0 is taken as 0 (a kink: tests avoid it)."""
    x = as_float_array(x, "x")
    out = np.maximum(x, 0.0)
    return out, ActivationCache(x, out)


def relu_backward(dout, cache):
    """VJP of :func:`relu_forward`: dx = dout * [x > 0]."""
    return (dout * (cache.x > 0),)


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) without overflow."""
    return np.logaddexp(0.0, x).astype(x.dtype, copy=False)


def softplus_forward(x):
    r"""Softplus :math:`\log(1 + e^x)`, computed as ``logaddexp(0, x)``. Backward: :math:`dx = dy\,\sigma(x)`."""
    x = as_float_array(x, "x")
    out = softplus(x)
    return out, ActivationCache(x, out)


def softplus_backward(dout, cache):
    """VJP of :func:`softplus_forward`: dx = dout * sigmoid(x)."""
    return (dout * sigmoid(cache.x),)


def oneplus_forward(x):
    r"""Oneplus :math:`1 + \log(1 + e^x) \in (1, \infty)`: key strengths and sharpening exponents.

    Graves et al. (2016), the DNC's "oneplus"; refmann uses it for SAM's key strength β
    (DESIGN decision 2) and the NTM's sharpening γ.
    """
    x = as_float_array(x, "x")
    out = 1.0 + softplus(x)
    return out, ActivationCache(x, out)


def oneplus_backward(dout, cache):
    """VJP of :func:`oneplus_forward`: dx = dout * sigmoid(x)."""
    return (dout * sigmoid(cache.x),)


class SoftmaxCache(NamedTuple):
    out: np.ndarray  # (...) probabilities
    axis: int


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the max so that ±1e4 logits neither overflow nor underflow to NaN."""
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_forward(x, *, axis=-1):
    r"""Numerically stable softmax along ``axis``.

    Parameters
    ----------
    x : ndarray of any shape
        Logits.
    axis : int, keyword-only
        The axis that sums to one.

    Returns
    -------
    out : ndarray, same shape as ``x``
    cache : SoftmaxCache

    Notes
    -----
    .. math:: y_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \quad m = \max_j x_j

    Backward (the softmax VJP): :math:`dx = y \odot (dy - \langle y, dy \rangle)`.
    """
    x = as_float_array(x, "x")
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(f"axis: expected an axis of a {x.ndim}-d array, got {axis}")
    out = softmax(x, axis=axis)
    return out, SoftmaxCache(out, axis)


def softmax_backward(dout, cache):
    """VJP of :func:`softmax_forward`: dx = y ⊙ (dout − Σ y·dout)."""
    y = cache.out
    return (y * (dout - np.sum(y * dout, axis=cache.axis, keepdims=True)),)
