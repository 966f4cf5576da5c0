r"""E4: long-tail classification — an MLP, the MLP with a sketch memory, and the MLP encoder with HMA's head.

Run ``python -m refmann.experiments.longtail`` (``--quick`` for the CI sizes, ``--help`` for the flags).

**The data** (seed-methods §5, E4). scikit-learn's bundled digits (1,797 8×8 images, 10 classes, pixels
scaled to [0, 1]; nothing is downloaded), split once, independently of the run seeds
(:func:`digits_split`, :data:`SPLIT_SEED`): ``test_per_class`` images of each class form the balanced
test set (40 per class: 400), the rest is the training pool (134–143 per class). Each seed draws a
long-tailed training set from the pool (:func:`long_tail_indices`): a random ranking of the classes
and :func:`long_tail_counts` examples of the class ranked r, the exponential profile

.. math:: n_r = \mathrm{round}\big(n_{\max}\, \rho^{-r/(C-1)}\big), \qquad r = 0, \dots, C - 1,

so the most frequent class has ρ times the examples of the rarest (n_max = 120, ρ = 50: 120, 78, 50,
33, 21, 14, 9, 6, 4, 2 — 337 images). ``dataset="mixture"`` is the 100-class alternative: a Gaussian
mixture from ``sklearn.datasets.make_classification`` (one cluster per class, 32 features of which 16
informative), with a Zipf profile :math:`n_r = \mathrm{round}(n_{\max} (r + 1)^{-a})`, :math:`a =
\log\rho / \log C` (the same end points).

**The buckets** (:func:`buckets`): a class is *many-shot* with more than ``many_above`` training examples,
*few-shot* with fewer than ``few_below``, *medium* otherwise. ImageNet-LT's thresholds (100 and 20) would
leave digits with one many-shot class, so digits uses 40 and 10 (three many-, three medium-, four
few-shot classes at ρ = 50; ``thresholds`` in the config); the mixture uses the same (6 many-, 30 medium-,
64 few-shot classes at n_max = 200, ρ = 50). The
scores (:func:`bucket_accuracy`) are the mean per-class test accuracy in each bucket and over all classes
(macro accuracy; on a balanced test set it is also the plain accuracy).

**The arms** (:data:`ARMS`, ``builder(input_dim, num_classes, *, seed, dtype, **options) -> (network,
step)``), all trained by softmax cross-entropy on instance-balanced batches (no re-weighting), with the
same budget: ``steps`` Adam steps (lr 1e-3) on batches of ``batch_size``:

- ``"mlp"`` (:func:`build_mlp`): ReLU MLP X → 128 → 128 → C.
- ``"mlp+sketch"`` (:func:`build_mlp_sketch`): the same MLP with a
  :class:`~refmann.layers.SketchMemory` after the penultimate (second) hidden layer, T = 4 SimHash tables
  of b = 10 bits over the 128 activations, read width 128, concatenated (the classifier reads 256
  features); the value tables on lazy :func:`~refmann.train.optim.sparse_adam` at lr 1e-2.
  ``"mlp+sketch-all"`` puts one after every hidden layer (Panigrahy et al.'s "at every layer").
- ``"mlp+hma"`` (:func:`build_mlp_hma`): a ReLU MLP encoder X → 128 → d = 32 and HMA's head
  (:class:`~refmann.models.hma.MemoryTokensClassifier`: d_l = 16, D = 48, 4 heads, m_s = 8 tokens per
  class, a queue of S = 256 rows written with a momentum encoder, m = 0.99, after each step; the
  intent, not the released code's skip rule). It trains transductively (stage 2 attends over the
  training batch, as the paper's code), and is evaluated twice: per sample (refmann's batch-independent
  mode, the primary number) and transductively in shuffled test batches of the training batch size.

``run(**config) -> rows`` (keys :data:`ROW_KEYS`), :func:`summarise` (mean ± s.d. over seeds),
``format_table(rows) -> str``, ``main(argv=None)``; ``--out FILE.json`` writes ``{"experiment",
"command", "machine", "config", "rows", "summary"}`` atomically after every finished run.

:func:`fit` and :func:`predict` (the training loop with HMA's ``update_memory`` after each optimizer
step, and the evaluation in either mode) are shared with :mod:`refmann.experiments.few_labels`.

References
----------
Qiu, Liu, Yan, Zhang, Fu. Heterogenous Memory Augmented Neural Networks. arXiv:2310.10909, 2023.
Panigrahy, Wang, Zaheer. Sketch based Memory for Neural Networks. AISTATS 2021.
Liu, Miao, Zhan, Wang, Gong, Yu. Large-Scale Long-Tailed Recognition in an Open World. CVPR 2019 (the
many/medium/few-shot split of ImageNet-LT).
Cui, Jia, Lin, Song, Belongie. Class-Balanced Loss Based on Effective Number of Samples. CVPR 2019 (the
exponential long-tail profile and the imbalance ratio).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping

import numpy as np

from .. import _checks
from .._io import atomic_write_text
from .._threads import single_threaded_blas
from ..layers import MLP
from ..layers.base import check_dtype, check_seed
from ..models.feedforward import FeedForwardModel
from ..models.hma import MemoryTokensClassifier
from ..train.optim import make_optimizer, param_groups
from ._common import check_common, mean_sd, positive_int, progress_bar, seed_int

log = logging.getLogger(__name__)

__all__ = [
    "ARMS", "BUCKETS", "DEFAULTS", "QUICK", "ROW_KEYS", "SPLIT_SEED", "bucket_accuracy", "buckets",
    "build_mlp", "build_mlp_hma", "build_mlp_sketch", "describe", "digits_split", "fit", "format_table",
    "long_tail_counts", "long_tail_indices", "main", "mixture_split", "predict", "register_arm", "run",
    "summarise",
]  # fmt: skip

#: The seed of the fixed train-pool / test split (independent of the run seeds).
SPLIT_SEED = 20231016
#: Bucket names, in table order.
BUCKETS = ("many", "medium", "few")
#: Rows per forward in the evaluation passes.
EVAL_CHUNK = 512
#: The datasets and their class profiles.
DATASETS = ("digits", "mixture")
PROFILES = ("exponential", "zipf")

#: The full run.
DEFAULTS = {
    "dataset": "digits", "imbalance": 50.0, "max_per_class": 120, "test_per_class": 40, "thresholds": (10, 40),
    "arms": ("mlp", "mlp+sketch", "mlp+sketch-all", "mlp+hma"), "seeds": (0, 1, 2, 3, 4), "steps": 1000,
    "batch_size": 64, "arm_options": {},
}  # fmt: skip
#: The 100-class mixture (``--dataset mixture``); 2 tokens per class keep HMA's stage 2 at 200 tokens.
MIXTURE = {
    "dataset": "mixture", "imbalance": 50.0, "max_per_class": 200, "test_per_class": 20, "thresholds": (10, 40),
    "arm_options": {"mlp+hma": {"tokens_per_class": 2}},
}  # fmt: skip
#: The CI sizes (seconds).
QUICK = {
    "dataset": "digits", "imbalance": 50.0, "max_per_class": 60, "test_per_class": 10, "thresholds": (5, 20),
    "arms": ("mlp", "mlp+sketch", "mlp+sketch-all", "mlp+hma"), "seeds": (0,), "steps": 6, "batch_size": 16,
    "arm_options": {
        "mlp": {"hidden": (16, 16)}, "mlp+sketch": {"hidden": (16, 16), "num_bits": 4},
        "mlp+sketch-all": {"hidden": (16, 16), "num_bits": 4},
        "mlp+hma": {"hidden": (16,), "feature_dim": 8, "label_dim": 4, "queue_size": 16, "tokens_per_class": 2},
    },
}  # fmt: skip

#: The keys of every row.
ROW_KEYS = (
    "experiment", "dataset", "arm", "eval", "config", "seed", "imbalance", "train_size", "steps", "batch_size",
    "many", "medium", "few", "macro", "per_class", "class_counts", "bucket_of_class", "params", "wall_time_s",
)  # fmt: skip


# --- the data --------------------------------------------------------------------------------------------


def long_tail_counts(num_classes, *, max_count, imbalance, profile="exponential"):
    r"""Training examples per class rank: :math:`n_0 = n_{\max}` down to :math:`n_{C-1} = n_{\max}/\rho`.

    Parameters
    ----------
    num_classes : int
        C (at least 2).
    max_count : int, keyword-only
        :math:`n_{\max}`, the examples of the most frequent class.
    imbalance : float, keyword-only
        ρ ≥ 1, the ratio of the most to the least frequent class (before rounding).
    profile : {"exponential", "zipf"}, keyword-only
        :math:`n_r = n_{\max} \rho^{-r/(C-1)}` or :math:`n_r = n_{\max} (r + 1)^{-\log\rho / \log C}`.

    Returns
    -------
    counts : int64 ndarray, shape (C,)
        Non-increasing, rounded to the nearest integer, at least 1.
    """
    C = _checks.check_positive_int(num_classes, "num_classes", minimum=2)
    n_max = _checks.check_positive_int(max_count, "max_count")
    rho = _checks.check_finite_real(imbalance, "imbalance", 1.0)
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {list(PROFILES)}, got {profile!r}")
    r = np.arange(C)
    if profile == "exponential":
        counts = n_max * rho ** (-r / (C - 1))
    else:
        counts = n_max * (r + 1.0) ** (-math.log(rho) / math.log(C))
    return np.maximum(1, np.rint(counts)).astype(np.int64)


def _split_per_class(x, y, test_per_class, rng):
    """A balanced test set of ``test_per_class`` per class and the rest as the pool (both in a shuffled order)."""
    test, pool = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) <= test_per_class:
            raise ValueError(
                f"test_per_class: expected fewer than the {len(idx)} examples of class {c}, got {test_per_class}"
            )
        test.append(idx[:test_per_class])
        pool.append(idx[test_per_class:])
    test, pool = rng.permutation(np.concatenate(test)), rng.permutation(np.concatenate(pool))
    return x[pool], y[pool], x[test], y[test]


def digits_split(test_per_class=40, *, dtype=np.float32):
    """scikit-learn's digits (bundled: nothing is downloaded), pixels / 16, split once with :data:`SPLIT_SEED`.

    Returns
    -------
    pool_x : ndarray, shape (n_pool, 64)
    pool_y : int64 ndarray, shape (n_pool,)
    test_x : ndarray, shape (10 · test_per_class, 64)
    test_y : int64 ndarray
        Exactly ``test_per_class`` of each class.
    """
    test_per_class = _checks.check_positive_int(test_per_class, "test_per_class")
    x, y = _load_digits()
    x = (x / 16.0).astype(check_dtype(dtype))  # (1797, 64) in [0, 1]
    return _split_per_class(x, y.astype(np.int64), test_per_class, np.random.default_rng(SPLIT_SEED))


@functools.lru_cache(maxsize=1)
def _load_digits():
    """scikit-learn's bundled digits, read once per process (callers copy: the arrays are read-only)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def mixture_split(per_class, test_per_class, *, num_classes=100, dim=32, informative=16, dtype=np.float32):
    """A balanced Gaussian mixture (``make_classification``, one cluster per class), split like digits.

    ``per_class + test_per_class`` points per class, drawn once with :data:`SPLIT_SEED`; features
    standardised with the pool's mean and s.d.
    """
    from sklearn.datasets import make_classification

    per_class = _checks.check_positive_int(per_class, "per_class")
    test_per_class = _checks.check_positive_int(test_per_class, "test_per_class")
    C = _checks.check_positive_int(num_classes, "num_classes", minimum=2)
    x, y = make_classification(
        n_samples=C * (per_class + test_per_class), n_features=dim, n_informative=informative, n_redundant=0,
        n_classes=C, n_clusters_per_class=1, class_sep=1.5, flip_y=0.0, random_state=SPLIT_SEED,
    )  # fmt: skip
    counts = np.bincount(y, minlength=C)
    pool_x, pool_y, test_x, test_y = _split_per_class(
        x, y.astype(np.int64), min(test_per_class, counts.min() - 1), np.random.default_rng(SPLIT_SEED + 1)
    )
    mu, sd = pool_x.mean(axis=0), pool_x.std(axis=0) + 1e-12
    dt = check_dtype(dtype)
    return ((pool_x - mu) / sd).astype(dt), pool_y, ((test_x - mu) / sd).astype(dt), test_y


