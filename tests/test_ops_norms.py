import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure
from tests.strategies import f64

#: Shapes (..., D) with D ≥ 2 (with one feature a row is its own mean) and 0–2 leading axes.
ROW_SHAPES = st.tuples(st.lists(st.integers(1, 3), max_size=2), st.integers(2, 6)).map(lambda s: (*s[0], s[1]))


@st.composite
def spread_rows(draw, shape, axis=-1, lo=-2.0, hi=2.0):
    """Entries in [lo, hi] plus or minus a ramp along ``axis``, the sign chosen per row for the larger
    variance: var(x ± r) ≥ var(r) for one of the signs, so every row's variance is at least ~0.08
    and a norm stays well-conditioned."""
    x = draw(f64(shape, lo, hi))
    n = x.shape[axis]
    ramp = np.linspace(-0.5, 0.5, n).reshape([n if a == (axis % x.ndim) else 1 for a in range(x.ndim)])
    plus, minus = x + ramp, x - ramp
    return np.where(plus.var(axis=axis, keepdims=True) >= minus.var(axis=axis, keepdims=True), plus, minus)


def affine(data, D):
    return data.draw(f64((D,), 0.5, 1.5)), data.draw(f64((D,)))


@given(shape=ROW_SHAPES, data=st.data())
def test_layernorm_gradients_match(shape, data):
    x = data.draw(spread_rows(shape))
    gamma, beta = affine(data, shape[-1])
    assert_gradients_match("layernorm", x, gamma, beta, seed=7)


@given(shape=ROW_SHAPES, data=st.data())
def test_rmsnorm_gradients_match(shape, data):
    x = data.draw(spread_rows(shape))
    gamma, _ = affine(data, shape[-1])
    assert_gradients_match("rmsnorm", x, gamma, seed=7)


