r"""Forward + backward time per row of two memory layers against the size of their memory, beside dense layers:
``refmann bench sketch`` and ``refmann bench hma``.

**Sketch** (:func:`sketch_table`). :class:`refmann.layers.sketch.SketchMemory` with X = Y = 256, T = 4 tables,
``combine="none"`` (its output is the read alone, like the dense layers'), one batch of 256 rows, and b = 8 … 20
bits, so T·2^b = 2^10 … 2^22 value rows and T·2^b·Y = 2^18 … 2^30 parameters. Per row its cost should not depend
on b beyond the hash: the hash is T·b·X multiply-adds, the read T·Y, the row gradient T·Y. Measured in the same
rounds (:data:`SKETCH_VARIANTS`):

- ``sketch``: the layer's own ``forward`` and ``backward`` (the values' gradient a :class:`~refmann.ops.RowGrad`),
  the round's first call on the size's table; ``sketch_again``: the same right after, on another fresh batch (its
  rows are not in cache either, but the table has just been read: on a VM the first reads of a GiB-sized table
  after other work cost much more than the next ones);
- its parts, each called alone on a second batch of the round (so that their rows are not in cache either):
  ``hash`` (:func:`~refmann.layers.sketch.simhash_buckets`), ``projection`` (the same projection :math:`x R` as
  one BLAS matmul, the floor of the hash), ``gather`` (:func:`~refmann.ops.embedding_bag_forward`, the read) and
  ``scatter`` (:func:`~refmann.ops.embedding_bag_backward`, the RowGrad); and ``bare_gather``, ``values[rows]`` in
  NumPy on a third batch's rows: what the memory system charges for the read's rows, whatever refmann does;
- ``dense_params``: an :class:`~refmann.layers.MLP` X → H → Y (ReLU) whose weights total T·2^b·Y, so
  H = T·2^b·Y / (X + Y): the dense layer of the same parameter count, forward + backward. Its cost grows as 2^b;
  above ``dense_max_bits`` (default 18: at b = 20 its weights and their gradient are 4 GiB each in float32, its
  (B, H) activations 2 GiB each, and a call costs 4× the multiply-adds of the b = 18 call) it is not run, with a
  note;
- ``dense_flops``: the MLP X → h → Y with h (X + Y) ≈ T (b X + Y), the dense layer of the sketch's multiply-adds;
- ``lazy_adam`` and ``dense_adam``: one Adam step on the value table from the sketch's RowGrad, lazily
  (:func:`~refmann.train.optim.sparse_adam_inplace`: the touched rows) and densely (the RowGrad densified, then
  the same kernel on all T·2^b rows: the arithmetic of :func:`~refmann.train.optim.adam`), up to
  ``optimizer_max_bits`` (default 18: the two Adam moments at b = 20 are 8 GiB more in float32). The dense step
  reads and writes every row, so it runs in rounds of its own after all the others: until then no variant touches
  more of a table than the rows it reads, as lazy training does.

The table is filled with small random values before timing (as a trained table would be: a table of untouched
zero pages would make every read hit the same zero page), and the Adam moments are written once, so every page
is resident. Each round has fresh batches (the same for every size and variant, drawn outside the timing), so the
rows read differ from round to round, as in training. A round runs the light variants of every size first
(starting at a different size each round), then ``dense_params`` of every size, then the light variants of every
size again, untimed: on the VM this was written on, right after a multi-second call that allocates and frees GiBs
the first few reads of a table were often tens to hundreds of times slower than a few calls later, and this
order keeps every timed light variant away from that position.

**HMA** (:func:`hma_table`). :class:`refmann.layers.hma.MemoryTokens` (imported when the benchmark runs) with
d = 128, C = 10, d_l = 16, m_s = 8, H = 4, 64 samples per call and a queue of S = 64 … 16,384 past samples, filled
by :meth:`~refmann.layers.hma.MemoryTokens.enqueue` before the timing: forward + backward per sample in both
modes (``"transductive"`` and ``"per_sample"``), its stage-1 attention block alone, and an
:class:`~refmann.layers.MLP` head d → h → C (ReLU) with the layer's parameter count (the queue is a buffer: the
count does not depend on S). Stage 1 lets each sample attend to the S queued rows plus its own, so its time should
grow as S.

Every round runs every size and variant once, under one BLAS thread (:func:`refmann._threads.single_threaded_blas`),
and each cell keeps its minimum over the rounds: the VM's absolute times swing 2–5×, the ratios of cells measured
side by side much less. Times are reported per row (per token; per sample for HMA): a call's seconds over the
batch size. A cell whose arrays would not fit in the memory available (``MemAvailable`` of /proc/meminfo, with a
margin) is skipped with a note in its row.

References
----------
Panigrahy, Wang, Zaheer. Sketch based Memory for Neural Networks. AISTATS 2021.
Charikar. Similarity estimation techniques from rounding algorithms. STOC 2002 (SimHash).
Qiu et al. Heterogenous Memory Augmented Neural Networks. arXiv:2310.10909, 2023 (HMA).
Kingma, Ba. Adam: a method for stochastic optimization. ICLR 2015.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np

from .. import ops
from .._checks import check_positive_finite, check_positive_int
from .._threads import single_threaded_blas
from ._proc import GIB, _read_kib, check_dtypes

__all__ = [
    "HMA_MODES",
    "HMA_QUICK",
    "HMA_SIZES",
    "HMA_VARIANTS",
    "SKETCH_QUICK",
    "SKETCH_SIZES",
    "SKETCH_VARIANTS",
    "format_hma_table",
    "format_sketch_table",
    "hma_ratios",
    "hma_table",
    "sketch_ratios",
    "sketch_table",
]

#: num_bits b of ``refmann bench sketch``: 2^8 … 2^20 buckets per table.
SKETCH_SIZES = (8, 10, 12, 14, 16, 18, 20)

#: ``refmann bench sketch --quick``: small sizes for tests and CI.
SKETCH_QUICK = dict(
    sizes=(4, 6, 8), input_dim=16, output_dim=16, num_tables=2, tokens=32, rounds=3, dense_max_bits=8,
    optimizer_max_bits=8,
)  # fmt: skip

#: What one round times for each size, in the order it runs.
SKETCH_VARIANTS = (
    "sketch", "sketch_again", "hash", "projection", "gather", "scatter", "bare_gather", "lazy_adam", "dense_flops",
    "dense_params", "dense_adam",
)  # fmt: skip

#: Memory kept free besides a cell's estimate: this much, plus 10% of the estimate.
HEADROOM = 1.0 * GIB


def mem_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where it cannot be read)."""
    return _read_kib("/proc/meminfo", ("MemAvailable",)).get("MemAvailable")


