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
from .controller import Controller, Field, HeadGroup, Interface, InterfaceLayout, Output, scalar
from .protocol import CoreBase, Step

USAGES = ("discounted", "timestamp")


class DAMState(NamedTuple):
    h: np.ndarray  # (B, C)
    c: np.ndarray  # (B, C)
    memory: np.ndarray  # (B, N, W)
    read_weights: np.ndarray  # (B, H, N)
    write_weights: np.ndarray  # (B, H, N)  kept for inspection (plots); the next step does not use it
    reads: np.ndarray  # (B, H, W)
    usage: np.ndarray | None  # (B, N) U1 value or time of last access (no gradient)
    step: int  # t of the last step taken


class DAMCache(NamedTuple):
    controller: object  # ops.lstm_step's cache
    interface: object  # InterfaceCache
    write_weights: object  # ops.lra_interpolate's cache
    write: object  # ops.lra_write's cache
    content: object  # ops.content_weights' cache (on M_t)
    read: object  # ops.dense_read's cache
    output: object  # ops.linear's cache


class DAMTrace(NamedTuple):
    """The step's discrete decisions (no gradient flows through them)."""

    lra: np.ndarray  # int (B, H)  the least-used slot of each head
    accessed: np.ndarray | None  # bool (B, N) slots whose summed weight exceeded δ (timestamp usage only)


def memory_heads_layout(H: int, W: int, strength: bool = True) -> InterfaceLayout:
    """DAM's and SAM's heads: per head query q, write word a, gates α, γ (σ) and strength β (oneplus)."""
    fields = (
        Field("query", W, "identity"),
        Field("add", W, "identity"),
        scalar("alpha", "sigmoid"),
        scalar("gate", "sigmoid"),
    ) + ((scalar("strength", "oneplus"),) if strength else ())
    return InterfaceLayout(HeadGroup("head", H, fields))


def heads_backward(core, params, dh, dstate, cache, dq, dadd, dwrite_weights, dbeta, grads):
    """The end of DAM's and SAM's backward, shared: the write weights' VJP, the head fields' and the controller's.

    Returns ``(dread_weights_prev, dreads_prev (B, H, W), dh_prev, dc_prev)``; ``cache`` has the fields
    ``write_weights``, ``interface`` and ``controller`` (DAMCache, SAMCache).
    """
    dread_weights_prev, dalpha, dgate = ops.lra_interpolate_backward(dwrite_weights, cache.write_weights)
    dvalues = {
        "head": {"query": dq, "add": dadd, "alpha": dalpha, "gate": dgate, "strength": dbeta if core.strength else None}
    }
    dh_heads = core.interface.backward(params, dvalues, cache.interface, grads)
    dreads_prev, dh_prev, dc_prev = core.controller.backward(
        params, dh + dh_heads + dstate.h, dstate.c, cache.controller, grads
    )
    return dread_weights_prev, dreads_prev.reshape(dadd.shape), dh_prev, dc_prev


