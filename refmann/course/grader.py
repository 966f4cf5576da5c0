"""The grader's machinery: checks with points, a score table, and messages that say what is wrong.

An assignment is a list of :class:`Check` s. Each check runs on the namespace of a student's work (the
functions their notebook or module defines) and either passes or returns one sentence naming what is
off: a missing function, a stub that still raises ``NotImplementedError``, a wrong shape, NaNs, a
gradient off by a factor of β or of the wrong sign, a known mistake ("rows looked up twice got one
contribution"). :func:`op_checks` builds the usual four for a forward/backward pair: the forward against
refmann's op, the backward against refmann's, the pair against central differences
(:func:`refmann.gradcheck.check_op`), and purity and linearity in ``dout`` (:mod:`refmann.testing`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .. import ops, testing
from ..gradcheck import _positional_names, check_op
from ..ops import RowGrad, densify_rows

__all__ = ["Check", "CheckError", "Report", "Result", "diagnose", "grade", "op_checks", "student"]

#: The tolerances of "equal to refmann": float64 rounding of a different but correct summation order.
RTOL, ATOL = 1e-7, 1e-9
#: A forward/backward pair passes the finite-difference check at this relative error (refmann's own
#: model tolerance; a missing term gives ~1e-1).
GRADCHECK_TOL = 1e-6


class CheckError(Exception):
    """Raised by a check with the sentence the student reads."""


class Result(NamedTuple):
    check: str  # what was checked
    points: float  # earned
    out_of: float  # available
    message: str  # "ok", or what is wrong


class Report(NamedTuple):
    """The grade of one assignment: a row per check; ``str(report)`` is the score table."""

    assignment: str
    results: list  # list[Result]

    @property
    def score(self) -> float:
        return sum(r.points for r in self.results)

    @property
    def total(self) -> float:
        return sum(r.out_of for r in self.results)

    @property
    def passed(self) -> bool:
        """Full marks."""
        return self.score == self.total

    def __str__(self) -> str:
        width = max([5, *(len(r.check) for r in self.results)])
        lines = [f"{self.assignment}: {self.score:g} / {self.total:g}", ""]
        lines.append(f"  {'check':<{width}}  points  result")
        for r in self.results:
            mark = "ok" if r.points == r.out_of else r.message
            lines.append(f"  {r.check:<{width}}  {r.points:>2g}/{r.out_of:<3g}  {mark}")
        return "\n".join(lines)


class Check(NamedTuple):
    """One graded item: ``run(namespace)`` raises :class:`CheckError` (or anything) when it fails."""

    name: str
    points: float
    run: Callable[[dict], None]


def student(ns: dict, name: str) -> Callable:
    """The student's function ``name``, or a :class:`CheckError` saying to define it."""
    f = ns.get(name)
    if f is None:
        raise CheckError(f"define `{name}` (not found in your work)")
    if not callable(f):
        raise CheckError(f"`{name}` is a {type(f).__name__}, expected a function")
    return f


def grade(assignment: str, checks: list, ns: dict) -> Report:
    """Run every check on the namespace ``ns``; a failing check scores 0 and says why."""
    results = []
    for check in checks:
        try:
            check.run(ns)
        except CheckError as e:
            results.append(Result(check.name, 0, check.points, str(e)))
        except NotImplementedError:
            results.append(
                Result(check.name, 0, check.points, "not implemented yet (the stub raises NotImplementedError)")
            )
        except Exception as e:  # the student's code raised: say what and where
            frame = traceback.extract_tb(e.__traceback__)[-1]
            where = f" (line {frame.lineno} of {frame.name})" if frame.filename.startswith("<") else ""
            results.append(Result(check.name, 0, check.points, f"raised {type(e).__name__}: {e}{where}"))
        else:
            results.append(Result(check.name, check.points, check.points, "ok"))
    return Report(assignment, results)


# -- diagnosis ------------------------------------------------------------------------------------------


def _dense(x):
    if isinstance(x, RowGrad):
        return densify_rows(x)
    if isinstance(x, tuple) and len(x) == 3 and hasattr(x, "indices"):  # a RowGrad look-alike
        return densify_rows(RowGrad(*x))
    return x