def long_tail_indices(labels, counts, *, rng):
    """A long-tailed subset of a pool: a random class ranking, then ``counts[r]`` examples of the class ranked r.

    Parameters
    ----------
    labels : int ndarray, shape (n,)
        The pool's classes in [0, C).
    counts : int ndarray, shape (C,)
        Examples per rank (:func:`long_tail_counts`).
    rng : np.random.Generator, keyword-only

    Returns
    -------
    indices : int64 ndarray, shape (counts.sum(),)
        Into the pool, sorted.
    class_counts : int64 ndarray, shape (C,)
        The training examples of each class (``counts`` permuted by the ranking).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a np.random.Generator, got {type(rng).__name__}")
    counts = np.asarray(counts, dtype=np.int64)
    C = len(counts)
    labels = _checks.as_index_array(labels, "labels", upper=C)
    ranking = rng.permutation(C)  # ranking[r]: the class with the r-th most examples
    class_counts = np.zeros(C, np.int64)
    class_counts[ranking] = counts
    chosen = []
    for c in range(C):
        idx = np.flatnonzero(labels == c)
        if len(idx) < class_counts[c]:
            raise ValueError(f"counts: class {c} has {len(idx)} examples in the pool, {class_counts[c]} were asked")
        chosen.append(rng.choice(idx, class_counts[c], replace=False))
    return np.sort(np.concatenate(chosen)), class_counts


def buckets(class_counts, *, few_below, many_above):
    """Each class's bucket: ``"many"`` (> many_above examples), ``"few"`` (< few_below) or ``"medium"``.

    Returns
    -------
    list of str, one per class
    """
    few_below = _checks.check_positive_int(few_below, "few_below")
    many_above = _checks.check_positive_int(many_above, "many_above")
    if few_below > many_above:
        raise ValueError(f"few_below: expected at most many_above = {many_above}, got {few_below}")
    return ["many" if n > many_above else "few" if n < few_below else "medium" for n in np.asarray(class_counts)]


def bucket_accuracy(predictions, labels, bucket_of_class):
    """Mean per-class accuracy in each bucket and over all classes.

    Parameters
    ----------
    predictions, labels : int ndarray, shape (n,)
    bucket_of_class : sequence of str, one per class (:func:`buckets`)

    Returns
    -------
    dict
        ``"per_class"`` (list of C floats), ``"many"``, ``"medium"``, ``"few"`` (None for an empty
        bucket) and ``"macro"``.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions: expected the labels' shape {labels.shape}, got {predictions.shape}")
    C = len(bucket_of_class)
    per_class = []
    for c in range(C):
        mask = labels == c
        if not mask.any():
            raise ValueError(f"labels: class {c} has no test example")
        per_class.append(float(np.mean(predictions[mask] == c)))
    out = {"per_class": per_class}
    for name in BUCKETS:
        scores = [a for a, b in zip(per_class, bucket_of_class) if b == name]
        out[name] = float(np.mean(scores)) if scores else None
    out["macro"] = float(np.mean(per_class))
    return out


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
def build_mlp(input_dim, num_classes, *, seed=0, dtype=np.float64, hidden=(128, 128), lr=1e-3):
    """The plain arm: a ReLU MLP X → hidden → C on Adam.

    Returns
    -------
    network : refmann.layers.MLP
    step : callable
    """
    network = MLP(
        input_dim=input_dim, hidden_dims=tuple(hidden), output_dim=num_classes, activation="relu", seed=seed,
        dtype=dtype,
    )  # fmt: skip
    return network, make_optimizer("adam", lr=lr)


