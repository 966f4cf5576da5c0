r"""Multi-head self-attention over :func:`refmann.ops.attention_forward` (Vaswani et al. 2017, §3.2.2)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _checks, ops
from .base import LayerBase, check_dtype, check_features, check_seed, child_seeds, scope
from .linear import Linear


class MultiHeadAttentionCache(NamedTuple):
    query: tuple  # LinearCache of the query projection: x (B, T, D) -> (B, T, H·dk)
    key: tuple  # LinearCache
    value: tuple  # LinearCache                            (B, T, D) -> (B, T, H·dv)
    attn: ops.AttentionCache  # q, k (B, H, T, dk), v (B, H, T, dv), weights (B, H, T, T)
    out: tuple  # LinearCache of the output projection: (B, T, H·dv) -> (B, T, D)


class MultiHeadAttention(LayerBase):
    r"""Multi-head scaled dot-product self-attention with masks and a causal option.

    Parameters
    ----------
    model_dim : int, keyword-only
        D, the size of each position's vector.
    num_heads : int, keyword-only
        H.
    key_dim : int, keyword-only, optional
        dk per head; default D / H (which must then divide).
    value_dim : int, keyword-only, optional
        dv per head; default ``key_dim``.
    bias : bool, keyword-only
        Biases on the four projections.
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"query.weight"`` (D, H·dk), ``"key.weight"`` (D, H·dk), ``"value.weight"`` (D, H·dv),
        ``"out.weight"`` (H·dv, D), and the ``.bias`` of each.

    Notes
    -----
    For x of shape (B, T, D), with head h's columns of each projection:

    .. math::
        Q_h = x W^Q_h + b^Q_h,\quad K_h = x W^K_h + b^K_h,\quad V_h = x W^V_h + b^V_h, \\
        O_h = \mathrm{softmax}\big(Q_h K_h^\top / \sqrt{d_k} + \text{mask}\big)\, V_h, \qquad
        y = [O_1, \dots, O_H]\, W^O + b^O

    The backward runs the same chain in reverse: :func:`refmann.ops.attention_backward` between two
    linear VJPs, with the heads split and merged by reshapes.
    """

    def __init__(self, *, model_dim, num_heads, key_dim=None, value_dim=None, bias=True, seed=0, dtype=np.float64):
        D = self.model_dim = _checks.check_positive_int(model_dim, "model_dim")
        H = self.num_heads = _checks.check_positive_int(num_heads, "num_heads")
        if key_dim is None:
            if D % H:
                raise ValueError(f"num_heads: expected a divisor of model_dim = {D} (or pass key_dim), got {H}")
            key_dim = D // H
        self.key_dim = _checks.check_positive_int(key_dim, "key_dim")
        self.value_dim = self.key_dim if value_dim is None else _checks.check_positive_int(value_dim, "value_dim")
        self.dtype = check_dtype(dtype)
        s = child_seeds(check_seed(seed), 4)
        kw = dict(bias=bias, dtype=self.dtype)
        self._set_children(
            [
                ("query", Linear(input_dim=D, output_dim=H * self.key_dim, seed=s[0], **kw)),
                ("key", Linear(input_dim=D, output_dim=H * self.key_dim, seed=s[1], **kw)),
                ("value", Linear(input_dim=D, output_dim=H * self.value_dim, seed=s[2], **kw)),
                ("out", Linear(input_dim=H * self.value_dim, output_dim=D, seed=s[3], **kw)),
            ]
        )
        self._sizes = {"model_dim": D, "num_heads": H, "key_dim": self.key_dim, "value_dim": self.value_dim}

    def _split(self, z):
        """(B, T, H·d) -> (B, H, T, d)."""
        B, T, _ = z.shape
        return z.reshape(B, T, self.num_heads, -1).transpose(0, 2, 1, 3)

    @staticmethod
    def _merge(z):
        """(B, H, T, d) -> (B, T, H·d)."""
        B, H, T, d = z.shape
        return z.transpose(0, 2, 1, 3).reshape(B, T, H * d)

    def forward(self, x, *, params=None, mask=None, causal=False):
        """Self-attention over the T positions of x.

        Parameters
        ----------
        x : ndarray of shape (B, T, D)
        params : dict, keyword-only, optional
            Default ``self.params``.
        mask : bool ndarray broadcastable to (B, H, T, T), keyword-only, optional
            False = the query may not attend to that key. A key-padding mask (B, T) is ``mask[:, None, None, :]``.
        causal : bool, keyword-only
            Position i attends to positions ≤ i only.

        Returns
        -------
        y : ndarray of shape (B, T, D)
        cache : MultiHeadAttentionCache
        """
        p = self._params(params)
        x = check_features(x, "x", self.model_dim, ndim=3, dtype=self.dtype)
        c = self.children
        q, cq = c["query"].forward(x, params=self._child_params(p, "query"))  # (B, T, H·dk)
        k, ck = c["key"].forward(x, params=self._child_params(p, "key"))  # (B, T, H·dk)
        v, cv = c["value"].forward(x, params=self._child_params(p, "value"))  # (B, T, H·dv)
        o, ca = ops.attention_forward(
            self._split(q), self._split(k), self._split(v), mask=mask, causal=causal
        )  # (B, H, T, dv)
        y, co = c["out"].forward(self._merge(o), params=self._child_params(p, "out"))  # (B, T, D)
        return y, MultiHeadAttentionCache(cq, ck, cv, ca, co)

    def backward(self, dy, cache):
        """``(dx, grads)``: dx of shape (B, T, D), grads keyed like ``params``."""
        if _checks.enabled():
            _checks.check_dout(dy, cache.out.x.shape[:-1] + (self.model_dim,), "dy")
        c = self.children
        grads = {}
        do, g = c["out"].backward(dy, cache.out)  # (B, T, H·dv)
        grads.update(scope("out", g))
        B, T, _ = dy.shape
        dq, dk, dv = ops.attention_backward(self._split(do), cache.attn)  # (B, H, T, ·) each
        dx = np.zeros((B, T, self.model_dim), dy.dtype)
        for name, dz, sub in (("query", dq, cache.query), ("key", dk, cache.key), ("value", dv, cache.value)):
            dxi, g = c[name].backward(self._merge(dz), sub)  # (B, T, D): x feeds all three
            dx += dxi
            grads.update(scope(name, g))
        return dx, {key: grads[key] for key in self.params}
