r"""Content and location addressing (Graves et al. 2014, §3.3; Rae et al. 2016, §2.1, eq. 2).

Shapes: ``B`` batch, ``H`` heads, ``N`` memory slots, ``W`` word size, ``S = 2R+1`` shift offsets.
Derivations: ``docs/derivations/addressing.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_dout, check_range, check_real, check_shape, enabled
from ._registry import register_op, simplex
from .activations import softmax, softmax_vjp


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else 0 (the subgradient of ‖x‖ at x = 0 is taken as 0)."""
    return np.divide(num, den, out=np.zeros(np.broadcast_shapes(num.shape, den.shape), num.dtype), where=den > 0)


class CosineCache(NamedTuple):
    memory: np.ndarray  # (B, N, W)
    keys: np.ndarray  # (B, H, W)
    key_norm: np.ndarray  # (B, H, 1)  ‖k_h‖ = sqrt(Σ k² + norm_eps)
    mem_norm: np.ndarray  # (B, 1, N)  ‖M(i)‖ = sqrt(Σ M² + norm_eps)
    denom: np.ndarray  # (B, H, N)  ‖k_h‖‖M(i)‖ + eps
    sim: np.ndarray  # (B, H, N)


def _check_memory_keys(memory, keys):
    memory = as_float_array(memory, "memory", ndim=3)
    keys = as_float_array(keys, "keys", ndim=3)
    B, _, W = memory.shape
    check_shape(keys, "keys", (B, None, W))
    return memory, keys


def cosine_similarity_forward(memory, keys, *, eps=1e-6, norm_eps=0.0):
    r"""Cosine similarity between every key and every memory row.

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
    keys : ndarray of shape (B, H, W)
    eps : float, keyword-only
        Added to the denominator; keeps zero vectors finite (their similarity is 0).
    norm_eps : float, keyword-only
        Added under each norm's square root, :math:`\lVert x\rVert = \sqrt{\sum x^2 + \epsilon_n}`
        (DeepMind's DNC uses ``norm_eps = eps = 1e-6``). The default 0 is the plain norm.

    Returns
    -------
    sim : ndarray of shape (B, H, N)
    cache : CosineCache

    Notes
    -----
    .. math:: K(k_h, M(i)) = \frac{k_h \cdot M(i)}{\lVert k_h\rVert\,\lVert M(i)\rVert + \epsilon},
              \qquad \lVert x\rVert = \sqrt{\textstyle\sum_w x_w^2 + \epsilon_n}

    Graves et al. (2014), eq. (6); the norm's :math:`\epsilon_n` as in DeepMind's DNC code.
    """
    memory, keys = _check_memory_keys(memory, keys)
    if enabled():
        norm_eps = check_real(norm_eps, "norm_eps", 0.0)
    key_sq = np.sum(keys * keys, axis=-1, keepdims=True)  # (B, H, 1)
    mem_sq = np.sum(memory * memory, axis=-1)[:, None, :]  # (B, 1, N)
    if norm_eps:  # (skipped at 0, so the default is bit-for-bit the plain norm)
        key_sq, mem_sq = key_sq + norm_eps, mem_sq + norm_eps
    key_norm = np.sqrt(key_sq)  # (B, H, 1)  ‖k_h‖
    mem_norm = np.sqrt(mem_sq)  # (B, 1, N)  ‖M(i)‖
    dots = keys @ memory.transpose(0, 2, 1)  # (B, H, N)
    denom = key_norm * mem_norm + eps  # (B, H, N)
    sim = dots / denom
    return sim, CosineCache(memory, keys, key_norm, mem_norm, denom, sim)


