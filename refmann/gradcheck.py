r"""Gradient checking by central finite differences, for refmann's ops and for your own functions.

Any pair following refmann's convention — ``forward(*arrays, **hyper) -> (out, cache)`` and
``backward(dout, cache) -> tuple of gradients`` — can be checked::

    report = check_op(my_forward, my_backward, x, w, eps=1e-6)
    print(report)            # one row per positional input: max abs and relative error
    assert report.ok()

What is checked is the vector-Jacobian product against a *random* upstream gradient ``dout``
(standard normal, seeded): the scalar :math:`\phi(x) = \sum \text{out}(x) \odot \text{dout}` is
differentiated numerically with the five-point central stencil

.. math:: \phi'(x) \approx \frac{-\phi(x+2h) + 8\phi(x+h) - 8\phi(x-h) + \phi(x-2h)}{12h}

(error :math:`O(h^4)`), which at the default ``h = 1e-4`` in float64 is accurate to about 1e-11
relative for smooth functions — tight enough to tell a right backward (≈1e-10) from a subtly
wrong one (≳1e-4). Keep inputs at least ``2h`` away from kinks (relu at 0, top-k ties).

Relative error (:func:`rel_error`) is measured against the largest gradient entry of each input:
:math:`\max|a - n| / \max(\max|a|, \max|n|, 10^{-4})`. Element-wise ratios (CS231n's
``rel_error``) blow up on entries that are zero up to rounding; the norm-relative form does not.
The floor is there because finite differences cannot resolve a gradient much smaller than their
own rounding noise, about :math:`10^{-16} \Phi / h \approx 10^{-12}\Phi` with
:math:`\Phi = \sum |\text{out} \odot \text{dout}|`; :func:`check_op` uses the floor
:math:`10^{-4}\max(1, \Phi)`, so an input whose gradients are all tiny (a stationary point such as
a key parallel to a memory row) is judged on absolute error, at a hundred times the noise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .ops.memory import RowGrad, densify_rows

#: Step of the finite-difference stencil for ops.
DEFAULT_STEP = 1e-4
#: Step for whole models: deep compositions are more curved (a cosine against a nearly empty row is
#: steep), so truncation error dominates at 1e-4; at 1e-5 rounding noise (~1e-10) is still far below
#: the model tolerance.
DEFAULT_MODEL_STEP = 1e-5
#: The one tolerance table: maximum relative error (see :func:`rel_error`) in float64.
TOLERANCES = {"op": 1e-7, "model": 1e-6}
#: Gradient magnitudes below this are compared on absolute error (see the module docstring).
SCALE_FLOOR = 1e-4


def rel_error(analytic, numeric, *, floor: float = SCALE_FLOOR) -> float:
    """``max|a − n| / max(max|a|, max|n|, floor)``: error relative to the largest gradient entry."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"analytic: expected shape {n.shape} (the numeric gradient's), got {a.shape}")
    if a.size == 0:
        return 0.0
    err = float(np.max(np.abs(a - n)))
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(n))), floor)
    return err / scale if scale > 0 else err


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _objective(out, dout, absolute=False) -> float:
    terms = (np.asarray(o, np.float64) * d for o, d in zip(_as_tuple(out), _as_tuple(dout)))
    return float(sum(np.sum(np.abs(t) if absolute else t) for t in terms))


def numerical_vjp(f: Callable, inputs, dout, *, step: float = DEFAULT_STEP, which=None) -> list:
    r"""Numerical :math:`\partial \phi / \partial x_i` for :math:`\phi = \sum f(x) \odot \text{dout}`.

    Parameters
    ----------
    f : callable
        ``f(*inputs)`` returns an array or a tuple of arrays (matching ``dout``).
    inputs : sequence of float64 ndarrays
        Perturbed in place one element at a time and restored afterwards.
    dout : ndarray or tuple of ndarrays
    step : float
        h of the five-point stencil.
    which : iterable of int, optional
        Positions of the inputs to differentiate (default: all). Others get ``None``.

    Returns
    -------
    list of ndarray (or None), one per input
    """
    grads = []
    which = set(range(len(inputs)) if which is None else which)
    for pos, x in enumerate(inputs):
        if pos not in which:
            grads.append(None)
            continue
        g = np.zeros_like(x, dtype=np.float64)
        flat, gflat = x.reshape(-1), g.reshape(-1)
        if not np.shares_memory(flat, x):
            raise ValueError(f"inputs[{pos}]: expected a contiguous array")
        for j in range(flat.size):
            gflat[j] = _central_difference(flat, j, step, lambda: _objective(f(*inputs), dout))
        grads.append(g)
    return grads


