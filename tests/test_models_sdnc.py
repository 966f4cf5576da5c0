"""The Sparse DNC: ≡ its dense twin at K = N and K_L = N, the twin's stop-gradient ≡ finite differences with
the links frozen, rollback ≡ cache, the live state restored bit for bit, and no step that scans N; with
``link_grads=True`` the twin, and the SDNC with truncated links, ≡ finite differences of the loss itself."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refmann import models
from refmann._checks import unchecked
from refmann.gradcheck import check_model
from refmann.grads import Grads
from refmann.testing import TOLERANCES
from tests.model_cases import problems
from tests.strategies import away_from_zero


def _kw(sizes, seed, **extra):
    return dict(
        input_size=sizes["X"],
        output_size=sizes["Y"],
        memory_size=sizes["N"],
        word_size=sizes["W"],
        num_heads=sizes["H"],
        hidden_size=sizes["C"],
        seed=seed,
        memory_init="random",
        **extra,
    )


def _assert_close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=what)


@settings(max_examples=25, deadline=None)
@given(problem=problems(), seed=st.integers(0, 2**16), delta=st.sampled_from([0.005, 0.05]))
def test_the_sdnc_with_k_and_link_k_equal_to_n_is_its_dense_twin(problem, seed, delta):
    """SDNC(K = N, K_L = N, exact index) ≡ DenseSDNC in logits, loss and every gradient."""
    sizes, x, y, mask = problem
    N = sizes["N"]
    sparse = models.SDNC(**_kw(sizes, seed, k=N, link_k=N, index="linear", delta=delta))
    dense = models.DenseSDNC(**_kw(sizes, seed, delta=delta))
    assert {k: v.shape for k, v in sparse.params.items()} == {k: v.shape for k, v in dense.params.items()}
    _assert_close(sparse.forward(x), dense.forward(x), "logits")
    # the δ rule compares sums taken in different orders: skip draws where an access sits at δ
    access = [np.abs(np.sum(s.write_weights + s.read_weights, axis=1) - delta).min() for s in dense.unroll(x).states]
    assume(min(access) > 1e-9)
    loss_s, grads_s = sparse.loss_and_grads(x, y, mask)
    loss_d, grads_d = dense.loss_and_grads(x, y, mask)
    _assert_close(loss_s, loss_d, "loss")
    for key in grads_d:
        _assert_close(grads_s[key], grads_d[key], key)


@settings(max_examples=10, deadline=None)
@given(problem=problems(), seed=st.integers(0, 2**16), data=st.data())
def test_the_twins_gradient_is_the_exact_gradient_with_the_links_frozen(problem, seed, data):
    """No gradient flows through the links: ``loss_and_grads`` is the exact gradient of the loss in which each
    step's link tables are the constants the forward computed — finite differences of that loss agree."""
    sizes, x, y, mask = problem
    assume(sizes["W"] >= 2)  # W = 1: cosines are ±1 except near a zero row (see the SAM check)
    twin = models.DenseSDNC(**_kw(sizes, seed))
    # keys off the zero vector, where the cosine's curvature defeats the stencil (tests/test_models_recurrent.py)
    twin.params["heads.bias"][...] = data.draw(away_from_zero(twin.params["heads.bias"].shape, 0.5))
    twin.core.frozen_links = [(s.pred, s.succ) for s in twin.unroll(x).states]
    report = check_model(twin, x, y, mask, max_entries=6, seed=seed)
    assume(not report.crossed_kink)
    assert report.ok(TOLERANCES["model"]), str(report)


@settings(max_examples=10, deadline=None)
@given(problem=problems(), seed=st.integers(0, 2**16), data=st.data())
def test_the_twin_with_link_grads_is_the_exact_gradient_of_the_loss(problem, seed, data):
    """link_grads=True: the gradient flows through the dense link recursion too, so ``loss_and_grads`` is the
    derivative of the loss itself — finite differences agree, the links not frozen."""
    sizes, x, y, mask = problem
    assume(sizes["W"] >= 2)
    twin = models.DenseSDNC(**_kw(sizes, seed, link_grads=True))
    twin.params["heads.bias"][...] = data.draw(away_from_zero(twin.params["heads.bias"].shape, 0.5))
    report = check_model(twin, x, y, mask, max_entries=6, seed=seed)
    assume(not report.crossed_kink)
    assert report.ok(TOLERANCES["model"]), str(report)


