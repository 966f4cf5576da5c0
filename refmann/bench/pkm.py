"""One training step of a product-key memory layer against its number of slots: ``refmann bench pkm``.

The layer is :class:`refmann.layers.ProductKeyMemory` in its default (XLM) mode: input_dim =
output_dim = 512, key_dim 256, 4 heads, k = 32, one batch of 1,024 tokens, and num_keys n = 128 … 1,024,
so N = n² = 2^14 … 2^20 slots. One step is the layer's forward, its backward against a fixed upstream
gradient, and lazy Adam in place (:func:`refmann.train.optim.sparse_adam_inplace`, the values' gradient
a :class:`~refmann.ops.RowGrad`) on every parameter, in six parts (:data:`PARTS`):

- ``query``: the query Linear's forward and backward (and the query norm's, with one);
- ``search``: :func:`~refmann.ops.product_key_topk_forward` and its backward;
- ``softmax``: the softmax over each head's k scores, forward and backward;
- ``gather``: :func:`~refmann.ops.embedding_bag_forward`, the value read;
- ``scatter``: :func:`~refmann.ops.embedding_bag_backward`, the values' RowGrad (and the weights' gradient);
- ``optimizer``: :func:`~refmann.train.optim.sparse_adam_inplace` on every parameter (the touched rows of
  the values and of their moments, rewritten in place by one kernel).

A cell's total is the sum of its parts, each the minimum over the rounds. Measured in the same rounds,
for the same fixture:

- ``dense``: the same step with the values' RowGrad densified into an (N, D) array
  (:func:`~refmann.ops.densify_rows`) and Adam applied in place to **every** row (the same kernel, given
  all N rows: the arithmetic of refmann's :func:`~refmann.train.optim.adam`) — what a dense optimizer
  does (XLM with a non-sparse embedding bag, Meta's fused AdamW); its optimizer part is densify + Adam;
- the floor of the value read and its gradient: a bare NumPy gather of the same rows,
  ``values[slots]`` (``floor_gather``), and the weighted sum of those rows, ``einsum`` (``floor_sum``).
  The floor of target 2 is the two together: the read's output is the weighted sum, and NumPy has no
  cheaper way to form it;
- ``copy``: copying the values and their two Adam moments with ``np.array``: what the pure
  :func:`~refmann.train.optim.sparse_adam` (the trainer's, whose step is a transaction) adds to each step.

Every round runs every size and variant once, under one BLAS thread; each cell keeps its minimum. The
fixture (the layer, the inputs, the upstream gradient, the Adam state) is built once per size outside
the timing, and every timed step is a real one: the parameters and the Adam state advance (the same
inputs every step; the lazy and the dense step share the state, as the two rules may). A cell whose
arrays would not fit in the memory available (``MemAvailable`` of /proc/meminfo, with a margin) is
skipped, with a note in its row.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from .. import ops
from .._checks import check_positive_int
from .._threads import single_threaded_blas
from ._proc import GIB, _read_kib, check_dtypes

__all__ = ["PARTS", "QUICK", "pkm_forward_backward", "pkm_table", "pkm_targets", "format_pkm_table"]

#: The parts of one step, in the order they run (forward, then backward, then the optimizer).
PARTS = ("query", "search", "softmax", "gather", "scatter", "optimizer")

#: The issue's sizes: num_keys n, N = n² = 2^14, 2^16, 2^18, 2^20.
SIZES = (128, 256, 512, 1024)

#: ``refmann bench pkm --quick``: small sizes for tests and CI.
QUICK = dict(sizes=(16, 32), input_dim=32, output_dim=32, key_dim=32, num_heads=4, k=8, tokens=64, rounds=3)

#: Peak bytes above the resident fixture of one dense step, in (N, D) tables: the densified gradient
#: (and a margin for the row indices 0..N-1).
DENSE_TABLES = 2
#: The same for the lazy step: none (in place), and its temporaries over the touched rows
#: (:data:`LAZY_ROWS` (U, D) arrays).
LAZY_TABLES, LAZY_ROWS = 0, 8
#: Memory kept free besides a cell's estimate: this much, plus 10% of the estimate.
HEADROOM = 1.0 * GIB

# Target thresholds (the words).
TARGET_STEP, TARGET_FLOOR, TARGET_DENSE = 2.0, 2.0, 10.0


def mem_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where it cannot be read)."""
    return _read_kib("/proc/meminfo", ("MemAvailable",)).get("MemAvailable")


