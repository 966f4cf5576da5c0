r"""E7: HMA's head with few labels on a frozen encoder, under a spurious-feature shift, and its transductivity.

Run ``python -m refmann.experiments.few_labels --experiment a`` (or ``b``, or ``transductive``; ``--quick``
for the CI sizes, ``--help`` for the flags). The data are scikit-learn's bundled digits, split once as
in E4 (:func:`refmann.experiments.longtail.digits_split`: 40 test images per class, the rest the pool);
nothing is downloaded.

**(a) Few labels, head-only tuning** (seed-methods §5, E7a). The task is the five classes 5–9
(relabelled 0–4) with k ∈ {5, 10, 20} labelled pool images per class, drawn per seed; the test set is
their 200 test images. The encoder is frozen (:func:`frozen_encoder`), one of

- ``"random"``: a ReLU MLP 64 → 128 → 32 followed by a ReLU, at its random initialisation;
- ``"pretrained"``: the same network trained, with a linear classifier 32 → 5 on top, on *the other
  half of the classes*: every pool image of the digits 0–4 (701 images; 500 Adam steps of 64, lr 1e-3).
  It has never seen a 5–9; its accuracy on the 0–4 test images is in the rows (``encoder_accuracy``).

Only a head is trained on the 32 frozen features: ``"linear"`` (32 → 5), ``"mlp"`` (32 → 64 → 5, ReLU) or
``"hma"`` (:class:`~refmann.models.hma.MemoryTokensClassifier` on an identity encoder, :class:`Identity`:
d_l = 16, D = 48, 4 heads, m_s = 8 tokens per class, a queue of S = 256 rows written with the current
features — momentum 0, as the released code forces for head-only tuning), each with 300 Adam steps
(lr 3e-3) on batches of min(32, 5k).

**(b) A spurious feature** (CMNIST-like). Every image gets a 10-d one-hot "colour"
(:func:`colour_feature`) appended to its 64 pixels: in training it equals the label with probability
p = 0.9 (else one of the other nine colours, uniformly), so it is 90% predictive; the shifted test set
draws it uniformly at random (it matches the label 10% of the time), the in-distribution test set as in
training. 50 labelled images per class (500), the whole network trained (500 Adam steps of 64, lr 1e-3):
``"mlp"`` is a ReLU MLP 74 → 128 → 32 → 10; ``"hma"`` is the encoder 74 → 128 → 32 with HMA's head (as
in (a), momentum encoder m = 0.99). The rows report the in-distribution and shifted accuracies and
``follows_colour``: on the shifted test set, among the images whose colour is not their label, the
fraction predicted as the colour.

**Ablations** of the HMA head (:data:`HMA_VARIANTS`; in (a) at the pretrained encoder with k = 10, and in
(b)): ``"hma-tokens"`` synthetic tokens only (``use_queue=False``, S = 0), ``"hma-queue"`` the queue only
(``use_tokens=False``), ``"hma-none"`` stage 2 with neither (datapoints attend to each other only),
``"hma-m1"``/``"hma-m4"``/``"hma-m16"`` m_s ∈ {1, 4, 16} (base 8), ``"hma-S64"`` a queue of 64 (base 256),
and ``"hma-ps"``, the base head *trained* per sample (refmann's mode; stage 2 sees each sample alone with
the tokens, so nothing depends on the batch, in training or at test).

**Transductivity.** Stage 2 makes a prediction depend on the rest of its evaluation batch. For the base
HMA head of (a) (pretrained encoder, k = 10) and of (b) (in-distribution and shifted test sets), per seed:
the per-sample predictions (refmann's mode) against transductive ones in shuffled test batches of
1, 16, 128 and all, over ``orders`` random orders: the accuracy, the fraction of predictions that differ
from per-sample mode (``changed_vs_per_sample``), and the fraction that differ between two random
orders at the same batch size (``changed_between_orders``: the dependence on batch composition itself).
A batch of 1 is exactly the per-sample computation.

Each HMA arm trains transductively (the paper's) and is evaluated per sample (the primary number) and
transductively in shuffled test batches of the training batch size (a second row). Every (setting, seed)
draws its labelled images, initialisation and batch order from the seed alone, the same for every arm, so
the tables also give paired differences (Δ: an arm's score minus a reference arm's at the same seed).

``run(experiment, **config) -> rows`` (:func:`run_a`, :func:`run_b`, :func:`run_transductive`; keys
:data:`ROW_KEYS`), ``format_table(rows) -> str``, :func:`plot_a`, ``main(argv=None)``; ``--out
FILE.json`` writes ``{"experiment", "command", "machine", "config", "rows"}`` atomically after every
finished run.

References
----------
Qiu, Liu, Yan, Zhang, Fu. Heterogenous Memory Augmented Neural Networks. arXiv:2310.10909, 2023.
Arjovsky, Bottou, Gulrajani, Lopez-Paz. Invariant Risk Minimization. arXiv:1907.02893, 2019 (Colored MNIST).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping

import numpy as np

from .. import _checks
from .._io import atomic_write_text
from .._threads import single_threaded_blas
from ..layers import MLP, LayerBase, Linear, ReLU, Sequential
from ..models.hma import MemoryTokensClassifier
from ..train.optim import make_optimizer
from . import longtail
from ._common import check_common, mean_sd, positive_int, progress_bar, seed_int
from .longtail import describe, fit, predict

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULTS", "ENCODERS", "HEADS", "HMA_VARIANTS", "Identity", "QUICK", "ROW_KEYS", "build_hma", "build_head",
    "colour_feature", "few_label_indices", "format_table", "frozen_encoder", "main", "plot_a", "run", "run_a",
    "run_b", "run_transductive", "TRAIN_MODES", "transductivity",
]  # fmt: skip

#: (a): the encoder's pretraining classes and the few-label task's classes.
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
NUM_COLOURS = 10
ENCODERS = ("random", "pretrained")
#: The HMA head's variants: keywords over the base (m_s = 8, S = 256, both memories).
HMA_VARIANTS = {
    "hma": {},
    "hma-tokens": {"use_queue": False, "queue_size": 0},
    "hma-queue": {"use_tokens": False},
    "hma-none": {"use_queue": False, "queue_size": 0, "use_tokens": False},
    "hma-m1": {"tokens_per_class": 1},
    "hma-m4": {"tokens_per_class": 4},
    "hma-m16": {"tokens_per_class": 16},
    "hma-S64": {"queue_size": 64},
    "hma-ps": {},
}
#: Variants trained with another stage-2 mode than the paper's transductive one (refmann's per-sample mode).
TRAIN_MODES = {"hma-ps": "per_sample"}
#: The heads of (a) and the arms of (b).
HEADS = ("linear", "mlp", *HMA_VARIANTS)
ABLATIONS = tuple(v for v in HMA_VARIANTS if v != "hma")

_HEAD = {"feature_dim": 32, "label_dim": 16, "tokens_per_class": 8, "queue_size": 256, "num_heads": 4}
_QUICK_HEAD = {"feature_dim": 8, "label_dim": 4, "tokens_per_class": 2, "queue_size": 16, "num_heads": 2}
#: The full runs.
DEFAULTS = {
    "a": {
        "encoders": ENCODERS, "labels_per_class": (5, 10, 20), "heads": ("linear", "mlp", "hma"),
        "ablations": ABLATIONS, "ablation_at": ("pretrained", 10), "seeds": (0, 1, 2, 3, 4), "steps": 300,
        "batch_size": 32, "lr": 3e-3, "encoder_hidden": 128, "pretrain_steps": 500, "head": _HEAD,
        "mlp_hidden": 64,
    },
    "b": {
        "labels_per_class": 50, "p_train": 0.9, "arms": ("mlp", "hma"), "ablations": ABLATIONS,
        "seeds": (0, 1, 2, 3, 4), "steps": 500, "batch_size": 64, "lr": 1e-3, "encoder_hidden": 128, "head": _HEAD,
        "momentum": 0.99,
    },
    "transductive": {
        "settings": ("a", "b"), "eval_batches": (1, 16, 128, None), "orders": 3, "seeds": (0, 1, 2, 3, 4),
        "a": {"encoder": "pretrained", "labels_per_class": 10}, "b": {"labels_per_class": 50, "p_train": 0.9},
    },
}  # fmt: skip
#: The CI sizes (seconds).
QUICK = {
    "a": {
        "encoders": ENCODERS, "labels_per_class": (2, 3), "heads": ("linear", "mlp", "hma"),
        "ablations": ("hma-tokens", "hma-none"), "ablation_at": ("pretrained", 3), "seeds": (0,), "steps": 5,
        "batch_size": 8, "lr": 3e-3, "encoder_hidden": 16, "pretrain_steps": 5, "head": _QUICK_HEAD,
        "mlp_hidden": 8,
    },
    "b": {
        "labels_per_class": 4, "p_train": 0.9, "arms": ("mlp", "hma"), "ablations": ("hma-queue",), "seeds": (0,),
        "steps": 5, "batch_size": 8, "lr": 1e-3, "encoder_hidden": 16, "head": _QUICK_HEAD, "momentum": 0.99,
    },
    "transductive": {
        "settings": ("a", "b"), "eval_batches": (1, 4, None), "orders": 2, "seeds": (0,), "max_test": 24,
        "a": {"encoder": "pretrained", "labels_per_class": 3}, "b": {"labels_per_class": 4, "p_train": 0.9},
    },
}  # fmt: skip
QUICK["transductive"]["base"] = {"a": QUICK["a"], "b": QUICK["b"]}
DEFAULTS["transductive"]["base"] = {"a": DEFAULTS["a"], "b": DEFAULTS["b"]}

#: The keys of every row, per experiment.
ROW_KEYS = {
    "a": (
        "experiment", "group", "encoder", "labels_per_class", "arm", "eval", "config", "seed", "train_size",
        "steps", "batch_size", "accuracy", "encoder_accuracy", "params", "wall_time_s",
    ),
    "b": (
        "experiment", "group", "arm", "eval", "config", "seed", "p_train", "train_size", "steps", "batch_size",
        "id_accuracy", "ood_accuracy", "follows_colour", "params", "wall_time_s",
    ),
    "transductive": (
        "experiment", "setting", "test_set", "seed", "eval_batch", "test_size", "orders", "accuracy",
        "per_sample_accuracy", "changed_vs_per_sample", "changed_between_orders",
    ),
}  # fmt: skip


# --- data ------------------------------------------------------------------------------------------------


def colour_feature(labels, *, p, num_colours=NUM_COLOURS, rng):
    """A spurious "colour" per example: its label with probability p, else one of the other colours uniformly.

    Parameters
    ----------
    labels : int ndarray, shape (n,)
        In [0, num_colours).
    p : float in [0, 1] or None, keyword-only
        The probability that the colour is the label; None: uniform over all colours (the shifted test set).
    num_colours : int, keyword-only
    rng : np.random.Generator, keyword-only

    Returns
    -------
    colours : int64 ndarray, shape (n,)
    onehot : float64 ndarray, shape (n, num_colours)
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a np.random.Generator, got {type(rng).__name__}")
    K = _checks.check_positive_int(num_colours, "num_colours", minimum=2)
    labels = _checks.as_index_array(labels, "labels", upper=K)
    n = len(labels)
    if p is None:
        colours = rng.integers(0, K, n)
    else:
        p = _checks.check_real(p, "p", 0.0, 1.0)
        other = (labels + rng.integers(1, K, n)) % K  # uniform over the K − 1 colours that are not the label
        colours = np.where(rng.random(n) < p, labels, other)
    return colours.astype(np.int64), np.eye(K)[colours]