def build_mlp_sketch(
    input_dim, num_classes, *, seed=0, dtype=np.float64, hidden=(128, 128), memory_layers="penultimate",
    num_tables=4, num_bits=10, read_dim=None, lr=1e-3, values_lr=1e-2,
):  # fmt: skip
    """The sketch arm: the MLP with a :class:`~refmann.layers.SketchMemory` after some hidden layers (concat).

    Parameters
    ----------
    input_dim, num_classes : int
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only
    hidden : sequence of int, keyword-only
    memory_layers : "penultimate", "all" or sequence of int (1-based hidden layers), keyword-only
    num_tables, num_bits : int, keyword-only
        T tables of 2^b rows each.
    read_dim : int, keyword-only, optional
        The read width (default: the hidden width it follows).
    lr, values_lr : float, keyword-only
        Adam's for everything but the value tables; lazy ``sparse_adam``'s for the ``"*values"`` group.

    Returns
    -------
    network : refmann.layers.MLP
    step : callable
    """
    hidden = tuple(hidden)
    where = (len(hidden),) if memory_layers == "penultimate" else memory_layers
    memory = {"num_tables": num_tables, "num_bits": num_bits, "combine": "concat"}
    if read_dim is not None:
        memory["output_dim"] = read_dim
    network = MLP(
        input_dim=input_dim, hidden_dims=hidden, output_dim=num_classes, activation="relu", memory=memory,
        memory_layers=where, seed=seed, dtype=dtype,
    )  # fmt: skip
    step = param_groups({"*values": make_optimizer("sparse_adam", lr=values_lr), "*": make_optimizer("adam", lr=lr)})
    return network, step


