r"""A pre-norm residual transformer block: attention then an MLP, each added to the residual stream."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _checks
from .activations import ACTIVATIONS
from .attention import MultiHeadAttention
from .base import LayerBase, check_dtype, check_features, check_seed, child_seeds, scope
from .mlp import MLP
from .norms import LayerNorm, RMSNorm
from .product_keys import ProductKeyMemory
from .sketch import SketchMemory

NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}


class TransformerBlockCache(NamedTuple):
    ln1: Any  # norm cache of x                (B, T, D)
    attn: Any  # MultiHeadAttentionCache
    ln2: Any  # norm cache of h = x + attn     (B, T, D)
    mlp: Any  # the feed-forward branch's cache: the MLP's (a tuple), or a ProductKeyMemoryCache
    sketch: Any = None  # SketchMemoryCache of the block's output, with a sketch memory


class TransformerBlock(LayerBase):
    r"""Pre-norm residual block (GPT-2's arrangement; Vaswani et al. 2017 put the norms after the adds).

    Parameters
    ----------
    model_dim : int, keyword-only
        D.
    num_heads : int, keyword-only
        H (must divide D).
    mlp_dim : int, keyword-only, optional
        Hidden size of the MLP, default 4·D.
    activation : {"gelu", "gelu_tanh", "silu", "relu", "tanh"}, keyword-only
    norm : {"layernorm", "rmsnorm"}, keyword-only
    eps : float, keyword-only, optional
        Of both norms (default: the norm's own, 1e-5 or 1e-6).
    memory : dict, keyword-only, optional
        Replace the MLP by a :class:`~refmann.layers.ProductKeyMemory` (D → D) built with these keywords
        (``num_keys``, ``num_heads``, ``k``, ``key_dim``, ``query_norm``, ``output``, ``experts``,
        ``shared_values``): Lample et al.'s and Memory+'s placement, a memory *instead of* the FFN.
        Its parameters are ``"memory.*"``; with ``shared_values`` the block, like the layer, lists
        ``"values"`` in ``external_params`` for its host to pass.
    sketch : dict, keyword-only, optional
        Add a :class:`~refmann.layers.SketchMemory` (D → D, ``combine="residual"``) to the block's output,
        built with these keywords (``num_tables``, ``num_bits``, ``signs``, ``gate``): the sketch paper's
        memory read "before feeding [the layer's output] to the next layer" (refmann's reconstruction),
        in addition to the MLP. Its parameters are ``"sketch.*"``.
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"ln1.weight"``, ``"ln1.bias"``, ``"attn.query.weight"``, …, ``"attn.out.bias"``,
        ``"ln2.weight"``, ``"ln2.bias"``, ``"mlp.fc1.weight"``, …, ``"mlp.fc2.bias"`` (or ``"memory.*"``).

    Notes
    -----
    .. math::
        h = x + \mathrm{MHA}(\mathrm{LN}_1(x)), \qquad y = h + \mathrm{MLP}(\mathrm{LN}_2(h))

    and with a sketch memory :math:`y \leftarrow y + r(y)`, r the hashed table read (no gradient through
    the hash: y's gradient gains only the gate's path).

    Backward: :math:`dh = dy + J_{\mathrm{LN}_2}^\top J_{\mathrm{MLP}}^\top dy` and
    :math:`dx = dh + J_{\mathrm{LN}_1}^\top J_{\mathrm{MHA}}^\top dh` — each residual add passes its
    gradient through unchanged and adds the branch's.
    """

    def __init__(
        self,
        *,
        model_dim,
        num_heads,
        mlp_dim=None,
        activation="gelu",
        norm="layernorm",
        eps=None,
        memory=None,
        sketch=None,
        seed=0,
        dtype=np.float64,
    ):
        D = self.model_dim = _checks.check_positive_int(model_dim, "model_dim")
        self.mlp_dim = 4 * D if mlp_dim is None else _checks.check_positive_int(mlp_dim, "mlp_dim")
        if norm not in NORMS:
            raise ValueError(f"norm: expected one of {sorted(NORMS)}, got {norm!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.dtype = check_dtype(dtype)
        s = child_seeds(check_seed(seed), 3)
        norm_kw = {"dim": D, "dtype": self.dtype} | ({} if eps is None else {"eps": eps})
        if memory is None:
            self.ffn = "mlp"
            ffn = MLP(input_dim=D, hidden_dims=self.mlp_dim, activation=activation, seed=s[1], dtype=self.dtype)
        else:
            if not isinstance(memory, dict):
                raise TypeError(f"memory: expected None or a dict of ProductKeyMemory keywords, got {memory!r}")
            bad = sorted(set(memory) & {"input_dim", "output_dim", "seed", "dtype"})
            if bad:
                raise ValueError(f"memory: the block sets {bad} itself (input and output are model_dim)")
            self.ffn = "memory"
            ffn = ProductKeyMemory(input_dim=D, output_dim=D, seed=s[1], dtype=self.dtype, **memory)
        self.external_params = tuple(getattr(ffn, "external_params", ()))
        extra = []
        if sketch is not None:
            if not isinstance(sketch, dict):
                raise TypeError(f"sketch: expected None or a dict of SketchMemory keywords, got {sketch!r}")
            bad = sorted(set(sketch) & {"input_dim", "output_dim", "combine", "seed", "dtype"})
            if bad:
                raise ValueError(f"sketch: the block sets {bad} itself (a residual D → D read of its output)")
            sk = SketchMemory(input_dim=D, output_dim=D, combine="residual", seed=s[2], dtype=self.dtype, **sketch)
            extra = [("sketch", sk)]
        self.has_sketch = bool(extra)
        self._set_children(
            [
                ("ln1", NORMS[norm](**norm_kw)),
                ("attn", MultiHeadAttention(model_dim=D, num_heads=num_heads, seed=s[0], dtype=self.dtype)),
                ("ln2", NORMS[norm](**norm_kw)),
                (self.ffn, ffn),
                *extra,
            ]
        )
        self.num_heads, self.activation, self.norm = num_heads, activation, norm
        self._sizes = {
            "model_dim": D,
            "num_heads": num_heads,
            "mlp_dim": self.mlp_dim,
            "activation": activation,
            "norm": norm,
        }
        if memory is not None:
            self._sizes["memory"] = ffn
        if extra:
            self._sizes["sketch"] = extra[0][1]

    def forward(self, x, *, params=None, mask=None, causal=False):
        """(B, T, D) -> (B, T, D); ``mask`` and ``causal`` as for :class:`MultiHeadAttention`."""
        p = self._params(params)
        missing = [key for key in self.external_params if key not in p]
        if missing:
            raise ValueError(f"params: missing {missing} (the memory's shared table, which the host passes)")
        x = check_features(x, "x", self.model_dim, ndim=3, dtype=self.dtype)
        c = self.children
        a, c_ln1 = c["ln1"].forward(x, params=self._child_params(p, "ln1"))
        a, c_attn = c["attn"].forward(a, params=self._child_params(p, "attn"), mask=mask, causal=causal)
        h = x + a  # (B, T, D) residual
        m, c_ln2 = c["ln2"].forward(h, params=self._child_params(p, "ln2"))
        p_ffn = self._child_params(p, self.ffn) | {key: p[key] for key in self.external_params}
        m, c_mlp = c[self.ffn].forward(m, params=p_ffn)
        y, c_sketch = h + m, None
        if self.has_sketch:
            y, c_sketch = c["sketch"].forward(y, params=self._child_params(p, "sketch"))  # y + r(y)
        return y, TransformerBlockCache(c_ln1, c_attn, c_ln2, c_mlp, c_sketch)

    def backward(self, dy, cache):
        """``(dx, grads)``, dx of shape (B, T, D), grads keyed like ``params``."""
        if _checks.enabled():
            _checks.check_dout(dy, cache.ln1.x.shape, "dy")
        c = self.children
        grads = {}
        if self.has_sketch:
            dy, g = c["sketch"].backward(dy, cache.sketch)  # the residual's identity (+ the gate's path)
            grads.update(scope("sketch", g))
        dm, g = c[self.ffn].backward(dy, cache.mlp)
        external = {key: g.pop(key) for key in self.external_params}
        grads.update(scope(self.ffn, g))
        grads.update(external)
        dm, g = c["ln2"].backward(dm, cache.ln2)
        grads.update(scope("ln2", g))
        dh = dy + dm  # both paths into h
        da, g = c["attn"].backward(dh, cache.attn)
        grads.update(scope("attn", g))
        da, g = c["ln1"].backward(da, cache.ln1)
        grads.update(scope("ln1", g))
        return dh + da, {key: grads[key] for key in (*self.params, *self.external_params)}
