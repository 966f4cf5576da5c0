"""Per-step forward+backward time of one model against memory size N (``refmann bench steps``).

The time points of :mod:`refmann.bench.scaling` (DESIGN decision 14's setup), measured in this process:
a T-step ``loss_and_grads`` divided by T, the median of ``repeats`` runs after a warm-up run; set-up
(allocating the memory, building the index, loading the kernels) is reported separately.
"""

from __future__ import annotations

from .._threads import single_threaded_blas
from .scaling import ScalingConfig, measure_time


def step_time(model_name, N, *, batch_size=8, steps=10, repeats=5, dtype="float64", seed=0):
    """Returns {"model", "N", "seconds_per_step", "setup_seconds"}; ``model_name`` is one of
    ``ntm``, ``dam``, ``sam-linear``, ``sam-lsh`` (``sam`` means ``sam-lsh``)."""
    model_name = "sam-lsh" if model_name == "sam" else model_name
    config = ScalingConfig(models=(model_name,), sizes=(N,), memory_sizes=(), batch_size=batch_size, steps=steps,
                           repeats=repeats, dtype=dtype, seed=seed)
    with single_threaded_blas():
        row = measure_time(model_name, N, config)
    return {"model": model_name, "N": N, "seconds_per_step": row["seconds_per_step"],
            "setup_seconds": row["setup_seconds"]}
