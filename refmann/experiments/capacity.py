r"""E1 and E6: key-value memorisation at fixed compute, and the product-key ablations.

Run ``python -m refmann.experiments.capacity --experiment e1`` (or ``e6``; ``--quick`` for the CI sizes,
``--help`` for the flags).

**The task** (seed-methods §5, E1). n keys drawn uniformly on the unit sphere :math:`S^{31}` (dimension 32),
each with a class drawn uniformly from [0, 100): a table of n random pairs to memorise. There is no test set:
the score is the *train* accuracy (the fraction of the n pairs whose argmax logit is their class, in
evaluation mode, after training) and the final loss (mean softmax cross-entropy over the n pairs, evaluation
mode). The keys, the classes, the initialisation and the batch order come from ``seed`` and n only, so every
arm sees the same pairs in the same order.

**The arms** (:data:`ARMS`, ``builder(input_dim, num_classes, *, seed, dtype, **options) -> (network,
step)``, a :mod:`refmann.layers` layer and an update ``step(params, grads, state) -> (params, state)``):

- ``"mlp"`` (:func:`build_mlp`): ReLU MLP 32 → w → w → 100, with w chosen so that its FLOPs per row are
  those of the ``"mlp+pkm"`` arm (:func:`mlp_width_for_flops`); Adam, lr 3e-3.
- ``"mlp+pkm"`` (:func:`build_mlp_pkm`): a one-layer ReLU trunk 32 → 64, then a
  :class:`~refmann.layers.ProductKeyMemory` 64 → 100 whose read *is* the logits (no classifier after it:
  each slot stores a vector of class scores, and the k·H slots a key reads vote). N = 128² slots, H = 4
  heads, k = 8, dk = 32, query BatchNorm. The value table is trained with lazy
  :func:`~refmann.train.optim.sparse_adam` at lr 3e-2 in its own parameter group, everything else with Adam
  at lr 3e-4. With ``keys="flat"`` the memory is a :class:`FlatKeyMemory` over the same N (E6).

The learning rates were tuned briefly on this task with 2,000 steps of 256: the MLP over {1e-3, 3e-3, 1e-2}
at n = 16k; the memory arm over values {1e-2, 3e-2, 1e-1} × rest {3e-4, 1e-3, 3e-3} (not the full grid) at
n = 64k.

- ``"sketch"`` (:func:`build_sketch`): a :class:`~refmann.layers.SketchMemory` over the key itself, T = 4
  SimHash tables of b = 12 bits (16,384 rows of 100 class scores, as many rows as the product-key arm has
  slots), whose averaged read is the logits; only the values are trained (lazy sparse Adam, lr 3e-2, not
  tuned). There is no MLP in it — with no gradient through the hash, a trunk before it would never learn —
  so it runs at a fraction of the others' FLOPs (the FLOPs column says how many).
- ``"mlp+hma"`` (:func:`build_mlp_hma`): a one-hidden-layer ReLU encoder 32 → w → d = 12 and HMA's head
  (:class:`~refmann.models.hma.MemoryTokensClassifier`, Qiu et al. 2023): d_l = 4 (D = 16), 4 heads, a queue
  of S = 256 rows written after each step by a momentum encoder (m = 0.99), m_s = 1 synthetic token per
  class (100 tokens). w is solved so that the FLOPs per row match the ``"mlp+pkm"`` arm's at the training
  batch size (:func:`hma_head_flops`; the head alone costs 27,560 of the 29,824 at B = 256). Adam, lr 1e-3
  (not tuned). It trains transductively (stage 2 attends over the training batch, the paper's); its
  ``train_accuracy`` and ``final_loss`` are evaluated **per sample** (refmann's batch-independent mode), and
  ``transductive_accuracy`` in batches of the training batch size, in the data's order (the keys are
  i.i.d.).

A later arm registers itself with :func:`register_arm` and appears in the same table.

**FLOPs** (:func:`count_flops`) are multiply-adds per input row, counted on the built network: every matmul
(``in·out`` for a linear layer), the product search's sub-scores (:math:`H \cdot 2 \cdot n \cdot d_k/2 = H n
d_k` for n sub-keys per half; :math:`H N d_k` for flat keys), the k-way read (:math:`H k Y`), and HMA's two
attention blocks (:func:`hma_head_flops`: per row, the projections, the scores and weighted sums over its
keys, the feed-forward block; the queue's and the tokens' projections, made once per batch, shared by the
batch's rows). Elementwise
work is not counted: biases, activations, norms, the softmax over k, the :math:`k^2` candidate sums and the
top-k comparisons. A parameter count is the number of trained scalars.

**The budget.** Every (arm, n) run makes the same number of optimizer steps on batches of the same size
(2,000 × 256 by default: the epochs, ``steps · batch / n``, fall as n grows — 500 at n = 1k, 7.8 at n = 64k),
so both arms see every pair equally often.

**E6** ablates the memory arm at one n (default 64k, E1's largest): the query norm (none, layernorm,
batchnorm), heads × k ∈ {1, 2, 4, 8} × {4, 8, 16, 32}, N ∈ {32², 64², 128²}, and product keys against flat
keys (:class:`FlatKeyMemory`: a brute-force top k over N full keys, built from the existing ops) at N = 64².
Each row reports the accuracy, final loss, slot usage, KL to uniform and the top-99% coverage
(:func:`refmann.layers.pkm_diagnostics.slot_statistics`, in evaluation mode over the n training keys). The
base configuration (E1's memory arm) is trained once and listed in every group it belongs to. E6 uses 1,000
steps of 256 (3.9 epochs at n = 64k, half E1's budget) so that the 21 distinct runs take about ten minutes.

``run(experiment, **config) -> rows`` (:func:`run_e1`, :func:`run_e6`; keys :data:`ROW_KEYS`),
``format_table(rows) -> str``, ``main(argv=None)``; ``--quick`` runs :data:`QUICK`, ``--out FILE.json``
writes ``{"experiment", "command", "machine", "rows"}`` atomically (after every finished run, so an
interrupted run keeps what it finished).

References
----------
Lample, Sablayrolles, Ranzato, Denoyer, Jégou. Large Memory Layers with Product Keys. NeurIPS 2019.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .. import _checks, ops
from .._io import atomic_write_text
from .._threads import single_threaded_blas
from ..layers import (
    MLP,
    BatchNorm,
    LayerBase,
    LayerNorm,
    Linear,
    ProductKeyMemory,
    ReLU,
    RMSNorm,
    Sequential,
    SketchMemory,
)
from ..layers.base import check_dtype, check_features, check_seed, child_seeds, scope
from ..layers.hma import MemoryTokens
from ..layers.pkm_diagnostics import slot_statistics
from ..layers.product_keys import QUERY_NORMS
from ..models.feedforward import FeedForwardModel
from ..models.hma import MemoryTokensClassifier
from ..train.optim import make_optimizer, param_groups
from ._common import check_common, positive_int, progress_bar, seed_int

log = logging.getLogger(__name__)

__all__ = [
    "ARMS", "DEFAULTS", "QUICK", "ROW_KEYS", "FlatKeyMemory", "FlatKeyMemoryCache", "build_mlp", "build_mlp_pkm",
    "build_mlp_hma", "build_sketch", "count_flops", "hma_head_flops", "format_table", "key_value_pairs", "main",
    "memory_selections", "mlp_width_for_flops", "pkm_arm_flops", "register_arm", "run", "run_e1", "run_e6",
    "train_and_evaluate",
]  # fmt: skip

#: The task: keys on S^(dim-1), classes in [0, num_classes).
INPUT_DIM = 32
NUM_CLASSES = 100

#: E1's memory arm (also E6's base configuration); the MLP is sized to its FLOPs.
PKM_OPTIONS = {"trunk_dim": 64, "num_keys": 128, "num_heads": 4, "k": 8, "key_dim": 32, "query_norm": "batchnorm"}
#: The CI-sized memory arm.
QUICK_PKM_OPTIONS = {"trunk_dim": 16, "num_keys": 8, "num_heads": 2, "k": 4, "key_dim": 8, "query_norm": "batchnorm"}

#: E1's sketch arm: T·2^b = 16,384 value rows, as many as the product-key arm's N = 128² slots.
SKETCH_OPTIONS = {"num_tables": 4, "num_bits": 12, "signs": False}
#: The CI-sized sketch arm.
QUICK_SKETCH_OPTIONS = {"num_tables": 2, "num_bits": 6, "signs": False}
#: E1's HMA arm (the encoder's width is solved for the FLOPs of the product-key arm).
HMA_OPTIONS = {"feature_dim": 12, "label_dim": 4, "num_heads": 4, "queue_size": 256, "tokens_per_class": 1}
#: The CI-sized HMA arm (its head alone exceeds the quick budget, so the encoder's width is given).
QUICK_HMA_OPTIONS = {
    "feature_dim": 4, "label_dim": 4, "num_heads": 2, "queue_size": 16, "tokens_per_class": 1, "hidden": (8,),
}  # fmt: skip
#: The full runs.
DEFAULTS = {
    "e1": {
        "sizes": (1024, 4096, 16384, 65536), "arms": ("mlp", "mlp+pkm", "sketch", "mlp+hma"), "seeds": (0,),
        "steps": 2000, "batch_size": 256, "pkm": PKM_OPTIONS, "sketch": SKETCH_OPTIONS, "hma": HMA_OPTIONS,
    },
    "e6": {
        "n": 65536, "seeds": (0,), "steps": 1000, "batch_size": 256, "base": PKM_OPTIONS,
        "query_norms": (None, "layernorm", "batchnorm"), "heads": (1, 2, 4, 8), "ks": (4, 8, 16, 32),
        "num_keys": (32, 64, 128), "flat_num_keys": 64,
        "ablations": ("query_norm", "heads_k", "num_keys", "keys"),
    },
}  # fmt: skip
#: The CI sizes (seconds).
QUICK = {
    "e1": {
        "sizes": (128, 512), "arms": ("mlp", "mlp+pkm", "sketch", "mlp+hma"), "seeds": (0,), "steps": 40,
        "batch_size": 32, "pkm": QUICK_PKM_OPTIONS, "sketch": QUICK_SKETCH_OPTIONS, "hma": QUICK_HMA_OPTIONS,
    },
    "e6": {
        "n": 256, "seeds": (0,), "steps": 30, "batch_size": 32, "base": QUICK_PKM_OPTIONS,
        "query_norms": (None, "layernorm", "batchnorm"), "heads": (1, 2), "ks": (2, 4), "num_keys": (4, 8),
        "flat_num_keys": 4, "ablations": ("query_norm", "heads_k", "num_keys", "keys"),
    },
}  # fmt: skip

#: The keys of every row, per experiment.
ROW_KEYS = {
    "e1": (
        "experiment", "arm", "config", "n", "seed", "steps", "batch_size", "epochs", "train_accuracy",
        "final_loss", "flops_per_row", "params", "usage", "kl_to_uniform", "coverage_99", "wall_time_s",
        "transductive_accuracy",
    ),
    "e6": (
        "experiment", "ablation", "keys", "query_norm", "num_heads", "k", "num_slots", "n", "seed", "steps",
        "batch_size", "epochs", "train_accuracy", "final_loss", "flops_per_row", "params", "usage",
        "kl_to_uniform", "coverage_99", "wall_time_s",
    ),
}  # fmt: skip
#: The E6 ablation groups, in table order.
ABLATIONS = ("query_norm", "heads_k", "num_keys", "keys")
#: Rows evaluated per forward in the evaluation pass (bounds the flat memory's (B, H, N) scores).
EVAL_CHUNK = 1024


# --- the task --------------------------------------------------------------------------------------------


def key_value_pairs(n, *, dim=INPUT_DIM, num_classes=NUM_CLASSES, rng, dtype=np.float64):
    """n keys uniform on the unit sphere :math:`S^{dim-1}` and a uniform class in [0, num_classes) for each.

    Parameters
    ----------
    n, dim, num_classes : int
    rng : np.random.Generator, keyword-only
    dtype : float32 or float64, keyword-only

    Returns
    -------
    keys : ndarray, shape (n, dim)
        Normalised Gaussian vectors (uniform on the sphere).
    labels : int64 ndarray, shape (n,)
    """
    n = _checks.check_positive_int(n, "n")
    dim = _checks.check_positive_int(dim, "dim")
    num_classes = _checks.check_positive_int(num_classes, "num_classes")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a np.random.Generator, got {type(rng).__name__}")
    keys = rng.standard_normal((n, dim))  # (n, dim)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    labels = rng.integers(0, num_classes, n)  # (n,)
    return keys.astype(check_dtype(dtype)), labels.astype(np.int64)


# --- flat keys (E6) --------------------------------------------------------------------------------------


class FlatKeyMemoryCache(NamedTuple):
    lead: tuple  # the input's leading axes (x is (*lead, input_dim), read as (B, input_dim))
    query: Any  # LinearCache: x (B, X) -> z (B, H·dk)
    norm: Any  # the norm's cache (z -> q, (B, H·dk)), or None without a query norm
    queries: np.ndarray  # (B, H, dk)
    keys: np.ndarray  # (H, N, dk)
    topk: ops.TopKCache  # indices int (B, H, k) into the (B, H, N) scores
    softmax: Any  # SoftmaxCache: out (B, H, k), the weights w
    bag: ops.EmbeddingBagCache  # the value read over (B, H·k) lookups


class FlatKeyMemory(LayerBase):
    r"""A key-value memory with N full keys per head and a brute-force top k: the product memory's baseline.

    The same layer as :class:`~refmann.layers.ProductKeyMemory` (query network, optional query norm, top k
    per head, softmax over the k, one value table, heads summed) except that each head scores all N keys
    :math:`K_{h,i} \in \mathbb R^{d_k}` directly, at :math:`H N d_k` multiply-adds per row instead of
    :math:`H \sqrt N d_k` (Lample et al. 2019, §3.2 "flat keys").

    Parameters
    ----------
    input_dim, output_dim : int, keyword-only
        X and Y.
    num_slots : int, keyword-only
        N.
    num_heads, k, key_dim : int, keyword-only
        H, the slots read per head (1 ≤ k ≤ N), dk.
    query_norm : {None, "batchnorm", "layernorm"}, keyword-only
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"query.weight"`` (X, H·dk), ``"query.bias"`` (H·dk,); ``"query_norm.*"`` with a norm;
        ``"keys"`` (H, N, dk) from :math:`U(\pm 1/\sqrt{d_k/2})` — entry for entry the distribution of a
        product memory's concatenated sub-keys :math:`[C^1_i; C^2_j]`; ``"values"`` (N, Y) from
        :math:`N(0, 1/Y)`.

    Notes
    -----
    .. math::
        q = \mathrm{norm}(x W + b), \quad s_{h,i} = q_h \cdot K_{h,i}, \quad
        \sigma_h = \operatorname{top}_k s_h, \quad w_h = \operatorname{softmax}(s_{h,\sigma_h}), \quad
        y = \sum_h \sum_r w_{h,r} V_{\sigma_{h,r}}

    Backward (the selection constant, :func:`refmann.ops.top_k_backward` scattering into the (B, H, N)
    scores): :math:`\bar q_h = \sum_i \bar s_{h,i} K_{h,i}`, :math:`\bar K_{h,i} = \sum_b \bar s_{b,h,i}
    q_{b,h}`; the values' gradient is a :class:`~refmann.ops.RowGrad`
    (:func:`refmann.ops.embedding_bag_backward`). Ties in the top k go to the smaller slot, as in the
    product search, so with keys :math:`K_{h, i n + j} = [C_{h,0,i}; C_{h,1,j}]` it selects what
    :class:`~refmann.layers.ProductKeyMemory` selects (up to rounding of the scores).
    """

    def __init__(
        self, *, input_dim, output_dim, num_slots, num_heads, k, key_dim, query_norm=None, seed=0, dtype=np.float64
    ):
        X = self.input_dim = _checks.check_positive_int(input_dim, "input_dim")
        Y = self.output_dim = _checks.check_positive_int(output_dim, "output_dim")
        N = self.num_slots = _checks.check_positive_int(num_slots, "num_slots")
        H = self.num_heads = _checks.check_positive_int(num_heads, "num_heads")
        self.k = _checks.check_positive_int(k, "k")
        if self.k > N:
            raise ValueError(f"k: expected 1 <= k <= num_slots = {N}, got {self.k}")
        dk = self.key_dim = _checks.check_positive_int(key_dim, "key_dim")
        if dk % 2:
            raise ValueError(f"key_dim: expected an even int (as a product memory's two halves), got {dk}")
        if query_norm is not None and (not isinstance(query_norm, str) or query_norm not in QUERY_NORMS):
            raise ValueError(f"query_norm: expected None or one of {sorted(QUERY_NORMS)}, got {query_norm!r}")
        self.query_norm = query_norm
        self.dtype = check_dtype(dtype)
        s = child_seeds(check_seed(seed), 3)
        children = [("query", Linear(input_dim=X, output_dim=H * dk, seed=s[0], dtype=self.dtype))]
        if query_norm is not None:
            children.append(("query_norm", QUERY_NORMS[query_norm](dim=H * dk, dtype=self.dtype)))
        self._set_children(children)
        bound = 1.0 / np.sqrt(dk // 2)
        self.params["keys"] = np.random.default_rng(s[1]).uniform(-bound, bound, (H, N, dk)).astype(self.dtype)
        values = np.random.default_rng(s[2]).standard_normal((N, Y)) / np.sqrt(Y)
        self.params["values"] = values.astype(self.dtype)
        self._sizes = {
            "input_dim": X, "output_dim": Y, "num_slots": N, "num_heads": H, "k": self.k, "key_dim": dk,
            "query_norm": query_norm,
        }  # fmt: skip

    def flops_per_row(self) -> int:
        """Multiply-adds per row: the query map, the H·N·dk scores and the H·k·Y read (see :func:`count_flops`)."""
        H, k = self.num_heads, self.k
        return count_flops(self.children["query"]) + H * self.num_slots * self.key_dim + H * k * self.output_dim

    def forward(self, x, *, params=None):
        """Read the memory: (..., input_dim) -> (..., output_dim) (leading axes are one batch of queries).

        Parameters
        ----------
        x : ndarray, shape (B, input_dim)
        params : dict, keyword-only, optional

        Returns
        -------
        y : ndarray, shape (B, output_dim)
        cache : FlatKeyMemoryCache
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
        queries = z.reshape(B, H, self.key_dim)  # (B, H, dk)
        scores = np.matmul(queries.transpose(1, 0, 2), p["keys"].transpose(0, 2, 1)).transpose(1, 0, 2)  # (B, H, N)
        top, ct = ops.top_k_forward(scores, k=k)  # (B, H, k)
        w, cw = ops.softmax_forward(top, axis=-1)  # (B, H, k)
        y, cb = ops.embedding_bag_forward(p["values"], w.reshape(B, H * k), indices=ct.indices.reshape(B, H * k))
        cache = FlatKeyMemoryCache(lead, cq, cn, queries, p["keys"], ct, cw, cb)
        return y.reshape(*lead, self.output_dim), cache

    def backward(self, dy, cache):
        r"""``(dx, grads)``; ``grads["values"]`` is a :class:`~refmann.ops.RowGrad` over the distinct slots read.

        .. math::
            \bar w_{b,h,r} = V_{\sigma_{b,h,r}} \cdot \bar y_b, \quad
            \bar t_{b,h} = w_{b,h} \odot (\bar w_{b,h} - \langle w_{b,h}, \bar w_{b,h} \rangle), \quad
            \bar s = \mathrm{scatter}_\sigma(\bar t), \quad
            \bar q_{b,h} = \bar s_{b,h} K_h, \quad \bar K_h = \bar s_{\cdot,h}^\top q_{\cdot,h}
        """
        B, H, k = cache.softmax.out.shape
        if _checks.enabled():
            _checks.check_dout(dy, cache.lead + (self.output_dim,), "dy")
        dy2 = np.reshape(dy, (B, self.output_dim))  # (B, Y)
        dvalues, dw = ops.embedding_bag_backward(dy2, cache.bag)  # RowGrad, (B, H·k)
        (dtop,) = ops.softmax_backward(dw.reshape(B, H, k), cache.softmax)  # (B, H, k)
        (dscores,) = ops.top_k_backward(dtop, cache.topk)  # (B, H, N)
        ds = dscores.transpose(1, 0, 2)  # (H, B, N)
        dqueries = np.matmul(ds, cache.keys).transpose(1, 0, 2)  # (B, H, dk)
        dkeys = np.matmul(ds.transpose(0, 2, 1), cache.queries.transpose(1, 0, 2))  # (H, N, dk)
        dz = dqueries.reshape(B, H * self.key_dim)  # (B, H·dk)
        c = self.children
        grads: dict[str, Any] = {"keys": dkeys, "values": dvalues}
        if cache.norm is not None:
            dz, g = c["query_norm"].backward(dz, cache.norm)
            grads.update(scope("query_norm", g))
        dx, g = c["query"].backward(dz, cache.query)  # (B, X)
        grads.update(scope("query", g))
        return dx.reshape(*cache.lead, self.input_dim), {key: grads[key] for key in self.params}


