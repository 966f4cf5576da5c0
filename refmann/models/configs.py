"""One frozen config dataclass per model: every option with its default, validated in one place.

A model is built from its config (``SAM(**kwargs)`` makes a ``SAMConfig(**kwargs)`` first), so the
command line (``--set k=8``), golden files, benchmarks and the trainer all read the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .. import _checks
from ..cores.dnc import LINK_MODES, VARIANTS

MEMORY_INITS = ("constant", "zeros", "random", "learned")


def _set(obj, name, value):
    object.__setattr__(obj, name, value)  # normalising a field of a frozen dataclass in __post_init__


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What every recurrent model takes."""

    input_size: int  # X
    output_size: int  # Y
    hidden_size: int = 100  # C, LSTM cells of the controller
    seed: int = 0  # seeds the parameters (and the LSH hyperplanes)
    dtype: Any = np.float64  # float64 (default) or float32

    def __post_init__(self):
        for name in ("input_size", "output_size", "hidden_size"):
            _checks.check_positive_int(getattr(self, name), name)
        _set(self, "dtype", _checks.check_dtype(self.dtype))
        _checks.check_seed(self.seed)

    def to_kwargs(self) -> dict:
        """The constructor keywords this config was made from (``dtype`` as a string)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["dtype"] = np.dtype(out["dtype"]).name
        return out


@dataclass(frozen=True, kw_only=True)
class LSTMConfig(ModelConfig):
    """The LSTM baseline: no memory."""


@dataclass(frozen=True, kw_only=True, eq=False)
class MemoryConfig(ModelConfig):
    """What every memory model adds."""

    memory_size: int = 128  # N
    word_size: int = 20  # W
    #: "constant" (1e-6, DESIGN decision 9), "zeros", "random", "learned", or an (N, W) array
    memory_init: Any = field(default="constant")

    def __post_init__(self):
        super().__post_init__()
        for name in ("memory_size", "word_size"):
            _checks.check_positive_int(getattr(self, name), name)
        # one memory of one sequence is the least any call allocates: refuse now a size no batch can run
        itemsize = np.dtype(self.dtype).itemsize
        _checks.check_footprint(
            {"memory": self.memory_size * self.word_size * itemsize},
            "memory_size",
            what=f"one memory of {self.memory_size:,} slots of {self.word_size} ({np.dtype(self.dtype).name})",
        )
        init = self.memory_init
        if isinstance(init, str):
            if init not in MEMORY_INITS:
                raise ValueError(f"memory_init: expected one of {MEMORY_INITS} or an (N, W) array, got {init!r}")
        else:
            shape = (self.memory_size, self.word_size)
            arr = _checks.as_float_array(init, "memory_init", ndim=2)
            _checks.check_shape(arr, "memory_init", shape)
            arr = np.array(arr, dtype=self.dtype)  # a private copy: later edits of the caller's array
            arr.flags.writeable = False  # cannot change the model
            _set(self, "memory_init", arr)


@dataclass(frozen=True, kw_only=True, eq=False)
class NTMConfig(MemoryConfig):
    """Neural Turing Machine (Graves et al. 2014)."""

    num_heads: int = 1  # H read heads and H write heads
    shift_range: int = 1  # R: shifts −R..R

    def __post_init__(self):
        super().__post_init__()
        _checks.check_positive_int(self.num_heads, "num_heads")
        _checks.check_positive_int(self.shift_range, "shift_range", minimum=0)


@dataclass(frozen=True, kw_only=True, eq=False)
class DAMConfig(MemoryConfig):
    """Dense Access Memory, SAM's dense twin (Rae et al. 2016)."""

    num_heads: int = 4  # H
    usage: str = "discounted"  # "discounted" (U1) or "timestamp"
    discount: float = 0.99  # λ of U1
    delta: float = 0.005  # δ of the access rule
    strength: bool = True  # learn β = 1 + softplus (False: the paper's β = 1)

    def __post_init__(self):
        super().__post_init__()
        _checks.check_positive_int(self.num_heads, "num_heads")
        _checks.check_real(self.discount, "discount", 0.0, 1.0)
        _checks.check_real(self.delta, "delta", 0.0)
        _checks.check_bool(self.strength, "strength")


