"""refmann.testing keeps its promises: each strategy draws what its docstring says, and each assertion
passes on a correct op and fails on a planted impure, non-linear or wrong backward."""

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from refmann import testing
from refmann.testing import (
    assert_gradients_match,
    assert_linear_in_dout,
    assert_pure,
    away_from_zero,
    distinct_indices,
    f64,
    gates,
    indices,
    memory_dims,
    resolve_op,
    separated_scores,
    simplex,
)

SHAPES = array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
ROWS_OF_TWO_OR_MORE = array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=5)

# -- strategies -------------------------------------------------------------------------------------------


@given(data=st.data(), shape=SHAPES, bounds=st.tuples(st.floats(-3, 3), st.floats(0, 3)))
def test_f64_draws_finite_float64_arrays_within_the_bounds(data, shape, bounds):
    lo, hi = bounds[0], bounds[0] + bounds[1]
    x = data.draw(f64(shape, lo, hi))
    assert x.shape == shape and x.dtype == np.float64
    assert np.all(np.isfinite(x)) and np.all(x >= lo) and np.all(x <= hi)


@given(data=st.data(), shape=SHAPES)
def test_simplex_rows_are_positive_sum_to_one_and_respect_the_documented_floor(data, shape):
    w = data.draw(simplex(shape))
    n = shape[-1]
    assert w.shape == shape and w.dtype == np.float64
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=0, atol=1e-12)
    assert np.all(w > 0)
    assert np.all(w >= (1 - 1e-12) / (1 + (n - 1) * np.exp(4.0)))


@given(data=st.data(), shape=SHAPES)
def test_gates_lie_within_0_05_and_0_95(data, shape):
    g = data.draw(gates(shape))
    assert g.shape == shape
    assert np.all(g >= 0.05) and np.all(g <= 0.95)


@given(data=st.data(), shape=SHAPES, margin=st.floats(0.0, 1.9))
def test_away_from_zero_respects_its_margin(data, shape, margin):
    x = data.draw(away_from_zero(shape, margin))
    assert x.shape == shape
    assert np.all(np.abs(x) >= margin) and np.all(np.abs(x) <= 2.0)


def test_away_from_zero_draws_both_signs_and_rejects_an_impossible_margin():
    from hypothesis import find

    assert np.any(find(away_from_zero((3,)), lambda x: bool(np.any(x < 0))) < 0)
    assert np.any(find(away_from_zero((3,)), lambda x: bool(np.any(x > 0))) > 0)
    with pytest.raises(ValueError, match="margin"):
        away_from_zero((3,), margin=2.0)


@given(data=st.data(), shape=SHAPES, gap=st.sampled_from([1e-3, 1e-2, 0.3, 1.0]))
def test_separated_scores_keep_every_pairwise_gap_along_the_last_axis(data, shape, gap):
    s = data.draw(separated_scores(shape, gap))
    assert s.shape == shape and s.dtype == np.float64
    gaps = np.diff(np.sort(s, axis=-1), axis=-1)  # the smallest pairwise gaps are between neighbours
    assert np.all(gaps >= gap), gaps.min()


@given(data=st.data(), shape=ROWS_OF_TWO_OR_MORE, upper=st.integers(1, 50))
def test_indices_with_force_duplicates_hold_a_duplicate_in_every_row(data, shape, upper):
    idx = data.draw(indices(upper, shape, force_duplicates=True))
    assert idx.shape == shape and idx.dtype == np.int64
    assert np.all(idx >= 0) and np.all(idx < upper)
    rows = idx.reshape(-1, shape[-1])
    assert all(len(set(row.tolist())) < row.size for row in rows)


@given(data=st.data(), shape=SHAPES, upper=st.integers(1, 50))
def test_indices_without_force_duplicates_stay_in_range(data, shape, upper):
    idx = data.draw(indices(upper, shape))
    assert idx.shape == shape and idx.dtype == np.int64
    assert np.all(idx >= 0) and np.all(idx < upper)


@given(data=st.data(), lead=st.tuples(st.integers(1, 3), st.integers(1, 3)), upper=st.integers(1, 8))
def test_distinct_indices_have_distinct_entries_in_range_in_every_row(data, lead, upper):
    k = data.draw(st.integers(1, upper))
    idx = data.draw(distinct_indices(upper, lead + (k,)))
    assert idx.shape == lead + (k,) and idx.dtype == np.int64
    assert np.all(idx >= 0) and np.all(idx < upper)
    assert all(len(set(row.tolist())) == k for row in idx.reshape(-1, k))


@given(dims=memory_dims(max_heads=2))
def test_memory_dims_are_small_positive_sizes(dims):
    B, H, N, W = dims
    assert 1 <= B <= 4 and 1 <= H <= 2 and 1 <= N <= 6 and 1 <= W <= 4


# -- assertions: planted ops ------------------------------------------------------------------------------


class ScaleCache(NamedTuple):
    x: np.ndarray  # (B, W)
    w: np.ndarray  # (B, W)


def scale_forward(x, w):
    """out = x ⊙ w — the correct op every planted bug below is a variant of."""
    return x * w, ScaleCache(x, w)


def scale_backward(dout, cache):
    return dout * cache.w, dout * cache.x