# --- FLOPs -----------------------------------------------------------------------------------------------


def count_flops(layer, *, batch_size=None) -> int:
    r"""Multiply-adds per input row of a layer network (the E1 compute measure).

    A layer with a ``flops_per_row()`` method (:class:`FlatKeyMemory`, a later arm's memory) counts itself;
    a :class:`~refmann.layers.Linear` costs ``input_dim · output_dim``; a
    :class:`~refmann.layers.ProductKeyMemory` its children (the query map, Memory+'s gate and output maps)
    plus the sub-scores :math:`H n d_k` and the read :math:`H k Y` (PEER adds :math:`H k X` for the expert
    inputs); HMA's :class:`~refmann.layers.hma.MemoryTokens` head :func:`hma_head_flops` (which depends on
    ``batch_size``); a composite the sum of its children; activations and norms nothing (elementwise work
    is not counted).

    Parameters
    ----------
    layer : Layer
    batch_size : int, keyword-only, optional
        Rows per batch: needed only by an HMA head (its stage 2 attends over the batch), ignored otherwise.

    Raises
    ------
    TypeError
        A leaf layer with parameters that none of these rules covers (it would be silently undercounted).
    ValueError
        An HMA head without ``batch_size``.
    """
    if callable(getattr(layer, "flops_per_row", None)):
        return int(layer.flops_per_row())
    if isinstance(layer, MemoryTokens):
        if batch_size is None:
            raise ValueError(
                "batch_size: an HMA head's FLOPs per row depend on the batch (stage 2 attends over it); pass "
                "count_flops(..., batch_size=B)"
            )
        return hma_head_flops(layer, batch_size=batch_size)
    if isinstance(layer, Linear):
        return layer.input_dim * layer.output_dim
    if isinstance(layer, ProductKeyMemory):
        H, n, dk, k = layer.num_heads, layer.num_keys, layer.key_dim, layer.k
        total = sum(count_flops(child) for child in layer.children.values())
        total += H * n * dk + H * k * layer.output_dim
        if getattr(layer, "experts", False):
            total += H * k * layer.input_dim
        return total
    if isinstance(layer, (BatchNorm, LayerNorm, RMSNorm)):
        return 0
    children = getattr(layer, "children", None)
    if children:
        return sum(count_flops(child, batch_size=batch_size) for child in children.values())
    if not getattr(layer, "params", None):
        return 0
    raise TypeError(f"count_flops: no rule for a {type(layer).__name__} with parameters (give it flops_per_row())")


