"""refmann.layers.SketchMemory: gradients, the collision kernel, explicit writes, arguments."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refmann import layers, ops
from refmann.layers.sketch import SketchMemory, simhash_buckets
from tests.helpers import assert_gradients_match


def _layer(X=4, Y=4, T=3, b=3, **kw):
    return SketchMemory(input_dim=X, output_dim=Y, num_tables=T, num_bits=b, **kw)


MODES = [
    dict(combine="residual"),
    dict(combine="concat", Y=3),
    dict(combine="none", Y=2, signs=True),
    dict(combine="residual", gate=True),
    dict(combine="concat", Y=2, signs=True, gate=True),
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(f"{k}={v}" for k, v in m.items()))
@given(B=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_gradients_match_in_every_differentiable_mode(mode, B, seed):
    """Values, gate and input, FD-checked; inputs kept away from every hyperplane (the hash is constant there)."""
    mode = dict(mode)
    layer = _layer(X=4, Y=mode.pop("Y", 4), seed=seed % 11, **mode)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, 4))
    _, margins = simhash_buckets(x, layer.buffers["planes"])
    assume(margins.min() > 1e-3)  # check_op's steps (≤ 2e-4) never flip a bit (nor a sign)
    params = {k: rng.standard_normal(v.shape) for k, v in layer.params.items()}  # values away from the zero init
    assert_gradients_match(layers.as_op(layer), x, *params.values(), seed=seed % 5)


def test_value_row_gradient_equals_add_at_and_is_row_sparse():
    layer = _layer(X=4, Y=2, T=3, b=2, combine="none", signs=True, seed=3)
    x = np.random.default_rng(0).standard_normal((9, 4))  # 27 lookups into 12 rows: repeats
    dy = np.random.default_rng(1).standard_normal((9, 2))
    _, cache = layer.forward(x)
    _, grads = layer.backward(dy, cache)
    g = grads["values"]
    assert isinstance(g, ops.RowGrad) and len(g.indices) < 27
    rows, signs = layer.address(x)
    expected = np.zeros((12, 2))
    w = signs / 3
    np.add.at(expected, rows.ravel(), (w[..., None] * dy[:, None, :]).reshape(-1, 2))
    np.testing.assert_allclose(layers.densify(g), expected, rtol=1e-14, atol=1e-15)


@settings(max_examples=25)
@given(theta=st.floats(0.05, 3.0), b=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_the_collision_probability_at_angle_theta_is_one_minus_theta_over_pi_to_the_b(theta, b, seed):
    """SimHash's kernel: over M independent tables, the same-bucket fraction of two inputs at angle θ.

    Tolerance: 5 binomial standard deviations of the M draws, plus 1e-3."""
    rng = np.random.default_rng(seed)
    X, M = 8, 4000
    u, v = np.linalg.qr(rng.standard_normal((X, 2)))[0].T  # an orthonormal pair
    x = np.stack([u, np.cos(theta) * u + np.sin(theta) * v])  # (2, X) at angle θ
    planes = rng.standard_normal((M, X, b))
    buckets, _ = simhash_buckets(x, planes)  # (2, M)
    same = np.mean(buckets[0] == buckets[1])
    p = (1 - theta / np.pi) ** b
    assert abs(same - p) <= 5 * np.sqrt(p * (1 - p) / M) + 1e-3, (same, p)


def test_explicit_writes_recall_every_key_that_shares_no_row_exactly_and_average_the_rest():
    layer = _layer(X=16, Y=5, T=4, b=10, combine="none", signs=True, seed=1)
    rng = np.random.default_rng(0)
    keys, values = rng.standard_normal((120, 16)), rng.standard_normal((120, 5))
    layer.write_inplace(keys, values)
    y, _ = layer.forward(keys)
    rows, signs = layer.address(keys)  # (n, T) each
    # the read, by its definition as a kernel smoother: per table, the mean of the (signed) values in the
    # key's bucket, times the key's own sign
    want = np.zeros_like(values)
    for t in range(4):
        same = rows[:, t][:, None] == rows[:, t][None, :]  # (n, n) the collision kernel of table t
        signed = signs[:, t, None] * values
        want += signs[:, t, None] * (same @ signed) / same.sum(axis=1, keepdims=True) / 4
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    alone = np.array([all(np.sum(rows[:, t] == rows[i, t]) == 1 for t in range(4)) for i in range(120)])
    assert 0 < (~alone).sum() < 120  # some keys collided in some table, most did not
    np.testing.assert_allclose(y[alone], values[alone], rtol=1e-12, atol=1e-12)


def test_overwrite_keeps_the_last_write_of_a_bucket():
    layer = _layer(X=4, Y=2, T=2, b=8, combine="none", seed=2)
    key = np.ones((1, 4))
    layer.write_inplace(key, np.array([[1.0, 2.0]]), mode="overwrite")
    layer.write_inplace(key, np.array([[3.0, -1.0]]), mode="overwrite")
    np.testing.assert_allclose(layer.forward(key)[0], [[3.0, -1.0]])
    layer.write_inplace(key, np.array([[5.0, 5.0]]))  # average mode counts on from the overwrite
    np.testing.assert_allclose(layer.forward(key)[0], [[4.0, 2.0]])


def test_a_zero_table_reads_nothing_and_the_combines_have_their_widths():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    np.testing.assert_array_equal(_layer(combine="residual").forward(x)[0], x)
    out, _ = _layer(Y=3, combine="concat").forward(x)
    assert out.shape == (2, 3, 7)
    np.testing.assert_array_equal(out[..., :4], x)
    assert _layer(Y=3, combine="none").forward(x)[0].shape == (2, 3, 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(Y=3), ValueError, "output_dim: combine='residual' adds y to x"),
        (dict(b=25), ValueError, "num_bits: expected at most 24"),
        (dict(T=0), ValueError, "num_tables: expected an int >= 1"),
        (dict(combine="sum"), ValueError, "combine: expected one of"),
        (dict(signs=1), TypeError, "signs: expected True or False"),
        (dict(gate="yes"), TypeError, "gate: expected True or False"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        _layer(**kwargs)


def test_bad_writes_are_refused():
    layer = _layer(combine="none", Y=2)
    with pytest.raises(ValueError, match="mode: expected 'average' or 'overwrite'"):
        layer.write_inplace(np.ones((1, 4)), np.ones((1, 2)), mode="max")
    with pytest.raises(ValueError, match="values: expected 2 rows"):
        layer.write_inplace(np.ones((2, 4)), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"keys: expected shape"):
        layer.write_inplace(np.ones((2, 3)), np.ones((2, 2)))


def _exact_recall_fractions(n, *, X=64, Y=3, T=2, b=6, seeds=24, orthogonal):
    """Per seed, the fraction of n written keys whose read equals their value exactly."""
    fractions = []
    for seed in range(seeds):
        layer = _layer(X=X, Y=Y, T=T, b=b, combine="none", seed=seed)
        rng = np.random.default_rng(1000 + seed)
        if orthogonal:  # T·b orthonormal directions: every bit of every table an independent fair coin
            q, _ = np.linalg.qr(rng.standard_normal((X, T * b)))
            layer.load_buffers({"planes": q.reshape(X, T, b).transpose(1, 0, 2)})
        keys, values = rng.standard_normal((n, X)), rng.standard_normal((n, Y))
        layer.write_inplace(keys, values)
        fractions.append(np.mean(np.all(np.abs(layer.forward(keys)[0] - values) < 1e-9, axis=1)))
    return np.array(fractions)


@pytest.mark.parametrize("load", [1 / 32, 1 / 4, 1.0, 2.0])
def test_explicit_write_recall_degrades_as_the_interference_bound_predicts(load):
    r"""A key is recalled exactly iff no other key shares its bucket in any table: with buckets uniform and
    independent, P = (1 − 2^{-b})^{(n−1)T}. Orthonormal hyperplanes make them so, and the measured fraction
    matches P; the layer's Gaussian hyperplanes give unequal buckets, which only collide more (Jensen), so
    the fraction is at most P. Tolerance: 4 standard errors of the mean over 24 independent seeds (+0.01)."""
    T, b = 2, 6
    n = max(2, int(load * 2**b))
    bound = (1 - 2.0**-b) ** ((n - 1) * T)
    exact = _exact_recall_fractions(n, T=T, b=b, orthogonal=True)
    tol = 4 * exact.std(ddof=1) / np.sqrt(len(exact)) + 0.01
    assert abs(exact.mean() - bound) <= tol, (exact.mean(), bound, tol)
    gaussian = _exact_recall_fractions(n, T=T, b=b, orthogonal=False)
    assert gaussian.mean() <= bound + 4 * gaussian.std(ddof=1) / np.sqrt(len(gaussian)) + 0.01
    if load <= 1 / 32:
        assert exact.mean() > 0.9  # n ≪ 2^b: nearly every key comes back exactly


def test_count_sketch_signs_belong_to_the_input_so_colliding_keys_of_opposite_sign_cancel():
    """A sign per input (one more hyperplane per table): two keys in one bucket with opposite signs write
    +v₁ and −v₂, and each reads its own value minus the other's; with equal signs, plus."""
    layer = _layer(X=8, Y=2, T=1, b=1, combine="none", signs=True, seed=4)
    rng = np.random.default_rng(5)
    keys = rng.standard_normal((200, 8))
    rows, signs = layer.address(keys)
    assert set(np.unique(signs)) == {-1.0, 1.0} and rows.max() < 2
    # two keys in the same row, once with opposite signs, once with equal signs
    for same_sign in (False, True):
        i, j = next(
            (i, j) for i in range(200) for j in range(i + 1, 200)
            if rows[i, 0] == rows[j, 0] and (signs[i, 0] == signs[j, 0]) == same_sign
        )  # fmt: skip
        fresh = _layer(X=8, Y=2, T=1, b=1, combine="none", signs=True, seed=4)
        v = rng.standard_normal((2, 2))
        fresh.write_inplace(keys[[i, j]], v, mode="average")
        got = fresh.forward(keys[[i, j]])[0]
        s = 1.0 if same_sign else -1.0
        np.testing.assert_allclose(got, [(v[0] + s * v[1]) / 2, (s * v[0] + v[1]) / 2], rtol=1e-12)


