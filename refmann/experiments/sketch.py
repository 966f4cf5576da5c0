r"""E2 and E3: the sketch memory on fuzzy keys, and on multi-hop traversal of random functional graphs.

Run ``python -m refmann.experiments.sketch --experiment e2`` (or ``e3``; ``--quick`` for the CI sizes,
``--help`` for the flags). The memory is :class:`~refmann.layers.SketchMemory`, refmann's reconstruction
of Panigrahy, Wang & Zaheer (2021), of which only the abstract is public: which choices are ours is
listed on the documentation's sketch pages.

**E2, fuzzy keys** (seed-methods §5). E1's task (:func:`refmann.experiments.capacity.key_value_pairs`: n
keys uniform on :math:`S^{31}`, a class in [0, 100) for each), queried at keys rotated by an angle θ
(:func:`rotate`: :math:`q = \cos\theta\, k + \sin\theta\, u`, u a random unit vector orthogonal to k,
drawn once per seed and shared by every θ and every arm). The arms:

- ``"explicit"``: a SketchMemory 32 → 100 (``combine="none"``) into which each key's one-hot class is
  written (:meth:`~refmann.layers.SketchMemory.write_inplace`, ``mode="average"``), read at the query,
  argmax; a read that is all zero (no table holds anything in the query's buckets) is a miss. One run
  per T in ``tables``, with b = :func:`bits_for` (n) bits: the smallest with :math:`2^b \ge 4n`. Its rows
  also report the *measured* collision rates: ``collision_rate``, the fraction of (query, table) pairs in
  which the query falls in its key's bucket, to compare with :func:`collision_curve`
  :math:`(1 - \theta/\pi)^b`, and ``hit_rate``, the fraction of queries that share a bucket with their key
  in at least one table, to compare with :func:`tables_curve` :math:`1 - (1 - (1 - \theta/\pi)^b)^T`;
  and ``alone_rate``, the fraction of (key, table) pairs whose row holds no other key, to compare with
  ``alone_uniform`` :math:`(1 - 2^{-b})^{n-1}`, its value were the :math:`2^b` buckets equally likely.
- learned arms, trained on the exact keys (:func:`fit`, the batching of E1) and evaluated on the rotated
  ones: ``"mlp"`` and ``"mlp+pkm"`` are E1's arms (:data:`refmann.experiments.capacity.ARMS`, E1's
  options and learning rates); ``"mlp+sketch"`` (:func:`build_mlp_sketch`) is a ReLU MLP with one hidden
  layer and a SketchMemory after it (T = 4 tables, b = :func:`bits_for` (n), read width = the hidden
  width, concatenated), its width chosen so that its FLOPs per row match E1's budget
  (:func:`sketch_width_for_flops`); values on lazy row-sparse Adam (lr 1e-2), the rest on Adam (3e-3).

**E3, multi-hop traversal** (seed-methods §5). A random functional graph on N nodes
(:func:`functional_graph`: each node one uniformly random successor f(v)), node embeddings random unit
vectors in :math:`\mathbb R^{32}`; the input is :math:`[e(v); \mathrm{onehot}(h)]` for hop counts
h ∈ 1..H, the target the class :math:`f^h(v) \in [0, N)` (:func:`hop_dataset`). Every (v, h) pair is a
training pair: this is the memorisation of a graph, scored by exact-match accuracy over all pairs (per h
and overall) in evaluation mode after training. The arms:

- ``"mlp+sketch"``: a depth-``depth`` ReLU MLP of width ``width`` with a SketchMemory after every hidden
  activation (``memory_layers="all"``): T tables, read width ``memory["output_dim"]``, concatenated, and
  b = min(``max_bits``, :func:`bits_for` (H·N)) bits; values on lazy row-sparse Adam (lr 1e-1), the rest
  on Adam (1e-3).
- ``"mlp"``: a plain depth-``depth`` ReLU MLP whose width is solved so that its FLOPs per row match the
  memory arm's at the same N (:func:`refmann.experiments.capacity.mlp_width_for_flops`); Adam at E1's
  MLP rate, 3e-3.

The memory arm's rates were chosen on E3 at N = 4,096 (3,000 steps of 256, seed 0) from rest × values in
(1e-4, 1e-1), (3e-4, 1e-1), (3e-4, 3e-1), (1e-3, 3e-2), (1e-3, 1e-1), (3e-3, 1e-1), and (1e-3, 1e-1) with
T = 8 (accuracies on the documentation's sketch page). E2's sketch arm uses E1's MLP rate for the rest and
1e-2 for the values, untuned.

**FLOPs** (:func:`count_flops`) are multiply-adds per input row, as E1 counts them
(:func:`refmann.experiments.capacity.count_flops`: every matmul, nothing elementwise), with a sketch
memory costing :func:`sketch_flops` (the layer's own ``flops_per_row``): :math:`T b X` for the T·b
hyperplane projections of its X-wide input and :math:`T Y` for the read of T rows of width Y (plus X for a
gate). The layer hashes its input directly, so there is no separate random-projection sketch to count; the
concatenation's cost appears in the next linear layer, which reads X + Y features. A parameter count is the
number of trained scalars (for the explicit arm: the table's entries, written rather than trained).

The value tables are trained with :func:`~refmann.train.optim.sparse_adam_inplace` (the same rule as
``sparse_adam``, bit for bit, without its three O(table) copies per step).

``run(experiment, **config) -> rows`` (:func:`run_e2`, :func:`run_e3`; keys :data:`ROW_KEYS`),
``format_table(rows) -> str``, :func:`plot_e2`, ``main(argv=None)``; ``--quick`` runs :data:`QUICK`,
``--out FILE.json`` writes ``{"experiment", "command", "machine", "rows"}`` atomically (after every
finished run), ``--plot FILE.png`` draws E2's accuracy against θ with the two curves.

References
----------
Panigrahy, Wang, Zaheer. Sketch based Memory for Neural Networks. AISTATS 2021 (abstract).
Charikar. Similarity estimation techniques from rounding algorithms. STOC 2002 (SimHash).
Lample, Sablayrolles, Ranzato, Denoyer, Jégou. Large Memory Layers with Product Keys. NeurIPS 2019.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
import time
from collections.abc import Mapping

import numpy as np

from .. import _checks
from .._io import atomic_write_text
from .._threads import single_threaded_blas
from ..layers import MLP, Sequential, SketchMemory
from ..layers.base import check_dtype
from ..models.feedforward import FeedForwardModel
from ..train.optim import make_optimizer, param_groups, sparse_adam_inplace
from . import capacity
from ._common import check_common, mean_sd, positive_int, progress_bar, seed_int

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULTS", "QUICK", "ROW_KEYS", "THETAS", "bits_for", "build_mlp_sketch", "collision_curve", "count_flops",
    "e2_summary", "explicit_memory", "explicit_predict", "fit", "format_table", "functional_graph", "hop_dataset",
    "hop_targets", "main", "memory_rows", "node_embeddings", "orthogonal_directions", "plot_e2", "predict",
    "rotate", "run", "run_e2", "run_e3", "sketch_flops", "sketch_width_for_flops", "tables_curve",
]  # fmt: skip

#: E2's task (E1's): keys on S^(dim-1), classes in [0, num_classes).
INPUT_DIM = capacity.INPUT_DIM
NUM_CLASSES = capacity.NUM_CLASSES
#: The query angles of E2, in degrees.
THETAS = (0, 2, 5, 10, 20, 30)
#: E3's node embedding width.
EMBED_DIM = 32
#: Rows evaluated per forward in the evaluation passes.
EVAL_CHUNK = 2048

#: The full runs.
DEFAULTS = {
    "e2": {
        "n": 4096, "thetas": THETAS, "tables": (1, 4, 16), "arms": ("explicit", "mlp", "mlp+sketch", "mlp+pkm"),
        "seeds": (0, 1, 2), "steps": 2000, "batch_size": 256, "sketch_tables": 4, "pkm": capacity.PKM_OPTIONS,
    },
    "e3": {
        "sizes": (256, 1024, 4096), "hops": 4, "arms": ("mlp", "mlp+sketch"), "seeds": (0,), "steps": 3000,
        "batch_size": 256, "width": 128, "depth": 4, "memory": {"num_tables": 4, "output_dim": 32},
        "max_bits": 16,
    },
}  # fmt: skip
#: The CI sizes (seconds).
QUICK = {
    "e2": {
        "n": 256, "thetas": THETAS, "tables": (1, 4, 16), "arms": ("explicit", "mlp", "mlp+sketch", "mlp+pkm"),
        "seeds": (0, 1), "steps": 30, "batch_size": 32, "sketch_tables": 4, "pkm": capacity.QUICK_PKM_OPTIONS,
    },
    "e3": {
        "sizes": (32, 64), "hops": 4, "arms": ("mlp", "mlp+sketch"), "seeds": (0,), "steps": 30, "batch_size": 32,
        "width": 16, "depth": 4, "memory": {"num_tables": 2, "output_dim": 4}, "max_bits": 10,
    },
}  # fmt: skip

#: The keys of every row, per experiment.
ROW_KEYS = {
    "e2": (
        "experiment", "arm", "config", "n", "seed", "theta_deg", "num_tables", "num_bits", "accuracy", "hit_rate",
        "collision_rate", "collision_curve", "tables_curve", "alone_rate", "alone_uniform", "steps", "batch_size",
        "flops_per_row", "params", "wall_time_s",
    ),
    "e3": (
        "experiment", "arm", "config", "num_nodes", "hops", "seed", "steps", "batch_size", "epochs", "accuracy",
        "accuracy_by_hop", "image_fraction_by_hop", "num_tables", "num_bits", "bucket_stability", "flops_per_row",
        "params", "wall_time_s",
    ),
}  # fmt: skip
E2_ARMS = ("explicit", "mlp", "mlp+sketch", "mlp+pkm")
E3_ARMS = ("mlp", "mlp+sketch")


# --- hashing: the bits rule, the curves, FLOPs ---------------------------------------------------------------


def bits_for(num_keys, *, factor=4, max_bits=24) -> int:
    r"""The smallest b with :math:`2^b \ge` ``factor`` · ``num_keys``, at most ``max_bits``.

    Seed-methods §3.4: with n keys in :math:`2^b` buckets a key shares its bucket with about
    :math:`n / 2^b` others, so choose :math:`2^b \gtrsim 4n`.
    """
    num_keys = _checks.check_positive_int(num_keys, "num_keys")
    factor = _checks.check_positive_int(factor, "factor")
    max_bits = _checks.check_positive_int(max_bits, "max_bits")
    return min(max_bits, max(1, math.ceil(math.log2(factor * num_keys))))


def collision_curve(theta, bits):
    r""":math:`(1 - \theta/\pi)^b`: the chance that a key and a query at angle θ (radians) share one table's bucket."""
    theta = np.asarray(theta, dtype=np.float64)
    return (1.0 - theta / np.pi) ** bits


