"""Tests for refmann.train.optim: update rules against scalar loops, purity, convergence,
clipping, checkpoint round trips and boundary errors (dense gradients; row-sparse gradients, sparse
Adam, row-wise AdaGrad and parameter groups are in test_train_optim_sparse.py)."""

from __future__ import annotations

import io
import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.train import (
    adam,
    clip_elementwise,
    clip_global_norm,
    make_optimizer,
    rmsprop,
    rowwise_adagrad,
    sgd,
    sparse_adam,
    state_from_arrays,
    state_to_arrays,
)

RTOL_LOOP = 1e-12  # vectorised NumPy vs scalar loop, float64: same operations, same order

# --------------------------------------------------------------------------- naive references
# Scalar loops written straight from the papers' equations, one element at a time.


def naive_sgd(params, grads_seq, *, lr, momentum=0.0, nesterov=False):
    out = {}
    for k, p0 in params.items():
        p = p0.astype(np.float64).copy()
        for idx in np.ndindex(p.shape):
            theta, v = float(p[idx]), 0.0
            for grads in grads_seq:
                g = float(grads[k][idx])
                v = momentum * v - lr * g
                theta = theta + (momentum * v - lr * g if nesterov else v)
            p[idx] = theta
        out[k] = p
    return out


def naive_rmsprop(params, grads_seq, *, lr, decay, momentum, eps, centered):
    out = {}
    for k, p0 in params.items():
        p = p0.astype(np.float64).copy()
        for idx in np.ndindex(p.shape):
            theta, n, gbar, delta = float(p[idx]), 0.0, 0.0, 0.0
            for grads in grads_seq:
                g = float(grads[k][idx])
                n = decay * n + (1 - decay) * g * g  # Graves (2013) eq. (38)
                gbar = decay * gbar + (1 - decay) * g  # eq. (39)
                var = n - gbar * gbar if centered else n
                delta = momentum * delta - lr * g / math.sqrt(var + eps)  # eq. (40)
                theta = theta + delta  # eq. (41)
            p[idx] = theta
        out[k] = p
    return out


def naive_adam(params, grads_seq, *, lr, beta1, beta2, eps):
    out = {}
    for k, p0 in params.items():
        p = p0.astype(np.float64).copy()
        for idx in np.ndindex(p.shape):
            theta, m, v = float(p[idx]), 0.0, 0.0
            for t, grads in enumerate(grads_seq, start=1):
                g = float(grads[k][idx])
                m = beta1 * m + (1 - beta1) * g
                v = beta2 * v + (1 - beta2) * g * g
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                theta = theta - lr * m_hat / (math.sqrt(v_hat) + eps)
            p[idx] = theta
        out[k] = p
    return out


# --------------------------------------------------------------------------- strategies

NAMES = ("controller.W", "controller.b", "head0.W_key")
ELEMENTS = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)