@pytest.mark.parametrize("signs", [False, True])
def test_a_learned_table_is_kernel_ridge_regression_with_the_collision_kernel(signs):
    r"""Train only the values by gradient descent (the layer's own backward) on
    L = (1/2n) Σ ‖y(x_i) − t_i‖² + (λ/2)‖V‖². The minimiser's read is kernel ridge regression with the layer's
    kernel K(x, x') = (1/T) Σ_t ς_t(x) ς_t(x') [β_t(x) = β_t(x')] and ridge nTλ, at the training points and at
    new ones: y(x) = K(x, X) (K(X, X) + nTλ I)⁻¹ t. Tolerance: the gradient descent's remaining error (1e-8)."""
    T, b, n, lam = 3, 3, 20, 1e-2
    layer = _layer(X=4, Y=2, T=T, b=b, combine="none", signs=signs, seed=6)
    rng = np.random.default_rng(7)
    x, t, x_new = rng.standard_normal((n, 4)), rng.standard_normal((n, 2)), rng.standard_normal((9, 4))

    def kernel(a, c):
        (ra, sa), (rc, sc) = layer.address(a), layer.address(c)
        return np.einsum("it,jt,ijt->ij", sa, sc, ra[:, None, :] == rc[None, :, :]) / T

    K = kernel(x, x)
    step = 1.0 / (np.linalg.eigvalsh(K).max() / (n * T) + lam)  # 1 / the loss's largest curvature
    V = np.zeros_like(layer.params["values"])
    for _ in range(4000):
        y, cache = layer.forward(x, params={"values": V})
        _, grads = layer.backward((y - t) / n, cache)
        V = V - step * (ops.densify_rows(grads["values"]) + lam * V)
    alpha = np.linalg.solve(K + n * T * lam * np.eye(n), t)
    np.testing.assert_allclose(layer.forward(x, params={"values": V})[0], K @ alpha, atol=1e-8)
    np.testing.assert_allclose(layer.forward(x_new, params={"values": V})[0], kernel(x_new, x) @ alpha, atol=1e-8)
