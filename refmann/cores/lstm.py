"""The LSTM baseline: no memory, y_t = linear(h_t)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..ops import linear_backward, linear_forward, lstm_step_backward, lstm_step_forward
from ._common import init_linear, init_lstm


class LSTMState(NamedTuple):
    h: np.ndarray  # (B, C)
    c: np.ndarray  # (B, C)


class LSTMCore:
    """One step of an LSTM with a linear read-out."""

    def __init__(self, *, input_size, output_size, hidden_size):
        self.X, self.Y, self.C = input_size, output_size, hidden_size

    def init_params(self, rng, dtype):
        cw, cb = init_lstm(rng, self.X, self.C, dtype)
        ow, ob = init_linear(rng, self.C, self.Y, dtype)
        return {"controller.weight": cw, "controller.bias": cb, "output.weight": ow, "output.bias": ob}

    def initial_state(self, params, B, dtype):
        return LSTMState(np.zeros((B, self.C), dtype), np.zeros((B, self.C), dtype))

    def step_forward(self, params, x, state):
        (h, c), lstm_cache = lstm_step_forward(x, state.h, state.c, params["controller.weight"],
                                               params["controller.bias"])
        y, out_cache = linear_forward(h, params["output.weight"], params["output.bias"])
        return y, LSTMState(h, c), (lstm_cache, out_cache)

    def step_backward(self, params, dy, dstate, cache, grads):
        lstm_cache, out_cache = cache
        dh, dweight, dbias = linear_backward(dy, out_cache)
        grads["output.weight"] += dweight
        grads["output.bias"] += dbias
        _, dh_prev, dc_prev, dweight, dbias = lstm_step_backward((dh + dstate.h, dstate.c), lstm_cache)
        grads["controller.weight"] += dweight
        grads["controller.bias"] += dbias
        return LSTMState(dh_prev, dc_prev)

    def initial_state_backward(self, dstate, grads):
        """The initial state holds no parameters."""
