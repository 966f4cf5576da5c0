"""Feed-forward components with parameters, all alike — the op convention lifted to objects.

Every layer has ``params`` (a dict of arrays with dotted names), ``y, cache = layer.forward(x)`` and
``dx, grads = layer.backward(dy, cache)`` with ``grads`` keyed exactly like ``params`` (a table's
gradient may be a :class:`~refmann.ops.RowGrad`). Constructors are keyword-only and take
``seed=0`` and ``dtype=np.float64``. Hosts compose layers under scoped names
(``"block0.attn.query.weight"``): see :mod:`refmann.layers.base`.
"""

from .activations import GELU, ReLU, SiLU, Tanh
from .attention import MultiHeadAttention
from .base import Layer, LayerBase, Sequential, as_op, densify, scope, unscope
from .embedding import Embedding
from .hma import MemoryTokens, MultiheadAttentionBlock
from .linear import Linear
from .mlp import MLP
from .norms import BatchNorm, LayerNorm, RMSNorm
from .product_keys import ProductKeyMemory
from .sketch import SketchMemory
from .transformer import TransformerBlock

__all__ = [
    "GELU", "MLP", "BatchNorm", "Embedding", "Layer", "LayerBase", "LayerNorm", "Linear", "MemoryTokens",
    "MultiHeadAttention", "MultiheadAttentionBlock", "ProductKeyMemory", "RMSNorm", "ReLU", "Sequential", "SiLU",
    "SketchMemory", "Tanh", "TransformerBlock", "as_op", "densify", "scope", "unscope",
]  # fmt: skip
