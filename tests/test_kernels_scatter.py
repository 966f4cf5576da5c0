"""kernels/scatter.py: the compiled scatter-add and gather kernels and their plain-Python twins equal
``np.add.at`` (duplicates included) and fancy indexing.

Under NUMBA_DISABLE_JIT=1 the kernels *are* the twins, and the comparison with the naive reference is what counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.kernels import scatter
from tests.strategies import f64, indices

pytestmark = pytest.mark.kernel


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
