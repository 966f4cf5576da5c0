r"""Figures 1 and 7 of Rae et al. 2016: time and memory against the memory size N.

``refmann bench scaling`` (or :func:`run_scaling`) measures, in one run on one machine, either figure
(``ScalingConfig.figure``):

**Figure 1** (DESIGN decision 15): NTM, DAM, SAM with the exact linear index and SAM with LSH.

- **time** (Figure 1a): one time step, forward + backward, at batch 8 (W = 32, 4 heads, K = 4,
  LSTM 100, 8 inputs and outputs) — a T-step ``loss_and_grads`` divided by T, the median of
  ``repeats`` runs after a warm-up run. Set-up (building the model, allocating the memory, building
  the index, loading or compiling the Numba kernels: construction plus a one-step call) is measured
  and reported separately.
- **memory** (Figure 1b): a 100-step ``loss_and_grads`` at batch 1, *excluding the memory's own
  initialisation*: the model is built and runs one tiny call first (so the memory, the index and
  every buffer exist), then the 100-step call is measured twice — by RSS (the kernel's peak-RSS
  counter is reset through ``/proc/self/clear_refs``; the peak during the call minus the RSS just
  before it) and by ``tracemalloc`` (the peak of bytes traced during a second call; NumPy's
  allocations are traced). RSS is what the paper plots ("physical memory"); tracemalloc is
  deterministic and counts bytes exactly, whereas RSS counts pages and may reuse pages freed earlier.

**Figure 7** (Supplementary D.2): the DNC (dense, N × N links) against the Sparse DNC with the exact
linear index (the paper's SDNC used a linear KNN) and with LSH.

- **time**: as Figure 1a (batch 8, W = 32, 4 heads, LSTM 100, K = 4, and K_L = 8 link entries per row).
- **memory**: the **total over a 10-step** ``loss_and_grads`` at batch 1 **including the start
  state** (the paper: "since the start states differ"; see :func:`measure_total_memory`). Before the
  reading, a tiny model of the same line runs one call and is freed, so the imported modules and the
  Numba kernels' machine code are loaded and not counted. Counted: everything from just before the
  model is built to the end of the call — its parameters, the memory M, the index, the usage ring,
  the link tables (the SDNC's two N × K_L tables; the DNC's N × N links and precedence), every
  step's caches, the gradients that the call returns. Measured twice, each on a freshly built model:
  the RSS peak minus the RSS just before building (lazily mapped zero pages that are never touched
  are not resident, so RSS can be below the bytes allocated), and the ``tracemalloc`` peak over the
  same span (every byte NumPy allocates, touched or not).

Every (model, N) point runs in a fresh process (``python -m refmann.bench.scaling --point ...``),
one at a time, so memory is returned to the system between points and points do not interfere.

Budgets. Before each point its cost is predicted from the model's last measured points; a point
predicted to pass ``time_budget`` or ``memory_budget`` is not run but recorded with the reason and
extrapolated values, which the plots draw dotted; larger N are then skipped for the same reason.

This module holds the configuration, the measurements and the run; the rest lives beside it (and its
public names stay importable from here):

- :mod:`refmann.bench._proc`: the machine, /proc RSS readings, the peak-RSS reset, tracemalloc;
- :mod:`refmann.bench.budget`: predicting a point's cost, extrapolating, the rows of skipped points;
- :mod:`refmann.bench.report`: points.csv, points.json, table.md and the two plots.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._checks import check_int_value, check_positive_finite
from ._proc import GIB, MIB, PeakRSS, TracedPeak, machine_info, mib, proc_status, release_memory, reset_peak_rss
from .budget import Prediction, extrapolate, predict_point, prior_peak_gib, skipped_row
from .report import CSV_FIELDS, format_table, plot_memory, plot_time, write_outputs

__all__ = [
    "CSV_FIELDS",
    "COLORS",
    "DEFAULT_MEMORY_SIZES",
    "DEFAULT_SIZES",
    "FIGURE7_MODELS",
    "FIGURE7_QUICK_SIZES",
    "FIGURE7_SIZES",
    "FIGURES",
    "GIB",
    "LABELS",
    "MEMORY_EXPONENT",
    "MIB",
    "MODELS",
    "QUICK_SIZES",
    "TIME_EXPONENT",
    "ModelSpec",
    "Prediction",
    "ScalingConfig",
    "ScalingResult",
    "build_model",
    "default_out",
    "extrapolate",
    "format_table",
    "machine_info",
    "measure_memory",
    "measure_time",
    "measure_total_memory",
    "plot_memory",
    "plot_time",
    "predict_point",
    "prior_peak_gib",
    "quick_config",
    "run_point",
    "run_scaling",
    "skipped_row",
    "spawn_point",
    "write_outputs",
]

log = logging.getLogger(__name__)


# == The models ====================================================================================
# Read from the model registry (refmann.models.MODELS): each model lists its Figure 1 and Figure 7 lines
# (refmann.models.BenchVariant); the other modules read only MODELS, FIGURE_MODELS, RATIO_REFERENCE,
# FIGURE7_REFERENCES and _model_spec(name).


class ModelSpec(NamedTuple):
    label: str  # in the tables, the plots and the progress lines
    color: str  # of the model's lines in the plots
    constructor: str  # the name refmann.models.make_model takes
    options: dict  # config fields fixed for this line (SAM's index; built with k = config.k)
    time_exponent: float  # of N in the per-step time, to extrapolate from measured points (budget.py)
    memory_exponent: float  # of N in the memory of the unroll (excluding initialisation), likewise
    is_dense: bool  # addresses every slot and caches a (B, N, W) memory per step
    figure: int = 1  # 1 (NTM, DAM, SAM) or 7 (DNC, SDNC)

    @property
    def dense(self) -> bool:
        """Addresses every slot and caches a (B, N, W) memory per step (compared with SAM LSH in the table)."""
        return self.is_dense


def _registry_specs() -> dict[str, ModelSpec]:
    """Every figure's lines by name."""
    from ..models import bench_variants

    return {
        name: ModelSpec(
            v.label, v.color, spec.name, dict(v.options), v.time_exponent, v.memory_exponent, v.dense, v.figure
        )
        for name, (spec, v) in bench_variants(figure=None).items()
    }


