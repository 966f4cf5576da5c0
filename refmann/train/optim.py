r"""Optimizers as pure functions on ``(params, grads, state)``.

Parameters and gradients are ``dict[str, ndarray]`` with identical (dotted) keys, e.g.
``"controller.weight"``. Every update returns *new* dicts and arrays; nothing passed in is modified::

    state = None
    for batch in batches:
        loss, grads = model_loss_and_grads(params, batch)
        grads, norm = clip_global_norm(grads, 10.0)
        params, state = rmsprop(params, grads, state, lr=1e-4)

``state=None`` starts from zeros. A state is a plain dict, ``{"step": int, <slot>: {name: ndarray}}``
(slots such as ``"m"``/``"v"`` for Adam); :func:`state_to_arrays` flattens it to
``{"step": 0-d int64, "<slot>/<name>": ndarray}`` for ``np.savez`` and :func:`state_from_arrays`
rebuilds it, so training resumes bit-identically from a checkpoint.

Each parameter keeps its dtype (float32 stays float32; a float64 gradient is cast to the
parameter's dtype); optimizer state has the dtype of its parameter.

**Row-sparse gradients.** A gradient may be a :class:`~refmann.ops.RowGrad` instead of an array: a
table's gradient that is non-zero on a few rows, either one table ``(N, D)`` (``indices`` (J,),
``rows`` (J, D)) or a batch of memories ``(B, N, W)`` (``indices`` (B, J), ``rows`` (B, J, W)). Its
dense shape must be the parameter's shape. A row index may repeat (repeats add up) and padding
rows are zero. The clipping functions take and return RowGrads without ever allocating the N-row
table; :func:`sgd`, :func:`rmsprop`, :func:`adam` and :func:`adamw` densify them; :func:`sparse_adam`
and :func:`rowwise_adagrad` update only the rows present. :func:`param_groups` (built on
:func:`combine`) gives a group of parameters (a value table, say) its own optimizer, learning rate
and, through :func:`clipped`, gradient clip::

    step = param_groups({"values": clipped(make_optimizer("sparse_adam", lr=1e-3), max_norm=1.0),
                         "*": functools.partial(adamw, lr=1e-4, weight_decay=0.01)})
    params, state = step(params, grads, state)
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, as_index_array, check_bool, check_finite_real, check_positive_int
from ..kernels.optim import adam_rows_kernel
from ..ops.memory import RowGrad

log = logging.getLogger(__name__)

__all__ = [
    "adam",
    "adamw",
    "clip_elementwise",
    "clip_global_norm",
    "clipped",
    "combine",
    "make_optimizer",
    "param_groups",
    "rmsprop",
    "rowwise_adagrad",
    "sgd",
    "sparse_adam",
    "sparse_adam_inplace",
    "state_from_arrays",
    "state_to_arrays",
]

Params = dict[str, np.ndarray]
State = dict  # {"step": int, slot: {name: ndarray}}


# --------------------------------------------------------------------------- boundary checks
# _checks.check_real takes closed intervals only, so the open bounds (lr > 0, beta in [0, 1)) keep
# their own two validators; flags use the shared check_bool.


def _check_positive(value, name: str, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float, or raise unless it is a real number > 0 (finite unless allowed)."""
    want = "a number > 0" if allow_inf else "a finite number > 0"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected {want}, got {type(value).__name__} {value!r}")
    if not (value > 0 and (allow_inf or math.isfinite(value))):
        raise ValueError(f"{name}: expected {want}, got {value!r}")
    return float(value)


