"""make_task (refmann/tasks/registry.py) builds the named task class with its config."""

import pytest

from refmann.tasks import AssociativeRecall, Copy, KeyValueRecall, PrioritySort, RepeatCopy, make_task


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("copy", Copy),
        ("repeat_copy", RepeatCopy),
        ("associative_recall", AssociativeRecall),
        ("key_value_recall", KeyValueRecall),
        ("priority_sort", PrioritySort),
    ],
)
def test_make_task_builds_the_named_class_with_its_config(name, cls):
    task = make_task(name, bits=3)
    assert type(task) is cls and task.bits == 3 and task == cls(bits=3)
