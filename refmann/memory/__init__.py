"""Non-differentiable state of the sparse models: the usage ring, the nearest-neighbour indexes, the
row-gradient table, the sparse memory that holds them with its step journal, and the Sparse DNC's
link tables with theirs."""

from .accumulator import RowGradAccumulator
from .index import LinearIndex, LSHIndex, cosine_scores
from .kdforest import KDForestIndex, KDForestJournal, KDTrees
from .links import LinkJournal, LinkRows, SparseLinks
from .ring import RingJournal, UsageRing
from .sparse_memory import SparseMemory, StepJournal

INDEXES = {"linear": LinearIndex, "lsh": LSHIndex, "kdforest": KDForestIndex}


def make_index_factory(name, *, seed=0, **kwargs):
    """A function ``memory -> index`` for the index called ``name`` ("linear", "lsh" or "kdforest")."""
    if name not in INDEXES:
        raise ValueError(f"index: expected one of {sorted(INDEXES)}, got {name!r}")
    cls = INDEXES[name]
    if name == "linear":
        if kwargs:
            raise ValueError(f"index_kwargs: the linear index takes no options, got {sorted(kwargs)}")
        return cls

    def factory(memory):
        return cls(memory, seed=seed, **kwargs)

    def nbytes_for(B, N, W):  # what SparseMemory's size guard asks before building one
        sizing = {k: kwargs[k] for k in getattr(cls, "SIZING_OPTIONS", ("num_tables", "num_bits")) if k in kwargs}
        return cls.nbytes_for(B, N, W, **sizing)

    factory.nbytes_for = nbytes_for
    return factory


__all__ = [
    "INDEXES",
    "KDForestIndex",
    "KDForestJournal",
    "KDTrees",
    "LSHIndex",
    "LinearIndex",
    "LinkJournal",
    "LinkRows",
    "RingJournal",
    "RowGradAccumulator",
    "SparseLinks",
    "SparseMemory",
    "StepJournal",
    "UsageRing",
    "cosine_scores",
    "make_index_factory",
]