@st.composite
def batch_case(draw, min_values=2):
    """x (B, D) or (B, T, D) with at least ``min_values`` values per feature, and running statistics."""
    flat, seq = (draw(st.integers(min_values, 6)),), (draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    lead = draw(st.sampled_from([flat, seq]))
    D = draw(st.integers(1, 4))
    x = draw(spread_rows((int(np.prod(lead)), D), axis=0)).reshape(*lead, D)
    gamma, beta = draw(f64((D,), 0.5, 1.5)), draw(f64((D,)))
    running = dict(running_mean=draw(f64((D,))), running_var=draw(f64((D,), 0.3, 3.0)))
    return x, gamma, beta, running


@given(case=batch_case(), momentum=st.floats(0.0, 1.0))
def test_batchnorm_gradients_match_in_training_mode(case, momentum):
    x, gamma, beta, running = case
    assert_gradients_match("batchnorm", x, gamma, beta, training=True, momentum=momentum, seed=7, **running)


@given(case=batch_case(min_values=1))
def test_batchnorm_gradients_match_in_evaluation_mode(case):
    x, gamma, beta, running = case
    assert_gradients_match("batchnorm", x, gamma, beta, training=False, seed=7, **running)


@given(shape=ROW_SHAPES, data=st.data())
def test_layernorm_rows_have_zero_mean_and_unit_variance(shape, data):
    x = data.draw(spread_rows(shape))
    y, cache = ops.layernorm_forward(x, np.ones(shape[-1]), np.zeros(shape[-1]), eps=1e-12)
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(cache.rstd[..., 0], 1 / np.sqrt(x.var(-1) + 1e-12), rtol=1e-12)


@given(shape=ROW_SHAPES, data=st.data())
def test_rmsnorm_rows_have_unit_root_mean_square_and_keep_their_direction(shape, data):
    x = data.draw(spread_rows(shape))
    y, _ = ops.rmsnorm_forward(x, np.ones(shape[-1]), eps=1e-12)
    np.testing.assert_allclose(np.sqrt((y * y).mean(-1)), 1.0, rtol=1e-9)
    np.testing.assert_allclose(
        y * np.linalg.norm(x, axis=-1, keepdims=True),
        x * np.linalg.norm(y, axis=-1, keepdims=True),
        rtol=1e-10,
        atol=1e-12,
    )


@given(case=batch_case())
def test_batchnorm_training_normalises_each_feature_and_updates_the_running_statistics(case):
    x, gamma, beta, running = case
    before = {k: v.copy() for k, v in running.items()}
    y, cache = ops.batchnorm_forward(
        x, np.ones_like(gamma), np.zeros_like(beta), training=True, momentum=0.25, eps=1e-12, **running
    )
    flat, D = y.reshape(-1, y.shape[-1]), y.shape[-1]
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(flat.var(0), 1.0, rtol=1e-9)
    xs = x.reshape(-1, D)
    n = xs.shape[0]
    np.testing.assert_allclose(cache.running_mean, 0.75 * before["running_mean"] + 0.25 * xs.mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        cache.running_var, 0.75 * before["running_var"] + 0.25 * xs.var(0) * n / (n - 1), rtol=1e-12
    )  # the running variance is unbiased (PyTorch)
    for key, value in running.items():
        np.testing.assert_array_equal(value, before[key], err_msg=f"{key} was written")


@given(case=batch_case(min_values=1))
def test_batchnorm_evaluation_is_the_affine_map_of_the_running_statistics(case):
    x, gamma, beta, running = case
    y, cache = ops.batchnorm_forward(x, gamma, beta, training=False, eps=1e-5, **running)
    rstd = 1 / np.sqrt(running["running_var"] + 1e-5)
    np.testing.assert_allclose(y, (x - running["running_mean"]) * rstd * gamma + beta, rtol=1e-12, atol=1e-12)
    assert cache.running_mean is running["running_mean"] and cache.running_var is running["running_var"]
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx, _, _ = ops.batchnorm_backward(dy, cache)
    np.testing.assert_allclose(dx, dy * gamma * rstd, rtol=1e-12)  # constants: no path through the statistics


def test_batchnorm_over_a_sequence_equals_batchnorm_of_the_flattened_batch():
    rng = np.random.default_rng(1)
    x, gamma, beta = rng.standard_normal((3, 4, 2)), rng.uniform(0.5, 1.5, 2), rng.standard_normal(2)
    y, cache = ops.batchnorm_forward(x, gamma, beta)
    y2, cache2 = ops.batchnorm_forward(x.reshape(12, 2), gamma, beta)
    np.testing.assert_allclose(y.reshape(12, 2), y2, rtol=1e-13)
    np.testing.assert_allclose(cache.running_var, cache2.running_var, rtol=1e-13)
    dy = rng.standard_normal(x.shape)
    for a, b in zip(ops.batchnorm_backward(dy, cache), ops.batchnorm_backward(dy.reshape(12, 2), cache2)):
        np.testing.assert_allclose(a.reshape(b.shape), b, rtol=1e-12, atol=1e-14)


def test_batchnorm_training_defaults_to_pytorch_initial_buffers():
    x = np.random.default_rng(2).standard_normal((5, 3))
    _, cache = ops.batchnorm_forward(x, np.ones(3), np.zeros(3), momentum=0.1)
    np.testing.assert_allclose(cache.running_mean, 0.1 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cache.running_var, 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-12)


def test_norm_gradients_of_gamma_and_beta_are_the_textbook_sums():
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
    _, cache = ops.layernorm_forward(x, gamma, beta)
    _, dgamma, dbeta = ops.layernorm_backward(dy, cache)
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(dgamma, (dy * xhat).sum((0, 1)), rtol=1e-12)
    np.testing.assert_allclose(dbeta, dy.sum((0, 1)), rtol=1e-12)


@pytest.mark.parametrize("name", ["layernorm", "rmsnorm", "batchnorm"])
def test_norms_are_pure_and_linear_in_dout(name):
    rng = np.random.default_rng(4)
    x, gamma, beta = rng.standard_normal((3, 2, 4)), rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
    arrays = (x, gamma) if name == "rmsnorm" else (x, gamma, beta)
    hyper = (
        {"running_mean": rng.standard_normal(4), "running_var": rng.uniform(0.5, 2, 4)} if name == "batchnorm" else {}
    )
    assert_pure(name, *arrays, **hyper)
    assert_linear_in_dout(name, *arrays, **hyper)
    if name == "batchnorm":
        assert_pure(name, *arrays, training=False, **hyper)
        assert_linear_in_dout(name, *arrays, training=False, **hyper)


def test_float32_in_float32_out():
    x = np.random.default_rng(5).standard_normal((4, 3)).astype(np.float32)
    g, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    for y in (ops.layernorm_forward(x, g, b)[0], ops.rmsnorm_forward(x, g)[0], ops.batchnorm_forward(x, g, b)[0]):
        assert y.dtype == np.float32
    _, cache = ops.batchnorm_forward(x, g, b)
    assert cache.running_mean.dtype == cache.running_var.dtype == np.float32


def test_norms_reject_bad_input_naming_the_argument():
    x, g, b = np.ones((4, 3)), np.ones(3), np.zeros(3)
    with pytest.raises(ValueError, match=r"gamma: expected shape \(3\), got \(4,\)"):
        ops.layernorm_forward(x, np.ones(4), b)
    with pytest.raises(ValueError, match=r"beta: expected shape \(3\)"):
        ops.batchnorm_forward(x, g, np.zeros(2))
    with pytest.raises(ValueError, match="gamma: expected a 1-d array"):
        ops.rmsnorm_forward(x, np.ones((1, 3)))
    with pytest.raises(ValueError, match="x: expected at least 1 dimension"):
        ops.layernorm_forward(np.float64(1.0), g, b)
    with pytest.raises(ValueError, match="eps: expected a finite value > 0"):
        ops.layernorm_forward(x, g, b, eps=0.0)
    with pytest.raises(ValueError, match="eps: expected a value >= 0"):
        ops.rmsnorm_forward(x, g, eps=-1.0)
    with pytest.raises(ValueError, match=r"running_mean: required in evaluation mode"):
        ops.batchnorm_forward(x, g, b, training=False, running_var=np.ones(3))
    with pytest.raises(ValueError, match=r"running_var: expected shape \(3\)"):
        ops.batchnorm_forward(x, g, b, running_var=np.ones(4))
    with pytest.raises(ValueError, match="running_var: expected values >= 0"):
        ops.batchnorm_forward(x, g, b, training=False, running_mean=np.zeros(3), running_var=-np.ones(3))
    with pytest.raises(ValueError, match="x: batch norm in training mode needs more than one value per feature"):
        ops.batchnorm_forward(x[:1], g, b)
    with pytest.raises(ValueError, match=r"momentum: expected a value in \[0, 1\]"):
        ops.batchnorm_forward(x, g, b, momentum=1.5)
    with pytest.raises(TypeError, match="training: expected True or False"):
        ops.batchnorm_forward(x, g, b, training="yes")
    with pytest.raises(ValueError, match="x: expected finite values"):
        ops.layernorm_forward(np.full((2, 3), np.nan), g, b)
