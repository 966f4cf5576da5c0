"""SAM's sparse write and content read: gradients, sparse ≡ dense, fast path ≡ reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from refmann.gradcheck import check_op
from refmann.testing import (
    assert_gradients_match,
    assert_linear_in_dout,
    assert_pure,
    away_from_zero,
    distinct_indices,
    f64,
    gates,
    indices,
    memory_dims,
)


@st.composite
def write_case(draw, force_duplicates=True):
    """A memory, J rows per head (repeats across and within heads), weights, words, and one erased row per head
    that is also written (as SAM's LRA row is)."""
    B, H, N, W = draw(memory_dims())
    J = draw(st.integers(1, 4))
    idx = draw(indices(N, (B, H, J), force_duplicates=force_duplicates))
    erase = idx[:, :, -1].copy()  # (B, H)
    return (draw(f64((B, N, W))), draw(gates((B, H, J))), draw(f64((B, H, W)))), {
        "indices": idx,
        "erase_indices": erase,
    }


@given(case=write_case())
def test_sparse_write_gradients_match_with_repeated_rows(case):
    arrays, hyper = case
    assert_gradients_match("sparse_write", *arrays, **hyper)


@given(case=write_case())
def test_sparse_write_is_pure_and_its_backward_linear(case):
    arrays, hyper = case
    assert_pure("sparse_write", *arrays, **hyper)
    assert_linear_in_dout("sparse_write", *arrays, **hyper)


@given(case=write_case())
def test_sparse_write_inplace_equals_the_pure_op_fused_or_not_and_journals_the_old_rows(case):
    (memory, weights, add), hyper = case
    expected, _ = ops.sparse_write_forward(memory, weights, add, **hyper)
    B = memory.shape[0]
    for fused in (True, False):
        live = memory.copy()
        old_rows, cache = ops.sparse_write_inplace(live, weights, add, fused=fused, **hyper)
        np.testing.assert_allclose(live, expected, rtol=0, atol=1e-15)
        flat = hyper["indices"].reshape(B, -1)
        np.testing.assert_array_equal(old_rows, np.take_along_axis(memory, flat[..., None], axis=1))
        for b in range(B):  # restoring the journal newest-first undoes the step
            for j in range(flat.shape[1] - 1, -1, -1):
                live[b, flat[b, j]] = old_rows[b, j]
        np.testing.assert_array_equal(live, memory)


@given(dims=memory_dims(), data=st.data())
def test_sparse_write_over_every_row_equals_the_dense_lra_write(dims, data):
    B, H, N, W = dims
    memory, weights, add = data.draw(f64((B, N, W))), data.draw(gates((B, H, N))), data.draw(f64((B, H, W)))
    erase = data.draw(distinct_indices(N, (B, min(H, N))))
    every = np.broadcast_to(np.arange(N), (B, H, N)).copy()
    sparse, sc = ops.sparse_write_forward(memory, weights, add, indices=every, erase_indices=erase)
    dense, dc = ops.lra_write_forward(memory, weights, add, erase_indices=erase)
    np.testing.assert_allclose(sparse, dense, rtol=1e-13, atol=1e-13)
    dnew = data.draw(f64((B, N, W)))
    for gs, gd in zip(ops.sparse_write_backward(dnew, sc), ops.lra_write_backward(dnew, dc)):
        np.testing.assert_allclose(gs, gd, rtol=1e-12, atol=1e-13)


def test_a_planted_sign_error_in_the_sparse_write_backward_is_caught():
    arrays, hyper = ops.OPS["sparse_write"].example(np.random.default_rng(0), ops.ExampleSizes())

    def wrong_backward(dnew, cache):
        dmemory, dweights, dadd = ops.sparse_write_backward(dnew, cache)
        return dmemory, -dweights, dadd  # the weights' gradient with the wrong sign

    report = check_op(ops.sparse_write_forward, wrong_backward, *arrays, **hyper)
    assert not report.ok(1e-6) and report.inputs[1].max_rel_error > 0.5 and report.inputs[0].max_rel_error < 1e-8


def test_the_sparse_write_refuses_rows_outside_the_memory():
    memory = np.zeros((1, 4, 2))
    with pytest.raises(ValueError, match=r"indices: expected indices in \[0, 4\)"):
        ops.sparse_write_inplace(
            memory, np.ones((1, 1, 1)), np.ones((1, 1, 2)), indices=np.array([[[4]]]), erase_indices=np.array([[0]])
        )
    with pytest.raises(ValueError, match="erase_indices"):
        ops.sparse_write_forward(
            memory, np.ones((1, 1, 1)), np.ones((1, 1, 2)), indices=np.array([[[1]]]), erase_indices=np.array([[-1]])
        )


# -- the content read over K rows ---------------------------------------------------------------------


@st.composite
def read_case(draw):
    B, H, N, W = draw(memory_dims())
    K = draw(st.integers(1, N))
    memory = draw(f64((B, N, W)))
    memory = memory + np.where(np.linalg.norm(memory, axis=-1, keepdims=True) < 0.1, 0.5, 0.0)  # off ‖m‖ = 0
    keys = draw(away_from_zero((B, H, W), margin=0.2))
    return memory, keys, draw(f64((B, H), 0.5, 10.0)), draw(distinct_indices(N, (B, H, K)))


@pytest.mark.parametrize("fused", [False, True])
@given(case=read_case())
def test_sparse_content_read_gradients_match(case, fused):
    memory, keys, beta, idx = case
    assert_gradients_match("sparse_content_read", memory, keys, beta, indices=idx, fused=fused)


@given(case=read_case(), data=st.data())
def test_the_fused_content_read_equals_the_reference_ops_in_values_and_gradients(case, data):
    memory, keys, beta, idx = case
    (w_f, r_f), c_f = ops.sparse_content_read_forward(memory, keys, beta, indices=idx, fused=True)
    (w_r, r_r), c_r = ops.sparse_content_read_forward(memory, keys, beta, indices=idx, fused=False)
    np.testing.assert_allclose(w_f, w_r, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(r_f, r_r, rtol=1e-13, atol=1e-14)
    dw, dr = data.draw(f64(w_f.shape)), data.draw(f64(r_f.shape))
    g_f = ops.sparse_content_read_backward((dw, dr), c_f)
    g_r = ops.sparse_content_read_backward((dw, dr), c_r)
    np.testing.assert_allclose(ops.densify_rows(g_f[0]), ops.densify_rows(g_r[0]), rtol=1e-11, atol=1e-12)
    for a, b in zip(g_f[1:], g_r[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


@given(case=read_case())
def test_the_content_read_over_every_row_equals_dense_content_weights_and_read(case):
    memory, keys, beta, _ = case
    B, N, _ = memory.shape
    every = np.broadcast_to(np.arange(N), (B, keys.shape[1], N)).copy()
    for fused in (False, True):
        (w, r), _ = ops.sparse_content_read_forward(memory, keys, beta, indices=every, fused=fused)
        w_dense, _ = ops.content_weights_forward(memory, keys, beta)
        r_dense, _ = ops.dense_read_forward(memory, w_dense)
        np.testing.assert_allclose(w, w_dense, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(r, r_dense, rtol=1e-12, atol=1e-14)


def test_the_content_read_backward_never_returns_an_n_sized_array():
    memory = np.random.default_rng(0).standard_normal((2, 10_000, 3))
    idx = np.array([[[5, 9]], [[0, 9_999]]])
    (w, r), cache = ops.sparse_content_read_forward(
        memory, np.ones((2, 1, 3)), np.ones((2, 1)), indices=idx, fused=True
    )
    dmemory, _, _ = ops.sparse_content_read_backward((np.zeros_like(w), np.ones_like(r)), cache)
    assert isinstance(dmemory, ops.RowGrad) and dmemory.rows.shape == (2, 2, 3)


def test_a_dropped_row_cache_must_be_given_back():
    memory = np.ones((1, 4, 2))
    (w, r), cache = ops.sparse_content_read_forward(
        memory, np.ones((1, 1, 2)), np.ones((1, 1)), indices=np.array([[[0, 1]]]), fused=True
    )
    with pytest.raises(ValueError, match="rows were dropped"):
        ops.sparse_content_read_backward((w, r), cache._replace(rows=None))
