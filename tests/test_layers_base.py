"""The layer convention (refmann.layers.base) and that every exported layer follows it."""

import inspect

import numpy as np
import pytest

from refmann import layers, ops
from refmann.gradcheck import TOLERANCES, check_op
from tests.helpers import assert_gradients_match

rng = np.random.default_rng(0)

#: One small instance of every layer class, with an input shape (None: token indices; a tuple of shapes: a
#: layer of several inputs, ``forward(x, y)`` / ``backward -> (dx, dy, grads)``) and the forward's options.
EXAMPLES = {
    "Linear": (dict(input_dim=4, output_dim=3), (2, 5, 4), {}),
    "Embedding": (dict(num_embeddings=6, embedding_dim=3), None, {}),
    "LayerNorm": (dict(dim=4), (2, 5, 4), {}),
    "RMSNorm": (dict(dim=4), (2, 5, 4), {}),
    "BatchNorm": (dict(dim=4), (6, 4), {}),
    "GELU": ({}, (3, 4), {}),
    "SiLU": ({}, (3, 4), {}),
    "ReLU": ({}, (3, 4), {}),
    "Tanh": ({}, (3, 4), {}),
    "MultiHeadAttention": (dict(model_dim=4, num_heads=2), (2, 3, 4), {"causal": True}),
    "MLP": (dict(input_dim=4, hidden_dims=(5,), output_dim=3), (2, 4), {}),
    "TransformerBlock": (dict(model_dim=4, num_heads=2, mlp_dim=6), (2, 3, 4), {"causal": True}),
    "ProductKeyMemory": (dict(input_dim=4, output_dim=3, num_keys=4, num_heads=2, k=2, key_dim=4), (5, 4), {}),
    "SketchMemory": (dict(input_dim=4, output_dim=3, num_tables=2, num_bits=3, combine="concat"), (2, 5, 4), {}),
    "MemoryTokens": (
        dict(feature_dim=2, num_classes=3, label_dim=2, tokens_per_class=2, queue_size=4, num_heads=2),
        (3, 2),
        {},
    ),
    "MultiheadAttentionBlock": (dict(query_dim=4, kv_dim=3, num_heads=2), ((2, 3, 4), (2, 5, 3)), {}),
}
EXTRA = {"Sequential", "Layer", "LayerBase"}  # built from other layers, or the interface itself


def _example(name, seed=0, dtype=np.float64):
    """``(layer, inputs, options)``: ``inputs`` a tuple, one array per positional input of ``forward``."""
    kwargs, shape, options = EXAMPLES[name]
    layer = getattr(layers, name)(**kwargs, seed=seed, dtype=dtype)
    rng = np.random.default_rng(1)
    if shape is None:
        return layer, (np.array([[0, 5, 5], [2, 1, 0]]),), options
    shapes = shape if isinstance(shape[0], tuple) else (shape,)
    return layer, tuple(rng.standard_normal(s) for s in shapes), options


def _inputs_op(layer, n, **options):
    """A layer of ``n`` inputs as an op over ``(*inputs, *params)`` (:func:`layers.as_op` takes one input)."""
    keys = tuple(layer.params)

    def forward(*arrays):
        return layer.forward(*arrays[:n], params=dict(zip(keys, arrays[n:])), **options)

    def backward(dy, cache):
        *dxs, grads = layer.backward(dy, cache)
        return (*dxs, *(grads[k] for k in keys))

    return forward, backward