def cosine_similarity_backward(dsim, cache):
    r"""VJP of :func:`cosine_similarity_forward`.

    With :math:`s = d / D`, :math:`d = k\cdot m`, :math:`D = \lVert k\rVert\lVert m\rVert + \epsilon`
    (and :math:`\partial \lVert x\rVert / \partial x = x / \lVert x\rVert` for either norm):

    .. math::
        \frac{\partial L}{\partial k} = \sum_i \frac{g_i}{D_i}\Big(m_i - s_i \lVert m_i\rVert
        \frac{k}{\lVert k\rVert}\Big), \qquad
        \frac{\partial L}{\partial m_i} = \sum_h \frac{g_{hi}}{D_{hi}}\Big(k_h - s_{hi} \lVert k_h\rVert
        \frac{m_i}{\lVert m_i\rVert}\Big)
    """
    if enabled():
        check_dout(dsim, cache.sim.shape, "dsim")
    memory, keys, key_norm, mem_norm, denom, sim = cache
    ddots = dsim / denom  # (B, H, N)
    dden = -ddots * sim  # (B, H, N)  ∂L/∂D
    dkey_norm = np.sum(dden * mem_norm, axis=-1, keepdims=True)  # (B, H, 1)
    dmem_norm = np.sum(dden * key_norm, axis=1)  # (B, N)
    dkeys = ddots @ memory + dkey_norm * _safe_divide(keys, key_norm)  # (B, H, W)
    dmemory = ddots.transpose(0, 2, 1) @ keys  # (B, N, W)
    dmemory += dmem_norm[..., None] * _safe_divide(memory, mem_norm[:, 0, :, None])
    return dmemory, dkeys


class ContentWeightsCache(NamedTuple):
    cosine: CosineCache
    strengths: np.ndarray  # (B, H)
    weights: np.ndarray  # (B, H, N)


def content_weights_forward(memory, keys, strengths, *, eps=1e-6, norm_eps=0.0):
    r"""Content addressing: a softmax over slots of the key strength times the cosine similarity.

    Parameters
    ----------
    memory : ndarray of shape (B, N, W)
    keys : ndarray of shape (B, H, W)
    strengths : ndarray of shape (B, H)
        Key strengths β (any sign is accepted; models produce β ≥ 1 with ``oneplus``).
    eps, norm_eps : float, keyword-only
        As in :func:`cosine_similarity_forward`.

    Returns
    -------
    weights : ndarray of shape (B, H, N)
        Rows on the probability simplex.
    cache : ContentWeightsCache

    Notes
    -----
    .. math:: w_h(i) = \frac{\exp(\beta_h K(k_h, M(i)))}{\sum_j \exp(\beta_h K(k_h, M(j)))}

    Graves et al. (2014), eq. (5); Rae et al. (2016), §2.1, eq. (2).
    """
    memory, keys = _check_memory_keys(memory, keys)
    strengths = as_float_array(strengths, "strengths", ndim=2)
    check_shape(strengths, "strengths", keys.shape[:2])
    sim, cos_cache = cosine_similarity_forward(memory, keys, eps=eps, norm_eps=norm_eps)
    weights = softmax(strengths[..., None] * sim, axis=-1)  # (B, H, N)
    return weights, ContentWeightsCache(cos_cache, strengths, weights)


def content_weights_backward(dweights, cache):
    r"""VJP of :func:`content_weights_forward`.

    .. math:: dz = w \odot (dw - \langle w, dw\rangle), \quad d\beta_h = \sum_i dz_{hi} K_{hi},
              \quad dK = \beta\, dz

    then the cosine VJP.
    """
    if enabled():
        check_dout(dweights, cache.weights.shape, "dweights")
    w, sim, strengths = cache.weights, cache.cosine.sim, cache.strengths
    dz = softmax_vjp(w, dweights)  # (B, H, N) softmax VJP, stable when w is saturated
    dstrengths = np.sum(dz * sim, axis=-1)  # (B, H)
    dmemory, dkeys = cosine_similarity_backward(dz * strengths[..., None], cache.cosine)
    return dmemory, dkeys, dstrengths


class InterpolateCache(NamedTuple):
    content: np.ndarray  # (B, H, N)
    previous: np.ndarray  # (B, H, N)
    gate: np.ndarray  # (B, H)


def interpolate_forward(content, previous, gate):
    r"""Interpolation gate: :math:`w^g = g\,w^c + (1 - g)\,w_{t-1}` (Graves et al. 2014, eq. 7).

    Parameters
    ----------
    content : ndarray of shape (B, H, N)
        Content weights :math:`w^c_t`.
    previous : ndarray of shape (B, H, N)
        The previous step's weights :math:`w_{t-1}`.
    gate : ndarray of shape (B, H)
        Interpolation gate g, in [0, 1].

    Returns
    -------
    gated : ndarray of shape (B, H, N)
    cache : InterpolateCache
    """
    content = as_float_array(content, "content", ndim=3)
    previous = as_float_array(previous, "previous", ndim=3)
    check_shape(previous, "previous", content.shape)
    gate = as_float_array(gate, "gate", ndim=2)
    check_shape(gate, "gate", content.shape[:2])
    check_range(gate, "gate", 0.0, 1.0)
    g = gate[..., None]
    gated = g * content + (1.0 - g) * previous
    return gated, InterpolateCache(content, previous, gate)