@register_arm("mlp+sketch")
def _build_mlp_sketch_penultimate(input_dim, num_classes, **options):
    """:func:`build_mlp_sketch` with the memory after the last hidden layer."""
    return build_mlp_sketch(input_dim, num_classes, **{"memory_layers": "penultimate", **options})


@register_arm("mlp+sketch-all")
def _build_mlp_sketch_all(input_dim, num_classes, **options):
    """:func:`build_mlp_sketch` with a memory after every hidden layer."""
    return build_mlp_sketch(input_dim, num_classes, **{"memory_layers": "all", **options})


@register_arm("mlp+hma")
def build_mlp_hma(
    input_dim, num_classes, *, seed=0, dtype=np.float64, hidden=(128,), feature_dim=32, label_dim=16,
    tokens_per_class=8, queue_size=256, num_heads=4, momentum=0.99, lr=1e-3, **head,
):  # fmt: skip
    """The HMA arm: a ReLU MLP encoder X → hidden → d and the memory-tokens head, everything on Adam.

    Parameters
    ----------
    input_dim, num_classes : int
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only
    hidden : sequence of int, keyword-only
        The encoder's hidden widths.
    feature_dim, label_dim, tokens_per_class, queue_size, num_heads : int, keyword-only
        d, d_l, m_s, S, H of :class:`~refmann.layers.hma.MemoryTokens` (D = d + d_l divisible by H).
    momentum : float, keyword-only
        Of the momentum encoder that writes the queue (0.99: the code's 0.999 barely moves in 10³ steps).
    lr : float, keyword-only
        Adam's.
    **head
        More :class:`~refmann.layers.hma.MemoryTokens` keywords (``use_queue``, ``use_tokens``, ``quirks``, ...).

    Returns
    -------
    network : refmann.models.hma.MemoryTokensClassifier
    step : callable
    """
    seed = check_seed(seed)
    encoder = MLP(
        input_dim=input_dim, hidden_dims=tuple(hidden), output_dim=feature_dim, activation="relu", seed=seed,
        dtype=dtype,
    )  # fmt: skip
    network = MemoryTokensClassifier(
        encoder, num_classes=num_classes, feature_dim=feature_dim, label_dim=label_dim,
        tokens_per_class=tokens_per_class, queue_size=queue_size, num_heads=num_heads, momentum=momentum,
        seed=seed + 1, dtype=dtype, **head,
    )  # fmt: skip
    return network, make_optimizer("adam", lr=lr)