@dataclass(frozen=True, kw_only=True, eq=False)
class SAMConfig(MemoryConfig):
    """Sparse Access Memory (Rae et al. 2016)."""

    num_heads: int = 4  # H
    k: int = 4  # K, slots read per head
    index: str = "linear"  # "linear" (exact), "lsh" or "kdforest"
    index_kwargs: dict | None = None
    delta: float = 0.005  # δ of the access rule
    bptt: str = "rollback"  # or "cache" (a copy of M_t per step, for comparison)
    restore: str = "initial"  # what loss_and_grads leaves in memory: "initial" or "final"
    strength: bool = True
    fused: bool = True  # the memory's side of a step in three kernel calls (False: one op per equation)

    def __post_init__(self):
        super().__post_init__()
        _checks.check_positive_int(self.num_heads, "num_heads")
        _checks.check_positive_int(self.k, "k")
        if self.k > self.memory_size:
            raise ValueError(f"k: expected 1 <= k <= memory_size = {self.memory_size}, got {self.k}")
        if isinstance(self.memory_init, str) and self.memory_init == "learned":
            raise ValueError(
                "memory_init: 'learned' is not available for SAM (it would rewrite all N rows per "
                "sequence); expected 'constant', 'zeros', 'random' or an (N, W) array"
            )
        _checks.check_real(self.delta, "delta", 0.0)
        _checks.check_bool(self.strength, "strength")
        _checks.check_bool(self.fused, "fused")
        if self.index_kwargs is not None and not isinstance(self.index_kwargs, dict):
            raise TypeError(f"index_kwargs: expected a dict or None, got {type(self.index_kwargs).__name__}")


@dataclass(frozen=True, kw_only=True, eq=False)
class DNCConfig(MemoryConfig):
    """Differentiable Neural Computer (Graves et al. 2016), as DeepMind's code computes it."""

    num_heads: int = 4  # R read heads
    num_write_heads: int = 1  # Wh
    variant: str = "deepmind"  # strengths by softplus; "nature": oneplus
    links: str = "cache"  # the (B, Wh, N, N) links in backward: "cache" every step, or "recompute" from checkpoints
    link_checkpoint: int = 16  # links="recompute": keep the links every this many steps
    usage_stop_gradient: bool = (
        True  # DeepMind: w^w_{t-1} enters the usage under stop-gradient; False: the exact gradient
    )
    clip_value: float | None = None  # clip the logits to ±clip_value (DeepMind's train.py: 20); None: no clip

    def __post_init__(self):
        super().__post_init__()
        _checks.check_positive_int(self.num_heads, "num_heads")
        _checks.check_positive_int(self.num_write_heads, "num_write_heads")
        _checks.check_positive_int(self.link_checkpoint, "link_checkpoint")
        _checks.check_bool(self.usage_stop_gradient, "usage_stop_gradient")
        if self.clip_value is not None and _checks.check_finite_real(self.clip_value, "clip_value") <= 0:
            raise ValueError(f"clip_value: expected a positive number or None, got {self.clip_value!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {tuple(VARIANTS)}, got {self.variant!r}")
        if self.links not in LINK_MODES:
            raise ValueError(f"links: expected one of {LINK_MODES}, got {self.links!r}")


@dataclass(frozen=True, kw_only=True, eq=False)
class SDNCConfig(SAMConfig):
    """The Sparse DNC (Rae et al. 2016, Supplementary D): SAM's options and the link tables' K_L."""

    link_k: int = 8  # K_L, entries kept per row of each link table and in the precedence
    link_grads: bool = False  # differentiate through the link tables too (ours; the paper does not)

    def __post_init__(self):
        super().__post_init__()
        _checks.check_positive_int(self.link_k, "link_k")
        _checks.check_bool(self.link_grads, "link_grads")


@dataclass(frozen=True, kw_only=True, eq=False)
class DenseSDNCConfig(MemoryConfig):
    """The SDNC's rules on dense memory and N × N links: its oracle."""

    num_heads: int = 4  # H
    delta: float = 0.005
    strength: bool = True
    link_grads: bool = False  # differentiate through the dense link recursion too (as SDNC's link_grads)

    def __post_init__(self):
        super().__post_init__()
        _checks.check_positive_int(self.num_heads, "num_heads")
        _checks.check_real(self.delta, "delta", 0.0)
        _checks.check_bool(self.strength, "strength")
        _checks.check_bool(self.link_grads, "link_grads")