def interpolate_backward(dgated, cache):
    r"""VJP of :func:`interpolate_forward`: :math:`dw^c = g\,d`, :math:`dw_{t-1} = (1-g)\,d`,
    :math:`dg = \langle d, w^c - w_{t-1}\rangle`."""
    if enabled():
        check_dout(dgated, cache.content.shape, "dgated")
    g = cache.gate[..., None]
    dgate = np.sum(dgated * (cache.content - cache.previous), axis=-1)
    return g * dgated, (1.0 - g) * dgated, dgate


class ShiftCache(NamedTuple):
    rolled: np.ndarray  # (B, H, S, N)  rolled[..., j, i] = w((i - o_j) mod N)
    shift: np.ndarray  # (B, H, S)


def _shift_index(S: int, N: int, sign: int) -> np.ndarray:
    """(S, N) gather index (i - sign·o) mod N for the offsets o = -R..R."""
    R = (S - 1) // 2
    return (np.arange(N)[None, :] - sign * np.arange(-R, R + 1)[:, None]) % N


def circular_shift_forward(weights, shift):
    r"""Circular convolution with a shift weighting over offsets −R..R (Graves et al. 2014, eq. 8).

    Parameters
    ----------
    weights : ndarray of shape (B, H, N)
    shift : ndarray of shape (B, H, S)
        ``S = 2R + 1`` weights over the offsets ``-R, …, R`` (``shift[..., R]`` is offset 0).
        Usually a softmax, but any values are accepted.

    Returns
    -------
    shifted : ndarray of shape (B, H, N)
    cache : ShiftCache

    Notes
    -----
    .. math:: \tilde w(i) = \sum_{o=-R}^{R} w\big((i - o) \bmod N\big)\, s(o)

    An offset ``o > 0`` moves weight *forward* (from slot i to slot i + o), as in the paper's
    eq. (8). (pytorch-ntm's ``conv1d`` is a cross-correlation, so its offsets are mirrored.)
    """
    weights = as_float_array(weights, "weights", ndim=3)
    shift = as_float_array(shift, "shift", ndim=3)
    check_shape(shift, "shift", weights.shape[:2] + (None,))
    S, N = shift.shape[-1], weights.shape[-1]
    if S % 2 != 1:
        raise ValueError(f"shift: expected an odd number of offsets 2R+1 on the last axis, got {S}")
    rolled = weights[..., _shift_index(S, N, +1)]  # (B, H, S, N)
    shifted = np.einsum("bhs,bhsn->bhn", shift, rolled)
    return shifted, ShiftCache(rolled, shift)


def circular_shift_backward(dshifted, cache):
    r"""VJP of :func:`circular_shift_forward`:
    :math:`dw(j) = \sum_o s(o)\, d\tilde w\big((j+o) \bmod N\big)`,
    :math:`ds(o) = \sum_i d\tilde w(i)\, w\big((i-o) \bmod N\big)`."""
    if enabled():
        check_dout(dshifted, cache.shift.shape[:2] + cache.rolled.shape[-1:], "dshifted")
    rolled, shift = cache
    S, N = shift.shape[-1], dshifted.shape[-1]
    dweights = np.einsum("bhs,bhsn->bhn", shift, dshifted[..., _shift_index(S, N, -1)])
    dshift = np.einsum("bhn,bhsn->bhs", dshifted, rolled)
    return dweights, dshift


class SharpenCache(NamedTuple):
    scaled: np.ndarray  # (B, H, N)  w / max(w), in [0, 1]
    wmax: np.ndarray  # (B, H, 1)  max(w) (1 where all weights are 0)
    gamma: np.ndarray  # (B, H)
    total: np.ndarray  # (B, H, 1)  Σ (w / max w)^γ, ≥ 1 (1 where all weights are 0)
    out: np.ndarray  # (B, H, N)


