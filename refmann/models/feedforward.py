r"""The layer-stack engine and the feed-forward hosts: an MLP classifier and a small transformer.

A host is a network (one :mod:`refmann.layers` layer, usually a composite) plus a loss, with the
recurrent models' API::

    model = MLPClassifier(input_size=784, output_size=10, hidden_sizes=(128,), seed=0)
    logits = model.forward(inputs)                                   # (B, X) -> (B, Y)
    loss, grads = model.loss_and_grads(inputs, targets, mask=None)   # grads has model.params' keys

    model = Transformer(input_size=9, output_size=8, model_dim=32, num_heads=4, num_layers=2)
    logits = model.forward(inputs)                                   # (T, B, X) -> (T, B, Y), causal

The loss (:mod:`refmann.models.losses`) is summed over every scored entry and averaged over the
batch B, as for the recurrent models: ``"sigmoid_ce"`` (targets in [0, 1] of the logits' shape) or
``"softmax_ce"`` (integer targets, the logits' shape without the last axis). ``model.params`` is
the one source of truth: the engine hands it to the network on every call, so an optimizer may
replace its arrays (``model.params = update(model.params, grads)``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import _checks
from ..layers import Embedding, LayerBase, Linear, TransformerBlock
from ..layers.activations import ACTIVATIONS
from ..layers.base import child_seeds, densify, scope
from ..layers.mlp import MLP
from ..layers.transformer import NORMS
from .losses import LOSSES, get_loss


class FeedForwardModel:
    """The engine: a network and a loss, with ``forward``, ``loss`` and ``loss_and_grads``.

    Parameters
    ----------
    network : Layer
        ``network.forward(x, params=...) -> (logits, cache)`` and ``network.backward(dlogits, cache)
        -> (dx, grads)``.
    loss : {"sigmoid_ce", "softmax_ce"}, keyword-only
        The default loss of :meth:`loss` and :meth:`loss_and_grads` (each call may name another).
    batch_axis : int, keyword-only
        The axis of the inputs that counts sequences (0 for (B, X), 1 for time-major (T, B, X)):
        the loss is divided by its size.

    Attributes
    ----------
    params : dict[str, ndarray]
        The network's parameters by dotted name.
    last_trace : list
        Always empty: a feed-forward host takes no discrete decisions (kept for
        :func:`refmann.gradcheck.check_model`).
    """

    def __init__(self, network, *, loss="sigmoid_ce", batch_axis=0):
        for method in ("forward", "backward"):
            if not callable(getattr(network, method, None)):
                raise TypeError(f"network: expected a layer with forward/backward, got {type(network).__name__}")
        self.network = network
        self.params = dict(network.params)
        self.default_loss = get_loss(loss).name
        self.batch_axis = int(batch_axis)
        self.last_trace: list = []

    #: Hosts that validate their inputs completely in :meth:`_check_inputs` run the network with the
    #: per-op checks off (:func:`refmann._checks.unchecked`: they would scan every array on every call);
    #: a generic network keeps them, so its own layers report bad inputs.
    _validated_inputs = False

    # -- hook for hosts ---------------------------------------------------------------------------------
    def _check_inputs(self, inputs):
        """Inputs as the network takes them (hosts check shapes and cast; the network checks the rest)."""
        return inputs

    def _network_forward(self, x):
        if not self._validated_inputs:
            return self.network.forward(x, params=self.params)
        with _checks.unchecked():
            return self.network.forward(x, params=self.params)

    # -- public API -----------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Training mode for layers that have one (BatchNorm); returns self."""
        if hasattr(self.network, "train"):
            self.network.train(mode)
        return self

    def eval(self):
        """Evaluation mode (``train(False)``); returns self."""
        return self.train(False)

    def _check_params(self):
        missing = sorted(set(self.network.params) - set(self.params))
        if missing:
            raise ValueError(f"params: missing {missing}")
        for key, value in self.params.items():
            _checks.check_finite(value, f"params[{key!r}]")

    def forward(self, inputs):
        """Logits for a batch of inputs (shapes: see the host)."""
        x = self._check_inputs(inputs)
        self._check_params()
        logits, _ = self._network_forward(x)
        return logits

    def _run(self, inputs, targets, mask, loss):
        """Forward, then the targets checked against the logits: ``(x, logits, cache, lossfn, targets, mask)``."""
        x = self._check_inputs(inputs)
        lossfn = get_loss(self.default_loss if loss is None else loss)
        self._check_params()
        logits, cache = self._network_forward(x)
        targets, mask = lossfn.check_targets(targets, mask, logits.shape, logits.dtype)
        return x, logits, cache, lossfn, targets, mask

    def loss(self, inputs, targets, mask=None, *, loss=None):
        """The loss of :meth:`loss_and_grads` without the backward pass (what finite differences evaluate)."""
        x, logits, _, lossfn, targets, mask = self._run(inputs, targets, mask, loss)
        value, _ = lossfn.forward(logits, targets=targets, mask=mask)
        return float(value) / x.shape[self.batch_axis]

    def loss_and_grads(self, inputs, targets, mask=None, *, loss=None, row_grads=False):
        """Loss and the gradient of every parameter by backpropagation through the layer stack.

        Parameters
        ----------
        inputs : ndarray
            As the host takes them.
        targets : ndarray
            Of the logits' shape in [0, 1] (``"sigmoid_ce"``) or int of the logits' shape without the
            last axis (``"softmax_ce"``).
        mask : ndarray broadcastable to the targets' shape, optional
            Entries with mask 0 count for nothing.
        loss : {"sigmoid_ce", "softmax_ce"}, keyword-only, optional
            Default: the model's.
        row_grads : bool, keyword-only
            Keep a table's gradient as a :class:`~refmann.ops.RowGrad` (False: densify it, the
            default, which every optimizer takes).

        Returns
        -------
        loss : float
            Summed over scored entries, averaged over the batch.
        grads : dict[str, ndarray or RowGrad]
            Same keys (and, densified, shapes) as ``params``.
        """
        x, logits, cache, lossfn, targets, mask = self._run(inputs, targets, mask, loss)
        B = x.shape[self.batch_axis]
        value, loss_cache = lossfn.forward(logits, targets=targets, mask=mask)
        (dlogits,) = lossfn.backward(1.0 / B, loss_cache)
        _, grads = self.network.backward(dlogits.astype(logits.dtype, copy=False), cache)
        grads = {key: grads[key] if row_grads else densify(grads[key]) for key in self.params}
        value = float(value) / B
        if not np.isfinite(value):
            raise FloatingPointError(f"loss is {value}: the parameters or inputs produce non-finite values")
        return value, grads


