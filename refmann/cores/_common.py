"""Pieces every core shares: parameter initialisation and the LSTM controller on [x ; r]."""

from __future__ import annotations

import numpy as np

from ..ops import linear_forward, lstm_gates_backward, lstm_step_forward


def init_linear(rng, fan_in: int, fan_out: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Weight U(±1/√fan_in) of shape (fan_in, fan_out) and a zero bias."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype), np.zeros(fan_out, dtype)


def init_lstm(rng, in_size: int, hidden: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """LSTM weight (in + C, 4C) and bias (4C,), forget-gate bias 1 (Gers et al. 2000)."""
    weight, bias = init_linear(rng, in_size + hidden, 4 * hidden, dtype)
    bias[hidden:2 * hidden] = 1.0
    return weight, bias


def controller_forward(params, x, reads_prev, h, c):
    """LSTM on ``[x_t ; r_{t-1}]`` (reads flattened over heads)."""
    ctrl_in = np.concatenate([x, reads_prev.reshape(x.shape[0], -1)], axis=1)
    return lstm_step_forward(ctrl_in, h, c, params["controller.weight"], params["controller.bias"])


def add_weight_grad(grads, key, x, dy):
    """``grads[key] += xᵀ dy`` (x (B, in), dy (B, out)) — or, when BPTT batches these outer products
    over time steps (:class:`refmann.models.base.DeferredGrads`), hand them over to it."""
    defer = getattr(grads, "defer", None)
    if defer is not None:
        defer(key, x, dy)
    else:
        grads[key] += x.T @ dy


def controller_backward(dh, dc, cache, grads, x_size):
    """Returns (dreads_prev flattened (B, H·W), dh_prev, dc_prev); adds the LSTM's gradients
    (:func:`refmann.ops.lstm_step_backward`, with the weight's outer product through :func:`add_weight_grad`)."""
    dz, dc_prev = lstm_gates_backward((dh, dc), cache)
    dxh = dz @ cache.weight.T                                                 # (B, X_ctrl + C)
    add_weight_grad(grads, "controller.weight", cache.xh, dz)
    grads["controller.bias"] += dz.sum(axis=0)
    return dxh[:, x_size:cache.x_size], dxh[:, cache.x_size:], dc_prev


def output_forward(params, h, reads):
    """y_t = linear([h_t ; r_t])."""
    return linear_forward(np.concatenate([h, reads.reshape(h.shape[0], -1)], axis=1),
                          params["output.weight"], params["output.bias"])


def output_backward(dy, cache, grads, hidden):
    """Returns (dh, dreads flattened); adds the output layer's gradients (:func:`refmann.ops.linear_backward`)."""
    dhr = dy @ cache.weight.T
    add_weight_grad(grads, "output.weight", cache.x, dy)
    grads["output.bias"] += dy.sum(axis=0)
    return dhr[:, :hidden], dhr[:, hidden:]


MEMORY_INITS = ("constant", "zeros", "random", "learned")


def init_memory_param(rng, init: str, N: int, W: int, dtype):
    """The (N, W) initial memory (DESIGN decision 9): a constant 1e-6 by default."""
    if init not in MEMORY_INITS:
        raise ValueError(f"memory_init: expected one of {MEMORY_INITS}, got {init!r}")
    if init in ("constant", "zeros"):   # a read-only broadcast of one value: no N-sized array until written
        return np.broadcast_to(np.asarray(1e-6 if init == "constant" else 0.0, dtype), (N, W))
    bound = 1.0 / np.sqrt(N + W)   # the "random" scheme of Collier & Beel (2018)
    return rng.uniform(-bound, bound, (N, W)).astype(dtype)
