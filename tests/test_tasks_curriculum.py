"""The exponential curriculum (refmann/tasks/curriculum.py): when it doubles, its draws, its state."""

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.tasks import ExponentialCurriculum
from tests.task_cases import ranges, seeds


def test_curriculum_doubles_after_a_window_of_low_losses_and_clears_the_window():
    cur = ExponentialCurriculum(1, 100, threshold=0.5, window=3)
    assert [cur.update(0.1) for _ in range(3)] == [False, False, True]
    assert cur.current_max == 2
    assert [cur.update(0.1) for _ in range(3)] == [False, False, True]  # a fresh window was needed
    assert cur.current_max == 4


def test_curriculum_uses_the_mean_of_the_last_window_losses():
    cur = ExponentialCurriculum(2, 100, threshold=0.5, window=3)
    # windows: [.1 .1 2] [.1 2 .1] [2 .1 .1] have mean 0.73; [.1 .1 .1] has mean 0.1
    assert [cur.update(v) for v in (0.1, 0.1, 2.0, 0.1, 0.1)] == [False] * 5
    assert cur.current_max == 2
    assert cur.update(0.1) is True and cur.current_max == 4


def test_curriculum_does_not_double_while_the_loss_is_high():
    cur = ExponentialCurriculum(3, 100, threshold=0.5, window=2)
    assert not any(cur.update(0.5 + i * 0.01) for i in range(50))  # equal to threshold: not below
    assert cur.current_max == 3


def test_curriculum_caps_at_max_level():
    cur = ExponentialCurriculum(3, 10, threshold=1.0, window=1)
    maxima = []
    for _ in range(5):
        cur.update(0.0)
        maxima.append(cur.current_max)
    assert maxima == [6, 10, 10, 10, 10]


@given(ranges(1, 50), st.integers(0, 6), seeds)
def test_curriculum_draws_cover_min_level_to_current_max(levels, doublings, seed):
    lo, hi = levels
    cur = ExponentialCurriculum(lo, hi, threshold=1.0, window=1)
    for _ in range(doublings):
        cur.update(0.0)
    assert cur.current_max == min(lo * 2**doublings, hi)
    rng = np.random.default_rng(seed)
    draws = [cur.draw(rng) for _ in range(600)]
    assert all(isinstance(d, int) for d in draws)
    assert min(draws) >= lo and max(draws) <= cur.current_max
    if cur.current_max - lo < 20:  # small ranges: both ends appear
        assert {lo, cur.current_max} <= set(draws)


def test_curriculum_state_round_trips_through_npz():
    cur = ExponentialCurriculum(1, 64, threshold=0.3, window=4)
    for v in (0.1, 0.2, 0.1, 0.2, 0.9, 0.1):  # one doubling, then two losses recorded
        cur.update(v)
    buf = io.BytesIO()
    np.savez(buf, **cur.state_dict())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        state = dict(f)
    restored = ExponentialCurriculum(1, 64, threshold=0.3, window=4)
    restored.load_state_dict(state)
    assert restored.current_max == cur.current_max == 2
    losses = [0.1, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.5]
    assert [restored.update(v) for v in losses] == [cur.update(v) for v in losses]
    assert restored.current_max == cur.current_max
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    assert [restored.draw(r1) for _ in range(20)] == [cur.draw(r2) for _ in range(20)]


def test_curriculum_state_dict_holds_only_ints_and_arrays():
    state = ExponentialCurriculum(2, 8, threshold=0.5, window=3).state_dict()
    assert all(isinstance(v, int | np.ndarray | np.generic) for v in state.values())
    assert state["current_max"] == 2 and state["losses"].shape == (0,)


def test_curriculum_refuses_a_state_from_another_configuration():
    state = ExponentialCurriculum(1, 64, threshold=0.3, window=4).state_dict()
    with pytest.raises(ValueError, match="window"):
        ExponentialCurriculum(1, 64, threshold=0.3, window=5).load_state_dict(state)
    with pytest.raises(ValueError, match="current_max"):
        ExponentialCurriculum(1, 64, threshold=0.3, window=4).load_state_dict({**state, "current_max": 65})
