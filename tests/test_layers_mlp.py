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


# -- a sketch memory at every layer (Panigrahy et al. 2021, refmann's reconstruction) -------------------


def _off_hyperplanes(mlp, x):
    """True when no input of any memory sits within 1e-3 of one of its hyperplanes (the hash is constant)."""
    from refmann.layers.sketch import simhash_buckets

    _, caches = mlp.forward(x)
    for (name, child), cache in zip(mlp.children.items(), caches):
        if name.startswith("mem") and simhash_buckets(cache.x, child.buffers["planes"])[1].min() < 1e-3:
            return False
    return True


@given(
    hidden=st.lists(st.integers(2, 4), min_size=1, max_size=3),
    combine=st.sampled_from(["concat", "residual"]),
    gate=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_mlp_with_a_memory_at_every_layer_gradients_match(hidden, combine, gate, seed):
    from hypothesis import assume

    memory = dict(num_tables=2, num_bits=3, combine=combine, gate=gate) | (
        {"output_dim": 2} if combine == "concat" else {}
    )
    mlp = layers.MLP(input_dim=3, hidden_dims=hidden, output_dim=2, activation="tanh", memory=memory, seed=seed % 7)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 3))
    assume(_off_hyperplanes(mlp, x))
    params = {k: v if not k.endswith("values") else rng.standard_normal(v.shape) for k, v in mlp.params.items()}
    assert_gradients_match(layers.as_op(mlp), x, *params.values(), seed=seed % 5)


def test_mlp_memory_placement_widths_and_composition():
    mlp = layers.MLP(
        input_dim=3,
        hidden_dims=(5, 4),
        output_dim=2,
        activation="relu",
        memory=dict(num_tables=2, num_bits=3, output_dim=2),
    )
    assert list(mlp.children) == ["fc1", "act1", "mem1", "fc2", "act2", "mem2", "fc3"]
    assert mlp.memory_layers == (1, 2)
    assert mlp.params["fc2.weight"].shape == (5 + 2, 4) and mlp.params["fc3.weight"].shape == (4 + 2, 2)
    assert mlp.params["mem1.values"].shape == (2 * 2**3, 2)
    # the composition by hand: the memory reads after the activation, and the next layer reads [h ; r]
    rng = np.random.default_rng(1)
    for key in ("mem1.values", "mem2.values"):
        mlp.params[key][...] = rng.standard_normal(mlp.params[key].shape)
    x = rng.standard_normal((6, 3))
    p, ch = mlp.params, mlp.children
    h = np.maximum(x @ p["fc1.weight"] + p["fc1.bias"], 0)
    h = np.concatenate([h, ch["mem1"].forward(h)[0][:, 5:]], axis=1)
    h = np.maximum(h @ p["fc2.weight"] + p["fc2.bias"], 0)
    h = np.concatenate([h, ch["mem2"].forward(h)[0][:, 4:]], axis=1)
    np.testing.assert_allclose(mlp.forward(x)[0], h @ p["fc3.weight"] + p["fc3.bias"], rtol=1e-12)
    # a zero-initialised memory is a no-op read: a residual memory MLP starts as the plain MLP
    plain = layers.MLP(input_dim=3, hidden_dims=(5,), output_dim=2, seed=4)
    res = layers.MLP(
        input_dim=3, hidden_dims=(5,), output_dim=2, seed=4, memory=dict(num_tables=2, num_bits=3, combine="residual")
    )
    np.testing.assert_array_equal(plain.forward(x)[0], res.forward(x)[0])
    only2 = layers.MLP(input_dim=3, hidden_dims=(5, 4), memory=dict(num_bits=2, output_dim=1), memory_layers=[2])
    assert list(only2.children) == ["fc1", "act1", "fc2", "act2", "mem2", "fc3"]


def test_mlp_memory_rejects_bad_options_naming_the_argument():
    with pytest.raises(TypeError, match="memory: expected None or a dict"):
        layers.MLP(input_dim=2, hidden_dims=3, memory=4)
    with pytest.raises(ValueError, match=r"memory: the MLP sets \['input_dim'\]"):
        layers.MLP(input_dim=2, hidden_dims=3, memory=dict(input_dim=3))
    with pytest.raises(ValueError, match="memory_layers: expected distinct hidden layers in"):
        layers.MLP(input_dim=2, hidden_dims=(3, 3), memory={}, memory_layers=[3])
    with pytest.raises(ValueError, match="memory_layers: expected 'all'"):
        layers.MLP(input_dim=2, hidden_dims=3, memory={}, memory_layers="every")
    with pytest.raises(ValueError, match="output_dim: combine='residual'"):
        layers.MLP(input_dim=2, hidden_dims=3, memory=dict(combine="residual", output_dim=2))
