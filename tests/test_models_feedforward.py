import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refmann import layers, ops
from refmann.gradcheck import TOLERANCES, check_model
from refmann.models.feedforward import FeedForwardModel, MLPClassifier, Transformer, TransformerConfig

rng = np.random.default_rng(0)


def _assert_check(model, *args, **kwargs):
    report = check_model(model, *args, **kwargs)
    assert not report.crossed_kink
    assert report.ok(TOLERANCES["model"]), str(report)
    return report


@given(
    B=st.integers(1, 4),
    hidden=st.lists(st.integers(1, 4), min_size=1, max_size=2),
    activation=st.sampled_from(["gelu", "silu", "tanh"]),
    seed=st.integers(0, 99),
)
def test_mlp_classifier_gradients_match_for_softmax_cross_entropy(B, hidden, activation, seed):
    model = MLPClassifier(input_size=3, output_size=4, hidden_sizes=hidden, activation=activation, seed=seed)
    r = np.random.default_rng(seed)
    x, y = r.standard_normal((B, 3)), r.integers(0, 4, B)
    _assert_check(model, x, y, (r.random(B) > 0.3) * 1.0)


def test_mlp_classifier_gradients_match_for_sigmoid_cross_entropy():
    model = MLPClassifier(input_size=3, output_size=2, hidden_sizes=(4,), activation="gelu", loss="sigmoid_ce")
    x, y = rng.standard_normal((5, 3)), (rng.random((5, 2)) > 0.5) * 1.0
    _assert_check(model, x, y)


@settings(max_examples=5)
@given(
    T=st.integers(1, 4), B=st.integers(1, 2), norm=st.sampled_from(["layernorm", "rmsnorm"]), seed=st.integers(0, 99)
)
def test_transformer_gradients_match_on_time_major_vectors(T, B, norm, seed):
    model = Transformer(
        input_size=3, output_size=2, model_dim=4, num_heads=2, num_layers=2, mlp_dim=6, max_len=5, norm=norm, seed=seed
    )
    r = np.random.default_rng(seed)
    x, y = r.standard_normal((T, B, 3)), (r.random((T, B, 2)) > 0.5) * 1.0
    _assert_check(model, x, y, (r.random((T, B, 1)) > 0.3) * 1.0, max_entries=6, seed=seed)


def test_transformer_on_tokens_gradients_match_with_softmax_cross_entropy():
    model = Transformer(
        input_size=5,
        output_size=5,
        model_dim=4,
        num_heads=2,
        num_layers=1,
        mlp_dim=6,
        max_len=4,
        tokens=True,
        loss="softmax_ce",
        seed=1,
    )
    x, y = rng.integers(0, 5, (4, 2)), rng.integers(0, 5, (4, 2))
    x[1] = x[0]  # a repeated token: its embedding row adds up
    _assert_check(model, x, y)
    _, sparse = model.loss_and_grads(x, y, row_grads=True)
    _, dense = model.loss_and_grads(x, y)
    assert isinstance(sparse["embed.weight"], ops.RowGrad)
    np.testing.assert_allclose(ops.densify_rows(sparse["embed.weight"]), dense["embed.weight"], rtol=1e-14)


def test_loss_is_the_summed_cross_entropy_averaged_over_the_batch():
    model = MLPClassifier(input_size=3, output_size=4, hidden_sizes=(5,))
    x, y, m = rng.standard_normal((6, 3)), rng.integers(0, 4, 6), np.array([1, 0, 1, 1, 0, 1.0])
    z = model.forward(x)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected = -(m * logp[np.arange(6), y]).sum() / 6
    assert model.loss(x, y, m) == pytest.approx(expected, rel=1e-13)
    assert model.loss_and_grads(x, y, m)[0] == pytest.approx(expected, rel=1e-13)
    t = Transformer(input_size=3, output_size=2, model_dim=4, num_heads=2, num_layers=1)
    xs, ys = rng.standard_normal((5, 3, 3)), (rng.random((5, 3, 2)) > 0.5) * 1.0
    zs = t.forward(xs)
    bce = np.logaddexp(0, zs) - ys * zs
    assert t.loss(xs, ys) == pytest.approx(bce.sum() / 3, rel=1e-13)  # B = 3 is axis 1 (time-major)


