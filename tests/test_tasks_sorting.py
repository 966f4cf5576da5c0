"""Priority sort (refmann/tasks/sorting.py): the target is the inputs sorted by descending priority."""

import numpy as np
from hypothesis import given

from refmann.tasks import PrioritySort
from tests.task_cases import batch_sizes, priority_sort_tasks, seeds


@given(priority_sort_tasks(), batch_sizes, seeds)
def test_priority_sort_target_is_the_inputs_sorted_by_descending_priority(task, B, seed):
    batch = task.sample(B, np.random.default_rng(seed))
    n, k = task.num_inputs, task.num_outputs
    assert batch.inputs.shape[0] == n + 1 + k  # full difficulty: no padding
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
