"""Per-step forward+backward time of one model against memory size N (``refmann bench steps``).

The time points of :mod:`refmann.bench.scaling` (DESIGN decision 15's setup), measured in this process:
a T-step ``loss_and_grads`` divided by T, the median of ``repeats`` runs after a warm-up run; set-up
(allocating the memory, building the index, loading the kernels) is reported separately.
"""

from __future__ import annotations

from .._threads import single_threaded_blas
from .scaling import ScalingConfig, _model_spec, measure_time


def step_time(model_name, N, *, batch_size=8, steps=10, repeats=5, dtype="float64", seed=0):
    """Returns {"model", "N", "seconds_per_step", "setup_seconds"}; ``model_name`` is one of
    ``ntm``, ``dam``, ``sam-linear``, ``sam-lsh``, ``sam-kdforest`` (``sam`` means ``sam-lsh``)."""
    model_name = "sam-lsh" if model_name == "sam" else model_name
    config = ScalingConfig(
        models=(model_name,),
        figure=_model_spec(model_name).figure,  # a Figure 1 or a Figure 7 line
        sizes=(N,),
        memory_sizes=(),
        batch_size=batch_size,
        steps=steps,
        repeats=repeats,
        dtype=dtype,
        seed=seed,
    )
    with single_threaded_blas():
        row = measure_time(model_name, N, config)
    return {
        "model": model_name,
        "N": N,
        "seconds_per_step": row["seconds_per_step"],
        "setup_seconds": row["setup_seconds"],
    }


def controller_ratio(model_name="sam-lsh", N=1_000_000, *, batch_size=8, steps=10, rounds=15, dtype="float64", seed=0):
    """A memory model's step against LSTM-only steps of its controller, measured side by side in one run.

    Two baselines: an LSTM whose input is the controller's, ``X + H·W`` (the same LSTM the memory model
    runs, plus its output layer), and an LSTM on the task input X alone. The three models run one
    T-step ``loss_and_grads`` each in turn, ``rounds`` times; each keeps its minimum (this VM's
    absolute times swing 2–5× between runs; ratios of minima measured together do not).

    Returns {"model", "N", "model_ms", "lstm_same_input_ms", "lstm_task_input_ms", "ratio_same_input",
    "ratio_task_input"} (times per step, forward + backward).
    """
    import time

    import numpy as np

    from ..models import LSTM
    from .scaling import _data, build_model

    model_name = "sam-lsh" if model_name == "sam" else model_name
    config = ScalingConfig(
        models=(model_name,),
        figure=_model_spec(model_name).figure,  # a Figure 1 or a Figure 7 line
        sizes=(N,),
        memory_sizes=(),
        batch_size=batch_size,
        steps=steps,
        repeats=1,
        dtype=dtype,
        seed=seed,
    )
    T, B = config.steps, config.batch_size
    x, y = _data(config, T, B, seed)
    reads = config.num_heads * config.word_size
    xl = np.random.default_rng(seed).standard_normal((T, B, config.input_size + reads)).astype(dtype)
    with single_threaded_blas():
        runs = {
            "model": (build_model(model_name, N, config), x),
            "lstm_same_input": (
                LSTM(
                    input_size=config.input_size + reads,
                    output_size=config.output_size,
                    hidden_size=config.hidden_size,
                    seed=seed,
                    dtype=dtype,
                ),
                xl,
            ),
            "lstm_task_input": (
                LSTM(
                    input_size=config.input_size,
                    output_size=config.output_size,
                    hidden_size=config.hidden_size,
                    seed=seed,
                    dtype=dtype,
                ),
                x,
            ),
        }
        best = {}
        for model, inputs in runs.values():
            model.loss_and_grads(inputs, y)  # set-up, compilation, warm-up
        for _ in range(rounds):
            for name, (model, inputs) in runs.items():
                t = time.perf_counter()
                model.loss_and_grads(inputs, y)
                best[name] = min(best.get(name, np.inf), (time.perf_counter() - t) / T)
    out = {"model": model_name, "N": N}
    out.update({f"{name}_ms": 1e3 * value for name, value in best.items()})
    out["ratio_same_input"] = best["model"] / best["lstm_same_input"]
    out["ratio_task_input"] = best["model"] / best["lstm_task_input"]
    return out