def _fits(need: float) -> tuple[bool, str]:
    """Whether ``need`` bytes fit now, and a note saying how many GiB were needed and available."""
    available = mem_available()
    if available is None:
        return True, ""
    want = 1.1 * need + HEADROOM
    return want <= available, f"needs ~{want / GIB:.1f} GiB, {available / GIB:.1f} GiB available"


def _keep_min(best: dict, seconds: dict):
    for key, value in seconds.items():
        best[key] = min(best.get(key, np.inf), value)


def _check_sizes(sizes, *, what: str, lo: int, hi: int | None = None) -> tuple[int, ...]:
    if isinstance(sizes, (int, np.integer)):
        sizes = (sizes,)
    try:
        sizes = tuple(sorted({check_positive_int(s, "sizes") for s in sizes}))
    except TypeError:
        raise TypeError(f"sizes: expected a sequence of ints ({what}), got {sizes!r}") from None
    if not sizes:
        raise ValueError(f"sizes: expected at least one {what}, got none")
    if sizes[0] < lo or (hi is not None and sizes[-1] > hi):
        bad = sizes[0] if sizes[0] < lo else sizes[-1]
        span = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"sizes: expected each {what} {span}, got {bad}")
    return sizes


def _mlp(input_dim, hidden, output_dim, dtype, seed):
    from ..layers import MLP

    return MLP(
        input_dim=input_dim, hidden_dims=hidden, output_dim=output_dim, activation="relu", seed=seed, dtype=dtype
    )


def _mlp_params(input_dim, hidden, output_dim) -> int:
    """Parameters of the MLP X → H → Y with biases: H (X + Y) + H + Y."""
    return hidden * (input_dim + output_dim) + hidden + output_dim


def _mlp_step_bytes(tokens, input_dim, hidden, output_dim, itemsize) -> int:
    """Peak bytes of an MLP forward + backward above its weights: the weight gradients, and the (B, H)
    activations and their gradients (a generous five)."""
    return _mlp_params(input_dim, hidden, output_dim) * itemsize + 5 * tokens * hidden * itemsize


def _time_mlp(mlp, x, dy, clock) -> float:
    t = clock()
    y, cache = mlp.forward(x)
    mlp.backward(dy, cache)
    return clock() - t


def _pow2(e: int) -> str:
    return f"2^{e}"


def _f(value, spec=None) -> str:
    """``value`` as ``spec``, or by default with three significant digits (at least a whole number); None as —."""
    if value is None:
        return "—"
    if spec is None:
        digits = 0 if value == 0 else max(0, 2 - int(np.floor(np.log10(abs(value)))))
        spec = f",.{digits}f"
    return format(value, spec)


def _ratio(a, b):
    return None if a is None or b is None else a / b


def _fill_random_(table: np.ndarray, rng: np.random.Generator, scale: float, chunk: int = 1 << 16):
    """Fill ``table`` (N, D) with U(-scale, scale) in place, ``chunk`` rows at a time (no second N-sized array;
    uniform rather than normal draws: ten times faster, 3 s rather than 40 s for 2^30 float32 entries)."""
    for start in range(0, table.shape[0], chunk):
        part = table[start : start + chunk]
        rng.random(out=part, dtype=part.dtype)
        part -= 0.5
        part *= 2.0 * scale


# -- sketch ---------------------------------------------------------------------------------------------------


class _SketchConfig(NamedTuple):
    input_dim: int
    output_dim: int
    num_tables: int
    tokens: int
    dense_max_bits: int
    optimizer_max_bits: int
    lr: float


class _SketchFixture(NamedTuple):
    layer: Any  # the SketchMemory; its values table is filled, the lazy/dense Adam steps update it in place
    planes: np.ndarray  # (X, T·b) the hyperplanes as one matrix, for the projection's floor
    state: dict | None  # the Adam state of "values" (moments resident), None above optimizer_max_bits
    all_rows: np.ndarray | None  # int (T·2^b,) 0 … T·2^b - 1, the dense Adam step's indices
    dense_params: Any  # the MLP of the same parameter count (None above dense_max_bits or if it did not fit)
    dense_flops: Any  # the MLP of the same multiply-adds


def _sketch_sizes(b: int, config: _SketchConfig) -> dict:
    """The widths of a size: the dense layers' hidden widths and parameter counts, the sketch's multiply-adds."""
    X, Y, T = config.input_dim, config.output_dim, config.num_tables
    params = T * 2**b * Y
    hidden_params = max(1, round(params / (X + Y)))
    macs = T * (b * X + Y)  # per row: the hash's projection and the read's weighted sum
    hidden_flops = max(1, round(macs / (X + Y)))
    return {
        "params": params,
        "dense_params_hidden": hidden_params,
        "dense_params_count": _mlp_params(X, hidden_params, Y),
        "sketch_macs_per_row": macs,
        "dense_flops_hidden": hidden_flops,
        "dense_flops_macs_per_row": hidden_flops * (X + Y),
    }


def _sketch_needs(b: int, itemsize: int, config: _SketchConfig) -> dict:
    """Bytes a size needs: ``sketch`` (the layer, resident), ``state`` (the two Adam moments, resident),
    ``dense_adam`` (a dense step's peak: the densified gradient and its indices), ``dense_params`` (the MLP's
    weights, with the float64 draw of its construction) and ``dense_params_step`` (a step's peak above them)."""
    T, X, Y, B = config.num_tables, config.input_dim, config.output_dim, config.tokens
    N = T * 2**b
    table = N * Y * itemsize
    sizes = _sketch_sizes(b, config)
    H = sizes["dense_params_hidden"]
    lookups = 8 * B * T * max(X, Y) * itemsize  # the gathered rows, the RowGrad and their temporaries
    return {
        "sketch": table + 2 * N * itemsize + lookups,
        "state": 2 * table,
        "dense_adam": table + 8 * N,
        "dense_params": sizes["dense_params_count"] * itemsize + max(X, Y) * H * 8,
        "dense_params_step": _mlp_step_bytes(B, X, H, Y, itemsize),
    }


def _sketch_config(
    *, input_dim=256, output_dim=256, num_tables=4, tokens=256, dense_max_bits=18, optimizer_max_bits=18, lr=1e-3
) -> _SketchConfig:
    for name, value in (
        ("input_dim", input_dim),
        ("output_dim", output_dim),
        ("num_tables", num_tables),
        ("tokens", tokens),
    ):
        check_positive_int(value, name)
    for name, value in (("dense_max_bits", dense_max_bits), ("optimizer_max_bits", optimizer_max_bits)):
        check_positive_int(value, name, minimum=0)
    return _SketchConfig(
        input_dim, output_dim, num_tables, tokens, dense_max_bits, optimizer_max_bits, check_positive_finite(lr, "lr")
    )


