r"""Affine maps and one LSTM step. Weights are stored (in, out): ``y = x @ weight + bias``.

Derivations: ``docs/derivations/linear.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_dout, check_dout_tuple, check_shape, enabled
from ._registry import register_op
from .activations import sigmoid


class LinearCache(NamedTuple):
    x: np.ndarray  # (..., I)
    weight: np.ndarray  # (I, O)


def linear_forward(x, weight, bias):
    r"""Affine map :math:`y = x W + b` over any leading axes.

    Parameters
    ----------
    x : ndarray of shape (..., I)
    weight : ndarray of shape (I, O)
    bias : ndarray of shape (O,)

    Returns
    -------
    y : ndarray of shape (..., O)
    cache : LinearCache
    """
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight", ndim=2)
    bias = as_float_array(bias, "bias", ndim=1)
    if x.ndim < 1:
        raise ValueError(f"x: expected at least 1 dimension, got shape {x.shape}")
    check_shape(weight, "weight", (x.shape[-1], None))
    check_shape(bias, "bias", (weight.shape[1],))
    return x @ weight + bias, LinearCache(x, weight)


def linear_backward(dy, cache):
    r"""VJP of :func:`linear_forward`: :math:`dx = dy\,W^\top`, :math:`dW = x^\top dy`, :math:`db = \sum dy`
    (sums over every leading axis)."""
    if enabled():
        check_dout(dy, cache.x.shape[:-1] + cache.weight.shape[1:], "dy")
    x, weight = cache
    I, O = weight.shape
    dx = dy @ weight.T
    dweight = x.reshape(-1, I).T @ dy.reshape(-1, O)
    dbias = dy.reshape(-1, O).sum(axis=0)
    return dx, dweight, dbias


class LSTMCache(NamedTuple):
    xh: np.ndarray  # (B, X + C)  [x ; h_prev]
    weight: np.ndarray  # (X + C, 4C)
    c_prev: np.ndarray  # (B, C)
    i: np.ndarray  # (B, C) input gate
    f: np.ndarray  # (B, C) forget gate
    o: np.ndarray  # (B, C) output gate
    g: np.ndarray  # (B, C) candidate    (tanh c_t is recomputed in backward: one array less per step)
    x_size: int  # X


def lstm_step_forward(x, h_prev, c_prev, weight, bias):
    r"""One step of an LSTM (Hochreiter & Schmidhuber 1997; the form of Graves 2013, no peepholes).

    Parameters
    ----------
    x : ndarray of shape (B, X)
    h_prev : ndarray of shape (B, C)
    c_prev : ndarray of shape (B, C)
    weight : ndarray of shape (X + C, 4C)
        Rows for ``[x ; h_prev]``; columns for the gates in the order i, f, o, g.
    bias : ndarray of shape (4C,)

    Returns
    -------
    (h, c) : tuple of ndarrays of shape (B, C)
    cache : LSTMCache

    Notes
    -----
    .. math::
        [\hat\imath, \hat f, \hat o, \hat g] = [x; h_{t-1}] W + b,\quad
        i, f, o = \sigma(\hat\imath), \sigma(\hat f), \sigma(\hat o),\quad g = \tanh \hat g \\
        c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh c_t
    """
    x = as_float_array(x, "x", ndim=2)
    h_prev = as_float_array(h_prev, "h_prev", ndim=2)
    c_prev = as_float_array(c_prev, "c_prev", ndim=2)
    weight = as_float_array(weight, "weight", ndim=2)
    bias = as_float_array(bias, "bias", ndim=1)
    B, X = x.shape
    C = h_prev.shape[1]
    check_shape(h_prev, "h_prev", (B, C))
    check_shape(c_prev, "c_prev", (B, C))
    check_shape(weight, "weight", (X + C, 4 * C))
    check_shape(bias, "bias", (4 * C,))
    xh = np.concatenate([x, h_prev], axis=1)  # (B, X + C)
    z = xh @ weight + bias  # (B, 4C)
    i, f, o = sigmoid(z[:, :C]), sigmoid(z[:, C : 2 * C]), sigmoid(z[:, 2 * C : 3 * C])
    g = np.tanh(z[:, 3 * C :])
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    h = o * tanh_c
    return (h, c), LSTMCache(xh, weight, c_prev, i, f, o, g, X)


def lstm_step_backward(dout, cache):
    r"""VJP of :func:`lstm_step_forward`; ``dout = (dh, dc)``, either may be None (zero).

    .. math::
        dc_t \mathrel{+}= dh \odot o \odot (1 - \tanh^2 c_t),\quad
        d\hat o = dh \odot \tanh c_t \odot o(1-o),\quad
        d\hat\imath = dc_t \odot g \odot i(1-i),\\
        d\hat f = dc_t \odot c_{t-1} \odot f(1-f),\quad
        d\hat g = dc_t \odot i \odot (1-g^2),\quad
        dc_{t-1} = dc_t \odot f

    then :math:`d[x; h_{t-1}] = dz\,W^\top`, :math:`dW = [x;h_{t-1}]^\top dz`, :math:`db = \sum_B dz`.

    Returns
    -------
    dx, dh_prev, dc_prev, dweight, dbias
    """
    dz, dc_prev = lstm_gates_backward(dout, cache)
    dxh = dz @ cache.weight.T  # (B, X + C)
    return dxh[:, : cache.x_size], dxh[:, cache.x_size :], dc_prev, cache.xh.T @ dz, dz.sum(axis=0)


def lstm_gates_backward(dout, cache):
    """The first half of :func:`lstm_step_backward`: ``(dz, dc_prev)``, dz the gradient of the gate
    pre-activations (B, 4C) in the order i, f, o, g. The rest is a linear map of dz (see above), which
    BPTT may batch over time steps."""
    if enabled():
        shape = (cache.xh.shape[0], cache.c_prev.shape[1])
        check_dout_tuple(dout, (shape, shape), ("dh", "dc"), "dout", allow_none=True)
    dh, dc = dout
    xh, weight, c_prev, i, f, o, g, X = cache
    tanh_c = np.tanh(f * c_prev + i * g)  # the forward's tanh(c_t), bit for bit (same operations)
    dh = np.zeros_like(tanh_c) if dh is None else dh
    dc = (np.zeros_like(tanh_c) if dc is None else dc) + dh * o * (1.0 - tanh_c**2)
    dz = np.concatenate(
        [
            dc * g * i * (1.0 - i),
            dc * c_prev * f * (1.0 - f),
            dh * tanh_c * o * (1.0 - o),
            dc * i * (1.0 - g**2),
        ],
        axis=1,
    )  # (B, 4C)
    return dz, dc * f


# -- registry (example inputs) -------------------------------------------------------------------------
register_op(
    "linear",
    linear_forward,
    linear_backward,
    example=lambda rng, s: (
        (rng.standard_normal((s.B, s.X)), rng.standard_normal((s.X, s.C)), rng.standard_normal(s.C)),
        {},
    ),
)
register_op(
    "lstm_step",
    lstm_step_forward,
    lstm_step_backward,
    example=lambda rng, s: (
        (
            rng.standard_normal((s.B, s.X)),
            rng.standard_normal((s.B, s.C)),
            rng.standard_normal((s.B, s.C)),
            0.5 * rng.standard_normal((s.X + s.C, 4 * s.C)),
            rng.standard_normal(4 * s.C),
        ),
        {},
    ),
)
