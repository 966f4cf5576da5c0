r"""External oracle (optional) for the layers floor: the new ops, every layer and the feed-forward hosts
against PyTorch in float64, forward and backward, to 1e-10.

The torch side uses PyTorch's own implementations wherever they exist — ``scaled_dot_product_attention``,
``layer_norm``, ``rms_norm``, ``batch_norm`` (with its in-place running statistics), ``gelu``,
``silu``, ``embedding``, ``multi_head_attention_forward`` and ``nn.TransformerEncoderLayer`` — so the
check does not share a formula with refmann. HMA's head (:mod:`refmann.layers.hma`) has no torch counterpart: its
multihead attention block and memory tokens are written here from the equations in their docstrings, with the
softmax of ``c·QKᵀ`` spelled out (``nn.MultiheadAttention`` fixes c = 1/√(De/H) and would hide a scale
mix-up between the released code's 1/√Dkv and the usual one). Parameters are leaf tensors keyed like refmann's
``params``; the upstream gradient is random (standard normal, seeded). The criterion is
``tests/test_torch_crosscheck.py``'s: ``max|a − b| / max(1, max|a|, max|b|) ≤ 1e-10`` for every output
and gradient (a RowGrad densified first).

:data:`OP_TWINS` has one twin per op added by the layers floor, with the signature of the op
(arrays positional, refmann's keyword hyperparameters as numpy values), so it can be merged into
``test_torch_crosscheck.TWINS``.

Skipped when torch is absent (``pip install torch==2.13.0``).
"""

import inspect
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann import layers, ops
from refmann.gradcheck import op_example
from refmann.models.feedforward import MLPClassifier, Transformer

torch = pytest.importorskip("torch")
F = torch.nn.functional
torch.set_num_threads(1)

TOL = 1e-10
F64 = torch.float64

#: The ops added by the layers floor (issue 10).
NEW_OPS = ("attention", "layernorm", "rmsnorm", "batchnorm", "gelu", "silu", "embedding")


def scaled_error(a, b) -> float:
    """max|a − b| / max(1, max|a|, max|b|) (0 for empty arrays)."""
    a = np.asarray(ops.densify_rows(a) if isinstance(a, ops.RowGrad) else a, np.float64)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(a)), np.max(np.abs(b))))


def _t(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=F64, requires_grad=grad)


# ------------------------------------------------------------------------------------------------
# The new ops in torch (the signature of the refmann op: arrays positional, hyperparameters keyword)
# ------------------------------------------------------------------------------------------------


def attention_t(q, k, v, *, mask=None, causal=False, scale=None):
    """torch's scaled_dot_product_attention; bool attn_mask True = attend (as refmann's mask)."""
    lead = torch.broadcast_shapes(q.shape[:2], k.shape[:2], v.shape[:2])
    q, k, v = (t.expand(*lead, *t.shape[2:]) for t in (q, k, v))
    Tq, Tk = q.shape[2], k.shape[2]
    keep = None if mask is None else torch.as_tensor(np.broadcast_to(mask, (*lead, Tq, Tk)).copy())
    if causal:
        tri = torch.ones((Tq, Tk), dtype=torch.bool).tril()
        keep = tri if keep is None else keep & tri
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=scale)


def batchnorm_t(x, gamma, beta, *, training=True, running_mean=None, running_var=None, momentum=0.1, eps=1e-5):
    """torch's batch_norm on (n, D); returns y only (the running statistics: see the test below)."""
    D = x.shape[-1]
    rm = torch.zeros(D, dtype=F64) if running_mean is None else _t(running_mean)
    rv = torch.ones(D, dtype=F64) if running_var is None else _t(running_var)
    y = F.batch_norm(x.reshape(-1, D), rm, rv, gamma, beta, training=training, momentum=momentum, eps=eps)
    return y.reshape(x.shape)


OP_TWINS = {
    "attention": attention_t,
    "layernorm": lambda x, gamma, beta, *, eps=1e-5: F.layer_norm(x, x.shape[-1:], gamma, beta, eps),
    "rmsnorm": lambda x, gamma, *, eps=1e-6: F.rms_norm(x, x.shape[-1:], gamma, eps),
    "batchnorm": batchnorm_t,
    "gelu": lambda x, *, approximate="none": F.gelu(x, approximate=approximate),
    "silu": F.silu,
    "embedding": lambda table, *, indices: F.embedding(torch.as_tensor(np.asarray(indices)), table),
}


def crosscheck_op(name, arrays, hyper, *, seed=0) -> dict:
    """Errors of op ``name``'s output and gradients against its torch twin: ``{"out": e, "d<arg>": e, ...}``."""
    forward, backward = getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward")
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    out, cache = forward(*[a.copy() for a in arrays], **hyper)
    dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    grads = backward(dout, cache)
    xs = [_t(a, grad=True) for a in arrays]
    t_out = OP_TWINS[name](*xs, **hyper)
    t_grads = torch.autograd.grad((t_out * _t(dout)).sum(), xs, allow_unused=True)
    names = list(inspect.signature(forward).parameters)[: len(arrays)]
    errors = {"out": scaled_error(out, t_out)}
    for argname, g, tg, x in zip(names, grads, t_grads, arrays):
        errors[f"d{argname}"] = scaled_error(g, torch.zeros(x.shape, dtype=F64) if tg is None else tg)
    return errors