def _build_sketch(b: int, dtype, config: _SketchConfig, seed: int, batches, notes: list) -> _SketchFixture:
    """A size's fixture, warmed up (compilation, the Adam state's allocation) outside the timing. What did not
    fit is left out (None) with a note in ``notes``."""
    from ..layers.sketch import SketchMemory
    from ..train.optim import sparse_adam_inplace

    X, Y, T = config.input_dim, config.output_dim, config.num_tables
    need = _sketch_needs(b, dtype.itemsize, config)
    layer = SketchMemory(input_dim=X, output_dim=Y, num_tables=T, num_bits=b, combine="none", seed=seed, dtype=dtype)
    rng = np.random.default_rng([seed, b])
    _fill_random_(layer.params["values"], rng, 1.0 / np.sqrt(T))
    planes = layer.buffers["planes"]  # (T, X, b) (b + 1 with signs)
    planes = np.ascontiguousarray(planes.transpose(1, 0, 2).reshape(X, -1))  # (X, T·b)
    x, dy = batches[0]
    _, cache = layer.forward(x)  # warm-up: the embedding-bag kernels compile here
    _, grads = layer.backward(dy, cache)
    state = all_rows = None
    if b > config.optimizer_max_bits:
        notes.append(f"Adam steps not run above b = {config.optimizer_max_bits} (optimizer_max_bits)")
    else:
        ok, why = _fits(need["state"] + need["dense_adam"])
        if ok:
            _, state = sparse_adam_inplace(layer.params, grads, None, lr=config.lr)  # the state, at step 1
            for moments in (state["m"]["values"], state["v"]["values"]):
                np.add(moments, 0.0, out=moments)  # write every page once: resident, as a trained table's
            all_rows = np.arange(layer.num_rows)
        else:
            notes.append(f"Adam steps skipped: {why}")
    sizes = _sketch_sizes(b, config)
    dense_params = None
    if b > config.dense_max_bits:
        notes.append(f"dense (same params) not run above b = {config.dense_max_bits} (dense_max_bits)")
    else:
        ok, why = _fits(need["dense_params"] + need["dense_params_step"])
        if ok:
            dense_params = _mlp(X, sizes["dense_params_hidden"], Y, dtype, seed)
            _time_mlp(dense_params, x, dy, time.perf_counter)  # warm-up
        else:
            notes.append(f"dense (same params) skipped: {why}")
    dense_flops = _mlp(X, sizes["dense_flops_hidden"], Y, dtype, seed)
    _time_mlp(dense_flops, x, dy, time.perf_counter)
    return _SketchFixture(layer, planes, state, all_rows, dense_params, dense_flops)


def _sketch_light(fx: _SketchFixture, config: _SketchConfig, x, dy, more, *, clock=time.perf_counter):
    """The light variants of a size: the sketch's forward + backward on the batch ``(x, dy)`` and again on
    ``more[0]``, its parts on ``more[1]`` and the bare gather on the rows of ``more[2]`` (other batches, so that they
    too read rows that are not in cache), the lazy Adam step on the first call's gradient, and the dense layer of
    the same multiply-adds. Seconds per call by variant, and ``distinct_rows``: the rows of the step's RowGrad."""
    from ..layers.sketch import simhash_buckets
    from ..train.optim import sparse_adam_inplace

    layer = fx.layer
    values = layer.params["values"]
    s = {}
    t = clock()
    _, cache = layer.forward(x)
    _, grads = layer.backward(dy, cache)
    s["sketch"] = clock() - t
    x_again, x_parts, x_bare = more
    t = clock()
    _, cache_again = layer.forward(x_again)
    layer.backward(dy, cache_again)
    s["sketch_again"] = clock() - t

    planes, T = layer.buffers["planes"], layer.num_tables
    t = clock()
    simhash_buckets(x_parts, planes)
    s["hash"] = clock() - t
    t = clock()
    np.matmul(x_parts, fx.planes)  # (B, T·b), the hash's own projection
    s["projection"] = clock() - t
    rows, signs = layer.address(x_parts)  # (B, T) each, as the layer's forward reads them
    w = signs / T  # (B, T)
    t = clock()
    _, bag = ops.embedding_bag_forward(values, w, indices=rows)
    s["gather"] = clock() - t
    t = clock()
    ops.embedding_bag_backward(dy, bag)
    s["scatter"] = clock() - t
    bare = layer.rows(x_bare)  # (B, T)
    t = clock()
    values[bare]  # (B, T, Y) the bare NumPy gather: the memory system's floor of the read
    s["bare_gather"] = clock() - t
    if fx.state is not None:
        t = clock()
        sparse_adam_inplace(layer.params, grads, fx.state, lr=config.lr)
        s["lazy_adam"] = clock() - t
    s["dense_flops"] = _time_mlp(fx.dense_flops, x, dy, clock)
    s["distinct_rows"] = int(grads["values"].indices.size)
    return s


def _sketch_dense_params(fx: _SketchFixture, config: _SketchConfig, x, dy, *, clock=time.perf_counter) -> dict:
    """The dense layer of the same parameters on ``(x, dy)``, where the fixture has it and its peak fits now."""
    if fx.dense_params is None:
        return {}
    H = fx.dense_params.hidden_dims[0]
    if not _fits(_mlp_step_bytes(x.shape[0], config.input_dim, H, config.output_dim, fx.layer.dtype.itemsize))[0]:
        return {}
    return {"dense_params": _time_mlp(fx.dense_params, x, dy, clock)}


def _sketch_dense_adam(fx: _SketchFixture, config: _SketchConfig, x, dy, *, clock=time.perf_counter) -> dict:
    """One dense Adam step on the sketch's gradient of ``(x, dy)`` (its forward + backward untimed): the RowGrad
    densified, then the kernel on every row; where the fixture has the Adam state and the step's peak fits now."""
    from ..train.optim import sparse_adam_inplace

    layer = fx.layer
    if fx.state is None or not _fits(_sketch_needs(layer.num_bits, layer.dtype.itemsize, config)["dense_adam"])[0]:
        return {}
    _, cache = layer.forward(x)
    _, grads = layer.backward(dy, cache)
    t = clock()
    dense = ops.RowGrad(fx.all_rows, ops.densify_rows(grads["values"]), layer.num_rows)  # (N, Y)
    sparse_adam_inplace(layer.params, {"values": dense}, fx.state, lr=config.lr)
    seconds = clock() - t
    del dense
    return {"dense_adam": seconds}


