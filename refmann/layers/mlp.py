r"""A multilayer perceptron: Linear, activation, ..., Linear (the transformer's feed-forward block)."""

from __future__ import annotations

import numpy as np

from .. import _checks
from .activations import ACTIVATIONS
from .base import Sequential, check_dtype, check_seed, child_seeds
from .linear import Linear


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
    seed : int, keyword-only
    dtype : float32 or float64, keyword-only

    Attributes
    ----------
    params : dict
        ``"fc1.weight"``, ``"fc1.bias"``, …, ``"fc{L}.weight"``, ``"fc{L}.bias"`` for L = len(hidden_dims) + 1;
        the activations are ``"act1"``, …, ``"act{L-1}"`` (no parameters).

    Notes
    -----
    .. math:: h_0 = x, \quad h_l = f(h_{l-1} W_l + b_l)\ (l < L), \quad y = h_{L-1} W_L + b_L
    """

    def __init__(
        self, *, input_dim, hidden_dims, output_dim=None, activation="gelu", bias=True, seed=0, dtype=np.float64
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
        seeds = child_seeds(check_seed(seed), len(sizes) - 1)
        layers = []
        for i in range(1, len(sizes)):
            layers.append(
                (
                    f"fc{i}",
                    Linear(input_dim=sizes[i - 1], output_dim=sizes[i], bias=bias, seed=seeds[i - 1], dtype=dtype),
                )
            )
            if i < len(sizes) - 1:
                layers.append((f"act{i}", ACTIVATIONS[activation](dtype=dtype)))
        super().__init__(layers=layers)
        self.input_dim, self.hidden_dims, self.output_dim, self.activation = input_dim, hidden, output_dim, activation
        self.dtype = dtype
        self._sizes = {
            "input_dim": input_dim,
            "hidden_dims": hidden,
            "output_dim": output_dim,
            "activation": activation,
        }
