"""BLAS threads: refmann's matrices are small (a few hundred rows), where a second BLAS thread never
helps and, when the cores are busy (two trainings, pytest-xdist workers), makes every matrix product
wait for a spinning thread — measured at 30 ms instead of 0.1 ms for one LSTM backward. Long jobs
(training, benchmarks) therefore run with one BLAS thread."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread inside the block (a no-op if threadpoolctl is missing)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
