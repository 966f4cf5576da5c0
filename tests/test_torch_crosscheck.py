r"""External oracle (optional): every op of ``refmann.ops`` and whole DAM and SAM models against PyTorch autograd.

Each op and each model is written a second time here in PyTorch, straight from the equations in
refmann's docstrings (none of the torch formulas calls refmann), run in float64, and
differentiated by autograd. For an op, the upstream gradient is random (standard normal, seeded);
for a model, it is the gradient of the documented loss: masked sigmoid cross-entropy summed over time
and outputs, averaged over the batch.

The criterion, for every forward output and every gradient (each one array ``a`` from refmann
and its twin ``b`` from torch)::

    max|a − b| / max(1, max|a|, max|b|)  ≤  1e-10

that is absolute error for values of order one or less, relative to the largest entry above that.
A ``RowGrad`` is densified with ``refmann.ops.densify_rows`` first.

Discrete decisions (top-k selection, the least-used slots, the access threshold δ) are recomputed
in torch and must equal the ones refmann records in ``model.last_trace``; inputs keep a margin from
every kink (the gaps are asserted). With the default constant initial memory many rows are
exactly equal, so top-k and usage have genuine ties that refmann breaks by index; those cases take
the decisions from refmann's trace instead (``decisions="trace"``) and check the continuous part.

Skipped when torch is absent. Install the pinned version (an unpinned ``pip install torch``
downloads a multi-gigabyte CUDA build; on the project's machines the pinned one comes from local disk)::

    pip install torch==2.13.0
    python -m pytest tests/test_torch_crosscheck.py

``python -m tests.test_torch_crosscheck`` prints the measured table of docs/crosscheck.md.
"""

import inspect

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refmann import models, ops
from refmann.gradcheck import op_example
from tests.test_torch_layers import OP_TWINS as LAYER_OP_TWINS

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

#: The criterion of the module docstring.
TOL = 1e-10
F64 = torch.float64


def scaled_error(a, b) -> float:
    """max|a − b| / max(1, max|a|, max|b|) (0 for empty arrays)."""
    a = np.asarray(a, np.float64)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(a)), np.max(np.abs(b))))


def _t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=F64, requires_grad=grad)


def _long(a):
    return torch.tensor(np.asarray(a), dtype=torch.int64)


# ------------------------------------------------------------------------------------------------
# The ops, once more in torch: one twin per name in refmann.ops.OP_NAMES, from the docstrings
# ------------------------------------------------------------------------------------------------


def softplus_t(x):
    """log(1 + e^x) (inputs here are O(1), so the direct form is exact enough)."""
    return torch.log1p(torch.exp(x))


def sigmoid_t(x):
    return 1.0 / (1.0 + torch.exp(-x))


def softmax_t(x, dim=-1):
    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)
    return e / e.sum(dim=dim, keepdim=True)


def cosine_t(memory, keys, eps=1e-6, norm_eps=0.0):
    """K(k_h, M(i)) = k_h·M(i) / (‖k_h‖ ‖M(i)‖ + eps), ‖x‖ = sqrt(Σx² + norm_eps): (B, N, W), (B, H, W) -> (B, H, N)."""
    knorm = torch.sqrt((keys * keys).sum(-1) + norm_eps)  # (B, H)
    mnorm = torch.sqrt((memory * memory).sum(-1) + norm_eps)  # (B, N)
    return torch.einsum("bhw,bnw->bhn", keys, memory) / (knorm[:, :, None] * mnorm[:, None, :] + eps)


def lstm_t(x, h, c, weight, bias):
    """[î, f̂, ô, ĝ] = [x; h] W + b; c' = σ(f̂) c + σ(î) tanh(ĝ); h' = σ(ô) tanh(c')."""
    C = h.shape[1]
    z = torch.cat([x, h], dim=1) @ weight + bias
    i, f, o = sigmoid_t(z[:, :C]), sigmoid_t(z[:, C : 2 * C]), sigmoid_t(z[:, 2 * C : 3 * C])
    g = torch.tanh(z[:, 3 * C :])
    c_new = f * c + i * g
    return o * torch.tanh(c_new), c_new


