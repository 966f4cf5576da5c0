"""SAM training at very large N, with the bytes each part of its state holds (``refmann bench footprint``).

Builds a SAM (W = 32, 4 heads, K = 4, LSTM 100, LSH index by default) with ``memory_size`` slots, trains
it with Adam on the copy task for a few updates, and reports:

- set-up time (allocating the memory, the usage ring and the index, and building the index);
- the wall time of every update (forward + backward over one batch of copy sequences + Adam);
- the bytes of each part: the memory, the LSH index, the usage ring, the row-gradient table
  (the memory's gradient, held for touched rows only), the parameters (and as many again for each of
  the gradient and Adam's two moments), and the process's peak RSS.

Everything that scales with N is allocated once at set-up; a training step adds O(T·H·K·W) (the step
caches and the row-gradient table), whatever N is.
"""

from __future__ import annotations

import time

import numpy as np

from .._threads import single_threaded_blas
from ._proc import MIB, proc_status


def footprint_run(
    memory_size=10_000_000, *, batch_size=1, dtype="float32", updates=10, length=10, index="lsh", seed=0, progress=None
) -> dict:
    """Train SAM for ``updates`` Adam steps on copy (sequences of ``length`` vectors) and measure it.

    Returns a dict with "setup_seconds", "update_seconds" (list), "losses" (list), "parts" (name -> bytes),
    "peak_rss_bytes" and the configuration.
    """
    from .._checks import check_positive_int
    from ..models import SAM
    from ..tasks import make_task
    from ..train.optim import make_optimizer

    for name, value in (
        ("memory_size", memory_size),
        ("batch_size", batch_size),
        ("updates", updates),
        ("length", length),
    ):
        check_positive_int(value, name)
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    task = make_task("copy", min_length=length, max_length=length)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    model = SAM(
        input_size=task.input_size,
        output_size=task.output_size,
        memory_size=memory_size,
        word_size=32,
        num_heads=4,
        k=4,
        hidden_size=100,
        index=index,
        seed=seed,
        dtype=np.dtype(dtype),
    )
    step = make_optimizer("adam", lr=1e-3)
    state = None
    times, losses = [], []
    with single_threaded_blas():
        batch = task.sample(batch_size, rng)
        model.loss_and_grads(batch.inputs[:1], batch.targets[:1], batch.mask[:1])  # allocation and index build
        setup = time.perf_counter() - t0
        for u in range(updates):
            batch = task.sample(batch_size, rng)
            t = time.perf_counter()
            loss, grads = model.loss_and_grads(batch.inputs, batch.targets, batch.mask)
            model.params, state = step(model.params, grads, state)
            times.append(time.perf_counter() - t)
            losses.append(loss)
            if progress is not None:
                progress(u + 1, updates, loss, times[-1])
    parts = dict(model.core.footprint())
    param_bytes = sum(v.nbytes for v in model.params.values())
    parts["parameters (and again: gradients; twice: Adam moments)"] = param_bytes
    return {
        "memory_size": memory_size,
        "batch_size": batch_size,
        "dtype": str(np.dtype(dtype)),
        "index": index,
        "length": length,
        "steps_per_sequence": 2 * length + 1,
        "setup_seconds": setup,
        "update_seconds": times,
        "losses": losses,
        "parts": parts,
        "peak_rss_bytes": proc_status().get("VmHWM"),
    }


def _size(nbytes) -> str:
    return f"{nbytes / MIB:,.1f} MiB" if nbytes >= MIB else f"{nbytes / 1024:,.1f} KiB"


def format_footprint(result: dict) -> str:
    """The result of :func:`footprint_run` as Markdown."""
    N, B = result["memory_size"], result["batch_size"]
    T = result["steps_per_sequence"]
    times = np.array(result["update_seconds"])
    lines = [
        f"SAM, N = {N:,}, batch {B}, W = 32, 4 heads, K = 4, LSTM 100, {result['index']} index, "
        f"{result['dtype']}; copy sequences of {result['length']} vectors ({T} steps), Adam",
        "",
        f"set-up (memory, ring, index build): {result['setup_seconds']:.1f} s",
        f"update (forward + backward + Adam), median of {len(times)}: {1e3 * np.median(times):.1f} ms "
        f"= {1e3 * np.median(times) / T:.2f} ms per time step; loss {result['losses'][0]:.2f} -> "
        f"{result['losses'][-1]:.2f}",
        "",
        "| part | size | bytes per slot |",
        "| --- | ---: | ---: |",
    ]
    total = 0
    for name, nbytes in result["parts"].items():
        total += nbytes
        lines.append(f"| {name} | {_size(nbytes)} | {nbytes / N:.3g} |")
    lines.append(f"| **sum of the parts** | **{_size(total)}** | {total / N:.3g} |")
    if result["peak_rss_bytes"] is not None:
        lines.append(f"| process peak RSS (Python, NumPy, Numba included) | {_size(result['peak_rss_bytes'])} | |")
    return "\n".join(lines)
