"""refmann.layers.pkm_diagnostics: each statistic against its brute-force definition, extremes, accumulation."""

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from refmann.layers.pkm_diagnostics import (
    COVERAGE_FRACTIONS,
    LayerDiagnostics,
    score_margins,
    selected_scores,
    slot_statistics,
)
from refmann.layers.product_keys import ProductKeyMemory

# --- brute force: the definitions, written as loops over slots and pairs -----------------------------


def naive_mass(slots, weights, N):
    z = [0.0] * N
    for i, w in zip(np.ravel(slots).tolist(), np.ravel(weights).tolist()):
        z[i] += w
    return z


def naive_statistics(slots, weights, N):
    z = naive_mass(slots, weights, N)
    total = math.fsum(z)
    p = [zi / total for zi in z]
    usage = sum(1 for zi in z if zi > 0) / N
    kl = math.fsum(pi * math.log(pi * N) for pi in p if pi > 0)  # Σ p log(p / (1/N)), 0·log 0 = 0
    gini = math.fsum(abs(a - b) for a in p for b in p) / (2 * N)  # mean absolute difference / (2 · mean)
    desc = sorted(p, reverse=True)
    cover = []
    for q in COVERAGE_FRACTIONS:
        m = next((m for m in range(1, N + 1) if math.fsum(desc[:m]) >= q - 1e-9), N)
        cover.append(m / N)
    return usage, kl, gini, *cover


def _close(got, want):
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), rtol=1e-9, atol=1e-12)


@st.composite
def selections(draw, max_slots=12):
    """(slots, weights, N): int (B, H, k) slots in [0, N), weights ≥ 0 (some exactly 0), at least one > 0."""
    N = draw(st.integers(1, max_slots))
    B, H, k = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    size = B * H * k
    slots = draw(st.lists(st.integers(0, N - 1), min_size=size, max_size=size))
    weights = draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 10.0)), min_size=size, max_size=size))
    if max(weights) == 0:
        weights[0] = 1.0
    return np.array(slots).reshape(B, H, k), np.array(weights).reshape(B, H, k), N


def _layer(n=4, H=2, k=2, dk=4, X=5, Y=3, seed=0, query_norm=None):
    return ProductKeyMemory(
        input_dim=X, output_dim=Y, num_keys=n, num_heads=H, k=k, key_dim=dk, query_norm=query_norm, seed=seed
    )


# --- slot_statistics ------------------------------------------------------------------------------


@given(selections())
def test_slot_statistics_equal_their_brute_force_definitions(sel):
    slots, weights, N = sel
    _close(tuple(slot_statistics(slots, weights, N)), naive_statistics(slots, weights, N))


@given(selections(), st.integers(1, 5))
def test_statistics_depend_only_on_the_access_distribution(sel, scale):
    """Scaling every weight, or shuffling the selections, leaves p and so every statistic unchanged."""
    slots, weights, N = sel
    order = np.random.default_rng(scale).permutation(slots.size)
    shuffled = slots.ravel()[order].reshape(slots.shape), weights.ravel()[order].reshape(slots.shape)
    _close(tuple(slot_statistics(slots, scale * weights, N)), tuple(slot_statistics(slots, weights, N)))
    _close(tuple(slot_statistics(*shuffled, N)), tuple(slot_statistics(slots, weights, N)))


@given(N=st.integers(1, 300), repeats=st.integers(1, 3))
def test_uniform_access_gives_full_usage_zero_kl_zero_gini(N, repeats):
    slots = np.tile(np.arange(N), repeats).reshape(-1, 1, 1)
    stats = slot_statistics(slots, np.ones(slots.shape), N)
    assert stats.usage == 1.0
    assert stats.kl_to_uniform == pytest.approx(0.0, abs=1e-12)
    assert stats.gini == pytest.approx(0.0, abs=1e-12)
    for q, got in zip(COVERAGE_FRACTIONS, stats[3:]):
        assert got == math.ceil(round(q * N, 9)) / N  # the smallest m with m / N ≥ q


