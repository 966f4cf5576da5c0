"""refmann.layers.ProductKeyMemory: gradients, the value row gradient, brute force, init, arguments."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refmann import layers, ops
from refmann.layers.product_keys import ProductKeyMemory
from tests.helpers import assert_gradients_match
from tests.strategies import f64


def _layer(X=5, Y=3, n=4, H=2, k=2, dk=4, query_norm=None, **kw):
    return ProductKeyMemory(
        input_dim=X, output_dim=Y, num_keys=n, num_heads=H, k=k, key_dim=dk, query_norm=query_norm, **kw
    )


def _all_scores(queries, keys):
    """Every slot's score, (B, H, n²), slot i·n + j: the brute force the search must agree with."""
    half = queries.shape[-1] // 2
    s1 = np.einsum("bhd,hnd->bhn", queries[..., :half], keys[:, 0])  # (B, H, n)
    s2 = np.einsum("bhd,hnd->bhn", queries[..., half:], keys[:, 1])  # (B, H, n)
    B, H, n = s1.shape
    return (s1[..., :, None] + s2[..., None, :]).reshape(B, H, n * n)


def _brute_force(layer, x, params):
    """y by the formula, over all n² slots: per head the top k of the scores, their softmax, the summed values."""
    z = x @ params["query.weight"] + params["query.bias"]
    queries = z.reshape(len(x), layer.num_heads, layer.key_dim)
    scores = _all_scores(queries, params["keys"])  # (B, H, n²)
    y = np.zeros((len(x), layer.output_dim))
    for b in range(len(x)):
        for h in range(layer.num_heads):
            top = np.argsort(-scores[b, h], kind="stable")[: layer.k]
            w = np.exp(scores[b, h, top] - scores[b, h, top].max())
            y[b] += (w / w.sum()) @ params["values"][top]
    return y


def _margin(layer, cache):
    """The smallest gap, over batch and heads, between the k-th and the (k+1)-th of the n² scores."""
    s = -np.sort(-_all_scores(cache.search.queries, cache.search.keys), axis=-1)  # (B, H, n²) descending
    return np.min(s[..., layer.k - 1] - s[..., layer.k]) if s.shape[-1] > layer.k else np.inf