@st.composite
def problems(draw, max_steps=4):
    """params plus a sequence of gradient dicts with the same keys and shapes (float64)."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    shapes = {k: draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)) for k in names}
    params = {k: draw(hnp.arrays(np.float64, s, elements=ELEMENTS)) for k, s in shapes.items()}
    steps = draw(st.integers(1, max_steps))
    grads_seq = [
        {k: draw(hnp.arrays(np.float64, s, elements=ELEMENTS)) for k, s in shapes.items()} for _ in range(steps)
    ]
    return params, grads_seq


def run(step_fn, params, grads_seq, state=None):
    for grads in grads_seq:
        params, state = step_fn(params, grads, state)
    return params, state


def assert_dicts_close(actual, desired, rtol=RTOL_LOOP, atol=1e-13):
    assert set(actual) == set(desired)
    for k in desired:
        np.testing.assert_allclose(actual[k], desired[k], rtol=rtol, atol=atol, err_msg=k)


def small_problem(dtype=np.float64):
    rng = np.random.default_rng(0)
    params = {"controller.W": rng.normal(size=(3, 4)).astype(dtype), "controller.b": np.zeros(4, dtype)}
    grads = {k: rng.normal(size=p.shape).astype(dtype) for k, p in params.items()}
    return params, grads


OPTIMIZERS = {
    "sgd": dict(lr=0.1, momentum=0.9),
    "rmsprop": dict(lr=1e-2),
    "adam": dict(lr=1e-2),
    "sparse_adam": dict(lr=1e-2),
    "rowwise_adagrad": dict(lr=1e-1),
}
DIRECT = {"sgd": sgd, "rmsprop": rmsprop, "adam": adam, "sparse_adam": sparse_adam, "rowwise_adagrad": rowwise_adagrad}

# --------------------------------------------------------------------------- agreement with loops


@given(
    problems(),
    st.floats(1e-4, 1.0),
    st.sampled_from([0.0, 0.5, 0.9]),
    st.booleans(),
)
def test_sgd_matches_scalar_loop(problem, lr, momentum, nesterov):
    params, grads_seq = problem
    hyper = dict(lr=lr, momentum=momentum, nesterov=nesterov)
    got, state = run(lambda p, g, s: sgd(p, g, s, **hyper), params, grads_seq)
    assert_dicts_close(got, naive_sgd(params, grads_seq, **hyper))
    assert state["step"] == len(grads_seq)


@given(
    problems(),
    st.floats(1e-5, 1e-1),
    st.sampled_from([0.0, 0.9, 0.95]),
    st.sampled_from([0.0, 0.9]),
    st.sampled_from([1e-4, 1e-2]),
    st.booleans(),
)
def test_rmsprop_matches_scalar_loop(problem, lr, decay, momentum, eps, centered):
    params, grads_seq = problem
    hyper = dict(lr=lr, decay=decay, momentum=momentum, eps=eps, centered=centered)
    got, state = run(lambda p, g, s: rmsprop(p, g, s, **hyper), params, grads_seq)
    assert_dicts_close(got, naive_rmsprop(params, grads_seq, **hyper))
    assert state["step"] == len(grads_seq)
    assert ("gbar" in state) == centered


def test_rmsprop_defaults_are_graves_2013():
    """Graves (2013) Sec. 4: ℵ = 0.95, ℶ = 0.9, ℷ = 1e-4, ℸ = 1e-4, centred."""
    params, grads = small_problem()
    hyper = dict(lr=1e-4, decay=0.95, momentum=0.9, eps=1e-4, centered=True)
    default_run = run(rmsprop, params, [grads, grads])[0]
    assert_dicts_close(default_run, naive_rmsprop(params, [grads, grads], **hyper))


@given(
    problems(),
    st.floats(1e-4, 1e-1),
    st.sampled_from([0.0, 0.9]),
    st.sampled_from([0.0, 0.999]),
    st.sampled_from([1e-8, 1e-3]),
)
def test_adam_matches_scalar_loop(problem, lr, beta1, beta2, eps):
    params, grads_seq = problem
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    got, state = run(lambda p, g, s: adam(p, g, s, **hyper), params, grads_seq)
    assert_dicts_close(got, naive_adam(params, grads_seq, **hyper))
    assert state["step"] == len(grads_seq)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_make_optimizer_equals_direct_call(name):
    params, grads = small_problem()
    direct = DIRECT[name]
    step = make_optimizer(name, **OPTIMIZERS[name])
    p1, s1 = run(step, params, [grads, grads])
    p2, s2 = run(lambda p, g, s: direct(p, g, s, **OPTIMIZERS[name]), params, [grads, grads])
    for k in params:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert s1["step"] == s2["step"] == 2


# --------------------------------------------------------------------------- purity and dtypes


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_update_does_not_modify_inputs(name):
    params, grads = small_problem()
    step = make_optimizer(name, **OPTIMIZERS[name])
    _, state = step(params, grads, None)
    p_copy = {k: v.copy() for k, v in params.items()}
    g_copy = {k: v.copy() for k, v in grads.items()}
    s_copy = state_to_arrays(state)
    new_params, new_state = step(params, grads, state)
    for k in params:
        np.testing.assert_array_equal(params[k], p_copy[k])
        np.testing.assert_array_equal(grads[k], g_copy[k])
        assert not np.shares_memory(new_params[k], params[k])
        assert not np.shares_memory(new_params[k], grads[k])
    for k, a in state_to_arrays(state).items():
        np.testing.assert_array_equal(a, s_copy[k])
    assert state["step"] == 1 and new_state["step"] == 2


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_float32_params_stay_float32_even_with_float64_grads(name):
    params, grads = small_problem(np.float32)
    grads = {k: g.astype(np.float64) for k, g in grads.items()}
    new_params, state = run(make_optimizer(name, **OPTIMIZERS[name]), params, [grads, grads])
    for k in params:
        assert new_params[k].dtype == np.float32, k
    for slot, arrays in state.items():
        if slot != "step":
            assert all(a.dtype == np.float32 for a in arrays.values()), slot


# --------------------------------------------------------------------------- behaviour


def quadratic(params):
    """L = ½ Σ a (θ - c)², an ill-conditioned-ish bowl with its minimum (L = 0) at c."""
    rng = np.random.default_rng(1)
    a = {k: rng.uniform(0.5, 2.0, size=p.shape) for k, p in params.items()}
    c = {k: rng.normal(size=p.shape) for k, p in params.items()}
    loss = sum(0.5 * float(np.sum(a[k] * (p - c[k]) ** 2)) for k, p in params.items())
    return loss, {k: a[k] * (p - c[k]) for k, p in params.items()}


@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("sgd", dict(lr=0.1)),
        ("sgd", dict(lr=0.05, momentum=0.9)),
        ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True)),
        ("rmsprop", dict(lr=1e-2)),
        ("rmsprop", dict(lr=1e-2, centered=False)),
        ("adam", dict(lr=0.05)),
        ("sparse_adam", dict(lr=0.05)),
        ("rowwise_adagrad", dict(lr=0.5)),
    ],
)
def test_optimizer_minimises_a_quadratic(name, hyper):
    params = {"controller.W": np.zeros((3, 4)), "controller.b": np.zeros(5)}
    step, state = make_optimizer(name, **hyper), None
    initial, _ = quadratic(params)
    for _ in range(300):
        _, grads = quadratic(params)
        params, state = step(params, grads, state)
    final, _ = quadratic(params)
    assert final < initial / 100, (initial, final)


@given(problems(max_steps=1), st.floats(1e-4, 1e-1))
def test_adam_first_step_moves_each_parameter_by_lr_times_sign(problem, lr):
    params, (grads,) = problem
    grads = {k: np.where(np.abs(g) < 1e-3, 1.0, g) for k, g in grads.items()}  # |g| >> eps
    new_params, _ = adam(params, grads, None, lr=lr)
    for k in params:
        np.testing.assert_allclose(new_params[k] - params[k], -lr * np.sign(grads[k]), rtol=1e-4, atol=1e-12)


# --------------------------------------------------------------------------- clipping


@given(problems(max_steps=1), st.floats(1e-3, 100.0))
def test_clip_global_norm_bounds_norm_and_keeps_direction(problem, max_norm):
    _, (grads,) = problem
    clipped, norm = clip_global_norm(grads, max_norm)
    flat = np.concatenate([grads[k].ravel() for k in sorted(grads)])
    flat_clipped = np.concatenate([clipped[k].ravel() for k in sorted(grads)])
    # math.hypot is an accurate reference that neither underflows nor overflows
    np.testing.assert_allclose(norm, math.hypot(*flat), rtol=1e-12)
    new_norm = math.hypot(*flat_clipped)
    assert new_norm <= max_norm * (1 + 1e-12)
    if norm > max_norm:
        np.testing.assert_allclose(new_norm, max_norm, rtol=1e-12)
        np.testing.assert_allclose(flat_clipped, flat * (max_norm / norm), rtol=1e-12)  # same direction
    else:
        np.testing.assert_array_equal(flat_clipped, flat)


def test_clip_global_norm_does_not_overflow_on_huge_gradients():
    grads = {"w": np.full(4, 1e200), "b": np.array([-1e200])}
    clipped, norm = clip_global_norm(grads, 1.0)
    np.testing.assert_allclose(norm, math.sqrt(5) * 1e200, rtol=1e-12)
    np.testing.assert_allclose(clipped["w"], np.full(4, 1 / math.sqrt(5)), rtol=1e-12)


def test_clip_global_norm_keeps_float32():
    grads = {"w": np.full(3, 10.0, dtype=np.float32)}
    clipped, norm = clip_global_norm(grads, 1.0)
    assert clipped["w"].dtype == np.float32
    assert float(np.linalg.norm(clipped["w"].astype(np.float64))) <= 1.0 * (1 + 4 * np.finfo(np.float32).eps)


@given(problems(max_steps=1), st.floats(1e-3, 20.0))
def test_clip_elementwise_bounds_entries(problem, value):
    _, (grads,) = problem
    before = {k: g.copy() for k, g in grads.items()}
    clipped = clip_elementwise(grads, value)
    for k, g in grads.items():
        assert np.all(np.abs(clipped[k]) <= value)
        inside = np.abs(g) <= value
        np.testing.assert_array_equal(clipped[k][inside], g[inside])
        np.testing.assert_array_equal(clipped[k][~inside], np.sign(g[~inside]) * value)
        np.testing.assert_array_equal(g, before[k])


# --------------------------------------------------------------------------- checkpointing


@pytest.mark.parametrize(
    ("name", "hyper"),
    [*OPTIMIZERS.items(), ("rmsprop", dict(lr=1e-2, centered=False)), ("sgd", dict(lr=0.1))],
)
def test_state_round_trip_through_npz_resumes_bit_identically(name, hyper, tmp_path):
    params, grads = small_problem(np.float32)
    rng = np.random.default_rng(2)
    grads_seq = [{k: rng.normal(size=g.shape).astype(np.float32) for k, g in grads.items()} for _ in range(6)]
    step = make_optimizer(name, **hyper)
    params, state = run(step, params, grads_seq[:3])

    path = tmp_path / "opt_state.npz"
    np.savez(path, **state_to_arrays(state))
    with np.load(path, allow_pickle=False) as npz:
        restored = state_from_arrays(npz)

    p_ref, s_ref = run(step, params, grads_seq[3:], state)
    p_res, s_res = run(step, params, grads_seq[3:], restored)
    for k in params:
        np.testing.assert_array_equal(p_res[k], p_ref[k])
        assert p_res[k].dtype == p_ref[k].dtype
    a_ref, a_res = state_to_arrays(s_ref), state_to_arrays(s_res)
    assert set(a_ref) == set(a_res)
    for k in a_ref:
        np.testing.assert_array_equal(a_res[k], a_ref[k])
        assert a_res[k].dtype == a_ref[k].dtype


def test_state_to_arrays_uses_flat_keys_and_0d_step():
    params, grads = small_problem()
    _, state = adam(params, grads)
    arrays = state_to_arrays(state)
    assert set(arrays) == {"step", "m/controller.W", "m/controller.b", "v/controller.W", "v/controller.b"}
    assert arrays["step"].shape == () and arrays["step"].dtype == np.int64 and int(arrays["step"]) == 1
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        back = state_from_arrays(npz)
    assert back["step"] == 1
    np.testing.assert_array_equal(back["m"]["controller.W"], state["m"]["controller.W"])


def test_state_from_arrays_needs_step():
    with pytest.raises(ValueError, match="'step'"):
        state_from_arrays({"m/w": np.zeros(2)})


def test_state_from_arrays_rejects_non_integer_scalars():
    with pytest.raises(ValueError, match=r"arrays\['lr'\].*0-d integer"):
        state_from_arrays({"step": np.array(1), "lr": np.array(0.1)})


# --------------------------------------------------------------------------- errors name the argument

ALL_STEPS = [
    pytest.param(lambda p, g, s=None: sgd(p, g, s, lr=0.1), id="sgd"),
    pytest.param(lambda p, g, s=None: rmsprop(p, g, s), id="rmsprop"),
    pytest.param(lambda p, g, s=None: adam(p, g, s), id="adam"),
    pytest.param(lambda p, g, s=None: sparse_adam(p, g, s), id="sparse_adam"),
    pytest.param(lambda p, g, s=None: rowwise_adagrad(p, g, s), id="rowwise_adagrad"),
]


@pytest.mark.parametrize("step", ALL_STEPS)
def test_missing_and_extra_grad_keys_are_named(step):
    params = {"controller.W": np.zeros(2), "controller.b": np.zeros(2)}
    grads = {"controller.W": np.zeros(2), "head0.W": np.zeros(2)}
    with pytest.raises(ValueError, match=r"grads.*missing \['controller\.b'\].*extra \['head0\.W'\]"):
        step(params, grads)


@pytest.mark.parametrize("step", ALL_STEPS)
def test_shape_mismatch_names_key_and_both_shapes(step):
    params = {"controller.W": np.zeros((2, 3))}
    grads = {"controller.W": np.zeros((3, 2))}
    with pytest.raises(ValueError, match=r"grads\['controller\.W'\].*\(2, 3\).*\(3, 2\)"):
        step(params, grads)


@pytest.mark.parametrize("step", ALL_STEPS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gradient_names_key(step, bad):
    params = {"controller.W": np.zeros(3), "controller.b": np.zeros(1)}
    grads = {"controller.W": np.array([0.0, bad, 1.0]), "controller.b": np.zeros(1)}
    with pytest.raises(ValueError, match=r"grads\['controller\.W'\].*finite"):
        step(params, grads)


@pytest.mark.parametrize("step", ALL_STEPS)
def test_state_for_other_params_is_rejected(step):
    _, state = step({"a": np.zeros(2)}, {"a": np.zeros(2)})
    with pytest.raises(ValueError, match=r"state\[.*missing \['b'\]"):
        step({"a": np.zeros(2), "b": np.zeros(2)}, {"a": np.zeros(2), "b": np.zeros(2)}, state)


def test_state_of_another_optimizer_is_rejected():
    params, grads = small_problem()
    _, state = adam(params, grads)
    with pytest.raises(ValueError, match=r"state: expected the rmsprop slots.*missing \['delta', 'n'\]"):
        rmsprop(params, grads, state, centered=False)


@pytest.mark.parametrize(
    ("fn", "hyper", "arg", "expected"),
    [
        (sgd, dict(lr=0.0), "lr", "> 0"),
        (sgd, dict(lr=-1e-3), "lr", "> 0"),
        (sgd, dict(lr=np.nan), "lr", "> 0"),
        (sgd, dict(lr=0.1, momentum=1.0), "momentum", r"\[0, 1\)"),
        (sgd, dict(lr=0.1, momentum=-0.1), "momentum", r"\[0, 1\)"),
        (rmsprop, dict(lr=0.0), "lr", "> 0"),
        (rmsprop, dict(decay=1.0), "decay", r"\[0, 1\)"),
        (rmsprop, dict(decay=-0.5), "decay", r"\[0, 1\)"),
        (rmsprop, dict(momentum=1.5), "momentum", r"\[0, 1\)"),
        (rmsprop, dict(eps=0.0), "eps", "> 0"),
        (adam, dict(lr=-1.0), "lr", "> 0"),
        (adam, dict(beta1=1.0), "beta1", r"\[0, 1\)"),
        (adam, dict(beta2=1.2), "beta2", r"\[0, 1\)"),
        (adam, dict(beta2=-0.1), "beta2", r"\[0, 1\)"),
        (adam, dict(eps=-1e-8), "eps", "> 0"),
        (sparse_adam, dict(lr=0.0), "lr", "> 0"),
        (sparse_adam, dict(beta1=1.0), "beta1", r"\[0, 1\)"),
        (sparse_adam, dict(beta2=-0.1), "beta2", r"\[0, 1\)"),
        (sparse_adam, dict(eps=0.0), "eps", "> 0"),
        (rowwise_adagrad, dict(lr=-0.1), "lr", "> 0"),
        (rowwise_adagrad, dict(lr=np.inf), "lr", "> 0"),
        (rowwise_adagrad, dict(eps=0.0), "eps", "> 0"),
    ],
)
def test_bad_hyperparameter_names_argument_expected_and_given(fn, hyper, arg, expected):
    params, grads = small_problem()
    given_value = repr(hyper[arg])
    with pytest.raises(ValueError, match=rf"^{arg}: expected .*{expected}.*got {given_value}$"):
        fn(params, grads, None, **hyper)


@pytest.mark.parametrize(
    ("name", "hyper", "arg"),
    [
        ("sgd", dict(lr=0.0), "lr"),
        ("rmsprop", dict(decay=1.0), "decay"),
        ("adam", dict(beta1=1.0), "beta1"),
        ("sparse_adam", dict(beta2=1.0), "beta2"),
        ("rowwise_adagrad", dict(eps=-1.0), "eps"),
    ],
)
def test_make_optimizer_validates_hyperparameters_at_construction(name, hyper, arg):
    with pytest.raises(ValueError, match=rf"^{arg}: expected"):
        make_optimizer(name, **hyper)


def test_make_optimizer_unknown_name_lists_valid_names():
    valid = r"\['adam', 'adamw', 'rmsprop', 'rowwise_adagrad', 'sgd', 'sparse_adam'\]"
    with pytest.raises(ValueError, match=rf"name: expected one of {valid}, got 'adagrad'"):
        make_optimizer("adagrad", lr=0.1)


def test_make_optimizer_rejects_unknown_hyperparameter():
    with pytest.raises(TypeError, match="beta1"):
        make_optimizer("sgd", lr=0.1, beta1=0.9)
    with pytest.raises(TypeError, match="momentum"):
        make_optimizer("rowwise_adagrad", momentum=0.9)


@pytest.mark.parametrize(("fn", "flag"), [(sgd, "nesterov"), (rmsprop, "centered")])
def test_flags_must_be_bools(fn, flag):
    hyper = {"lr": 0.1, flag: 1}
    with pytest.raises(TypeError, match=rf"^{flag}: expected True or False, got 1$"):
        fn({}, {}, None, **hyper)


@pytest.mark.parametrize("value", [0.0, -1.0, np.nan])
def test_clip_elementwise_rejects_non_positive_value(value):
    with pytest.raises(ValueError, match=rf"^value: expected a number > 0, got {value!r}$"):
        clip_elementwise({"w": np.ones(2)}, value)


@pytest.mark.parametrize("max_norm", [0.0, -1.0, np.nan])
def test_clip_global_norm_rejects_non_positive_max_norm(max_norm):
    with pytest.raises(ValueError, match=rf"^max_norm: expected a number > 0, got {max_norm!r}$"):
        clip_global_norm({"w": np.ones(2)}, max_norm)


@pytest.mark.parametrize("clip", [lambda g: clip_elementwise(g, 1.0), lambda g: clip_global_norm(g, 1.0)])
def test_clipping_rejects_non_finite_gradients_by_key(clip):
    with pytest.raises(ValueError, match=r"grads\['head0\.W'\].*finite"):
        clip({"controller.W": np.ones(2), "head0.W": np.array([np.nan])})
