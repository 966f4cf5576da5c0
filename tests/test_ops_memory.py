import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure
from tests.strategies import distinct_indices, f64, gates, indices, memory_dims, simplex


@given(dims=memory_dims(), data=st.data())
def test_dense_read_gradients_match(dims, data):
    B, H, N, W = dims
    assert_gradients_match("dense_read", data.draw(f64((B, N, W))), data.draw(simplex((B, H, N))))


@given(dims=memory_dims(), data=st.data())
def test_dense_write_gradients_match_with_several_heads(dims, data):
    B, H, N, W = dims
    assert_gradients_match(
        "dense_write",
        data.draw(f64((B, N, W))),
        data.draw(simplex((B, H, N))),
        data.draw(gates((B, H, W))),
        data.draw(f64((B, H, W))),
    )


def test_dense_write_backward_handles_a_full_erase():
    """An erase of exactly 1 with weight 1 zeroes a product factor; prefix/suffix products need no division."""
    rng = np.random.default_rng(0)
    M = rng.standard_normal((1, 3, 2))
    w = np.array([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]])
    e = np.array([[[1.0, 1.0], [0.3, 0.6]]])
    a = rng.standard_normal((1, 2, 2))
    out, cache = ops.dense_write_forward(M, w, e, a)
    grads = ops.dense_write_backward(np.ones_like(out), cache)
    assert all(np.all(np.isfinite(g)) for g in grads)


@given(dims=memory_dims(), data=st.data())
def test_dense_write_with_zero_weights_is_the_identity(dims, data):
    B, H, N, W = dims
    M = data.draw(f64((B, N, W)))
    out, _ = ops.dense_write_forward(M, np.zeros((B, H, N)), data.draw(gates((B, H, W))), data.draw(f64((B, H, W))))
    np.testing.assert_array_equal(out, M)


def test_dense_write_with_one_head_is_erase_then_add():
    rng = np.random.default_rng(3)
    M, w = rng.standard_normal((2, 5, 3)), rng.dirichlet(np.ones(5), size=(2, 1))
    e, a = rng.random((2, 1, 3)), rng.standard_normal((2, 1, 3))
    out, _ = ops.dense_write_forward(M, w, e, a)
    erased = M * (1 - w[:, 0, :, None] * e[:, 0, None, :])
    np.testing.assert_allclose(out, erased + w[:, 0, :, None] * a[:, 0, None, :], rtol=1e-14)


@st.composite
def sparse_case(draw, duplicates=False):
    B, H, N, W = draw(memory_dims())
    K = draw(st.integers(1, N))
    idx = draw(indices(N, (B, H, K), force_duplicates=True) if duplicates else distinct_indices(N, (B, H, K)))
    return draw(f64((B, N, W))), draw(simplex((B, H, K))), idx


@given(case=sparse_case())
def test_sparse_read_gradients_match(case):
    M, w, idx = case
    assert_gradients_match("sparse_read", M, w, indices=idx)


@given(case=sparse_case(duplicates=True))
def test_sparse_read_gradients_match_with_repeated_indices(case):
    M, w, idx = case
    assert_gradients_match("sparse_read", M, w, indices=idx)


@given(dims=memory_dims(), data=st.data())
def test_sparse_read_over_all_n_rows_equals_dense_read(dims, data):
    B, H, N, W = dims
    M, w = data.draw(f64((B, N, W))), data.draw(simplex((B, H, N)))
    perm = data.draw(distinct_indices(N, (B, H, N)))  # every row, in a random order
    w_sparse = np.take_along_axis(w, perm, axis=-1)
    r_sparse, c_sparse = ops.sparse_read_forward(M, w_sparse, indices=perm)
    r_dense, c_dense = ops.dense_read_forward(M, w)
    np.testing.assert_allclose(r_sparse, r_dense, rtol=1e-12, atol=1e-14)
    dr = data.draw(f64((B, H, W)))
    dM_sparse, dw_sparse = ops.sparse_read_backward(dr, c_sparse)
    dM_dense, dw_dense = ops.dense_read_backward(dr, c_dense)
    np.testing.assert_allclose(ops.densify_rows(dM_sparse), dM_dense, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dw_sparse, np.take_along_axis(dw_dense, perm, axis=-1), rtol=1e-12, atol=1e-14)


