"""The Sparse DNC's link tables: after any write history they equal a dense oracle truncated by the same
rule (bit for bit), with K_L = N the untruncated recursion; revert restores every earlier state bit for
bit and reapply redoes it; follow equals the dense products then top-k; an update's work and journal do
not grow with N; the backward through follow and update (link_grads) equals finite differences of a
truncated history and, with K_L = N, an entry-by-entry dense oracle; bad arguments are refused naming them."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refmann._checks import FootprintError, unchecked
from refmann.gradcheck import SCALE_FLOOR, TOLERANCES, numerical_vjp, rel_error
from refmann.kernels import links as kl
from refmann.memory import LinkJournal, SparseLinks
from refmann.memory.links import LinkGrads
from tests.naive_links import NaiveLinks, naive_follow, naive_merge_weights

# -- histories ------------------------------------------------------------------------------------------


def random_write(rng, B, N, J):
    """One step's write weighting as update takes it: (B, J) slots with duplicates, (B, J) weights ≥ 0
    whose per-slot totals and sums are ≤ 1, of several kinds: a one-hot weight of exactly 1 (the rows
    written reset), a random simplex scaled by 1, 1/2 or a random factor, equal weights (exact ties),
    dyadic weights (exact ties in products), zeros, and tiny weights (products that underflow to 0)."""
    slots = rng.integers(0, N, (B, J))
    if J >= 2:
        slots[:, -1] = slots[:, 0]  # a duplicate in every row
    weights = np.zeros((B, J))
    for b in range(B):
        kind = rng.integers(0, 6)
        if kind == 0:
            weights[b, rng.integers(0, J)] = 1.0
        elif kind == 1:
            g = rng.random(J) * (rng.random(J) < 0.7)
            if g.sum() > 0:
                weights[b] = g / g.sum() * rng.choice([1.0, 0.5, rng.random()])
        elif kind == 2:
            weights[b] = rng.choice([1.0, 0.5, 0.25]) / J
        elif kind == 3:
            dyadic = rng.choice([0.0, 2.0**-1, 2.0**-3, 2.0**-4, 2.0**-5], J)
            weights[b] = dyadic / 2.0 ** np.ceil(np.log2(max(dyadic.sum(), 1.0)))  # still dyadic, sum <= 1
        elif kind == 4:
            weights[b] = 1e-160 * rng.random(J)
        # kind 5: all zeros (nothing written; the precedence is unchanged)
    return slots, weights


def history(rng, B, N, link_k, steps):
    """``steps`` random writes, J from 1 to 3·K_L + 1 (J ≥ K_L + 1 crowds rows past K_L entries)."""
    return [random_write(rng, B, N, int(rng.integers(1, 3 * link_k + 2))) for _ in range(steps)]


@st.composite
def link_histories(draw, full=False):
    """Sizes (B, N, K_L) — K_L = N when ``full`` — and a long history of writes."""
    B, N = draw(st.integers(1, 2)), draw(st.integers(1, 12))
    link_k = N if full else draw(st.integers(1, N))
    steps = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return (B, N, link_k), history(rng, B, N, link_k, steps), rng


def snapshot(links):
    """The six arrays of the structure, copied."""
    names = ("pred_idx", "pred_val", "succ_idx", "succ_val", "prec_idx", "prec_val")
    return tuple(getattr(links, name).copy() for name in names)


def assert_same_state(a, b):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype


def assert_canonical(links):
    """Every row (and the precedence): distinct columns in range, values > 0 in (value desc, column asc)
    order, then the empty entries (column −1, value 0); no diagonal entries."""
    N = links.N
    for idx, val, diagonal in (
        (links.pred_idx, links.pred_val, True),
        (links.succ_idx, links.succ_val, True),
        (links.prec_idx[:, None], links.prec_val[:, None], False),
    ):
        for b in range(idx.shape[0]):
            for i in range(idx.shape[1]):
                cols, vals = idx[b, i], val[b, i]
                n = int(np.sum(cols >= 0))
                assert np.all(cols[n:] == -1) and np.all(vals[n:] == 0)
                assert np.all((cols[:n] >= 0) & (cols[:n] < N)) and np.all(vals[:n] > 0)
                assert len(set(cols[:n].tolist())) == n
                assert list(np.lexsort((cols[:n], -vals[:n]))) == list(range(n))
                if diagonal:
                    assert i not in cols[:n].tolist()


# -- against the dense oracle ----------------------------------------------------------------------------


@given(case=link_histories())
def test_link_tables_equal_the_truncated_dense_oracle_after_any_write_history(case):
    """The oracle applies the dense rules to N × N matrices and truncates each row to its K_L largest
    nonzero values (ties to the lower column); the tables hold exactly that, after every step."""
    (B, N, link_k), steps, _ = case
    links = SparseLinks(N, link_k)
    links.prepare(B, np.float64)
    oracle = NaiveLinks(B, N, link_k)
    for slots, weights in steps:
        links.update(slots, weights)
        oracle.update(slots, weights)
        pred, succ, prec = links.dense()
        np.testing.assert_array_equal(pred, oracle.pred)  # same operations in the same order: same bits
        np.testing.assert_array_equal(succ, oracle.succ)
        np.testing.assert_array_equal(prec, oracle.prec)
    assert_canonical(links)
    idx, val = links.precedence()
    for b in range(B):
        np.testing.assert_array_equal(val[b][idx[b] >= 0], oracle.prec[b][idx[b][idx[b] >= 0]])


@given(case=link_histories(full=True))
def test_with_link_k_equal_to_n_nothing_is_truncated_and_the_tables_follow_the_dense_recursion(case):
    (B, N, link_k), steps, _ = case
    links = SparseLinks(N, link_k)
    links.prepare(B, np.float64)
    recursion = NaiveLinks(B, N, link_k, truncate=False)  # the rules alone, no truncation at all
    for slots, weights in steps:
        links.update(slots, weights)
        recursion.update(slots, weights)
    pred, succ, prec = links.dense()
    np.testing.assert_array_equal(pred, recursion.pred)
    np.testing.assert_array_equal(succ, recursion.succ)
    np.testing.assert_array_equal(prec, recursion.prec)


def test_one_hot_writes_chain_the_slots_in_the_order_written():
    """Writing slots 3, 1, 4 with weight 1 each: pred(1) = {3}, pred(4) = {1}, succ(3) = {1}, succ(1) = {4},
    precedence = {4}: the links read back the order of the writes (forward from 3 reaches 1)."""
    links = SparseLinks(6, 2)
    links.prepare(1, np.float64)
    for s in (3, 1, 4):
        links.update(np.array([[s]]), np.array([[1.0]]))
    pred, succ, prec = links.dense()
    assert pred[0, 1, 3] == 1 and pred[0, 4, 1] == 1 and np.count_nonzero(pred) == 2
    assert succ[0, 3, 1] == 1 and succ[0, 1, 4] == 1 and np.count_nonzero(succ) == 2
    np.testing.assert_array_equal(prec[0], np.eye(6)[4])
    out, coef = links.follow(np.array([[[3]]]), np.array([[[1.0]]]), 1, "forward")
    assert out[0, 0, 0] == 1 and coef[0, 0, 0, 0] == 1.0
    out, _ = links.follow(np.array([[[4]]]), np.array([[[1.0]]]), 1, "backward")
    assert out[0, 0, 0] == 1


# -- rollback -----------------------------------------------------------------------------------------------


@given(case=link_histories())
def test_revert_newest_first_restores_every_earlier_state_bit_for_bit_and_reapply_redoes_it(case):
    (B, N, link_k), steps, _ = case
    links = SparseLinks(N, link_k)
    links.prepare(B, np.float64)
    states, journals = [snapshot(links)], []
    for slots, weights in steps:
        journals.append(links.update(slots, weights))
        states.append(snapshot(links))
    for t in range(len(journals) - 1, -1, -1):
        links.revert(journals[t])
        assert_same_state(snapshot(links), states[t])
    fresh = SparseLinks(N, link_k)
    fresh.prepare(B, np.float64)
    assert_same_state(snapshot(links), snapshot(fresh))  # the empty initial state
    for t, journal in enumerate(journals):
        links.reapply(journal)
        assert_same_state(snapshot(links), states[t + 1])


def test_revert_and_reapply_refuse_journals_out_of_order():
    rng = np.random.default_rng(1)
    links = SparseLinks(8, 3)
    links.prepare(2, np.float64)
    first = links.update(*random_write(rng, 2, 8, 4))
    links.update(np.array([[0, 1], [2, 3]]), np.array([[0.5, 0.5], [0.25, 0.75]]))
    with pytest.raises(ValueError, match="journal: .*revert steps newest first"):
        links.revert(first)
    with pytest.raises(ValueError, match="journal: .*reapply reverted steps oldest first"):
        links.reapply(first)
    with pytest.raises(TypeError, match="journal: expected the LinkJournal"):
        links.revert(tuple(first))
    bad = first._replace(pred=first.pred._replace(rows=first.pred.rows.astype(np.int32)))
    with pytest.raises(TypeError, match="journal.pred.rows: expected a C-contiguous int64"):
        links.revert(bad)


def test_the_journal_keeps_the_write_support_and_the_old_rows():
    """What a backward pass through the links will read: the merged w on its support, the rows before."""
    links = SparseLinks(5, 2)
    links.prepare(1, np.float64)
    links.update(np.array([[2]]), np.array([[1.0]]))
    journal = links.update(np.array([[4, 0, 4]]), np.array([[0.25, 0.5, 0.25]]))
    assert isinstance(journal, LinkJournal)
    np.testing.assert_array_equal(journal.slots, [[0, 4, -1]])
    np.testing.assert_array_equal(journal.weights, [[0.5, 0.5, 0.0]])
    np.testing.assert_array_equal(journal.pred.rows, [[0, 4, -1]])  # the rows of S
    np.testing.assert_array_equal(journal.succ.rows, [[0, 2, 4, -1, -1]])  # S ∪ supp(p), p = {2}
    np.testing.assert_array_equal(journal.old_prec_idx, [[2, -1]])
    np.testing.assert_array_equal(journal.new_prec_idx, [[0, 4]])  # (0.5, 0.5): tie to the lower slot
    np.testing.assert_array_equal(journal.succ.new_idx[0, 1], [0, 4])  # succ(2) = {0: 0.5, 4: 0.5}
    np.testing.assert_array_equal(journal.succ.old_idx[0, 1], [-1, -1])


# -- follow -----------------------------------------------------------------------------------------------


@st.composite
def follow_cases(draw):
    """A link state after a random history, and read weights: (B, H, J) slots with duplicates (half of them
    slots written recently, so rows are hit), weights ≥ 0 with zeros, a k in [1, N]."""
    (B, N, link_k), steps, rng = draw(link_histories())
    H, J = draw(st.integers(1, 3)), draw(st.integers(1, 2 * link_k + 2))
    recent = np.concatenate([s for s, _ in steps[-3:]], axis=1)  # (B, ·)
    slots = rng.integers(0, N, (B, H, J))
    pick = rng.random((B, H, J)) < 0.5
    for b in range(B):
        slots[b][pick[b]] = rng.choice(recent[b], int(pick[b].sum()))
    if J >= 2:
        slots[..., -1] = slots[..., 0]
    weights = rng.random((B, H, J)) * (rng.random((B, H, J)) < 0.8)
    weights /= np.maximum(weights.sum(-1, keepdims=True), 1e-300)
    k = draw(st.integers(1, N))
    return (B, N, link_k), steps, slots, weights, k


def _run(B, N, link_k, steps):
    links = SparseLinks(N, link_k)
    links.prepare(B, np.float64)
    for slots, weights in steps:
        links.update(slots, weights)
    return links


@pytest.mark.parametrize("direction", ["forward", "backward"])
@given(case=follow_cases())
def test_follow_equals_the_dense_products_then_top_k_with_ties_to_the_lower_slot(direction, case):
    """forward: f = Σ_j w(j)·succ(slot_j, ·); backward: b = Σ_j w(j)·pred(slot_j, ·), over all N (the
    dense products succᵀw and predᵀw of the rows read), then the k best by (value desc, slot asc)."""
    (B, N, link_k), steps, slots, weights, k = case
    links = _run(B, N, link_k, steps)
    pred, succ, _ = links.dense()
    table = succ if direction == "forward" else pred
    out, coef = links.follow(slots, weights, k, direction)
    assert out.shape == (B, slots.shape[1], k) and coef.shape == (B, slots.shape[1], k, slots.shape[2])
    for b in range(B):
        for h in range(slots.shape[1]):
            want_out, want_coef, want_values = naive_follow(table[b], slots[b, h], weights[b, h], k)
            np.testing.assert_array_equal(out[b, h], want_out)
            np.testing.assert_array_equal(coef[b, h], want_coef)  # coef[a, j] = table(slot_j, out[a])
            in_order = np.zeros(k)
            for j in range(slots.shape[2]):  # the j order of the oracle's sum: the same bits
                in_order = in_order + coef[b, h, :, j] * weights[b, h, j]
            np.testing.assert_array_equal(in_order, want_values)
    # the caller's linear map: einsum may sum in another order, so it agrees to the rounding bound
    values = np.einsum("bhaj,bhj->bha", coef, weights)
    terms = np.einsum("bhaj,bhj->bha", np.abs(coef), np.abs(weights))
    bound = slots.shape[2] * np.finfo(float).eps * terms
    for b in range(B):
        for h in range(slots.shape[1]):
            _, _, want_values = naive_follow(table[b], slots[b, h], weights[b, h], k)
            assert np.all(np.abs(values[b, h] - want_values) <= bound[b, h])


@given(case=follow_cases())
def test_follow_with_k_equal_to_n_lists_every_slot_once(case):
    (B, N, link_k), steps, slots, weights, _ = case
    links = _run(B, N, link_k, steps)
    for direction in ("forward", "backward"):
        out, coef = links.follow(slots, weights, N, direction)
        for b in range(B):
            for h in range(slots.shape[1]):
                np.testing.assert_array_equal(np.sort(out[b, h]), np.arange(N))
        values = np.zeros(out.shape)
        for j in range(slots.shape[2]):  # summed in j order, as follow ranks them
            values = values + coef[..., j] * weights[..., j, None]
        assert np.all(values[..., :-1] >= values[..., 1:])  # value descending


def test_follow_pads_with_the_lowest_unlisted_slots_and_zero_coefficients():
    links = SparseLinks(7, 2)
    links.prepare(1, np.float64)
    links.update(np.array([[5]]), np.array([[1.0]]))
    links.update(np.array([[2]]), np.array([[1.0]]))  # succ(5) = {2}
    out, coef = links.follow(np.array([[[5, 6]]]), np.array([[[0.5, 0.5]]]), 4, "forward")
    np.testing.assert_array_equal(out[0, 0], [2, 0, 1, 3])  # 2 (value 0.5), then 0, 1, 3 (value 0)
    np.testing.assert_array_equal(coef[0, 0], [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    # a candidate read with weight 0 has value 0: it is listed among the zeros in slot order, with its
    # coefficient (the linear map still depends on that weight)
    out, coef = links.follow(np.array([[[5]]]), np.array([[[0.0]]]), 3, "forward")
    np.testing.assert_array_equal(out[0, 0], [0, 1, 2])
    np.testing.assert_array_equal(coef[0, 0, :, 0], [0.0, 0.0, 1.0])


# -- backward through the tables (link_grads) ---------------------------------------------------------------


@st.composite
def smooth_histories(draw, full=False):
    """Sizes and a short history away from the kinks: per step a write of (B, J) slots with a duplicate and
    weights ≥ 0.01 summing to at most 0.9 (no clamp, no exact zero, no tie but by accident), then reads of
    (B, H, J_r) slots (half of them just written) with weights ≥ 0.01, followed to k slots each way."""
    B, N = draw(st.integers(1, 2)), draw(st.integers(2, 8))
    link_k = N if full else draw(st.integers(1, N - 1))
    T, J, H, Jr = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    k = draw(st.integers(1, N))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = []
    for _ in range(T):
        slots = rng.integers(0, N, (B, J))
        slots[:, -1] = slots[:, 0]
        weights = 0.01 + rng.random((B, J))
        weights *= rng.uniform(0.2, 0.9, (B, 1)) / weights.sum(axis=1, keepdims=True)
        read_slots = np.where(rng.random((B, H, Jr)) < 0.5, slots[:, None, :1], rng.integers(0, N, (B, H, Jr)))
        steps.append((slots, weights, read_slots, 0.01 + rng.random((B, H, Jr))))
    return (B, N, link_k, k), steps, rng


def _forward(sizes, steps):
    """Run the history: per step the journal, both follows and the kept columns of every row (sorted)."""
    B, N, link_k, k = sizes
    links = SparseLinks(N, link_k)
    links.prepare(B, np.float64)
    out = []
    for slots, weights, read_slots, read_weights in steps:
        journal = links.update(slots, weights)
        follows = [links.follow(read_slots, read_weights, k, d) for d in ("forward", "backward")]
        kept = np.sort(np.concatenate([links.pred_idx, links.succ_idx, links.prec_idx[:, None]], axis=1), axis=-1)
        out.append((journal, follows, kept))
    return links, out


def _objective(links, out, steps, dvalues, dfinal, absolute=False):
    """φ = Σ_t Σ_direction ⟨dv, follow's values⟩ + ⟨dfinal, the final (pred, succ, precedence) dense⟩
    (``absolute``: the sum of the terms' magnitudes, the scale of the finite differences' rounding)."""
    f = np.abs if absolute else (lambda a: a)
    total = 0.0
    for (_, follows, _), (_, _, _, read_weights), dv in zip(out, steps, dvalues, strict=True):
        for (_, coef), d in zip(follows, dv, strict=True):
            total += float(np.sum(f(d * np.einsum("bhaj,bhj->bha", coef, read_weights))))
    return total + sum(float(np.sum(f(a * g))) for a, g in zip(links.dense(), dfinal, strict=True))


def _seed_grads(links, dfinal):
    """A LinkGrads holding the dense upstream ``dfinal`` on the entries the final tables store."""
    B, K = links.B, links.K
    grads = LinkGrads(B, K, np.float64, num_slots=links.N)
    rows = np.broadcast_to(np.arange(links.N), (B, links.N))
    bb = np.arange(B)[:, None, None]
    for acc, idx, dense in ((grads.pred, links.pred_idx, dfinal[0]), (grads.succ, links.succ_idx, dfinal[1])):
        acc.add(rows, np.where(idx >= 0, dense[bb, rows[..., None], np.maximum(idx, 0)], 0.0))
    grads.prec[...] = np.where(links.prec_idx >= 0, np.take_along_axis(dfinal[2], np.maximum(links.prec_idx, 0), 1), 0)
    return grads


def _backward(links, out, steps, dvalues, grads, each=None):
    """Backward through the history, newest first: per step (dwrite_weights, dread_weights); ``each(t)`` is
    called after step t was reverted (the tables and grads then describe the state before step t)."""
    result = [None] * len(steps)
    for t in range(len(steps) - 1, -1, -1):
        journal, follows, _ = out[t]
        slots, _, read_slots, read_weights = steps[t]
        dread = sum(
            links.follow_backward(dv, indices=read_slots, weights=read_weights, out_idx=idx, direction=d, grads=grads)
            for (idx, _), dv, d in zip(follows, dvalues[t], ("forward", "backward"), strict=True)
        )
        dwrite = links.update_backward(journal, indices=slots, grads=grads)
        links.revert(journal)
        result[t] = (dwrite, dread)
        if each is not None:
            each(t)
    return result


def _upstream(rng, sizes, steps):
    B, N, _, k = sizes
    H = steps[0][2].shape[1]
    dvalues = [(rng.standard_normal((B, H, k)), rng.standard_normal((B, H, k))) for _ in steps]
    dfinal = (rng.standard_normal((B, N, N)), rng.standard_normal((B, N, N)), rng.standard_normal((B, N)))
    return dvalues, dfinal


@settings(max_examples=15, deadline=None)
@given(case=smooth_histories())
def test_follow_and_update_backward_equal_finite_differences_through_a_truncated_history(case):
    """With K_L < N (rows truncated), the VJP of a whole history — every update's weights and every follow's
    read weights, the final tables' gradient passed back through the steps — is the derivative of
    φ = Σ ⟨dv, follow values⟩ + ⟨dfinal, final tables⟩, away from truncation and top-k changes."""
    sizes, steps, rng = case
    dvalues, dfinal = _upstream(rng, sizes, steps)
    links, out = _forward(sizes, steps)
    analytic = _backward(links, out, steps, dvalues, _seed_grads(links, dfinal))
    crossed = False

    def phi(*_):
        nonlocal crossed
        links_now, out_now = _forward(sizes, steps)
        for (_, follows_now, kept_now), (_, follows, kept) in zip(out_now, out, strict=True):
            same = np.array_equal(kept_now, kept) and all(
                np.array_equal(a[0], b[0]) for a, b in zip(follows_now, follows, strict=True)
            )
            crossed = crossed or not same
        return np.array(_objective(links_now, out_now, steps, dvalues, dfinal))

    # the floor of check_op: gradients far below the objective's scale are judged on absolute error
    floor = SCALE_FLOOR * max(1.0, _objective(*_forward(sizes, steps), steps, dvalues, dfinal, absolute=True))
    inputs = [arr for _, weights, _, read_weights in steps for arr in (weights, read_weights)]
    numeric = numerical_vjp(phi, inputs, np.array(1.0), step=1e-5)
    assume(not crossed)
    for t, (dwrite, dread) in enumerate(analytic):
        assert rel_error(dwrite, numeric[2 * t], floor=floor) <= TOLERANCES["op"], (t, dwrite, numeric[2 * t])
        assert rel_error(dread, numeric[2 * t + 1], floor=floor) <= TOLERANCES["op"], (t, dread, numeric[2 * t + 1])


def naive_links_step_backward(pred, succ, prec, slots, weights, dpred, dsucc, dprec):
    """One batch element: the VJP of the untruncated step (naive_links_step with truncate=False), entry by
    entry. Returns (dpred, dsucc, dprec) before the step and dw (N,) of the merged weights, 0 off their
    support (a slot of weight 0 is not written)."""
    N = prec.shape[0]
    w = naive_merge_weights(slots, weights, N)
    dpred_old, dsucc_old, dprec_old, dw = np.zeros((N, N)), np.zeros((N, N)), np.zeros(N), np.zeros(N)
    for i in range(N):
        d, dd = max(1.0 - w[i], 0.0), float(1.0 - w[i] > 0)
        for c in range(N):
            if c == i:  # the diagonals are constants 0
                continue
            if w[i] > 0:  # pred(i, c) = d(i)·pred(i, c) + w(i)·p(c)
                dpred_old[i, c] += d * dpred[i, c]
                dw[i] += dpred[i, c] * (prec[c] - dd * pred[i, c])
                dprec_old[c] += w[i] * dpred[i, c]
            else:
                dpred_old[i, c] += dpred[i, c]
            # succ(i, c) = d(i)·succ(i, c) + p(i)·w(c)
            dsucc_old[i, c] += d * dsucc[i, c]
            dw[i] -= dd * dsucc[i, c] * succ[i, c]
            dprec_old[i] += dsucc[i, c] * w[c]
            dw[c] += prec[i] * dsucc[i, c]
    D, dD = max(1.0 - w.sum(), 0.0), float(1.0 - w.sum() > 0)
    for c in range(N):  # p(c) = D·p(c) + w(c)
        dprec_old[c] += D * dprec[c]
        dw[c] += dprec[c]
        for i in range(N):
            dw[i] -= dD * dprec[c] * prec[c]
    return dpred_old, dsucc_old, dprec_old, np.where(w > 0, dw, 0.0)


def _dense_grads(links, grads):
    """The gradient of the stored entries, scattered to dense (B, N, N), (B, N, N), (B, N); also checks
    that empty entries hold none."""
    B, N = links.B, links.N
    rows = np.broadcast_to(np.arange(N), (B, N))
    out = []
    for acc, idx in ((grads.pred, links.pred_idx), (grads.succ, links.succ_idx)):
        g = acc.gather(rows)  # (B, N, K_L)
        assert np.all(g[idx < 0] == 0)
        dense = np.zeros((B, N, N))
        b, i, e = np.nonzero(idx >= 0)
        dense[b, i, idx[b, i, e]] = g[b, i, e]
        out.append(dense)
    assert np.all(grads.prec[links.prec_idx < 0] == 0)
    prec = np.zeros((B, N))
    b, e = np.nonzero(links.prec_idx >= 0)
    prec[b, links.prec_idx[b, e]] = grads.prec[b, e]
    return (*out, prec)


@settings(max_examples=15, deadline=None)
@given(case=smooth_histories(full=True))
def test_with_link_k_equal_to_n_the_backward_equals_the_dense_recursions_entry_by_entry(case):
    """K_L = N: nothing truncated, so after every step's backward the gradient of every stored entry, and the
    weights' and read weights' gradients, equal the entry-by-entry VJP of the dense recursion."""
    sizes, steps, rng = case
    B, N, _, k = sizes
    dvalues, dfinal = _upstream(rng, sizes, steps)
    links, out = _forward(sizes, steps)
    oracle = NaiveLinks(B, N, N, truncate=False)
    states = []  # the dense tables before each step
    for slots, weights, _, _ in steps:
        states.append((oracle.pred.copy(), oracle.succ.copy(), oracle.prec.copy()))
        oracle.update(slots, weights)
    grads = _seed_grads(links, dfinal)
    dense = [np.where(a != 0, g, 0.0) for a, g in zip(links.dense(), dfinal, strict=True)]  # stored entries only
    want = [None] * len(steps)
    for t in range(len(steps) - 1, -1, -1):
        slots, weights, read_slots, read_weights = steps[t]
        pred0, succ0, prec0 = states[t]
        after = states[t + 1] if t + 1 < len(steps) else (oracle.pred, oracle.succ, oracle.prec)
        dread = np.zeros(read_weights.shape)
        for (idx, _), dv, table, g in zip(out[t][1], dvalues[t], (after[1], after[0]), (dense[1], dense[0])):
            for b in range(B):
                for h in range(read_slots.shape[1]):
                    dvd = np.zeros(N)
                    dvd[idx[b, h]] = dv[b, h]
                    for j, s in enumerate(read_slots[b, h]):
                        dread[b, h, j] += table[b, s] @ dvd
                        g[b, s] += read_weights[b, h, j] * dvd
        dwrite = np.zeros(weights.shape)
        for b in range(B):
            dp, ds, dpr, dw = naive_links_step_backward(
                pred0[b], succ0[b], prec0[b], slots[b], weights[b], dense[0][b], dense[1][b], dense[2][b]
            )
            dense[0][b], dense[1][b], dense[2][b] = dp, ds, dpr
            dwrite[b] = dw[slots[b]]
        want[t] = (dwrite, dread, [np.where(a != 0, g, 0.0) for a, g in zip((pred0, succ0, prec0), dense)])

    def compare(t):
        for got, exp in zip(_dense_grads(links, grads), want[t][2], strict=True):
            np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)

    got = _backward(links, out, steps, dvalues, grads, each=compare)
    for (dwrite, dread), (w_dwrite, w_dread, _) in zip(got, want, strict=True):
        np.testing.assert_allclose(dwrite, w_dwrite, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dread, w_dread, rtol=1e-12, atol=1e-12)
    assert links.pending == 0


@given(case=follow_cases())
def test_follow_backwards_read_weight_gradient_is_the_transposed_coefficients(case):
    """dweights = coefᵀ dvalues (to rounding): the gradient the model takes without link_grads."""
    (B, N, link_k), steps, slots, weights, k = case
    links = _run(B, N, link_k, steps)
    dvalues = np.random.default_rng(k).standard_normal((B, slots.shape[1], k))
    for direction in ("forward", "backward"):
        out, coef = links.follow(slots, weights, k, direction)
        grads = LinkGrads(B, link_k, np.float64, num_slots=N)
        got = links.follow_backward(
            dvalues, indices=slots, weights=weights, out_idx=out, direction=direction, grads=grads
        )
        np.testing.assert_allclose(got, np.einsum("bhaj,bha->bhj", coef, dvalues), rtol=1e-12, atol=1e-13)


@given(case=follow_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_the_backward_kernels_equal_their_python_twins_bit_for_bit(case, dtype):
    """After any write history (ties, duplicates, weights of 1, zeros): the compiled update and follow
    backward kernels give their plain-Python loops' numbers exactly (under NUMBA_DISABLE_JIT=1 they are
    the same function, and the finite-difference and oracle tests above are what count)."""
    (B, N, link_k), steps, slots, weights, k = case
    links = SparseLinks(N, link_k)
    links.prepare(B, dtype)
    for write in steps[:-1]:
        links.update(*write)
    journal = links.update(*steps[-1])
    rng = np.random.default_rng(N + k)
    given = np.ascontiguousarray(steps[-1][0], dtype=np.int64)
    inputs = (
        journal.slots,
        journal.weights,
        *(getattr(journal.pred, f) for f in ("rows", "old_idx", "old_val", "new_idx")),
        *(getattr(journal.succ, f) for f in ("rows", "old_idx", "old_val", "new_idx")),
        journal.old_prec_idx,
        journal.old_prec_val,
        journal.new_prec_idx,
        rng.standard_normal(journal.pred.new_idx.shape).astype(dtype),
        rng.standard_normal(journal.succ.new_idx.shape).astype(dtype),
        rng.standard_normal((B, link_k)).astype(dtype),
        given,
    )
    outputs = {}
    for name, kernel in (("compiled", kl.links_update_backward_kernel), ("twin", kl._links_update_backward_loops)):
        out = [np.full(journal.pred.old_idx.shape, np.nan), np.full(journal.succ.old_idx.shape, np.nan)]
        out += [np.full((B, link_k), np.nan), np.full(journal.slots.shape, np.nan), np.full(given.shape, np.nan)]
        kernel(*inputs, *out)
        outputs[name] = out
    for a, b in zip(outputs["compiled"], outputs["twin"], strict=True):
        np.testing.assert_array_equal(a, b)
    out_idx, _ = links.follow(slots, weights, k, "forward")
    dvalues = rng.standard_normal(out_idx.shape).astype(dtype)
    outputs = {}
    for name, kernel in (("compiled", kl.links_follow_backward_kernel), ("twin", kl._links_follow_backward_loops)):
        dentry, dweights = np.full(slots.shape + (link_k,), np.nan), np.full(slots.shape, np.nan)
        kernel(links.succ_idx, links.succ_val, slots, weights.astype(dtype), out_idx, dvalues, dentry, dweights)
        outputs[name] = (dentry, dweights)
    for a, b in zip(outputs["compiled"], outputs["twin"], strict=True):
        np.testing.assert_array_equal(a, b)


def _backward_peaks(N):
    """Peak allocation of one update_backward + two follow_backwards + revert, at each of 8 steps."""
    B, J, H, link_k, k = 2, 13, 4, 8, 4
    rng = np.random.default_rng(0)
    links = SparseLinks(N, link_k)
    links.prepare(B, np.float64)
    grads = LinkGrads(B, link_k, np.float64, num_slots=N, capacity=512)
    history = []
    for _ in range(8):
        slots = rng.integers(0, 50, (B, J))
        weights = rng.random((B, J)) * 0.9 / J
        journal = links.update(slots, weights)
        read = (slots[:, None, :3].repeat(H, 1), np.full((B, H, 3), 0.3))
        history.append((journal, slots, read, links.follow(*read, k, "forward")[0]))
    peaks = []
    with unchecked():
        for journal, slots, (read_slots, read_weights), out in reversed(history):
            tracemalloc.start()
            dv = np.ones((B, H, k))
            for d in ("forward", "backward"):
                links.follow_backward(
                    dv, indices=read_slots, weights=read_weights, out_idx=out, direction=d, grads=grads
                )
            links.update_backward(journal, indices=slots, grads=grads)
            links.revert(journal)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    return peaks


def test_the_backward_of_a_step_allocates_the_same_at_any_n():
    small, large = _backward_peaks(1_000), _backward_peaks(200_000)
    assert max(large) < max(small) + 20_000  # a single N-sized float array would add 1.6 MB


def test_the_backward_refuses_bad_arguments_and_journals_out_of_order():
    rng = np.random.default_rng(5)
    links = SparseLinks(8, 3)
    links.prepare(2, np.float64)
    first_write = random_write(rng, 2, 8, 4)
    first = links.update(*first_write)
    links.update(np.array([[0, 1], [2, 3]]), np.array([[0.5, 0.5], [0.25, 0.75]]))
    grads = LinkGrads(2, 3, np.float64, num_slots=8)
    with pytest.raises(ValueError, match="journal: .*revert steps newest first"):
        links.update_backward(first, indices=first_write[0], grads=grads)
    with pytest.raises(TypeError, match="grads: expected a LinkGrads"):
        links.update_backward(first, indices=first_write[0], grads=None)
    with pytest.raises(ValueError, match="grads: expected a LinkGrads of batch size 2, link_k 3"):
        links.update_backward(first, indices=first_write[0], grads=LinkGrads(2, 4, np.float64))
    read = dict(indices=np.zeros((2, 1, 2), int), weights=np.full((2, 1, 2), 0.5), grads=grads)
    with pytest.raises(ValueError, match="direction: expected one of"):
        links.follow_backward(np.zeros((2, 1, 2)), out_idx=np.zeros((2, 1, 2), int), direction="up", **read)
    with pytest.raises(ValueError, match="dvalues: expected shape"):
        links.follow_backward(np.zeros((2, 1, 3)), out_idx=np.zeros((2, 1, 2), int), direction="forward", **read)


# -- cost ---------------------------------------------------------------------------------------------------


def test_an_update_at_a_hundred_thousand_slots_changes_only_its_rows_and_its_journal_does_not_grow_with_n():
    """At N = 10⁵ each update changes at most |S| pred rows and |S ∪ supp p| ≤ |S| + K_L succ rows, and
    its journal has the same size as at N = 100: the work is O(K_L·(J + K_L)), whatever N is."""
    B, J, link_k = 2, 13, 8
    sizes = {}
    for N in (100, 100_000):
        rng = np.random.default_rng(0)
        links = SparseLinks(N, link_k)
        links.prepare(B, np.float64)
        for _ in range(20):
            slots, weights = random_write(rng, B, N, J)
            slots[:, : J // 2] = rng.integers(0, 50, (B, J // 2))  # revisit a few slots: rows fill up
            before = snapshot(links)
            journal = links.update(slots, weights)
            after = snapshot(links)
            for b in range(B):
                support = np.count_nonzero(journal.slots[b] >= 0)
                for idx, val, limit in ((0, 1, support), (2, 3, support + link_k)):
                    changed = np.any((before[idx][b] != after[idx][b]) | (before[val][b] != after[val][b]), axis=1)
                    assert np.count_nonzero(changed) <= limit
                    rows = journal.pred.rows[b] if idx == 0 else journal.succ.rows[b]
                    assert set(np.flatnonzero(changed)) <= set(rows[rows >= 0].tolist())
        sizes[N] = sum(a.nbytes for a in _arrays(journal))
    row = 8 + 2 * link_k * (4 + 8)  # a row's index, its K_L int32 columns and float64 values, before and after
    assert sizes[100] == sizes[100_000] == B * (2 * 8 * J + (J + J + link_k) * row + 2 * link_k * (4 + 8))


def _arrays(obj):
    if isinstance(obj, np.ndarray):
        return [obj]
    return [a for part in obj for a in _arrays(part)]


# -- sizes, dtypes, set-up ------------------------------------------------------------------------------------


def test_nbytes_equals_nbytes_for_and_counts_int32_columns_and_dtype_values():
    for dtype in (np.float32, np.float64):
        links = SparseLinks(50, 4)
        links.prepare(3, dtype)
        assert links.nbytes() == SparseLinks.nbytes_for(3, 50, 4, dtype)
        assert links.nbytes() == (2 * 3 * 50 + 3) * 4 * (4 + np.dtype(dtype).itemsize)
    assert SparseLinks.nbytes_for(8, 10**6, 8, np.float32) == 1_024_000_512  # ~1 GB at N = 10⁶, B = 8


def test_prepare_refuses_a_footprint_past_the_budget_naming_num_slots(monkeypatch):
    monkeypatch.setenv("REFMANN_MEMORY_BUDGET", "1M")
    links = SparseLinks(100_000, 8)
    with pytest.raises(FootprintError, match="num_slots: sparse link tables of 100,000 slots"):
        links.prepare(8, np.float64)
    assert links.pred_idx is None  # nothing was allocated


def test_prepare_again_empties_the_tables_and_keeps_them_when_already_empty():
    rng = np.random.default_rng(2)
    links = SparseLinks(6, 2)
    links.prepare(2, np.float64)
    empty = snapshot(links)
    arrays = links.pred_idx
    journal = links.update(*random_write(rng, 2, 6, 3))
    links.revert(journal)
    links.prepare(2, np.float64)
    assert links.pred_idx is arrays  # every step reverted: nothing to do
    links.update(*random_write(rng, 2, 6, 3))
    links.prepare(2, np.float64)
    assert_same_state(snapshot(links), empty)
    links.prepare(2, np.float32)
    assert links.pred_val.dtype == np.float32 and links.dense()[0].dtype == np.float32


def test_float32_tables_round_each_value_once_and_stay_close_to_float64():
    rng = np.random.default_rng(3)
    B, N, link_k = 2, 10, 3
    steps = history(rng, B, N, link_k, 30)
    tables = {}
    for dtype in (np.float32, np.float64):
        links = SparseLinks(N, link_k)
        links.prepare(B, dtype)
        for slots, weights in steps:
            links.update(slots, weights)
        assert_canonical(links)
        tables[dtype] = links.dense()
    for x, y in zip(tables[np.float32], tables[np.float64]):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_unchecked_updates_and_follows_equal_checked_ones():
    rng = np.random.default_rng(4)
    steps = history(rng, 2, 9, 3, 15)
    states = []
    for checks in (True, False):
        links = SparseLinks(9, 3)
        links.prepare(2, np.float64)
        if checks:
            for slots, weights in steps:
                links.update(slots, weights)
            out = links.follow(steps[-1][0][:, None], steps[-1][1][:, None], 4, "forward")
        else:
            with unchecked():
                for slots, weights in steps:
                    links.update(slots, weights)
                out = links.follow(steps[-1][0][:, None], steps[-1][1][:, None], 4, "forward")
        states.append(snapshot(links) + out)
    assert_same_state(*states)


# -- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(num_slots=0), ValueError, "num_slots"),
        (dict(num_slots=2.5), TypeError, "num_slots"),
        (dict(num_slots=2**31), ValueError, "num_slots: expected fewer than 2\\*\\*31"),
        (dict(num_slots=4, link_k=0), ValueError, "link_k"),
        (dict(num_slots=4, link_k=True), TypeError, "link_k"),
    ],
)
def test_the_constructor_refuses_bad_sizes_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        SparseLinks(**kwargs)


def test_methods_before_prepare_and_dense_past_4096_slots_are_refused():
    links = SparseLinks(5000, 2)
    with pytest.raises(RuntimeError, match="prepare"):
        links.update(np.zeros((1, 1), int), np.zeros((1, 1)))
    links.prepare(1, np.float64)
    with pytest.raises(ValueError, match="num_slots: dense\\(\\) .* 4096"):
        links.dense()
    with pytest.raises(TypeError, match="dtype"):
        links.prepare(1, np.int64)


BAD_WRITES = [
    (np.zeros((3, 2), int), np.zeros((3, 2)), ValueError, "indices: expected shape \\(2, ·\\)"),
    (np.zeros((2, 2), int), np.zeros((2, 3)), ValueError, "weights: expected shape"),
    (np.array([[0, 6], [1, 2]]), np.zeros((2, 2)), ValueError, "indices: expected indices in \\[0, 6\\)"),
    (np.array([[0, -1], [1, 2]]), np.zeros((2, 2)), ValueError, "indices: expected indices"),
    (np.zeros((2, 2)), np.zeros((2, 2)), TypeError, "indices: expected an integer array"),
    (np.zeros((2, 2), int), np.array([[0.5, -0.1], [0, 0]]), ValueError, "weights: expected write weights >= 0"),
    (np.zeros((2, 2), int), np.array([[0.5, np.nan], [0, 0]]), ValueError, "weights: expected finite"),
    (np.zeros((2, 2), int), np.array([["a", "b"], ["c", "d"]]), TypeError, "weights"),
    (np.array([[1, 1], [0, 2]]), np.array([[0.6, 0.6], [0, 0]]), ValueError, "weights: .* <= 1, .* on slot 1"),
    (np.array([[1, 2], [0, 3]]), np.array([[0.1, 0.2], [0.6, 0.6]]), ValueError, "weights: .* sum to at most 1"),
]


@pytest.mark.parametrize("indices, weights, error, match", BAD_WRITES)
def test_update_refuses_bad_arguments_naming_them(indices, weights, error, match):
    links = SparseLinks(6, 2)
    links.prepare(2, np.float64)
    empty = snapshot(links)
    with pytest.raises(error, match=match):
        links.update(indices, weights)
    assert_same_state(snapshot(links), empty)  # refused before anything was written


def test_update_accepts_weights_past_one_by_rounding_only():
    links = SparseLinks(4, 2)
    links.prepare(1, np.float64)
    third = np.full((1, 3), 1 / 3 + 1e-16)  # sums to a hair above 1
    links.update(np.array([[0, 1, 2]]), third)
    assert np.all(links.prec_val >= 0)


BAD_READS = [
    (dict(indices=np.zeros((2, 1), int)), ValueError, "indices: expected shape \\(2, ·, ·\\)"),
    (dict(indices=np.full((2, 1, 2), 6)), ValueError, "indices: expected indices in \\[0, 6\\)"),
    (dict(weights=np.full((2, 1, 3), 0.5)), ValueError, "weights: expected shape"),
    (dict(weights=np.array([[[0.5, -1.0]], [[0, 0]]])), ValueError, "weights: expected read weights >= 0"),
    (dict(weights=np.array([[[0.5, np.inf]], [[0, 0]]])), ValueError, "weights: expected finite"),
    (dict(k=0), ValueError, "k: expected an int >= 1"),
    (dict(k=7), ValueError, "k: expected 1 <= k <= N = 6"),
    (dict(k=2.0), TypeError, "k: expected an int"),
    (dict(direction="sideways"), ValueError, "direction: expected one of \\('forward', 'backward'\\)"),
]


@pytest.mark.parametrize("change, error, match", BAD_READS)
def test_follow_refuses_bad_arguments_naming_them(change, error, match):
    links = SparseLinks(6, 2)
    links.prepare(2, np.float64)
    args = dict(indices=np.zeros((2, 1, 2), int), weights=np.full((2, 1, 2), 0.5), k=2, direction="forward")
    args.update(change)
    with pytest.raises(error, match=match):
        links.follow(**args)