def few_label_indices(labels, per_class, *, rng):
    """``per_class`` random indices of each class present in ``labels`` (sorted).

    Raises
    ------
    ValueError
        A class has fewer than ``per_class`` examples.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a np.random.Generator, got {type(rng).__name__}")
    per_class = _checks.check_positive_int(per_class, "per_class")
    labels = np.asarray(labels)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f"per_class: class {c} has only {len(idx)} examples, {per_class} were asked")
        chosen.append(rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def _subset(x, y, classes):
    """The examples of ``classes``, relabelled 0..len(classes) − 1."""
    mask = np.isin(y, classes)
    return x[mask], np.searchsorted(np.asarray(classes), y[mask]).astype(np.int64)


# --- encoders and heads --------------------------------------------------------------------------------


class Identity(LayerBase):
    """The identity on (B, d) features: the encoder of a head trained on frozen, precomputed features.

    No parameters; its backward passes the gradient through. With it, :class:`MemoryTokensClassifier`
    is HMA's head alone (the momentum encoder is empty, the queue gets the features themselves).
    """

    def __init__(self, *, dim):
        self.dim = _checks.check_positive_int(dim, "dim")
        self.params, self.children = {}, {}
        self._sizes = {"dim": self.dim}

    def forward(self, x, *, params=None):
        """``(x, None)``."""
        return x, None

    def backward(self, dy, cache):
        """``(dy, {})``."""
        return dy, {}


def frozen_encoder(kind, pool_x, pool_y, *, hidden=128, feature_dim=32, steps=500, seed=0, dtype=np.float32):
    """A frozen feature map: a random ReLU MLP, or one pretrained on the source classes 0–4.

    Parameters
    ----------
    kind : {"random", "pretrained"}
    pool_x, pool_y : ndarray
        The training pool (all ten classes; the pretrained encoder sees only :data:`SOURCE_CLASSES`).
    hidden, feature_dim : int, keyword-only
        The network 64 → hidden → feature_dim, then a ReLU.
    steps : int, keyword-only
        Adam steps (lr 1e-3, batches of 64) of the pretraining, with a linear classifier on top.
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Returns
    -------
    features : callable
        ``features(x) -> (n, feature_dim)`` (pure, the weights fixed).
    network, params : Sequential, dict
        ``"enc"`` (MLP), ``"act"`` (ReLU), ``"cls"`` (Linear feature_dim → 5): the features are the
        output of ``"act"``.
    """
    if kind not in ENCODERS:
        raise ValueError(f"encoder: expected one of {list(ENCODERS)}, got {kind!r}")
    s = longtail._seeds(seed, 70)
    network = Sequential(
        layers=[
            ("enc", MLP(input_dim=pool_x.shape[1], hidden_dims=(hidden,), output_dim=feature_dim, activation="relu",
                        seed=s[1], dtype=dtype)),
            ("act", ReLU(dtype=dtype)),
            ("cls", Linear(input_dim=feature_dim, output_dim=len(SOURCE_CLASSES), seed=s[1] + 1, dtype=dtype)),
        ]
    )  # fmt: skip
    params = dict(network.params)
    if kind == "pretrained":
        x, y = _subset(pool_x, pool_y, SOURCE_CLASSES)
        params = fit(network, make_optimizer("adam", lr=1e-3), x, y, steps=steps, batch_size=64, seed=s[2])
    enc, act = network.children["enc"], network.children["act"]
    enc_params = {k[len("enc.") :]: v for k, v in params.items() if k.startswith("enc.")}

    def features(inputs):
        with _checks.unchecked():
            h, _ = enc.forward(inputs, params=enc_params)
            return act.forward(h)[0]

    return features, network, params


def build_hma(encoder, num_classes, *, feature_dim, seed=0, dtype=np.float32, variant="hma", momentum=0.0,
              lr=1e-3, **head):  # fmt: skip
    """HMA's host over ``encoder`` (outputs of width ``feature_dim``) with the :data:`HMA_VARIANTS` ``[variant]``
    head (``**head``: more :class:`~refmann.layers.hma.MemoryTokens` keywords); Adam on everything.

    Returns
    -------
    network : MemoryTokensClassifier
    step : callable
    """
    if variant not in HMA_VARIANTS:
        raise ValueError(f"variant: expected one of {list(HMA_VARIANTS)}, got {variant!r}")
    options = {**head, **HMA_VARIANTS[variant]}
    network = MemoryTokensClassifier(
        encoder, num_classes=num_classes, feature_dim=feature_dim, momentum=momentum, seed=seed, dtype=dtype,
        **options,
    )  # fmt: skip
    return network, make_optimizer("adam", lr=lr)


def build_head(kind, feature_dim, num_classes, *, seed=0, dtype=np.float32, lr=3e-3, mlp_hidden=64, head=None):
    """A head on frozen features: ``"linear"``, ``"mlp"`` or an HMA variant (on :class:`Identity`).

    Returns
    -------
    network : Layer
    step : callable
    """
    if kind == "linear":
        return Linear(input_dim=feature_dim, output_dim=num_classes, seed=seed, dtype=dtype), make_optimizer(
            "adam", lr=lr
        )
    if kind == "mlp":
        network = MLP(
            input_dim=feature_dim, hidden_dims=(mlp_hidden,), output_dim=num_classes, activation="relu", seed=seed,
            dtype=dtype,
        )  # fmt: skip
        return network, make_optimizer("adam", lr=lr)
    if kind in HMA_VARIANTS:
        options = {**(head or {}), "feature_dim": feature_dim}
        return build_hma(Identity(dim=feature_dim), num_classes, seed=seed, dtype=dtype, variant=kind, momentum=0.0,
                         lr=lr, **options)  # fmt: skip
    raise ValueError(f"head: expected one of {list(HEADS)}, got {kind!r}")


def _build_b_arm(arm, input_dim, num_classes, *, seed, dtype, hidden, head, momentum, lr):
    """(b)'s arms: the MLP X → hidden → d → C, or the encoder X → hidden → d with an HMA head."""
    d = head["feature_dim"]
    if arm == "mlp":
        network = MLP(
            input_dim=input_dim, hidden_dims=(hidden, d), output_dim=num_classes, activation="relu", seed=seed,
            dtype=dtype,
        )  # fmt: skip
        return network, make_optimizer("adam", lr=lr)
    encoder = MLP(input_dim=input_dim, hidden_dims=(hidden,), output_dim=d, activation="relu", seed=seed, dtype=dtype)
    return build_hma(encoder, num_classes, seed=seed + 1, dtype=dtype, variant=arm, momentum=momentum, lr=lr,
                     **head)  # fmt: skip