# -- configs -----------------------------------------------------------------------------------------------


def _check_common(config):
    for name in ("input_size", "output_size"):
        _checks.check_positive_int(getattr(config, name), name)
    object.__setattr__(config, "dtype", _checks.check_dtype(config.dtype))
    if isinstance(config.seed, bool) or not isinstance(config.seed, (int, np.integer)) or config.seed < 0:
        raise TypeError(f"seed: expected a non-negative int, got {config.seed!r}")
    if config.loss not in LOSSES:
        raise ValueError(f"loss: expected one of {sorted(LOSSES)}, got {config.loss!r}")
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {config.activation!r}")


@dataclass(frozen=True, kw_only=True)
class MLPClassifierConfig:
    """An MLP on (B, X) inputs."""

    input_size: int  # X
    output_size: int  # Y (classes, or bits for "sigmoid_ce")
    hidden_sizes: tuple = (100,)  # one entry per hidden layer
    activation: str = "relu"  # "gelu", "gelu_tanh", "silu", "relu", "tanh"
    loss: str = "softmax_ce"  # or "sigmoid_ce"
    seed: int = 0
    dtype: Any = np.float64

    def __post_init__(self):
        _check_common(self)
        hidden = (self.hidden_sizes,) if isinstance(self.hidden_sizes, (int, np.integer)) else self.hidden_sizes
        try:
            hidden = tuple(_checks.check_positive_int(h, "hidden_sizes") for h in hidden)
        except TypeError:
            raise TypeError(f"hidden_sizes: expected ints, got {self.hidden_sizes!r}") from None
        object.__setattr__(self, "hidden_sizes", hidden)


@dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """A small pre-norm transformer on time-major sequences."""

    input_size: int  # X (float inputs), or the vocabulary size with tokens=True
    output_size: int  # Y
    model_dim: int = 32  # D
    num_heads: int = 4  # H (divides D)
    num_layers: int = 2  # blocks
    mlp_dim: int | None = None  # default 4·D
    max_len: int = 256  # longest sequence (learned positions)
    tokens: bool = False  # inputs are int tokens (T, B) instead of vectors (T, B, X)
    causal: bool = True  # position t sees positions ≤ t only (a sequence model, like an RNN)
    norm: str = "layernorm"  # or "rmsnorm"
    activation: str = "gelu"
    loss: str = "sigmoid_ce"  # or "softmax_ce"
    seed: int = 0
    dtype: Any = np.float64

    def __post_init__(self):
        _check_common(self)
        for name in ("model_dim", "num_heads", "num_layers", "max_len"):
            _checks.check_positive_int(getattr(self, name), name)
        if self.mlp_dim is not None:
            _checks.check_positive_int(self.mlp_dim, "mlp_dim")
        if self.model_dim % self.num_heads:
            raise ValueError(f"num_heads: expected a divisor of model_dim = {self.model_dim}, got {self.num_heads}")
        _checks.check_bool(self.tokens, "tokens")
        _checks.check_bool(self.causal, "causal")
        if self.norm not in NORMS:
            raise ValueError(f"norm: expected one of {sorted(NORMS)}, got {self.norm!r}")


def _config(cls, kwargs):
    config = kwargs.pop("config", None)
    if config is None:
        return cls(**kwargs)
    if kwargs or not isinstance(config, cls):
        raise TypeError(f"config: expected a {cls.__name__} and no other keywords")
    return config


# -- the hosts ------------------------------------------------------------------------------------------


class MLPClassifier(FeedForwardModel):
    """An MLP host: ``forward(inputs (B, X)) -> logits (B, Y)``; softmax cross-entropy by default.

    Takes the fields of :class:`MLPClassifierConfig` as keywords (or ``config=``). Parameters:
    ``"fc1.weight"``, ``"fc1.bias"``, …, of :class:`refmann.layers.MLP`.
    """

    Config = MLPClassifierConfig
    _validated_inputs = True

    def __init__(self, **kwargs):
        c = self.config = _config(self.Config, kwargs)
        self.input_size, self.output_size, self.dtype, self.seed = c.input_size, c.output_size, c.dtype, c.seed
        net = MLP(
            input_dim=c.input_size,
            hidden_dims=c.hidden_sizes,
            output_dim=c.output_size,
            activation=c.activation,
            seed=c.seed,
            dtype=c.dtype,
        )
        super().__init__(net, loss=c.loss, batch_axis=0)

    def _check_inputs(self, inputs):
        x = _checks.as_float_array(inputs, "inputs", ndim=2)
        _checks.check_shape(x, "inputs", (None, self.input_size))
        if x.shape[0] < 1:
            raise ValueError(f"inputs: expected at least one example, got shape {x.shape}")
        return x.astype(self.dtype, copy=False)


class TransformerNetworkCache(NamedTuple):
    embed: Any  # LinearCache (vectors) or EmbeddingCache (tokens)
    blocks: tuple  # one TransformerBlockCache per block
    ln_f: Any  # norm cache
    head: Any  # LinearCache
    T: int  # sequence length (rows of "position" used)


