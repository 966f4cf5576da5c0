"""ops/embedding_bag.py: the weighted gather of the product-key value read, its unique-row table gradient and
its weights' gradient, against loops, ``np.add.at``, finite differences and the embedding op."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from refmann._checks import unchecked
from refmann.train import optim
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure
from tests.strategies import f64, indices

LEADING = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


@st.composite
def bags(draw, duplicates=True):
    """(table (N, D), weights (..., R), indices (..., R)); every bag of R >= 2 repeats its first row."""
    N, D, R = draw(st.integers(1, 6)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shape = draw(LEADING) + (R,)
    return draw(f64((N, D))), draw(f64(shape)), draw(indices(N, shape, force_duplicates=duplicates))


def naive_forward(table, weights, idx):
    """y[b] = Σ_r w[b, r] V[s[b, r]], one bag at a time."""
    R, D = idx.shape[-1], table.shape[1]
    w2, s2 = weights.reshape(-1, R), idx.reshape(-1, R)
    out = np.zeros((s2.shape[0], D))
    for b in range(s2.shape[0]):
        for r in range(R):
            out[b] += w2[b, r] * table[s2[b, r]]
    return out.reshape(idx.shape[:-1] + (D,))


def sequential_table_gradient(weights, idx, dout):
    """Σ over lookups in flattened input order, one add at a time: the order the kernel promises."""
    R, D = idx.shape[-1], dout.shape[-1]
    flat, w, d2 = idx.reshape(-1), weights.reshape(-1), dout.reshape(-1, D)
    unique = sorted(set(flat.tolist()))
    acc = {i: np.zeros(D) for i in unique}
    for j in range(flat.size):
        for c in range(D):
            acc[int(flat[j])][c] += w[j] * d2[j // R, c]
    return np.array(unique, np.int64), np.array([acc[i] for i in unique]).reshape(len(unique), D)


def _backward(table, weights, idx, seed):
    out, cache = ops.embedding_bag_forward(table, weights, indices=idx)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    return dout, *ops.embedding_bag_backward(dout, cache)


@given(case=bags())
def test_embedding_bag_gradients_match_with_repeated_rows(case):
    table, weights, idx = case
    assert_gradients_match("embedding_bag", table, weights, indices=idx)


@given(case=bags())
def test_embedding_bag_forward_equals_a_loop_over_the_bags(case):
    table, weights, idx = case
    out, _ = ops.embedding_bag_forward(table, weights, indices=idx)
    assert out.shape == idx.shape[:-1] + (table.shape[1],)
    np.testing.assert_allclose(out, naive_forward(table, weights, idx), rtol=1e-12, atol=1e-12)


@given(case=bags(), seed=st.integers(0, 2**16))
def test_embedding_bag_table_gradient_equals_add_at_over_sorted_unique_rows(case, seed):
    """One row per distinct table row (U of them, ascending), never N; densified it is np.add.at's sum."""
    table, weights, idx = case
    dout, dtable, _ = _backward(table, weights, idx, seed)
    N, D = table.shape
    R = idx.shape[-1]
    assert isinstance(dtable, ops.RowGrad) and dtable.num_rows == N
    np.testing.assert_array_equal(dtable.indices, np.unique(idx))
    assert dtable.indices.dtype == np.int64 and np.all(np.diff(dtable.indices) > 0)
    assert dtable.rows.shape == (dtable.indices.size, D)
    expected = np.zeros_like(table)
    np.add.at(expected, idx.reshape(-1), weights.reshape(-1, 1) * np.repeat(dout.reshape(-1, D), R, axis=0))
    np.testing.assert_allclose(ops.densify_rows(dtable), expected, rtol=1e-12, atol=1e-12)


@given(case=bags(), seed=st.integers(0, 2**16))
def test_embedding_bag_table_gradient_is_summed_in_input_order_bit_for_bit(case, seed):
    """Determinism: the kernel's sums are the sequential sums in flattened input order, exactly."""
    table, weights, idx = case
    dout, dtable, _ = _backward(table, weights, idx, seed)
    rows_idx, rows = sequential_table_gradient(weights, idx, dout)
    np.testing.assert_array_equal(dtable.indices, rows_idx)
    np.testing.assert_array_equal(dtable.rows, rows)


@given(case=bags(), seed=st.integers(0, 2**16))
def test_embedding_bag_weight_gradient_is_the_row_dot_dout(case, seed):
    table, weights, idx = case
    dout, _, dweights = _backward(table, weights, idx, seed)
    assert dweights.shape == weights.shape
    R, D = idx.shape[-1], table.shape[1]
    d2, s2 = dout.reshape(-1, D), idx.reshape(-1, R)
    expected = np.array([[table[s2[b, r]] @ d2[b] for r in range(R)] for b in range(s2.shape[0])])
    np.testing.assert_allclose(dweights.reshape(-1, R), expected, rtol=1e-15, atol=1e-15)