def _central_difference(flat, j, step, value_at) -> float:
    r"""The five-point central difference of ``value_at()`` in entry ``j`` of ``flat`` (restored after):
    :math:`f'(x) \approx \frac{-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)}{12h}`, error :math:`O(h^4)`."""
    orig = flat[j]
    values = []
    for delta in (2 * step, step, -step, -2 * step):
        flat[j] = orig + delta
        values.append(value_at())
    flat[j] = orig
    return (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * step)


class InputReport(NamedTuple):
    name: str  # the positional argument's name
    shape: tuple
    max_abs_error: float
    max_rel_error: float  # see rel_error


class GradCheckReport(NamedTuple):
    """Per-input errors of one check; ``str(report)`` is a small table."""

    op: str
    inputs: list  # list[InputReport]
    crossed_kink: bool = False  # a perturbation changed a discrete decision (the check is then meaningless)

    @property
    def max_rel_error(self) -> float:
        """The largest input's error; NaN when any input's is (a NaN gradient never passes ``ok``)."""
        errors = [r.max_rel_error for r in self.inputs]
        if any(np.isnan(e) for e in errors):
            return float("nan")
        return max(errors, default=0.0)

    def ok(self, tol: float = TOLERANCES["op"]) -> bool:
        """True when every input's relative error is at most ``tol``."""
        return self.max_rel_error <= tol

    def __str__(self) -> str:
        lines = [
            f"{self.op}: max relative error {self.max_rel_error:.2e}"
            + ("  (a perturbation crossed a kink)" if self.crossed_kink else "")
        ]
        width = max([12, *(len(r.name) for r in self.inputs)])  # one column, however long the names
        for r in self.inputs:
            lines.append(f"  {r.name:<{width}} {str(r.shape):<16} abs {r.max_abs_error:.2e}  rel {r.max_rel_error:.2e}")
        return "\n".join(lines)


def _positional_names(forward, count):
    try:
        params = [
            p.name for p in inspect.signature(forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]  # fmt: skip
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"input{i}" for i in range(count)]


def _random_like(out, rng):
    if isinstance(out, tuple):
        return tuple(_random_like(o, rng) for o in out)
    return rng.standard_normal(np.shape(out))


def check_op(
    forward: Callable, backward: Callable, *inputs, seed: int = 0, step: float = DEFAULT_STEP, dout=None, **hyper
) -> GradCheckReport:
    """Check ``backward`` against finite differences of ``forward`` for every positional input.

    Parameters
    ----------
    forward, backward : callable
        ``forward(*inputs, **hyper) -> (out, cache)`` where ``out`` is an array or a tuple of
        arrays; ``backward(dout, cache) -> tuple`` of gradients in the order of ``inputs``. A
        gradient may be a :class:`~refmann.ops.RowGrad` (densified here) or ``None`` (skipped:
        documented as non-differentiable).
    *inputs : float64 ndarrays
        Copied; the caller's arrays are never touched.
    seed : int
        Seed of the random upstream gradient.
    step : float
        Finite-difference step.
    dout : ndarray or tuple, optional
        A fixed upstream gradient instead of a random one.
    **hyper
        Keyword arguments for ``forward`` (indices, eps, k, ...).

    Returns
    -------
    GradCheckReport
    """
    if not inputs:
        raise ValueError("inputs: expected at least one array to differentiate, got none")
    xs = []
    for i, x in enumerate(inputs):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"inputs[{i}]: expected a float64 ndarray, got {type(x).__name__}")
        if x.dtype != np.float64:
            raise TypeError(f"inputs[{i}]: expected float64 (finite differences need double precision), got {x.dtype}")
        xs.append(np.array(x, dtype=np.float64, copy=True, order="C"))
    out, cache = forward(*xs, **hyper)
    if dout is None:
        dout = _random_like(out, np.random.default_rng(seed))
    grads = backward(dout, cache)
    grads = _as_tuple(grads)
    names = _positional_names(forward, len(xs))
    if len(grads) != len(xs):
        raise ValueError(f"backward: expected {len(xs)} gradients (one per positional input), got {len(grads)}")
    which = [i for i, g in enumerate(grads) if g is not None]
    numeric = numerical_vjp(lambda *a: forward(*a, **hyper)[0], xs, dout, step=step, which=which)
    floor = SCALE_FLOOR * max(1.0, _objective(out, dout, absolute=True))
    rows = []
    for i in which:
        g = densify_rows(grads[i]) if isinstance(grads[i], RowGrad) else np.asarray(grads[i])
        if g.shape != xs[i].shape:
            raise ValueError(f"backward: gradient {i} ({names[i]}) has shape {g.shape}, expected {xs[i].shape}")
        rows.append(
            InputReport(
                names[i],
                xs[i].shape,
                float(np.max(np.abs(g - numeric[i]), initial=0.0)),
                rel_error(g, numeric[i], floor=floor),
            )
        )
    return GradCheckReport(getattr(forward, "__name__", "op").removesuffix("_forward"), rows)


