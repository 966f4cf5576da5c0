r"""One step of the Neural Turing Machine (Graves et al. 2014) with an LSTM controller.

Per step, with H read heads and H write heads:

1. controller: :math:`(h_t, c_t) = \mathrm{LSTM}([x_t ; r_{t-1}], h_{t-1}, c_{t-1})`;
2. head parameters from :math:`h_t`: key k, strength :math:`\beta = \mathrm{softplus}`, gate
   :math:`g = \sigma`, shift :math:`s = \mathrm{softmax}` over offsets −R..R, sharpening
   :math:`\gamma = 1 + \mathrm{softplus}`; write heads also erase :math:`e = \sigma` and add
   :math:`a = \tanh`;
3. addressing of all 2H heads on :math:`M_{t-1}` (eqs. 5–9): content → interpolate → shift → sharpen;
4. read :math:`r_t = w^R M_{t-1}` (the read sees the memory before this step's write, as in
   pytorch-ntm); write :math:`M_t = M_{t-1} \odot \prod_h (1 - w^W_h e_h^\top) + \sum_h w^W_h a_h^\top`;
5. output :math:`y_t = \mathrm{linear}([h_t ; r_t])`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import ops
from ._common import (
    controller_backward,
    controller_forward,
    init_linear,
    init_lstm,
    output_backward,
    output_forward,
)


class NTMState(NamedTuple):
    h: np.ndarray              # (B, C)
    c: np.ndarray              # (B, C)
    memory: np.ndarray         # (B, N, W)
    read_weights: np.ndarray   # (B, H, N)
    write_weights: np.ndarray  # (B, H, N)
    reads: np.ndarray          # (B, H, W)


class NTMCore:
    """Sizes and the step of an NTM; see the module docstring for the equations."""

    def __init__(self, *, input_size, output_size, memory_size, word_size, num_heads, hidden_size, shift_range=1):
        self.X, self.Y, self.N, self.W = input_size, output_size, memory_size, word_size
        self.H, self.C, self.S = num_heads, hidden_size, 2 * shift_range + 1
        self.P_read = self.W + self.S + 3               # key, β, g, shift, γ
        self.P_write = self.P_read + 2 * self.W         # ... + erase, add

    def init_params(self, rng, dtype):
        H, W, C = self.H, self.W, self.C
        cw, cb = init_lstm(rng, self.X + H * W, C, dtype)
        hw, hb = init_linear(rng, C, H * (self.P_read + self.P_write), dtype)
        ow, ob = init_linear(rng, C + H * W, self.Y, dtype)
        return {"controller.weight": cw, "controller.bias": cb, "heads.weight": hw, "heads.bias": hb,
                "output.weight": ow, "output.bias": ob}

    def initial_state(self, params, B, dtype, memory0):
        """Zero controller state and reads; every head starts focused on slot 0.

        The focus matters: with a constant initial memory every row is alike, content weights are
        uniform, and uniform weights stay uniform under interpolation, shift and sharpening and
        write the same word to every row — a head starting from zero or uniform weights could never
        single out a slot. Starting at slot 0, the shift can walk the memory (the copy algorithm).
        """
        H, N, W, C = self.H, self.N, self.W, self.C
        z = np.zeros
        focus = z((B, H, N), dtype)
        focus[..., 0] = 1.0
        return NTMState(z((B, C), dtype), z((B, C), dtype), np.broadcast_to(memory0, (B, N, W)).astype(dtype),
                        focus, focus.copy(), z((B, H, W), dtype))

    def _split(self, p):
        """Head parameters (B, P) -> addressing (B, 2H, P_read) and write extras (B, H, 2W)."""
        B, H = p.shape[0], self.H
        pr = p[:, :H * self.P_read].reshape(B, H, self.P_read)
        pw = p[:, H * self.P_read:].reshape(B, H, self.P_write)
        return np.concatenate([pr, pw[..., :self.P_read]], axis=1), pw[..., self.P_read:]

    def step_forward(self, params, x, state):
        H, W, S = self.H, self.W, self.S
        (h, c), ctrl_cache = controller_forward(params, x, state.reads, state.h, state.c)
        p, heads_cache = ops.linear_forward(h, params["heads.weight"], params["heads.bias"])
        addr, extra = self._split(p)                                          # (B, 2H, P_read), (B, H, 2W)
        beta, beta_c = ops.softplus_forward(addr[..., W])                     # (B, 2H)
        g, g_c = ops.sigmoid_forward(addr[..., W + 1])
        s, s_c = ops.softmax_forward(addr[..., W + 2:W + 2 + S], axis=-1)     # (B, 2H, S)
        gamma, gamma_c = ops.oneplus_forward(addr[..., W + 2 + S])
        erase, erase_c = ops.sigmoid_forward(extra[..., :W])                  # (B, H, W)
        add, add_c = ops.tanh_forward(extra[..., W:])
        w_prev = np.concatenate([state.read_weights, state.write_weights], axis=1)   # (B, 2H, N)
        wc, wc_c = ops.content_weights_forward(state.memory, addr[..., :W], beta)
        wg, wg_c = ops.interpolate_forward(wc, w_prev, g)
        ws, ws_c = ops.circular_shift_forward(wg, s)
        w, w_c = ops.sharpen_forward(ws, gamma)
        reads, read_c = ops.dense_read_forward(state.memory, w[:, :H])
        memory, write_c = ops.dense_write_forward(state.memory, w[:, H:], erase, add)
        y, out_c = output_forward(params, h, reads)
        cache = (ctrl_cache, heads_cache, beta_c, g_c, s_c, gamma_c, erase_c, add_c, wc_c, wg_c, ws_c, w_c,
                 read_c, write_c, out_c)
        return y, NTMState(h, c, memory, w[:, :H], w[:, H:], reads), cache

    def step_backward(self, params, dy, dstate, cache, grads):
        (ctrl_cache, heads_cache, beta_c, g_c, s_c, gamma_c, erase_c, add_c, wc_c, wg_c, ws_c, w_c,
         read_c, write_c, out_c) = cache
        H, W, S = self.H, self.W, self.S
        B = dy.shape[0]
        dh, dreads = output_backward(dy, out_c, grads, self.C)
        dreads = dreads.reshape(B, H, W) + dstate.reads
        dmemory, dww, derase, dadd = ops.dense_write_backward(dstate.memory, write_c)
        dmem_read, dwr = ops.dense_read_backward(dreads, read_c)
        dmemory = dmemory + dmem_read
        dw = np.concatenate([dwr + dstate.read_weights, dww + dstate.write_weights], axis=1)   # (B, 2H, N)
        dws, dgamma = ops.sharpen_backward(dw, w_c)
        dwg, ds = ops.circular_shift_backward(dws, ws_c)
        dwc, dw_prev, dg = ops.interpolate_backward(dwg, wg_c)
        dmem_content, dkey, dbeta = ops.content_weights_backward(dwc, wc_c)
        dmemory = dmemory + dmem_content
        daddr = np.empty((B, 2 * H, self.P_read), dy.dtype)
        daddr[..., :W] = dkey
        daddr[..., W] = ops.softplus_backward(dbeta, beta_c)[0]
        daddr[..., W + 1] = ops.sigmoid_backward(dg, g_c)[0]
        daddr[..., W + 2:W + 2 + S] = ops.softmax_backward(ds, s_c)[0]
        daddr[..., W + 2 + S] = ops.oneplus_backward(dgamma, gamma_c)[0]
        dpw = np.concatenate([daddr[:, H:], ops.sigmoid_backward(derase, erase_c)[0],
                              ops.tanh_backward(dadd, add_c)[0]], axis=-1)                 # (B, H, P_write)
        dp = np.concatenate([daddr[:, :H].reshape(B, -1), dpw.reshape(B, -1)], axis=1)
        dh_heads, dweight, dbias = ops.linear_backward(dp, heads_cache)
        grads["heads.weight"] += dweight
        grads["heads.bias"] += dbias
        dreads_prev, dh_prev, dc_prev = controller_backward(dh + dh_heads + dstate.h, dstate.c, ctrl_cache, grads,
                                                            self.X)
        return NTMState(dh_prev, dc_prev, dmemory, dw_prev[:, :H], dw_prev[:, H:], dreads_prev.reshape(B, H, W))