@given(
    data=st.data(),
    N=st.integers(1, 6),
    D=st.integers(1, 4),
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
    seed=st.integers(0, 99),
)
def test_embedding_bag_with_unit_weights_and_bags_of_one_is_the_embedding(data, N, D, shape, seed):
    table = data.draw(f64((N, D)))
    idx = data.draw(indices(N, shape))
    out, cache = ops.embedding_bag_forward(table, np.ones(shape + (1,)), indices=idx[..., None])
    out_e, cache_e = ops.embedding_forward(table, indices=idx)
    np.testing.assert_array_equal(out, out_e)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    dtable, dweights = ops.embedding_bag_backward(dout, cache)
    (dtable_e,) = ops.embedding_backward(dout, cache_e)
    np.testing.assert_array_equal(ops.densify_rows(dtable), ops.densify_rows(dtable_e))
    np.testing.assert_array_equal(dweights[..., 0], np.einsum("...d,...d->...", out_e, dout))


def test_a_repeat_within_a_bag_and_across_bags_adds_up():
    table = np.arange(8.0).reshape(4, 2)
    idx = np.array([[1, 1, 3], [3, 0, 1]])
    w = np.array([[1.0, 2.0, 0.5], [1.0, -1.0, 4.0]])
    out, cache = ops.embedding_bag_forward(table, w, indices=idx)
    np.testing.assert_array_equal(out, [[3 * 2 + 0.5 * 6, 3 * 3 + 0.5 * 7], [6 - 0 + 4 * 2, 7 - 1 + 4 * 3]])
    dtable, dweights = ops.embedding_bag_backward(np.array([[1.0, 0.0], [0.0, 1.0]]), cache)
    np.testing.assert_array_equal(dtable.indices, [0, 1, 3])
    np.testing.assert_array_equal(dtable.rows, [[0.0, -1.0], [3.0, 4.0], [0.5, 1.0]])
    np.testing.assert_array_equal(dweights, [[2.0, 2.0, 6.0], [7.0, 1.0, 3.0]])


def test_embedding_bag_is_pure_and_linear_in_dout():
    rng = np.random.default_rng(0)
    table, w = rng.standard_normal((5, 3)), rng.standard_normal((2, 3))
    idx = np.array([[0, 4, 0], [2, 2, 0]])
    assert_pure("embedding_bag", table, w, indices=idx)
    assert_linear_in_dout("embedding_bag", table, w, indices=idx)
    out, cache = ops.embedding_bag_forward(table, w, indices=idx)
    dout = rng.standard_normal(out.shape)
    first, second = ops.embedding_bag_backward(dout, cache), ops.embedding_bag_backward(dout, cache)
    np.testing.assert_array_equal(first[0].rows, second[0].rows)
    np.testing.assert_array_equal(first[1], second[1])


def test_the_cache_keeps_the_rows_so_an_in_place_table_update_does_not_change_the_backward():
    rng = np.random.default_rng(1)
    table, w, idx = rng.standard_normal((4, 2)), rng.standard_normal((3, 2)), np.array([[0, 1], [1, 3], [2, 2]])
    out, cache = ops.embedding_bag_forward(table, w, indices=idx)
    before = ops.embedding_bag_backward(np.ones_like(out), cache)[1]
    table[:] = 0.0
    np.testing.assert_array_equal(ops.embedding_bag_backward(np.ones_like(out), cache)[1], before)


def test_the_row_gradient_feeds_sparse_adam_as_the_embeddings_unsummed_one_does():
    rng = np.random.default_rng(2)
    table, idx = rng.standard_normal((6, 3)), np.array([[1, 4], [4, 1], [1, 5]])
    dout = rng.standard_normal((3, 2, 3))
    _, cache = ops.embedding_bag_forward(table, np.ones((3, 2, 1)), indices=idx[..., None])
    _, cache_e = ops.embedding_forward(table, indices=idx)
    dtable, _ = ops.embedding_bag_backward(dout, cache)
    (dtable_e,) = ops.embedding_backward(dout, cache_e)
    new, _ = optim.sparse_adam({"values": table}, {"values": dtable}, lr=1e-2)
    new_e, _ = optim.sparse_adam({"values": table}, {"values": dtable_e}, lr=1e-2)
    np.testing.assert_array_equal(new["values"], new_e["values"])
    np.testing.assert_array_equal(new["values"][[0, 2, 3]], table[[0, 2, 3]])  # untouched rows stay


