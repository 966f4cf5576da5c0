"""The DNC: allocation in action, links recomputed ≡ cached, finite everywhere users see NaNs, size guards.

The gradient check, the step API, float32, masks and the bad-input cases run for the DNC with every other
model (tests/model_cases.py CONFIGS); the PyTorch autograd cross-check is tests/test_torch_dnc.py.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann import _checks, models
from tests.model_cases import build, problems


def _dnc(**kw):
    base = dict(input_size=3, output_size=2, memory_size=6, word_size=4, num_heads=2, hidden_size=5, seed=0)
    return models.DNC(**{**base, **kw})


def _set_gate_bias(model, group_bias):
    """Set the interface bias of named fields, e.g. {("write", "allocation_gate"): 50.0}."""
    layout = model.core.interface.layout
    bias = model.params["heads.bias"]
    bias[:] = 0.0
    start = 0
    for g in layout.groups:
        for _ in range(g.heads):
            col = start
            for f in g.fields:
                if (g.name, f.name) in group_bias:
                    bias[col : col + f.size] = group_bias[(g.name, f.name)]
                col += f.size
            start += g.width
    model.params["heads.weight"][:] = 0.0


def test_saturated_allocation_writes_every_slot_once_before_reusing_any():
    """g^a = g^w = 1 and free gates 0: a written slot's usage becomes 1, so each step writes a slot not yet
    used — N steps write N distinct slots, the first one slot 0 (all usages tied: the lower index)."""
    N = 6
    model = _dnc(memory_size=N)
    _set_gate_bias(
        model,
        {
            ("write", "allocation_gate"): 60.0,
            ("write", "write_gate"): 60.0,
            ("read", "free_gate"): -60.0,
        },
    )
    x = np.zeros((N, 1, 3))
    weights = model.access_weights(x)["write"]  # (T, B, Wh, N)
    written = weights[:, 0, 0].argmax(-1)
    assert written[0] == 0
    assert sorted(written.tolist()) == list(range(N))
    assert np.all(weights[:, 0, 0].max(-1) > 0.99)


def test_free_gates_release_slots_for_reuse():
    """With free gates 1 and a content read of the written slot, usage falls and allocation reuses it."""
    model = _dnc(memory_size=4, num_heads=1)
    _set_gate_bias(
        model,
        {("write", "allocation_gate"): 60.0, ("write", "write_gate"): 60.0, ("read", "free_gate"): 60.0},
    )
    unroll = model.unroll(np.zeros((5, 1, 3)))
    # the read (mostly content, spread over the slots) frees usage: it never saturates at 1 for every slot
    usages = np.array([s.usage[0] for s in unroll.states])
    assert np.all(usages < 1.0)
    assert np.all(np.isfinite(usages))


@settings(max_examples=20, deadline=None)
@given(problem=problems(), every=st.integers(1, 4), Wh=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_links_recomputed_from_checkpoints_give_the_cached_gradients_bit_for_bit(problem, every, Wh, seed):
    sizes, x, y, mask = problem
    cached = build("dnc", sizes, seed=seed, num_write_heads=Wh, memory_init="random")
    recomputed = build(
        "dnc", sizes, seed=seed, num_write_heads=Wh, memory_init="random", links="recompute", link_checkpoint=every
    )
    loss_a, grads_a = cached.loss_and_grads(x, y, mask)
    loss_b, grads_b = recomputed.loss_and_grads(x, y, mask)
    assert loss_a == loss_b
    for key in grads_a:
        np.testing.assert_array_equal(grads_a[key], grads_b[key], err_msg=key)


def test_recompute_keeps_fewer_link_matrices_than_cache():
    """What a 32-step pass holds: the cache keeps one (B, Wh, N, N) link per step, recompute one per checkpoint."""
    from refmann.models.recurrent import held_bytes

    x = np.random.default_rng(0).standard_normal((32, 1, 3))
    sizes = {}
    for mode in ("cache", "recompute"):
        model = _dnc(memory_size=64, links=mode, link_checkpoint=8)
        with _checks.unchecked():
            _, _, _, _, caches = model._run(model._check_inputs(x), keep_caches=True)
        sizes[mode] = held_bytes(caches, model.core._tape.checkpoints if model.core._tape else None)
    link = 64 * 64 * 8
    assert sizes["cache"] - sizes["recompute"] > 20 * link


@pytest.mark.parametrize("memory_init", ["zeros", "constant"])
def test_stays_finite_with_zero_memory_saturated_gates_and_a_thousand_steps(memory_init):
    """Users of other DNCs report NaNs: zero memory (0/0 in the cosine), saturated gates (f·w = 1 in ψ,
    usage 1 everywhere in the allocation), long sequences. ε inside the norms, prefix/suffix products in ψ
    and the O(N) allocation gradient keep every number finite."""
    rng = np.random.default_rng(0)
    model = _dnc(memory_size=8, memory_init=memory_init, num_heads=2)
    _set_gate_bias(
        model,
        {
            ("write", "allocation_gate"): 80.0,
            ("write", "write_gate"): 80.0,
            ("read", "free_gate"): 80.0,
            ("write", "erase"): 80.0,
            ("read", "strength"): 80.0,
            ("write", "strength"): 80.0,
        },
    )
    model.params["heads.weight"][:] = rng.standard_normal(model.params["heads.weight"].shape) * 30.0
    T = 1000
    x = rng.standard_normal((T, 2, 3)) * 10.0
    y = (rng.random((T, 2, 2)) > 0.5).astype(float)
    loss, grads = model.loss_and_grads(x, y)
    assert np.isfinite(loss)
    for key, g in grads.items():
        assert np.all(np.isfinite(g)), key
    assert np.all(np.isfinite(model.forward(x)))


def test_zero_memory_reads_give_zero_similarity_not_nan():
    model = _dnc(memory_init="zeros")
    unroll = model.unroll(np.zeros((3, 1, 3)))
    for s in unroll.states:
        assert np.all(np.isfinite(s.read_weights)) and np.all(np.isfinite(s.memory))


def test_the_links_have_a_zero_diagonal_and_rows_within_the_simplex():
    model = _dnc(memory_size=5, memory_init="random")
    unroll = model.unroll(np.random.default_rng(1).standard_normal((8, 2, 3)))
    for s in unroll.states:
        diag = np.diagonal(s.link, axis1=-2, axis2=-1)
        assert np.all(diag == 0.0)
        assert np.all(s.link >= 0.0) and np.all(s.link.sum(-1) <= 1.0 + 1e-12)
        assert np.all(s.precedence >= 0.0) and np.all(s.precedence.sum(-1) <= 1.0 + 1e-12)


def test_the_nature_variant_has_the_same_parameters_and_other_numbers():
    a, b = _dnc(), _dnc(variant="nature")
    assert {k: v.shape for k, v in a.params.items()} == {k: v.shape for k, v in b.params.items()}
    x = np.random.default_rng(0).standard_normal((3, 1, 3))
    assert not np.allclose(a.forward(x), b.forward(x))


def test_clipped_logits_stay_within_the_clip_and_pass_no_gradient():
    model = _dnc(clip_value=0.05)
    model.params["output.weight"] *= 100.0
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    logits = model.forward(x)
    assert np.all(np.abs(logits) <= 0.05)
    y = np.ones((4, 2, 2))
    _, grads = model.loss_and_grads(x, y)
    unclipped = np.abs(model.unroll(x).logits) < 0.05
    assert np.all(np.isfinite(grads["output.bias"]))
    if not unclipped.any():
        np.testing.assert_array_equal(grads["output.bias"], 0.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"variant": "graves"}, ValueError, "variant: expected one of"),
        ({"links": "revert"}, ValueError, "links: expected one of"),
        ({"link_checkpoint": 0}, ValueError, "link_checkpoint"),
        ({"num_write_heads": 0}, ValueError, "num_write_heads"),
        ({"clip_value": -1.0}, ValueError, "clip_value"),
        ({"clip_value": float("nan")}, ValueError, "clip_value"),
    ],
)
def test_bad_options_are_refused_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        _dnc(**kwargs)


def test_the_link_matrices_are_in_the_size_guard():
    """N = 10⁵ slots: the memory is 25 MB but one link matrix is 80 GB; refused before allocating."""
    model = _dnc(memory_size=100_000)
    with pytest.raises(_checks.FootprintError, match="link matrices"):
        model.forward(np.zeros((2, 1, 3)))


@given(problem=problems(), seed=st.integers(0, 2**16))
@settings(max_examples=15, deadline=None)
def test_the_trace_is_the_allocation_order(problem, seed):
    sizes, x, _, _ = problem
    model = build("dnc", sizes, seed=seed)
    unroll = model.unroll(x)
    for state, trace in zip(unroll.states, unroll.traces):
        np.testing.assert_array_equal(trace.order, np.argsort(state.usage, axis=-1, kind="stable"))


def test_the_size_guard_counts_a_link_matrix_two_steps_share_once(monkeypatch):
    """Step t's cache and step t+1's both hold L_t: the measured per-step size is one link matrix, not two, so
    a pass that needs ~85 MB (40 links of 2 MiB) runs under a 128 MB budget (counting L_t twice said 170 MB)."""
    monkeypatch.setenv("REFMANN_MEMORY_BUDGET", "128M")
    model = _dnc(memory_size=512, num_heads=1, hidden_size=4, word_size=4)
    x = np.zeros((40, 1, 3))
    loss, _ = model.loss_and_grads(x, np.zeros((40, 1, 2)))
    assert np.isfinite(loss)