@settings(max_examples=20, deadline=None)
@given(problem=problems(), seed=st.integers(0, 2**16), delta=st.sampled_from([0.005, 0.05]))
def test_with_link_grads_the_sdnc_with_k_and_link_k_equal_to_n_is_its_dense_twin(problem, seed, delta):
    """SDNC(K = N, K_L = N, exact index, link_grads) ≡ DenseSDNC(link_grads) in every gradient: the sparse
    tables' backward (entries matched by column) is the dense recursion's."""
    sizes, x, y, mask = problem
    N = sizes["N"]
    sparse = models.SDNC(**_kw(sizes, seed, k=N, link_k=N, index="linear", delta=delta, link_grads=True))
    dense = models.DenseSDNC(**_kw(sizes, seed, delta=delta, link_grads=True))
    access = [np.abs(np.sum(s.write_weights + s.read_weights, axis=1) - delta).min() for s in dense.unroll(x).states]
    assume(min(access) > 1e-9)
    loss_s, grads_s = sparse.loss_and_grads(x, y, mask)
    loss_d, grads_d = dense.loss_and_grads(x, y, mask)
    _assert_close(loss_s, loss_d, "loss")
    for key in grads_d:
        _assert_close(grads_s[key], grads_d[key], key)
    assert sparse.core.link_grad.pred.rows_held == 0 and sparse.links.pending == 0  # cleared, restored


@settings(max_examples=15, deadline=None)
@given(problem=problems(), seed=st.integers(0, 2**16), data=st.data())
def test_with_link_grads_and_truncated_links_the_sdnc_gradient_is_the_exact_gradient(problem, seed, data):
    """K_L < N: rows and the precedence truncated every step. Away from a change of what truncation keeps
    (in the trace with link_grads, as are the top-k and δ decisions), finite differences agree."""
    sizes, x, y, mask = problem
    assume(sizes["W"] >= 2)
    N = sizes["N"]
    k, link_k = data.draw(st.integers(1, N)), data.draw(st.integers(1, N - 1))
    model = models.SDNC(**_kw(sizes, seed, k=k, link_k=link_k, index="linear", link_grads=True))
    model.params["heads.bias"][...] = data.draw(away_from_zero(model.params["heads.bias"].shape, 0.5))
    report = check_model(model, x, y, mask, max_entries=6, seed=seed)
    assume(not report.crossed_kink)
    assert model.last_trace[0].link_kept is not None
    assert report.ok(TOLERANCES["model"]), str(report)


def _truncating_problem():
    rng = np.random.default_rng(3)
    kw = dict(input_size=3, output_size=2, memory_size=7, word_size=4, num_heads=2, hidden_size=5, k=2, link_k=2)
    x, y = rng.standard_normal((6, 2, 3)), (rng.random((6, 2, 2)) > 0.5).astype(float)
    return kw, x, y


def test_with_truncated_links_finite_differences_agree_only_with_link_grads():
    """The check can fail: on the same problem the stop-gradient (link_grads=False) disagrees with finite
    differences and link_grads=True agrees, with no kink crossed."""
    kw, x, y = _truncating_problem()
    exact = check_model(models.SDNC(**kw, memory_init="random", index="linear", link_grads=True), x, y)
    stopped = check_model(models.SDNC(**kw, memory_init="random", index="linear"), x, y)
    assert not exact.crossed_kink and not stopped.crossed_kink
    assert exact.ok(TOLERANCES["model"]), str(exact)
    assert not stopped.ok(TOLERANCES["model"]), str(stopped)


def test_link_grads_false_keeps_the_stop_gradient_and_true_changes_only_the_gradient():
    kw, x, y = _truncating_problem()
    off = models.SDNC(**kw, memory_init="random")
    on = models.SDNC(**kw, memory_init="random", link_grads=True)
    assert off.config.link_grads is False and off.core.link_grad is None
    np.testing.assert_array_equal(off.forward(x), on.forward(x))
    loss_off, grads_off = off.loss_and_grads(x, y)
    loss_on, grads_on = on.loss_and_grads(x, y)
    assert loss_off == loss_on
    assert any(not np.array_equal(grads_off[key], grads_on[key]) for key in grads_off)
    assert off.last_trace[0].link_kept is None and on.last_trace[0].link_kept is not None


