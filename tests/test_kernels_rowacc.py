"""kernels/rowacc.py: each compiled row-table kernel equals its plain-Python ``_…_loops`` twin, and both
equal the dict model of tests/naive.py (slot -> row, in order of first touch), over random sequences of
adds (with repeated slots and −1 padding), zeros, gathers and a rehash into a bigger table.

Under NUMBA_DISABLE_JIT=1 the kernels *are* the twins, and the comparison with the dict model is what counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann.kernels import rowacc
from refmann.testing import f64
from tests.naive import naive_rowacc_add, naive_rowacc_gather, naive_rowacc_zero

pytestmark = pytest.mark.kernel

IMPLEMENTATIONS = {
    "compiled": (
        rowacc.rowacc_add_kernel,
        rowacc.rowacc_gather_kernel,
        rowacc.rowacc_zero_kernel,
        rowacc.rowacc_rehash_kernel,
    ),
    "twin": (
        rowacc._rowacc_add_loops,
        rowacc._rowacc_gather_loops,
        rowacc._rowacc_zero_loops,
        rowacc._rowacc_rehash_loops,
    ),
}

# Slots: a few small ones (so they repeat), −1 padding, and large ones (so their hashes collide in a
# small table). Large slots stay below 2**31: slot · 2654435761 must fit int64 in the Python twin.
SLOTS = st.one_of(st.integers(-1, 5), st.integers(0, 2**31 - 1))


def slot_arrays(B, J):
    """int64 (B, J) slots whose last column repeats the first (a duplicate in every row when J >= 2)."""

    def dup(a):
        a = a.copy()
        a[:, -1] = a[:, 0]
        return a

    return arrays(np.int64, (B, J), elements=SLOTS).map(dup)


@st.composite
def operations(draw):
    """(B, W, ops): a sequence of ("add", idx, rows), ("zero", idx), ("gather", idx) and one ("rehash",)."""
    B, W = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        J = draw(st.integers(1, 5))
        kind = draw(st.sampled_from(["add", "add", "zero", "gather"]))
        idx = draw(slot_arrays(B, J))
        steps.append((kind, idx, draw(f64((B, J, W)))) if kind == "add" else (kind, idx))
    steps.insert(draw(st.integers(0, len(steps))), ("rehash",))
    return B, W, steps


def table_size(capacity):
    """What memory/accumulator.py allocates: a power of two at least twice the pool's rows."""
    return 1 << int(np.ceil(np.log2(2 * capacity)))


def run(impl, B, W, steps):
    """Replay ``steps`` on an empty table; returns each gather's output and, after every step, the arrays."""
    add, gather, zero, rehash = impl
    capacity = max(1, sum(s[1].shape[1] for s in steps if s[0] == "add"))  # room for every new slot
    keys, where = np.full((B, table_size(capacity)), -1, np.int64), np.zeros((B, table_size(capacity)), np.int64)
    slot_of, count = np.full((B, capacity), -1, np.int64), np.zeros(B, np.int64)
    pool = np.zeros((B, capacity, W))
    history = []
    for step in steps:
        if step[0] == "add":
            add(keys, where, slot_of, count, pool, step[1], step[2])
        elif step[0] == "zero":
            zero(keys, where, pool, step[1])
        elif step[0] == "gather":
            out = np.full(step[1].shape + (W,), np.nan)
            gather(keys, where, pool, step[1], out)
            history.append((out,))
        else:  # a bigger, empty table: re-insert the pool rows
            keys, where = np.full((B, 2 * keys.shape[1]), -1, np.int64), np.zeros((B, 2 * keys.shape[1]), np.int64)
            rehash(keys, where, slot_of, count)
        history.append((keys.copy(), where.copy(), slot_of.copy(), count.copy(), pool.copy()))
    return history


@given(problem=operations())
def test_rowacc_kernels_and_twins_equal_the_dict_model_over_a_sequence_of_operations(problem):
    B, W, steps = problem
    histories = {name: run(impl, B, W, steps) for name, impl in IMPLEMENTATIONS.items()}
    for a, b in zip(histories["compiled"], histories["twin"]):  # compiled == twin, every array after every step
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    tables = [{} for _ in range(B)]
    history = iter(histories["twin"])
    for step in steps:
        if step[0] == "add":
            tables = naive_rowacc_add(tables, step[1], step[2])
        elif step[0] == "zero":
            tables = naive_rowacc_zero(tables, step[1])
        elif step[0] == "gather":
            (out,) = next(history)
            np.testing.assert_array_equal(out, naive_rowacc_gather(tables, step[1], W))
        keys, where, slot_of, count, pool = next(history)
        for b, table in enumerate(tables):
            n = int(count[b])
            assert slot_of[b, :n].tolist() == list(table)  # pool rows in order of first touch
            np.testing.assert_array_equal(pool[b, :n], np.array(list(table.values())).reshape(n, W))
            held = keys[b][keys[b] >= 0]
            assert sorted(held.tolist()) == sorted(table)  # the hash holds each slot once
            np.testing.assert_array_equal(np.sort(where[b][keys[b] >= 0]), np.arange(n))


def test_an_add_with_a_repeated_slot_keeps_both_updates():
    """The case a fancy-indexed ``pool[rows] += …`` gets wrong: slot 3 listed twice receives both rows."""
    for add, gather, _, _ in IMPLEMENTATIONS.values():
        keys, where = np.full((1, 4), -1, np.int64), np.zeros((1, 4), np.int64)
        slot_of, count, pool = np.full((1, 2), -1, np.int64), np.zeros(1, np.int64), np.zeros((1, 2, 1))
        add(keys, where, slot_of, count, pool, np.array([[3, 3]]), np.array([[[1.0], [2.0]]]))
        out = np.empty((1, 1, 1))
        gather(keys, where, pool, np.array([[3]]), out)
        assert out[0, 0, 0] == 3.0 and count[0] == 1
