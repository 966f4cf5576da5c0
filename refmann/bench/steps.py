"""Per-step forward+backward time of a model against memory size N (DESIGN decision 14's setup).

One "step" is one time step, forward and backward: a T-step ``loss_and_grads`` divided by T, the
median of ``repeats`` runs after a warm-up run (which also allocates the memory and compiles the
kernels). Set-up cost (allocating the memory, building the index) is reported separately.
"""

from __future__ import annotations

import time

import numpy as np

from .._threads import single_threaded_blas
from ..models import make_model


def step_time(model_name, N, *, batch_size=8, word_size=32, num_heads=4, hidden_size=100, k=4, steps=10,
              repeats=5, input_size=8, output_size=8, dtype=np.float64, seed=0, **model_kwargs):
    """Returns {"model", "N", "seconds_per_step", "setup_seconds"}."""
    kwargs = dict(input_size=input_size, output_size=output_size, memory_size=N, word_size=word_size,
                  num_heads=num_heads, hidden_size=hidden_size, seed=seed, dtype=dtype, **model_kwargs)
    if model_name.startswith("sam"):
        kwargs.update(k=k, index=model_name.split("-")[1] if "-" in model_name else "lsh")
        model_name = "sam"
    model = make_model(model_name, **kwargs)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, batch_size, input_size))
    y = (rng.random((steps, batch_size, output_size)) > 0.5).astype(float)
    with single_threaded_blas():
        t = time.perf_counter()
        model.loss_and_grads(x[:1], y[:1])                 # allocation, index build, compilation
        setup = time.perf_counter() - t
        model.loss_and_grads(x, y)                         # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.loss_and_grads(x, y)
            times.append((time.perf_counter() - t) / steps)
    return {"model": model_name if "index" not in kwargs else f"sam-{kwargs['index']}", "N": N,
            "seconds_per_step": float(np.median(times)), "setup_seconds": setup}
