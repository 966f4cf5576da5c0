"""GELU (exact and tanh) and SiLU, the activations appended for the layers floor."""

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure
from tests.strategies import SMALL, f64

SHAPES = st.tuples(SMALL, st.integers(1, 6))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(x=SHAPES.flatmap(lambda s: f64(s, -5, 5)))
def test_gelu_gradients_match_finite_differences(approximate, x):
    assert_gradients_match("gelu", x, approximate=approximate)


@given(x=SHAPES.flatmap(lambda s: f64(s, -5, 5)))
def test_silu_gradients_match_finite_differences(x):
    assert_gradients_match("silu", x)


@given(x=SHAPES.flatmap(lambda s: f64(s, -8, 8)))
def test_exact_gelu_is_x_times_the_normal_cdf_and_the_tanh_form_is_close(x):
    exact, _ = ops.gelu_forward(x)
    np.testing.assert_allclose(exact, x * scipy.stats.norm.cdf(x), rtol=1e-13, atol=1e-15)
    approx, _ = ops.gelu_forward(x, approximate="tanh")
    np.testing.assert_allclose(approx, exact, atol=1e-3)  # Hendrycks & Gimpel's approximation


@given(x=SHAPES.flatmap(lambda s: f64(s, -8, 8)))
def test_silu_is_x_times_the_sigmoid(x):
    y, _ = ops.silu_forward(x)
    np.testing.assert_allclose(y, x * scipy.special.expit(x), rtol=1e-14, atol=1e-300)


def test_derivatives_at_zero_are_one_half():
    for dx in (
        ops.gelu_backward(np.ones(1), ops.gelu_forward(np.zeros(1))[1])[0],
        ops.gelu_backward(np.ones(1), ops.gelu_forward(np.zeros(1), approximate="tanh")[1])[0],
        ops.silu_backward(np.ones(1), ops.silu_forward(np.zeros(1))[1])[0],
    ):
        np.testing.assert_allclose(dx, 0.5, rtol=1e-15)


@pytest.mark.parametrize("name, hyper", [("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {})])
def test_huge_inputs_stay_finite_and_saturate(name, hyper):
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    y, cache = getattr(ops, f"{name}_forward")(x, **hyper)
    (dx,) = getattr(ops, f"{name}_backward")(np.ones_like(x), cache)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(y[[0, -1]], [0.0, 1e4], atol=1e-12)
    np.testing.assert_allclose(dx[[0, -1]], [0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("name, hyper", [("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {})])
def test_float32_in_float32_out(name, hyper):
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    y, cache = getattr(ops, f"{name}_forward")(x, **hyper)
    (dx,) = getattr(ops, f"{name}_backward")(np.ones_like(y), cache)
    assert y.dtype == dx.dtype == np.float32


@pytest.mark.parametrize("name, hyper", [("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {})])
def test_gelu_and_silu_are_pure_and_linear_in_dout(name, hyper):
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert_pure(name, x, **hyper)
    assert_linear_in_dout(name, x, **hyper)


def test_gelu_rejects_an_unknown_approximation():
    with pytest.raises(ValueError, match="approximate: expected 'none' or 'tanh', got 'erf'"):
        ops.gelu_forward(np.ones(2), approximate="erf")
    with pytest.raises(TypeError, match="x: expected a float ndarray"):
        ops.silu_forward("1")