def hma_head_flops(head, *, batch_size, mode="transductive") -> int:
    r"""Multiply-adds per row of a :class:`~refmann.layers.hma.MemoryTokens` head (HMA's two blocks and logits).

    Each attention block of width D costs, per query row, :math:`3D^2` for its query and its own key and
    value, :math:`2 T D` for the scores and the weighted sum over its T keys (all heads together), and
    :math:`8 D^2` for the feed-forward block D → 4D → D; a part of the keys shared by the batch (the queue,
    the tokens) is projected once per batch, :math:`2 R D^2 / B` per row for R shared rows. With S queue
    rows (0 without the queue), :math:`G = C m_s` tokens (0 without them) and P logit inputs:

    .. math::
        \underbrace{11 D^2 + 2 S D^2 / B + 2 (1 + S) D}_{\text{stage 1}}
        + \underbrace{11 D^2 + 2 G D^2 / B + 2 (B' + G) D}_{\text{stage 2}} + P C

    with :math:`B' = B` in the transductive mode (each row attends to the whole batch) and 1 per sample.
    Elementwise work (norms, softmax, GELU, the residuals) is not counted, as in :func:`count_flops`.

    Parameters
    ----------
    head : MemoryTokens
    batch_size : int, keyword-only
        B.
    mode : {"transductive", "per_sample"}, keyword-only

    Returns
    -------
    int
        Rounded down.
    """
    if not isinstance(head, MemoryTokens):
        raise TypeError(f"head: expected a MemoryTokens layer, got {type(head).__name__}")
    B = _checks.check_positive_int(batch_size, "batch_size")
    if mode not in ("transductive", "per_sample"):
        raise ValueError(f"mode: expected 'transductive' or 'per_sample', got {mode!r}")
    D, C = head.dim, head.num_classes
    S = head.queue_size if head.use_queue else 0
    G = C * head.tokens_per_class if head.use_tokens else 0
    P = head.children["head"].input_dim
    stage1 = 11 * D * D + 2 * S * D * D / B + 2 * (1 + S) * D
    stage2 = 11 * D * D + 2 * G * D * D / B + 2 * ((B if mode == "transductive" else 1) + G) * D
    return int(stage1 + stage2 + P * C)


