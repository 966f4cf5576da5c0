"""Hypothesis strategies for well-conditioned op inputs (away from kinks) and small shapes."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

SMALL = st.integers(1, 4)


def floats(lo=-2.0, hi=2.0):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def f64(shape, lo=-2.0, hi=2.0):
    """float64 arrays of ``shape`` with entries in [lo, hi]."""
    return arrays(np.float64, shape, elements=floats(lo, hi))


def simplex(shape):
    """Rows on the probability simplex, every entry ≥ about 0.01/n (softmax of bounded logits)."""
    return f64(shape, -2.0, 2.0).map(lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True))


def gates(shape):
    """Gates in [0.05, 0.95]: off the clamp at 0 and 1."""
    return f64(shape, 0.05, 0.95)


def away_from_zero(shape, margin=0.01):
    """Entries with |x| ≥ margin (relu's kink at 0 stays far outside the stencil's 2h)."""
    return f64(shape, margin, 2.0).flatmap(
        lambda mag: arrays(np.bool_, shape).map(lambda neg: np.where(neg, -mag, mag))
    )


def separated_scores(shape, gap=1e-2):
    """Scores whose entries along the last axis differ pairwise by at least ``gap``: top-k cannot flip."""
    n = shape[-1]
    return st.randoms(use_true_random=False).map(
        lambda r: np.stack(
            [np.array(r.sample(range(n * 3), n), dtype=float) * gap for _ in range(int(np.prod(shape[:-1])))]
        ).reshape(shape)
    )


def indices(upper, shape, force_duplicates=False):
    """int64 index arrays in [0, upper); with ``force_duplicates`` the last column repeats the first."""
    strat = arrays(np.int64, shape, elements=st.integers(0, upper - 1))
    if force_duplicates and shape[-1] >= 2:
        def dup(a):
            a = a.copy()
            a[..., -1] = a[..., 0]
            return a
        strat = strat.map(dup)
    return strat


def distinct_indices(upper, shape):
    """int64 arrays of shape (..., K) with distinct entries along the last axis (K ≤ upper)."""
    k = shape[-1]
    lead = int(np.prod(shape[:-1]))
    return st.lists(st.permutations(range(upper)).map(lambda p: list(p[:k])), min_size=lead, max_size=lead).map(
        lambda rows: np.array(rows, dtype=np.int64).reshape(shape)
    )


@st.composite
def memory_dims(draw, max_heads=3):
    """(B, H, N, W) with small sizes."""
    return draw(SMALL), draw(st.integers(1, max_heads)), draw(st.integers(1, 6)), draw(SMALL)
