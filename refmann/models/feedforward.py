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
from ..layers import Embedding, LayerBase, Linear, ProductKeyMemory, TransformerBlock
from ..layers.activations import ACTIVATIONS
from ..layers.base import child_seeds, densify, scope
from ..layers.mlp import MLP
from ..layers.product_keys import OUTPUTS, QUERY_NORMS
from ..layers.transformer import NORMS
from ..ops import RowGrad
from .losses import LOSSES, get_loss
from .registry import ModelSpec, register_model


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
        The discrete decisions of the last forward, for :func:`refmann.gradcheck.check_model` (which
        flags a perturbation that changes them): ``network.trace(cache)`` if the network has one
        (the transformer lists each memory block's selected slots), else empty.
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

    #: No external memory (golden files and the trainer's access picture ask).
    has_memory = False

    # -- hook for hosts ---------------------------------------------------------------------------------
    def _check_inputs(self, inputs):
        """Inputs as the network takes them (hosts check shapes and cast; the network checks the rest)."""
        return inputs

    def _network_forward(self, x):
        if not self._validated_inputs:
            out = self.network.forward(x, params=self.params)
        else:
            with _checks.unchecked():
                out = self.network.forward(x, params=self.params)
        trace = getattr(self.network, "trace", None)  # a network with discrete choices (top-k) lists them
        self.last_trace = list(trace(out[1])) if trace is not None else []
        return out

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

    def access_weights(self, inputs):
        """No memory weightings: ``{"read": (0,), "write": (0,)}`` empty arrays (the recurrent models' API)."""
        return {"read": np.zeros(0), "write": np.zeros(0)}

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
    # sketch memories (Panigrahy et al. 2021, refmann's reconstruction) after hidden layers
    sketch_layers: Any = ()  # "all", or the hidden layers (1-based) followed by a SketchMemory
    sketch_tables: int = 4  # T SimHash tables
    sketch_bits: int = 12  # b bits: 2^b rows per table
    sketch_dim: int | None = None  # the read's width (default: the hidden width)
    sketch_combine: str = "concat"  # or "residual" (needs sketch_dim = the hidden width)
    sketch_signs: bool = False
    sketch_gate: bool = False
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
        if isinstance(self.sketch_layers, list):
            object.__setattr__(self, "sketch_layers", tuple(self.sketch_layers))

    def sketch_options(self) -> dict | None:
        """The :class:`~refmann.layers.MLP`'s ``memory`` keywords, or None without sketch layers."""
        if self.sketch_layers == ():
            return None
        options = {"num_tables": self.sketch_tables, "num_bits": self.sketch_bits, "combine": self.sketch_combine}
        options |= {"signs": self.sketch_signs, "gate": self.sketch_gate}
        return options | ({} if self.sketch_dim is None else {"output_dim": self.sketch_dim})


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
    # product-key memories (Lample et al. 2019) in place of the MLP of some blocks
    memory_layers: tuple = ()  # the blocks (0-based) whose MLP is a ProductKeyMemory
    memory_keys: int = 32  # n sub-keys per half: n² slots
    memory_heads: int = 4  # H
    memory_k: int = 8  # slots read per head
    memory_key_dim: int = 32  # dk (even)
    memory_query_norm: str | None = None  # None or "layernorm" (causal: batch norm mixes positions), "batchnorm"
    memory_output: str = "sum"  # or "swilu" (Memory+)
    memory_experts: bool = False  # PEER experts
    share_memory_values: bool = False  # one value table for every memory layer (Memory+)
    # sketch memories (Panigrahy et al. 2021, refmann's reconstruction) read after some blocks
    sketch_layers: tuple = ()  # the blocks (0-based) whose output gains a residual SketchMemory read
    sketch_tables: int = 4  # T SimHash tables
    sketch_bits: int = 12  # b bits: 2^b rows per table
    sketch_signs: bool = False  # count-sketch signs
    sketch_gate: bool = False  # a learned read gate
    tie_embeddings: bool = False  # tokens=True, output_size = input_size: the head is the embedding transposed
    seed: int = 0
    dtype: Any = np.float64

    def __post_init__(self):
        _check_common(self)
        self._check_memory()
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
        _checks.check_bool(self.tie_embeddings, "tie_embeddings")
        if self.tie_embeddings and not (self.tokens and self.output_size == self.input_size):
            raise ValueError(
                "tie_embeddings: expected tokens=True and output_size = input_size (the vocabulary), "
                f"got tokens={self.tokens}, input_size={self.input_size}, output_size={self.output_size}"
            )

    def _check_memory(self):
        layers = self.memory_layers
        if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
            layers = (layers,)
        if not isinstance(layers, (tuple, list)):
            raise TypeError(f"memory_layers: expected a tuple of block indices, got {self.memory_layers!r}")
        layers = tuple(_checks.check_positive_int(i, "memory_layers", minimum=0) for i in layers)
        if any(i >= self.num_layers for i in layers) or len(set(layers)) != len(layers):
            raise ValueError(
                f"memory_layers: expected distinct blocks in [0, num_layers = {self.num_layers}), got {list(layers)}"
            )
        object.__setattr__(self, "memory_layers", tuple(sorted(layers)))
        for name in ("memory_keys", "memory_heads", "memory_k", "memory_key_dim"):
            _checks.check_positive_int(getattr(self, name), name)
        if self.memory_k > self.memory_keys:
            raise ValueError(f"memory_k: expected at most memory_keys = {self.memory_keys}, got {self.memory_k}")
        if self.memory_key_dim % 2:
            raise ValueError(f"memory_key_dim: expected an even int (two halves), got {self.memory_key_dim}")
        if self.memory_query_norm is not None and self.memory_query_norm not in QUERY_NORMS:
            raise ValueError(
                f"memory_query_norm: expected None or one of {sorted(QUERY_NORMS)}, got {self.memory_query_norm!r}"
            )
        if self.memory_output not in OUTPUTS:
            raise ValueError(f"memory_output: expected one of {list(OUTPUTS)}, got {self.memory_output!r}")
        _checks.check_bool(self.memory_experts, "memory_experts")
        _checks.check_bool(self.share_memory_values, "share_memory_values")
        sketch = self.sketch_layers
        if isinstance(sketch, list):
            sketch = tuple(sketch)
        if not isinstance(sketch, tuple):
            raise TypeError(f"sketch_layers: expected a tuple of block indices, got {self.sketch_layers!r}")
        sketch = tuple(_checks.check_positive_int(i, "sketch_layers", minimum=0) for i in sketch)
        if len(set(sketch)) != len(sketch) or any(i >= self.num_layers for i in sketch):
            raise ValueError(
                f"sketch_layers: expected distinct blocks in [0, num_layers = {self.num_layers}), got {list(sketch)}"
            )
        object.__setattr__(self, "sketch_layers", tuple(sorted(sketch)))
        _checks.check_positive_int(self.sketch_tables, "sketch_tables")
        bits = _checks.check_positive_int(self.sketch_bits, "sketch_bits")
        if bits > 24:
            raise ValueError(f"sketch_bits: expected at most 24 (2^b rows per table), got {bits}")
        _checks.check_bool(self.sketch_signs, "sketch_signs")
        _checks.check_bool(self.sketch_gate, "sketch_gate")

    def sketch_options(self) -> dict:
        """The :class:`~refmann.layers.SketchMemory` keywords of every sketch block."""
        return {
            "num_tables": self.sketch_tables,
            "num_bits": self.sketch_bits,
            "signs": self.sketch_signs,
            "gate": self.sketch_gate,
        }

    def memory_options(self) -> dict:
        """The :class:`~refmann.layers.ProductKeyMemory` keywords of every memory block."""
        return {
            "num_keys": self.memory_keys,
            "num_heads": self.memory_heads,
            "k": self.memory_k,
            "key_dim": self.memory_key_dim,
            "query_norm": self.memory_query_norm,
            "output": self.memory_output,
            "experts": self.memory_experts,
            "shared_values": self.share_memory_values,
        }


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
    ``"fc1.weight"``, ``"fc1.bias"``, …, of :class:`refmann.layers.MLP`; with ``sketch_layers`` a
    :class:`~refmann.layers.SketchMemory` follows those hidden layers (``"mem{l}.values"``, row-sparse
    gradients with ``row_grads=True``), "memory at every layer" with ``sketch_layers="all"``.
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
            memory=c.sketch_options(),
            memory_layers=c.sketch_layers or "all",
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


class TiedHeadCache(NamedTuple):
    h: np.ndarray  # (B, T, D) the final features
    weight: np.ndarray  # (Y, D) the embedding read as the head


class TransformerNetworkCache(NamedTuple):
    embed: Any  # LinearCache (vectors) or EmbeddingCache (tokens)
    blocks: tuple  # one TransformerBlockCache per block
    ln_f: Any  # norm cache
    head: Any  # LinearCache, or TiedHeadCache with tied embeddings
    T: int  # sequence length (rows of "position" used)


class TransformerNetwork(LayerBase):
    r"""The transformer host's network: embed, add positions, blocks, a final norm, a linear head.

    Time-major in and out, like the recurrent models: (T, B, X) floats (or (T, B) int tokens) ->
    (T, B, Y) logits; batch-major (B, T, D) inside.

    .. math::
        h^0_t = \mathrm{embed}(x_t) + p_t, \qquad h^l = \mathrm{Block}_l(h^{l-1}), \qquad
        z_t = \mathrm{LN}(h^L_t)\, W + b

    Parameters: ``"embed.*"`` (a :class:`~refmann.layers.Linear` or :class:`~refmann.layers.Embedding`),
    ``"position"`` (max_len, D), ``"block{l}.*"`` (:class:`~refmann.layers.TransformerBlock`; in the
    ``memory_layers`` a product-key memory replaces the MLP: ``"block{l}.memory.*"``), ``"ln_f.*"``,
    ``"head.weight"``, ``"head.bias"``; in the ``sketch_layers`` a sketch memory reads the block's output,
    ``"block{l}.sketch.*"``. The gradient of ``"position"`` is dense (zero beyond row T).

    With ``share_memory_values`` the memory blocks read one table ``"memory_values"`` (n², D); its
    gradient is the sum of theirs (a :class:`~refmann.ops.RowGrad` over the slots any of them read).
    With ``tie_embeddings`` there is no ``"head.weight"``: :math:`z_t = \mathrm{LN}(h^L_t) E^\top + b`
    with E = ``"embed.weight"``, whose gradient is then the lookup's rows plus the head's dense
    :math:`dz^\top h`.
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
                    memory=c.memory_options() if i in c.memory_layers else None,
                    sketch=c.sketch_options() if i in c.sketch_layers else None,
                    seed=s[i + 2],
                    dtype=c.dtype,
                ),
            )
            for i in range(c.num_layers)
        ]
        head = (
            []
            if c.tie_embeddings
            else [("head", Linear(input_dim=D, output_dim=c.output_size, seed=s[1], dtype=c.dtype))]
        )
        self._set_children([("embed", embed), *blocks, ("ln_f", NORMS[c.norm](dim=D, dtype=c.dtype)), *head])
        if c.tie_embeddings:  # the head's weight is the embedding's transpose; its bias starts at 0
            self.params["head.bias"] = np.zeros(c.output_size, c.dtype)
        rng = np.random.default_rng(s[-1])
        self.params["position"] = (0.02 * rng.standard_normal((c.max_len, D))).astype(c.dtype)  # GPT-2's init
        if c.memory_layers and c.share_memory_values:
            n = c.memory_keys
            self.params["memory_values"] = ProductKeyMemory.init_values(n * n, D, seed=s[-1] + 1, dtype=c.dtype)
        self._blocks = [name for name, _ in blocks]
        self._memory_blocks = {f"block{i}" for i in c.memory_layers}
        self._sizes = {"model_dim": D, "num_heads": c.num_heads, "num_layers": c.num_layers}
        if c.memory_layers:
            self._sizes["memory_layers"] = c.memory_layers

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
            pb = self._child_params(p, name) | {key: p["memory_values"] for key in ch[name].external_params}
            h, cb = ch[name].forward(h, params=pb, causal=self.config.causal)
            c_blocks.append(cb)
        h, c_ln = ch["ln_f"].forward(h, params=self._child_params(p, "ln_f"))
        if self.config.tie_embeddings:
            z, c_head = h @ p["embed.weight"].T + p["head.bias"], TiedHeadCache(h, p["embed.weight"])  # (B, T, Y)
        else:
            z, c_head = ch["head"].forward(h, params=self._child_params(p, "head"))  # (B, T, Y)
        return z.transpose(1, 0, 2), TransformerNetworkCache(c_embed, tuple(c_blocks), c_ln, c_head, T)

    def memory_caches(self, cache) -> dict:
        """Block name -> the :class:`~refmann.layers.ProductKeyMemoryCache` of each memory block, in block order
        (what :class:`~refmann.layers.pkm_diagnostics.LayerDiagnostics` reads)."""
        return {name: cb.mlp for name, cb in zip(self._blocks, cache.blocks) if name in self._memory_blocks}

    def trace(self, cache) -> list:
        """The discrete decisions, in block order: each memory block's selected slots ``(slots (B, T·H, k),)``
        (its top k), then each sketch block's rows ``(rows (B·T, T_tables),)`` (its hash buckets)."""
        found = [(c.search.slots,) for c in self.memory_caches(cache).values()]
        return found + [(cb.sketch.bag.indices,) for cb in cache.blocks if cb.sketch is not None]

    def backward(self, dy, cache):
        """``(dx, grads)``; dx is None for token inputs."""
        ch = self.children
        grads = {}
        dz = dy.transpose(1, 0, 2)  # (B, T, Y)
        dtied = None
        if self.config.tie_embeddings:
            dh = dz @ cache.head.weight  # (B, T, D)
            dtied = np.einsum("bty,btd->yd", dz, cache.head.h)  # (Y, D) the head's share of dE
            grads["head.bias"] = dz.sum(axis=(0, 1))
        else:
            dh, g = ch["head"].backward(dz, cache.head)  # (B, T, D)
            grads.update(scope("head", g))
        dh, g = ch["ln_f"].backward(dh, cache.ln_f)
        grads.update(scope("ln_f", g))
        shared = []
        for name, cb in zip(reversed(self._blocks), reversed(cache.blocks)):
            dh, g = ch[name].backward(dh, cb)
            if "values" in ch[name].external_params:
                shared.append(g.pop("values"))
            grads.update(scope(name, g))
        if shared:  # one table read by several layers: the sum of their row gradients (duplicates add)
            indices, rows = np.concatenate([r.indices for r in shared]), np.concatenate([r.rows for r in shared])
            grads["memory_values"] = RowGrad(indices, rows, shared[0].num_rows)
        dpos = np.zeros_like(self.params["position"], dtype=dh.dtype)
        dpos[: cache.T] = dh.sum(axis=0)  # (T, D)
        grads["position"] = dpos
        dx, g = ch["embed"].backward(dh.transpose(1, 0, 2), cache.embed)
        grads.update(scope("embed", g))
        if dtied is not None:
            grads["embed.weight"] = densify(grads["embed.weight"]) + dtied
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


register_model(
    ModelSpec(
        "transformer",
        Transformer,
        label="Transformer",
        color="tab:purple",
        # golden files: two blocks, a product-key memory in the second (4² slots, 2 heads, k = 2)
        golden=dict(
            model_dim=8,
            num_heads=2,
            num_layers=2,
            mlp_dim=12,
            memory_layers=[1],
            memory_keys=4,
            memory_heads=2,
            memory_k=2,
            memory_key_dim=4,
        ),  # fmt: skip
    )
)

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
