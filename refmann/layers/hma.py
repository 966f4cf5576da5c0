r"""HMA's head: a multi-head attention block (MAB) and memory tokens (Qiu et al. 2023).

Heterogenous Memory Augmentation (HMA; Qiu, Liu, Yan, Zhang & Fu 2023) puts a head on any backbone
f = Enc(x) ∈ R^d. Each sample becomes a token c⁰ = [f ; E_C] (its features and the label embedding of
"unknown"), which reads in two stages:

1. a queue of past training samples, [f̃ ; E_y] rows written after each step (the "real memory");
2. the other samples of the batch and learned class tokens [G_j ; E_{class(j)}] (the "synthetic memory").

Both reads are the Set-Transformer-style block :class:`MultiheadAttentionBlock` (Lee et al. 2019, as
Kossen et al. 2021's NPT code has it). refmann builds the evident intent of the released code
(qiuzh20/HMA; DESIGN decision 14): the queue *is* written, with momentum-encoder features and labels
(the host :class:`refmann.models.hma.MemoryTokensClassifier` does it), and ``quirks=True`` reproduces the
released write rule. Stage 2 makes a prediction depend on the rest of the evaluation batch
(``mode="transductive"``, the paper's); ``mode="per_sample"`` is refmann's batch-independent mode.
Derivation and the list of the released code's quirks: ``docs/derivations/hma.md``.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np

from .. import _checks, ops
from .base import LayerBase, check_dtype, check_features, check_seed, child_seeds, scope
from .linear import Linear
from .mlp import MLP
from .norms import LayerNorm

__all__ = [
    "MODES",
    "LOGITS_FROM",
    "MemoryTokens",
    "MemoryTokensCache",
    "MultiheadAttentionBlock",
    "MultiheadAttentionBlockCache",
]

log = logging.getLogger(__name__)

SCALES = ("kv_width", "head_dim")
MODES = ("transductive", "per_sample")
LOGITS_FROM = ("all", "label", "feature")
TOKEN_INITS = ("zero", "normal")


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def _add(grads: dict, name: str, g: dict) -> None:
    """``grads[name.key] += g[key]`` (a child used on several inputs: its gradients add)."""
    for key, value in scope(name, g).items():
        grads[key] = grads[key] + value if key in grads else value


# -- the multi-head attention block ---------------------------------------------------------------------


class MultiheadAttentionBlockCache(NamedTuple):
    x: np.ndarray  # (S, Tq, Dq) the queries' input, also the residual
    ln_q: Any  # LayerNormCache of x
    query: Any  # LinearCache (S, Tq, Dq) -> (S, Tq, De)
    ln_kv: tuple  # one LayerNormCache per part of y
    key: tuple  # one LinearCache per part: (S_j, Tk_j, Dkv) -> (S_j, Tk_j, De)
    value: tuple  # one LinearCache per part
    attn: Any  # ops.AttentionCache (q; k, v (S or 1, H, Tk, De/H); weights), or PartsAttentionCache (fused)
    ln_ff: Any  # LayerNormCache of h = attention + x   (S, Tq, De)
    ff: Any  # the MLP's cache
    parts: tuple  # ((S_j, Tk_j), ...) each part's leading size and token count
    pair: bool  # y was a tuple of parts (dy is returned as one)


class PartsAttentionCache(NamedTuple):
    """The fused stage's attention over KV parts, some shared (:meth:`MultiheadAttentionBlock.forward`)."""

    q: np.ndarray  # (S, H, Tq, d)
    ks: tuple  # per part (S or 1, H, Tk_j, d), never broadcast to S
    vs: tuple  # per part, likewise
    weights: np.ndarray  # (S, H, Tq, Tk) the softmax over every part's keys
    scale: float


def _parts_attention_forward(q, ks, vs, *, mask, scale):
    r"""Softmax attention over keys given in parts whose leading axis is S or 1 (shared), without copying a
    shared part S times: the scores of each part by a broadcast matmul, one softmax over their concatenation
    (S, H, Tq, Tk — small), and :math:`O = \sum_j A_j V_j`. Equal to :func:`refmann.ops.attention_forward`
    on the concatenated parts (``fused=False``, the reference) up to rounding."""
    scale = q.dtype.type(scale)  # a float32 block stays float32
    scores = np.concatenate([scale * (q @ k.swapaxes(-1, -2)) for k in ks], axis=-1)  # (S, H, Tq, Tk)
    if mask is not None:
        mask = np.broadcast_to(mask, scores.shape)
        if not np.all(mask.any(axis=-1)):
            raise ValueError("mask: every query must keep at least one key")
        scores = np.where(mask, scores, -np.inf)
    A = np.exp(scores - scores.max(axis=-1, keepdims=True))
    A /= A.sum(axis=-1, keepdims=True)  # (S, H, Tq, Tk)
    out, start = 0.0, 0
    for v in vs:
        T_j = v.shape[2]
        out = out + A[..., start : start + T_j] @ v  # (S, H, Tq, d): a shared v broadcasts, never copied
        start += T_j
    return out, PartsAttentionCache(q, tuple(ks), tuple(vs), A, scale)


