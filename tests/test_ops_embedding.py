import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure
from tests.strategies import f64, indices

INDEX_SHAPES = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@st.composite
def lookup(draw, duplicates=True):
    N, D = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    shape = draw(INDEX_SHAPES)
    return draw(f64((N, D))), draw(indices(N, shape, force_duplicates=duplicates))


@given(case=lookup())
def test_embedding_gradients_match_with_repeated_rows(case):
    table, idx = case
    assert_gradients_match("embedding", table, indices=idx)


@given(case=lookup())
def test_embedding_gathers_the_rows(case):
    table, idx = case
    out, _ = ops.embedding_forward(table, indices=idx)
    assert out.shape == idx.shape + (table.shape[1],)
    np.testing.assert_array_equal(out, table[idx])
    assert not np.shares_memory(out, table)


@given(case=lookup(), seed=st.integers(0, 2**16))
def test_embedding_row_gradient_equals_add_at_with_duplicates(case, seed):
    """The RowGrad keeps one row per lookup (J = indices.size), never N; densified it is np.add.at's sum."""
    table, idx = case
    out, cache = ops.embedding_forward(table, indices=idx)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    (grad,) = ops.embedding_backward(dout, cache)
    N, D = table.shape
    assert isinstance(grad, ops.RowGrad)
    assert grad.indices.shape == (idx.size,) and grad.rows.shape == (idx.size, D) and grad.num_rows == N
    expected = np.zeros_like(table)
    np.add.at(expected, idx.reshape(-1), dout.reshape(-1, D))
    np.testing.assert_allclose(ops.densify_rows(grad), expected, rtol=1e-14, atol=1e-14)
    if idx.shape[-1] >= 2:  # the forced duplicate really adds up
        row = idx.reshape(-1, idx.shape[-1])[0, 0]
        assert np.count_nonzero(grad.indices == row) >= 2


def test_a_plain_fancy_index_add_would_lose_the_duplicate():
    table = np.zeros((3, 1))
    out, cache = ops.embedding_forward(table, indices=np.array([1, 1, 2]))
    (grad,) = ops.embedding_backward(np.ones_like(out), cache)
    lossy = np.zeros((3, 1))
    lossy[grad.indices] += grad.rows  # keeps one of the two updates of row 1
    np.testing.assert_array_equal(lossy[:, 0], [0, 1, 1])
    np.testing.assert_array_equal(ops.densify_rows(grad)[:, 0], [0, 2, 1])


def test_scalar_index_gives_one_row():
    table = np.arange(6.0).reshape(3, 2)
    out, cache = ops.embedding_forward(table, indices=np.int64(2))
    np.testing.assert_array_equal(out, [4.0, 5.0])
    (grad,) = ops.embedding_backward(np.array([1.0, -1.0]), cache)
    np.testing.assert_array_equal(ops.densify_rows(grad), [[0, 0], [0, 0], [1, -1]])


def test_backward_copies_the_upstream_gradient():
    table = np.ones((4, 2))
    out, cache = ops.embedding_forward(table, indices=np.array([0, 3]))
    dout = np.ones_like(out)
    (grad,) = ops.embedding_backward(dout, cache)
    dout[:] = 5.0
    np.testing.assert_array_equal(grad.rows, 1.0)


def test_embedding_is_pure_and_linear_in_dout():
    rng = np.random.default_rng(0)
    table, idx = rng.standard_normal((5, 3)), np.array([[0, 4, 0], [2, 2, 1]])
    assert_pure("embedding", table, indices=idx)
    assert_linear_in_dout("embedding", table, indices=idx)


def test_float32_table_gives_float32_rows():
    out, cache = ops.embedding_forward(np.ones((3, 2), np.float32), indices=np.array([0, 2]))
    assert out.dtype == np.float32
    assert ops.embedding_backward(np.ones_like(out), cache)[0].rows.dtype == np.float32


def test_embedding_rejects_bad_input_naming_the_argument():
    table = np.ones((4, 3))
    with pytest.raises(TypeError, match="indices: expected an integer array, got dtype float64"):
        ops.embedding_forward(table, indices=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"indices: expected indices in \[0, 4\), got values in \[0, 4\]"):
        ops.embedding_forward(table, indices=np.array([0, 4]))
    with pytest.raises(ValueError, match=r"indices: expected indices in \[0, 4\)"):
        ops.embedding_forward(table, indices=np.array([-1]))
    with pytest.raises(ValueError, match=r"table: expected a float32/float64 array of shape \(N, D\)"):
        ops.embedding_forward(np.ones((2, 4, 3)), indices=np.array([0]))
    with pytest.raises(TypeError, match="table: expected a float ndarray, got list"):
        ops.embedding_forward([[1.0]], indices=np.array([0]))
    bad = table.copy()
    bad[3, 1] = np.nan
    ops.embedding_forward(bad, indices=np.array([0, 1]))  # the NaN row is not looked up: fine
    with pytest.raises(ValueError, match=r"table \(the looked-up rows\): expected finite values"):
        ops.embedding_forward(bad, indices=np.array([0, 3]))
