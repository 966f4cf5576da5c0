r"""Normalisation layers over :mod:`refmann.ops.norms`: LayerNorm, RMSNorm, BatchNorm.

Parameters are named as in PyTorch (``"weight"`` = γ, ``"bias"`` = β), initialised to 1 and 0.
"""

from __future__ import annotations

import numpy as np

from .. import _checks, ops
from .base import LayerBase, check_dtype, check_features, check_seed


def _check_eps(eps):
    eps = _checks.check_real(eps, "eps", 0.0)
    if not 0 < eps < np.inf:
        raise ValueError(f"eps: expected a finite value > 0, got {eps}")
    return eps


class _Norm(LayerBase):
    def _setup(self, dim, eps, seed, dtype, keys):
        self.dim = _checks.check_positive_int(dim, "dim")
        self.eps = _check_eps(eps)
        check_seed(seed)
        self.dtype = check_dtype(dtype)
        init = {"weight": np.ones, "bias": np.zeros}
        self.params = {key: init[key](self.dim, self.dtype) for key in keys}
        self.children = {}
        self._sizes = {"dim": self.dim, "eps": self.eps}


class LayerNorm(_Norm):
    r"""Layer normalisation over the last axis (Ba et al. 2016): :func:`refmann.ops.layernorm_forward`.

    .. math:: y = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    Parameters
    ----------
    dim : int, keyword-only
        D, the size of the last axis.
    eps : float, keyword-only
    seed : int, keyword-only
        Unused (the parameters start at 1 and 0); accepted like every layer.
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"weight"`` γ (D,) and ``"bias"`` β (D,).
    """

    def __init__(self, *, dim, eps=1e-5, seed=0, dtype=np.float64):
        self._setup(dim, eps, seed, dtype, ("weight", "bias"))

    def forward(self, x, *, params=None):
        """(..., D) -> (..., D)."""
        p = self._params(params)
        x = check_features(x, "x", self.dim, dtype=self.dtype)
        return ops.layernorm_forward(x, p["weight"], p["bias"], eps=self.eps)

    def backward(self, dy, cache):
        """``(dx, {"weight": dγ, "bias": dβ})``."""
        if _checks.enabled():
            _checks.check_dout(dy, cache.x.shape, "dy")
        dx, dgamma, dbeta = ops.layernorm_backward(dy, cache)
        return dx, {"weight": dgamma, "bias": dbeta}


class RMSNorm(_Norm):
    r"""Root-mean-square normalisation (Zhang & Sennrich 2019): :func:`refmann.ops.rmsnorm_forward`.

    .. math:: y = \gamma \odot x \big/ \sqrt{\tfrac1D \textstyle\sum_d x_d^2 + \epsilon}

    Parameters are as for :class:`LayerNorm`, with ``eps=1e-6`` and only ``"weight"`` γ (D,).
    """

    def __init__(self, *, dim, eps=1e-6, seed=0, dtype=np.float64):
        self._setup(dim, eps, seed, dtype, ("weight",))

    def forward(self, x, *, params=None):
        """(..., D) -> (..., D)."""
        p = self._params(params)
        x = check_features(x, "x", self.dim, dtype=self.dtype)
        return ops.rmsnorm_forward(x, p["weight"], eps=self.eps)

    def backward(self, dy, cache):
        """``(dx, {"weight": dγ})``."""
        if _checks.enabled():
            _checks.check_dout(dy, cache.x.shape, "dy")
        dx, dgamma = ops.rmsnorm_backward(dy, cache)
        return dx, {"weight": dgamma}


class BatchNorm(_Norm):
    r"""Batch normalisation of each feature over every other axis (Ioffe & Szegedy 2015).

    In training mode (``layer.training``, the default) it normalises by the batch statistics and
    **replaces** ``layer.buffers["running_mean"]`` and ``["running_var"]`` by their updates
    (new arrays; the old ones are not written), as PyTorch's ``BatchNorm1d`` does. In evaluation mode
    (``layer.eval()``) it normalises by the running statistics and changes nothing. Either way
    ``params`` are only read. See :func:`refmann.ops.batchnorm_forward`.

    Parameters
    ----------
    dim : int, keyword-only
        D, the size of the last axis (features last: x is (B, D) or (B, T, D)).
    eps : float, keyword-only
    momentum : float in [0, 1], keyword-only
        Weight of the batch in the running-statistics update.
    seed : int, keyword-only
        Unused; accepted like every layer.
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"weight"`` γ (D,) and ``"bias"`` β (D,).
    buffers : dict
        ``"running_mean"`` (D,), starting at 0, and ``"running_var"`` (D,), starting at 1 — not
        parameters: no gradient, not in ``params``.
    """

    def __init__(self, *, dim, eps=1e-5, momentum=0.1, seed=0, dtype=np.float64):
        self._setup(dim, eps, seed, dtype, ("weight", "bias"))
        self.momentum = _checks.check_real(momentum, "momentum", 0.0, 1.0)
        self._buffers = {"running_mean": np.zeros(self.dim, self.dtype), "running_var": np.ones(self.dim, self.dtype)}
        self._sizes["momentum"] = self.momentum

    def forward(self, x, *, params=None, training=None):
        """(..., D) -> (..., D); ``training`` overrides ``layer.training`` for this call."""
        p = self._params(params)
        x = check_features(x, "x", self.dim, dtype=self.dtype)
        training = self.training if training is None else _checks.check_bool(training, "training")
        y, cache = ops.batchnorm_forward(
            x,
            p["weight"],
            p["bias"],
            training=training,
            momentum=self.momentum,
            eps=self.eps,
            running_mean=self._buffers["running_mean"],
            running_var=self._buffers["running_var"],
        )
        if training:  # the documented side effect: new running statistics
            self._buffers = {"running_mean": cache.running_mean, "running_var": cache.running_var}
        return y, cache

    def backward(self, dy, cache):
        """``(dx, {"weight": dγ, "bias": dβ})``; through the batch statistics in training mode."""
        if _checks.enabled():
            _checks.check_dout(dy, cache.x.shape, "dy")
        dx, dgamma, dbeta = ops.batchnorm_backward(dy, cache)
        return dx, {"weight": dgamma, "bias": dbeta}