_MODEL_SPECS = _registry_specs()
#: The model the table's ratios are taken against.
RATIO_REFERENCE = "sam-lsh"


def _model_spec(name: str) -> ModelSpec:
    """The label, colour, constructor and cost exponents of the benchmark's model ``name``."""
    try:
        return _MODEL_SPECS[name]
    except KeyError:
        raise ValueError(f"model: expected one of {list(_MODEL_SPECS)}, got {name!r}") from None


#: The figures this harness draws.
FIGURES = (1, 7)
#: Each figure's lines, in registration order.
FIGURE_MODELS = {f: tuple(m for m, spec in _MODEL_SPECS.items() if spec.figure == f) for f in FIGURES}
#: Figure 1's lines (NTM, DAM, SAM linear, SAM LSH, SAM k-d forest): the default models, and the keys of the
#: dicts below.
MODELS = FIGURE_MODELS[1]
#: Figure 7's lines (DNC, SDNC linear, SDNC LSH).
FIGURE7_MODELS = FIGURE_MODELS[7]
#: Figure 7's table gives the DNC's time and memory over each of these.
FIGURE7_REFERENCES = ("sdnc-linear", "sdnc-lsh")
LABELS = {m: _model_spec(m).label for m in MODELS}
COLORS = {m: _model_spec(m).color for m in MODELS}
#: Exponent of N in the per-step time used to extrapolate from the last measured points (see extrapolate).
TIME_EXPONENT = {m: _model_spec(m).time_exponent for m in MODELS}
#: Exponent of N in the 100-step memory (excluding initialisation) used to extrapolate skipped points.
#: SAM-linear's query allocates (B, H, N) scores per step, so it is extrapolated linearly (conservative).
MEMORY_EXPONENT = {m: _model_spec(m).memory_exponent for m in MODELS}
# == end of the models =============================================================================