def circular_shift_t(weights, shift):
    """w̃(i) = Σ_{o=-R..R} w((i − o) mod N) s(o); torch.roll(w, o)[i] = w((i − o) mod N)."""
    R = (shift.shape[-1] - 1) // 2
    return sum(shift[..., o + R, None] * torch.roll(weights, shifts=o, dims=-1) for o in range(-R, R + 1))


def dense_write_t(memory, weights, erase, add):
    """M ⊙ Π_h (1 − w_h e_hᵀ) + Σ_h w_h a_hᵀ."""
    keep = torch.ones_like(memory)
    for h in range(weights.shape[1]):
        keep = keep * (1.0 - weights[:, h, :, None] * erase[:, h, None, :])
    return memory * keep + weights.transpose(1, 2) @ add


def lra_write_t(memory, weights, add, *, erase_indices):
    """(1 − R) ⊙ M + Σ_h w_h a_hᵀ with the rows ``erase_indices`` zeroed."""
    keep = torch.ones(memory.shape[:2], dtype=F64)
    keep[torch.arange(memory.shape[0])[:, None], _long(erase_indices)] = 0.0
    return memory * keep[..., None] + weights.transpose(1, 2) @ add


def sparse_read_t(memory, weights, *, indices):
    """r_h = Σ_k w_h(k) M(s_hk), by advanced indexing (repeats add up under autograd)."""
    idx = _long(indices)
    rows = memory[torch.arange(memory.shape[0])[:, None, None], idx]  # (B, H, K, W)
    return torch.einsum("bhk,bhkw->bhw", weights, rows)


def scatter_add_t(rows, *, indices, num_rows):
    """out(b, i) = Σ_{j: idx(b,j) = i} rows(b, j)."""
    B, J, W = rows.shape
    out = torch.zeros((B, num_rows, W), dtype=F64)
    return out.index_put((torch.arange(B)[:, None].expand(B, J), _long(indices)), rows, accumulate=True)


def sigmoid_ce_t(logits, *, targets, mask=None):
    """−Σ m [t log σ(x) + (1 − t) log(1 − σ(x))] (the second form of the docstring)."""
    t = _t(targets)
    m = torch.ones_like(logits) if mask is None else _t(mask)
    logsig = torch.nn.functional.logsigmoid
    return -(m * (t * logsig(logits) + (1.0 - t) * logsig(-logits))).sum()


def softmax_ce_t(logits, *, targets, mask=None):
    """Σ m [log Σ_j e^{x_j} − x_t]."""
    picked = torch.gather(logits, -1, _long(targets)[..., None])[..., 0]
    m = torch.ones_like(picked) if mask is None else _t(mask)
    return (m * (torch.logsumexp(logits, dim=-1) - picked)).sum()


def lra_interpolate_t(read_weights, alpha, gate, *, lra=None):
    """α(γ w^R + (1 − γ) 1_LRA): sparse (the LRA entry appended) or dense (a one-hot at ``lra``)."""
    if lra is None:
        inner = torch.cat([gate[..., None] * read_weights, (1.0 - gate)[..., None]], dim=-1)
    else:
        onehot = torch.nn.functional.one_hot(_long(lra), read_weights.shape[-1]).to(F64)
        inner = gate[..., None] * read_weights + (1.0 - gate[..., None]) * onehot
    return alpha[..., None] * inner


def sparse_write_t(memory, weights, add, *, indices, erase_indices):
    """(1 − R) ⊙ M + Σ_h Σ_j w_hj e_{s_hj} a_hᵀ, the adds by index_put with accumulate."""
    B, H, J = weights.shape
    keep = torch.ones(memory.shape[:2], dtype=F64)
    keep[torch.arange(B)[:, None], _long(erase_indices)] = 0.0
    rows = (weights[..., None] * add[:, :, None, :]).reshape(B, H * J, -1)
    where = (torch.arange(B)[:, None].expand(B, H * J), _long(indices).reshape(B, H * J))
    return (memory * keep[..., None]).index_put(where, rows, accumulate=True)


