r"""A synthetic language with a table of facts: next-token prediction where capacity, not context, is the limit.

The task of experiment E5 (``../shared/notes/seed-methods.md`` §5): product-key memories add capacity
at almost no compute (Lample et al. 2019), and capacity is what a table of arbitrary facts needs.

A *world* (fixed by ``world_seed``) has

- a grammar: a first-order Markov chain over ``num_words`` filler words, each word followed by one
  of ``branching`` successors, uniformly; a filler sentence is 2–6 words and a full stop;
- facts: for every subject s and relation r one object :math:`o(s, r)`, uniform over the objects;
  a fact sentence is the four tokens ``s r o .``.

A sequence is a run of sentences (a fact with probability ``fact_rate``, else a filler sentence; the
first is always a fact) cut to ``length + 1`` tokens; the model reads the first ``length`` and
predicts each next token (softmax cross-entropy on every position). The metric is **fact recall**:
the error rate of the predicted object at the positions whose input is a relation token — the
only positions where the answer is a stored fact, neither grammar nor guess. A model that has
learned the grammar but stored no fact scores :math:`1 - 1/\text{num\_objects}` there.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from refmann._checks import as_float_array
from refmann.tasks._base import Batch, Task, _check_int, _check_rng


@dataclass(frozen=True)
class Facts(Task):
    """Next-token prediction over a Markov grammar interleaved with a table of facts (subject, relation → object).

    Parameters
    ----------
    num_subjects, num_relations, num_objects : int
        S, R, O: S·R facts, each an object drawn uniformly from O.
    num_words : int
        W filler words of the grammar.
    branching : int
        Successors of each filler word (1 ≤ branching ≤ W).
    fact_rate : float
        Probability that a sentence after the first is a fact, in [0, 1].
    length : int
        Tokens read per sequence (the context), ≥ 4.
    world_seed : int
        Seeds the grammar and the fact table (the batches are drawn from the ``rng`` given to
        :meth:`sample`).

    Notes
    -----
    Tokens: 0 is the full stop, then the W words, the S subjects, the R relations and the O objects
    (``input_size = output_size = 1 + W + S + R + O``). Inputs and targets are int (T, B), the mask
    (T, B) is all ones: :class:`~refmann.models.Transformer` with ``tokens=True`` reads them.

    Examples
    --------
    >>> task = Facts(num_subjects=8, num_relations=2, num_objects=4, num_words=6, length=12)
    >>> batch = task.sample(3, np.random.default_rng(0))
    >>> batch.inputs.shape, batch.targets.shape, task.input_size
    ((12, 3), (12, 3), 21)
    """

    num_subjects: int = 256
    num_relations: int = 4
    num_objects: int = 64
    num_words: int = 64
    branching: int = 4
    fact_rate: float = 0.5
    length: int = 16
    world_seed: int = 0

    loss = "softmax_ce"
    metric_name = "fact_errors"
    metric_label = "fact recall error rate"
    metric_target = 0.1
    tokens = True  # inputs are int tokens (T, B)

    def __post_init__(self):
        for name in ("num_subjects", "num_relations", "num_objects", "num_words", "branching"):
            _check_int(getattr(self, name), name, minimum=1)
        _check_int(self.length, "length", minimum=4)
        _check_int(self.world_seed, "world_seed", minimum=0)
        if self.branching > self.num_words:
            raise ValueError(f"branching: expected at most num_words = {self.num_words}, got {self.branching}")
        rate = self.fact_rate
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"fact_rate: expected a number in [0, 1], got {rate!r}")

    # -- the vocabulary ---------------------------------------------------------------------------------
    @property
    def first_subject(self) -> int:
        return 1 + self.num_words

    @property
    def first_relation(self) -> int:
        return self.first_subject + self.num_subjects

    @property
    def first_object(self) -> int:
        return self.first_relation + self.num_relations

    @property
    def input_size(self) -> int:
        return self.first_object + self.num_objects

    @property
    def output_size(self) -> int:
        return self.input_size

    @property
    def level_range(self) -> tuple[int, int]:
        return (1, 1)

    @property
    def num_facts(self) -> int:
        return self.num_subjects * self.num_relations

    # -- the world ----------------------------------------------------------------------------------------
    @cached_property
    def _world(self):
        rng = np.random.default_rng([self.world_seed, 0xFAC7])
        W = self.num_words
        successors = np.stack([rng.choice(W, self.branching, replace=False) for _ in range(W)])  # (W, branching)
        objects = rng.integers(0, self.num_objects, (self.num_subjects, self.num_relations))
        return successors, objects

    @property
    def successors(self) -> np.ndarray:
        """int (W, branching): the words that may follow each word (word indices, not tokens)."""
        return self._world[0]

    @property
    def objects(self) -> np.ndarray:
        """int (S, R): the object index of every fact, :math:`o(s, r)`."""
        return self._world[1]

    def fact_tokens(self, subject: int, relation: int) -> tuple[int, int, int]:
        """The tokens ``(s, r, o)`` of one fact."""
        o = int(self.objects[subject, relation])
        return self.first_subject + subject, self.first_relation + relation, self.first_object + o

    # -- sampling -----------------------------------------------------------------------------------------
    def _sentence(self, rng, fact: bool) -> list[int]:
        if fact:
            s, r = int(rng.integers(self.num_subjects)), int(rng.integers(self.num_relations))
            return [*self.fact_tokens(s, r), 0]
        w = int(rng.integers(self.num_words))
        words = [w]
        for _ in range(int(rng.integers(1, 6))):  # 2-6 words
            w = int(self.successors[w, rng.integers(self.branching)])
            words.append(w)
        return [1 + w for w in words] + [0]

    def sample(self, batch_size: int, rng: np.random.Generator, *, level: int | None = None) -> Batch:
        """A batch of token sequences: ``inputs``, ``targets`` int (T, B) with T = ``length``, ``mask`` ones (T, B)."""
        batch_size = _check_int(batch_size, "batch_size", minimum=1)
        _check_rng(rng)
        if level is not None and level != 1:
            raise ValueError(f"level: expected None or 1 (the task has one level), got {level!r}")
        T = self.length
        seqs = np.empty((batch_size, T + 1), np.int64)
        for b in range(batch_size):
            tokens = self._sentence(rng, True)
            while len(tokens) < T + 1:
                tokens += self._sentence(rng, bool(rng.random() < self.fact_rate))
            seqs[b] = tokens[: T + 1]
        inputs, targets = seqs[:, :T].T.copy(), seqs[:, 1:].T.copy()  # (T, B)
        return Batch(inputs, targets, np.ones((T, batch_size)))

    # -- the metric ---------------------------------------------------------------------------------------
    def fact_positions(self, batch: Batch) -> np.ndarray:
        """bool (T, B): where the input is a relation token, so the target is a fact's object."""
        x = batch.inputs
        return (x >= self.first_relation) & (x < self.first_object)

    def metric(self, logits, batch: Batch) -> np.ndarray:
        r"""Fact recall error rate per sequence, shape (B,): wrong objects over fact positions.

        .. math:: e_b = \frac{\sum_t f_{tb}\,[\arg\max_y \ell_{tby} \ne y^*_{tb}]}{\sum_t f_{tb}}

        with :math:`f` = :meth:`fact_positions` (every sequence has at least one).
        """
        if not isinstance(batch, Batch):
            raise TypeError(f"batch: expected a refmann.tasks.Batch, got {type(batch).__name__}")
        logits = as_float_array(logits, "logits", ndim=3)
        if logits.shape != batch.targets.shape + (self.output_size,):
            raise ValueError(
                f"logits: expected shape {batch.targets.shape + (self.output_size,)} (T, B, vocabulary), "
                f"got {logits.shape}"
            )
        f = self.fact_positions(batch)  # (T, B)
        wrong = (np.argmax(logits, axis=-1) != batch.targets) & f
        return wrong.sum(axis=0) / np.maximum(f.sum(axis=0), 1)