def tables_curve(theta, bits, tables):
    r""":math:`1 - (1 - (1 - \theta/\pi)^b)^T`: the probability that they share a bucket in at least one of T tables."""
    return 1.0 - (1.0 - collision_curve(theta, bits)) ** tables


def sketch_flops(layer) -> int:
    r"""Multiply-adds per row of a :class:`~refmann.layers.SketchMemory`: :math:`T b X + T Y` (+ X with a gate).

    The T·b hyperplane projections of the X-wide input (:func:`refmann.layers.sketch.simhash_buckets`) and
    the read of T value rows of width Y; the bit packing, the signs and the 1/T are elementwise (not
    counted, as E1 counts nothing elementwise).
    """
    return int(layer.flops_per_row())  # the layer's own count, this formula (checked in the tests)


def count_flops(layer) -> int:
    """Multiply-adds per row as E1 counts them, with each SketchMemory costing :func:`sketch_flops`."""
    if isinstance(layer, SketchMemory):
        return sketch_flops(layer)
    if isinstance(layer, Sequential):  # (an MLP too): walk it, so that a sketch inside is counted by its rule
        return sum(count_flops(child) for child in layer.children.values())
    return capacity.count_flops(layer)


def sketch_width_for_flops(input_dim, num_classes, flops, *, num_tables, num_bits) -> int:
    r"""The hidden width w of :func:`build_mlp_sketch` (one hidden layer) closest to ``flops`` multiply-adds.

    .. math:: X w + (T b w + T w) + 2 w C

    (the first layer, the memory on the w-wide hidden layer with w-wide values, the output layer reading
    [h; r]); at least 1.
    """
    flops = _checks.check_positive_int(flops, "flops")
    per_unit = input_dim + num_tables * (num_bits + 1) + 2 * num_classes
    return max(1, round(flops / per_unit))


# --- E2: fuzzy keys --------------------------------------------------------------------------------------------


def orthogonal_directions(keys, *, rng):
    """For each unit key k, a random unit vector u orthogonal to it (a Gaussian, k's component removed, normalised).

    Parameters
    ----------
    keys : ndarray, shape (n, d)
        Unit vectors (d ≥ 2).
    rng : np.random.Generator, keyword-only

    Returns
    -------
    directions : ndarray, shape (n, d)
    """
    keys = _checks.as_float_array(keys, "keys", ndim=2)
    if keys.shape[1] < 2:
        raise ValueError(f"keys: expected at least 2 dimensions to rotate in, got shape {keys.shape}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a np.random.Generator, got {type(rng).__name__}")
    u = rng.standard_normal(keys.shape)  # (n, d)
    u -= np.sum(u * keys, axis=1, keepdims=True) * keys
    u -= np.sum(u * keys, axis=1, keepdims=True) * keys  # twice: orthogonal to rounding
    return (u / np.linalg.norm(u, axis=1, keepdims=True)).astype(keys.dtype)