def describe(network) -> str:
    """A short description of an arm's network for the tables."""
    if isinstance(network, MemoryTokensClassifier):
        h, enc = network.head, network.encoder
        parts = []
        if h.use_queue:
            parts.append(f"S={h.queue_size}")
        if h.use_tokens:
            parts.append(f"m_s={h.tokens_per_class}")
        memory = ", ".join(parts) if parts else "no memory"
        trunk = describe(enc) if isinstance(enc, MLP) else type(enc).__name__
        return f"{trunk} + HMA D={h.dim} ({memory}, m={network.momentum:g})"
    if isinstance(network, MLP):
        text = "MLP " + " → ".join(str(d) for d in (network.input_dim, *network.hidden_dims, network.output_dim))
        if network.memory_layers:
            m = network.children[f"mem{network.memory_layers[0]}"]
            where = ",".join(str(i) for i in network.memory_layers)
            text += f", sketch T={m.num_tables} b={m.num_bits} after layer {where}"
        return text
    return type(network).__name__


# --- training and evaluation -------------------------------------------------------------------------------


def fit(network, step, inputs, labels, *, steps, batch_size, seed, mode=None, bar=None):
    """Train ``network`` with ``step`` by softmax cross-entropy; returns the trained params.

    Batches are drawn without replacement from a fresh permutation each epoch (a partial last batch is
    dropped: every step sees ``min(batch_size, n)`` rows). A network with ``update_memory`` (HMA's host)
    gets it called with each batch after the optimizer step (the momentum encoder moves, the queue is
    written); since it reads the network's own ``params``, the trained arrays are copied there first.

    Parameters
    ----------
    network : Layer
    step : callable
        ``step(params, grads, state) -> (params, state)``.
    inputs : ndarray, shape (n, X)
    labels : int ndarray, shape (n,)
    steps, batch_size, seed : int, keyword-only
        ``seed`` draws the batch order.
    mode : {None, "transductive", "per_sample"}, keyword-only
        HMA's host only: stage 2 over the training batch (None: the host's default, transductive, as the
        paper's code) or each sample alone (then training and evaluation never depend on the batch).
    bar : tqdm, keyword-only, optional
        Advanced once per step.

    Returns
    -------
    params : dict
        The trained parameters (also written into ``network.params``).

    Raises
    ------
    FloatingPointError
        A parameter became non-finite.
    """
    steps = _checks.check_positive_int(steps, "steps")
    batch_size = _checks.check_positive_int(batch_size, "batch_size")
    n = len(inputs)
    B = min(batch_size, n)
    model = FeedForwardModel(network, loss="softmax_ce")
    model.train()
    update = getattr(network, "update_memory", None)
    if mode is not None and not isinstance(network, MemoryTokensClassifier):
        raise ValueError(f"mode: only HMA's host has training modes, got {mode!r} for a {type(network).__name__}")
    if mode not in (None, "transductive", "per_sample"):
        raise ValueError(f"mode: expected None, 'transductive' or 'per_sample', got {mode!r}")
    rng = np.random.default_rng(seed)
    order, pos, state = rng.permutation(n), 0, None
    with _checks.unchecked():  # the data are ours and checked once; the inner loop skips the per-op scans
        for t in range(steps):
            if pos + B > n:
                order, pos = rng.permutation(n), 0
            batch = order[pos : pos + B]
            pos += B
            if mode is None:
                loss, grads = model.loss_and_grads(inputs[batch], labels[batch], row_grads=True)
            else:
                loss, grads = network.loss_and_grads(inputs[batch], labels[batch], mode=mode, params=model.params)
            model.params, state = step(model.params, grads, state)
            if update is not None:
                update(inputs[batch], labels[batch], params=model.params)
            if bar is not None:
                bar.update(1)
                if t % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.3g}")
    bad = [k for k, v in model.params.items() if not np.all(np.isfinite(v))]
    if bad:
        raise FloatingPointError(f"fit: the parameters {bad} became non-finite")
    network.params.update(model.params)
    return model.params


