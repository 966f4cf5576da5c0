"""The LSTM baseline (no memory)."""

from __future__ import annotations

from ..cores.lstm import LSTMCore
from .configs import LSTMConfig
from .recurrent import RecurrentModel
from .registry import ModelSpec, register_model


class LSTM(RecurrentModel):
    """The baseline: an LSTM (``hidden_size`` cells) with a linear read-out, no memory.

    Parameters
    ----------
    input_size, output_size, hidden_size : int
    seed : int
        Seeds the parameter initialisation.
    dtype : float64 (default) or float32
    """

    Config = LSTMConfig

    def make_core(self, c):
        return LSTMCore(input_size=c.input_size, output_size=c.output_size, hidden_size=c.hidden_size)


register_model(ModelSpec("lstm", LSTM, label="LSTM", color="tab:gray"))
