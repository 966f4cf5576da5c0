"""The usage ring: its least-used slots equal the argmin of the timestamps, and undo restores it."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from refmann.memory import UsageRing


@given(N=st.integers(1, 12), data=st.data())
def test_ring_oldest_equals_argmin_of_timestamps_and_undo_restores_it(N, data):
    ring = UsageRing(2, N)
    initial = (ring.nxt.copy(), ring.prv.copy(), ring.head.copy(), ring.stamps.copy())
    journals = []
    for t in range(1, data.draw(st.integers(1, 8)) + 1):
        J = data.draw(st.integers(1, 5))
        slots = np.full((2, J), -1)
        for b in range(2):
            chosen = sorted(data.draw(st.sets(st.integers(0, N - 1), max_size=J)))
            slots[b, : len(chosen)] = chosen
        journals.append(ring.touch(slots, t))
        for b in range(2):
            brute = np.lexsort((np.arange(N), ring.stamps[b]))  # timestamp, then index
            np.testing.assert_array_equal(ring.order(b), brute)
            count = data.draw(st.integers(1, N))
            np.testing.assert_array_equal(ring.oldest(count)[b], brute[:count])
    for journal in reversed(journals):
        ring.undo(journal)
    for before, after in zip(initial, (ring.nxt, ring.prv, ring.head, ring.stamps)):
        np.testing.assert_array_equal(before, after)