def sketch_table(
    sizes=SKETCH_SIZES,
    *,
    dtypes=("float32",),
    rounds=5,
    input_dim=256,
    output_dim=256,
    num_tables=4,
    tokens=256,
    dense_max_bits=18,
    optimizer_max_bits=18,
    lr=1e-3,
    seed=0,
    progress=False,
) -> list[dict]:
    r"""Forward + backward time per row of a sketch memory against its table size, beside dense layers of the
    same parameters and of the same multiply-adds, and its lazy Adam step beside a dense one, in interleaved rounds.

    Parameters
    ----------
    sizes : sequence of int
        num_bits b of each size (2^b buckets per table, T·2^b value rows), each in [1, 24]; sorted, repeats dropped.
    dtypes : sequence of {"float32", "float64"}, keyword-only
        Default float32 alone (float64 doubles every table: 8 GiB at b = 20).
    rounds : int, keyword-only
        Every size and variant runs once per round, on the round's batches; each cell keeps its minimum.
    input_dim, output_dim, num_tables, tokens : int, keyword-only
        X, Y, T and the batch B of one call.
    dense_max_bits, optimizer_max_bits : int, keyword-only
        The largest b at which the dense layer of the same parameters, and the two Adam steps, run.
    lr : float, keyword-only
        Adam's step size.
    seed : int, keyword-only
    progress : bool, keyword-only
        A tqdm progress bar on stderr.

    Returns
    -------
    rows : list of dict
        One per (dtype, b), in that order: the configuration (``dtype``, ``num_bits``, ``buckets`` = 2^b,
        ``table_rows`` = T·2^b, ``input_dim``, ``output_dim``, ``num_tables``, ``tokens``, ``rounds``), the sizes
        of :func:`_sketch_sizes` (``params`` = T·2^b·Y, the dense layers' hidden widths and counts, the
        multiply-adds per row), ``table_bytes``, ``us_per_row`` (variant -> µs per row: a call's minimum over
        the rounds divided by B; None where not run), ``distinct_rows`` (the most rows one step's RowGrad held),
        the ratios ``ratio_sketch`` and ``ratio_sketch_again`` (each sketch call over the dtype's smallest b),
        ``ratio_dense_params`` and ``ratio_dense_flops`` (each dense layer over the sketch),
        ``ratio_dense_params_growth`` (the dense layer of the same parameters over its time at the dtype's
        smallest b), ``ratio_adam`` (dense over lazy Adam), ``hash_share`` (hash over sketch),
        ``ratio_hash_projection`` (hash over its one-matmul floor), ``ratio_gather_bare`` (the read over the
        bare NumPy gather), and ``note`` (what was not run and why, else None).

    Notes
    -----
    The sketch's multiply-adds per row are :math:`T(bX + Y)`: its time per row should stay flat in 2^b,
    while the dense layer of :math:`T 2^b Y` parameters costs :math:`T 2^b Y` multiply-adds per row (forward;
    twice that backward).
    """
    config = _sketch_config(
        input_dim=input_dim,
        output_dim=output_dim,
        num_tables=num_tables,
        tokens=tokens,
        dense_max_bits=dense_max_bits,
        optimizer_max_bits=optimizer_max_bits,
        lr=lr,
    )
    sizes = _check_sizes(sizes, what="num_bits b", lo=1, hi=24)
    dtypes = check_dtypes(dtypes)
    rounds = check_positive_int(rounds, "rounds")

    from tqdm import tqdm

    rows = []
    bar = tqdm(
        total=len(dtypes) * len(sizes) * (2 * rounds + 1), disable=not progress, unit="cell", desc="bench sketch"
    )
    try:
        with single_threaded_blas():
            for dtype in dtypes:
                rows += _sketch_dtype(np.dtype(dtype), sizes, config, rounds, seed, bar)
    finally:
        bar.close()
    return rows


def _sketch_dtype(dtype, sizes, config: _SketchConfig, rounds, seed, bar) -> list[dict]:
    """The rows of one dtype: build every size's fixture, then ``rounds`` interleaved rounds of the forward +
    backward variants, then ``rounds`` interleaved rounds of the dense Adam step."""
    rng = np.random.default_rng([seed, 7])
    B, X, Y = config.tokens, config.input_dim, config.output_dim
    batches = [
        (rng.standard_normal((B, X)).astype(dtype), (rng.standard_normal((B, Y)) / np.sqrt(Y)).astype(dtype))
        for _ in range(4 * rounds + 1)
    ]  # (B, X), (B, Y): the warm-up's, then four per round (the sketch's two calls', its parts', the bare gather's)
    cells = []
    for b in sizes:
        cell = {"b": b, "fixture": None, "notes": [], "best": {}, "distinct_rows": 0}
        cells.append(cell)
        bar.set_postfix_str(f"{dtype.name} b={b}: building")
        ok, why = _fits(_sketch_needs(b, dtype.itemsize, config)["sketch"])
        if ok:
            cell["fixture"] = _build_sketch(b, dtype, config, seed, batches, cell["notes"])
        else:
            cell["notes"].append(f"skipped: {why}")
        bar.update(1)
    live = [c for c in cells if c["fixture"] is not None]
    for r in range(rounds):
        (x, dy), *more = batches[4 * r + 1 : 4 * r + 5]
        more = tuple(m[0] for m in more)  # the second call's, the parts', the bare gather's inputs
        order = live[r % len(live) :] + live[: r % len(live)] if live else []  # a different first size each round
        # The light variants of every size first, then the dense layer of the same parameters, then the light
        # variants of every size again, untimed (see the module docstring): no timed light variant follows a heavy
        # one.
        for cell in order:
            bar.set_postfix_str(f"{dtype.name} b={cell['b']}")
            seconds = _sketch_light(cell["fixture"], config, x, dy, more)
            cell["distinct_rows"] = max(cell["distinct_rows"], seconds.pop("distinct_rows"))
            _keep_min(cell["best"], seconds)
        for cell in live:
            bar.set_postfix_str(f"{dtype.name} b={cell['b']}: dense")
            _keep_min(cell["best"], _sketch_dense_params(cell["fixture"], config, x, dy))
            bar.update(1)
        for cell in order:  # settling: not kept
            _sketch_light(cell["fixture"], config, x, dy, more)
    # The dense Adam step reads and writes every row of the table and its moments; in the rounds above no variant
    # touches more than the rows it reads, as lazy training does, so the tables' pages stay as such training
    # leaves them (a sweep before a read made the read of a 4 GiB table several times faster here).
    for r in range(rounds):
        x, dy = batches[4 * r + 1]
        for cell in live:
            bar.set_postfix_str(f"{dtype.name} b={cell['b']}: dense Adam")
            _keep_min(cell["best"], _sketch_dense_adam(cell["fixture"], config, x, dy))
            bar.update(1)
    bar.update(2 * rounds * (len(cells) - len(live)))
    rows = [_sketch_row(cell, dtype, config, rounds) for cell in cells]
    for cell in cells:
        cell["fixture"] = None  # free this dtype's tables before the next
    first = next((r for r in rows if r["us_per_row"]["sketch"] is not None), None)
    first_dense = next((r for r in rows if r["us_per_row"]["dense_params"] is not None), None)
    for r in rows:
        us = r["us_per_row"]
        r["ratio_sketch"] = None if first is None else _ratio(us["sketch"], first["us_per_row"]["sketch"])
        r["ratio_sketch_again"] = (
            None if first is None else _ratio(us["sketch_again"], first["us_per_row"]["sketch_again"])
        )
        r["ratio_dense_params_growth"] = (
            None if first_dense is None else _ratio(us["dense_params"], first_dense["us_per_row"]["dense_params"])
        )
    return rows