def sparse_content_read_t(memory, keys, strengths, *, indices, eps=1e-6, fused=False):
    """w = softmax_k(β cos(q, M(s_k))), r = Σ_k w_k M(s_k) on the gathered rows."""
    rows = memory[torch.arange(memory.shape[0])[:, None, None], _long(indices)]  # (B, H, K, W)
    qn = torch.sqrt((keys * keys).sum(-1))  # (B, H)
    rn = torch.sqrt((rows * rows).sum(-1))  # (B, H, K)
    sim = torch.einsum("bhw,bhkw->bhk", keys, rows) / (qn[..., None] * rn + eps)
    w = softmax_t(strengths[..., None] * sim)
    return w, torch.einsum("bhk,bhkw->bhw", w, rows)


def dnc_usage_t(usage, free_gates, read_weights, *, write_weights):
    """u_t = (u + w̄ − u w̄) ψ, w̄ = 1 − Π_j (1 − w^w_j) (no gradient), ψ = Π_i (1 − f_i w^r_i)."""
    written = 1.0 - torch.prod(1.0 - _t(write_weights), dim=1)
    retention = torch.prod(1.0 - free_gates[..., None] * read_weights, dim=1)
    return (usage + written - usage * written) * retention


def dnc_allocation_t(usage, write_gates, *, eps=1e-6):
    """Per write head: a = alloc(u) by a stable ascending sort of û; then u ← u + (1 − u) g_j a_j."""
    heads = []
    for j in range(write_gates.shape[1]):
        u_hat = eps + (1.0 - eps) * usage
        s, phi = torch.sort(u_hat, dim=-1, stable=True)
        prefix = torch.cumprod(torch.cat([torch.ones_like(s[:, :1]), s[:, :-1]], dim=-1), dim=-1)
        a = torch.zeros_like(s).scatter(-1, phi, (1.0 - s) * prefix)
        heads.append(a)
        usage = usage + (1.0 - usage) * write_gates[:, j, None] * a
    return torch.stack(heads, dim=1)


def dnc_links_t(link, precedence, write_weights):
    """L_t = (1 − w_i − w_j) L + w_i p_j with a zero diagonal; p_t = (1 − Σw) p + w."""
    w = write_weights
    N = w.shape[-1]
    off = 1.0 - torch.eye(N, dtype=F64)
    link_t = ((1.0 - w[..., :, None] - w[..., None, :]) * link + w[..., :, None] * precedence[..., None, :]) * off
    return link_t, (1.0 - w.sum(-1, keepdim=True)) * precedence + w


def dnc_read_weights_t(read_modes, content, forward, backward):
    """Σ_h π_b[h] b_h + Σ_h π_f[h] f_h + π_c c, modes ordered [backward × Wh, forward × Wh, content]."""
    Wh = forward.shape[2]
    pb, pf, pc = read_modes[..., :Wh], read_modes[..., Wh : 2 * Wh], read_modes[..., 2 * Wh :]
    return torch.einsum("brh,brhn->brn", pb, backward) + torch.einsum("brh,brhn->brn", pf, forward) + pc * content