def _close(a, b, scale) -> bool:
    return bool(np.allclose(a, b, rtol=RTOL, atol=ATOL * max(1.0, scale)))


def diagnose(name: str, got, want, *, factors=(), mistakes=(), others=()) -> str | None:
    """``None`` when ``got`` equals ``want`` to rounding, else one sentence on how it differs.

    Parameters
    ----------
    name : str
        What the array is (``"dkeys"``).
    got, want : ndarray (a :class:`~refmann.ops.RowGrad` is densified)
    factors : sequence of (label, array)
        Named factors broadcastable to ``want``: ``got ≈ want · f`` reports "off by a factor of label"
        (and ``want / f`` "of 1/label").
    mistakes : sequence of (sentence, array)
        Known wrong answers: ``got ≈ array`` reports the sentence.
    others : sequence of (label, array)
        Arrays the student may have mixed up with this one (another gradient).
    """
    want = np.asarray(_dense(want), dtype=np.float64)
    if got is None:
        return f"{name} is None, expected an array of shape {want.shape}"
    try:
        got = np.asarray(_dense(got), dtype=np.float64)
    except (TypeError, ValueError):
        return f"{name} is a {type(got).__name__}, expected an array of shape {want.shape}"
    if got.shape != want.shape:
        return f"{name} has shape {got.shape}, expected {want.shape}"
    bad = int(np.size(got) - np.count_nonzero(np.isfinite(got)))
    if bad:
        return f"{name} holds {bad} NaN or infinite entries"
    scale = float(np.max(np.abs(want), initial=0.0))
    if _close(got, want, scale):
        return None
    for sentence, wrong in mistakes:
        wrong = np.asarray(_dense(wrong), dtype=np.float64)
        if wrong.shape == want.shape and _close(got, wrong, scale):
            return f"{name}: {sentence}"
    if scale > 0 and float(np.max(np.abs(got), initial=0.0)) <= ATOL * scale:
        return f"{name} is all zeros"
    if _close(got, -want, scale):
        return f"{name} has the wrong sign"
    for label, f in factors:
        f = np.asarray(f, dtype=np.float64)
        if _close(got, want * f, scale):
            return f"{name} is off by a factor of {label}"
        if np.all(f != 0) and _close(got, want / f, scale):
            return f"{name} is off by a factor of 1/{label}"
    for label, other in others:
        other = np.asarray(_dense(other), dtype=np.float64)
        if other.shape == want.shape and _close(got, other, scale):
            return f"{name} equals {label}: are two outputs swapped?"
    denom = float(np.vdot(want, want))
    if denom > 0:
        c = float(np.vdot(got, want)) / denom
        if abs(c - 1) > 1e-6 and _close(got, c * want, scale):
            return f"{name} is off by a constant factor of {c:.4g}"
    err = np.abs(got - want) / (np.abs(want) + ATOL * max(1.0, scale))
    i = np.unravel_index(int(np.argmax(err)), err.shape)
    wrong = int(np.count_nonzero(~np.isclose(got, want, rtol=RTOL, atol=ATOL * max(1.0, scale))))
    return (
        f"{name} is wrong in {wrong} of {got.size} entries; the worst at index {tuple(int(j) for j in i)}: "
        f"got {got[i]:.6g}, expected {want[i]:.6g}"
    )


def _parts(x) -> tuple:
    return x if isinstance(x, tuple) and not isinstance(x, RowGrad) else (x,)


def compare(names, got, want, **kw) -> None:
    """Raise :class:`CheckError` naming every difference between the tuples ``got`` and ``want``."""
    got, want = _parts(got), _parts(want)
    if len(got) != len(want):
        raise CheckError(f"returned {len(got)} values, expected {len(want)} ({', '.join(names)})")
    messages = []
    for i, (n, g, w) in enumerate(zip(names, got, want)):
        others = [(f"the expected {m}", wo) for j, (m, wo) in enumerate(zip(names, want)) if j != i]
        factors, mistakes = kw.get("factors", {}).get(n, ()), kw.get("mistakes", {}).get(n, ())
        msg = diagnose(n, g, w, factors=factors, mistakes=mistakes, others=others)
        if msg:
            messages.append((n, msg[len(n) :]))
    if messages:
        grouped: dict = {}  # one known mistake, said once for all the gradients it explains
        for n, rest in messages:
            grouped.setdefault(rest if rest.startswith(":") else (n, rest), []).append(n)
        raise CheckError("; ".join(", ".join(ns) + (k if isinstance(k, str) else k[1]) for k, ns in grouped.items()))