def test_every_new_op_is_registered_and_has_a_twin():
    assert set(NEW_OPS) <= set(ops.OP_NAMES)
    assert set(OP_TWINS) == set(NEW_OPS)


@st.composite
def op_sizes(draw):
    """Sizes for :func:`refmann.gradcheck.op_example`, as in test_torch_crosscheck."""
    N = draw(st.integers(2, 7))
    return dict(
        B=draw(st.integers(1, 3)),
        H=draw(st.integers(1, min(3, N))),
        N=N,
        W=draw(st.integers(1, 4)),
        K=draw(st.integers(1, N)),
        S=draw(st.sampled_from([1, 3, 5])),
        X=draw(st.integers(1, 4)),
        C=draw(st.integers(1, 4)),
    )


@pytest.mark.parametrize("name", NEW_OPS)
@given(sizes=op_sizes(), seed=st.integers(0, 2**32 - 1))
def test_new_op_outputs_and_gradients_equal_torch(name, sizes, seed):
    arrays, hyper = op_example(name, np.random.default_rng(seed), **sizes)
    errors = crosscheck_op(name, arrays, hyper, seed=seed)
    assert max(errors.values()) <= TOL, errors


@given(
    seed=st.integers(0, 2**32 - 1),
    Tq=st.integers(1, 5),
    Tk=st.integers(1, 5),
    shared=st.booleans(),
    scale=st.one_of(st.none(), st.floats(0.1, 2.0)),
)
def test_cross_attention_with_masks_broadcast_keys_and_a_scale_equals_torch(seed, Tq, Tk, shared, scale):
    rng = np.random.default_rng(seed)
    B, H, D, Dv = 2, 3, 4, 2
    kv_lead = (1, 1) if shared else (B, H)
    mask = rng.random((B, 1, Tq, Tk)) > 0.5
    mask[..., rng.integers(Tk)] = True
    arrays = (
        rng.standard_normal((B, H, Tq, D)),
        rng.standard_normal((*kv_lead, Tk, D)),
        rng.standard_normal((*kv_lead, Tk, Dv)),
    )
    errors = crosscheck_op("attention", arrays, {"mask": mask, "scale": scale}, seed=seed)
    assert max(errors.values()) <= TOL, errors


@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 4), D=st.integers(1, 4), momentum=st.floats(0.0, 1.0))
def test_batchnorm_in_both_modes_and_its_running_statistics_equal_torch(seed, B, D, momentum):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, 3, D))
    gamma, beta = rng.uniform(0.5, 1.5, D), rng.standard_normal(D)
    rm, rv = rng.standard_normal(D), rng.uniform(0.5, 2.0, D)
    for training in (True, False):
        hyper = dict(training=training, running_mean=rm, running_var=rv, momentum=momentum)
        errors = crosscheck_op("batchnorm", (x, gamma, beta), hyper, seed=seed)
        assert max(errors.values()) <= TOL, (training, errors)
    _, cache = ops.batchnorm_forward(x, gamma, beta, running_mean=rm, running_var=rv, momentum=momentum)
    rm_t, rv_t = _t(rm), _t(rv)
    F.batch_norm(_t(x).reshape(-1, D), rm_t, rv_t, _t(gamma), _t(beta), training=True, momentum=momentum)
    assert scaled_error(cache.running_mean, rm_t) <= TOL
    assert scaled_error(cache.running_var, rv_t) <= TOL  # torch updates with the unbiased variance too


# ------------------------------------------------------------------------------------------------
# The layers: refmann's params as torch leaf tensors, the layer rebuilt from torch's functionals
# ------------------------------------------------------------------------------------------------


def mha_t(p, x, *, num_heads, mask=None, causal=False, prefix=""):
    """torch's multi_head_attention_forward (nn.MultiheadAttention's body) on refmann's weights, (B, T, D) layout."""
    w = {n: p[f"{prefix}{n}.weight"] for n in ("query", "key", "value", "out")}
    b = {n: p[f"{prefix}{n}.bias"] for n in ("query", "key", "value", "out")}
    in_w = torch.cat([w["query"].T, w["key"].T, w["value"].T])  # refmann stores (in, out), torch (out, in)
    in_b = torch.cat([b["query"], b["key"], b["value"]])
    B, T, D = x.shape
    blocked = None  # torch's bool attn_mask: True = blocked
    if causal:
        blocked = torch.ones((T, T), dtype=torch.bool).triu(1)
    if mask is not None:
        m = ~torch.as_tensor(np.broadcast_to(mask, (B, num_heads, T, T)).copy()).reshape(B * num_heads, T, T)
        blocked = m if blocked is None else m | blocked
    xt = x.transpose(0, 1)  # (T, B, D)
    y, _ = F.multi_head_attention_forward(
        xt,
        xt,
        xt,
        D,
        num_heads,
        in_w,
        in_b,
        None,
        None,
        False,
        0.0,
        w["out"].T,
        b["out"],
        training=False,
        need_weights=False,
        attn_mask=blocked,
    )
    return y.transpose(0, 1)


