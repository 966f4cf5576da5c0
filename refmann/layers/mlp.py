r"""A multilayer perceptron: Linear, activation, ..., Linear (the transformer's feed-forward block).

With ``memory=`` a :class:`~refmann.layers.SketchMemory` follows the chosen hidden activations: the
sketch paper's "memory at every layer" (Panigrahy, Wang & Zaheer 2021; refmann's reconstruction).
"""

from __future__ import annotations

import numpy as np

from .. import _checks
from .activations import ACTIVATIONS
from .base import Sequential, check_dtype, check_seed, child_seeds
from .linear import Linear
from .sketch import SketchMemory


class MLP(Sequential):
    r"""Linear layers with an activation between each pair (none after the last).

    Parameters
    ----------
    input_dim : int, keyword-only
    hidden_dims : int or sequence of int, keyword-only
        The hidden sizes; ``hidden_dims=4 * D`` gives a transformer's feed-forward block.
    output_dim : int, keyword-only, optional
        Default ``input_dim``.
    activation : {"gelu", "gelu_tanh", "silu", "relu", "tanh"}, keyword-only
    bias : bool, keyword-only
    memory : dict, keyword-only, optional
        :class:`~refmann.layers.SketchMemory` keywords (all but ``input_dim``, ``seed``, ``dtype``):
        ``num_tables``, ``num_bits``, ``output_dim`` (default: the hidden width), ``combine`` (default
        ``"concat"``), ``signs``, ``gate``. A sketch memory ``"mem{l}"`` follows ``"act{l}"`` for every
        hidden layer l in ``memory_layers``; with ``"concat"`` the next linear layer reads the wider
        :math:`[h_l ; r_l]`.
    memory_layers : "all" or sequence of int, keyword-only
        The hidden layers (1-based) that get a memory; default every one. Ignored without ``memory``.
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"fc1.weight"``, ``"fc1.bias"``, …, ``"fc{L}.weight"``, ``"fc{L}.bias"`` for L = len(hidden_dims) + 1;
        the activations are ``"act1"``, …, ``"act{L-1}"`` (no parameters); with a memory,
        ``"mem{l}.values"`` (and ``"mem{l}.gate.*"``), whose gradients are row-sparse
        (:class:`~refmann.ops.RowGrad`).
    memory_layers : tuple of int
        The hidden layers that have a memory (empty without one).

    Notes
    -----
    .. math:: h_0 = x, \quad h_l = f(h_{l-1} W_l + b_l)\ (l < L), \quad y = h_{L-1} W_L + b_L

    With a memory at layer l, :math:`h_l` is replaced by the sketch layer's output before it feeds layer
    l + 1: :math:`[h_l ; r(h_l)]` (concat) or :math:`h_l + r(h_l)` (residual), r the table read.
    """

    def __init__(
        self,
        *,
        input_dim,
        hidden_dims,
        output_dim=None,
        activation="gelu",
        bias=True,
        memory=None,
        memory_layers="all",
        seed=0,
        dtype=np.float64,
    ):
        input_dim = _checks.check_positive_int(input_dim, "input_dim")
        output_dim = input_dim if output_dim is None else _checks.check_positive_int(output_dim, "output_dim")
        if isinstance(hidden_dims, (int, np.integer)) and not isinstance(hidden_dims, bool):
            hidden_dims = (hidden_dims,)
        try:
            hidden = tuple(_checks.check_positive_int(h, "hidden_dims") for h in hidden_dims)
        except TypeError:
            raise TypeError(f"hidden_dims: expected an int or a sequence of ints, got {hidden_dims!r}") from None
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        dtype = check_dtype(dtype)
        sizes = (input_dim, *hidden, output_dim)
        seed = check_seed(seed)
        seeds = child_seeds(seed, len(sizes) - 1)
        with_memory = _memory_layers(memory, memory_layers, len(hidden))
        mem_seeds = child_seeds(seed + 1, len(hidden)) if with_memory else []
        layers, width = [], input_dim  # width: what the next linear layer reads
        for i in range(1, len(sizes)):
            layers.append(
                (f"fc{i}", Linear(input_dim=width, output_dim=sizes[i], bias=bias, seed=seeds[i - 1], dtype=dtype))
            )
            width = sizes[i]
            if i < len(sizes) - 1:
                layers.append((f"act{i}", ACTIVATIONS[activation](dtype=dtype)))
                if i in with_memory:
                    kw = {"combine": "concat", "output_dim": width} | memory
                    mem = SketchMemory(input_dim=width, seed=mem_seeds[i - 1], dtype=dtype, **kw)
                    layers.append((f"mem{i}", mem))
                    width = mem.out_dim
        super().__init__(layers=layers)
        self.memory_layers = with_memory
        self.input_dim, self.hidden_dims, self.output_dim, self.activation = input_dim, hidden, output_dim, activation
        self.dtype = dtype
        self._sizes = {
            "input_dim": input_dim,
            "hidden_dims": hidden,
            "output_dim": output_dim,
            "activation": activation,
        }
        if with_memory:
            self._sizes["memory_layers"] = with_memory

    def trace(self, cache) -> list:
        """Each sketch memory's hash rows ``(rows (B, T),)``, in layer order: the discrete decisions a gradient
        check must not cross (:attr:`refmann.models.FeedForwardModel.last_trace`)."""
        return [(c.bag.indices,) for name, c in zip(self.children, cache) if name.startswith("mem")]


def _memory_layers(memory, memory_layers, num_hidden) -> tuple:
    """The 1-based hidden layers that get a sketch memory (empty without ``memory``), checked."""
    if memory is None:
        return ()
    if not isinstance(memory, dict):
        raise TypeError(f"memory: expected None or a dict of SketchMemory keywords, got {memory!r}")
    bad = sorted(set(memory) & {"input_dim", "seed", "dtype"})
    if bad:
        raise ValueError(f"memory: the MLP sets {bad} itself (the hidden width, and seeds from its own)")
    if num_hidden == 0:
        raise ValueError("memory: expected at least one hidden layer to put a memory after, got hidden_dims = ()")
    if isinstance(memory_layers, str):
        if memory_layers != "all":
            raise ValueError(
                f"memory_layers: expected 'all' or a sequence of hidden-layer indices, got {memory_layers!r}"
            )
        return tuple(range(1, num_hidden + 1))
    try:
        chosen = tuple(_checks.check_positive_int(i, "memory_layers") for i in memory_layers)
    except TypeError:
        raise TypeError(f"memory_layers: expected 'all' or a sequence of ints, got {memory_layers!r}") from None
    if not chosen or len(set(chosen)) != len(chosen) or max(chosen) > num_hidden:
        raise ValueError(
            f"memory_layers: expected distinct hidden layers in [1, {num_hidden}], got {list(memory_layers)}"
        )
    return tuple(sorted(chosen))
