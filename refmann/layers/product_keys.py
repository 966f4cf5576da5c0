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

__all__ = ["ExpertCache", "ProductKeyMemory", "ProductKeyMemoryCache", "SwiLUCache"]

#: The query norms by name (``None``: no norm).
QUERY_NORMS = {"batchnorm": BatchNorm, "layernorm": LayerNorm}

#: The output forms: XLM's plain read, and Memory+'s SiLU-gated projection.
OUTPUTS = ("sum", "swilu")


class ProductKeyMemoryCache(NamedTuple):
    lead: tuple  # the input's leading axes (x is (*lead, input_dim), read as (B, input_dim))
    query: Any  # LinearCache: x (B, input_dim) -> z (B, H·dk)
    norm: Any  # the norm's cache (z -> q, (B, H·dk)), or None without a query norm
    search: ops.ProductKeyTopKCache  # queries (B, H, dk), rows / cols / slots int (B, H, k)
    softmax: Any  # SoftmaxCache: out (B, H, k): the weights w, a softmax over each head's k scores
    bag: ops.EmbeddingBagCache  # the value read over (B, H·k) lookups
    experts: Any  # PEER: ExpertCache, or None
    swilu: Any  # Memory+: SwiLUCache, or None


class ExpertCache(NamedTuple):
    """PEER's expert activations (``experts=True``)."""

    x: np.ndarray  # (B, X) the layer's input, each expert's input
    rows: np.ndarray  # (B, H·k, X) u_σ, the selected experts' input vectors
    gelu: Any  # GELUCache of α = u_σ · x, (B, H·k)
    act: np.ndarray  # (B, H·k) e = gelu(α)


class SwiLUCache(NamedTuple):
    """Memory+'s gated output ``W_o (y ⊙ silu(W_s x))`` (``output="swilu"``)."""

    y: np.ndarray  # (B, Y) the memory read
    gate: Any  # LinearCache of z = x W_s + b_s, (B, Y)
    silu: Any  # ActivationCache: out (B, Y) silu(z)
    out: Any  # LinearCache of (y ⊙ silu(z)) W_o + b_o


