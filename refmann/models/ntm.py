"""The Neural Turing Machine (Graves et al. 2014)."""

from __future__ import annotations

from ..cores.ntm import NTMCore
from .configs import NTMConfig
from .recurrent import RecurrentModel
from .registry import BenchVariant, ModelSpec, register_model


class NTM(RecurrentModel):
    """Neural Turing Machine (Graves et al. 2014) with an LSTM controller.

    Parameters
    ----------
    input_size, output_size : int
    memory_size : int
        N slots (default 128).
    word_size : int
        W (default 20).
    num_heads : int
        Read heads, and as many write heads (default 1).
    hidden_size : int
        LSTM cells (default 100).
    shift_range : int
        R: the shift weighting covers offsets −R..R (default 1).
    memory_init : {"constant", "zeros", "random", "learned"} or ndarray of shape (N, W)
        Initial memory (DESIGN decision 9; Collier & Beel 2018 found the constant 1e-6 the most stable).
    seed : int
    dtype : float64 (default) or float32
    """

    Config = NTMConfig

    def make_core(self, c):
        return NTMCore(
            input_size=c.input_size,
            output_size=c.output_size,
            memory_size=c.memory_size,
            word_size=c.word_size,
            num_heads=c.num_heads,
            hidden_size=c.hidden_size,
            shift_range=c.shift_range,
        )


register_model(
    ModelSpec(
        "ntm",
        NTM,
        label="NTM",
        color="tab:red",
        golden={"memory_init": "random"},
        bench=(BenchVariant("ntm", "NTM", "tab:red", {}, 1.0, 1.0, dense=True),),
    )
)
