"""Non-differentiable state of the sparse models: the usage ring and the nearest-neighbour indexes."""

from .accumulator import RowGradAccumulator
from .index import LinearIndex, LSHIndex, cosine_scores
from .ring import RingJournal, UsageRing

INDEXES = {"linear": LinearIndex, "lsh": LSHIndex}


def make_index_factory(name, *, seed=0, **kwargs):
    """A function ``memory -> index`` for the index called ``name`` ("linear" or "lsh")."""
    if name not in INDEXES:
        raise ValueError(f"index: expected one of {sorted(INDEXES)}, got {name!r}")
    cls = INDEXES[name]
    if name == "linear":
        if kwargs:
            raise ValueError(f"index_kwargs: the linear index takes no options, got {sorted(kwargs)}")
        return cls
    return lambda memory: cls(memory, seed=seed, **kwargs)


__all__ = ["INDEXES", "LSHIndex", "LinearIndex", "RingJournal", "RowGradAccumulator", "UsageRing", "cosine_scores",
           "make_index_factory"]