def test_grads_have_the_params_keys_and_shapes():
    for model, x, y in [
        (MLPClassifier(input_size=3, output_size=2), rng.standard_normal((4, 3)), rng.integers(0, 2, 4)),
        (
            Transformer(input_size=3, output_size=2, model_dim=8, num_heads=2),
            rng.standard_normal((3, 2, 3)),
            (rng.random((3, 2, 2)) > 0.5) * 1.0,
        ),
    ]:
        loss, grads = model.loss_and_grads(x, y)
        assert np.isfinite(loss)
        assert list(grads) == list(model.params)
        assert all(grads[k].shape == v.shape for k, v in model.params.items())


def test_transformer_parameter_names():
    t = Transformer(input_size=3, output_size=2, model_dim=4, num_heads=2, num_layers=2, max_len=7)
    keys = list(t.params)
    assert keys[:2] == ["embed.weight", "embed.bias"] and keys[-1] == "position"
    assert "block1.attn.query.weight" in keys and "ln_f.weight" in keys and "head.weight" in keys
    assert t.params["position"].shape == (7, 4)


def test_transformer_is_causal_like_a_recurrent_model():
    t = Transformer(input_size=3, output_size=2, model_dim=4, num_heads=2, num_layers=2, seed=3)
    x = rng.standard_normal((6, 2, 3))
    x2 = x.copy()
    x2[4:] += 2.0
    np.testing.assert_allclose(t.forward(x)[:4], t.forward(x2)[:4], rtol=1e-13, atol=1e-14)
    assert t.forward(x).shape == (6, 2, 2)
    both = Transformer(input_size=3, output_size=2, model_dim=4, num_heads=2, num_layers=1, causal=False)
    assert not np.allclose(both.forward(x)[:4], both.forward(x2)[:4])