def _sketch_row(cell, dtype, config: _SketchConfig, rounds) -> dict:
    b, best, fx = cell["b"], cell["best"], cell["fixture"]
    B = config.tokens
    us = {v: (1e6 * best[v] / B if v in best else None) for v in SKETCH_VARIANTS}
    notes = list(cell["notes"])
    if fx is not None:
        if fx.state is not None and us["dense_adam"] is None:
            notes.append("dense Adam skipped: it did not fit in the memory available")
        if fx.dense_params is not None and us["dense_params"] is None:
            notes.append("dense (same params) step skipped: it did not fit in the memory available")
    return {
        "dtype": dtype.name,
        "num_bits": b,
        "buckets": 2**b,
        "table_rows": config.num_tables * 2**b,
        **config._asdict(),
        "rounds": rounds,
        **_sketch_sizes(b, config),
        "table_bytes": config.num_tables * 2**b * config.output_dim * dtype.itemsize,
        "us_per_row": us,
        "distinct_rows": cell["distinct_rows"] if fx is not None else None,
        "ratio_dense_params": _ratio(us["dense_params"], us["sketch"]),
        "ratio_dense_flops": _ratio(us["dense_flops"], us["sketch"]),
        "ratio_adam": _ratio(us["dense_adam"], us["lazy_adam"]),
        "hash_share": _ratio(us["hash"], us["sketch"]),
        "ratio_gather_bare": _ratio(us["gather"], us["bare_gather"]),
        "ratio_hash_projection": _ratio(us["hash"], us["projection"]),
        "note": "; ".join(notes) or None,
    }


def sketch_ratios(rows) -> list[dict]:
    """The ratios the sketch benchmark is for, per dtype, from :func:`sketch_table`'s rows.

    Returns
    -------
    ratios : list of dict
        ``{"dtype", "name", "value", "where"}`` for ``flat`` (the sketch at the largest measured b over the
        smallest), ``flat_again`` (the same for its second call of the round), ``dense_params`` (the dense
        layer of the same parameters over the sketch, at the largest b where both ran; ``where`` lists every
        size), ``dense_params_growth`` (that layer's time at its largest b over its smallest, beside the
        parameter ratio), ``dense_flops`` (the dense layer of the same multiply-adds over the sketch, at the
        largest b), ``hash_share`` (the hash's share of the sketch's time, and the hash over its one-matmul
        floor, at the largest b), ``gather_bare`` (the read, ``embedding_bag_forward``, over the bare NumPy
        gather of as many rows, at the largest b; ``where`` lists both at every b) and ``adam`` (dense over
        lazy Adam at the largest b where both ran). ``value`` is None where it was not measured.
    """
    out = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        mine = [r for r in rows if r["dtype"] == dtype and r["us_per_row"]["sketch"] is not None]

        def add(name, value, where, dtype=dtype):
            out.append({"dtype": dtype, "name": name, "value": value, "where": where})

        for name, key in (("flat", "ratio_sketch"), ("flat_again", "ratio_sketch_again")):
            if len(mine) >= 2:
                lo, hi = mine[0], mine[-1]
                span = ", ".join(f"{r[key]:.2f}" for r in mine)
                add(name, hi[key], f"at {_pow2(hi['num_bits'])} buckets over {_pow2(lo['num_bits'])}; every b: {span}")
            else:
                add(name, None, "needs two measured sizes")
        both = [r for r in mine if r["ratio_dense_params"] is not None]
        if both:
            span = ", ".join(f"{_pow2(r['num_bits'])}: {r['ratio_dense_params']:.1f}" for r in both)
            add("dense_params", both[-1]["ratio_dense_params"], f"at {_pow2(both[-1]['num_bits'])}; every b: {span}")
        else:
            add("dense_params", None, "the dense layer of the same parameters was not run")
        if len(both) >= 2:
            lo, hi = both[0], both[-1]
            add(
                "dense_params_growth",
                hi["ratio_dense_params_growth"],
                f"{_pow2(hi['num_bits'])} over {_pow2(lo['num_bits'])}, for {hi['params'] / lo['params']:g}× "
                "the parameters",
            )
        else:
            add("dense_params_growth", None, "needs two sizes with the dense layer of the same parameters")
        if mine:
            hi = mine[-1]
            span = ", ".join(f"{r['ratio_dense_flops']:.2f}" for r in mine)
            add("dense_flops", hi["ratio_dense_flops"], f"at {_pow2(hi['num_bits'])}; every b: {span}")
            add(
                "hash_share",
                hi["hash_share"],
                f"at {_pow2(hi['num_bits'])}: hash {_f(hi['us_per_row']['hash'])} µs of "
                f"{_f(hi['us_per_row']['sketch'])} µs per row; the hash over the same projection as one matmul: "
                f"{hi['ratio_hash_projection']:.1f}×",
            )
            span = ", ".join(
                f"{_pow2(r['num_bits'])}: {_f(r['us_per_row']['gather'])} / {_f(r['us_per_row']['bare_gather'])}"
                for r in mine
            )
            add("gather_bare", hi["ratio_gather_bare"], f"at {_pow2(hi['num_bits'])}; every b, µs per row: {span}")
        adam = [r for r in mine if r["ratio_adam"] is not None]
        if adam:
            hi = adam[-1]
            add(
                "adam",
                hi["ratio_adam"],
                f"at {_pow2(hi['num_bits'])}: lazy on ≤ {hi['distinct_rows']:,} rows against dense on "
                f"{hi['table_rows']:,}",
            )
        else:
            add("adam", None, "the Adam steps were not run")
    return out


_SKETCH_RATIO_TEXT = {
    "flat": "sketch per row (the round's first call on the table), largest table over smallest",
    "flat_again": "sketch per row (its second call, on another batch), largest table over smallest",
    "dense_params": "dense (same params) over sketch",
    "dense_params_growth": "dense (same params), largest over smallest",
    "dense_flops": "dense (same multiply-adds) over sketch",
    "adam": "dense Adam over lazy Adam",
    "hash_share": "the hash's share of the sketch",
    "gather_bare": "the read (embedding_bag) over the bare NumPy gather",
}


