"""LSTM, NTM and DAM: constructors that validate their sizes and pick a core."""

from __future__ import annotations

import numpy as np

from .. import _checks
from ..cores import DAMCore, LSTMCore, NTMCore
from ..cores.sam import SAMCore
from .base import RecurrentModel


def _sizes(**sizes):
    for name, value in sizes.items():
        _checks.check_positive_int(value, name)


class LSTM(RecurrentModel):
    """The baseline: an LSTM (``hidden_size`` cells) with a linear read-out, no memory.

    Parameters
    ----------
    input_size, output_size, hidden_size : int
    seed : int
        Seeds the parameter initialisation.
    dtype : float64 (default) or float32
    """

    has_memory = False

    def __init__(self, *, input_size, output_size, hidden_size=100, seed=0, dtype=np.float64):
        _sizes(hidden_size=hidden_size)
        self.core = LSTMCore(input_size=input_size, output_size=output_size, hidden_size=hidden_size)
        self._setup(input_size=input_size, output_size=output_size, seed=seed, dtype=dtype)


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
    memory_init : {"constant", "zeros", "random", "learned"}
        Initial memory (DESIGN decision 9; Collier & Beel 2018 found the constant 1e-6 the most stable).
    seed : int
    dtype : float64 (default) or float32
    """

    def __init__(self, *, input_size, output_size, memory_size=128, word_size=20, num_heads=1, hidden_size=100,
                 shift_range=1, memory_init="constant", seed=0, dtype=np.float64):
        _sizes(memory_size=memory_size, word_size=word_size, num_heads=num_heads, hidden_size=hidden_size)
        _checks.check_positive_int(shift_range, "shift_range", minimum=0)
        self.core = NTMCore(input_size=input_size, output_size=output_size, memory_size=memory_size,
                            word_size=word_size, num_heads=num_heads, hidden_size=hidden_size, shift_range=shift_range)
        self._setup(input_size=input_size, output_size=output_size, seed=seed, dtype=dtype, memory_init=memory_init)


class DAM(RecurrentModel):
    """Dense Access Memory, SAM's dense twin (Rae et al. 2016).

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
        U1, :math:`U_t = \\lambda U_{t-1} + \\sum_h (w^W + w^R)` (default), or the time of last access
        :math:`\\sum_h (w^W + w^R) > \\delta`, which makes DAM the same function as SAM with K = N.
    discount : float
        λ of U1 (default 0.99).
    delta : float
        δ of the access rule (default 0.005).
    strength : bool
        Learn a key strength β = 1 + softplus (default True; False gives the paper's literal β = 1).
    memory_init : {"constant", "zeros", "random", "learned"}
    seed : int
    dtype : float64 (default) or float32
    """

    def __init__(self, *, input_size, output_size, memory_size=128, word_size=20, num_heads=4, hidden_size=100,
                 usage="discounted", discount=0.99, delta=0.005, strength=True, memory_init="constant", seed=0,
                 dtype=np.float64):
        _sizes(memory_size=memory_size, word_size=word_size, num_heads=num_heads, hidden_size=hidden_size)
        _checks.check_real(discount, "discount", 0.0, 1.0)
        _checks.check_real(delta, "delta", 0.0)
        _checks.check_bool(strength, "strength")
        self.core = DAMCore(input_size=input_size, output_size=output_size, memory_size=memory_size,
                            word_size=word_size, num_heads=num_heads, hidden_size=hidden_size, usage=usage,
                            discount=discount, delta=delta, strength=strength)
        self._setup(input_size=input_size, output_size=output_size, seed=seed, dtype=dtype, memory_init=memory_init)


MODELS = {"lstm": LSTM, "ntm": NTM, "dam": DAM}


def make_model(name, **kwargs):
    """Build a model by name ("lstm", "ntm", "dam")."""
    if name not in MODELS:
        raise ValueError(f"name: expected one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](**kwargs)


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
    index : {"linear", "lsh"}
        ``"linear"``: exact cosine top-k by a scan (O(N) per query); ``"lsh"``: random-hyperplane
        LSH, O(1) in N.
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
    memory_init : {"constant", "zeros", "random"}
        (``"learned"`` is not offered: it would rewrite all N rows for every sequence.)
    seed : int
    dtype : float64 (default) or float32
    """

    def __init__(self, *, input_size, output_size, memory_size=128, word_size=20, num_heads=4, hidden_size=100,
                 k=4, index="linear", index_kwargs=None, delta=0.005, bptt="rollback", restore="initial", strength=True,
                 memory_init="constant", seed=0, dtype=np.float64):
        from ..memory import make_index_factory

        _sizes(memory_size=memory_size, word_size=word_size, num_heads=num_heads, hidden_size=hidden_size)
        _checks.check_positive_int(k, "k")
        if k > memory_size:
            raise ValueError(f"k: expected 1 <= k <= memory_size = {memory_size}, got {k}")
        if memory_init == "learned":
            raise ValueError("memory_init: 'learned' is not available for SAM (it would rewrite all N rows per "
                             "sequence); expected 'constant', 'zeros' or 'random'")
        _checks.check_real(delta, "delta", 0.0)
        _checks.check_bool(strength, "strength")
        factory = make_index_factory(index, seed=seed, **(index_kwargs or {}))
        self.core = SAMCore(k=k, index_factory=factory, bptt=bptt, restore=restore, input_size=input_size,
                            output_size=output_size,
                            memory_size=memory_size, word_size=word_size, num_heads=num_heads,
                            hidden_size=hidden_size, delta=delta, strength=strength)
        self._setup(input_size=input_size, output_size=output_size, seed=seed, dtype=dtype, memory_init=memory_init)

    @property
    def memory(self):
        """The live (B, N, W) memory (equal to the initial memory between calls)."""
        return self.core.memory


MODELS["sam"] = SAM
