import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann import layers, ops
from tests.helpers import assert_gradients_match
from tests.strategies import f64


@st.composite
def mha_case(draw):
    H = draw(st.integers(1, 3))
    dk = draw(st.integers(1, 3))
    D = H * dk
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    layer = layers.MultiHeadAttention(model_dim=D, num_heads=H, seed=draw(st.integers(0, 99)))
    return layer, draw(f64((B, T, D)))


@given(case=mha_case(), causal=st.booleans())
def test_multi_head_attention_gradients_match(case, causal):
    layer, x = case
    assert_gradients_match(layers.as_op(layer, causal=causal), x, *layer.params.values(), seed=6)


@given(case=mha_case(), data=st.data())
def test_multi_head_attention_gradients_match_with_a_padding_mask(case, data):
    layer, x = case
    B, T, _ = x.shape
    pad = data.draw(arrays(np.bool_, (B, T)))
    pad[:, 0] = True
    assert_gradients_match(layers.as_op(layer, mask=pad[:, None, None, :]), x, *layer.params.values(), seed=6)


def naive_mha(layer, x, causal):
    """Each head on its own: project, attend with the op, concatenate, project out."""
    p, H = layer.params, layer.num_heads
    dk, dv = layer.key_dim, layer.value_dim
    q, k, v = (x @ p[f"{n}.weight"] + p[f"{n}.bias"] for n in ("query", "key", "value"))
    heads = []
    for h in range(H):
        qh, kh, vh = q[..., h * dk : (h + 1) * dk], k[..., h * dk : (h + 1) * dk], v[..., h * dv : (h + 1) * dv]
        o, _ = ops.attention_forward(qh[:, None], kh[:, None], vh[:, None], causal=causal)
        heads.append(o[:, 0])
    return np.concatenate(heads, axis=-1) @ p["out.weight"] + p["out.bias"]


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_equals_its_heads_computed_one_by_one(causal):
    layer = layers.MultiHeadAttention(model_dim=6, num_heads=3, key_dim=2, value_dim=4, seed=1)
    assert {k: v.shape for k, v in layer.params.items()} == {
        "query.weight": (6, 6),
        "query.bias": (6,),
        "key.weight": (6, 6),
        "key.bias": (6,),
        "value.weight": (6, 12),
        "value.bias": (12,),
        "out.weight": (12, 6),
        "out.bias": (6,),
    }
    x = np.random.default_rng(0).standard_normal((2, 4, 6))
    y, cache = layer.forward(x, causal=causal)
    np.testing.assert_allclose(y, naive_mha(layer, x, causal), rtol=1e-12, atol=1e-13)
    assert cache.attn.weights.shape == (2, 3, 4, 4)


def test_causal_output_at_t_ignores_later_positions():
    layer = layers.MultiHeadAttention(model_dim=4, num_heads=2)
    x = np.random.default_rng(1).standard_normal((2, 5, 4))
    y, _ = layer.forward(x, causal=True)
    x2 = x.copy()
    x2[:, 3:] = 9.0
    np.testing.assert_array_equal(layer.forward(x2, causal=True)[0][:, :3], y[:, :3])


def test_padded_positions_do_not_change_the_others():
    layer = layers.MultiHeadAttention(model_dim=4, num_heads=2)
    x = np.random.default_rng(2).standard_normal((2, 5, 4))
    valid = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], bool)
    mask = valid[:, None, None, :]
    y, cache = layer.forward(x, mask=mask)
    x2 = np.where(valid[..., None], x, -5.0)
    np.testing.assert_allclose(layer.forward(x2, mask=mask)[0][valid], y[valid], rtol=1e-13, atol=1e-14)
    dx, _ = layer.backward(np.where(valid[..., None], 1.0, 0.0) * np.ones_like(y), cache)
    np.testing.assert_array_equal(dx[~valid], 0.0)  # a loss on valid outputs reaches no padded input


def test_multi_head_attention_rejects_bad_input_naming_the_argument():
    with pytest.raises(ValueError, match="num_heads: expected a divisor of model_dim = 5"):
        layers.MultiHeadAttention(model_dim=5, num_heads=2)
    layer = layers.MultiHeadAttention(model_dim=4, num_heads=2)
    with pytest.raises(ValueError, match=r"x: expected shape \(·, ·, 4\), got \(3, 4\)"):
        layer.forward(np.ones((3, 4)))
    with pytest.raises(ValueError, match="mask: every query must keep at least one key"):
        layer.forward(np.ones((1, 2, 4)), mask=np.zeros((2, 2), bool))
    with pytest.raises(TypeError, match="causal: expected True or False"):
        layer.forward(np.ones((1, 2, 4)), causal="yes")
