"""kernels/sparse_write.py: each compiled kernel equals its plain-Python ``_…_loops`` twin, and both equal
the NumPy references of tests/naive.py, on rows listed more than once (where a scatter could lose an update
and a restore could put back the wrong contents).

These test the kernels' own signatures, whoever calls them. Under NUMBA_DISABLE_JIT=1 the kernels *are*
the twins, and the comparison with naive.py is what counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann.kernels import sparse_write as sw
from refmann.testing import f64, indices
from tests.naive import naive_accessed_slots, naive_restore_rows, naive_sparse_write

pytestmark = pytest.mark.kernel

WRITE = {"compiled": sw.sparse_write_inplace_kernel, "twin": sw._sparse_write_inplace_loops}
RESTORE = {"compiled": sw.restore_rows_kernel, "twin": sw._restore_rows_loops}
ACCESSED = {"compiled": sw.accessed_slots_kernel, "twin": sw._accessed_slots_loops}
DELTA = 0.005  # SAM's access threshold δ


@st.composite
def sparse_writes(draw):
    """A SAM-shaped write: H heads of ``per_head`` rows each (J = H·per_head), rows repeated, an erase list
    drawn from the written rows (as the LRA rows are)."""
    B, N, W = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    H, per_head = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    J = H * per_head
    memory = draw(f64((B, N, W)))
    idx = draw(indices(N, (B, J), force_duplicates=True))
    E = draw(st.integers(1, J))
    picks = draw(arrays(np.int64, (B, E), elements=st.integers(0, J - 1)))
    erase = np.take_along_axis(idx, picks, axis=1)  # every erased row is also written
    w = draw(f64((B, J), 0.0, 1.0))
    add = draw(f64((B, H, W)))
    return memory, erase, idx, w, add, per_head


@given(problem=sparse_writes())
def test_sparse_write_kernel_and_twin_equal_erase_then_add_at_and_restore_undoes_them(problem):
    memory0, erase, idx, w, add, per_head = problem
    expected, expected_journal = naive_sparse_write(memory0, erase, idx, w, add, per_head)
    results = {}
    for name, write in WRITE.items():
        memory = memory0.copy()
        journal = np.full(idx.shape + (memory.shape[2],), np.nan)
        write(memory, erase, idx, w, add, per_head, journal)
        np.testing.assert_allclose(memory, expected, rtol=1e-14, atol=1e-15)
        np.testing.assert_array_equal(journal, expected_journal)  # rows as they were, even when repeated
        results[name] = memory.copy(), journal
        RESTORE[name](memory, idx, journal)
        np.testing.assert_array_equal(memory, memory0)  # the step undone, bit for bit
    for x, y in zip(results["compiled"], results["twin"]):
        np.testing.assert_array_equal(x, y)


@given(data=st.data(), B=st.integers(1, 3), N=st.integers(1, 6), J=st.integers(1, 6), W=st.integers(1, 3))
def test_restore_rows_kernel_and_twin_let_the_first_listing_of_a_repeated_row_win(data, B, N, J, W):
    memory0 = data.draw(f64((B, N, W)))
    idx = data.draw(indices(N, (B, J), force_duplicates=True))
    rows = data.draw(f64((B, J, W)))
    expected = naive_restore_rows(memory0, idx, rows)
    for restore in RESTORE.values():
        memory = memory0.copy()
        restore(memory, idx, rows)
        np.testing.assert_array_equal(memory, expected)


VALUES = st.one_of(st.sampled_from([0.0, DELTA / 2, DELTA, 2 * DELTA, 0.001, 0.004]), st.floats(0.0, 1.0))


@given(data=st.data(), B=st.integers(1, 3), N=st.integers(1, 8), J=st.integers(1, 10))
def test_accessed_slots_kernel_and_twin_sum_repeated_slots_before_thresholding(data, B, N, J):
    """Values at and around δ (δ/2 + δ/2 = δ is not "> δ"; 0.004 + 0.004 is) on repeated slots."""
    slots = data.draw(indices(N, (B, J), force_duplicates=True))
    values = data.draw(arrays(np.float64, (B, J), elements=VALUES))
    expected = naive_accessed_slots(slots, values, DELTA)
    outs = []
    for accessed in ACCESSED.values():
        out = np.full((B, J), -9, np.int64)
        accessed(slots, values, DELTA, out)
        np.testing.assert_array_equal(out, expected)
        outs.append(out)
    np.testing.assert_array_equal(*outs)


def test_a_slot_accessed_twice_below_delta_each_time_counts_as_accessed():
    """0.003 + 0.003 > δ = 0.005 although neither access alone is: the sum decides, not each access."""
    slots, values = np.array([[4, 1, 4]]), np.array([[0.003, 0.001, 0.003]])
    for accessed in ACCESSED.values():
        out = np.empty((1, 3), np.int64)
        accessed(slots, values, DELTA, out)
        np.testing.assert_array_equal(out, [[4, -1, -1]])