def _same_trace(a, b) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        for u, v in zip(x or (), y or ()):
            if (u is None) != (v is None) or (u is not None and not np.array_equal(u, v)):
                return False
    return True


def check_model(
    model,
    inputs,
    targets,
    mask=None,
    *,
    keys=None,
    max_entries=None,
    seed=0,
    step: float = DEFAULT_MODEL_STEP,
    **loss_kwargs,
) -> GradCheckReport:
    """Check ``model.loss_and_grads`` against finite differences of ``model.loss`` for every parameter.

    Parameters
    ----------
    model : a refmann model (or any object with ``params``, ``loss``, ``loss_and_grads`` and ``last_trace``)
    inputs, targets, mask : as for ``model.loss_and_grads``
    keys : iterable of str, optional
        Parameters to check (default: all).
    max_entries : int, optional
        Check at most this many randomly chosen entries per parameter (default: every entry).
    seed : int
        Chooses the entries.
    step : float
        Finite-difference step.
    **loss_kwargs
        Passed to ``model.loss_and_grads`` and ``model.loss`` (e.g. ``loss="softmax_ce"``).

    Returns
    -------
    GradCheckReport
        One row per parameter; ``crossed_kink`` is set when a perturbation changed one of the
        model's discrete decisions (least-used slot, access threshold, top-k), where the loss is
        not differentiable and finite differences are meaningless.
    """
    rng = np.random.default_rng(seed)
    loss0, grads = model.loss_and_grads(inputs, targets, mask, **loss_kwargs)
    trace0 = list(model.last_trace)
    crossed = False
    rows = []
    for key in sorted(model.params) if keys is None else keys:
        param = model.params[key]
        flat = param.reshape(-1)
        entries = np.arange(flat.size)
        if max_entries is not None and flat.size > max_entries:
            entries = np.sort(rng.choice(flat.size, max_entries, replace=False))
        numeric = np.zeros(entries.size)

        def loss_at():
            nonlocal crossed
            value = model.loss(inputs, targets, mask, **loss_kwargs)
            crossed = crossed or not _same_trace(model.last_trace, trace0)
            return value

        for n, j in enumerate(entries):
            numeric[n] = _central_difference(flat, j, step, loss_at)
        analytic = grads[key].reshape(-1)[entries]
        floor = SCALE_FLOOR * max(1.0, abs(loss0))
        rows.append(
            InputReport(
                key,
                param.shape,
                float(np.max(np.abs(analytic - numeric), initial=0.0)),
                rel_error(analytic, numeric, floor=floor),
            )
        )
    return GradCheckReport(type(model).__name__, rows, crossed)


# --------------------------------------------------------------------------------------------
# Well-conditioned example inputs for every op in refmann.ops (used by `refmann gradcheck`)
# --------------------------------------------------------------------------------------------


def op_example(name: str, rng: np.random.Generator, **sizes):
    """Inputs ``(arrays, hyper)`` for op ``name``, drawn away from kinks (relu at 0, top-k ties).

    The examples live beside the ops (:data:`refmann.ops.OPS`); ``sizes`` override the fields of
    :class:`refmann.ops.ExampleSizes` (B, H, N, W, K, S, X, C).
    """
    from .ops import OPS, ExampleSizes

    if name not in OPS:
        raise ValueError(f"name: expected one of {sorted(OPS)}, got {name!r}")
    unknown = sorted(set(sizes) - set(ExampleSizes._fields))
    if unknown:
        raise TypeError(f"sizes: unexpected {unknown}; expected some of {list(ExampleSizes._fields)}")
    return OPS[name].example(rng, ExampleSizes(**sizes))


def check_all_ops(seed: int = 0) -> list[GradCheckReport]:
    """Gradient-check every op of :mod:`refmann.ops` on :func:`op_example` inputs."""
    from . import ops

    rng = np.random.default_rng(seed)
    reports = []
    for spec in ops.OPS.values():
        arrays, hyper = spec.example(rng, ops.ExampleSizes())
        reports.append(check_op(spec.forward, spec.backward, *arrays, seed=seed, **hyper))
    return reports
