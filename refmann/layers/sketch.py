r"""A sketch memory layer: SimHash buckets of the activation index value tables (a documented reconstruction).

Panigrahy, Wang & Zaheer (2021) integrate a sketch-based memory at every layer of a network; only
their abstract is public, so this layer is refmann's reconstruction (DESIGN decision 13,
``../shared/notes/wave2-anchors.md`` §3.3): T SimHash tables of b bits over the layer's input, one
value row per (table, bucket), read through :func:`refmann.ops.embedding_bag_forward` and averaged
over the tables. The hash is piecewise constant: no gradient reaches it. Which choices are ours is
listed on the documentation's sketch page.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _checks, ops
from .base import LayerBase, check_dtype, check_features, check_seed, child_seeds

__all__ = ["SketchMemory", "SketchMemoryCache", "simhash_buckets"]

COMBINES = ("residual", "concat", "none")


def simhash_buckets(x, planes):
    r"""The bucket of each input in each table: the b sign bits of :math:`x R_t`, read as a binary number.

    Parameters
    ----------
    x : ndarray, shape (B, X)
    planes : ndarray, shape (T, X, b)
        The random hyperplanes of the T tables (Charikar's SimHash); b is the number of bits read (a
        :class:`SketchMemory` with signs passes b + 1 planes, the last one its sign bit).

    Returns
    -------
    buckets : int ndarray, shape (B, T), in [0, 2^b)
    margins : ndarray, shape (B, T)
        :math:`\min_j |x \cdot R_{t,j}|`, the distance (in projection units) to the nearest bit flip.

    Notes
    -----
    Two inputs at angle θ fall in the same bucket of one table with probability :math:`(1 - \theta/\pi)^b`
    (each bit agrees with probability 1 − θ/π, independently over the b hyperplanes).
    """
    T, X, b = planes.shape
    # x·R_t for every table as one BLAS matmul against the (X, T·b) stack of the planes (an einsum here does
    # not reach BLAS, and cost 12–23× more: refmann bench sketch measured it)
    proj = (x @ planes.transpose(1, 0, 2).reshape(X, T * b)).reshape(x.shape[0], T, b)  # (B, T, b)
    bits = (proj > 0).astype(np.int64)  # (B, T, b)
    weights = np.left_shift(1, np.arange(b, dtype=np.int64))  # (b,) 1, 2, 4, ...
    return bits @ weights, np.abs(proj).min(axis=-1)


class SketchMemoryCache(NamedTuple):
    x: np.ndarray  # (B, X) the input (leading axes flattened)
    lead: tuple  # the input's leading axes
    bag: Any  # EmbeddingBagCache of the read over (B, T) lookups
    gate: Any  # (g (B,), weight (X,)) with a read gate, else None
    read: np.ndarray  # (B, Y) the averaged read, before the gate


class SketchMemory(LayerBase):
    r"""Sketch memory (a reconstruction of Panigrahy, Wang & Zaheer 2021): hashed value tables read at the input.

    Parameters
    ----------
    input_dim : int, keyword-only
        X.
    output_dim : int, keyword-only
        Y, the width of a value row (``combine="residual"`` needs Y = X).
    num_tables : int, keyword-only
        T SimHash tables, averaged.
    num_bits : int, keyword-only
        b bits per table: 2^b buckets each (1 ≤ b ≤ 24).
    combine : {"residual", "concat", "none"}, keyword-only
        The output: x + y (transformers), [x ; y] (MLPs: width X + Y), or y alone.
    signs : bool, keyword-only
        Count-sketch signs: one more hyperplane per table gives each *input* a sign
        :math:`\varsigma_t(x) = \pm 1`, and the input reads (and writes) its row times that sign, so two
        inputs that share a bucket but not a sign cancel instead of adding. (A fixed sign per *row*
        would change nothing: every input of the row would get the same one, a renaming of the values.)
    gate : bool, keyword-only
        A learned read gate g = σ(x·w + c) per input (``"gate.weight"`` (X,), ``"gate.bias"`` ()),
        y ← g·y; a differentiable path from x into the read, as Engram's context gate.
    seed : int, keyword-only
        Draws the hyperplanes (buffers, never trained) and the gate.
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"values"`` (T·2^b, Y), zero-initialised (the layer starts as a no-op read), a
        :class:`~refmann.ops.RowGrad` gradient; ``"gate.*"`` with a gate.
    buffers : dict
        ``"planes"`` (T, X, b) Gaussian hyperplanes — (T, X, b + 1) with signs, the last one each table's
        sign hyperplane —
        ``"counts"`` (T·2^b,) the writes each row holds (explicit-write mode).

    Notes
    -----
    With :math:`\beta_t(x)` the bucket of x in table t = 0, …, T − 1 (:func:`simhash_buckets`), row
    :math:`r_t = t\,2^b + \beta_t(x)` and sign :math:`\varsigma_t(x)` (1 without signs):

    .. math:: y = \frac{g(x)}{T} \sum_{t=0}^{T-1} \varsigma_t(x)\, V_{r_t}

    The backward holds the buckets and signs constant: :math:`\bar V_{r_t} \mathrel{+}= (g\,\varsigma_t / T)\,\bar y`
    (an embedding-bag row gradient), and x receives only the combine's identity and the gate's
    :math:`\bar g\, g (1 - g)\, w`. Read as a kernel, a learned table is a regression with the collision
    kernel :math:`k(x, x') = \frac1T \sum_t [\beta_t(x) = \beta_t(x')]`, whose mean is :math:`(1 - \theta/\pi)^b`
    (with signs, the signed kernel :math:`\frac1T \sum_t \varsigma_t(x)\varsigma_t(x') [\beta_t(x) = \beta_t(x')]`,
    mean :math:`(1 - \theta/\pi)^b (1 - 2\theta/\pi)`; ``docs/derivations/sketch.md``).

    References
    ----------
    Panigrahy, Wang, Zaheer. Sketch based Memory for Neural Networks. AISTATS 2021 (abstract).
    Charikar. Similarity estimation techniques from rounding algorithms. STOC 2002 (SimHash).
    """

    def __init__(
        self,
        *,
        input_dim,
        output_dim,
        num_tables=4,
        num_bits=12,
        combine="residual",
        signs=False,
        gate=False,
        seed=0,
        dtype=np.float64,
    ):
        X = self.input_dim = _checks.check_positive_int(input_dim, "input_dim")
        Y = self.output_dim = _checks.check_positive_int(output_dim, "output_dim")
        T = self.num_tables = _checks.check_positive_int(num_tables, "num_tables")
        b = self.num_bits = _checks.check_positive_int(num_bits, "num_bits")
        if b > 24:
            raise ValueError(f"num_bits: expected at most 24 (2^b rows per table), got {b}")
        if not isinstance(combine, str) or combine not in COMBINES:
            raise ValueError(f"combine: expected one of {list(COMBINES)}, got {combine!r}")
        if combine == "residual" and Y != X:
            raise ValueError(
                f"output_dim: combine='residual' adds y to x, so expected output_dim = input_dim = {X}, got {Y}"
            )
        self.combine = combine
        self.signs = _checks.check_bool(signs, "signs")
        self.gate = _checks.check_bool(gate, "gate")
        self.dtype = check_dtype(dtype)
        s = child_seeds(check_seed(seed), 3)
        self.num_rows = T * 2**b
        self.children = {}
        self.params = {"values": np.zeros((self.num_rows, Y), self.dtype)}
        if self.gate:
            self.params["gate.weight"] = (np.random.default_rng(s[2]).standard_normal(X) / np.sqrt(X)).astype(
                self.dtype
            )
            self.params["gate.bias"] = np.zeros((), self.dtype)
        planes = np.random.default_rng(s[0]).standard_normal((T, X, b + self.signs)).astype(self.dtype)
        self._buffers = {"planes": planes, "counts": np.zeros(self.num_rows, self.dtype)}
        self._sizes = {"input_dim": X, "output_dim": Y, "num_tables": T, "num_bits": b, "combine": combine}

    @property
    def out_dim(self) -> int:
        """The width of the output: X (residual), X + Y (concat) or Y."""
        return {"residual": self.input_dim, "concat": self.input_dim + self.output_dim, "none": self.output_dim}[
            self.combine
        ]

    def flops_per_row(self) -> int:
        r"""Multiply-adds per input row: the hash :math:`T b X` (:math:`T (b + 1) X` with signs), the read
        :math:`T Y`, and the gate's X.

        Independent of the table size 2^b·T — the sketch paper's "capacity at almost no compute".
        """
        T, b, X, Y = self.num_tables, self.num_bits + self.signs, self.input_dim, self.output_dim
        return T * b * X + T * Y + (X if self.gate else 0)

    def address(self, x):
        """``(rows, signs)``, both (B, T): each input's value row in each table, ``t·2^b + bucket``, and its
        sign ±1 (all +1 without signs); x is (..., X)."""
        x = check_features(x, "x", self.input_dim, dtype=self.dtype).reshape(-1, self.input_dim)
        codes, _ = simhash_buckets(x, self._buffers["planes"])  # (B, T), b bits (+ the sign bit on top)
        b = self.num_bits
        buckets = codes & (2**b - 1)
        signs = np.where(codes >> b, 1.0, -1.0) if self.signs else np.ones(codes.shape)
        return buckets + (np.arange(self.num_tables) * 2**b)[None, :], signs.astype(self.dtype)

    def rows(self, x):
        """int (B, T): the value row of each input in each table, ``t·2^b + bucket`` (x is (..., X))."""
        return self.address(x)[0]

    def forward(self, x, *, params=None):
        """(..., input_dim) -> (..., out_dim); see the class Notes."""
        p = self._params(params)
        x = check_features(x, "x", self.input_dim, dtype=self.dtype)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.input_dim)  # (B, X)
        rows, signs = self.address(x2)  # (B, T) each
        w = signs / self.num_tables  # (B, T)
        read, cb = ops.embedding_bag_forward(p["values"], w, indices=rows)  # (B, Y)
        y, cg = read, None
        if self.gate:
            logit = x2 @ p["gate.weight"] + p["gate.bias"]  # (B,)
            g = ops.sigmoid(logit)
            y, cg = g[:, None] * read, (g, p["gate.weight"])
        if self.combine == "residual":
            out = x2 + y
        elif self.combine == "concat":
            out = np.concatenate([x2, y], axis=-1)
        else:
            out = y
        return out.reshape(*lead, self.out_dim), SketchMemoryCache(x2, lead, cb, cg, read)

    def backward(self, dout, cache):
        """``(dx, grads)``; ``grads["values"]`` a RowGrad over the rows read; no gradient through the hash."""
        B = cache.x.shape[0]
        if _checks.enabled():
            _checks.check_dout(dout, cache.lead + (self.out_dim,), "dout")
        d = np.reshape(dout, (B, self.out_dim))
        if self.combine == "residual":
            dx, dy = d.copy(), d
        elif self.combine == "concat":
            dx, dy = d[:, : self.input_dim].copy(), d[:, self.input_dim :]
        else:
            dx, dy = np.zeros_like(cache.x), d
        grads: dict[str, Any] = {}
        if cache.gate is not None:
            g, weight = cache.gate
            dlogit = np.sum(dy * cache.read, axis=-1) * g * (1.0 - g)  # (B,) through g = σ(x·w + c)
            grads["gate.weight"] = cache.x.T @ dlogit  # (X,)
            grads["gate.bias"] = np.sum(dlogit)
            dx = dx + np.outer(dlogit, weight)  # the gate is x's one path into the read
            dy = g[:, None] * dy
        grads["values"], _ = ops.embedding_bag_backward(dy, cache.bag)
        return dx.reshape(*cache.lead, self.input_dim), {key: grads[key] for key in self.params}

    def write_inplace(self, keys, values, *, mode="average", params=None):
        r"""Explicit writes (the key–value mode): store each value in its key's bucket of every table.

        Parameters
        ----------
        keys : ndarray, shape (n, input_dim)
        values : ndarray, shape (n, output_dim)
        mode : {"average", "overwrite"}, keyword-only
            ``"average"``: a row holds the running mean of the (signed) values written into it, its
            count in ``buffers["counts"]``; ``"overwrite"``: the last write wins.
        params : dict, keyword-only, optional
            Whose ``"values"`` table is written (default ``self.params``). **Modified in place.**

        Notes
        -----
        Reading a stored key gives :math:`\frac1T \sum_t \varsigma_t V_{r_t}`: the value itself when its
        rows hold no other key's, and otherwise an average with the keys it collides with (with signs,
        a colliding key of the opposite sign enters negated). With n keys in 2^b uniform buckets a key is
        alone in one table with probability :math:`(1 - 2^{-b})^{n-1}` and in all T with
        :math:`(1 - 2^{-b})^{(n-1)T} \approx e^{-nT/2^b}`, so exact recall of most keys needs
        :math:`nT \ll 2^b` (the interference bound, tested). The writes are applied in order, one
        (key, table) at a time: O(n·T·Y).
        """
        p = self.params if params is None else params
        if mode not in ("average", "overwrite"):
            raise ValueError(f"mode: expected 'average' or 'overwrite', got {mode!r}")
        keys = check_features(keys, "keys", self.input_dim, ndim=2, dtype=self.dtype)
        values = check_features(values, "values", self.output_dim, ndim=2, dtype=self.dtype)
        if keys.shape[0] != values.shape[0]:
            raise ValueError(f"values: expected {keys.shape[0]} rows (one per key), got {values.shape[0]}")
        table, counts = p["values"], self._buffers["counts"]
        all_rows, all_signs = self.address(keys)
        for i, (rows, signs) in enumerate(zip(all_rows, all_signs)):
            for r, sign in zip(rows, signs):
                v = sign * values[i]  # ς² = 1: the read multiplies by ς again
                if mode == "overwrite":
                    table[r], counts[r] = v, 1.0
                else:
                    counts[r] += 1.0
                    table[r] += (v - table[r]) / counts[r]
        return p
