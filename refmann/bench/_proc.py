"""What the benchmarks read about the machine and the process: /proc, peak RSS, tracemalloc.

- :func:`machine_info`: the CPU, cores, RAM, load and the versions that decide the speed (one line:
  :func:`machine_line`);
- :func:`proc_status`: VmRSS (resident now) and VmHWM (peak resident) of a process, in bytes;
- :class:`PeakRSS`: the peak RSS increase over a block (the kernel's counter after a reset through
  ``/proc/self/clear_refs``, else a sampling thread);
- :class:`TracedPeak`: the peak of the bytes ``tracemalloc`` traces over a block (NumPy's allocations
  are traced): deterministic and exact, where RSS counts pages and may reuse pages freed earlier.

Where ``/proc`` is missing (not Linux) the readings are absent (``{}``, None), never an error.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

MIB = 2.0**20
GIB = 2.0**30


def mib(nbytes):
    """Bytes in MiB (None stays None)."""
    return None if nbytes is None else nbytes / MIB


def _read_kib(path, names) -> dict:
    """The ``Name:   1234 kB`` lines of a /proc file whose name is in ``names``, in bytes ({} if unreadable)."""
    out = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(path).read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in names:
                out[key] = int(line.split()[1]) * 1024
    return out


def proc_status(pid="self") -> dict:
    """VmRSS and VmHWM of process ``pid`` (default: this one) in bytes ({} where /proc is missing)."""
    return _read_kib(f"/proc/{pid}/status", ("VmRSS", "VmHWM"))


def blas_kernels() -> str:
    """The BLAS library and the CPU kernels it picked, e.g. ``OpenBLAS SkylakeX`` (threadpoolctl).

    OpenBLAS chooses its kernels by CPU at load time (``OPENBLAS_CORETYPE`` overrides the choice);
    kernels of another architecture round differently, so a training run's numbers, which are
    bit-identical from run to run on one machine, differ between machines whose kernels differ
    (docs/results.md, "Seeds, machines and BLAS kernels"). ``"unknown"`` if nothing is reported."""
    from threadpoolctl import threadpool_info

    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            name = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(
                lib.get("internal_api"), lib.get("internal_api")
            )
            return f"{name} {lib.get('architecture') or ''}".strip()
    return "unknown"


def machine_info() -> dict:
    """CPU model, cores, RAM, load, and the versions that decide the speed (numpy, numba, JIT on/off)
    and the numbers (the BLAS kernels: :func:`blas_kernels`)."""
    from .. import __version__, _jit

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_total = _read_kib("/proc/meminfo", ("MemTotal",)).get("MemTotal")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": None if mem_total is None else round(mem_total / GIB, 1),
        "load_average_1min": None if load is None else round(load, 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": _jit.NUMBA_VERSION or "not installed",
        "jit": "on" if _jit.JIT_ENABLED else "off",
        "refmann": __version__,
        "platform": platform.platform(),
        "blas_threads": 1,
        "blas": blas_kernels(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def machine_line(machine: dict) -> str:
    """:func:`machine_info` on one line, as the benchmarks and experiments print it under their tables."""
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, load "
        f"{machine['load_average_1min']}; numpy {machine['numpy']}, numba {machine['numba']} (JIT "
        f"{machine['jit']}), Python {machine['python']}, {machine.get('blas', 'BLAS')} kernels, one BLAS thread; "
        f"{machine['date']}"
    )


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_memory():
    """Collect garbage and hand freed heap pages back to the system (glibc), so RSS starts low."""
    gc.collect()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Peak RSS increase over a block: the kernel's counter after a reset, else a sampling thread.

    After the block: ``before`` (RSS at entry, bytes), ``peak`` (bytes, None if unavailable), ``increase``
    (``peak - before``, at least 0, or None) and ``method`` ("clear_refs", "sampled" or "unavailable").
    """

    def __enter__(self):
        release_memory()
        self.before = proc_status().get("VmRSS")
        self.method = "clear_refs" if reset_peak_rss() else ("sampled" if self.before is not None else "unavailable")
        self._peak, self._stop = self.before or 0, threading.Event()
        if self.method == "sampled":

            def sample():
                while not self._stop.wait(0.002):
                    self._peak = max(self._peak, proc_status().get("VmRSS", 0))

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        status = proc_status()
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


class TracedPeak:
    """Peak of the bytes traced by ``tracemalloc`` over a block (``peak``, bytes), on a freshly collected heap."""

    def __enter__(self):
        release_memory()
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        try:
            self.peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return False


def check_dtypes(dtypes) -> tuple[str, ...]:
    """The benchmarks' ``dtypes``: one or more of float32/float64, deduplicated in order."""
    if isinstance(dtypes, str):
        dtypes = (dtypes,)
    out = []
    for d in dtypes:
        try:
            name = np.dtype(d).name
        except TypeError:
            name = str(d)
        if name not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {d!r}")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("dtype: expected at least one of 'float32', 'float64', got none")
    return tuple(out)