def test_sparse_read_backward_returns_row_gradients_not_an_n_sized_array():
    N, K = 10_000, 4
    rng = np.random.default_rng(0)
    M = rng.standard_normal((2, N, 8))
    idx = rng.integers(0, N, (2, 3, K))
    r, cache = ops.sparse_read_forward(M, rng.dirichlet(np.ones(K), size=(2, 3)), indices=idx)
    dM, dw = ops.sparse_read_backward(np.ones_like(r), cache)
    assert isinstance(dM, ops.RowGrad)
    assert dM.rows.shape == (2, 3 * K, 8) and dM.indices.shape == (2, 3 * K) and dM.num_rows == N
    assert cache.rows.shape == (2, 3, K, 8)  # the cache holds K rows, not the memory
    assert all(np.size(field) < N for field in cache if isinstance(field, np.ndarray))


@given(data=st.data(), B=st.integers(1, 3), J=st.integers(2, 8), N=st.integers(1, 5), W=st.integers(1, 3))
def test_scatter_add_gradients_match_with_duplicates(data, B, J, N, W):
    rows = data.draw(f64((B, J, W)))
    idx = data.draw(indices(N, (B, J), force_duplicates=True))
    assert_gradients_match("scatter_add", rows, indices=idx, num_rows=N)


@given(data=st.data(), B=st.integers(1, 3), J=st.integers(2, 8), N=st.integers(1, 5), W=st.integers(1, 3))
def test_densify_rows_accumulates_duplicates_like_add_at(data, B, J, N, W):
    rows = data.draw(f64((B, J, W)))
    idx = data.draw(indices(N, (B, J), force_duplicates=True))
    expected = np.zeros((B, N, W))
    for b in range(B):
        np.add.at(expected[b], idx[b], rows[b])
    np.testing.assert_allclose(ops.densify_rows(ops.RowGrad(idx, rows, N)), expected, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", ["dense_read", "dense_write", "sparse_read", "scatter_add"])
def test_memory_ops_are_pure_and_linear_in_dout(name):
    rng = np.random.default_rng(0)
    M = rng.standard_normal((2, 5, 3))
    w = rng.dirichlet(np.ones(5), size=(2, 2))
    idx = np.array([[[0, 3], [3, 3]], [[4, 1], [2, 0]]])
    cases = {
        "dense_read": ((M, w), {}),
        "dense_write": ((M, w, rng.random((2, 2, 3)), rng.standard_normal((2, 2, 3))), {}),
        "sparse_read": ((M, rng.dirichlet(np.ones(2), size=(2, 2))), {"indices": idx}),
        "scatter_add": ((rng.standard_normal((2, 4, 3)),), {"indices": idx.reshape(2, 4), "num_rows": 5}),
    }
    inputs, hyper = cases[name]
    assert_pure(name, *inputs, **hyper)
    assert_linear_in_dout(name, *inputs, **hyper)


@given(dims=memory_dims(), data=st.data())
def test_lra_write_gradients_match(dims, data):
    B, H, N, W = dims
    erase = data.draw(indices(N, (B, H)))
    assert_gradients_match(
        "lra_write",
        data.draw(f64((B, N, W))),
        data.draw(simplex((B, H, N))),
        data.draw(f64((B, H, W))),
        erase_indices=erase,
    )


def test_lra_write_zeroes_the_erased_rows_then_adds():
    M = np.ones((1, 4, 2))
    w = np.zeros((1, 1, 4))
    w[0, 0, 2] = 0.5
    out, _ = ops.lra_write_forward(M, w, np.full((1, 1, 2), 4.0), erase_indices=np.array([[2]]))
    np.testing.assert_array_equal(out[0], [[1, 1], [1, 1], [2, 2], [1, 1]])
