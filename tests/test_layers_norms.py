import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import layers, ops
from tests.helpers import assert_gradients_match
from tests.strategies import f64


def _affine(layer, data):
    """Parameters off their initial 1 and 0 (so a mix-up of γ and β would show)."""
    return {k: v + data.draw(f64(v.shape, -0.4, 0.4)) for k, v in layer.params.items()}


@pytest.mark.parametrize("cls", [layers.LayerNorm, layers.RMSNorm])
@given(B=st.integers(1, 3), T=st.integers(1, 3), D=st.integers(2, 5), data=st.data())
def test_row_norm_layers_gradients_match(cls, B, T, D, data):
    layer = cls(dim=D)
    x = data.draw(f64((B, T, D))) + np.linspace(-1, 1, D)  # rows never constant
    assert_gradients_match(layers.as_op(layer), x, *_affine(layer, data).values(), seed=4)


@pytest.mark.parametrize("training", [True, False])
@given(B=st.integers(2, 5), D=st.integers(1, 4), data=st.data())
def test_batchnorm_layer_gradients_match_in_both_modes(training, B, D, data):
    layer = layers.BatchNorm(dim=D).train(training)
    layer.load_buffers({"running_mean": data.draw(f64((D,))), "running_var": data.draw(f64((D,), 0.5, 2.0))})
    x = data.draw(f64((B, D))) + np.linspace(-1, 1, B)[:, None]  # features never constant over the batch
    assert_gradients_match(layers.as_op(layer), x, *_affine(layer, data).values(), seed=4)


def test_layer_norms_equal_their_ops_and_name_params_like_pytorch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    ln, rms = layers.LayerNorm(dim=4, eps=1e-3), layers.RMSNorm(dim=4)
    assert list(ln.params) == ["weight", "bias"] and list(rms.params) == ["weight"]
    np.testing.assert_array_equal(ln.params["weight"], 1.0)
    np.testing.assert_array_equal(ln.params["bias"], 0.0)
    np.testing.assert_array_equal(ln.forward(x)[0], ops.layernorm_forward(x, np.ones(4), np.zeros(4), eps=1e-3)[0])
    np.testing.assert_array_equal(rms.forward(x)[0], ops.rmsnorm_forward(x, np.ones(4), eps=1e-6)[0])


def test_batchnorm_training_replaces_the_running_statistics_and_evaluation_uses_them():
    rng = np.random.default_rng(1)
    bn = layers.BatchNorm(dim=3, momentum=0.5)
    assert set(bn.buffers) == {"running_mean", "running_var"} and set(bn.params) == {"weight", "bias"}
    old = bn.buffers
    x = rng.standard_normal((8, 3)) * 2 + 1
    y, _ = bn.forward(x)  # training (the default)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-12)
    np.testing.assert_array_equal(old["running_mean"], 0.0)  # the old arrays were not written
    np.testing.assert_array_equal(old["running_var"], 1.0)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.5 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.5 + 0.5 * x.var(0, ddof=1), rtol=1e-12)
    stats = bn.buffers
    bn.eval()
    y_eval, cache = bn.forward(x)
    assert not cache.training
    np.testing.assert_allclose(y_eval, (x - stats["running_mean"]) / np.sqrt(stats["running_var"] + 1e-5), rtol=1e-12)
    for key in stats:  # evaluation changes nothing
        assert bn.buffers[key] is stats[key]
    bn.forward(x, training=True)  # a per-call override
    assert not np.array_equal(bn.buffers["running_mean"], stats["running_mean"])
    assert not bn.training


def test_batchnorm_over_sequences_normalises_over_batch_and_time():
    x = np.random.default_rng(2).standard_normal((3, 5, 2))
    y, _ = layers.BatchNorm(dim=2).forward(x)
    np.testing.assert_allclose(y.reshape(-1, 2).mean(0), 0.0, atol=1e-12)


def test_norm_layers_reject_bad_input_naming_the_argument():
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 4\), got \(2, 3\)"):
        layers.LayerNorm(dim=4).forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="eps: expected a finite value > 0"):
        layers.RMSNorm(dim=4, eps=0.0)
    with pytest.raises(ValueError, match=r"momentum: expected a value in \[0, 1\]"):
        layers.BatchNorm(dim=4, momentum=2.0)
    with pytest.raises(ValueError, match="x: batch norm in training mode needs more than one value"):
        layers.BatchNorm(dim=4).forward(np.ones((1, 4)))
    with pytest.raises(TypeError, match="training: expected True or False"):
        layers.BatchNorm(dim=4).forward(np.ones((2, 4)), training="no")
    with pytest.raises(TypeError, match="mode: expected True or False"):
        layers.BatchNorm(dim=4).train("eval")
