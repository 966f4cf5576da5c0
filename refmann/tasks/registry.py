"""Build a task by name, e.g. from a command line or a config file."""

from __future__ import annotations

from refmann.tasks._base import Task
from refmann.tasks.babi import BabiTask
from refmann.tasks.copying import Copy, RepeatCopy
from refmann.tasks.facts import Facts
from refmann.tasks.omniglot import OneShotTask
from refmann.tasks.recall import AssociativeRecall, KeyValueRecall
from refmann.tasks.sorting import PrioritySort

TASKS: dict[str, type[Task]] = {
    "copy": Copy,
    "repeat_copy": RepeatCopy,
    "associative_recall": AssociativeRecall,
    "key_value_recall": KeyValueRecall,
    "priority_sort": PrioritySort,
    "facts": Facts,
    "one_shot": OneShotTask,
    "babi": BabiTask,
}


def make_task(name: str, **kwargs) -> Task:
    """Construct the task called ``name`` with the given configuration.

    Parameters
    ----------
    name : str
        One of ``"copy"``, ``"repeat_copy"``, ``"associative_recall"``, ``"key_value_recall"``,
        ``"priority_sort"``, ``"facts"`` (token inputs: for the transformer), ``"babi"`` and
        ``"one_shot"`` (softmax over classes; they read a ``data`` folder or make their own).
    **kwargs
        The task's constructor arguments, e.g. ``bits=8, max_length=20``.

    Examples
    --------
    >>> make_task("copy", bits=4)
    Copy(bits=4, min_length=1, max_length=20)
    """
    try:
        cls = TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"name: expected one of {', '.join(map(repr, TASKS))}, got {name!r}") from None
    return cls(**kwargs)