def mlp_t(p, x, *, num_linear, activation, prefix=""):
    act = {
        "gelu": F.gelu,
        "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
        "silu": F.silu,
        "relu": F.relu,
        "tanh": torch.tanh,
    }[activation]
    for i in range(1, num_linear + 1):
        x = x @ p[f"{prefix}fc{i}.weight"] + p[f"{prefix}fc{i}.bias"]
        if i < num_linear:
            x = act(x)
    return x


def block_t(p, x, *, num_heads, activation="gelu", norm="layernorm", causal=False, mask=None, prefix=""):
    def nrm(name, z):
        if norm == "layernorm":
            return F.layer_norm(z, z.shape[-1:], p[f"{prefix}{name}.weight"], p[f"{prefix}{name}.bias"], 1e-5)
        return F.rms_norm(z, z.shape[-1:], p[f"{prefix}{name}.weight"], 1e-6)

    h = x + mha_t(p, nrm("ln1", x), num_heads=num_heads, mask=mask, causal=causal, prefix=prefix + "attn.")
    return h + mlp_t(p, nrm("ln2", h), num_linear=2, activation=activation, prefix=prefix + "mlp.")


def crosscheck_layer(layer, x, torch_fn, *, seed=0, **options) -> dict:
    """Errors of the layer's output, dx and every parameter gradient against ``torch_fn(params_t, x_t)``."""
    rng = np.random.default_rng(seed)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in layer.params.items()}  # off γ = 1, β = 0
    y, cache = layer.forward(x, params=params, **options)
    dy = rng.standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache)
    p_t = {k: _t(v, grad=True) for k, v in params.items()}
    integer = np.issubdtype(np.asarray(x).dtype, np.integer)
    x_t = torch.as_tensor(x) if integer else _t(x, grad=True)
    y_t = torch_fn(p_t, x_t)
    leaves = list(p_t.values()) + ([] if integer else [x_t])
    t_grads = torch.autograd.grad((y_t * _t(dy)).sum(), leaves, allow_unused=True)
    errors = {"out": scaled_error(y, y_t)}
    for key, tg in zip(p_t, t_grads):
        errors[key] = scaled_error(grads[key], torch.zeros_like(p_t[key]) if tg is None else tg)
    if not integer:
        errors["dx"] = scaled_error(dx, t_grads[-1])
    return errors


