"""Copy and repeat copy (refmann/tasks/copying.py): what is scored, the lengths, the repeat-count code."""

import numpy as np
import pytest
from hypothesis import given

from refmann.tasks import Copy, RepeatCopy
from tests.task_cases import batch_sizes, copy_tasks, decode, seeds


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
    for R in range(lo, hi + 1):  # find one sequence per count
        rng = np.random.default_rng(R)
        while True:
            x = task.sample(1, rng).inputs[:, 0]
            if x.shape[0] == 1 + 2 + R + 1:  # L = 1: length tells R
                codes.append(x[2, 3])
                break
    assert np.mean(codes) == pytest.approx(0.0, abs=1e-12)
    assert np.var(codes) == pytest.approx(1.0)


def test_repeat_copy_single_count_reads_zero():
    task = RepeatCopy(min_repeats=3, max_repeats=3)
    batch = task.sample(5, np.random.default_rng(0), level=4)
    assert batch.inputs.shape[0] == 4 + 2 + 12 + 1
    np.testing.assert_array_equal(batch.inputs[5, :, task.bits + 1], np.zeros(5))


def test_tasks_are_frozen():
    with pytest.raises(AttributeError):
        Copy().bits = 3  # type: ignore[misc]
