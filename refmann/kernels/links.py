"""The Sparse DNC's temporal link tables (Rae et al. 2016, Supp. D): update, follow, restore, and the
backward of follow and update (``link_grads``, ours).

Layout, per batch element b. A table is two arrays of shape (B, N, K_L): ``idx[b, i, :]`` (int32
columns, −1 = empty) and ``val[b, i, :]`` (the values, 0 where empty) hold row i's at most K_L
entries **in canonical order**: value descending, equal values by column ascending, empty entries
last. A row is then a function of its set of entries, so two tables with the same contents are equal
array for array, whatever their histories. The precedence is one such row per batch element,
``prec_idx[b, :]`` and ``prec_val[b, :]`` of shape (B, K_L). Stored values are > 0.

Arithmetic. Every candidate value is computed in float64, in the order the dense rules are written
(``d · old + w · p``), rounded to the tables' dtype, and only then ranked, so a float32 table is
canonical in its own values. Candidates are kept when > 0 (exact zeros dropped), at most K_L per
row, by (value descending, column ascending).

The kernels trust their arguments: slots in [0, N), journal rows in [−1, N). The Python layer
(:mod:`refmann.memory.links`) checks them.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit


def _keep_top_loops(cand_col, cand64, cand, n, new_col, new_val):
    """The best ``len(new_col)`` of the n candidates (column, float64 value), canonical; returns their count.

    Each value is first rounded to the dtype of ``cand`` (the tables' dtype); only values > 0 are kept.
    ``new_col``/``new_val`` receive the kept entries best first, then −1/0 up to their length.
    """
    KL = new_col.shape[0]
    count = 0
    for q in range(n):
        cand[q] = cand64[q]  # round to the tables' dtype before ranking
        v = cand[q]
        c = cand_col[q]
        if not v > 0.0:
            continue
        if count == KL and (v < new_val[KL - 1] or (v == new_val[KL - 1] and c > new_col[KL - 1])):
            continue
        pos = count if count < KL else KL - 1
        while pos > 0 and (new_val[pos - 1] < v or (new_val[pos - 1] == v and new_col[pos - 1] > c)):
            new_val[pos] = new_val[pos - 1]
            new_col[pos] = new_col[pos - 1]
            pos -= 1
        new_val[pos] = v
        new_col[pos] = c
        if count < KL:
            count += 1
    for e in range(count, KL):
        new_col[e] = -1
        new_val[e] = 0.0
    return count


_keep_top = njit(_keep_top_loops, inline=True)


def _links_update_loops(
    pred_idx,
    pred_val,
    succ_idx,
    succ_val,
    prec_idx,
    prec_val,
    slots,
    weights,
    sup_slots,
    sup_w,
    pred_rows,
    pred_oi,
    pred_ov,
    pred_ni,
    pred_nv,
    succ_rows,
    succ_oi,
    succ_ov,
    succ_ni,
    succ_nv,
    prec_oi,
    prec_ov,
    prec_ni,
    prec_nv,
):
    """One write step on every batch element, in place, journalled.

    pred_idx, pred_val, succ_idx, succ_val : (B, N, K_L)   the tables, updated in place
    prec_idx, prec_val : (B, K_L)                          the precedence, updated in place
    slots : int64 (B, J);  weights : float64 (B, J)        the write weighting (duplicates add up)

    Journal (outputs; padding rows −1, their entries −1/0):
    sup_slots : int64 (B, J), sup_w : float64 (B, J)       the support S of w ascending, merged w(i)
    pred_rows : int64 (B, J)                               the rows of pred changed (S), ascending
    pred_oi, pred_ov, pred_ni, pred_nv : (B, J, K_L)       their entries before and after
    succ_rows : int64 (B, J + K_L)                         the rows of succ changed (S ∪ supp p), ascending
    succ_oi, succ_ov, succ_ni, succ_nv : (B, J + K_L, K_L)
    prec_oi, prec_ov, prec_ni, prec_nv : (B, K_L)          the precedence before and after

    With p the old precedence, d(i) = max(0, 1 − w(i)) and D = max(0, 1 − Σ_{i∈S} w(i)) (the sum in
    ascending slot order; each w(i) summed over its duplicates in the order given):

    - pred(i, j) ← d(i)·pred(i, j) + w(i)·p(j) for i ∈ S, j ≠ i;
    - succ(i, j) ← d(i)·succ(i, j) + p(i)·w(j), j ≠ i (rows S ∪ supp p);
    - p ← D·p + w;

    every changed row (and p) truncated to its K_L best entries (see :func:`_keep_top_loops`).
    """
    B, J = slots.shape
    KL = pred_idx.shape[2]
    R = succ_rows.shape[1]
    m_max = KL + max(KL, J)  # candidates of one row: its old entries plus the additions
    keys = np.empty(max(J, 1), np.int64)
    cand_col = np.empty(m_max, np.int64)
    cand64 = np.empty(m_max, np.float64)
    cand = np.empty(m_max, pred_val.dtype)
    new_col = np.empty(KL, np.int64)
    new_val = np.empty(KL, pred_val.dtype)
    p_col = np.empty(KL, np.int64)
    p_val = np.empty(KL, np.float64)
    p_sorted = np.empty(KL, np.int64)
    for b in range(B):
        # -- merge duplicate slots: sort (slot, j) keys, so each slot's weights add up in the order given
        for j in range(J):
            keys[j] = slots[b, j] * J + j
        keys[:J].sort()
        nS = 0
        total = 0.0
        q = 0
        while q < J:
            s = keys[q] // J
            w = 0.0
            while q < J and keys[q] // J == s:
                w += weights[b, keys[q] % J]
                q += 1
            if w > 0.0:  # the support: slots of positive merged weight
                sup_slots[b, nS] = s
                sup_w[b, nS] = w
                total += w
                nS += 1
        for r in range(nS, J):
            sup_slots[b, r] = -1
            sup_w[b, r] = 0.0
        D = 1.0 - total
        if D < 0.0:
            D = 0.0
        # -- the old precedence p, read before anything is written
        n_p = 0
        for e in range(KL):
            c = prec_idx[b, e]
            if c < 0:
                break
            p_col[n_p] = c
            p_val[n_p] = np.float64(prec_val[b, e])
            n_p += 1

        # -- pred rows i ∈ S: d(i)·pred(i, ·) + w(i)·p, without the diagonal
        for r in range(nS):
            i = sup_slots[b, r]
            w = sup_w[b, r]
            d = 1.0 - w
            if d < 0.0:
                d = 0.0
            pred_rows[b, r] = i
            n = 0
            for e in range(KL):
                c = pred_idx[b, i, e]
                pred_oi[b, r, e] = c
                pred_ov[b, r, e] = pred_val[b, i, e]
                if c >= 0:
                    cand_col[n] = c
                    cand64[n] = d * np.float64(pred_val[b, i, e])
                    n += 1
            n_old = n
            for e in range(n_p):
                c = p_col[e]
                if c == i:
                    continue
                add = w * p_val[e]
                found = False
                for t in range(n_old):
                    if cand_col[t] == c:
                        cand64[t] = cand64[t] + add
                        found = True
                        break
                if not found:
                    cand_col[n] = c
                    cand64[n] = add
                    n += 1
            _keep_top(cand_col, cand64, cand, n, new_col, new_val)
            for e in range(KL):
                pred_idx[b, i, e] = new_col[e]
                pred_val[b, i, e] = new_val[e]
                pred_ni[b, r, e] = new_col[e]
                pred_nv[b, r, e] = new_val[e]
        for r in range(nS, J):
            pred_rows[b, r] = -1
            for e in range(KL):
                pred_oi[b, r, e] = -1
                pred_ov[b, r, e] = 0.0
                pred_ni[b, r, e] = -1
                pred_nv[b, r, e] = 0.0

        # -- succ rows i ∈ S ∪ supp(p), ascending: d(i)·succ(i, ·) + p(i)·w, without the diagonal
        for e in range(n_p):
            p_sorted[e] = p_col[e]
        p_sorted[:n_p].sort()
        a = 0
        z = 0
        r = 0
        while a < nS or z < n_p:
            wi = 0.0
            pi = 0.0
            if z >= n_p or (a < nS and sup_slots[b, a] < p_sorted[z]):
                i = sup_slots[b, a]
                wi = sup_w[b, a]
                a += 1
            else:
                i = p_sorted[z]
                z += 1
                if a < nS and sup_slots[b, a] == i:
                    wi = sup_w[b, a]
                    a += 1
                for e in range(n_p):
                    if p_col[e] == i:
                        pi = p_val[e]
            d = 1.0 - wi
            if d < 0.0:
                d = 0.0
            succ_rows[b, r] = i
            n = 0
            for e in range(KL):
                c = succ_idx[b, i, e]
                succ_oi[b, r, e] = c
                succ_ov[b, r, e] = succ_val[b, i, e]
                if c >= 0:
                    cand_col[n] = c
                    cand64[n] = d * np.float64(succ_val[b, i, e])
                    n += 1
            n_old = n
            if pi > 0.0:  # (p(i) = 0 adds exact zeros: nothing)
                for t2 in range(nS):
                    c = sup_slots[b, t2]
                    if c == i:
                        continue
                    add = pi * sup_w[b, t2]
                    found = False
                    for t in range(n_old):
                        if cand_col[t] == c:
                            cand64[t] = cand64[t] + add
                            found = True
                            break
                    if not found:
                        cand_col[n] = c
                        cand64[n] = add
                        n += 1
            _keep_top(cand_col, cand64, cand, n, new_col, new_val)
            for e in range(KL):
                succ_idx[b, i, e] = new_col[e]
                succ_val[b, i, e] = new_val[e]
                succ_ni[b, r, e] = new_col[e]
                succ_nv[b, r, e] = new_val[e]
            r += 1
        for r2 in range(r, R):
            succ_rows[b, r2] = -1
            for e in range(KL):
                succ_oi[b, r2, e] = -1
                succ_ov[b, r2, e] = 0.0
                succ_ni[b, r2, e] = -1
                succ_nv[b, r2, e] = 0.0

        # -- precedence: D·p + w
        n = 0
        for e in range(KL):
            prec_oi[b, e] = prec_idx[b, e]
            prec_ov[b, e] = prec_val[b, e]
        for e in range(n_p):
            cand_col[n] = p_col[e]
            cand64[n] = D * p_val[e]
            n += 1
        n_old = n
        for t2 in range(nS):
            c = sup_slots[b, t2]
            add = sup_w[b, t2]
            found = False
            for t in range(n_old):
                if cand_col[t] == c:
                    cand64[t] = cand64[t] + add
                    found = True
                    break
            if not found:
                cand_col[n] = c
                cand64[n] = add
                n += 1
        _keep_top(cand_col, cand64, cand, n, new_col, new_val)
        for e in range(KL):
            prec_idx[b, e] = new_col[e]
            prec_val[b, e] = new_val[e]
            prec_ni[b, e] = new_col[e]
            prec_nv[b, e] = new_val[e]


def _hash_slot(c, bits):
    """Fibonacci hashing of a column c (0 <= c < 2**31) to one of 2**bits buckets (no int64 overflow)."""
    return ((np.int64(c) * 2654435761) & 0xFFFFFFFF) >> (32 - bits)


_hash = njit(_hash_slot, inline=True)


def _links_follow_loops(tab_idx, tab_val, slots, weights, out_idx, coef):
    """Follow the links from read weights: the k slots of highest Σ_j w(j)·table(slot_j, ·) per head.

    tab_idx, tab_val : (B, N, K_L)     succ (forward) or pred (backward)
    slots : int64 (B, H, J);  weights : float64 (B, H, J)
    out_idx : int64 (B, H, k)          receives the slots: value descending, ties by slot ascending;
                                       fewer than k of positive value are topped up with the
                                       lowest-numbered slots not listed yet (−1 past N)
    coef : (B, H, k, J)                receives table(slot_j, out_idx[a]) (0 where the row lacks it)

    Per head, the entries of the J rows read are gathered in j order into candidates, one per distinct
    column, found through a small open-addressing hash table (columns → candidates, cleared after
    the head); a candidate's value is summed in j order (the order of the dense product over j).
    O(J·K_L + C·k + k·J) for C ≤ J·K_L candidates, whatever N is.
    """
    B, H, J = slots.shape
    N, KL = tab_idx.shape[1], tab_idx.shape[2]
    k = out_idx.shape[2]
    M = max(J * KL, 1)
    bits = 1
    while (1 << bits) < 2 * M:  # load factor <= 1/2
        bits += 1
    mask = (1 << bits) - 1
    tkey = np.full(1 << bits, -1, np.int64)  # bucket -> column (−1: free)
    tcand = np.empty(1 << bits, np.int64)  # bucket -> candidate
    cand_col = np.empty(M, np.int64)
    cand_bucket = np.empty(M, np.int64)
    value = np.empty(M, np.float64)
    where = np.empty(M, np.int64)  # candidate -> its position in the output (−1: not listed)
    ent_cand = np.empty(M, np.int64)  # entry j·K_L + e -> its candidate (−1: the row ends here)
    best = np.empty(max(k, 1), np.int64)
    listed = np.empty(max(k, 1), np.int64)
    for b in range(B):
        for h in range(H):
            C = 0
            for j in range(J):
                s = slots[b, h, j]
                wj = weights[b, h, j]
                for e in range(KL):
                    c = tab_idx[b, s, e]
                    if c < 0:
                        ent_cand[j * KL + e] = -1
                        break
                    pos = _hash(c, bits)
                    while tkey[pos] >= 0 and tkey[pos] != c:
                        pos = (pos + 1) & mask
                    if tkey[pos] < 0:
                        tkey[pos] = c
                        tcand[pos] = C
                        cand_col[C] = c
                        cand_bucket[C] = pos
                        value[C] = 0.0
                        where[C] = -1
                        C += 1
                    q = tcand[pos]
                    value[q] += wj * np.float64(tab_val[b, s, e])
                    ent_cand[j * KL + e] = q
            # the k candidates of highest positive value, equal values by column ascending
            count = 0
            for q in range(C):
                v = value[q]
                c = cand_col[q]
                if not v > 0.0:
                    continue
                if count == k:
                    last = best[k - 1]
                    if v < value[last] or (v == value[last] and c > cand_col[last]):
                        continue
                pos = count if count < k else k - 1
                while pos > 0:
                    prev = best[pos - 1]
                    if value[prev] > v or (value[prev] == v and cand_col[prev] < c):
                        break
                    best[pos] = prev
                    pos -= 1
                best[pos] = q
                if count < k:
                    count += 1
            for a in range(count):
                out_idx[b, h, a] = cand_col[best[a]]
                listed[a] = best[a]
            # top up with the lowest-numbered slots not listed (every positive one is listed by now)
            a = count
            s = 0
            while a < k:
                if s >= N:
                    out_idx[b, h, a] = -1
                    listed[a] = -1
                    a += 1
                    continue
                pos = _hash(s, bits)
                while tkey[pos] >= 0 and tkey[pos] != s:
                    pos = (pos + 1) & mask
                q = tcand[pos] if tkey[pos] == s else -1
                if q >= 0 and value[q] > 0.0:
                    s += 1
                    continue
                listed[a] = q  # q >= 0: a candidate of value 0 (zero weights), its coefficients still count
                out_idx[b, h, a] = s
                a += 1
                s += 1
            for a in range(k):
                if listed[a] >= 0:
                    where[listed[a]] = a
                for j in range(J):
                    coef[b, h, a, j] = 0.0
            for j in range(J):
                s = slots[b, h, j]
                for e in range(KL):
                    q = ent_cand[j * KL + e]
                    if q < 0:
                        break
                    if where[q] >= 0:
                        coef[b, h, where[q], j] = tab_val[b, s, e]
            for q in range(C):  # empty the hash table for the next head
                tkey[cand_bucket[q]] = -1


def _links_restore_loops(
    pred_idx,
    pred_val,
    succ_idx,
    succ_val,
    prec_idx,
    prec_val,
    pred_rows,
    pred_src_idx,
    pred_src_val,
    succ_rows,
    succ_src_idx,
    succ_src_val,
    prec_src_idx,
    prec_src_val,
):
    """Write journalled rows back: ``pred[b, pred_rows[b, r]] = pred_src[b, r]`` (−1 rows skipped), the
    same for succ, and the precedence. With a journal's old rows this reverts its step; with its new
    rows it redoes it. The rows of one table within one step are distinct, so the order is immaterial.
    """
    B = pred_rows.shape[0]
    KL = pred_idx.shape[2]
    for b in range(B):
        for r in range(pred_rows.shape[1]):
            i = pred_rows[b, r]
            if i < 0:
                continue
            for e in range(KL):
                pred_idx[b, i, e] = pred_src_idx[b, r, e]
                pred_val[b, i, e] = pred_src_val[b, r, e]
        for r in range(succ_rows.shape[1]):
            i = succ_rows[b, r]
            if i < 0:
                continue
            for e in range(KL):
                succ_idx[b, i, e] = succ_src_idx[b, r, e]
                succ_val[b, i, e] = succ_src_val[b, r, e]
        for e in range(KL):
            prec_idx[b, e] = prec_src_idx[b, e]
            prec_val[b, e] = prec_src_val[b, e]


def _search_sorted(keys, n, c):
    """The position of c among the first n entries of ``keys`` (ascending, distinct), or −1 (binary search)."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < c:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and keys[lo] == c:
        return lo
    return -1


_search = njit(_search_sorted, inline=True)


def _links_update_backward_loops(
    sup_slots,
    sup_w,
    pred_rows,
    pred_oi,
    pred_ov,
    pred_ni,
    succ_rows,
    succ_oi,
    succ_ov,
    succ_ni,
    prec_oi,
    prec_ov,
    prec_ni,
    g_pred,
    g_succ,
    g_prec,
    indices,
    d_pred,
    d_succ,
    d_prec,
    dw,
    dweights,
):
    """The VJP of one update, from its journal: new-entry gradients to old entries, the precedence and w.

    Journal (as :func:`_links_update_loops` wrote it; new values are not needed):
    sup_slots : int64 (B, J), sup_w : float64 (B, J)     the support S ascending (−1 padding), w on it
    pred_rows (B, J), pred_oi, pred_ov, pred_ni (B, J, K_L)        the rows of S, old entries, new columns
    succ_rows (B, R), succ_oi, succ_ov, succ_ni (B, R, K_L)        the rows of S ∪ supp p
    prec_oi, prec_ov, prec_ni : (B, K_L)                           the old precedence p, the new columns
    g_pred (B, J, K_L), g_succ (B, R, K_L), g_prec (B, K_L)        ∂L/∂ the new entries
    indices : int64 (B, J_in)                                      the slots the update was given

    Outputs (overwritten): d_pred (B, J, K_L), d_succ (B, R, K_L) and d_prec (B, K_L), float64, ∂L/∂ the old
    entries; dw (B, J) ∂L/∂ w on S; dweights (B, J_in) each given slot's dw (0 off S).

    With d(i) = max(1 − w(i), 0), D = max(1 − Σ w, 0) (a clamped decay has zero derivative), each new
    entry finds its old entry, p(c) or w(c) by column (K_L scans, binary searches in S):

    - pred row i ∈ S:   dold += d(i)·g;  dw(i) += g·(p(c) − old);  dp(c) += w(i)·g
    - succ row i:       dold += d(i)·g;  dw(i) −= g·old (i ∈ S);  dp(i) += g·w(c);  dw(c) += p(i)·g
    - precedence:       dp_old(c) += D·g;  dw(i) −= Σ_c g·p_old(c) for every i ∈ S;  dw(c) += g
    """
    B, J = sup_slots.shape
    KL = pred_oi.shape[2]
    R = succ_rows.shape[1]
    for b in range(B):
        nS = 0
        total = 0.0
        while nS < J and sup_slots[b, nS] >= 0:
            total += sup_w[b, nS]  # ascending slot order, as the update summed it
            nS += 1
        D = 1.0 - total
        dD = 1.0 if D > 0.0 else 0.0
        if D < 0.0:
            D = 0.0
        n_p = 0
        while n_p < KL and prec_oi[b, n_p] >= 0:
            n_p += 1
        for r in range(J):
            dw[b, r] = 0.0
            for e in range(KL):
                d_pred[b, r, e] = 0.0
        for r in range(R):
            for e in range(KL):
                d_succ[b, r, e] = 0.0
        for e in range(KL):
            d_prec[b, e] = 0.0

        # pred rows i ∈ S: new(i, c) = d(i)·old(i, c) + w(i)·p(c)
        for r in range(J):
            if pred_rows[b, r] < 0:
                continue
            wi = sup_w[b, r]
            d = 1.0 - wi
            dd = 1.0 if d > 0.0 else 0.0
            if d < 0.0:
                d = 0.0
            acc = 0.0
            for n in range(KL):
                c = pred_ni[b, r, n]
                if c < 0:
                    break
                g = np.float64(g_pred[b, r, n])
                for o in range(KL):
                    if pred_oi[b, r, o] == c:
                        d_pred[b, r, o] += d * g
                        acc -= dd * g * np.float64(pred_ov[b, r, o])
                        break
                for q in range(n_p):
                    if prec_oi[b, q] == c:
                        acc += g * np.float64(prec_ov[b, q])
                        d_prec[b, q] += wi * g
                        break
            dw[b, r] += acc

        # succ rows i ∈ S ∪ supp p: new(i, c) = d(i)·old(i, c) + p(i)·w(c)
        for r in range(R):
            i = succ_rows[b, r]
            if i < 0:
                continue
            s = _search(sup_slots[b], nS, i)
            wi = sup_w[b, s] if s >= 0 else 0.0
            pq = -1
            for q in range(n_p):
                if prec_oi[b, q] == i:
                    pq = q
                    break
            pi = np.float64(prec_ov[b, pq]) if pq >= 0 else 0.0
            d = 1.0 - wi
            dd = 1.0 if d > 0.0 else 0.0
            if d < 0.0:
                d = 0.0
            acc_w = 0.0
            acc_p = 0.0
            for n in range(KL):
                c = succ_ni[b, r, n]
                if c < 0:
                    break
                g = np.float64(g_succ[b, r, n])
                for o in range(KL):
                    if succ_oi[b, r, o] == c:
                        d_succ[b, r, o] += d * g
                        acc_w -= dd * g * np.float64(succ_ov[b, r, o])
                        break
                if pq >= 0:
                    t = _search(sup_slots[b], nS, c)
                    if t >= 0:
                        acc_p += g * sup_w[b, t]
                        dw[b, t] += pi * g
            if s >= 0:
                dw[b, s] += acc_w
            if pq >= 0:
                d_prec[b, pq] += acc_p

        # precedence: p(c) = D·p(c) + w(c)
        acc = 0.0
        for n in range(KL):
            c = prec_ni[b, n]
            if c < 0:
                break
            g = np.float64(g_prec[b, n])
            for q in range(n_p):
                if prec_oi[b, q] == c:
                    d_prec[b, q] += D * g
                    acc += g * np.float64(prec_ov[b, q])
                    break
            t = _search(sup_slots[b], nS, c)
            if t >= 0:
                dw[b, t] += g
        for r in range(nS):
            dw[b, r] -= dD * acc

        # the merged weights' gradient on the slots the update was given
        for j in range(indices.shape[1]):
            t = _search(sup_slots[b], nS, indices[b, j])
            dweights[b, j] = dw[b, t] if t >= 0 else 0.0


def _links_follow_backward_loops(tab_idx, tab_val, slots, weights, out_idx, dvalues, dentry, dweights):
    """The VJP of a follow: its read weights' gradient, and the gradient of each entry of the rows it read.

    tab_idx, tab_val : (B, N, K_L)   the table follow read (succ forward, pred backward)
    slots : int64 (B, H, J);  weights (B, H, J);  out_idx : int64 (B, H, k);  dvalues (B, H, k)
    dentry : float64 (B, H, J, K_L)  receives w(j)·dv(a) on the entry of row slot_j whose column is out_a
                                     (0 on the others and on empty entries)
    dweights : float64 (B, H, J)     receives Σ_a table(slot_j, out_a)·dv(a)

    Each entry's column is looked up among the k slots of out_idx (distinct): O(J·K_L·k) per head.
    """
    B, H, J = slots.shape
    KL = tab_idx.shape[2]
    k = out_idx.shape[2]
    for b in range(B):
        for h in range(H):
            for j in range(J):
                s = slots[b, h, j]
                acc = 0.0
                for e in range(KL):
                    dentry[b, h, j, e] = 0.0
                for e in range(KL):
                    c = tab_idx[b, s, e]
                    if c < 0:
                        break
                    for a in range(k):
                        if out_idx[b, h, a] == c:
                            dv = np.float64(dvalues[b, h, a])
                            acc += np.float64(tab_val[b, s, e]) * dv
                            dentry[b, h, j, e] = np.float64(weights[b, h, j]) * dv
                            break
                dweights[b, h, j] = acc


links_update_kernel = njit(_links_update_loops)
links_follow_kernel = njit(_links_follow_loops)
links_restore_kernel = njit(_links_restore_loops)
links_update_backward_kernel = njit(_links_update_backward_loops)
links_follow_backward_kernel = njit(_links_follow_backward_loops)