def pkm_arm_flops(
    input_dim=INPUT_DIM, num_classes=NUM_CLASSES, *, trunk_dim, num_keys, num_heads, k, key_dim, keys="product",
    **_ignored,
) -> int:  # fmt: skip
    r"""The FLOPs per row of :func:`build_mlp_pkm`'s network, by formula (what :func:`count_flops` counts).

    .. math:: X T + T H d_k + H \cdot (n\ \text{or}\ N) \cdot d_k + H k C

    for the trunk (X → T), the query map, the search (n = num_keys sub-keys per half; N = n² flat keys) and
    the read of C-wide values.
    """
    search = num_keys if keys == "product" else num_keys**2
    return (
        input_dim * trunk_dim + trunk_dim * num_heads * key_dim + num_heads * search * key_dim
        + num_heads * k * num_classes
    )  # fmt: skip


def _mlp_flops(input_dim, num_classes, width, depth):
    return input_dim * width + (depth - 1) * width * width + width * num_classes


def mlp_width_for_flops(input_dim, num_classes, flops, *, depth=2) -> int:
    """The hidden width w of a ``depth``-hidden-layer MLP X → w → … → w → C closest to ``flops`` multiply-adds.

    :math:`X w + (L - 1) w^2 + w C` (ties: the smaller w); at least 1.
    """
    depth = _checks.check_positive_int(depth, "depth")
    flops = _checks.check_positive_int(flops, "flops")
    a, b = depth - 1, input_dim + num_classes
    w = flops / b if a == 0 else (-b + math.sqrt(b * b + 4 * a * flops)) / (2 * a)
    candidates = {max(1, int(math.floor(w))), max(1, int(math.ceil(w)))}
    return min(sorted(candidates), key=lambda c: abs(_mlp_flops(input_dim, num_classes, c, depth) - flops))


# --- the arms --------------------------------------------------------------------------------------------

#: Arm name -> ``builder(input_dim, num_classes, *, seed, dtype, **options) -> (network, step)``.
ARMS: dict[str, Callable] = {}


def register_arm(name: str):
    """Decorator: add a builder to :data:`ARMS` under ``name`` (refused if the name is taken)."""

    def add(builder):
        if name in ARMS:
            raise ValueError(f"register_arm: the arm {name!r} is already registered")
        ARMS[name] = builder
        return builder

    return add


@register_arm("mlp")
def build_mlp(input_dim, num_classes, *, seed=0, dtype=np.float64, hidden=None, depth=2, flops=None, lr=3e-3):
    """The plain arm: a ReLU MLP sized to a FLOP budget, trained with Adam.

    Parameters
    ----------
    input_dim, num_classes : int
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only
    hidden : sequence of int, keyword-only, optional
        Explicit hidden sizes (then ``depth`` and ``flops`` are ignored).
    depth : int, keyword-only
        Hidden layers of equal width.
    flops : int, keyword-only, optional
        Multiply-adds per row to match (:func:`mlp_width_for_flops`); default: those of
        :func:`build_mlp_pkm` with its default options (:func:`pkm_arm_flops`).
    lr : float, keyword-only
        Adam's learning rate.

    Returns
    -------
    network : refmann.layers.MLP
    step : callable
    """
    if hidden is None:
        target = pkm_arm_flops(input_dim, num_classes, **PKM_OPTIONS) if flops is None else flops
        hidden = (mlp_width_for_flops(input_dim, num_classes, target, depth=depth),) * depth
    network = MLP(
        input_dim=input_dim, hidden_dims=hidden, output_dim=num_classes, activation="relu", seed=seed, dtype=dtype
    )
    return network, make_optimizer("adam", lr=lr)


