"""Sparse Access Memory (Rae et al. 2016)."""

from __future__ import annotations

from ..cores.sam import SAMCore
from ..memory import make_index_factory
from .configs import SAMConfig
from .recurrent import RecurrentModel
from .registry import BenchVariant, ModelSpec, register_model


class SAM(RecurrentModel):
    """Sparse Access Memory (Rae et al. 2016): K reads per head from an index, sparse writes to the
    K previously read slots and the least recently accessed one, usage by a ring, rollback BPTT.

    Takes the same parameters as :class:`DAM` (``model.params`` has the same names and shapes), and
    with ``k = memory_size`` and ``index="linear"`` computes the same function as
    ``DAM(usage="timestamp")``.

    Parameters
    ----------
    input_size, output_size, memory_size, word_size, num_heads, hidden_size : int
        As for :class:`DAM`.
    k : int
        Slots read per head (default 4, the paper's).
    index : {"linear", "lsh", "kdforest"}
        ``"linear"``: exact cosine top-k by a scan (O(N) per query); ``"lsh"``: random-hyperplane
        LSH, O(1) in N; ``"kdforest"``: a randomized k-d forest (the paper's FLANN index), O(log N).
    index_kwargs : dict, optional
        Options of the index (see :mod:`refmann.memory.index`).
    delta : float
        δ of the access rule (default 0.005).
    bptt : {"rollback", "cache"}
        ``"rollback"`` (default): writes are applied in place and journalled; backward reverts them.
        ``"cache"``: keep a copy of the memory at every step (O(N·T)), for comparison.
    restore : {"initial", "final"}
        What ``loss_and_grads`` leaves in the memory: the initial memory (default), or the memory
        after the last step, re-applied from the journal in O(T·K) (truncated BPTT: the next call
        continues from it). ``forward`` always leaves the memory unchanged.
    strength : bool
        Learn a key strength β = 1 + softplus (default True).
    fused : bool
        True (default): the memory's side of a step runs as three kernel calls around the index
        (:meth:`refmann.memory.SparseMemory.lra_write`, ``read_touch``, ``read_write_backward``).
        False: one op per equation, the ops' readable NumPy bodies (:func:`refmann.ops.lra_interpolate_forward`,
        :func:`refmann.ops.sparse_write_inplace`, :func:`refmann.ops.sparse_content_read_forward`, ...)
        — the same numbers, tested.
    memory_init : {"constant", "zeros", "random"} or ndarray of shape (N, W)
        (``"learned"`` is not offered: it would rewrite all N rows for every sequence.)
    seed : int
    dtype : float64 (default) or float32
    """

    Config = SAMConfig

    def make_core(self, c):
        factory = make_index_factory(c.index, seed=c.seed, **(c.index_kwargs or {}))
        return SAMCore(
            input_size=c.input_size,
            output_size=c.output_size,
            memory_size=c.memory_size,
            word_size=c.word_size,
            num_heads=c.num_heads,
            hidden_size=c.hidden_size,
            k=c.k,
            index_factory=factory,
            bptt=c.bptt,
            restore=c.restore,
            fused=c.fused,
            delta=c.delta,
            strength=c.strength,
        )

    @property
    def memory(self):
        """The live (B, N, W) memory (equal to the initial memory between calls)."""
        return self.core.memory.memory

    @property
    def last_memory_grad(self):
        """∂L/∂M_0 of the last ``loss_and_grads`` as a :class:`~refmann.ops.RowGrad` (touched rows only)."""
        return self.core.last_memory_grad


register_model(
    ModelSpec(
        "sam",
        SAM,
        label="SAM",
        color="tab:blue",
        golden={"memory_init": "random", "index": "linear"},
        train={"index": "lsh"},
        bench=(
            BenchVariant("sam-linear", "SAM linear", "tab:green", {"index": "linear"}, 1.0, 1.0),
            BenchVariant("sam-lsh", "SAM LSH", "tab:blue", {"index": "lsh"}, 0.0, 0.0),
            BenchVariant("sam-kdforest", "SAM k-d forest", "tab:cyan", {"index": "kdforest"}, 0.0, 0.0),
        ),
    )
)
