r"""The sandwich every memory core shares, written once: controller → interface → … → output.

Per step, around whatever a core does with its memory:

1. :class:`Controller`: :math:`(h_t, c_t) = \mathrm{LSTM}([x_t ; r_{t-1}], h_{t-1}, c_{t-1})`
   (parameters ``controller.weight`` (X + H·W + C, 4C) and ``controller.bias``);
2. :class:`Interface`: a linear map of :math:`h_t` (``heads.weight``, ``heads.bias``) cut into named
   per-head fields by an :class:`InterfaceLayout`, each through its activation (the query, the
   gates, the strengths, ...);
3. :class:`Output`: :math:`y_t = \mathrm{linear}([h_t ; r_t])` (``output.weight``, ``output.bias``).

Each component is a frozen dataclass of its sizes with ``init_params``, ``forward`` and
``backward``; backward adds its parameter gradients into a :class:`refmann.grads.Grads` sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import ops


def init_linear(rng, fan_in: int, fan_out: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Weight U(±1/√fan_in) of shape (fan_in, fan_out) and a zero bias."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype), np.zeros(fan_out, dtype)


def init_lstm(rng, in_size: int, hidden: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """LSTM weight (in + C, 4C) and bias (4C,), forget-gate bias 1 (Gers et al. 2000)."""
    weight, bias = init_linear(rng, in_size + hidden, 4 * hidden, dtype)
    bias[hidden : 2 * hidden] = 1.0
    return weight, bias


# -- 1. controller -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Controller:
    """LSTM on ``[x_t ; r_{t-1}]`` (the previous reads flattened over heads; none for the plain LSTM)."""

    input_size: int  # X
    read_size: int  # H·W, the flattened previous reads (0: no memory)
    hidden_size: int  # C

    def init_params(self, rng, dtype) -> dict[str, np.ndarray]:
        weight, bias = init_lstm(rng, self.input_size + self.read_size, self.hidden_size, dtype)
        return {"controller.weight": weight, "controller.bias": bias}

    def forward(self, params, x, reads_prev, h, c):
        """x (B, X), reads_prev (B, H, W) or None, h, c (B, C) -> ((h_t, c_t), cache)."""
        ctrl_in = x if reads_prev is None else np.concatenate([x, reads_prev.reshape(x.shape[0], -1)], axis=1)
        return ops.lstm_step_forward(ctrl_in, h, c, params["controller.weight"], params["controller.bias"])

    def backward(self, params, dh, dc, cache, grads):
        """VJP: returns (dreads_prev (B, H·W), dh_prev (B, C), dc_prev (B, C)); adds the LSTM's gradients."""
        dz, dc_prev = ops.lstm_gates_backward((dh, dc), cache)  # dz (B, 4C)
        dxh = dz @ cache.weight.T  # (B, X + H·W + C)
        grads.add_outer("controller.weight", cache.xh, dz)
        grads.add("controller.bias", dz.sum(axis=0))
        X, Xc = self.input_size, self.input_size + self.read_size
        return dxh[:, X:Xc], dxh[:, Xc:], dc_prev


# -- 2. interface -------------------------------------------------------------------------------------

ACTIVATIONS = {
    "identity": None,
    "sigmoid": (ops.sigmoid_forward, ops.sigmoid_backward),
    "tanh": (ops.tanh_forward, ops.tanh_backward),
    "softplus": (ops.softplus_forward, ops.softplus_backward),
    "oneplus": (ops.oneplus_forward, ops.oneplus_backward),
    "softmax": (ops.softmax_forward, ops.softmax_backward),  # over the field's entries
}


class Field(NamedTuple):
    """One per-head field of the interface vector: a vector (B, H, size), or a scalar (B, H)."""

    name: str  # e.g. "key", "strength", "erase"
    size: int  # entries per head (a scalar field has size 1)
    activation: str  # a key of ACTIVATIONS
    scalar: bool = False  # True: one number per head, shaped (B, H)


def scalar(name: str, activation: str) -> Field:
    """A field of one number per head, shaped (B, H) (a gate, a strength)."""
    return Field(name, 1, activation, True)


class HeadGroup(NamedTuple):
    """``heads`` heads sharing one field list; their columns are contiguous, head after head."""

    name: str  # e.g. "read", "write"
    heads: int  # H
    fields: tuple[Field, ...]

    @property
    def width(self) -> int:
        """Columns per head."""
        return sum(f.size for f in self.fields)