@register_arm("mlp+pkm")
def build_mlp_pkm(
    input_dim, num_classes, *, seed=0, dtype=np.float64, trunk_dim=64, num_keys=128, num_heads=4, k=8, key_dim=32,
    query_norm="batchnorm", keys="product", lr=3e-4, values_lr=3e-2,
):  # fmt: skip
    """The memory arm: a ReLU trunk, then a memory layer whose read is the logits.

    Parameters
    ----------
    input_dim, num_classes : int
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only
    trunk_dim : int, keyword-only
        T, the width of the trunk ``Linear(X, T)`` + ReLU.
    num_keys : int, keyword-only
        n: the memory has N = n² slots (product keys: n sub-keys per half; flat keys: N keys).
    num_heads, k, key_dim : int, keyword-only
        H, slots per head, dk.
    query_norm : {None, "batchnorm", "layernorm"}, keyword-only
    keys : {"product", "flat"}, keyword-only
        :class:`~refmann.layers.ProductKeyMemory` or :class:`FlatKeyMemory`.
    lr : float, keyword-only
        Adam's learning rate for everything but the values.
    values_lr : float, keyword-only
        Lazy :func:`~refmann.train.optim.sparse_adam`'s for the value table (parameter group ``"values"``).

    Returns
    -------
    network : refmann.layers.Sequential
        ``"trunk"`` (Linear), ``"act"`` (ReLU), ``"memory"``.
    step : callable
        :func:`~refmann.train.optim.param_groups` ``{"values": sparse_adam, "*": adam}``.
    """
    if keys not in ("product", "flat"):
        raise ValueError(f"keys: expected 'product' or 'flat', got {keys!r}")
    s = child_seeds(check_seed(seed), 2)
    memory_kw = dict(num_heads=num_heads, k=k, key_dim=key_dim, query_norm=query_norm, seed=s[1], dtype=dtype)
    if keys == "product":
        memory = ProductKeyMemory(input_dim=trunk_dim, output_dim=num_classes, num_keys=num_keys, **memory_kw)
    else:
        num_keys = _checks.check_positive_int(num_keys, "num_keys")
        memory = FlatKeyMemory(input_dim=trunk_dim, output_dim=num_classes, num_slots=num_keys**2, **memory_kw)
    network = Sequential(
        layers=[
            ("trunk", Linear(input_dim=input_dim, output_dim=trunk_dim, seed=s[0], dtype=dtype)),
            ("act", ReLU(dtype=dtype)),
            ("memory", memory),
        ]
    )
    step = param_groups({"values": make_optimizer("sparse_adam", lr=values_lr), "*": make_optimizer("adam", lr=lr)})
    return network, step


@register_arm("sketch")
def build_sketch(
    input_dim, num_classes, *, seed=0, dtype=np.float64, num_tables=4, num_bits=12, signs=False, gate=False,
    values_lr=3e-2, lr=3e-4,
):  # fmt: skip
    """The sketch arm: a :class:`~refmann.layers.SketchMemory` over the key whose read *is* the logits.

    SimHash of the key in T tables of b bits picks T rows of class scores, averaged (``combine="none"``):
    each bucket votes for the classes of the keys it holds. Nothing but the value table (and the gate,
    if any) is trained, with lazy :func:`~refmann.train.optim.sparse_adam` at ``values_lr``; the hash is
    fixed (refmann's reconstruction of Panigrahy et al. 2021; no gradient through the hash).

    Parameters
    ----------
    input_dim, num_classes : int
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only
    num_tables, num_bits : int, keyword-only
        T and b: T·2^b value rows of ``num_classes`` scores.
    signs, gate : bool, keyword-only
        The layer's count-sketch signs and read gate.
    values_lr : float, keyword-only
        The value table's learning rate (parameter group ``"*values"``).
    lr : float, keyword-only
        Adam's, for the gate.

    Returns
    -------
    network : refmann.layers.Sequential
        ``"memory"``.
    step : callable
    """
    memory = SketchMemory(
        input_dim=input_dim, output_dim=num_classes, num_tables=num_tables, num_bits=num_bits, combine="none",
        signs=signs, gate=gate, seed=seed, dtype=dtype,
    )  # fmt: skip
    step = param_groups({"*values": make_optimizer("sparse_adam", lr=values_lr), "*": make_optimizer("adam", lr=lr)})
    return Sequential(layers=[("memory", memory)]), step


@register_arm("mlp+hma")
def build_mlp_hma(
    input_dim, num_classes, *, seed=0, dtype=np.float64, hidden=None, flops=None, batch_size=256, feature_dim=12,
    label_dim=4, num_heads=4, queue_size=256, tokens_per_class=1, momentum=0.99, lr=1e-3, **head,
):  # fmt: skip
    """The HMA arm: a ReLU MLP encoder X → w → d and the memory-tokens head (queue + synthetic tokens), on Adam.

    Parameters
    ----------
    input_dim, num_classes : int
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only
    hidden : sequence of int, keyword-only, optional
        The encoder's hidden widths (then ``flops`` is ignored).
    flops : int, keyword-only, optional
        Multiply-adds per row to match at ``batch_size``: one hidden layer of the width w whose encoder
        :math:`X w + w d` brings the total closest to it (at least 1); default those of
        :func:`build_mlp_pkm` with its default options.
    batch_size : int, keyword-only
        The training batch, for the FLOPs (stage 2 attends over it).
    feature_dim, label_dim, num_heads, queue_size, tokens_per_class : int, keyword-only
        d, d_l, H, S, m_s of :class:`~refmann.layers.hma.MemoryTokens` (D = d + d_l divisible by H).
    momentum : float, keyword-only
        The momentum encoder's, which writes the queue after each step.
    lr : float, keyword-only
        Adam's.
    **head
        More :class:`~refmann.layers.hma.MemoryTokens` keywords (``use_queue``, ``use_tokens``, ...).

    Returns
    -------
    network : refmann.models.hma.MemoryTokensClassifier
        ``params`` ``"encoder.*"`` and ``"head.*"``; :func:`train_and_evaluate` calls its
        ``update_memory`` after every step and evaluates it per sample.
    step : callable
    """
    s = child_seeds(check_seed(seed), 2)
    kw = dict(
        num_classes=num_classes, feature_dim=feature_dim, label_dim=label_dim, num_heads=num_heads,
        queue_size=queue_size, tokens_per_class=tokens_per_class, momentum=momentum, seed=s[1], dtype=dtype, **head,
    )  # fmt: skip
    if hidden is None:
        target = pkm_arm_flops(input_dim, num_classes, **PKM_OPTIONS) if flops is None else flops
        probe = MemoryTokens(
            feature_dim=feature_dim, num_classes=num_classes, label_dim=label_dim, num_heads=num_heads,
            queue_size=queue_size, tokens_per_class=tokens_per_class, dtype=dtype, **head,
        )  # fmt: skip
        rest = target - hma_head_flops(probe, batch_size=batch_size)
        hidden = (max(1, int(round(rest / (input_dim + feature_dim)))),)
    encoder = MLP(
        input_dim=input_dim, hidden_dims=tuple(hidden), output_dim=feature_dim, activation="relu", seed=s[0],
        dtype=dtype,
    )  # fmt: skip
    return MemoryTokensClassifier(encoder, **kw), make_optimizer("adam", lr=lr)


# --- training and evaluation -----------------------------------------------------------------------------


def memory_selections(layer, cache) -> list:
    """``[(num_slots, slots (B, H, k), weights (B, H, k)), ...]`` of every memory layer in a network's forward.

    Walks :class:`~refmann.layers.Sequential` networks (their cache is the children's, in order); a
    :class:`~refmann.layers.ProductKeyMemory` or :class:`FlatKeyMemory` contributes its selected slots and
    softmax weights.
    """
    if isinstance(layer, ProductKeyMemory):
        return [(layer.num_keys**2, cache.search.slots, cache.softmax.out)]
    if isinstance(layer, FlatKeyMemory):
        return [(layer.num_slots, cache.topk.indices, cache.softmax.out)]
    if isinstance(layer, SketchMemory):  # its T hash rows, equally weighted (a bucket's usage)
        rows = cache.bag.indices  # (B, T)
        return [(layer.num_rows, rows[:, None, :], np.full(rows.shape, 1.0 / rows.shape[1])[:, None, :])]
    if isinstance(layer, Sequential):
        found = []
        for child, child_cache in zip(layer.children.values(), cache):
            found += memory_selections(child, child_cache)
        return found
    return []


