"""The write weights w^W = α(γ w^R + (1 − γ) 1_LRA): gradients, and the sparse form ≡ the dense one."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from refmann.testing import assert_gradients_match, assert_pure, distinct_indices, gates, memory_dims, simplex


@given(dims=memory_dims(), K=st.integers(1, 4), data=st.data())
def test_lra_interpolate_gradients_match_in_both_forms(dims, K, data):
    B, H, N, _ = dims
    alpha, gate = data.draw(gates((B, H))), data.draw(gates((B, H)))
    assert_gradients_match("lra_interpolate", data.draw(simplex((B, H, K))), alpha, gate)
    lra = data.draw(distinct_indices(N, (B, H, 1)))[..., 0]
    assert_gradients_match("lra_interpolate", data.draw(simplex((B, H, N))), alpha, gate, lra=lra)
    assert_pure("lra_interpolate", data.draw(simplex((B, H, N))), alpha, gate, lra=lra)


@given(dims=memory_dims(), data=st.data())
def test_the_sparse_form_scattered_equals_the_dense_form(dims, data):
    """SAM's K+1 weights on (read rows, LRA row) are DAM's N weights, when the K rows are all N rows."""
    B, H, N, _ = dims
    w, alpha, gate = data.draw(simplex((B, H, N))), data.draw(gates((B, H))), data.draw(gates((B, H)))
    lra = data.draw(distinct_indices(N, (B, H, 1)))[..., 0]
    sparse, sc = ops.lra_interpolate_forward(w, alpha, gate)  # (B, H, N+1): rows 0..N-1, then LRA
    dense, dc = ops.lra_interpolate_forward(w, alpha, gate, lra=lra)  # (B, H, N)
    scattered = sparse[..., :N].copy()
    np.put_along_axis(
        scattered, lra[..., None], np.take_along_axis(scattered, lra[..., None], -1) + sparse[..., N:], axis=-1
    )
    np.testing.assert_allclose(scattered, dense, rtol=1e-14, atol=1e-15)
    dw = data.draw(simplex((B, H, N)))
    dsparse = np.concatenate([dw, np.take_along_axis(dw, lra[..., None], -1)], axis=-1)
    for a, b in zip(ops.lra_interpolate_backward(dsparse, sc), ops.lra_interpolate_backward(dw, dc)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
