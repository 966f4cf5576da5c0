"""Per-step forward+backward time of one model against memory size N (``refmann bench steps``).

The time points of :mod:`refmann.bench.scaling` (DESIGN decision 15's setup), measured in this process:
a T-step ``loss_and_grads`` divided by T, the median of ``repeats`` runs after a warm-up run; set-up
(allocating the memory, building the index, loading the kernels) is reported separately.
"""

from __future__ import annotations

from .._threads import single_threaded_blas
from .scaling import ScalingConfig, _model_spec, measure_time


def _one_point(model_name, N, batch_size, steps, repeats, dtype, seed) -> ScalingConfig:
    """The benchmark configuration of one model at one N (a Figure 1 or a Figure 7 line), checked."""
    return ScalingConfig(
        models=(model_name,),
        figure=_model_spec(model_name).figure,
        sizes=(N,),
        memory_sizes=(),
        batch_size=batch_size,
        steps=steps,
        repeats=repeats,
        dtype=dtype,
        seed=seed,
    )


def step_time(model_name, N, *, batch_size=8, steps=10, repeats=5, dtype="float64", seed=0):
    """Returns {"model", "N", "seconds_per_step", "setup_seconds"}; ``model_name`` is one of
    ``ntm``, ``dam``, ``sam-linear``, ``sam-lsh``, ``sam-kdforest`` (``sam`` means ``sam-lsh``)."""
    model_name = "sam-lsh" if model_name == "sam" else model_name
    config = _one_point(model_name, N, batch_size, steps, repeats, dtype, seed)
    with single_threaded_blas():
        row = measure_time(model_name, N, config)
    return {
        "model": model_name,
        "N": N,
        "seconds_per_step": row["seconds_per_step"],
        "setup_seconds": row["setup_seconds"],
    }


def controller_ratio(
    model_name="sam-lsh", N=1_000_000, *, batch_size=8, steps=10, rounds=15, calls=10, dtype="float64", seed=0
):
    """A memory model's step against LSTM-only steps of its controller, measured side by side in one run.

    Two baselines: an LSTM whose input is the controller's, ``X + H·W`` (the same LSTM the memory model
    runs, plus its output layer), and an LSTM on the task input X alone. The three models take turns,
    ``rounds`` times, each running ``calls`` T-step ``loss_and_grads`` in a row per turn; each keeps
    its fastest call (this VM's absolute times swing 2–5× between runs; ratios of minima measured
    together do not). Several calls a turn measure each model warm, as it runs in training (one
    step after another); with ``calls=1`` every call follows the other two models' calls, which
    leaves the larger working set (a memory model's index) colder.

    Returns {"model", "N", "model_ms", "lstm_same_input_ms", "lstm_task_input_ms", "ratio_same_input",
    "ratio_task_input"} (times per step, forward + backward).
    """
    import time

    import numpy as np

    from .._checks import check_positive_int
    from ..models import LSTM
    from .scaling import _data, build_model

    model_name = "sam-lsh" if model_name == "sam" else model_name
    config = _one_point(model_name, N, batch_size, steps, 1, dtype, seed)
    check_positive_int(rounds, "rounds")
    check_positive_int(calls, "calls")
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
                for _ in range(calls):
                    t = time.perf_counter()
                    model.loss_and_grads(inputs, y)
                    best[name] = min(best.get(name, np.inf), (time.perf_counter() - t) / T)
    out = {"model": model_name, "N": N}
    out.update({f"{name}_ms": 1e3 * value for name, value in best.items()})
    out["ratio_same_input"] = best["model"] / best["lstm_same_input"]
    out["ratio_task_input"] = best["model"] / best["lstm_task_input"]
    return out


#: (module, class, methods) timed by :func:`step_breakdown`, outermost first; a class a model lacks is skipped.
BREAKDOWN_PARTS = (
    ("refmann.cores.sam", "SAMCore", ("step_forward", "step_backward")),
    ("refmann.cores.sdnc", "SDNCCore", ("step_forward", "step_backward")),
    ("refmann.cores.dam", "DAMCore", ("step_forward", "step_backward")),
    ("refmann.cores.ntm", "NTMCore", ("step_forward", "step_backward")),
    ("refmann.cores.dnc", "DNCCore", ("step_forward", "step_backward")),
    ("refmann.cores.controller", "Controller", ("forward", "backward")),
    ("refmann.cores.controller", "Interface", ("forward", "backward")),
    ("refmann.cores.controller", "Output", ("forward", "backward")),
    (
        "refmann.memory.sparse_memory",
        "SparseMemory",
        ("write", "query", "revert", "lra_write", "read_touch", "read_write_backward"),
    ),
    ("refmann.memory.index", "LSHIndex", ("update", "query", "undo")),
    ("refmann.memory.index", "LinearIndex", ("update", "query", "undo")),
    ("refmann.memory.kdforest", "KDForestIndex", ("update", "query", "undo")),
    ("refmann.memory.links", "SparseLinks", ("update", "follow", "follow_backward", "update_backward", "revert")),
    ("refmann.grads", "DeferredGrads", ("flush",)),
)


