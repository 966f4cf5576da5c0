import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import layers, ops
from refmann.layers.activations import ACTIVATIONS
from tests.helpers import assert_gradients_match
from tests.strategies import away_from_zero, f64

CASES = [
    (layers.GELU, {}, "gelu", {}),
    (layers.GELU, {"approximate": "tanh"}, "gelu", {"approximate": "tanh"}),
    (layers.SiLU, {}, "silu", {}),
    (layers.Tanh, {}, "tanh", {}),
    (layers.ReLU, {}, "relu", {}),
]
SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 5))


@pytest.mark.parametrize(("cls", "kwargs", "op", "hyper"), CASES)
@given(data=st.data())
def test_activation_layer_is_its_op_with_no_params(cls, kwargs, op, hyper, data):
    layer = cls(**kwargs)
    x = data.draw(SHAPES.flatmap(away_from_zero if op == "relu" else lambda s: f64(s, -4, 4)))
    assert layer.params == {}
    y, cache = layer.forward(x)
    np.testing.assert_array_equal(y, getattr(ops, f"{op}_forward")(x, **hyper)[0])
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache)
    assert grads == {}
    np.testing.assert_array_equal(dx, getattr(ops, f"{op}_backward")(dy, cache)[0])
    assert_gradients_match(layers.as_op(layer), x)


def test_activation_names_build_the_layers():
    assert ACTIVATIONS["gelu_tanh"]().approximate == "tanh"
    assert isinstance(ACTIVATIONS["silu"](), layers.SiLU)


def test_gelu_layer_rejects_an_unknown_approximation():
    with pytest.raises(ValueError, match="approximate: expected 'none' or 'tanh'"):
        layers.GELU(approximate="fast")
