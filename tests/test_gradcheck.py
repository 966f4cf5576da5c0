"""The checker itself: it passes right backwards and catches planted wrong ones."""

from typing import NamedTuple

import numpy as np
import pytest

from refmann import gradcheck, ops
from refmann.gradcheck import TOLERANCES, check_op, numerical_vjp, rel_error


class MatmulCache(NamedTuple):
    x: np.ndarray
    w: np.ndarray


def matmul_forward(x, w):
    return x @ w, MatmulCache(x, w)


def matmul_backward(dout, cache):
    return dout @ cache.w.T, cache.x.T @ dout


def matmul_backward_transposed_bug(dout, cache):
    """A classic: forgetting a transpose (only visible with a square weight)."""
    return dout @ cache.w, cache.x.T @ dout


def test_check_op_passes_a_users_correct_function():
    rng = np.random.default_rng(0)
    report = check_op(matmul_forward, matmul_backward, rng.standard_normal((3, 4)), rng.standard_normal((4, 2)))
    assert report.ok()
    assert [r.name for r in report.inputs] == ["x", "w"]
    assert report.max_rel_error < 1e-9


def test_check_op_catches_a_missing_transpose():
    rng = np.random.default_rng(0)
    report = check_op(
        matmul_forward, matmul_backward_transposed_bug, rng.standard_normal((3, 4)), rng.standard_normal((4, 4))
    )
    assert not report.ok()
    assert report.inputs[0].max_rel_error > 1e-2 and report.inputs[1].max_rel_error < 1e-9


def test_check_op_catches_a_dropped_duplicate_index():
    """A sparse backward that writes ``d[idx] = ...`` instead of accumulating loses repeated rows."""

    def lossy_scatter_backward(dout, cache):
        (drows,) = ops.scatter_add_backward(dout, cache)
        return (drows * 0.5,)

    def lossy_sparse_read_backward(dreads, cache):
        rowgrad, dweights = ops.sparse_read_backward(dreads, cache)
        dense = np.zeros((rowgrad.rows.shape[0], rowgrad.num_rows, rowgrad.rows.shape[2]))
        for b in range(dense.shape[0]):
            dense[b, rowgrad.indices[b]] = rowgrad.rows[b]  # drops duplicates
        return dense, dweights

    rng = np.random.default_rng(1)
    M = rng.standard_normal((1, 4, 3))
    idx = np.array([[[2, 2, 0]]])
    report = check_op(
        ops.sparse_read_forward, lossy_sparse_read_backward, M, rng.dirichlet(np.ones(3), (1, 1)), indices=idx
    )
    assert not report.ok() and report.inputs[0].max_rel_error > 1e-2
    assert check_op(
        ops.sparse_read_forward, ops.sparse_read_backward, M, rng.dirichlet(np.ones(3), (1, 1)), indices=idx
    ).ok()
    rows = rng.standard_normal((1, 3, 2))
    assert not check_op(
        ops.scatter_add_forward, lossy_scatter_backward, rows, indices=np.array([[1, 1, 0]]), num_rows=3
    ).ok()


def test_check_op_catches_a_subtly_wrong_softmax_backward():
    def almost_softmax_backward(dout, cache):
        y = cache.out
        return (y * (dout - np.sum(y * dout, axis=-1, keepdims=True)) * (1 + 1e-5),)

    x = np.random.default_rng(2).standard_normal((2, 5))
    report = check_op(ops.softmax_forward, almost_softmax_backward, x)
    assert not report.ok(TOLERANCES["op"])
    assert 1e-6 < report.max_rel_error < 1e-4


def test_check_op_handles_tuple_outputs_and_none_gradients():
    def fwd(x):
        return (2 * x, x**2), x

    def bwd(dout, x):
        return (2 * dout[0] + 2 * x * dout[1],)

    def bwd_none(dout, x):
        return (None,)

    x = np.array([0.5, -1.5])
    assert check_op(fwd, bwd, x).ok()
    assert check_op(fwd, bwd_none, x).inputs == []


def test_check_op_leaves_the_callers_arrays_alone():
    x = np.random.default_rng(0).standard_normal((3, 3))
    before = x.copy()
    check_op(ops.tanh_forward, ops.tanh_backward, x)
    np.testing.assert_array_equal(x, before)


def test_check_op_refuses_float32_and_wrong_gradient_counts():
    with pytest.raises(TypeError, match=r"inputs\[0\].*float64"):
        check_op(ops.tanh_forward, ops.tanh_backward, np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"inputs\[0\]"):
        check_op(ops.tanh_forward, ops.tanh_backward, [1.0, 2.0])
    with pytest.raises(ValueError, match="backward: expected 2 gradients"):
        check_op(matmul_forward, lambda d, c: (d @ c.w.T,), np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="inputs: expected at least one"):
        check_op(matmul_forward, matmul_backward)


def test_numerical_vjp_is_exact_for_a_quadratic():
    x = np.array([1.0, -2.0, 3.0])
    (g,) = numerical_vjp(lambda v: v**2, [x.copy()], np.ones(3))
    np.testing.assert_allclose(g, 2 * x, rtol=1e-10)


def test_rel_error_is_relative_to_the_largest_entry_with_a_floor():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.array([10.0, 0.0]), np.array([10.0, 1e-3])) == pytest.approx(1e-4)
    assert rel_error(np.array([1e-9]), np.array([0.0]), floor=1e-4) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="analytic"):
        rel_error(np.ones(2), np.ones(3))


def test_every_op_passes_on_its_example_inputs():
    reports = gradcheck.check_all_ops(seed=3)
    assert [r.op for r in reports] == list(ops.OP_NAMES)
    worst = max(reports, key=lambda r: r.max_rel_error)
    assert worst.ok(TOLERANCES["op"]), str(worst)


@pytest.mark.parametrize("where", [0, 1])
def test_a_nan_gradient_never_passes_whichever_input_holds_it(where):
    """Python's max skips a NaN that is not first; the report must not (found by the course's answer key)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(3), rng.standard_normal(3)

    def forward(x, y):
        return x * y, (x, y)

    def backward(dout, cache):
        x, y = cache
        grads = [dout * y, dout * x]
        grads[where] = np.where(np.arange(3) == 1, np.nan, grads[where])
        return tuple(grads)

    report = check_op(forward, backward, a, b)
    assert np.isnan(report.max_rel_error)
    assert not report.ok()
