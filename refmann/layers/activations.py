r"""Activation layers (no parameters): GELU, SiLU, ReLU and tanh over the ops of :mod:`refmann.ops.activations`."""

from __future__ import annotations

import numpy as np

from .. import _checks, ops
from .base import LayerBase, check_dtype, check_seed


class _Activation(LayerBase):
    """An elementwise op pair as a layer with empty ``params``."""

    _forward = None  # the op's forward
    _backward = None  # the op's backward

    def __init__(self, *, seed=0, dtype=np.float64):
        check_seed(seed)
        self.dtype = check_dtype(dtype)
        self.params = {}
        self.children = {}
        self._sizes = {}

    def _hyper(self) -> dict:
        return {}

    def forward(self, x, *, params=None):
        """``(f(x), cache)``, same shape as ``x``."""
        self._params(params)
        return type(self)._forward(x, **self._hyper())

    def backward(self, dy, cache):
        """``(dx, {})``."""
        if _checks.enabled():
            _checks.check_dout(dy, cache.x.shape, "dy")
        (dx,) = type(self)._backward(dy, cache)
        return dx, {}


class GELU(_Activation):
    r"""Gaussian error linear unit, exact (``approximate="none"``) or tanh-approximated (Hendrycks & Gimpel 2016).

    .. math:: \mathrm{GELU}(x) = x\,\Phi(x); \quad \text{see } :func:`refmann.ops.gelu_forward`
    """

    _forward = staticmethod(ops.gelu_forward)
    _backward = staticmethod(ops.gelu_backward)

    def __init__(self, *, approximate="none", seed=0, dtype=np.float64):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
        super().__init__(seed=seed, dtype=dtype)
        self.approximate = approximate
        self._sizes = {"approximate": approximate}

    def _hyper(self) -> dict:
        return {"approximate": self.approximate}


class SiLU(_Activation):
    r"""Sigmoid-weighted linear unit :math:`x\,\sigma(x)` (Elfwing et al. 2018); :func:`refmann.ops.silu_forward`."""

    _forward = staticmethod(ops.silu_forward)
    _backward = staticmethod(ops.silu_backward)


class ReLU(_Activation):
    r""":math:`\max(x, 0)` (derivative 0 at the kink); :func:`refmann.ops.relu_forward`."""

    _forward = staticmethod(ops.relu_forward)
    _backward = staticmethod(ops.relu_backward)


class Tanh(_Activation):
    r""":math:`\tanh x`; :func:`refmann.ops.tanh_forward`."""

    _forward = staticmethod(ops.tanh_forward)
    _backward = staticmethod(ops.tanh_backward)


#: Activation layers by the name an MLP or a transformer block takes.
ACTIVATIONS = {
    "gelu": GELU,
    "gelu_tanh": lambda **kw: GELU(approximate="tanh", **kw),
    "silu": SiLU,
    "relu": ReLU,
    "tanh": Tanh,
}