def rotate(keys, directions, theta_deg):
    r"""The queries :math:`q = \cos\theta\, k + \sin\theta\, u`: each key rotated by θ degrees in the plane (k, u).

    Parameters
    ----------
    keys, directions : ndarray, shape (n, d)
        Unit keys and unit directions orthogonal to them (:func:`orthogonal_directions`).
    theta_deg : float
        In [0, 180].

    Returns
    -------
    queries : ndarray, shape (n, d)
        Unit vectors at angle θ from their keys.
    """
    theta_deg = _checks.check_real(theta_deg, "theta_deg", 0.0, 180.0)
    keys = _checks.as_float_array(keys, "keys", ndim=2)
    directions = _checks.as_float_array(directions, "directions", ndim=2)
    _checks.check_shape(directions, "directions", keys.shape)
    t = math.radians(theta_deg)
    return (math.cos(t) * keys + math.sin(t) * directions).astype(keys.dtype)


def explicit_memory(keys, labels, *, num_tables, num_bits, num_classes=NUM_CLASSES, seed=0, dtype=np.float32):
    """A :class:`~refmann.layers.SketchMemory` (``combine="none"``) holding each key's one-hot class (averaged writes).

    Parameters
    ----------
    keys : ndarray, shape (n, X)
    labels : int ndarray, shape (n,)
        In [0, num_classes).
    num_tables, num_bits : int, keyword-only
    num_classes : int, keyword-only
    seed : int, keyword-only
        The hyperplanes.
    dtype : float32 or float64, keyword-only

    Returns
    -------
    memory : SketchMemory
        Its ``params["values"]`` row r is the mean of the one-hot classes of the keys hashed to r.
    """
    keys = _checks.as_float_array(keys, "keys", ndim=2)
    num_classes = _checks.check_positive_int(num_classes, "num_classes")
    labels = _checks.as_index_array(labels, "labels", upper=num_classes, shape=(keys.shape[0],))
    memory = SketchMemory(
        input_dim=keys.shape[1], output_dim=num_classes, num_tables=num_tables, num_bits=num_bits, combine="none",
        seed=seed, dtype=dtype,
    )  # fmt: skip
    memory.write_inplace(keys, np.eye(num_classes, dtype=memory.dtype)[labels])
    return memory


def explicit_predict(memory, queries):
    """The class each query reads from an :func:`explicit_memory`: the argmax of the read, −1 when the read is zero.

    Ties go to the smaller class (``np.argmax``). A read is all zero exactly when no table holds a key in
    the query's buckets (the rows are means of one-hot vectors); that is a miss, not a guess.

    Returns
    -------
    predictions : int ndarray, shape (n,)
    """
    read = np.concatenate(
        [memory.forward(queries[i : i + EVAL_CHUNK])[0] for i in range(0, len(queries), EVAL_CHUNK)]
    )  # (n, C)
    pred = np.argmax(read, axis=1)
    pred[read.max(axis=1) <= 0] = -1
    return pred


def build_mlp_sketch(
    input_dim, num_classes, *, seed=0, dtype=np.float64, hidden=(102,), memory=None, memory_layers="all", lr=3e-3,
    values_lr=1e-2,
):  # fmt: skip
    """A ReLU MLP with a sketch memory after its hidden layers; values on lazy row-sparse Adam, the rest on Adam.

    Parameters
    ----------
    input_dim, num_classes : int
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only
    hidden : sequence of int, keyword-only
        The hidden widths.
    memory : dict, keyword-only
        :class:`~refmann.layers.MLP`'s ``memory=`` (SketchMemory keywords: ``num_tables``, ``num_bits``,
        ``output_dim`` (default the hidden width), ``combine`` (default concat), ...).
    memory_layers : "all" or sequence of int, keyword-only
    lr, values_lr : float, keyword-only
        Adam's for everything but the values; :func:`~refmann.train.optim.sparse_adam_inplace`'s for the
        ``"mem{l}.values"`` tables (parameter group ``"*values"``).

    Returns
    -------
    network : refmann.layers.MLP
    step : callable
        ``step(params, grads, state) -> (params, state)``; it updates the value tables **in place**.

    Notes
    -----
    Not registered in :data:`refmann.experiments.capacity.ARMS`: importing this module leaves E1's table
    and its tests as they are.
    """
    memory = {"num_tables": 4, "num_bits": 12} if memory is None else dict(memory)
    network = MLP(
        input_dim=input_dim, hidden_dims=tuple(hidden), output_dim=num_classes, activation="relu", memory=memory,
        memory_layers=memory_layers, seed=seed, dtype=dtype,
    )  # fmt: skip
    step = param_groups(
        {"*values": functools.partial(sparse_adam_inplace, lr=values_lr), "*": make_optimizer("adam", lr=lr)}
    )
    return network, step


def fit(network, step, inputs, labels, *, steps, batch_size, seed, bar=None, on_step=None):
    """Train ``network`` with ``step`` on (inputs, labels) by softmax cross-entropy; returns the trained params.

    The batching of :func:`refmann.experiments.capacity.train_and_evaluate`: batches without replacement
    from a fresh permutation each epoch, a partial last batch dropped (every step sees ``min(batch_size,
    n)`` rows); row gradients stay :class:`~refmann.ops.RowGrad` for a sparse optimizer.

    Parameters
    ----------
    network : Layer
    step : callable
        ``step(params, grads, state) -> (params, state)``.
    inputs : ndarray, shape (n, X)
    labels : int ndarray, shape (n,)
    steps, batch_size, seed : int, keyword-only
        ``seed`` draws the batch order.
    bar : tqdm, keyword-only, optional
        Advanced once per step.
    on_step : callable, keyword-only, optional
        ``on_step(t, params)`` after step t = 1..steps (the value tables may be updated in place later:
        read what you need then).

    Returns
    -------
    params : dict
        The trained parameters (hand them to ``network.forward(..., params=)``).

    Raises
    ------
    FloatingPointError
        A parameter became non-finite.
    """
    steps = _checks.check_positive_int(steps, "steps")
    batch_size = _checks.check_positive_int(batch_size, "batch_size")
    inputs = _checks.as_float_array(inputs, "inputs", ndim=2)
    n = len(inputs)
    classes = getattr(network, "output_dim", None) or np.iinfo(np.int64).max  # an MLP knows its classes
    labels = _checks.as_index_array(labels, "labels", upper=classes, shape=(n,))
    B = min(batch_size, n)
    model = FeedForwardModel(network, loss="softmax_ce")
    model.train()
    rng = np.random.default_rng(seed)
    order, pos, state = rng.permutation(n), 0, None
    with _checks.unchecked():  # the data are ours and checked once; the inner loop skips the per-op scans
        for t in range(steps):
            if pos + B > n:
                order, pos = rng.permutation(n), 0
            batch = order[pos : pos + B]
            pos += B
            loss, grads = model.loss_and_grads(inputs[batch], labels[batch], row_grads=True)
            model.params, state = step(model.params, grads, state)
            if on_step is not None:
                on_step(t + 1, model.params)
            if bar is not None:
                bar.update(1)
                if t % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.3g}")
    bad = [k for k, v in model.params.items() if not np.all(np.isfinite(v))]
    if bad:
        raise FloatingPointError(f"fit: the parameters {bad} became non-finite")
    return model.params