class DAMCore(CoreBase):
    """Sizes, options and the step of DAM; see the module docstring for the equations."""

    def __init__(
        self,
        *,
        input_size,
        output_size,
        memory_size,
        word_size,
        num_heads,
        hidden_size,
        usage="discounted",
        discount=0.99,
        delta=0.005,
        strength=True,
    ):
        if usage not in USAGES:
            raise ValueError(f"usage: expected one of {USAGES}, got {usage!r}")
        if num_heads > memory_size:
            raise ValueError(
                f"num_heads: expected at most memory_size = {memory_size} (one LRA slot per head), got {num_heads}"
            )
        self.X, self.Y, self.N, self.W = input_size, output_size, memory_size, word_size
        self.H, self.C = num_heads, hidden_size
        self.memory_shape = (memory_size, word_size)
        self.usage, self.discount, self.delta, self.strength = usage, discount, delta, strength
        self.controller = Controller(input_size, num_heads * word_size, hidden_size)
        self.interface = Interface(hidden_size, memory_heads_layout(num_heads, word_size, strength))
        self.output = Output(hidden_size, num_heads * word_size, output_size)

    def init_params(self, rng, dtype):
        """``controller.*``, ``heads.*``, ``output.*`` (drawn in that order from ``rng``)."""
        return {
            **self.controller.init_params(rng, dtype),
            **self.interface.init_params(rng, dtype),
            **self.output.init_params(rng, dtype),
        }

    def initial_state(self, params, B, dtype, memory0):
        """Zero controller state, reads and weights; usage 0 (U1) or times −N..−1 (timestamp)."""
        H, N, W, C = self.H, self.N, self.W, self.C
        if self.usage == "timestamp":  # untouched slots are "accessed" at times -N..-1, so they leave in index order
            usage = np.broadcast_to(np.arange(-N, 0, dtype=np.float64), (B, N)).copy()
        else:
            usage = np.zeros((B, N))
        return DAMState(
            np.zeros((B, C), dtype),
            np.zeros((B, C), dtype),
            np.broadcast_to(memory0, (B, N, W)).astype(dtype),
            np.zeros((B, H, N), dtype),
            np.zeros((B, H, N), dtype),
            np.zeros((B, H, W), dtype),
            usage,
            0,
        )

    def least_used(self, usage):
        """The H least-used slots per batch element, (B, H): usage ascending, ties by index ascending."""
        return ops.top_k(-usage, self.H)[0]

    def heads(self, values, B, dtype):
        """The head fields (q, a, α, γ, β) from the interface values; β = 1 without learned strengths."""
        v = values["head"]
        beta = v["strength"] if self.strength else np.ones((B, self.H), dtype)
        return v["query"], v["add"], v["alpha"], v["gate"], beta

    def step_forward(self, params, x, state):
        """Controller; write on the LRA slots; dense content read of M_t; usage; output (module docstring)."""
        B = x.shape[0]
        (h, c), ctrl_cache = self.controller.forward(params, x, state.reads, state.h, state.c)
        values, iface_cache = self.interface.forward(params, h)
        q, add, alpha, gate, beta = self.heads(values, B, x.dtype)
        # write: interpolate the previous read weights with the least-used slot, then erase it and add
        lra = self.least_used(state.usage)  # (B, H)
        write_weights, ww_cache = ops.lra_interpolate_forward(state.read_weights, alpha, gate, lra=lra)  # (B, H, N)
        memory, write_cache = ops.lra_write_forward(state.memory, write_weights, add, erase_indices=lra)
        # read from the new memory
        read_weights, content_cache = ops.content_weights_forward(memory, q, beta)
        reads, read_cache = ops.dense_read_forward(memory, read_weights)
        # usage (no gradient)
        access = np.sum(write_weights + read_weights, axis=1)  # (B, N)
        t = state.step + 1
        if self.usage == "timestamp":
            accessed = access > self.delta
            usage = np.where(accessed, float(t), state.usage)
        else:
            accessed = None
            usage = self.discount * state.usage + access
        y, out_cache = self.output.forward(params, h, reads)
        cache = DAMCache(ctrl_cache, iface_cache, ww_cache, write_cache, content_cache, read_cache, out_cache)
        state = DAMState(h, c, memory, read_weights, write_weights, reads, usage, t)
        return Step(y, state, cache, DAMTrace(lra, accessed))

    def step_backward(self, params, dy, dstate, cache, grads):
        """VJP of :meth:`step_forward` (usage and the LRA choice carry no gradient)."""
        H, W = self.H, self.W
        B = dy.shape[0]
        dh, dreads = self.output.backward(params, dy, cache.output, grads)
        dreads = dreads.reshape(B, H, W) + dstate.reads
        dmemory, dread_weights = ops.dense_read_backward(dreads, cache.read)
        dmemory = dmemory + dstate.memory
        dmem_content, dq, dbeta = ops.content_weights_backward(dread_weights + dstate.read_weights, cache.content)
        dmemory_prev, dwrite_weights, dadd = ops.lra_write_backward(dmemory + dmem_content, cache.write)
        dread_weights_prev, dreads_prev, dh_prev, dc_prev = heads_backward(
            self, params, dh, dstate, cache, dq, dadd, dwrite_weights, dbeta, grads
        )
        return DAMState(dh_prev, dc_prev, dmemory_prev, dread_weights_prev, None, dreads_prev, None, 0)

    def initial_memory_grad(self, dstate):
        """∂L/∂memory0: the memory lives in the state, so the batch's gradients add up."""
        return dstate.memory.sum(axis=0)