def _evaluations(network, batch_size):
    """``[(label, predict keywords)]``: one evaluation, or HMA's per-sample and transductive@B ones."""
    if isinstance(network, MemoryTokensClassifier):
        return [("per-sample", {"mode": "per_sample"}), (f"transductive@{batch_size}", {"mode": "transductive"})]
    return [("—", {})]


def _config(network, arm):
    """:func:`~refmann.experiments.longtail.describe`, plus the training mode if it is not the paper's."""
    text = describe(network)
    return text + "; trained per sample" if TRAIN_MODES.get(arm) == "per_sample" else text


def _n_params(params):
    return int(sum(np.size(v) for v in params.values()))


# --- (a) -------------------------------------------------------------------------------------------------


def _a_data(pool_x, pool_y, test_x, test_y, encoder, *, seed, config, dtype):
    """The frozen features of the target classes' pool and test images, and the encoder's source accuracy."""
    features, network, params = frozen_encoder(
        encoder, pool_x, pool_y, hidden=config["encoder_hidden"], feature_dim=config["head"]["feature_dim"],
        steps=config["pretrain_steps"], seed=seed, dtype=dtype,
    )  # fmt: skip
    src_x, src_y = _subset(test_x, test_y, SOURCE_CLASSES)
    source_accuracy = float(np.mean(predict(network, params, src_x) == src_y)) if encoder == "pretrained" else None
    px, py = _subset(pool_x, pool_y, TARGET_CLASSES)
    tx, ty = _subset(test_x, test_y, TARGET_CLASSES)
    return features(px), py, features(tx), ty, source_accuracy