def predict(network, params, inputs):
    """Argmax classes of ``network`` on ``inputs`` in evaluation mode (in chunks); the network is left in training mode.

    Returns
    -------
    predictions : int ndarray, shape (n,)
    """
    inputs = _checks.as_float_array(inputs, "inputs", ndim=2)
    network.eval()
    try:
        with _checks.unchecked():
            out = [
                np.argmax(network.forward(inputs[i : i + EVAL_CHUNK], params=params)[0], axis=1)
                for i in range(0, len(inputs), EVAL_CHUNK)
            ]
    finally:
        network.train()
    return np.concatenate(out)


def memory_rows(network, params, inputs) -> list:
    """The value rows every input reads in each sketch memory of an :class:`~refmann.layers.MLP` (evaluation mode).

    Returns
    -------
    list of int ndarray, shape (n, T)
        One per memory layer, in order (:meth:`refmann.layers.MLP.trace`).
    """
    inputs = _checks.as_float_array(inputs, "inputs", ndim=2)
    network.eval()
    try:
        with _checks.unchecked():
            chunks = [
                [rows for (rows,) in network.trace(network.forward(inputs[i : i + EVAL_CHUNK], params=params)[1])]
                for i in range(0, len(inputs), EVAL_CHUNK)
            ]
    finally:
        network.train()
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))] if chunks else []


def _seeds(seed, size, count):
    """``count`` generator seeds for (seed, size): the same for every arm of a run."""
    return [int(s.generate_state(1)[0] % 2**31) for s in np.random.SeedSequence([seed, size]).spawn(count)]


def _check_common(seeds, steps, batch_size, dtype, arms, known):
    """:func:`~refmann.experiments._common.check_common`, and the arms: distinct names from ``known``."""
    seeds, steps, batch_size, dtype = check_common(seeds, steps, batch_size, dtype)
    arms = tuple(arms)
    if not arms or any(a not in known for a in arms) or len(set(arms)) != len(arms):
        raise ValueError(f"arms: expected distinct names from {list(known)}, got {list(arms)}")
    return seeds, steps, batch_size, dtype, arms


def _describe_mlp(network) -> str:
    """``"MLP 36 → 4×128 → 1024"``, with ``"+ sketch T=4 b=16 Y=32 after hidden layers 1–4"`` for a memory."""
    hidden = network.hidden_dims
    middle = f"{len(hidden)}×{hidden[0]}" if len(set(hidden)) == 1 and len(hidden) > 1 else " → ".join(map(str, hidden))
    text = f"MLP {network.input_dim} → {middle} → {network.output_dim}"
    if network.memory_layers:
        m = network.children[f"mem{network.memory_layers[0]}"]
        where = ", ".join(map(str, network.memory_layers))
        text += f" + sketch T={m.num_tables} b={m.num_bits} Y={m.output_dim} after hidden layer {where}"
    return text


def _describe_pkm(o) -> str:
    norm = {None: "none", "batchnorm": "BN", "layernorm": "LN"}[o["query_norm"]]
    return f"trunk {o['trunk_dim']}, PKM N={o['num_keys']}² H={o['num_heads']} k={o['k']} dk={o['key_dim']} {norm}"


def run_e2(
    n=DEFAULTS["e2"]["n"], *, thetas=THETAS, tables=DEFAULTS["e2"]["tables"], bits=None, arms=E2_ARMS,
    seeds=DEFAULTS["e2"]["seeds"], steps=DEFAULTS["e2"]["steps"], batch_size=DEFAULTS["e2"]["batch_size"],
    sketch_tables=4, pkm=capacity.PKM_OPTIONS, dtype="float32", progress=False, on_row=None,
):  # fmt: skip
    r"""E2: accuracy against the query angle θ, for explicit writes and for arms trained on the exact keys.

    Parameters
    ----------
    n : int
        The number of pairs.
    thetas : sequence of float, keyword-only
        Query angles in degrees, in [0, 90].
    tables : sequence of int, keyword-only
        T of the explicit-write arm (one run each).
    bits : int, keyword-only, optional
        b of the explicit and sketch arms; default :func:`bits_for` (n), the smallest with :math:`2^b \ge 4n`.
    arms : sequence of str, keyword-only
        From ``("explicit", "mlp", "mlp+sketch", "mlp+pkm")``.
    seeds : sequence of int, keyword-only
        One run per seed: its own pairs, directions, hyperplanes, initialisations and batch order.
    steps, batch_size : int, keyword-only
        The training budget of each learned arm (E1's protocol).
    sketch_tables : int, keyword-only
        T of the ``"mlp+sketch"`` arm.
    pkm : dict, keyword-only
        Options of ``"mlp+pkm"`` (E1's); ``"mlp"`` and ``"mlp+sketch"`` are sized to its FLOPs.
    dtype : {"float32", "float64"}, keyword-only
    progress : bool, keyword-only
        A tqdm bar on stderr.
    on_row : callable, keyword-only, optional
        Called with the rows so far after each run.

    Returns
    -------
    rows : list of dict
        One per (seed, arm (and T), θ), keys ``ROW_KEYS["e2"]``; ``hit_rate``, ``collision_rate`` and the two
        curves are None for the learned arms, ``steps`` and ``batch_size`` None for the explicit one.
    """
    n = _checks.check_positive_int(n, "n")
    seeds, steps, batch_size, dtype, arms = _check_common(seeds, steps, batch_size, dtype, arms, E2_ARMS)
    thetas = tuple(_checks.check_real(t, "thetas", 0.0, 90.0) for t in thetas)
    if not thetas:
        raise ValueError("thetas: expected at least one angle, got none")
    tables = tuple(_checks.check_positive_int(t, "tables") for t in tables)
    if "explicit" in arms and not tables:
        raise ValueError("tables: expected at least one T for the explicit arm, got none")
    b = bits_for(n) if bits is None else _checks.check_positive_int(bits, "bits")
    if b > 24:
        raise ValueError(f"bits: expected at most 24, got {b}")
    sketch_tables = _checks.check_positive_int(sketch_tables, "sketch_tables")
    pkm = {**capacity.PKM_OPTIONS, **pkm}
    budget = capacity.pkm_arm_flops(INPUT_DIM, NUM_CLASSES, **pkm)
    width = sketch_width_for_flops(INPUT_DIM, NUM_CLASSES, budget, num_tables=sketch_tables, num_bits=b)
    options = {
        "mlp": {"flops": budget},
        "mlp+pkm": pkm,
        "mlp+sketch": {"hidden": (width,), "memory": {"num_tables": sketch_tables, "num_bits": b}},
    }
    learned = [a for a in arms if a != "explicit"]
    rows = []
    bar = progress_bar(len(seeds) * len(learned) * steps, "E2 fuzzy keys", progress)

    def emit(seed, arm, config, T, bits_, accuracy, flops, params, wall, hit=None, coll=None, alone=None, steps_=None):
        for i, theta in enumerate(thetas):
            t = math.radians(theta)
            row = {
                "experiment": "e2", "arm": arm, "config": config, "n": n, "seed": seed, "theta_deg": theta,
                "num_tables": T, "num_bits": bits_, "accuracy": accuracy[i],
                "hit_rate": None if hit is None else hit[i], "collision_rate": None if coll is None else coll[i],
                "collision_curve": float(collision_curve(t, b)) if arm == "explicit" else None,
                "tables_curve": float(tables_curve(t, b, T)) if arm == "explicit" else None,
                "alone_rate": alone, "alone_uniform": (1.0 - 2.0**-b) ** (n - 1) if arm == "explicit" else None,
                "steps": steps_, "batch_size": None if steps_ is None else min(batch_size, n),
                "flops_per_row": flops, "params": params, "wall_time_s": wall,
            }  # fmt: skip
            rows.append({key: row[key] for key in ROW_KEYS["e2"]})
        if on_row is not None:
            on_row(rows)

    try:
        with single_threaded_blas():
            for seed in seeds:
                data_seed, dir_seed, hash_seed, init_seed, order_seed = _seeds(seed, n, 5)
                keys, labels = capacity.key_value_pairs(n, rng=np.random.default_rng(data_seed), dtype=dtype)
                directions = orthogonal_directions(keys, rng=np.random.default_rng(dir_seed))
                queries = [rotate(keys, directions, theta) for theta in thetas]
                for arm in arms:
                    if arm == "explicit":
                        for T in tables:
                            bar.set_description(f"E2 explicit T={T}")
                            start = time.perf_counter()
                            memory = explicit_memory(
                                keys, labels, num_tables=T, num_bits=b, seed=hash_seed, dtype=dtype
                            )
                            key_rows = memory.rows(keys)  # (n, T)
                            held = np.bincount(key_rows.ravel(), minlength=memory.num_rows)  # keys per row
                            alone = float(np.mean(held[key_rows] == 1))  # of the (key, table) pairs
                            acc, hit, coll = [], [], []
                            for q in queries:
                                acc.append(float(np.mean(explicit_predict(memory, q) == labels)))
                                same = memory.rows(q) == key_rows  # (n, T)
                                hit.append(float(np.mean(same.any(axis=1))))
                                coll.append(float(np.mean(same)))
                            flops, params = sketch_flops(memory), int(memory.params["values"].size)
                            wall = time.perf_counter() - start
                            emit(seed, arm, f"explicit T={T} b={b}", T, b, acc, flops, params, wall, hit, coll, alone)
                        continue
                    bar.set_description(f"E2 {arm}")
                    start = time.perf_counter()
                    if arm == "mlp+sketch":
                        network, step = build_mlp_sketch(
                            INPUT_DIM, NUM_CLASSES, seed=init_seed, dtype=dtype, **options[arm]
                        )
                    else:
                        network, step = capacity.ARMS[arm](
                            INPUT_DIM, NUM_CLASSES, seed=init_seed, dtype=dtype, **options[arm]
                        )
                    params = fit(
                        network, step, keys, labels, steps=steps, batch_size=batch_size, seed=order_seed, bar=bar
                    )
                    acc = [float(np.mean(predict(network, params, q) == labels)) for q in queries]
                    config = _describe_mlp(network) if isinstance(network, MLP) else _describe_pkm(pkm)
                    T_, b_ = (sketch_tables, b) if arm == "mlp+sketch" else (None, None)
                    total = int(sum(np.size(v) for v in params.values()))
                    wall = time.perf_counter() - start
                    emit(seed, arm, config, T_, b_, acc, count_flops(network), total, wall, steps_=steps)
                    log.info("E2 %s seed=%d: accuracy %s", arm, seed, acc)
    finally:
        bar.close()
    return rows


