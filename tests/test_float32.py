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
