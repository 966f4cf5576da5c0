"""Product-key top-k: exactly brute force over all n² slots (ties included), FD gradients, refused inputs; the fused
path (the Numba kernel, the default) equals the readable reference (``fused=False``) bit for bit."""

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

    The sub-scores are computed as the op computes them, one matmul per head and half (a dot product summed
    in another order may differ in the last bit; what is claimed exact is the selection from given sub-scores)."""
    B, H, D = queries.shape
    n, half = keys.shape[2], D // 2
    q = queries.transpose(1, 0, 2)  # (H, B, D)
    sub1 = (q[..., :half] @ keys[:, 0].transpose(0, 2, 1)).transpose(1, 0, 2)  # (B, H, n)
    sub2 = (q[..., half:] @ keys[:, 1].transpose(0, 2, 1)).transpose(1, 0, 2)
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


FUSED = pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])


@FUSED
@given(inputs=pkm_inputs())
def test_product_key_topk_equals_brute_force_over_all_slots(inputs, fused):
    queries, keys, k = inputs
    scores, slots = ops.product_key_topk(queries, keys, k, fused=fused)
    want_scores, want_slots = naive_product_key_topk(queries, keys, k)
    np.testing.assert_array_equal(slots, want_slots)
    np.testing.assert_array_equal(scores, want_scores)
    assert slots.dtype == np.int64


@FUSED
@given(inputs=pkm_inputs(grid=True))
def test_product_key_topk_equals_brute_force_on_an_integer_grid_with_many_ties(inputs, fused):
    queries, keys, k = inputs
    scores, slots = ops.product_key_topk(queries, keys, k, fused=fused)
    # integer sums are exact floats: plain NumPy brute force, score descending then slot ascending
    half = queries.shape[-1] // 2
    s1 = np.einsum("bhd,hnd->bhn", queries[..., :half], keys[:, 0])
    s2 = np.einsum("bhd,hnd->bhn", queries[..., half:], keys[:, 1])
    full = (s1[..., :, None] + s2[..., None, :]).reshape(*s1.shape[:2], -1)  # (B, H, n²)
    want = np.argsort(-full, axis=-1, kind="stable")[..., :k]
    np.testing.assert_array_equal(slots, want)
    np.testing.assert_array_equal(scores, np.take_along_axis(full, want, axis=-1))
    np.testing.assert_array_equal((scores, slots), naive_product_key_topk(queries, keys, k))


@FUSED
def test_product_key_topk_orders_sums_that_round_to_the_same_float_as_the_real_sums(fused):
    """s¹ = (0, 1e-20), s² = (1, −5): fl(1 + 0) = fl(1 + 1e-20), but slot 1's real sum is larger. The half top-1
    keeps i = 1 only, so a rounded-sum order with ties by slot would want slot 0, which the product search never
    sees; comparing exact sums (TwoSum) keeps brute force and product search equal."""
    queries = np.ones((1, 1, 2))
    keys = np.array([[[[0.0], [1e-20]], [[1.0], [-5.0]]]])  # (H=1, 2, n=2, 1)
    scores, slots = ops.product_key_topk(queries, keys, 1, fused=fused)
    np.testing.assert_array_equal(slots, [[[2]]])  # i = 1, j = 0
    np.testing.assert_array_equal((scores, slots), naive_product_key_topk(queries, keys, 1))
    scores, slots = ops.product_key_topk(queries, keys, 2, fused=fused)
    np.testing.assert_array_equal(slots, [[[2, 0]]])
    np.testing.assert_array_equal(scores, [[[1.0, 1.0]]])


@FUSED
def test_product_key_topk_with_k_equal_n_and_one_sub_key(fused):
    queries, keys = np.ones((1, 1, 2)), np.full((1, 2, 1, 1), 3.0)
    scores, slots = ops.product_key_topk(queries, keys, 1, fused=fused)
    np.testing.assert_array_equal(slots, [[[0]]])
    np.testing.assert_array_equal(scores, [[[6.0]]])


@st.composite
def tied_pkm_inputs(draw, dtype=np.float64):
    """(queries, keys, k) in ``dtype`` whose n² sums tie often, one of four ways: small integers (exact sums);
    sub-key tables with repeated rows (equal sub-scores); the same table and query half in both halves (so
    s(i, j) = s(j, i)); or plain Gaussian values. Sizes reach past the pruning's k ln k."""
    B, H, half = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n = draw(st.integers(1, 24))
    k = draw(st.integers(1, n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["integers", "repeated", "symmetric", "gaussian"]))
    if kind == "integers":
        queries = rng.integers(-2, 3, (B, H, 2 * half)).astype(dtype)
        keys = rng.integers(-2, 3, (H, 2, n, half)).astype(dtype)
    else:
        queries = rng.standard_normal((B, H, 2 * half)).astype(dtype)
        keys = rng.standard_normal((H, 2, n, half)).astype(dtype)
    if kind == "repeated":  # each sub-key copies one of at most 3 distinct rows of its table
        keys = np.take_along_axis(keys, rng.integers(0, min(n, 3), (H, 2, n, 1)), axis=2)
    if kind == "symmetric":
        keys[:, 1] = keys[:, 0]
        queries[..., half:] = queries[..., :half]
    return queries, keys, k