LAYER_CASES = {
    "Linear": (
        lambda: layers.Linear(input_dim=4, output_dim=3),
        (2, 5, 4),
        {},
        lambda p, x: x @ p["weight"] + p["bias"],
    ),
    "Embedding": (
        lambda: layers.Embedding(num_embeddings=5, embedding_dim=3),
        "tokens",
        {},
        lambda p, x: F.embedding(x, p["weight"]),
    ),
    "LayerNorm": (
        lambda: layers.LayerNorm(dim=4),
        (2, 5, 4),
        {},
        lambda p, x: F.layer_norm(x, (4,), p["weight"], p["bias"], 1e-5),
    ),
    "RMSNorm": (lambda: layers.RMSNorm(dim=4), (2, 5, 4), {}, lambda p, x: F.rms_norm(x, (4,), p["weight"], 1e-6)),
    "BatchNorm": (
        lambda: layers.BatchNorm(dim=4),
        (7, 4),
        {},
        lambda p, x: F.batch_norm(x, None, None, p["weight"], p["bias"], training=True),
    ),
    "BatchNorm-eval": (
        lambda: layers.BatchNorm(dim=4).eval(),
        (7, 4),
        {},
        lambda p, x: F.batch_norm(
            x, torch.zeros(4, dtype=F64), torch.ones(4, dtype=F64), p["weight"], p["bias"], training=False
        ),
    ),
    "GELU": (lambda: layers.GELU(), (3, 4), {}, lambda p, x: F.gelu(x)),
    "GELU-tanh": (lambda: layers.GELU(approximate="tanh"), (3, 4), {}, lambda p, x: F.gelu(x, approximate="tanh")),
    "SiLU": (lambda: layers.SiLU(), (3, 4), {}, lambda p, x: F.silu(x)),
    "ReLU": (lambda: layers.ReLU(), (3, 4), {}, lambda p, x: F.relu(x)),
    "Tanh": (lambda: layers.Tanh(), (3, 4), {}, lambda p, x: torch.tanh(x)),
    "MultiHeadAttention": (
        lambda: layers.MultiHeadAttention(model_dim=6, num_heads=3),
        (2, 4, 6),
        {},
        lambda p, x: mha_t(p, x, num_heads=3),
    ),
    "MultiHeadAttention-causal": (
        lambda: layers.MultiHeadAttention(model_dim=6, num_heads=2),
        (2, 4, 6),
        {"causal": True},
        lambda p, x: mha_t(p, x, num_heads=2, causal=True),
    ),
    "MultiHeadAttention-padding": (
        lambda: layers.MultiHeadAttention(model_dim=4, num_heads=2),
        (2, 4, 4),
        {"mask": np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)[:, None, None, :]},
        lambda p, x: mha_t(p, x, num_heads=2, mask=np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)[:, None, None, :]),
    ),
    "MLP": (
        lambda: layers.MLP(input_dim=4, hidden_dims=(5, 3), output_dim=2, activation="silu"),
        (3, 4),
        {},
        lambda p, x: mlp_t(p, x, num_linear=3, activation="silu"),
    ),
    "TransformerBlock": (
        lambda: layers.TransformerBlock(model_dim=6, num_heads=2, mlp_dim=8),
        (2, 4, 6),
        {"causal": True},
        lambda p, x: block_t(p, x, num_heads=2, causal=True),
    ),
    "ProductKeyMemory": (
        lambda: layers.ProductKeyMemory(input_dim=5, output_dim=3, num_keys=4, num_heads=2, k=3, key_dim=4),
        (6, 5),
        {},
        lambda p, x: pkm_t(p, x, num_heads=2, k=3),
    ),
    "ProductKeyMemory-layernorm": (
        lambda: layers.ProductKeyMemory(
            input_dim=5, output_dim=3, num_keys=4, num_heads=2, k=3, key_dim=4, query_norm="layernorm"
        ),
        (6, 5),
        {},
        lambda p, x: pkm_t(p, x, num_heads=2, k=3, norm="layernorm"),
    ),
    "ProductKeyMemory-swilu": (
        lambda: layers.ProductKeyMemory(
            input_dim=5, output_dim=3, num_keys=4, num_heads=2, k=3, key_dim=4, output="swilu"
        ),
        (6, 5),
        {},
        lambda p, x: pkm_t(p, x, num_heads=2, k=3, output="swilu"),
    ),
    "ProductKeyMemory-peer": (
        lambda: layers.ProductKeyMemory(
            input_dim=5, output_dim=3, num_keys=4, num_heads=2, k=3, key_dim=4, experts=True
        ),
        (6, 5),
        {},
        lambda p, x: pkm_t(p, x, num_heads=2, k=3, experts=True),
    ),
    "ProductKeyMemory-swilu-peer-batchnorm": (
        lambda: layers.ProductKeyMemory(
            input_dim=5,
            output_dim=3,
            num_keys=4,
            num_heads=2,
            k=2,
            key_dim=4,
            query_norm="batchnorm",
            output="swilu",
            experts=True,
        ),
        (6, 5),
        {},
        lambda p, x: pkm_t(p, x, num_heads=2, k=2, norm="batchnorm", output="swilu", experts=True),
    ),
    "SketchMemory": (
        lambda: layers.SketchMemory(**SKETCH),
        (6, 5),
        {},
        lambda p, x: sketch_t(p, x, SKETCH),
    ),
    "SketchMemory-concat-signs-gate": (
        lambda: layers.SketchMemory(**SKETCH_GATED),
        (2, 3, 5),
        {},
        lambda p, x: sketch_t(p, x, SKETCH_GATED),
    ),
    "TransformerBlock-rmsnorm-silu": (
        lambda: layers.TransformerBlock(model_dim=4, num_heads=2, mlp_dim=6, norm="rmsnorm", activation="silu"),
        (2, 3, 4),
        {},
        lambda p, x: block_t(p, x, num_heads=2, norm="rmsnorm", activation="silu"),
    ),
    "MemoryTokens": (lambda: hma_layer(), (4, 2), {}, lambda p, x: memory_tokens_t(p, x, {})),
    "MemoryTokens-per_sample": (
        lambda: hma_layer(),
        (4, 2),
        {"mode": "per_sample"},
        lambda p, x: memory_tokens_t(p, x, {}, mode="per_sample"),
    ),
    "MemoryTokens-logits_from_label": (
        lambda: hma_layer(logits_from="label"),
        (4, 2),
        {},
        lambda p, x: memory_tokens_t(p, x, {"logits_from": "label"}),
    ),
    "MemoryTokens-logits_from_feature-head_dim-per_sample": (
        lambda: hma_layer(logits_from="feature", scale="head_dim"),
        (4, 2),
        {"mode": "per_sample"},
        lambda p, x: memory_tokens_t(p, x, {"logits_from": "feature", "scale": "head_dim"}, mode="per_sample"),
    ),
    "MemoryTokens-no_queue": (
        lambda: hma_layer(use_queue=False),
        (4, 2),
        {},
        lambda p, x: memory_tokens_t(p, x, {"use_queue": False}),
    ),
    "MemoryTokens-no_tokens": (
        lambda: hma_layer(use_tokens=False),
        (4, 2),
        {},
        lambda p, x: memory_tokens_t(p, x, {"use_tokens": False}),
    ),
    "MemoryTokens-no_queue-no_tokens-per_sample": (
        lambda: hma_layer(use_queue=False, use_tokens=False),
        (4, 2),
        {"mode": "per_sample"},
        lambda p, x: memory_tokens_t(p, x, {"use_queue": False, "use_tokens": False}, mode="per_sample"),
    ),
}