# -- the four checks of an op ----------------------------------------------------------------------------


class Case(NamedTuple):
    """One draw of an op's inputs (kept away from kinks), its random upstream gradient, and labels."""

    inputs: tuple  # the positional arrays
    hyper: dict  # the keyword arguments
    dout: Any  # an array or a tuple, shaped like the output
    factors: dict  # gradient name -> [(label, array)]
    mistakes: dict  # gradient name -> [(sentence, array)]


def op_checks(
    op: str,
    cases: Callable[[], list],
    *,
    forward: str | None = None,
    backward: str | None = None,
    points=(2, 3, 1, 1),
    out_names=("out",),
    reference: tuple | None = None,
    label: str | None = None,
) -> list[Check]:
    """The forward, the backward, finite differences, and purity of the student's pair for ``op``.

    Parameters
    ----------
    op : str
        The refmann op the pair must equal (``refmann.ops.<op>_forward``), unless ``reference`` is given.
    cases : callable
        ``() -> list[Case]``: the inputs to grade on.
    forward, backward : str
        The names the student defines; default ``<op>_forward`` and ``<op>_backward``.
    points : 4 numbers
        Of the forward, backward, finite-difference and purity checks.
    out_names : tuple of str
        The outputs' names, for messages.
    reference : (forward, backward), optional
        Instead of refmann's op.
    """
    fname, bname = forward or f"{op}_forward", backward or f"{op}_backward"
    ref_f, ref_b = reference or (getattr(ops, f"{op}_forward"), getattr(ops, f"{op}_backward"))
    label = label or op

    def names(case):
        return [f"d{n}" for n in _positional_names(ref_f, len(case.inputs))]

    def run_forward(ns):
        f = student(ns, fname)
        for case in cases():
            got = f(*case.inputs, **case.hyper)
            if not (isinstance(got, tuple) and len(got) == 2):
                raise CheckError(f"`{fname}` must return (out, cache), got {type(got).__name__}")
            want, _ = ref_f(*case.inputs, **case.hyper)
            compare(out_names, got[0], want)

    def run_backward(ns):
        f, b = student(ns, fname), student(ns, bname)
        for case in cases():
            _, cache = f(*case.inputs, **case.hyper)
            got = b(case.dout, cache)
            _, ref_cache = ref_f(*case.inputs, **case.hyper)
            want = ref_b(case.dout, ref_cache)
            compare(names(case), got, want, factors=case.factors, mistakes=case.mistakes)

    def run_gradcheck(ns):
        f, b = student(ns, fname), student(ns, bname)
        for case in cases()[:2]:
            report = check_op(f, b, *case.inputs, **case.hyper)
            if not report.ok(GRADCHECK_TOL):
                worst = max(report.inputs, key=lambda r: r.max_rel_error)
                raise CheckError(
                    f"your forward and backward disagree with central differences: d{worst.name} has relative "
                    f"error {worst.max_rel_error:.1e} (a right pair gives < {GRADCHECK_TOL:g})"
                )

    def run_pure(ns):
        pair = (student(ns, fname), student(ns, bname))
        case = cases()[0]
        try:
            testing.assert_pure(pair, *[np.copy(x) for x in case.inputs], **case.hyper)
            testing.assert_linear_in_dout(pair, *case.inputs, rtol=1e-8, atol=1e-10, **case.hyper)
        except AssertionError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "an assertion failed"
            raise CheckError(first) from None

    return [
        Check(f"{label}: forward", points[0], run_forward),
        Check(f"{label}: backward", points[1], run_backward),
        Check(f"{label}: finite differences", points[2], run_gradcheck),
        Check(f"{label}: pure, linear in dout", points[3], run_pure),
    ]
