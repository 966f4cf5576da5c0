"""The budgets of the Figure 1 harness (refmann.bench.budget): predicting a point's cost and extrapolating.

Pure functions of hand-written histories: nothing is measured here.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.bench.budget import extrapolate, predict_point, prior_peak_gib, skipped_row
from refmann.bench.scaling import MODELS, ScalingConfig


def _measured(N, seconds_per_step, *, peak_mib=200.0, base_mib=100.0, measured_seconds=1.0):
    return {
        "N": N,
        "seconds_per_step": seconds_per_step,
        "measured_seconds": measured_seconds,
        "process_peak_mib": peak_mib,
        "base_rss_mib": base_mib,
    }


def test_predictor_without_history_uses_the_prior_and_never_the_time_budget():
    config = ScalingConfig(time_budget=1e-9)
    p = predict_point("ntm", "time", 100, [], config)
    assert p.reason == "" and p.seconds_per_step is None and p.peak_gib > 0
    big = predict_point("ntm", "memory", 10**7, [], config)  # 100 cached (1, N, 32) float64 memories
    assert big.reason.startswith("memory budget: predicted") and big.peak_gib > 8


def test_predictor_is_linear_for_dense_models_and_flat_for_sam_lsh():
    config = ScalingConfig(time_budget=1e6, memory_budget=1e6, steps=10, repeats=3)
    one = [_measured(1_000, 0.01)]
    ntm = predict_point("ntm", "time", 10_000, one, config)
    assert ntm.seconds_per_step == pytest.approx(0.1)
    assert ntm.point_seconds == pytest.approx(0.1 * 10 * 4)  # warm-up + 3 repeats of T = 10
    assert ntm.peak_gib == pytest.approx((100 + 100 * 10) / 1024)  # the rise above the base scales
    sam = predict_point("sam-lsh", "time", 10_000, one, config)
    assert sam.seconds_per_step == pytest.approx(0.01) and sam.reason == ""
    two = [_measured(100, 0.002), _measured(1_000, 0.011)]  # affine: 1e-5 s per word
    assert predict_point("dam", "time", 10_000, two, config).seconds_per_step == pytest.approx(0.101)


def test_predictor_names_the_budget_it_passes():
    history = [_measured(1_000, 0.5, peak_mib=1100.0, base_mib=100.0)]
    slow = predict_point("dam", "time", 10_000, history, ScalingConfig(time_budget=30.0, memory_budget=1e6))
    assert slow.reason.startswith("time budget: predicted 5 s/step") and "> budget 30 s" in slow.reason
    big = predict_point("dam", "time", 10_000, history, ScalingConfig(time_budget=1e6, memory_budget=8.0))
    assert big.reason.startswith("memory budget: predicted 9.86 GiB > budget 8 GiB")


def test_extrapolate_never_falls_and_is_flat_with_exponent_zero():
    history = [{"N": 100, "v": 5.0}, {"N": 1000, "v": 4.0}]  # noise: a falling pair
    assert extrapolate(history, 10_000, "v", 1.0) == 4.0
    assert extrapolate(history, 10_000, "v", 0.0) == 4.0
    assert extrapolate([], 10_000, "v", 1.0) is None
    assert extrapolate(history[:1], 1_000, "v", 1.0) == pytest.approx(50.0)


@given(
    st.sampled_from(MODELS),
    st.sampled_from(["time", "memory"]),
    st.lists(st.floats(1e-4, 10.0), min_size=1, max_size=3),
    st.floats(0.01, 100.0),
    st.floats(0.2, 16.0),
)
def test_a_skipped_size_stays_skipped_at_every_larger_size(model, kind, seconds, time_budget, memory_budget):
    history = [
        _measured(10 ** (2 + i), s, peak_mib=100.0 + 10 ** (i + 1), measured_seconds=20 * s)
        for i, s in enumerate(sorted(seconds))
    ]
    config = ScalingConfig(time_budget=time_budget, memory_budget=memory_budget)
    skipped = False
    for N in (10**5, 10**6, 10**7, 10**8):
        p = predict_point(model, kind, N, history, config)
        assert not (skipped and not p.reason)
        skipped = skipped or bool(p.reason)


def test_the_prior_caches_a_memory_per_step_for_the_dense_models_only():
    config = ScalingConfig(memory_steps=100, memory_batch_size=1, word_size=32)
    one = 10**6 * 32 * 8 / 2**30  # a (1, N, W) float64 memory, GiB
    assert prior_peak_gib("dam", "memory", 10**6, config) == pytest.approx(0.25 + 4 * 101 * one)
    assert prior_peak_gib("sam-lsh", "memory", 10**6, config) == pytest.approx(0.25 + 3 * one)


def test_a_skipped_row_carries_the_prediction_and_extrapolates_the_memory():
    config = ScalingConfig()
    history = [
        {"N": 100, "tracemalloc_peak_mib": 2.0, "rss_peak_mib": 3.0},
        {"N": 1_000, "tracemalloc_peak_mib": 11.0, "rss_peak_mib": 12.0},
    ]
    p = predict_point("ntm", "memory", 10_000, [], config)
    row = skipped_row("ntm", "memory", 10_000, history, p, "why", config)
    assert row["skipped"] == "why" and row["seconds_per_step"] is None
    assert row["tracemalloc_peak_mib"] == pytest.approx(101.0) and row["rss_peak_mib"] == pytest.approx(102.0)
    assert row["predicted_peak_gib"] == p.peak_gib and (row["batch"], row["steps"]) == (1, 100)
    flat = skipped_row("sam-lsh", "memory", 10_000, history, p, "why", config)
    assert flat["tracemalloc_peak_mib"] == 11.0
    timed = skipped_row("ntm", "time", 10_000, history, p, "why", config)
    assert timed["tracemalloc_peak_mib"] is None and (timed["batch"], timed["steps"]) == (8, 10)
