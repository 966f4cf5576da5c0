import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import layers
from tests.helpers import assert_gradients_match
from tests.strategies import f64


@given(
    norm=st.sampled_from(["layernorm", "rmsnorm"]),
    activation=st.sampled_from(["gelu", "gelu_tanh", "silu"]),
    causal=st.booleans(),
    B=st.integers(1, 2),
    T=st.integers(1, 4),
    seed=st.integers(0, 99),
    data=st.data(),
)
def test_transformer_block_gradients_match(norm, activation, causal, B, T, seed, data):
    block = layers.TransformerBlock(model_dim=4, num_heads=2, mlp_dim=6, norm=norm, activation=activation, seed=seed)
    x = data.draw(f64((B, T, 4))) + np.linspace(-1, 1, 4)  # rows never constant (the norms)
    params = {k: v + data.draw(f64(v.shape, -0.3, 0.3)) for k, v in block.params.items()}
    assert_gradients_match(layers.as_op(block, causal=causal), x, *params.values(), seed=9)


def test_block_parameter_names_are_scoped():
    block = layers.TransformerBlock(model_dim=4, num_heads=2)
    assert list(block.params) == [
        "ln1.weight",
        "ln1.bias",
        "attn.query.weight",
        "attn.query.bias",
        "attn.key.weight",
        "attn.key.bias",
        "attn.value.weight",
        "attn.value.bias",
        "attn.out.weight",
        "attn.out.bias",
        "ln2.weight",
        "ln2.bias",
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
    ]
    assert block.params["mlp.fc1.weight"].shape == (4, 16)  # mlp_dim = 4·D
    host = layers.Sequential(layers={"block0": block})
    assert "block0.attn.query.weight" in host.params
    assert list(layers.TransformerBlock(model_dim=4, num_heads=2, norm="rmsnorm").params)[:1] == ["ln1.weight"]


@pytest.mark.parametrize("causal", [False, True])
def test_block_is_pre_norm_residual(causal):
    block = layers.TransformerBlock(model_dim=6, num_heads=3, mlp_dim=8, seed=2)
    c = block.children
    x = np.random.default_rng(0).standard_normal((2, 5, 6))
    h = x + c["attn"].forward(c["ln1"].forward(x)[0], causal=causal)[0]
    y = h + c["mlp"].forward(c["ln2"].forward(h)[0])[0]
    np.testing.assert_allclose(block.forward(x, causal=causal)[0], y, rtol=1e-13, atol=1e-14)


def test_causal_block_output_at_t_ignores_later_positions():
    block = layers.TransformerBlock(model_dim=4, num_heads=2)
    x = np.random.default_rng(1).standard_normal((1, 6, 4))
    x2 = x.copy()
    x2[:, 4:] += 3.0
    np.testing.assert_array_equal(block.forward(x, causal=True)[0][:, :4], block.forward(x2, causal=True)[0][:, :4])


def test_transformer_block_rejects_bad_input_naming_the_argument():
    with pytest.raises(ValueError, match="norm: expected one of"):
        layers.TransformerBlock(model_dim=4, num_heads=2, norm="batchnorm")
    with pytest.raises(ValueError, match="num_heads: expected a divisor"):
        layers.TransformerBlock(model_dim=4, num_heads=3)
    with pytest.raises(ValueError, match=r"x: expected shape \(·, ·, 4\)"):
        layers.TransformerBlock(model_dim=4, num_heads=2).forward(np.ones((2, 3, 5)))


@given(B=st.integers(1, 2), T=st.integers(1, 3), gate=st.booleans(), seed=st.integers(0, 99), data=st.data())
def test_transformer_block_with_a_sketch_memory_gradients_match(B, T, gate, seed, data):
    from hypothesis import assume

    from refmann.layers.sketch import simhash_buckets

    block = layers.TransformerBlock(
        model_dim=4, num_heads=2, mlp_dim=6, sketch=dict(num_tables=2, num_bits=3, gate=gate), seed=seed
    )
    x = data.draw(f64((B, T, 4))) + np.linspace(-1, 1, 4)
    params = {k: np.asarray(v + data.draw(f64(v.shape, -0.3, 0.3))) for k, v in block.params.items()}
    _, cache = block.forward(x, params=params)
    assume(simhash_buckets(cache.sketch.x, block.children["sketch"].buffers["planes"])[1].min() > 1e-3)
    assert_gradients_match(layers.as_op(block), x, *params.values(), seed=9)


def test_transformer_block_sketch_is_a_residual_read_of_the_output():
    plain = layers.TransformerBlock(model_dim=4, num_heads=2, seed=3)
    block = layers.TransformerBlock(model_dim=4, num_heads=2, seed=3, sketch=dict(num_bits=2))
    assert list(block.children) == ["ln1", "attn", "ln2", "mlp", "sketch"]
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    y0 = plain.forward(x)[0]
    np.testing.assert_array_equal(block.forward(x)[0], y0)  # zero tables: the plain block, bit for bit
    block.params["sketch.values"][...] = 1.0
    np.testing.assert_allclose(block.forward(x)[0], y0 + 1.0, rtol=1e-13)  # every row reads the ones row
    with pytest.raises(ValueError, match=r"sketch: the block sets \['combine'\]"):
        layers.TransformerBlock(model_dim=4, num_heads=2, sketch=dict(combine="concat"))
    with pytest.raises(TypeError, match="sketch: expected None or a dict"):
        layers.TransformerBlock(model_dim=4, num_heads=2, sketch=True)