def assert_fused_equals_reference(queries, keys, k):
    want_scores, want = ops.product_key_topk_forward(queries, keys, k=k, fused=False)
    scores, got = ops.product_key_topk_forward(queries, keys, k=k, fused=True)
    np.testing.assert_array_equal(scores, want_scores)
    assert scores.dtype == want_scores.dtype
    for name in ops.ProductKeyTopKCache._fields:
        a, b = getattr(got, name), getattr(want, name)
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.dtype == b.dtype and a.shape == b.shape, name


@given(tied_pkm_inputs())
def test_fused_forward_equals_the_reference_bit_for_bit_with_many_ties(inputs):
    assert_fused_equals_reference(*inputs)


@given(tied_pkm_inputs(np.float32))
def test_fused_forward_equals_the_reference_bit_for_bit_in_float32(inputs):
    assert_fused_equals_reference(*inputs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_forward_equals_the_reference_and_brute_force_at_memory_layer_sizes(dtype):
    """n = 64, k = 32 (the default k: the pruning visits ~k ln k of the k² pairs), integer sub-scores so the
    n² sums are exact floats and tie often; plus Gaussian queries against ProductKeyMemory's uniform keys."""
    rng = np.random.default_rng(7)
    B, H, n, half, k = 6, 2, 64, 4, 32
    queries = rng.integers(-1, 2, (B, H, 2 * half)).astype(dtype)
    keys = rng.integers(-1, 2, (H, 2, n, half)).astype(dtype)
    assert_fused_equals_reference(queries, keys, k)
    scores, slots = ops.product_key_topk(queries, keys, k)
    s1 = np.einsum("bhd,hnd->bhn", queries[..., :half], keys[:, 0])
    s2 = np.einsum("bhd,hnd->bhn", queries[..., half:], keys[:, 1])
    full = (s1[..., :, None] + s2[..., None, :]).reshape(B, H, n * n)
    want = np.argsort(-full, axis=-1, kind="stable")[..., :k]
    np.testing.assert_array_equal(slots, want)
    np.testing.assert_array_equal(scores, np.take_along_axis(full, want, axis=-1))
    bound = 1 / np.sqrt(half)
    assert_fused_equals_reference(
        rng.standard_normal((B, H, 2 * half)).astype(dtype),
        rng.uniform(-bound, bound, (H, 2, n, half)).astype(dtype),
        k,
    )


def test_fused_forward_with_no_tokens_returns_empty_arrays():
    queries, keys = np.ones((0, 2, 4)), np.ones((2, 2, 5, 2))
    scores, cache = ops.product_key_topk_forward(queries, keys, k=3)
    assert scores.shape == (0, 2, 3) and cache.slots.shape == (0, 2, 3) and cache.slots.dtype == np.int64
    assert_fused_equals_reference(queries, keys, 3)


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


@FUSED
def test_product_key_topk_refuses_sub_scores_whose_sums_overflow(fused):
    """Finite float32 inputs whose sub-scores reach 2e38: max|s¹| + max|s²| = 4e38 overflows, where TwoSum is no
    longer exact; both paths refuse them, naming the arguments."""
    queries = np.full((2, 1, 2), 2e19, np.float32)
    keys = np.full((1, 2, 3, 1), 1e19, np.float32)
    keys[0, 1, 1] = 0.0
    with np.errstate(over="ignore"), pytest.raises(ValueError, match=r"queries, keys: .*overflows"):
        ops.product_key_topk_forward(queries, keys, k=2, fused=fused)
    scores, _ = ops.product_key_topk_forward(queries / 2, keys, k=2, fused=fused)  # 1e38 + 1e38 is finite
    np.testing.assert_array_equal(scores, np.full((2, 1, 2), np.float32(2e38)))


@pytest.mark.parametrize("k", [0, 6, 2.0, True])
def test_fused_forward_checks_k_even_unchecked_so_the_kernel_never_indexes_past_n(k):
    with unchecked(), pytest.raises((ValueError, TypeError), match=r"k: expected"):
        ops.product_key_topk_forward(GOOD_Q, GOOD_K, k=k)


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


@FUSED
def test_product_key_topk_runs_unchecked_with_the_same_result(fused):
    queries, keys = ops.separated_product_keys(np.random.default_rng(2), 2, 2, 5, 2)
    want = ops.product_key_topk(queries, keys, 3, fused=fused)
    with unchecked():
        got = ops.product_key_topk(queries, keys, 3, fused=fused)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