def sharpen_forward(weights, gamma):
    r"""Sharpening :math:`w(i)^\gamma / \sum_j w(j)^\gamma` (Graves et al. 2014, eq. 9).

    Parameters
    ----------
    weights : ndarray of shape (B, H, N)
        Non-negative weights.
    gamma : ndarray of shape (B, H)
        Exponents γ ≥ 1 (models use ``1 + softplus``).

    Returns
    -------
    sharpened : ndarray of shape (B, H, N)
        On the simplex; all-zero weights give all zeros (not NaN).
    cache : SharpenCache

    Notes
    -----
    Computed as :math:`(w/m)^\gamma / \sum_j (w_j/m)^\gamma` with :math:`m = \max_j w_j`, which is the same
    function but cannot underflow to 0/0 for large γ (an additive epsilon in the denominator, as in
    some NTM ports, visibly breaks the simplex when every :math:`w^\gamma` is tiny).
    """
    weights = as_float_array(weights, "weights", ndim=3)
    gamma = as_float_array(gamma, "gamma", ndim=2)
    check_shape(gamma, "gamma", weights.shape[:2])
    check_range(weights, "weights", 0.0)
    check_range(gamma, "gamma", 1.0)
    wmax = np.max(weights, axis=-1, keepdims=True)  # (B, H, 1)
    wmax = np.where(wmax > 0, wmax, 1.0)
    scaled = weights / wmax  # (B, H, N) in [0, 1]
    powered = scaled ** gamma[..., None]
    total = np.sum(powered, axis=-1, keepdims=True)  # ≥ 1 unless all zero
    total = np.where(total > 0, total, 1.0)
    out = powered / total
    return out, SharpenCache(scaled, wmax, gamma, total, out)


def sharpen_backward(dout, cache):
    r"""VJP of :func:`sharpen_forward`. With :math:`y = w^\gamma / \sum_j w_j^\gamma` and
    :math:`\delta_i = d_i - \langle d, y\rangle`:

    .. math:: dw_i = \delta_i\, \frac{\gamma\, w_i^{\gamma-1}}{\sum_j w_j^\gamma}, \qquad
              d\gamma = \sum_i \delta_i\, y_i \log w_i

    (evaluated on :math:`w/\max w`, where the :math:`\log\max w` term cancels because
    :math:`\sum_i \delta_i y_i = 0`; :math:`y_i \log w_i = 0` where :math:`w_i = 0`).
    """
    if enabled():
        check_dout(dout, cache.out.shape, "dout")
    scaled, wmax, gamma, total, out = cache
    delta = dout - np.sum(dout * out, axis=-1, keepdims=True)  # (B, H, N)
    g = gamma[..., None]
    dweights = delta * g * scaled ** (g - 1.0) / (wmax * total)
    positive = scaled > 0
    ylogw = np.zeros_like(out)
    np.multiply(out, np.log(scaled, out=np.zeros_like(scaled), where=positive), out=ylogw, where=positive)
    dgamma = np.sum(delta * ylogw, axis=-1)
    return dweights, dgamma


# -- registry (example inputs away from kinks) -------------------------------------------------------
def _memory_keys(rng, s):
    return rng.standard_normal((s.B, s.N, s.W)), rng.standard_normal((s.B, s.H, s.W))


def _norm_eps(rng):
    """Half the time the plain norm (no keyword), else ``norm_eps`` of DeepMind's 1e-6 or a visible 0.5."""
    return {} if rng.random() < 0.5 else {"norm_eps": float(rng.choice([1e-6, 0.5]))}


def _cosine_example(rng, s):
    arrays = _memory_keys(rng, s)
    return arrays, _norm_eps(rng)


def _content_weights_example(rng, s):
    arrays = (*_memory_keys(rng, s), 1.0 + 3 * rng.random((s.B, s.H)))
    return arrays, _norm_eps(rng)


register_op("cosine_similarity", cosine_similarity_forward, cosine_similarity_backward, example=_cosine_example)
register_op("content_weights", content_weights_forward, content_weights_backward, example=_content_weights_example)
register_op(
    "interpolate",
    interpolate_forward,
    interpolate_backward,
    example=lambda rng, s: (
        (simplex(rng, s.B, s.H, s.N), simplex(rng, s.B, s.H, s.N), rng.uniform(0.05, 0.95, (s.B, s.H))),
        {},
    ),
)
register_op(
    "circular_shift",
    circular_shift_forward,
    circular_shift_backward,
    example=lambda rng, s: ((simplex(rng, s.B, s.H, s.N), simplex(rng, s.B, s.H, s.S)), {}),
)
register_op(
    "sharpen",
    sharpen_forward,
    sharpen_backward,
    example=lambda rng, s: ((simplex(rng, s.B, s.H, s.N), 1.0 + 3 * rng.random((s.B, s.H))), {}),
)