SKETCH = dict(input_dim=5, output_dim=5, num_tables=3, num_bits=2)
SKETCH_GATED = dict(input_dim=5, output_dim=3, num_tables=2, num_bits=3, combine="concat", signs=True, gate=True)


def sketch_t(p, x, kwargs):
    """The sketch memory in torch: SimHash buckets (the layer's own hyperplanes and signs), a signed mean of
    the T rows, the gate, the combine."""
    planes = torch.from_numpy(layers.SketchMemory(**kwargs).buffers["planes"])  # the case's hyperplanes
    T, b = planes.shape[0], kwargs["num_bits"]
    x2 = x.reshape(-1, x.shape[-1])
    bits = (torch.einsum("bx,txk->btk", x2, planes) > 0).long()  # (B, T, b [+ 1 sign bit])
    rows = (bits[..., :b] * (2 ** torch.arange(b))).sum(-1) + torch.arange(T) * 2**b  # (B, T)
    signs = 2.0 * bits[..., b] - 1.0 if kwargs.get("signs") else torch.ones(rows.shape, dtype=x.dtype)
    y = (signs[..., None] * p["values"][rows]).sum(1) / T
    if kwargs.get("gate"):
        y = torch.sigmoid(x2 @ p["gate.weight"] + p["gate.bias"])[:, None] * y
    combine = kwargs.get("combine", "residual")
    out = x2 + y if combine == "residual" else torch.cat([x2, y], -1) if combine == "concat" else y
    return out.reshape(*x.shape[:-1], out.shape[-1])


def pkm_t(p, x, *, num_heads, k, norm=None, output="sum", experts=False):
    """The product-key memory in torch (XLM, Memory+'s swilu, PEER): brute-force top-k over all n² sums."""
    q = x @ p["query.weight"] + p["query.bias"]
    if norm == "layernorm":
        q = F.layer_norm(q, (q.shape[-1],), p["query_norm.weight"], p["query_norm.bias"], 1e-5)
    if norm == "batchnorm":
        q = F.batch_norm(q, None, None, p["query_norm.weight"], p["query_norm.bias"], training=True)
    B = q.shape[0]
    n, half = p["keys"].shape[2], p["keys"].shape[3]
    q = q.reshape(B, num_heads, 2 * half)
    s1 = torch.einsum("bhd,hnd->bhn", q[..., :half], p["keys"][:, 0])
    s2 = torch.einsum("bhd,hnd->bhn", q[..., half:], p["keys"][:, 1])
    sums = (s1[..., :, None] + s2[..., None, :]).reshape(B, num_heads, n * n)
    scores, slots = torch.topk(sums, k, dim=-1)
    w = torch.softmax(scores, dim=-1)
    if experts:  # PEER: each slot an expert, gelu(u·x) v
        w = w * F.gelu(torch.einsum("bhkx,bx->bhk", p["expert_in"][slots], x))
    y = torch.einsum("bhk,bhkd->bd", w, p["values"][slots])
    if output == "swilu":  # Memory+: W_o (y ⊙ silu(W_s x))
        y = (y * F.silu(x @ p["gate.weight"] + p["gate.bias"])) @ p["out.weight"] + p["out.bias"]
    return y


# ------------------------------------------------------------------------------------------------
# HMA's head (Qiu et al. 2023): the multihead attention block and the memory tokens, from their equations
# ------------------------------------------------------------------------------------------------