def test_replacing_params_is_what_the_next_call_uses_and_sgd_learns():
    """model.params is the source of truth: a few plain SGD steps (new arrays each time) lower the loss."""
    model = MLPClassifier(input_size=2, output_size=2, hidden_sizes=(8,), activation="tanh", seed=0)
    x = rng.standard_normal((32, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    first = model.loss(x, y)
    for _ in range(200):
        _, grads = model.loss_and_grads(x, y)
        model.params = {k: v - 0.5 * grads[k] for k, v in model.params.items()}
    assert model.loss(x, y) < 0.5 * first


def test_a_network_of_any_layers_can_be_hosted():
    net = layers.Sequential(
        layers={
            "fc": layers.Linear(input_dim=3, output_dim=4),
            "bn": layers.BatchNorm(dim=4),
            "act": layers.SiLU(),
            "out": layers.Linear(input_dim=4, output_dim=2),
        }
    )
    model = FeedForwardModel(net, loss="softmax_ce")
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    _assert_check(model, x, y)
    model.eval()
    assert not net.children["bn"].training
    stats = net.buffers
    model.forward(x)
    assert all(net.buffers[k] is v for k, v in stats.items())  # evaluation leaves the statistics alone


def test_feedforward_models_reject_bad_input_naming_the_argument():
    model = MLPClassifier(input_size=3, output_size=2)
    with pytest.raises(ValueError, match=r"inputs: expected shape \(·, 3\)"):
        model.forward(np.ones((2, 4)))
    with pytest.raises(ValueError, match="inputs: expected a 2-d array"):
        model.forward(np.ones((2, 2, 3)))
    with pytest.raises(TypeError, match="targets: expected integer class indices"):
        model.loss(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match=r"targets: expected indices in \[0, 2\)"):
        model.loss(np.ones((2, 3)), np.array([0, 2]))
    with pytest.raises(ValueError, match="mask: expected a shape that broadcasts"):
        model.loss(np.ones((2, 3)), np.array([0, 1]), np.ones(3))
    with pytest.raises(ValueError, match="loss: expected one of"):
        MLPClassifier(input_size=3, output_size=2, loss="mse")
    with pytest.raises(ValueError, match="num_heads: expected a divisor of model_dim = 6"):
        Transformer(input_size=3, output_size=2, model_dim=6, num_heads=4)
    t = Transformer(input_size=3, output_size=2, model_dim=4, num_heads=2, max_len=3)
    with pytest.raises(ValueError, match="inputs: expected at most max_len = 3 time steps, got 4"):
        t.forward(np.ones((4, 1, 3)))
    with pytest.raises(ValueError, match=r"targets: expected shape \(2, 1, 2\)"):
        t.loss(np.ones((2, 1, 3)), np.ones((2, 1, 3)))
    tok = Transformer(input_size=5, output_size=5, model_dim=4, num_heads=2, tokens=True)
    with pytest.raises(ValueError, match=r"inputs: expected indices in \[0, 5\)"):
        tok.forward(np.array([[5]]))
    with pytest.raises(ValueError, match=r"inputs: expected int tokens of shape \(T, B\)"):
        tok.forward(np.array([1, 2]))
    with pytest.raises(TypeError, match="config: expected a TransformerConfig"):
        Transformer(config=TransformerConfig(input_size=3, output_size=2), seed=1)
    with pytest.raises(TypeError, match="network: expected a layer"):
        FeedForwardModel(np.tanh)
    bad = MLPClassifier(input_size=3, output_size=2)
    bad.params["fc1.bias"] = np.full_like(bad.params["fc1.bias"], np.nan)
    with pytest.raises(ValueError, match=r"params\['fc1.bias'\]: expected finite values"):
        bad.forward(np.ones((1, 3)))


# -- product-key memories in the transformer host ---------------------------------------------------------

MEMORY_MODES = {
    "xlm": dict(),
    "layernorm-query": dict(memory_query_norm="layernorm"),
    "memory+": dict(memory_output="swilu", share_memory_values=True, memory_layers=(0, 1)),
    "peer": dict(memory_experts=True),
    "tied": dict(tie_embeddings=True),
}


def _memory_transformer(**kw):
    base = dict(
        input_size=7, output_size=7, model_dim=4, num_heads=2, num_layers=2, mlp_dim=6, max_len=4, tokens=True,
        loss="softmax_ce", memory_layers=(1,), memory_keys=3, memory_heads=2, memory_k=2, memory_key_dim=4,
    )  # fmt: skip
    return Transformer(**(base | kw))


@pytest.mark.parametrize("mode", sorted(MEMORY_MODES))
@settings(max_examples=4)
@given(T=st.integers(1, 4), B=st.integers(1, 2), seed=st.integers(0, 99))
def test_transformer_with_product_key_memories_gradients_match_as_a_whole(mode, T, B, seed):
    """Every parameter of the host, FD-checked, where no perturbation changes a memory's top k."""
    model = _memory_transformer(seed=seed, **MEMORY_MODES[mode])
    r = np.random.default_rng(seed)
    x, y = r.integers(0, 7, (T, B)), r.integers(0, 7, (T, B))
    report = check_model(model, x, y, max_entries=8, seed=seed)
    assume(not report.crossed_kink)  # a perturbation changed a top k: finite differences mean nothing there
    assert report.ok(TOLERANCES["model"]), str(report)
    assert len(model.last_trace) == len(model.config.memory_layers)


def test_memory_blocks_replace_the_mlp_and_a_shared_table_is_one_parameter():
    model = _memory_transformer(memory_layers=(0, 1), share_memory_values=True, memory_output="swilu")
    keys = set(model.params)
    assert not any(k.startswith(("block0.mlp", "block1.mlp")) for k in keys)
    assert {"block0.memory.keys", "block1.memory.gate.weight", "memory_values"} <= keys
    assert not any(k.endswith("memory.values") for k in keys)  # only the shared one
    x = np.random.default_rng(0).integers(0, 7, (4, 3))
    _, sparse = model.loss_and_grads(x, x, row_grads=True)
    g = sparse["memory_values"]
    assert isinstance(g, ops.RowGrad) and g.rows.shape[1] == 4 and g.num_rows == 9
    _, dense = model.loss_and_grads(x, x)
    np.testing.assert_allclose(ops.densify_rows(g), dense["memory_values"], rtol=1e-13, atol=1e-15)


def test_tied_embeddings_use_the_embedding_as_the_head():
    model = _memory_transformer(tie_embeddings=True, memory_layers=())
    assert "head.weight" not in model.params and "head.bias" in model.params
    x = np.random.default_rng(1).integers(0, 7, (3, 2))
    model.params["embed.weight"] = model.params["embed.weight"] * 2.0  # the head sees the replaced table too
    h = model.forward(x)
    assert h.shape == (3, 2, 7)
    untied = _memory_transformer(memory_layers=())
    assert "head.weight" in untied.params


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(memory_layers=(2,)), ValueError, r"memory_layers: expected distinct blocks in \[0, num_layers = 2\)"),
        (dict(memory_layers=(1, 1)), ValueError, "memory_layers: expected distinct blocks"),
        (dict(memory_layers="1"), TypeError, "memory_layers: expected a tuple of block indices"),
        (dict(memory_k=4), ValueError, "memory_k: expected at most memory_keys = 3"),
        (dict(memory_key_dim=5), ValueError, "memory_key_dim: expected an even int"),
        (dict(memory_query_norm="rms"), ValueError, "memory_query_norm: expected None or one of"),
        (dict(memory_output="gated"), ValueError, "memory_output: expected one of"),
        (dict(memory_experts=1), TypeError, "memory_experts: expected True or False"),
        (dict(tie_embeddings=True, output_size=5), ValueError, "tie_embeddings: expected tokens=True and output_size"),
    ],
)
def test_bad_memory_options_are_refused_naming_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        _memory_transformer(**kwargs)