def format_sketch_table(rows) -> str:
    """:func:`sketch_table`'s rows as a Markdown table (µs per row of each variant and the ratios), with the
    ratios of :func:`sketch_ratios` below it."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    lines = [
        f"SketchMemory forward + backward: X = {r0['input_dim']}, Y = {r0['output_dim']}, T = {r0['num_tables']}, "
        f"combine none, {r0['tokens']:,} rows per call; µs per row, minimum of {r0['rounds']} interleaved rounds, "
        "one BLAS thread. sketch = the layer's forward + backward, the round's first call on its table; 2nd call = "
        "the same right after, on another batch; hash = simhash_buckets alone; projection = the same x·R as one "
        "matmul; gather / scatter = embedding_bag forward / backward alone; bare gather = values[rows] in NumPy; "
        "dense (params) = MLP X → H → Y (ReLU) of T·2^b·Y weights; dense (MACs) = MLP X → h → Y of the sketch's "
        "T(bX + Y) multiply-adds per row; Adam = one step on the value table, lazy (the RowGrad's rows) or dense "
        "(densified, every row; timed in rounds of its own, after the others).",
        "",
        "| dtype | b | T·2^b rows | params | **sketch** | × smallest b | 2nd call | × smallest b | hash | projection "
        "| gather | scatter "
        "| bare gather | dense (params) H | **dense (params)** | dense / sketch | dense (MACs) h | dense (MACs) "
        "| dense / sketch | lazy Adam | dense Adam | dense / lazy | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        us = r["us_per_row"]
        cells = [
            r["dtype"],
            str(r["num_bits"]),
            f"{r['table_rows']:,}",
            f"{r['params']:,}",
            f"**{_f(us['sketch'])}**",
            _f(r["ratio_sketch"], ".2f"),
            _f(us["sketch_again"]),
            _f(r["ratio_sketch_again"], ".2f"),
            _f(us["hash"]),
            _f(us["projection"]),
            _f(us["gather"]),
            _f(us["scatter"]),
            _f(us["bare_gather"]),
            f"{r['dense_params_hidden']:,}",
            f"**{_f(us['dense_params'])}**",
            _f(r["ratio_dense_params"], ",.1f"),
            f"{r['dense_flops_hidden']:,}",
            _f(us["dense_flops"]),
            _f(r["ratio_dense_flops"], ".2f"),
            _f(us["lazy_adam"]),
            _f(us["dense_adam"]),
            _f(r["ratio_adam"], ",.1f"),
            r["note"] or "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Ratios (measured side by side):", ""]
    for q in sketch_ratios(rows):
        if q["value"] is None:
            value = "—"
        else:
            value = f"{100 * q['value']:.0f} %" if q["name"] == "hash_share" else f"{q['value']:.2f}×"
        lines.append(f"- {q['dtype']}, {_SKETCH_RATIO_TEXT[q['name']]}: {value} ({q['where']})")
    return "\n".join(lines)


# -- HMA ------------------------------------------------------------------------------------------------------

#: Queue lengths S of ``refmann bench hma``.
HMA_SIZES = (64, 256, 1024, 4096, 16384)

#: ``refmann bench hma --quick``: small sizes for tests and CI.
HMA_QUICK = dict(
    sizes=(8, 32), feature_dim=12, num_classes=3, label_dim=4, tokens_per_class=2, num_heads=2, batch=8, rounds=3
)  # fmt: skip

#: The two modes of :meth:`refmann.layers.hma.MemoryTokens.forward`.
HMA_MODES = ("transductive", "per_sample")

#: What one round times for each queue length, in the order it runs.
HMA_VARIANTS = (
    "transductive_forward", "transductive_backward", "per_sample_forward", "per_sample_backward", "stage1", "dense",
)  # fmt: skip


class _HMAConfig(NamedTuple):
    feature_dim: int
    num_classes: int
    label_dim: int
    tokens_per_class: int
    num_heads: int
    batch: int


class _HMAFixture(NamedTuple):
    layer: Any  # the MemoryTokens, its queue full (S rows written by enqueue)
    dense: Any  # the MLP head d -> h -> C of the layer's parameter count
    dstage1: np.ndarray  # (B, 1, D) the upstream gradient of stage 1 timed alone


def _hma_config(*, feature_dim=128, num_classes=10, label_dim=16, tokens_per_class=8, num_heads=4, batch=64):
    for name, value in (
        ("feature_dim", feature_dim),
        ("label_dim", label_dim),
        ("tokens_per_class", tokens_per_class),
        ("num_heads", num_heads),
        ("batch", batch),
    ):
        check_positive_int(value, name)
    check_positive_int(num_classes, "num_classes", minimum=2)
    if (feature_dim + label_dim) % num_heads:
        raise ValueError(
            f"num_heads: expected a divisor of D = feature_dim + label_dim = {feature_dim + label_dim}, got {num_heads}"
        )
    return _HMAConfig(feature_dim, num_classes, label_dim, tokens_per_class, num_heads, batch)


def _hma_needs(S: int, itemsize: int, config: _HMAConfig) -> int:
    """Bytes one size needs at its peak: the queue and its projections, and one forward + backward, whose stage 1
    holds the keys and values of the B sets, each [own row ; queue] (B, 1 + S, D), and their gradients (a generous
    ten such arrays)."""
    D, B = config.feature_dim + config.label_dim, config.batch
    return (6 * S * D + 10 * B * (1 + S) * D) * itemsize


def _dense_head_hidden(params: int, config: _HMAConfig) -> int:
    """h of the MLP head d -> h -> C whose parameters, h (d + C) + h + C, are closest to ``params``."""
    d, C = config.feature_dim, config.num_classes
    return max(1, round((params - C) / (d + C + 1)))


def _stage1_inputs(layer, f):
    """Stage 1's query and keys as :meth:`MemoryTokens.forward` builds them: c⁰ (B, 1, D) and ([c⁰_i], queue)."""
    E, C = layer.params["labels"], layer.num_classes
    c0 = np.concatenate([f, np.broadcast_to(E[C], (f.shape[0], layer.label_dim))], axis=1)[:, None, :]  # (B, 1, D)
    return c0, (c0, layer.buffers["queue"][None])


def _build_hma(S: int, dtype, config: _HMAConfig, seed: int, batch) -> _HMAFixture:
    """A queue length's fixture: the layer with a full queue, the dense head; warmed up outside the timing."""
    from ..layers.hma import MemoryTokens

    layer = MemoryTokens(
        feature_dim=config.feature_dim,
        num_classes=config.num_classes,
        label_dim=config.label_dim,
        tokens_per_class=config.tokens_per_class,
        queue_size=S,
        num_heads=config.num_heads,
        seed=seed,
        dtype=dtype,
    )
    rng = np.random.default_rng([seed, S])
    layer.enqueue(rng.standard_normal((S, config.feature_dim)).astype(dtype), rng.integers(0, config.num_classes, S))
    params = sum(int(np.size(v)) for v in layer.params.values())
    dense = _mlp(config.feature_dim, _dense_head_hidden(params, config), config.num_classes, dtype, seed)
    dstage1 = (rng.standard_normal((config.batch, 1, layer.dim)) / np.sqrt(layer.dim)).astype(dtype)
    fx = _HMAFixture(layer, dense, dstage1)
    _hma_round(fx, *batch)  # warm-up
    return fx