def step_breakdown(model_name="sam-lsh", N=1_000_000, *, batch_size=8, steps=10, calls=100, rounds=3, seed=0):
    """Where one forward + backward step's time goes: the inclusive time of each part, per step.

    Every method of :data:`BREAKDOWN_PARTS` is wrapped by a timer for the measurement (and restored
    after it, whatever happens); ``rounds`` rounds of ``calls`` T-step ``loss_and_grads`` run after a
    warm-up, and the fastest round's times are kept. The parts nest (a core's ``step_forward`` holds
    the memory's ``write``, which holds the index's ``update``), so they do not add up to the step; the
    timers cost about a microsecond a call, so the instrumented step is a little slower than the
    uninstrumented one that :func:`controller_ratio` measures.

    Returns {"model", "N", "ms_per_step", "parts": {"Class.method": ms per step}} (parts by time, longest
    first; each method counted only if it ran).
    """
    import functools
    import importlib
    import time

    from .._checks import check_positive_int
    from .scaling import _data, build_model

    model_name = "sam-lsh" if model_name == "sam" else model_name
    config = _one_point(model_name, N, batch_size, steps, 1, "float64", seed)
    check_positive_int(calls, "calls")
    check_positive_int(rounds, "rounds")
    T, B = config.steps, config.batch_size
    x, y = _data(config, T, B, seed)
    totals: dict[str, float] = {}
    originals = []

    def timed(f, label):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - t

        return wrapper

    try:
        for module, cls_name, methods in BREAKDOWN_PARTS:
            cls = getattr(importlib.import_module(module), cls_name, None)
            for method in methods if cls is not None else ():
                f = cls.__dict__.get(method)
                if f is not None:
                    originals.append((cls, method, f))
                    setattr(cls, method, timed(f, f"{cls_name}.{method}"))
        with single_threaded_blas():
            model = build_model(model_name, N, config)
            model.loss_and_grads(x, y)  # set-up, compilation, warm-up
            best = None
            for _ in range(rounds):
                totals.clear()
                t0 = time.perf_counter()
                for _ in range(calls):
                    model.loss_and_grads(x, y)
                total = time.perf_counter() - t0
                if best is None or total < best[0]:
                    best = (total, dict(totals))
    finally:
        for cls, method, f in originals:
            setattr(cls, method, f)
    per_step = 1e3 / (calls * T)
    parts = {k: v * per_step for k, v in sorted(best[1].items(), key=lambda kv: -kv[1])}
    return {"model": model_name, "N": N, "ms_per_step": best[0] * per_step, "parts": parts}


#: the NumPy functions :func:`step_calls` counts as array constructors and copies
CONSTRUCTORS = ("numpy.empty", "numpy.zeros", "numpy.full", "numpy.array", "numpy.ascontiguousarray", "copy")


def step_calls(model_name="sam-lsh", N=100_000, *, batch_size=8, steps=10, calls=10, seed=0):
    """How many calls one forward + backward step makes, counted by :mod:`cProfile` over ``calls``
    T-step ``loss_and_grads`` after a warm-up.

    Counts per step: every Python-level call (methods, ops, NumPy functions and methods), the calls
    from Python into a Numba kernel (a kernel's own calls inside it are compiled and not seen), the
    NumPy calls implemented in C (functions, ufuncs, array methods) and, of them, the array
    constructors and copies (:data:`CONSTRUCTORS`). Returns {"model", "N", "python_calls",
    "numba_calls", "numpy_calls", "constructors"}.
    """
    import cProfile
    import pstats

    from .._checks import check_positive_int
    from .scaling import _data, build_model

    model_name = "sam-lsh" if model_name == "sam" else model_name
    config = _one_point(model_name, N, batch_size, steps, 1, "float64", seed)
    check_positive_int(calls, "calls")
    T, B = config.steps, config.batch_size
    x, y = _data(config, T, B, seed)
    with single_threaded_blas():
        model = build_model(model_name, N, config)
        model.loss_and_grads(x, y)  # set-up, compilation, warm-up
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(calls):
            model.loss_and_grads(x, y)
        profile.disable()
    counts = dict.fromkeys(("python_calls", "numba_calls", "numpy_calls", "constructors"), 0)
    for (file, _line, name), (_cc, ncalls, *_rest) in pstats.Stats(profile).stats.items():
        counts["python_calls"] += ncalls
        if name.endswith("_loops") and "kernels" in file:  # a kernel's Python twin is what cProfile names
            counts["numba_calls"] += ncalls
        if file == "~" and any(tag in name for tag in ("numpy", "ufunc", "ndarray")):
            counts["numpy_calls"] += ncalls
            if any(tag in name for tag in CONSTRUCTORS):
                counts["constructors"] += ncalls
    per_step = calls * T
    return {"model": model_name, "N": N, **{k: v / per_step for k, v in counts.items()}}
