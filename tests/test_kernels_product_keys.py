"""kernels/product_keys.py: the compiled product-key kernel equals its plain-Python twin bit for bit, and both
equal brute force over all n² pairs ranked by exact (rational) sums, ties by slot — on sub-scores with many
exact ties, in float32 and float64. The pruning it relies on ((p + 1)(q + 1) <= k) is checked on its own.

Under NUMBA_DISABLE_JIT=1 the kernel *is* the twin, and the comparison with the naive reference is what counts.
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann.kernels import product_keys as kernel
from tests.naive import naive_top_k

pytestmark = pytest.mark.kernel

FNS = (kernel.product_key_topk_kernel, kernel._product_key_topk_loops)
DTYPES = (np.float32, np.float64)


def naive_product_key_rows(s1, s2, k):
    """Each row's n² pairs sorted by (exact sum s1_i + s2_j descending, slot i·n + j ascending); the first k.

    Returns rows, cols (R, k) and the rounded sums fl(s1_i + s2_j) (R, k) in the sub-scores' dtype."""
    R, n = s1.shape
    rows, cols = np.empty((R, k), np.int64), np.empty((R, k), np.int64)
    scores = np.empty((R, k), s1.dtype)
    for r in range(R):
        ranked = sorted(
            range(n * n), key=lambda t: (-(Fraction(float(s1[r, t // n])) + Fraction(float(s2[r, t % n]))), t)
        )[:k]
        rows[r], cols[r] = [t // n for t in ranked], [t % n for t in ranked]
        scores[r] = [s1[r, t // n] + s2[r, t % n] for t in ranked]
    return rows, cols, scores


def run(fn, s1, s2, k):
    R = s1.shape[0]
    rows, cols = np.full((R, k), -7, np.int64), np.full((R, k), -7, np.int64)
    scores, bounds = np.full((R, k), np.nan, s1.dtype), np.full(R, np.nan, s1.dtype)
    fn(s1, s2, k, rows, cols, scores, bounds)
    return rows, cols, scores, bounds


@st.composite
def sub_scores(draw, dtype=np.float64):
    """(s1, s2, k): two (R, n) sub-score arrays; ``tied`` rows draw from four values, so sums tie often."""
    R, n = draw(st.integers(1, 4)), draw(st.integers(1, 9))
    k = draw(st.integers(1, n))
    if draw(st.booleans()):
        elements = st.sampled_from([-1.0, 0.0, 0.5, 2.0])
    else:
        elements = st.floats(-2, 2, width=32 if dtype == np.float32 else 64, allow_subnormal=False)
    s1 = draw(arrays(dtype, (R, n), elements=elements))
    s2 = draw(arrays(dtype, (R, n), elements=elements))
    if draw(st.booleans()):  # the same sub-scores in both halves: s(i, j) = s(j, i)
        s2 = s1.copy()
    return s1, s2, k


def assert_kernel_and_twin_equal_brute_force(s1, s2, k):
    compiled, twin = (run(fn, s1, s2, k) for fn in FNS)
    for a, b in zip(compiled, twin, strict=True):
        np.testing.assert_array_equal(a, b)
    rows, cols, scores, bounds = compiled
    want_rows, want_cols, want_scores = naive_product_key_rows(s1, s2, k)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(cols, want_cols)
    np.testing.assert_array_equal(scores, want_scores)
    assert scores.dtype == s1.dtype and bounds.dtype == s1.dtype
    np.testing.assert_array_equal(bounds, np.abs(s1).max(axis=-1) + np.abs(s2).max(axis=-1))


@given(sub_scores())
def test_kernel_and_twin_agree_bit_for_bit_and_equal_brute_force_with_many_ties(case):
    assert_kernel_and_twin_equal_brute_force(*case)


@given(sub_scores(np.float32))
def test_float32_kernel_and_twin_agree_bit_for_bit_and_equal_brute_force(case):
    assert_kernel_and_twin_equal_brute_force(*case)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_equals_brute_force_when_every_sum_ties(dtype):
    """All sub-scores equal: every pair ties, and the top k are the k smallest slots."""
    s1, s2 = np.ones((2, 7), dtype), np.ones((2, 7), dtype)
    for fn in FNS:
        rows, cols, scores, _ = run(fn, s1, s2, 7)
        np.testing.assert_array_equal(rows * 7 + cols, np.tile(np.arange(7), (2, 1)))
        np.testing.assert_array_equal(scores, np.full((2, 7), 2.0, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_orders_sums_that_round_to_the_same_float_by_their_exact_value(dtype):
    """fl(1 + 0) = fl(1 + 1e-20) but the second real sum is larger: TwoSum's error term orders them."""
    s1, s2 = np.array([[0.0, 1e-20]], dtype), np.array([[1.0, -5.0]], dtype)
    for fn in FNS:
        rows, cols, scores, _ = run(fn, s1, s2, 2)
        np.testing.assert_array_equal(rows * 2 + cols, [[2, 0]])
        np.testing.assert_array_equal(scores, [[1.0, 1.0]])


@given(sub_scores())
def test_every_pair_of_the_top_k_has_half_ranks_with_p_plus_1_times_q_plus_1_at_most_k(case):
    """The pruning claim the kernel relies on, on brute force: if (i, j) is among the top k and i, j are the
    halves' p-th and q-th best (score descending, index ascending; from 0), then (p + 1)(q + 1) <= k."""
    s1, s2, k = case
    n = s1.shape[1]
    rows, cols, _ = naive_product_key_rows(s1, s2, k)
    rank1 = np.argsort(naive_top_k(s1, n), axis=-1)  # rank of each index in its half's order
    rank2 = np.argsort(naive_top_k(s2, n), axis=-1)
    p = np.take_along_axis(rank1, rows, axis=-1)
    q = np.take_along_axis(rank2, cols, axis=-1)
    assert np.all((p + 1) * (q + 1) <= k)


@given(data=st.data(), R=st.integers(1, 4), n=st.integers(1, 12))
def test_half_top_k_helper_equals_lexsort_with_many_ties(data, R, n):
    k = data.draw(st.integers(1, n))
    scores = data.draw(arrays(np.float64, (R, n), elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0])))
    expected = naive_top_k(scores, k)
    for r in range(R):
        out, vals = np.full(k, -7, np.int64), np.full(k, np.nan)
        bound = kernel._half_top_k_loops(scores, r, k, out, vals)
        np.testing.assert_array_equal(out, expected[r])
        np.testing.assert_array_equal(vals, scores[r, expected[r]])
        assert bound == np.abs(scores[r]).max()


def test_kernel_on_nan_sub_scores_writes_indices_in_range_and_a_nan_bound():
    """The Python layer refuses these rows (checks on); the kernel itself must still stay in bounds."""
    s1 = np.array([[np.nan, 1.0, np.nan, 0.0], [1.0, 2.0, 3.0, 4.0]])
    s2 = np.array([[0.0, np.nan, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    for fn in FNS:
        rows, cols, _, bounds = run(fn, s1, s2, 3)
        assert rows.min() >= 0 and rows.max() < 4 and cols.min() >= 0 and cols.max() < 4
        assert np.isnan(bounds[0]) and bounds[1] == 8.0


def test_kernel_with_no_rows_writes_nothing():
    for fn in FNS:
        rows, cols, scores, bounds = run(fn, np.zeros((0, 3)), np.zeros((0, 3)), 2)
        assert rows.shape == (0, 2) and scores.shape == (0, 2) and bounds.shape == (0,)
