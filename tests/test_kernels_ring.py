"""kernels/ring.py: each compiled ring kernel equals its plain-Python ``_…_loops`` twin, and both equal
the list model of tests/naive.py (a ring is a list, oldest first; a touch moves a slot to the back).

Under NUMBA_DISABLE_JIT=1 the kernels *are* the twins, and the comparison with the list model is what counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.kernels import ring
from refmann.testing import f64, indices
from tests.naive import naive_ring_oldest, naive_ring_touch

pytestmark = pytest.mark.kernel

IMPLEMENTATIONS = {
    "compiled": (ring.ring_touch_kernel, ring.ring_undo_kernel, ring.ring_oldest_kernel),
    "twin": (ring._ring_touch_loops, ring._ring_undo_loops, ring._ring_oldest_loops),
}


def ring_arrays(orders):
    """(nxt, prv, head) of the rings listed oldest first, in the dtypes memory/ring.py uses."""
    B, N = len(orders), len(orders[0])
    nxt, prv, head = np.empty((B, N), np.int32), np.empty((B, N), np.int32), np.empty(B, np.int64)
    for b, order in enumerate(orders):
        for a, c in zip(order, order[1:] + order[:1]):
            nxt[b, a], prv[b, c] = c, a
        head[b] = order[0]
    return nxt, prv, head


def ring_orders(nxt, prv, head):
    """Each ring walked from its head, oldest first, checking that it is one cycle and prv mirrors nxt."""
    B, N = nxt.shape
    orders = []
    for b in range(B):
        order = [int(head[b])]
        for _ in range(N - 1):
            order.append(int(nxt[b, order[-1]]))
        assert sorted(order) == list(range(N)), order
        assert nxt[b, order[-1]] == head[b]
        assert all(prv[b, c] == a for a, c in zip(order, order[1:] + order[:1]))
        orders.append(order)
    return orders


def assert_same_arrays(a, b):
    """Nested tuples/lists of arrays, equal entry by entry."""
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        return
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert_same_arrays(x, y)


@st.composite
def ring_problems(draw):
    """Rings in random order, random stamps, and up to four touches with −1 padding and repeated slots."""
    B, N = draw(st.integers(1, 3)), draw(st.integers(1, 8))
    orders = [draw(st.permutations(range(N))) for _ in range(B)]
    stamps = draw(f64((B, N), -10.0, 0.0))
    J = draw(st.integers(1, 6))
    touches = draw(
        st.lists(indices(N + 1, (B, J), force_duplicates=True).map(lambda a: a - 1), min_size=1, max_size=4)
    )  # entries in [−1, N): −1 = padding
    return orders, stamps, touches


def run_touches_then_undo(impl, orders, stamps, touches):
    """Touch at t = 1, 2, ..., then undo newest first; returns every state and journal along the way."""
    touch, undo, _ = impl
    nxt, prv, head = ring_arrays(orders)
    stamps = stamps.copy()
    states, journals = [(nxt.copy(), prv.copy(), head.copy(), stamps.copy())], []
    for t, slots in enumerate(touches, start=1):
        shape = slots.shape
        journal = (
            np.full(shape, -9, np.int32),
            np.full(shape, -9, np.int32),
            np.full(shape, -9, np.int64),
            np.full(shape, np.nan),
        )
        touch(nxt, prv, head, stamps, slots, float(t), *journal)
        states.append((nxt.copy(), prv.copy(), head.copy(), stamps.copy()))
        journals.append(journal)
    undone = []
    for slots, journal in zip(touches[::-1], journals[::-1]):
        undo(nxt, prv, head, stamps, slots, *journal)
        undone.append((nxt.copy(), prv.copy(), head.copy(), stamps.copy()))
    return states, journals, undone


@given(problem=ring_problems())
def test_ring_touch_kernel_and_twin_equal_the_list_model_and_undo_restores_every_earlier_state(problem):
    orders, stamps, touches = problem
    runs = {name: run_touches_then_undo(impl, orders, stamps, touches) for name, impl in IMPLEMENTATIONS.items()}
    assert_same_arrays(runs["compiled"], runs["twin"])  # every state and journal, bit for bit
    states, _, undone = runs["twin"]
    expected_orders, expected_stamps = orders, stamps
    for state, slots, t in zip(states[1:], touches, range(1, len(touches) + 1)):
        expected_orders, expected_stamps = naive_ring_touch(expected_orders, expected_stamps, slots, t)
        nxt, prv, head, got_stamps = state
        assert ring_orders(nxt, prv, head) == expected_orders
        np.testing.assert_array_equal(got_stamps, expected_stamps)
    assert_same_arrays(undone, states[-2::-1])  # each undo restores the state before its touch


@given(data=st.data(), problem=ring_problems())
def test_ring_oldest_kernel_and_twin_list_the_first_slots_of_the_list_model(data, problem):
    orders, stamps, touches = problem
    orders, _ = naive_ring_touch(orders, stamps, touches[0], 1.0)  # any ring, not only index order
    N = len(orders[0])
    count = data.draw(st.integers(1, N))
    nxt, prv, head = ring_arrays(orders)
    for _, _, oldest in IMPLEMENTATIONS.values():
        out = np.full((len(orders), count), -9, np.int64)
        oldest(nxt, head, count, out)
        np.testing.assert_array_equal(out, naive_ring_oldest(orders, count))


def test_touching_the_oldest_slot_only_advances_the_head():
    """The ring is circular: the oldest slot becomes the newest without any relinking."""
    nxt, prv, head = ring_arrays([[2, 0, 1]])
    stamps = np.zeros((1, 3))
    for touch in (ring.ring_touch_kernel, ring._ring_touch_loops):
        n, p, h, s = nxt.copy(), prv.copy(), head.copy(), stamps.copy()
        journal = np.empty((1, 1), np.int32), np.empty((1, 1), np.int32), np.empty((1, 1), np.int64), np.empty((1, 1))
        touch(n, p, h, s, np.array([[2]]), 5.0, *journal)
        np.testing.assert_array_equal(n, nxt)
        np.testing.assert_array_equal(p, prv)
        assert ring_orders(n, p, h) == [[0, 1, 2]] and s[0, 2] == 5.0