def test_link_grads_must_be_a_bool_and_cannot_differentiate_frozen_links():
    base = dict(input_size=3, output_size=2, memory_size=6, word_size=4, num_heads=2, hidden_size=5)
    for cls in (models.SDNC, models.DenseSDNC):
        with pytest.raises(TypeError, match="link_grads"):
            cls(**base, link_grads="yes")
    twin = models.DenseSDNC(**base, link_grads=True)
    x = np.zeros((2, 1, 3))
    twin.core.frozen_links = [(s.pred, s.succ) for s in models.DenseSDNC(**base).unroll(x).states]
    with pytest.raises(ValueError, match="frozen_links: .*link_grads=False"):
        twin.loss_and_grads(x, np.zeros((2, 1, 2)))


def test_without_freezing_the_links_finite_differences_disagree():
    """The stop-gradient is real: the links depend on the parameters, the gradient leaves that out."""
    rng = np.random.default_rng(0)
    twin = models.DenseSDNC(
        input_size=3, output_size=2, memory_size=6, word_size=4, num_heads=2, hidden_size=5, memory_init="random"
    )
    x, y = rng.standard_normal((5, 2, 3)), (rng.random((5, 2, 2)) > 0.5).astype(float)
    assert not check_model(twin, x, y).ok(TOLERANCES["model"])


@settings(max_examples=20, deadline=None)
@given(
    problem=problems(),
    seed=st.integers(0, 2**16),
    k=st.integers(1, 3),
    link_k=st.integers(1, 4),
    index=st.sampled_from(["linear", "lsh", "kdforest"]),
)
def test_rollback_equals_the_full_cache_and_restores_memory_and_links(problem, seed, k, link_k, index):
    _rollback_equals_the_full_cache(problem, seed, k, link_k, index, link_grads=False)


@settings(max_examples=15, deadline=None)
@given(
    problem=problems(),
    seed=st.integers(0, 2**16),
    k=st.integers(1, 3),
    link_k=st.integers(1, 4),
    index=st.sampled_from(["linear", "lsh", "kdforest"]),
)
def test_with_link_grads_rollback_equals_the_full_cache_and_restores_memory_and_links(problem, seed, k, link_k, index):
    _rollback_equals_the_full_cache(problem, seed, k, link_k, index, link_grads=True)


def _rollback_equals_the_full_cache(problem, seed, k, link_k, index, link_grads):
    sizes, x, y, mask = problem
    k = min(k, sizes["N"])
    kw = _kw(sizes, seed, k=k, link_k=link_k, index=index, link_grads=link_grads)
    roll = models.SDNC(**kw)
    full = models.SDNC(**kw, bptt="cache")
    loss_r, grads_r = roll.loss_and_grads(x, y, mask)
    loss_f, grads_f = full.loss_and_grads(x, y, mask)
    assert loss_r == loss_f
    for key in grads_r:
        np.testing.assert_array_equal(grads_r[key], grads_f[key], err_msg=key)
    # the live state is the initial one again: memory, and empty link tables
    np.testing.assert_array_equal(roll.memory, np.broadcast_to(roll.memory0, roll.memory.shape))
    assert roll.links.pending == 0
    assert np.all(roll.links.pred_idx == -1) and np.all(roll.links.succ_idx == -1)
    assert np.all(roll.links.prec_idx == -1)


@settings(max_examples=15, deadline=None)
@given(problem=problems(), seed=st.integers(0, 2**16), k=st.integers(1, 3), link_k=st.integers(1, 4))
def test_the_fused_kernels_give_the_readable_ops_numbers(problem, seed, k, link_k):
    sizes, x, y, mask = problem
    k = min(k, sizes["N"])
    fused = models.SDNC(**_kw(sizes, seed, k=k, link_k=link_k))
    plain = models.SDNC(**_kw(sizes, seed, k=k, link_k=link_k, fused=False))
    loss_a, grads_a = fused.loss_and_grads(x, y, mask)
    loss_b, grads_b = plain.loss_and_grads(x, y, mask)
    _assert_close(loss_a, loss_b, "loss")
    for key in grads_a:
        _assert_close(grads_a[key], grads_b[key], key)


