"""The composable sparse memory: a step's journal reverts it bit for bit; reapply redoes it."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from refmann.memory import make_index_factory
from refmann.memory.sparse_memory import SparseMemory


@given(
    N=st.integers(3, 12),
    W=st.integers(1, 4),
    B=st.integers(1, 3),
    H=st.integers(1, 2),
    K=st.integers(1, 2),
    steps=st.integers(1, 6),
    index=st.sampled_from(["linear", "lsh"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_reverting_every_step_newest_first_restores_memory_index_and_ring_exactly(N, W, B, H, K, steps, index, seed):
    rng = np.random.default_rng(seed)
    mem = SparseMemory(N, W, make_index_factory(index, seed=0))
    mem.prepare(B, np.float64, rng.uniform(-1, 1, (N, W)))
    m0, ring0 = mem.memory.copy(), (mem.ring.nxt.copy(), mem.ring.prv.copy(), mem.ring.stamps.copy())
    codes0 = mem.index.codes.copy() if index == "lsh" else None
    journals, after = [], []
    for t in range(1, steps + 1):
        lra = mem.least_recent(H)  # (B, H)
        idx = np.concatenate([rng.integers(0, N, (B, H, K)), lra[..., None]], axis=-1)
        journal, _ = mem.write(
            rng.random((B, H, K + 1)),
            rng.standard_normal((B, H, W)),
            indices=idx,
            erase_indices=lra,
            keep_new_rows=True,
        )
        read_idx = mem.query(rng.standard_normal((B, H, W)), min(K, N))
        slots = np.concatenate([journal.rows, read_idx.reshape(B, -1)], axis=1)
        _, journal = mem.touch(slots, rng.random(slots.shape), 0.3, t, journal)
        journals.append(journal)
        after.append((mem.memory.copy(), mem.ring.stamps.copy()))
    for journal in reversed(journals):
        mem.revert(journal)
    np.testing.assert_array_equal(mem.memory, m0)
    for a, b in zip(ring0, (mem.ring.nxt, mem.ring.prv, mem.ring.stamps)):
        np.testing.assert_array_equal(a, b)
    if index == "lsh":
        np.testing.assert_array_equal(mem.index.codes, codes0)
    for t, journal in enumerate(journals, start=1):  # and forward again, oldest first
        mem.reapply(journal, t)
    np.testing.assert_array_equal(mem.memory, after[-1][0])
    np.testing.assert_array_equal(mem.ring.stamps, after[-1][1])


def test_nbytes_names_every_part():
    mem = SparseMemory(8, 3, make_index_factory("lsh", seed=0))
    mem.prepare(2, np.float32, np.zeros((8, 3)))
    parts = mem.nbytes()
    assert set(parts) == {"memory", "index", "usage ring", "gradient table"}
    assert parts["memory"] == 2 * 8 * 3 * 4