def _shared_sum(a, b):
    r""":math:`\sum_s a_s^\top b_s` for a (S, H, Tq, Tk_j), b (S, H, Tq, d) -> (1, H, Tk_j, d), one matmul per head."""
    S, H, Tq, Tk = a.shape
    a2 = a.transpose(1, 3, 0, 2).reshape(H, Tk, S * Tq)
    b2 = b.transpose(1, 0, 2, 3).reshape(H, S * Tq, b.shape[-1])
    return (a2 @ b2)[None]


def _parts_attention_backward(dout, cache):
    """VJP of :func:`_parts_attention_forward`: ``(dq, dks, dvs)``, each part's gradient at its own leading size."""
    q, ks, vs, A, c = cache
    dA = np.concatenate([dout @ v.swapaxes(-1, -2) for v in vs], axis=-1)  # (S, H, Tq, Tk)
    dS = A * (dA - np.sum(A * dA, axis=-1, keepdims=True))  # the softmax VJP
    dq, dks, dvs, start = np.zeros_like(q), [], [], 0
    for k in ks:
        T_j = k.shape[2]
        dS_j, A_j = dS[..., start : start + T_j], A[..., start : start + T_j]
        start += T_j
        dq += c * (dS_j @ k)  # (S, H, Tq, d)
        if k.shape[0] == 1 and q.shape[0] > 1:  # shared: the sum over the sets, without an (S, H, Tk_j, d) array
            dks.append(c * _shared_sum(dS_j, q))
            dvs.append(_shared_sum(A_j, dout))
        else:
            dks.append(c * (dS_j.swapaxes(-1, -2) @ q))
            dvs.append(A_j.swapaxes(-1, -2) @ dout)
    return dq, dks, dvs


