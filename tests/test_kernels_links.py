"""kernels/links.py: each compiled kernel equals its plain-Python ``_…_loops`` twin on random link states
(every output and journal entry, bit for bit, float32 and float64), and both equal the dense oracle of
tests/naive_links.py on one step; restore puts journalled rows back.

Under NUMBA_DISABLE_JIT=1 the kernels *are* the twins, and the comparison with naive_links.py is what counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.kernels import links as kl
from tests.naive_links import naive_follow, naive_links_step

pytestmark = pytest.mark.kernel

UPDATE = {"compiled": kl.links_update_kernel, "twin": kl._links_update_loops}
FOLLOW = {"compiled": kl.links_follow_kernel, "twin": kl._links_follow_loops}
RESTORE = {"compiled": kl.links_restore_kernel, "twin": kl._links_restore_loops}


def random_rows(rng, B, R, N, link_k, dtype, *, exclude_own=True):
    """(B, R, K_L) canonical rows: up to K_L distinct columns (not the row's own index when
    ``exclude_own``), values > 0 drawn partly from a few dyadic numbers (ties), value desc, column asc."""
    idx = np.full((B, R, link_k), -1, np.int32)
    val = np.zeros((B, R, link_k), dtype)
    for b in range(B):
        for i in range(R):
            allowed = [c for c in range(N) if not (exclude_own and c == i)]
            n = int(rng.integers(0, min(link_k, len(allowed)) + 1))
            cols = rng.choice(allowed, n, replace=False) if n else np.zeros(0, int)
            vals = np.where(rng.random(n) < 0.4, rng.choice([0.5, 0.25, 0.125], n), rng.random(n) + 1e-3)
            vals = vals.astype(dtype)
            order = np.lexsort((cols, -vals))
            idx[b, i, :n], val[b, i, :n] = cols[order], vals[order]
    return idx, val


def dense_rows(idx, val, N):
    """Canonical rows (..., R, K_L) as a dense (..., R, N) float64 array."""
    out = np.zeros(idx.shape[:-1] + (N,))
    for pos in np.ndindex(idx.shape[:-1]):
        for c, v in zip(idx[pos], val[pos]):
            if c >= 0:
                out[pos + (c,)] = v
    return out


@st.composite
def link_states(draw):
    """Random tables and precedence, a write (with duplicates and zeros) and its sizes."""
    B, N = draw(st.integers(1, 3)), draw(st.integers(1, 10))
    link_k = draw(st.integers(1, N + 1))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pred = random_rows(rng, B, N, N, link_k, dtype)
    succ = random_rows(rng, B, N, N, link_k, dtype)
    prec_idx, prec_val = random_rows(rng, B, 1, N, link_k, dtype, exclude_own=False)
    prec_val /= max(1.0, float(prec_val.sum(-1).max()))  # a precedence sums to at most 1
    prec_val = prec_val.astype(dtype)
    J = draw(st.integers(0, 3 * link_k + 1))
    slots = rng.integers(0, N, (B, J))
    if J >= 2:
        slots[:, -1] = slots[:, 0]
    weights = rng.random((B, J)) * (rng.random((B, J)) < 0.8)
    weights /= max(1.0, float(weights.sum(-1).max()))
    return (B, N, link_k, dtype), pred, succ, (prec_idx[:, 0].copy(), prec_val[:, 0].copy()), slots, weights


def run_update(update, pred, succ, prec, slots, weights):
    """Copies of the state, updated; returns (new state arrays, journal arrays)."""
    pi, pv = pred[0].copy(), pred[1].copy()
    si, sv = succ[0].copy(), succ[1].copy()
    qi, qv = prec[0].copy(), prec[1].copy()
    B, J = slots.shape
    K = pi.shape[2]
    R = J + K
    vdt = pv.dtype
    journal = (
        np.full((B, J), -9, np.int64),
        np.full((B, J), np.nan),
        np.full((B, J), -9, np.int64),
        np.full((B, J, K), -9, np.int32),
        np.full((B, J, K), np.nan, vdt),
        np.full((B, J, K), -9, np.int32),
        np.full((B, J, K), np.nan, vdt),
        np.full((B, R), -9, np.int64),
        np.full((B, R, K), -9, np.int32),
        np.full((B, R, K), np.nan, vdt),
        np.full((B, R, K), -9, np.int32),
        np.full((B, R, K), np.nan, vdt),
        np.full((B, K), -9, np.int32),
        np.full((B, K), np.nan, vdt),
        np.full((B, K), -9, np.int32),
        np.full((B, K), np.nan, vdt),
    )
    update(pi, pv, si, sv, qi, qv, slots, weights, *journal)
    return (pi, pv, si, sv, qi, qv), journal


@given(case=link_states())
def test_update_kernel_and_twin_agree_bit_for_bit_and_equal_one_dense_step(case):
    (B, N, link_k, dtype), pred, succ, prec, slots, weights = case
    runs = {name: run_update(kernel, pred, succ, prec, slots, weights) for name, kernel in UPDATE.items()}
    for x, y in zip(runs["compiled"][0] + runs["compiled"][1], runs["twin"][0] + runs["twin"][1], strict=True):
        np.testing.assert_array_equal(x, y)  # every table entry and every journal entry (no NaN left)
        assert x.dtype == y.dtype
    if dtype != np.float64:
        return  # the oracle works in float64
    (pi, pv, si, sv, qi, qv), _ = runs["twin"]
    for b in range(B):
        want = naive_links_step(
            dense_rows(pred[0][b], pred[1][b], N),
            dense_rows(succ[0][b], succ[1][b], N),
            dense_rows(prec[0][b], prec[1][b], N),
            slots[b],
            weights[b],
            link_k,
        )
        np.testing.assert_array_equal(dense_rows(pi[b], pv[b], N), want[0])
        np.testing.assert_array_equal(dense_rows(si[b], sv[b], N), want[1])
        np.testing.assert_array_equal(dense_rows(qi[b], qv[b], N), want[2])


@given(case=link_states())
def test_restore_kernel_and_twin_put_the_old_rows_back_and_then_the_new_ones(case):
    (B, N, link_k, dtype), pred, succ, prec, slots, weights = case
    before = (pred[0], pred[1], succ[0], succ[1], prec[0], prec[1])
    after, journal = run_update(kl.links_update_kernel, pred, succ, prec, slots, weights)
    _, _, pred_rows, poi, pov, pni, pnv, succ_rows, soi, sov, sni, snv, qoi, qov, qni, qnv = journal
    for restore in RESTORE.values():
        state = [a.copy() for a in after]
        restore(*state, pred_rows, poi, pov, succ_rows, soi, sov, qoi, qov)
        for x, y in zip(state, before, strict=True):
            np.testing.assert_array_equal(x, y)
        restore(*state, pred_rows, pni, pnv, succ_rows, sni, snv, qni, qnv)
        for x, y in zip(state, after, strict=True):
            np.testing.assert_array_equal(x, y)


@given(case=link_states(), data=st.data())
def test_follow_kernel_and_twin_agree_and_equal_the_dense_product_then_top_k(case, data):
    (B, N, link_k, dtype), pred, succ, _, _, _ = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    H, J = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 2 * link_k + 2))
    k = data.draw(st.integers(1, N))
    slots = rng.integers(0, N, (B, H, J))
    if J >= 2:
        slots[..., -1] = slots[..., 0]
    weights = rng.random((B, H, J)) * (rng.random((B, H, J)) < 0.8)
    tab_idx, tab_val = data.draw(st.sampled_from([pred, succ]))
    results = {}
    for name, follow in FOLLOW.items():
        out = np.full((B, H, k), -9, np.int64)
        coef = np.full((B, H, k, J), np.nan, dtype)
        follow(tab_idx, tab_val, slots, weights, out, coef)
        results[name] = out, coef
    for x, y in zip(results["compiled"], results["twin"], strict=True):
        np.testing.assert_array_equal(x, y)
    out, coef = results["twin"]
    for b in range(B):
        table = dense_rows(tab_idx[b], tab_val[b], N)
        for h in range(H):
            want_out, want_coef, _ = naive_follow(table, slots[b, h], weights[b, h], k)
            np.testing.assert_array_equal(out[b, h], want_out)
            np.testing.assert_array_equal(coef[b, h], want_coef.astype(dtype))


def test_follow_kernels_list_minus_one_past_the_last_slot():
    """k > N never comes through SparseLinks (it refuses it); the kernels still stay in bounds."""
    idx = np.full((1, 3, 2), -1, np.int32)
    idx[0, 1] = [2, -1]
    val = np.zeros((1, 3, 2))
    val[0, 1, 0] = 0.5
    for follow in FOLLOW.values():
        out = np.full((1, 1, 5), -9, np.int64)
        coef = np.full((1, 1, 5, 1), np.nan)
        follow(idx, val, np.array([[[1]]]), np.array([[[1.0]]]), out, coef)
        np.testing.assert_array_equal(out[0, 0], [2, 0, 1, -1, -1])
        np.testing.assert_array_equal(coef[0, 0, :, 0], [0.5, 0, 0, 0, 0])