@given(
    B=st.integers(1, 3), H=st.integers(1, 2), n=st.integers(2, 4), half=st.integers(1, 2), Y=st.integers(1, 3),
    k=st.integers(1, 4), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_gradients_match_without_a_query_norm_on_separated_scores(B, H, n, half, Y, k, seed):
    """Every parameter and the input, FD-checked, with the queries built to be separated_product_keys'."""
    k = min(k, n)
    rng = np.random.default_rng(seed)
    X = B + 1
    layer = _layer(X=X, Y=Y, n=n, H=H, k=k, dk=2 * half, seed=seed % 7)
    queries, keys = ops.separated_product_keys(rng, B, H, n, half)
    x = rng.standard_normal((X, X))[:B]  # full row rank
    bias = rng.uniform(-0.5, 0.5, H * 2 * half)
    weight = np.linalg.lstsq(x, queries.reshape(B, -1) - bias, rcond=None)[0]  # x W + b = the queries
    params = {"query.weight": weight, "query.bias": bias, "keys": keys, "values": layer.params["values"]}
    _, cache = layer.forward(x, params=params)
    np.testing.assert_allclose(cache.search.queries, queries, atol=1e-9)
    assert _margin(layer, cache) > 0.3
    assert_gradients_match(layers.as_op(layer), x, *params.values(), seed=seed % 5)


@pytest.mark.parametrize("query_norm", ["layernorm", "batchnorm"])
@given(B=st.integers(2, 4), H=st.integers(1, 2), n=st.integers(2, 4), k=st.integers(1, 3), data=st.data())
def test_gradients_match_with_a_query_norm_in_training_mode(query_norm, B, H, n, k, data):
    """LayerNorm, and BatchNorm through its batch statistics; inputs kept where the top k has a margin."""
    k = min(k, n)
    layer = _layer(X=3, Y=2, n=n, H=H, k=k, dk=4, query_norm=query_norm, seed=1).train()
    params = {key: v + data.draw(f64(v.shape, -0.4, 0.4)) for key, v in layer.params.items()}
    x = data.draw(f64((B, 3))) + np.linspace(-1, 1, B)[:, None]  # features never constant over the batch
    z = x @ params["query.weight"] + params["query.bias"]  # (B, H·dk): what the norm normalises
    assume(np.min(z.var(axis=0 if query_norm == "batchnorm" else 1)) > 0.05)  # not near 0/0 (ill-conditioned)
    _, cache = layer.forward(x, params=params)
    assume(_margin(layer, cache) > 1e-3)
    assert_gradients_match(layers.as_op(layer), x, *params.values(), seed=2)


def test_value_row_gradient_equals_add_at_of_the_heads_contributions():
    layer = _layer(X=4, Y=3, n=3, H=3, k=3, dk=2, seed=4)  # 9 slots, 3 heads × 3 reads × 5 inputs: repeats
    x = np.random.default_rng(5).standard_normal((5, 4))
    dy = np.random.default_rng(6).standard_normal((5, 3))
    y, cache = layer.forward(x)
    _, grads = layer.backward(dy, cache)
    g = grads["values"]
    assert isinstance(g, ops.RowGrad)
    slots, w = cache.search.slots, cache.softmax.out  # (B, H, k) each
    np.testing.assert_array_equal(g.indices, np.unique(slots))  # the distinct slots read, once each
    assert len(g.indices) < slots.size  # duplicates were merged
    expected = np.zeros_like(layer.params["values"])
    for h in range(layer.num_heads):  # head h's contribution: w_{b,h,r} dy_b into row slot_{b,h,r}
        np.add.at(expected, slots[:, h].reshape(-1), (w[:, h, :, None] * dy[:, None, :]).reshape(-1, 3))
    np.testing.assert_allclose(layers.densify(g), expected, rtol=1e-13, atol=1e-15)
    assert not isinstance(grads["keys"], ops.RowGrad) and grads["keys"].shape == layer.params["keys"].shape


@pytest.mark.parametrize("k", [1, 3, 5])
def test_output_equals_the_brute_force_formula_over_all_slots(k):
    """With k = num_keys (= 5) each half's search keeps every sub-key: the k² grid is all n² slots."""
    layer = _layer(X=4, Y=3, n=5, H=2, k=k, dk=6, seed=7)
    x = np.random.default_rng(8).standard_normal((6, 4))
    y, cache = layer.forward(x)
    np.testing.assert_allclose(y, _brute_force(layer, x, layer.params), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cache.softmax.out.sum(-1), 1.0, rtol=1e-14)  # heads summed: total weight H


def test_parameters_are_named_shaped_and_initialised_as_xlm():
    layer = _layer(X=6, Y=64, n=32, H=2, k=4, dk=8, query_norm="layernorm", seed=3)
    shapes = {key: v.shape for key, v in layer.params.items()}
    assert shapes == {
        "query.weight": (6, 16), "query.bias": (16,), "query_norm.weight": (16,), "query_norm.bias": (16,),
        "keys": (2, 2, 32, 4), "values": (1024, 64),
    }  # fmt: skip
    keys, values = layer.params["keys"], layer.params["values"]
    assert np.abs(keys).max() <= 0.5 and np.abs(keys).max() > 0.45  # U(±1/√(key_dim/2)) = U(±0.5)
    assert abs(values.std() - 64**-0.5) < 0.03 * 64**-0.5 and abs(values.mean()) < 0.01
    again, other = _layer(X=6, Y=64, n=32, H=2, k=4, dk=8, query_norm="layernorm", seed=3), _layer(seed=4)
    for key in layer.params:
        np.testing.assert_array_equal(layer.params[key], again.params[key])
    assert not np.array_equal(_layer(seed=3).params["keys"], other.params["keys"])
    f32 = _layer(dtype=np.float32)
    assert all(v.dtype == np.float32 for v in f32.params.values())
    assert f32.forward(np.ones((2, 5)))[0].dtype == np.float32


def test_batchnorm_query_norm_keeps_running_statistics_and_evaluation_uses_them():
    layer = _layer(query_norm="batchnorm", seed=2)
    assert set(layer.buffers) == {"query_norm.running_mean", "query_norm.running_var"}
    x = np.random.default_rng(3).standard_normal((6, 5))
    layer.forward(x)  # training: new statistics
    assert not np.array_equal(layer.buffers["query_norm.running_mean"], 0.0)
    stats = layer.buffers
    layer.eval()
    y, cache = layer.forward(x[:1])  # one input is fine in evaluation mode
    assert not cache.norm.training
    for key, value in layer.buffers.items():
        assert value is stats[key]
    assert_gradients_match(layers.as_op(layer), x[:2], *layer.params.values(), seed=3)


def test_leading_axes_are_one_batch_and_backward_is_repeatable():
    layer = _layer(seed=5)
    x = np.random.default_rng(9).standard_normal((2, 3, 5))
    y, cache = layer.forward(x)
    np.testing.assert_array_equal(y.reshape(6, 3), layer.forward(x.reshape(6, 5))[0])
    dy = np.random.default_rng(10).standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache)
    dx2, grads2 = layer.backward(dy, cache)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, dx2)
    for key in grads:
        np.testing.assert_array_equal(layers.densify(grads[key]), layers.densify(grads2[key]))