TWINS = {
    "sigmoid": sigmoid_t,
    "tanh": torch.tanh,
    "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
    "softplus": softplus_t,
    "oneplus": lambda x: 1.0 + softplus_t(x),
    "softmax": lambda x, *, axis=-1: softmax_t(x, dim=axis),
    "cosine_similarity": lambda memory, keys, *, eps=1e-6, norm_eps=0.0: cosine_t(memory, keys, eps, norm_eps),
    "content_weights": lambda memory, keys, strengths, *, eps=1e-6, norm_eps=0.0: softmax_t(
        strengths[..., None] * cosine_t(memory, keys, eps, norm_eps)
    ),
    "interpolate": lambda content, previous, gate: gate[..., None] * content + (1.0 - gate[..., None]) * previous,
    "circular_shift": circular_shift_t,
    "sharpen": lambda weights, gamma: (lambda p: p / p.sum(-1, keepdim=True))(weights ** gamma[..., None]),
    "dense_read": lambda memory, weights: weights @ memory,
    "dense_write": dense_write_t,
    "lra_write": lra_write_t,
    "sparse_read": sparse_read_t,
    "scatter_add": scatter_add_t,
    "top_k": lambda scores, *, k: torch.topk(scores, k, dim=-1).values,
    "linear": lambda x, weight, bias: x @ weight + bias,
    "lstm_step": lstm_t,
    "sigmoid_cross_entropy": sigmoid_ce_t,
    "softmax_cross_entropy": softmax_ce_t,
    "lra_interpolate": lra_interpolate_t,
    "sparse_write": sparse_write_t,
    "sparse_content_read": sparse_content_read_t,
    "dnc_usage": dnc_usage_t,
    "dnc_allocation": dnc_allocation_t,
    "dnc_write_weights": lambda allocation, content, allocation_gate, write_gate: (
        write_gate[..., None] * (allocation_gate[..., None] * allocation + (1.0 - allocation_gate[..., None]) * content)
    ),
    "dnc_links": dnc_links_t,
    "dnc_directional": lambda link, read_weights: (
        torch.einsum("bhij,brj->brhi", link, read_weights),
        torch.einsum("bhij,bri->brhj", link, read_weights),
    ),
    "dnc_read_weights": dnc_read_weights_t,
    "embedding_bag": lambda table, weights, *, indices: torch.nn.functional.embedding_bag(
        _long(indices).reshape(-1, indices.shape[-1]),
        table,
        per_sample_weights=weights.reshape(-1, indices.shape[-1]),
        mode="sum",
    ).reshape(indices.shape[:-1] + (table.shape[1],)),
    "product_key_topk": lambda queries, keys, *, k: (
        torch.topk(  # brute force: the top k of all n² sums
            (
                torch.einsum("bhd,hnd->bhn", queries[..., : queries.shape[-1] // 2], keys[:, 0])[..., :, None]
                + torch.einsum("bhd,hnd->bhn", queries[..., queries.shape[-1] // 2 :], keys[:, 1])[..., None, :]
            ).flatten(-2),
            k,
            dim=-1,
        ).values
    ),
}
TWINS.update(LAYER_OP_TWINS)  # attention, the norms, GELU, SiLU, embedding: twins beside the layers' cross-check


def crosscheck_op(name, arrays, hyper, *, seed=0) -> dict:
    """Errors (see :func:`scaled_error`) of op ``name``'s outputs and gradients against its torch twin.

    Returns ``{"out": e, "out1": e, ..., "d<argument>": e, ...}``.
    """
    forward, backward = getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward")
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    out, cache = forward(*[a.copy() for a in arrays], **hyper)
    outs = out if isinstance(out, tuple) else (out,)
    rng = np.random.default_rng(seed)
    douts = tuple(np.asarray(rng.standard_normal(np.shape(o))) for o in outs)
    grads = backward(douts if isinstance(out, tuple) else douts[0], cache)
    xs = [_t(a, grad=True) for a in arrays]
    t_out = TWINS[name](*xs, **hyper)
    t_outs = t_out if isinstance(t_out, tuple) else (t_out,)
    assert len(t_outs) == len(outs)
    phi = sum((o * _t(d)).sum() for o, d in zip(t_outs, douts))
    t_grads = torch.autograd.grad(phi, xs, allow_unused=True)
    names = list(inspect.signature(forward).parameters)[: len(arrays)]
    errors = {}
    for j, (o, to) in enumerate(zip(outs, t_outs)):
        errors["out" if j == 0 else f"out{j}"] = scaled_error(o, to)
    assert len(grads) == len(arrays)
    for argname, g, tg, x in zip(names, grads, t_grads, arrays):
        g = ops.densify_rows(g) if isinstance(g, ops.RowGrad) else g
        errors[f"d{argname}"] = scaled_error(g, torch.zeros(x.shape, dtype=F64) if tg is None else tg)
    return errors


def test_every_op_in_op_names_has_a_torch_twin():
    """A new op added to refmann.ops.OP_NAMES fails here until it gets a twin in TWINS."""
    assert set(TWINS) == set(ops.OP_NAMES)
    assert len(ops.OP_NAMES) == len(set(ops.OP_NAMES))


@st.composite
def op_sizes(draw):
    """Sizes for :func:`refmann.gradcheck.op_example` (K ≤ N and H ≤ N, S odd)."""
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


@pytest.mark.parametrize("name", ops.OP_NAMES)
@given(sizes=op_sizes(), seed=st.integers(0, 2**32 - 1))
def test_op_outputs_and_gradients_equal_torch_autograd(name, sizes, seed):
    """op_example draws inputs away from kinks (relu at 0, top-k ties, gates off 0 and 1, simplexes > 0)."""
    arrays, hyper = op_example(name, np.random.default_rng(seed), **sizes)
    errors = crosscheck_op(name, arrays, hyper, seed=seed)
    assert max(errors.values()) <= TOL, errors


@given(sizes=op_sizes(), seed=st.integers(0, 2**32 - 1))
def test_top_k_selects_the_same_indices_as_torch_topk(sizes, seed):
    (scores,), hyper = op_example("top_k", np.random.default_rng(seed), **sizes)
    _, cache = ops.top_k_forward(scores, **hyper)
    np.testing.assert_array_equal(cache.indices, torch.topk(_t(scores), hyper["k"], dim=-1).indices.numpy())


@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 4), K=st.integers(2, 6))
def test_sparse_read_and_scatter_add_with_repeated_rows_equal_torch(seed, N, K):
    """Repeated indices (within a head and across heads) must accumulate, as under autograd."""
    rng = np.random.default_rng(seed)
    B, H, W = 2, 2, 3
    idx = rng.integers(0, N, (B, H, K))
    idx[..., -1] = idx[..., 0]  # at least one repeat per head
    e = np.exp(rng.standard_normal((B, H, K)))
    errors = crosscheck_op(
        "sparse_read", (rng.standard_normal((B, N, W)), e / e.sum(-1, keepdims=True)), {"indices": idx}, seed=seed
    )
    errors.update(
        crosscheck_op(
            "scatter_add",
            (rng.standard_normal((B, H * K, W)),),
            {"indices": idx.reshape(B, -1), "num_rows": N},
            seed=seed,
        )
    )
    assert max(errors.values()) <= TOL, errors


# ------------------------------------------------------------------------------------------------
# DAM and SAM, once more in torch (refmann/cores/dam.py, sam.py, _common.py; DESIGN "SAM in one step")
# ------------------------------------------------------------------------------------------------


def torch_memory_model(
    params, x, m0, *, kind, H, K=None, usage="timestamp", discount=0.99, delta=0.005, strength=True, decisions=None
):
    """Logits (T, B, Y) of DAM (``kind="dam"``) or SAM (``kind="sam"``, exact top-K read) and the decisions.

    The memory is kept dense (B, N, W); SAM's sparse write is the same dense write with the weights
    on the K previous read slots and the least-used slot, and its read is a softmax over the top-K
    cosine scores. ``decisions`` (a refmann ``last_trace``) fixes the least-used slots and SAM's read
    slots instead of recomputing them (for exact ties).

    Returns ``(logits, info)``; ``info`` has the per-step decisions and the smallest margins from a kink.
    """
    T, B, _ = x.shape
    N, W = m0.shape[-2:]
    C = params["controller.bias"].shape[0] // 4
    P = 2 * W + 2 + int(strength)
    h = torch.zeros((B, C), dtype=F64)
    c = torch.zeros((B, C), dtype=F64)
    M = m0.expand(B, N, W)
    reads = torch.zeros((B, H, W), dtype=F64)
    w_read = torch.zeros((B, H, N), dtype=F64)  # previous read weights, dense
    if usage == "timestamp":  # time of last access; untouched: −N..−1
        used = torch.arange(-N, 0, dtype=F64).expand(B, N).clone()
    else:  # U1, λ-discounted
        used = torch.zeros((B, N), dtype=F64)
    bidx = torch.arange(B)[:, None]
    info = {"lra": [], "accessed": [], "read_idx": [], "topk_gap": np.inf, "usage_gap": np.inf, "delta_gap": np.inf}
    logits = []
    for t in range(T):
        # 1. controller on [x_t ; r_{t-1}], then per head q, a, α, γ, β
        h, c = lstm_t(
            torch.cat([x[t], reads.reshape(B, H * W)], dim=1),
            h,
            c,
            params["controller.weight"],
            params["controller.bias"],
        )
        p = (h @ params["heads.weight"] + params["heads.bias"]).reshape(B, H, P)
        q, a = p[..., :W], p[..., W : 2 * W]
        alpha, gamma = sigmoid_t(p[..., 2 * W]), sigmoid_t(p[..., 2 * W + 1])
        beta = 1.0 + softplus_t(p[..., 2 * W + 2]) if strength else torch.ones((B, H), dtype=F64)
        # 2. write: the H least-used slots (usage ascending, ties by index), erase them, add
        if decisions is None:
            order = torch.sort(used, dim=1, stable=True)
            lra = order.indices[:, :H]
            if H < N and not torch.equal(order.values[:, H - 1], order.values[:, H]):
                info["usage_gap"] = min(info["usage_gap"], float((order.values[:, H] - order.values[:, H - 1]).min()))
        else:
            lra = _long(decisions[t][0])
        onehot = torch.zeros((B, H, N), dtype=F64)
        onehot[bidx, torch.arange(H)[None, :], lra] = 1.0
        w_write = alpha[..., None] * (gamma[..., None] * w_read + (1.0 - gamma[..., None]) * onehot)
        keep = torch.ones((B, N), dtype=F64)
        keep[bidx, lra] = 0.0
        M = M * keep[..., None] + w_write.transpose(1, 2) @ a
        # 3. read: softmax over all N (DAM) or over the top-K cosine scores (SAM)
        scores = beta[..., None] * cosine_t(M, q)  # (B, H, N)
        if kind == "dam":
            w_read = softmax_t(scores)
        else:
            sim = cosine_t(M, q).detach()
            if decisions is None:
                top = torch.sort(sim, dim=-1, descending=True, stable=True)
                idx = top.indices[..., :K]
                if K < N:
                    info["topk_gap"] = min(info["topk_gap"], float((top.values[..., K - 1] - top.values[..., K]).min()))
            else:
                idx = _long(decisions[t][2])
            w_k = softmax_t(torch.gather(scores, -1, idx))
            w_read = torch.zeros((B, H, N), dtype=F64).scatter(-1, idx, w_k)
            info["read_idx"].append(np.sort(idx.numpy(), axis=-1))
        reads = w_read @ M
        # 4. usage (no gradient): Σ_h (w^W + w^R) per slot
        access = (w_write + w_read).sum(1).detach()
        if usage == "timestamp":
            accessed = access > delta
            used = torch.where(accessed, float(t + 1), used)
            info["delta_gap"] = min(info["delta_gap"], float((access - delta).abs().min()))
            info["accessed"].append(accessed.numpy())
        else:
            used = discount * used + access
        info["lra"].append(lra.numpy())
        # 5. output y_t = linear([h_t ; r_t])
        logits.append(torch.cat([h, reads.reshape(B, H * W)], dim=1) @ params["output.weight"] + params["output.bias"])
    return torch.stack(logits), info


def torch_loss(logits, targets, mask):
    """Σ_{t,y} m·CE(σ(z), y) / B."""
    return sigmoid_ce_t(logits, targets=targets, mask=mask) / logits.shape[1]


def _problem(seed, T, B, X, Y):
    rng = np.random.default_rng([seed, 99])
    return (
        rng.standard_normal((T, B, X)),
        (rng.random((T, B, Y)) > 0.5).astype(float),
        (rng.random((T, B, Y)) > 0.25).astype(float),
    )


def _first_difference(kind, usage, trace, info):
    """None if the torch decisions equal refmann's ``last_trace`` step by step, else what differs first."""
    for t, step in enumerate(trace, start=1):
        if not np.array_equal(step[0], info["lra"][t - 1]):
            return f"least-used slots at t={t}: refmann {step[0].tolist()}, torch {info['lra'][t - 1].tolist()}"
        if kind == "sam":
            touched = [sorted(s[s >= 0].tolist()) for s in step[1]]
            if touched != [np.flatnonzero(a).tolist() for a in info["accessed"][t - 1]]:
                return f"accessed slots at t={t}"
            if not np.array_equal(step[2], info["read_idx"][t - 1]):
                return f"read slots at t={t}: refmann {step[2].tolist()}, torch {info['read_idx'][t - 1].tolist()}"
        elif usage == "timestamp" and not np.array_equal(step[1], info["accessed"][t - 1]):
            return f"accessed slots at t={t}"
    return None


def away_from_kinks(info, margin=1e-6) -> bool:
    """The recomputed decisions are at least ``margin`` from a top-k tie, a usage tie and the threshold δ."""
    return min(info["topk_gap"], info["usage_gap"], info["delta_gap"]) > margin


def crosscheck_model(
    kind, *, T=3, B=2, N=8, W=5, H=2, K=3, C=6, X=4, Y=3, seed=0, decisions="recompute", **options
) -> tuple[dict, dict]:
    """Errors of a refmann DAM/SAM's logits, loss and every gradient against the torch twin.

    Returns ``(errors, info)``; ``errors`` is keyed "logits", "loss" and each parameter name;
    ``info["decisions_differ"]`` says where the recomputed decisions first differ from refmann's trace
    (None when they agree, or when they were taken from the trace).
    """
    sizes = dict(input_size=X, output_size=Y, memory_size=N, word_size=W, num_heads=H, hidden_size=C, seed=seed)
    x, y, mask = _problem(seed, T, B, X, Y)
    if kind == "dam":
        assert options.get("memory_init", "constant") in ("constant", "learned"), "the twin knows these two"
        model = models.DAM(**sizes, **options)
        logits = model.forward(x)
        m0 = np.full((N, W), 1e-6)  # the constant initial memory (DESIGN decision 9)
    else:
        model = models.SAM(k=K, index="linear", **sizes, **options)
        logits = model.forward(x)
        m0 = model.memory[0].copy()  # the initial memory (restored after forward)
        assert np.array_equal(model.memory, np.broadcast_to(m0, model.memory.shape))
    loss, grads = model.loss_and_grads(x, y, mask)
    trace = model.last_trace
    params = {key: _t(value, grad=True) for key, value in model.params.items()}
    m0_t = params["memory.init"] if "memory.init" in params else _t(m0)
    usage = "timestamp" if kind == "sam" else options.get("usage", "discounted")
    t_logits, info = torch_memory_model(
        params,
        _t(x),
        m0_t,
        kind=kind,
        H=H,
        K=K,
        usage=usage,
        strength=options.get("strength", True),
        decisions=trace if decisions == "trace" else None,
    )
    t_loss = torch_loss(t_logits, y, mask)
    t_grads = torch.autograd.grad(t_loss, list(params.values()))
    info["decisions_differ"] = _first_difference(kind, usage, trace, info) if decisions == "recompute" else None
    assert set(grads) == set(model.params)
    errors = {"logits": scaled_error(logits, t_logits), "loss": scaled_error(loss, t_loss)}
    for key, tg in zip(params, t_grads):
        errors[key] = scaled_error(grads[key], tg)
    return errors, info


#: (kind, options, T, decisions): decisions from the trace where the constant initial memory makes exact ties.
MODEL_CASES = [
    ("dam", dict(usage="discounted", memory_init="learned"), 1, "recompute"),
    ("dam", dict(usage="discounted", memory_init="learned"), 3, "recompute"),
    ("dam", dict(usage="timestamp", memory_init="learned"), 3, "recompute"),
    ("dam", dict(usage="discounted", memory_init="learned", strength=False), 3, "recompute"),
    ("dam", dict(usage="discounted"), 3, "trace"),
    ("dam", dict(usage="timestamp"), 3, "trace"),
    ("sam", dict(memory_init="random"), 1, "recompute"),
    ("sam", dict(memory_init="random"), 3, "recompute"),
    ("sam", dict(memory_init="random", k=8), 3, "recompute"),
    ("sam", dict(memory_init="random", strength=False), 3, "recompute"),
    ("sam", dict(), 3, "trace"),
]
MODEL_IDS = [
    f"{kind}-T{T}-" + "-".join(f"{k}={v}" for k, v in opts.items()) + f"-{dec}" for kind, opts, T, dec in MODEL_CASES
]


@pytest.mark.parametrize(("kind", "options", "T", "decisions"), MODEL_CASES, ids=MODEL_IDS)
def test_model_logits_loss_and_every_gradient_equal_torch_autograd(kind, options, T, decisions):
    """B=2, N=8, W=5, H=2, K=3 (k=8 = N in one case), C=6, X=4, Y=3."""
    options = dict(options)
    K = options.pop("k", 3)
    errors, info = crosscheck_model(kind, T=T, K=K, decisions=decisions, **options)
    assert info["decisions_differ"] is None, info["decisions_differ"]
    assert max(errors.values()) <= TOL, errors
    if decisions == "recompute":  # the draw keeps its distance from every kink
        assert away_from_kinks(info), info


@st.composite
def model_draws(draw):
    N = draw(st.integers(2, 8))
    return dict(
        kind=draw(st.sampled_from(["dam", "sam"])),
        T=draw(st.integers(1, 4)),
        B=draw(st.integers(1, 3)),
        N=N,
        W=draw(st.integers(1, 5)),
        H=draw(st.integers(1, min(3, N))),
        K=draw(st.integers(1, N)),
        C=draw(st.integers(1, 6)),
        X=draw(st.integers(1, 4)),
        Y=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**16)),
    )