# --- E3: multi-hop traversal ------------------------------------------------------------------------------------


def functional_graph(num_nodes, *, rng):
    """A random functional graph: each of the N nodes gets one successor, uniform over the N nodes.

    Returns
    -------
    successor : int64 ndarray, shape (N,)
        f(v) for every node v.
    """
    num_nodes = _checks.check_positive_int(num_nodes, "num_nodes")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a np.random.Generator, got {type(rng).__name__}")
    return rng.integers(0, num_nodes, num_nodes).astype(np.int64)


def node_embeddings(num_nodes, *, dim=EMBED_DIM, rng, dtype=np.float32):
    """N random unit vectors in R^dim (normalised Gaussians), one per node: shape (N, dim)."""
    num_nodes = _checks.check_positive_int(num_nodes, "num_nodes")
    dim = _checks.check_positive_int(dim, "dim")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a np.random.Generator, got {type(rng).__name__}")
    e = rng.standard_normal((num_nodes, dim))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(check_dtype(dtype))


def hop_targets(successor, hops):
    """:math:`f^h(v)` for h = 1..hops and every node: int ndarray, shape (hops, N)."""
    N = len(successor)
    successor = _checks.as_index_array(successor, "successor", upper=N, shape=(N,))
    hops = _checks.check_positive_int(hops, "hops")
    out = np.empty((hops, N), dtype=np.int64)
    cur = np.arange(N)
    for h in range(hops):
        cur = successor[cur]
        out[h] = cur
    return out


def hop_dataset(successor, embeddings, hops):
    r"""Every (node, hop count) pair as a classification example: input [e(v); onehot(h)], target f^h(v).

    Parameters
    ----------
    successor : int ndarray, shape (N,)
    embeddings : ndarray, shape (N, D)
    hops : int
        H: hop counts 1..H.

    Returns
    -------
    inputs : ndarray, shape (H·N, D + H)
        Rows ordered by h, then v: row (h − 1)·N + v is :math:`[e(v); \mathrm{onehot}(h)]`.
    targets : int64 ndarray, shape (H·N,)
    hop : int64 ndarray, shape (H·N,)
        h of each row.
    """
    embeddings = _checks.as_float_array(embeddings, "embeddings", ndim=2)
    N = embeddings.shape[0]
    if len(successor) != N:
        raise ValueError(f"successor: expected {N} entries (one per embedding), got {len(successor)}")
    targets = hop_targets(successor, hops)  # (H, N)
    onehot = np.eye(hops, dtype=embeddings.dtype)  # (H, H)
    inputs = np.concatenate([np.tile(embeddings, (hops, 1)), np.repeat(onehot, N, axis=0)], axis=1)  # (H·N, D + H)
    hop = np.repeat(np.arange(1, hops + 1), N)
    return inputs, targets.reshape(-1), hop