def _check_unit_interval(value, name: str) -> float:
    """Return ``value`` as a float, or raise unless it lies in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number in [0, 1), got {type(value).__name__} {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- row gradients


class _Rows(NamedTuple):
    """A :class:`RowGrad` coalesced: each touched row once, repeats summed, as rows of a 2-d view.

    The dense array of shape ``shape`` is viewed as ``(R, F)`` (:func:`_as_rows`): ``R = N, F = D``
    for a table, ``R = B·N, F = W`` for a batch of memories, where row ``b·N + i`` is ``[b, i]``.
    """

    keys: np.ndarray  # int (U,)   distinct rows of the (R, F) view, ascending
    rows: np.ndarray  # (U, F)     their gradients, repeats summed in order of appearance
    shape: tuple  # (N, D) or (B, N, W), the dense shape


def _as_rows(a: np.ndarray) -> np.ndarray:
    """``a`` as a 2-d array of its last-axis rows, (prod(shape[:-1]), shape[-1]); 0-d as (1, 1).

    A view when ``a`` is C-contiguous (so writing into it writes into ``a``), else a copy.
    """
    shape = a.shape if a.ndim else (1,)
    return a.reshape(math.prod(shape[:-1]), shape[-1])


def _check_rowgrad(g, name: str) -> RowGrad:
    """Integer indices in range, finite float rows, and one of the two RowGrad layouts."""
    num_rows = check_positive_int(g.num_rows, f"{name}.num_rows")
    rows = as_float_array(g.rows, f"{name}.rows", finite=True)
    indices = np.asarray(g.indices)
    table = indices.ndim == 1 and rows.ndim == 2 and rows.shape[0] == indices.shape[0]
    batch = indices.ndim == 2 and rows.ndim == 3 and rows.shape[:2] == indices.shape
    if not (table or batch):
        raise ValueError(
            f"{name}: expected a RowGrad with indices (J,) and rows (J, D), or indices (B, J) and "
            f"rows (B, J, W), got indices {indices.shape} and rows {rows.shape}"
        )
    return RowGrad(as_index_array(indices, f"{name}.indices", upper=num_rows), rows, num_rows)


def _coalesce(g: RowGrad) -> _Rows:
    """Sum repeated rows (O(J log J) for J rows; nothing of size N is allocated).

    Each row's repeats are added in order of appearance, starting from zero: the very sums that
    :func:`~refmann.ops.densify_rows` makes, so a coalesced row equals the densified row bit for bit.
    """
    N = g.num_rows
    if g.indices.ndim == 1:  # one (N, D) table
        keys, rows, shape = g.indices, g.rows, (N, g.rows.shape[1])
        if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):  # already coalesced (an embedding bag's): as is
            return _Rows(keys.astype(np.int64, copy=False), rows, shape)
    else:  # a batch of (N, W) memories
        B, J, W = g.rows.shape
        keys = (np.arange(B, dtype=np.int64)[:, None] * N + g.indices).reshape(B * J)
        rows, shape = g.rows.reshape(B * J, W), (B, N, W)
    keys, where = np.unique(keys, return_inverse=True)
    summed = np.zeros((keys.size, rows.shape[1]), rows.dtype)  # (U, F)
    np.add.at(summed, where.reshape(-1), rows)  # sequential: in order of appearance
    return _Rows(keys, summed, shape)


def _densify(r: _Rows) -> np.ndarray:
    """The dense array a coalesced gradient stands for (allocates all N rows: dense optimizers only)."""
    out = np.zeros(r.shape, r.rows.dtype)
    _as_rows(out)[r.keys] = r.rows
    return out


def _to_rowgrad(r: _Rows) -> RowGrad:
    """A coalesced gradient back as a :class:`RowGrad` of the same layout (each row once).

    A batch element with fewer distinct rows than the longest is padded with zero rows at its own
    first index, so the set of (element, row) pairs present is exactly the input's.
    """
    if len(r.shape) == 2:
        return RowGrad(r.keys, r.rows, r.shape[0])
    B, N, W = r.shape
    b, i = np.divmod(r.keys, N)  # (U,) each, sorted by b then i
    counts = np.bincount(b, minlength=B)  # (B,)
    J = int(counts.max()) if r.keys.size else 0
    first = np.cumsum(counts) - counts  # (B,) where each element starts in keys
    has = counts > 0
    indices = np.zeros((B, J), np.int64)  # (B, J)
    indices[has] = i[first[has]][:, None]  # padding: the element's first index
    rows = np.zeros((B, J, W), r.rows.dtype)  # (B, J, W) padding rows are zero
    pos = np.arange(r.keys.size) - first[b]
    indices[b, pos] = i
    rows[b, pos] = r.rows
    return RowGrad(indices, rows, N)


def _describe_key_mismatch(expected, given) -> str:
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    return f"missing {missing}, extra {extra}"


def _check_grads(grads, name: str = "grads") -> dict:
    """Every gradient as a finite float array, or a RowGrad coalesced; errors name the offending key."""
    if not isinstance(grads, Mapping):
        raise TypeError(f"{name}: expected a dict of ndarrays, got {type(grads).__name__}")
    return {
        k: _coalesce(_check_rowgrad(g, f"{name}[{k!r}]"))
        if isinstance(g, RowGrad)
        else as_float_array(g, f"{name}[{k!r}]", finite=True)
        for k, g in grads.items()
    }


def _check_params_and_grads(params, grads, *, keep_rows: bool = False) -> tuple[Params, dict]:
    """Same keys, same shapes, float params, finite grads (cast to the parameter's dtype).

    A :class:`RowGrad` is coalesced, checked against the parameter's shape, and returned densified
    or, with ``keep_rows``, as :class:`_Rows` (rows cast to the parameter's dtype).
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of ndarrays, got {type(params).__name__}")
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads: expected a dict of ndarrays, got {type(grads).__name__}")
    if set(params) != set(grads):
        raise ValueError(f"grads: expected the same keys as params, {_describe_key_mismatch(params, grads)}")
    P = {k: as_float_array(p, f"params[{k!r}]", finite=False) for k, p in params.items()}
    G = {}
    for k, p in P.items():
        if isinstance(grads[k], RowGrad):
            r = _coalesce(_check_rowgrad(grads[k], f"grads[{k!r}]"))
            if r.shape != p.shape:
                raise ValueError(
                    f"grads[{k!r}]: expected a RowGrad of dense shape {p.shape} (as params[{k!r}]), "
                    f"got dense shape {r.shape}"
                )
            r = r._replace(rows=r.rows.astype(p.dtype, copy=False))
            G[k] = r if keep_rows else _densify(r)
            continue
        g = as_float_array(grads[k], f"grads[{k!r}]", finite=True)
        if g.shape != p.shape:
            raise ValueError(f"grads[{k!r}]: expected shape {p.shape} (as params[{k!r}]), got {g.shape}")
        G[k] = g.astype(p.dtype, copy=False)
    return P, G


def _init_or_check_state(state, params: Params, slots: tuple[str, ...], who: str, slot_shape=None) -> State:
    """Zeros for ``state=None``; otherwise check that ``state`` fits ``params`` and ``slots``.

    Slot arrays have their parameter's shape, or ``slot_shape(param)`` when given.
    """
    if state is None:
        if slot_shape is None:
            return {"step": 0, **{s: {k: np.zeros_like(p) for k, p in params.items()} for s in slots}}
        return {"step": 0, **{s: {k: np.zeros(slot_shape(p), p.dtype) for k, p in params.items()} for s in slots}}
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a dict or None, got {type(state).__name__}")
    want = {"step", *slots}
    if set(state) != want:
        raise ValueError(f"state: expected the {who} slots {sorted(want)}, {_describe_key_mismatch(want, state)}")
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"state['step']: expected an int >= 0, got {step!r}")
    for s in slots:
        arrays = state[s]
        if not isinstance(arrays, Mapping) or set(arrays) != set(params):
            got = list(arrays) if isinstance(arrays, Mapping) else type(arrays).__name__
            raise ValueError(
                f"state[{s!r}]: expected the same keys as params, "
                + (_describe_key_mismatch(params, got) if isinstance(got, list) else f"got {got}")
            )
        for k, p in params.items():
            a = np.asarray(arrays[k])
            want_shape = p.shape if slot_shape is None else slot_shape(p)
            if a.shape != want_shape:
                raise ValueError(f"state[{s!r}][{k!r}]: expected shape {want_shape}, got {a.shape}")
    return state


# --------------------------------------------------------------------------- update rules


def sgd(params, grads, state=None, *, lr, momentum=0.0, nesterov=False):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    Parameters
    ----------
    params : dict of str to ndarray
        Current parameters (float32 or float64), keyed by dotted name. Not modified.
    grads : dict of str to ndarray or RowGrad
        ∂L/∂param for every key of ``params``, same shapes, finite. Not modified. A
        :class:`~refmann.ops.RowGrad` (dense shape = the parameter's) is densified first, so it
        gives exactly the update of its dense gradient (an O(N) array; see :func:`sparse_adam`).
    state : dict or None, optional
        ``{"step": int, "velocity": {name: ndarray}}`` from the previous call; ``None`` starts
        with zero velocity.
    lr : float
        Learning rate η > 0 (keyword-only, no default).
    momentum : float, optional
        Momentum coefficient μ in [0, 1). 0 (the default) is plain SGD.
    nesterov : bool, optional
        Use Nesterov's accelerated gradient in the Sutskever et al. form.

    Returns
    -------
    params : dict of str to ndarray
        Updated parameters, new arrays with the dtypes of the inputs.
    state : dict
        New state with ``step`` incremented and the new velocity.

    See Also
    --------
    rmsprop, adam, sparse_adam, rowwise_adagrad, make_optimizer

    Notes
    -----
    The velocity form (Sutskever et al. 2013, eq. 1-2; Nesterov as in Bengio et al. 2013, eq. 7):

    .. math::

        v_t &= \mu\, v_{t-1} - \eta\, g_t \\
        \theta_t &= \theta_{t-1} + v_t
            \quad\text{or, Nesterov,}\quad
        \theta_t = \theta_{t-1} + \mu\, v_t - \eta\, g_t

    With a constant η this is the same trajectory as PyTorch's ``SGD`` (whose buffer is
    :math:`-v/\eta`).

    References
    ----------
    .. [1] Sutskever, Martens, Dahl & Hinton (2013), "On the importance of initialization and
       momentum in deep learning", ICML.
    .. [2] Bengio, Boulanger-Lewandowski & Pascanu (2013), "Advances in optimizing recurrent
       networks", ICASSP, arXiv:1212.0901.
    """
    lr = _check_positive(lr, "lr")
    mu = _check_unit_interval(momentum, "momentum")
    nesterov = check_bool(nesterov, "nesterov")
    P, G = _check_params_and_grads(params, grads)
    state = _init_or_check_state(state, P, ("velocity",), "sgd")

    new_params, velocity = {}, {}
    for k, p in P.items():
        g = G[k]
        v = mu * state["velocity"][k] - lr * g  # v_t = μ v_{t-1} - η g_t
        step = mu * v - lr * g if nesterov else v
        new_params[k] = (p + step).astype(p.dtype, copy=False)
        velocity[k] = v.astype(p.dtype, copy=False)
    return new_params, {"step": int(state["step"]) + 1, "velocity": velocity}


def rmsprop(params, grads, state=None, *, lr=1e-4, decay=0.95, momentum=0.9, eps=1e-4, centered=True):
    r"""RMSProp with momentum; by default the centred form of Graves (2013) used for the NTM.

    Parameters
    ----------
    params : dict of str to ndarray
        Current parameters (float32 or float64), keyed by dotted name. Not modified.
    grads : dict of str to ndarray or RowGrad
        ∂L/∂param for every key of ``params``, same shapes, finite. Not modified. A
        :class:`~refmann.ops.RowGrad` (dense shape = the parameter's) is densified first, so it
        gives exactly the update of its dense gradient (an O(N) array; see :func:`sparse_adam`).
    state : dict or None, optional
        ``{"step", "n", "gbar", "delta"}`` (centred) or ``{"step", "n", "delta"}`` (plain) from
        the previous call; ``None`` starts from zeros.
    lr : float, optional
        Learning rate η > 0 (Graves' ℷ = 1e-4).
    decay : float, optional
        Decay ℵ in [0, 1) of the running averages (Graves: 0.95).
    momentum : float, optional
        Momentum ℶ in [0, 1) (Graves: 0.9).
    eps : float, optional
        ℸ > 0 added under the square root (Graves: 1e-4).
    centered : bool, optional
        True (default): divide by the running *standard deviation*, Graves (2013) eq. (38)-(41).
        False: divide by the running root mean square, Tieleman & Hinton (2012), with momentum.

    Returns
    -------
    params : dict of str to ndarray
        Updated parameters, new arrays with the dtypes of the inputs.
    state : dict
        New state with ``step`` incremented.

    See Also
    --------
    sgd, adam, sparse_adam, rowwise_adagrad, make_optimizer

    Notes
    -----
    Centred (Graves 2013, eq. 38-41; the NTM papers' optimizer):

    .. math::

        n_t &= \aleph\, n_{t-1} + (1 - \aleph)\, g_t^2 \\
        \bar g_t &= \aleph\, \bar g_{t-1} + (1 - \aleph)\, g_t \\
        \Delta_t &= \beth\, \Delta_{t-1} - \eta\, \frac{g_t}{\sqrt{n_t - \bar g_t^2 + \epsilon}} \\
        \theta_t &= \theta_{t-1} + \Delta_t

    Plain (``centered=False``, Tieleman & Hinton 2012, plus the same momentum):

    .. math::

        n_t &= \aleph\, n_{t-1} + (1 - \aleph)\, g_t^2 \\
        \Delta_t &= \beth\, \Delta_{t-1} - \eta\, \frac{g_t}{\sqrt{n_t + \epsilon}} \\
        \theta_t &= \theta_{t-1} + \Delta_t

    Starting from zeros, :math:`n_t - \bar g_t^2 \ge 0` by Cauchy-Schwarz (the averaging weights
    sum to at most 1), so the centred square root is real up to rounding, which ε covers.

    References
    ----------
    .. [1] Graves (2013), "Generating sequences with recurrent neural networks",
       arXiv:1308.0850, Sec. 4, eq. (38)-(41).
    .. [2] Tieleman & Hinton (2012), "Lecture 6.5 - RMSProp: divide the gradient by a running
       average of its recent magnitude", COURSERA: Neural Networks for Machine Learning.
    """
    lr = _check_positive(lr, "lr")
    rho = _check_unit_interval(decay, "decay")
    mu = _check_unit_interval(momentum, "momentum")
    eps = _check_positive(eps, "eps")
    centered = check_bool(centered, "centered")
    P, G = _check_params_and_grads(params, grads)
    slots = ("n", "gbar", "delta") if centered else ("n", "delta")
    state = _init_or_check_state(state, P, slots, "centred rmsprop" if centered else "rmsprop")

    new_params = {}
    new_state = {"step": int(state["step"]) + 1, **{s: {} for s in slots}}
    for k, p in P.items():
        g = G[k]
        n = rho * state["n"][k] + (1 - rho) * g * g  # eq. (38)
        if centered:
            gbar = rho * state["gbar"][k] + (1 - rho) * g  # eq. (39)
            denom = np.sqrt(n - gbar * gbar + eps)  # running std, not RMS
            new_state["gbar"][k] = gbar.astype(p.dtype, copy=False)
        else:
            denom = np.sqrt(n + eps)
        delta = mu * state["delta"][k] - lr * g / denom  # eq. (40)
        new_params[k] = (p + delta).astype(p.dtype, copy=False)  # eq. (41)
        new_state["n"][k] = n.astype(p.dtype, copy=False)
        new_state["delta"][k] = delta.astype(p.dtype, copy=False)
    return new_params, new_state


def adam(params, grads, state=None, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    r"""Adam with bias-corrected moment estimates (Kingma & Ba 2015, Algorithm 1).

    Parameters
    ----------
    params : dict of str to ndarray
        Current parameters (float32 or float64), keyed by dotted name. Not modified.
    grads : dict of str to ndarray or RowGrad
        ∂L/∂param for every key of ``params``, same shapes, finite. Not modified. A
        :class:`~refmann.ops.RowGrad` (dense shape = the parameter's) is densified first, so it
        gives exactly the update of its dense gradient (an O(N) array; see :func:`sparse_adam`).
    state : dict or None, optional
        ``{"step": int, "m": {...}, "v": {...}}`` from the previous call; ``None`` starts at
        step 0 with zero moments.
    lr : float, optional
        Step size α > 0.
    beta1 : float, optional
        Decay β₁ in [0, 1) of the first-moment estimate.
    beta2 : float, optional
        Decay β₂ in [0, 1) of the second-moment estimate.
    eps : float, optional
        ε > 0 added to the denominator.

    Returns
    -------
    params : dict of str to ndarray
        Updated parameters, new arrays with the dtypes of the inputs.
    state : dict
        New state; ``step`` is the t of the update just made (1 after the first call).

    See Also
    --------
    sparse_adam : the lazy form for row-sparse gradients.
    adamw : with decoupled weight decay.
    sgd, rmsprop, rowwise_adagrad, make_optimizer

    Notes
    -----
    .. math::

        m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 \\
        \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
        \theta_t &= \theta_{t-1} - \alpha\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    On the first step :math:`\hat m_1 = g_1` and :math:`\hat v_1 = g_1^2`, so every parameter
    moves by :math:`\alpha\, g / (|g| + \epsilon) \approx \alpha\,\mathrm{sign}(g)`.

    References
    ----------
    .. [1] Kingma & Ba (2015), "Adam: a method for stochastic optimization", ICLR,
       arXiv:1412.6980, Algorithm 1.
    """
    lr = _check_positive(lr, "lr")
    beta1 = _check_unit_interval(beta1, "beta1")
    beta2 = _check_unit_interval(beta2, "beta2")
    eps = _check_positive(eps, "eps")
    P, G = _check_params_and_grads(params, grads)
    state = _init_or_check_state(state, P, ("m", "v"), "adam")

    t = int(state["step"]) + 1
    c1 = 1.0 - beta1**t  # bias corrections (Python floats)
    c2 = 1.0 - beta2**t
    new_params, M, V = {}, {}, {}
    for k, p in P.items():
        new_params[k], M[k], V[k] = _adam_rule(
            p, G[k], state["m"][k], state["v"][k], lr=lr, beta1=beta1, beta2=beta2, eps=eps, c1=c1, c2=c2
        )
    return new_params, {"step": t, "m": M, "v": V}


def _adam_rule(p, g, m, v, *, lr, beta1, beta2, eps, c1, c2):
    """Algorithm 1's update of ``p`` and its moments, elementwise (any shape; rows for sparse_adam)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / c1
    v_hat = v / c2
    return (
        (p - lr * m_hat / (np.sqrt(v_hat) + eps)).astype(p.dtype, copy=False),
        m.astype(p.dtype, copy=False),
        v.astype(p.dtype, copy=False),
    )


def adamw(params, grads, state=None, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
    r"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019), as PyTorch's ``AdamW``.

    Parameters
    ----------
    params : dict of str to ndarray
        Current parameters (float32 or float64), keyed by dotted name. Not modified.
    grads : dict of str to ndarray or RowGrad
        ∂L/∂param for every key of ``params``, same shapes, finite. Not modified. A
        :class:`~refmann.ops.RowGrad` (dense shape = the parameter's) is densified first: the
        semantics are dense, so every row decays its moments and its value at every step,
        whether the gradient touches it or not (an O(N) array; see :func:`sparse_adam`).
    state : dict or None, optional
        ``{"step": int, "m": {...}, "v": {...}}`` from the previous call (the layout of
        :func:`adam`'s, so either can continue the other's state); ``None`` starts at step 0
        with zero moments.
    lr : float, optional
        Step size γ > 0 (PyTorch's default, 1e-3).
    beta1 : float, optional
        Decay β₁ in [0, 1) of the first-moment estimate.
    beta2 : float, optional
        Decay β₂ in [0, 1) of the second-moment estimate.
    eps : float, optional
        ε > 0 added to the denominator.
    weight_decay : float, optional
        Decoupled decay λ ≥ 0, finite (PyTorch's default, 1e-2). Each step multiplies every
        parameter by 1 − γλ; 0 gives exactly :func:`adam`.

    Returns
    -------
    params : dict of str to ndarray
        Updated parameters, new arrays with the dtypes of the inputs.
    state : dict
        New state; ``step`` is the t of the update just made (1 after the first call).

    See Also
    --------
    adam : the same rule without decay.
    sparse_adam, combine, param_groups, make_optimizer

    Notes
    -----
    PyTorch's algorithm (decay first, from :math:`\theta_{t-1}`; the Adam step does not read
    :math:`\theta`, so the order only fixes the rounding):

    .. math::

        \theta_t &\leftarrow \theta_{t-1} - \gamma \lambda\, \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 \\
        \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
        \theta_t &\leftarrow \theta_t - \gamma\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    The decay is *decoupled*: it is not added to :math:`g_t`, so it never enters the moments and
    is not rescaled by :math:`1/\sqrt{\hat v_t}` (Adam with an L2 term would decay entries with
    small gradients fastest). The decay is scaled by the learning rate γ, as in PyTorch; the
    paper's Algorithm 2 scales λ by the schedule multiplier :math:`\eta_t` alone.

    References
    ----------
    .. [1] Loshchilov & Hutter (2019), "Decoupled weight decay regularization", ICLR,
       arXiv:1711.05101, Algorithm 2.
    .. [2] PyTorch, ``torch.optim.AdamW`` (the algorithm box of its documentation).
    .. [3] Kingma & Ba (2015), "Adam: a method for stochastic optimization", ICLR,
       arXiv:1412.6980, Algorithm 1.
    """
    lr = _check_positive(lr, "lr")
    beta1 = _check_unit_interval(beta1, "beta1")
    beta2 = _check_unit_interval(beta2, "beta2")
    eps = _check_positive(eps, "eps")
    weight_decay = check_finite_real(weight_decay, "weight_decay", lo=0.0)
    P, G = _check_params_and_grads(params, grads)
    state = _init_or_check_state(state, P, ("m", "v"), "adamw")

    t = int(state["step"]) + 1
    c1 = 1.0 - beta1**t  # bias corrections (Python floats)
    c2 = 1.0 - beta2**t
    shrink = 1.0 - lr * weight_decay  # θ ← θ - γλθ, exactly θ when λ = 0
    new_params, M, V = {}, {}, {}
    for k, p in P.items():
        decayed = (p * shrink).astype(p.dtype, copy=False)
        new_params[k], M[k], V[k] = _adam_rule(
            decayed, G[k], state["m"][k], state["v"][k], lr=lr, beta1=beta1, beta2=beta2, eps=eps, c1=c1, c2=c2
        )
    return new_params, {"step": t, "m": M, "v": V}


def sparse_adam(params, grads, state=None, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    r"""Lazy row-sparse Adam: only the rows present in a gradient update their moments and values.

    The semantics of PyTorch's ``torch.optim.SparseAdam``, for value tables and embeddings whose
    gradient (a :class:`~refmann.ops.RowGrad`) touches a few of their N rows per step.

    Parameters
    ----------
    params : dict of str to ndarray
        Current parameters (float32 or float64), keyed by dotted name. Not modified.
    grads : dict of str to ndarray or RowGrad
        ∂L/∂param for every key of ``params``, finite. Not modified. A
        :class:`~refmann.ops.RowGrad` (dense shape = the parameter's, ``(N, D)`` or ``(B, N, W)``)
        updates only its rows; repeated indices are summed first. A dense array updates every
        entry, exactly as :func:`adam`.
    state : dict or None, optional
        ``{"step": int, "m": {...}, "v": {...}}`` from the previous call (the same layout as
        :func:`adam`'s, so either optimizer can continue the other's state); ``None`` starts at
        step 0 with zero moments.
    lr : float, optional
        Step size α > 0.
    beta1 : float, optional
        Decay β₁ in [0, 1) of the first-moment estimate.
    beta2 : float, optional
        Decay β₂ in [0, 1) of the second-moment estimate.
    eps : float, optional
        ε > 0 added to the denominator.

    Returns
    -------
    params : dict of str to ndarray
        Updated parameters, new arrays with the dtypes of the inputs; rows absent from a RowGrad
        keep their values bit for bit.
    state : dict
        New state; ``step`` is the t of the update just made (1 after the first call).

    See Also
    --------
    adam : the dense rule, which this one equals when every row is present.
    rowwise_adagrad, combine

    Notes
    -----
    Let :math:`\mathcal R_t` be the rows present in :math:`g_t` (its indices, once each; a row's
    repeats are summed). For :math:`r \in \mathcal R_t`, Algorithm 1 of Kingma & Ba on that row:

    .. math::

        m_t[r] &= \beta_1 m_{t-1}[r] + (1 - \beta_1)\, g_t[r] \\
        v_t[r] &= \beta_2 v_{t-1}[r] + (1 - \beta_2)\, g_t[r]^2 \\
        \theta_t[r] &= \theta_{t-1}[r] - \alpha\,
            \frac{m_t[r] / (1 - \beta_1^t)}{\sqrt{v_t[r] / (1 - \beta_2^t)} + \epsilon}

    and for :math:`r \notin \mathcal R_t`, :math:`m_t[r] = m_{t-1}[r]`,
    :math:`v_t[r] = v_{t-1}[r]`, :math:`\theta_t[r] = \theta_{t-1}[r]`. The bias corrections use
    the global step t (the number of calls), not the number of times row r was touched, as in
    PyTorch. A row that is absent does not decay its moments, so unlike dense Adam it makes no
    "ghost" steps from old momentum; with every row present (and no weight decay) the two rules
    are the same function, and here the same arithmetic, bit for bit.

    An index present with a zero row counts as touched (PyTorch's coalescing keeps explicit zeros
    too): pad a RowGrad at an index already present, never at an arbitrary one.

    PyTorch writes the step as :math:`\alpha \sqrt{1-\beta_2^t}/(1-\beta_1^t) \cdot
    m_t / (\sqrt{v_t} + \hat\epsilon)`; that is this rule with :math:`\hat\epsilon =
    \epsilon\sqrt{1-\beta_2^t}`, so the two differ only at the size of ε.

    This function is pure: it copies each parameter and its two moments (O(N) memory traffic per
    step) and then rewrites the touched rows of the copies; the arithmetic is O(:math:`|R_t|`).

    References
    ----------
    .. [1] Kingma & Ba (2015), "Adam: a method for stochastic optimization", ICLR,
       arXiv:1412.6980, Algorithm 1.
    .. [2] PyTorch, ``torch.optim.SparseAdam``: "a masked version of the Adam algorithm suitable
       for sparse gradients": only the moments and parameter entries present in the gradient are
       updated.
    .. [3] Lample, Sablayrolles, Ranzato, Denoyer & Jégou (2019), "Large memory layers with
       product keys", NeurIPS, arXiv:1907.05242 (the value table and its sparse updates).
    """
    lr = _check_positive(lr, "lr")
    beta1 = _check_unit_interval(beta1, "beta1")
    beta2 = _check_unit_interval(beta2, "beta2")
    eps = _check_positive(eps, "eps")
    P, G = _check_params_and_grads(params, grads, keep_rows=True)
    state = _init_or_check_state(state, P, ("m", "v"), "sparse_adam")

    t = int(state["step"]) + 1
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, c1=1.0 - beta1**t, c2=1.0 - beta2**t)
    new_params, M, V = {}, {}, {}
    for k, p in P.items():
        g, m, v = G[k], state["m"][k], state["v"][k]
        if not isinstance(g, _Rows):  # dense: every entry is present
            new_params[k], M[k], V[k] = _adam_rule(p, g, m, v, **hyper)
            continue
        r = g.keys  # (U,) distinct rows of the (R, F) views
        new_params[k] = np.array(p, order="C")  # copies; rows outside r stay as they were
        M[k] = np.array(m, dtype=p.dtype, order="C")
        V[k] = np.array(v, dtype=p.dtype, order="C")
        theta, m_rows, v_rows = _as_rows(new_params[k]), _as_rows(M[k]), _as_rows(V[k])
        theta[r], m_rows[r], v_rows[r] = _adam_rule(_as_rows(p)[r], g.rows, _as_rows(m)[r], _as_rows(v)[r], **hyper)
    return new_params, {"step": t, "m": M, "v": V}


def sparse_adam_inplace(params, grads, state=None, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    r""":func:`sparse_adam`, updating the parameters and moments **in place**: O(touched rows) per step.

    The same rule and the same arithmetic as :func:`sparse_adam` (bit for bit:
    ``test_sparse_adam_inplace_equals_sparse_adam_bit_for_bit``), without its three O(N) copies per
    table: the touched rows are rewritten in the arrays of ``params`` and ``state`` by one Numba kernel
    (:mod:`refmann.kernels.optim`, a plain-Python loop under ``NUMBA_DISABLE_JIT=1``); dense gradients
    are applied with the dense rule and written back. This is what a value table of 2²⁰ rows needs
    (``refmann bench pkm``); the trainer, whose step is a transaction it can roll back, keeps the pure
    :func:`sparse_adam`.

    Parameters
    ----------
    params : dict of str to ndarray
        Float32/float64, C-contiguous and writeable: **modified in place**.
    grads, lr, beta1, beta2, eps
        As :func:`sparse_adam`.
    state : dict or None, optional
        As :func:`sparse_adam`; its moment arrays are modified in place (None: zeros are made once).

    Returns
    -------
    params, state
        The same dict objects and arrays, updated (``state["step"]`` is the new t).
    """
    lr = _check_positive(lr, "lr")
    beta1 = _check_unit_interval(beta1, "beta1")
    beta2 = _check_unit_interval(beta2, "beta2")
    eps = _check_positive(eps, "eps")
    P, G = _check_params_and_grads(params, grads, keep_rows=True)
    for k, p in params.items():
        if not (isinstance(p, np.ndarray) and p.flags.c_contiguous and p.flags.writeable):
            raise ValueError(f"params[{k!r}]: expected a C-contiguous writeable ndarray (it is updated in place)")
    state = _init_or_check_state(state, P, ("m", "v"), "sparse_adam_inplace")
    for s in ("m", "v"):
        for k, p in params.items():
            a = state[s][k]
            if not (isinstance(a, np.ndarray) and a.dtype == p.dtype and a.flags.c_contiguous and a.flags.writeable):
                raise ValueError(
                    f"state[{s!r}][{k!r}]: expected a C-contiguous writeable {p.dtype} ndarray (updated in place)"
                )
    t = int(state["step"]) + 1
    c1, c2 = 1.0 - beta1**t, 1.0 - beta2**t
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, c1=c1, c2=c2)
    for k, p in params.items():
        g, m, v = G[k], state["m"][k], state["v"][k]
        if not isinstance(g, _Rows):  # dense: every entry, by the dense rule, written back
            p[...], m[...], v[...] = _adam_rule(p, g, m, v, **hyper)
            continue
        h = np.array([lr, beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, c1, c2], dtype=p.dtype)  # (8,)
        rows = np.ascontiguousarray(g.rows, dtype=p.dtype)  # (U, F)
        adam_rows_kernel(_as_rows(p), _as_rows(m), _as_rows(v), np.ascontiguousarray(g.keys, np.int64), rows, h)
    state["step"] = t
    return params, state


def _row_shape(p) -> tuple:
    """The shape of a per-row accumulator: one entry per slice along the last axis."""
    return p.shape[:-1]


def rowwise_adagrad(params, grads, state=None, *, lr=1e-2, eps=1e-10):
    r"""Row-wise AdaGrad: one accumulator per row, fed the mean over the row of the squared gradient.

    The optimizer of large embedding and value tables: its state is one scalar per row (not one
    per entry), and a row-sparse gradient updates only the rows present.

    Parameters
    ----------
    params : dict of str to ndarray
        Current parameters (float32 or float64), keyed by dotted name. Not modified. A *row* is a
        slice along the last axis: a table ``(N, D)`` has N rows, a weight ``(X, Y)`` X rows, a
        bias ``(Y,)`` one.
    grads : dict of str to ndarray or RowGrad
        ∂L/∂param for every key of ``params``, finite. Not modified. A
        :class:`~refmann.ops.RowGrad` (dense shape = the parameter's) touches only its rows;
        repeated indices are summed first. It gives exactly the update of its densified gradient
        (a row whose gradient is zero does not move here either).
    state : dict or None, optional
        ``{"step": int, "sum": {name: ndarray of shape param.shape[:-1]}}`` from the previous
        call; ``None`` starts from zero accumulators.
    lr : float, optional
        Learning rate η > 0 (PyTorch's Adagrad default, 1e-2).
    eps : float, optional
        ε > 0 added to the root of the accumulator (PyTorch's Adagrad and torchrec's
        ``RowWiseAdagrad`` default, 1e-10).

    Returns
    -------
    params : dict of str to ndarray
        Updated parameters, new arrays with the dtypes of the inputs.
    state : dict
        New state with ``step`` incremented and the new accumulators.

    See Also
    --------
    sparse_adam, combine

    Notes
    -----
    For each row r of a parameter with rows of length D (Duchi et al.'s AdaGrad with the
    diagonal accumulator shared along the row):

    .. math::

        G_t[r] &= G_{t-1}[r] + \frac{1}{D} \sum_{j=1}^{D} g_t[r, j]^2 \\
        \theta_t[r, j] &= \theta_{t-1}[r, j] - \eta\, \frac{g_t[r, j]}{\sqrt{G_t[r]} + \epsilon}

    starting from :math:`G_0 = 0`. A row with :math:`g_t[r] = 0` keeps both :math:`G` and
    :math:`\theta`, so updating only the rows present in a RowGrad is the same rule, not an
    approximation (unlike :func:`sparse_adam` against :func:`adam`). There is no bias correction
    or decay: the effective step :math:`\eta/\sqrt{G_t[r]}` only shrinks, fastest for the rows
    used most.

    References
    ----------
    .. [1] Duchi, Hazan & Singer (2011), "Adaptive subgradient methods for online learning and
       stochastic optimization", JMLR 12, 2121-2159.
    .. [2] torchrec, ``torchrec.optim.RowWiseAdagrad`` (and FBGEMM's row-wise Adagrad for
       embedding tables): the accumulator is the mean over the row of :math:`g^2`, ε = 1e-10.
    .. [3] Lample, Sablayrolles, Ranzato, Denoyer & Jégou (2019), "Large memory layers with
       product keys", NeurIPS, arXiv:1907.05242 (value tables updated a few rows at a time).
    """
    lr = _check_positive(lr, "lr")
    eps = _check_positive(eps, "eps")
    P, G = _check_params_and_grads(params, grads, keep_rows=True)
    state = _init_or_check_state(state, P, ("sum",), "rowwise_adagrad", slot_shape=_row_shape)

    new_params, S = {}, {}
    for k, p in P.items():
        g = G[k]
        new_params[k] = np.array(p, order="C")  # copies, written through their row views
        S[k] = np.array(state["sum"][k], dtype=p.dtype, order="C")
        theta, acc = _as_rows(new_params[k]), S[k].reshape(-1)  # (R, D), (R,)
        r, g_rows = (g.keys, g.rows) if isinstance(g, _Rows) else (slice(None), _as_rows(g))
        if theta.shape[1] == 0:
            continue
        a = acc[r] + np.mean(g_rows * g_rows, axis=1)  # G_t = G_{t-1} + mean_j g_j²
        theta[r] = theta[r] - lr * g_rows / (np.sqrt(a)[:, None] + eps)
        acc[r] = a
    return new_params, {"step": int(state["step"]) + 1, "sum": S}


_OPTIMIZERS: dict[str, Callable] = {
    "sgd": sgd,
    "rmsprop": rmsprop,
    "adam": adam,
    "sparse_adam": sparse_adam,
    "adamw": adamw,
    "rowwise_adagrad": rowwise_adagrad,
}


def make_optimizer(name: str, **hyper) -> Callable:
    r"""Bind an optimizer's hyperparameters: ``step = make_optimizer("adam", lr=1e-3)``.

    Parameters
    ----------
    name : str
        One of ``"sgd"``, ``"rmsprop"``, ``"adam"``, ``"sparse_adam"``, ``"rowwise_adagrad"``
        (bind :func:`adamw` with :func:`functools.partial`).
    **hyper
        Keyword hyperparameters of that optimizer (e.g. ``lr``, ``momentum``). They are
        validated now, so a bad value fails at construction rather than at the first step.

    Returns
    -------
    step : callable
        ``step(params, grads, state=None) -> (params, state)``; a :func:`functools.partial`,
        so its ``repr`` shows the bound hyperparameters.

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the valid names) or an out-of-range hyperparameter.
    TypeError
        A hyperparameter the optimizer does not take, or a missing required one (``sgd``'s ``lr``).
    """
    if name not in _OPTIMIZERS:
        raise ValueError(f"name: expected one of {sorted(_OPTIMIZERS)}, got {name!r}")
    fn = _OPTIMIZERS[name]
    fn({}, {}, None, **hyper)  # a dry run on no parameters validates every hyperparameter
    return functools.partial(fn, **hyper)


def combine(optimizers, group_of):
    r"""One update from several: each parameter goes to the optimizer of its group.

    The functional form of parameter groups, e.g. a product-key value table with its own
    optimizer and learning rate (Lample et al. 2019 train the values with Adam at lr 1e-3,
    whatever the rest uses)::

        step = combine({"values": make_optimizer("sparse_adam", lr=1e-3),
                        "rest": make_optimizer("adam", lr=1e-4)},
                       group_of=lambda key: "values" if key.endswith("values") else "rest")
        params, state = step(params, grads, state)

    Parameters
    ----------
    optimizers : dict of str to callable
        Group name to an update ``step(params, grads, state=None) -> (params, state)`` (e.g. from
        :func:`make_optimizer`). Names are non-empty and contain neither ``"/"`` nor ``":"``.
    group_of : callable
        ``group_of(key) -> name``: the group of each parameter key (a dict's ``__getitem__``
        works too). Called on every key at every step.

    Returns
    -------
    step : callable
        ``step(params, grads, state=None) -> (params, state)``. Its state is one plain dict,
        ``{"step": int, "<group>:<slot>": {name: ndarray}}``, so :func:`state_to_arrays` and
        :func:`state_from_arrays` checkpoint it as they do any other (keys such as
        ``"values:m/pkm.values"``). A group with no parameters is not called and keeps no state.

    Raises
    ------
    TypeError
        ``optimizers`` is not a dict of callables, or ``group_of`` is not callable.
    ValueError
        An empty or invalid group name; at a step, a key whose group is not in ``optimizers``.

    See Also
    --------
    param_groups : groups by name pattern, first match wins.
    clipped : a group's own gradient clip.
    make_optimizer, sparse_adam, rowwise_adagrad

    Notes
    -----
    Each group's optimizer sees only its own parameters and gradients, so per-group clipping is
    a matter of wrapping a group's update in :func:`clipped` (XLM and Memory+ clip the value
    group and the rest separately). Every group steps at every call, so all share the
    global step count.
    """
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise TypeError(f"optimizers: expected a non-empty dict of str to update functions, got {optimizers!r}")
    for name, fn in optimizers.items():
        if not isinstance(name, str) or not name or "/" in name or ":" in name:
            raise ValueError(f"optimizers: expected group names without '/' or ':', got {name!r}")
        if not callable(fn):
            raise TypeError(f"optimizers[{name!r}]: expected an update function, got {type(fn).__name__}")
    if not callable(group_of):
        raise TypeError(f"group_of: expected a callable key -> group name, got {type(group_of).__name__}")
    return functools.partial(_combined_step, optimizers=dict(optimizers), group_of=group_of)


def _combined_step(params, grads, state=None, *, optimizers, group_of):
    """The update :func:`combine` returns: split by group, step each group, merge."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of ndarrays, got {type(params).__name__}")
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads: expected a dict of ndarrays, got {type(grads).__name__}")
    if set(params) != set(grads):
        raise ValueError(f"grads: expected the same keys as params, {_describe_key_mismatch(params, grads)}")
    members: dict[str, list] = {name: [] for name in optimizers}
    for k in params:
        name = group_of(k)
        if name not in members:
            raise ValueError(f"group_of: expected one of {sorted(optimizers)} for params[{k!r}], got {name!r}")
        members[name].append(k)
    if state is not None:
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected a dict or None, got {type(state).__name__}")
        stray = sorted(s for s in state if s != "step" and s.split(":", 1)[0] not in optimizers)
        if "step" not in state or stray:
            raise ValueError(
                f"state: expected 'step' and '<group>:<slot>' entries for the groups {sorted(optimizers)}, "
                f"got keys {sorted(state)}"
            )
    step = 0 if state is None else state["step"]

    new_params, new_state = {}, {"step": int(step) + 1}
    for name, keys in members.items():
        if not keys:
            continue
        sub_state = None
        if state is not None:
            prefix = f"{name}:"
            sub_state = {"step": step, **{s[len(prefix) :]: v for s, v in state.items() if s.startswith(prefix)}}
        p, s = optimizers[name]({k: params[k] for k in keys}, {k: grads[k] for k in keys}, sub_state)
        new_params.update(p)
        new_state.update({f"{name}:{slot}": v for slot, v in s.items() if slot != "step"})
    return {k: new_params[k] for k in params}, new_state


def param_groups(groups):
    r"""Parameter groups by name pattern: each parameter goes to the first group whose pattern matches.

    The pattern front end of :func:`combine` (which it builds, so the state and checkpoints are
    :func:`combine`'s)::

        step = param_groups({
            "values": clipped(make_optimizer("sparse_adam", lr=1e-3), max_norm=1.0),
            "*": clipped(functools.partial(adamw, lr=1e-4, weight_decay=0.01), max_norm=1.0),
        })
        params, state = step(params, grads, state)  # state keys like "values:m/pkm.values"

    Parameters
    ----------
    groups : dict of str to callable
        Pattern to update ``step(params, grads, state=None) -> (params, state)`` (from
        :func:`make_optimizer` or :func:`functools.partial`, optionally wrapped in
        :func:`clipped` for the group's own clip), in priority order: the first pattern that
        matches a key wins. A pattern is an
        :mod:`fnmatch` shell pattern (``*``, ``?``, ``[...]``, case-sensitive) matched against the
        whole key or against a dotted suffix of it: ``"values"`` matches ``"values"`` and
        ``"layers.3.pkm.values"`` but not ``"myvalues"``; ``"*values"`` matches all three;
        ``"*"`` matches every key. Patterns are non-empty and contain neither ``"/"`` nor
        ``":"`` (they name the groups in the state).

    Returns
    -------
    step : callable
        ``step(params, grads, state=None) -> (params, state)``, with :func:`combine`'s state
        ``{"step": int, "<pattern>:<slot>": {name: ndarray}}``.

    Raises
    ------
    TypeError
        ``groups`` is not a non-empty dict, or one of its values is not callable.
    ValueError
        An empty pattern or one with ``"/"`` or ``":"``; at a step, a parameter that no pattern
        matches (the message names the key and lists the patterns).

    See Also
    --------
    combine, clipped, make_optimizer

    Notes
    -----
    Every group sees only its own parameters and gradients, so a :func:`clipped` group clips by
    the norm of its own gradients alone (Memory+ clips the value group and the rest separately,
    both at 1.0), and its learning rate is the one bound in its optimizer.
    """
    if not isinstance(groups, Mapping) or not groups:
        raise TypeError(f"groups: expected a non-empty dict of pattern to update function, got {groups!r}")
    for pattern, fn in groups.items():
        if not isinstance(pattern, str) or not pattern or "/" in pattern or ":" in pattern:
            raise ValueError(f"groups: expected non-empty patterns without '/' or ':', got {pattern!r}")
        if not callable(fn):
            raise TypeError(f"groups[{pattern!r}]: expected an update function, got {type(fn).__name__}")
    return combine(groups, functools.partial(_first_match, patterns=tuple(groups)))


def _pattern_matches(key: str, pattern: str) -> bool:
    """``pattern`` matches the whole dotted ``key`` or one of its dotted suffixes."""
    return fnmatch.fnmatchcase(key, pattern) or fnmatch.fnmatchcase(key, "*." + pattern)


def _first_match(key, *, patterns):
    """The group :func:`param_groups` gives ``key``: the first pattern that matches it."""
    for pattern in patterns:
        if _pattern_matches(key, pattern):
            return pattern
    raise ValueError(
        f"params[{key!r}]: no parameter group matches; expected one of the patterns {list(patterns)} to "
        "match it (add a catch-all '*' group last)"
    )


def clipped(step, *, value=None, max_norm=None):
    r"""An update that clips its own gradients first: a parameter group's gradient clip.

    Parameters
    ----------
    step : callable
        ``step(params, grads, state=None) -> (params, state)``, e.g. from :func:`make_optimizer`.
    value : float or None, optional
        Clip every gradient entry to ``[-value, value]`` (:func:`clip_elementwise`) first.
    max_norm : float or None, optional
        Then rescale the gradients to a joint L2 norm of at most ``max_norm``
        (:func:`clip_global_norm`). At least one of ``value`` and ``max_norm`` is given.

    Returns
    -------
    step : callable
        ``step(params, grads, state=None) -> (params, state)``, the state exactly ``step``'s.
        Row-sparse gradients stay row-sparse through the clip.

    Raises
    ------
    TypeError
        ``step`` is not callable.
    ValueError
        Neither bound given, or a bound that is not a number > 0.

    See Also
    --------
    param_groups, combine, clip_global_norm, clip_elementwise

    Notes
    -----
    Inside :func:`param_groups` or :func:`combine` the norm is that of the group's gradients
    only; the trainer's ``clip``/``clip_norm`` act on all parameters together, before the split.
    """
    if not callable(step):
        raise TypeError(f"step: expected an update function, got {type(step).__name__}")
    if value is None and max_norm is None:
        raise ValueError("clipped: expected value=, max_norm= or both, got neither")
    if value is not None:
        value = _check_positive(value, "value", allow_inf=True)
    if max_norm is not None:
        max_norm = _check_positive(max_norm, "max_norm", allow_inf=True)
    return functools.partial(_clipped_step, step=step, value=value, max_norm=max_norm)


def _clipped_step(params, grads, state=None, *, step, value, max_norm):
    """The update :func:`clipped` returns: clip entries, then the norm, then step."""
    if value is not None:
        grads = clip_elementwise(grads, value)
    if max_norm is not None:
        grads, _ = clip_global_norm(grads, max_norm)
    return step(params, grads, state)


# --------------------------------------------------------------------------- gradient clipping


def clip_elementwise(grads, value):
    r"""Clip every gradient entry to ``[-value, value]``.

    Parameters
    ----------
    grads : dict of str to ndarray or RowGrad
        Finite gradients. Not modified. A :class:`~refmann.ops.RowGrad` is clipped as the dense
        gradient it stands for, without building it.
    value : float
        Clip bound c > 0 (``inf`` means no clipping).

    Returns
    -------
    grads : dict of str to ndarray or RowGrad
        New arrays, same keys, shapes and dtypes. A RowGrad comes back as a RowGrad of the same
        layout, coalesced: each row once (in a batch, once per element), ascending.

    See Also
    --------
    clip_global_norm

    Notes
    -----
    .. math:: g \leftarrow \min(\max(g, -c), c)

    Clipping is not linear, so a RowGrad's repeated indices are summed *before* clipping:
    ``clip(g[i] + g[i])``, not ``clip(g[i]) + clip(g[i])``.
    """
    value = _check_positive(value, "value", allow_inf=True)
    G = _check_grads(grads)
    return {k: _map_arrays(g, lambda a: np.clip(a, -value, value).astype(a.dtype, copy=False)) for k, g in G.items()}


def _map_arrays(g, fn):
    """``fn`` of a dense gradient, or of a coalesced gradient's rows, handed back as a RowGrad."""
    return _to_rowgrad(g._replace(rows=fn(g.rows))) if isinstance(g, _Rows) else fn(g)


def _global_norm(G: Params) -> float:
    """L2 norm over all arrays, in float64, scaled by the max |g| so huge entries cannot overflow."""
    if not G:
        return 0.0
    scale = max((float(np.max(np.abs(g))) for g in G.values() if g.size), default=0.0)
    if scale == 0.0:
        return 0.0
    total = sum(float(np.sum(np.square(g.astype(np.float64) / scale))) for g in G.values())
    return scale * math.sqrt(total)


def clip_global_norm(grads, max_norm):
    r"""Rescale all gradients together so their joint L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : dict of str to ndarray or RowGrad
        Finite gradients. Not modified. A :class:`~refmann.ops.RowGrad` counts with the norm of the
        dense gradient it stands for (repeated indices summed first); nothing of its N rows is
        allocated.
    max_norm : float
        Bound c > 0 on the global norm (``inf`` means no clipping).

    Returns
    -------
    grads : dict of str to ndarray or RowGrad
        New arrays (same keys, shapes, dtypes), scaled by ``max_norm / norm`` if ``norm >
        max_norm``, otherwise equal to the input. A RowGrad comes back as a RowGrad of the same
        layout, coalesced (each row once, ascending), and stands for the same dense gradient.
    norm : float
        The global norm *before* clipping (useful for logging divergence).

    See Also
    --------
    clip_elementwise

    Notes
    -----
    The direction of the concatenated gradient is kept (Pascanu et al. 2013, Algorithm 1):

    .. math::

        \|g\| = \Big(\sum_{\text{arrays}} \sum_i g_i^2\Big)^{1/2}, \qquad
        g \leftarrow g \cdot \frac{c}{\|g\|} \quad\text{if } \|g\| > c

    References
    ----------
    .. [1] Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural
       networks", ICML, arXiv:1211.5063.
    """
    max_norm = _check_positive(max_norm, "max_norm", allow_inf=True)
    G = _check_grads(grads)
    norm = _global_norm({k: g.rows if isinstance(g, _Rows) else g for k, g in G.items()})
    if norm <= max_norm:
        return {k: _map_arrays(g, np.copy) for k, g in G.items()}, norm
    factor = max_norm / norm
    log.debug("clip_global_norm: norm %.6g > max_norm %.6g, scaling by %.6g", norm, max_norm, factor)
    return {k: _map_arrays(g, lambda a: (a * factor).astype(a.dtype, copy=False)) for k, g in G.items()}, norm


# --------------------------------------------------------------------------- checkpointing


def state_to_arrays(state) -> dict[str, np.ndarray]:
    r"""Flatten an optimizer state to ``{name: ndarray}`` for ``np.savez``.

    Parameters
    ----------
    state : dict
        ``{"step": int, <slot>: {param_name: ndarray}}`` as returned by an optimizer.

    Returns
    -------
    arrays : dict of str to ndarray
        ``"step"`` as a 0-d int64 array and ``"<slot>/<param_name>"`` (e.g. ``"m/controller.weight"``)
        for every slot array (copies, dtypes kept). Loadable with ``allow_pickle=False``.

    See Also
    --------
    state_from_arrays
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a dict, got {type(state).__name__}")
    out: dict[str, np.ndarray] = {}
    for slot, value in state.items():
        if "/" in slot:
            raise ValueError(f"state: slot names must not contain '/', got {slot!r}")
        if isinstance(value, Mapping):
            for k, a in value.items():
                out[f"{slot}/{k}"] = np.array(a, copy=True)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            out[slot] = np.array(value, dtype=np.int64)
        else:
            raise TypeError(f"state[{slot!r}]: expected an int or a dict of ndarrays, got {type(value).__name__}")
    return out


def state_from_arrays(arrays) -> State:
    r"""Rebuild an optimizer state from :func:`state_to_arrays` output (or an ``np.load`` result).

    Parameters
    ----------
    arrays : mapping of str to ndarray
        ``"step"`` (0-d integer array) and ``"<slot>/<param_name>"`` entries. An ``NpzFile``
        works directly; other keys with no ``/`` must be 0-d integers.

    Returns
    -------
    state : dict
        ``{"step": int, <slot>: {param_name: ndarray}}``, with arrays copied into memory.

    See Also
    --------
    state_to_arrays
    """
    if not isinstance(arrays, Mapping) and not hasattr(arrays, "files"):
        raise TypeError(f"arrays: expected a mapping of ndarrays, got {type(arrays).__name__}")
    keys = list(arrays.files) if hasattr(arrays, "files") else list(arrays)
    if "step" not in keys:
        raise ValueError(f"arrays: expected a 'step' entry, got keys {sorted(keys)}")
    state: State = {}
    for key in keys:
        a = np.asarray(arrays[key])
        if "/" in key:
            slot, name = key.split("/", 1)  # slot names never contain '/', parameter names may
            state.setdefault(slot, {})[name] = np.array(a, copy=True)
        elif a.ndim == 0 and np.issubdtype(a.dtype, np.integer):
            state[key] = int(a)
        else:
            raise ValueError(f"arrays[{key!r}]: expected a 0-d integer array, got dtype {a.dtype} shape {a.shape}")
    return state
