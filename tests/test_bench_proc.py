"""What the benchmarks read about the machine and the process (refmann.bench._proc)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refmann import _jit
from refmann.bench._proc import MIB, PeakRSS, TracedPeak, machine_info, mib, proc_status

linux = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")


@linux
def test_proc_status_reads_rss_and_its_peak_in_bytes():
    status = proc_status()
    assert set(status) == {"VmRSS", "VmHWM"}
    assert 0 < status["VmRSS"] <= status["VmHWM"] and status["VmRSS"] % 1024 == 0


def test_proc_status_of_a_process_that_does_not_exist_is_empty():
    assert proc_status(10**9) == {}


def test_mib_converts_bytes_and_keeps_none():
    assert mib(3 * MIB) == 3.0 and mib(None) is None


@linux
def test_peak_rss_sees_an_allocation_held_over_the_block():
    with PeakRSS() as rss:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, every page written
    assert rss.method in ("clear_refs", "sampled")
    assert rss.increase >= 32 * MIB and rss.peak >= rss.before + rss.increase
    del block


def test_traced_peak_counts_an_allocation_freed_inside_the_block():
    with TracedPeak() as traced:
        block = np.ones(10**6)  # 8 MB, then freed
        del block
    assert traced.peak >= 8 * 10**6


def test_machine_info_reports_the_versions_that_decide_the_speed():
    info = machine_info()
    assert list(info) == [
        "cpu",
        "cores",
        "memory_gib",
        "load_average_1min",
        "python",
        "numpy",
        "numba",
        "jit",
        "refmann",
        "platform",
        "blas_threads",
        "blas",
        "date",
    ]
    assert info["blas"] != "unknown"  # numpy's own BLAS is always found (OpenBLAS in numpy's wheels)
    assert info["numba"] == (_jit.NUMBA_VERSION or "not installed") and info["numpy"] == np.__version__
    assert info["jit"] == ("on" if _jit.JIT_ENABLED else "off")


@pytest.mark.skipif(_jit.NUMBA_VERSION is None, reason="numba is not installed")
def test_with_the_jit_off_numba_is_still_reported_but_never_imported():
    code = (
        "import json, sys; from refmann.bench._proc import machine_info; "
        "print(json.dumps([machine_info()['numba'], machine_info()['jit'], 'numba' in sys.modules]))"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [_jit.NUMBA_VERSION, "off", False]
