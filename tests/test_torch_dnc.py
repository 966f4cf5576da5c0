"""The DNC against PyTorch autograd: a whole unroll, written here from DeepMind's equations in torch, gives
refmann's loss and every parameter gradient to 1e-10 (float64). Optional: skipped without torch."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from refmann import models  # noqa: E402

EPS = 1e-6


def _content(memory, keys, strengths):
    """softmax_N(β · ⟨M, k⟩ / (‖M‖_ε ‖k‖_ε + ε)), ‖x‖_ε = sqrt(Σx² + ε) (DeepMind's CosineWeights)."""
    dots = torch.einsum("bhw,bnw->bhn", keys, memory)
    mnorm = torch.sqrt((memory * memory).sum(-1) + EPS)  # (B, N)
    knorm = torch.sqrt((keys * keys).sum(-1) + EPS)  # (B, H)
    sim = dots / (knorm[..., None] * mnorm[:, None, :] + EPS)
    return torch.softmax(strengths[..., None] * sim, dim=-1)


def _allocation(usage):
    """DeepMind's Freeness._allocation: exclusive cumprod over the usage sorted ascending (stable)."""
    u = EPS + (1 - EPS) * usage
    order = torch.sort(u.detach(), dim=-1, stable=True).indices
    s = torch.gather(u, -1, order)
    ones = torch.ones_like(s[..., :1])
    prod = torch.cumprod(torch.cat([ones, s[..., :-1]], dim=-1), dim=-1)
    sorted_alloc = (1 - s) * prod
    return torch.zeros_like(u).scatter(-1, order, sorted_alloc)


def torch_dnc_loss(params, x, y, *, R, Wh, W, C, variant, stop_gradient=True):
    """The summed sigmoid cross-entropy over a (T, B, X) unroll, divided by B (refmann's loss)."""
    T, B, _ = x.shape
    N = params["_memory0"].shape[0]
    strength = torch.nn.functional.softplus
    if variant == "nature":
        strength = lambda z: 1 + torch.nn.functional.softplus(z)  # noqa: E731
    memory = params["_memory0"].expand(B, N, W)
    h = torch.zeros(B, C, dtype=x.dtype)
    c = torch.zeros(B, C, dtype=x.dtype)
    rw = torch.zeros(B, R, N, dtype=x.dtype)
    ww = torch.zeros(B, Wh, N, dtype=x.dtype)
    link = torch.zeros(B, Wh, N, N, dtype=x.dtype)
    prec = torch.zeros(B, Wh, N, dtype=x.dtype)
    usage = torch.zeros(B, N, dtype=x.dtype)
    reads = torch.zeros(B, R, W, dtype=x.dtype)
    eye = torch.eye(N, dtype=torch.bool)
    loss = 0.0
    for t in range(T):
        z = torch.cat([x[t], reads.reshape(B, -1), h], 1) @ params["controller.weight"] + params["controller.bias"]
        i, f, o, g = (
            torch.sigmoid(z[:, :C]),
            torch.sigmoid(z[:, C : 2 * C]),
            torch.sigmoid(z[:, 2 * C : 3 * C]),
            torch.tanh(z[:, 3 * C :]),
        )
        c = f * c + i * g
        h = o * torch.tanh(c)
        p = h @ params["heads.weight"] + params["heads.bias"]
        rwidth, wwidth = W + 2 + 1 + 2 * Wh, 3 * W + 3
        rp = p[:, : R * rwidth].reshape(B, R, rwidth)
        wp = p[:, R * rwidth :].reshape(B, Wh, wwidth)
        rkey, rstr, free, modes = (
            rp[..., :W],
            strength(rp[..., W]),
            torch.sigmoid(rp[..., W + 1]),
            torch.softmax(rp[..., W + 2 :], -1),
        )
        wkey, wstr = wp[..., :W], strength(wp[..., W])
        erase, add = torch.sigmoid(wp[..., W + 1 : 2 * W + 1]), wp[..., 2 * W + 1 : 3 * W + 1]
        ga, gw = torch.sigmoid(wp[..., 3 * W + 1]), torch.sigmoid(wp[..., 3 * W + 2])
        # usage (previous write weights under stop-gradient), allocation, write weights
        wbar = 1 - torch.prod(1 - (ww.detach() if stop_gradient else ww), dim=1)
        psi = torch.prod(1 - free[..., None] * rw, dim=1)
        usage = (usage + wbar - usage * wbar) * psi
        u, allocs = usage, []
        for j in range(Wh):
            a = _allocation(u)
            allocs.append(a)
            u = u + (1 - u) * (ga[:, j] * gw[:, j])[:, None] * a
        alloc = torch.stack(allocs, 1)
        wc = _content(memory, wkey, wstr)
        ww = gw[..., None] * (ga[..., None] * alloc + (1 - ga[..., None]) * wc)
        keep = torch.prod(1 - ww[..., None] * erase[:, :, None, :], dim=1)  # (B, N, W)
        memory = memory * keep + torch.einsum("bhn,bhw->bnw", ww, add)
        # links (old precedence), precedence
        wi, wj = ww[..., :, None], ww[..., None, :]
        link = ((1 - wi - wj) * link + wi * prec[..., None, :]).masked_fill(eye, 0.0)
        prec = (1 - ww.sum(-1, keepdim=True)) * prec + ww
        fwd = torch.einsum("bhij,brj->brhi", link, rw)
        bwd = torch.einsum("bhij,bri->brhj", link, rw)
        rc = _content(memory, rkey, rstr)
        rw = (
            (modes[..., :Wh, None] * bwd).sum(2)
            + (modes[..., Wh : 2 * Wh, None] * fwd).sum(2)
            + modes[..., 2 * Wh, None] * rc
        )
        reads = torch.einsum("brn,bnw->brw", rw, memory)
        logits = torch.cat([h, reads.reshape(B, -1)], 1) @ params["output.weight"] + params["output.bias"]
        loss = loss + (torch.nn.functional.softplus(logits) - y[t] * logits).sum()
    return loss / B


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    T=st.integers(1, 6),
    B=st.integers(1, 2),
    N=st.integers(2, 6),
    R=st.integers(1, 3),
    Wh=st.integers(1, 2),
    variant=st.sampled_from(["deepmind", "nature"]),
    links=st.sampled_from(["cache", "recompute"]),
    stop=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_whole_dnc_unroll_matches_torch_autograd_to_1e_10(T, B, N, R, Wh, variant, links, stop, seed):
    W, C, X, Y = 3, 4, 3, 2
    model = models.DNC(
        input_size=X,
        output_size=Y,
        memory_size=N,
        word_size=W,
        num_heads=R,
        num_write_heads=Wh,
        hidden_size=C,
        variant=variant,
        links=links,
        link_checkpoint=2,
        usage_stop_gradient=stop,
        memory_init="random",
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, X))
    y = (rng.random((T, B, Y)) > 0.5).astype(float)
    loss, grads = model.loss_and_grads(x, y)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    tp["_memory0"] = torch.tensor(np.asarray(model.memory0))
    tloss = torch_dnc_loss(
        tp, torch.tensor(x), torch.tensor(y), R=R, Wh=Wh, W=W, C=C, variant=variant, stop_gradient=stop
    )
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-10, atol=1e-12)
    for key in model.params:
        np.testing.assert_allclose(grads[key], tp[key].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