def test_every_exported_layer_class_has_an_example_here():
    classes = {n for n in layers.__all__ if isinstance(getattr(layers, n), type)}
    assert classes - EXTRA == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_layer_follows_the_convention(name):
    """params dict; forward(x) -> (y, cache); backward(dy, cache) -> (dx, grads) with params' keys and shapes.

    A layer of several inputs: forward(x, y) -> (out, cache); backward -> (dx, dy, grads), one gradient per input."""
    layer, xs, options = _example(name)
    assert isinstance(layer, layers.Layer)
    assert isinstance(layer.params, dict) and all(isinstance(v, np.ndarray) for v in layer.params.values())
    y, cache = layer.forward(*xs, **options)
    *dxs, grads = layer.backward(np.ones_like(y), cache)
    assert len(dxs) == len(xs)
    assert list(grads) == list(layer.params)
    for key, g in grads.items():
        assert np.shape(layers.densify(g)) == layer.params[key].shape, key
    if name == "Embedding":
        assert dxs[0] is None and isinstance(grads["weight"], ops.RowGrad)
    else:
        assert [dx.shape for dx in dxs] == [x.shape for x in xs]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_layer_constructor_is_keyword_only_with_seed_and_dtype(name):
    cls = getattr(layers, name)
    sig = inspect.signature(cls)
    assert all(p.kind == p.KEYWORD_ONLY for p in sig.parameters.values()), sig
    assert sig.parameters["seed"].default == 0
    assert sig.parameters["dtype"].default is np.float64
    a, b = _example(name, seed=3)[0], _example(name, seed=3)[0]
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    f32 = _example(name, dtype=np.float32)[0]
    assert all(v.dtype == np.float32 for v in f32.params.values())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_forward_reads_params_and_never_writes_them(name):
    layer, xs, options = _example(name)
    before = {k: v.copy() for k, v in layer.params.items()}
    y, cache = layer.forward(*xs, **options)
    layer.backward(np.ones_like(y), cache)
    for key, value in layer.params.items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    if layer.params:  # params= overrides layer.params
        other = {k: v + 0.5 for k, v in layer.params.items()}
        y2, _ = layer.forward(*xs, params=other, **options)
        assert not np.allclose(y, y2)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_layer_gradients_match_finite_differences(name):
    layer, xs, options = _example(name)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in layer.params.items()}  # off γ = 1, β = 0
    if name == "Embedding":
        fwd, bwd = layers.as_op(layer, differentiate_input=False)
        report = check_op(fwd, bwd, *params.values(), x=xs[0], seed=5)
    elif len(xs) > 1:
        report = check_op(*_inputs_op(layer, len(xs), **options), *xs, *params.values(), seed=5)
    else:
        report = check_op(*layers.as_op(layer, **options), *xs, *params.values(), seed=5)
    assert report.ok(TOLERANCES["op"]), str(report)


def test_scope_and_unscope_are_inverse():
    d = {"weight": 1, "bias": 2}
    assert layers.scope("block0.attn", d) == {"block0.attn.weight": 1, "block0.attn.bias": 2}
    assert layers.unscope("block0.attn", layers.scope("block0.attn", d)) == d
    assert layers.unscope("fc1", {"fc1.weight": 1, "fc10.weight": 2, "fc1.x.y": 3}) == {"weight": 1, "x.y": 3}


def test_sequential_scopes_parameter_names_and_shares_the_arrays():
    fc1 = layers.Linear(input_dim=3, output_dim=4, seed=1)
    fc2 = layers.Linear(input_dim=4, output_dim=2, seed=2, bias=False)
    net = layers.Sequential(layers={"fc1": fc1, "act": layers.GELU(), "fc2": fc2})
    assert list(net.params) == ["fc1.weight", "fc1.bias", "fc2.weight"]
    assert net.params["fc1.weight"] is fc1.params["weight"]
    x = rng.standard_normal((5, 3))
    y, cache = net.forward(x)
    h, _ = fc1.forward(x)
    np.testing.assert_array_equal(y, fc2.forward(ops.gelu_forward(h)[0])[0])
    assert_gradients_match(layers.as_op(net), x, *net.params.values())


def test_sequential_nests_names_and_the_hosts_dict_is_the_source_of_truth():
    inner = layers.Sequential(layers=[("attn", layers.MultiHeadAttention(model_dim=4, num_heads=2))])
    outer = layers.Sequential(layers=[("block0", inner)])
    assert "block0.attn.query.weight" in outer.params
    x = rng.standard_normal((2, 3, 4))
    y, _ = outer.forward(x)
    params = dict(outer.params)
    params["block0.attn.out.bias"] = params["block0.attn.out.bias"] + 1.0  # replaced, not written
    y2, _ = outer.forward(x, params=params)
    np.testing.assert_allclose(y2, y + 1.0, rtol=1e-12)
    outer.params["block0.attn.out.bias"] = params["block0.attn.out.bias"]  # as an optimizer does
    np.testing.assert_allclose(outer.forward(x)[0], y2, rtol=0)


