import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure
from tests.strategies import SMALL, f64


@given(data=st.data(), lead=st.lists(SMALL, min_size=1, max_size=3), I=SMALL, O=SMALL)
def test_linear_gradients_match_over_any_leading_axes(data, lead, I, O):
    assert_gradients_match("linear", data.draw(f64(tuple(lead) + (I,))), data.draw(f64((I, O))), data.draw(f64((O,))))


@given(data=st.data(), B=SMALL, X=SMALL, C=SMALL)
def test_lstm_step_gradients_match(data, B, X, C):
    assert_gradients_match(
        "lstm_step",
        data.draw(f64((B, X))),
        data.draw(f64((B, C))),
        data.draw(f64((B, C))),
        data.draw(f64((X + C, 4 * C), -1, 1)),
        data.draw(f64((4 * C,), -1, 1)),
    )


def test_lstm_step_matches_the_equations_and_accepts_missing_upstream():
    rng = np.random.default_rng(0)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    Wt, b = rng.standard_normal((7, 16)), rng.standard_normal(16)
    (h1, c1), cache = ops.lstm_step_forward(x, h, c, Wt, b)
    z = np.concatenate([x, h], 1) @ Wt + b
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, o, g = sig(z[:, :4]), sig(z[:, 4:8]), sig(z[:, 8:12]), np.tanh(z[:, 12:])
    np.testing.assert_allclose(c1, f * c + i * g, rtol=1e-14)
    np.testing.assert_allclose(h1, o * np.tanh(f * c + i * g), rtol=1e-14)
    only_h = ops.lstm_step_backward((np.ones_like(h1), None), cache)
    explicit = ops.lstm_step_backward((np.ones_like(h1), np.zeros_like(c1)), cache)
    for a, b_ in zip(only_h, explicit):
        np.testing.assert_array_equal(a, b_)


def test_linear_and_lstm_are_pure_and_linear_in_dout():
    rng = np.random.default_rng(1)
    inputs = (rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5))
    assert_pure("linear", *inputs)
    assert_linear_in_dout("linear", *inputs)
    assert_pure(
        "lstm_step",
        rng.standard_normal((2, 3)),
        rng.standard_normal((2, 4)),
        rng.standard_normal((2, 4)),
        rng.standard_normal((7, 16)),
        rng.standard_normal(16),
    )