def _fits(need: float, available=None) -> tuple[bool, str]:
    """Whether ``need`` bytes fit now, and a note saying how many GiB were needed and available."""
    available = mem_available() if available is None else available
    if available is None:
        return True, ""
    want = 1.1 * need + HEADROOM
    return want <= available, f"needs ~{want / GIB:.1f} GiB, {available / GIB:.1f} GiB available"


class _Config(NamedTuple):
    input_dim: int
    output_dim: int
    key_dim: int
    num_heads: int
    k: int
    tokens: int
    query_norm: str | None
    lr: float


class _Fixture(NamedTuple):
    layer: object  # the ProductKeyMemory; its ``params`` dict is the one the steps replace arrays in
    x: np.ndarray  # (B, X)
    dy: np.ndarray  # (B, Y)
    state: dict  # {"adam": the Adam state}, shared by the lazy and the dense step
    slots: np.ndarray  # int (B, H·k) the slots the warm-up step read (the floor gathers these)
    weights: np.ndarray  # (B, H·k) their softmax weights


def pkm_forward_backward(layer, x, dy, *, params=None, clock=time.perf_counter):
    """The layer's forward and backward, as :meth:`ProductKeyMemory.forward` and ``backward`` run them, timed
    by part.

    Parameters
    ----------
    layer : ProductKeyMemory
    x : ndarray, shape (B, input_dim)
    dy : ndarray, shape (B, output_dim)
        ∂L/∂y, the upstream gradient.
    params : dict, keyword-only, optional
        Default ``layer.params``.
    clock : callable, keyword-only
        Seconds (default :func:`time.perf_counter`).

    Returns
    -------
    y : ndarray, shape (B, output_dim)
    grads : dict
        Keyed as ``layer.params``; ``grads["values"]`` is a :class:`~refmann.ops.RowGrad`.
    seconds : dict
        Seconds of each part of :data:`PARTS` but ``"optimizer"``: forward and backward together.
    caches : tuple
        ``(search, bag)``: the :class:`~refmann.ops.ProductKeyTopKCache` (its ``slots``) and the
        :class:`~refmann.ops.EmbeddingBagCache` (its ``weights``).
    """
    from ..layers.base import scope, unscope

    if layer.output != "sum" or layer.experts or layer.shared_values:  # this mirrors XLM's path only
        raise ValueError("layer: expected a ProductKeyMemory in XLM's mode (no swilu, experts or shared values)")
    p = layer.params if params is None else params
    c = layer.children
    B, H, k, dk = x.shape[0], layer.num_heads, layer.k, layer.key_dim
    seconds = dict.fromkeys(PARTS[:-1], 0.0)

    t0 = clock()
    z, cq = c["query"].forward(x, params=unscope("query", p))  # (B, H·dk)
    cn = None
    if "query_norm" in c:
        z, cn = c["query_norm"].forward(z, params=unscope("query_norm", p))  # (B, H·dk)
    t1 = clock()
    scores, cs = ops.product_key_topk_forward(z.reshape(B, H, dk), p["keys"], k=k)  # (B, H, k)
    t2 = clock()
    w, cw = ops.softmax_forward(scores, axis=-1)  # (B, H, k)
    t3 = clock()
    y, cb = ops.embedding_bag_forward(p["values"], w.reshape(B, H * k), indices=cs.slots.reshape(B, H * k))  # (B, Y)
    t4 = clock()
    dvalues, dw = ops.embedding_bag_backward(dy, cb)  # RowGrad, (B, H·k)
    t5 = clock()
    (dscores,) = ops.softmax_backward(dw.reshape(B, H, k), cw)  # (B, H, k)
    t6 = clock()
    dqueries, dkeys = ops.product_key_topk_backward(dscores, cs)  # (B, H, dk), (H, 2, n, dk/2)
    t7 = clock()
    grads = {"keys": dkeys, "values": dvalues}
    dz = dqueries.reshape(B, H * dk)  # (B, H·dk)
    if cn is not None:
        dz, g = c["query_norm"].backward(dz, cn)
        grads.update(scope("query_norm", g))
    _, g = c["query"].backward(dz, cq)  # dx (B, X) is not needed
    grads.update(scope("query", g))
    t8 = clock()

    seconds["query"] = (t1 - t0) + (t8 - t7)
    seconds["search"] = (t2 - t1) + (t7 - t6)
    seconds["softmax"] = (t3 - t2) + (t6 - t5)
    seconds["gather"] = t4 - t3
    seconds["scatter"] = t5 - t4
    return y, {key: grads[key] for key in p}, seconds, (cs, cb)