def test_float32_table_and_weights_give_float32_out_and_gradients():
    idx = np.array([[0, 2, 2]])
    out, cache = ops.embedding_bag_forward(np.ones((3, 2), np.float32), np.ones((1, 3), np.float32), indices=idx)
    assert out.dtype == np.float32
    dtable, dweights = ops.embedding_bag_backward(np.ones_like(out), cache)
    assert dtable.rows.dtype == np.float32 and dweights.dtype == np.float32
    np.testing.assert_array_equal(dtable.rows, [[1.0, 1.0], [2.0, 2.0]])


def test_embedding_bag_rejects_bad_input_naming_the_argument():
    table, w = np.ones((4, 3)), np.ones((2, 2))
    with pytest.raises(TypeError, match="table: expected a float ndarray, got list"):
        ops.embedding_bag_forward([[1.0]], w, indices=np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"table: expected a float32/float64 array of shape \(N, D\)"):
        ops.embedding_bag_forward(np.ones((2, 4, 3)), w, indices=np.zeros((2, 2), int))
    with pytest.raises(TypeError, match="indices: expected an integer array, got dtype float64"):
        ops.embedding_bag_forward(table, w, indices=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"indices: expected indices in \[0, 4\), got values in \[0, 4\]"):
        ops.embedding_bag_forward(table, w, indices=np.array([[0, 4], [1, 1]]))
    with pytest.raises(ValueError, match=r"indices: expected indices in \[0, 4\)"):
        ops.embedding_bag_forward(table, w, indices=np.array([[0, -1], [1, 1]]))
    with pytest.raises(ValueError, match=r"indices: expected shape \(\.\.\., R\)"):
        ops.embedding_bag_forward(table, np.ones(()), indices=np.int64(1))
    with pytest.raises(ValueError, match=r"weights: expected shape \(2, 3\) \(the indices'\), got \(2, 2\)"):
        ops.embedding_bag_forward(table, w, indices=np.zeros((2, 3), int))
    with pytest.raises(TypeError, match="weights: expected dtype float32 or float64, got complex128"):
        ops.embedding_bag_forward(table, w.astype(complex), indices=np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="weights: expected finite values"):
        ops.embedding_bag_forward(table, np.full((2, 2), np.nan), indices=np.zeros((2, 2), int))
    bad = table.copy()
    bad[3, 1] = np.inf
    ops.embedding_bag_forward(bad, w, indices=np.array([[0, 1], [2, 2]]))  # the inf row is not looked up: fine
    with pytest.raises(ValueError, match=r"table \(the looked-up rows\): expected finite values"):
        ops.embedding_bag_forward(bad, w, indices=np.array([[0, 1], [3, 2]]))


def test_embedding_bag_backward_refuses_a_bad_dout_naming_it():
    _, cache = ops.embedding_bag_forward(np.ones((4, 3)), np.ones((2, 2)), indices=np.array([[0, 1], [1, 3]]))
    with pytest.raises(ValueError, match=r"dout: expected shape \(2, 3\) .* got \(2, 2\)"):
        ops.embedding_bag_backward(np.ones((2, 2)), cache)
    with pytest.raises(ValueError, match="dout: expected finite values"):
        ops.embedding_bag_backward(np.full((2, 3), np.nan), cache)
    with pytest.raises(TypeError, match="dout: expected dtype float32 or float64"):
        ops.embedding_bag_backward(np.ones((2, 3), int), cache)


def test_an_unchecked_wrong_sized_dout_raises_before_the_kernel_reads_it():
    """Inside unchecked() check_dout is skipped, but a dout of the wrong size still never reaches the kernel."""
    _, cache = ops.embedding_bag_forward(np.ones((4, 3)), np.ones((2, 2)), indices=np.array([[0, 1], [1, 3]]))
    with unchecked(), pytest.raises(ValueError):
        ops.embedding_bag_backward(np.ones((1, 3)), cache)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_non_finite_looked_up_row_is_refused_even_under_weight_zero(bad):
    """The check runs on the (…, D) output: 0·inf is NaN, so a bad row cannot hide behind its weight."""
    table = np.ones((5, 3))
    table[2, 1] = bad
    with pytest.raises(ValueError, match=r"table \(the looked-up rows\)"):
        ops.embedding_bag_forward(table, np.array([[1.0, 0.0]]), indices=np.array([[0, 2]]))
    ops.embedding_bag_forward(table, np.array([[1.0, 0.5]]), indices=np.array([[0, 3]]))  # row 2 not read: fine


def test_an_overflowing_weighted_sum_of_finite_rows_is_refused():
    table = np.full((2, 2), 1e308)
    with pytest.raises(ValueError, match="out: the weighted sum of finite rows overflowed"):
        ops.embedding_bag_forward(table, np.array([[1.0, 1.0]]), indices=np.array([[0, 1]]))
