"""Recall and speed of the LSH index against the exact index: ``refmann bench lsh``.

Two tables.

1. **The grid** (:func:`lsh_table`): for each N, random Gaussian rows (W = 32), and two kinds of query —
   random vectors (recall@k of the exact top k, the hardest case: random data has no near neighbours)
   and noisy copies of stored rows (recall@1 of the source row, the associative-recall case), for
   each (tables, probes) setting. Timing is the mean per query of one call answering every query,
   after a warm-up.
2. **Random against SAM-written memories** (:func:`bucket_table`), at the default settings: the
   bucket-size distribution, recall@k of the exact top k for noisy copies of stored rows and for
   random vectors, with the hashes centred on the mean row or not, and the cost of re-filing a
   rewritten row. A SAM-written memory is what a SAM with the LSH index leaves after ``N / 2`` steps
   of the public step API (:func:`sam_written_memory`: every row rewritten about twice, no rebuild in
   between); for it the table also gives the fraction of queries its own index, after all those
   writes, answers exactly as a fresh index with the same hyperplanes and centre (the determinism
   check: 1.00 means every answer is a function of the memory's contents).
"""

from __future__ import annotations

import time

import numpy as np

from ..memory import LinearIndex, LSHIndex

GRID = ((8, 2), (16, 2), (16, 4), (32, 4))  # (num_tables, probes); num_bits and the cap at their defaults