def _step(fx: _Fixture, config: _Config, *, dense: bool) -> dict:
    """One real training step of the fixture (its params and Adam state advance); seconds per part."""
    from ..train.optim import sparse_adam_inplace

    params = fx.layer.params
    _, grads, seconds, _ = pkm_forward_backward(fx.layer, fx.x, fx.dy)
    t = time.perf_counter()
    if dense:  # every row: the densified gradient, Adam on all N rows (in place, as a fused AdamW)
        N = params["values"].shape[0]
        grads["values"] = ops.RowGrad(np.arange(N), ops.densify_rows(grads["values"]), N)  # (N, D)
    sparse_adam_inplace(params, grads, fx.state["adam"], lr=config.lr)
    del grads
    seconds["optimizer"] = time.perf_counter() - t
    return seconds


def _floors(fx: _Fixture) -> dict:
    """Seconds of the bare NumPy value read of the same rows: the gather, and the weighted sum."""
    values = fx.layer.params["values"]
    t0 = time.perf_counter()
    rows = values[fx.slots]  # (B, H·k, D)
    t1 = time.perf_counter()
    np.einsum("br,brd->bd", fx.weights, rows)  # (B, D)
    t2 = time.perf_counter()
    return {"floor_gather": t1 - t0, "floor_sum": t2 - t1}


def _copy(fx: _Fixture) -> float:
    """Seconds to copy the values and their two Adam moments (``np.array``, one at a time)."""
    state = fx.state["adam"]
    total = 0.0
    for table in (fx.layer.params["values"], state["m"]["values"], state["v"]["values"]):
        t = time.perf_counter()
        copy = np.array(table, order="C")
        total += time.perf_counter() - t
        del copy
    return total


def _build(n: int, dtype, config: _Config, seed: int) -> _Fixture:
    """A size's fixture: the layer, random inputs and upstream gradient, and the Adam state after one lazy
    step (the warm-up: compilation, and the state's allocation, outside the timing)."""
    from ..layers import ProductKeyMemory
    from ..train.optim import sparse_adam_inplace

    layer = ProductKeyMemory(
        input_dim=config.input_dim,
        output_dim=config.output_dim,
        num_keys=n,
        num_heads=config.num_heads,
        k=config.k,
        key_dim=config.key_dim,
        query_norm=config.query_norm,
        seed=seed,
        dtype=dtype,
    )
    rng = np.random.default_rng([seed, n])
    x = rng.standard_normal((config.tokens, config.input_dim)).astype(dtype)  # (B, X)
    dy = (rng.standard_normal((config.tokens, config.output_dim)) / np.sqrt(config.output_dim)).astype(dtype)
    _, grads, _, (cs, cb) = pkm_forward_backward(layer, x, dy)  # warm-up (compilation) and the floor's rows
    _, state = sparse_adam_inplace(layer.params, grads, None, lr=config.lr)  # the Adam state, at step 1
    del grads
    B = config.tokens
    return _Fixture(layer, x, dy, {"adam": state}, cs.slots.reshape(B, -1), np.array(cb.weights))


def _needs(n: int, itemsize: int, config: _Config) -> dict:
    """Bytes a cell needs: ``build`` (its peak while built), ``resident`` (kept between steps), ``lazy`` and
    ``dense`` (a step's peak above the resident arrays) and ``copy`` (one table)."""
    N, D = n * n, config.output_dim
    table = N * D * itemsize
    lookups = config.tokens * config.num_heads * config.k * D * itemsize  # the gathered rows (J, D)
    fb = 4 * lookups  # forward + backward: the gathered rows, the RowGrad, their temporaries
    touched = min(config.tokens * config.num_heads * config.k, N) * D * itemsize  # (U, D) at most
    init = N * D * 8 + table  # the layer draws its values in float64, then casts
    return {
        # values, zero moments
        "build": max(init, (1 + 2 + LAZY_TABLES) * table + LAZY_ROWS * touched) + fb,
        "resident": 3 * table,
        "lazy": LAZY_TABLES * table + LAZY_ROWS * touched + fb,
        "dense": DENSE_TABLES * table + fb,
        "copy": table,
    }