def mab_t(p, x, y, *, num_heads, scale, mask=None, eps=1e-12, prefix=""):
    """MAB(X, Y) as ``MultiheadAttentionBlock``'s docstring writes it, for every set s at once:

    Q = LN_q(X) W_q + b_q, K = LN_kv(Y) W_k + b_k, V = LN_kv(Y) W_v + b_v; per head h,
    H = [softmax(c Q_h K_hᵀ) V_h]_h + X; out = H + FF(LN_ff(H)), FF = fc2 ∘ GELU ∘ fc1;
    c = 1/√Dkv ("kv_width") or 1/√(De/H) ("head_dim"). ``y`` a tuple: its parts joined on the token axis
    (a part with a leading 1 repeated for every set). ``mask``: False = weight 0.
    """
    S, Tq, De = x.shape
    if isinstance(y, tuple):
        y = torch.cat([part.expand(S, -1, -1) for part in y], dim=1)  # (S, Tk, Dkv)
    c = 1.0 / math.sqrt(y.shape[-1] if scale == "kv_width" else De // num_heads)

    def ln(name, z):
        return F.layer_norm(z, z.shape[-1:], p[f"{prefix}{name}.weight"], p[f"{prefix}{name}.bias"], eps)

    def proj(name, z):  # (S, T, ·) -> (S, H, T, De/H): head h owns columns [h De/H, (h+1) De/H)
        z = z @ p[f"{prefix}{name}.weight"] + p[f"{prefix}{name}.bias"]
        return z.reshape(S, z.shape[1], num_heads, -1).transpose(1, 2)

    yn = ln("ln_kv", y)
    q, k, v = proj("query", ln("ln_q", x)), proj("key", yn), proj("value", yn)
    scores = c * q @ k.transpose(-1, -2)  # (S, H, Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~torch.as_tensor(np.broadcast_to(mask, scores.shape).copy()), -math.inf)
    h = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(S, Tq, De) + x  # the identity residual
    return h + mlp_t(p, ln("ln_ff", h), num_linear=2, activation="gelu", prefix=prefix + "ff.")


HMA = dict(feature_dim=2, num_classes=3, label_dim=2, tokens_per_class=2, queue_size=5, num_heads=2)


def hma_layer(**options):
    """``MemoryTokens(**HMA, **options)`` with two fixed batches enqueued (3 then 4 rows: the ring of 5 wraps)."""
    layer = layers.MemoryTokens(**(HMA | options))
    rng = np.random.default_rng(7)
    layer.enqueue(rng.standard_normal((3, HMA["feature_dim"])), np.array([2, 0, 2]))
    layer.enqueue(rng.standard_normal((4, HMA["feature_dim"])), np.array([1, 1, 0, 2]))
    return layer


def memory_tokens_t(p, f, options, *, mode="transductive"):
    """HMA's head as ``MemoryTokens``' docstring writes it: c⁰_i = [f_i ; E_C]; c¹_i = MAB₁(c⁰_i, [c⁰_i ; R]);
    c² = MAB₂(c¹, [c¹ ; Ĝ]) over the batch as one set (transductive) or per sample, Ĝ_j = [G_j ; E_{j // m_s}];
    logits = c²[part] W_o + b_o. R is the queue of a layer built as the case's (a constant: no gradient)."""
    kw = HMA | options
    C, d, m, H = kw["num_classes"], kw["feature_dim"], kw["tokens_per_class"], kw["num_heads"]
    scale = kw.get("scale", "kv_width")
    B, E = f.shape[0], p["labels"]
    c0 = torch.cat([f, E[C].expand(B, -1)], dim=1)[:, None]  # (B, 1, D)
    y1 = c0
    if kw.get("use_queue", True):
        queue = torch.from_numpy(hma_layer(**options).buffers["queue"])  # (S, D)
        y1 = torch.cat([c0, queue.expand(B, -1, -1)], dim=1)  # (B, 1 + S, D)
    c1 = mab_t(p, c0, y1, num_heads=H, scale=scale, prefix="stage1.")  # (B, 1, D)
    x2 = c1.reshape(1, B, -1) if mode == "transductive" else c1  # one set of B, or B sets of 1
    y2 = x2
    if kw.get("use_tokens", True):
        tokens = torch.cat([p["tokens"], E[torch.arange(C).repeat_interleave(m)]], dim=1)  # (C·m_s, D)
        y2 = torch.cat([x2, tokens.expand(x2.shape[0], -1, -1)], dim=1)
    c2 = mab_t(p, x2, y2, num_heads=H, scale=scale, prefix="stage2.").reshape(B, -1)  # (B, D)
    part = {"all": slice(None), "label": slice(d, None), "feature": slice(0, d)}[kw.get("logits_from", "all")]
    return c2[:, part] @ p["head.weight"] + p["head.bias"]


def crosscheck_pair_layer(layer, x, y, torch_fn, *, seed=0, **options) -> dict:
    """:func:`crosscheck_layer` for a layer of two inputs (``forward(x, y)``, ``backward -> (dx, dy, grads)``);
    ``y`` an array or a tuple of parts, each differentiated; ``torch_fn(params_t, x_t, y_t)``."""
    rng = np.random.default_rng(seed)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in layer.params.items()}  # off γ = 1, β = 0
    out, cache = layer.forward(x, y, params=params, **options)
    dout = rng.standard_normal(out.shape)
    dx, dy, grads = layer.backward(dout, cache)
    pair = isinstance(y, tuple)
    ys, dys = (y, dy) if pair else ((y,), (dy,))
    p_t = {k: _t(v, grad=True) for k, v in params.items()}
    x_t, ys_t = _t(x, grad=True), tuple(_t(part, grad=True) for part in ys)
    out_t = torch_fn(p_t, x_t, ys_t if pair else ys_t[0])
    t_grads = torch.autograd.grad((out_t * _t(dout)).sum(), [*p_t.values(), x_t, *ys_t], allow_unused=True)
    t_grads = [torch.zeros_like(leaf) if g is None else g for leaf, g in zip([*p_t.values(), x_t, *ys_t], t_grads)]
    errors = {"out": scaled_error(out, out_t), "dx": scaled_error(dx, t_grads[len(p_t)])}
    errors.update({key: scaled_error(grads[key], g) for key, g in zip(p_t, t_grads)})
    errors.update({f"dy[{j}]": scaled_error(a, g) for j, (a, g) in enumerate(zip(dys, t_grads[len(p_t) + 1 :]))})
    return errors