def predict(network, params, inputs, *, mode=None, batch_size=None, rng=None):
    """Argmax classes of ``network`` on ``inputs`` in evaluation mode (the network is left in training mode).

    Parameters
    ----------
    network : Layer
    params : dict
    inputs : ndarray, shape (n, X)
    mode : {None, "per_sample", "transductive"}, keyword-only
        For HMA's host only (None otherwise): per sample (default for it), or transductive in chunks of
        ``batch_size`` rows taken in the order ``rng.permutation(n)`` (the identity order without rng),
        each chunk one set for stage 2.
    batch_size : int, keyword-only
        The transductive chunk (default: all n at once).
    rng : np.random.Generator, keyword-only, optional

    Returns
    -------
    predictions : int64 ndarray, shape (n,)
    """
    n = len(inputs)
    hma = isinstance(network, MemoryTokensClassifier)
    if not hma and mode is not None:
        raise ValueError(f"mode: only HMA's host has evaluation modes, got {mode!r} for a {type(network).__name__}")
    mode = "per_sample" if hma and mode is None else mode
    if mode not in (None, "per_sample", "transductive"):
        raise ValueError(f"mode: expected None, 'per_sample' or 'transductive', got {mode!r}")
    kw = {"mode": mode} if hma else {}
    if mode == "transductive":
        chunk = n if batch_size is None else _checks.check_positive_int(batch_size, "batch_size")
        order = np.arange(n) if rng is None else rng.permutation(n)
    else:
        chunk, order = EVAL_CHUNK, np.arange(n)
    out = np.empty(n, np.int64)
    network.eval()
    try:
        with _checks.unchecked():
            for i in range(0, n, chunk):
                idx = order[i : i + chunk]
                out[idx] = np.argmax(network.forward(inputs[idx], params=params, **kw)[0], axis=1)
    finally:
        network.train()
    return out


def _evaluations(network, batch_size):
    """``[(label, predict keywords)]``: one plain evaluation, or HMA's per-sample and transductive ones."""
    if isinstance(network, MemoryTokensClassifier):
        return [("per-sample", {"mode": "per_sample"}), (f"transductive@{batch_size}", {"mode": "transductive"})]
    return [("—", {})]


# --- the run --------------------------------------------------------------------------------------------


def _seeds(seed, tag):
    """Seeds of the data draw, the initialisation and the batch order (and the evaluation order) for a run."""
    data, init, order, evaluation = np.random.SeedSequence([seed, tag]).spawn(4)
    return data, int(init.generate_state(1)[0] % 2**31), int(order.generate_state(1)[0] % 2**31), evaluation


def _check_arms(arms, known):
    arms = tuple(arms)
    bad = [a for a in arms if a not in known]
    if bad or not arms or len(set(arms)) != len(arms):
        raise ValueError(f"arms: expected distinct names from {sorted(known)}, got {list(arms)}")
    return arms


