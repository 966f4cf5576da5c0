r"""A product-key memory layer (Lample et al. 2019): XLM's ``HashingMemoryProductFast``, hand-derived.

Query network → exact product-key top k per head → softmax over the k → one value table read by an
embedding bag, heads summed. Derivation: ``docs/derivations/layers.md`` ("Product-key memory").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _checks, ops
from .base import LayerBase, check_dtype, check_features, check_seed, child_seeds, scope
from .linear import Linear
from .norms import BatchNorm, LayerNorm

__all__ = ["ProductKeyMemory", "ProductKeyMemoryCache"]

#: The query norms by name (``None``: no norm).
QUERY_NORMS = {"batchnorm": BatchNorm, "layernorm": LayerNorm}


class ProductKeyMemoryCache(NamedTuple):
    lead: tuple  # the input's leading axes (x is (*lead, input_dim), read as (B, input_dim))
    query: Any  # LinearCache: x (B, input_dim) -> z (B, H·dk)
    norm: Any  # the norm's cache (z -> q, (B, H·dk)), or None without a query norm
    search: ops.ProductKeyTopKCache  # queries (B, H, dk), rows / cols / slots int (B, H, k)
    softmax: Any  # SoftmaxCache: out (B, H, k): the weights w, a softmax over each head's k scores
    bag: ops.EmbeddingBagCache  # the value read over (B, H·k) lookups


class ProductKeyMemory(LayerBase):
    r"""Large memory layer with product keys (Lample et al. 2019), XLM's default layer.

    Parameters
    ----------
    input_dim : int, keyword-only
        X, the width of each input vector.
    output_dim : int, keyword-only
        Y, the width of a value (and of the output).
    num_keys : int, keyword-only
        n, the sub-keys per half and head; the memory has n² slots (slot :math:`i n + j`).
    num_heads : int, keyword-only
        H; the heads' reads are summed.
    k : int, keyword-only
        Slots read per head, 1 ≤ k ≤ n.
    key_dim : int, keyword-only
        dk, each head's query width; even (two halves of dk/2).
    query_norm : {None, "batchnorm", "layernorm"}, keyword-only
        A norm over the H·dk query features (parameters ``"query_norm.weight"``, ``"query_norm.bias"``).
        ``"batchnorm"`` (the paper's) keeps running statistics in ``buffers`` and follows
        ``layer.train()`` / ``layer.eval()`` as :class:`~refmann.layers.BatchNorm` does; it mixes the
        batch, so a causal language model should use ``"layernorm"`` or None (DESIGN decision 12).
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"query.weight"`` (X, H·dk) and ``"query.bias"`` (H·dk,), PyTorch's ``nn.Linear`` init as in XLM;
        ``"keys"`` (H, 2, n, dk/2) from :math:`U(-1/\sqrt{d_k/2}, 1/\sqrt{d_k/2})` (XLM's uniform
        sub-keys, one table per head and half); ``"values"`` (n², Y) from :math:`N(0, 1/Y)` (XLM);
        and ``"query_norm.weight"``, ``"query_norm.bias"`` (H·dk,) with a query norm.

    Notes
    -----
    For one input x, with head h's query :math:`q_h = (q^1_h, q^2_h)` (columns h·dk … (h+1)·dk of q):

    .. math::
        q = \mathrm{norm}(x W + b), \qquad
        s_h(i, j) = q^1_h \cdot C_{h,0,i} + q^2_h \cdot C_{h,1,j}, \\
        \{\sigma_{h,r}\}_{r=1}^k = \operatorname{top}_k s_h, \qquad
        w_h = \operatorname{softmax}_r s_h(\sigma_{h,r}), \qquad
        y = \sum_h \sum_r w_{h,r}\, V_{\sigma_{h,r}}

    The top k is found exactly from the halves' top k (:func:`refmann.ops.product_key_topk_forward`).
    The backward treats the selection as constant: the values' gradient is a
    :class:`~refmann.ops.RowGrad` over the distinct slots read (:func:`refmann.ops.embedding_bag_backward`),
    the keys' reaches only the selected sub-keys (dense, (H, 2, n, dk/2): it is √N-sized).

    References
    ----------
    Lample, Sablayrolles, Ranzato, Denoyer, Jégou. Large Memory Layers with Product Keys. NeurIPS 2019.
    """

    def __init__(
        self, *, input_dim, output_dim, num_keys, num_heads, k, key_dim, query_norm=None, seed=0, dtype=np.float64
    ):
        X = self.input_dim = _checks.check_positive_int(input_dim, "input_dim")
        Y = self.output_dim = _checks.check_positive_int(output_dim, "output_dim")
        n = self.num_keys = _checks.check_positive_int(num_keys, "num_keys")
        H = self.num_heads = _checks.check_positive_int(num_heads, "num_heads")
        self.k = _checks.check_positive_int(k, "k")
        if self.k > n:
            raise ValueError(f"k: expected 1 <= k <= num_keys = {n}, got {self.k}")
        dk = self.key_dim = _checks.check_positive_int(key_dim, "key_dim")
        if dk % 2:
            raise ValueError(f"key_dim: expected an even int (two halves of key_dim/2), got {dk}")
        if query_norm is not None and not isinstance(query_norm, str):
            raise TypeError(f"query_norm: expected None or one of {sorted(QUERY_NORMS)}, got {query_norm!r}")
        if query_norm is not None and query_norm not in QUERY_NORMS:
            raise ValueError(f"query_norm: expected None or one of {sorted(QUERY_NORMS)}, got {query_norm!r}")
        self.query_norm = query_norm
        self.dtype = check_dtype(dtype)
        s = child_seeds(check_seed(seed), 3)
        children = [("query", Linear(input_dim=X, output_dim=H * dk, seed=s[0], dtype=self.dtype))]
        if query_norm is not None:
            children.append(("query_norm", QUERY_NORMS[query_norm](dim=H * dk, dtype=self.dtype)))
        self._set_children(children)
        half = dk // 2
        bound = 1.0 / np.sqrt(half)
        self.params["keys"] = np.random.default_rng(s[1]).uniform(-bound, bound, (H, 2, n, half)).astype(self.dtype)
        self.params["values"] = (np.random.default_rng(s[2]).standard_normal((n * n, Y)) / np.sqrt(Y)).astype(
            self.dtype
        )
        self._sizes = {
            "input_dim": X, "output_dim": Y, "num_keys": n, "num_heads": H, "k": self.k, "key_dim": dk,
            "query_norm": query_norm,
        }  # fmt: skip

    def forward(self, x, *, params=None):
        """Read the memory: (..., input_dim) -> (..., output_dim) (the leading axes are one batch of queries).

        Parameters
        ----------
        x : ndarray, shape (B, input_dim)
            Any leading axes are flattened into B (a batch norm's statistics then run over all of them).
        params : dict, keyword-only, optional
            Default ``self.params``.

        Returns
        -------
        y : ndarray, shape (B, output_dim)
        cache : ProductKeyMemoryCache
        """
        p = self._params(params)
        x = check_features(x, "x", self.input_dim, dtype=self.dtype)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.input_dim)  # (B, X)
        B, H, k = x2.shape[0], self.num_heads, self.k
        c = self.children
        z, cq = c["query"].forward(x2, params=self._child_params(p, "query"))  # (B, H·dk)
        cn = None
        if "query_norm" in c:
            z, cn = c["query_norm"].forward(z, params=self._child_params(p, "query_norm"))  # (B, H·dk)
        scores, cs = ops.product_key_topk_forward(z.reshape(B, H, self.key_dim), p["keys"], k=k)  # (B, H, k)
        w, cw = ops.softmax_forward(scores, axis=-1)  # (B, H, k)
        y, cb = ops.embedding_bag_forward(p["values"], w.reshape(B, H * k), indices=cs.slots.reshape(B, H * k))
        return y.reshape(*lead, self.output_dim), ProductKeyMemoryCache(lead, cq, cn, cs, cw, cb)

    def backward(self, dy, cache):
        r"""``(dx, grads)``; ``grads["values"]`` is a :class:`~refmann.ops.RowGrad` over the distinct slots read.

        .. math::
            \bar V_i = \sum_{(b,h,r): \sigma_{b,h,r} = i} w_{b,h,r}\, \bar y_b, \qquad
            \bar w_{b,h,r} = V_{\sigma_{b,h,r}} \cdot \bar y_b, \qquad
            \bar s_{b,h} = w_{b,h} \odot (\bar w_{b,h} - \langle w_{b,h}, \bar w_{b,h} \rangle)

        then :func:`refmann.ops.product_key_topk_backward` (queries and keys through the selected pairs),
        the norm's and the query network's VJPs.
        """
        B, H, k = cache.softmax.out.shape
        if _checks.enabled():
            _checks.check_dout(dy, cache.lead + (self.output_dim,), "dy")
        dy2 = np.reshape(dy, (B, self.output_dim))  # (B, Y)
        dvalues, dw = ops.embedding_bag_backward(dy2, cache.bag)  # RowGrad, (B, H·k)
        (dscores,) = ops.softmax_backward(dw.reshape(B, H, k), cache.softmax)  # (B, H, k)
        dqueries, dkeys = ops.product_key_topk_backward(dscores, cache.search)  # (B, H, dk), (H, 2, n, dk/2)
        dz = dqueries.reshape(B, H * self.key_dim)  # (B, H·dk)
        c = self.children
        grads: dict[str, Any] = {"keys": dkeys, "values": dvalues}
        if cache.norm is not None:
            dz, g = c["query_norm"].backward(dz, cache.norm)
            grads.update(scope("query_norm", g))
        dx, g = c["query"].backward(dz, cache.query)  # (B, X)
        grads.update(scope("query", g))
        return dx.reshape(*cache.lead, self.input_dim), {key: grads[key] for key in self.params}
