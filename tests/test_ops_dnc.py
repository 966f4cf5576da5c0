"""The DNC's ops (refmann/ops/dnc.py): gradients by finite differences, and each forward against a naive twin.

Allocation is checked against its formula evaluated by brute force (ties included), several write heads
against the sequential loop written out, the links against a triple loop and their invariants, and the
usage's ψ gradient at f_i w_i = 1 (where a division would give 0/0) against its analytic value.
"""

import itertools

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refmann import gradcheck, ops
from refmann.ops._registry import simplex as simplex_rows
from refmann.testing import assert_gradients_match, assert_linear_in_dout, assert_pure, f64, gates, simplex

EPS = 1e-6
SIZES = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(1, 6))  # B, R, Wh, N
DNC_OPS = [name for name in ops.OP_NAMES if name.startswith("dnc_")]


@st.composite
def spaced_usages(draw, B, N, gap=0.05):
    """(B, N) usages in [0.045, 0.955], pairwise ≥ ``gap`` apart: a grid of spacing gap + 0.01, jittered ±0.005."""
    grid = 0.05 + (gap + 0.01) * np.arange(int(0.9 / (gap + 0.01)) + 1)
    rows = [np.array(draw(st.permutations(list(grid)))[:N]) for _ in range(B)]
    return np.stack(rows) + draw(f64((B, N), -0.005, 0.005))


@st.composite
def write_weights(draw, shape):
    """Write weights with Σ_i w_i ∈ [0.05, 0.95]: a simplex scaled by a gate."""
    return draw(simplex(shape)) * draw(gates(shape[:-1] + (1,)))


@st.composite
def link_matrices(draw, shape, zero_diagonal=True):
    """Valid link matrices (entries in [0, 1), row sums < 1), or any non-negative ones with their diagonal."""
    L = draw(f64(shape, 0.0, 1.0))
    if zero_diagonal:
        L = L * (1.0 - np.eye(shape[-1]))
    return L / (L.sum(-1, keepdims=True) + 0.5)


def _min_gap(u):
    return float(np.min(np.diff(np.sort(u, axis=-1), axis=-1), initial=np.inf))


# -- usage ------------------------------------------------------------------------------------------------------


@given(sizes=SIZES, data=st.data())
def test_dnc_usage_gradients_match(sizes, data):
    B, R, Wh, N = sizes
    usage, f, wr = data.draw(f64((B, N), 0.0, 1.0)), data.draw(gates((B, R))), data.draw(simplex((B, R, N)))
    ww = data.draw(write_weights((B, Wh, N)))
    assert_gradients_match("dnc_usage", usage, f, wr, write_weights=ww)
    assert_pure("dnc_usage", usage, f, wr, write_weights=ww)
    assert_linear_in_dout("dnc_usage", usage, f, wr, write_weights=ww)


def naive_usage(usage, f, wr, ww):
    B, N = usage.shape
    out = np.empty_like(usage)
    for b, n in itertools.product(range(B), range(N)):
        written = 1.0 - np.prod([1.0 - ww[b, j, n] for j in range(ww.shape[1])])
        psi = np.prod([1.0 - f[b, i] * wr[b, i, n] for i in range(wr.shape[1])])
        out[b, n] = (usage[b, n] + written - usage[b, n] * written) * psi
    return out