def run_e3(
    sizes=DEFAULTS["e3"]["sizes"], *, hops=4, arms=E3_ARMS, seeds=(0,), steps=DEFAULTS["e3"]["steps"],
    batch_size=DEFAULTS["e3"]["batch_size"], width=128, depth=4, memory=None, max_bits=16, lr=3e-3,
    sketch_lr=1e-3, values_lr=1e-1, dtype="float32", progress=False, on_row=None,
):  # fmt: skip
    r"""E3: exact-match accuracy of memorising f^h on random functional graphs, per h, as N grows.

    Parameters
    ----------
    sizes : sequence of int
        The numbers of nodes N.
    hops : int, keyword-only
        H: every (v, h) with h ≤ H is a training pair.
    arms : sequence of str, keyword-only
        From ``("mlp", "mlp+sketch")``.
    seeds, steps, batch_size, dtype, progress, on_row : keyword-only
        As for :func:`run_e2`; each seed draws its own graph and embeddings.
    width, depth : int, keyword-only
        The memory arm's hidden width and number of hidden layers (the MLP has the same depth, its width
        sized to the memory arm's FLOPs).
    memory : dict, keyword-only, optional
        The memory arm's SketchMemory keywords (default ``{"num_tables": 4, "output_dim": 32}``);
        ``num_bits`` defaults to min(``max_bits``, :func:`bits_for` (H·N)).
    max_bits : int, keyword-only
        The cap on that default (a table has T·2^b rows of the read width, at every layer).
    lr : float, keyword-only
        The MLP arm's Adam learning rate.
    sketch_lr, values_lr : float, keyword-only
        The memory arm's Adam rate and its value tables' (lazy row-sparse Adam).

    Returns
    -------
    rows : list of dict
        One per (seed, N, arm), keys ``ROW_KEYS["e3"]``: ``accuracy_by_hop`` lists h = 1..H,
        ``image_fraction_by_hop`` the fraction of nodes that are some f^h(v) (how many distinct targets);
        ``bucket_stability`` (memory arm; None for the MLP), per memory layer, the fraction of (pair, table)
        whose value row after training is the one it read at step ``steps − steps // 10``: how far the
        hash inputs (the hidden activations below each memory) still move over the last tenth of training.
    """
    sizes = tuple(_checks.check_positive_int(N, "sizes") for N in sizes)
    if not sizes:
        raise ValueError("sizes: expected at least one N, got none")
    hops = _checks.check_positive_int(hops, "hops")
    seeds, steps, batch_size, dtype, arms = _check_common(seeds, steps, batch_size, dtype, arms, E3_ARMS)
    width = _checks.check_positive_int(width, "width")
    depth = _checks.check_positive_int(depth, "depth")
    max_bits = _checks.check_positive_int(max_bits, "max_bits")
    memory = {"num_tables": 4, "output_dim": 32, **(memory or {})}
    for name, value in (("lr", lr), ("sketch_lr", sketch_lr), ("values_lr", values_lr)):
        _checks.check_positive_finite(value, name)
    X = EMBED_DIM + hops
    rows = []
    bar = progress_bar(len(seeds) * len(sizes) * len(arms) * steps, "E3 multi-hop", progress)
    try:
        with single_threaded_blas():
            for seed in seeds:
                for N in sizes:
                    graph_seed, embed_seed, init_seed, order_seed = _seeds(seed, N, 4)
                    successor = functional_graph(N, rng=np.random.default_rng(graph_seed))
                    embeddings = node_embeddings(N, rng=np.random.default_rng(embed_seed), dtype=dtype)
                    inputs, targets, hop = hop_dataset(successor, embeddings, hops)
                    images = [float(len(np.unique(t)) / N) for t in targets.reshape(hops, N)]
                    mem = {"num_bits": min(max_bits, bits_for(hops * N)), **memory}
                    sketch_net, sketch_step = build_mlp_sketch(
                        X, N, seed=init_seed, dtype=dtype, hidden=(width,) * depth, memory=mem, lr=sketch_lr,
                        values_lr=values_lr,
                    )  # fmt: skip
                    budget = count_flops(sketch_net)
                    for arm in arms:
                        bar.set_description(f"E3 {arm} N={N:,}")
                        start = time.perf_counter()
                        if arm == "mlp+sketch":
                            network, step = sketch_net, sketch_step
                        else:
                            w = capacity.mlp_width_for_flops(X, N, budget, depth=depth)
                            network, step = capacity.build_mlp(
                                X, N, seed=init_seed, dtype=dtype, hidden=(w,) * depth, lr=lr
                            )
                        checkpoint, seen = steps - steps // 10, {}

                        def on_step(t, p, network=network, checkpoint=checkpoint, seen=seen, inputs=inputs):
                            if t == checkpoint and network.memory_layers:
                                seen["rows"] = memory_rows(network, p, inputs)

                        params = fit(
                            network, step, inputs, targets, steps=steps, batch_size=batch_size, seed=order_seed,
                            bar=bar, on_step=on_step,
                        )  # fmt: skip
                        stability = None
                        if "rows" in seen:
                            final = memory_rows(network, params, inputs)
                            stability = [float(np.mean(a == b)) for a, b in zip(seen["rows"], final)]
                        correct = predict(network, params, inputs) == targets
                        by_hop = [float(np.mean(correct[hop == h])) for h in range(1, hops + 1)]
                        B = min(batch_size, len(inputs))
                        row = {
                            "experiment": "e3", "arm": arm, "config": _describe_mlp(network), "num_nodes": N,
                            "hops": hops, "seed": seed, "steps": steps, "batch_size": B,
                            "epochs": steps * B / len(inputs), "accuracy": float(np.mean(correct)),
                            "accuracy_by_hop": by_hop, "image_fraction_by_hop": images,
                            "num_tables": mem["num_tables"] if arm == "mlp+sketch" else None,
                            "num_bits": mem["num_bits"] if arm == "mlp+sketch" else None,
                            "bucket_stability": stability,
                            "flops_per_row": count_flops(network),
                            "params": int(sum(np.size(v) for v in params.values())),
                            "wall_time_s": time.perf_counter() - start,
                        }  # fmt: skip
                        rows.append({key: row[key] for key in ROW_KEYS["e3"]})
                        log.info("E3 %s N=%d seed=%d: accuracy %.4f", arm, N, seed, row["accuracy"])
                        if on_row is not None:
                            on_row(rows)
    finally:
        bar.close()
    return rows


#: The experiments by name.
EXPERIMENTS = {"e2": run_e2, "e3": run_e3}