#: Layers of two inputs: name -> (make, x shape, y shape or tuple of part shapes, forward options, torch_fn(p, x, y)).
#: Dq = 6, Dkv = 5, H = 2: the two scales (1/√5, 1/√3) differ.
PAIR_CASES = {
    "MultiheadAttentionBlock": (
        lambda: layers.MultiheadAttentionBlock(query_dim=6, kv_dim=5, num_heads=2),
        (2, 3, 6),
        (2, 4, 5),
        {},
        lambda p, x, y: mab_t(p, x, y, num_heads=2, scale="kv_width"),
    ),
    "MultiheadAttentionBlock-head_dim": (
        lambda: layers.MultiheadAttentionBlock(query_dim=6, kv_dim=5, num_heads=2, scale="head_dim"),
        (2, 3, 6),
        (2, 4, 5),
        {},
        lambda p, x, y: mab_t(p, x, y, num_heads=2, scale="head_dim"),
    ),
    "MultiheadAttentionBlock-shared_part": (  # y = (own rows (S, ·), rows shared by every set (1, ·)), HMA's stage 1
        lambda: layers.MultiheadAttentionBlock(query_dim=6, kv_dim=5, num_heads=3),
        (3, 1, 6),
        ((3, 1, 5), (1, 4, 5)),
        {},
        lambda p, x, y: mab_t(p, x, y, num_heads=3, scale="kv_width"),
    ),
    "MultiheadAttentionBlock-head_dim-mask": (
        lambda: layers.MultiheadAttentionBlock(query_dim=6, kv_dim=5, num_heads=2, scale="head_dim"),
        (2, 3, 6),
        (2, 4, 5),
        {"mask": np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)[:, None, None, :]},
        lambda p, x, y: mab_t(
            p, x, y, num_heads=2, scale="head_dim", mask=np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)[:, None, None, :]
        ),
    ),
}


def test_every_layer_class_has_a_torch_case():
    """One-input layers in LAYER_CASES; layers of two inputs (MultiheadAttentionBlock) in PAIR_CASES."""
    classes = {n for n in layers.__all__ if isinstance(getattr(layers, n), type)} - {"Layer", "LayerBase", "Sequential"}
    assert classes <= {case.split("-")[0] for case in (*LAYER_CASES, *PAIR_CASES)}


@pytest.mark.parametrize("case", sorted(PAIR_CASES))
@given(seed=st.integers(0, 2**32 - 1))
def test_two_input_layer_output_and_gradients_equal_torch(case, seed):
    """x, every part of y and every parameter against torch autograd (both score scales, a shared part, a mask)."""
    make, x_shape, y_shape, options, torch_fn = PAIR_CASES[case]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    y = (
        tuple(rng.standard_normal(s) for s in y_shape)
        if isinstance(y_shape[0], tuple)
        else rng.standard_normal(y_shape)
    )
    errors = crosscheck_pair_layer(make(), x, y, torch_fn, seed=seed, **options)
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
@given(seed=st.integers(0, 2**32 - 1))
def test_layer_output_and_gradients_equal_torch(case, seed):
    make, shape, options, torch_fn = LAYER_CASES[case]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, (2, 4)) if shape == "tokens" else rng.standard_normal(shape)
    if shape == "tokens":
        x[:, -1] = x[:, 0]  # repeated rows
    errors = crosscheck_layer(make(), x, torch_fn, seed=seed, **options)
    assert max(errors.values()) <= TOL, errors


def test_batchnorm_layer_running_statistics_follow_torch_over_several_steps():
    bn, tbn = layers.BatchNorm(dim=3, momentum=0.3), torch.nn.BatchNorm1d(3, momentum=0.3, dtype=F64)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal((5, 3)) * 2 + 1
        y, _ = bn.forward(x)
        assert scaled_error(y, tbn(_t(x))) <= TOL
    assert scaled_error(bn.buffers["running_mean"], tbn.running_mean) <= TOL
    assert scaled_error(bn.buffers["running_var"], tbn.running_var) <= TOL
    bn.eval(), tbn.eval()
    x = rng.standard_normal((2, 3))
    assert scaled_error(bn.forward(x)[0], tbn(_t(x))) <= TOL