class TransformerNetwork(LayerBase):
    r"""The transformer host's network: embed, add positions, blocks, a final norm, a linear head.

    Time-major in and out, like the recurrent models: (T, B, X) floats (or (T, B) int tokens) ->
    (T, B, Y) logits; batch-major (B, T, D) inside.

    .. math::
        h^0_t = \mathrm{embed}(x_t) + p_t, \qquad h^l = \mathrm{Block}_l(h^{l-1}), \qquad
        z_t = \mathrm{LN}(h^L_t)\, W + b

    Parameters: ``"embed.*"`` (a :class:`~refmann.layers.Linear` or :class:`~refmann.layers.Embedding`),
    ``"position"`` (max_len, D), ``"block{l}.*"`` (:class:`~refmann.layers.TransformerBlock`),
    ``"ln_f.*"``, ``"head.weight"``, ``"head.bias"``. The gradient of ``"position"`` is dense
    (zero beyond row T).
    """

    def __init__(self, config: TransformerConfig):
        c = self.config = config
        D = c.model_dim
        s = child_seeds(c.seed, c.num_layers + 3)
        embed = (
            Embedding(num_embeddings=c.input_size, embedding_dim=D, seed=s[0], dtype=c.dtype)
            if c.tokens
            else Linear(input_dim=c.input_size, output_dim=D, seed=s[0], dtype=c.dtype)
        )
        blocks = [
            (
                f"block{i}",
                TransformerBlock(
                    model_dim=D,
                    num_heads=c.num_heads,
                    mlp_dim=c.mlp_dim,
                    activation=c.activation,
                    norm=c.norm,
                    seed=s[i + 2],
                    dtype=c.dtype,
                ),
            )
            for i in range(c.num_layers)
        ]
        self._set_children(
            [
                ("embed", embed),
                *blocks,
                ("ln_f", NORMS[c.norm](dim=D, dtype=c.dtype)),
                ("head", Linear(input_dim=D, output_dim=c.output_size, seed=s[1], dtype=c.dtype)),
            ]
        )
        rng = np.random.default_rng(s[-1])
        self.params["position"] = (0.02 * rng.standard_normal((c.max_len, D))).astype(c.dtype)  # GPT-2's init
        self._blocks = [name for name, _ in blocks]
        self._sizes = {"model_dim": D, "num_heads": c.num_heads, "num_layers": c.num_layers}

    def forward(self, x, *, params=None):
        """(T, B, X) or int (T, B) -> (T, B, Y)."""
        p = self._params(params)
        T = x.shape[0]
        if T > self.config.max_len:
            raise ValueError(f"inputs: expected at most max_len = {self.config.max_len} time steps, got {T}")
        ch = self.children
        e, c_embed = ch["embed"].forward(x, params=self._child_params(p, "embed"))  # (T, B, D)
        h = e.transpose(1, 0, 2) + p["position"][:T]  # (B, T, D)
        c_blocks = []
        for name in self._blocks:
            h, cb = ch[name].forward(h, params=self._child_params(p, name), causal=self.config.causal)
            c_blocks.append(cb)
        h, c_ln = ch["ln_f"].forward(h, params=self._child_params(p, "ln_f"))
        z, c_head = ch["head"].forward(h, params=self._child_params(p, "head"))  # (B, T, Y)
        return z.transpose(1, 0, 2), TransformerNetworkCache(c_embed, tuple(c_blocks), c_ln, c_head, T)

    def backward(self, dy, cache):
        """``(dx, grads)``; dx is None for token inputs."""
        ch = self.children
        grads = {}
        dh, g = ch["head"].backward(dy.transpose(1, 0, 2), cache.head)  # (B, T, D)
        grads.update(scope("head", g))
        dh, g = ch["ln_f"].backward(dh, cache.ln_f)
        grads.update(scope("ln_f", g))
        for name, cb in zip(reversed(self._blocks), reversed(cache.blocks)):
            dh, g = ch[name].backward(dh, cb)
            grads.update(scope(name, g))
        dpos = np.zeros_like(self.params["position"], dtype=dh.dtype)
        dpos[: cache.T] = dh.sum(axis=0)  # (T, D)
        grads["position"] = dpos
        dx, g = ch["embed"].backward(dh.transpose(1, 0, 2), cache.embed)
        grads.update(scope("embed", g))
        return dx, {key: grads[key] for key in self.params}


class Transformer(FeedForwardModel):
    """A small causal transformer host: ``forward(inputs (T, B, X)) -> logits (T, B, Y)``, like an RNN.

    Takes the fields of :class:`TransformerConfig` as keywords (or ``config=``); with ``tokens=True``
    the inputs are int tokens (T, B) in ``[0, input_size)``. Sigmoid cross-entropy by default (the
    algorithmic tasks); ``loss="softmax_ce"`` takes int targets (T, B) (next tokens).
    """

    Config = TransformerConfig
    _validated_inputs = True

    def __init__(self, **kwargs):
        c = self.config = _config(self.Config, kwargs)
        self.input_size, self.output_size, self.dtype, self.seed = c.input_size, c.output_size, c.dtype, c.seed
        super().__init__(TransformerNetwork(c), loss=c.loss, batch_axis=1)

    def _check_inputs(self, inputs):
        if self.config.tokens:
            x = _checks.as_index_array(inputs, "inputs", upper=self.input_size)
            if x.ndim != 2:
                raise ValueError(f"inputs: expected int tokens of shape (T, B), got shape {x.shape}")
        else:
            x = _checks.as_float_array(inputs, "inputs", ndim=3)
            _checks.check_shape(x, "inputs", (None, None, self.input_size))
            x = x.astype(self.dtype, copy=False)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"inputs: expected at least one time step and one sequence, got shape {x.shape}")
        return x


for _cls in (MLPClassifier, Transformer):
    _cls.__signature__ = inspect.signature(_cls.Config)  # help() sees the config's fields
del _cls

__all__ = [
    "FeedForwardModel",
    "MLPClassifier",
    "MLPClassifierConfig",
    "Transformer",
    "TransformerConfig",
    "TransformerNetwork",
]
