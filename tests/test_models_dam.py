"""DAM: the least-used slots against brute force from the trace."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.model_cases import build, problems


@given(problem=problems(), seed=st.integers(0, 2**16), delta=st.sampled_from([0.005, 0.05, 0.3]))
def test_dam_timestamp_lra_is_the_argmin_of_the_last_access_times(problem, seed, delta):
    """Brute force from the trace: times start at −N..−1, slots accessed at step t get time t, and the
    H least-used slots are the H smallest times (ties by index)."""
    sizes, x, _, _ = problem
    N, H = sizes["N"], sizes["H"]
    model = build("dam", sizes, seed=seed, usage="timestamp", delta=delta)
    model.forward(x)
    times = np.tile(np.arange(-N, 0, dtype=float), (sizes["B"], 1))  # (B, N)
    for t, (lra, accessed) in enumerate(model.last_trace, start=1):
        assert accessed.shape == (sizes["B"], N) and accessed.dtype == np.bool_
        np.testing.assert_array_equal(lra, np.argsort(times, axis=1, kind="stable")[:, :H], err_msg=f"step {t}")
        times = np.where(accessed, float(t), times)


@pytest.mark.parametrize("usage", ["discounted", "timestamp"])
@given(problem=problems(), seed=st.integers(0, 2**16))
def test_dam_lra_slots_are_valid_and_distinct_per_sequence(usage, problem, seed):
    sizes, x, _, _ = problem
    model = build("dam", sizes, seed=seed, usage=usage)
    model.forward(x)
    assert len(model.last_trace) == sizes["T"]
    for lra, _ in model.last_trace:
        assert lra.shape == (sizes["B"], sizes["H"])
        assert np.all((lra >= 0) & (lra < sizes["N"]))
        assert all(len(set(row)) == sizes["H"] for row in lra.tolist())
