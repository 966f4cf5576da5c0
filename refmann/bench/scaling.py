r"""Figure 1 of Rae et al. 2016: time and memory of NTM, DAM and SAM against the memory size N.

``refmann bench scaling`` (or :func:`run_scaling`) measures, in one run on one machine (DESIGN
decision 14):

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

Every (model, N) point runs in a fresh process (``python -m refmann.bench.scaling --point ...``),
one at a time, so memory is returned to the system between points and points do not interfere.

Budgets. Before each point its cost is predicted from the model's last measured points: the
step time linear in N for the dense models (NTM, DAM, and SAM with the linear index, which scans N
per query) and flat for SAM-LSH; the process's peak RSS linear in N for every model (the memory,
its gradient and the index are O(N) at set-up; the dense models also cache a (B, N, W) memory per
step). A point whose prediction passes ``time_budget`` (seconds for the measured runs of the point)
or ``memory_budget`` (GiB of peak RSS) is not run; it is recorded with the reason and the
extrapolated values, which the plots draw dotted. Larger N are then skipped for the same reason.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gc
import io
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._io import _atomic, atomic_write_text

log = logging.getLogger(__name__)

MODELS = ("ntm", "dam", "sam-linear", "sam-lsh")
LABELS = {"ntm": "NTM", "dam": "DAM", "sam-linear": "SAM linear", "sam-lsh": "SAM LSH"}
COLORS = {"ntm": "tab:red", "dam": "tab:orange", "sam-linear": "tab:green", "sam-lsh": "tab:blue"}
DEFAULT_SIZES = (10**2, 10**3, 10**4, 10**5, 10**6, 10**7)
DEFAULT_MEMORY_SIZES = (10**2, 10**3, 10**4, 65_536, 10**5, 10**6, 10**7)
QUICK_SIZES = (10**2, 10**3, 10**4)
MIB = 2.0**20
GIB = 2.0**30

#: Exponent of N in the per-step time used to extrapolate from the last measured points (see extrapolate).
TIME_EXPONENT = {"ntm": 1.0, "dam": 1.0, "sam-linear": 1.0, "sam-lsh": 0.0}
#: Exponent of N in the 100-step memory (excluding initialisation) used to extrapolate skipped points.
#: SAM-linear's query allocates (B, H, N) scores per step, so it is extrapolated linearly (conservative).
MEMORY_EXPONENT = {"ntm": 1.0, "dam": 1.0, "sam-linear": 1.0, "sam-lsh": 0.0}

CSV_FIELDS = ("kind", "model", "N", "batch", "steps", "repeats", "trials", "seconds_per_step",
              "seconds_per_step_min", "seconds_per_step_max", "setup_seconds",
              "measured_seconds", "tracemalloc_peak_mib", "rss_peak_mib", "rss_method", "process_peak_mib",
              "base_rss_mib", "skipped", "predicted_seconds_per_step", "predicted_peak_gib", "dtype",
              "cpu", "cores", "numpy", "numba", "jit")


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    """What :func:`run_scaling` measures. Every field is checked; a bad one raises ValueError naming it.

    Parameters
    ----------
    models : tuple of str
        Any of ``"ntm"``, ``"dam"``, ``"sam-linear"``, ``"sam-lsh"``.
    sizes : tuple of int
        N of the time points (default 1e2 … 1e7).
    memory_sizes : tuple of int
        N of the memory points (default 1e2 … 1e7 and 65,536, the paper's quoted size).
    steps, repeats : int
        T of each timed call (default 10) and timed calls after the warm-up (default 3).
    trials : int
        Fresh processes per time point (default 1); the point's time is the median over the trials of
        each process's median (on a shared or virtual machine, processes differ more than repeats do).
    batch_size : int
        Batch of the time points (default 8, Supplementary E).
    memory_steps, memory_batch_size : int
        T and batch of the memory points (default 100 and 1, Figure 1b).
    time_budget : float
        Seconds: a point whose measured runs are predicted to take longer is skipped (default 30).
    memory_budget : float
        GiB: a point whose process is predicted to peak above this RSS is skipped (default 8).
    dtype : {"float64", "float32"}
    word_size, num_heads, k, hidden_size, input_size, output_size, seed
        The models' sizes (defaults: 32, 4, 4, 100, 8, 8, 0).
    point_timeout : float
        Seconds after which an isolated point is killed and recorded as failed (default 3600).
    """

    models: tuple = MODELS
    sizes: tuple = DEFAULT_SIZES
    memory_sizes: tuple = DEFAULT_MEMORY_SIZES
    steps: int = 10
    repeats: int = 3
    trials: int = 1
    batch_size: int = 8
    memory_steps: int = 100
    memory_batch_size: int = 1
    time_budget: float = 30.0
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

    def __post_init__(self):
        for name in ("models", "sizes", "memory_sizes"):
            value = getattr(self, name)
            if isinstance(value, (str, int)) or not hasattr(value, "__iter__"):
                raise ValueError(f"{name}: expected a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.models:
            raise ValueError("models: expected at least one model")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"models: expected names from {list(MODELS)}, got {unknown}")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models: expected no repeats, got {list(self.models)}")
        for name in ("steps", "repeats", "trials", "batch_size", "memory_steps", "memory_batch_size", "word_size",
                     "num_heads", "k", "hidden_size", "input_size", "output_size"):
            _check_int(getattr(self, name), name, 1)
        _check_int(self.seed, "seed", 0)
        for name in ("sizes", "memory_sizes"):
            for N in getattr(self, name):
                _check_int(N, name, self.k, what=f"memory sizes N >= k = {self.k}")
            object.__setattr__(self, name, tuple(sorted(set(int(N) for N in getattr(self, name)))))
        if not self.sizes and not self.memory_sizes:
            raise ValueError("sizes: expected at least one size (sizes and memory_sizes are both empty)")
        for name in ("time_budget", "memory_budget", "point_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
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


def _check_int(value, name, minimum, what=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected {what or f'an int >= {minimum}'}, got {value!r}")


def quick_config(**overrides) -> ScalingConfig:
    """The CI-sized run: N = 1e2, 1e3, 1e4, T = 2 (time) and 10 (memory), two repeats."""
    fields = dict(sizes=QUICK_SIZES, memory_sizes=QUICK_SIZES, steps=2, repeats=2, memory_steps=10)
    fields.update(overrides)
    return ScalingConfig(**fields)


# -- the machine -----------------------------------------------------------------------------------

def machine_info() -> dict:
    """CPU model, cores, RAM, load, and the versions that decide the speed (numpy, numba, JIT on/off)."""
    from .. import __version__, _jit

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_total = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) * 1024 / GIB, 1)
    try:
        import numba

        numba_version = numba.__version__
    except ImportError:  # pragma: no cover
        numba_version = "not installed"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_total,
            "load_average_1min": None if load is None else round(load, 2), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba_version, "jit": "on" if _jit.JIT_ENABLED else "off",
            "refmann": __version__, "platform": platform.platform(), "blas_threads": 1,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


# -- measuring one point (runs inside the point's own process) --------------------------------------

def build_model(model: str, N: int, config: ScalingConfig):
    """The model of one point, through the public constructors."""
    from ..models import make_model

    common = dict(input_size=config.input_size, output_size=config.output_size, memory_size=N,
                  word_size=config.word_size, num_heads=config.num_heads, hidden_size=config.hidden_size,
                  seed=config.seed, dtype=np.dtype(config.dtype))
    if model.startswith("sam-"):
        return make_model("sam", k=config.k, index=model[len("sam-"):], **common)
    return make_model(model, **common)


def _data(config, T, B, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, config.input_size)).astype(config.dtype)
    y = (rng.random((T, B, config.output_size)) > 0.5).astype(config.dtype)
    return x, y


def _proc_status() -> dict:
    """VmRSS and VmHWM of this process in bytes ({} where /proc is missing)."""
    out = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_memory():
    """Collect garbage and hand freed heap pages back to the system (glibc), so RSS starts low."""
    gc.collect()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


class _PeakRSS:
    """Peak RSS increase over a block: the kernel's counter after a reset, else a sampling thread."""

    def __enter__(self):
        _release_memory()
        self.before = _proc_status().get("VmRSS")
        self.method = "clear_refs" if _reset_peak_rss() else ("sampled" if self.before is not None else "unavailable")
        self._peak, self._stop = self.before or 0, threading.Event()
        if self.method == "sampled":
            def sample():
                while not self._stop.wait(0.002):
                    self._peak = max(self._peak, _proc_status().get("VmRSS", 0))
            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        status = _proc_status()
        if self.method == "sampled":
            self._stop.set()
            self._thread.join()
            self.peak = max(self._peak, status.get("VmRSS", 0))
        elif self.method == "clear_refs":
            self.peak = status.get("VmHWM", 0)
        else:
            self.peak = None
        self.increase = None if self.peak is None else max(0, self.peak - self.before)
        return False


def _mib(nbytes):
    return None if nbytes is None else nbytes / MIB


def measure_memory(model_name: str, N: int, config: ScalingConfig) -> dict:
    """Memory of a ``memory_steps``-step forward+backward at ``memory_batch_size``, excluding set-up."""
    _release_memory()
    base = _proc_status().get("VmRSS")
    _reset_peak_rss()
    T, B = config.memory_steps, config.memory_batch_size
    t0 = time.perf_counter()
    model = build_model(model_name, N, config)
    model.loss_and_grads(*_data(config, 1, B, config.seed + 1))     # memory, index, buffers, kernels
    setup = time.perf_counter() - t0
    setup_peak = _proc_status().get("VmHWM")
    x, y = _data(config, T, B, config.seed)
    with _PeakRSS() as rss:
        t0 = time.perf_counter()
        model.loss_and_grads(x, y)
        call = time.perf_counter() - t0
    _release_memory()
    tracemalloc.start()
    try:
        t1 = time.perf_counter()
        model.loss_and_grads(x, y)
        traced_call = time.perf_counter() - t1
        traced_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    peaks = [p for p in (setup_peak, rss.peak) if p is not None]
    return {"kind": "memory", "model": model_name, "N": N, "batch": B, "steps": T, "repeats": 1,
            "seconds_per_step": call / T, "setup_seconds": setup, "measured_seconds": call + traced_call,
            "tracemalloc_peak_mib": _mib(traced_peak), "rss_peak_mib": _mib(rss.increase),
            "rss_method": rss.method, "process_peak_mib": _mib(max(peaks)) if peaks else None,
            "base_rss_mib": _mib(base), "skipped": "", "dtype": config.dtype}


def measure_time(model_name: str, N: int, config: ScalingConfig) -> dict:
    """Per-step forward+backward time at ``batch_size``: median over ``repeats`` T-step calls / T."""
    _release_memory()
    base = _proc_status().get("VmRSS")
    _reset_peak_rss()
    T, B = config.steps, config.batch_size
    x, y = _data(config, T, B, config.seed)
    t0 = time.perf_counter()
    model = build_model(model_name, N, config)
    model.loss_and_grads(x[:1], y[:1])                                # memory, index, buffers, kernels
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.loss_and_grads(x, y)                                        # warm-up
    times = []
    for _ in range(config.repeats):
        t = time.perf_counter()
        model.loss_and_grads(x, y)
        times.append((time.perf_counter() - t) / T)
    measured = time.perf_counter() - t0
    peak = _proc_status().get("VmHWM")
    return {"kind": "time", "model": model_name, "N": N, "batch": B, "steps": T, "repeats": config.repeats,
            "seconds_per_step": float(np.median(times)), "setup_seconds": setup, "measured_seconds": measured,
            "tracemalloc_peak_mib": None, "rss_peak_mib": None, "rss_method": "",
            "process_peak_mib": _mib(peak), "base_rss_mib": _mib(base), "skipped": "", "dtype": config.dtype}


def run_point(model_name: str, N: int, kinds, config: ScalingConfig) -> list[dict]:
    """Measure one (model, N) point in this process: memory first (on a fresh heap), then time."""
    from .. import models  # noqa: F401  (imported before the base RSS is read)
    from .._threads import single_threaded_blas

    rows = []
    with single_threaded_blas():
        if "memory" in kinds:
            rows.append(measure_memory(model_name, N, config))
        if "time" in kinds:
            rows.append(measure_time(model_name, N, config))
    return rows


# -- predicting a point's cost (pure) -------------------------------------------------------------

class Prediction(NamedTuple):
    seconds_per_step: float | None   # at the point's batch; None without a measured point to go from
    point_seconds: float | None      # the point's measured runs (warm-up + repeats, or the memory calls)
    peak_gib: float                  # peak RSS of the point's process
    reason: str                      # why the point is skipped; "" to run it


def prior_peak_gib(model: str, kind: str, N: int, config: ScalingConfig) -> float:
    """Peak RSS before anything was measured: 0.25 GiB of Python and libraries, plus, for the
    dense models, a (B, N, W) memory cached per step (×4 for the intermediates of the heads), or,
    for SAM, the memory, its index and the row table, ≈ 3 (B, N, W) arrays."""
    T, B = (config.steps, config.batch_size) if kind == "time" else (config.memory_steps, config.memory_batch_size)
    one = B * N * config.word_size * config.itemsize
    per_model = 4 * (T + 1) * one if model in ("ntm", "dam") else 3 * one
    return 0.25 + per_model / GIB


def extrapolate(history, N: int, key: str, exponent: float):
    """``history[-1][key]`` carried to N, or None if there is nothing to carry.

    ``history`` holds the measured rows of one model and kind, in increasing N. With ``exponent`` 0
    the value is flat. Otherwise it is linear in N: the line through the last two measured points
    (slope clamped at >= 0, so the value never falls), or, from a single point, proportional to N
    (which over-estimates when a fixed cost dominates that point: conservative).
    """
    pts = [(r["N"], r[key]) for r in history if r.get(key) is not None]
    if not pts:
        return None
    n1, v1 = pts[-1]
    if exponent == 0 or N == n1:
        return v1
    if len(pts) >= 2:
        n0, v0 = pts[-2]
        return v1 + max(0.0, (v1 - v0) / (n1 - n0)) * (N - n1)
    return v1 * (N / n1) ** exponent


def predict_point(model: str, kind: str, N: int, history, config: ScalingConfig) -> Prediction:
    """Predict a point's cost from the model's measured points of the same kind, and decide whether to run it.

    Parameters
    ----------
    model : str
    kind : {"time", "memory"}
    N : int
    history : list of dict
        The measured rows of this model and kind so far, in increasing N (empty: nothing measured).
    config : ScalingConfig

    The step time follows :func:`extrapolate` with ``TIME_EXPONENT[model]`` (linear in N for the dense
    models, flat for SAM-LSH); the process's peak RSS above its base (Python and the libraries,
    measured before the model is built) is linear in N for every model. Without a
    measured point the RSS comes from :func:`prior_peak_gib` and the time is not predicted.
    """
    history = list(history or [])
    if not history:
        peak = prior_peak_gib(model, kind, N, config)
        sps = pts = None
        source = "the a-priori estimate"
    else:
        last, e = history[-1], TIME_EXPONENT[model]
        sps = extrapolate(history, N, "seconds_per_step", e)
        if kind == "time":
            pts = sps * config.steps * (1 + config.repeats) * config.trials
        else:
            pts = extrapolate(history, N, "measured_seconds", e)
        rises = [{"N": r["N"], "rise": max(0.0, (r["process_peak_mib"] or 0.0) - (r["base_rss_mib"] or 0.0))}
                 for r in history]
        peak = ((last["base_rss_mib"] or 0.0) + extrapolate(rises, N, "rise", 1.0)) * MIB / GIB
        source = f"N = {last['N']:,}" if len(history) == 1 else f"N = {history[-2]['N']:,} and {last['N']:,}"
    reason = ""
    if peak > config.memory_budget:
        reason = (f"memory budget: predicted {peak:.3g} GiB > budget {config.memory_budget:g} GiB "
                  f"(linear in N from {source})")
    elif pts is not None and pts > config.time_budget:
        reason = (f"time budget: predicted {sps:.3g} s/step, {pts:.3g} s for the point > budget "
                  f"{config.time_budget:g} s ({'linear in N' if TIME_EXPONENT[model] else 'flat'} from {source})")
    return Prediction(sps, pts, peak, reason)


def skipped_row(model: str, kind: str, N: int, history, prediction: Prediction, reason: str,
                config: ScalingConfig) -> dict:
    """The row of a point that was not run, with the extrapolated values the plots draw dotted."""
    memory = kind == "memory"
    return {"kind": kind, "model": model, "N": N, "batch": config.memory_batch_size if memory else config.batch_size,
            "steps": config.memory_steps if memory else config.steps, "repeats": 1 if memory else config.repeats,
            "seconds_per_step": None, "setup_seconds": None, "measured_seconds": None,
            "tracemalloc_peak_mib": extrapolate(history, N, "tracemalloc_peak_mib", MEMORY_EXPONENT[model])
            if memory else None,
            "rss_peak_mib": extrapolate(history, N, "rss_peak_mib", MEMORY_EXPONENT[model]) if memory else None,
            "rss_method": "", "process_peak_mib": None, "base_rss_mib": None, "skipped": reason,
            "predicted_seconds_per_step": prediction.seconds_per_step, "predicted_peak_gib": prediction.peak_gib,
            "dtype": config.dtype}


# -- running points in fresh processes --------------------------------------------------------------

def _child_env():
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    return env


def _rss_of(pid) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / GIB
    return 0.0


def spawn_point(model: str, N: int, kinds, config: ScalingConfig) -> list[dict]:
    """Run :func:`run_point` in a fresh ``python -m refmann.bench.scaling --point`` process.

    The process is killed if it passes ``point_timeout`` or an RSS of max(1.5 × budget, budget + 1 GiB);
    failures raise RuntimeError with the reason.
    """
    spec = json.dumps({"model": model, "N": N, "kinds": list(kinds), "config": dataclasses.asdict(config)})
    proc = subprocess.Popen([sys.executable, "-m", "refmann.bench.scaling", "--point", spec],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
    limit = max(1.5 * config.memory_budget, config.memory_budget + 1.0)
    start, killed = time.monotonic(), ""
    while True:
        try:
            out, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            rss = _rss_of(proc.pid)
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
    rows: list          # one dict per (kind, model, N), measured or skipped
    machine: dict
    table: str          # markdown
    files: dict         # name -> Path


def run_scaling(out=None, config: ScalingConfig | None = None, *, isolate: bool = True,
                progress=None) -> ScalingResult:
    """Measure every point, one at a time, and write points.csv, points.json, table.md and two PNGs.

    Parameters
    ----------
    out : str or Path, optional
        Output folder (default ``runs/bench-scaling``).
    config : ScalingConfig, optional
        Sizes, models, budgets (default: the full Figure 1 run; :func:`quick_config` for CI).
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
    out = Path("runs/bench-scaling" if out is None else out)
    say = progress or log.info
    machine = machine_info()
    rows = []
    sizes = sorted(set(config.sizes) | set(config.memory_sizes))
    total = sum(len(config.sizes) + len(config.memory_sizes) for _ in config.models)
    done = 0
    for model in config.models:
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
                    say(f"[{done}/{total}] {LABELS[model]:<10} N={N:>10,} {kind:<6} skipped: {reason}")
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
                    say(f"[{done}/{total}] {LABELS[model]:<10} N={N:>10,} {kind:<6} {exc}")
                continue
            wall = time.perf_counter() - t0
            for row in measured:
                row["predicted_seconds_per_step"] = decisions[row["kind"]].seconds_per_step
                row["predicted_peak_gib"] = decisions[row["kind"]].peak_gib
                history[row["kind"]].append(row)
                rows.append(row)
                done += 1
                say(f"[{done}/{total}] {LABELS[model]:<10} N={N:>10,} {_describe(row)}  ({wall:.1f} s)")
    for row in rows:
        row.update({key: machine[key] for key in ("cpu", "cores", "numpy", "numba", "jit")})
        timed = row["kind"] == "time" and row.get("seconds_per_step") is not None and not row.get("skipped")
        row.setdefault("trials", 1 if timed else None)
        for key in ("seconds_per_step_min", "seconds_per_step_max"):
            row.setdefault(key, row["seconds_per_step"] if timed else None)
    table = format_table(rows, config)
    files = write_outputs(out, rows, machine, config, table)
    return ScalingResult(rows, machine, table, files)


def _add_trials(measured, model, N, config, isolate):
    """Run the time point ``trials − 1`` more times (fresh processes) and keep the median of the trials."""
    rows = [r for r in measured if r["kind"] != "time"]
    first = next(r for r in measured if r["kind"] == "time")
    times = [first["seconds_per_step"]]
    for _ in range(config.trials - 1):
        again = spawn_point(model, N, ["time"], config) if isolate else run_point(model, N, ["time"], config)
        times.append(again[0]["seconds_per_step"])
    first.update(trials=config.trials, seconds_per_step=float(np.median(times)),
                 seconds_per_step_min=float(min(times)), seconds_per_step_max=float(max(times)))
    return rows + [first]


def _describe(row) -> str:
    if row["kind"] == "time":
        return (f"time   {1e3 * row['seconds_per_step']:9.2f} ms/step (batch {row['batch']}), "
                f"set-up {row['setup_seconds']:.2f} s")
    rss = "n/a" if row["rss_peak_mib"] is None else f"{row['rss_peak_mib']:.2f}"
    return (f"memory {row['tracemalloc_peak_mib']:9.2f} MiB traced, {rss} MiB RSS "
            f"(T={row['steps']}, batch {row['batch']})")


# -- outputs ----------------------------------------------------------------------------------------

def write_outputs(out, rows, machine, config, table) -> dict:
    """points.csv, points.json, table.md, figure1a_time.png, figure1b_memory.png (all written atomically)."""
    out = Path(out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in CSV_FIELDS})
    files = {"csv": atomic_write_text(out / "points.csv", buf.getvalue())}
    doc = {"machine": machine, "config": dataclasses.asdict(config),
           "units": {"seconds_per_step": "s, one time step forward+backward", "*_mib": "MiB", "*_gib": "GiB"},
           "points": rows}
    files["json"] = atomic_write_text(out / "points.json", json.dumps(doc, indent=1) + "\n")
    files["table"] = atomic_write_text(out / "table.md", table + "\n")
    files["time_png"] = plot_time(rows, out / "figure1a_time.png", config=config, machine=machine)
    files["memory_png"] = plot_memory(rows, out / "figure1b_memory.png", config=config, machine=machine)
    return files


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    return fig, fig.add_subplot()


def _save_png(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return _atomic(path, lambda f: f.write(buf.getvalue()), "wb")


def _series(rows, kind, model, key, skipped):
    pts = [(r["N"], r[key]) for r in rows if r["kind"] == kind and r["model"] == model
           and bool(r["skipped"]) == skipped and r.get(key) is not None and r[key] > 0]
    return sorted(pts)


def _plot_lines(ax, rows, kind, key, scale, *, style="-", label_suffix="", extrapolate=True):
    """One line per model: measured points joined, then dotted from the last measured to the extrapolated."""
    for model in MODELS:
        measured = _series(rows, kind, model, key, False)
        color = COLORS[model]
        if measured:
            ax.plot([n for n, _ in measured], [v * scale for _, v in measured], style, marker="o" if style == "-" else
                    "x", ms=4, color=color, label=None if label_suffix is None else LABELS[model] + label_suffix)
        if extrapolate:
            guessed = _series(rows, kind, model, key, True)
            if guessed:
                line = measured[-1:] + guessed
                ax.plot([n for n, _ in line], [v * scale for _, v in line], ":", marker="o", ms=4, mfc="none",
                        color=color, label=None if measured else LABELS[model] + " (extrapolated)")


def plot_time(rows, path, *, config, machine=None) -> Path:
    """Figure 1a: seconds per step (forward + backward) against N, log-log; extrapolations dotted."""
    fig, ax = _figure()
    skipped = [dict(r, _t=r["predicted_seconds_per_step"]) for r in rows if r["kind"] == "time" and r["skipped"]]
    measured = [dict(r, _t=r["seconds_per_step"]) for r in rows if r["kind"] == "time" and not r["skipped"]]
    _plot_lines(ax, measured + skipped, "time", "_t", 1.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memory size N (words)")
    ax.set_ylabel("wall time of one step, forward + backward (s)")
    ax.set_title(f"Time per step, batch {config.batch_size}, W = {config.word_size}, {config.num_heads} heads, "
                 f"K = {config.k}", fontsize=10)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, title="dotted: extrapolated, not run", title_fontsize=7)
    _caption(fig, machine, config)
    return _save_png(fig, path)


def plot_memory(rows, path, *, config, machine=None) -> Path:
    """Figure 1b: memory of a T-step forward+backward (excluding initialisation) against N, log-log.
    Solid: tracemalloc peak; dashed: RSS increase; dotted: extrapolated (tracemalloc)."""
    fig, ax = _figure()
    _plot_lines(ax, rows, "memory", "tracemalloc_peak_mib", 1.0)
    _plot_lines(ax, rows, "memory", "rss_peak_mib", 1.0, style="--", label_suffix=None, extrapolate=False)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memory size N (words)")
    ax.set_ylabel("memory of the unroll (MiB)")
    ax.set_title(f"Memory of a {config.memory_steps}-step forward + backward, batch {config.memory_batch_size}, "
                 "excluding initialisation", fontsize=10)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, title="solid: tracemalloc; dashed (x): RSS;\ndotted: extrapolated, not run",
                  title_fontsize=7)
    if config.memory_sizes and min(config.memory_sizes) <= 65_536 <= max(config.memory_sizes):
        ax.axvline(65_536, color="0.6", lw=0.6, ls="-.")
        ax.text(65_536, 0.02, " 64K (quoted in the paper)", transform=ax.get_xaxis_transform(), fontsize=7,
                color="0.4", rotation=90, va="bottom")
    _caption(fig, machine, config)
    return _save_png(fig, path)


def _caption(fig, machine, config):
    if machine:
        fig.text(0.01, -0.02, f"{machine['cpu']}, {machine['cores']} cores; numpy {machine['numpy']}, numba "
                 f"{machine['numba']} (JIT {machine['jit']}); {config.dtype}, one BLAS thread",
                 fontsize=6.5, color="0.35", va="top")


# -- the table --------------------------------------------------------------------------------------

def _lookup(rows, kind, model, N):
    for r in rows:
        if r["kind"] == kind and r["model"] == model and r["N"] == N:
            return r
    return None


def _time_of(row):
    """(seconds per step, extrapolated?) of a time row, or (None, False)."""
    if row is None:
        return None, False
    if row["skipped"]:
        return row.get("predicted_seconds_per_step"), True
    return row["seconds_per_step"], False


def _fmt_ms(seconds, guessed):
    if seconds is None:
        return "–"
    ms = 1e3 * seconds
    text = f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"
    return f"~{text}" if guessed else text


def _fmt_ratio(num, den, guessed):
    if num is None or den is None or den <= 0:
        return "–"
    ratio = num / den
    text = f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.3g}×"
    return f"~{text}" if guessed else text


def _fmt_mib(value, guessed=False):
    if value is None:
        return "–"
    text = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return f"~{text}" if guessed else text


def format_table(rows, config: ScalingConfig) -> str:
    """Markdown: time per step and memory against N for every model, and the ratios of one run."""
    models = [m for m in MODELS if m in config.models]
    lines = [f"### Time per step, forward + backward (ms; batch {config.batch_size}, T = {config.steps}, "
             f"median of {config.repeats} after a warm-up"
             + (f", median of {config.trials} processes" if config.trials > 1 else "") + f"; {config.dtype})", ""]
    ratio_models = [m for m in ("ntm", "dam") if m in models] if "sam-lsh" in models else []
    header = ["N"] + [LABELS[m] for m in models] + [f"{LABELS[m]} / SAM LSH" for m in ratio_models]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(["---:"] * len(header)) + " |"]
    for N in config.sizes:
        cells = [f"{N:,}"]
        for m in models:
            cells.append(_fmt_ms(*_time_of(_lookup(rows, "time", m, N))))
        sam, sam_guessed = _time_of(_lookup(rows, "time", "sam-lsh", N))
        for m in ratio_models:
            t, guessed = _time_of(_lookup(rows, "time", m, N))
            cells.append(_fmt_ratio(t, sam, guessed or sam_guessed))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"### Memory of a {config.memory_steps}-step forward + backward, batch "
              f"{config.memory_batch_size}, excluding initialisation (MiB: tracemalloc peak / RSS increase)", ""]
    header = ["N"] + [LABELS[m] for m in models]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(["---:"] * len(header)) + " |"]
    for N in config.memory_sizes:
        cells = [f"{N:,}"]
        for m in models:
            r = _lookup(rows, "memory", m, N)
            if r is None:
                cells.append("–")
            else:
                g = bool(r["skipped"])
                cells.append(f"{_fmt_mib(r['tracemalloc_peak_mib'], g)} / {_fmt_mib(r['rss_peak_mib'], g)}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Ratios measured in this run", ""]
    lines += _ratio_lines(rows, config, models)
    skipped = [r for r in rows if r["skipped"]]
    if skipped:
        lines += ["", "~ marks a value extrapolated from the model's last measured points (not run):", ""]
        for r in skipped:
            lines.append(f"- {LABELS[r['model']]}, N = {r['N']:,}, {r['kind']}: {r['skipped']}")
    return "\n".join(lines)


def _ratio_lines(rows, config, models):
    lines = []
    n_mem = 65_536 if 65_536 in config.memory_sizes else (max(config.memory_sizes) if config.memory_sizes else None)
    if "sam-lsh" in models and n_mem is not None:
        sam = _lookup(rows, "memory", "sam-lsh", n_mem)
        for m in (m for m in ("ntm", "dam", "sam-linear") if m in models):
            r = _lookup(rows, "memory", m, n_mem)
            if r is None or sam is None:
                continue
            g = bool(r["skipped"] or sam["skipped"])
            lines.append(f"- Memory at N = {n_mem:,}: {LABELS[m]} / SAM LSH = "
                         f"{_fmt_ratio(r['tracemalloc_peak_mib'], sam['tracemalloc_peak_mib'], g)} (tracemalloc), "
                         f"{_fmt_ratio(r['rss_peak_mib'], sam['rss_peak_mib'], g)} (RSS)")
    if "sam-lsh" in models:
        lo, hi = 1_000, 1_000_000
        if lo not in config.sizes or hi not in config.sizes:
            measured = [N for N in config.sizes if _time_of(_lookup(rows, "time", "sam-lsh", N))[0] is not None]
            lo, hi = (min(measured), max(measured)) if measured else (None, None)
        if lo is not None and hi is not None and hi > lo:
            (a, ga), (b, gb) = (_time_of(_lookup(rows, "time", "sam-lsh", N)) for N in (lo, hi))
            lines.append(f"- SAM LSH time per step from N = {lo:,} to {hi:,} (batch {config.batch_size}): "
                         f"{_fmt_ms(a, ga)} → {_fmt_ms(b, gb)} ms, growth {_fmt_ratio(b, a, ga or gb)}")
        mems = [r["tracemalloc_peak_mib"] for r in rows if r["kind"] == "memory" and r["model"] == "sam-lsh"
                and not r["skipped"] and r["tracemalloc_peak_mib"] is not None]
        if len(mems) > 1:
            mid = 0.5 * (max(mems) + min(mems))
            lines.append(f"- SAM LSH memory over the measured N: {min(mems):.3g} – {max(mems):.3g} MiB "
                         f"(tracemalloc; ±{100 * (max(mems) - mid) / mid:.0f}% about the midpoint)")
    return lines or ["- (no ratio: SAM LSH was not in this run)"]


# -- ``python -m refmann.bench.scaling --point SPEC`` ----------------------------------------------

def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m refmann.bench.scaling",
                                     description="one point of `refmann bench scaling`, in this process")
    parser.add_argument("--point", required=True, help='JSON: {"model", "N", "kinds", "config"}')
    args = parser.parse_args(argv)
    spec = json.loads(args.point)
    config = ScalingConfig(**spec["config"])
    rows = run_point(spec["model"], int(spec["N"]), spec["kinds"], config)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
