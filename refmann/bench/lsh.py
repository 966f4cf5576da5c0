"""Recall and speed of the LSH index against the exact index: ``refmann bench lsh``.

For each N: random Gaussian rows (W = 32), and two kinds of query — random vectors (recall@k of the
exact top k, the hardest case: random data has no near neighbours) and noisy copies of stored rows
(recall@1 of the source row, the associative-recall case). Timing is the mean per query of one call
answering every query, after a warm-up.
"""

from __future__ import annotations

import time

import numpy as np

from ..memory import LinearIndex, LSHIndex

GRID = ((8, 2), (16, 2), (16, 4), (32, 4))  # (num_tables, probes); num_bits and the cap at their defaults


def lsh_table(sizes=(1_000, 10_000, 100_000), *, word_size=32, k=4, queries=200, noise=0.5, seed=0, grid=GRID):
    """Rows of {N, num_tables, num_bits, probes, recall_random, recall_noisy, candidates, us_per_query,
    us_per_query_exact}."""
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
            recall = float(np.mean([len(set(approx[0, q]) & set(exact[0, q])) / k for q in range(queries)]))
            found = float(np.mean(index.query(noisy, k)[0, :, 0] == source))
            rows.append(
                {
                    "N": N,
                    "num_tables": tables,
                    "num_bits": index.num_bits,
                    "probes": probes,
                    "recall_random": recall,
                    "recall_noisy": found,
                    "candidates": candidates,
                    "us_per_query": us,
                    "us_per_query_exact": exact_us,
                }
            )
    return rows


def format_table(rows) -> str:
    lines = [
        "| N | tables | bits | probes | recall@4, random queries | recall@1, noisy copies | rows scored | "
        "µs / query (LSH) | µs / query (exact) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['N']:,} | {r['num_tables']} | {r['num_bits']} | {r['probes']} | {r['recall_random']:.2f} "
            f"| {r['recall_noisy']:.2f} | {r['candidates']:.0f} | {r['us_per_query']:.0f} | "
            f"{r['us_per_query_exact']:.0f} |"
        )
    return "\n".join(lines)