def _softmax_ce(logits, labels):
    """Mean softmax cross-entropy, in float64: (B, C), (B,) -> float."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))  # (B,)
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


def train_and_evaluate(network, step, keys, labels, *, steps, batch_size, seed, bar=None) -> dict:
    r"""Train ``network`` with ``step`` on the pairs, then score memorisation in evaluation mode.

    Batches are drawn without replacement from a fresh permutation each epoch (a partial last batch is
    dropped: every step sees ``min(batch_size, n)`` pairs). The loss is :class:`FeedForwardModel`'s
    ``"softmax_ce"``; the values' row gradients stay :class:`~refmann.ops.RowGrad` for a sparse optimizer.

    A network with ``update_memory`` (HMA's host, :class:`~refmann.models.hma.MemoryTokensClassifier`) gets
    it called with the batch after each optimizer step (the momentum encoder moves, the queue is written),
    the trained arrays first copied into its own ``params``, which it reads. HMA's host is evaluated per
    sample (``mode="per_sample"``: a prediction does not depend on the rest of the batch) for
    ``train_accuracy`` and ``final_loss``, and transductively in consecutive batches of ``min(batch_size,
    n)`` pairs for ``transductive_accuracy`` (the last batch may be smaller).

    Parameters
    ----------
    network : Layer
    step : callable
        ``step(params, grads, state) -> (params, state)``.
    keys : ndarray, shape (n, X)
    labels : int ndarray, shape (n,)
    steps, batch_size : int, keyword-only
    seed : int, keyword-only
        The batch order.
    bar : tqdm, keyword-only, optional
        Advanced once per step.

    Returns
    -------
    dict
        ``train_accuracy`` (argmax = class over all n, evaluation mode), ``final_loss`` (mean cross-entropy
        over all n, evaluation mode), ``usage``, ``kl_to_uniform``, ``coverage_99`` of the first memory layer
        (None without one), ``flops_per_row`` (at ``min(batch_size, n)`` rows per batch), ``params``,
        ``wall_time_s`` (training and evaluation), ``transductive_accuracy`` (None but for HMA's host).
    """
    steps = _checks.check_positive_int(steps, "steps")
    batch_size = _checks.check_positive_int(batch_size, "batch_size")
    n = len(keys)
    B = min(batch_size, n)
    start = time.perf_counter()
    model = FeedForwardModel(network, loss="softmax_ce")
    model.train()
    rng = np.random.default_rng(seed)
    order, pos, state = rng.permutation(n), 0, None
    update = getattr(network, "update_memory", None)
    hma = isinstance(network, MemoryTokensClassifier)
    with _checks.unchecked():  # the pairs are ours and checked once; the inner loop skips the per-op scans
        for t in range(steps):
            if pos + B > n:
                order, pos = rng.permutation(n), 0
            batch = order[pos : pos + B]
            pos += B
            loss, grads = model.loss_and_grads(keys[batch], labels[batch], row_grads=True)
            model.params, state = step(model.params, grads, state)
            if update is not None:
                update(keys[batch], labels[batch], params=model.params)
            if bar is not None:
                bar.update(1)
                if t % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.3g}")
        if update is not None:
            network.params.update(model.params)  # the host holds the trained arrays (its predict reads them)
        if not all(np.all(np.isfinite(v)) for v in model.params.values()):
            raise FloatingPointError("train_and_evaluate: the parameters became non-finite")
        model.eval()
        logits, found, transductive = [], [], None
        mode = {"mode": "per_sample"} if hma else {}
        for i in range(0, n, EVAL_CHUNK):
            out, cache = network.forward(keys[i : i + EVAL_CHUNK], params=model.params, **mode)
            logits.append(out)
            found.append(memory_selections(network, cache))
        if hma:  # stage 2 over consecutive batches of B pairs, as in training
            hits = 0
            for i in range(0, n, B):
                out, _ = network.forward(keys[i : i + B], params=model.params, mode="transductive")
                hits += int(np.sum(np.argmax(out, axis=1) == labels[i : i + B]))
            transductive = hits / n
        model.train()
    logits = np.concatenate(logits)  # (n, C)
    out = {
        "train_accuracy": float(np.mean(np.argmax(logits, axis=1) == labels)),
        "final_loss": _softmax_ce(logits, labels),
        "usage": None,
        "kl_to_uniform": None,
        "coverage_99": None,
    }
    if found and found[0]:
        num_slots = found[0][0][0]
        slots = np.concatenate([f[0][1] for f in found])
        weights = np.concatenate([f[0][2] for f in found])
        stats = slot_statistics(slots, weights, num_slots)
        out.update(usage=stats.usage, kl_to_uniform=stats.kl_to_uniform, coverage_99=stats.coverage_99)
    out["flops_per_row"] = count_flops(network, batch_size=B)
    out["params"] = int(sum(np.size(v) for v in model.params.values()))
    out["wall_time_s"] = time.perf_counter() - start
    out["transductive_accuracy"] = transductive
    return out


def _run_seeds(seed, n):
    """Seeds of the data, the initialisation and the batch order for (seed, n): the same for every arm."""
    data, init, order = np.random.SeedSequence([seed, n]).spawn(3)
    return data, int(init.generate_state(1)[0] % 2**31), int(order.generate_state(1)[0] % 2**31)


def _describe(arm, network, options) -> str:
    if isinstance(network, MLP):
        return "MLP " + " → ".join(str(d) for d in (network.input_dim, *network.hidden_dims, network.output_dim))
    if arm == "mlp+pkm":
        o = {**PKM_OPTIONS, **options}
        norm = {None: "none", "batchnorm": "BN", "layernorm": "LN"}[o["query_norm"]]
        kind = "flat" if o.get("keys", "product") == "flat" else "PKM"
        return (
            f"trunk {o['trunk_dim']}, {kind} N={o['num_keys']}² H={o['num_heads']} k={o['k']} dk={o['key_dim']} {norm}"
        )
    if arm == "sketch":
        m = network.children["memory"]
        extra = "".join(f", {name}" for name in ("signs", "gate") if getattr(m, name))
        return f"sketch T={m.num_tables} b={m.num_bits} ({m.num_rows:,} rows){extra}"
    if isinstance(network, MemoryTokensClassifier):
        h = network.head
        memory = [f"S={h.queue_size}"] if h.use_queue else []
        memory += [f"m_s={h.tokens_per_class}"] if h.use_tokens else []
        return (
            f"{_describe('mlp', network.encoder, {})} + HMA D={h.dim} ({', '.join(memory) or 'no memory'}, "
            f"m={network.momentum:g}); eval per sample"
        )
    return arm


def run_e1(
    sizes=DEFAULTS["e1"]["sizes"], *, arms=DEFAULTS["e1"]["arms"], seeds=(0,), steps=DEFAULTS["e1"]["steps"],
    batch_size=DEFAULTS["e1"]["batch_size"], pkm=PKM_OPTIONS, sketch=SKETCH_OPTIONS, hma=HMA_OPTIONS,
    arm_options=None, dtype="float32", progress=False, on_row=None,
):  # fmt: skip
    """E1: train accuracy of each arm against the number of pairs n, at equal FLOPs and equal steps.

    Parameters
    ----------
    sizes : sequence of int
        The numbers of pairs n.
    arms : sequence of str, keyword-only
        Names in :data:`ARMS`.
    seeds : sequence of int, keyword-only
        One row per (arm, n, seed).
    steps, batch_size : int, keyword-only
        The training budget of every run.
    pkm : dict, keyword-only
        Options of ``"mlp+pkm"``; ``"mlp"`` and ``"mlp+hma"`` get ``flops=`` those of this arm
        (:func:`pkm_arm_flops`).
    sketch, hma : dict, keyword-only
        Options of ``"sketch"`` and ``"mlp+hma"`` (which also gets ``batch_size``, for its FLOPs).
    arm_options : dict of str to dict, keyword-only, optional
        More options per arm (they override the above).
    dtype : {"float32", "float64"}, keyword-only
    progress : bool, keyword-only
        A tqdm bar on stderr.
    on_row : callable, keyword-only, optional
        Called with the rows so far after each run (``main`` writes ``--out`` with it).

    Returns
    -------
    rows : list of dict
        Keys ``ROW_KEYS["e1"]``; ``usage``, ``kl_to_uniform``, ``coverage_99`` are None for an arm without a
        memory layer.
    """
    sizes = tuple(_checks.check_positive_int(n, "sizes") for n in sizes)
    if not sizes:
        raise ValueError("sizes: expected at least one n, got none")
    arms = tuple(arms)
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise ValueError(f"arms: expected names from {sorted(ARMS)}, got {list(arms)}")
    seeds, steps, batch_size, dtype = check_common(seeds, steps, batch_size, dtype)
    pkm = {**PKM_OPTIONS, **pkm}
    sketch = {**SKETCH_OPTIONS, **sketch}
    budget = pkm_arm_flops(INPUT_DIM, NUM_CLASSES, **pkm)
    options = {
        "mlp+pkm": pkm, "mlp": {"flops": budget}, "sketch": sketch,
        "mlp+hma": {**HMA_OPTIONS, **hma, "flops": budget},
    }  # fmt: skip
    for arm, extra in (arm_options or {}).items():
        options[arm] = {**options.get(arm, {}), **extra}
    rows = []
    bar = progress_bar(len(sizes) * len(arms) * len(seeds) * steps, "E1 capacity", progress)
    try:
        with single_threaded_blas():
            for seed in seeds:
                for n in sizes:
                    data_seed, init_seed, order_seed = _run_seeds(seed, n)
                    keys, labels = key_value_pairs(n, rng=np.random.default_rng(data_seed), dtype=dtype)
                    for arm in arms:
                        bar.set_description(f"E1 {arm} n={n:,}")
                        sized = {"batch_size": min(batch_size, n)} if arm == "mlp+hma" else {}  # its FLOPs need B
                        network, step = ARMS[arm](
                            INPUT_DIM, NUM_CLASSES, seed=init_seed, dtype=dtype, **{**options.get(arm, {}), **sized}
                        )
                        result = train_and_evaluate(
                            network, step, keys, labels, steps=steps, batch_size=batch_size, seed=order_seed, bar=bar
                        )
                        row = {
                            "experiment": "e1", "arm": arm, "config": _describe(arm, network, options.get(arm, {})),
                            "n": n, "seed": seed, "steps": steps, "batch_size": min(batch_size, n),
                            "epochs": steps * min(batch_size, n) / n, **result,
                        }  # fmt: skip
                        rows.append({key: row[key] for key in ROW_KEYS["e1"]})
                        log.info("E1 %s n=%d seed=%d: accuracy %.4f", arm, n, seed, row["train_accuracy"])
                        if on_row is not None:
                            on_row(rows)
    finally:
        bar.close()
    return rows


def _e6_configs(base, query_norms, heads, ks, num_keys, flat_num_keys, ablations):
    """``[(ablation, options)]`` in table order; options are full ``build_mlp_pkm`` option dicts."""
    base = {"keys": "product", **base}
    out = []
    for ablation in ablations:
        if ablation == "query_norm":
            out += [(ablation, {**base, "query_norm": q}) for q in query_norms]
        elif ablation == "heads_k":
            out += [(ablation, {**base, "num_heads": h, "k": k}) for h in heads for k in ks]
        elif ablation == "num_keys":
            out += [(ablation, {**base, "num_keys": m}) for m in num_keys]
        elif ablation == "keys" and flat_num_keys is not None:
            out += [(ablation, {**base, "num_keys": flat_num_keys, "keys": kind}) for kind in ("product", "flat")]
    return out


def run_e6(
    n=DEFAULTS["e6"]["n"], *, seeds=(0,), steps=DEFAULTS["e6"]["steps"], batch_size=DEFAULTS["e6"]["batch_size"],
    base=PKM_OPTIONS, query_norms=DEFAULTS["e6"]["query_norms"], heads=DEFAULTS["e6"]["heads"],
    ks=DEFAULTS["e6"]["ks"], num_keys=DEFAULTS["e6"]["num_keys"], flat_num_keys=DEFAULTS["e6"]["flat_num_keys"],
    ablations=ABLATIONS, dtype="float32", progress=False, on_row=None,
):  # fmt: skip
    """E6: product-key ablations of the E1 memory arm at one n.

    Parameters
    ----------
    n : int
        The number of pairs.
    seeds, steps, batch_size, dtype, progress, on_row : keyword-only
        As for :func:`run_e1`.
    base : dict, keyword-only
        The base :func:`build_mlp_pkm` options; each ablation changes one or two of them.
    query_norms : sequence of {None, "layernorm", "batchnorm"}, keyword-only
    heads, ks : sequences of int, keyword-only
        The H × k grid (k ≤ num_keys of the base).
    num_keys : sequence of int, keyword-only
        Sub-keys per half n (N = n²).
    flat_num_keys : int or None, keyword-only
        Product against flat keys at N = flat_num_keys²; None leaves that group out.
    ablations : sequence of str, keyword-only
        Groups from :data:`ABLATIONS` to run.

    Returns
    -------
    rows : list of dict
        Keys ``ROW_KEYS["e6"]``, grouped by ``ablation``. A configuration in several groups is trained once.
    """
    n = _checks.check_positive_int(n, "n")
    seeds, steps, batch_size, dtype = check_common(seeds, steps, batch_size, dtype)
    ablations = tuple(ablations)
    bad = [a for a in ablations if a not in ABLATIONS]
    if bad or not ablations:
        raise ValueError(f"ablations: expected names from {list(ABLATIONS)}, got {list(ablations)}")
    for q in query_norms:
        if q is not None and q not in QUERY_NORMS:
            raise ValueError(f"query_norms: expected None or one of {sorted(QUERY_NORMS)}, got {q!r}")
    configs = _e6_configs({**PKM_OPTIONS, **base}, query_norms, heads, ks, num_keys, flat_num_keys, ablations)
    unique = list(dict.fromkeys(json.dumps(o, sort_keys=True) for _, o in configs))
    rows = []
    done: dict[tuple, dict] = {}
    bar = progress_bar(len(unique) * len(seeds) * steps, "E6 ablations", progress)
    try:
        with single_threaded_blas():
            for seed in seeds:
                data_seed, init_seed, order_seed = _run_seeds(seed, n)
                keys, labels = key_value_pairs(n, rng=np.random.default_rng(data_seed), dtype=dtype)
                for ablation, options in configs:
                    tag = (seed, json.dumps(options, sort_keys=True))
                    if tag not in done:
                        bar.set_description(f"E6 {_describe('mlp+pkm', None, options)}")
                        network, step = build_mlp_pkm(INPUT_DIM, NUM_CLASSES, seed=init_seed, dtype=dtype, **options)
                        done[tag] = train_and_evaluate(
                            network, step, keys, labels, steps=steps, batch_size=batch_size, seed=order_seed, bar=bar
                        )
                    row = {
                        "experiment": "e6", "ablation": ablation, "keys": options["keys"],
                        "query_norm": options["query_norm"], "num_heads": options["num_heads"], "k": options["k"],
                        "num_slots": options["num_keys"] ** 2, "n": n, "seed": seed, "steps": steps,
                        "batch_size": min(batch_size, n), "epochs": steps * min(batch_size, n) / n, **done[tag],
                    }  # fmt: skip
                    rows.append({key: row[key] for key in ROW_KEYS["e6"]})
                    if on_row is not None:
                        on_row(rows)
    finally:
        bar.close()
    return rows


#: The experiments by name.
EXPERIMENTS = {"e1": run_e1, "e6": run_e6}


def run(experiment, **config):
    """``run_e1(**config)`` or ``run_e6(**config)``: ``run("e1", **QUICK["e1"])`` is the CI run."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment: expected one of {sorted(EXPERIMENTS)}, got {experiment!r}")
    return EXPERIMENTS[experiment](**config)


# --- output ----------------------------------------------------------------------------------------------


def _num(value, fmt):
    return "—" if value is None else format(value, fmt)


def _format_e1(rows):
    r0 = rows[0]
    lines = [
        f"E1 capacity at fixed compute: {r0['steps']:,} steps of {r0['batch_size']} pairs per run; keys uniform on "
        f"S^{INPUT_DIM - 1}, {NUM_CLASSES} random classes; accuracy and loss on the n training pairs (eval mode); "
        "FLOPs = multiply-adds per row",
        "",
        "| arm | config | n | seed | epochs | train acc | final loss | FLOPs/row | params | usage | KL | cov99 "
        "| time s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    transductive = []
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['config']} | {r['n']:,} | {r['seed']} | {r['epochs']:.1f} | {r['train_accuracy']:.4f} "
            f"| {r['final_loss']:.3f} | {r['flops_per_row']:,} | {r['params']:,} | {_num(r['usage'], '.3f')} "
            f"| {_num(r['kl_to_uniform'], '.3f')} | {_num(r['coverage_99'], '.3f')} | {r['wall_time_s']:.1f} |"
        )
        if r.get("transductive_accuracy") is not None:
            transductive.append(f"{r['arm']} n={r['n']:,} seed {r['seed']}: {r['transductive_accuracy']:.4f}")
    if transductive:
        lines += [
            "",
            "HMA's train acc and loss are per sample; transductively, in batches of the training batch size: "
            + "; ".join(transductive)
            + ".",
        ]
    return lines