@given(case=model_draws(), usage=st.sampled_from(["discounted", "timestamp"]))
def test_models_of_drawn_sizes_equal_torch_autograd(case, usage):
    """Random sizes and seeds, random initial memory, decisions recomputed; draws near a kink are discarded."""
    case = dict(case)
    kind = case.pop("kind")
    options = dict(memory_init="learned", usage=usage) if kind == "dam" else dict(memory_init="random")
    errors, info = crosscheck_model(kind, decisions="recompute", **case, **options)
    assume(away_from_kinks(info))  # a draw within 1e-6 of a kink is not a fair test of a gradient
    assert info["decisions_differ"] is None, info["decisions_differ"]
    assert max(errors.values()) <= TOL, errors


# ------------------------------------------------------------------------------------------------
# The measured table of docs/crosscheck.md:  python -m tests.test_torch_crosscheck
# ------------------------------------------------------------------------------------------------


def measured_table(seeds=range(50)) -> list[tuple[str, float, float]]:
    """(name, worst error over outputs, worst error over gradients) per op over ``seeds``, then per model case."""
    rows = []
    for name in ops.OP_NAMES:
        worst_out = worst_grad = 0.0
        for seed in seeds:
            rng = np.random.default_rng(seed)
            sizes = dict(B=2, H=2, N=int(rng.integers(3, 8)), W=4, K=3, S=3, X=3, C=4)
            errors = crosscheck_op(name, *op_example(name, rng, **sizes), seed=seed)
            worst_out = max([worst_out] + [e for k, e in errors.items() if k.startswith("out")])
            worst_grad = max([worst_grad] + [e for k, e in errors.items() if k.startswith("d")])
        rows.append((name, worst_out, worst_grad))
    for (kind, options, T, decisions), case_id in zip(MODEL_CASES, MODEL_IDS):
        options = dict(options)
        K = options.pop("k", 3)
        errors, _ = crosscheck_model(kind, T=T, K=K, decisions=decisions, **options)
        rows.append(
            (
                case_id,
                max(errors["logits"], errors["loss"]),
                max(e for k, e in errors.items() if k not in ("logits", "loss")),
            )
        )
    return rows


if __name__ == "__main__":
    print("| op or model | outputs (logits, loss) | gradients |")
    print("| --- | --- | --- |")
    for name, out_err, grad_err in measured_table():
        print(f"| `{name}` | {out_err:.1e} | {grad_err:.1e} |")
