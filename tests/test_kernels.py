"""Every Numba kernel equals its plain-Python twin and a naive NumPy reference.

CI also runs this file with NUMBA_DISABLE_JIT=1, where the kernels *are* the twins (the
comparison with the naive reference is then what counts).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann import _jit, ops
from refmann.kernels import scatter, topk
from tests.naive import naive_top_k
from tests.strategies import f64, indices

pytestmark = pytest.mark.kernel


@given(data=st.data(), R=st.integers(1, 4), N=st.integers(1, 12))
def test_top_k_kernel_and_twin_equal_lexsort_with_many_ties(data, R, N):
    k = data.draw(st.integers(1, N))
    scores = data.draw(arrays(np.float64, (R, N), elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0])))
    expected = naive_top_k(scores, k)
    compiled = np.empty((R, k), np.int64)
    topk.top_k_kernel(scores, k, compiled)
    python = np.empty((R, k), np.int64)
    topk._top_k_loops(scores, k, python)
    np.testing.assert_array_equal(compiled, expected)
    np.testing.assert_array_equal(python, expected)
    idx, values = ops.top_k(scores, k)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, -1))


@given(data=st.data(), B=st.integers(1, 3), J=st.integers(1, 8), N=st.integers(1, 5), W=st.integers(1, 3))
def test_scatter_add_kernel_and_twin_equal_add_at_with_duplicates(data, B, J, N, W):
    rows = data.draw(f64((B, J, W)))
    idx = data.draw(indices(N, (B, J), force_duplicates=True))
    expected = np.zeros((B, N, W))
    for b in range(B):
        np.add.at(expected[b], idx[b], rows[b])
    for fn in (scatter.scatter_add_rows_kernel, scatter._scatter_add_rows_loops):
        out = np.zeros((B, N, W))
        fn(out, idx, rows)
        np.testing.assert_allclose(out, expected, rtol=1e-14, atol=1e-15)


def test_plain_fancy_index_add_loses_duplicates_but_the_kernel_does_not():
    """Why the kernel exists: ``out[idx] += rows`` keeps only one of the duplicate updates."""
    rows = np.ones((1, 3, 2))
    idx = np.array([[1, 1, 1]])
    lossy = np.zeros((1, 3, 2))
    lossy[0, idx[0]] += rows[0]
    out = np.zeros((1, 3, 2))
    scatter.scatter_add_rows_kernel(out, idx, rows)
    assert lossy[0, 1, 0] == 1.0 and out[0, 1, 0] == 3.0


@given(data=st.data(), B=st.integers(1, 3), J=st.integers(1, 8), N=st.integers(1, 5), W=st.integers(1, 3))
def test_gather_kernel_and_twin_equal_fancy_indexing(data, B, J, N, W):
    table = data.draw(f64((B, N, W)))
    idx = data.draw(indices(N, (B, J)))
    expected = np.stack([table[b, idx[b]] for b in range(B)])
    for fn in (scatter.gather_rows_kernel, scatter._gather_rows_loops):
        out = np.empty((B, J, W))
        fn(out, table, idx)
        np.testing.assert_array_equal(out, expected)


def test_jit_flag_reflects_the_environment():
    import os

    disabled = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
    assert _jit.JIT_ENABLED is (not disabled)
    if _jit.JIT_ENABLED:
        assert topk.top_k_kernel is not topk._top_k_loops
    else:
        assert topk.top_k_kernel is topk._top_k_loops


@given(data=st.data(), B=st.integers(1, 3), H=st.integers(1, 3), K=st.integers(1, 5), W=st.integers(2, 6))
def test_fused_content_read_kernel_and_twin_equal_the_ops_forward_and_backward(data, B, H, K, W):
    """SAM's fused read == ops.content_weights then ops.dense_read on each head's K rows (values and VJP)."""
    from refmann.kernels import content_read as cr

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rows = rng.standard_normal((B, H, K, W))
    if data.draw(st.booleans()):
        rows[0, 0, 0] = 0.0                                  # a zero row: its unit vector reads as 0
    q, beta = rng.standard_normal((B, H, W)), 1.0 + rng.random((B, H)) * 5
    dreads, dw_extra = rng.standard_normal((B, H, W)), rng.standard_normal((B, H, K))
    flat = rows.reshape(B * H, K, W)
    w_ref, cw_cache = ops.content_weights_forward(flat, q.reshape(B * H, 1, W), beta.reshape(B * H, 1))
    r_ref, read_cache = ops.dense_read_forward(flat, w_ref)
    drows_r, dw_r = ops.dense_read_backward(dreads.reshape(B * H, 1, W), read_cache)
    drows_c, dq_ref, dbeta_ref = ops.content_weights_backward(dw_r + dw_extra.reshape(B * H, 1, K), cw_cache)
    for forward, backward in ((cr.content_read_forward_kernel, cr.content_read_backward_kernel),
                              (cr._content_read_forward_loops, cr._content_read_backward_loops)):
        w, sim, rnorm = (np.empty((B, H, K)) for _ in range(3))
        reads, qnorm = np.empty((B, H, W)), np.empty((B, H))
        forward(rows, q, beta, 1e-6, w, reads, sim, qnorm, rnorm)
        np.testing.assert_allclose(w.reshape(B * H, 1, K), w_ref, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(reads.reshape(B * H, 1, W), r_ref, rtol=1e-12, atol=1e-14)
        drows, dq, dbeta = np.empty_like(rows), np.empty_like(q), np.empty_like(beta)
        backward(dreads, dw_extra, rows, q, beta, 1e-6, w, sim, qnorm, rnorm, drows, dq, dbeta)
        np.testing.assert_allclose(drows.reshape(B * H, K, W), drows_r + drows_c, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dq.reshape(B * H, 1, W), dq_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dbeta.reshape(B * H, 1), dbeta_ref, rtol=1e-10, atol=1e-12)