def _format_e6(rows):
    r0 = rows[0]
    lines = [
        f"E6 product-key ablations at n = {r0['n']:,} pairs: {r0['steps']:,} steps of {r0['batch_size']} per run "
        f"({r0['epochs']:.1f} epochs); usage, KL to uniform and cov99 (the fraction of slots holding 99% of the "
        "access mass) in eval mode over the n keys; the base configuration appears in every group it belongs to",
        "",
        "| ablation | keys | query norm | H | k | N | seed | train acc | final loss | usage | KL | cov99 | FLOPs/row "
        "| time s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['ablation']} | {r['keys']} | {r['query_norm'] or 'none'} | {r['num_heads']} | {r['k']} "
            f"| {r['num_slots']:,} | {r['seed']} | {r['train_accuracy']:.4f} | {r['final_loss']:.3f} "
            f"| {_num(r['usage'], '.3f')} | {_num(r['kl_to_uniform'], '.3f')} | {_num(r['coverage_99'], '.3f')} "
            f"| {r['flops_per_row']:,} | {r['wall_time_s']:.1f} |"
        )
    return lines


def format_table(rows) -> str:
    """The rows (of one experiment) as a Markdown table under a line stating the setting."""
    if not rows:
        return "(no rows)"
    experiment = rows[0]["experiment"]
    return "\n".join(_format_e1(rows) if experiment == "e1" else _format_e6(rows))