class InterfaceLayout:
    """Named fields of an interface vector: groups of heads, each head a run of fields.

    The columns are group after group; within a group head after head; within a head field after
    field, in the order given. ``split_forward`` cuts a (B, width) vector into
    ``values[group][field]`` and applies each field's activation; ``split_backward`` is its VJP.

    Examples
    --------
    DAM's heads (q, a, α, γ, β per head)::

        InterfaceLayout(HeadGroup("head", H, (Field("query", W, "identity"), Field("add", W, "identity"),
                                              scalar("alpha", "sigmoid"), scalar("gate", "sigmoid"),
                                              scalar("strength", "oneplus"))))
    """

    def __init__(self, *groups: HeadGroup):
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ValueError(f"groups: names must be distinct, got {names}")
        for g in groups:
            for f in g.fields:
                if f.activation not in ACTIVATIONS:
                    raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {f.activation!r}")
        self.groups = tuple(groups)
        self.width = sum(g.heads * g.width for g in groups)

    def split_forward(self, p):
        """p (B, width) -> (values, cache): ``values[group][field]`` of shape (B, H) or (B, H, size)."""
        B = p.shape[0]
        values, caches, start = {}, {}, 0
        for g in self.groups:
            block = p[:, start : start + g.heads * g.width].reshape(B, g.heads, g.width)
            start += g.heads * g.width
            values[g.name], caches[g.name] = {}, {}
            col = 0
            for f in g.fields:
                raw = block[..., col] if f.scalar else block[..., col : col + f.size]
                col += f.size
                pair = ACTIVATIONS[f.activation]
                if pair is None:
                    values[g.name][f.name], caches[g.name][f.name] = raw, None
                else:  # copies: an activation's cache keeps no view of p
                    hyper = {"axis": -1} if f.activation == "softmax" else {}
                    values[g.name][f.name], caches[g.name][f.name] = pair[0](raw.copy(), **hyper)
        return values, caches

    def split_backward(self, dvalues, cache, B, dtype):
        """VJP of :meth:`split_forward`: ``dvalues[group][field]`` (missing or None: zero) -> dp (B, width)."""
        parts = []
        for g in self.groups:
            dblock = np.zeros((B, g.heads, g.width), dtype)
            col = 0
            for f in g.fields:
                d = dvalues.get(g.name, {}).get(f.name)
                if d is not None:
                    pair = ACTIVATIONS[f.activation]
                    d = d if pair is None else pair[1](d, cache[g.name][f.name])[0]
                    if f.scalar:
                        dblock[..., col] = d
                    else:
                        dblock[..., col : col + f.size] = d
                col += f.size
            parts.append(dblock.reshape(B, -1))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


class InterfaceCache(NamedTuple):
    linear: ops.linear.LinearCache  # of p = h @ heads.weight + heads.bias
    fields: dict  # per group and field: the activation's cache


@dataclass(frozen=True)
class Interface:
    """``p = h_t @ heads.weight + heads.bias`` cut into named per-head fields by ``layout``."""

    hidden_size: int  # C
    layout: InterfaceLayout

    def init_params(self, rng, dtype) -> dict[str, np.ndarray]:
        weight, bias = init_linear(rng, self.hidden_size, self.layout.width, dtype)
        return {"heads.weight": weight, "heads.bias": bias}

    def forward(self, params, h):
        """h (B, C) -> (values[group][field], cache)."""
        p, linear_cache = ops.linear_forward(h, params["heads.weight"], params["heads.bias"])
        values, field_caches = self.layout.split_forward(p)
        return values, InterfaceCache(linear_cache, field_caches)

    def backward(self, params, dvalues, cache, grads):
        """VJP: ∂L/∂h (B, C) from the fields' gradients; adds the head layer's gradients."""
        x = cache.linear.x
        dp = self.layout.split_backward(dvalues, cache.fields, x.shape[0], x.dtype)  # (B, width)
        grads.add_outer("heads.weight", cache.linear.x, dp)
        grads.add("heads.bias", dp.sum(axis=0))
        return dp @ cache.linear.weight.T  # (B, C)


# -- 3. output ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """``y_t = [h_t ; r_t] @ output.weight + output.bias`` (r_t flattened over heads; none for the LSTM)."""

    hidden_size: int  # C
    read_size: int  # H·W
    output_size: int  # Y

    def init_params(self, rng, dtype) -> dict[str, np.ndarray]:
        weight, bias = init_linear(rng, self.hidden_size + self.read_size, self.output_size, dtype)
        return {"output.weight": weight, "output.bias": bias}

    def forward(self, params, h, reads):
        """h (B, C), reads (B, H, W) or None -> (y (B, Y), cache)."""
        hr = h if reads is None else np.concatenate([h, reads.reshape(h.shape[0], -1)], axis=1)
        return ops.linear_forward(hr, params["output.weight"], params["output.bias"])

    def backward(self, params, dy, cache, grads):
        """VJP: returns (dh (B, C), dreads (B, H·W)); adds the output layer's gradients."""
        dhr = dy @ cache.weight.T
        grads.add_outer("output.weight", cache.x, dy)
        grads.add("output.bias", dy.sum(axis=0))
        return dhr[:, : self.hidden_size], dhr[:, self.hidden_size :]
