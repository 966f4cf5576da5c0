"""The Sparse Differentiable Neural Computer (Rae et al. 2016, Supplementary D), and its dense twin."""

from __future__ import annotations

from ..cores.sdnc import DenseSDNCCore, SDNCCore
from ..memory import make_index_factory
from .configs import DenseSDNCConfig, SDNCConfig
from .recurrent import RecurrentModel
from .registry import BenchVariant, ModelSpec, register_model


class SDNC(RecurrentModel):
    """Sparse DNC (Rae et al. 2016, Supplementary D): SAM's sparse reads and writes, ring allocation and
    rollback BPTT, plus the DNC's temporal links as two sparse tables of K_L entries per row.

    Each of the H heads reads and writes as in SAM and has three read modes (backward, forward,
    content): its read weights are K content candidates from the index, and the K slots most strongly
    linked forward and backward from what it read at t−1 (3K entries). The links follow the heads'
    mean write weighting; by default no gradient flows through them (the paper's choice), with
    ``link_grads=True`` it does (ours). See ``docs/sdnc.md``.

    Parameters
    ----------
    input_size, output_size, memory_size, word_size, num_heads, hidden_size : int
        As for :class:`SAM`.
    k : int
        Content candidates per head, and the forward and backward slots kept (default 4).
    link_k : int
        K_L, entries per row of each link table and in the precedence (default 8, the paper's).
    index : {"linear", "lsh", "kdforest"}
    index_kwargs : dict, optional
    delta : float
        δ of the access rule (default 0.005).
    bptt : {"rollback", "cache"}
    restore : {"initial", "final"}
    strength : bool
    fused : bool
    link_grads : bool
        False (default, the paper): the link tables are constants in backward, so the gradient leaves
        out how the writes shape the links. True (ours): the gradient also flows into the tables' stored
        entries and back through every update into the write weights and the precedence, so
        ``loss_and_grads`` is the derivative of the loss (away from truncation ties and the other
        discrete decisions); O(K·K_L) more work per step, never O(N).
    memory_init : {"constant", "zeros", "random"} or ndarray of shape (N, W)
    seed : int
    dtype : float64 (default) or float32
    """

    Config = SDNCConfig

    def make_core(self, c):
        factory = make_index_factory(c.index, seed=c.seed, **(c.index_kwargs or {}))
        return SDNCCore(
            input_size=c.input_size,
            output_size=c.output_size,
            memory_size=c.memory_size,
            word_size=c.word_size,
            num_heads=c.num_heads,
            hidden_size=c.hidden_size,
            k=c.k,
            link_k=c.link_k,
            index_factory=factory,
            bptt=c.bptt,
            restore=c.restore,
            fused=c.fused,
            delta=c.delta,
            strength=c.strength,
            link_grads=c.link_grads,
        )

    @property
    def memory(self):
        """The live (B, N, W) memory (equal to the initial memory between calls)."""
        return self.core.memory.memory

    @property
    def links(self):
        """The live :class:`~refmann.memory.SparseLinks` (empty between calls)."""
        return self.core.links

    @property
    def last_memory_grad(self):
        """∂L/∂M_0 of the last ``loss_and_grads`` as a :class:`~refmann.ops.RowGrad` (touched rows only)."""
        return self.core.last_memory_grad


class DenseSDNC(RecurrentModel):
    """The SDNC's rules on a dense memory with dense (B, N, N) link tables and dense weights, nothing
    truncated: the oracle the SDNC is tested against. ``SDNC(k=N, link_k=N, index="linear")`` computes
    the same function, with the same parameter names and shapes.

    Parameters
    ----------
    input_size, output_size, memory_size, word_size, num_heads, hidden_size : int
    delta : float
    strength : bool
    link_grads : bool
        As for :class:`SDNC`: True differentiates through the dense (B, N, N) link recursion too (the
        gradients of pred, succ and the precedence carried back step by step), the oracle of
        ``SDNC(link_grads=True)``.
    memory_init : {"constant", "zeros", "random", "learned"} or ndarray of shape (N, W)
    seed : int
    dtype : float64 (default) or float32
    """

    Config = DenseSDNCConfig

    def make_core(self, c):
        return DenseSDNCCore(
            input_size=c.input_size,
            output_size=c.output_size,
            memory_size=c.memory_size,
            word_size=c.word_size,
            num_heads=c.num_heads,
            hidden_size=c.hidden_size,
            delta=c.delta,
            strength=c.strength,
            link_grads=c.link_grads,
        )


register_model(
    ModelSpec(
        "sdnc",
        SDNC,
        label="SDNC",
        color="tab:brown",
        golden={"memory_init": "random", "index": "linear"},
        train={"index": "lsh"},
        bench=(
            BenchVariant("sdnc-linear", "SDNC linear", "tab:olive", {"index": "linear"}, 1.0, 1.0, figure=7),
            BenchVariant("sdnc-lsh", "SDNC LSH", "tab:brown", {"index": "lsh"}, 0.0, 1.0, figure=7),
        ),
    )
)