def test_as_op_names_the_inputs_after_the_parameters():
    layer = layers.LayerNorm(dim=3)
    fwd, bwd = layers.as_op(layer)
    assert list(inspect.signature(fwd).parameters) == ["x", "weight", "bias"]
    report = check_op(fwd, bwd, rng.standard_normal((2, 3)), *layer.params.values(), seed=3)
    assert [r.name for r in report.inputs] == ["x", "weight", "bias"]
    mha = layers.MultiHeadAttention(model_dim=4, num_heads=2)
    assert "query_weight" in inspect.signature(layers.as_op(mha)[0]).parameters


def test_buffers_are_scoped_and_train_eval_reach_every_sub_layer():
    net = layers.Sequential(layers={"fc": layers.Linear(input_dim=3, output_dim=3), "bn": layers.BatchNorm(dim=3)})
    assert set(net.buffers) == {"bn.running_mean", "bn.running_var"}
    assert not set(net.buffers) & set(net.params)
    net.eval()
    assert not net.children["bn"].training
    net.train()
    assert net.children["bn"].training
    net.load_buffers({"bn.running_mean": np.ones(3)})
    np.testing.assert_array_equal(net.buffers["bn.running_mean"], 1.0)
    with pytest.raises(ValueError, match=r"buffers: unknown names \['bn.nope'\]"):
        net.load_buffers({"bn.nope": np.ones(3)})
    with pytest.raises(ValueError, match=r"buffers\['running_var'\]: expected shape \(3\)"):
        net.load_buffers({"bn.running_var": np.ones(2)})


def test_layer_construction_and_calls_reject_bad_input_naming_the_argument():
    with pytest.raises(TypeError, match="input_dim: expected an int"):
        layers.Linear(input_dim=2.0, output_dim=3)
    with pytest.raises(ValueError, match="output_dim: expected an int >= 1"):
        layers.Linear(input_dim=2, output_dim=0)
    with pytest.raises(TypeError, match="seed: expected a non-negative int"):
        layers.LayerNorm(dim=2, seed=-1)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64"):
        layers.RMSNorm(dim=2, dtype=np.int32)
    with pytest.raises(TypeError):
        layers.Linear(2, 3)  # keyword-only
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 2\), got \(3, 4\)"):
        layers.Linear(input_dim=2, output_dim=3).forward(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"params: missing \['bias'\]"):
        layers.Linear(input_dim=2, output_dim=3).forward(np.ones((3, 2)), params={"weight": np.ones((2, 3))})
    with pytest.raises(TypeError, match="params: expected a dict of arrays"):
        layers.Linear(input_dim=2, output_dim=3).forward(np.ones((3, 2)), params=[1])
    with pytest.raises(ValueError, match="layers: expected at least one layer"):
        layers.Sequential(layers={})
    with pytest.raises(ValueError, match="layers: expected names without dots"):
        layers.Sequential(layers={"a.b": layers.GELU()})
    with pytest.raises(TypeError, match=r"layers\['f'\]: expected a layer with forward/backward"):
        layers.Sequential(layers={"f": np.tanh})
    with pytest.raises(TypeError, match="layers: expected \\(name, layer\\) pairs"):
        layers.Sequential(layers=[layers.GELU()])


def test_as_op_leaves_a_training_batchnorms_running_statistics_as_it_found_them():
    layer = layers.BatchNorm(dim=3).train()
    before = {key: value.copy() for key, value in layer.buffers.items()}
    x = np.random.default_rng(0).standard_normal((5, 3)) * 2 + 1
    report = check_op(*layers.as_op(layer), x, *layer.params.values())
    assert report.max_rel_error < 1e-6
    for key, value in layer.buffers.items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    layer.forward(x)  # a plain forward in training mode still updates them
    assert not np.array_equal(layer.buffers["running_mean"], before["running_mean"])
