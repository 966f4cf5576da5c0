"""DeferredGrads: BPTT's batched weight outer products equal the per-step sum."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.models.base import DeferredGrads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(steps=st.integers(1, 40), B=st.integers(1, 4), I=st.integers(1, 9), O=st.integers(1, 7),
       seed=st.integers(0, 2**32 - 1))
def test_deferred_outer_products_equal_the_per_step_sum_and_land_in_place(dtype, steps, B, I, O, seed):
    rng = np.random.default_rng(seed)
    start = rng.standard_normal((I, O)).astype(dtype)
    grads = DeferredGrads({"w": start.copy()})
    target = grads["w"]
    expected = start.astype(np.float64)
    for _ in range(steps):                                   # crosses the every-16 flush several times
        x, dy = rng.standard_normal((B, I)).astype(dtype), rng.standard_normal((B, O)).astype(dtype)
        grads.defer("w", x, dy)
        expected += x.astype(np.float64).T @ dy.astype(np.float64)
    grads.flush()
    assert grads["w"] is target                              # accumulated into the same array
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(grads["w"], expected, rtol=tol, atol=tol * steps)
    grads.flush()                                            # nothing pending: a no-op
    np.testing.assert_allclose(grads["w"], expected, rtol=tol, atol=tol * steps)
