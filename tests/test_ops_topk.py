import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from tests.helpers import assert_gradients_match, assert_pure
from tests.strategies import separated_scores


@given(data=st.data(), R=st.integers(1, 3), N=st.integers(1, 8))
def test_top_k_values_gradient_matches_when_scores_are_separated(data, R, N):
    k = data.draw(st.integers(1, N))
    assert_gradients_match("top_k", data.draw(separated_scores((R, N))), k=k)


def test_top_k_orders_by_score_then_index():
    idx, vals = ops.top_k(np.array([0.5, 2.0, 0.5, 2.0, 1.0]), 4)
    np.testing.assert_array_equal(idx, [1, 3, 4, 0])
    np.testing.assert_array_equal(vals, [2.0, 2.0, 1.0, 0.5])


def test_top_k_with_k_equal_n_is_a_stable_descending_sort():
    scores = np.random.default_rng(0).integers(0, 3, (4, 9)).astype(float)
    idx, _ = ops.top_k(scores, 9)
    np.testing.assert_array_equal(idx, np.argsort(-scores, axis=-1, kind="stable"))


def test_top_k_is_pure():
    assert_pure("top_k", np.array([[3.0, 1.0, 2.0]]), k=2)
