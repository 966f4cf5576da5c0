r"""E8: product-key search against brute force over N = n² slots, exactness and time per query.

Run ``python -m refmann.experiments.pkm_search`` (``--quick`` for the CI sizes, ``--help`` for the flags).

Lample et al. (2019, §3.2) find the top k of N = n² keys :math:`(c^1_i, c^2_j)` from the two halves' top k,
in :math:`O(n D + k^2)` per query instead of :math:`O(n^2 D)`. For each n this measures, with random
Gaussian queries (B tokens × H heads, dk = 256) and sub-keys drawn as
:class:`~refmann.layers.ProductKeyMemory` draws them, :math:`U(\pm 1/\sqrt{d_k/2})`:

- **exactness**: the fraction of (token, head) whose product top k
  (:func:`refmann.ops.product_key_topk`, the fused path) equals the brute-force top k over all n² sums —
  as a set, and in order. Brute force here ranks every slot by its exact sum (TwoSum), ties by slot, from the
  same sub-scores as the op (what is claimed exact is the selection; a matmul summed in another order may
  differ in the last bit), over every token;
- **time per query** (one token, one head) of the product search — the whole forward,
  :func:`refmann.ops.product_key_topk_forward` with ``fused=True``: sub-score products, the halves' top k,
  the selection — and of plain brute force: one matmul per half, the n² sums, ``np.argpartition`` and a
  sort of the k. Brute force at large N is timed on fewer tokens (``brute_tokens``: at most ~2²⁴ sums per
  head and round, at least 8 tokens); both are per query. Every round runs every size and both searches
  once, interleaved; each keeps its minimum. One BLAS thread.

``run(...) -> rows`` (one dict per n, keys :data:`ROW_KEYS`), ``format_table(rows) -> str``, ``main(argv=None)``;
``--quick`` runs the CI sizes (:data:`QUICK`), ``--out FILE.json`` writes ``{"experiment", "command",
"machine", "rows"}`` atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .. import ops
from .._checks import check_positive_int
from .._io import atomic_write_text
from .._threads import single_threaded_blas
from ..ops.product_keys import _sub_scores, _two_sum

#: The full run: n = 32 … 1,024 (N = 2^10 … 2^20), H = 4, dk = 256, k = 32.
DEFAULTS = {"sizes": (32, 64, 128, 256, 512, 1024), "tokens": 512, "heads": 4, "key_dim": 256, "k": 32, "rounds": 5}
#: CI sizes: n <= 128 and fewer tokens.
QUICK = {"sizes": (32, 64, 128), "tokens": 32, "heads": 4, "key_dim": 256, "k": 32, "rounds": 2}
#: The keys of every row.
ROW_KEYS = (
    "n",
    "N",
    "heads",
    "key_dim",
    "k",
    "dtype",
    "tokens",
    "brute_tokens",
    "rounds",
    "exact_set_fraction",
    "exact_order_fraction",
    "product_us_per_query",
    "brute_us_per_query",
    "speedup",
)
BRUTE_SUMS_PER_ROUND = 2**24  # per head: brute force is timed on at most this many sums (and >= 8 tokens)


def brute_tokens_for(n: int, tokens: int) -> int:
    """The tokens brute force is timed on at n: ``tokens`` capped at 2²⁴ / n² (but at least 8)."""
    return min(tokens, max(8, BRUTE_SUMS_PER_ROUND // (n * n)))


def make_inputs(rng, tokens, heads, key_dim, n, dtype):
    """Gaussian queries (B, H, dk) and sub-keys (H, 2, n, dk/2) from U(±1/sqrt(dk/2)), as ProductKeyMemory."""
    half = key_dim // 2
    bound = 1.0 / np.sqrt(half)
    queries = rng.standard_normal((tokens, heads, key_dim)).astype(dtype)
    keys = rng.uniform(-bound, bound, (heads, 2, n, half)).astype(dtype)
    return queries, keys


def brute_force_topk(queries, keys, k):
    """Plain brute force, the timed baseline: per head one matmul per half, the n² sums, ``np.argpartition``,
    then the k sorted by (score descending, slot ascending). Returns slots (B, H, k).

    Not tie-exact: ``np.argpartition`` picks any of the slots tied at the k-th score (exactness is measured
    against :func:`exact_brute_force_topk`)."""
    B, H, D = queries.shape
    n, half = keys.shape[2], D // 2
    N = n * n
    slots = np.empty((B, H, k), np.int64)
    chunk = max(1, 2**22 // N)  # tokens per block of sums (<= 4M sums at a time)
    for h in range(H):
        s1 = queries[:, h, :half] @ keys[h, 0].T  # (B, n)
        s2 = queries[:, h, half:] @ keys[h, 1].T  # (B, n)
        for start in range(0, B, chunk):
            stop = min(B, start + chunk)
            full = (s1[start:stop, :, None] + s2[start:stop, None, :]).reshape(stop - start, N)  # (b, n²)
            top = np.argpartition(full, N - k, axis=-1)[:, N - k :]  # (b, k): the k largest, unordered
            order = np.lexsort((top, -np.take_along_axis(full, top, axis=-1)), axis=-1)
            slots[start:stop, h] = np.take_along_axis(top, order, axis=-1)
    return slots


def exact_brute_force_topk(queries, keys, k):
    """Reference for exactness: every slot ranked by its exact sum s¹_i + s²_j (TwoSum), then slot, from the
    op's own sub-scores. Returns slots (B, H, k).

    Only slots whose rounded sum is >= the k-th largest rounded sum can be in the exact top k (rounding is
    monotone: k slots with a larger rounded sum have larger exact sums), so those are the ones sorted."""
    s1, s2 = _sub_scores(queries, keys)  # (B, H, n), (B, H, n)
    B, H, n = s1.shape
    N = n * n
    slots = np.empty((B, H, k), np.int64)
    for b in range(B):
        for h in range(H):
            full = (s1[b, h, :, None] + s2[b, h, None, :]).ravel()  # (n²,)
            kth = np.partition(full, N - k)[N - k]
            cand = np.flatnonzero(full >= kth)
            rounded, err = _two_sum(s1[b, h, cand // n], s2[b, h, cand % n])
            slots[b, h] = cand[np.lexsort((cand, -err, -rounded))[:k]]
    return slots


def _check_config(sizes, tokens, heads, key_dim, k, rounds, dtype):
    sizes = tuple(sorted({check_positive_int(n, "sizes") for n in sizes}))
    k = check_positive_int(k, "k")
    if not sizes or sizes[0] < k:
        raise ValueError(f"sizes: expected sub-key counts n >= k = {k}, got {sizes}")
    key_dim = check_positive_int(key_dim, "key_dim")
    if key_dim % 2:
        raise ValueError(f"key_dim: expected an even dk (two halves), got {key_dim}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
    tokens, heads, rounds = (
        check_positive_int(v, name) for v, name in ((tokens, "tokens"), (heads, "heads"), (rounds, "rounds"))
    )
    return sizes, tokens, heads, key_dim, k, rounds, dtype


def run(
    sizes=DEFAULTS["sizes"],
    *,
    tokens=DEFAULTS["tokens"],
    heads=DEFAULTS["heads"],
    key_dim=DEFAULTS["key_dim"],
    k=DEFAULTS["k"],
    rounds=DEFAULTS["rounds"],
    dtype="float64",
    seed=0,
    progress=False,
):
    """Exactness and time per query of product-key search against brute force, one row per n.

    Parameters
    ----------
    sizes : sequence of int
        Sub-keys per half n (N = n² slots), each >= k.
    tokens, heads, key_dim, k : int, keyword-only
        B, H, dk and k. The product search is timed and every (token, head) checked on all B tokens;
        brute force is timed on :func:`brute_tokens_for` of them.
    rounds : int, keyword-only
        Interleaved timing rounds; each measurement keeps its minimum.
    dtype : {"float32", "float64"}, keyword-only
    seed : int, keyword-only
    progress : bool, keyword-only
        A tqdm progress bar on stderr.

    Returns
    -------
    rows : list of dict
        Keys :data:`ROW_KEYS`: the configuration (``n``, ``N``, ``heads``, ``key_dim``, ``k``, ``dtype``,
        ``tokens``, ``brute_tokens``, ``rounds``), ``exact_set_fraction`` and ``exact_order_fraction`` (of the
        B·H (token, head)), ``product_us_per_query`` and ``brute_us_per_query`` (µs per token and head) and
        ``speedup`` (brute over product).
    """
    sizes, tokens, heads, key_dim, k, rounds, dtype = _check_config(sizes, tokens, heads, key_dim, k, rounds, dtype)
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    cases = [(n, *make_inputs(rng, tokens, heads, key_dim, n, dtype)) for n in sizes]
    rows = []
    bar = tqdm(
        total=len(sizes) * (rounds + 1), disable=not progress, unit="cell", desc="E8 pkm search", file=sys.stderr
    )
    try:
        with single_threaded_blas():
            for n, queries, keys in cases:  # exactness (also warms the kernel up)
                bar.set_postfix_str(f"N={n * n:,}: exactness")
                _, got = ops.product_key_topk(queries, keys, k)  # (B, H, k)
                want = exact_brute_force_topk(queries, keys, k)
                rows.append(
                    {
                        "n": n,
                        "N": n * n,
                        "heads": heads,
                        "key_dim": key_dim,
                        "k": k,
                        "dtype": dtype.name,
                        "tokens": tokens,
                        "brute_tokens": brute_tokens_for(n, tokens),
                        "rounds": rounds,
                        "exact_set_fraction": float(np.mean(np.all(np.sort(got) == np.sort(want), axis=-1))),
                        "exact_order_fraction": float(np.mean(np.all(got == want, axis=-1))),
                    }
                )
                bar.update(1)
            best = {(n, what): np.inf for n in sizes for what in ("product", "brute")}
            for r in range(rounds):
                for (n, queries, keys), row in zip(cases, rows):
                    bar.set_postfix_str(f"N={n * n:,}: round {r + 1}/{rounds}")
                    start = time.perf_counter()
                    ops.product_key_topk_forward(queries, keys, k=k)
                    best[n, "product"] = min(best[n, "product"], time.perf_counter() - start)
                    few = queries[: row["brute_tokens"]]
                    start = time.perf_counter()
                    brute_force_topk(few, keys, k)
                    best[n, "brute"] = min(best[n, "brute"], time.perf_counter() - start)
                    bar.update(1)
    finally:
        bar.close()
    for row in rows:
        row["product_us_per_query"] = 1e6 * best[row["n"], "product"] / (tokens * heads)
        row["brute_us_per_query"] = 1e6 * best[row["n"], "brute"] / (row["brute_tokens"] * heads)
        row["speedup"] = row["brute_us_per_query"] / row["product_us_per_query"]
    return rows


def format_table(rows) -> str:
    """The rows as a Markdown table, under a line with the configuration."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    lines = [
        f"E8 product-key search vs brute force: H = {r0['heads']}, dk = {r0['key_dim']}, k = {r0['k']}, "
        f"{r0['dtype']}; exactness over all {r0['tokens']} tokens × {r0['heads']} heads; µs per (token, head) "
        f"query, min of {r0['rounds']} interleaved rounds; brute force timed on the tokens listed",
        "",
        "| n | N = n² | exact (sets) | exact (order) | product µs/query | brute µs/query | brute tokens | speed-up |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['N']:,} | {r['exact_set_fraction']:.4f} | {r['exact_order_fraction']:.4f} "
            f"| {r['product_us_per_query']:.2f} | {r['brute_us_per_query']:.1f} | {r['brute_tokens']} "
            f"| {r['speedup']:.1f}× |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refmann.experiments.pkm_search", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI sizes: n <= 128, 32 tokens, 2 rounds")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="sub-keys per half n (N = n²), each >= k")
    p.add_argument("--tokens", type=int, default=None, help="B, the query tokens")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (the minimum is kept)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, metavar="FILE.json", help="also write the rows to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    config = dict(QUICK if args.quick else DEFAULTS)
    for name in ("sizes", "tokens", "rounds"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if any(n < config["k"] for n in config["sizes"]) or config["tokens"] < 1 or config["rounds"] < 1:
        p.error(f"--sizes take integers >= k = {config['k']}; --tokens and --rounds positive integers")
    from ..bench._proc import machine_info, machine_line

    machine = machine_info()
    rows = run(
        tuple(config["sizes"]),
        tokens=config["tokens"],
        heads=config["heads"],
        key_dim=config["key_dim"],
        k=config["k"],
        rounds=config["rounds"],
        dtype=args.dtype,
        seed=args.seed,
        progress=not args.quiet,
    )
    table = format_table(rows)
    print(table)
    print(f"\nMachine: {machine_line(machine)}.")
    if args.out:
        command = "python -m refmann.experiments.pkm_search " + " ".join(sys.argv[1:] if argv is None else argv)
        doc = {"experiment": "E8 pkm_search", "command": command.strip(), "machine": machine, "rows": rows}
        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
