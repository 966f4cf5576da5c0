"""SAM's read over the K gathered rows of each head, fused: content weights, then the weighted sum.

The same function as :func:`refmann.ops.content_weights_forward` followed by
:func:`refmann.ops.dense_read_forward` on the (K, W) rows of one head (Rae et al. 2016, eqs. 1–2):

    sim_k = q·m_k / (‖q‖‖m_k‖ + eps),   w = softmax_k(β sim),   r = Σ_k w_k m_k

and its VJP (the derivation is the ops', ``docs/derivations/addressing.md`` and ``memory.md``):

    dw_k  = dr·m_k + dw^extra_k                      (dense read; dw^extra: the next step's use of w)
    dz_k  = w_k (dw_k − Σ_j w_j dw_j)                 (softmax)
    dβ    = Σ_k dz_k sim_k,   dsim_k = β dz_k
    dd_k  = dsim_k / D_k,     dD_k = −dd_k sim_k,     D_k = ‖q‖‖m_k‖ + eps
    dq    = Σ_k dd_k m_k + (Σ_k dD_k ‖m_k‖) q/‖q‖
    dm_k  = w_k dr + dd_k q + dD_k ‖q‖ m_k/‖m_k‖      (q/‖q‖ and m/‖m‖ read as 0 for a zero vector)

One pass per head instead of ~20 NumPy calls on tiny arrays; tests check it against the ops.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit


def _content_read_forward_loops(rows, q, beta, eps, w, reads, sim, qnorm, rnorm):
    """rows (B, H, K, W), q (B, H, W), beta (B, H) -> w, sim, rnorm (B, H, K), reads (B, H, W), qnorm (B, H)."""
    B, H, K, W = rows.shape
    for b in range(B):
        for h in range(H):
            qq = 0.0
            for c in range(W):
                qq += q[b, h, c] * q[b, h, c]
            qn = np.sqrt(qq)
            qnorm[b, h] = qn
            top = -np.inf
            for k in range(K):
                dot = 0.0
                mm = 0.0
                for c in range(W):
                    dot += q[b, h, c] * rows[b, h, k, c]
                    mm += rows[b, h, k, c] * rows[b, h, k, c]
                rn = np.sqrt(mm)
                rnorm[b, h, k] = rn
                s = dot / (qn * rn + eps)
                sim[b, h, k] = s
                top = max(top, beta[b, h] * s)
            total = 0.0
            for k in range(K):
                e = np.exp(beta[b, h] * sim[b, h, k] - top)
                w[b, h, k] = e
                total += e
            for c in range(W):
                reads[b, h, c] = 0.0
            for k in range(K):
                w[b, h, k] /= total
                for c in range(W):
                    reads[b, h, c] += w[b, h, k] * rows[b, h, k, c]


def _content_read_backward_loops(dreads, dw_extra, rows, q, beta, eps, w, sim, qnorm, rnorm, drows, dq, dbeta):
    """VJP of the forward: dreads (B, H, W), dw_extra (B, H, K) -> drows (B, H, K, W), dq (B, H, W), dbeta (B, H)."""
    B, H, K, W = rows.shape
    dw = np.empty(K, np.float64)
    for b in range(B):
        for h in range(H):
            inner = 0.0
            for k in range(K):
                acc = dw_extra[b, h, k]
                for c in range(W):
                    acc += dreads[b, h, c] * rows[b, h, k, c]
                dw[k] = acc
                inner += w[b, h, k] * acc
            qn = qnorm[b, h]
            db = 0.0
            dqn = 0.0
            for c in range(W):
                dq[b, h, c] = 0.0
            for k in range(K):
                dz = w[b, h, k] * (dw[k] - inner)
                db += dz * sim[b, h, k]
                rn = rnorm[b, h, k]
                dd = beta[b, h] * dz / (qn * rn + eps)
                dden = -dd * sim[b, h, k]
                dqn += dden * rn
                drn = dden * qn
                unit = drn / rn if rn > 0.0 else 0.0
                for c in range(W):
                    m = rows[b, h, k, c]
                    dq[b, h, c] += dd * m
                    drows[b, h, k, c] = w[b, h, k] * dreads[b, h, c] + dd * q[b, h, c] + unit * m
            dbeta[b, h] = db
            if qn > 0.0:
                for c in range(W):
                    dq[b, h, c] += dqn * q[b, h, c] / qn


content_read_forward_kernel = njit(_content_read_forward_loops)
content_read_backward_kernel = njit(_content_read_backward_loops)
