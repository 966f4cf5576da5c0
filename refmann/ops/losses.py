r"""Losses from logits. Each returns the *sum* over scored entries; models divide by the batch size.

Derivations: ``docs/derivations/activations.md`` (the losses section).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, as_index_array, check_dout, check_range, check_shape, enabled
from ._registry import register_op
from .activations import sigmoid, softmax, softplus


class SigmoidCECache(NamedTuple):
    logits: np.ndarray  # (...)
    targets: np.ndarray  # (...)
    mask: np.ndarray  # (...) broadcast to the logits


def _mask(mask, shape, dtype, name="mask"):
    if mask is None:
        return np.ones(shape, dtype)
    mask = as_float_array(mask, name).astype(dtype, copy=False)
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"{name}: expected a shape that broadcasts to {shape}, got {mask.shape}") from None


def sigmoid_cross_entropy_forward(logits, *, targets, mask=None):
    r"""Binary cross-entropy of sigmoid outputs, from logits, summed over the masked entries.

    Parameters
    ----------
    logits : ndarray of any shape
    targets : ndarray, same shape as ``logits``, keyword-only
        Targets in [0, 1] (soft labels allowed).
    mask : ndarray broadcastable to ``logits``, keyword-only, optional
        Weight of each entry (1 scores it, 0 ignores it). Default: all ones.

    Returns
    -------
    loss : float ndarray of shape ()
    cache : SigmoidCECache

    Notes
    -----
    .. math:: L = \sum m \,\big[\operatorname{softplus}(x) - t\,x\big]
              = -\sum m\,[t \log\sigma(x) + (1-t)\log(1-\sigma(x))]

    computed without ever taking the log of a sigmoid, so ±1e4 logits are fine.
    """
    logits = as_float_array(logits, "logits")
    targets = as_float_array(targets, "targets").astype(logits.dtype, copy=False)
    check_shape(targets, "targets", logits.shape)
    check_range(targets, "targets", 0.0, 1.0)
    m = _mask(mask, logits.shape, logits.dtype)
    loss = np.sum(m * (softplus(logits) - targets * logits))
    return loss, SigmoidCECache(logits, targets, m)


def sigmoid_cross_entropy_backward(dloss, cache):
    r"""VJP of :func:`sigmoid_cross_entropy_forward`: :math:`dx = dL\, m\,(\sigma(x) - t)`."""
    if enabled():
        check_dout(dloss, (), "dloss")
    return (dloss * cache.mask * (sigmoid(cache.logits) - cache.targets),)


class SoftmaxCECache(NamedTuple):
    probs: np.ndarray  # (..., Y)
    onehot: np.ndarray  # (..., Y)
    mask: np.ndarray  # (..., 1)


def softmax_cross_entropy_forward(logits, *, targets, mask=None):
    r"""Cross-entropy of a softmax over the last axis, from logits, summed over the masked positions.

    Parameters
    ----------
    logits : ndarray of shape (..., Y)
    targets : int ndarray of shape (...), keyword-only
        Class indices in ``[0, Y)``.
    mask : ndarray broadcastable to ``targets``' shape, keyword-only, optional

    Returns
    -------
    loss : float ndarray of shape ()
    cache : SoftmaxCECache

    Notes
    -----
    .. math:: L = \sum m\,\big[\log\textstyle\sum_j e^{x_j} - x_{t}\big]
    """
    logits = as_float_array(logits, "logits")
    if logits.ndim < 1:
        raise ValueError(f"logits: expected at least 1 dimension, got shape {logits.shape}")
    Y = logits.shape[-1]
    targets = as_index_array(targets, "targets", upper=Y, shape=logits.shape[:-1])
    m = _mask(mask, logits.shape[:-1], logits.dtype)[..., None]  # (..., 1)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logprobs = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    onehot = np.zeros(logits.shape, logits.dtype)
    np.put_along_axis(onehot, targets[..., None], 1.0, axis=-1)
    loss = -np.sum(m * onehot * logprobs)
    return loss, SoftmaxCECache(softmax(logits), onehot, m)


def softmax_cross_entropy_backward(dloss, cache):
    r"""VJP of :func:`softmax_cross_entropy_forward`.

    .. math:: dx = dL\, m\,(\operatorname{softmax}(x) - \text{onehot}(t))
    """
    if enabled():
        check_dout(dloss, (), "dloss")
    return (dloss * cache.mask * (cache.probs - cache.onehot),)


# -- registry (example inputs) -------------------------------------------------------------------------
register_op(
    "sigmoid_cross_entropy",
    sigmoid_cross_entropy_forward,
    sigmoid_cross_entropy_backward,
    example=lambda rng, s: (
        (rng.standard_normal((s.B, s.N)),),
        {"targets": rng.random((s.B, s.N)), "mask": (rng.random((s.B, s.N)) > 0.3) * 1.0},
    ),
)
register_op(
    "softmax_cross_entropy",
    softmax_cross_entropy_forward,
    softmax_cross_entropy_backward,
    example=lambda rng, s: ((rng.standard_normal((s.B, s.N)),), {"targets": rng.integers(0, s.N, s.B)}),
)