class ProductKeyMemory(LayerBase):
    r"""Large memory layer with product keys (Lample et al. 2019), XLM's default layer, with Memory+ and PEER.

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
    output : {"sum", "swilu"}, keyword-only
        ``"sum"`` (XLM): the read y is the output. ``"swilu"`` (Memory+, Berges et al. 2024): the output
        is :math:`W_o (y \odot \mathrm{silu}(W_s x))` with two more linear maps, ``"gate.*"`` (X → Y) and
        ``"out.*"`` (Y → Y), weights from :math:`N(0, 1/\text{fan-in})` and zero biases (Meta's init).
    experts : bool, keyword-only
        PEER (He 2024): each slot is a singleton-MLP expert :math:`(u_i, v_i)`; the read becomes
        :math:`y = \sum_{h,r} w_{h,r}\, \mathrm{gelu}(u_{\sigma_{h,r}} \cdot x)\, v_{\sigma_{h,r}}` with
        ``"values"`` the :math:`v_i` and a new table ``"expert_in"`` (n², X) the :math:`u_i`, from
        :math:`N(0, 1/X)`. Both tables get :class:`~refmann.ops.RowGrad` gradients.
    shared_values : bool, keyword-only
        The value table belongs to a host that shares it between several layers (Memory+'s one table
        for every memory layer): ``"values"`` is then not in ``params`` but in ``external_params``,
        ``forward`` must be given it in ``params``, and ``backward`` returns its gradient too — the
        host sums the layers' gradients into the one table.
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"query.weight"`` (X, H·dk) and ``"query.bias"`` (H·dk,), PyTorch's ``nn.Linear`` init as in XLM;
        ``"keys"`` (H, 2, n, dk/2) from :math:`U(-1/\sqrt{d_k/2}, 1/\sqrt{d_k/2})` (XLM's uniform
        sub-keys, one table per head and half); ``"values"`` (n², Y) from :math:`N(0, 1/Y)` (XLM)
        unless ``shared_values``; ``"query_norm.weight"``, ``"query_norm.bias"`` (H·dk,) with a query
        norm; ``"expert_in"`` (n², X) with ``experts``; ``"gate.weight"`` (X, Y), ``"gate.bias"``,
        ``"out.weight"`` (Y, Y), ``"out.bias"`` with ``output="swilu"``.
    external_params : tuple of str
        ``("values",)`` with ``shared_values``, else empty: keys ``forward`` reads and ``backward``
        differentiates that the layer does not own.

    Notes
    -----
    For one input x, with head h's query :math:`q_h = (q^1_h, q^2_h)` (columns h·dk … (h+1)·dk of q):

    .. math::
        q = \mathrm{norm}(x W + b), \qquad
        s_h(i, j) = q^1_h \cdot C_{h,0,i} + q^2_h \cdot C_{h,1,j}, \\
        \{\sigma_{h,r}\}_{r=1}^k = \operatorname{top}_k s_h, \qquad
        w_h = \operatorname{softmax}_r s_h(\sigma_{h,r}), \qquad
        y = \sum_h \sum_r c_{h,r}\, V_{\sigma_{h,r}}

    with :math:`c = w` (XLM) or :math:`c_{h,r} = w_{h,r}\,\mathrm{gelu}(u_{\sigma_{h,r}} \cdot x)` (PEER).
    The top k is found exactly from the halves' top k (:func:`refmann.ops.product_key_topk_forward`).
    The backward treats the selection as constant: the values' gradient is a
    :class:`~refmann.ops.RowGrad` over the distinct slots read (:func:`refmann.ops.embedding_bag_backward`),
    the keys' reaches only the selected sub-keys (dense, (H, 2, n, dk/2): it is √N-sized). Derivations
    of every mode: ``docs/derivations/product_keys.md``.

    References
    ----------
    Lample, Sablayrolles, Ranzato, Denoyer, Jégou. Large Memory Layers with Product Keys. NeurIPS 2019.
    Berges, Oğuz, Haziza, Yih, Zettlemoyer, Ghosh. Memory Layers at Scale. arXiv:2412.09764, 2024 (Memory+).
    He. Mixture of A Million Experts. arXiv:2407.04202, 2024 (PEER).
    """

    def __init__(
        self,
        *,
        input_dim,
        output_dim,
        num_keys,
        num_heads,
        k,
        key_dim,
        query_norm=None,
        output="sum",
        experts=False,
        shared_values=False,
        seed=0,
        dtype=np.float64,
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
        if not isinstance(output, str) or output not in OUTPUTS:
            raise ValueError(f"output: expected one of {list(OUTPUTS)}, got {output!r}")
        self.query_norm, self.output = query_norm, output
        self.experts = _checks.check_bool(experts, "experts")
        self.shared_values = _checks.check_bool(shared_values, "shared_values")
        self.external_params = ("values",) if self.shared_values else ()
        self.dtype = check_dtype(dtype)
        s = child_seeds(check_seed(seed), 6)
        children = [("query", Linear(input_dim=X, output_dim=H * dk, seed=s[0], dtype=self.dtype))]
        if query_norm is not None:
            children.append(("query_norm", QUERY_NORMS[query_norm](dim=H * dk, dtype=self.dtype)))
        if output == "swilu":
            for name, fan_in, seed_ in (("gate", X, s[3]), ("out", Y, s[4])):
                layer = Linear(input_dim=fan_in, output_dim=Y, dtype=self.dtype)
                rng = np.random.default_rng(seed_)
                layer.params["weight"] = (rng.standard_normal((fan_in, Y)) / np.sqrt(fan_in)).astype(self.dtype)
                layer.params["bias"] = np.zeros(Y, self.dtype)
                children.append((name, layer))
        self._set_children(children)
        half = dk // 2
        bound = 1.0 / np.sqrt(half)
        self.params["keys"] = np.random.default_rng(s[1]).uniform(-bound, bound, (H, 2, n, half)).astype(self.dtype)
        if not self.shared_values:
            self.params["values"] = self.init_values(n * n, Y, seed=s[2], dtype=self.dtype)
        if self.experts:
            rng = np.random.default_rng(s[5])
            self.params["expert_in"] = (rng.standard_normal((n * n, X)) / np.sqrt(X)).astype(self.dtype)
        self._sizes = {
            "input_dim": X, "output_dim": Y, "num_keys": n, "num_heads": H, "k": self.k, "key_dim": dk,
            "query_norm": query_norm,
        }  # fmt: skip
        if output != "sum":
            self._sizes["output"] = output
        if self.experts:
            self._sizes["experts"] = True
        if self.shared_values:
            self._sizes["shared_values"] = True

    @staticmethod
    def init_values(num_slots, output_dim, *, seed=0, dtype=np.float64):
        """A value table as the layer initialises one: (num_slots, output_dim) from N(0, 1/output_dim) (XLM).

        A host that shares one table between layers (``shared_values=True``) makes it with this.
        """
        rng = np.random.default_rng(check_seed(seed))
        return (rng.standard_normal((num_slots, output_dim)) / np.sqrt(output_dim)).astype(check_dtype(dtype))

    def _params(self, params):
        p = super()._params(params)
        missing = [key for key in self.external_params if key not in p]
        if missing:
            raise ValueError(f"params: missing {missing} (shared_values=True: the host passes the shared table)")
        return p

    def forward(self, x, *, params=None):
        """Read the memory: (..., input_dim) -> (..., output_dim) (the leading axes are one batch of queries).

        Parameters
        ----------
        x : ndarray, shape (B, input_dim)
            Any leading axes are flattened into B (a batch norm's statistics then run over all of them).
        params : dict, keyword-only, optional
            Default ``self.params``; with ``shared_values`` it must be given and hold ``"values"``.

        Returns
        -------
        y : ndarray, shape (B, output_dim)
        cache : ProductKeyMemoryCache
        """
        if params is None and self.shared_values:
            raise ValueError("params: expected the layer's params and the shared 'values' (shared_values=True)")
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
        slots = cs.slots.reshape(B, H * k)  # (B, H·k)
        coef, ce = w.reshape(B, H * k), None
        if self.experts:
            rows = p["expert_in"][slots]  # (B, H·k, X) u_σ (slots come from the search: in range)
            _checks.check_finite(rows, "params['expert_in'] (the rows read)")
            act, cg = ops.gelu_forward(np.einsum("bjx,bx->bj", rows, x2))  # (B, H·k) e = gelu(u_σ · x)
            coef, ce = coef * act, ExpertCache(x2, rows, cg, act)
        y, cb = ops.embedding_bag_forward(p["values"], coef, indices=slots)  # (B, Y)
        cm = None
        if self.output == "swilu":
            g, c_gate = c["gate"].forward(x2, params=self._child_params(p, "gate"))  # (B, Y) z = x W_s + b_s
            a, c_silu = ops.silu_forward(g)  # (B, Y)
            out, c_out = c["out"].forward(y * a, params=self._child_params(p, "out"))  # (B, Y)
            y, cm = out, SwiLUCache(y, c_gate, c_silu, c_out)
        return y.reshape(*lead, self.output_dim), ProductKeyMemoryCache(lead, cq, cn, cs, cw, cb, ce, cm)

    def backward(self, dy, cache):
        r"""``(dx, grads)``; ``grads["values"]`` (and ``"expert_in"``) are RowGrads over the slots read.

        .. math::
            \bar V_i = \sum_{(b,h,r): \sigma_{b,h,r} = i} c_{b,h,r}\, \bar y_b, \qquad
            \bar c_{b,h,r} = V_{\sigma_{b,h,r}} \cdot \bar y_b, \qquad
            \bar s_{b,h} = w_{b,h} \odot (\bar w_{b,h} - \langle w_{b,h}, \bar w_{b,h} \rangle)

        with :math:`\bar w = \bar c` (XLM) or, for PEER, :math:`\bar w = \bar c\, e`,
        :math:`\bar\alpha = \bar c\, w\, \mathrm{gelu}'(\alpha)`, :math:`\bar u_i = \sum_{\sigma = i} \bar\alpha\, x`
        and :math:`\bar x \mathrel{+}= \sum \bar\alpha\, u_\sigma`; then
        :func:`refmann.ops.product_key_topk_backward` (queries and keys through the selected pairs), the
        norm's and the query network's VJPs. Memory+ first: with :math:`m = y \odot a`,
        :math:`a = \mathrm{silu}(z)`: :math:`\bar m = \bar{o} W_o^\top`, :math:`\bar y = \bar m \odot a`,
        :math:`\bar z = \mathrm{silu}'(z) \odot \bar m \odot y`, and x receives :math:`\bar z W_s^\top` besides.
        """
        B, H, k = cache.softmax.out.shape
        if _checks.enabled():
            _checks.check_dout(dy, cache.lead + (self.output_dim,), "dy")
        dy2 = np.reshape(dy, (B, self.output_dim))  # (B, Y)
        c = self.children
        grads: dict[str, Any] = {}
        dx_extra = None
        if cache.swilu is not None:
            cm = cache.swilu
            dm, g = c["out"].backward(dy2, cm.out)  # (B, Y)
            grads.update(scope("out", g))
            (dg,) = ops.silu_backward(dm * cm.y, cm.silu)  # (B, Y)
            dx_extra, g = c["gate"].backward(dg, cm.gate)  # (B, X)
            grads.update(scope("gate", g))
            dy2 = dm * cm.silu.out  # (B, Y) into the read
        dvalues, dcoef = ops.embedding_bag_backward(dy2, cache.bag)  # RowGrad, (B, H·k)
        dw = dcoef
        if cache.experts is not None:
            ce = cache.experts
            dw = dcoef * ce.act  # (B, H·k)
            w = cache.softmax.out.reshape(B, H * k)
            (dalpha,) = ops.gelu_backward(dcoef * w, ce.gelu)  # (B, H·k)
            bag = ops.EmbeddingBagCache(ce.rows, dalpha, cache.bag.indices, cache.bag.num_rows)
            grads["expert_in"], _ = ops.embedding_bag_backward(ce.x, bag)  # RowGrad: Σ dα x over each slot's uses
            dx_peer = np.einsum("bj,bjx->bx", dalpha, ce.rows)  # (B, X)
            dx_extra = dx_peer if dx_extra is None else dx_extra + dx_peer
        (dscores,) = ops.softmax_backward(dw.reshape(B, H, k), cache.softmax)  # (B, H, k)
        dqueries, dkeys = ops.product_key_topk_backward(dscores, cache.search)  # (B, H, dk), (H, 2, n, dk/2)
        dz = dqueries.reshape(B, H * self.key_dim)  # (B, H·dk)
        grads.update({"keys": dkeys, "values": dvalues})
        if cache.norm is not None:
            dz, g = c["query_norm"].backward(dz, cache.norm)
            grads.update(scope("query_norm", g))
        dx, g = c["query"].backward(dz, cache.query)  # (B, X)
        grads.update(scope("query", g))
        if dx_extra is not None:
            dx = dx + dx_extra
        keys = (*self.params, *self.external_params)
        return dx.reshape(*cache.lead, self.input_dim), {key: grads[key] for key in keys}
