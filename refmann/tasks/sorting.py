"""Priority sort (Graves et al. 2014, §4.5; Rae et al. 2016, §4.2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refmann.tasks._base import Task, _binary, _check_int, _check_order, _Sequence


@dataclass(frozen=True)
class PrioritySort(Task):
    r"""Priority sort: read vectors with scalar priorities, output the highest-priority ones in order.

    Parameters
    ----------
    bits : int
        Width of each random binary vector (8).
    num_inputs : int
        Number of input vectors n at full difficulty (20 in both papers).
    num_outputs : int
        Number of vectors to output at full difficulty (16 in both papers); ``<= num_inputs``.

    Notes
    -----
    Each vector gets a priority drawn from U[-1, 1); the target is the
    ``m`` vectors of highest priority, in descending priority (ties have probability 0).

    The level is the number of inputs n, in ``1 .. num_inputs``; the number of outputs keeps the
    configured proportion, :math:`m = \lceil n \cdot \text{num\_outputs} / \text{num\_inputs}
    \rceil`, so ``level = num_inputs`` is the paper's task. With ``level=None`` every sequence is
    at full difficulty (n = ``num_inputs``, m = ``num_outputs``), so batches are never padded.

    One sequence lasts ``n + 1 + m`` steps. Input channels (``input_size = bits + 2``)::

        step          0 .. n-1      n           n+1 .. n+m
        ch 0..bits-1  vectors       0           0
        ch bits       priorities    0           0
        ch bits+1     0             1 (delim)   0

    The delimiter (not in the NTM paper's figure) tells the model when to start writing, which
    matters once n varies under a curriculum. Output channels (``output_size = bits``): the
    sorted vectors during steps ``n+1 .. n+m``, where the mask is 1.

    References
    ----------
    Graves, Wayne & Danihelka (2014), *Neural Turing Machines*, arXiv:1410.5401, §4.5.
    Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
    arXiv:1610.09027, §4.2–4.3.
    """

    bits: int = 8
    num_inputs: int = 20
    num_outputs: int = 16

    def __post_init__(self):
        _check_int(self.bits, "bits", minimum=1)
        _check_int(self.num_inputs, "num_inputs", minimum=1)
        _check_int(self.num_outputs, "num_outputs", minimum=1)
        _check_order(self.num_outputs, "num_outputs", self.num_inputs, "num_inputs")

    @property
    def input_size(self) -> int:
        return self.bits + 2

    @property
    def output_size(self) -> int:
        return self.bits

    @property
    def level_range(self) -> tuple[int, int]:
        """``(1, num_inputs)``: the level is the number of input vectors."""
        return (1, self.num_inputs)

    def num_sorted(self, n: int) -> int:
        """Number of vectors output for ``n`` inputs: ``ceil(n * num_outputs / num_inputs)``."""
        return -(-n * self.num_outputs // self.num_inputs)

    def _default_levels(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(batch_size, self.num_inputs)

    def _sequence(self, n: int, rng: np.random.Generator) -> _Sequence:
        bits = self.bits
        m = self.num_sorted(n)
        vectors = _binary(rng, (n, bits))  # (n, bits)
        priority = rng.uniform(-1.0, 1.0, size=n)  # (n,)
        order = np.argsort(-priority, kind="stable")[:m]  # highest first
        T = n + 1 + m
        x = np.zeros((T, bits + 2))
        x[:n, :bits] = vectors
        x[:n, bits] = priority
        x[n, bits + 1] = 1.0  # delimiter
        y = np.zeros((T, bits))
        y[n + 1 :] = vectors[order]
        mask = np.zeros((T, bits))
        mask[n + 1 :] = 1.0
        return _Sequence(x, y, mask)
