"""DAM, the dense twin of Sparse Access Memory (Rae et al. 2016)."""

from __future__ import annotations

from ..cores.dam import DAMCore
from .configs import DAMConfig
from .recurrent import RecurrentModel
from .registry import BenchVariant, ModelSpec, register_model


class DAM(RecurrentModel):
    r"""Dense Access Memory, SAM's dense twin (Rae et al. 2016).

    Parameters
    ----------
    input_size, output_size : int
    memory_size : int
        N slots (default 128).
    word_size : int
        W (default 20).
    num_heads : int
        Heads, each with its own query, write word and gates (default 4).
    hidden_size : int
        LSTM cells (default 100).
    usage : {"discounted", "timestamp"}
        U1, :math:`U_t = \lambda U_{t-1} + \sum_h (w^W + w^R)` (default), or the time of last access
        :math:`\sum_h (w^W + w^R) > \delta`, which makes DAM the same function as SAM with K = N.
    discount : float
        λ of U1 (default 0.99).
    delta : float
        δ of the access rule (default 0.005).
    strength : bool
        Learn a key strength β = 1 + softplus (default True; False gives the paper's literal β = 1).
    memory_init : {"constant", "zeros", "random", "learned"} or ndarray of shape (N, W)
    seed : int
    dtype : float64 (default) or float32
    """

    Config = DAMConfig

    def make_core(self, c):
        return DAMCore(
            input_size=c.input_size,
            output_size=c.output_size,
            memory_size=c.memory_size,
            word_size=c.word_size,
            num_heads=c.num_heads,
            hidden_size=c.hidden_size,
            usage=c.usage,
            discount=c.discount,
            delta=c.delta,
            strength=c.strength,
        )


register_model(
    ModelSpec(
        "dam",
        DAM,
        label="DAM",
        color="tab:orange",
        golden={"memory_init": "random"},
        bench=(BenchVariant("dam", "DAM", "tab:orange", {}, 1.0, 1.0, dense=True),),
    )
)