def _check_a(config):
    encoders = tuple(config["encoders"])
    if not encoders or any(e not in ENCODERS for e in encoders):
        raise ValueError(f"encoders: expected names from {list(ENCODERS)}, got {list(encoders)}")
    ks = tuple(_checks.check_positive_int(k, "labels_per_class") for k in config["labels_per_class"])
    if not ks:
        raise ValueError("labels_per_class: expected at least one k, got none")
    heads = longtail._check_arms(config["heads"], HEADS) if config["heads"] else ()
    ablations = tuple(config["ablations"] or ())
    bad = [a for a in ablations if a not in HMA_VARIANTS]
    if bad:
        raise ValueError(f"ablations: expected names from {list(HMA_VARIANTS)}, got {list(ablations)}")
    return encoders, ks, heads, ablations


def run_a(
    *, encoders=DEFAULTS["a"]["encoders"], labels_per_class=DEFAULTS["a"]["labels_per_class"],
    heads=DEFAULTS["a"]["heads"], ablations=DEFAULTS["a"]["ablations"], ablation_at=DEFAULTS["a"]["ablation_at"],
    seeds=DEFAULTS["a"]["seeds"], steps=DEFAULTS["a"]["steps"], batch_size=DEFAULTS["a"]["batch_size"],
    lr=DEFAULTS["a"]["lr"], encoder_hidden=DEFAULTS["a"]["encoder_hidden"],
    pretrain_steps=DEFAULTS["a"]["pretrain_steps"], head=DEFAULTS["a"]["head"],
    mlp_hidden=DEFAULTS["a"]["mlp_hidden"], dtype="float32", progress=False, on_row=None,
):  # fmt: skip
    """E7 (a): test accuracy of heads trained on k labels per class over a frozen encoder.

    Parameters
    ----------
    encoders : sequence of {"random", "pretrained"}, keyword-only
    labels_per_class : sequence of int, keyword-only
        The k of the main grid.
    heads : sequence of str, keyword-only
        Names from :data:`HEADS`: the main grid (every encoder × k).
    ablations : sequence of str, keyword-only
        :data:`HMA_VARIANTS` run at ``ablation_at`` only (``group`` "ablation"; the base ``"hma"`` row
        of the main grid is their reference).
    ablation_at : (encoder, k), keyword-only
    seeds, steps, batch_size, lr : keyword-only
        Per seed: the labelled images, the pretrained encoder, the heads' initialisation and batch order.
        Every head gets ``steps`` Adam steps at ``lr`` on batches of min(batch_size, 5k).
    encoder_hidden, pretrain_steps : int, keyword-only
    head : dict, keyword-only
        The HMA head's options (``feature_dim`` is also the encoder's output width).
    mlp_hidden : int, keyword-only
    dtype, progress, on_row : keyword-only

    Returns
    -------
    rows : list of dict
        Keys ``ROW_KEYS["a"]``.
    """
    config = dict(encoder_hidden=encoder_hidden, pretrain_steps=pretrain_steps, head=dict(head))
    encoders, ks, heads, ablations = _check_a(
        dict(encoders=encoders, labels_per_class=labels_per_class, heads=heads, ablations=ablations)
    )
    seeds, steps, batch_size, dtype = check_common(seeds, steps, batch_size, dtype)
    ab_encoder, ab_k = ablation_at
    if ab_encoder not in ENCODERS or isinstance(ab_k, bool) or not isinstance(ab_k, (int, np.integer)) or ab_k < 1:
        raise ValueError(f"ablation_at: expected (encoder, k) with an encoder in {list(ENCODERS)}, got {ablation_at!r}")
    pool_x, pool_y, test_x, test_y = longtail.digits_split(dtype=dtype)
    jobs = [("grid", e, k, h) for e in encoders for k in ks for h in heads]
    jobs += [("ablation", ab_encoder, ab_k, h) for h in ablations]
    rows = []
    bar = progress_bar(len(seeds) * len(jobs) * steps, "E7a few labels", progress)
    try:
        with single_threaded_blas():
            for seed in seeds:
                cache = {}
                for group, encoder, k, kind in jobs:
                    if encoder not in cache:
                        cache[encoder] = _a_data(
                            pool_x, pool_y, test_x, test_y, encoder, seed=seed, config=config, dtype=dtype
                        )
                    fx, fy, tx, ty, source_accuracy = cache[encoder]
                    data_seed, init_seed, order_seed, eval_seed = longtail._seeds(seed, 1000 + k)
                    idx = few_label_indices(fy, k, rng=np.random.default_rng(data_seed))
                    x, y = fx[idx], fy[idx]
                    B = min(batch_size, len(y))
                    bar.set_description(f"E7a {encoder} k={k} {kind}")
                    start = time.perf_counter()
                    network, step = build_head(
                        kind, fx.shape[1], len(TARGET_CLASSES), seed=init_seed, dtype=dtype, lr=lr,
                        mlp_hidden=mlp_hidden, head=head,
                    )  # fmt: skip
                    params = fit(network, step, x, y, steps=steps, batch_size=B, seed=order_seed,
                                 mode=TRAIN_MODES.get(kind), bar=bar)  # fmt: skip
                    for label, kw in _evaluations(network, B):
                        rng = np.random.default_rng(eval_seed)
                        pred = predict(network, params, tx, batch_size=B, rng=rng, **kw)
                        row = {
                            "experiment": "e7a", "group": group, "encoder": encoder, "labels_per_class": k,
                            "arm": kind, "eval": label, "config": _config(network, kind), "seed": seed,
                            "train_size": len(y), "steps": steps, "batch_size": B,
                            "accuracy": float(np.mean(pred == ty)), "encoder_accuracy": source_accuracy,
                            "params": _n_params(params), "wall_time_s": time.perf_counter() - start,
                        }  # fmt: skip
                        rows.append({key: row[key] for key in ROW_KEYS["a"]})
                    if on_row is not None:
                        on_row(rows)
    finally:
        bar.close()
    return rows


