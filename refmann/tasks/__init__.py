"""Algorithmic tasks of the NTM and SAM papers, with the exponential curriculum, and a token task.

Every task is a frozen dataclass of its configuration with ``input_size``, ``output_size``,
``level_range``, ``sample(batch_size, rng, *, level=None) -> Batch``, its ``loss`` and its
``metric(logits, batch)``. Batches are time-major: ``inputs`` (T, B, X), ``targets`` and
``mask`` (T, B, Y), float64 — except the token task :class:`Facts` (``tokens = True``), whose
inputs and targets are int (T, B), with a mask (T, B).

References
----------
Graves, Wayne & Danihelka (2014), *Neural Turing Machines*, arXiv:1410.5401.
Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
arXiv:1610.09027.
"""

from refmann.tasks._base import Batch, Task, bit_errors, error_rate
from refmann.tasks.babi import BabiTask
from refmann.tasks.copying import Copy, RepeatCopy
from refmann.tasks.curriculum import ExponentialCurriculum
from refmann.tasks.facts import Facts
from refmann.tasks.omniglot import OneShotTask
from refmann.tasks.recall import AssociativeRecall, KeyValueRecall
from refmann.tasks.registry import TASKS, make_task
from refmann.tasks.sorting import PrioritySort

__all__ = [
    "TASKS",
    "AssociativeRecall",
    "BabiTask",
    "Batch",
    "Copy",
    "ExponentialCurriculum",
    "Facts",
    "KeyValueRecall",
    "OneShotTask",
    "PrioritySort",
    "RepeatCopy",
    "Task",
    "bit_errors",
    "error_rate",
    "make_task",
]
