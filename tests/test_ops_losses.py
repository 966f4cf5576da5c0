import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann import ops
from tests.helpers import assert_gradients_match, assert_pure
from tests.strategies import SMALL, f64

SHAPES = st.tuples(SMALL, SMALL, st.integers(1, 6))


@given(data=st.data(), shape=SHAPES)
def test_sigmoid_cross_entropy_gradients_match_with_a_mask(data, shape):
    logits = data.draw(f64(shape, -6, 6))
    targets = data.draw(f64(shape, 0, 1))
    mask = data.draw(arrays(np.bool_, shape)).astype(float)
    assert_gradients_match("sigmoid_cross_entropy", logits, targets=targets, mask=mask)


@given(data=st.data(), shape=SHAPES)
def test_sigmoid_cross_entropy_equals_the_textbook_formula(data, shape):
    logits = data.draw(f64(shape, -6, 6))
    targets = data.draw(arrays(np.bool_, shape)).astype(float)
    loss, _ = ops.sigmoid_cross_entropy_forward(logits, targets=targets)
    p = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(loss, -np.sum(targets * np.log(p) + (1 - targets) * np.log(1 - p)), rtol=1e-10)


def test_losses_are_finite_for_huge_logits_and_ignore_masked_entries():
    logits = np.array([[1e4, -1e4, 3.0]])
    targets = np.array([[0.0, 1.0, 1.0]])
    loss, cache = ops.sigmoid_cross_entropy_forward(logits, targets=targets, mask=np.array([[1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(loss, 2e4)
    (dx,) = ops.sigmoid_cross_entropy_backward(1.0, cache)
    np.testing.assert_allclose(dx, [[1.0, -1.0, 0.0]])
    loss, _ = ops.softmax_cross_entropy_forward(np.array([[1e4, -1e4]]), targets=np.array([1]))
    np.testing.assert_allclose(loss, 2e4)


@given(data=st.data(), lead=st.tuples(SMALL, SMALL), Y=st.integers(1, 6))
def test_softmax_cross_entropy_gradients_match_with_a_mask(data, lead, Y):
    logits = data.draw(f64(lead + (Y,), -6, 6))
    targets = data.draw(arrays(np.int64, lead, elements=st.integers(0, Y - 1)))
    mask = data.draw(arrays(np.bool_, lead)).astype(float)
    assert_gradients_match("softmax_cross_entropy", logits, targets=targets, mask=mask)


def test_softmax_cross_entropy_equals_negative_log_likelihood():
    rng = np.random.default_rng(0)
    logits, t = rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
    loss, _ = ops.softmax_cross_entropy_forward(logits, targets=t)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(loss, -np.log(p[np.arange(4), t]).sum(), rtol=1e-12)


def test_losses_are_pure():
    rng = np.random.default_rng(0)
    assert_pure("sigmoid_cross_entropy", rng.standard_normal((2, 3)), targets=rng.random((2, 3)))
    assert_pure("softmax_cross_entropy", rng.standard_normal((2, 3)), targets=np.array([0, 2]))