# --- (b) -------------------------------------------------------------------------------------------------


def _b_data(pool_x, pool_y, test_x, test_y, *, per_class, p_train, seed, dtype):
    """Labelled images with their colour appended; the test set with the training colour rule and at random."""
    data_seed = longtail._seeds(seed, 2000)[0]
    rng = np.random.default_rng(data_seed)
    idx = few_label_indices(pool_y, per_class, rng=rng)
    x, y = pool_x[idx], pool_y[idx]
    colours, onehot = colour_feature(y, p=p_train, rng=rng)
    _, id_onehot = colour_feature(test_y, p=p_train, rng=rng)
    ood_colours, ood_onehot = colour_feature(test_y, p=None, rng=rng)
    cat = lambda a, b: np.concatenate([a, b.astype(a.dtype)], axis=1)  # noqa: E731
    return {
        "x": cat(x, onehot), "y": y, "colours": colours, "id_x": cat(test_x, id_onehot),
        "ood_x": cat(test_x, ood_onehot), "ood_colours": ood_colours, "test_y": test_y,
    }  # fmt: skip


def run_b(
    *, labels_per_class=DEFAULTS["b"]["labels_per_class"], p_train=DEFAULTS["b"]["p_train"],
    arms=DEFAULTS["b"]["arms"], ablations=DEFAULTS["b"]["ablations"], seeds=DEFAULTS["b"]["seeds"],
    steps=DEFAULTS["b"]["steps"], batch_size=DEFAULTS["b"]["batch_size"], lr=DEFAULTS["b"]["lr"],
    encoder_hidden=DEFAULTS["b"]["encoder_hidden"], head=DEFAULTS["b"]["head"],
    momentum=DEFAULTS["b"]["momentum"], dtype="float32", progress=False, on_row=None,
):  # fmt: skip
    """E7 (b): in-distribution and shifted accuracy with a spurious colour that is 90% predictive in training.

    Parameters
    ----------
    labels_per_class : int, keyword-only
    p_train : float in [0, 1], keyword-only
        The probability that the training colour is the label.
    arms : sequence of str, keyword-only
        ``"mlp"`` and :data:`HMA_VARIANTS` (``group`` "main").
    ablations : sequence of str, keyword-only
        More :data:`HMA_VARIANTS` (``group`` "ablation").
    seeds, steps, batch_size, lr, encoder_hidden, head, momentum, dtype, progress, on_row : keyword-only
        ``momentum``: the HMA host's momentum encoder.

    Returns
    -------
    rows : list of dict
        Keys ``ROW_KEYS["b"]``.
    """
    labels_per_class = _checks.check_positive_int(labels_per_class, "labels_per_class")
    p_train = _checks.check_real(p_train, "p_train", 0.0, 1.0)
    arms = longtail._check_arms(arms, ("mlp", *HMA_VARIANTS)) if arms else ()
    ablations = tuple(ablations or ())
    bad = [a for a in ablations if a not in HMA_VARIANTS]
    if bad:
        raise ValueError(f"ablations: expected names from {list(HMA_VARIANTS)}, got {list(ablations)}")
    seeds, steps, batch_size, dtype = check_common(seeds, steps, batch_size, dtype)
    pool_x, pool_y, test_x, test_y = longtail.digits_split(dtype=dtype)
    jobs = [("main", a) for a in arms] + [("ablation", a) for a in ablations if a not in arms]
    rows = []
    bar = progress_bar(len(seeds) * len(jobs) * steps, "E7b spurious colour", progress)
    try:
        with single_threaded_blas():
            for seed in seeds:
                data = _b_data(
                    pool_x, pool_y, test_x, test_y, per_class=labels_per_class, p_train=p_train, seed=seed, dtype=dtype
                )
                _, init_seed, order_seed, eval_seed = longtail._seeds(seed, 2000)
                B = min(batch_size, len(data["y"]))
                for group, arm in jobs:
                    bar.set_description(f"E7b {arm} seed {seed}")
                    start = time.perf_counter()
                    network, step = _build_b_arm(
                        arm, data["x"].shape[1], 10, seed=init_seed, dtype=dtype, hidden=encoder_hidden, head=head,
                        momentum=momentum, lr=lr,
                    )  # fmt: skip
                    params = fit(network, step, data["x"], data["y"], steps=steps, batch_size=B, seed=order_seed,
                                 mode=TRAIN_MODES.get(arm), bar=bar)  # fmt: skip
                    for label, kw in _evaluations(network, B):
                        ids = predict(network, params, data["id_x"], batch_size=B, rng=np.random.default_rng(eval_seed),
                                      **kw)  # fmt: skip
                        ood = predict(network, params, data["ood_x"], batch_size=B,
                                      rng=np.random.default_rng(eval_seed), **kw)  # fmt: skip
                        off = data["ood_colours"] != data["test_y"]
                        row = {
                            "experiment": "e7b", "group": group, "arm": arm, "eval": label,
                            "config": _config(network, arm), "seed": seed, "p_train": p_train,
                            "train_size": len(data["y"]), "steps": steps, "batch_size": B,
                            "id_accuracy": float(np.mean(ids == data["test_y"])),
                            "ood_accuracy": float(np.mean(ood == data["test_y"])),
                            "follows_colour": float(np.mean(ood[off] == data["ood_colours"][off])),
                            "params": _n_params(params), "wall_time_s": time.perf_counter() - start,
                        }  # fmt: skip
                        rows.append({key: row[key] for key in ROW_KEYS["b"]})
                    if on_row is not None:
                        on_row(rows)
    finally:
        bar.close()
    return rows


