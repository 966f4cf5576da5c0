"""Properties of the algorithmic tasks and the exponential curriculum (refmann.tasks).

The targets are checked against what the *inputs* say they should be: each test decodes the
documented channel layout independently of the generator's code.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.tasks import (
    TASKS,
    AssociativeRecall,
    Batch,
    Copy,
    ExponentialCurriculum,
    KeyValueRecall,
    PrioritySort,
    RepeatCopy,
    bit_errors,
    make_task,
)

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
    return RepeatCopy(bits=draw(st.integers(1, 4)), min_length=lo, max_length=hi,
                      min_repeats=rlo, max_repeats=rhi)


@st.composite
def associative_recall_tasks(draw):
    bits, item_length = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    lo, hi = draw(ranges(2, min(6, 2 ** (bits * item_length))))   # bits=item_length=1: 2 items only
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


any_task = st.one_of(copy_tasks(), repeat_copy_tasks(), associative_recall_tasks(),
                     key_value_recall_tasks(), priority_sort_tasks())


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
    (q,) = np.flatnonzero(np.all(items == query, axis=(1, 2)))   # exactly one match
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


# ----------------------------------------------------------------------------- every task


@given(any_task, batch_sizes, seeds)
def test_batch_shapes_and_dtypes(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    T = batch.inputs.shape[0]
    assert isinstance(batch, Batch)
    assert batch.inputs.shape == (T, B, task.input_size)
    assert batch.targets.shape == batch.mask.shape == (T, B, task.output_size)
    assert all(a.dtype == np.float64 for a in batch)


@given(any_task, batch_sizes, seeds)
def test_targets_and_mask_are_binary_and_targets_vanish_where_unscored(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    assert set(np.unique(batch.targets)) <= {0.0, 1.0}
    assert set(np.unique(batch.mask)) <= {0.0, 1.0}
    assert np.all(batch.targets[batch.mask == 0] == 0)
    assert np.all(batch.mask.sum(axis=(0, 2)) > 0)


@given(any_task, batch_sizes, seeds)
def test_targets_and_mask_follow_from_the_inputs(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    for b in range(B):
        T_b, _, y, m = decode(task, batch, b)
        np.testing.assert_array_equal(batch.targets[:T_b, b], y)
        np.testing.assert_array_equal(batch.mask[:T_b, b], m)


@given(any_task, batch_sizes, seeds)
def test_padding_is_never_scored_and_batch_is_as_long_as_its_longest_sequence(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    lengths = [decode(task, batch, b)[0] for b in range(B)]
    assert batch.inputs.shape[0] == max(lengths)
    for b, T_b in enumerate(lengths):
        assert np.all(batch.mask[T_b:, b] == 0)
        assert np.all(batch.inputs[T_b:, b] == 0) and np.all(batch.targets[T_b:, b] == 0)
        assert np.any(batch.mask[T_b - 1, b] == 1)          # the sequence ends on a scored step


@given(any_task, batch_sizes, seeds, st.data())
def test_perfect_predictor_has_no_errors_and_one_flipped_scored_bit_is_one_error(task, B, seed, data):
    batch = task.sample(B, np.random.default_rng(seed))
    logits = 20.0 * (2.0 * batch.targets - 1.0)
    np.testing.assert_array_equal(task.bit_errors(logits, batch), np.zeros(B))

    scored = np.flatnonzero(batch.mask)
    flat = data.draw(st.sampled_from(scored.tolist()))
    flipped = logits.copy()
    flipped.flat[flat] *= -1.0
    b = np.unravel_index(flat, logits.shape)[1]
    errors = bit_errors(flipped, batch)
    assert errors.shape == (B,)
    assert errors[b] == 1.0 and errors.sum() == 1.0


@given(any_task, batch_sizes, seeds)
def test_unscored_outputs_never_count_as_errors(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    logits = 20.0 * (2.0 * batch.targets - 1.0)
    logits[batch.mask == 0] *= -1.0                          # every unscored (and padding) bit wrong
    np.testing.assert_array_equal(task.bit_errors(logits, batch), np.zeros(B))
    # everything wrong: the error count is the number of scored bits
    np.testing.assert_array_equal(task.bit_errors(-logits, batch), batch.mask.sum(axis=(0, 2)))


@given(any_task, batch_sizes, seeds, st.data())
def test_level_sets_every_sequence_difficulty(task, B, seed, data):
    lo, hi = task.level_range
    level = data.draw(st.integers(lo, hi))
    batch = task.sample(B, np.random.default_rng(seed), level=level)
    assert [decode(task, batch, b)[1] for b in range(B)] == [level] * B


@given(any_task, batch_sizes, seeds)
def test_same_seed_gives_same_batch(task, B, seed):
    one = task.sample(B, np.random.default_rng(seed))
    two = task.sample(B, np.random.default_rng(seed))
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_different_seeds_give_different_batches(name):
    task = make_task(name)
    one, two = task.sample(8, np.random.default_rng(1)), task.sample(8, np.random.default_rng(2))
    assert one.inputs.shape != two.inputs.shape or not np.array_equal(one.inputs, two.inputs)


def test_sample_does_not_touch_global_random_state():
    # Reading the legacy global state (never seeding it) to prove the tasks leave it alone.
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    for name in TASKS:
        make_task(name).sample(3, np.random.default_rng(0))
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


# ----------------------------------------------------------------------------- per task


@given(copy_tasks(), batch_sizes, seeds)
def test_copy_scores_exactly_length_times_bits_and_gives_no_input_while_recalling(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    for b in range(B):
        T_b, L, _, _ = decode(task, batch, b)
        assert task.min_length <= L <= task.max_length
        assert batch.mask[:, b].sum() == L * task.bits
        assert np.all(batch.inputs[L + 1 :, b] == 0)


def test_copy_level_gives_fixed_length_batch():
    batch = Copy(bits=8).sample(4, np.random.default_rng(0), level=7)
    assert batch.inputs.shape == (15, 4, 9)
    np.testing.assert_array_equal(batch.mask.sum(axis=(0, 2)), [56.0] * 4)
    np.testing.assert_array_equal(batch.targets[8:], batch.inputs[:7, :, :8])


def test_copy_lengths_cover_the_configured_range():
    task = Copy(min_length=2, max_length=5)
    batch = task.sample(400, np.random.default_rng(0))
    assert {decode(task, batch, b)[1] for b in range(400)} == {2, 3, 4, 5}


@pytest.mark.parametrize(("lo", "hi"), [(1, 10), (2, 5), (3, 4)])
def test_repeat_count_code_has_mean_zero_and_unit_variance_over_the_range(lo, hi):
    task = RepeatCopy(bits=2, min_length=1, max_length=1, min_repeats=lo, max_repeats=hi)
    codes = []
    for R in range(lo, hi + 1):                      # find one sequence per count
        rng = np.random.default_rng(R)
        while True:
            x = task.sample(1, rng).inputs[:, 0]
            if x.shape[0] == 1 + 2 + R + 1:          # L = 1: length tells R
                codes.append(x[2, 3])
                break
    assert np.mean(codes) == pytest.approx(0.0, abs=1e-12)
    assert np.var(codes) == pytest.approx(1.0)


def test_repeat_copy_single_count_reads_zero():
    task = RepeatCopy(min_repeats=3, max_repeats=3)
    batch = task.sample(5, np.random.default_rng(0), level=4)
    assert batch.inputs.shape[0] == 4 + 2 + 12 + 1
    np.testing.assert_array_equal(batch.inputs[5, :, task.bits + 1], np.zeros(5))


@given(associative_recall_tasks(), batch_sizes, seeds)
def test_associative_recall_target_is_the_item_after_the_query_and_items_are_distinct(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    for b in range(B):
        T_b, n, _, _, items, q = decode_associative_recall(task, batch.inputs[:, b])
        assert len({it.tobytes() for it in items}) == n
        assert 0 <= q <= n - 2
        scored = batch.mask[:, b, 0] == 1
        np.testing.assert_array_equal(batch.targets[scored, b], items[q + 1])
        assert batch.mask[:, b].sum() == task.item_length * task.bits


def test_associative_recall_queries_every_item_but_the_last_including_the_second_to_last():
    task = AssociativeRecall(min_items=2, max_items=6)
    batch = task.sample(1500, np.random.default_rng(0))
    seen: dict[int, list[int]] = {}
    for b in range(1500):
        _, n, _, _, _, q = decode_associative_recall(task, batch.inputs[:, b])
        seen.setdefault(n, []).append(q)
    assert sorted(seen) == [2, 3, 4, 5, 6]
    for n, qs in seen.items():
        counts = np.bincount(qs, minlength=n)
        assert counts[n - 1] == 0                           # the last item has no successor
        assert np.all(counts[: n - 1] > 0.5 * len(qs) / (n - 1)), (n, counts)


def test_associative_recall_fills_a_tiny_pattern_space_without_repeats():
    task = AssociativeRecall(bits=1, item_length=2, min_items=4, max_items=4)   # all 4 patterns
    batch = task.sample(20, np.random.default_rng(0))
    for b in range(20):
        items = decode_associative_recall(task, batch.inputs[:, b])[4]
        assert sorted(it.tobytes() for it in items) == sorted(
            np.array(p, dtype=np.float64).reshape(2, 1).tobytes() for p in [(0, 0), (0, 1), (1, 0), (1, 1)]
        )


@given(key_value_recall_tasks(), batch_sizes, seeds)
def test_key_value_recall_target_is_the_value_of_the_cued_key(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    for b in range(B):
        x = batch.inputs[:, b]
        T_b, n, _, _, keys, c = decode_key_value_recall(task, x)
        assert len({k.tobytes() for k in keys}) == n
        value = x[np.flatnonzero(x[:, task.bits + 1] == 1)[c], : task.bits]
        np.testing.assert_array_equal(batch.targets[T_b - 1, b], value)
        assert batch.mask[:, b].sum() == task.bits


def test_key_value_recall_cues_every_pair():
    task = KeyValueRecall(min_pairs=4, max_pairs=4)
    batch = task.sample(400, np.random.default_rng(0))
    cues = [decode_key_value_recall(task, batch.inputs[:, b])[5] for b in range(400)]
    assert set(cues) == {0, 1, 2, 3}


@given(priority_sort_tasks(), batch_sizes, seeds)
def test_priority_sort_target_is_the_inputs_sorted_by_descending_priority(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    n, k = task.num_inputs, task.num_outputs
    assert batch.inputs.shape[0] == n + 1 + k                # full difficulty: no padding
    for b in range(B):
        vectors, priority = batch.inputs[:n, b, : task.bits], batch.inputs[:n, b, task.bits]
        assert np.all((-1 <= priority) & (priority <= 1))
        order = np.argsort(-priority)[:k]
        np.testing.assert_array_equal(batch.targets[n + 1 :, b], vectors[order])
        assert np.all(np.diff(priority[order]) < 0)


def test_priority_sort_paper_defaults_output_16_of_20():
    batch = PrioritySort().sample(3, np.random.default_rng(0))
    assert batch.inputs.shape == (37, 3, 10)
    np.testing.assert_array_equal(batch.mask.sum(axis=(0, 2)), [16 * 8] * 3)


# ----------------------------------------------------------------------------- make_task


@pytest.mark.parametrize(
    ("name", "cls"),
    [("copy", Copy), ("repeat_copy", RepeatCopy), ("associative_recall", AssociativeRecall),
     ("key_value_recall", KeyValueRecall), ("priority_sort", PrioritySort)],
)
def test_make_task_builds_the_named_class_with_its_config(name, cls):
    task = make_task(name, bits=3)
    assert type(task) is cls and task.bits == 3 and task == cls(bits=3)


def test_tasks_are_frozen():
    with pytest.raises(AttributeError):
        Copy().bits = 3  # type: ignore[misc]


# ----------------------------------------------------------------------------- curriculum


def test_curriculum_doubles_after_a_window_of_low_losses_and_clears_the_window():
    cur = ExponentialCurriculum(1, 100, threshold=0.5, window=3)
    assert [cur.update(0.1) for _ in range(3)] == [False, False, True]
    assert cur.current_max == 2
    assert [cur.update(0.1) for _ in range(3)] == [False, False, True]   # a fresh window was needed
    assert cur.current_max == 4


def test_curriculum_uses_the_mean_of_the_last_window_losses():
    cur = ExponentialCurriculum(2, 100, threshold=0.5, window=3)
    # windows: [.1 .1 2] [.1 2 .1] [2 .1 .1] have mean 0.73; [.1 .1 .1] has mean 0.1
    assert [cur.update(v) for v in (0.1, 0.1, 2.0, 0.1, 0.1)] == [False] * 5
    assert cur.current_max == 2
    assert cur.update(0.1) is True and cur.current_max == 4


def test_curriculum_does_not_double_while_the_loss_is_high():
    cur = ExponentialCurriculum(3, 100, threshold=0.5, window=2)
    assert not any(cur.update(0.5 + i * 0.01) for i in range(50))       # equal to threshold: not below
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
    if cur.current_max - lo < 20:                             # small ranges: both ends appear
        assert {lo, cur.current_max} <= set(draws)


def test_curriculum_state_round_trips_through_npz():
    cur = ExponentialCurriculum(1, 64, threshold=0.3, window=4)
    for v in (0.1, 0.2, 0.1, 0.2, 0.9, 0.1):               # one doubling, then two losses recorded
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


# ----------------------------------------------------------------------------- bad input

rng0 = np.random.default_rng(0)
_batch = Copy(bits=2).sample(2, np.random.default_rng(0), level=3)

BAD = [
    (lambda: Copy(min_length=5, max_length=3), ValueError, ("min_length", "3", "5")),
    (lambda: Copy(bits=0), ValueError, ("bits", ">= 1", "0")),
    (lambda: Copy(bits=2.0), TypeError, ("bits", "float")),
    (lambda: Copy(max_length=True), TypeError, ("max_length", "bool")),
    (lambda: RepeatCopy(min_repeats=4, max_repeats=2), ValueError, ("min_repeats", "2", "4")),
    (lambda: RepeatCopy(min_length=0), ValueError, ("min_length", "0")),
    (lambda: AssociativeRecall(min_items=1), ValueError, ("min_items", ">= 2", "1")),
    (lambda: AssociativeRecall(bits=1, item_length=1, max_items=3), ValueError, ("max_items", "2", "3")),
    (lambda: AssociativeRecall(item_length=0), ValueError, ("item_length", "0")),
    (lambda: KeyValueRecall(min_pairs=5, max_pairs=4), ValueError, ("min_pairs", "4", "5")),
    (lambda: KeyValueRecall(bits=2, max_pairs=6), ValueError, ("max_pairs", "4", "6")),
    (lambda: PrioritySort(num_outputs=21), ValueError, ("num_outputs", "20", "21")),
    (lambda: PrioritySort(bits=-1), ValueError, ("bits", "-1")),
    (lambda: Copy().sample(0, rng0), ValueError, ("batch_size", ">= 1", "0")),
    (lambda: Copy().sample(2.0, rng0), TypeError, ("batch_size", "float")),
    (lambda: Copy().sample(2, np.random.RandomState(0)), TypeError, ("rng", "Generator", "RandomState")),
    (lambda: Copy().sample(2, 0), TypeError, ("rng", "Generator", "int")),
    (lambda: Copy().sample(2, rng0, level=21), ValueError, ("level", "[1, 20]", "21")),
    (lambda: Copy(min_length=3).sample(2, rng0, level=2), ValueError, ("level", "[3, 20]", "2")),
    (lambda: Copy().sample(2, rng0, level=2.5), TypeError, ("level", "float")),
    (lambda: PrioritySort().sample(1, rng0, level=0), ValueError, ("level", "[1, 20]", "0")),
    (lambda: AssociativeRecall().sample(1, rng0, level=7), ValueError, ("level", "[2, 6]", "7")),
    (lambda: make_task("copyy"), ValueError, ("name", "'copy'", "'priority_sort'", "'copyy'")),
    (lambda: make_task("copy", width=3), TypeError, ("width",)),
    (lambda: bit_errors(np.zeros((7, 2, 3)), _batch), ValueError, ("logits", "(7, 2, 2)", "(7, 2, 3)")),
    (lambda: bit_errors(np.zeros((7, 2)), _batch), ValueError, ("logits", "3-d", "(7, 2)")),
    (lambda: bit_errors(np.full((7, 2, 2), np.nan), _batch), ValueError, ("logits", "finite")),
    (lambda: bit_errors(np.zeros((7, 2, 2)), tuple(_batch)), TypeError, ("batch", "Batch", "tuple")),
    (lambda: ExponentialCurriculum(5, 3, 0.1, 2), ValueError, ("min_level", "3", "5")),
    (lambda: ExponentialCurriculum(0, 3, 0.1, 2), ValueError, ("min_level", ">= 1", "0")),
    (lambda: ExponentialCurriculum(1, 3, 0.1, 0), ValueError, ("window", ">= 1", "0")),
    (lambda: ExponentialCurriculum(1, 3, float("nan"), 2), ValueError, ("threshold", "finite", "nan")),
    (lambda: ExponentialCurriculum(1, 3, "0.1", 2), TypeError, ("threshold", "str")),
    (lambda: ExponentialCurriculum(1, 3, 0.1, 2).update(float("inf")), ValueError, ("loss", "finite", "inf")),
    (lambda: ExponentialCurriculum(1, 3, 0.1, 2).draw(None), TypeError, ("rng", "Generator", "NoneType")),
    (lambda: ExponentialCurriculum(1, 3, 0.1, 2).load_state_dict({}), ValueError, ("state", "current_max")),
]


@pytest.mark.parametrize(("call", "exc", "fragments"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_raises_naming_the_argument_expected_and_given(call, exc, fragments):
    with pytest.raises(exc) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value)
