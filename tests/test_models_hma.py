"""refmann.models.hma.MemoryTokensClassifier: gradients through the encoder, the momentum encoder and the queue,
evaluation in chunks, arguments.

The gradient checks hold the momentum encoder and the queue fixed (they change only in ``update_memory``)
and differentiate the batch-level loss or logits: stage 2 couples the samples of a batch.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann import _checks, layers
from refmann.gradcheck import check_op
from refmann.layers import MLP, BatchNorm, Linear, Sequential
from refmann.models.feedforward import TransformerConfig, TransformerNetwork
from refmann.models.hma import MemoryTokensClassifier
from tests.helpers import assert_gradients_match

HEAD = dict(label_dim=2, tokens_per_class=2, queue_size=5, num_heads=2)  # D = 2 + 2


def _mlp_model(momentum=0.5, seed=0, **kw):
    encoder = MLP(input_dim=3, hidden_dims=5, output_dim=2, seed=seed)
    return MemoryTokensClassifier(encoder, num_classes=3, feature_dim=2, momentum=momentum, seed=seed, **(HEAD | kw))


def _transformer_model(pool, seed=0):
    config = TransformerConfig(
        input_size=3, output_size=2, model_dim=8, num_heads=2, num_layers=1, mlp_dim=8, max_len=4, seed=seed
    )
    return MemoryTokensClassifier(TransformerNetwork(config), num_classes=3, feature_dim=2, pool=pool, **HEAD)


def _subset_op(model, params, keys, **options):
    """The model as an op over ``(x, *params[keys])``, the other parameters held at ``params``."""

    def forward(x, *arrays):
        return model.forward(x, params=params | dict(zip(keys, arrays)), **options)

    def backward(dout, cache):
        dx, grads = model.backward(dout, cache)
        return (dx, *(grads[k] for k in keys))

    return forward, backward


# -- gradients --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["transductive", "per_sample"])
@settings(max_examples=2)
@given(B=st.integers(2, 4), seed=st.integers(0, 2**16))
def test_host_gradients_match_with_an_mlp_encoder(mode, B, seed):
    """x, every encoder parameter and the head's E, G and W_o, with the momentum encoder and a filled queue fixed.

    The head's attention blocks are held fixed here (``tests/test_layers_hma.py`` checks every one of them)."""
    rng = np.random.default_rng(seed)
    model = _mlp_model(seed=seed % 5)
    model.update_memory(rng.standard_normal((4, 3)), rng.integers(0, 3, 4))  # 4 real rows, 1 initial
    params = {key: rng.standard_normal(value.shape) for key, value in model.params.items()}
    keys = [k for k in params if k.startswith(("encoder.", "head.head.")) or k in ("head.labels", "head.tokens")]
    x = rng.standard_normal((B, 3))
    with _checks.unchecked():
        op = _subset_op(model, params, keys, mode=mode)
        assert_gradients_match(op, x, *(params[k] for k in keys), seed=seed % 3)


def test_the_host_is_a_layer_for_as_op():
    """``layers.as_op(model)`` works (params, buffers, backward) and leaves the buffers as they were."""
    rng = np.random.default_rng(1)
    model = _mlp_model()
    model.update_memory(rng.standard_normal((2, 3)), np.array([0, 1]))
    before = {key: np.array(v) for key, v in model.buffers.items()}
    forward, backward = layers.as_op(model, mode="per_sample")
    x = rng.standard_normal((2, 3))
    out, cache = forward(x, *model.params.values())
    grads = backward(np.ones_like(out), cache)
    assert len(grads) == 1 + len(model.params) and grads[0].shape == x.shape
    for key, value in model.buffers.items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize("mode", ["transductive", "per_sample"])