# --- transductivity ------------------------------------------------------------------------------------


def transductivity(network, params, x, y, *, eval_batches, orders, rng):
    """Accuracy and changed predictions of transductive evaluation in shuffled batches, against per sample.

    Parameters
    ----------
    network : MemoryTokensClassifier
    params : dict
    x, y : ndarray
        The test set.
    eval_batches : sequence of (int or None)
        Batch sizes; None is the whole set as one batch.
    orders : int
        Random orders per batch size.
    rng : np.random.Generator

    Returns
    -------
    per_sample_accuracy : float
    rows : list of dict
        ``eval_batch`` (int, n for None), ``accuracy`` (mean over the orders), ``changed_vs_per_sample``
        (mean fraction), ``changed_between_orders`` (mean fraction over consecutive pairs of orders; None
        for one order).
    """
    orders = _checks.check_positive_int(orders, "orders")
    base = predict(network, params, x, mode="per_sample")
    out = []
    for size in eval_batches:
        size = len(y) if size is None else _checks.check_positive_int(size, "eval_batches")
        preds = [predict(network, params, x, mode="transductive", batch_size=size, rng=rng) for _ in range(orders)]
        between = [float(np.mean(a != b)) for a, b in zip(preds, preds[1:])]
        out.append(
            {
                "eval_batch": size,
                "accuracy": float(np.mean(np.concatenate([p == y for p in preds]))),  # hits / (orders · n)
                "changed_vs_per_sample": float(np.mean([np.mean(p != base) for p in preds])),
                "changed_between_orders": float(np.mean(between)) if between else None,
            }
        )
    return float(np.mean(base == y)), out


def run_transductive(
    *, settings=DEFAULTS["transductive"]["settings"], eval_batches=DEFAULTS["transductive"]["eval_batches"],
    orders=DEFAULTS["transductive"]["orders"], seeds=DEFAULTS["transductive"]["seeds"],
    a=DEFAULTS["transductive"]["a"], b=DEFAULTS["transductive"]["b"], base=DEFAULTS["transductive"]["base"],
    steps=None, batch_size=None, max_test=None, dtype="float32", progress=False, on_row=None,
):  # fmt: skip
    """Transductivity of the base HMA head of (a) and (b): accuracy and changed predictions against the batch size.

    Parameters
    ----------
    settings : sequence of {"a", "b"}, keyword-only
    eval_batches : sequence of (int or None), keyword-only
        None: the whole test set as one batch.
    orders : int, keyword-only
        Random orders of the test set per batch size.
    seeds : keyword-only
    a, b : dict, keyword-only
        The setting: ``encoder`` and ``labels_per_class`` for (a); ``labels_per_class`` and ``p_train`` for (b).
    base : dict, keyword-only
        ``{"a": (a)'s config, "b": (b)'s config}``: the training budget and the head.
    steps, batch_size : int, keyword-only, optional
        Override both settings' training budget.
    max_test : int, keyword-only, optional
        Evaluate on the first ``max_test`` images of each test set only (the CI sizes).
    dtype, progress, on_row : keyword-only

    Returns
    -------
    rows : list of dict
        Keys ``ROW_KEYS["transductive"]``; (b) has a row per test set ("id", "shifted").
    """
    settings = tuple(settings)
    if not settings or any(s not in ("a", "b") for s in settings) or len(set(settings)) != len(settings):
        raise ValueError(f"settings: expected distinct names from ['a', 'b'], got {list(settings)}")
    if not tuple(eval_batches):
        raise ValueError("eval_batches: expected at least one batch size, got none")
    for size in eval_batches:
        if size is not None:
            _checks.check_positive_int(size, "eval_batches")
    cfg = {s: dict(base[s]) for s in settings}
    for s in settings:
        if steps is not None:
            cfg[s]["steps"] = steps
        if batch_size is not None:
            cfg[s]["batch_size"] = batch_size
    seeds, _, _, dtype = check_common(seeds, 1, 2, dtype)
    orders = _checks.check_positive_int(orders, "orders")
    limit = None if max_test is None else _checks.check_positive_int(max_test, "max_test")
    pool_x, pool_y, test_x, test_y = longtail.digits_split(dtype=dtype)
    rows = []
    bar = progress_bar(len(seeds) * sum(cfg[s]["steps"] for s in settings), "E7 transductivity", progress)
    try:
        with single_threaded_blas():
            for seed in seeds:
                for setting in settings:
                    c = cfg[setting]
                    if setting == "a":
                        fx, fy, tx, ty, _ = _a_data(
                            pool_x, pool_y, test_x, test_y, a["encoder"], seed=seed, config=c, dtype=dtype
                        )
                        data_seed, init_seed, order_seed, eval_seed = longtail._seeds(
                            seed, 1000 + a["labels_per_class"]
                        )
                        idx = few_label_indices(fy, a["labels_per_class"], rng=np.random.default_rng(data_seed))
                        x, y = fx[idx], fy[idx]
                        network, step = build_head(
                            "hma", fx.shape[1], len(TARGET_CLASSES), seed=init_seed, dtype=dtype, lr=c["lr"],
                            head=c["head"],
                        )  # fmt: skip
                        tests = [("test", tx, ty)]
                    else:
                        data = _b_data(
                            pool_x, pool_y, test_x, test_y, per_class=b["labels_per_class"], p_train=b["p_train"],
                            seed=seed, dtype=dtype,
                        )  # fmt: skip
                        _, init_seed, order_seed, eval_seed = longtail._seeds(seed, 2000)
                        x, y = data["x"], data["y"]
                        network, step = _build_b_arm(
                            "hma", x.shape[1], 10, seed=init_seed, dtype=dtype, hidden=c["encoder_hidden"],
                            head=c["head"], momentum=c["momentum"], lr=c["lr"],
                        )  # fmt: skip
                        tests = [("id", data["id_x"], data["test_y"]), ("shifted", data["ood_x"], data["test_y"])]
                    bar.set_description(f"E7 transductivity ({setting}) seed {seed}")
                    B = min(c["batch_size"], len(y))
                    params = fit(network, step, x, y, steps=c["steps"], batch_size=B, seed=order_seed, bar=bar)
                    for name, tx_, ty_ in tests:
                        tx_, ty_ = tx_[:limit], ty_[:limit]
                        rng = np.random.default_rng(eval_seed)
                        per_sample, found = transductivity(
                            network, params, tx_, ty_, eval_batches=eval_batches, orders=orders, rng=rng
                        )
                        for f in found:
                            row = {
                                "experiment": "e7t", "setting": setting, "test_set": name, "seed": seed,
                                "test_size": len(ty_), "orders": orders, "per_sample_accuracy": per_sample, **f,
                            }  # fmt: skip
                            rows.append({key: row[key] for key in ROW_KEYS["transductive"]})
                    if on_row is not None:
                        on_row(rows)
    finally:
        bar.close()
    return rows