DEFAULT_SIZES = (10**2, 10**3, 10**4, 10**5, 10**6, 10**7)
DEFAULT_MEMORY_SIZES = (10**2, 10**3, 10**4, 65_536, 10**5, 10**6, 10**7)
QUICK_SIZES = (10**2, 10**3, 10**4)
#: Figure 7: N = 2^6 … 2^11 (the paper's DNC stops at 2,048), then 2^12, 1e4, 1e5, 1e6 where the budgets allow.
FIGURE7_SIZES = tuple(2**e for e in range(6, 13)) + (10**4, 10**5, 10**6)
FIGURE7_QUICK_SIZES = (2**6, 2**7)

#: What each figure sets when the config leaves a field at None.
_FIGURE_DEFAULTS = {
    1: dict(
        models=MODELS,
        sizes=DEFAULT_SIZES,
        memory_sizes=DEFAULT_MEMORY_SIZES,
        memory_steps=100,
        time_budget=30.0,
        trials=1,
    ),
    7: dict(
        models=FIGURE7_MODELS,
        sizes=FIGURE7_SIZES,
        memory_sizes=FIGURE7_SIZES,
        memory_steps=10,
        time_budget=300.0,
        trials=3,
    ),
}


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    """What :func:`run_scaling` measures. Every field is checked; a bad one raises ValueError naming it.

    The fields whose default is None take the figure's default (Figure 1 / Figure 7).

    Parameters
    ----------
    models : tuple of str
        Lines of the figure: ``"ntm"``, ``"dam"``, ``"sam-linear"``, ``"sam-lsh"``, ``"sam-kdforest"`` (Figure 1,
        the default);
        ``"dnc"``, ``"sdnc-linear"``, ``"sdnc-lsh"`` (Figure 7). Default: all of the figure's.
    sizes : tuple of int
        N of the time points (default 1e2 … 1e7 / 2^6 … 2^12, 1e4, 1e5, 1e6).
    memory_sizes : tuple of int
        N of the memory points (default 1e2 … 1e7 and 65,536, the paper's quoted size / as ``sizes``).
    steps, repeats : int
        T of each timed call (default 10) and timed calls after the warm-up (default 3).
    trials : int
        Fresh processes per time point (default 1 / 3); the point's time is the median over the trials of
        each process's median (on a shared or virtual machine, processes differ more than repeats do).
    batch_size : int
        Batch of the time points (default 8, Supplementary E).
    memory_steps, memory_batch_size : int
        T and batch of the memory points (default 100 / 10, and 1: Figure 1b, Figure 7).
    time_budget : float
        Seconds: a point whose measured runs are predicted to take longer is skipped (default 30 / 300).
    memory_budget : float
        GiB: a point whose process is predicted to peak above this RSS is skipped (default 8).
    dtype : {"float64", "float32"}
    word_size, num_heads, k, hidden_size, input_size, output_size, seed
        The models' sizes (defaults: 32, 4, 4, 100, 8, 8, 0).
    point_timeout : float
        Seconds after which an isolated point is killed and recorded as failed (default 3600).
    figure : {1, 7}
        Which figure of Rae et al. 2016 (default 1): it picks the lines, the defaults above, and the memory
        unit (Figure 1: a ``memory_steps`` unroll excluding initialisation; Figure 7: the total over the
        unroll including the start state).
    link_k : int
        K_L, the SDNC's link entries per row (default 8, the paper's); ignored by models without links.
    """

    models: tuple | None = None
    sizes: tuple | None = None
    memory_sizes: tuple | None = None
    steps: int = 10
    repeats: int = 3
    trials: int | None = None
    batch_size: int = 8
    memory_steps: int | None = None
    memory_batch_size: int = 1
    time_budget: float | None = None
    memory_budget: float = 8.0
    dtype: str = "float64"
    word_size: int = 32
    num_heads: int = 4
    k: int = 4
    hidden_size: int = 100
    input_size: int = 8
    output_size: int = 8
    seed: int = 0
    point_timeout: float = 3600.0
    figure: int = 1
    link_k: int = 8

    def __post_init__(self):
        figure = self.figure
        if isinstance(figure, bool) or not isinstance(figure, (int, np.integer)) or figure not in FIGURES:
            raise ValueError(f"figure: expected 1 or 7, got {figure!r}")
        object.__setattr__(self, "figure", int(figure))
        for name, value in _FIGURE_DEFAULTS[self.figure].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in ("models", "sizes", "memory_sizes"):
            value = getattr(self, name)
            if isinstance(value, (str, int)) or not hasattr(value, "__iter__"):
                raise ValueError(f"{name}: expected a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.models:
            raise ValueError("models: expected at least one model")
        lines = FIGURE_MODELS[self.figure]
        unknown = [m for m in self.models if m not in lines]
        if unknown:
            where = "" if self.figure == 1 else f" (Figure {self.figure}'s lines)"
            raise ValueError(f"models: expected names from {list(lines)}{where}, got {unknown}")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models: expected no repeats, got {list(self.models)}")
        for name in (
            "steps",
            "repeats",
            "trials",
            "batch_size",
            "memory_steps",
            "memory_batch_size",
            "word_size",
            "num_heads",
            "k",
            "hidden_size",
            "input_size",
            "output_size",
            "link_k",
        ):
            check_int_value(getattr(self, name), name, 1)
        check_int_value(self.seed, "seed", 0)
        for name in ("sizes", "memory_sizes"):
            for N in getattr(self, name):
                check_int_value(N, name, self.k, expected=f"memory sizes N >= k = {self.k}")
            object.__setattr__(self, name, tuple(sorted(set(int(N) for N in getattr(self, name)))))
        if not self.sizes and not self.memory_sizes:
            raise ValueError("sizes: expected at least one size (sizes and memory_sizes are both empty)")
        for name in ("time_budget", "memory_budget", "point_timeout"):
            check_positive_finite(getattr(self, name), name)
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float64, np.float32):
            raise ValueError(f"dtype: expected 'float64' or 'float32', got {self.dtype!r}")
        object.__setattr__(self, "dtype", str(dtype))

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize


