"""Differentiable primitives as pure forward/backward pairs.

Every op is a pair ``name_forward(*arrays, **hyper) -> (out, cache)`` and
``name_backward(dout, cache) -> tuple of gradients`` in the order of the positional arrays.
Positional arguments are exactly the arrays that receive gradients; everything else is keyword-only.
"""

from ._registry import OPS, ExampleSizes, OpSpec, register_op

# -- the layers floor (issue 10): attention, norms, embedding, GELU and SiLU ---------------------------
from .activations import (
    GELUCache,
    gelu_backward,
    gelu_forward,
    oneplus_backward,
    oneplus_forward,
    relu_backward,
    relu_forward,
    sigmoid,
    sigmoid_backward,
    sigmoid_forward,
    silu_backward,
    silu_forward,
    softmax,
    softmax_backward,
    softmax_forward,
    softplus,
    softplus_backward,
    softplus_forward,
    tanh_backward,
    tanh_forward,
)
from .addressing import (
    circular_shift_backward,
    circular_shift_forward,
    content_weights_backward,
    content_weights_forward,
    cosine_similarity_backward,
    cosine_similarity_forward,
    interpolate_backward,
    interpolate_forward,
    sharpen_backward,
    sharpen_forward,
)
from .attention import AttentionCache, attention_backward, attention_forward, causal_mask

# -- the Differentiable Neural Computer (Graves et al. 2016): usage, allocation, links, read modes ---------
from .dnc import (
    AllocationCache,
    DirectionalCache,
    DNCReadWeightsCache,
    DNCWriteWeightsCache,
    LinksCache,
    UsageCache,
    dnc_allocation_backward,
    dnc_allocation_forward,
    dnc_allocation_order,
    dnc_directional_backward,
    dnc_directional_forward,
    dnc_links_backward,
    dnc_links_forward,
    dnc_read_weights_backward,
    dnc_read_weights_forward,
    dnc_usage_backward,
    dnc_usage_forward,
    dnc_write_weights_backward,
    dnc_write_weights_forward,
)
from .embedding import EmbeddingCache, embedding_backward, embedding_forward

# -- the embedding bag (issue 13): the product-key value read, the sketch read, the embedding lookup --------
from .embedding_bag import EmbeddingBagCache, embedding_bag_backward, embedding_bag_forward
from .linear import linear_backward, linear_forward, lstm_gates_backward, lstm_step_backward, lstm_step_forward
from .losses import (
    sigmoid_cross_entropy_backward,
    sigmoid_cross_entropy_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from .memory import (
    RowGrad,
    dense_read_backward,
    dense_read_forward,
    dense_write_backward,
    dense_write_forward,
    densify_rows,
    lra_write_backward,
    lra_write_forward,
    scatter_add_backward,
    scatter_add_forward,
    scatter_add_rows_inplace,
    sparse_read_backward,
    sparse_read_forward,
)
from .norms import (
    BatchNormCache,
    LayerNormCache,
    RMSNormCache,
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    rmsnorm_backward,
    rmsnorm_forward,
)

# -- product keys (Lample et al. 2019, issue 13): exact top-k of n² slots from two top-k's of n ----------
from .product_keys import (
    ProductKeyTopKCache,
    product_key_topk,
    product_key_topk_backward,
    product_key_topk_forward,
    separated_product_keys,
)
from .sparse import (
    sparse_content_read_backward,
    sparse_content_read_forward,
    sparse_write_backward,
    sparse_write_forward,
    sparse_write_inplace,
    sparse_write_rows_backward,
)
from .topk import top_k, top_k_backward, top_k_forward
from .write_weights import lra_interpolate_backward, lra_interpolate_forward

#: Every forward/backward pair, by name (what ``refmann gradcheck`` walks): the keys of :data:`OPS`.
OP_NAMES = tuple(OPS)

__all__ = [name for name in dir() if not name.startswith("_")]
