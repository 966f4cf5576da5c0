r"""Elementwise activations and the softmax, as forward/backward pairs.

Each backward is the vector-Jacobian product of its forward: given ``dout`` = ∂L/∂out it returns
∂L/∂x. Derivations: ``docs/derivations/activations.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import expit

from .._checks import as_float_array, check_dout, enabled
from ._registry import away_from_zero, register_op


class ActivationCache(NamedTuple):
    x: np.ndarray  # (...) input
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
    if enabled():
        check_dout(dout, cache.out.shape, "dout")
    y = cache.out
    return (dout * y * (1.0 - y),)


def tanh_forward(x):
    r"""Hyperbolic tangent. Backward: :math:`dx = dy\,(1 - y^2)`."""
    x = as_float_array(x, "x")
    out = np.tanh(x)
    return out, ActivationCache(x, out)


def tanh_backward(dout, cache):
    """VJP of :func:`tanh_forward`: dx = dout * (1 - y²)."""
    if enabled():
        check_dout(dout, cache.out.shape, "dout")
    return (dout * (1.0 - cache.out**2),)


def relu_forward(x):
    r"""Rectifier :math:`\max(x, 0)`; its derivative at 0 is taken as 0 (a kink: tests avoid it)."""
    x = as_float_array(x, "x")
    out = np.maximum(x, 0.0)
    return out, ActivationCache(x, out)


def relu_backward(dout, cache):
    """VJP of :func:`relu_forward`: dx = dout * [x > 0]."""
    if enabled():
        check_dout(dout, cache.out.shape, "dout")
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
    if enabled():
        check_dout(dout, cache.out.shape, "dout")
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
    if enabled():
        check_dout(dout, cache.out.shape, "dout")
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


def softmax_vjp(y, dout, axis=-1):
    r"""The softmax VJP :math:`y \odot (d - \langle y, d\rangle)`, computed without cancellation.

    ``dout`` is first shifted by its value at the argmax of ``y`` — the same result in exact arithmetic
    (the VJP ignores a constant added to ``dout``), but a saturated softmax (``y`` nearly one-hot, as
    with the large key strengths of a trained NTM) then no longer subtracts two nearly equal large
    numbers: the dominant entry's gradient becomes :math:`-y_m \sum_{j \ne m} y_j (d_j - d_m)`, a sum of
    small terms. In float32 the plain form loses every digit there (gradients off by 10⁹ were seen).
    """
    ref = np.take_along_axis(dout, np.argmax(y, axis=axis, keepdims=True), axis=axis)
    d = dout - ref
    return y * (d - np.sum(y * d, axis=axis, keepdims=True))


def softmax_backward(dout, cache):
    """VJP of :func:`softmax_forward`: dx = y ⊙ (dout − Σ y·dout) (see :func:`softmax_vjp`)."""
    if enabled():
        check_dout(dout, cache.out.shape, "dout")
    return (softmax_vjp(cache.out, dout, cache.axis),)


# -- registry (example inputs away from kinks) -------------------------------------------------------
register_op(
    "sigmoid", sigmoid_forward, sigmoid_backward, example=lambda rng, s: ((rng.standard_normal((s.B, s.N)),), {})
)
register_op("tanh", tanh_forward, tanh_backward, example=lambda rng, s: ((rng.standard_normal((s.B, s.N)),), {}))
register_op("relu", relu_forward, relu_backward, example=lambda rng, s: ((away_from_zero(rng, s.B, s.N),), {}))
register_op(
    "softplus", softplus_forward, softplus_backward, example=lambda rng, s: ((rng.standard_normal((s.B, s.N)),), {})
)
register_op(
    "oneplus", oneplus_forward, oneplus_backward, example=lambda rng, s: ((rng.standard_normal((s.B, s.N)),), {})
)
register_op(
    "softmax",
    softmax_forward,
    softmax_backward,
    example=lambda rng, s: ((rng.standard_normal((s.B, s.H, s.N)),), {"axis": -1}),
)


# -- GELU and SiLU (the layers floor, issue 10) ----------------------------------------------------------
from scipy.special import erf  # noqa: E402  (this block is appended; the import sits with its users)

#: √(2/π) and the cubic coefficient of the tanh approximation of GELU (Hendrycks & Gimpel 2016, §2).
_GELU_C = np.sqrt(2.0 / np.pi)
_GELU_A = 0.044715


class GELUCache(NamedTuple):
    x: np.ndarray  # (...) input
    approximate: str  # "none" (erf) or "tanh"


def gelu_forward(x, *, approximate="none"):
    r"""Gaussian error linear unit :math:`x\,\Phi(x)`, exact (erf) or its tanh approximation.

    Parameters
    ----------
    x : ndarray of any shape
    approximate : {"none", "tanh"}, keyword-only
        As PyTorch's ``gelu``: "none" is the exact form, "tanh" the approximation used by BERT and GPT-2.

    Returns
    -------
    out : ndarray, same shape as ``x``
    cache : GELUCache

    Notes
    -----
    .. math::
        \mathrm{GELU}(x) = x\,\Phi(x) = \tfrac12 x\big(1 + \mathrm{erf}(x/\sqrt2)\big), \qquad
        \mathrm{GELU}_{\tanh}(x) = \tfrac12 x\big(1 + \tanh u\big),\quad u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)

    Backward: :func:`gelu_backward`.

    References
    ----------
    Hendrycks and Gimpel, "Gaussian Error Linear Units (GELUs)", arXiv:1606.08415, 2016.
    """
    x = as_float_array(x, "x")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
    if approximate == "tanh":
        out = 0.5 * x * (1.0 + np.tanh(_GELU_C * (x + _GELU_A * x**3)))
    else:
        out = 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    return out.astype(x.dtype, copy=False), GELUCache(x, approximate)


def gelu_backward(dout, cache):
    r"""VJP of :func:`gelu_forward`.

    .. math::
        \mathrm{GELU}'(x) = \Phi(x) + x\,\varphi(x), \quad \varphi(x) = e^{-x^2/2} / \sqrt{2\pi}; \qquad
        \mathrm{GELU}_{\tanh}'(x) = \tfrac12(1 + t) + \tfrac12 x\,(1 - t^2)\,\sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\,x^2)

    with :math:`t = \tanh u`.
    """
    if enabled():
        check_dout(dout, cache.x.shape, "dout")
    x = cache.x
    if cache.approximate == "tanh":
        t = np.tanh(_GELU_C * (x + _GELU_A * x**3))
        grad = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * _GELU_A * x * x)
    else:
        grad = 0.5 * (1.0 + erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    return (dout * grad.astype(x.dtype, copy=False),)


def silu_forward(x):
    r"""Sigmoid-weighted linear unit (SiLU, "swish") :math:`x\,\sigma(x)`.

    Returns
    -------
    out : ndarray, same shape as ``x``
    cache : ActivationCache

    Notes
    -----
    .. math:: \mathrm{SiLU}(x) = x\,\sigma(x), \qquad \mathrm{SiLU}'(x) = \sigma(x)\big(1 + x\,(1 - \sigma(x))\big)

    References
    ----------
    Elfwing, Uchibe and Doya, "Sigmoid-Weighted Linear Units for Neural Network Function
    Approximation in Reinforcement Learning", Neural Networks 107, 2018 (the SiL unit, §2).
    """
    x = as_float_array(x, "x")
    out = x * sigmoid(x)
    return out, ActivationCache(x, out)


def silu_backward(dout, cache):
    """VJP of :func:`silu_forward`: dx = dout · σ(x)(1 + x(1 − σ(x)))."""
    if enabled():
        check_dout(dout, cache.out.shape, "dout")
    s = sigmoid(cache.x)
    return (dout * s * (1.0 + cache.x * (1.0 - s)),)


def _gelu_example(rng, s):
    """Both forms, chosen by the generator (the torch cross-check then draws both)."""
    return (rng.standard_normal((s.B, s.N)),), {"approximate": ("none", "tanh")[int(rng.integers(2))]}


register_op("gelu", gelu_forward, gelu_backward, example=_gelu_example)
register_op("silu", silu_forward, silu_backward, example=lambda rng, s: ((rng.standard_normal((s.B, s.N)),), {}))
