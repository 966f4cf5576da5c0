r"""Optimizers as pure functions on ``(params, grads, state)``.

Parameters and gradients are ``dict[str, ndarray]`` with identical (dotted) keys, e.g.
``"controller.W"``. Every update returns *new* dicts and arrays; nothing passed in is modified::

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
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping

import numpy as np

from .._checks import as_float_array

log = logging.getLogger(__name__)

__all__ = [
    "adam",
    "clip_elementwise",
    "clip_global_norm",
    "make_optimizer",
    "rmsprop",
    "sgd",
    "state_from_arrays",
    "state_to_arrays",
]

Params = dict[str, np.ndarray]
State = dict  # {"step": int, slot: {name: ndarray}}


# --------------------------------------------------------------------------- boundary checks


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


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _describe_key_mismatch(expected, given) -> str:
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    return f"missing {missing}, extra {extra}"


def _check_grads(grads, name: str = "grads") -> Params:
    """Every gradient as a finite float array; errors name the offending key."""
    if not isinstance(grads, Mapping):
        raise TypeError(f"{name}: expected a dict of ndarrays, got {type(grads).__name__}")
    return {k: as_float_array(g, f"{name}[{k!r}]", finite=True) for k, g in grads.items()}


def _check_params_and_grads(params, grads) -> tuple[Params, Params]:
    """Same keys, same shapes, float params, finite grads (cast to the parameter's dtype)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of ndarrays, got {type(params).__name__}")
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads: expected a dict of ndarrays, got {type(grads).__name__}")
    if set(params) != set(grads):
        raise ValueError(
            f"grads: expected the same keys as params, {_describe_key_mismatch(params, grads)}"
        )
    P = {k: as_float_array(p, f"params[{k!r}]", finite=False) for k, p in params.items()}
    G = {}
    for k, p in P.items():
        g = as_float_array(grads[k], f"grads[{k!r}]", finite=True)
        if g.shape != p.shape:
            raise ValueError(f"grads[{k!r}]: expected shape {p.shape} (as params[{k!r}]), got {g.shape}")
        G[k] = g.astype(p.dtype, copy=False)
    return P, G


def _init_or_check_state(state, params: Params, slots: tuple[str, ...], who: str) -> State:
    """Zeros for ``state=None``; otherwise check that ``state`` fits ``params`` and ``slots``."""
    if state is None:
        return {"step": 0, **{s: {k: np.zeros_like(p) for k, p in params.items()} for s in slots}}
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a dict or None, got {type(state).__name__}")
    want = {"step", *slots}
    if set(state) != want:
        raise ValueError(
            f"state: expected the {who} slots {sorted(want)}, {_describe_key_mismatch(want, state)}"
        )
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
            if a.shape != p.shape:
                raise ValueError(f"state[{s!r}][{k!r}]: expected shape {p.shape}, got {a.shape}")
    return state


# --------------------------------------------------------------------------- update rules


def sgd(params, grads, state=None, *, lr, momentum=0.0, nesterov=False):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    Parameters
    ----------
    params : dict of str to ndarray
        Current parameters (float32 or float64), keyed by dotted name. Not modified.
    grads : dict of str to ndarray
        ∂L/∂param for every key of ``params``, same shapes, finite. Not modified.
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
    rmsprop, adam, make_optimizer

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
    nesterov = _check_flag(nesterov, "nesterov")
    P, G = _check_params_and_grads(params, grads)
    state = _init_or_check_state(state, P, ("velocity",), "sgd")

    new_params, velocity = {}, {}
    for k, p in P.items():
        g = G[k]
        v = mu * state["velocity"][k] - lr * g                  # v_t = μ v_{t-1} - η g_t
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
    grads : dict of str to ndarray
        ∂L/∂param for every key of ``params``, same shapes, finite. Not modified.
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
    sgd, adam, make_optimizer

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
    centered = _check_flag(centered, "centered")
    P, G = _check_params_and_grads(params, grads)
    slots = ("n", "gbar", "delta") if centered else ("n", "delta")
    state = _init_or_check_state(state, P, slots, "centred rmsprop" if centered else "rmsprop")

    new_params = {}
    new_state = {"step": int(state["step"]) + 1, **{s: {} for s in slots}}
    for k, p in P.items():
        g = G[k]
        n = rho * state["n"][k] + (1 - rho) * g * g             # eq. (38)
        if centered:
            gbar = rho * state["gbar"][k] + (1 - rho) * g      # eq. (39)
            denom = np.sqrt(n - gbar * gbar + eps)             # running std, not RMS
            new_state["gbar"][k] = gbar.astype(p.dtype, copy=False)
        else:
            denom = np.sqrt(n + eps)
        delta = mu * state["delta"][k] - lr * g / denom        # eq. (40)
        new_params[k] = (p + delta).astype(p.dtype, copy=False)  # eq. (41)
        new_state["n"][k] = n.astype(p.dtype, copy=False)
        new_state["delta"][k] = delta.astype(p.dtype, copy=False)
    return new_params, new_state


def adam(params, grads, state=None, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    r"""Adam with bias-corrected moment estimates (Kingma & Ba 2014, Algorithm 1).

    Parameters
    ----------
    params : dict of str to ndarray
        Current parameters (float32 or float64), keyed by dotted name. Not modified.
    grads : dict of str to ndarray
        ∂L/∂param for every key of ``params``, same shapes, finite. Not modified.
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
    sgd, rmsprop, make_optimizer

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
    .. [1] Kingma & Ba (2014), "Adam: a method for stochastic optimization", arXiv:1412.6980,
       Algorithm 1.
    """
    lr = _check_positive(lr, "lr")
    beta1 = _check_unit_interval(beta1, "beta1")
    beta2 = _check_unit_interval(beta2, "beta2")
    eps = _check_positive(eps, "eps")
    P, G = _check_params_and_grads(params, grads)
    state = _init_or_check_state(state, P, ("m", "v"), "adam")

    t = int(state["step"]) + 1
    c1 = 1.0 - beta1**t                                        # bias corrections (Python floats)
    c2 = 1.0 - beta2**t
    new_params, M, V = {}, {}, {}
    for k, p in P.items():
        g = G[k]
        m = beta1 * state["m"][k] + (1 - beta1) * g
        v = beta2 * state["v"][k] + (1 - beta2) * g * g
        m_hat = m / c1
        v_hat = v / c2
        new_params[k] = (p - lr * m_hat / (np.sqrt(v_hat) + eps)).astype(p.dtype, copy=False)
        M[k] = m.astype(p.dtype, copy=False)
        V[k] = v.astype(p.dtype, copy=False)
    return new_params, {"step": t, "m": M, "v": V}


_OPTIMIZERS: dict[str, Callable] = {"sgd": sgd, "rmsprop": rmsprop, "adam": adam}


def make_optimizer(name: str, **hyper) -> Callable:
    r"""Bind an optimizer's hyperparameters: ``step = make_optimizer("adam", lr=1e-3)``.

    Parameters
    ----------
    name : str
        One of ``"sgd"``, ``"rmsprop"``, ``"adam"``.
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


# --------------------------------------------------------------------------- gradient clipping


def clip_elementwise(grads, value):
    r"""Clip every gradient entry to ``[-value, value]``.

    Parameters
    ----------
    grads : dict of str to ndarray
        Finite gradients. Not modified.
    value : float
        Clip bound c > 0 (``inf`` means no clipping).

    Returns
    -------
    grads : dict of str to ndarray
        New arrays, same keys, shapes and dtypes.

    See Also
    --------
    clip_global_norm

    Notes
    -----
    .. math:: g \leftarrow \min(\max(g, -c), c)
    """
    value = _check_positive(value, "value", allow_inf=True)
    G = _check_grads(grads)
    return {k: np.clip(g, -value, value).astype(g.dtype, copy=False) for k, g in G.items()}


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
    grads : dict of str to ndarray
        Finite gradients. Not modified.
    max_norm : float
        Bound c > 0 on the global norm (``inf`` means no clipping).

    Returns
    -------
    grads : dict of str to ndarray
        New arrays (same keys, shapes, dtypes), scaled by ``max_norm / norm`` if ``norm >
        max_norm``, otherwise equal to the input.
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
    norm = _global_norm(G)
    if norm <= max_norm:
        return {k: g.copy() for k, g in G.items()}, norm
    factor = max_norm / norm
    log.debug("clip_global_norm: norm %.6g > max_norm %.6g, scaling by %.6g", norm, max_norm, factor)
    return {k: (g * factor).astype(g.dtype, copy=False) for k, g in G.items()}, norm


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
        ``"step"`` as a 0-d int64 array and ``"<slot>/<param_name>"`` (e.g. ``"m/controller.W"``)
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
            raise TypeError(
                f"state[{slot!r}]: expected an int or a dict of ndarrays, got {type(value).__name__}"
            )
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
            raise ValueError(
                f"arrays[{key!r}]: expected a 0-d integer array, got dtype {a.dtype} shape {a.shape}"
            )
    return state
