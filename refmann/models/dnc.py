"""The Differentiable Neural Computer (Graves et al. 2016)."""

from __future__ import annotations

from ..cores.dnc import DNCCore
from .configs import DNCConfig
from .recurrent import RecurrentModel
from .registry import BenchVariant, ModelSpec, register_model


class DNC(RecurrentModel):
    r"""Differentiable Neural Computer (Graves et al. 2016) with an LSTM controller, as DeepMind's code
    computes it (DESIGN decision 10): dynamic allocation by usage, temporal links, read modes.

    Parameters
    ----------
    input_size, output_size : int
    memory_size : int
        N slots (default 128).
    word_size : int
        W (default 20).
    num_heads : int
        R read heads (default 4).
    num_write_heads : int
        Write heads (default 1); each has its own link matrix, and the read modes have 1 + 2·Wh entries.
    hidden_size : int
        LSTM cells (default 100).
    variant : {"deepmind", "nature"}
        Strengths by softplus (DeepMind's code, default) or oneplus = 1 + softplus (the Nature paper).
    links : {"cache", "recompute"}
        Backward's (B, Wh, N, N) link matrices: kept by every step (default), or kept every
        ``link_checkpoint`` steps and recomputed a segment at a time (less memory, one more link update
        per step). The same gradients, bit for bit.
    link_checkpoint : int
        The checkpoint interval of ``links="recompute"`` (default 16).
    usage_stop_gradient : bool
        True (default, DeepMind's code): the previous write weights enter the usage under stop-gradient, so
        ``loss_and_grads`` is not the exact gradient of the loss. False: differentiate through them too (the
        exact gradient, which finite differences check).
    clip_value : float, optional
        Clip the logits to ±clip_value (DeepMind's training script uses 20; default no clip).
    memory_init : {"constant", "zeros", "random", "learned"} or ndarray of shape (N, W)
    seed : int
    dtype : float64 (default) or float32
    """

    Config = DNCConfig

    def make_core(self, c):
        return DNCCore(
            input_size=c.input_size,
            output_size=c.output_size,
            memory_size=c.memory_size,
            word_size=c.word_size,
            num_heads=c.num_heads,
            hidden_size=c.hidden_size,
            num_write_heads=c.num_write_heads,
            variant=c.variant,
            links=c.links,
            link_checkpoint=c.link_checkpoint,
            clip_value=c.clip_value,
            usage_stop_gradient=c.usage_stop_gradient,
        )


register_model(
    ModelSpec(
        "dnc",
        DNC,
        label="DNC",
        color="tab:purple",
        golden={"memory_init": "random"},
        bench=(BenchVariant("dnc", "DNC", "tab:purple", {}, 2.0, 2.0, dense=True, figure=7),),
    )
)