def default_dtypes(sizes=SIZES, **config) -> tuple[str, ...]:
    """``("float32", "float64")`` when float64 at the largest size fits in the memory available now, else
    ``("float32",)``."""
    cfg = _config(**config)
    n = max(sizes)
    need = _needs(n, 8, cfg)
    need32 = _needs(n, 4, cfg)
    ok, _ = _fits(max(need["build"], need["resident"] + need["lazy"]) + need32["resident"])
    return ("float32", "float64") if ok else ("float32",)


def _config(
    *, input_dim=512, output_dim=512, key_dim=256, num_heads=4, k=32, tokens=1024, query_norm=None, lr=1e-3
) -> _Config:
    for name, value in (
        ("input_dim", input_dim),
        ("output_dim", output_dim),
        ("key_dim", key_dim),
        ("num_heads", num_heads),
        ("k", k),
        ("tokens", tokens),
    ):
        check_positive_int(value, name)
    if key_dim % 2:
        raise ValueError(f"key_dim: expected an even int, got {key_dim}")
    return _Config(input_dim, output_dim, key_dim, num_heads, k, tokens, query_norm, float(lr))


def _check_sizes(sizes, k) -> tuple[int, ...]:
    if isinstance(sizes, (int, np.integer)):
        sizes = (sizes,)
    sizes = tuple(sorted({check_positive_int(n, "sizes") for n in sizes}))
    if not sizes:
        raise ValueError("sizes: expected at least one num_keys n, got none")
    if sizes[0] < k:
        raise ValueError(f"sizes: expected num_keys n >= k = {k} (each half's top k), got {sizes[0]}")
    return sizes


def pkm_table(
    sizes=SIZES,
    *,
    dtypes=None,
    rounds=5,
    input_dim=512,
    output_dim=512,
    key_dim=256,
    num_heads=4,
    k=32,
    tokens=1024,
    query_norm=None,
    lr=1e-3,
    dense=True,
    seed=0,
    progress=False,
) -> list[dict]:
    """One training step of a product-key memory layer per (dtype, N), by part, with its floors and the
    dense-Adam step, measured side by side in interleaved rounds.

    Parameters
    ----------
    sizes : sequence of int
        num_keys n of each size (N = n² slots), each ≥ k; sorted, repeats dropped.
    dtypes : sequence of {"float32", "float64"}, keyword-only, optional
        Default :func:`default_dtypes`: float64 too when its largest size fits in the memory available.
    rounds : int, keyword-only
        Every size and variant runs once per round; each cell keeps its minimum.
    input_dim, output_dim, key_dim, num_heads, k, tokens : int, keyword-only
        The layer (X, Y, dk, H, k) and the batch of tokens B of one step.
    query_norm : {None, "batchnorm", "layernorm"}, keyword-only
        The layer's query norm (default None, its default); timed with the query.
    lr : float, keyword-only
        Adam's step size (both optimizers).
    dense : bool, keyword-only
        Also time the dense-Adam step (default True).
    seed : int, keyword-only
    progress : bool, keyword-only
        A tqdm progress bar on stderr.

    Returns
    -------
    rows : list of dict
        One per (dtype, N), in that order, with the configuration (``dtype``, ``num_keys``, ``N``,
        ``input_dim``, ``output_dim``, ``key_dim``, ``num_heads``, ``k``, ``tokens``, ``query_norm``,
        ``rounds``), ``parts`` (part -> ms, :data:`PARTS`) and ``total_ms`` (their sum), ``dense_parts``
        and ``dense_total_ms`` (the dense-Adam step), ``floor_gather_ms``, ``floor_sum_ms``, ``copy_ms``,
        ``table_bytes`` (the values), ``gather_bytes`` (the rows one read gathers), ``distinct_slots``
        (U, the RowGrad's rows), the ratios ``ratio_step`` (total over the smallest N's of the dtype),
        ``ratio_floor`` (gather + scatter over floor gather + sum), ``ratio_floor_gather`` (over the
        gather alone), ``ratio_dense`` (dense total over total), and ``note`` (why a cell or its dense
        step was skipped, else None). A skipped measurement is None.
    """
    config = _config(
        input_dim=input_dim,
        output_dim=output_dim,
        key_dim=key_dim,
        num_heads=num_heads,
        k=k,
        tokens=tokens,
        query_norm=query_norm,
        lr=lr,
    )
    sizes = _check_sizes(sizes, config.k)
    dims = {"input_dim": input_dim, "output_dim": output_dim, "key_dim": key_dim, "num_heads": num_heads, "k": k}
    dtypes = check_dtypes(default_dtypes(sizes, **dims, tokens=tokens) if dtypes is None else dtypes)
    rounds = check_positive_int(rounds, "rounds")
    if query_norm is not None:  # the layer checks the name; fail before any build
        from ..layers.product_keys import QUERY_NORMS

        if query_norm not in QUERY_NORMS:
            raise ValueError(f"query_norm: expected None or one of {sorted(QUERY_NORMS)}, got {query_norm!r}")

    from tqdm import tqdm

    rows = []
    bar = tqdm(total=len(dtypes) * len(sizes) * (rounds + 1), disable=not progress, unit="cell", desc="bench pkm")
    try:
        with single_threaded_blas():
            for dtype in dtypes:
                rows += _run_dtype(np.dtype(dtype), sizes, config, rounds, dense, seed, bar)
    finally:
        bar.close()
    return rows


