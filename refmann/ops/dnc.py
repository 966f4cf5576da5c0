r"""The Differentiable Neural Computer's ops: usage, allocation, write weights, links, directional and read weights.

Graves et al. (2016), Methods, "Dynamic memory allocation" and "Temporal memory linkage", in the form of
DeepMind's released code (DESIGN decision 10): usage from the previous write weights under stop-gradient,
allocation by a stable sort (ties to the lower index), read modes ordered [backward…, forward…, content].

Shapes: ``B`` batch, ``N`` slots, ``R`` read heads, ``Wh`` write heads (usually 1).
Derivations: ``docs/derivations/dnc.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_dout, check_dout_tuple, check_range, check_real, check_shape, enabled
from ._registry import register_op, simplex


def _exclusive_cumprod(x: np.ndarray, axis: int) -> np.ndarray:
    """:math:`P_j = \\prod_{i<j} x_i` along ``axis`` (a leading 1, no division)."""
    x = np.moveaxis(x, axis, -1)
    out = np.ones_like(x)
    np.cumprod(x[..., :-1], axis=-1, out=out[..., 1:])
    return np.moveaxis(out, -1, axis)


def _exclusive_products(x: np.ndarray, axis: int) -> np.ndarray:
    """:math:`\\prod_{k \\ne i} x_k` along ``axis``: an exclusive prefix times an exclusive suffix product."""
    prefix = _exclusive_cumprod(x, axis)
    suffix = np.flip(_exclusive_cumprod(np.flip(x, axis), axis), axis)
    return prefix * suffix


# -- 1. usage ------------------------------------------------------------------------------------------------


class UsageCache(NamedTuple):
    usage: np.ndarray  # (B, N)     u_{t-1}
    free_gates: np.ndarray  # (B, R)     f
    read_weights: np.ndarray  # (B, R, N)  w^r_{t-1}
    written: np.ndarray  # (B, N)     w̄ = 1 − Π_j (1 − w^w_j), no gradient
    retention: np.ndarray  # (B, N)     ψ = Π_i (1 − f_i w^r_i)
    usage_t: np.ndarray  # (B, N)     the output u_t


def dnc_usage_forward(usage, free_gates, read_weights, *, write_weights):
    r"""Usage after the previous step's writes and the free gates' releases (Graves et al. 2016, Methods).

    Parameters
    ----------
    usage : ndarray, shape (B, N)
        :math:`u_{t-1}`, in [0, 1].
    free_gates : ndarray, shape (B, R)
        Free gates :math:`f_i`, in [0, 1].
    read_weights : ndarray, shape (B, R, N)
        The previous read weights :math:`w^{r,i}_{t-1}`.
    write_weights : ndarray, shape (B, Wh, N), keyword-only
        The previous write weights :math:`w^{w,j}_{t-1}`, under stop-gradient (DeepMind's code): they get
        no gradient.

    Returns
    -------
    usage_t : ndarray, shape (B, N)
    cache : UsageCache

    Notes
    -----
    .. math::
        \bar w = 1 - \prod_j (1 - w^{w,j}_{t-1}), \qquad
        \psi = \prod_i (1 - f_i\, w^{r,i}_{t-1}), \qquad
        u_t = (u_{t-1} + \bar w - u_{t-1} \circ \bar w) \circ \psi

    The backward of ψ multiplies exclusive prefix and suffix products over the read heads; it never
    divides by :math:`1 - f_i w^{r,i}`, which may be exactly 0 (``docs/derivations/dnc.md``).

    References
    ----------
    Graves et al. (2016), "Hybrid computing using a neural network with dynamic external memory", Nature 538.
    """
    if enabled():
        usage = as_float_array(usage, "usage", ndim=2)
        free_gates = as_float_array(free_gates, "free_gates", ndim=2)
        read_weights = as_float_array(read_weights, "read_weights", ndim=3)
        write_weights = as_float_array(write_weights, "write_weights", ndim=3)
        B, N = usage.shape
        check_shape(free_gates, "free_gates", (B, None))
        check_shape(read_weights, "read_weights", (B, free_gates.shape[1], N))
        check_shape(write_weights, "write_weights", (B, None, N))
    written = 1.0 - np.prod(1.0 - write_weights, axis=1)  # (B, N)
    retention = np.prod(1.0 - free_gates[..., None] * read_weights, axis=1)  # (B, N)
    usage_t = (usage + written - usage * written) * retention  # (B, N)
    return usage_t, UsageCache(usage, free_gates, read_weights, written, retention, usage_t)


def dnc_usage_backward(dusage_t, cache):
    r"""VJP of :func:`dnc_usage_forward` (``docs/derivations/dnc.md``, usage).

    .. math::
        du_{t-1} = du_t \circ \psi \circ (1 - \bar w), \quad
        d\psi = du_t \circ (u_{t-1} + \bar w - u_{t-1}\bar w), \quad
        df_i = -\sum_n d\psi_n\, \Psi^{(i)}_n\, w^{r,i}_n, \quad
        dw^{r,i}_n = -d\psi_n\, \Psi^{(i)}_n\, f_i

    with :math:`\Psi^{(i)} = \prod_{k \ne i} (1 - f_k w^{r,k})` (prefix × suffix products).
    """
    if enabled():
        check_dout(dusage_t, cache.usage.shape, "dusage_t")
    usage, free_gates, read_weights, written, retention, _ = cache
    dusage = dusage_t * retention * (1.0 - written)  # (B, N)
    dretention = dusage_t * (usage + written - usage * written)  # (B, N)
    others = _exclusive_products(1.0 - free_gates[..., None] * read_weights, axis=1)  # (B, R, N)
    dfactor = -dretention[:, None, :] * others  # (B, R, N)  ∂L/∂(f_i w_i)
    dfree_gates = np.sum(dfactor * read_weights, axis=-1)  # (B, R)
    dread_weights = dfactor * free_gates[..., None]  # (B, R, N)
    return dusage, dfree_gates, dread_weights


# -- 2. allocation --------------------------------------------------------------------------------------------


def dnc_allocation_order(usage, *, eps=1e-6):
    r"""The free list φ: slot indices by ascending :math:`\hat u = \epsilon + (1-\epsilon) u`, ties to the lower index.

    Parameters
    ----------
    usage : ndarray, shape (B, N)
    eps : float, keyword-only

    Returns
    -------
    order : int ndarray, shape (B, N)
        ``order[b, 0]`` is the least-used slot (the one allocation favours most).
    """
    usage = as_float_array(usage, "usage", ndim=2)
    return np.argsort(eps + (1.0 - eps) * usage, axis=-1, kind="stable")


class AllocationCache(NamedTuple):
    usage: np.ndarray  # (B, Wh, N)  the usage each write head allocates from (u, then u updated by heads < j)
    write_gates: np.ndarray  # (B, Wh)     g^a g^w per head
    order: np.ndarray  # (B, Wh, N)  int φ: ascending û, ties to the lower index
    sorted_usage: np.ndarray  # (B, Wh, N)  s_j = û_{φ_j}, ≥ eps
    prefix: np.ndarray  # (B, Wh, N)  P_j = Π_{i<j} s_i
    allocation: np.ndarray  # (B, Wh, N)  the output a (slot order)
    eps: float


def _allocate(usage, eps):
    """One head's allocation from usage (B, N): (a, φ, s, P) with a in slot order."""
    order = np.argsort(eps + (1.0 - eps) * usage, axis=-1, kind="stable")  # (B, N)
    s = eps + (1.0 - eps) * np.take_along_axis(usage, order, axis=-1)  # (B, N) ascending
    prefix = _exclusive_cumprod(s, axis=-1)  # (B, N)
    a = np.empty_like(s)
    np.put_along_axis(a, order, (1.0 - s) * prefix, axis=-1)  # un-permute
    return a, order, s, prefix


def dnc_allocation_forward(usage, write_gates, *, eps=1e-6):
    r"""Allocation weights: the least-used slots first (Graves et al. 2016, Methods; DeepMind's ``Freeness``).

    Parameters
    ----------
    usage : ndarray, shape (B, N)
        :math:`u_t`, in [0, 1].
    write_gates : ndarray, shape (B, Wh)
        :math:`g^a_j g^w_j` per write head (computed by the caller), in [0, 1].
    eps : float, keyword-only
        :math:`\hat u = \epsilon + (1 - \epsilon) u` keeps every sorted usage ≥ ε.

    Returns
    -------
    allocation : ndarray, shape (B, Wh, N)
    cache : AllocationCache

    Notes
    -----
    For one head, with φ the stable ascending sort of :math:`\hat u` and :math:`s_j = \hat u_{\phi_j}`:

    .. math:: a_{\phi_j} = (1 - s_j) \prod_{i<j} s_i

    Write heads allocate in order, each from the usage the previous ones left:
    :math:`a^j = \mathrm{alloc}(u)`, then :math:`u \leftarrow u + (1 - u)\, g_j\, a^j` (the gradient flows
    through this update too). The map is discontinuous where two usages tie (the sort swaps them);
    the gradient is taken through the sorted values, not through φ, in O(N) after the sort.
    """
    if enabled():
        usage = as_float_array(usage, "usage", ndim=2)
        write_gates = as_float_array(write_gates, "write_gates", ndim=2)
        check_shape(write_gates, "write_gates", (usage.shape[0], None))
        check_range(usage, "usage", 0.0, 1.0 + 1e-9)
        check_range(write_gates, "write_gates", 0.0, 1.0)
        eps = check_real(eps, "eps", 1e-12, 0.5)  # > 0: the backward divides by sorted usages ≥ eps
    B, N = usage.shape
    Wh = write_gates.shape[1]
    dtype = np.result_type(usage, write_gates)
    usages = np.empty((B, Wh, N), dtype)
    allocation = np.empty((B, Wh, N), dtype)
    order = np.empty((B, Wh, N), np.int64)
    sorted_usage = np.empty((B, Wh, N), dtype)
    prefix = np.empty((B, Wh, N), dtype)
    u = usage
    for j in range(Wh):
        usages[:, j] = u
        allocation[:, j], order[:, j], sorted_usage[:, j], prefix[:, j] = _allocate(u, eps)
        u = u + (1.0 - u) * write_gates[:, j, None] * allocation[:, j]  # (B, N)
    return allocation, AllocationCache(usages, write_gates, order, sorted_usage, prefix, allocation, eps)


def dnc_allocation_backward(dallocation, cache):
    r"""VJP of :func:`dnc_allocation_forward`, through the sorted values (``docs/derivations/dnc.md``).

    Per head, in sorted order, with :math:`g_j = \partial L / \partial a_{\phi_j}`, :math:`a_j = (1-s_j)P_j`
    and :math:`S_i = \sum_{j>i} g_j a_j`:

    .. math:: ds_i = -g_i P_i + S_i / s_i, \qquad du_{\phi_i} = (1 - \epsilon)\, ds_i

    (:math:`s_i \ge \epsilon`, so the division is safe), then back through
    :math:`u \leftarrow u + (1 - u) g_j a^j`, last head first.
    """
    if enabled():
        check_dout(dallocation, cache.allocation.shape, "dallocation")
    usages, write_gates, order, sorted_usage, prefix, allocation, eps = cache
    Wh = write_gates.shape[1]
    du = np.zeros_like(usages[:, 0])  # (B, N)  ∂L/∂(the usage after head j)
    dwrite_gates = np.zeros_like(write_gates)  # (B, Wh)
    for j in reversed(range(Wh)):
        u, a, g = usages[:, j], allocation[:, j], write_gates[:, j, None]
        # u' = u + (1 − u) g a
        dwrite_gates[:, j] = np.sum(du * (1.0 - u) * a, axis=-1)
        da = dallocation[:, j] + du * (1.0 - u) * g  # (B, N)
        du = du * (1.0 - g * a)
        # a = alloc(u), in sorted order
        s, P, phi = sorted_usage[:, j], prefix[:, j], order[:, j]
        gs = np.take_along_axis(da, phi, axis=-1)  # (B, N)
        ga = gs * (1.0 - s) * P  # g_j a_j
        later = np.cumsum(ga[..., ::-1], axis=-1)[..., ::-1] - ga  # S_i = Σ_{j>i} g_j a_j
        ds = -gs * P + later / s  # (B, N)
        du_sorted = np.zeros_like(ds)
        np.put_along_axis(du_sorted, phi, (1.0 - eps) * ds, axis=-1)  # un-permute
        du = du + du_sorted
    return du, dwrite_gates


# -- 3. write weights -----------------------------------------------------------------------------------------


class DNCWriteWeightsCache(NamedTuple):
    allocation: np.ndarray  # (B, Wh, N)
    content: np.ndarray  # (B, Wh, N)
    allocation_gate: np.ndarray  # (B, Wh)
    write_gate: np.ndarray  # (B, Wh)


def dnc_write_weights_forward(allocation, content, allocation_gate, write_gate):
    r"""Write weights :math:`w^w = g^w [g^a a + (1 - g^a) c]` (Graves et al. 2016, Methods).

    Parameters
    ----------
    allocation : ndarray, shape (B, Wh, N)
        Allocation weights :math:`a_t`.
    content : ndarray, shape (B, Wh, N)
        Write content weights :math:`c^w_t = C(M_{t-1}, k^w, \beta^w)`.
    allocation_gate : ndarray, shape (B, Wh)
        :math:`g^a`, in [0, 1].
    write_gate : ndarray, shape (B, Wh)
        :math:`g^w`, in [0, 1].

    Returns
    -------
    write_weights : ndarray, shape (B, Wh, N)
    cache : DNCWriteWeightsCache

    Notes
    -----
    .. math::
        dg^w = \langle dw, g^a a + (1-g^a) c\rangle, \quad dg^a = g^w \langle dw, a - c\rangle, \quad
        da = g^w g^a\, dw, \quad dc = g^w (1 - g^a)\, dw
    """
    if enabled():
        allocation = as_float_array(allocation, "allocation", ndim=3)
        content = as_float_array(content, "content", ndim=3)
        allocation_gate = as_float_array(allocation_gate, "allocation_gate", ndim=2)
        write_gate = as_float_array(write_gate, "write_gate", ndim=2)
        check_shape(content, "content", allocation.shape)
        check_shape(allocation_gate, "allocation_gate", allocation.shape[:2])
        check_shape(write_gate, "write_gate", allocation.shape[:2])
    ga, gw = allocation_gate[..., None], write_gate[..., None]
    write_weights = gw * (ga * allocation + (1.0 - ga) * content)  # (B, Wh, N)
    return write_weights, DNCWriteWeightsCache(allocation, content, allocation_gate, write_gate)


def dnc_write_weights_backward(dwrite_weights, cache):
    """VJP of :func:`dnc_write_weights_forward` (the Notes there)."""
    if enabled():
        check_dout(dwrite_weights, cache.allocation.shape, "dwrite_weights")
    allocation, content, allocation_gate, write_gate = cache
    ga, gw = allocation_gate[..., None], write_gate[..., None]
    dwrite_gate = np.sum(dwrite_weights * (ga * allocation + (1.0 - ga) * content), axis=-1)  # (B, Wh)
    dallocation_gate = write_gate * np.sum(dwrite_weights * (allocation - content), axis=-1)  # (B, Wh)
    return gw * ga * dwrite_weights, gw * (1.0 - ga) * dwrite_weights, dallocation_gate, dwrite_gate


# -- 4. temporal links and precedence -------------------------------------------------------------------------


class LinksCache(NamedTuple):
    link_prev: np.ndarray | None  # (B, Wh, N, N)  L_{t-1}, by reference (None once dropped)
    precedence_prev: np.ndarray  # (B, Wh, N)     p_{t-1}
    write_weights: np.ndarray  # (B, Wh, N)     w^w_t


def _zero_diagonal_inplace(x: np.ndarray) -> None:
    """Set x[..., i, i] = 0 for every i (x is (..., N, N), written in place)."""
    N = x.shape[-1]
    x.reshape(x.shape[:-2] + (N * N,))[..., :: N + 1] = 0.0


def dnc_links_forward(link, precedence, write_weights):
    r"""Temporal link matrix and precedence weights, one pair per write head (Graves et al. 2016, Methods).

    Parameters
    ----------
    link : ndarray, shape (B, Wh, N, N)
        :math:`L_{t-1}`; ``link[b, h, i, j]`` is the degree to which slot i was written after slot j.
    precedence : ndarray, shape (B, Wh, N)
        :math:`p_{t-1}`.
    write_weights : ndarray, shape (B, Wh, N)
        :math:`w^w_t`.

    Returns
    -------
    (link_t, precedence_t) : tuple of ndarray, shapes (B, Wh, N, N) and (B, Wh, N)
    cache : LinksCache
        Holds ``link`` by reference (no copy). A caller short of memory may
        ``cache._replace(link_prev=None)`` and put a recomputed :math:`L_{t-1}` back before the backward.

    Notes
    -----
    .. math::
        L_t[i, j] = (1 - w_i - w_j)\, L_{t-1}[i, j] + w_i\, p_{t-1}[j], \quad L_t[i, i] = 0, \qquad
        p_t = \Big(1 - \sum_i w_i\Big) p_{t-1} + w

    (the link uses the *old* precedence). Memory: the forward allocates the output and one transient
    (B, Wh, N, N) array (the outer product :math:`w p^\top`); the backward allocates ``dlink`` and one
    transient (B, Wh, N, N) array (:math:`dL_t \circ L_{t-1}`).
    """
    if enabled():
        link = as_float_array(link, "link", ndim=4)
        precedence = as_float_array(precedence, "precedence", ndim=3)
        write_weights = as_float_array(write_weights, "write_weights", ndim=3)
        B, Wh, N = write_weights.shape
        check_shape(link, "link", (B, Wh, N, N))
        check_shape(precedence, "precedence", (B, Wh, N))
    w = write_weights
    link_t = np.subtract((1.0 - w)[..., :, None], w[..., None, :])  # (B, Wh, N, N)  1 − w_i − w_j
    link_t *= link
    link_t += w[..., :, None] * precedence[..., None, :]  # the one transient: w_i p_j
    _zero_diagonal_inplace(link_t)
    precedence_t = (1.0 - np.sum(w, axis=-1, keepdims=True)) * precedence + w  # (B, Wh, N)
    return (link_t, precedence_t), LinksCache(link, precedence, write_weights)


def dnc_links_backward(dout, cache):
    r"""VJP of :func:`dnc_links_forward`; ``dout = (dlink_t, dprecedence_t)`` (``docs/derivations/dnc.md``).

    With :math:`G = dL_t` with its diagonal masked:

    .. math::
        dL_{t-1} = (1 - w_i - w_j) \circ G, \qquad
        dp_{t-1} = w^\top G + \Big(1 - \sum_i w_i\Big) dp_t,

        dw_k = \sum_j G_{kj}\big(p_{t-1}[j] - L_{t-1}[k, j]\big) - \sum_i G_{ik} L_{t-1}[i, k]
               + dp_t[k] - \langle dp_t, p_{t-1} \rangle

    Raises ValueError if the cache's ``link_prev`` was dropped (None) and not put back.
    """
    link, precedence, w = cache
    if link is None:
        raise ValueError(
            "cache: link_prev is None (dropped to save memory); put the recomputed L_{t-1} back with "
            "cache._replace(link_prev=...) before the backward"
        )
    if enabled():
        check_dout_tuple(dout, (link.shape, precedence.shape), ("dlink_t", "dprecedence_t"))
    dlink_t, dprecedence_t = dout
    # dL_{t-1} = (1 − w_i − w_j) ∘ G
    dlink = np.subtract((1.0 - w)[..., :, None], w[..., None, :])  # (B, Wh, N, N)
    dlink *= dlink_t
    _zero_diagonal_inplace(dlink)
    diag = np.diagonal(dlink_t, axis1=-2, axis2=-1)  # (B, Wh, N)  the masked entries G would not have
    # the link's terms of dw and dp
    gl = dlink_t * link  # (B, Wh, N, N)  the one transient
    _zero_diagonal_inplace(gl)
    gp = np.matmul(dlink_t, precedence[..., None])[..., 0] - diag * precedence  # (B, Wh, N)  Σ_j G_kj p_j
    dw = gp - np.sum(gl, axis=-1) - np.sum(gl, axis=-2)  # (B, Wh, N)
    dprecedence = np.matmul(w[..., None, :], dlink_t)[..., 0, :] - diag * w  # (B, Wh, N)  Σ_i G_ij w_i
    # the precedence's terms
    dprecedence += (1.0 - np.sum(w, axis=-1, keepdims=True)) * dprecedence_t
    dw += dprecedence_t - np.sum(dprecedence_t * precedence, axis=-1, keepdims=True)
    return dlink, dprecedence, dw


# -- 5. directional (forward and backward) weights ------------------------------------------------------------


class DirectionalCache(NamedTuple):
    link: np.ndarray | None  # (B, Wh, N, N)  L_t, by reference (None once dropped)
    read_weights: np.ndarray  # (B, R, N)      w^r_{t-1}


def dnc_directional_forward(link, read_weights):
    r"""Forward and backward weights of each read head along each write head's links (Graves et al. 2016).

    Parameters
    ----------
    link : ndarray, shape (B, Wh, N, N)
        :math:`L_t`.
    read_weights : ndarray, shape (B, R, N)
        :math:`w^r_{t-1}`.

    Returns
    -------
    (forward, backward) : tuple of ndarray, each shape (B, R, Wh, N)
    cache : DirectionalCache
        Holds ``link`` by reference; droppable like :class:`LinksCache`'s ``link_prev``.

    Notes
    -----
    .. math::
        f^{r,h}_i = \sum_j L^h_{ij}\, w^r_j \;(f = L w), \qquad
        b^{r,h}_j = \sum_i L^h_{ij}\, w^r_i \;(b = L^\top w)

        dL^h = \sum_r \big(\bar f^{r,h} (w^r)^\top + w^r (\bar b^{r,h})^\top\big), \qquad
        dw^r = \sum_h \big((L^h)^\top \bar f^{r,h} + L^h\, \bar b^{r,h}\big)
    """
    if enabled():
        link = as_float_array(link, "link", ndim=4)
        read_weights = as_float_array(read_weights, "read_weights", ndim=3)
        B, Wh, N, _ = link.shape
        check_shape(link, "link", (B, Wh, N, N))
        check_shape(read_weights, "read_weights", (B, None, N))
    wT = read_weights.transpose(0, 2, 1)[:, None]  # (B, 1, N, R)
    fwd = np.matmul(link, wT).transpose(0, 3, 1, 2)  # (B, R, Wh, N)
    bwd = np.matmul(read_weights[:, None], link).transpose(0, 2, 1, 3)  # (B, R, Wh, N)
    return (np.ascontiguousarray(fwd), np.ascontiguousarray(bwd)), DirectionalCache(link, read_weights)


def dnc_directional_backward(dout, cache):
    """VJP of :func:`dnc_directional_forward`; ``dout = (dforward, dbackward)`` (the Notes there)."""
    link, w = cache
    if link is None:
        raise ValueError(
            "cache: link is None (dropped to save memory); put L_t back with cache._replace(link=...) "
            "before the backward"
        )
    B, Wh, N, _ = link.shape
    shape = (B, w.shape[1], Wh, N)
    if enabled():
        check_dout_tuple(dout, (shape, shape), ("dforward", "dbackward"))
    dfwd, dbwd = dout
    df = dfwd.transpose(0, 2, 1, 3)  # (B, Wh, R, N)
    db = dbwd.transpose(0, 2, 1, 3)  # (B, Wh, R, N)
    # dL = f̄ᵀ w + wᵀ b̄ as one (N × 2R) @ (2R × N) product: the output is the only (B, Wh, N, N) array
    R = w.shape[1]
    wT = np.broadcast_to(w.transpose(0, 2, 1)[:, None], (B, Wh, N, R))
    left = np.concatenate([df.transpose(0, 1, 3, 2), wT], axis=-1)  # (B, Wh, N, 2R)  [f̄ᵀ, wᵀ]
    right = np.concatenate([np.broadcast_to(w[:, None], (B, Wh, R, N)), db], axis=-2)  # (B, Wh, 2R, N)  [w; b̄]
    dlink = np.matmul(left, right)  # (B, Wh, N, N)
    dread_weights = np.sum(np.matmul(df, link) + np.matmul(db, link.transpose(0, 1, 3, 2)), axis=1)  # (B, R, N)
    return dlink, dread_weights


# -- 6. read weights ------------------------------------------------------------------------------------------


class DNCReadWeightsCache(NamedTuple):
    read_modes: np.ndarray  # (B, R, 1+2Wh)  [backward × Wh, forward × Wh, content]
    content: np.ndarray  # (B, R, N)
    forward: np.ndarray  # (B, R, Wh, N)
    backward: np.ndarray  # (B, R, Wh, N)


def dnc_read_weights_forward(read_modes, content, forward, backward):
    r"""Read weights: a mix of backward, forward and content weights by the read modes (Graves et al. 2016).

    Parameters
    ----------
    read_modes : ndarray, shape (B, R, 1 + 2 Wh)
        :math:`\pi`, ordered [backward × Wh, forward × Wh, content] (DeepMind's order), usually a softmax.
    content : ndarray, shape (B, R, N)
        Read content weights :math:`c^r = C(M_t, k^r, \beta^r)`.
    forward, backward : ndarray, shape (B, R, Wh, N)
        From :func:`dnc_directional_forward`.

    Returns
    -------
    read_weights : ndarray, shape (B, R, N)
    cache : DNCReadWeightsCache

    Notes
    -----
    .. math::
        w^r = \sum_h \pi_b[h]\, b_h + \sum_h \pi_f[h]\, f_h + \pi_c\, c, \qquad
        d\pi_b[h] = \langle dw^r, b_h\rangle, \; d\pi_f[h] = \langle dw^r, f_h\rangle, \;
        d\pi_c = \langle dw^r, c\rangle, \; db_h = \pi_b[h]\, dw^r, \; df_h = \pi_f[h]\, dw^r, \; dc = \pi_c\, dw^r
    """
    if enabled():
        read_modes = as_float_array(read_modes, "read_modes", ndim=3)
        content = as_float_array(content, "content", ndim=3)
        forward = as_float_array(forward, "forward", ndim=4)
        backward = as_float_array(backward, "backward", ndim=4)
        B, R, N = content.shape
        check_shape(forward, "forward", (B, R, None, N))
        check_shape(backward, "backward", forward.shape)
        check_shape(read_modes, "read_modes", (B, R, 1 + 2 * forward.shape[2]))
    Wh = forward.shape[2]
    pb, pf, pc = read_modes[..., :Wh], read_modes[..., Wh : 2 * Wh], read_modes[..., 2 * Wh :]
    read_weights = (
        np.einsum("brh,brhn->brn", pb, backward) + np.einsum("brh,brhn->brn", pf, forward) + pc * content
    )  # (B, R, N)
    return read_weights, DNCReadWeightsCache(read_modes, content, forward, backward)


def dnc_read_weights_backward(dread_weights, cache):
    """VJP of :func:`dnc_read_weights_forward` (the Notes there)."""
    if enabled():
        check_dout(dread_weights, cache.content.shape, "dread_weights")
    read_modes, content, forward, backward = cache
    Wh = forward.shape[2]
    pb, pf, pc = read_modes[..., :Wh], read_modes[..., Wh : 2 * Wh], read_modes[..., 2 * Wh :]
    dread_modes = np.concatenate(
        [
            np.einsum("brn,brhn->brh", dread_weights, backward),
            np.einsum("brn,brhn->brh", dread_weights, forward),
            np.sum(dread_weights * content, axis=-1, keepdims=True),
        ],
        axis=-1,
    )  # (B, R, 1+2Wh)
    dcontent = pc * dread_weights
    dforward = pf[..., None] * dread_weights[:, :, None, :]  # (B, R, Wh, N)
    dbackward = pb[..., None] * dread_weights[:, :, None, :]
    return dread_modes, dcontent, dforward, dbackward


# -- registry (example inputs away from kinks) ----------------------------------------------------------------


def _write_heads(rng) -> int:
    """1 or 2 write heads (DeepMind's code allows several; 1 is the paper's)."""
    return int(rng.integers(1, 3))


def spaced_usage(rng: np.random.Generator, B: int, N: int, gap: float = 0.05) -> np.ndarray:
    """(B, N) usages in [0.05, 0.95], pairwise at least ``gap`` apart (allocation jumps at ties).

    Each row is a random choice of N points of a grid of spacing ``gap + 0.01`` with a jitter of
    ±0.005; when N points do not fit, the spacing shrinks to what fits.
    """
    spacing = min(gap + 0.01, 0.9 / max(N - 1, 1))
    grid = 0.05 + spacing * np.arange(int(np.floor(0.9 / spacing + 1e-9)) + 1)
    jitter = min(0.005, spacing / 10)
    rows = [rng.permutation(grid)[:N] for _ in range(B)]
    return np.clip(np.stack(rows) + rng.uniform(-jitter, jitter, (B, N)), 0.04, 0.96)


def _min_gap(u: np.ndarray) -> float:
    s = np.sort(u, axis=-1)
    return float(np.min(np.diff(s, axis=-1), initial=np.inf))


def _allocation_example(rng, s):
    """Usages ≥ 0.05 apart; with two write heads, redrawn until the usage the second head sorts is ≥ 0.01 apart."""
    Wh = _write_heads(rng)
    for _ in range(100):
        usage = spaced_usage(rng, s.B, s.N)
        gates = rng.uniform(0.05, 0.95, (s.B, Wh))
        a, _ = dnc_allocation_forward(usage, gates)
        u = usage
        ok = True
        for j in range(Wh - 1):
            u = u + (1.0 - u) * gates[:, j, None] * a[:, j]
            ok = ok and _min_gap(u) >= 0.01
        if ok:
            return (usage, gates), {}
    return (spaced_usage(rng, s.B, s.N), rng.uniform(0.05, 0.95, (s.B, 1))), {}


def _link_matrix(rng, B, Wh, N):
    """A valid link matrix: entries in [0, 1), zero diagonal, rows summing to less than 1."""
    L = rng.random((B, Wh, N, N))
    _zero_diagonal_inplace(L)
    return L / (L.sum(-1, keepdims=True) + 0.5)


def _write_weights(rng, B, Wh, N):
    """Write weights with Σ_i w_i ∈ (0.05, 0.95): a simplex scaled by a gate."""
    return simplex(rng, B, Wh, N) * rng.uniform(0.05, 0.95, (B, Wh, 1))


def _links_example(rng, s):
    Wh = _write_heads(rng)
    return (_link_matrix(rng, s.B, Wh, s.N), _write_weights(rng, s.B, Wh, s.N), _write_weights(rng, s.B, Wh, s.N)), {}


def _usage_example(rng, s):
    Wh = _write_heads(rng)
    return (
        (rng.uniform(0.0, 1.0, (s.B, s.N)), rng.uniform(0.05, 0.95, (s.B, s.H)), simplex(rng, s.B, s.H, s.N)),
        {"write_weights": _write_weights(rng, s.B, Wh, s.N)},
    )


def _write_weights_example(rng, s):
    Wh = _write_heads(rng)
    return (
        (
            _write_weights(rng, s.B, Wh, s.N),
            simplex(rng, s.B, Wh, s.N),
            rng.uniform(0.05, 0.95, (s.B, Wh)),
            rng.uniform(0.05, 0.95, (s.B, Wh)),
        ),
        {},
    )


def _directional_example(rng, s):
    return (_link_matrix(rng, s.B, _write_heads(rng), s.N), simplex(rng, s.B, s.H, s.N)), {}


def _read_weights_example(rng, s):
    Wh = _write_heads(rng)
    return (
        (
            simplex(rng, s.B, s.H, 1 + 2 * Wh),
            simplex(rng, s.B, s.H, s.N),
            rng.uniform(0.0, 1.0, (s.B, s.H, Wh, s.N)),
            rng.uniform(0.0, 1.0, (s.B, s.H, Wh, s.N)),
        ),
        {},
    )


register_op("dnc_usage", dnc_usage_forward, dnc_usage_backward, example=_usage_example)
register_op("dnc_allocation", dnc_allocation_forward, dnc_allocation_backward, example=_allocation_example)
register_op("dnc_write_weights", dnc_write_weights_forward, dnc_write_weights_backward, example=_write_weights_example)
register_op("dnc_links", dnc_links_forward, dnc_links_backward, example=_links_example)
register_op("dnc_directional", dnc_directional_forward, dnc_directional_backward, example=_directional_example)
register_op("dnc_read_weights", dnc_read_weights_forward, dnc_read_weights_backward, example=_read_weights_example)