def quick_config(**overrides) -> ScalingConfig:
    """The CI-sized run: N = 1e2, 1e3, 1e4 (Figure 7: 2^6, 2^7), T = 2 (time) and 10 (memory), two repeats,
    one process per time point."""
    figure7 = overrides.get("figure") == 7
    sizes = FIGURE7_QUICK_SIZES if figure7 else QUICK_SIZES
    fields = dict(sizes=sizes, memory_sizes=sizes, steps=2, repeats=2, memory_steps=10)
    if figure7:
        fields["trials"] = 1
    fields.update(overrides)
    return ScalingConfig(**fields)


# -- measuring one point (runs inside the point's own process) --------------------------------------


def build_model(model: str, N: int, config: ScalingConfig):
    """The model of one point, through the public constructors."""
    from ..models import MODELS as REGISTRY
    from ..models import make_model

    spec = _model_spec(model)
    kwargs = dict(
        input_size=config.input_size,
        output_size=config.output_size,
        memory_size=N,
        word_size=config.word_size,
        num_heads=config.num_heads,
        hidden_size=config.hidden_size,
        seed=config.seed,
        dtype=np.dtype(config.dtype),
    )
    fields = REGISTRY[spec.constructor].fields()
    if "k" in fields:
        kwargs["k"] = config.k
    if "link_k" in fields:
        kwargs["link_k"] = config.link_k
    return make_model(spec.constructor, **kwargs, **spec.options)


def _data(config, T, B, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, config.input_size)).astype(config.dtype)
    y = (rng.random((T, B, config.output_size)) > 0.5).astype(config.dtype)
    return x, y


def measure_memory(model_name: str, N: int, config: ScalingConfig) -> dict:
    """Memory of a ``memory_steps``-step forward+backward at ``memory_batch_size``, excluding set-up."""
    release_memory()
    base = proc_status().get("VmRSS")
    reset_peak_rss()
    T, B = config.memory_steps, config.memory_batch_size
    t0 = time.perf_counter()
    model = build_model(model_name, N, config)
    model.loss_and_grads(*_data(config, 1, B, config.seed + 1))  # memory, index, buffers, kernels
    setup = time.perf_counter() - t0
    setup_peak = proc_status().get("VmHWM")
    x, y = _data(config, T, B, config.seed)
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        model.loss_and_grads(x, y)
        call = time.perf_counter() - t0
    with TracedPeak() as traced:
        t1 = time.perf_counter()
        model.loss_and_grads(x, y)
        traced_call = time.perf_counter() - t1
    peaks = [p for p in (setup_peak, rss.peak) if p is not None]
    return {
        "kind": "memory",
        "model": model_name,
        "N": N,
        "batch": B,
        "steps": T,
        "repeats": 1,
        "seconds_per_step": call / T,
        "setup_seconds": setup,
        "measured_seconds": call + traced_call,
        "tracemalloc_peak_mib": mib(traced.peak),
        "rss_peak_mib": mib(rss.increase),
        "rss_method": rss.method,
        "process_peak_mib": mib(max(peaks)) if peaks else None,
        "base_rss_mib": mib(base),
        "skipped": "",
        "dtype": config.dtype,
    }


