"""Properties every task shares (refmann/tasks/_base.py): batch shapes and dtypes, binary targets and mask
that follow from the inputs, unscored padding, bit errors, levels, seeds; and bad input named.

The targets are checked against what the *inputs* say they should be (tests/task_cases.py decodes the
documented channel layout independently of the generator's code).
"""

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
from tests.task_cases import any_task, batch_sizes, decode, seeds


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
        assert np.any(batch.mask[T_b - 1, b] == 1)  # the sequence ends on a scored step


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
    logits[batch.mask == 0] *= -1.0  # every unscored (and padding) bit wrong
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
