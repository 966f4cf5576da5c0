"""float32 inputs work everywhere: same shapes, float32 out, forward within 1e-5 of float64."""

import numpy as np
import pytest

from refmann import gradcheck, ops


def _cast(x, dtype):
    return x.astype(dtype) if isinstance(x, np.ndarray) and x.dtype == np.float64 else x


@pytest.mark.parametrize("name", ops.OP_NAMES)
def test_float32_forward_is_within_1e_5_of_float64(name):
    arrays, hyper = gradcheck.op_example(name, np.random.default_rng(0))
    hyper32 = {k: _cast(v, np.float32) for k, v in hyper.items()}
    out64, cache64 = getattr(ops, f"{name}_forward")(*arrays, **hyper)
    out32, cache32 = getattr(ops, f"{name}_forward")(*[a.astype(np.float32) for a in arrays], **hyper32)
    as_tuple = lambda o: o if isinstance(o, tuple) else (o,)  # noqa: E731
    for o64, o32 in zip(as_tuple(out64), as_tuple(out32)):
        assert np.asarray(o32).dtype == np.float32, f"{name}: float32 in should give float32 out"
        scale = max(1.0, float(np.max(np.abs(o64))))
        np.testing.assert_allclose(o32, o64, atol=1e-5 * scale, rtol=0)
    # and the backward runs in float32 too
    dout = tuple(np.ones_like(o) for o in out32) if isinstance(out32, tuple) else np.ones_like(out32)
    grads = getattr(ops, f"{name}_backward")(dout, cache32)
    assert all(np.all(np.isfinite(ops.densify_rows(g) if isinstance(g, ops.RowGrad) else g)) for g in grads)


def _as_dense(g):
    return ops.densify_rows(g) if isinstance(g, ops.RowGrad) else np.asarray(g)


@pytest.mark.parametrize("name", ops.OP_NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_gradients_are_within_1e_4_of_float64_gradients(name, seed):
    """A random upstream gradient; the error is relative to the largest float64 gradient of each input, with a
    floor of 1 (a float32-only wrong backward — e.g. a branch on the dtype — fails this)."""
    arrays, hyper = gradcheck.op_example(name, np.random.default_rng(seed))
    hyper32 = {k: _cast(v, np.float32) for k, v in hyper.items()}
    forward, backward = getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward")
    out64, cache64 = forward(*arrays, **hyper)
    out32, cache32 = forward(*[a.astype(np.float32) for a in arrays], **hyper32)
    rng = np.random.default_rng(100 + seed)
    if isinstance(out64, tuple):
        d64 = tuple(rng.standard_normal(np.shape(o)) for o in out64)
        d32 = tuple(d.astype(np.float32) for d in d64)
    else:
        d64 = rng.standard_normal(np.shape(out64))
        d32 = d64.astype(np.float32)
    for g64, g32 in zip(backward(d64, cache64), backward(d32, cache32)):
        g64, g32 = _as_dense(g64), _as_dense(g32)
        assert g32.dtype == np.float32, f"{name}: a float32 backward should give float32 gradients"
        scale = max(1.0, float(np.max(np.abs(g64), initial=0.0)))
        np.testing.assert_allclose(g32, g64, rtol=0, atol=1e-4 * scale, err_msg=name)


def test_a_saturated_softmax_keeps_float32_precision_in_its_backward():
    """y nearly one-hot and a large upstream gradient: the plain y ⊙ (d − ⟨y, d⟩) subtracts two equal large
    numbers at the dominant entry; ops.softmax_vjp shifts d first and keeps float32's relative precision."""
    z = np.array([[30.0, 0.0, -2.0, 1.0]])
    d = np.array([[1e6, 1e6 + 3.0, 1e6 - 7.0, 1e6 + 1.0]])
    y64, c64 = ops.softmax_forward(z)
    y32, c32 = ops.softmax_forward(z.astype(np.float32))
    (g64,) = ops.softmax_backward(d, c64)
    (g32,) = ops.softmax_backward(d.astype(np.float32), c32)
    np.testing.assert_allclose(g32, g64, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(g64))))
    plain = y32 * (d.astype(np.float32) - np.sum(y32 * d.astype(np.float32), axis=-1, keepdims=True))
    assert np.max(np.abs(plain - g64)) > 100 * np.max(np.abs(g32 - g64))  # what the shift buys


MODEL_CASES = {
    "lstm": dict(),
    "ntm": dict(memory_size=6, word_size=3, num_heads=2, memory_init="random"),
    "dam": dict(memory_size=6, word_size=3, num_heads=2, memory_init="random"),
    "sam": dict(memory_size=6, word_size=3, num_heads=2, k=3, index="linear", memory_init="random"),
}


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_float32_model_gradients_are_within_1e_3_of_float64_gradients(name, seed):
    """Whole BPTT in float32 against float64 from the same parameters, when both take the same discrete
    decisions; relative to the largest float64 gradient (floor 1)."""
    from refmann import models

    kw = dict(input_size=3, output_size=2, hidden_size=5, seed=seed, **MODEL_CASES[name])
    m64 = models.make_model(name, **kw)
    m32 = models.make_model(name, **kw, dtype=np.float32)
    m32.params = {k: v.astype(np.float32) for k, v in m64.params.items()}
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((6, 2, 3)), (rng.random((6, 2, 2)) > 0.5) * 1.0
    _, g64 = m64.loss_and_grads(x, y)
    _, g32 = m32.loss_and_grads(x.astype(np.float32), y.astype(np.float32))
    for a, b in zip(m64.last_trace, m32.last_trace):
        if a is not None:
            assert all(np.array_equal(u, v) for u, v in zip(a, b) if u is not None), "decisions differ"
    for key in g64:
        scale = max(1.0, float(np.max(np.abs(g64[key]))))
        np.testing.assert_allclose(g32[key], g64[key], rtol=0, atol=1e-3 * scale, err_msg=key)