@given(N=st.integers(1, 300), slot=st.integers(0, 299), reads=st.integers(1, 6), seed=st.integers(0, 99))
def test_one_slot_access_gives_usage_one_over_n_kl_log_n_gini_one_minus_one_over_n(N, slot, reads, seed):
    slot = slot % N
    weights = np.random.default_rng(seed).uniform(0.1, 1.0, (reads, 2, 1))
    stats = slot_statistics(np.full(weights.shape, slot), weights, N)
    assert stats.usage == 1 / N
    assert stats.kl_to_uniform == pytest.approx(math.log(N), abs=1e-12)
    assert stats.gini == pytest.approx(1 - 1 / N, abs=1e-12)
    assert stats.coverage_50 == stats.coverage_90 == stats.coverage_99 == 1 / N


def test_gini_is_xlm_score_plus_one_over_n():
    """XLM's 1 − 2·mean(cumsum(sort(p))) is the discrete Gini minus 1/N."""
    rng = np.random.default_rng(0)
    N = 50
    slots, weights = rng.integers(0, N, (8, 2, 3)), rng.uniform(0, 1, (8, 2, 3))
    z = np.asarray(naive_mass(slots, weights, N))
    xlm = 1 - 2 * np.mean(np.cumsum(np.sort(z / z.sum())))
    assert slot_statistics(slots, weights, N).gini == pytest.approx(xlm + 1 / N, abs=1e-12)


def test_a_selection_with_zero_weight_is_not_counted_as_used():
    stats = slot_statistics(np.array([[[0, 1]]]), np.array([[[1.0, 0.0]]]), 4)
    assert stats.usage == 0.25 and stats.kl_to_uniform == pytest.approx(math.log(4))


def test_a_million_slots_allocate_one_float_vector():
    """N = 2²⁰ with 4096 selections: the peak is one (N,) float64 vector plus selection-sized temporaries."""
    N = 2**20
    rng = np.random.default_rng(0)
    slots, weights = rng.integers(0, N, (256, 4, 4)), rng.uniform(0.1, 1, (256, 4, 4))
    tracemalloc.start()
    try:
        stats = slot_statistics(slots, weights, N)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * 8 * N, peak
    assert stats.usage == np.unique(slots).size / N


# --- score_margins --------------------------------------------------------------------------------


