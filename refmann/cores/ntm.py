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
from .controller import Controller, Field, HeadGroup, Interface, InterfaceLayout, Output, scalar
from .protocol import CoreBase, Step


class NTMState(NamedTuple):
    h: np.ndarray  # (B, C)
    c: np.ndarray  # (B, C)
    memory: np.ndarray  # (B, N, W)
    read_weights: np.ndarray  # (B, H, N)
    write_weights: np.ndarray  # (B, H, N)
    reads: np.ndarray  # (B, H, W)


class NTMCache(NamedTuple):
    controller: object  # ops.lstm_step's cache
    interface: object  # InterfaceCache: the head layer and each field's activation
    content: object  # ops.content_weights' cache, all 2H heads (reads first)
    interpolate: object  # ops.interpolate's cache
    shift: object  # ops.circular_shift's cache
    sharpen: object  # ops.sharpen's cache
    read: object  # ops.dense_read's cache (on M_{t-1})
    write: object  # ops.dense_write's cache
    output: object  # ops.linear's cache


def ntm_layout(H: int, W: int, S: int) -> InterfaceLayout:
    """H read heads (key, β, g, shift, γ), then H write heads (the same, then erase and add)."""
    addressing = (
        Field("key", W, "identity"),
        scalar("strength", "softplus"),
        scalar("gate", "sigmoid"),
        Field("shift", S, "softmax"),
        scalar("sharpen", "oneplus"),
    )
    return InterfaceLayout(
        HeadGroup("read", H, addressing),
        HeadGroup("write", H, addressing + (Field("erase", W, "sigmoid"), Field("add", W, "tanh"))),
    )


ADDRESSING = ("key", "strength", "gate", "shift", "sharpen")


class NTMCore(CoreBase):
    """Sizes and the step of an NTM; see the module docstring for the equations."""

    def __init__(self, *, input_size, output_size, memory_size, word_size, num_heads, hidden_size, shift_range=1):
        self.X, self.Y, self.N, self.W = input_size, output_size, memory_size, word_size
        self.H, self.C, self.S = num_heads, hidden_size, 2 * shift_range + 1
        self.memory_shape = (memory_size, word_size)
        self.controller = Controller(input_size, num_heads * word_size, hidden_size)
        self.interface = Interface(hidden_size, ntm_layout(num_heads, word_size, self.S))
        self.output = Output(hidden_size, num_heads * word_size, output_size)

    def init_params(self, rng, dtype):
        """``controller.*``, ``heads.*``, ``output.*`` (drawn in that order from ``rng``)."""
        return {
            **self.controller.init_params(rng, dtype),
            **self.interface.init_params(rng, dtype),
            **self.output.init_params(rng, dtype),
        }

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
        return NTMState(
            z((B, C), dtype),
            z((B, C), dtype),
            np.broadcast_to(memory0, (B, N, W)).astype(dtype),
            focus,
            focus.copy(),
            z((B, H, W), dtype),
        )

    def step_forward(self, params, x, state):
        """Controller, the 2H heads' addressing on M_{t-1}, read, write, output (module docstring)."""
        H = self.H
        (h, c), ctrl_cache = self.controller.forward(params, x, state.reads, state.h, state.c)
        v, iface_cache = self.interface.forward(params, h)
        a = {f: np.concatenate([v["read"][f], v["write"][f]], axis=1) for f in ADDRESSING}  # 2H heads, reads first
        w_prev = np.concatenate([state.read_weights, state.write_weights], axis=1)  # (B, 2H, N)
        wc, wc_cache = ops.content_weights_forward(state.memory, a["key"], a["strength"])
        wg, wg_cache = ops.interpolate_forward(wc, w_prev, a["gate"])
        ws, ws_cache = ops.circular_shift_forward(wg, a["shift"])
        w, w_cache = ops.sharpen_forward(ws, a["sharpen"])  # (B, 2H, N)
        reads, read_cache = ops.dense_read_forward(state.memory, w[:, :H])
        memory, write_cache = ops.dense_write_forward(state.memory, w[:, H:], v["write"]["erase"], v["write"]["add"])
        y, out_cache = self.output.forward(params, h, reads)
        cache = NTMCache(
            ctrl_cache, iface_cache, wc_cache, wg_cache, ws_cache, w_cache, read_cache, write_cache, out_cache
        )
        return Step(y, NTMState(h, c, memory, w[:, :H], w[:, H:], reads), cache, None)

    def step_backward(self, params, dy, dstate, cache, grads):
        """VJP of :meth:`step_forward`, in reverse order; returns ∂L/∂state_{t-1}."""
        H, W = self.H, self.W
        B = dy.shape[0]
        dh, dreads = self.output.backward(params, dy, cache.output, grads)
        dreads = dreads.reshape(B, H, W) + dstate.reads
        dmemory, dww, derase, dadd = ops.dense_write_backward(dstate.memory, cache.write)
        dmem_read, dwr = ops.dense_read_backward(dreads, cache.read)
        dmemory = dmemory + dmem_read
        dw = np.concatenate([dwr + dstate.read_weights, dww + dstate.write_weights], axis=1)  # (B, 2H, N)
        da = {}
        dws, da["sharpen"] = ops.sharpen_backward(dw, cache.sharpen)
        dwg, da["shift"] = ops.circular_shift_backward(dws, cache.shift)
        dwc, dw_prev, da["gate"] = ops.interpolate_backward(dwg, cache.interpolate)
        dmem_content, da["key"], da["strength"] = ops.content_weights_backward(dwc, cache.content)
        dmemory = dmemory + dmem_content
        dv = {
            "read": {f: d[:, :H] for f, d in da.items()},
            "write": {**{f: d[:, H:] for f, d in da.items()}, "erase": derase, "add": dadd},
        }
        dh_heads = self.interface.backward(params, dv, cache.interface, grads)
        dreads_prev, dh_prev, dc_prev = self.controller.backward(
            params, dh + dh_heads + dstate.h, dstate.c, cache.controller, grads
        )
        return NTMState(dh_prev, dc_prev, dmemory, dw_prev[:, :H], dw_prev[:, H:], dreads_prev.reshape(B, H, W))

    def initial_memory_grad(self, dstate):
        """∂L/∂memory0: the memory lives in the state, so the batch's gradients add up."""
        return dstate.memory.sum(axis=0)
