"""The LSTM baseline: no memory, y_t = linear(h_t)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .controller import Controller, Output
from .protocol import CoreBase, Step


class LSTMState(NamedTuple):
    h: np.ndarray  # (B, C)
    c: np.ndarray  # (B, C)


class LSTMCache(NamedTuple):
    controller: object  # ops.lstm_step's cache
    output: object  # ops.linear's cache


class LSTMCore(CoreBase):
    """One step of an LSTM with a linear read-out: the controller and output of the sandwich, no memory."""

    def __init__(self, *, input_size, output_size, hidden_size):
        self.X, self.Y, self.C = input_size, output_size, hidden_size
        self.controller = Controller(input_size, 0, hidden_size)
        self.output = Output(hidden_size, 0, output_size)

    def init_params(self, rng, dtype):
        """``controller.*`` then ``output.*`` (drawn in that order from ``rng``)."""
        return {**self.controller.init_params(rng, dtype), **self.output.init_params(rng, dtype)}

    def initial_state(self, params, B, dtype, memory0=None):
        """h_0 = c_0 = 0 (``memory0`` is ignored: there is no memory)."""
        return LSTMState(np.zeros((B, self.C), dtype), np.zeros((B, self.C), dtype))

    def step_forward(self, params, x, state):
        """(h_t, c_t) = LSTM(x_t, h_{t-1}, c_{t-1}); y_t = h_t @ output.weight + output.bias."""
        (h, c), ctrl_cache = self.controller.forward(params, x, None, state.h, state.c)
        y, out_cache = self.output.forward(params, h, None)
        return Step(y, LSTMState(h, c), LSTMCache(ctrl_cache, out_cache), None)

    def step_backward(self, params, dy, dstate, cache, grads):
        """VJP of :meth:`step_forward`; returns ∂L/∂(h_{t-1}, c_{t-1})."""
        dh, _ = self.output.backward(params, dy, cache.output, grads)
        _, dh_prev, dc_prev = self.controller.backward(params, dh + dstate.h, dstate.c, cache.controller, grads)
        return LSTMState(dh_prev, dc_prev)
