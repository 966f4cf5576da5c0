import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure
from tests.strategies import SMALL, away_from_zero, f64

SHAPES = st.tuples(SMALL, st.integers(1, 6))


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "oneplus"])
@given(data=st.data())
def test_smooth_activation_gradients_match_finite_differences(name, data):
    x = data.draw(SHAPES.flatmap(lambda s: f64(s, -5, 5)))
    assert_gradients_match(name, x)


@given(x=SHAPES.flatmap(away_from_zero))
def test_relu_gradient_matches_finite_differences_away_from_zero(x):
    assert_gradients_match("relu", x)


@given(x=st.tuples(SMALL, SMALL, st.integers(1, 6)).flatmap(lambda s: f64(s, -5, 5)), axis=st.integers(-3, 2))
def test_softmax_gradient_matches_finite_differences_on_any_axis(x, axis):
    assert_gradients_match("softmax", x, axis=axis)


@given(x=st.tuples(SMALL, st.integers(1, 6)).flatmap(lambda s: f64(s, -50, 50)))
def test_softmax_rows_sum_to_one_and_match_scipy(x):
    y, _ = ops.softmax_forward(x)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(y, scipy.special.softmax(x, axis=-1), rtol=1e-12, atol=1e-300)


def test_softmax_survives_huge_logits():
    x = np.array([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4]])
    y, cache = ops.softmax_forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, [[1, 0, 0], [0.5, 0.5, 0]])
    (dx,) = ops.softmax_backward(np.ones_like(x), cache)
    assert np.all(np.isfinite(dx))


def test_sigmoid_and_softplus_survive_huge_inputs():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    y, _ = ops.sigmoid_forward(x)
    np.testing.assert_allclose(y, scipy.special.expit(x), rtol=1e-15)
    s, _ = ops.softplus_forward(x)
    np.testing.assert_allclose(s, np.logaddexp(0, x))
    assert np.all(np.isfinite(s))


def test_oneplus_is_at_least_one():
    y, _ = ops.oneplus_forward(np.linspace(-1e3, 10, 7))
    assert np.all(y >= 1.0)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "softplus", "oneplus", "softmax"])
def test_activation_is_pure_and_linear_in_dout(name):
    x = np.random.default_rng(0).standard_normal((3, 4)) + 0.05
    assert_pure(name, x)
    assert_linear_in_dout(name, x)