def run(
    *, dataset=DEFAULTS["dataset"], imbalance=DEFAULTS["imbalance"], max_per_class=DEFAULTS["max_per_class"],
    test_per_class=DEFAULTS["test_per_class"], thresholds=DEFAULTS["thresholds"], arms=DEFAULTS["arms"],
    seeds=DEFAULTS["seeds"], steps=DEFAULTS["steps"], batch_size=DEFAULTS["batch_size"], arm_options=None,
    dtype="float32", progress=False, on_row=None,
):  # fmt: skip
    """E4: many/medium/few-shot and macro accuracy of each arm on a long-tailed training set.

    Parameters
    ----------
    dataset : {"digits", "mixture"}, keyword-only
    imbalance : float, keyword-only
        ρ, most / least frequent class.
    max_per_class, test_per_class : int, keyword-only
        n_max, and the balanced test set's examples per class.
    thresholds : (few_below, many_above), keyword-only
        The bucket thresholds (:func:`buckets`).
    arms : sequence of str, keyword-only
        Names in :data:`ARMS`.
    seeds : sequence of int, keyword-only
        One long-tailed draw (class ranking and examples), initialisation and batch order per seed,
        the same for every arm.
    steps, batch_size : int, keyword-only
        The budget of every arm.
    arm_options : dict of str to dict, keyword-only, optional
        Builder keywords per arm.
    dtype : {"float32", "float64"}, keyword-only
    progress : bool, keyword-only
    on_row : callable, keyword-only, optional
        Called with the rows so far after each finished run.

    Returns
    -------
    rows : list of dict
        Keys :data:`ROW_KEYS`; HMA's arm has two rows per seed (``eval`` "per-sample" and
        "transductive@B"), the others one (``eval`` "—").
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {dataset!r}")
    arms = _check_arms(arms, ARMS)
    seeds, steps, batch_size, dtype = check_common(seeds, steps, batch_size, dtype)
    max_per_class = _checks.check_positive_int(max_per_class, "max_per_class")
    imbalance = _checks.check_finite_real(imbalance, "imbalance", 1.0)
    few_below, many_above = _check_thresholds(thresholds)
    arm_options = {} if arm_options is None else dict(arm_options)
    unknown = sorted(set(arm_options) - set(ARMS))
    if unknown:
        raise ValueError(f"arm_options: unknown arms {unknown}")
    if dataset == "digits":
        pool_x, pool_y, test_x, test_y = digits_split(test_per_class, dtype=dtype)
        profile = "exponential"
    else:
        pool_x, pool_y, test_x, test_y = mixture_split(max_per_class, test_per_class, dtype=dtype)
        profile = "zipf"
    C = int(pool_y.max()) + 1
    counts = long_tail_counts(C, max_count=max_per_class, imbalance=imbalance, profile=profile)
    rows = []
    bar = progress_bar(len(seeds) * len(arms) * steps, f"E4 {dataset}", progress)
    try:
        with single_threaded_blas():
            for seed in seeds:
                data_seed, init_seed, order_seed, eval_seed = _seeds(seed, 4)
                idx, class_counts = long_tail_indices(pool_y, counts, rng=np.random.default_rng(data_seed))
                of_class = buckets(class_counts, few_below=few_below, many_above=many_above)
                x, y = pool_x[idx], pool_y[idx]
                for arm in arms:
                    bar.set_description(f"E4 {arm} seed {seed}")
                    start = time.perf_counter()
                    network, step = ARMS[arm](x.shape[1], C, seed=init_seed, dtype=dtype, **arm_options.get(arm, {}))
                    params = fit(network, step, x, y, steps=steps, batch_size=batch_size, seed=order_seed, bar=bar)
                    train_time = time.perf_counter() - start
                    for label, kw in _evaluations(network, min(batch_size, len(y))):
                        start = time.perf_counter()
                        rng = np.random.default_rng(eval_seed)
                        pred = predict(network, params, test_x, batch_size=min(batch_size, len(y)), rng=rng, **kw)
                        scores = bucket_accuracy(pred, test_y, of_class)
                        row = {
                            "experiment": "e4", "dataset": dataset, "arm": arm, "eval": label,
                            "config": describe(network), "seed": seed, "imbalance": imbalance,
                            "train_size": len(y), "steps": steps, "batch_size": min(batch_size, len(y)), **scores,
                            "class_counts": class_counts.tolist(), "bucket_of_class": of_class,
                            "params": int(sum(np.size(v) for v in params.values())),
                            "wall_time_s": train_time + time.perf_counter() - start,
                        }  # fmt: skip
                        rows.append({key: row[key] for key in ROW_KEYS})
                    log.info("E4 %s seed %d: macro %.3f", arm, seed, rows[-1]["macro"])
                    if on_row is not None:
                        on_row(rows)
    finally:
        bar.close()
    return rows


def _check_thresholds(thresholds):
    try:
        few_below, many_above = thresholds
    except (TypeError, ValueError):
        raise ValueError(f"thresholds: expected (few_below, many_above), got {thresholds!r}") from None
    buckets([], few_below=few_below, many_above=many_above)  # checks both
    return few_below, many_above


# --- output ----------------------------------------------------------------------------------------------


def _paired_deltas(group, reference, name):
    """Per seed, ``name`` of the group's row minus the reference arm's (the same draw); [] without a reference."""
    ref = {r["seed"]: r[name] for r in reference}
    return [r[name] - ref[r["seed"]] for r in group if r["seed"] in ref and None not in (r[name], ref[r["seed"]])]


def summarise(rows, *, reference="mlp") -> list[dict]:
    """One entry per (arm, eval), in first-seen order: the seeds and the mean and s.d. of each score.

    Parameters
    ----------
    rows : list of dict
    reference : str, keyword-only
        The arm the paired differences are taken against (each seed's draw is the same for every arm).

    Returns
    -------
    list of dict
        ``arm``, ``eval``, ``config``, ``seeds``, and for each of many/medium/few/macro ``{name}_mean``,
        ``{name}_sd`` (sample s.d., 0 for one seed; None for an empty bucket); ``few_delta_mean``,
        ``few_delta_sd``, ``macro_delta_mean``, ``macro_delta_sd``: the mean and s.d. over seeds of the
        arm's score minus the reference arm's at the same seed (None without reference rows).
    """
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["arm"], r["eval"]), []).append(r)
    reference_rows = [r for r in rows if r["arm"] == reference]
    out = []
    for (arm, evaluation), group in groups.items():
        entry = {"arm": arm, "eval": evaluation, "config": group[0]["config"], "seeds": [r["seed"] for r in group]}
        for name in (*BUCKETS, "macro"):
            values = [r[name] for r in group if r[name] is not None]
            entry[f"{name}_mean"] = float(np.mean(values)) if values else None
            entry[f"{name}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else (0.0 if values else None)
        for name in ("few", "macro"):
            deltas = _paired_deltas(group, reference_rows, name)
            entry[f"{name}_delta_mean"] = float(np.mean(deltas)) if deltas else None
            entry[f"{name}_delta_sd"] = float(np.std(deltas, ddof=1)) if len(deltas) > 1 else (0.0 if deltas else None)
        out.append(entry)
    return out


def format_table(rows, *, reference="mlp") -> str:
    """The seed means ± s.d. as a Markdown table under a line stating the setting.

    The Δ columns are the paired differences from the ``reference`` arm (:func:`summarise`), "—" without it.
    """
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["arm"], r["eval"]), []).append(r)
    reference_rows = [r for r in rows if r["arm"] == reference]
    sizes = sorted(r0["class_counts"], reverse=True)
    lines = [
        f"E4 long tail ({r0['dataset']}, imbalance {r0['imbalance']:g}, {r0['train_size']} training examples per "
        f"seed, class sizes {', '.join(str(s) for s in sizes)}): {r0['steps']:,} steps of {r0['batch_size']}; "
        "per-class test accuracy on a balanced test set, averaged per bucket; mean ± s.d. over seeds; Δ = the "
        f"paired difference from {reference} (same seed, same draw)",
        "",
        f"| arm | eval | config | seeds | many | medium | few | macro | Δ few vs {reference} | Δ macro vs {reference} "
        "| params |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (arm, evaluation), group in groups.items():
        cells = [mean_sd([r[name] for r in group]) for name in (*BUCKETS, "macro")]
        if arm != reference:
            cells += [mean_sd(_paired_deltas(group, reference_rows, name), "+.3f") for name in ("few", "macro")]
        else:
            cells += ["—", "—"]
        lines.append(
            f"| {arm} | {evaluation} | {group[0]['config']} | {len(group)} | {' | '.join(cells)} "
            f"| {group[0]['params']:,} |"
        )
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------------------


def _ratio(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}") from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _parser():
    p = argparse.ArgumentParser(prog="python -m refmann.experiments.longtail", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the CI sizes (seconds)")
    p.add_argument("--dataset", choices=DATASETS, default=None, help="digits (default) or the 100-class mixture")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=None, help="one long-tailed draw per seed")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps per run")
    p.add_argument("--batch-size", type=positive_int, default=None, help="examples per step (>= 2)")
    p.add_argument("--imbalance", type=_ratio, default=None, help="most / least frequent class (default 50)")
    p.add_argument("--arms", nargs="+", default=None, help=f"names from {sorted(ARMS)}")
    p.add_argument("--bits", type=positive_int, default=None, help="b of the sketch arms' tables (default 10)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--out", default=None, metavar="FILE.json", help="also write the rows to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    config = {key: (dict(v) if isinstance(v, Mapping) else v) for key, v in (QUICK if args.quick else DEFAULTS).items()}
    if args.dataset == "mixture":
        if args.quick:
            p.error("--dataset mixture: no quick configuration (use --steps and --seeds to shorten it)")
        config.update({key: (dict(v) if isinstance(v, Mapping) else v) for key, v in MIXTURE.items()})
    if args.seeds is not None:
        config["seeds"] = tuple(args.seeds)
    for name in ("steps", "batch_size", "imbalance"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if config["batch_size"] < 2:
        p.error("--batch-size: expected an integer >= 2")
    if args.arms is not None:
        bad = [a for a in args.arms if a not in ARMS]
        if bad or len(set(args.arms)) != len(args.arms):
            p.error(f"--arms: expected distinct names from {sorted(ARMS)}, got {args.arms}")
        config["arms"] = tuple(args.arms)
    if args.bits is not None:
        if args.bits > 20:
            p.error(f"--bits: expected at most 20 (2^b rows per table), got {args.bits}")
        for arm in ("mlp+sketch", "mlp+sketch-all"):
            config["arm_options"][arm] = {**config["arm_options"].get(arm, {}), "num_bits": args.bits}
    from ..bench._proc import machine_info, machine_line

    machine = machine_info()
    command = "python -m refmann.experiments.longtail " + " ".join(sys.argv[1:] if argv is None else argv)

    def write(rows):
        doc = {
            "experiment": "E4 long tail", "command": command.strip(), "machine": machine,
            "config": json.loads(json.dumps({**config, "dtype": args.dtype})), "rows": rows,
            "summary": summarise(rows),
        }  # fmt: skip
        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")

    start = time.perf_counter()
    rows = run(**config, dtype=args.dtype, progress=not args.quiet, on_row=write if args.out else None)
    print(format_table(rows))
    print(f"\nWall time {time.perf_counter() - start:.0f} s. Machine: {machine_line(machine)}.")
    if args.out:
        write(rows)
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