def test_the_batch_level_loss_gradient_matches_finite_differences(mode):
    """loss_and_grads: the mean cross-entropy of the whole batch, FD-checked in the encoder's and E's entries."""
    rng = np.random.default_rng(7)
    model = _mlp_model(seed=2)
    model.update_memory(rng.standard_normal((3, 3)), np.array([0, 1, 2]))
    x, y = rng.standard_normal((4, 3)), np.array([2, 0, 1, 1])
    base = {key: rng.standard_normal(value.shape) for key, value in model.params.items()}
    keys = [k for k in base if k.startswith("encoder.")] + ["head.labels", "head.head.weight"]

    def forward(*arrays):
        loss, grads = model.loss_and_grads(x, y, mode=mode, params=base | dict(zip(keys, arrays)))
        return np.asarray(loss), grads

    def backward(dloss, grads):
        return tuple(dloss * grads[k] for k in keys)

    with _checks.unchecked():
        report = check_op(forward, backward, *(base[k] for k in keys))
    assert report.ok(1e-7), str(report)
    loss, _ = model.loss_and_grads(x, y, mode=mode, params=base)
    z = model.forward(x, params=base, mode=mode)[0]
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-logp[np.arange(4), y].mean(), rel=1e-13)


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_host_gradients_match_with_a_pooled_transformer_encoder(pool):
    """x (T, B, X), the transformer's input and output layers and the head's E and W_o, through the pooling."""
    rng = np.random.default_rng(3)
    model = _transformer_model(pool, seed=1)
    x = rng.standard_normal((3, 2, 3))  # (T, B, X)
    model.update_memory(x, np.array([0, 2]))
    params = {key: value + 0.3 * rng.standard_normal(value.shape) for key, value in model.params.items()}
    keys = [
        k for k in params if k.startswith(("encoder.embed.", "encoder.head.", "encoder.block0.ln1.", "head.head."))
    ] + ["head.labels"]
    with _checks.unchecked():
        assert_gradients_match(_subset_op(model, params, keys, mode="transductive"), x, *(params[k] for k in keys))


# -- the momentum encoder and the queue -------------------------------------------------------------------