@given(sizes=SIZES, data=st.data())
def test_dnc_usage_equals_the_formula_slot_by_slot(sizes, data):
    B, R, Wh, N = sizes
    usage, f, wr = data.draw(f64((B, N), 0.0, 1.0)), data.draw(gates((B, R))), data.draw(simplex((B, R, N)))
    ww = data.draw(write_weights((B, Wh, N)))
    out, _ = ops.dnc_usage_forward(usage, f, wr, write_weights=ww)
    np.testing.assert_allclose(out, naive_usage(usage, f, wr, ww), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("R", [1, 2, 3])
def test_dnc_usage_psi_gradient_is_finite_and_exact_when_a_free_gate_times_a_read_weight_is_one(R):
    """f_0 = 1 and w^r_0 one-hot on slot 1: the factor 1 − f_0 w_0 is exactly 0, so ψ/(1 − f_0 w_0) would be 0/0.

    The exact gradient there is ∂ψ/∂(f_0 w_0) = −Π_{k≠0} (1 − f_k w_k), non-zero."""
    rng = np.random.default_rng(R)
    B, N = 2, 4
    usage = rng.uniform(0.1, 0.9, (B, N))
    f = rng.uniform(0.2, 0.8, (B, R))
    f[:, 0] = 1.0
    wr = simplex_rows(rng, B, R, N)
    wr[:, 0] = np.eye(N)[1]
    ww = simplex_rows(rng, B, 1, N) * 0.5
    out, cache = ops.dnc_usage_forward(usage, f, wr, write_weights=ww)
    assert np.all(out[:, 1] == 0.0)  # slot 1 freed completely
    dout = rng.standard_normal((B, N))
    dusage, df, dwr = ops.dnc_usage_backward(dout, cache)
    assert all(np.all(np.isfinite(g)) for g in (dusage, df, dwr))
    written = 1.0 - np.prod(1.0 - ww, axis=1)
    kept = usage + written - usage * written  # (B, N)
    others = np.prod(1.0 - f[:, 1:, None] * wr[:, 1:], axis=1)  # Π_{k≠0}, (B, N)
    np.testing.assert_allclose(df[:, 0], np.sum(-dout * kept * others * wr[:, 0], axis=-1), rtol=1e-13)
    np.testing.assert_allclose(dwr[:, 0], -dout * kept * others * f[:, :1], rtol=1e-13, atol=1e-16)
    assert np.all(dwr[:, 0, 1] != 0.0)
    assert_gradients_match("dnc_usage", usage, f, wr, write_weights=ww)  # a polynomial: FD is fine here too


# -- allocation -------------------------------------------------------------------------------------------------


def brute_force_allocation(usage, eps=EPS):
    """a[i] = (1 − û_i) Π over j with (û_j < û_i or (û_j == û_i and j < i)) of û_j, for one (N,) usage."""
    u_hat = eps + (1.0 - eps) * usage
    N = len(u_hat)
    a = np.empty(N)
    for i in range(N):
        before = [u_hat[j] for j in range(N) if u_hat[j] < u_hat[i] or (u_hat[j] == u_hat[i] and j < i)]
        a[i] = (1.0 - u_hat[i]) * np.prod(before)
    return a


def naive_allocation(usage, write_gates, eps=EPS):
    """The write heads in order: a_j = alloc(u); u ← u + (1 − u) g_j a_j (DeepMind's write_allocation_weights)."""
    B, Wh = write_gates.shape
    out = np.empty((B, Wh, usage.shape[1]))
    for b in range(B):
        u = usage[b].copy()
        for j in range(Wh):
            out[b, j] = brute_force_allocation(u, eps)
            u = u + (1.0 - u) * write_gates[b, j] * out[b, j]
    return out


@given(B=st.integers(1, 3), N=st.integers(1, 6), Wh=st.integers(1, 2), data=st.data())
def test_dnc_allocation_gradients_match(B, N, Wh, data):
    usage, g = data.draw(spaced_usages(B, N)), data.draw(gates((B, Wh)))
    a, _ = ops.dnc_allocation_forward(usage, g)
    assume(_min_gap(usage + (1.0 - usage) * g[:, :1] * a[:, 0]) >= 0.01 or Wh == 1)  # the 2nd head's sort
    assert_gradients_match("dnc_allocation", usage, g)
    assert_pure("dnc_allocation", usage, g)
    assert_linear_in_dout("dnc_allocation", usage, g)


@given(
    usage=st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=7).map(lambda u: np.array([u]))
)
def test_dnc_allocation_equals_the_brute_force_formula_with_exact_ties(usage):
    """Usages from five values, so most draws hold exact ties: the lower index comes first."""
    a, _ = ops.dnc_allocation_forward(usage, np.ones((1, 1)))
    np.testing.assert_allclose(a[0, 0], brute_force_allocation(usage[0]), rtol=1e-14, atol=0)


