"""The op registry: every forward/backward pair, with example inputs drawn away from its kinks.

Each op module registers its pairs beside their definitions::

    register_op("dense_read", dense_read_forward, dense_read_backward,
                example=lambda rng, s: ((rng.standard_normal((s.B, s.N, s.W)), simplex(rng, s.B, s.H, s.N)), {}))

``refmann gradcheck``, :func:`refmann.gradcheck.op_example`, the float32 and PyTorch cross-checks
walk :data:`OPS`, so a new op is checked everywhere by registering it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class ExampleSizes(NamedTuple):
    """The sizes an example is drawn at (small: every number can be read)."""

    B: int = 2  # batch
    H: int = 2  # heads
    N: int = 6  # memory slots
    W: int = 4  # word size
    K: int = 3  # neighbours (K ≤ N)
    S: int = 3  # shift width (odd)
    X: int = 3  # input size
    C: int = 4  # hidden size


Example = Callable[[np.random.Generator, ExampleSizes], tuple[tuple, dict]]


@dataclass(frozen=True)
class OpSpec:
    """One op: its pair and a function drawing well-conditioned ``(arrays, hyper)`` for it."""

    name: str
    forward: Callable
    backward: Callable
    example: Example
    module: str  # the ops module that defines it (for the docs)


#: Every registered op by name, in registration order (what ``refmann gradcheck`` walks).
OPS: dict[str, OpSpec] = {}


def register_op(name: str, forward: Callable, backward: Callable, *, example: Example) -> OpSpec:
    """Add an op to :data:`OPS` (its forward must be ``<name>_forward``, its backward ``<name>_backward``)."""
    if name in OPS:
        raise ValueError(f"name: op {name!r} is registered twice")
    if forward.__name__ != f"{name}_forward" or backward.__name__ != f"{name}_backward":
        raise ValueError(f"name: expected {name}_forward/{name}_backward, got {forward.__name__}/{backward.__name__}")
    spec = OpSpec(name, forward, backward, example, forward.__module__)
    OPS[name] = spec
    return spec


# -- helpers for examples: inputs away from kinks -------------------------------------------------


def simplex(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Rows on the probability simplex with every entry > 0 (a softmax of normal logits)."""
    e = np.exp(rng.standard_normal(shape))
    return e / e.sum(-1, keepdims=True)


def away_from_zero(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Entries with 0.1 ≤ :math:`|x|` ≤ 2 (relu's kink stays outside a finite-difference stencil)."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def distinct_indices(rng: np.random.Generator, B: int, H: int, N: int, K: int) -> np.ndarray:
    """int (B, H, K): K distinct rows of N per head."""
    return np.stack([np.stack([rng.choice(N, K, replace=False) for _ in range(H)]) for _ in range(B)])