def test_layers_namespace_exports_the_layer():
    assert layers.ProductKeyMemory is ProductKeyMemory


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(dk=3), ValueError, "key_dim: expected an even int"),
        (dict(dk=0), ValueError, "key_dim: expected an int >= 1"),
        (dict(k=5, n=4), ValueError, r"k: expected 1 <= k <= num_keys = 4, got 5"),
        (dict(k=0), ValueError, "k: expected an int >= 1"),
        (dict(n=0), ValueError, "num_keys: expected an int >= 1"),
        (dict(H=0), ValueError, "num_heads: expected an int >= 1"),
        (dict(X=0), ValueError, "input_dim: expected an int >= 1"),
        (dict(Y=-1), ValueError, "output_dim: expected an int >= 1"),
        (dict(X=2.0), TypeError, "input_dim: expected an int"),
        (dict(query_norm="rmsnorm"), ValueError, "query_norm: expected None or one of"),
        (dict(query_norm=True), TypeError, "query_norm: expected None or one of"),
        (dict(seed=-1), TypeError, "seed: expected a non-negative int"),
        (dict(dtype=np.int32), TypeError, "dtype: expected float32 or float64"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        _layer(**kwargs)


def test_bad_calls_are_refused_naming_the_argument():
    layer = _layer()
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 5\), got \(2, 4\)"):
        layer.forward(np.ones((2, 4)))
    y, cache = layer.forward(np.ones((2, 5)))
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.ones((2, 4)), cache)
    with pytest.raises(ValueError, match=r"params: missing \['values'\]"):
        layer.forward(np.ones((2, 5)), params={k: v for k, v in layer.params.items() if k != "values"})


# -- Memory+ (swilu output), PEER experts, shared values ----------------------------------------------------


