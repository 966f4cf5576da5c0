r"""One step of DAM, the dense twin of Sparse Access Memory (Rae et al. 2016, §3 and §3.3).

Per step, for each of H heads (DESIGN "SAM in one step", decisions 1, 2, 5–8):

1. controller: :math:`(h_t, c_t) = \mathrm{LSTM}([x_t ; r_{t-1}], h_{t-1}, c_{t-1})`; a linear map of
   :math:`h_t` gives per head the query q, write word a, write gate :math:`\alpha = \sigma(\cdot)`,
   interpolation gate :math:`\gamma = \sigma(\cdot)` and key strength :math:`\beta = 1 + \mathrm{softplus}(\cdot)`;
2. write: the H least-used slots :math:`I^U` (one per head), then
   :math:`w^W = \alpha(\gamma\, w^R_{t-1} + (1-\gamma) I^U)` and
   :math:`M_t = (1 - R_t) \odot M_{t-1} + \sum_h w^W_h a_h^\top` (eq. 5; the LRA rows are erased);
3. read: :math:`w^R = \mathrm{softmax}_N(\beta \cos(q, M_t(i)))`, :math:`r_t = w^R M_t`;
4. usage: U1 (default) :math:`U_t = \lambda U_{t-1} + \sum_h (w^W_h + w^R_h)`, or ``"timestamp"``: slots
   with :math:`\sum_h (w^W_h + w^R_h) > \delta` get time t; the least used are the oldest;
5. output :math:`y_t = \mathrm{linear}([h_t ; r_t])`.

Usage and the LRA choice are discrete state: no gradient flows through them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import ops
from ._common import (
    add_weight_grad,
    controller_backward,
    controller_forward,
    init_linear,
    init_lstm,
    output_backward,
    output_forward,
)

USAGES = ("discounted", "timestamp")


class DAMState(NamedTuple):
    h: np.ndarray             # (B, C)
    c: np.ndarray             # (B, C)
    memory: np.ndarray        # (B, N, W)
    read_weights: np.ndarray  # (B, H, N)
    write_weights: np.ndarray  # (B, H, N)  kept for inspection (plots); the next step does not use it
    reads: np.ndarray         # (B, H, W)
    usage: np.ndarray | None  # (B, N) U1 value or time of last access (no gradient)
    step: int                 # t of the last step taken


class DAMCore:
    """Sizes, options and the step of DAM; see the module docstring for the equations."""

    def __init__(self, *, input_size, output_size, memory_size, word_size, num_heads, hidden_size,
                 usage="discounted", discount=0.99, delta=0.005, strength=True):
        if usage not in USAGES:
            raise ValueError(f"usage: expected one of {USAGES}, got {usage!r}")
        if num_heads > memory_size:
            raise ValueError(f"num_heads: expected at most memory_size = {memory_size} (one LRA slot per head), "
                             f"got {num_heads}")
        self.X, self.Y, self.N, self.W = input_size, output_size, memory_size, word_size
        self.H, self.C = num_heads, hidden_size
        self.usage, self.discount, self.delta, self.strength = usage, discount, delta, strength
        self.P = 2 * word_size + 2 + int(strength)      # q, a, α, γ, (β)

    def init_params(self, rng, dtype):
        H, W, C = self.H, self.W, self.C
        cw, cb = init_lstm(rng, self.X + H * W, C, dtype)
        hw, hb = init_linear(rng, C, H * self.P, dtype)
        ow, ob = init_linear(rng, C + H * W, self.Y, dtype)
        return {"controller.weight": cw, "controller.bias": cb, "heads.weight": hw, "heads.bias": hb,
                "output.weight": ow, "output.bias": ob}

    def initial_state(self, params, B, dtype, memory0):
        H, N, W, C = self.H, self.N, self.W, self.C
        if self.usage == "timestamp":   # untouched slots are "accessed" at times -N..-1, so they leave in index order
            usage = np.broadcast_to(np.arange(-N, 0, dtype=np.float64), (B, N)).copy()
        else:
            usage = np.zeros((B, N))
        return DAMState(np.zeros((B, C), dtype), np.zeros((B, C), dtype),
                        np.broadcast_to(memory0, (B, N, W)).astype(dtype), np.zeros((B, H, N), dtype),
                        np.zeros((B, H, N), dtype), np.zeros((B, H, W), dtype), usage, 0)

    def least_used(self, usage):
        """The H least-used slots per batch element, (B, H): usage ascending, ties by index ascending."""
        return ops.top_k(-usage, self.H)[0]

    def heads_forward(self, params, h):
        """Per-head query q, write word a, gates α, γ and strength β from the controller state (shared with SAM).

        Returns ``(q (B,H,W), a (B,H,W), alpha (B,H), gate (B,H), beta (B,H), cache)``.
        """
        H, W = self.H, self.W
        B = h.shape[0]
        p, linear_c = ops.linear_forward(h, params["heads.weight"], params["heads.bias"])
        p = p.reshape(B, H, self.P)
        alpha, alpha_c = ops.sigmoid_forward(p[..., 2 * W].copy())             # (B, H); copies: the caches
        gate, gate_c = ops.sigmoid_forward(p[..., 2 * W + 1].copy())           # (B, H)  keep no view of p
        if self.strength:
            beta, beta_c = ops.oneplus_forward(p[..., 2 * W + 2].copy())
        else:
            beta, beta_c = np.ones((B, H), h.dtype), None
        return p[..., :W], p[..., W:2 * W], alpha, gate, beta, (linear_c, alpha_c, gate_c, beta_c)

    def heads_backward(self, dq, dadd, dalpha, dgate, dbeta, cache, grads):
        """VJP of :meth:`heads_forward`: adds the head layer's gradients and returns ∂L/∂h."""
        linear_c, alpha_c, gate_c, beta_c = cache
        B, H, W = dadd.shape
        dp = np.zeros((B, H, self.P), dadd.dtype)
        dp[..., :W] = dq
        dp[..., W:2 * W] = dadd
        dp[..., 2 * W] = ops.sigmoid_backward(dalpha, alpha_c)[0]
        dp[..., 2 * W + 1] = ops.sigmoid_backward(dgate, gate_c)[0]
        if self.strength:
            dp[..., 2 * W + 2] = ops.oneplus_backward(dbeta, beta_c)[0]
        dp = dp.reshape(B, -1)
        dh = dp @ linear_c.weight.T                                            # (B, C)
        add_weight_grad(grads, "heads.weight", linear_c.x, dp)
        grads["heads.bias"] += dp.sum(axis=0)
        return dh

    def step_forward(self, params, x, state):
        B = x.shape[0]
        (h, c), ctrl_cache = controller_forward(params, x, state.reads, state.h, state.c)
        q, add, alpha, gate, beta, heads_cache = self.heads_forward(params, h)
        # write: interpolate the previous read weights with the least-used slot, then erase it and add
        lra = self.least_used(state.usage)                                     # (B, H)
        onehot = np.zeros((B, self.H, self.N), x.dtype)
        np.put_along_axis(onehot, lra[..., None], 1.0, axis=-1)
        inner = gate[..., None] * state.read_weights + (1.0 - gate[..., None]) * onehot   # (B, H, N)
        write_weights = alpha[..., None] * inner
        memory, write_c = ops.lra_write_forward(state.memory, write_weights, add, erase_indices=lra)
        # read from the new memory
        read_weights, content_c = ops.content_weights_forward(memory, q, beta)
        reads, read_c = ops.dense_read_forward(memory, read_weights)
        # usage (no gradient)
        access = np.sum(write_weights + read_weights, axis=1)                 # (B, N)
        t = state.step + 1
        if self.usage == "timestamp":
            accessed = access > self.delta
            usage = np.where(accessed, float(t), state.usage)
        else:
            accessed = None
            usage = self.discount * state.usage + access
        y, out_c = output_forward(params, h, reads)
        cache = (ctrl_cache, heads_cache, alpha, gate, onehot, inner, state.read_weights, write_c, content_c, read_c,
                 out_c)
        self.trace = (lra, accessed)
        return y, DAMState(h, c, memory, read_weights, write_weights, reads, usage, t), cache

    def step_backward(self, params, dy, dstate, cache, grads):
        (ctrl_cache, heads_cache, alpha, gate, onehot, inner, read_weights_prev, write_c, content_c, read_c,
         out_c) = cache
        H, W = self.H, self.W
        B = dy.shape[0]
        dh, dreads = output_backward(dy, out_c, grads, self.C)
        dreads = dreads.reshape(B, H, W) + dstate.reads
        dmemory, dread_weights = ops.dense_read_backward(dreads, read_c)
        dmemory = dmemory + dstate.memory
        dmem_content, dq, dbeta = ops.content_weights_backward(dread_weights + dstate.read_weights, content_c)
        dmemory_prev, dwrite_weights, dadd = ops.lra_write_backward(dmemory + dmem_content, write_c)
        dalpha = np.sum(dwrite_weights * inner, axis=-1)                      # (B, H)
        dinner = alpha[..., None] * dwrite_weights
        dgate = np.sum(dinner * (read_weights_prev - onehot), axis=-1)
        dread_weights_prev = gate[..., None] * dinner
        dh_heads = self.heads_backward(dq, dadd, dalpha, dgate, dbeta, heads_cache, grads)
        dreads_prev, dh_prev, dc_prev = controller_backward(dh + dh_heads + dstate.h, dstate.c, ctrl_cache, grads,
                                                            self.X)
        return DAMState(dh_prev, dc_prev, dmemory_prev, dread_weights_prev, None, dreads_prev.reshape(B, H, W), None, 0)