def forward_that_writes_into_its_input(x, w):
    out, cache = scale_forward(x.copy(), w)
    x += 1.0
    return out, cache


def backward_that_writes_into_dout(dout, cache):
    dout *= 1.0 + cache.w  # in place: the caller's upstream gradient changes
    return dout * 1.0, dout * cache.x


def forward_keeping_copies(x, w):
    """scale_forward with a cache of its own (so writing into the cache does not touch the inputs)."""
    return x * w, ScaleCache(x.copy(), w.copy())


def backward_that_writes_into_the_cache(dout, cache):
    grads = dout * cache.w, dout * cache.x
    cache.w[...] = 0.0
    return grads


def make_backward_with_state():
    calls = []

    def backward(dout, cache):  # remembers how often it ran: the answer drifts from call to call
        calls.append(1)
        return dout * cache.w * len(calls), dout * cache.x

    return backward


def backward_squaring_dout(dout, cache):
    return dout**2 * cache.w, dout * cache.x


def backward_with_a_constant_term(dout, cache):
    return dout * cache.w + 1.0, dout * cache.x


def backward_with_a_wrong_factor(dout, cache):
    return 1.01 * dout * cache.w, dout * cache.x


def two_outputs_forward(x, w):
    """(x ⊙ w, x + w): a correct op with a tuple output, whose dout is a tuple too."""
    return (x * w, x + w), ScaleCache(x, w)


def two_outputs_backward(dout, cache):
    dprod, dsum = dout
    return dprod * cache.w + dsum, dprod * cache.x + dsum


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, 3)), rng.standard_normal((2, 3))


@pytest.mark.parametrize(
    "op",
    [(scale_forward, scale_backward), (two_outputs_forward, two_outputs_backward)],
    ids=["one-output", "two-outputs"],
)
def test_every_assertion_passes_on_a_correct_op(op):
    x, w = _inputs()
    report = assert_gradients_match(op, x, w)
    assert report.ok()
    assert_pure(op, x, w)
    assert_linear_in_dout(op, x, w)


def test_the_assertions_take_a_refmann_op_by_name():
    rng = np.random.default_rng(0)
    memory, weights = rng.standard_normal((2, 4, 3)), rng.dirichlet(np.ones(4), (2, 2))
    assert_gradients_match("dense_read", memory, weights)
    assert_pure("dense_read", memory, weights)
    assert_linear_in_dout("dense_read", memory, weights)


def test_assert_pure_catches_a_forward_that_writes_into_its_input():
    with pytest.raises(AssertionError, match="forward wrote into positional input 0"):
        assert_pure((forward_that_writes_into_its_input, scale_backward), *_inputs())


def test_assert_pure_catches_a_backward_that_writes_into_dout():
    with pytest.raises(AssertionError, match="backward wrote into dout"):
        assert_pure((scale_forward, backward_that_writes_into_dout), *_inputs())


def test_assert_pure_catches_a_backward_that_writes_into_the_cache():
    with pytest.raises(AssertionError, match="backward wrote into the cache"):
        assert_pure((forward_keeping_copies, backward_that_writes_into_the_cache), *_inputs())


def test_assert_pure_catches_a_backward_that_keeps_state_between_calls():
    with pytest.raises(AssertionError, match="not repeatable"):
        assert_pure((scale_forward, make_backward_with_state()), *_inputs())


@pytest.mark.parametrize("backward", [backward_squaring_dout, backward_with_a_constant_term])
def test_assert_linear_in_dout_catches_a_non_linear_backward(backward):
    with pytest.raises(AssertionError, match="gradient 0 is not linear in dout"):
        assert_linear_in_dout((scale_forward, backward), *_inputs())


def test_assert_linear_in_dout_catches_a_backward_that_keeps_state_between_calls():
    with pytest.raises(AssertionError, match="not linear in dout"):
        assert_linear_in_dout((scale_forward, make_backward_with_state()), *_inputs())


@pytest.mark.parametrize("backward", [backward_with_a_wrong_factor, backward_squaring_dout])
def test_assert_gradients_match_catches_a_wrong_backward(backward):
    with pytest.raises(AssertionError):
        assert_gradients_match((scale_forward, backward), *_inputs())


def test_resolve_op_names_what_it_expected():
    assert resolve_op("dense_read") == (testing.ops.dense_read_forward, testing.ops.dense_read_backward)
    with pytest.raises(ValueError, match="op: expected the name of a refmann op"):
        resolve_op("no_such_op")
    with pytest.raises(TypeError, match="op: expected an op name or a"):
        resolve_op(scale_forward)


# -- the module -------------------------------------------------------------------------------------------


def test_every_public_name_exists_and_the_old_test_modules_re_export_them():
    from tests import helpers, strategies

    for name in testing.__all__:
        assert hasattr(testing, name), name
        assert getattr(strategies, name) is getattr(testing, name)
        assert getattr(helpers, name) is getattr(testing, name)


def test_without_hypothesis_the_import_error_says_how_to_install_it():
    code = (
        "import sys\n"
        "sys.modules['hypothesis'] = None\n"  # makes `import hypothesis` fail, as if not installed
        "try:\n"
        "    import refmann.testing\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, timeout=120, check=True
    )
    assert 'pip install "refmann[test]"' in done.stdout, done.stdout + done.stderr