#: The experiments by name.
EXPERIMENTS = {"a": run_a, "b": run_b, "transductive": run_transductive}


def run(experiment, **config):
    """``run_a``, ``run_b`` or ``run_transductive`` with ``config``: ``run("a", **QUICK["a"])`` is the CI run."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment: expected one of {sorted(EXPERIMENTS)}, got {experiment!r}")
    return EXPERIMENTS[experiment](**config)


# --- output ----------------------------------------------------------------------------------------------


def _groups(rows, key):
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out


def _paired(group, reference, key):
    """Per seed, ``key`` of each row of ``group`` minus the reference row's at that seed (the same data)."""
    ref = {r["seed"]: r[key] for r in reference}
    return [r[key] - ref[r["seed"]] for r in group if r["seed"] in ref]


def _format_a(rows):
    r0 = rows[0]
    lines = [
        f"E7a few labels, frozen encoder, head-only tuning: digits 5–9 (5-way), k labelled images per class, "
        f"{r0['steps']} steps of min(B, 5k) (B = {max(r['batch_size'] for r in rows)}); test accuracy on 200 images; "
        "mean ± s.d. over seeds; Δ = the paired difference (same seed: the same labelled images and encoder) from "
        "the linear head (grid) or from the base hma head in the same evaluation mode (ablations)",
        "",
        "| group | encoder | k | head | eval | seeds | accuracy | Δ |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    groups = _groups(rows, lambda r: (r["group"], r["encoder"], r["labels_per_class"], r["arm"], r["eval"]))
    for (group, enc, k, arm, ev), g in groups.items():
        ref = ("grid", enc, k, "linear", "—") if group == "grid" else ("grid", enc, k, "hma", ev)
        delta = "—" if ref[3] == arm else mean_sd(_paired(g, groups.get(ref, []), "accuracy"), "+.3f")
        lines.append(
            f"| {group} | {enc} | {k} | {arm} | {ev} | {len(g)} | {mean_sd([r['accuracy'] for r in g])} | {delta} |"
        )
    src = list({r["seed"]: r["encoder_accuracy"] for r in rows if r["encoder_accuracy"] is not None}.values())
    if src:
        lines += ["", f"The pretrained encoder's accuracy on the 0–4 test images: {mean_sd(src)}."]
    return lines


def _format_b(rows):
    r0 = rows[0]
    lines = [
        f"E7b spurious colour: digits + a 10-d colour equal to the label with p = {r0['p_train']:g} in training "
        f"and uniform at test (shifted); {r0['train_size']} training images, {r0['steps']} steps of "
        f"{r0['batch_size']}; mean ± s.d. over seeds; Δ shifted = the paired difference (same seed, same data) "
        "from the mlp (main) or from the base hma in the same evaluation mode (ablations)",
        "",
        "| group | arm | eval | config | seeds | in-distribution | shifted | Δ shifted | follows colour |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    groups = _groups(rows, lambda r: (r["group"], r["arm"], r["eval"]))
    for (group, arm, ev), g in groups.items():
        ref = ("main", "mlp", "—") if group == "main" else ("main", "hma", ev)
        delta = "—" if ref[1] == arm else mean_sd(_paired(g, groups.get(ref, []), "ood_accuracy"), "+.3f")
        cells = [mean_sd([r[k] for r in g]) for k in ("id_accuracy", "ood_accuracy")]
        cells += [delta, mean_sd([r["follows_colour"] for r in g])]
        lines.append(f"| {group} | {arm} | {ev} | {g[0]['config']} | {len(g)} | {' | '.join(cells)} |")
    return lines


def _format_t(rows):
    lines = [
        "E7 transductivity of the base HMA head: transductive evaluation in shuffled batches against per-sample "
        f"mode ({rows[0]['orders']} random orders per batch size); mean ± s.d. over seeds",
        "",
        "| setting | test set | eval batch | seeds | accuracy | per-sample accuracy | changed vs per-sample "
        "| changed between orders |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (setting, test_set, size), g in _groups(rows, lambda r: (r["setting"], r["test_set"], r["eval_batch"])).items():
        size_text = f"{size} (all)" if size == g[0]["test_size"] else str(size)
        cells = [
            mean_sd([r[k] for r in g])
            for k in ("accuracy", "per_sample_accuracy", "changed_vs_per_sample", "changed_between_orders")
        ]
        lines.append(f"| {setting} | {test_set} | {size_text} | {len(g)} | {' | '.join(cells)} |")
    return lines


def format_table(rows) -> str:
    """The rows (of one experiment) as a Markdown table of seed means ± s.d. under a line stating the setting."""
    if not rows:
        return "(no rows)"
    kind = rows[0]["experiment"]
    return "\n".join({"e7a": _format_a, "e7b": _format_b, "e7t": _format_t}[kind](rows))


def plot_a(rows, path):
    """Accuracy against labels per class for each (encoder, head) of (a)'s main grid (mean ± s.d.); returns path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [r for r in rows if r["group"] == "grid"]
    encoders = list(dict.fromkeys(r["encoder"] for r in grid))
    fig, axes = plt.subplots(1, len(encoders), figsize=(4.2 * len(encoders), 3.4), squeeze=False, sharey=True)
    for ax, enc in zip(axes[0], encoders):
        mine = [r for r in grid if r["encoder"] == enc]
        for (arm, ev), g in _groups(mine, lambda r: (r["arm"], r["eval"].split("@")[0])).items():  # any batch size
            by_k = _groups(g, lambda r: r["labels_per_class"])
            ks = sorted(by_k)
            mean = [np.mean([r["accuracy"] for r in by_k[k]]) for k in ks]
            sd = [np.std([r["accuracy"] for r in by_k[k]], ddof=1) if len(by_k[k]) > 1 else 0.0 for k in ks]
            label = arm if ev == "—" else f"{arm} ({'per sample' if ev == 'per-sample' else 'transductive'})"
            style = "--" if ev == "transductive" else "-"
            ax.errorbar(ks, mean, yerr=sd, marker="o", linestyle=style, capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["labels_per_class"] for r in grid}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("labelled images per class")
        ax.set_title(f"{enc} encoder (frozen)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (5-way)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- command line ----------------------------------------------------------------------------------------


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def _eval_batch(text):
    if text == "all":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None


def _parser():
    p = argparse.ArgumentParser(prog="python -m refmann.experiments.few_labels", description=__doc__.splitlines()[0])
    p.add_argument("--experiment", required=True, choices=sorted(EXPERIMENTS), help="a, b or transductive")
    p.add_argument("--quick", action="store_true", help="the CI sizes (seconds)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=None, help="one run per seed")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps per run")
    p.add_argument("--batch-size", type=positive_int, default=None, help="examples per step (>= 2)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--arms", nargs="+", default=None, help=f"(a): heads from {list(HEADS)}; (b): mlp or HMA variants")
    p.add_argument("--ablations", nargs="*", default=None, help=f"HMA variants from {list(ABLATIONS)} (none: empty)")
    a = p.add_argument_group("(a)")
    a.add_argument("--labels", type=positive_int, nargs="+", default=None, help="labelled images per class k")
    a.add_argument("--encoders", nargs="+", choices=ENCODERS, default=None)
    a.add_argument("--plot", default=None, metavar="FILE.png", help="draw accuracy against k")
    b = p.add_argument_group("(b)")
    b.add_argument("--p-train", type=_probability, default=None, help="P(colour = label) in training (0.9)")
    t = p.add_argument_group("transductive")
    t.add_argument("--eval-batches", type=_eval_batch, nargs="+", default=None, help="batch sizes, or 'all'")
    t.add_argument("--orders", type=positive_int, default=None, help="random orders per batch size")
    p.add_argument("--out", default=None, metavar="FILE.json", help="also write the rows to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _copy(config):
    return {key: (dict(v) if isinstance(v, Mapping) else v) for key, v in config.items()}


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    exp = args.experiment
    config = _copy((QUICK if args.quick else DEFAULTS)[exp])
    flags = {
        "a": ("labels", "encoders", "plot"), "b": ("p_train",), "transductive": ("eval_batches", "orders"),
    }  # fmt: skip
    for other, names in flags.items():
        given = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is not None]
        if other != exp and given:
            p.error(f"{', '.join(given)}: flags of --experiment {other}, not {exp}")
    if exp == "transductive":
        for name in ("arms", "ablations"):
            if getattr(args, name) is not None:
                p.error(f"--{name}: not for --experiment transductive (it runs the base HMA head)")
    if args.seeds is not None:
        config["seeds"] = tuple(args.seeds)
    for name in ("steps", "batch_size"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if (config.get("batch_size") or 2) < 2:
        p.error("--batch-size: expected an integer >= 2")
    if args.arms is not None:
        known = HEADS if exp == "a" else ("mlp", *HMA_VARIANTS)
        bad = [a for a in args.arms if a not in known]
        if bad or len(set(args.arms)) != len(args.arms):
            p.error(f"--arms: expected distinct names from {list(known)}, got {args.arms}")
        config["heads" if exp == "a" else "arms"] = tuple(args.arms)
    if args.ablations is not None:
        bad = [a for a in args.ablations if a not in HMA_VARIANTS]
        if bad:
            p.error(f"--ablations: expected names from {list(HMA_VARIANTS)}, got {args.ablations}")
        config["ablations"] = tuple(args.ablations)
    if args.labels is not None:
        config["labels_per_class"] = tuple(args.labels)
    if args.encoders is not None:
        config["encoders"] = tuple(args.encoders)
    if args.p_train is not None:
        config["p_train"] = args.p_train
    if args.eval_batches is not None:
        config["eval_batches"] = tuple(args.eval_batches)
    if args.orders is not None:
        config["orders"] = args.orders
    from ..bench._proc import machine_info, machine_line

    machine = machine_info()
    command = "python -m refmann.experiments.few_labels " + " ".join(sys.argv[1:] if argv is None else argv)
    label = {"a": "E7a few labels", "b": "E7b spurious colour", "transductive": "E7 transductivity"}[exp]
    shown = {k: v for k, v in config.items() if k != "base"}

    def write(rows):
        doc = {
            "experiment": label, "command": command.strip(), "machine": machine,
            "config": json.loads(json.dumps({**shown, "dtype": args.dtype})), "rows": rows,
        }  # fmt: skip
        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")

    start = time.perf_counter()
    rows = run(exp, **config, dtype=args.dtype, progress=not args.quiet, on_row=write if args.out else None)
    print(format_table(rows))
    print(f"\nWall time {time.perf_counter() - start:.0f} s. Machine: {machine_line(machine)}.")
    if args.out:
        write(rows)
    if args.plot:
        print(f"Figure: {plot_a(rows, args.plot)}")
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
