"""kernels/topk.py: the compiled top-k kernel and its plain-Python twin equal a lexsort (ties by index),
and the JIT flag follows the environment.

Under NUMBA_DISABLE_JIT=1 the kernels *are* the twins, and the comparison with the naive reference is what counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann import _jit, ops
from refmann.kernels import topk
from tests.naive import naive_top_k

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


def test_jit_flag_reflects_the_environment():
    import os

    disabled = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
    assert _jit.JIT_ENABLED is (not disabled)
    if _jit.JIT_ENABLED:
        assert topk.top_k_kernel is not topk._top_k_loops
    else:
        assert topk.top_k_kernel is topk._top_k_loops