def test_transformer_block_equals_torchs_pre_norm_encoder_layer():
    """nn.TransformerEncoderLayer(norm_first=True, dropout=0, activation="gelu") with refmann's weights loaded."""
    D, H, M = 6, 3, 10
    block = layers.TransformerBlock(model_dim=D, num_heads=H, mlp_dim=M, seed=4)
    rng = np.random.default_rng(1)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in block.params.items()}
    enc = torch.nn.TransformerEncoderLayer(
        D, H, dim_feedforward=M, dropout=0.0, activation="gelu", batch_first=True, norm_first=True, dtype=F64
    )
    sd = {
        "self_attn.in_proj_weight": np.concatenate([params[f"attn.{n}.weight"].T for n in ("query", "key", "value")]),
        "self_attn.in_proj_bias": np.concatenate([params[f"attn.{n}.bias"] for n in ("query", "key", "value")]),
        "self_attn.out_proj.weight": params["attn.out.weight"].T,
        "self_attn.out_proj.bias": params["attn.out.bias"],
        "linear1.weight": params["mlp.fc1.weight"].T,
        "linear1.bias": params["mlp.fc1.bias"],
        "linear2.weight": params["mlp.fc2.weight"].T,
        "linear2.bias": params["mlp.fc2.bias"],
        "norm1.weight": params["ln1.weight"],
        "norm1.bias": params["ln1.bias"],
        "norm2.weight": params["ln2.weight"],
        "norm2.bias": params["ln2.bias"],
    }
    enc.load_state_dict({k: _t(v) for k, v in sd.items()})
    enc.train()  # the slow path (no fused inference kernel)
    x = rng.standard_normal((2, 5, D))
    y, cache = block.forward(x, params=params, causal=True)
    x_t = _t(x, grad=True)
    y_t = enc(x_t, src_mask=torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=F64), is_causal=True)
    assert scaled_error(y, y_t) <= TOL
    dy = rng.standard_normal(y.shape)
    dx, grads = block.backward(dy, cache)
    (y_t * _t(dy)).sum().backward()
    assert scaled_error(dx, x_t.grad) <= TOL
    assert scaled_error(grads["attn.query.weight"], enc.self_attn.in_proj_weight.grad[:D].T) <= TOL
    assert scaled_error(grads["mlp.fc2.weight"], enc.linear2.weight.grad.T) <= TOL
    assert scaled_error(grads["ln1.weight"], enc.norm1.weight.grad) <= TOL


# ------------------------------------------------------------------------------------------------
# The hosts: loss and every gradient
# ------------------------------------------------------------------------------------------------


def _model_errors(model, x, y, mask, torch_logits, loss):
    value, grads = model.loss_and_grads(x, y, mask)
    p_t = {k: _t(v, grad=True) for k, v in model.params.items()}
    z = torch_logits(p_t)
    B = x.shape[model.batch_axis]
    m = torch.ones(()) if mask is None else _t(mask)
    if loss == "softmax_ce":
        t_loss = (
            F.cross_entropy(z.reshape(-1, z.shape[-1]), torch.as_tensor(y).reshape(-1), reduction="none")
            * m.expand(y.shape).reshape(-1)
        ).sum() / B
    else:
        t_loss = (F.binary_cross_entropy_with_logits(z, _t(y), reduction="none") * m).sum() / B
    t_grads = torch.autograd.grad(t_loss, list(p_t.values()))
    errors = {"logits": scaled_error(model.forward(x), z), "loss": scaled_error(value, t_loss)}
    errors.update({k: scaled_error(grads[k], g) for k, g in zip(p_t, t_grads)})
    return errors


@given(seed=st.integers(0, 2**16), loss=st.sampled_from(["softmax_ce", "sigmoid_ce"]))
def test_mlp_classifier_loss_and_gradients_equal_torch(seed, loss):
    model = MLPClassifier(input_size=3, output_size=4, hidden_sizes=(5, 4), activation="gelu", loss=loss, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 3))
    y = rng.integers(0, 4, 6) if loss == "softmax_ce" else (rng.random((6, 4)) > 0.5) * 1.0
    mask = (rng.random(6) > 0.3) * 1.0 if loss == "softmax_ce" else None
    errors = _model_errors(model, x, y, mask, lambda p: mlp_t(p, _t(x), num_linear=3, activation="gelu"), loss)
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("tokens", [False, True])
@given(seed=st.integers(0, 2**16))
def test_transformer_loss_and_gradients_equal_torch(tokens, seed):
    T, B, X, Y, D, H = 4, 2, 5, 3, 6, 2
    loss = "softmax_ce" if tokens else "sigmoid_ce"
    model = Transformer(
        input_size=X,
        output_size=Y,
        model_dim=D,
        num_heads=H,
        num_layers=2,
        mlp_dim=8,
        max_len=6,
        tokens=tokens,
        loss=loss,
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    x = rng.integers(0, X, (T, B)) if tokens else rng.standard_normal((T, B, X))
    y = rng.integers(0, Y, (T, B)) if tokens else (rng.random((T, B, Y)) > 0.5) * 1.0
    mask = (rng.random((T, B)) > 0.3) * 1.0 if tokens else (rng.random((T, B, 1)) > 0.3) * 1.0

    def logits(p):
        if tokens:
            e = F.embedding(torch.as_tensor(x), p["embed.weight"])
        else:
            e = _t(x) @ p["embed.weight"] + p["embed.bias"]
        h = e.transpose(0, 1) + p["position"][:T]  # (B, T, D)
        for i in range(2):
            h = block_t(p, h, num_heads=H, causal=True, prefix=f"block{i}.")
        h = F.layer_norm(h, (D,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
        return (h @ p["head.weight"] + p["head.bias"]).transpose(0, 1)

    errors = _model_errors(model, x, y, mask, logits, loss)
    assert max(errors.values()) <= TOL, errors