def measure_total_memory(model_name: str, N: int, config: ScalingConfig) -> dict:
    """Figure 7's memory: the total of a ``memory_steps``-step forward+backward at ``memory_batch_size``,
    including the start state (everything from just before the model is built to the end of the call).

    First a tiny model of the same line (N = max(16, k, K_L)) runs one step and is freed: the modules are
    imported and the Numba kernels loaded, so neither is counted. Then, twice on a freshly built model:

    - RSS: the peak resident size (the kernel's counter, reset just before building) minus the resident
      size just before building;
    - tracemalloc: the peak of the bytes traced from just before building to the end of the call.

    Counted: the parameters, the memory, the index, the usage ring, the link tables (SDNC: two
    (B, N, K_L) tables; DNC: the (B, N, N) links and the precedence), every step's caches and the
    gradients the call returns.
    """
    T, B = config.memory_steps, config.memory_batch_size
    x, y = _data(config, T, B, config.seed)
    warm = build_model(model_name, max(16, config.k, config.link_k), config)
    warm.loss_and_grads(x[:1], y[:1])  # imports and kernels, not counted
    del warm
    release_memory()
    base = proc_status().get("VmRSS")
    reset_peak_rss()
    warm_peak = proc_status().get("VmHWM")
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        model = build_model(model_name, N, config)
        built = time.perf_counter()
        model.loss_and_grads(x, y)
        done = time.perf_counter()
    setup, call = built - t0, done - built
    del model
    with TracedPeak() as traced:
        t1 = time.perf_counter()
        model = build_model(model_name, N, config)
        model.loss_and_grads(x, y)
        traced_call = time.perf_counter() - t1
    del model
    peaks = [p for p in (warm_peak, rss.peak, proc_status().get("VmHWM")) if p is not None]
    return {
        "kind": "memory",
        "model": model_name,
        "N": N,
        "batch": B,
        "steps": T,
        "repeats": 1,
        "seconds_per_step": call / T,
        "setup_seconds": setup,
        "measured_seconds": setup + call + traced_call,
        "tracemalloc_peak_mib": mib(traced.peak),
        "rss_peak_mib": mib(rss.increase),
        "rss_method": rss.method,
        "process_peak_mib": mib(max(peaks)) if peaks else None,
        "base_rss_mib": mib(base),
        "skipped": "",
        "dtype": config.dtype,
    }


def measure_time(model_name: str, N: int, config: ScalingConfig) -> dict:
    """Per-step forward+backward time at ``batch_size``: median over ``repeats`` T-step calls / T."""
    release_memory()
    base = proc_status().get("VmRSS")
    reset_peak_rss()
    T, B = config.steps, config.batch_size
    x, y = _data(config, T, B, config.seed)
    t0 = time.perf_counter()
    model = build_model(model_name, N, config)
    model.loss_and_grads(x[:1], y[:1])  # memory, index, buffers, kernels
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.loss_and_grads(x, y)  # warm-up
    times = []
    for _ in range(config.repeats):
        t = time.perf_counter()
        model.loss_and_grads(x, y)
        times.append((time.perf_counter() - t) / T)
    measured = time.perf_counter() - t0
    peak = proc_status().get("VmHWM")
    return {
        "kind": "time",
        "model": model_name,
        "N": N,
        "batch": B,
        "steps": T,
        "repeats": config.repeats,
        "seconds_per_step": float(np.median(times)),
        "setup_seconds": setup,
        "measured_seconds": measured,
        "tracemalloc_peak_mib": None,
        "rss_peak_mib": None,
        "rss_method": "",
        "process_peak_mib": mib(peak),
        "base_rss_mib": mib(base),
        "skipped": "",
        "dtype": config.dtype,
    }


