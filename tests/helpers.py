"""Assertions shared by the op tests."""

import numpy as np

from refmann import ops
from refmann.gradcheck import TOLERANCES, check_op


def pair(name):
    return getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward")


def assert_gradients_match(name, *inputs, seed=0, **hyper):
    """The op's backward equals central differences to TOLERANCES['op'] for every positional input."""
    forward, backward = pair(name)
    report = check_op(forward, backward, *inputs, seed=seed, **hyper)
    assert report.ok(TOLERANCES["op"]), str(report)
    return report


def _grads_as_arrays(grads):
    return [ops.densify_rows(g) if isinstance(g, ops.RowGrad) else g for g in grads]


def assert_pure(name, *inputs, **hyper):
    """Forward leaves its inputs alone; backward leaves dout and the cache alone and is repeatable."""
    forward, backward = pair(name)
    before = [x.copy() for x in inputs]
    out, cache = forward(*inputs, **hyper)
    rng = np.random.default_rng(1)
    dout = tuple(rng.standard_normal(np.shape(o)) for o in out) if isinstance(out, tuple) else rng.standard_normal(
        np.shape(out))
    dout_before = [np.copy(d) for d in (dout if isinstance(dout, tuple) else (dout,))]
    first = _grads_as_arrays(backward(dout, cache))
    second = _grads_as_arrays(backward(dout, cache))
    for x, b in zip(inputs, before):
        np.testing.assert_array_equal(x, b)
    for d, b in zip(dout if isinstance(dout, tuple) else (dout,), dout_before):
        np.testing.assert_array_equal(d, b)
    for g1, g2 in zip(first, second):
        np.testing.assert_array_equal(g1, g2)


def assert_linear_in_dout(name, *inputs, **hyper):
    """backward(a·d1 + b·d2) = a·backward(d1) + b·backward(d2): catches non-linear use of dout."""
    forward, backward = pair(name)
    out, cache = forward(*inputs, **hyper)
    rng = np.random.default_rng(2)
    d1, d2 = rng.standard_normal(np.shape(out)), rng.standard_normal(np.shape(out))
    g = _grads_as_arrays(backward(2.0 * d1 - 3.0 * d2, cache))
    g1 = _grads_as_arrays(backward(d1, cache))
    g2 = _grads_as_arrays(backward(d2, cache))
    for a, b, c in zip(g, g1, g2):
        np.testing.assert_allclose(a, 2.0 * b - 3.0 * c, rtol=1e-10, atol=1e-10)