class MultiheadAttentionBlock(LayerBase):
    r"""MAB(X, Y), Set-Transformer/NPT style, as HMA's code has it: pre-norm attention from X to Y, then an MLP.

    Parameters
    ----------
    query_dim : int, keyword-only
        Dq = De, the width of X, of the projections and of the output (the residual is the identity).
    kv_dim : int, keyword-only
        Dkv, the width of Y.
    num_heads : int, keyword-only
        H, a divisor of ``query_dim``: head h owns columns [h·De/H, (h+1)·De/H) of Q, K and V.
    scale : {"kv_width", "head_dim"}, keyword-only
        The score scale c: :math:`1/\sqrt{D_{kv}}` as the released code (the full KV width, not per
        head), or the usual :math:`1/\sqrt{D_e/H}`.
    eps : float, keyword-only
        Of the three LayerNorms (the code's 1e-12).
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"ln_q.*"``, ``"ln_kv.*"`` (:class:`~refmann.layers.LayerNorm` of X and of Y), ``"query.*"``
        (Dq → De), ``"key.*"``, ``"value.*"`` (Dkv → De), ``"ln_ff.*"``, ``"ff.fc1.*"``, ``"ff.fc2.*"``
        (:class:`~refmann.layers.MLP` De → 4·De → De with an exact GELU).

    Notes
    -----
    For each set s (X_s: Tq rows, Y_s: Tk rows) and head h:

    .. math::
        Q = \mathrm{LN}_q(X) W_q + b_q, \quad K = \mathrm{LN}_{kv}(Y) W_k + b_k, \quad
        V = \mathrm{LN}_{kv}(Y) W_v + b_v, \\
        \mathcal H = \big[\mathrm{softmax}(c\, Q_h K_h^\top)\, V_h\big]_{h=1}^{H} + X, \qquad
        \mathrm{out} = \mathcal H + \mathrm{FF}(\mathrm{LN}_{ff}(\mathcal H))

    No dropout: the code's 0.1 (on :math:`\mathcal H` and inside FF) is left out; refmann's layers are
    deterministic. Backward (``docs/derivations/hma.md``): :math:`\bar{\mathcal H} = \bar{\mathrm{out}} +
    J_{\mathrm{LN}_{ff}}^\top J_{\mathrm{FF}}^\top \bar{\mathrm{out}}`, then
    :func:`refmann.ops.attention_backward`, then the linear and LayerNorm VJPs:
    :math:`\bar X = \bar{\mathcal H} + J_{\mathrm{LN}_q}^\top (\bar Q W_q^\top)` and
    :math:`\bar Y = J_{\mathrm{LN}_{kv}}^\top (\bar K W_k^\top + \bar V W_v^\top)`.

    A KV part with a leading axis of 1 is shared by every set: its LayerNorm and projections run once,
    and its gradient is the sum over the sets. Passing ``y`` as a tuple of parts concatenates them along
    the token axis after their projections (HMA's stage 1: each sample's own row, then the shared queue).

    The block has two differentiable inputs, so its backward returns ``(dx, dy, grads)`` and
    :func:`~refmann.layers.as_op` (one input) does not apply; ``tests/test_layers_hma.py`` wraps it as an
    op over ``(x, *y parts, *params)`` for the gradient checks.

    References
    ----------
    Lee, Lee, Kim, Kosiorek, Choi, Teh. Set Transformer. ICML 2019 (the MAB).
    Kossen, Band, Lyle, Gomez, Rainforth, Gal. Self-Attention Between Datapoints. NeurIPS 2021 (NPT).
    Qiu, Liu, Yan, Zhang, Fu. Heterogenous Memory Augmented Neural Networks. arXiv:2310.10909, 2023.
    """

    def __init__(self, *, query_dim, kv_dim, num_heads=4, scale="kv_width", eps=1e-12, seed=0, dtype=np.float64):
        Dq = self.query_dim = _checks.check_positive_int(query_dim, "query_dim")
        Dkv = self.kv_dim = _checks.check_positive_int(kv_dim, "kv_dim")
        H = self.num_heads = _checks.check_positive_int(num_heads, "num_heads")
        if Dq % H:
            raise ValueError(f"num_heads: expected a divisor of query_dim = {Dq} (the width split into heads), got {H}")
        self.scale = _check_choice(scale, "scale", SCALES)
        self.score_scale = 1.0 / np.sqrt(Dkv if scale == "kv_width" else Dq // H)  # c
        self.dtype = check_dtype(dtype)
        s = child_seeds(check_seed(seed), 4)
        kw = dict(dtype=self.dtype)
        self._set_children(
            [
                ("ln_q", LayerNorm(dim=Dq, eps=eps, **kw)),
                ("ln_kv", LayerNorm(dim=Dkv, eps=eps, **kw)),
                ("query", Linear(input_dim=Dq, output_dim=Dq, seed=s[0], **kw)),
                ("key", Linear(input_dim=Dkv, output_dim=Dq, seed=s[1], **kw)),
                ("value", Linear(input_dim=Dkv, output_dim=Dq, seed=s[2], **kw)),
                ("ln_ff", LayerNorm(dim=Dq, eps=eps, **kw)),
                ("ff", MLP(input_dim=Dq, hidden_dims=4 * Dq, activation="gelu", seed=s[3], **kw)),
            ]
        )
        self.eps = self.children["ln_q"].eps
        self._sizes = {"query_dim": Dq, "kv_dim": Dkv, "num_heads": H, "scale": self.scale}

    def _split(self, z):
        """(S, T, De) -> (S, H, T, De/H)."""
        S, T, _ = z.shape
        return z.reshape(S, T, self.num_heads, -1).transpose(0, 2, 1, 3)

    @staticmethod
    def _merge(z):
        """(S, H, T, d) -> (S, T, H·d)."""
        S, H, T, d = z.shape
        return z.transpose(0, 2, 1, 3).reshape(S, T, H * d)

    def _check_y(self, y, S):
        pair = isinstance(y, (tuple, list))
        raw = tuple(y) if pair else (y,)
        if not raw:
            raise ValueError("y: expected an array or a non-empty tuple of arrays, got an empty tuple")
        parts = []
        for j, part in enumerate(raw):
            name = f"y[{j}]" if pair else "y"
            part = check_features(part, name, self.kv_dim, ndim=3, dtype=self.dtype)
            if part.shape[0] not in (S, 1):
                raise ValueError(
                    f"{name}: expected a leading axis of {S} (one KV set per query set) or 1 (shared), "
                    f"got shape {part.shape}"
                )
            parts.append(part)
        if sum(part.shape[1] for part in parts) < 1:
            raise ValueError("y: expected at least one key row, got none")
        return parts, pair

    def forward(self, x, y, *, params=None, mask=None, fused=True):
        """Attend from each set of queries to its KV set.

        Parameters
        ----------
        x : ndarray, shape (S, Tq, query_dim)
        y : ndarray, shape (S or 1, Tk, kv_dim), or a tuple of such parts
            A tuple ``(y_1, y_2, ...)`` means :math:`Y_s = [y_{1,s} ; y_{2,s} ; \\dots]` (token axis), each
            part with a leading axis of S or 1 (shared by every set, computed once).
        params : dict, keyword-only, optional
            Default ``self.params``.
        mask : bool ndarray broadcastable to (S, H, Tq, Tk), keyword-only, optional
            False = weight exactly 0 (see :func:`refmann.ops.attention_forward`).
        fused : bool, keyword-only
            With a shared part (leading axis 1) and S > 1 sets: attend to it without copying its keys and
            values into every set (scores by part, one softmax, :math:`\\sum_j A_j V_j`). False: the
            readable reference, :func:`refmann.ops.attention_forward` over the parts concatenated. The
            two agree to rounding (tested).

        Returns
        -------
        out : ndarray, shape (S, Tq, query_dim)
        cache : MultiheadAttentionBlockCache
        """
        p = self._params(params)
        c = self.children
        x = check_features(x, "x", self.query_dim, ndim=3, dtype=self.dtype)
        parts, pair = self._check_y(y, x.shape[0])
        xn, c_lnq = c["ln_q"].forward(x, params=self._child_params(p, "ln_q"))  # (S, Tq, Dq)
        q, c_q = c["query"].forward(xn, params=self._child_params(p, "query"))  # (S, Tq, De)
        p_ln, p_k, p_v = (self._child_params(p, name) for name in ("ln_kv", "key", "value"))
        c_ln, c_k, c_v, ks, vs = [], [], [], [], []
        for part in parts:  # each part once, at its own leading size (a shared part: 1)
            yn, cl = c["ln_kv"].forward(part, params=p_ln)  # (S_j, Tk_j, Dkv)
            k, ck = c["key"].forward(yn, params=p_k)  # (S_j, Tk_j, De)
            v, cv = c["value"].forward(yn, params=p_v)  # (S_j, Tk_j, De)
            c_ln.append(cl)
            c_k.append(ck)
            c_v.append(cv)
            ks.append(self._split(k))  # (S_j, H, Tk_j, De/H)
            vs.append(self._split(v))
        shared = len(parts) > 1 and any(part.shape[0] == 1 < x.shape[0] for part in parts)
        if fused and shared:  # a shared part attended without being copied into every set
            o, c_att = _parts_attention_forward(self._split(q), ks, vs, mask=mask, scale=self.score_scale)
        else:  # the reference: the parts concatenated on the token axis (a shared one broadcast to S)
            K, V = self._join(ks), self._join(vs)  # (S or 1, H, Tk, De/H)
            o, c_att = ops.attention_forward(self._split(q), K, V, mask=mask, scale=self.score_scale)  # (S, H, Tq, ·)
        h = self._merge(o) + x  # (S, Tq, De)   the residual is the identity (D_out = Dq)
        m, c_lnff = c["ln_ff"].forward(h, params=self._child_params(p, "ln_ff"))  # (S, Tq, De)
        f, c_ff = c["ff"].forward(m, params=self._child_params(p, "ff"))  # (S, Tq, De)
        shapes = tuple(part.shape[:2] for part in parts)
        cache = MultiheadAttentionBlockCache(
            x, c_lnq, c_q, tuple(c_ln), tuple(c_k), tuple(c_v), c_att, c_lnff, c_ff, shapes, pair
        )
        return h + f, cache

    @staticmethod
    def _join(heads):
        """The parts' (S_j, H, Tk_j, d) concatenated on the token axis (shared parts broadcast to S)."""
        if len(heads) == 1:
            return heads[0]
        S = max(z.shape[0] for z in heads)
        return np.concatenate([np.broadcast_to(z, (S,) + z.shape[1:]) for z in heads], axis=2)

    def backward(self, dout, cache):
        """``(dx, dy, grads)``: dx (S, Tq, query_dim); dy shaped like y (a tuple if y was); grads keyed like params."""
        if _checks.enabled():
            _checks.check_dout(dout, cache.x.shape, "dout")
        c = self.children
        grads: dict[str, Any] = {}
        dm, g = c["ff"].backward(dout, cache.ff)  # (S, Tq, De)
        _add(grads, "ff", g)
        dh, g = c["ln_ff"].backward(dm, cache.ln_ff)
        _add(grads, "ln_ff", g)
        dh = dout + dh  # (S, Tq, De) both paths into H
        if isinstance(cache.attn, PartsAttentionCache):
            dq, dks, dvs = _parts_attention_backward(self._split(dh), cache.attn)  # each part at its own size
        else:
            dq, dK, dV = ops.attention_backward(self._split(dh), cache.attn)  # shapes of q, K, V
            bounds = np.cumsum([0] + [T_j for _, T_j in cache.parts])
            dks = [dK[:, :, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
            dvs = [dV[:, :, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        dxn, g = c["query"].backward(self._merge(dq), cache.query)  # (S, Tq, Dq)
        _add(grads, "query", g)
        dxn, g = c["ln_q"].backward(dxn, cache.ln_q)
        _add(grads, "ln_q", g)
        dx = dh + dxn  # the residual and the query path
        dys = []
        for (S_j, _), cl, ck, cv, dk, dv in zip(cache.parts, cache.ln_kv, cache.key, cache.value, dks, dvs):
            if S_j == 1 and dk.shape[0] > 1:  # a shared part: the sum over the sets it served
                dk, dv = dk.sum(axis=0, keepdims=True), dv.sum(axis=0, keepdims=True)
            dyn_k, gk = c["key"].backward(self._merge(dk), ck)  # (S_j, Tk_j, Dkv)
            dyn_v, gv = c["value"].backward(self._merge(dv), cv)
            dy, gl = c["ln_kv"].backward(dyn_k + dyn_v, cl)
            for name, g in (("key", gk), ("value", gv), ("ln_kv", gl)):
                _add(grads, name, g)
            dys.append(dy)
        dy = tuple(dys) if cache.pair else dys[0]
        return dx, dy, {key: grads[key] for key in self.params}


# -- HMA's head ---------------------------------------------------------------------------------------------


class MemoryTokensCache(NamedTuple):
    mode: str  # "transductive" or "per_sample"
    B: int  # samples
    stage1: MultiheadAttentionBlockCache  # X = c⁰ (B, 1, D), Y = [c⁰_i ; queue] (B, 1 + S, D)
    stage2: MultiheadAttentionBlockCache  # X = c¹ (1, B, D) or (B, 1, D), Y = [c¹ ; Ĝ]
    head: Any  # LinearCache of c²[part] (B, P) -> (B, C)
    mass: dict  # attention mass per sample (B,) each: see MemoryTokens.attention_mass


class MemoryTokens(LayerBase):
    r"""HMA's head: label embeddings, a queue of past samples (stage 1), synthetic class tokens (stage 2).

    Parameters
    ----------
    feature_dim : int, keyword-only
        d, the backbone's feature width.
    num_classes : int, keyword-only
        C (at least 2; the released code's extra row for C = 1 is not reproduced).
    label_dim : int, keyword-only
        d_l, the label-embedding width; D = d + d_l must be divisible by ``num_heads``.
    tokens_per_class : int, keyword-only
        m_s synthetic tokens per class; token j has class j // m_s (the code's repeat_interleave).
    queue_size : int, keyword-only
        S queue rows (0 only with ``use_queue=False``).
    num_heads : int, keyword-only
        H of both attention blocks.
    logits_from : {"all", "label", "feature"}, keyword-only
        The slice of c² the linear head reads: all D columns (the ViT default), the label part d_l
        (the graph default) or the feature part d.
    token_init : {"zero", "normal"}, keyword-only
        G starts at 0 (the code's default) or N(0, 0.02²).
    use_queue : bool, keyword-only
        False: stage 1 attends to the sample itself only (the "synthetic tokens only" ablation).
    use_tokens : bool, keyword-only
        False: no synthetic tokens in stage 2 (and no ``"tokens"`` parameter).
    scale : {"kv_width", "head_dim"}, keyword-only
        Of both blocks (see :class:`MultiheadAttentionBlock`).
    quirks : bool, keyword-only
        :meth:`enqueue` as the released code: a batch is written only if S mod B = 0.
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"labels"`` E (C+1, d_l), N(0, 1)·0.02 (row C is "unknown", the query's; the code uses
        nn.Embedding's N(0, 1)); ``"tokens"`` G (C·m_s, d); ``"stage1.*"``, ``"stage2.*"``
        (:class:`MultiheadAttentionBlock` (D, D)); ``"head.weight"`` (P, C), ``"head.bias"`` (C,).
    buffers : dict
        ``"queue"`` (S, D), initialised as the code: normal rows scaled to unit norm; ``"queue_labels"``
        (S,) the class written in each row, −1 for an initial random row; ``"queue_pointer"`` () the
        next row to write. Stored as floats (load_buffers' convention). No gradient reaches them.

    Notes
    -----
    For a batch f (B, d), with :math:`\hat G_j = [G_j ; E_{\lfloor j / m_s \rfloor}]` and R the queue's rows:

    .. math::
        c^0_i = [f_i ; E_C], \qquad
        c^1_i = \mathrm{MAB}_1\big(c^0_i,\ [c^0_i ; R]\big), \\
        c^2 = \mathrm{MAB}_2\big(c^1,\ [c^1 ; \hat G]\big) \ \text{(transductive: one set of B tokens)}, \qquad
        c^2_i = \mathrm{MAB}_2\big(c^1_i,\ [c^1_i ; \hat G]\big) \ \text{(per sample)}, \\
        \mathrm{logits}_i = c^2_i[\text{part}]\, W_o + b_o

    In the transductive mode every sample attends to every other of the batch, so
    :math:`\partial\,\mathrm{logits}_i / \partial f_j \ne 0` and a prediction depends on the batch it is
    evaluated in. E receives gradient from the query rows (row C) and the tokens' label rows, never
    from the queue's rows, which are constants (snapshots written by :meth:`enqueue`).

    References
    ----------
    Qiu, Liu, Yan, Zhang, Fu. Heterogenous Memory Augmented Neural Networks. arXiv:2310.10909, 2023.
    He, Fan, Wu, Xie, Girshick. Momentum Contrast for Unsupervised Visual Representation Learning.
    CVPR 2020 (the queue).
    """

    def __init__(
        self,
        *,
        feature_dim,
        num_classes,
        label_dim=16,
        tokens_per_class=8,
        queue_size=256,
        num_heads=4,
        logits_from="all",
        token_init="zero",
        use_queue=True,
        use_tokens=True,
        scale="kv_width",
        quirks=False,
        seed=0,
        dtype=np.float64,
    ):
        d = self.feature_dim = _checks.check_positive_int(feature_dim, "feature_dim")
        C = self.num_classes = _checks.check_positive_int(num_classes, "num_classes", minimum=2)
        dl = self.label_dim = _checks.check_positive_int(label_dim, "label_dim")
        m = self.tokens_per_class = _checks.check_positive_int(tokens_per_class, "tokens_per_class")
        S = self.queue_size = _checks.check_positive_int(queue_size, "queue_size", minimum=0)
        H = self.num_heads = _checks.check_positive_int(num_heads, "num_heads")
        D = self.dim = d + dl
        if D % H:
            raise ValueError(
                f"num_heads: expected a divisor of D = feature_dim + label_dim = {d} + {dl} = {D}, got {H}"
            )
        self.logits_from = _check_choice(logits_from, "logits_from", LOGITS_FROM)
        self.token_init = _check_choice(token_init, "token_init", TOKEN_INITS)
        self.use_queue = _checks.check_bool(use_queue, "use_queue")
        self.use_tokens = _checks.check_bool(use_tokens, "use_tokens")
        self.quirks = _checks.check_bool(quirks, "quirks")
        if S == 0 and self.use_queue:
            raise ValueError(
                "queue_size: expected an int >= 1 with use_queue=True (0 only with use_queue=False), got 0"
            )
        self.dtype = check_dtype(dtype)
        s = child_seeds(check_seed(seed), 6)
        self._part = {"all": slice(0, D), "label": slice(d, D), "feature": slice(0, d)}[self.logits_from]
        P = self._part.stop - self._part.start
        mab = dict(query_dim=D, kv_dim=D, num_heads=H, scale=scale, dtype=self.dtype)
        self._set_children(
            [
                ("stage1", MultiheadAttentionBlock(seed=s[3], **mab)),
                ("stage2", MultiheadAttentionBlock(seed=s[4], **mab)),
                ("head", Linear(input_dim=P, output_dim=C, seed=s[5], dtype=self.dtype)),
            ]
        )
        own = {"labels": 0.02 * np.random.default_rng(s[0]).standard_normal((C + 1, dl))}
        if self.use_tokens:
            own["tokens"] = (
                np.zeros((C * m, d))
                if token_init == "zero"
                else 0.02 * np.random.default_rng(s[1]).standard_normal((C * m, d))
            )
        self.params = {key: value.astype(self.dtype) for key, value in own.items()} | self.params
        self.token_classes = np.repeat(np.arange(C), m)  # (C·m_s,) token j's class j // m_s
        queue = np.random.default_rng(s[2]).standard_normal((S, D))
        queue /= np.maximum(np.linalg.norm(queue, axis=1, keepdims=True), 1e-12)  # unit rows, as the code
        self._buffers = {
            "queue": queue.astype(self.dtype),
            "queue_labels": np.full(S, -1.0, self.dtype),
            "queue_pointer": np.zeros((), self.dtype),
        }
        self._warned_skip = False
        self._sizes = {
            "feature_dim": d,
            "num_classes": C,
            "label_dim": dl,
            "tokens_per_class": m,
            "queue_size": S,
            "num_heads": H,
            "logits_from": self.logits_from,
        }

    # -- forward / backward ----------------------------------------------------------------------------------

    def forward(self, f, *, params=None, mode="transductive"):
        """Logits of a batch of features.

        Parameters
        ----------
        f : ndarray, shape (B, feature_dim)
        params : dict, keyword-only, optional
            Default ``self.params``.
        mode : {"transductive", "per_sample"}, keyword-only
            Stage 2 over the batch as one set (the paper's; predictions depend on the batch) or each
            sample alone with the tokens (refmann's; a prediction never depends on the batch).

        Returns
        -------
        logits : ndarray, shape (B, num_classes)
        cache : MemoryTokensCache
        """
        p = self._checked_params(params)
        mode = _check_choice(mode, "mode", MODES)
        f = check_features(f, "f", self.feature_dim, ndim=2, dtype=self.dtype)
        if f.shape[0] < 1:
            raise ValueError(f"f: expected at least one row, got shape {f.shape}")
        with _checks.unchecked():  # everything is validated: the blocks' per-op checks would only repeat it
            return self._forward(f, p, mode)

    def _checked_params(self, params):
        """``params`` (default ``self.params``), each array finite and of its parameter's shape."""
        p = self._params(params)
        if not _checks.enabled():
            return p
        fixed = {}
        for key, value in self.params.items():
            arr = p[key]
            if not isinstance(arr, np.ndarray) or arr.shape != value.shape or not np.isfinite(arr).all():
                arr = _checks.as_float_array(arr, f"params[{key!r}]")  # the error names the parameter
                _checks.check_shape(arr, f"params[{key!r}]", value.shape)
                fixed[key] = arr  # a list or an int array of the right shape, as an array
        return p | fixed if fixed else p

    def _forward(self, f, p, mode):
        B, D, C = f.shape[0], self.dim, self.num_classes
        ch = self.children
        E = p["labels"]  # (C+1, d_l)
        c0 = np.concatenate([f, np.broadcast_to(E[C], (B, self.label_dim))], axis=1)  # (B, D) [f_i ; E_C]
        x1 = c0[:, None, :]  # (B, 1, D) one query per sample
        y1 = (x1, self._buffers["queue"][None]) if self.use_queue else x1  # [c⁰_i ; queue]: (B, 1, D) + (1, S, D)
        c1, cache1 = ch["stage1"].forward(x1, y1, params=self._child_params(p, "stage1"))  # (B, 1, D)
        if self.use_tokens:
            tokens = np.concatenate([p["tokens"], E[self.token_classes]], axis=1)  # (C·m_s, D) Ĝ_j = [G_j ; E_j//m]
        x2 = c1.reshape(1, B, D) if mode == "transductive" else c1  # (1, B, D): one set; (B, 1, D): B sets
        y2 = (x2, tokens[None]) if self.use_tokens else x2  # [c¹ ; Ĝ], Ĝ shared by every set
        c2, cache2 = ch["stage2"].forward(x2, y2, params=self._child_params(p, "stage2"))  # like x2
        z = c2.reshape(B, D)[:, self._part]  # (B, P)
        logits, c_head = ch["head"].forward(z, params=self._child_params(p, "head"))  # (B, C)
        mass = self._mass(cache1.attn.weights, cache2.attn.weights, mode, B)
        return logits, MemoryTokensCache(mode, B, cache1, cache2, c_head, mass)

    @staticmethod
    def _mass(A1, A2, mode, B):
        """Per-sample attention mass (B,), averaged over heads: stage 1 on self / queue, stage 2 on batch / tokens."""
        out = {"stage1_self": A1[:, :, 0, 0].mean(axis=1)}  # A1 (B, H, 1, 1 + S): key 0 is the sample itself
        out["stage1_queue"] = A1[:, :, 0, 1:].sum(axis=-1).mean(axis=1)
        if mode == "transductive":  # A2 (1, H, B, B + C·m_s): keys [0, B) are the batch
            out["stage2_batch"] = A2[0, :, :, :B].sum(axis=-1).mean(axis=0)
            out["stage2_self"] = A2[0][:, np.arange(B), np.arange(B)].mean(axis=0)
            out["stage2_tokens"] = A2[0, :, :, B:].sum(axis=-1).mean(axis=0)
        else:  # A2 (B, H, 1, 1 + C·m_s): key 0 is the sample itself, its whole "batch"
            out["stage2_self"] = out["stage2_batch"] = A2[:, :, 0, 0].mean(axis=1)
            out["stage2_tokens"] = A2[:, :, 0, 1:].sum(axis=-1).mean(axis=1)
        return out

    def attention_mass(self, cache) -> dict:
        """The batch means of the attention mass diagnostics of a forward's cache.

        Returns
        -------
        dict[str, float]
            ``"stage1_self"`` + ``"stage1_queue"`` = 1: stage 1's weight on the sample itself and on
            the queue; ``"stage2_batch"`` + ``"stage2_tokens"`` = 1: stage 2's on the batch (the sample
            itself included; per sample: itself only) and on the synthetic tokens; ``"stage2_self"``
            the part of the batch's that is the sample itself. Each averaged over heads, then samples.
        """
        return {key: float(np.mean(value)) for key, value in cache.mass.items()}

    def backward(self, dlogits, cache):
        """``(df, grads)``: df (B, feature_dim), grads keyed like params (no gradient reaches the queue)."""
        if _checks.enabled():
            _checks.check_dout(dlogits, (cache.B, self.num_classes), "dlogits")
        with _checks.unchecked():
            return self._backward(dlogits, cache)

    def _backward(self, dlogits, cache):
        B, d, D, C = cache.B, self.feature_dim, self.dim, self.num_classes
        ch = self.children
        grads: dict[str, Any] = {}
        dz, g = ch["head"].backward(dlogits, cache.head)  # (B, P)
        grads.update(scope("head", g))
        dc2 = np.zeros((B, D), dz.dtype)
        dc2[:, self._part] = dz  # (B, D) the columns the head did not read get 0
        dx2, dy2, g = ch["stage2"].backward(dc2.reshape(cache.stage2.x.shape), cache.stage2)
        grads.update(scope("stage2", g))
        dy2_own, dtokens = dy2 if self.use_tokens else (dy2, None)  # (like x2), (1, C·m_s, D)
        dc1 = (dx2 + dy2_own).reshape(B, 1, D)  # c¹ is stage 2's queries and its own keys
        dx1, dy1, g = ch["stage1"].backward(dc1, cache.stage1)
        grads.update(scope("stage1", g))
        dy1_own = dy1[0] if self.use_queue else dy1  # dy1[1], the queue's, is dropped: a buffer
        dc0 = (dx1 + dy1_own)[:, 0]  # (B, D)
        dE = np.zeros((C + 1, self.label_dim), dc0.dtype)
        dE[C] = dc0[:, d:].sum(axis=0)  # every query's "unknown" row
        if self.use_tokens:
            dtokens = dtokens[0]  # (C·m_s, D)
            grads["tokens"] = dtokens[:, :d].copy()
            dE[:C] += dtokens[:, d:].reshape(C, self.tokens_per_class, self.label_dim).sum(axis=1)  # class rows
        grads["labels"] = dE
        return dc0[:, :d].copy(), {key: grads[key] for key in self.params}

    # -- the queue ----------------------------------------------------------------------------------------

    def enqueue(self, features, labels, *, params=None):
        r"""Write rows :math:`[f_i ; E_{y_i}]` into the ring in FIFO order (E a snapshot: no gradient).

        Parameters
        ----------
        features : ndarray, shape (n, feature_dim)
            Usually the momentum encoder's features of a training batch.
        labels : int ndarray, shape (n,)
            Classes in [0, num_classes).
        params : dict, keyword-only, optional
            Whose ``"labels"`` E is read (default ``self.params``).

        Notes
        -----
        Default (the intent): every batch is written at ``queue_pointer``, wrapping around the ring,
        and the pointer moves on by the rows written; a batch larger than S keeps its last S rows —
        the queue is then ``collections.deque(maxlen=S)`` extended by each batch. ``quirks=True``
        (the released code): a batch is written only if S mod n = 0, else skipped (refmann logs one
        warning per layer). The released code writes ``queue[ptr:ptr+n]`` and would fail on a write
        past the end (batch sizes that change between calls); refmann wraps there.

        Replaces the buffers by new arrays (the old ones are not written).
        """
        p = self._params(params)
        feats = check_features(features, "features", self.feature_dim, ndim=2, dtype=self.dtype)
        n = feats.shape[0]
        if n < 1:
            raise ValueError(f"features: expected at least one row, got shape {feats.shape}")
        labels = _checks.as_index_array(labels, "labels", upper=self.num_classes, shape=(n,))
        S = self.queue_size
        if S == 0:
            return
        if self.quirks and S % n:
            if not self._warned_skip:
                log.warning(
                    "MemoryTokens(quirks=True): a batch of %d rows is not written (queue_size %d is not a "
                    "multiple of it), as in the released code; further skips are not logged",
                    n,
                    S,
                )
                self._warned_skip = True
            return
        E = _checks.as_float_array(p["labels"], "params['labels']")  # (C+1, d_l), finite
        rows = np.concatenate([feats, E[labels]], axis=1)[-S:]  # (min(n, S), D) the last S rows, E copied
        labels = labels[-S:]
        ptr = int(self._buffers["queue_pointer"])
        slots = (ptr + np.arange(len(rows))) % S  # FIFO: the oldest rows are overwritten
        queue, stored = self._buffers["queue"].copy(), self._buffers["queue_labels"].copy()
        queue[slots], stored[slots] = rows, labels
        pointer = np.asarray((ptr + len(rows)) % S, self.dtype)
        self._buffers = {"queue": queue, "queue_labels": stored, "queue_pointer": pointer}

    def queue_contents(self):
        """The rows written so far, oldest first: ``(rows (n, D), labels int (n,))``, n ≤ S.

        The initial random rows are excluded (their label is −1).
        """
        S = self.queue_size
        stored = self._buffers["queue_labels"]
        n = int(np.sum(stored >= 0))
        order = (int(self._buffers["queue_pointer"]) - n + np.arange(n)) % max(S, 1)  # (n,) oldest first
        return self._buffers["queue"][order].copy(), stored[order].astype(np.int64)