def run_point(model_name: str, N: int, kinds, config: ScalingConfig) -> list[dict]:
    """Measure one (model, N) point in this process: memory first (on a fresh heap), then time."""
    from .. import models  # noqa: F401  (imported before the base RSS is read)
    from .._threads import single_threaded_blas

    rows = []
    with single_threaded_blas():
        if "memory" in kinds:
            measure = measure_total_memory if config.figure == 7 else measure_memory
            rows.append(measure(model_name, N, config))
        if "time" in kinds:
            rows.append(measure_time(model_name, N, config))
    return rows


# -- running points in fresh processes --------------------------------------------------------------


def _child_env():
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    return env


def spawn_point(model: str, N: int, kinds, config: ScalingConfig) -> list[dict]:
    """Run :func:`run_point` in a fresh ``python -m refmann.bench.scaling --point`` process.

    The process is killed if it passes ``point_timeout`` or an RSS of max(1.5 × budget, budget + 1 GiB);
    failures raise RuntimeError with the reason.
    """
    spec = json.dumps({"model": model, "N": N, "kinds": list(kinds), "config": dataclasses.asdict(config)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "refmann.bench.scaling", "--point", spec],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    limit = max(1.5 * config.memory_budget, config.memory_budget + 1.0)
    start, killed = time.monotonic(), ""
    while True:
        try:
            out, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            rss = proc_status(proc.pid).get("VmRSS", 0) / GIB
            if rss > limit:
                killed = f"killed: RSS {rss:.3g} GiB passed {limit:.3g} GiB"
            elif time.monotonic() - start > config.point_timeout:
                killed = f"killed: ran longer than point_timeout = {config.point_timeout:g} s"
            if killed:
                proc.kill()
                proc.communicate()
                raise RuntimeError(killed) from None
    if proc.returncode != 0:
        tail = (err or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise RuntimeError(f"failed: {tail[0][:300]}")
    return json.loads(out.strip().splitlines()[-1])


# -- the whole run ---------------------------------------------------------------------------------


class ScalingResult(NamedTuple):
    rows: list  # one dict per (kind, model, N), measured or skipped
    machine: dict
    table: str  # markdown
    files: dict  # name -> Path


def run_scaling(out=None, config: ScalingConfig | None = None, *, isolate: bool = True, progress=None) -> ScalingResult:
    """Measure every point, one at a time, and write points.csv, points.json, table.md and two PNGs.

    Parameters
    ----------
    out : str or Path, optional
        Output folder (default ``runs/bench-scaling``; Figure 7: ``runs/bench-scaling-figure7``).
    config : ScalingConfig, optional
        Figure, sizes, models, budgets (default: the full Figure 1 run; ``ScalingConfig(figure=7)``:
        the full Figure 7 run; :func:`quick_config` for CI).
    isolate : bool
        Run each (model, N) point in a fresh process (default). ``False`` runs them in this process:
        faster to start (tests, notebooks) but later points see the heap earlier points left.
    progress : callable, optional
        Called with one line of text per point (default: logging at INFO).
    """
    config = ScalingConfig() if config is None else config
    if not isinstance(config, ScalingConfig):
        raise TypeError(f"config: expected a ScalingConfig, got {type(config).__name__}")
    if not isinstance(isolate, bool):
        raise TypeError(f"isolate: expected a bool, got {isolate!r}")
    out = Path(default_out(config.figure) if out is None else out)
    say = progress or log.info
    machine = machine_info()
    rows = []
    sizes = sorted(set(config.sizes) | set(config.memory_sizes))
    total = sum(len(config.sizes) + len(config.memory_sizes) for _ in config.models)
    done = 0
    width = max([10] + [len(_model_spec(m).label) for m in config.models])
    for model in config.models:
        label = _model_spec(model).label.ljust(width)
        history = {"time": [], "memory": []}
        failed = {"time": "", "memory": ""}
        for N in sizes:
            kinds, decisions = [], {}
            for kind in ("memory", "time"):
                if N not in (config.memory_sizes if kind == "memory" else config.sizes):
                    continue
                prediction = predict_point(model, kind, N, history[kind], config)
                reason = failed[kind] or prediction.reason
                decisions[kind] = prediction
                if reason:
                    rows.append(skipped_row(model, kind, N, history[kind], prediction, reason, config))
                    done += 1
                    say(f"[{done}/{total}] {label} N={N:>10,} {kind:<6} skipped: {reason}")
                else:
                    kinds.append(kind)
            if not kinds:
                continue
            t0 = time.perf_counter()
            try:
                measured = spawn_point(model, N, kinds, config) if isolate else run_point(model, N, kinds, config)
                if "time" in kinds:
                    measured = _add_trials(measured, model, N, config, isolate)
            except (RuntimeError, MemoryError) as exc:
                for kind in kinds:
                    failed[kind] = f"not run: N = {N:,} {exc}"
                    rows.append(skipped_row(model, kind, N, history[kind], decisions[kind], f"{exc}", config))
                    done += 1
                    say(f"[{done}/{total}] {label} N={N:>10,} {kind:<6} {exc}")
                continue
            wall = time.perf_counter() - t0
            for row in measured:
                row["predicted_seconds_per_step"] = decisions[row["kind"]].seconds_per_step
                row["predicted_peak_gib"] = decisions[row["kind"]].peak_gib
                history[row["kind"]].append(row)
                rows.append(row)
                done += 1
                say(f"[{done}/{total}] {label} N={N:>10,} {_describe(row)}  ({wall:.1f} s)")
    for row in rows:
        row.update({key: machine[key] for key in ("cpu", "cores", "numpy", "numba", "jit")})
        timed = row["kind"] == "time" and row.get("seconds_per_step") is not None and not row.get("skipped")
        row.setdefault("trials", 1 if timed else None)
        for key in ("seconds_per_step_min", "seconds_per_step_max"):
            row.setdefault(key, row["seconds_per_step"] if timed else None)
    if config.figure == 7:  # the load over the run, for the headline (Figure 1's files stay as they were)
        machine["load_average_1min_end"] = machine_info()["load_average_1min"]
    table = format_table(rows, config, machine=machine)
    files = write_outputs(out, rows, machine, config, table)
    return ScalingResult(rows, machine, table, files)


def default_out(figure: int = 1) -> str:
    """The output folder of a run that names none."""
    return "runs/bench-scaling" if figure == 1 else f"runs/bench-scaling-figure{figure}"


def _add_trials(measured, model, N, config, isolate):
    """Run the time point ``trials − 1`` more times (fresh processes) and keep the median of the trials."""
    rows = [r for r in measured if r["kind"] != "time"]
    first = next(r for r in measured if r["kind"] == "time")
    times = [first["seconds_per_step"]]
    for _ in range(config.trials - 1):
        again = spawn_point(model, N, ["time"], config) if isolate else run_point(model, N, ["time"], config)
        times.append(again[0]["seconds_per_step"])
    first.update(
        trials=config.trials,
        seconds_per_step=float(np.median(times)),
        seconds_per_step_min=float(min(times)),
        seconds_per_step_max=float(max(times)),
    )
    return rows + [first]


def _describe(row) -> str:
    if row["kind"] == "time":
        return (
            f"time   {1e3 * row['seconds_per_step']:9.2f} ms/step (batch {row['batch']}), "
            f"set-up {row['setup_seconds']:.2f} s"
        )
    rss = "n/a" if row["rss_peak_mib"] is None else f"{row['rss_peak_mib']:.2f}"
    return (
        f"memory {row['tracemalloc_peak_mib']:9.2f} MiB traced, {rss} MiB RSS (T={row['steps']}, batch {row['batch']})"
    )


# -- ``python -m refmann.bench.scaling --point SPEC`` ----------------------------------------------


def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m refmann.bench.scaling", description="one point of `refmann bench scaling`, in this process"
    )
    parser.add_argument("--point", required=True, help='JSON: {"model", "N", "kinds", "config"}')
    args = parser.parse_args(argv)
    spec = json.loads(args.point)
    config = ScalingConfig(**spec["config"])
    rows = run_point(spec["model"], int(spec["N"]), spec["kinds"], config)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