def _run_dtype(dtype, sizes, config: _Config, rounds, dense, seed, bar) -> list[dict]:
    """The rows of one dtype: build every size's fixture, then ``rounds`` interleaved rounds."""
    itemsize = dtype.itemsize
    cells = []
    for n in sizes:
        need = _needs(n, itemsize, config)
        cell = {"n": n, "need": need, "fixture": None, "note": None, "dense_note": None, "best": {}, "dense": {}}
        cells.append(cell)
        bar.set_postfix_str(f"{dtype.name} N={n * n:,}: building")
        ok, why = _fits(max(need["build"], need["resident"] + need["lazy"]))
        if not ok:
            cell["note"] = f"skipped: {why}"
        else:
            cell["fixture"] = _build(n, dtype, config, seed)
            if dense:
                cell["dense_ok"] = True
        bar.update(1)
    live = [c for c in cells if c["fixture"] is not None]
    for _ in range(rounds):
        for cell in live:
            fx, need = cell["fixture"], cell["need"]
            bar.set_postfix_str(f"{dtype.name} N={cell['n'] ** 2:,}")
            ok, why = _fits(need["lazy"])
            if ok:
                _keep_min(cell["best"], _step(fx, config, dense=False))
            else:
                cell["lazy_note"] = why
            if dense:
                ok, why = _fits(need["dense"])
                if ok:
                    _keep_min(cell["dense"], _step(fx, config, dense=True))
                else:
                    cell["dense_note"] = why
            _keep_min(cell["best"], _floors(fx))
            ok, why = _fits(need["copy"])
            if ok:
                _keep_min(cell["best"], {"copy": _copy(fx)})
            bar.update(1)
    for cell in cells:
        bar.update(0 if cell["fixture"] is not None else rounds)
    rows = [_row(cell, dtype, config, rounds, dense) for cell in cells]
    for cell in cells:
        cell["fixture"] = None  # free this dtype's tables before the next
    first = next((r["total_ms"] for r in rows if r["total_ms"] is not None), None)
    for r in rows:
        r["ratio_step"] = None if r["total_ms"] is None or first is None else r["total_ms"] / first
    return rows


def _keep_min(best: dict, seconds: dict):
    for key, value in seconds.items():
        best[key] = min(best.get(key, np.inf), value)


def _ms(best, key):
    return 1e3 * best[key] if key in best else None


def _row(cell, dtype, config: _Config, rounds, dense) -> dict:
    n, best, fx = cell["n"], cell["best"], cell["fixture"]
    N, D = n * n, config.output_dim
    parts = {p: _ms(best, p) for p in PARTS} if all(p in best for p in PARTS) else None
    dparts = {p: 1e3 * cell["dense"][p] for p in PARTS} if all(p in cell["dense"] for p in PARTS) else None
    notes = [cell["note"]] if cell["note"] else []
    if fx is not None and parts is None:
        notes.append(f"lazy step skipped: {cell.get('lazy_note')}")
    if fx is not None and dense and dparts is None:
        notes.append(f"dense Adam skipped: {cell['dense_note']}")
    total = None if parts is None else sum(parts.values())
    dtotal = None if dparts is None else sum(dparts.values())
    floor = None if fx is None else _ms(best, "floor_gather") + _ms(best, "floor_sum")
    read = None if parts is None else parts["gather"] + parts["scatter"]
    return {
        "dtype": dtype.name,
        "num_keys": n,
        "N": N,
        **config._asdict(),
        "rounds": rounds,
        "parts": parts,
        "total_ms": total,
        "dense_parts": dparts,
        "dense_total_ms": dtotal,
        "floor_gather_ms": _ms(best, "floor_gather"),
        "floor_sum_ms": _ms(best, "floor_sum"),
        "copy_ms": _ms(best, "copy"),
        "table_bytes": N * D * dtype.itemsize,
        "gather_bytes": config.tokens * config.num_heads * config.k * D * dtype.itemsize,
        "distinct_slots": None if fx is None else int(np.unique(fx.slots).size),
        "ratio_floor": None if read is None else read / floor,
        "ratio_floor_gather": None if read is None else read / _ms(best, "floor_gather"),
        "ratio_dense": None if dtotal is None or total is None else dtotal / total,
        "note": "; ".join(notes) or None,
    }


