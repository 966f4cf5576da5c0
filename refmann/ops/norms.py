r"""Normalisations as forward/backward pairs: layer norm, RMS norm and batch norm.

Features are on the last axis, ``x`` of shape (..., D). Layer and RMS norm normalise each row over
its D features; batch norm normalises each feature over every other axis (the batch, and time for
(B, T, D) sequences). The backwards follow the derivation style of llm.c's layernorm walkthrough:
cache the input and the statistics, recompute the normalised input, and write the gradient of
the normalised input as "itself, minus its mean, minus its projection on x̂".
Derivations: ``docs/derivations/layers.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_bool, check_dout, check_real, check_shape, enabled
from ._registry import register_op


def _check_affine(x, gamma, beta=None, *, min_ndim=1):
    x = as_float_array(x, "x")
    if x.ndim < min_ndim:
        raise ValueError(f"x: expected at least {min_ndim} dimension(s) (..., D), got shape {x.shape}")
    D = x.shape[-1]
    gamma = as_float_array(gamma, "gamma", ndim=1)
    check_shape(gamma, "gamma", (D,))
    if beta is not None:
        beta = as_float_array(beta, "beta", ndim=1)
        check_shape(beta, "beta", (D,))
    return x, gamma, beta


def _check_eps(eps):
    eps = check_real(eps, "eps", 0.0)
    if not eps > 0 or not np.isfinite(eps):
        raise ValueError(f"eps: expected a finite value > 0, got {eps}")
    return eps


# -- layer norm --------------------------------------------------------------------------------------


class LayerNormCache(NamedTuple):
    x: np.ndarray  # (..., D)
    gamma: np.ndarray  # (D,)
    mean: np.ndarray  # (..., 1)  μ of each row
    rstd: np.ndarray  # (..., 1)  1 / sqrt(σ² + eps)


def layernorm_forward(x, gamma, beta, *, eps=1e-5):
    r"""Layer normalisation over the last axis (Ba et al. 2016, eqs. 3–4 with gain and bias).

    Parameters
    ----------
    x : ndarray of shape (..., D)
    gamma : ndarray of shape (D,)
        Gain.
    beta : ndarray of shape (D,)
        Bias.
    eps : float, keyword-only
        Added to the variance (PyTorch's default 1e-5).

    Returns
    -------
    y : ndarray of shape (..., D)
    cache : LayerNormCache

    Notes
    -----
    .. math::
        \mu = \frac1D \sum_d x_d, \quad \sigma^2 = \frac1D \sum_d (x_d - \mu)^2, \quad
        \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad y = \gamma \odot \hat x + \beta

    (the biased variance, as PyTorch). Backward: :func:`layernorm_backward`.

    References
    ----------
    Ba, Kiros and Hinton, "Layer Normalization", arXiv:1607.06450, 2016.
    """
    x, gamma, beta = _check_affine(x, gamma, beta)
    eps = _check_eps(eps)
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xc = x - mean  # (..., D)
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
    y = xc * rstd * gamma + beta  # (..., D)
    return y, LayerNormCache(x, gamma, mean, rstd)


def layernorm_backward(dy, cache):
    r"""VJP of :func:`layernorm_forward` (docs/derivations/layers.md, eq. lay-ln-vjp).

    With :math:`g = dy \odot \gamma` and :math:`\langle\cdot\rangle` the mean over the D features:

    .. math::
        dx = \frac{1}{\sqrt{\sigma^2 + \epsilon}}\big(g - \langle g\rangle - \hat x\,\langle g \odot \hat x\rangle\big),
        \qquad d\gamma = \sum dy \odot \hat x, \qquad d\beta = \sum dy

    (the sums over every leading axis).
    """
    if enabled():
        check_dout(dy, cache.x.shape, "dy")
    x, gamma, mean, rstd = cache
    D = x.shape[-1]
    xhat = (x - mean) * rstd  # (..., D) recomputed: cheap, one array less
    g = dy * gamma  # (..., D) ∂L/∂x̂
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dgamma = (dy * xhat).reshape(-1, D).sum(axis=0)  # (D,)
    dbeta = dy.reshape(-1, D).sum(axis=0)  # (D,)
    return dx, dgamma, dbeta


# -- RMS norm ----------------------------------------------------------------------------------------


class RMSNormCache(NamedTuple):
    x: np.ndarray  # (..., D)
    gamma: np.ndarray  # (D,)
    rrms: np.ndarray  # (..., 1)  1 / sqrt(mean(x²) + eps)


def rmsnorm_forward(x, gamma, *, eps=1e-6):
    r"""Root-mean-square normalisation over the last axis (Zhang & Sennrich 2019, eq. 4).

    Parameters
    ----------
    x : ndarray of shape (..., D)
    gamma : ndarray of shape (D,)
        Gain.
    eps : float, keyword-only
        Added to the mean square (1e-6, as T5 and LLaMA; PyTorch's ``nn.RMSNorm`` takes it explicitly).

    Returns
    -------
    y : ndarray of shape (..., D)
    cache : RMSNormCache

    Notes
    -----
    .. math:: \mathrm{RMS}(x) = \sqrt{\tfrac1D \textstyle\sum_d x_d^2 + \epsilon}, \qquad
              y = \gamma \odot \frac{x}{\mathrm{RMS}(x)}

    No mean is subtracted and there is no bias. Backward: :func:`rmsnorm_backward`.

    References
    ----------
    Zhang and Sennrich, "Root Mean Square Layer Normalization", NeurIPS 2019.
    """
    x, gamma, _ = _check_affine(x, gamma)
    eps = _check_eps(eps)
    rrms = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
    return x * rrms * gamma, RMSNormCache(x, gamma, rrms)


def rmsnorm_backward(dy, cache):
    r"""VJP of :func:`rmsnorm_forward` (docs/derivations/layers.md, eq. lay-rms-vjp).

    With :math:`n = x / \mathrm{RMS}(x)` and :math:`g = dy \odot \gamma`:

    .. math:: dx = \frac{1}{\mathrm{RMS}(x)}\big(g - n\,\langle g \odot n\rangle\big), \qquad
              d\gamma = \sum dy \odot n
    """
    if enabled():
        check_dout(dy, cache.x.shape, "dy")
    x, gamma, rrms = cache
    D = x.shape[-1]
    n = x * rrms  # (..., D)
    g = dy * gamma  # (..., D)
    dx = rrms * (g - n * (g * n).mean(axis=-1, keepdims=True))
    dgamma = (dy * n).reshape(-1, D).sum(axis=0)  # (D,)
    return dx, dgamma


# -- batch norm --------------------------------------------------------------------------------------


class BatchNormCache(NamedTuple):
    x: np.ndarray  # (..., D)
    gamma: np.ndarray  # (D,)
    mean: np.ndarray  # (D,)  the mean used: the batch's (training) or the running one (eval)
    rstd: np.ndarray  # (D,)  1 / sqrt(var + eps) of the variance used
    training: bool  # batch statistics (True) or running statistics (False)
    running_mean: np.ndarray  # (D,)  updated in training: (1 − m)·running_mean + m·μ_B; else as given
    running_var: np.ndarray  # (D,)  updated in training: (1 − m)·running_var + m·σ²_B·n/(n − 1); else as given


def batchnorm_forward(x, gamma, beta, *, training=True, running_mean=None, running_var=None, momentum=0.1, eps=1e-5):
    r"""Batch normalisation of each feature over every axis but the last (Ioffe & Szegedy 2015, Alg. 1).

    Pure: the inputs are never written. In training mode the updated running statistics are
    returned in the cache (``cache.running_mean``, ``cache.running_var``) for the caller to keep.

    Parameters
    ----------
    x : ndarray of shape (..., D)
        n = x.size / D values per feature (the batch, times the time steps for (B, T, D)).
    gamma : ndarray of shape (D,)
        Gain.
    beta : ndarray of shape (D,)
        Bias.
    training : bool, keyword-only
        True: normalise by the batch's mean and (biased) variance, and update the running
        statistics. False (evaluation): normalise by ``running_mean`` and ``running_var``.
    running_mean, running_var : ndarray of shape (D,), keyword-only, optional
        Running statistics. Required in evaluation mode; in training mode they default to 0 and 1
        (PyTorch's initial buffers).
    momentum : float in [0, 1], keyword-only
        Weight of the batch statistics in the update (PyTorch's convention, default 0.1).
    eps : float, keyword-only
        Added to the variance.

    Returns
    -------
    y : ndarray of shape (..., D)
    cache : BatchNormCache

    Notes
    -----
    Training, with :math:`\mu_B, \sigma^2_B` the mean and biased variance of each feature over its
    n values:

    .. math::
        \hat x = \frac{x - \mu_B}{\sqrt{\sigma^2_B + \epsilon}}, \quad y = \gamma \odot \hat x + \beta, \\
        \bar\mu \leftarrow (1 - m)\,\bar\mu + m\,\mu_B, \quad
        \bar\sigma^2 \leftarrow (1 - m)\,\bar\sigma^2 + m\,\tfrac{n}{n-1}\,\sigma^2_B

    (the running variance takes the unbiased batch variance, as PyTorch). Evaluation:
    :math:`y = \gamma \odot (x - \bar\mu) / \sqrt{\bar\sigma^2 + \epsilon} + \beta`, an affine map.
    Backward: :func:`batchnorm_backward`.

    References
    ----------
    Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing
    Internal Covariate Shift", ICML 2015, Algorithm 1 and §3.1.
    """
    x, gamma, beta = _check_affine(x, gamma, beta)
    training = check_bool(training, "training")
    momentum = check_real(momentum, "momentum", 0.0, 1.0)
    eps = _check_eps(eps)
    D = x.shape[-1]
    stats = []
    for name, value in (("running_mean", running_mean), ("running_var", running_var)):
        if value is None:
            if not training:
                raise ValueError(f"{name}: required in evaluation mode (training=False), got None")
            value = np.zeros(D, x.dtype) if name == "running_mean" else np.ones(D, x.dtype)
        value = as_float_array(value, name, ndim=1)
        check_shape(value, name, (D,))
        stats.append(value)
    running_mean, running_var = stats
    if not training:
        if np.any(running_var < 0):
            raise ValueError(f"running_var: expected values >= 0, got minimum {running_var.min():.6g}")
        mean, rstd = running_mean, 1.0 / np.sqrt(running_var + eps)  # (D,) each
        y = (x - mean) * rstd * gamma + beta
        return y, BatchNormCache(x, gamma, mean, rstd, False, running_mean, running_var)
    n = x.size // D
    if n < 2:
        raise ValueError(f"x: batch norm in training mode needs more than one value per feature, got shape {x.shape}")
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)  # (D,)
    xc = x - mean  # (..., D)
    var = (xc * xc).mean(axis=axes)  # (D,) biased
    rstd = 1.0 / np.sqrt(var + eps)  # (D,)
    y = xc * rstd * gamma + beta
    new_mean = (1.0 - momentum) * running_mean + momentum * mean  # (D,) new arrays: inputs untouched
    new_var = (1.0 - momentum) * running_var + momentum * var * (n / (n - 1))
    return y, BatchNormCache(
        x, gamma, mean, rstd, True, new_mean.astype(x.dtype, copy=False), new_var.astype(x.dtype, copy=False)
    )


def batchnorm_backward(dy, cache):
    r"""VJP of :func:`batchnorm_forward` (``docs/derivations/layers.md``, the batch-norm VJP).

    Training mode: the statistics depend on x, so, with :math:`g = dy \odot \gamma` and
    :math:`\langle\cdot\rangle` the mean over a feature's n values (Ioffe & Szegedy 2015, §3),

    .. math::
        dx = \frac{1}{\sqrt{\sigma^2_B + \epsilon}}
             \big(g - \langle g\rangle - \hat x\,\langle g \odot \hat x\rangle\big)

    — layer norm's formula with the other axis. Evaluation mode: the statistics are constants, and
    :math:`dx = g / \sqrt{\bar\sigma^2 + \epsilon}`. Both: :math:`d\gamma = \sum dy \odot \hat x`,
    :math:`d\beta = \sum dy`. The running statistics get no gradient.
    """
    if enabled():
        check_dout(dy, cache.x.shape, "dy")
    x, gamma, mean, rstd = cache.x, cache.gamma, cache.mean, cache.rstd
    D = x.shape[-1]
    xhat = (x - mean) * rstd  # (..., D)
    g = dy * gamma  # (..., D) ∂L/∂x̂
    dgamma = (dy * xhat).reshape(-1, D).sum(axis=0)  # (D,)
    dbeta = dy.reshape(-1, D).sum(axis=0)  # (D,)
    if not cache.training:
        return g * rstd, dgamma, dbeta
    axes = tuple(range(x.ndim - 1))
    dx = rstd * (g - g.mean(axis=axes) - xhat * (g * xhat).mean(axis=axes))
    return dx, dgamma, dbeta


# -- registry (example inputs) -------------------------------------------------------------------------
def _norm_x(rng, s):
    """(B, N, D) with D = W + 1 ≥ 2 features (with one feature a row norm is the constant 0)."""
    return rng.standard_normal((s.B, s.N, s.W + 1))


def _batchnorm_example(rng, s):
    x = _norm_x(rng, s)
    D = x.shape[-1]
    return (
        (x, rng.uniform(0.5, 1.5, D), rng.standard_normal(D)),
        {
            "training": True,
            "running_mean": rng.standard_normal(D),
            "running_var": rng.uniform(0.5, 2.0, D),
            "momentum": 0.1,
            "eps": 1e-5,
        },
    )


register_op(
    "layernorm",
    layernorm_forward,
    layernorm_backward,
    example=lambda rng, s: (
        (_norm_x(rng, s), rng.uniform(0.5, 1.5, s.W + 1), rng.standard_normal(s.W + 1)),
        {"eps": 1e-5},
    ),
)
register_op(
    "rmsnorm",
    rmsnorm_forward,
    rmsnorm_backward,
    example=lambda rng, s: ((_norm_x(rng, s), rng.uniform(0.5, 1.5, s.W + 1)), {"eps": 1e-6}),
)
register_op("batchnorm", batchnorm_forward, batchnorm_backward, example=_batchnorm_example)