@given(B=st.integers(1, 3), N=st.integers(1, 7), data=st.data())
def test_dnc_allocation_equals_the_brute_force_formula(B, N, data):
    usage = data.draw(f64((B, N), 0.0, 1.0))
    a, _ = ops.dnc_allocation_forward(usage, np.ones((B, 1)))
    for b in range(B):
        np.testing.assert_allclose(a[b, 0], brute_force_allocation(usage[b]), rtol=1e-13, atol=1e-300)
    assert np.all(a >= 0) and np.all(a.sum(-1) <= 1.0 + 1e-12)


def test_dnc_allocation_of_all_zero_usage_fills_the_lowest_slot_first():
    """Every slot tied at û = eps: slot 0 gets 1 − eps, slot 1 (1 − eps) eps, slot 2 (1 − eps) eps², …"""
    N = 5
    a, cache = ops.dnc_allocation_forward(np.zeros((1, N)), np.ones((1, 1)))
    np.testing.assert_allclose(a[0, 0], (1.0 - EPS) * EPS ** np.arange(N), rtol=1e-14)
    np.testing.assert_array_equal(ops.dnc_allocation_order(np.zeros((1, N))), [np.arange(N)])
    grads = ops.dnc_allocation_backward(np.ones_like(a), cache)
    assert all(np.all(np.isfinite(g)) for g in grads)


@given(B=st.integers(1, 3), N=st.integers(1, 6), Wh=st.integers(2, 3), data=st.data())
def test_dnc_allocation_with_several_write_heads_equals_the_sequential_loop(B, N, Wh, data):
    usage, g = data.draw(f64((B, N), 0.0, 1.0)), data.draw(f64((B, Wh), 0.0, 1.0))
    a, _ = ops.dnc_allocation_forward(usage, g)
    np.testing.assert_allclose(a, naive_allocation(usage, g), rtol=1e-12, atol=1e-300)


@given(usage=f64((2, 6), 0.0, 1.0))
def test_dnc_allocation_order_is_a_stable_ascending_sort_of_the_usage(usage):
    usage = np.round(usage, 1)  # ties
    order = ops.dnc_allocation_order(usage)
    for b in range(2):
        assert list(order[b]) == sorted(range(6), key=lambda i: (usage[b, i], i))


# -- write weights ------------------------------------------------------------------------------------------------


@given(sizes=SIZES, data=st.data())
def test_dnc_write_weights_gradients_match_and_equal_the_formula(sizes, data):
    B, _, Wh, N = sizes
    a, c = data.draw(simplex((B, Wh, N))), data.draw(simplex((B, Wh, N)))
    ga, gw = data.draw(gates((B, Wh))), data.draw(gates((B, Wh)))
    assert_gradients_match("dnc_write_weights", a, c, ga, gw)
    assert_pure("dnc_write_weights", a, c, ga, gw)
    out, _ = ops.dnc_write_weights_forward(a, c, ga, gw)
    for b, h in itertools.product(range(B), range(Wh)):
        np.testing.assert_allclose(out[b, h], gw[b, h] * (ga[b, h] * a[b, h] + (1 - ga[b, h]) * c[b, h]), rtol=1e-14)


# -- links --------------------------------------------------------------------------------------------------------


def naive_links(link, precedence, w):
    B, Wh, N = w.shape
    out = np.empty_like(link)
    for b, h, i, j in itertools.product(range(B), range(Wh), range(N), range(N)):
        out[b, h, i, j] = (
            0.0 if i == j else (1 - w[b, h, i] - w[b, h, j]) * link[b, h, i, j] + w[b, h, i] * precedence[b, h, j]
        )
    p = np.array([[(1 - w[b, h].sum()) * precedence[b, h] + w[b, h] for h in range(Wh)] for b in range(B)])
    return out, p