def _pow2(N: int) -> str:
    e = int(N).bit_length() - 1
    return f"2^{e}" if N == 1 << e else f"{N:,}"


def _gbps(nbytes, ms) -> str:
    return f"{nbytes / (ms * 1e-3) / 1e9:.1f} GB/s"


def pkm_targets(rows) -> list[dict]:
    """The issue's three targets per dtype, from :func:`pkm_table`'s rows.

    1. ``step``: the step at the largest N within 2× of the step at the smallest;
    2. ``floor``: the value gather + gradient scatter within 2× of the bare NumPy gather + weighted sum
       of the same rows (at the largest N);
    3. ``dense``: the lazy step at the largest N at least 10× faster than the dense-Adam step.

    Returns
    -------
    targets : list of dict
        ``{"dtype", "target", "goal", "value", "where", "status", "bound"}``: ``value`` the measured
        ratio (None if not measured), ``where`` the sizes it was measured at (and why a size is
        missing), ``status`` "PASS", "MISS" or "not measured", ``bound`` for a miss what bounds it,
        measured in the same run (else "").
    """
    out = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        mine = [r for r in rows if r["dtype"] == dtype]
        for name, target in (("step", _target_step), ("floor", _target_floor), ("dense", _target_dense)):
            value, where, ok, bound = target(mine)
            status = "not measured" if value is None else _status(ok)
            out.append(
                {
                    "dtype": dtype,
                    "target": name,
                    "goal": GOALS[name],
                    "value": value,
                    "where": where,
                    "status": status,
                    "bound": bound if status == "MISS" else "",
                }
            )
    return out


GOALS = {
    "step": f"step at the largest N ≤ {TARGET_STEP:g}× the step at the smallest",
    "floor": f"gather + scatter ≤ {TARGET_FLOOR:g}× the bare NumPy gather + weighted sum of the same rows",
    "dense": f"lazy step ≥ {TARGET_DENSE:g}× faster than the dense-Adam step",
}


def _missing(r, largest) -> str:
    """Why the largest size is not the one measured ('' when it is)."""
    return "" if r is largest or largest["note"] is None else f"; N = {_pow2(largest['N'])}: {largest['note']}"


def _target_step(mine):
    done = [r for r in mine if r["total_ms"] is not None]
    if len(done) < 2:
        return None, "needs two measured sizes", False, ""
    lo, hi = done[0], done[-1]
    value = hi["total_ms"] / lo["total_ms"]
    where = f"N = {_pow2(hi['N'])} against {_pow2(lo['N'])}{_missing(hi, mine[-1])}"
    fb = (hi["total_ms"] - hi["parts"]["optimizer"]) / (lo["total_ms"] - lo["parts"]["optimizer"])
    growth = sorted(PARTS, key=lambda p: lo["parts"][p] - hi["parts"][p])[:3]
    bound = "growth: " + ", ".join(f"{p} {_f(lo['parts'][p])} → {_f(hi['parts'][p])} ms" for p in growth)
    bound += f"; forward + backward alone ×{fb:.2f}. "
    bound += f"The lazy optimizer works on the U = {lo['distinct_slots']:,} → {hi['distinct_slots']:,} touched rows. "
    search = hi["parts"]["search"] / lo["parts"]["search"]
    bound += f"The search grows ×{search:.1f} for n ×{hi['num_keys'] / lo['num_keys']:g} (√N)"
    return value, where, value <= TARGET_STEP, bound


