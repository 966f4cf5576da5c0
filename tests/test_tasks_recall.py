"""Associative recall and key-value recall (refmann/tasks/recall.py): the target is the item after the
query / the value of the cued key, and every item or pair gets queried."""

from __future__ import annotations

import numpy as np
from hypothesis import given

from refmann.tasks import AssociativeRecall, KeyValueRecall
from tests.task_cases import (
    associative_recall_tasks,
    batch_sizes,
    decode_associative_recall,
    decode_key_value_recall,
    key_value_recall_tasks,
    seeds,
)


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
        assert counts[n - 1] == 0  # the last item has no successor
        assert np.all(counts[: n - 1] > 0.5 * len(qs) / (n - 1)), (n, counts)


def test_associative_recall_fills_a_tiny_pattern_space_without_repeats():
    task = AssociativeRecall(bits=1, item_length=2, min_items=4, max_items=4)  # all 4 patterns
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