# --- command line ----------------------------------------------------------------------------------------


def _parser():
    p = argparse.ArgumentParser(prog="python -m refmann.experiments.capacity", description=__doc__.splitlines()[0])
    p.add_argument("--experiment", required=True, choices=sorted(EXPERIMENTS), help="e1 (capacity) or e6 (ablations)")
    p.add_argument("--quick", action="store_true", help="the CI sizes (seconds)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=None, help="one run per seed (default 0)")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps per run")
    p.add_argument("--batch-size", type=positive_int, default=None, help="pairs per step (>= 2)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    e1 = p.add_argument_group("E1")
    e1.add_argument("--sizes", type=positive_int, nargs="+", default=None, help="numbers of pairs n")
    e1.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=None)
    e1.add_argument("--num-keys", type=positive_int, default=None, help="memory arm: sub-keys per half (N = n²)")
    e1.add_argument("--heads", type=positive_int, default=None, help="memory arm: H")
    e1.add_argument("--k", type=positive_int, default=None, help="memory arm: slots per head")
    e1.add_argument(
        "--query-norm", choices=("none", *sorted(QUERY_NORMS)), default=None, help="memory arm (default batchnorm)"
    )
    e6 = p.add_argument_group("E6")
    e6.add_argument("--n", type=positive_int, default=None, help="the number of pairs")
    e6.add_argument("--ablations", nargs="+", choices=ABLATIONS, default=None)
    p.add_argument("--out", default=None, metavar="FILE.json", help="also write the rows to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    config = {key: (dict(v) if isinstance(v, Mapping) else v) for key, v in
              (QUICK if args.quick else DEFAULTS)[args.experiment].items()}  # fmt: skip
    for name in ("seeds", "steps", "batch_size"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if config["batch_size"] < 2:
        p.error("--batch-size: expected an integer >= 2 (a batch norm needs two rows)")
    given = {f"--{name.replace('_', '-')}": getattr(args, name) is not None for name in vars(args)}
    e1_flags = [f for f in ("--sizes", "--arms", "--num-keys", "--heads", "--k", "--query-norm") if given[f]]
    e6_flags = [f for f in ("--n", "--ablations") if given[f]]
    if args.experiment == "e1":
        if e6_flags:
            p.error(f"{', '.join(e6_flags)}: E6 flags, not for --experiment e1")
        for flag, key in (("sizes", "sizes"), ("arms", "arms")):
            if getattr(args, flag) is not None:
                config[key] = tuple(getattr(args, flag))
        for flag, key in (("num_keys", "num_keys"), ("heads", "num_heads"), ("k", "k")):
            if getattr(args, flag) is not None:
                config["pkm"][key] = getattr(args, flag)
        if args.query_norm is not None:
            config["pkm"]["query_norm"] = None if args.query_norm == "none" else args.query_norm
        if config["pkm"]["k"] > config["pkm"]["num_keys"]:
            p.error(f"--k: expected at most --num-keys = {config['pkm']['num_keys']}, got {config['pkm']['k']}")
    else:
        if e1_flags:
            p.error(f"{', '.join(e1_flags)}: E1 flags, not for --experiment e6")
        if args.n is not None:
            config["n"] = args.n
        if args.ablations is not None:
            config["ablations"] = tuple(args.ablations)
    from ..bench._proc import machine_info, machine_line

    machine = machine_info()
    command = "python -m refmann.experiments.capacity " + " ".join(sys.argv[1:] if argv is None else argv)
    label = {"e1": "E1 capacity", "e6": "E6 pkm ablations"}[args.experiment]

    def write(rows):
        doc = {"experiment": label, "command": command.strip(), "machine": machine, "rows": rows}
        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")

    start = time.perf_counter()
    rows = run(args.experiment, **config, dtype=args.dtype, progress=not args.quiet, on_row=write if args.out else None)
    print(format_table(rows))
    print(f"\nWall time {time.perf_counter() - start:.0f} s. Machine: {machine_line(machine)}.")
    if args.out:
        write(rows)
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