def run(experiment, **config):
    """``run_e2(**config)`` or ``run_e3(**config)``: ``run("e2", **QUICK["e2"])`` is the CI run."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment: expected one of {sorted(EXPERIMENTS)}, got {experiment!r}")
    return EXPERIMENTS[experiment](**config)


# --- output ------------------------------------------------------------------------------------------------------


def _groups(rows, key):
    """Rows grouped by ``key(row)``, in first-seen order."""
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out


def e2_summary(rows) -> list[dict]:
    """Per explicit-write T: the largest gaps over θ between the seed means and the T-table curve.

    Returns
    -------
    list of dict
        ``num_tables``, ``num_bits``, ``max_hit_gap`` (the largest absolute hit rate − curve),
        ``max_collision_gap`` (the largest absolute collision rate − (1 − θ/π)^b), ``max_accuracy_gap`` (the
        largest absolute accuracy − curve) and
        ``mean_accuracy_gap`` (mean of accuracy − curve, negative below the curve), ``alone_rate`` (seed mean)
        and ``alone_uniform``.
    """
    out = []
    explicit = [r for r in rows if r["arm"] == "explicit"]
    for (T, b), group in _groups(explicit, lambda r: (r["num_tables"], r["num_bits"])).items():
        by_theta = _groups(group, lambda r: r["theta_deg"])
        hit = [np.mean([r["hit_rate"] for r in g]) - g[0]["tables_curve"] for g in by_theta.values()]
        coll = [np.mean([r["collision_rate"] for r in g]) - g[0]["collision_curve"] for g in by_theta.values()]
        acc = [np.mean([r["accuracy"] for r in g]) - g[0]["tables_curve"] for g in by_theta.values()]
        out.append(
            {
                "num_tables": T,
                "num_bits": b,
                "max_hit_gap": float(np.max(np.abs(hit))),
                "max_collision_gap": float(np.max(np.abs(coll))),
                "max_accuracy_gap": float(np.max(np.abs(acc))),
                "mean_accuracy_gap": float(np.mean(acc)),
                "alone_rate": float(np.mean([r["alone_rate"] for r in group])),
                "alone_uniform": group[0]["alone_uniform"],
            }  # fmt: skip
        )
    return out


def _format_e2(rows):
    r0 = rows[0]
    thetas = list(dict.fromkeys(r["theta_deg"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    learned = [r for r in rows if r["steps"] is not None]
    budget = (
        f"; learned arms trained on the exact keys, {learned[0]['steps']:,} steps of {learned[0]['batch_size']}"
        if learned
        else ""
    )
    head = " | ".join(f"θ={t:g}°" for t in thetas)
    lines = [
        f"E2 fuzzy keys: n = {r0['n']:,} keys on S^{INPUT_DIM - 1}, {NUM_CLASSES} random classes, queries = keys "
        f"rotated by θ; accuracy, mean ± s.d. over seeds {seeds}{budget}; FLOPs = multiply-adds per row",
        "",
        f"| arm | config | FLOPs/row | params | {head} |",
        "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in thetas) + " |",
    ]
    groups = _groups(rows, lambda r: (r["arm"], r["config"]))
    for (arm, config), group in groups.items():
        by_theta = _groups(group, lambda r: r["theta_deg"])
        cells = " | ".join(mean_sd([r["accuracy"] for r in by_theta[t]]) for t in thetas)
        lines.append(f"| {arm} | {config} | {group[0]['flops_per_row']:,} | {group[0]['params']:,} | {cells} |")
    explicit = [r for r in rows if r["arm"] == "explicit"]
    if explicit:
        for T, group in _groups(explicit, lambda r: r["num_tables"]).items():
            by_theta = _groups(group, lambda r: r["theta_deg"])
            b = group[0]["num_bits"]
            if T == min(r["num_tables"] for r in explicit):
                cells = " | ".join(f"{by_theta[t][0]['collision_curve']:.3f}" for t in thetas)
                lines.append(f"| curve | (1 − θ/π)^b, b={b} (= the T=1 curve) | | | {cells} |")
            if T == 1:
                continue
            cells = " | ".join(f"{by_theta[t][0]['tables_curve']:.3f}" for t in thetas)
            lines.append(f"| curve | 1 − (1 − (1 − θ/π)^b)^T, T={T} | | | {cells} |")
        lines += [
            "",
            "Explicit writes against the curves (seed means): the measured fraction of queries sharing a bucket "
            "with their key in ≥ 1 table (hit) and per table (collision)",
            "",
            f"| T | b | measured | {head} | max gap to its curve |",
            "| ---: | ---: | --- | " + " | ".join("---:" for _ in thetas) + " | ---: |",
        ]
        summary = {s["num_tables"]: s for s in e2_summary(rows)}
        for T, group in _groups(explicit, lambda r: r["num_tables"]).items():
            by_theta = _groups(group, lambda r: r["theta_deg"])
            b, s = group[0]["num_bits"], summary[T]
            for name, key, gap in (
                ("hit", "hit_rate", "max_hit_gap"),
                ("collision", "collision_rate", "max_collision_gap"),
                ("accuracy − T-table curve", None, "max_accuracy_gap"),
            ):
                if key is None:
                    vals = [
                        np.mean([r["accuracy"] for r in by_theta[t]]) - by_theta[t][0]["tables_curve"] for t in thetas
                    ]
                    cells = " | ".join(f"{v:+.3f}" for v in vals)
                else:
                    cells = " | ".join(f"{np.mean([r[key] for r in by_theta[t]]):.3f}" for t in thetas)
                lines.append(f"| {T} | {b} | {name} | {cells} | {s[gap]:.3f} |")
    return lines


def _format_e3(rows):
    r0 = rows[0]
    H = r0["hops"]
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"E3 multi-hop traversal: random functional graphs on N nodes, input [e(v); onehot(h)], target f^h(v), "
        f"h = 1..{H}; exact-match accuracy on all H·N training pairs (eval mode), mean ± s.d. over seeds {seeds}; "
        f"{r0['steps']:,} steps of {r0['batch_size']} per run; rows kept = per memory layer, the fraction of "
        "(pair, table) reading the same value row after training as 10 % of the steps before (seed means); "
        "FLOPs = multiply-adds per row",
        "",
        "| arm | config | N | pairs | epochs | " + " | ".join(f"h={h}" for h in range(1, H + 1))
        + " | all | rows kept, last 10 % | FLOPs/row | params | time s |",
        "| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in range(H))
        + " | ---: | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    for (arm, N), group in _groups(rows, lambda r: (r["arm"], r["num_nodes"])).items():
        g0 = group[0]
        cells = " | ".join(mean_sd([r["accuracy_by_hop"][h] for r in group]) for h in range(H))
        kept = "—"
        if g0["bucket_stability"] is not None:
            kept = " / ".join(f"{np.mean([r['bucket_stability'][j] for r in group]):.2f}"
                              for j in range(len(g0["bucket_stability"])))  # fmt: skip
        lines.append(
            f"| {arm} | {g0['config']} | {N:,} | {H * N:,} | {g0['epochs']:.1f} | {cells} "
            f"| {mean_sd([r['accuracy'] for r in group])} | {kept} | {g0['flops_per_row']:,} | {g0['params']:,} "
            f"| {mean_sd([r['wall_time_s'] for r in group], '.0f')} |"
        )
    fractions = _groups(rows, lambda r: r["num_nodes"])
    lines += ["", "Distinct targets |f^h(V)| / N (seed means): " + "; ".join(
        f"N={N:,}: " + ", ".join(f"{np.mean([r['image_fraction_by_hop'][h] for r in g]):.3f}" for h in range(H))
        for N, g in fractions.items()
    )]  # fmt: skip
    return lines


def format_table(rows) -> str:
    """The rows (of one experiment) as Markdown tables under a line stating the setting."""
    if not rows:
        return "(no rows)"
    return "\n".join(_format_e2(rows) if rows[0]["experiment"] == "e2" else _format_e3(rows))


def plot_e2(rows, path):
    r"""E2's accuracy against θ (seed means ± s.d.), with :math:`(1-\theta/\pi)^b` and the T-table curves overlaid.

    Returns the path of the PNG written (atomically).
    """
    from ..viz import figure, save_png

    rows = [r for r in rows if r["experiment"] == "e2"]
    if not rows:
        raise ValueError("rows: expected E2 rows, got none")
    fig, ax = figure(figsize=(8.6, 4.6))
    grid = np.linspace(0.0, max(r["theta_deg"] for r in rows), 200)
    explicit = [r for r in rows if r["arm"] == "explicit"]
    for i, (T, group) in enumerate(_groups(explicit, lambda r: r["num_tables"]).items()):
        b, c = group[0]["num_bits"], f"C{i % 3}"
        by_theta = _groups(group, lambda r: r["theta_deg"])
        th = list(by_theta)
        acc = [np.mean([r["accuracy"] for r in by_theta[t]]) for t in th]
        sd = [np.std([r["accuracy"] for r in by_theta[t]]) for t in th]
        hit = [np.mean([r["hit_rate"] for r in by_theta[t]]) for t in th]
        label = f"1 − (1 − (1 − θ/π)^{b})^{T}" if T > 1 else f"(1 − θ/π)^{b}"
        ax.plot(grid, tables_curve(np.radians(grid), b, T), "-", color=c, lw=1.2, label=label)
        ax.plot(th, hit, "x", color=c, ms=7, label=f"T={T}: key's bucket hit in ≥ 1 table (measured)")
        ax.errorbar(th, acc, yerr=sd, fmt="o", color=c, capsize=3, label=f"T={T}: explicit-write accuracy")
    styles = {"mlp": ("s", "0.35"), "mlp+sketch": ("^", "C3"), "mlp+pkm": ("D", "C4")}
    for arm, group in _groups([r for r in rows if r["arm"] != "explicit"], lambda r: r["arm"]).items():
        by_theta = _groups(group, lambda r: r["theta_deg"])
        th = list(by_theta)
        acc = [np.mean([r["accuracy"] for r in by_theta[t]]) for t in th]
        sd = [np.std([r["accuracy"] for r in by_theta[t]]) for t in th]
        marker, color = styles.get(arm, ("v", "C5"))
        ax.errorbar(th, acc, yerr=sd, fmt="--", marker=marker, color=color, capsize=3, label=f"{arm} (trained on k)")
    r0 = rows[0]
    seeds = len({r["seed"] for r in rows})
    ax.set(xlabel="query angle θ (degrees)", ylabel="accuracy", ylim=(-0.02, 1.02))
    ax.set_title(f"E2 fuzzy keys: n = {r0['n']:,}, {seeds} seed(s)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_png(fig, path)


# --- command line ------------------------------------------------------------------------------------------------


def _angle(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an angle in degrees in [0, 90], got {text!r}") from None
    if not 0.0 <= value <= 90.0:
        raise argparse.ArgumentTypeError(f"expected an angle in degrees in [0, 90], got {text!r}")
    return value


def _parser():
    p = argparse.ArgumentParser(prog="python -m refmann.experiments.sketch", description=__doc__.splitlines()[0])
    p.add_argument("--experiment", required=True, choices=sorted(EXPERIMENTS), help="e2 (fuzzy keys) or e3 (hops)")
    p.add_argument("--quick", action="store_true", help="the CI sizes (seconds)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=None, help="one run per seed")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps per learned run")
    p.add_argument("--batch-size", type=positive_int, default=None, help="pairs per step (>= 2)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--arms", nargs="+", default=None, help=f"E2: {list(E2_ARMS)}; E3: {list(E3_ARMS)}")
    e2 = p.add_argument_group("E2")
    e2.add_argument("--n", type=positive_int, default=None, help="the number of pairs")
    e2.add_argument("--thetas", type=_angle, nargs="+", default=None, help="query angles in degrees")
    e2.add_argument("--tables", type=positive_int, nargs="+", default=None, help="T of the explicit arm")
    e2.add_argument("--bits", type=positive_int, default=None, help="b (default: the smallest with 2^b >= 4n)")
    e2.add_argument("--plot", default=None, metavar="FILE.png", help="draw accuracy against θ with the curves")
    e3 = p.add_argument_group("E3")
    e3.add_argument("--sizes", type=positive_int, nargs="+", default=None, help="numbers of nodes N")
    e3.add_argument("--hops", type=positive_int, default=None, help="hop counts 1..H")
    e3.add_argument("--width", type=positive_int, default=None, help="the memory arm's hidden width")
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
            config[name] = tuple(args.seeds) if name == "seeds" else getattr(args, name)
    if config["batch_size"] < 2:
        p.error("--batch-size: expected an integer >= 2 (a batch norm needs two rows)")
    e2_flags = [f"--{f}" for f in ("n", "thetas", "tables", "bits", "plot") if getattr(args, f) is not None]
    e3_flags = [f"--{f}" for f in ("sizes", "hops", "width") if getattr(args, f) is not None]
    known = E2_ARMS if args.experiment == "e2" else E3_ARMS
    if args.arms is not None:
        bad = [a for a in args.arms if a not in known]
        if bad or len(set(args.arms)) != len(args.arms):
            p.error(f"--arms: expected distinct names from {list(known)}, got {args.arms}")
        config["arms"] = tuple(args.arms)
    if args.experiment == "e2":
        if e3_flags:
            p.error(f"{', '.join(e3_flags)}: E3 flags, not for --experiment e2")
        for flag in ("n", "bits"):
            if getattr(args, flag) is not None:
                config[flag] = getattr(args, flag)
        for flag in ("thetas", "tables"):
            if getattr(args, flag) is not None:
                config[flag] = tuple(getattr(args, flag))
        if config.get("bits") is not None and config["bits"] > 24:
            p.error(f"--bits: expected at most 24, got {config['bits']}")
    else:
        if e2_flags:
            p.error(f"{', '.join(e2_flags)}: E2 flags, not for --experiment e3")
        if args.sizes is not None:
            config["sizes"] = tuple(args.sizes)
        for flag in ("hops", "width"):
            if getattr(args, flag) is not None:
                config[flag] = getattr(args, flag)
    from ..bench._proc import machine_info, machine_line

    machine = machine_info()
    command = "python -m refmann.experiments.sketch " + " ".join(sys.argv[1:] if argv is None else argv)
    label = {"e2": "E2 fuzzy keys", "e3": "E3 multi-hop traversal"}[args.experiment]

    def write(rows):
        doc = {"experiment": label, "command": command.strip(), "machine": machine, "rows": rows}
        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")

    start = time.perf_counter()
    rows = run(args.experiment, **config, dtype=args.dtype, progress=not args.quiet, on_row=write if args.out else None)
    print(format_table(rows))
    if args.experiment == "e2":
        for s in e2_summary(rows):
            print(
                f"explicit T={s['num_tables']} b={s['num_bits']}: max |hit − curve| {s['max_hit_gap']:.3f}, "
                f"max |collision − (1 − θ/π)^b| {s['max_collision_gap']:.3f}, max |accuracy − curve| "
                f"{s['max_accuracy_gap']:.3f} (mean accuracy − curve {s['mean_accuracy_gap']:+.3f}); a key alone in "
                f"its bucket in {s['alone_rate']:.3f} of (key, table) pairs ({s['alone_uniform']:.3f} if buckets "
                "were uniform)"
            )
    print(f"\nWall time {time.perf_counter() - start:.0f} s. Machine: {machine_line(machine)}.")
    if args.out:
        write(rows)
    if args.plot:
        print(f"Figure: {plot_e2(rows, args.plot)}")
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