@settings(max_examples=5)
@given(m=st.sampled_from([0.0, 0.3, 0.999, 1.0]), steps=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_update_memory_moves_the_momentum_encoder_exactly_and_enqueues_its_features(m, steps, seed):
    rng = np.random.default_rng(seed)
    model = _mlp_model(momentum=m, seed=seed % 3)
    for _ in range(steps):
        for key in model.params:  # an "optimizer step": new arrays in the host's dict
            model.params[key] = model.params[key] + 0.1 * rng.standard_normal(model.params[key].shape)
        old = {key[len("momentum.") :]: v for key, v in model.buffers.items() if key.startswith("momentum.")}
        x, y = rng.standard_normal((2, 3)), rng.integers(0, 3, 2)
        model.update_memory(x, y)
        for key, value in old.items():
            want = m * value + (1 - m) * model.params[f"encoder.{key}"]
            np.testing.assert_array_equal(model.buffers[f"momentum.{key}"], want)
    moved = {key[len("momentum.") :]: v for key, v in model.buffers.items() if key.startswith("momentum.")}
    f_tilde, _ = model.encoder.forward(x, params=moved)
    rows, labels = model.head.queue_contents()
    np.testing.assert_array_equal(rows[-2:], np.concatenate([f_tilde, model.params["head.labels"][y]], axis=1))
    np.testing.assert_array_equal(labels[-2:], y)


def test_momentum_zero_writes_the_current_encoders_features():
    rng = np.random.default_rng(1)
    model = _mlp_model(momentum=0.0)
    model.params["encoder.fc1.weight"] = model.params["encoder.fc1.weight"] + 1.0
    x = rng.standard_normal((2, 3))
    model.update_memory(x, np.array([1, 1]))
    f, _ = model.encoder.forward(x, params=layers.unscope("encoder", model.params))
    np.testing.assert_array_equal(model.head.queue_contents()[0][:, :2], f)


def test_the_momentum_encoder_starts_as_a_copy_and_forward_never_moves_memory():
    rng = np.random.default_rng(2)
    model = _mlp_model()
    for key, value in model.encoder.params.items():
        assert model.buffers[f"momentum.{key}"] is not value
        np.testing.assert_array_equal(model.buffers[f"momentum.{key}"], value)
    before = {key: np.array(v) for key, v in model.buffers.items()}
    x, y = rng.standard_normal((3, 3)), np.array([0, 1, 2])
    model.loss_and_grads(x, y)
    model.predict(x, batch_size=2)
    for key, value in model.buffers.items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_without_write_queue_update_memory_changes_nothing():
    """The released ViT path: no labels reach the head, the queue stays the initial noise."""
    rng = np.random.default_rng(3)
    model = _mlp_model(write_queue=False)
    before = {key: np.array(v) for key, v in model.buffers.items()}
    model.params["encoder.fc1.bias"] = model.params["encoder.fc1.bias"] + 1.0
    model.update_memory(rng.standard_normal((5, 3)), np.array([0, 1, 2, 0, 1]))
    for key, value in model.buffers.items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    assert model.head.queue_contents()[0].shape == (0, 4)


def test_the_momentum_forward_leaves_the_encoders_batchnorm_statistics_alone():
    rng = np.random.default_rng(4)
    encoder = Sequential(layers={"fc": Linear(input_dim=3, output_dim=2), "bn": BatchNorm(dim=2)})
    model = MemoryTokensClassifier(encoder, num_classes=3, feature_dim=2, **HEAD)
    stats = {key: np.array(v) for key, v in model.buffers.items() if key.startswith("encoder.")}
    assert stats  # the encoder's running statistics are host buffers
    model.update_memory(rng.standard_normal((5, 3)), np.array([0, 1, 2, 0, 1]))
    for key, value in stats.items():
        np.testing.assert_array_equal(model.buffers[key], value)
    assert model.head.queue_contents()[0].shape == (5, 4)
    model.eval()
    assert not encoder.children["bn"].training and not model.head.training
    model.train()
    assert encoder.children["bn"].training


def test_a_refused_update_changes_nothing():
    model = _mlp_model()
    before = {key: np.array(v) for key, v in model.buffers.items()}
    with pytest.raises(ValueError, match=r"labels: expected shape \(2\)"):
        model.update_memory(np.ones((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels: expected indices in \[0, 3\)"):
        model.update_memory(np.ones((2, 3)), np.array([0, 3]))
    for key, value in model.buffers.items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_load_buffers_restores_the_momentum_encoder_and_the_queue():
    rng = np.random.default_rng(5)
    model = _mlp_model()
    saved = {key: np.array(v) for key, v in model.buffers.items()}
    model.update_memory(rng.standard_normal((2, 3)), np.array([0, 1]))
    model.load_buffers(saved)
    for key, value in model.buffers.items():
        np.testing.assert_array_equal(value, saved[key], err_msg=key)


# -- evaluation ------------------------------------------------------------------------------------------------


def test_predict_in_chunks_depends_on_the_chunks_only_in_the_transductive_mode():
    rng = np.random.default_rng(6)
    model = _mlp_model(seed=1)
    model.update_memory(rng.standard_normal((5, 3)), rng.integers(0, 3, 5))
    model.params.update({k: rng.standard_normal(v.shape) for k, v in model.params.items()})
    x = rng.standard_normal((7, 3))
    one = model.predict(x, mode="per_sample")
    for size in (1, 3, 7, 10):
        np.testing.assert_allclose(model.predict(x, mode="per_sample", batch_size=size), one, rtol=1e-12, atol=1e-12)
    whole = model.predict(x)
    np.testing.assert_array_equal(whole, model.forward(x)[0])
    change = np.abs(model.predict(x, batch_size=3) - whole).max()
    assert change > 1e-9 * max(1.0, np.abs(whole).max()), change  # rounding is ~1e-15 of that scale


def test_predict_chunks_a_time_major_input_along_its_batch_axis():
    rng = np.random.default_rng(7)
    model = _transformer_model("last")
    x = rng.standard_normal((3, 5, 3))  # (T, B, X)
    assert model.batch_axis == 1
    out = model.predict(x, mode="per_sample", batch_size=2)
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out, model.predict(x, mode="per_sample"), rtol=1e-12, atol=1e-12)


def test_the_params_dict_is_the_source_of_truth():
    rng = np.random.default_rng(8)
    model = _mlp_model()
    x = rng.standard_normal((2, 3))
    before = model.forward(x)[0]
    model.params["head.head.bias"] = model.params["head.head.bias"] + np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(model.forward(x)[0] - before, [[1.0, 0.0, 0.0]] * 2, atol=1e-12)
    assert set(model.params) == {f"encoder.{k}" for k in model.encoder.params} | {
        f"head.{k}" for k in model.head.params
    }


# -- bad input -----------------------------------------------------------------------------------------------


def test_the_host_refuses_bad_arguments_naming_them():
    encoder = MLP(input_dim=3, hidden_dims=5, output_dim=2)
    with pytest.raises(ValueError, match="pool: expected one of"):
        MemoryTokensClassifier(encoder, num_classes=3, feature_dim=2, pool="max", **HEAD)
    with pytest.raises(ValueError, match="momentum"):
        MemoryTokensClassifier(encoder, num_classes=3, feature_dim=2, momentum=1.5, **HEAD)
    with pytest.raises(TypeError, match="write_queue: expected True or False"):
        MemoryTokensClassifier(encoder, num_classes=3, feature_dim=2, write_queue=1, **HEAD)
    with pytest.raises(ValueError, match="num_heads: expected a divisor of D"):
        MemoryTokensClassifier(encoder, num_classes=3, feature_dim=2, label_dim=3, num_heads=2)
    wide = MemoryTokensClassifier(encoder, num_classes=3, feature_dim=4, label_dim=4, num_heads=2, queue_size=4)
    with pytest.raises(ValueError, match=r"encoder: expected outputs of shape \(B, feature_dim = 4\)"):
        wide.forward(np.ones((2, 3)))
    pooled = MemoryTokensClassifier(encoder, num_classes=3, feature_dim=2, pool="last", **HEAD)
    with pytest.raises(ValueError, match=r"encoder: expected outputs of shape \(T, B, feature_dim = 2\)"):
        pooled.forward(np.ones((2, 3)))
    model = _mlp_model()
    x = np.random.default_rng(0).standard_normal((2, 3))
    with pytest.raises(ValueError, match="mode: expected one of"):
        model.forward(x, mode="batch")
    with pytest.raises(ValueError, match="mode: expected one of"):
        model.predict(x, mode="batch")
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1"):
        model.predict(x, batch_size=0)
    with pytest.raises(ValueError, match=r"labels: expected indices in \[0, 3\)"):
        model.loss_and_grads(x, np.array([0, 5]))
    with pytest.raises(ValueError, match=r"labels: expected shape \(2\)"):
        model.loss_and_grads(x, np.array([0]))
    with pytest.raises(TypeError, match="labels: expected an integer array"):
        model.loss_and_grads(x, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"params: missing"):
        model.forward(x, params={"encoder.fc1.weight": np.ones((3, 5))})
    with pytest.raises(ValueError, match="expected finite values"):
        model.forward(np.full((2, 3), np.nan))


def test_update_memory_takes_the_trained_params_like_a_forward():
    """update_memory(params=p) moves the momentum encoder towards p (not the host's own dict) and enqueues
    with p's label table: the same as writing p into the host first."""
    from refmann.layers import MLP
    from refmann.models.hma import MemoryTokensClassifier

    def host():
        enc = MLP(input_dim=3, hidden_dims=(4,), output_dim=4, seed=1)
        return MemoryTokensClassifier(enc, num_classes=3, feature_dim=4, label_dim=4, tokens_per_class=1,
                                      queue_size=6, num_heads=2, momentum=0.5, seed=2)  # fmt: skip

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3)), np.array([0, 1, 2, 1])
    a, b = host(), host()
    trained = {k: v + rng.standard_normal(v.shape) for k, v in a.params.items()}
    a.update_memory(x, y, params=trained)
    b.params.update(trained)
    b.update_memory(x, y)
    for key, value in b.buffers.items():
        np.testing.assert_array_equal(a.buffers[key], value, err_msg=key)
    assert not np.array_equal(a.buffers["momentum.fc1.weight"], host().buffers["momentum.fc1.weight"])
