"""RowGradAccumulator: a hash of touched rows that must behave exactly like a dense zero (B, N, W) array."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from refmann import ops
from refmann.memory.accumulator import RowGradAccumulator


@st.composite
def programs(draw):
    B, N, W = draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 4))
    steps = []
    for _ in range(draw(st.integers(1, 30))):
        op = draw(st.sampled_from(["add", "gather", "zero"]))
        J = draw(st.integers(1, 12))
        # small N forces duplicates inside one call; -1 is padding for add and zero
        low = -1 if op != "gather" else 0
        idx = np.array(draw(st.lists(st.integers(low, N - 1), min_size=B * J, max_size=B * J))).reshape(B, J)
        steps.append((op, idx, draw(st.integers(0, 2**31))))
    return B, N, W, steps


@given(programs())
def test_accumulator_behaves_like_a_dense_array(program):
    B, N, W, steps = program
    acc = RowGradAccumulator(B, W, np.float64, capacity=1)  # capacity 1: growth happens on the way
    dense = np.zeros((B, N, W))
    for op, idx, seed in steps:
        if op == "add":
            rows = np.random.default_rng(seed).standard_normal(idx.shape + (W,))
            acc.add(idx, rows)
            for b in range(B):
                for j in range(idx.shape[1]):
                    if idx[b, j] >= 0:
                        dense[b, idx[b, j]] += rows[b, j]
        elif op == "zero":
            acc.zero(idx)
            for b in range(B):
                dense[b, idx[b][idx[b] >= 0]] = 0.0
        else:
            got = acc.gather(idx)
            np.testing.assert_array_equal(got, np.stack([dense[b, idx[b]] for b in range(B)]))
    grad = acc.to_rowgrad(N)
    np.testing.assert_allclose(ops.densify_rows(grad), dense, rtol=0, atol=1e-12)
    for b in range(B):  # each held row listed once, before the padding
        n = int(acc.count[b])
        assert len(set(grad.indices[b, :n].tolist())) == n
        assert not grad.rows[b, n:].any()
    acc.clear()
    assert acc.rows_held == 0
    assert not acc.gather(np.zeros((B, 1), np.int64)).any()


def test_accumulator_size_follows_the_rows_touched_not_n():
    acc = RowGradAccumulator(2, 8, np.float64)
    rng = np.random.default_rng(0)
    for _ in range(50):  # 50 steps of 20 rows out of ten million slots
        acc.add(rng.integers(0, 10_000_000, (2, 20)), rng.standard_normal((2, 20, 8)))
    assert acc.rows_held <= 1000
    assert acc.nbytes() < 64 * 1000 * 8 * 8  # a few times the held rows, nothing N-sized
