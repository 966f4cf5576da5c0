"""The gradient sink: DeferredGrads (batched gemm, the fast path) equals Grads (the reference)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.grads import DeferredGrads, Grads
from refmann.ops import RowGrad, densify_rows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(
    steps=st.integers(1, 40),
    B=st.integers(1, 4),
    I=st.integers(1, 9),
    O=st.integers(1, 7),
    seed=st.integers(0, 2**32 - 1),
)
def test_deferred_grads_equal_the_plain_grads_and_land_in_place(dtype, steps, B, I, O, seed):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((I, O)).astype(dtype), "b": np.zeros(O, dtype)}
    fast, reference = DeferredGrads(params), Grads(params)
    target = fast["w"]
    expected = np.zeros((I, O))
    for _ in range(steps):  # crosses the every-16 flush several times
        x, dy = rng.standard_normal((B, I)).astype(dtype), rng.standard_normal((B, O)).astype(dtype)
        for sink in (fast, reference):
            sink.add_outer("w", x, dy)
            sink.add("b", dy.sum(axis=0))
        expected += x.astype(np.float64).T @ dy.astype(np.float64)
    got, ref = fast.result(), reference.result()
    assert got["w"] is target  # accumulated into the same array
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got["w"], expected, rtol=tol, atol=tol * steps)
    np.testing.assert_allclose(got["w"], ref["w"], rtol=tol, atol=tol * steps)
    np.testing.assert_array_equal(got["b"], ref["b"])
    assert set(got) == set(params)


@given(J=st.integers(0, 12), N=st.integers(1, 6), D=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_row_gradients_stay_row_sparse_and_sum_like_the_dense_gradient(J, N, D, seed):
    rng = np.random.default_rng(seed)
    params = {"table": rng.standard_normal((N, D)), "dense": np.zeros((N, D))}
    sink = Grads(params, sparse=["table"])
    expected = np.zeros((N, D))
    for _ in range(3):
        idx = rng.integers(0, N, J)  # repeats must add up
        rows = rng.standard_normal((J, D))
        sink.add_rows("table", RowGrad(idx, rows, N))
        sink.add_rows("dense", RowGrad(idx, rows, N))
        np.add.at(expected, idx, rows)
    out = sink.result()
    assert isinstance(out["table"], RowGrad) and out["table"].rows.shape == (3 * J, D)
    np.testing.assert_allclose(densify_rows(out["table"]), expected, atol=1e-12)
    np.testing.assert_allclose(out["dense"], expected, atol=1e-12)


def test_grads_reject_a_gradient_of_the_wrong_shape_and_unknown_sparse_keys():
    sink = Grads({"w": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="g: expected shape"):
        sink.add("w", np.zeros(3))
    with pytest.raises(ValueError, match="sparse"):
        Grads({"w": np.zeros(2)}, sparse=["v"])
