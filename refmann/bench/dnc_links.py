"""The DNC's two ways of holding its links for backward, side by side: ``python -m refmann.bench.dnc_links``.

``links="cache"`` keeps every step's (B, Wh, N, N) link matrix; ``links="recompute"`` keeps one every
``link_checkpoint`` steps and recomputes a segment at a time during backward. For each N this prints
the bytes a T-step ``loss_and_grads`` holds in its caches (measured: the distinct buffers reachable
from the caches and the tape, after the forward) and the time per step, forward + backward, as the
minimum over interleaved rounds (cache, recompute, cache, ...), and the ratios. The gradients are
the same bit for bit (tests/test_models_dnc.py).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .. import _checks
from .._threads import single_threaded_blas
from ..models import DNC
from ..models.recurrent import held_bytes


def _model(N, links, every, *, W, R, C, seed):
    return DNC(
        input_size=8,
        output_size=8,
        memory_size=N,
        word_size=W,
        num_heads=R,
        hidden_size=C,
        links=links,
        link_checkpoint=every,
        seed=seed,
    )


def held_by_caches(model, x) -> int:
    """Bytes the caches of a forward pass keep for backward (with the recompute tape's checkpoints)."""
    with _checks.unchecked():
        _, _, _, _, caches = model._run(model._check_inputs(x), keep_caches=True)
    tape = model.core._tape
    return held_bytes(caches, list(tape.checkpoints.values()) if tape is not None else None)


def compare(sizes=(64, 256, 1024), *, T=32, B=8, W=32, R=4, C=100, every=None, rounds=3, seed=0):
    """Rows {N, bytes_cache, bytes_recompute, seconds_cache, seconds_recompute} (seconds per step)."""
    every = every or max(1, int(round(np.sqrt(T))))
    rng = np.random.default_rng(seed)
    rows = []
    for N in sizes:
        x = rng.standard_normal((T, B, 8))
        y = (rng.random((T, B, 8)) > 0.5).astype(float)
        models = {mode: _model(N, mode, every, W=W, R=R, C=C, seed=seed) for mode in ("cache", "recompute")}
        row = {"N": N, "T": T, "every": every}
        for mode, model in models.items():
            row[f"bytes_{mode}"] = held_by_caches(model, x)
        best = {mode: np.inf for mode in models}
        with single_threaded_blas():
            for _ in range(rounds):
                for mode, model in models.items():
                    start = time.perf_counter()
                    model.loss_and_grads(x, y)
                    best[mode] = min(best[mode], (time.perf_counter() - start) / T)
        for mode in models:
            row[f"seconds_{mode}"] = best[mode]
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refmann.bench.dnc_links", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024], help="memory sizes N")
    p.add_argument("--steps", type=int, default=32, help="T, the unroll length")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (the minimum is kept)")
    args = p.parse_args(argv)
    if any(n < 1 for n in args.sizes) or args.steps < 1 or args.batch_size < 1 or args.rounds < 1:
        p.error("--sizes, --steps, --batch-size and --rounds take positive integers")
    rows = compare(tuple(args.sizes), T=args.steps, B=args.batch_size, rounds=args.rounds)
    print(
        f"DNC links for backward: T = {args.steps}, batch {args.batch_size}, W 32, 4 read heads, LSTM 100, "
        f"float64; checkpoint every {rows[0]['every']} steps; min of {args.rounds} interleaved rounds"
    )
    print("| N | caches, cache | caches, recompute | memory ratio | ms/step, cache | ms/step, recompute | time ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['N']:,} | {_checks.format_bytes(r['bytes_cache'], exact=False)} "
            f"| {_checks.format_bytes(r['bytes_recompute'], exact=False)} "
            f"| {r['bytes_cache'] / r['bytes_recompute']:.1f}× "
            f"| {1e3 * r['seconds_cache']:.2f} | {1e3 * r['seconds_recompute']:.2f} "
            f"| {r['seconds_recompute'] / r['seconds_cache']:.2f}× |"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
