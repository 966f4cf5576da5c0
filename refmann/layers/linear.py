r"""A fully connected layer over :func:`refmann.ops.linear_forward`."""

from __future__ import annotations

import numpy as np

from .. import _checks, ops
from .base import LayerBase, check_dtype, check_features, check_seed


class Linear(LayerBase):
    r"""Affine map :math:`y = x W + b` over any leading axes, weights stored (in, out).

    Parameters
    ----------
    input_dim, output_dim : int, keyword-only
    bias : bool, keyword-only
        With a bias (default) or without (no ``"bias"`` key).
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"weight"`` (input_dim, output_dim) and ``"bias"`` (output_dim,), both drawn from
        :math:`U(-1/\sqrt{\text{input\_dim}}, 1/\sqrt{\text{input\_dim}})` (PyTorch's default for ``nn.Linear``).

    Notes
    -----
    Backward (:func:`refmann.ops.linear_backward`): :math:`dx = dy\,W^\top`, :math:`dW = x^\top dy`,
    :math:`db = \sum dy`, summed over every leading axis.
    """

    def __init__(self, *, input_dim, output_dim, bias=True, seed=0, dtype=np.float64):
        self.input_dim = _checks.check_positive_int(input_dim, "input_dim")
        self.output_dim = _checks.check_positive_int(output_dim, "output_dim")
        self.bias = _checks.check_bool(bias, "bias")
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng(check_seed(seed))
        bound = 1.0 / np.sqrt(self.input_dim)
        self.params = {"weight": rng.uniform(-bound, bound, (self.input_dim, self.output_dim)).astype(self.dtype)}
        if self.bias:
            self.params["bias"] = rng.uniform(-bound, bound, self.output_dim).astype(self.dtype)
        self.children = {}
        self._sizes = {"input_dim": self.input_dim, "output_dim": self.output_dim, "bias": self.bias}

    def forward(self, x, *, params=None):
        """``y = x @ weight + bias``: (..., input_dim) -> (..., output_dim)."""
        p = self._params(params)
        x = check_features(x, "x", self.input_dim, dtype=self.dtype)
        bias = p["bias"] if self.bias else np.zeros(self.output_dim, p["weight"].dtype)
        return ops.linear_forward(x, p["weight"], bias)  # cache: LinearCache(x, weight)

    def backward(self, dy, cache):
        """``(dx, {"weight": dW, "bias": db})``."""
        if _checks.enabled():
            _checks.check_dout(dy, cache.x.shape[:-1] + (self.output_dim,), "dy")
        dx, dweight, dbias = ops.linear_backward(dy, cache)
        return dx, ({"weight": dweight, "bias": dbias} if self.bias else {"weight": dweight})
