import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import layers
from tests.helpers import assert_gradients_match
from tests.strategies import f64

LEAD = st.lists(st.integers(1, 3), max_size=2).map(tuple)


@given(lead=LEAD, I=st.integers(1, 4), O=st.integers(1, 4), bias=st.booleans(), data=st.data())
def test_linear_gradients_match_over_any_leading_axes(lead, I, O, bias, data):
    layer = layers.Linear(input_dim=I, output_dim=O, bias=bias, seed=data.draw(st.integers(0, 99)))
    assert_gradients_match(layers.as_op(layer), data.draw(f64((*lead, I))), *layer.params.values(), seed=3)


def test_linear_is_x_at_weight_plus_bias_with_weights_stored_in_out():
    layer = layers.Linear(input_dim=3, output_dim=2, seed=4)
    W, b = layer.params["weight"], layer.params["bias"]
    assert W.shape == (3, 2) and b.shape == (2,)
    x = np.random.default_rng(0).standard_normal((4, 5, 3))
    y, _ = layer.forward(x)
    np.testing.assert_allclose(y, x @ W + b, rtol=1e-14)


def test_linear_init_is_pytorchs_uniform_bound():
    layer = layers.Linear(input_dim=100, output_dim=50, seed=0)
    for value in layer.params.values():
        assert np.abs(value).max() <= 0.1
        assert np.abs(value).max() > 0.09  # it does use the range


def test_linear_without_bias_has_no_bias_key_and_no_offset():
    layer = layers.Linear(input_dim=3, output_dim=2, bias=False)
    assert list(layer.params) == ["weight"]
    y, cache = layer.forward(np.zeros((1, 3)))
    np.testing.assert_array_equal(y, 0.0)
    assert list(layer.backward(np.ones_like(y), cache)[1]) == ["weight"]


def test_linear_casts_the_input_to_its_dtype():
    layer = layers.Linear(input_dim=2, output_dim=2, dtype=np.float32)
    y, _ = layer.forward(np.ones((1, 2)))
    assert y.dtype == np.float32


def test_linear_rejects_bad_input_naming_the_argument():
    with pytest.raises(TypeError, match="bias: expected True or False"):
        layers.Linear(input_dim=2, output_dim=2, bias=1)
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 2\)"):
        layers.Linear(input_dim=2, output_dim=2).forward(np.ones(3))
    with pytest.raises(TypeError, match="x: expected a float ndarray"):
        layers.Linear(input_dim=2, output_dim=2).forward("x")
