import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import layers, ops
from tests.helpers import assert_gradients_match
from tests.strategies import f64


@given(
    hidden=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    activation=st.sampled_from(["gelu", "silu", "tanh"]),
    data=st.data(),
)
def test_mlp_gradients_match(hidden, activation, data):
    mlp = layers.MLP(
        input_dim=3, hidden_dims=hidden, output_dim=2, activation=activation, seed=data.draw(st.integers(0, 9))
    )
    x = data.draw(f64((data.draw(st.integers(1, 3)), 3)))
    assert_gradients_match(layers.as_op(mlp), x, *mlp.params.values(), seed=8)


def test_mlp_names_its_layers_and_equals_the_composition():
    mlp = layers.MLP(input_dim=3, hidden_dims=(5, 4), output_dim=2, activation="silu")
    assert list(mlp.params) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
    assert list(mlp.children) == ["fc1", "act1", "fc2", "act2", "fc3"]
    p = mlp.params
    x = np.random.default_rng(0).standard_normal((4, 3))
    h = ops.silu_forward(x @ p["fc1.weight"] + p["fc1.bias"])[0]
    h = ops.silu_forward(h @ p["fc2.weight"] + p["fc2.bias"])[0]
    np.testing.assert_allclose(mlp.forward(x)[0], h @ p["fc3.weight"] + p["fc3.bias"], rtol=1e-13)


def test_mlp_output_dim_defaults_to_the_input_dim_and_hidden_may_be_an_int():
    mlp = layers.MLP(input_dim=4, hidden_dims=16)
    assert mlp.params["fc1.weight"].shape == (4, 16) and mlp.params["fc2.weight"].shape == (16, 4)


def test_mlp_rejects_bad_input_naming_the_argument():
    with pytest.raises(ValueError, match="activation: expected one of"):
        layers.MLP(input_dim=2, hidden_dims=3, activation="swish")
    with pytest.raises(ValueError, match="hidden_dims: expected an int >= 1"):
        layers.MLP(input_dim=2, hidden_dims=(3, 0))
    with pytest.raises(TypeError, match="hidden_dims: expected an int or a sequence of ints"):
        layers.MLP(input_dim=2, hidden_dims="3")