def _target_floor(mine):
    done = [r for r in mine if r["total_ms"] is not None]
    if not done:
        return None, "no size measured", False, ""
    hi = done[-1]
    value = hi["ratio_floor"]
    span = ", ".join(f"{r['ratio_floor']:.2f}" for r in done)
    where = (
        f"N = {_pow2(hi['N'])}; all N: {span}; against the bare gather alone: {hi['ratio_floor_gather']:.2f}"
        f"{_missing(hi, mine[-1])}"
    )
    p, mib = hi["parts"], hi["gather_bytes"] / 2**20
    bound = (
        f"gather {_f(p['gather'])} ms against the bare gather {_f(hi['floor_gather_ms'])} ms + sum "
        f"{_f(hi['floor_sum_ms'])} ms; scatter {_f(p['scatter'])} ms. The bare gather copies {mib:,.0f} MiB "
        f"of rows at {_gbps(hi['gather_bytes'], hi['floor_gather_ms'])}"
    )
    return value, where, value <= TARGET_FLOOR, bound


def _target_dense(mine):
    largest = mine[-1]
    both = [r for r in mine if r["ratio_dense"] is not None]
    if not both:
        return None, largest["note"] or "the dense step was not run", False, ""
    hi = both[-1]
    value = hi["ratio_dense"]
    where = f"N = {_pow2(hi['N'])}"
    if hi is not largest:
        where += f"; N = {_pow2(largest['N'])} not measured ({largest['note']})"
    p, d = hi["parts"], hi["dense_parts"]
    bound = (
        f"lazy optimizer {_f(p['optimizer'])} ms on U = {hi['distinct_slots']:,} rows against dense "
        f"{_f(d['optimizer'])} ms (densify + Adam on all N = {hi['N']:,} rows); forward + backward "
        f"{_f(hi['total_ms'] - p['optimizer'])} ms in both"
    )
    return value, where, value >= TARGET_DENSE, bound


def _status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _f(value, spec=None) -> str:
    """``value`` as ``spec``, or by default with three significant digits (at least a whole number); None as —."""
    if value is None:
        return "—"
    if spec is None:
        digits = 0 if value == 0 else max(0, 2 - int(np.floor(np.log10(abs(value)))))
        spec = f",.{digits}f"
    return format(value, spec)


def format_pkm_table(rows) -> str:
    """:func:`pkm_table`'s rows as a Markdown table (ms per part, the total, the floors, the dense step and the
    ratios), with the targets block of :func:`pkm_targets` below it."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    lines = [
        f"One training step of ProductKeyMemory: X = {r0['input_dim']}, Y = {r0['output_dim']}, dk = {r0['key_dim']}, "
        f"{r0['num_heads']} heads, k = {r0['k']}, {r0['tokens']:,} tokens, query norm {r0['query_norm']}; "
        f"ms, minimum of {r0['rounds']} interleaved rounds, one BLAS thread. total = the sum of the parts; "
        "floor = the bare NumPy gather values[slots] + the weighted sum (einsum) of the same rows; "
        "copy = np.array of the values and both Adam moments; dense = densify the values' RowGrad + Adam on every row.",
        "",
        "| dtype | n | N | query | search | softmax | gather | scatter | optimizer | **total** | × smallest N "
        "| floor gather | floor sum | (gather + scatter) / floor | copy | dense optimizer | dense total "
        "| dense / lazy | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        p = r["parts"] or {}
        d = r["dense_parts"] or {}
        cells = [
            r["dtype"],
            f"{r['num_keys']:,}",
            f"{r['N']:,} ({_pow2(r['N'])})",
            *(_f(p.get(part)) for part in PARTS),
            f"**{_f(r['total_ms'])}**",
            _f(r["ratio_step"], ".2f"),
            _f(r["floor_gather_ms"]),
            _f(r["floor_sum_ms"]),
            _f(r["ratio_floor"], ".2f"),
            _f(r["copy_ms"]),
            _f(d.get("optimizer")),
            _f(r["dense_total_ms"]),
            _f(r["ratio_dense"], ".1f"),
            r["note"] or "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Targets:", ""]
    for t in pkm_targets(rows):
        value = "—" if t["value"] is None else f"{t['value']:.2f}×"
        line = f"- [{t['status']}] {t['dtype']}, {t['goal']}: {value} ({t['where']})"
        if t["bound"]:
            line += f". Bound: {t['bound']}"
        lines.append(line)
    return "\n".join(lines)
