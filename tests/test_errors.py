"""Bad input fails loudly, naming the argument, what was expected, and what came."""

import numpy as np
import pytest

from refmann import ops

rng = np.random.default_rng(0)
M = rng.standard_normal((2, 5, 3))
KEYS = rng.standard_normal((2, 4, 3))
W = rng.dirichlet(np.ones(5), size=(2, 4))


def test_wrong_shapes_name_the_argument_and_both_shapes():
    with pytest.raises(ValueError, match=r"keys: expected shape \(2, ·, 3\), got \(2, 4, 7\)"):
        ops.cosine_similarity_forward(M, np.ones((2, 4, 7)))
    with pytest.raises(ValueError, match=r"memory: expected a 3-d array, got shape \(5, 3\)"):
        ops.dense_read_forward(M[0], W)
    with pytest.raises(ValueError, match=r"weights: expected shape \(2, ·, 5\)"):
        ops.dense_read_forward(M, W[..., :4])
    with pytest.raises(ValueError, match=r"strengths: expected shape \(2, 4\)"):
        ops.content_weights_forward(M, KEYS, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"weight: expected shape \(3, ·\)"):
        ops.linear_forward(np.ones((2, 3)), np.ones((4, 2)), np.ones(2))
    with pytest.raises(ValueError, match=r"shift: expected an odd number"):
        ops.circular_shift_forward(W, np.ones((2, 4, 2)))
    with pytest.raises(ValueError, match=r"targets: expected shape"):
        ops.sigmoid_cross_entropy_forward(np.ones((2, 3)), targets=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"mask: expected a shape that broadcasts to \(2, 3\)"):
        ops.sigmoid_cross_entropy_forward(np.ones((2, 3)), targets=np.ones((2, 3)), mask=np.ones(2))


def test_wrong_dtypes_are_type_errors():
    with pytest.raises(TypeError, match="memory: expected dtype float32 or float64, got complex128"):
        ops.dense_read_forward(M.astype(complex), W)
    with pytest.raises(TypeError, match="x: expected a float ndarray, got str"):
        ops.tanh_forward("1.0")
    with pytest.raises(TypeError, match="indices: expected an integer array, got dtype float64"):
        ops.sparse_read_forward(M, W[..., :2], indices=np.zeros((2, 4, 2)))
    with pytest.raises(TypeError, match="memory: expected a float ndarray, got list"):
        ops.sparse_read_forward([[1.0]], W[..., :2], indices=np.zeros((2, 4, 2), int))
    with pytest.raises(TypeError, match="k: expected an int"):
        ops.top_k(np.ones(3), 1.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_never_pass_silently(bad):
    M_bad = M.copy()
    M_bad[1, 2, 0] = bad
    with pytest.raises(ValueError, match="memory: expected finite values, got 1 NaN/inf"):
        ops.dense_read_forward(M_bad, W)
    with pytest.raises(ValueError, match="keys: expected finite values"):
        ops.cosine_similarity_forward(M, np.full((2, 1, 3), bad))
    with pytest.raises(ValueError, match="logits: expected finite"):
        ops.sigmoid_cross_entropy_forward(np.array([bad]), targets=np.array([1.0]))
    with pytest.raises(ValueError, match="scores: expected finite"):
        ops.top_k(np.array([1.0, bad]), 1)
    # the sparse read checks only the rows it reads, so a bad row it selects is caught ...
    with pytest.raises(ValueError, match=r"memory \(the selected rows\): expected finite values"):
        ops.sparse_read_forward(M_bad, np.ones((2, 1, 1)), indices=np.array([[[0]], [[2]]]))


def test_indices_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"indices: expected indices in \[0, 5\), got values in \[0, 5\]"):
        ops.sparse_read_forward(M, np.ones((2, 1, 2)), indices=np.array([[[0, 5]], [[1, 2]]]))
    with pytest.raises(ValueError, match=r"indices: expected indices in \[0, 5\), got values in \[-1, 2\]"):
        ops.sparse_read_forward(M, np.ones((2, 1, 2)), indices=np.array([[[0, -1]], [[1, 2]]]))
    with pytest.raises(ValueError, match=r"targets: expected indices in \[0, 3\)"):
        ops.softmax_cross_entropy_forward(np.ones((2, 3)), targets=np.array([0, 3]))
    with pytest.raises(ValueError, match=r"k: expected 1 <= k <= N = 3, got 4"):
        ops.top_k(np.ones(3), 4)
    with pytest.raises(ValueError, match=r"indices: expected indices in \[0, 2\)"):
        ops.scatter_add_forward(np.ones((1, 2, 1)), indices=np.array([[0, 2]]), num_rows=2)