def _hma_round(fx: _HMAFixture, f, dlogits, *, clock=time.perf_counter) -> dict:
    """Every variant of a queue length once on the batch ``(f, dlogits)``: seconds per call by :data:`HMA_VARIANTS`."""
    from .. import _checks
    from ..layers.base import unscope

    layer, s = fx.layer, {}
    for mode in HMA_MODES:
        t0 = clock()
        _, cache = layer.forward(f, mode=mode)
        t1 = clock()
        layer.backward(dlogits, cache)
        t2 = clock()
        s[f"{mode}_forward"], s[f"{mode}_backward"] = t1 - t0, t2 - t1
        del cache
    mab = layer.children["stage1"]
    p1 = unscope("stage1", layer.params)
    x1, y1 = _stage1_inputs(layer, f)
    with _checks.unchecked():  # as MemoryTokens runs its blocks
        t = clock()
        _, cache = mab.forward(x1, y1, params=p1)
        mab.backward(fx.dstage1, cache)
        s["stage1"] = clock() - t
    del cache
    s["dense"] = _time_mlp(fx.dense, f, dlogits, clock)
    return s


def hma_table(
    sizes=HMA_SIZES,
    *,
    dtypes=("float32",),
    rounds=5,
    feature_dim=128,
    num_classes=10,
    label_dim=16,
    tokens_per_class=8,
    num_heads=4,
    batch=64,
    seed=0,
    progress=False,
) -> list[dict]:
    r"""Forward + backward time per sample of HMA's memory tokens against the queue length, in both modes, beside
    its stage 1 alone and a dense MLP head of the same parameter count, in interleaved rounds.

    Parameters
    ----------
    sizes : sequence of int
        Queue lengths S (each ≥ 1); sorted, repeats dropped.
    dtypes : sequence of {"float32", "float64"}, keyword-only
        Default float32 alone.
    rounds : int, keyword-only
        Every size and variant runs once per round, on the round's batch; each cell keeps its minimum.
    feature_dim, num_classes, label_dim, tokens_per_class, num_heads : int, keyword-only
        d, C, d_l, m_s and H of :class:`~refmann.layers.hma.MemoryTokens` (D = d + d_l divisible by H).
    batch : int, keyword-only
        B samples per call.
    seed : int, keyword-only
    progress : bool, keyword-only
        A tqdm progress bar on stderr.

    Returns
    -------
    rows : list of dict
        One per (dtype, S), in that order: the configuration (``dtype``, ``queue_size``, ``feature_dim``,
        ``num_classes``, ``label_dim``, ``tokens_per_class``, ``num_heads``, ``batch``, ``dim`` = D, ``rounds``),
        ``params`` (the layer's), ``dense_hidden`` and ``dense_params`` (the MLP head's), ``us_per_sample``
        (variant of :data:`HMA_VARIANTS`, and each mode's total ``transductive`` / ``per_sample``, -> µs per
        sample: a call's minimum over the rounds divided by B; None where not run), the ratios ``ratio_S`` (each
        mode's total and ``stage1`` over the dtype's smallest S, a dict), ``ratio_dense`` (each mode over the
        dense head, a dict), ``ratio_modes`` (transductive over per sample), ``stage1_share`` (stage 1 alone over
        the per-sample total), and ``note`` (why a size was skipped, else None).

    Notes
    -----
    Stage 1 lets each of the B samples attend to its own row and the S queued rows: the keys and values of the
    queue are projected once, and the attention is O(B·S·D) forward and backward. Stage 2 and the head do not
    depend on S, so each mode's time is a constant plus a term ∝ S.
    """
    config = _hma_config(
        feature_dim=feature_dim,
        num_classes=num_classes,
        label_dim=label_dim,
        tokens_per_class=tokens_per_class,
        num_heads=num_heads,
        batch=batch,
    )
    sizes = _check_sizes(sizes, what="queue length S", lo=1)
    dtypes = check_dtypes(dtypes)
    rounds = check_positive_int(rounds, "rounds")
    from tqdm import tqdm

    from ..layers.hma import MemoryTokens  # noqa: F401  (an ImportError here, before any work, if it is missing)

    rows = []
    bar = tqdm(total=len(dtypes) * len(sizes) * (rounds + 1), disable=not progress, unit="cell", desc="bench hma")
    try:
        with single_threaded_blas():
            for dtype in dtypes:
                rows += _hma_dtype(np.dtype(dtype), sizes, config, rounds, seed, bar)
    finally:
        bar.close()
    return rows


def _hma_dtype(dtype, sizes, config: _HMAConfig, rounds, seed, bar) -> list[dict]:
    """The rows of one dtype: build every size's fixture, then ``rounds`` interleaved rounds."""
    rng = np.random.default_rng([seed, 11])
    B, d, C = config.batch, config.feature_dim, config.num_classes
    batches = [
        (rng.standard_normal((B, d)).astype(dtype), (rng.standard_normal((B, C)) / np.sqrt(C)).astype(dtype))
        for _ in range(rounds + 1)
    ]  # (B, d), (B, C): the warm-up's, then one per round, the same for every size
    cells = []
    for S in sizes:
        cell = {"S": S, "fixture": None, "note": None, "best": {}}
        cells.append(cell)
        bar.set_postfix_str(f"{dtype.name} S={S:,}: building")
        ok, why = _fits(_hma_needs(S, dtype.itemsize, config))
        if ok:
            cell["fixture"] = _build_hma(S, dtype, config, seed, batches[0])
        else:
            cell["note"] = f"skipped: {why}"
        bar.update(1)
    live = [c for c in cells if c["fixture"] is not None]
    for r in range(rounds):
        f, dlogits = batches[r + 1]
        for cell in live[r % len(live) :] + live[: r % len(live)] if live else []:  # a different first size each round
            bar.set_postfix_str(f"{dtype.name} S={cell['S']:,}")
            _keep_min(cell["best"], _hma_round(cell["fixture"], f, dlogits))
            bar.update(1)
            if cell is live[-1] and len(live) > 1:  # after the longest calls, a settling call, not kept
                _hma_round(live[0]["fixture"], f, dlogits)
    bar.update(rounds * (len(cells) - len(live)))
    rows = [_hma_row(cell, dtype, config, rounds) for cell in cells]
    for cell in cells:
        cell["fixture"] = None
    measured = [r for r in rows if r["us_per_sample"]["stage1"] is not None]
    for r in rows:
        us = r["us_per_sample"]
        r["ratio_S"] = {
            key: (None if not measured else _ratio(us[key], measured[0]["us_per_sample"][key]))
            for key in (*HMA_MODES, "stage1")
        }
    return rows


