"""Product-key top-k: exactly brute force over all n² slots (ties included), FD gradients, refused inputs."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from refmann._checks import unchecked
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure
from tests.strategies import f64


def naive_product_key_topk(queries, keys, k):
    """Brute force: every one of the n² slots scored with its exact (rational) sum s¹_i + s²_j, sorted by
    (sum descending, slot ascending); the scores returned are the float sums.

    The sub-scores are computed by the op's own einsum (a dot product summed in another order may differ in
    the last bit; what is claimed exact is the selection from given sub-scores)."""
    B, H, D = queries.shape
    n, half = keys.shape[2], D // 2
    sub1 = np.einsum("bhd,hnd->bhn", queries[..., :half], keys[:, 0])
    sub2 = np.einsum("bhd,hnd->bhn", queries[..., half:], keys[:, 1])
    scores = np.empty((B, H, k), queries.dtype)
    slots = np.empty((B, H, k), np.int64)
    for b in range(B):
        for h in range(H):
            s1, s2 = sub1[b, h], sub2[b, h]
            ranked = sorted(range(n * n), key=lambda t: (-(Fraction(s1[t // n]) + Fraction(s2[t % n])), t))[:k]
            slots[b, h] = ranked
            scores[b, h] = [s1[t // n] + s2[t % n] for t in ranked]
    return scores, slots


@st.composite
def pkm_inputs(draw, grid=False):
    """(queries, keys, k); ``grid=True`` draws small integers, so sums tie often (and are exact floats)."""
    B, H, n, half = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    k = draw(st.integers(1, n))
    if grid:
        ints = st.integers(-2, 2).map(float)
        q = draw(st.lists(ints, min_size=B * H * 2 * half, max_size=B * H * 2 * half))
        c = draw(st.lists(ints, min_size=H * 2 * n * half, max_size=H * 2 * n * half))
        return np.reshape(q, (B, H, 2 * half)), np.reshape(c, (H, 2, n, half)), k
    return draw(f64((B, H, 2 * half))), draw(f64((H, 2, n, half))), k


@given(pkm_inputs())
def test_product_key_topk_equals_brute_force_over_all_slots(inputs):
    queries, keys, k = inputs
    scores, slots = ops.product_key_topk(queries, keys, k)
    want_scores, want_slots = naive_product_key_topk(queries, keys, k)
    np.testing.assert_array_equal(slots, want_slots)
    np.testing.assert_array_equal(scores, want_scores)
    assert slots.dtype == np.int64


@given(pkm_inputs(grid=True))
def test_product_key_topk_equals_brute_force_on_an_integer_grid_with_many_ties(inputs):
    queries, keys, k = inputs
    scores, slots = ops.product_key_topk(queries, keys, k)
    # integer sums are exact floats: plain NumPy brute force, score descending then slot ascending
    half = queries.shape[-1] // 2
    s1 = np.einsum("bhd,hnd->bhn", queries[..., :half], keys[:, 0])
    s2 = np.einsum("bhd,hnd->bhn", queries[..., half:], keys[:, 1])
    full = (s1[..., :, None] + s2[..., None, :]).reshape(*s1.shape[:2], -1)  # (B, H, n²)
    want = np.argsort(-full, axis=-1, kind="stable")[..., :k]
    np.testing.assert_array_equal(slots, want)
    np.testing.assert_array_equal(scores, np.take_along_axis(full, want, axis=-1))
    np.testing.assert_array_equal((scores, slots), naive_product_key_topk(queries, keys, k))


def test_product_key_topk_orders_sums_that_round_to_the_same_float_as_the_real_sums():
    """s¹ = (0, 1e-20), s² = (1, −5): fl(1 + 0) = fl(1 + 1e-20), but slot 1's real sum is larger. The half top-1
    keeps i = 1 only, so a rounded-sum order with ties by slot would want slot 0, which the product search never
    sees; comparing exact sums (TwoSum) keeps brute force and product search equal."""
    queries = np.ones((1, 1, 2))
    keys = np.array([[[[0.0], [1e-20]], [[1.0], [-5.0]]]])  # (H=1, 2, n=2, 1)
    scores, slots = ops.product_key_topk(queries, keys, 1)
    np.testing.assert_array_equal(slots, [[[2]]])  # i = 1, j = 0
    np.testing.assert_array_equal((scores, slots), naive_product_key_topk(queries, keys, 1))
    scores, slots = ops.product_key_topk(queries, keys, 2)
    np.testing.assert_array_equal(slots, [[[2, 0]]])
    np.testing.assert_array_equal(scores, [[[1.0, 1.0]]])


def test_product_key_topk_with_k_equal_n_and_one_sub_key():
    queries, keys = np.ones((1, 1, 2)), np.full((1, 2, 1, 1), 3.0)
    scores, slots = ops.product_key_topk(queries, keys, 1)
    np.testing.assert_array_equal(slots, [[[0]]])
    np.testing.assert_array_equal(scores, [[[6.0]]])


@given(
    B=st.integers(1, 3),
    H=st.integers(1, 3),
    n=st.integers(1, 6),
    half=st.integers(1, 4),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_product_key_topk_gradients_match_when_sums_are_separated(B, H, n, half, data, seed):
    queries, keys = ops.separated_product_keys(np.random.default_rng(seed), B, H, n, half)
    k = data.draw(st.integers(1, n))
    assert_gradients_match("product_key_topk", queries, keys, k=k, seed=seed % 1000)


def test_product_key_topk_example_sums_are_separated_by_more_than_0_4():
    for seed in range(20):
        queries, keys = ops.separated_product_keys(np.random.default_rng(seed), 3, 3, 7, 4)
        s1 = np.einsum("bhd,hnd->bhn", queries[..., :4], keys[:, 0])
        s2 = np.einsum("bhd,hnd->bhn", queries[..., 4:], keys[:, 1])
        full = np.sort((s1[..., :, None] + s2[..., None, :]).reshape(3, 3, -1), axis=-1)
        assert np.min(np.diff(full, axis=-1)) > 0.4


def test_product_key_topk_backward_equals_the_gradient_through_the_dense_score_matrix():
    """Reference: scatter dscores into the dense (B, H, n, n) score grid, then ds¹ = row sums, ds² = column sums."""
    rng = np.random.default_rng(3)
    queries, keys = ops.separated_product_keys(rng, 2, 3, 5, 2)
    scores, cache = ops.product_key_topk_forward(queries, keys, k=4)
    dscores = rng.standard_normal(scores.shape)
    dq, dk = ops.product_key_topk_backward(dscores, cache)
    dense = np.zeros((2, 3, 25))
    np.put_along_axis(dense, cache.slots, dscores, axis=-1)
    dense = dense.reshape(2, 3, 5, 5)
    ds1, ds2 = dense.sum(-1), dense.sum(-2)  # (B, H, n)
    np.testing.assert_allclose(dq[..., :2], np.einsum("bhn,hnd->bhd", ds1, keys[:, 0]), atol=1e-12)
    np.testing.assert_allclose(dq[..., 2:], np.einsum("bhn,hnd->bhd", ds2, keys[:, 1]), atol=1e-12)
    np.testing.assert_allclose(dk[:, 0], np.einsum("bhn,bhd->hnd", ds1, queries[..., :2]), atol=1e-12)
    np.testing.assert_allclose(dk[:, 1], np.einsum("bhn,bhd->hnd", ds2, queries[..., 2:]), atol=1e-12)
    np.testing.assert_array_equal(cache.slots, cache.rows * 5 + cache.cols)


def test_product_key_topk_is_pure_and_linear_in_dscores():
    queries, keys = ops.separated_product_keys(np.random.default_rng(0), 2, 2, 4, 2)
    assert_pure("product_key_topk", queries, keys, k=3)
    assert_linear_in_dout("product_key_topk", queries, keys, k=3)


def test_product_key_topk_in_float32_selects_the_same_slots_and_returns_float32():
    queries, keys = ops.separated_product_keys(np.random.default_rng(1), 2, 2, 6, 3)
    s64, c64 = ops.product_key_topk_forward(queries, keys, k=4)
    s32, c32 = ops.product_key_topk_forward(queries.astype(np.float32), keys.astype(np.float32), k=4)
    assert s32.dtype == np.float32
    np.testing.assert_array_equal(c32.slots, c64.slots)
    dq, dk = ops.product_key_topk_backward(np.ones_like(s32), c32)
    assert dq.dtype == np.float32 and dk.dtype == np.float32


GOOD_Q, GOOD_K = np.ones((2, 3, 4)), np.ones((3, 2, 5, 2))
BAD_INPUTS = [
    ("odd D", lambda: ops.product_key_topk_forward(np.ones((2, 3, 3)), GOOD_K, k=2), ValueError, r"queries: .*even"),
    ("2-d queries", lambda: ops.product_key_topk_forward(np.ones((2, 4)), GOOD_K, k=2), ValueError, r"queries: .*3-d"),
    ("3-d keys", lambda: ops.product_key_topk_forward(GOOD_Q, np.ones((3, 5, 2)), k=2), ValueError, r"keys: .*4-d"),
    (
        "keys for other heads",
        lambda: ops.product_key_topk_forward(GOOD_Q, np.ones((2, 2, 5, 2)), k=2),
        ValueError,
        r"keys: expected shape \(3, 2, ·, 2\)",
    ),
    (
        "keys of the full width",
        lambda: ops.product_key_topk_forward(GOOD_Q, np.ones((3, 2, 5, 4)), k=2),
        ValueError,
        r"keys: expected shape",
    ),
    ("three halves", lambda: ops.product_key_topk_forward(GOOD_Q, np.ones((3, 3, 5, 2)), k=2), ValueError, "keys: "),
    ("k > n", lambda: ops.product_key_topk_forward(GOOD_Q, GOOD_K, k=6), ValueError, r"k: expected 1 <= k <= n = 5"),
    ("k = 0", lambda: ops.product_key_topk_forward(GOOD_Q, GOOD_K, k=0), ValueError, r"k: expected an int >= 1"),
    ("k float", lambda: ops.product_key_topk_forward(GOOD_Q, GOOD_K, k=2.0), TypeError, r"k: expected an int"),
    (
        "NaN queries",
        lambda: ops.product_key_topk_forward(np.full((2, 3, 4), np.nan), GOOD_K, k=2),
        ValueError,
        r"queries: expected finite",
    ),
    (
        "inf keys",
        lambda: ops.product_key_topk_forward(GOOD_Q, np.full((3, 2, 5, 2), np.inf), k=2),
        ValueError,
        r"keys: expected finite",
    ),
    (
        "complex keys",
        lambda: ops.product_key_topk_forward(GOOD_Q, np.ones((3, 2, 5, 2), complex), k=2),
        TypeError,
        r"keys: expected dtype",
    ),
    ("str queries", lambda: ops.product_key_topk_forward("q", GOOD_K, k=2), TypeError, r"queries: expected a float"),
]


@pytest.mark.parametrize("label, call, exc, pattern", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_product_key_topk_refuses_bad_inputs_naming_the_argument(label, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize(
    "dscores, exc, pattern",
    [
        (np.ones((2, 3, 3)), ValueError, r"dscores: expected shape \(2, 3, 2\)"),
        (np.full((2, 3, 2), np.nan), ValueError, r"dscores: expected finite"),
        (np.ones((2, 3, 2), int), TypeError, r"dscores: expected dtype"),
    ],
)
def test_product_key_topk_backward_refuses_a_bad_dscores(dscores, exc, pattern):
    _, cache = ops.product_key_topk_forward(GOOD_Q, GOOD_K, k=2)
    with pytest.raises(exc, match=pattern):
        ops.product_key_topk_backward(dscores, cache)


def test_product_key_topk_runs_unchecked_with_the_same_result():
    queries, keys = ops.separated_product_keys(np.random.default_rng(2), 2, 2, 5, 2)
    want = ops.product_key_topk(queries, keys, 3)
    with unchecked():
        got = ops.product_key_topk(queries, keys, 3)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