# -- sketch memories in the transformer host (Panigrahy et al. 2021, refmann's reconstruction) -------------


@pytest.mark.parametrize("mode", ["plain", "gate+signs", "with-pkm"])
@settings(max_examples=4)
@given(T=st.integers(1, 4), B=st.integers(1, 2), seed=st.integers(0, 99))
def test_transformer_with_sketch_memories_gradients_match_as_a_whole(mode, T, B, seed):
    """Every parameter of the host, FD-checked, where no perturbation moves an input across a hash hyperplane."""
    extra = {"plain": {}, "gate+signs": dict(sketch_gate=True, sketch_signs=True), "with-pkm": {}}[mode]
    memory = dict(memory_layers=(1,)) if mode == "with-pkm" else dict(memory_layers=())
    model = _memory_transformer(seed=seed, sketch_layers=(0, 1), sketch_tables=2, sketch_bits=3, **memory, **extra)
    r = np.random.default_rng(seed)
    for key in ("block0.sketch.values", "block1.sketch.values"):  # away from the zero init: reads that matter
        model.params[key] = r.standard_normal(model.params[key].shape)
    x, y = r.integers(0, 7, (T, B)), r.integers(0, 7, (T, B))
    report = check_model(model, x, y, max_entries=8, seed=seed)
    assume(not report.crossed_kink)  # a perturbation flipped a hash bit: the read jumps there
    assert report.ok(TOLERANCES["model"]), str(report)
    assert len(model.last_trace) == len(model.config.memory_layers) + 2


def test_sketch_blocks_add_a_residual_read_and_start_as_the_plain_host():
    plain = _memory_transformer(memory_layers=())
    sketch = _memory_transformer(memory_layers=(), sketch_layers=(1,), sketch_bits=4)
    assert set(sketch.params) - set(plain.params) == {"block1.sketch.values"}
    assert sketch.params["block1.sketch.values"].shape == (4 * 2**4, 4)
    x = np.random.default_rng(2).integers(0, 7, (4, 3))
    np.testing.assert_array_equal(plain.forward(x), sketch.forward(x))  # zero-initialised tables read zeros
    _, grads = sketch.loss_and_grads(x, x, row_grads=True)
    assert isinstance(grads["block1.sketch.values"], ops.RowGrad)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(sketch_layers=(2,)), ValueError, r"sketch_layers: expected distinct blocks in \[0, num_layers = 2\)"),
        (dict(sketch_layers="0"), TypeError, "sketch_layers: expected a tuple of block indices"),
        (dict(sketch_bits=25), ValueError, "sketch_bits: expected at most 24"),
        (dict(sketch_tables=0), ValueError, "sketch_tables: expected an int >= 1"),
        (dict(sketch_gate="yes"), TypeError, "sketch_gate: expected True or False"),
    ],
)
def test_bad_sketch_options_are_refused_naming_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        _memory_transformer(**kwargs)


@pytest.mark.parametrize(
    "sketch",
    [dict(sketch_layers="all"), dict(sketch_layers=(2,), sketch_combine="residual", sketch_gate=True)],
    ids=["all-concat", "second-residual-gate"],
)
@settings(max_examples=5)
@given(seed=st.integers(0, 99))
def test_mlp_host_with_a_sketch_memory_at_every_layer_gradients_match(sketch, seed):
    model = MLPClassifier(
        input_size=3, output_size=4, hidden_sizes=(5, 5), activation="tanh", sketch_tables=2, sketch_bits=3,
        seed=seed, **sketch,
    )  # fmt: skip
    r = np.random.default_rng(seed)
    for key in model.params:
        if key.endswith("values"):
            model.params[key] = r.standard_normal(model.params[key].shape)
    x, y = r.standard_normal((6, 3)), r.integers(0, 4, 6)
    report = check_model(model, x, y, max_entries=8, seed=seed)
    assume(not report.crossed_kink)  # a hash bit flipped under the perturbation
    assert report.ok(TOLERANCES["model"]), str(report)
    layers_with_memory = (1, 2) if sketch["sketch_layers"] == "all" else (2,)
    assert len(model.last_trace) == len(layers_with_memory)
    assert [k for k in model.params if k.endswith("values")] == [f"mem{i}.values" for i in layers_with_memory]
