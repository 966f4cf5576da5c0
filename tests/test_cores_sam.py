"""SAM's core: sparse equals dense, rollback equals cache, the memory is restored, and nothing in a step
scans N."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refmann import models, ops
from refmann.gradcheck import TOLERANCES, check_model
from refmann.memory import LSHIndex


@st.composite
def sam_case(draw, max_n=7, min_word=1):
    T, B = draw(st.integers(1, 5)), draw(st.integers(1, 2))
    N = draw(st.integers(2, max_n))
    H = draw(st.integers(1, min(2, N)))
    sizes = dict(
        input_size=draw(st.integers(1, 3)),
        output_size=draw(st.integers(1, 3)),
        memory_size=N,
        word_size=draw(st.integers(min_word, 3)),
        num_heads=H,
        hidden_size=draw(st.integers(1, 4)),
        seed=draw(st.integers(0, 2**16)),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((T, B, sizes["input_size"]))
    y = (rng.random((T, B, sizes["output_size"])) > 0.5).astype(float)
    mask = (rng.random((T, B, 1)) > 0.2).astype(float)
    return sizes, x, y, mask


def _twins(sizes, **sam_kw):
    dam = models.DAM(usage="timestamp", **sizes)
    sam = models.SAM(k=sizes["memory_size"], index="linear", **sizes, **sam_kw)
    sam.params = {k: v.copy() for k, v in dam.params.items()}
    return sam, dam


@given(case=sam_case())
def test_sam_with_k_equal_n_and_an_exact_index_equals_dam_with_timestamp_usage(case):
    sizes, x, y, mask = case
    sam, dam = _twins(sizes)
    np.testing.assert_allclose(sam.forward(x), dam.forward(x), rtol=1e-10, atol=1e-12)
    loss_s, grads_s = sam.loss_and_grads(x, y, mask)
    loss_d, grads_d = dam.loss_and_grads(x, y, mask)
    assert loss_s == pytest.approx(loss_d, rel=1e-10, abs=1e-12)
    for key in grads_d:
        np.testing.assert_allclose(grads_s[key], grads_d[key], rtol=1e-10, atol=1e-12, err_msg=key)
    # the discrete decisions agree too: the least-used slot of every head at every step
    for trace_s, trace_d in zip(sam.last_trace, dam.last_trace):
        np.testing.assert_array_equal(trace_s.lra, trace_d.lra)


@given(case=sam_case())
def test_sam_memory_gradient_equals_dams_gradient_of_its_initial_memory(case):
    sizes, x, y, mask = case
    dam = models.DAM(usage="timestamp", memory_init="learned", **sizes)
    dam.params["memory.init"][:] = 1e-6  # the constant initial memory of SAM
    sam = models.SAM(k=sizes["memory_size"], index="linear", **sizes)
    sam.params = {k: v.copy() for k, v in dam.params.items() if k != "memory.init"}
    _, grads_d = dam.loss_and_grads(x, y, mask)
    sam.loss_and_grads(x, y, mask)
    dense = ops.densify_rows(sam.last_memory_grad)  # each touched row listed once (plus zero padding)
    np.testing.assert_allclose(dense.sum(axis=0), grads_d["memory.init"], rtol=1e-9, atol=1e-12)


@given(case=sam_case(max_n=9), k=st.integers(1, 9), index=st.sampled_from(["linear", "lsh", "kdforest"]))
def test_rollback_gradients_equal_full_cache_gradients_and_memory_is_restored(case, k, index):
    sizes, x, y, mask = case
    k = min(k, sizes["memory_size"])
    kw = dict(k=k, index=index, memory_init="random", **sizes)
    rollback, cache = models.SAM(bptt="rollback", **kw), models.SAM(bptt="cache", **kw)
    rollback.forward(x[:1])  # allocate, then snapshot the initial state
    m0 = rollback.memory.copy()
    ring = rollback.core.memory.ring
    ring0 = (ring.nxt.copy(), ring.prv.copy(), ring.head.copy(), ring.stamps.copy())
    loss_r, grads_r = rollback.loss_and_grads(x, y, mask)
    loss_c, grads_c = cache.loss_and_grads(x, y, mask)
    assert loss_r == loss_c
    for key in grads_c:
        np.testing.assert_allclose(grads_r[key], grads_c[key], rtol=1e-10, atol=1e-14, err_msg=key)
    np.testing.assert_array_equal(rollback.memory, m0)  # bit for bit
    for before, after in zip(ring0, (ring.nxt, ring.prv, ring.head, ring.stamps)):
        np.testing.assert_array_equal(before, after)
    assert rollback.core.memory.grad.rows_held == 0  # the row-gradient table is emptied
    if index == "lsh":  # the index is back in step with the memory
        ix = rollback.core.memory.index
        fresh = LSHIndex(rollback.memory, seed=sizes["seed"])
        fresh.planes = ix.planes
        fresh.rebuild()
        np.testing.assert_array_equal(ix.codes, fresh.codes)


@given(case=sam_case(max_n=9), k=st.integers(1, 4))
def test_memory_gradient_is_non_zero_only_on_rows_read(case, k):
    sizes, x, y, mask = case
    k = min(k, sizes["memory_size"])
    sam = models.SAM(k=k, index="linear", memory_init="random", **sizes)
    sam.loss_and_grads(x, y, mask)
    g = sam.last_memory_grad
    for b in range(x.shape[1]):
        read = set()
        for trace in sam.last_trace:
            read |= set(trace.read_idx[b].ravel().tolist())
        nonzero = set(g.indices[b][np.any(g.rows[b] != 0, axis=-1)].tolist())
        assert nonzero <= read
        assert len(set(g.indices[b].tolist())) <= x.shape[0] * sizes["num_heads"] * k


def _min_key_norm(sam, x):
    """The smallest ‖q‖ over heads, batch and steps of one forward pass (memory rolled back after)."""
    caches = sam.unroll(x).caches
    return min(float(np.linalg.norm(c.read.keys, axis=-1).min()) for c in caches)


@settings(max_examples=10)
# W >= 2: in one dimension cosine similarity is a sign function, steep (~1/eps) near zero rows
@given(case=sam_case(max_n=8, min_word=2), k=st.integers(1, 4), index=st.sampled_from(["linear", "lsh", "kdforest"]))
def test_sam_gradients_match_finite_differences(case, k, index):
    sizes, x, y, mask = case
    sam = models.SAM(k=min(k, sizes["memory_size"]), index=index, memory_init="random", **sizes)
    # keys near zero: the cosine's curvature grows like 1/‖q‖², so a finite difference of step 1e-5 is
    # meaningless there (a drawn key of norm 4e-5 gave 6e-3 at h = 1e-5 and agreement at h = 1e-7)
    assume(_min_key_norm(sam, x) > 1e-2)
    report = check_model(sam, x, y, mask, max_entries=6)
    assume(not report.crossed_kink)  # a top-k, δ or LRA decision flipped: no derivative there
    assert report.ok(TOLERANCES["model"]), str(report)


# ---- nothing in a step scans N ----------------------------------------------------------------------


def _step_profile(N, index):
    """Rows changed, rows scored by the index, and peak bytes allocated, for steps after the first."""
    T, B, X, Y, W, H, K = 6, 2, 4, 3, 8, 2, 3
    sam = models.SAM(
        input_size=X,
        output_size=Y,
        memory_size=N,
        word_size=W,
        num_heads=H,
        hidden_size=8,
        k=K,
        index=index,
        memory_init="random",
        seed=0,
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, X))
    sam.forward(x[:1])  # allocation and compilation happen here
    state = sam.initial_state(B)  # the public step API
    index_ = sam.core.memory.index
    changed, scored, peaks = [], [], []
    for t in range(T):
        before = sam.memory.copy() if N <= 10_000 else None
        tracemalloc.start()
        _, state = sam.step(x[t], state)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        if before is not None:
            changed.append(max(int(np.any(sam.memory[b] != before[b], axis=-1).sum()) for b in range(B)))
        if index == "lsh":
            scored.append(int(index_.last_counts.max()))
    return changed, scored, peaks, (H, K, index_)


@pytest.mark.parametrize("index", ["linear", "lsh"])
def test_a_step_writes_at_most_h_times_k_plus_one_rows(index):
    changed, _, _, (H, K, _) = _step_profile(500, index)
    assert max(changed) <= H * (K + 1)


def test_an_lsh_step_scores_a_bounded_number_of_rows_and_allocates_the_same_at_any_n():
    _, scored_small, peaks_small, (_, K, index) = _step_profile(1_000, "lsh")
    _, scored_large, peaks_large, _ = _step_profile(200_000, "lsh")
    bound = index.max_candidates(K)
    assert max(scored_small) <= bound and max(scored_large) <= bound
    # a step's allocations do not grow with N (a single N-sized array would add ≥ 200_000 bytes)
    assert max(peaks_large[1:]) < max(peaks_small[1:]) + 20_000


def test_a_failing_forward_leaves_the_memory_at_its_initial_state():
    sam = models.SAM(
        input_size=2, output_size=2, memory_size=6, word_size=3, num_heads=1, hidden_size=3, k=2, memory_init="random"
    )
    x = np.random.default_rng(0).standard_normal((4, 1, 2))
    sam.forward(x)
    m0 = sam.memory.copy()
    original = sam.core.step_forward
    calls = {"n": 0}

    def fail_on_third(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return original(*args)

    sam.core.step_forward = fail_on_third
    with pytest.raises(RuntimeError, match="boom"):
        sam.forward(x)
    np.testing.assert_array_equal(sam.memory, m0)
    del sam.core.step_forward
    _ = ops  # the op layer is what SAM composes; imported for readers following along


@given(case=sam_case(max_n=9), k=st.integers(1, 4), index=st.sampled_from(["linear", "lsh", "kdforest"]))
def test_restore_final_leaves_the_memory_of_the_last_step(case, k, index):
    sizes, x, y, mask = case
    kw = dict(k=min(k, sizes["memory_size"]), index=index, memory_init="random", **sizes)
    final = models.SAM(restore="final", **kw)
    cache = models.SAM(bptt="cache", **kw)
    final.loss_and_grads(x, y, mask)
    cache.core.end_forward = lambda caches: None  # keep the cached run's memory at M_T ...
    logits = cache.forward(x)  # ... after a forward of the same sequence
    del cache.core.end_forward
    np.testing.assert_array_equal(final.memory, cache.memory)
    assert logits.shape == (x.shape[0], x.shape[1], sizes["output_size"])
    # and the ring's least-used slots follow that memory's history
    np.testing.assert_array_equal(final.core.memory.ring.oldest(1), cache.core.memory.ring.oldest(1))
