"""kernels/content_read.py: SAM's fused content read (forward and backward) and its plain-Python twin equal
the ops it fuses.

Under NUMBA_DISABLE_JIT=1 the kernels *are* the twins, and the comparison with the ops is what counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops

pytestmark = pytest.mark.kernel


@given(data=st.data(), B=st.integers(1, 3), H=st.integers(1, 3), K=st.integers(1, 5), W=st.integers(2, 6))
def test_fused_content_read_kernel_and_twin_equal_the_ops_forward_and_backward(data, B, H, K, W):
    """SAM's fused read == ops.content_weights then ops.dense_read on each head's K rows (values and VJP)."""
    from refmann.kernels import content_read as cr

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rows = rng.standard_normal((B, H, K, W))
    if data.draw(st.booleans()):
        rows[0, 0, 0] = 0.0  # a zero row: its unit vector reads as 0
    q, beta = rng.standard_normal((B, H, W)), 1.0 + rng.random((B, H)) * 5
    dreads, dw_extra = rng.standard_normal((B, H, W)), rng.standard_normal((B, H, K))
    flat = rows.reshape(B * H, K, W)
    w_ref, cw_cache = ops.content_weights_forward(flat, q.reshape(B * H, 1, W), beta.reshape(B * H, 1))
    r_ref, read_cache = ops.dense_read_forward(flat, w_ref)
    drows_r, dw_r = ops.dense_read_backward(dreads.reshape(B * H, 1, W), read_cache)
    drows_c, dq_ref, dbeta_ref = ops.content_weights_backward(dw_r + dw_extra.reshape(B * H, 1, K), cw_cache)
    for forward, backward in (
        (cr.content_read_forward_kernel, cr.content_read_backward_kernel),
        (cr._content_read_forward_loops, cr._content_read_backward_loops),
    ):
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