@settings(max_examples=10, deadline=None)
@given(problem=problems(), seed=st.integers(0, 2**16), link_grads=st.booleans())
def test_restore_final_leaves_the_memory_and_links_of_the_last_step(problem, seed, link_grads):
    sizes, x, y, mask = problem
    kw = _kw(sizes, seed, k=min(2, sizes["N"]), link_k=3, link_grads=link_grads)
    model = models.SDNC(**kw, restore="final")
    model.loss_and_grads(x, y, mask)
    stepped = models.SDNC(**kw)
    state = stepped.initial_state(sizes["B"])
    for t in range(sizes["T"]):
        _, state = stepped.step(x[t], state)
    np.testing.assert_array_equal(model.memory, stepped.memory)
    for name in ("pred_idx", "pred_val", "succ_idx", "succ_val", "prec_idx", "prec_val"):
        np.testing.assert_array_equal(getattr(model.links, name), getattr(stepped.links, name), err_msg=name)


def test_forward_changes_neither_memory_nor_links_and_is_repeatable():
    model = models.SDNC(
        input_size=3, output_size=2, memory_size=20, word_size=4, num_heads=2, hidden_size=5, memory_init="random"
    )
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    a = model.forward(x)
    np.testing.assert_array_equal(model.memory, np.broadcast_to(model.memory0, model.memory.shape))
    assert model.links.pending == 0
    np.testing.assert_array_equal(a, model.forward(x))


def test_the_links_carry_the_write_order_into_the_reads():
    """After writes, the read weights have forward/backward entries on slots the links connect."""
    model = models.SDNC(
        input_size=3, output_size=2, memory_size=16, word_size=4, num_heads=1, hidden_size=5, k=2, memory_init="random"
    )
    unroll = model.unroll(np.random.default_rng(1).standard_normal((8, 1, 3)))
    temporal = np.concatenate([s.read_weights[..., 2:] for s in unroll.states[2:]])
    assert np.any(temporal > 0), "the forward/backward weights are never used"


# ---- nothing in a step scans N ----------------------------------------------------------------------


def _model_at(N, **extra):
    return models.SDNC(
        input_size=4,
        output_size=3,
        memory_size=N,
        word_size=8,
        num_heads=2,
        hidden_size=8,
        k=3,
        link_k=4,
        index="lsh",
        memory_init="random",
        seed=0,
        **extra,
    )


def _peaks(N, **extra):
    T, B = 6, 2
    model = _model_at(N, **extra)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, 4))
    model.forward(x[:1])
    state = model.initial_state(B)
    peaks = []
    for t in range(T):
        tracemalloc.start()
        _, state = model.step(x[t], state)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return peaks


def test_an_sdnc_step_allocates_the_same_at_any_n():
    small, large = _peaks(1_000), _peaks(200_000)
    # a single N-sized array would add ≥ 200_000 bytes
    assert max(large[1:]) < max(small[1:]) + 20_000


def _backward_peaks(N):
    """Peak allocation of each backward step of a link_grads SDNC (the forward run first, as loss_and_grads)."""
    T, B = 6, 2
    model = _model_at(N, link_grads=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, 4))
    model.loss_and_grads(x[:2], np.zeros((2, B, 3)))  # compile and size the gradient tables once
    core, sink = model.core, Grads(model.params)
    peaks = []
    with unchecked():
        _, last, _, _, caches = model._run(x, keep_caches=True)
        dstate = core.zero_dstate(last)
        dy = rng.standard_normal((T, B, 3))
        try:
            for t in reversed(range(T)):
                tracemalloc.start()
                dstate = core.step_backward(model.params, dy[t], dstate, caches[t], sink)
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
        finally:
            core.end_backward(caches)
    return peaks


def test_a_step_with_link_grads_allocates_the_same_at_any_n():
    """Forward and backward: the link gradients are hashed by row, never N-sized."""
    small, large = _peaks(1_000, link_grads=True), _peaks(200_000, link_grads=True)
    assert max(large[1:]) < max(small[1:]) + 20_000
    small, large = _backward_peaks(1_000), _backward_peaks(200_000)
    assert max(large) < max(small) + 20_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"link_k": 0}, "link_k"), ({"k": 0}, "k"), ({"index": "kd"}, "index: expected one of")],
)
def test_bad_options_are_refused_naming_them(kwargs, message):
    base = dict(input_size=3, output_size=2, memory_size=6, word_size=4, num_heads=2, hidden_size=5)
    with pytest.raises(ValueError, match=message):
        models.SDNC(**{**base, **kwargs})
