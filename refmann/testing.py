"""Test helpers for refmann's ops and for your own: hypothesis strategies and the op properties.

refmann's own test suite is built from these, and they work unchanged on any forward/backward pair
that follows refmann's convention (``forward(*arrays, **hyper) -> (out, cache)``,
``backward(dout, cache) -> tuple of gradients``), so a student's op or a port can be tested the
same way::

    from hypothesis import given
    from refmann.testing import assert_gradients_match, assert_linear_in_dout, assert_pure, f64, simplex

    @given(memory=f64((2, 5, 3)), weights=simplex((2, 4, 5)))
    def test_my_dense_read(memory, weights):
        op = (my_dense_read_forward, my_dense_read_backward)
        assert_gradients_match(op, memory, weights)
        assert_pure(op, memory, weights)
        assert_linear_in_dout(op, memory, weights)

**Strategies** draw small, well-conditioned float64 inputs: kept away from the kinks where a
finite-difference check would straddle a non-differentiable point (relu at 0, top-k ties, gate
clamps), plus index arrays that force duplicates, which is where a scatter-add written as
``out[idx] += rows`` silently drops updates.

**Assertions** check the properties every op must have: its backward equals central differences
(:func:`assert_gradients_match`), it never writes into its inputs, ``dout`` or its cache and
gives the same gradients twice (:func:`assert_pure`), and its backward is linear in ``dout``
(:func:`assert_linear_in_dout`, which catches state leaking between calls). Each raises
``AssertionError`` saying what went wrong.

hypothesis is a test dependency: ``pip install "refmann[test]"``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by tests/test_testing.py
    raise ImportError(
        'refmann.testing needs hypothesis, which comes with the test extra: pip install "refmann[test]"'
    ) from exc

from . import ops
from .gradcheck import TOLERANCES, check_op

__all__ = [
    # strategies
    "SMALL",
    "floats",
    "f64",
    "simplex",
    "gates",
    "away_from_zero",
    "separated_scores",
    "indices",
    "distinct_indices",
    "memory_dims",
    # assertions
    "resolve_op",
    "assert_gradients_match",
    "assert_pure",
    "assert_linear_in_dout",
]

# -- strategies -------------------------------------------------------------------------------------------

#: Small sizes (1–4) for B, H, W, ...: a full elementwise gradient check stays cheap.
SMALL = st.integers(1, 4)


def floats(lo=-2.0, hi=2.0):
    """Finite float64 scalars in ``[lo, hi]``: no NaN, no infinity, no subnormals.

    Parameters
    ----------
    lo, hi : float
        Inclusive bounds.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of float
    """
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def f64(shape, lo=-2.0, hi=2.0):
    """float64 arrays of ``shape`` with every entry in ``[lo, hi]`` (see :func:`floats`).

    Parameters
    ----------
    shape : int or tuple of int
    lo, hi : float
        Inclusive bounds of the entries.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of ndarray, shape ``shape``, dtype float64
    """
    return arrays(np.float64, shape, elements=floats(lo, hi))


def simplex(shape):
    """Arrays whose rows (last axis) lie strictly inside the probability simplex.

    Each row is the softmax of logits drawn in [−2, 2], so it sums to 1 (up to rounding) and every
    entry is at least :math:`1 / (1 + (n - 1) e^4)` for a row of length n: well away from 0, where
    a weight's gradient through a log or a renormalisation would blow up.

    Parameters
    ----------
    shape : tuple of int
        The last axis is the simplex's.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of ndarray, shape ``shape``, dtype float64
    """
    return f64(shape, -2.0, 2.0).map(lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True))


def gates(shape):
    """Gates (sigmoid outputs such as SAM's α and γ) with every entry in [0.05, 0.95], off the clamps at 0 and 1.

    Parameters
    ----------
    shape : int or tuple of int

    Returns
    -------
    hypothesis.strategies.SearchStrategy of ndarray, shape ``shape``, dtype float64
    """
    return f64(shape, 0.05, 0.95)


def away_from_zero(shape, margin=0.01):
    """Entries of either sign with ``margin <= |x| <= 2``.

    relu-like kinks at 0 then stay far outside a finite-difference stencil (which reaches ``2h``
    around each entry, ``h = 1e-4`` by default).

    Parameters
    ----------
    shape : int or tuple of int
    margin : float
        Smallest magnitude, in [0, 2).

    Returns
    -------
    hypothesis.strategies.SearchStrategy of ndarray, shape ``shape``, dtype float64
    """
    if not 0.0 <= margin < 2.0:
        raise ValueError(f"margin: expected 0 <= margin < 2, got {margin}")
    return f64(shape, margin, 2.0).flatmap(
        lambda mag: arrays(np.bool_, shape).map(lambda neg: np.where(neg, -mag, mag))
    )


def separated_scores(shape, gap=1e-2):
    """Scores whose entries along the last axis differ pairwise by at least ``gap``: top-k cannot flip.

    Each row is n distinct multiples of a spacing drawn from 0, 1, ..., 3n − 1, in random order, so
    a finite-difference step much smaller than ``gap`` never reorders the scores. The spacing is
    ``gap · (1 + 1e-9)``, so that differences computed in floating point are still at least ``gap``.

    Parameters
    ----------
    shape : tuple of int
        The last axis (n entries) is the one whose entries are separated.
    gap : float
        Smallest difference between two entries of a row, > 0.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of ndarray, shape ``shape``, dtype float64
    """
    if not gap > 0:
        raise ValueError(f"gap: expected a positive float, got {gap}")
    n = shape[-1]
    rows = int(np.prod(shape[:-1]))
    step = gap * (1.0 + 1e-9)
    return st.randoms(use_true_random=False).map(
        lambda r: np.stack([np.array(r.sample(range(n * 3), n), dtype=float) * step for _ in range(rows)]).reshape(
            shape
        )
    )


def indices(upper, shape, force_duplicates=False):
    """int64 index arrays with entries in ``[0, upper)``.

    Parameters
    ----------
    upper : int
        Exclusive upper bound (the number of rows indexed), >= 1.
    shape : tuple of int
    force_duplicates : bool
        If true, the last entry of every row (last axis) repeats its first, so each row of length
        >= 2 holds a duplicate: where ``out[idx] += rows`` keeps only one of the updates and a
        correct scatter-add (``np.add.at``) keeps both. Rows of length 1 cannot hold one.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of ndarray, shape ``shape``, dtype int64
    """
    strat = arrays(np.int64, shape, elements=st.integers(0, upper - 1))
    if force_duplicates and shape[-1] >= 2:

        def dup(a):
            a = a.copy()
            a[..., -1] = a[..., 0]
            return a

        strat = strat.map(dup)
    return strat


def distinct_indices(upper, shape):
    """int64 index arrays whose entries along the last axis are distinct, in ``[0, upper)``.

    Parameters
    ----------
    upper : int
        Exclusive upper bound; the last axis must have at most ``upper`` entries.
    shape : tuple of int

    Returns
    -------
    hypothesis.strategies.SearchStrategy of ndarray, shape ``shape``, dtype int64
    """
    k = shape[-1]
    if k > upper:
        raise ValueError(f"shape: expected at most upper = {upper} entries on the last axis, got {k}")
    lead = int(np.prod(shape[:-1]))
    return st.lists(st.permutations(range(upper)).map(lambda p: list(p[:k])), min_size=lead, max_size=lead).map(
        lambda rows: np.array(rows, dtype=np.int64).reshape(shape)
    )


@st.composite
def memory_dims(draw, max_heads=3):
    """Small memory sizes ``(B, H, N, W)``: B, W in 1..4, H in 1..max_heads, N in 1..6.

    Parameters
    ----------
    max_heads : int
        Largest number of heads H.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of tuple of int
    """
    return draw(SMALL), draw(st.integers(1, max_heads)), draw(st.integers(1, 6)), draw(SMALL)


# -- assertions -------------------------------------------------------------------------------------------


def resolve_op(op) -> tuple[Callable, Callable]:
    """The ``(forward, backward)`` pair an assertion checks.

    Parameters
    ----------
    op : str or tuple of (callable, callable)
        The name of a refmann op (``"dense_read"`` means ``refmann.ops.dense_read_forward`` and
        ``refmann.ops.dense_read_backward``), or your own ``(forward, backward)`` pair.

    Returns
    -------
    forward, backward : callable
    """
    if isinstance(op, str):
        try:
            return getattr(ops, f"{op}_forward"), getattr(ops, f"{op}_backward")
        except AttributeError:
            raise ValueError(
                f"op: expected the name of a refmann op (refmann.ops.<name>_forward), got {op!r}"
            ) from None
    if isinstance(op, tuple) and len(op) == 2 and all(callable(f) for f in op):
        return op
    raise TypeError(f"op: expected an op name or a (forward, backward) pair of callables, got {op!r}")


def assert_gradients_match(op, *inputs, seed=0, **hyper):
    """Assert the backward equals central differences, within ``TOLERANCES['op']``, for every positional input.

    Parameters
    ----------
    op : str or tuple of (callable, callable)
        See :func:`resolve_op`.
    *inputs : ndarray
        The op's positional (differentiated) arrays, float64.
    seed : int
        Seeds the random upstream gradient.
    **hyper
        The op's keyword arguments (indices, eps, k, ...).

    Returns
    -------
    refmann.gradcheck.GradCheckReport
        The report of :func:`refmann.gradcheck.check_op`, on success.

    Raises
    ------
    AssertionError
        With the report (maximum error per input) when an input's gradient is off.
    """
    forward, backward = resolve_op(op)
    report = check_op(forward, backward, *inputs, seed=seed, **hyper)
    assert report.ok(TOLERANCES["op"]), str(report)
    return report


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _random_like(out, rng):
    """A standard normal upstream gradient shaped like ``out`` (an array or a tuple of arrays)."""
    if isinstance(out, tuple):
        return tuple(rng.standard_normal(np.shape(o)) for o in out)
    return rng.standard_normal(np.shape(out))


def _combine(a, x, b, y):
    """a·x + b·y for arrays or tuples of arrays."""
    if isinstance(x, tuple):
        return tuple(a * xi + b * yi for xi, yi in zip(x, y))
    return a * x + b * y


def _grads_as_arrays(grads):
    """The gradients as dense arrays (a :class:`~refmann.ops.RowGrad` is densified)."""
    return [ops.densify_rows(g) if isinstance(g, ops.RowGrad) else np.asarray(g) for g in _as_tuple(grads)]


def _arrays_in(obj):
    """Every ndarray inside a (possibly nested) tuple, NamedTuple, list or dict, in a fixed order."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [a for x in obj for a in _arrays_in(x)]
    if isinstance(obj, dict):
        return [a for key in obj for a in _arrays_in(obj[key])]
    return []


def assert_pure(op, *inputs, **hyper) -> None:
    """Assert the op is pure: nothing it is given is written to, and its backward is repeatable.

    Runs forward, then backward twice on the same ``dout`` and cache, and checks that the inputs,
    ``dout`` and every array in the cache are unchanged, and that both calls return the same
    gradients.

    Parameters
    ----------
    op : str or tuple of (callable, callable)
        See :func:`resolve_op`.
    *inputs : ndarray
        The op's positional arrays.
    **hyper
        The op's keyword arguments.

    Raises
    ------
    AssertionError
        Naming what was written to, or which gradient differed between the two calls.
    """
    forward, backward = resolve_op(op)
    before = [np.copy(x) for x in inputs]
    out, cache = forward(*inputs, **hyper)
    for i, (x, b) in enumerate(zip(inputs, before)):
        np.testing.assert_array_equal(x, b, err_msg=f"forward wrote into positional input {i}")
    dout = _random_like(out, np.random.default_rng(1))
    dout_before = [np.copy(d) for d in _as_tuple(dout)]
    cache_before = [np.copy(a) for a in _arrays_in(cache)]
    first = _grads_as_arrays(backward(dout, cache))
    second = _grads_as_arrays(backward(dout, cache))
    for i, (x, b) in enumerate(zip(inputs, before)):
        np.testing.assert_array_equal(x, b, err_msg=f"backward wrote into positional input {i}")
    for i, (d, b) in enumerate(zip(_as_tuple(dout), dout_before)):
        np.testing.assert_array_equal(d, b, err_msg=f"backward wrote into dout[{i}]")
    cache_after = _arrays_in(cache)
    assert len(cache_after) == len(cache_before), "backward changed the structure of the cache"
    for i, (a, b) in enumerate(zip(cache_after, cache_before)):
        np.testing.assert_array_equal(a, b, err_msg=f"backward wrote into the cache (array {i} of the cache)")
    assert len(first) == len(second), "backward returned a different number of gradients on a second call"
    for i, (g1, g2) in enumerate(zip(first, second)):
        np.testing.assert_array_equal(g1, g2, err_msg=f"backward is not repeatable: gradient {i} changed")


def assert_linear_in_dout(op, *inputs, rtol=1e-10, atol=1e-10, **hyper) -> None:
    r"""Assert the backward is linear in ``dout``, as every vector-Jacobian product is:

    .. math:: \text{bwd}(2 d_1 - 3 d_2) = 2\,\text{bwd}(d_1) - 3\,\text{bwd}(d_2)

    The check is cheap, and it catches a backward that uses ``dout`` non-linearly, adds a term that
    does not scale with it, or carries state from one call to the next.

    Parameters
    ----------
    op : str or tuple of (callable, callable)
        See :func:`resolve_op`.
    *inputs : ndarray
        The op's positional arrays.
    rtol, atol : float
        Tolerances of the comparison (rounding only: the identity is exact in exact arithmetic).
    **hyper
        The op's keyword arguments.

    Raises
    ------
    AssertionError
        Naming the gradient that is not linear in ``dout``.
    """
    forward, backward = resolve_op(op)
    out, cache = forward(*inputs, **hyper)
    rng = np.random.default_rng(2)
    d1, d2 = _random_like(out, rng), _random_like(out, rng)
    g = _grads_as_arrays(backward(_combine(2.0, d1, -3.0, d2), cache))
    g1 = _grads_as_arrays(backward(d1, cache))
    g2 = _grads_as_arrays(backward(d2, cache))
    for i, (a, b, c) in enumerate(zip(g, g1, g2)):
        np.testing.assert_allclose(
            a, 2.0 * b - 3.0 * c, rtol=rtol, atol=atol, err_msg=f"gradient {i} is not linear in dout"
        )