@given(sizes=SIZES, zero_diagonal=st.booleans(), data=st.data())
def test_dnc_links_gradients_match(sizes, zero_diagonal, data):
    """Also from link matrices with a non-zero diagonal: the mask must keep it out of every gradient."""
    B, _, Wh, N = sizes
    L = data.draw(link_matrices((B, Wh, N, N), zero_diagonal))
    p, w = data.draw(write_weights((B, Wh, N))), data.draw(write_weights((B, Wh, N)))
    assert_gradients_match("dnc_links", L, p, w)
    assert_pure("dnc_links", L, p, w)
    assert_linear_in_dout("dnc_links", L, p, w)


@given(sizes=SIZES, data=st.data())
def test_dnc_links_equal_the_triple_loop_and_have_a_zero_diagonal(sizes, data):
    B, _, Wh, N = sizes
    L = data.draw(link_matrices((B, Wh, N, N), zero_diagonal=False))
    p, w = data.draw(write_weights((B, Wh, N))), data.draw(write_weights((B, Wh, N)))
    (link_t, precedence_t), _ = ops.dnc_links_forward(L, p, w)
    naive_l, naive_p = naive_links(L, p, w)
    np.testing.assert_allclose(link_t, naive_l, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(precedence_t, naive_p, rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(np.diagonal(link_t, axis1=-2, axis2=-1), 0.0)


@given(B=st.integers(1, 2), Wh=st.integers(1, 2), N=st.integers(1, 6), T=st.integers(1, 12), data=st.data())
def test_dnc_links_stay_weightings_over_slots_for_valid_write_weights(B, Wh, N, T, data):
    """From L_0 = 0, p_0 = 0 and write weights with Σ w ≤ 1: entries in [0, 1], every row and column sums to ≤ 1."""
    L, p = np.zeros((B, Wh, N, N)), np.zeros((B, Wh, N))
    for _ in range(T):
        w = data.draw(simplex((B, Wh, N))) * data.draw(f64((B, Wh, 1), 0.0, 1.0))
        (L, p), _ = ops.dnc_links_forward(L, p, w)
        assert np.all(L >= 0) and np.all(L <= 1)
        assert np.all(L.sum(-1) <= 1 + 1e-12) and np.all(L.sum(-2) <= 1 + 1e-12)
        assert np.all(p >= 0) and np.all(p.sum(-1) <= 1 + 1e-12)


def test_dnc_links_cache_holds_the_link_by_reference_and_can_drop_it():
    (L, p, w), _ = gradcheck.op_example("dnc_links", np.random.default_rng(0))
    out, cache = ops.dnc_links_forward(L, p, w)
    assert cache.link_prev is L
    dout = tuple(np.random.default_rng(1).standard_normal(o.shape) for o in out)
    expected = ops.dnc_links_backward(dout, cache)
    with pytest.raises(ValueError, match="link_prev is None"):
        ops.dnc_links_backward(dout, cache._replace(link_prev=None))
    again = ops.dnc_links_backward(dout, cache._replace(link_prev=None)._replace(link_prev=L.copy()))
    for a, b in zip(expected, again):
        np.testing.assert_array_equal(a, b)


# -- directional weights --------------------------------------------------------------------------------------------


@given(sizes=SIZES, data=st.data())
def test_dnc_directional_gradients_match_and_equal_einsum(sizes, data):
    B, R, Wh, N = sizes
    L, wr = data.draw(link_matrices((B, Wh, N, N))), data.draw(simplex((B, R, N)))
    assert_gradients_match("dnc_directional", L, wr)
    assert_pure("dnc_directional", L, wr)
    (fwd, bwd), cache = ops.dnc_directional_forward(L, wr)
    np.testing.assert_allclose(fwd, np.einsum("bhij,brj->brhi", L, wr), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(bwd, np.einsum("bhij,bri->brhj", L, wr), rtol=1e-13, atol=1e-16)
    assert cache.link is L


def test_dnc_directional_backward_refuses_a_dropped_link():
    (L, wr), _ = gradcheck.op_example("dnc_directional", np.random.default_rng(0))
    out, cache = ops.dnc_directional_forward(L, wr)
    with pytest.raises(ValueError, match="link is None"):
        ops.dnc_directional_backward(tuple(np.ones_like(o) for o in out), cache._replace(link=None))


# -- read weights -------------------------------------------------------------------------------------------------


@given(sizes=SIZES, data=st.data())
def test_dnc_read_weights_gradients_match_and_equal_the_naive_sum(sizes, data):
    B, R, Wh, N = sizes
    modes, c = data.draw(simplex((B, R, 1 + 2 * Wh))), data.draw(simplex((B, R, N)))
    fwd, bwd = data.draw(f64((B, R, Wh, N), 0.0, 1.0)), data.draw(f64((B, R, Wh, N), 0.0, 1.0))
    assert_gradients_match("dnc_read_weights", modes, c, fwd, bwd)
    assert_pure("dnc_read_weights", modes, c, fwd, bwd)
    out, _ = ops.dnc_read_weights_forward(modes, c, fwd, bwd)
    for b, r in itertools.product(range(B), range(R)):
        expected = modes[b, r, 2 * Wh] * c[b, r]
        for h in range(Wh):  # DeepMind's order: [backward × Wh, forward × Wh, content]
            expected = expected + modes[b, r, h] * bwd[b, r, h] + modes[b, r, Wh + h] * fwd[b, r, h]
        np.testing.assert_allclose(out[b, r], expected, rtol=1e-13, atol=1e-16)


# -- every backward checks its upstream gradient ------------------------------------------------------------------


@pytest.mark.parametrize("name", DNC_OPS)
def test_every_dnc_op_has_its_gradients_checked_at_the_registered_example(name):
    for seed in range(5):
        arrays, hyper = gradcheck.op_example(name, np.random.default_rng(seed))
        assert_gradients_match(name, *arrays, **hyper)


@pytest.mark.parametrize("name", DNC_OPS)
def test_every_dnc_backward_rejects_a_bad_dout_naming_it(name):
    arrays, hyper = gradcheck.op_example(name, np.random.default_rng(0))
    out, cache = getattr(ops, f"{name}_forward")(*arrays, **hyper)
    backward = getattr(ops, f"{name}_backward")
    outs = out if isinstance(out, tuple) else (out,)
    for k in range(len(outs)):
        for bad, message in (
            (np.ones(outs[k].shape + (1,)), "expected shape"),
            (np.where(np.arange(outs[k].size).reshape(outs[k].shape) == 0, np.nan, 1.0), "expected finite values"),
        ):
            douts = [np.ones_like(o) for o in outs]
            douts[k] = bad
            dout = tuple(douts) if isinstance(out, tuple) else douts[0]
            with pytest.raises(ValueError, match=message) as info:
                backward(dout, cache)
            assert str(info.value).startswith("d"), str(info.value)  # names the gradient: dusage_t, dlink_t, ...


@pytest.mark.parametrize(
    ("name", "position", "message"),
    [
        ("dnc_usage", 2, "read_weights: expected shape"),
        ("dnc_allocation", 1, "write_gates: expected shape"),
        ("dnc_write_weights", 1, "content: expected shape"),
        ("dnc_links", 0, "link: expected shape"),
        ("dnc_directional", 1, "read_weights: expected shape"),
        ("dnc_read_weights", 0, "read_modes: expected shape"),
    ],
)
def test_every_dnc_forward_rejects_a_misshapen_input_naming_it(name, position, message):
    arrays, hyper = gradcheck.op_example(name, np.random.default_rng(0))
    arrays = list(arrays)
    x = arrays[position]
    arrays[position] = np.ones((x.shape[0] + 1,) + x.shape[1:])  # a batch size of its own
    with pytest.raises(ValueError, match=message):
        getattr(ops, f"{name}_forward")(*arrays, **hyper)


def test_dnc_allocation_rejects_usage_out_of_range_and_a_zero_eps():
    with pytest.raises(ValueError, match=r"usage: expected values in \[0"):
        ops.dnc_allocation_forward(np.array([[0.5, -0.5]]), np.ones((1, 1)))
    with pytest.raises(ValueError, match="eps"):
        ops.dnc_allocation_forward(np.array([[0.5, 0.1]]), np.ones((1, 1)), eps=0.0)