def _separated_params(layer, rng, B):
    """x and params whose queries are separated_product_keys' (a margin at the top k), other tables random."""
    X = layer.input_dim
    queries, keys = ops.separated_product_keys(rng, B, layer.num_heads, layer.num_keys, layer.key_dim // 2)
    x = rng.standard_normal((X, X))[:B]  # full row rank (X >= B)
    bias = rng.uniform(-0.5, 0.5, layer.num_heads * layer.key_dim)
    weight = np.linalg.lstsq(x, queries.reshape(B, -1) - bias, rcond=None)[0]  # x W + b = the queries
    params = {key: v + 0.3 * rng.standard_normal(v.shape) for key, v in layer.params.items()}
    params.update({"query.weight": weight, "query.bias": bias, "keys": keys})
    return x, params


MODES = [dict(output="swilu"), dict(experts=True), dict(output="swilu", experts=True)]


@pytest.mark.parametrize("mode", MODES, ids=["swilu", "peer", "swilu+peer"])
@given(B=st.integers(1, 3), H=st.integers(1, 2), n=st.integers(2, 4), Y=st.integers(1, 3), k=st.integers(1, 3),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_gradients_match_with_memory_plus_and_peer(mode, B, H, n, Y, k, seed):
    """Every parameter (gate, out, expert_in included) and the input, FD-checked on separated scores."""
    rng = np.random.default_rng(seed)
    layer = _layer(X=B + 1, Y=Y, n=n, H=H, k=min(k, n), dk=4, seed=seed % 7, **mode)
    x, params = _separated_params(layer, rng, B)
    assert _margin(layer, layer.forward(x, params=params)[1]) > 0.3
    assert_gradients_match(layers.as_op(layer), x, *params.values(), seed=seed % 5)


def _brute_force_modes(layer, x, p):
    """The Memory+/PEER formulas over all n² slots, one input and one head at a time."""
    z = x @ p["query.weight"] + p["query.bias"]
    scores = _all_scores(z.reshape(len(x), layer.num_heads, layer.key_dim), p["keys"])  # (B, H, n²)
    gelu = lambda a: 0.5 * a * (1 + np.vectorize(math.erf)(a / np.sqrt(2)))  # noqa: E731
    y = np.zeros((len(x), layer.output_dim))
    for b in range(len(x)):
        for h in range(layer.num_heads):
            top = np.argsort(-scores[b, h], kind="stable")[: layer.k]
            w = np.exp(scores[b, h, top] - scores[b, h, top].max())
            c = w / w.sum()
            if layer.experts:
                c = c * gelu(p["expert_in"][top] @ x[b])
            y[b] += c @ p["values"][top]
    if layer.output == "swilu":
        g = x @ p["gate.weight"] + p["gate.bias"]
        y = (y * g / (1 + np.exp(-g))) @ p["out.weight"] + p["out.bias"]
    return y


@pytest.mark.parametrize("mode", MODES, ids=["swilu", "peer", "swilu+peer"])
def test_memory_plus_and_peer_outputs_equal_their_formulas_over_all_slots(mode):
    layer = _layer(X=4, Y=3, n=5, H=2, k=3, dk=6, seed=7, **mode)
    rng = np.random.default_rng(8)
    params = {key: v + 0.2 * rng.standard_normal(v.shape) for key, v in layer.params.items()}  # biases non-zero
    x = rng.standard_normal((6, 4))
    y, _ = layer.forward(x, params=params)
    np.testing.assert_allclose(y, _brute_force_modes(layer, x, params), rtol=1e-12, atol=1e-13)


def test_memory_plus_and_peer_parameters_are_named_shaped_and_initialised_as_meta():
    layer = _layer(X=40, Y=64, n=16, H=2, k=4, dk=8, output="swilu", experts=True, seed=3)
    shapes = {key: v.shape for key, v in layer.params.items()}
    assert shapes == {
        "query.weight": (40, 16), "query.bias": (16,), "gate.weight": (40, 64), "gate.bias": (64,),
        "out.weight": (64, 64), "out.bias": (64,), "keys": (2, 2, 16, 4), "values": (256, 64),
        "expert_in": (256, 40),
    }  # fmt: skip
    for key, fan_in in (("gate.weight", 40), ("out.weight", 64), ("expert_in", 40)):
        assert abs(layer.params[key].std() - fan_in**-0.5) < 0.05 * fan_in**-0.5, key
    assert not layer.params["gate.bias"].any() and not layer.params["out.bias"].any()
    xlm = _layer(X=40, Y=64, n=16, H=2, k=4, dk=8, seed=3)
    for key in xlm.params:  # the options add keys without renaming (or redrawing) XLM's
        np.testing.assert_array_equal(xlm.params[key], layer.params[key])


def test_peer_expert_row_gradient_equals_add_at_over_every_use():
    layer = _layer(X=4, Y=3, n=3, H=3, k=3, dk=2, experts=True, seed=4)  # 9 experts, 45 uses: repeats
    x = np.random.default_rng(5).standard_normal((5, 4))
    dy = np.random.default_rng(6).standard_normal((5, 3))
    y, cache = layer.forward(x)
    _, grads = layer.backward(dy, cache)
    g = grads["expert_in"]
    assert isinstance(g, ops.RowGrad) and isinstance(grads["values"], ops.RowGrad)
    slots = cache.search.slots.reshape(5, -1)  # (B, H·k)
    np.testing.assert_array_equal(g.indices, np.unique(slots))
    # dα by the chain rule, one use at a time, then np.add.at as the oracle of the scatter
    w = cache.softmax.out.reshape(5, -1)
    alpha = np.einsum("bjx,bx->bj", layer.params["expert_in"][slots], x)
    phi = 0.5 * (1 + np.vectorize(math.erf)(alpha / np.sqrt(2))) + alpha * np.exp(-(alpha**2) / 2) / np.sqrt(2 * np.pi)
    dalpha = (layer.params["values"][slots] @ dy[:, :, None])[..., 0] * w * phi  # (B, H·k)
    expected = np.zeros_like(layer.params["expert_in"])
    np.add.at(expected, slots.reshape(-1), (dalpha[..., None] * x[:, None, :]).reshape(-1, 4))
    np.testing.assert_allclose(layers.densify(g), expected, rtol=1e-12, atol=1e-14)


class _TwoLayersOneTable:
    """y = L2(L1(x)) with one value table V read by both (Memory+'s sharing), as an op over (x, *params, V)."""

    def __init__(self, l1, l2):
        self.l1, self.l2 = l1, l2
        self.k1, self.k2 = tuple(l1.params), tuple(l2.params)

    def split(self, arrays):
        n1 = len(self.k1)
        p1 = dict(zip(self.k1, arrays[:n1])) | {"values": arrays[-1]}
        p2 = dict(zip(self.k2, arrays[n1:-1])) | {"values": arrays[-1]}
        return p1, p2

    def forward(self, x, *arrays):
        p1, p2 = self.split(arrays)
        h, c1 = self.l1.forward(x, params=p1)
        y, c2 = self.l2.forward(h, params=p2)
        return y, (c1, c2)

    def backward(self, dy, cache):
        dh, g2 = self.l2.backward(dy, cache[1])
        dx, g1 = self.l1.backward(dh, cache[0])
        v1, v2 = g1["values"], g2["values"]
        dv = ops.RowGrad(np.concatenate([v1.indices, v2.indices]), np.concatenate([v1.rows, v2.rows]), v1.num_rows)
        return (dx, *(g1[key] for key in self.k1), *(g2[key] for key in self.k2), dv)


@pytest.mark.parametrize("output", ["sum", "swilu"])
@given(B=st.integers(1, 3), n=st.integers(2, 4), seed=st.integers(0, 2**16))
def test_a_shared_value_table_gets_the_sum_of_the_layers_gradients(output, B, n, seed):
    """Two layers read one table V; the check perturbs V once and must see both layers' contributions."""
    rng = np.random.default_rng(seed)
    Y = 4
    kw = dict(Y=Y, n=n, H=2, k=min(2, n), dk=4, output=output, shared_values=True)
    l1, l2 = _layer(X=B + 1, seed=1, **kw), _layer(X=Y, seed=2, **kw)
    assert "values" not in l1.params and l1.external_params == ("values",)
    values = ProductKeyMemory.init_values(n * n, Y, seed=seed)
    x, p1 = _separated_params(l1, rng, B)
    p2 = {key: v + 0.3 * rng.standard_normal(v.shape) for key, v in l2.params.items()}
    stack = _TwoLayersOneTable(l1, l2)
    arrays = (*p1.values(), *p2.values(), values)
    _, (c1, c2) = stack.forward(x, *arrays)
    assume(_margin(l2, c2) > 1e-3)  # the second layer's queries come from the first's output
    assert _margin(l1, c1) > 0.3
    assert_gradients_match((stack.forward, stack.backward), x, *arrays, seed=seed % 5)


def test_a_layer_with_shared_values_must_be_given_the_table():
    layer = _layer(shared_values=True)
    with pytest.raises(ValueError, match="shared 'values'"):
        layer.forward(np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"params: missing \['values'\]"):
        layer.forward(np.ones((2, 5)), params=dict(layer.params))
    values = ProductKeyMemory.init_values(16, 3)
    y, cache = layer.forward(np.ones((2, 5)), params=dict(layer.params, values=values))
    _, grads = layer.backward(np.ones_like(y), cache)
    assert set(grads) == set(layer.params) | {"values"}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(output="gated"), ValueError, r"output: expected one of \['sum', 'swilu'\]"),
        (dict(output=None), ValueError, "output: expected one of"),
        (dict(experts=1), TypeError, "experts: expected True or False"),
        (dict(shared_values="yes"), TypeError, "shared_values: expected True or False"),
    ],
)
def test_bad_memory_plus_and_peer_options_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        _layer(**kwargs)
