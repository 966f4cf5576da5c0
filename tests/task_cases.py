"""The task cases the task tests share: hypothesis strategies of every task, and decoders.

The targets are checked against what the *inputs* say they should be: each decoder reads the
documented channel layout independently of the generator's code.
"""

import math

import numpy as np
from hypothesis import strategies as st

from refmann.tasks import AssociativeRecall, Copy, KeyValueRecall, PrioritySort, RepeatCopy

seeds = st.integers(0, 2**32 - 1)
batch_sizes = st.integers(1, 5)


# ----------------------------------------------------------------------------- strategies


@st.composite
def ranges(draw, lo, hi):
    a = draw(st.integers(lo, hi))
    return a, draw(st.integers(a, hi))


@st.composite
def copy_tasks(draw):
    lo, hi = draw(ranges(1, 7))
    return Copy(bits=draw(st.integers(1, 5)), min_length=lo, max_length=hi)


@st.composite
def repeat_copy_tasks(draw):
    lo, hi = draw(ranges(1, 4))
    rlo, rhi = draw(ranges(1, 4))
    return RepeatCopy(bits=draw(st.integers(1, 4)), min_length=lo, max_length=hi, min_repeats=rlo, max_repeats=rhi)


@st.composite
def associative_recall_tasks(draw):
    bits, item_length = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    lo, hi = draw(ranges(2, min(6, 2 ** (bits * item_length))))  # bits=item_length=1: 2 items only
    return AssociativeRecall(bits=bits, item_length=item_length, min_items=lo, max_items=hi)


@st.composite
def key_value_recall_tasks(draw):
    bits = draw(st.integers(1, 4))
    lo, hi = draw(ranges(1, min(6, 2**bits)))
    return KeyValueRecall(bits=bits, min_pairs=lo, max_pairs=hi)


@st.composite
def priority_sort_tasks(draw):
    num_outputs, num_inputs = draw(ranges(1, 10))
    return PrioritySort(bits=draw(st.integers(1, 4)), num_inputs=num_inputs, num_outputs=num_outputs)


any_task = st.one_of(
    copy_tasks(), repeat_copy_tasks(), associative_recall_tasks(), key_value_recall_tasks(), priority_sort_tasks()
)


# ----------------------------------------------------------------------------- decoders
# Each returns, for one sequence x of shape (T, X) (padding included), the sequence's own length
# T_b, its level, and the targets (T_b, Y) and mask (T_b, Y) that the documented layout implies.


def _flag_steps(x, channel):
    return np.flatnonzero(x[:, channel] == 1.0)


def decode_copy(task, x):
    bits = task.bits
    (L,) = _flag_steps(x, bits)
    T_b = 2 * L + 1
    y = np.zeros((T_b, bits))
    y[L + 1 :] = x[:L, :bits]
    m = np.zeros((T_b, bits))
    m[L + 1 :] = 1.0
    return T_b, L, y, m


def decode_repeat_copy(task, x):
    bits = task.bits
    (L,) = _flag_steps(x, bits)
    lo, hi = task.min_repeats, task.max_repeats
    std = math.sqrt(((hi - lo + 1) ** 2 - 1) / 12) if hi > lo else 1.0
    R = round(x[L + 1, bits + 1] * std + (lo + hi) / 2)
    assert lo <= R <= hi
    T_b = L + 2 + L * R + 1
    y = np.zeros((T_b, bits + 1))
    for r in range(R):
        y[L + 2 + r * L : L + 2 + (r + 1) * L, :bits] = x[:L, :bits]
    y[-1, bits] = 1.0
    m = np.zeros((T_b, bits + 1))
    m[L + 2 :] = 1.0
    return T_b, L, y, m


def decode_associative_recall(task, x):
    """Also returns the items (n, L, bits) and the index of the queried item."""
    bits, L = task.bits, task.item_length
    starts = _flag_steps(x, bits)
    items = np.stack([x[s + 1 : s + 1 + L, :bits] for s in starts])
    q0, q1 = _flag_steps(x, bits + 1)
    assert q1 - q0 == L + 1
    query = x[q0 + 1 : q1, :bits]
    (q,) = np.flatnonzero(np.all(items == query, axis=(1, 2)))  # exactly one match
    T_b = q1 + 1 + L
    y = np.zeros((T_b, bits))
    y[q1 + 1 :] = items[q + 1]
    m = np.zeros((T_b, bits))
    m[q1 + 1 :] = 1.0
    return T_b, len(items), y, m, items, q


def decode_key_value_recall(task, x):
    """Also returns the keys (n, bits) and the index of the cued pair."""
    bits = task.bits
    key_steps, value_steps = _flag_steps(x, bits), _flag_steps(x, bits + 1)
    (cue,) = _flag_steps(x, bits + 2)
    keys, values = x[key_steps, :bits], x[value_steps, :bits]
    (c,) = np.flatnonzero(np.all(keys == x[cue, :bits], axis=1))
    T_b = cue + 2
    y = np.zeros((T_b, bits))
    y[cue + 1] = values[c]
    m = np.zeros((T_b, bits))
    m[cue + 1] = 1.0
    return T_b, len(keys), y, m, keys, c


def decode_priority_sort(task, x):
    bits = task.bits
    (n,) = _flag_steps(x, bits + 1)
    k = math.ceil(n * task.num_outputs / task.num_inputs)
    vectors, priority = x[:n, :bits], x[:n, bits]
    ranked = sorted(range(n), key=lambda i: -priority[i])[:k]
    T_b = n + 1 + k
    y = np.zeros((T_b, bits))
    y[n + 1 :] = vectors[ranked]
    m = np.zeros((T_b, bits))
    m[n + 1 :] = 1.0
    return T_b, n, y, m


DECODERS = {
    Copy: decode_copy,
    RepeatCopy: decode_repeat_copy,
    AssociativeRecall: decode_associative_recall,
    KeyValueRecall: decode_key_value_recall,
    PrioritySort: decode_priority_sort,
}


def decode(task, batch, b):
    return DECODERS[type(task)](task, batch.inputs[:, b])[:4]