def _hma_row(cell, dtype, config: _HMAConfig, rounds) -> dict:
    S, best, fx = cell["S"], cell["best"], cell["fixture"]
    B = config.batch
    us = {v: (1e6 * best[v] / B if v in best else None) for v in HMA_VARIANTS}
    for mode in HMA_MODES:
        parts = (us[f"{mode}_forward"], us[f"{mode}_backward"])
        us[mode] = None if None in parts else sum(parts)
    D = config.feature_dim + config.label_dim
    if fx is not None:
        params = sum(int(np.size(v)) for v in fx.layer.params.values())
    else:  # not built: the count from a layer with a queue of one row (the queue is a buffer, not a parameter)
        from ..layers.hma import MemoryTokens

        small = MemoryTokens(
            feature_dim=config.feature_dim,
            num_classes=config.num_classes,
            label_dim=config.label_dim,
            tokens_per_class=config.tokens_per_class,
            queue_size=1,
            num_heads=config.num_heads,
        )
        params = sum(int(np.size(v)) for v in small.params.values())
    h = _dense_head_hidden(params, config)
    return {
        "dtype": dtype.name,
        "queue_size": S,
        **config._asdict(),
        "dim": D,
        "rounds": rounds,
        "params": params,
        "dense_hidden": h,
        "dense_params": _mlp_params(config.feature_dim, h, config.num_classes),
        "us_per_sample": us,
        "ratio_dense": {mode: _ratio(us[mode], us["dense"]) for mode in HMA_MODES},
        "ratio_modes": _ratio(us["transductive"], us["per_sample"]),
        "stage1_share": _ratio(us["stage1"], us["per_sample"]),
        "note": cell["note"],
    }


def hma_ratios(rows) -> list[dict]:
    """The ratios the HMA benchmark is for, per dtype, from :func:`hma_table`'s rows.

    Returns
    -------
    ratios : list of dict
        ``{"dtype", "name", "value", "where"}`` for ``growth_<key>`` (``key`` each mode's total and ``stage1``:
        its time at the largest S over the smallest, beside the S ratio; ``where`` also gives the growth over each
        step of S), ``dense_<mode>`` (the mode over the dense head at the largest S; ``where`` lists every S),
        ``modes`` (transductive over per sample at the largest S) and ``stage1_share`` (stage 1 alone over the
        per-sample total at the largest S). ``value`` is None where it was not measured.
    """
    out = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        mine = [r for r in rows if r["dtype"] == dtype and r["us_per_sample"]["stage1"] is not None]

        def add(name, value, where, dtype=dtype):
            out.append({"dtype": dtype, "name": name, "value": value, "where": where})

        for key in (*HMA_MODES, "stage1"):
            if len(mine) < 2:
                add(f"growth_{key}", None, "needs two measured sizes")
                continue
            lo, hi = mine[0], mine[-1]
            steps = ", ".join(
                f"S {a['queue_size']:,} → {b['queue_size']:,}: ×{b['us_per_sample'][key] / a['us_per_sample'][key]:.2f}"
                for a, b in zip(mine, mine[1:])
            )
            add(
                f"growth_{key}",
                hi["ratio_S"][key],
                f"S = {hi['queue_size']:,} over {lo['queue_size']:,} (S ×{hi['queue_size'] / lo['queue_size']:g}); "
                f"{steps}",
            )
        if not mine:
            for name in (*(f"dense_{m}" for m in HMA_MODES), "modes", "stage1_share"):
                add(name, None, "no size measured")
            continue
        hi = mine[-1]
        for mode in HMA_MODES:
            span = ", ".join(f"{r['queue_size']:,}: {r['ratio_dense'][mode]:.1f}" for r in mine)
            add(f"dense_{mode}", hi["ratio_dense"][mode], f"at S = {hi['queue_size']:,}; every S: {span}")
        span = ", ".join(f"{r['ratio_modes']:.2f}" for r in mine)
        add("modes", hi["ratio_modes"], f"at S = {hi['queue_size']:,}; every S: {span}")
        span = ", ".join(f"{100 * r['stage1_share']:.0f} %" for r in mine)
        add("stage1_share", hi["stage1_share"], f"at S = {hi['queue_size']:,}; every S: {span}")
    return out


_HMA_RATIO_TEXT = {
    "growth_transductive": "transductive per sample, largest S over smallest",
    "growth_per_sample": "per-sample mode per sample, largest S over smallest",
    "growth_stage1": "stage 1 alone, largest S over smallest",
    "dense_transductive": "transductive over the dense head",
    "dense_per_sample": "per-sample mode over the dense head",
    "modes": "transductive over per-sample mode",
    "stage1_share": "stage 1's share of the per-sample mode",
}


def format_hma_table(rows) -> str:
    """:func:`hma_table`'s rows as a Markdown table (µs per sample of each variant and the ratios), with the
    ratios of :func:`hma_ratios` below it."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    lines = [
        f"MemoryTokens forward + backward: d = {r0['feature_dim']}, C = {r0['num_classes']}, d_l = "
        f"{r0['label_dim']} (D = {r0['dim']}), m_s = {r0['tokens_per_class']}, H = {r0['num_heads']}, "
        f"{r0['params']:,} parameters, {r0['batch']} samples per call; µs per sample, minimum of {r0['rounds']} "
        "interleaved rounds, one BLAS thread. stage 1 = its attention block alone (forward + backward, [own row ; "
        f"queue] keys); dense = MLP head d → h → C (ReLU), h = {r0['dense_hidden']:,}, {r0['dense_params']:,} "
        "parameters.",
        "",
        "| dtype | S | transductive fwd | bwd | **transductive** | × smallest S | per-sample fwd | bwd "
        "| **per-sample** | × smallest S | stage 1 | × smallest S | stage 1 / per-sample | dense "
        "| transductive / dense | per-sample / dense | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- |",
    ]
    for r in rows:
        us, q = r["us_per_sample"], r["ratio_S"]
        cells = [
            r["dtype"],
            f"{r['queue_size']:,}",
            _f(us["transductive_forward"]),
            _f(us["transductive_backward"]),
            f"**{_f(us['transductive'])}**",
            _f(q["transductive"], ".2f"),
            _f(us["per_sample_forward"]),
            _f(us["per_sample_backward"]),
            f"**{_f(us['per_sample'])}**",
            _f(q["per_sample"], ".2f"),
            _f(us["stage1"]),
            _f(q["stage1"], ".2f"),
            "—" if r["stage1_share"] is None else f"{100 * r['stage1_share']:.0f} %",
            _f(us["dense"]),
            _f(r["ratio_dense"]["transductive"], ",.1f"),
            _f(r["ratio_dense"]["per_sample"], ",.1f"),
            r["note"] or "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Ratios (measured side by side):", ""]
    for q in hma_ratios(rows):
        if q["value"] is None:
            value = "—"
        else:
            value = f"{100 * q['value']:.0f} %" if q["name"] == "stage1_share" else f"{q['value']:.2f}×"
        lines.append(f"- {q['dtype']}, {_HMA_RATIO_TEXT[q['name']]}: {value} ({q['where']})")
    return "\n".join(lines)
