"""kernels/embedding_bag.py: the compiled reverse-indices kernel equals its plain-Python twin bit for bit, and both
equal a naive sequential sum; the counts, segment offsets and reverse map are a stable counting sort.

Under NUMBA_DISABLE_JIT=1 the kernel *is* the twin, and the comparison with the naive reference is what counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.kernels import embedding_bag as kernel
from tests.strategies import f64, indices

pytestmark = pytest.mark.kernel

FNS = (kernel.embedding_bag_row_sums_kernel, kernel._embedding_bag_row_sums_loops)


def naive_row_sums(inverse, weights, dout, R, U):
    """drows[u] = Σ_{j : inverse[j] = u} w[j] dout[j // R], added one lookup at a time in increasing j."""
    drows = np.zeros((U, dout.shape[1]), dout.dtype)
    for j in range(inverse.size):
        for c in range(dout.shape[1]):
            drows[inverse[j], c] += weights[j] * dout[j // R, c]
    return drows


def run(fn, inverse, weights, dout, R, U):
    counts, offsets = np.full(U, -7, np.int64), np.full(U + 1, -7, np.int64)
    reverse, drows = np.full(inverse.size, -7, np.int64), np.full((U, dout.shape[1]), np.nan, dout.dtype)
    fn(inverse, weights, dout, R, counts, offsets, reverse, drows)
    return counts, offsets, reverse, drows


@st.composite
def lookups(draw):
    """(inverse (J,), weights (J,), dout (J // R, D), R, U): lookups numbered by np.unique, with repeats."""
    bags, R, D, N = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 6))
    flat = draw(indices(N, (bags, R), force_duplicates=True)).reshape(-1)
    unique, inverse = np.unique(flat, return_inverse=True)
    weights, dout = draw(f64((bags * R,))), draw(f64((bags, D)))
    return inverse.reshape(-1).astype(np.int64), weights, dout, R, unique.size


@given(case=lookups())
def test_kernel_and_twin_agree_bit_for_bit_and_equal_the_sequential_sum(case):
    inverse, weights, dout, R, U = case
    compiled, twin = (run(fn, inverse, weights, dout, R, U) for fn in FNS)
    for a, b in zip(compiled, twin):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(compiled[3], naive_row_sums(inverse, weights, dout, R, U))


@given(case=lookups())
def test_counts_offsets_and_reverse_map_are_a_stable_counting_sort(case):
    inverse, weights, dout, R, U = case
    for fn in FNS:
        counts, offsets, reverse, _ = run(fn, inverse, weights, dout, R, U)
        np.testing.assert_array_equal(counts, np.bincount(inverse, minlength=U))
        np.testing.assert_array_equal(offsets, np.concatenate([[0], np.cumsum(counts)]))
        np.testing.assert_array_equal(reverse, np.argsort(inverse, kind="stable"))


@given(case=lookups())
def test_float32_kernel_and_twin_agree_bit_for_bit(case):
    inverse, weights, dout, R, U = case
    w32, d32 = weights.astype(np.float32), dout.astype(np.float32)
    compiled, twin = (run(fn, inverse, w32, d32, R, U) for fn in FNS)
    assert compiled[3].dtype == np.float32
    np.testing.assert_array_equal(compiled[3], twin[3])
    np.testing.assert_array_equal(compiled[3], naive_row_sums(inverse, w32, d32, R, U))


def test_the_sum_order_is_the_input_order_not_a_sorted_one():
    """1e16 + 1 − 1e16 is 0 in input order but 1 if the 1 came last: the kernel keeps input order."""
    inverse = np.zeros(3, np.int64)
    weights = np.array([1e16, 1.0, -1e16])
    dout = np.ones((3, 1))
    for fn in FNS:
        assert run(fn, inverse, weights, dout, 1, 1)[3][0, 0] == 0.0


def test_no_lookups_write_nothing():
    for fn in FNS:
        counts, offsets, reverse, drows = run(fn, np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 2)), 1, 0)
        assert counts.size == 0 and reverse.size == 0 and drows.shape == (0, 2)
        np.testing.assert_array_equal(offsets, [0])