def test_gates_and_exponents_outside_their_range_are_refused():
    with pytest.raises(ValueError, match=r"gate: expected values in \[0.0, 1.0\], got values in \[-0.1, 0.5\]"):
        ops.interpolate_forward(W, W, np.array([[0.5, -0.1, 0.2, 0.3]] * 2))
    with pytest.raises(ValueError, match=r"erase: expected values in \[0.0, 1.0\]"):
        ops.dense_write_forward(M, W, np.full((2, 4, 3), 1.5), np.ones((2, 4, 3)))
    with pytest.raises(ValueError, match=r"gamma: expected values in \[1.0, inf\], got values in \[0.5"):
        ops.sharpen_forward(W, np.full((2, 4), 0.5))
    with pytest.raises(ValueError, match=r"weights: expected values in \[0.0, inf\]"):
        ops.sharpen_forward(-W, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"targets: expected values in \[0.0, 1.0\]"):
        ops.sigmoid_cross_entropy_forward(np.ones(2), targets=np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match="axis: expected an axis of a 2-d array, got 2"):
        ops.softmax_forward(np.ones((2, 3)), axis=2)


def test_a_wrong_dout_names_the_argument_the_expected_and_the_given_shape():
    _, cache = ops.dense_read_forward(M, W)
    with pytest.raises(
        ValueError,
        match=r"dreads: expected shape \(2, 4, 3\) \(the forward output's; nothing is broadcast\), got \(2, 4, 1\)",
    ):
        ops.dense_read_backward(np.ones((2, 4, 1)), cache)
    with pytest.raises(ValueError, match=r"dreads: expected finite values, got 1 NaN/inf entries"):
        ops.dense_read_backward(np.where(np.arange(24).reshape(2, 4, 3) == 5, np.nan, 1.0), cache)
    with pytest.raises(
        TypeError,
        match=r"dreads: expected dtype float32 or float64 \(a real function's gradient is real\), got complex128",
    ):
        ops.dense_read_backward(np.ones((2, 4, 3), complex), cache)
    _, cache = ops.sigmoid_cross_entropy_forward(np.ones(3), targets=np.ones(3))
    ops.sigmoid_cross_entropy_backward(0.5, cache)  # a number is a fine dout for a scalar loss
    with pytest.raises(ValueError, match=r"dloss: expected shape \(\) .*, got \(3,\)"):
        ops.sigmoid_cross_entropy_backward(np.ones(3), cache)


def test_a_tuple_dout_of_the_wrong_arity_says_which_parts_it_needs():
    x, h = np.ones((2, 3)), np.ones((2, 4))
    _, cache = ops.lstm_step_forward(x, h, h, np.ones((7, 16)), np.ones(16))
    with pytest.raises(
        TypeError, match=r"dout: expected a tuple \(dh, dc\) of 2 arrays, got a float64 array of shape \(2, 4\)"
    ):
        ops.lstm_step_backward(np.ones((2, 4)), cache)
    with pytest.raises(ValueError, match=r"dout: expected a tuple \(dh, dc\) of 2 arrays, got a tuple of length 3"):
        ops.lstm_step_backward((h, h, h), cache)
    with pytest.raises(ValueError, match=r"dc \(dout\[1\]\): expected shape \(2, 4\)"):
        ops.lstm_step_backward((h, np.ones((2, 5))), cache)


def test_padded_index_arrays_accept_minus_one_and_say_so():
    from refmann._checks import as_index_array

    assert as_index_array(np.array([-1, 0, 4]), "slots", upper=5, padding=True).dtype == np.int64
    with pytest.raises(
        ValueError, match=r"slots: expected indices in \[0, 5\) or -1 \(padding\), got values in \[-2, 0\]"
    ):
        as_index_array(np.array([-2, 0]), "slots", upper=5, padding=True)


def test_a_refused_footprint_names_the_argument_the_bytes_and_the_budget(monkeypatch):
    from refmann._checks import FootprintError, check_footprint

    monkeypatch.setenv("REFMANN_MEMORY_BUDGET", "1G")
    with pytest.raises(
        FootprintError,
        match=r"memory_size: a memory needs about 2.00 GiB \(2,147,483,648 bytes\) \(memory 1.50 GiB, index 512 MiB\), "
        r"more than the memory budget of 1.00 GiB .*REFMANN_MEMORY_BUDGET",
    ):
        check_footprint({"memory": 3 * 2**29, "index": 2**29}, "memory_size", what="a memory")
    assert check_footprint({"memory": 2**20}, "memory_size", what="a memory") == 2**20