def lsh_table(
    sizes=(1_000, 10_000, 100_000),
    *,
    word_size=32,
    k=4,
    queries=200,
    noise=0.5,
    seed=0,
    grid=GRID,
    sam_written=None,
):
    """Rows of {N, num_tables, num_bits, probes, recall_random, recall_noisy, candidates, us_per_query,
    us_per_query_exact}: the grid on random memories.

    With ``sam_written`` (default: only with the default grid, as ``refmann bench lsh`` runs it) the
    rows of :func:`bucket_table` for the same sizes follow (``"table": "buckets"``); :func:`format_table`
    prints them as a second table.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for N in sizes:
        memory = rng.standard_normal((1, N, word_size))
        keys = rng.standard_normal((1, queries, word_size))
        source = rng.integers(0, N, queries)
        noisy = memory[:, source] + noise * rng.standard_normal((1, queries, word_size))
        exact_index = LinearIndex(memory)
        exact_index.query(keys[:, :2], k)  # warm-up (compilation)
        t = time.perf_counter()
        exact = exact_index.query(keys, k)
        exact_us = 1e6 * (time.perf_counter() - t) / queries
        for tables, probes in grid:
            index = LSHIndex(memory, num_tables=tables, probes=probes, seed=seed)
            index.rebuild()
            index.query(keys[:, :2], k)  # warm-up (compilation)
            t = time.perf_counter()
            approx = index.query(keys, k)
            us = 1e6 * (time.perf_counter() - t) / queries
            candidates = float(index.last_counts.mean())
            found = float(np.mean(index.query(noisy, k)[0, :, 0] == source))
            rows.append(
                {
                    "table": "grid",
                    "N": N,
                    "num_tables": tables,
                    "num_bits": index.num_bits,
                    "probes": probes,
                    "recall_random": _recall(approx, exact),
                    "recall_noisy": found,
                    "candidates": candidates,
                    "us_per_query": us,
                    "us_per_query_exact": exact_us,
                }
            )
    if sam_written if sam_written is not None else grid is GRID:
        rows += bucket_table(sizes, word_size=word_size, k=k, queries=queries, noise=noise, seed=seed)
    return rows


def _recall(approx, exact) -> float:
    """Mean fraction of each exact top-k row set that the approximate answer holds."""
    k = exact.shape[-1]
    a, e = approx.reshape(-1, k), exact.reshape(-1, k)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, e)]))


def bucket_sizes(index: LSHIndex) -> dict:
    """The bucket-size distribution of an LSH index, over every table and batch element: max, p50 and p99
    of the non-empty buckets' sizes, and ``row_p50``, the median size of the bucket a row is in (what a
    write or a query meets: big buckets count once per row)."""
    B, L, N = index.codes.shape
    sizes, per_row = [], []
    for b in range(B):
        for t in range(L):
            counts = np.bincount(index.codes[b, t], minlength=2**index.num_bits)
            sizes.append(counts[counts > 0])
            per_row.append(counts[index.codes[b, t]])
    sizes, per_row = np.concatenate(sizes), np.concatenate(per_row)
    return {
        "max": int(sizes.max()),
        "p50": float(np.percentile(sizes, 50)),
        "p99": float(np.percentile(sizes, 99)),
        "row_p50": float(np.percentile(per_row, 50)),
    }


def sam_written_memory(N, *, steps=None, word_size=32, seed=0):
    """A (1, N, W) memory written by an untrained SAM with the LSH index (W = ``word_size``, 4 heads,
    k = 4, LSTM 100, constant initial memory), and that SAM's index after the writes.

    ``steps`` (default N / 2) steps of the public step API on random binary inputs: 4 least-recently
    used rows rewritten per step, so every row about twice, with no rebuild between. The rows share a
    large common component and a few directions, so many share codes: buckets of hundreds of rows.
    """
    from ..models import SAM

    steps = max(1, N // 2) if steps is None else steps
    sam = SAM(
        input_size=9,
        output_size=8,
        memory_size=N,
        word_size=word_size,
        num_heads=4,
        k=4,
        index="lsh",
        hidden_size=100,
        seed=seed,
    )
    rng = np.random.default_rng([seed, 1])
    state = sam.initial_state(1)
    for _ in range(steps):
        _, state = sam.step((rng.random((1, 9)) < 0.5).astype(np.float64), state)
    return sam.memory, sam.core.memory.index


def twin_index(index: LSHIndex, **kwargs) -> LSHIndex:
    """A fresh index over ``index.memory`` with its hyperplanes and centre: what ``index`` must answer as
    (``kwargs``: the options ``index`` was built with)."""
    fresh = LSHIndex(index.memory, **kwargs)
    fresh.planes = index.planes
    fresh.rebuild(centre=index.centre)
    return fresh


def rewrite_cost_us(index: LSHIndex, *, batches=50, rows=20, seed=0) -> float:
    """Microseconds per fully rewritten row to re-file it (``update`` + ``undo``), as a SAM step's
    write does: ``rows`` distinct rows per call (a step's H·(K + 1) = 20), each given the contents of
    another random row, so it moves bucket in most tables (best of 3 passes over ``batches`` calls)."""
    memory = index.memory
    N = memory.shape[1]
    rng = np.random.default_rng(seed)
    rows = min(rows, N)
    targets = np.stack([rng.choice(N, rows, replace=False) for _ in range(batches)])[:, None]  # (batches, 1, J)
    sources = rng.integers(0, N, (batches, rows))
    index.undo(index.update(targets[0]))  # warm-up (compilation)
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        for target, source in zip(targets, sources):
            old = memory[0, target[0]]
            memory[0, target[0]] = memory[0, source]
            index.undo(index.update(target))
            memory[0, target[0]] = old
        best = min(best, time.perf_counter() - t)
    return 1e6 * best / (batches * rows)


def bucket_table(sizes=(1_000, 10_000), *, word_size=32, k=4, queries=200, noise=0.5, seed=0, index_kwargs=None):
    """Rows of {table="buckets", N, memory, centring, max, p50, p99, row_p50, recall_noisy, recall_random,
    candidates, same_as_fresh, us_per_rewrite}, at the default settings (16 tables, 4 probes, 16 rows
    per bucket; ``index_kwargs`` overrides them, e.g. ``{"max_per_bucket": 64}``): for random rows and
    SAM-written rows (the SAM seeded with ``seed``), uncentred and centred. Noisy copies add
    ``noise`` · rms per component (rms: the memory's root-mean-square entry); random keys are Gaussian
    with that rms. ``same_as_fresh`` (SAM-written, centred: the SAM's own index after its writes) is
    the fraction of those queries it answers exactly as :func:`twin_index`."""
    rng = np.random.default_rng([seed, 2])
    out = []
    for N in sizes:
        memories = {"random": (rng.standard_normal((1, N, word_size)), None)}
        memories["SAM-written"] = sam_written_memory(N, word_size=word_size, seed=seed)
        for name, (memory, own) in memories.items():
            rms = float(np.sqrt(np.mean(memory**2)))
            noisy = memory[:, rng.integers(0, N, queries)] + noise * rms * rng.standard_normal((1, queries, word_size))
            keys = rms * rng.standard_normal((1, queries, word_size))
            exact_noisy, exact_random = LinearIndex(memory).query(noisy, k), LinearIndex(memory).query(keys, k)
            for centring in (False, True):
                index = LSHIndex(np.array(memory), **{**(index_kwargs or {}), "centring": centring, "seed": seed})
                index.rebuild()
                got = index.query(noisy, k)
                candidates = float(index.last_counts.mean())
                same = None
                if own is not None and centring:
                    same = float(np.mean(np.all(own.query(noisy, k) == twin_index(own, seed=seed).query(noisy, k), -1)))
                out.append(
                    {
                        "table": "buckets",
                        "N": N,
                        "memory": name,
                        "centring": centring,
                        **bucket_sizes(index),
                        "recall_noisy": _recall(got, exact_noisy),
                        "recall_random": _recall(index.query(keys, k), exact_random),
                        "candidates": candidates,
                        "same_as_fresh": same,
                        "us_per_rewrite": rewrite_cost_us(index, seed=seed),
                    }
                )
    return out


def format_table(rows) -> str:
    grid = [r for r in rows if r.get("table", "grid") == "grid"]
    lines = [
        "| N | tables | bits | probes | recall@4, random queries | recall@1, noisy copies | rows scored | "
        "µs / query (LSH) | µs / query (exact) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in grid:
        lines.append(
            f"| {r['N']:,} | {r['num_tables']} | {r['num_bits']} | {r['probes']} | {r['recall_random']:.2f} "
            f"| {r['recall_noisy']:.2f} | {r['candidates']:.0f} | {r['us_per_query']:.0f} | "
            f"{r['us_per_query_exact']:.0f} |"
        )
    buckets = [r for r in rows if r.get("table") == "buckets"]
    if buckets:
        lines += [
            "",
            "Default settings (16 tables, 4 probes, at most 16 rows per bucket); bucket sizes over every table: "
            "max, p50, p99 of the non-empty buckets, and the median size of a row's bucket.",
            "",
            "| N | memory | centred | bucket max | p50 | p99 | a row's bucket, p50 | recall@4, noisy copies | "
            "recall@4, random queries | rows scored | same answers as a fresh index | µs / rewritten row |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in buckets:
            same = "—" if r["same_as_fresh"] is None else f"{r['same_as_fresh']:.2f}"
            lines.append(
                f"| {r['N']:,} | {r['memory']} | {'yes' if r['centring'] else 'no'} | {r['max']:,} | {r['p50']:.0f} "
                f"| {r['p99']:.0f} | {r['row_p50']:.0f} | {r['recall_noisy']:.2f} | {r['recall_random']:.2f} "
                f"| {r['candidates']:.0f} | {same} | {r['us_per_rewrite']:.1f} |"
            )
    return "\n".join(lines)


def index_table(
    sizes=(1_000, 10_000, 100_000), *, word_size=32, k=4, queries=200, noise=0.5, rounds=3, wide_checks=1024, seed=0
):
    """Rows of {table="indexes", N, data, index, recall, recall_source, candidates, us_per_query,
    speedup, us_build}: the exact scan, the LSH index and the k-d forest at their defaults, and the
    k-d forest with ``wide_checks`` checks (about the rows the LSH index scores), side by side on the
    same memory and queries, in one run.

    ``data`` is "random" (Gaussian rows and Gaussian queries: recall@k of the exact top k) or "noisy
    copy" (queries are stored rows plus ``noise`` per component: recall@k of the exact top k, and
    ``recall_source``, the fraction of queries whose source row comes first). Timing: ``rounds``
    interleaved rounds (each round times every index once, in turn, answering all queries in one call),
    the minimum kept; ``speedup`` is the exact scan's time over the index's, from the same run.
    """
    from ..memory import KDForestIndex

    rng = np.random.default_rng([seed, 3])
    out = []
    for N in sizes:
        memory = rng.standard_normal((1, N, word_size))
        source = rng.integers(0, N, queries)
        datasets = {
            "random": (rng.standard_normal((1, queries, word_size)), None),
            "noisy copy": (memory[:, source] + noise * rng.standard_normal((1, queries, word_size)), source),
        }
        indexes, build_us = {}, {}
        variants = (
            ("linear", LinearIndex, {}),
            ("lsh", LSHIndex, {"seed": seed}),
            ("kdforest", KDForestIndex, {"seed": seed}),
            (f"kdforest, checks {wide_checks}", KDForestIndex, {"seed": seed, "checks": wide_checks}),
        )
        for name, cls, options in variants:
            index = cls(memory, **options)
            index.rebuild()  # compile
            t = time.perf_counter()
            index.rebuild()
            build_us[name] = 1e6 * (time.perf_counter() - t)
            index.query(memory[:, :2], k)  # warm-up (compilation)
            indexes[name] = index
        for data, (keys, src) in datasets.items():
            best = dict.fromkeys(indexes, np.inf)
            answers = {}
            for _ in range(rounds):
                for name, index in indexes.items():
                    t = time.perf_counter()
                    answers[name] = index.query(keys, k)
                    best[name] = min(best[name], time.perf_counter() - t)
            for name, index in indexes.items():
                index.query(keys, k)
                counts = getattr(index, "last_counts", None)
                out.append(
                    {
                        "table": "indexes",
                        "N": N,
                        "data": data,
                        "index": name,
                        "recall": _recall(answers[name], answers["linear"]),
                        "recall_source": None if src is None else float(np.mean(answers[name][0, :, 0] == src)),
                        "candidates": float(N if counts is None else counts.mean()),
                        "us_per_query": 1e6 * best[name] / queries,
                        "speedup": best["linear"] / best[name],
                        "us_build": build_us[name],
                    }
                )
    return out


def format_index_table(rows) -> str:
    """The rows of :func:`index_table` as a Markdown table."""
    lines = [
        "| N | data | index | recall@4 of the exact top 4 | recall@1, source row | rows scored | µs / query "
        "| speed-up over exact | ms / rebuild |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        src = "—" if r["recall_source"] is None else f"{r['recall_source']:.2f}"
        lines.append(
            f"| {r['N']:,} | {r['data']} | {r['index']} | {r['recall']:.2f} | {src} | {r['candidates']:,.0f} "
            f"| {r['us_per_query']:.1f} | {r['speedup']:.1f}× | {r['us_build'] / 1e3:.1f} |"
        )
    return "\n".join(lines)