@given(B=st.integers(1, 4), H=st.integers(1, 3), k=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_score_margins_equal_the_mean_best_and_kth_score(B, H, k, seed):
    scores = np.random.default_rng(seed).standard_normal((B, H, k))
    tops = [sorted(scores[b, h].tolist(), reverse=True) for b in range(B) for h in range(H)]
    top1, kth = math.fsum(t[0] for t in tops) / len(tops), math.fsum(t[k - 1] for t in tops) / len(tops)
    got = score_margins(scores)
    _close(tuple(got), (top1, kth, top1 - kth))
    assert got.gap >= 0 and (k > 1 or got.gap == 0)


# --- LayerDiagnostics on a real ProductKeyMemory ----------------------------------------------------


def test_selected_scores_are_the_forwards_scores_and_the_weights_their_softmax():
    layer = _layer(n=5, H=3, k=3, dk=6, seed=3)
    x = np.random.default_rng(1).standard_normal((7, layer.input_dim))
    _, cache = layer.forward(x)
    scores, _ = ops.product_key_topk_forward(cache.search.queries, cache.search.keys, k=layer.k)
    _close(selected_scores(cache), scores)
    _close(ops.softmax(selected_scores(cache), axis=-1), cache.softmax.out)


@given(
    n=st.integers(2, 5), H=st.integers(1, 3), k=st.integers(1, 5), B1=st.integers(1, 5), B2=st.integers(1, 5),
    seed=st.integers(0, 2**16), query_norm=st.sampled_from([None, "layernorm"]),
)  # fmt: skip
def test_accumulating_two_batches_equals_one_call_on_their_concatenation(n, H, k, B1, B2, seed, query_norm):
    k = min(k, n)
    layer = _layer(n=n, H=H, k=k, seed=seed % 5, query_norm=query_norm)
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal((B1, layer.input_dim)), rng.standard_normal((B2, layer.input_dim))
    (_, c1), (_, c2), (_, c12) = layer.forward(x1), layer.forward(x2), layer.forward(np.concatenate([x1, x2]))
    diag = LayerDiagnostics(n * n)
    diag.update(c1)
    diag.update(c2)
    got = diag.result()
    slots = np.concatenate([c1.search.slots, c2.search.slots])  # (B1 + B2, H, k)
    weights = np.concatenate([c1.softmax.out, c2.softmax.out])  # (B1 + B2, H, k)
    scores = np.concatenate([selected_scores(c1), selected_scores(c2)])  # (B1 + B2, H, k)
    want = dict(slot_statistics(slots, weights, n * n)._asdict())
    want.update(zip(("top1_score", "kth_score", "score_gap"), score_margins(scores)))
    want["heads_seen"] = (B1 + B2) * H
    assert got.keys() == want.keys()
    _close([got[key] for key in want], list(want.values()))
    # and the concatenated batch, read in one forward, gives the same
    one = LayerDiagnostics(n * n)
    one.update(c12)
    _close([one.result()[key] for key in want], list(want.values()))
    _close(list(naive_statistics(slots, weights, n * n)), [got[key] for key in list(want)[:6]])


def test_reset_forgets_every_update():
    layer = _layer()
    rng = np.random.default_rng(0)
    (_, c1), (_, c2) = layer.forward(rng.standard_normal((4, 5))), layer.forward(rng.standard_normal((3, 5)))
    diag = LayerDiagnostics(16)
    diag.update(c1)
    diag.reset()
    with pytest.raises(ValueError, match="no selections"):
        diag.result()
    diag.update(c2)
    fresh = LayerDiagnostics(16)
    fresh.update(c2)
    assert diag.result() == fresh.result()


# --- arguments ----------------------------------------------------------------------------------


def test_bad_arguments_are_refused_naming_the_argument():
    slots, weights = np.zeros((2, 1, 2), dtype=np.int64), np.ones((2, 1, 2))
    with pytest.raises(TypeError, match="num_slots"):
        slot_statistics(slots, weights, 4.0)
    with pytest.raises(ValueError, match="num_slots"):
        slot_statistics(slots, weights, 0)
    with pytest.raises(TypeError, match="slots"):
        slot_statistics(slots.astype(float), weights, 4)
    with pytest.raises(ValueError, match="slots"):
        slot_statistics(slots + 4, weights, 4)
    with pytest.raises(ValueError, match="weights"):
        slot_statistics(slots, weights[:1], 4)
    with pytest.raises(ValueError, match="weights"):
        slot_statistics(slots, -weights, 4)
    with pytest.raises(ValueError, match="weights"):
        slot_statistics(slots, np.full(weights.shape, np.nan), 4)
    with pytest.raises(TypeError, match="weights"):
        slot_statistics(slots, weights.astype(bool), 4)
    with pytest.raises(ValueError, match="slots: no access mass"):
        slot_statistics(slots, 0 * weights, 4)
    with pytest.raises(ValueError, match="scores"):
        score_margins(np.ones((2, 3)))
    with pytest.raises(ValueError, match="scores"):
        score_margins(np.ones((0, 2, 3)))
    with pytest.raises(TypeError, match="num_slots"):
        LayerDiagnostics(True)
    diag = LayerDiagnostics(9)
    with pytest.raises(TypeError, match="cache"):
        diag.update((slots, weights))
    with pytest.raises(ValueError, match="cache"):
        diag.update(_layer(n=4).forward(np.ones((2, 5)))[1])
