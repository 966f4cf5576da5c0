"""Row-sparse gradients through refmann.train.optim: clipping RowGrads, dense optimizers on RowGrads,
lazy sparse Adam, row-wise AdaGrad, parameter groups (combine) and their checkpoints.

Exact comparisons (``assert_array_equal``) are used where the two sides do the same floating-point
operations on the same numbers: a RowGrad's repeated rows are summed in order of appearance from
zero, exactly as a scatter-add densifies it, and the update rules are elementwise (or per row).
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.ops import RowGrad
from refmann.train import (
    adam,
    clip_elementwise,
    clip_global_norm,
    combine,
    make_optimizer,
    rmsprop,
    rowwise_adagrad,
    sgd,
    sparse_adam,
    sparse_adam_inplace,
    state_from_arrays,
    state_to_arrays,
)

RTOL_LOOP = 1e-12  # vectorised NumPy vs a scalar loop in float64: same operations, summation order may differ
RTOL_NORM = 1e-12  # a norm over coalesced rows vs over the dense array (pairwise sums in another order)
ELEMENTS = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)

# --------------------------------------------------------------------------- naive references


def naive_densify(g: RowGrad) -> np.ndarray:
    """out[indices[j]] += rows[j], one row at a time (the definition of a RowGrad)."""
    idx, rows = np.asarray(g.indices), np.asarray(g.rows)
    if idx.ndim == 1:
        out = np.zeros((g.num_rows, rows.shape[1]), rows.dtype)
        for j, i in enumerate(idx):
            out[i] += rows[j]
        return out
    B, J = idx.shape
    out = np.zeros((B, g.num_rows, rows.shape[2]), rows.dtype)
    for b in range(B):
        for j in range(J):
            out[b, idx[b, j]] += rows[b, j]
    return out


def naive_present(g: RowGrad) -> set:
    """The rows of the dense array that a RowGrad names: {(i,)} for a table, {(b, i)} for a batch."""
    idx = np.asarray(g.indices)
    if idx.ndim == 1:
        return {(int(i),) for i in idx}
    return {(b, int(i)) for b in range(idx.shape[0]) for i in idx[b]}


def naive_sparse_adam(p0, grads_seq, *, lr, beta1, beta2, eps):
    """Lazy Adam, one scalar at a time: only entries of present rows move; t is the global step."""
    p, m, v = p0.astype(np.float64).copy(), np.zeros(p0.shape), np.zeros(p0.shape)
    for t, g in enumerate(grads_seq, start=1):
        dense = naive_densify(g)
        for row in naive_present(g):
            for j in range(p.shape[-1]):
                e = (*row, j)
                gi = float(dense[e])
                m[e] = beta1 * m[e] + (1 - beta1) * gi
                v[e] = beta2 * v[e] + (1 - beta2) * gi * gi
                m_hat, v_hat = m[e] / (1 - beta1**t), v[e] / (1 - beta2**t)
                p[e] = p[e] - lr * m_hat / (math.sqrt(v_hat) + eps)
    return p, m, v


def naive_rowwise_adagrad(p0, grads_seq, *, lr, eps):
    """G[r] += mean_j g[r, j]^2; theta[r, j] -= lr g[r, j] / (sqrt(G[r]) + eps), row by row."""
    p = p0.astype(np.float64).copy()
    D = p.shape[-1] if p.ndim else 1
    rows = p.reshape(-1, D)  # a view: writes go into p
    G = np.zeros(rows.shape[0])
    for g in grads_seq:
        d = (naive_densify(g) if isinstance(g, RowGrad) else np.asarray(g, np.float64)).reshape(rows.shape)
        for r in range(rows.shape[0]):
            G[r] += sum(float(x) * float(x) for x in d[r]) / D
            for j in range(D):
                rows[r, j] -= lr * float(d[r, j]) / (math.sqrt(G[r]) + eps)
    return p, G.reshape(p0.shape[:-1])


# --------------------------------------------------------------------------- strategies


@st.composite
def index_lists(draw, num_rows, *, count, length, every_row=False):
    """``count`` lists of ``length`` row indices in [0, num_rows), drawn from a small pool so that
    repeats are common (where scatter-adds lose updates); with ``every_row`` each list holds every row."""
    pool = draw(st.lists(st.integers(0, num_rows - 1), min_size=1, max_size=3))
    one = st.one_of(st.sampled_from(pool), st.integers(0, num_rows - 1))
    out = []
    for _ in range(count):
        extra = draw(st.lists(one, min_size=length, max_size=length))
        out.append(draw(st.permutations(extra + (list(range(num_rows)) if every_row else []))))
    return out


@st.composite
def row_grads(draw, num_rows, width, *, batch=None, every_row=False, dtype=np.float64, min_extra=1):
    """A RowGrad over an (N, D) table (``batch=None``) or a (B, N, W) batch of memories."""
    extra = draw(st.integers(0 if every_row else min_extra, 5))
    lists = draw(index_lists(num_rows, count=1 if batch is None else batch, length=extra, every_row=every_row))
    J = len(lists[0])
    if batch is None:
        indices, shape = np.array(lists[0], dtype=np.int64).reshape(J), (J, width)
    else:
        indices, shape = np.array(lists, dtype=np.int64).reshape(batch, J), (batch, J, width)
    rows = draw(hnp.arrays(np.float64, shape, elements=ELEMENTS)).astype(dtype)
    return RowGrad(indices, rows, num_rows)


@st.composite
def sparse_problems(draw, *, every_row=False, max_steps=4, dtype=np.float64):
    """A parameter of a RowGrad's dense shape, plus a sequence of RowGrads for it."""
    N, D = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    batch = draw(st.one_of(st.none(), st.integers(1, 3)))
    shape = (N, D) if batch is None else (batch, N, D)
    p = draw(hnp.arrays(np.float64, shape, elements=ELEMENTS)).astype(dtype)
    steps = draw(st.integers(1, max_steps))
    seq = [draw(row_grads(N, D, batch=batch, every_row=every_row, dtype=dtype)) for _ in range(steps)]
    return p, seq


def run(step, params, grads_seq, state=None):
    for grads in grads_seq:
        params, state = step(params, grads, state)
    return params, state


def copy_rowgrad(g):
    return RowGrad(g.indices.copy(), g.rows.copy(), g.num_rows)


# --------------------------------------------------------------------------- clipping


@given(sparse_problems(max_steps=1), st.floats(1e-3, 100.0), st.sampled_from([(), (3,), (2, 2)]))
def test_clip_global_norm_treats_a_rowgrad_as_its_densified_gradient(problem, max_norm, dense_shape):
    _, (g,) = problem
    w = np.linspace(-2.0, 3.0, math.prod(dense_shape)).reshape(dense_shape)
    clipped, norm = clip_global_norm({"values": g, "w": w}, max_norm)
    ref, ref_norm = clip_global_norm({"values": naive_densify(g), "w": w}, max_norm)
    assert isinstance(clipped["values"], RowGrad)
    flat = np.concatenate([naive_densify(g).ravel(), w.ravel()])
    np.testing.assert_allclose(norm, math.hypot(*flat), rtol=RTOL_NORM)
    np.testing.assert_allclose(norm, ref_norm, rtol=RTOL_NORM)
    np.testing.assert_allclose(naive_densify(clipped["values"]), ref["values"], rtol=RTOL_NORM, atol=0)
    np.testing.assert_allclose(clipped["w"], ref["w"], rtol=RTOL_NORM, atol=0)
    if norm <= max_norm:  # unclipped: the very same numbers
        np.testing.assert_array_equal(naive_densify(clipped["values"]), naive_densify(g))


@given(sparse_problems(max_steps=1), st.floats(1e-3, 20.0))
def test_clip_elementwise_sums_repeated_rows_before_clipping(problem, value):
    _, (g,) = problem
    clipped = clip_elementwise({"values": g}, value)["values"]
    assert isinstance(clipped, RowGrad) and clipped.num_rows == g.num_rows
    np.testing.assert_array_equal(naive_densify(clipped), np.clip(naive_densify(g), -value, value))


@given(sparse_problems(max_steps=1))
def test_clipping_returns_a_coalesced_rowgrad_with_the_same_rows_present(problem):
    _, (g,) = problem
    for clipped in (clip_elementwise({"v": g}, np.inf)["v"], clip_global_norm({"v": g}, np.inf)[0]["v"]):
        assert clipped.indices.ndim == g.indices.ndim and clipped.rows.dtype == g.rows.dtype
        assert naive_present(clipped) == naive_present(g)
        for b_indices in np.atleast_2d(clipped.indices):  # padding repeats a present index with a zero row
            distinct = np.unique(b_indices)
            assert b_indices[: distinct.size].tolist() == distinct.tolist()
        np.testing.assert_array_equal(naive_densify(clipped), naive_densify(g))


@pytest.mark.parametrize("layout", ["table", "batch"])
def test_clipping_never_builds_the_n_row_table(layout):
    """num_rows = 2^50: any N-row allocation would fail, so both clips must work on the rows alone."""
    N = 2**50
    idx = np.array([N - 1, 7, N - 1, 0])
    rows = np.array([[3.0, 4.0], [1.0, -1.0], [3.0, 4.0], [0.0, 0.0]])
    if layout == "table":
        g = RowGrad(idx, rows, N)
    else:  # two copies of the table's rows, reordered
        g = RowGrad(np.stack([idx, idx[::-1]]), np.stack([rows, rows[::-1]]), N)
    per_copy = math.sqrt(6.0**2 + 8.0**2 + 1.0 + 1.0)  # row N-1 holds (6, 8) once its repeats are summed
    copies = 1 if layout == "table" else 2
    clipped, norm = clip_global_norm({"values": g}, 1.0)
    np.testing.assert_allclose(norm, per_copy * math.sqrt(copies), rtol=1e-15)
    out = clipped["values"]
    assert out.num_rows == N
    first = (out.indices, out.rows) if layout == "table" else (out.indices[0], out.rows[0])
    assert first[0].tolist() == [0, 7, N - 1]
    np.testing.assert_allclose(first[1], np.array([[0.0, 0.0], [1.0, -1.0], [6.0, 8.0]]) / norm, rtol=1e-15)
    e = clip_elementwise({"values": g}, 5.0)["values"]
    np.testing.assert_array_equal((e.rows if layout == "table" else e.rows[0])[-1], [5.0, 5.0])


# --------------------------------------------------------------------------- dense optimizers densify


@given(sparse_problems(), st.sampled_from(["sgd", "rmsprop", "adam"]))
def test_dense_optimizers_take_a_rowgrad_as_its_densified_gradient(problem, name):
    p, seq = problem
    hyper = {"sgd": dict(lr=0.1, momentum=0.9), "rmsprop": dict(lr=1e-2), "adam": dict(lr=1e-2)}[name]
    step = make_optimizer(name, **hyper)
    w = np.arange(3.0)
    got, s_got = run(step, {"values": p, "w": w}, [{"values": g, "w": w} for g in seq])
    ref, s_ref = run(step, {"values": p, "w": w}, [{"values": naive_densify(g), "w": w} for g in seq])
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    a_got, a_ref = state_to_arrays(s_got), state_to_arrays(s_ref)
    assert set(a_got) == set(a_ref)
    for k in a_ref:
        np.testing.assert_array_equal(a_got[k], a_ref[k])


# --------------------------------------------------------------------------- sparse Adam


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(
    data=st.data(),
    lr=st.floats(1e-4, 1e-1),
    beta1=st.sampled_from([0.0, 0.9]),
    beta2=st.sampled_from([0.0, 0.999]),
    eps=st.sampled_from([1e-8, 1e-3]),
)
def test_sparse_adam_equals_dense_adam_when_every_row_is_touched(dtype, data, lr, beta1, beta2, eps):
    """Exact, not 1e-15: with every row present, sparse Adam applies the very operations of Adam
    (one shared elementwise rule) to the very gradient (repeats summed in the order a scatter-add
    densifies them), so no rounding can differ. No weight decay: neither optimizer has one."""
    p, seq = data.draw(sparse_problems(every_row=True, dtype=dtype))
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    got, s_got = run(lambda q, g, s: sparse_adam(q, g, s, **hyper), {"values": p}, [{"values": g} for g in seq])
    ref, s_ref = run(lambda q, g, s: adam(q, g, s, **hyper), {"values": p}, [{"values": naive_densify(g)} for g in seq])
    assert got["values"].dtype == dtype
    np.testing.assert_array_equal(got["values"], ref["values"])
    for slot in ("m", "v"):
        np.testing.assert_array_equal(s_got[slot]["values"], s_ref[slot]["values"])
    assert s_got["step"] == s_ref["step"] == len(seq)


@given(
    sparse_problems(max_steps=5),
    st.floats(1e-4, 1e-1),
    st.sampled_from([0.0, 0.9]),
    st.sampled_from([0.0, 0.999]),
    st.sampled_from([1e-8, 1e-3]),
)
def test_sparse_adam_matches_lazy_scalar_loop(problem, lr, beta1, beta2, eps):
    p, seq = problem
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    got, state = run(lambda q, g, s: sparse_adam(q, g, s, **hyper), {"values": p}, [{"values": g} for g in seq])
    p_ref, m_ref, v_ref = naive_sparse_adam(p, seq, **hyper)
    np.testing.assert_allclose(got["values"], p_ref, rtol=RTOL_LOOP, atol=1e-13)
    np.testing.assert_allclose(state["m"]["values"], m_ref, rtol=RTOL_LOOP, atol=1e-13)
    np.testing.assert_allclose(state["v"]["values"], v_ref, rtol=RTOL_LOOP, atol=1e-13)


@given(data=st.data())
def test_sparse_adam_leaves_untouched_rows_and_their_moments_unchanged(data):
    p, warmup = data.draw(sparse_problems(every_row=True, max_steps=2))  # non-zero moments everywhere
    N, D = p.shape[-2], p.shape[-1]
    batch = None if p.ndim == 2 else p.shape[0]
    g = data.draw(row_grads(N, D, batch=batch))
    params, state = run(sparse_adam, {"values": p}, [{"values": w} for w in warmup])
    new, new_state = sparse_adam(params, {"values": g}, state)
    present = naive_present(g)
    for row in np.ndindex(p.shape[:-1]):
        if row in present:
            continue
        np.testing.assert_array_equal(new["values"][row], params["values"][row])
        for slot in ("m", "v"):
            np.testing.assert_array_equal(new_state[slot]["values"][row], state[slot]["values"][row])
    # and a present row moves exactly as dense Adam moves it (same moments, same step)
    dense_new, _ = adam(params, {"values": naive_densify(g)}, state)
    for row in present:
        np.testing.assert_array_equal(new["values"][row], dense_new["values"][row])


def test_sparse_adam_bias_correction_counts_global_steps_not_touches():
    """Row 1 is first touched at step 3, from zero moments: m̂ = (1-β₁)g/(1-β₁³), not g."""
    p = {"values": np.zeros((2, 1))}
    touch0 = {"values": RowGrad(np.array([0]), np.array([[1.0]]), 2)}
    touch1 = {"values": RowGrad(np.array([1]), np.array([[2.0]]), 2)}
    params, state = run(sparse_adam, p, [touch0, touch0, touch1])
    b1, b2, t = 0.9, 0.999, 3
    m_hat, v_hat = (1 - b1) * 2.0 / (1 - b1**t), (1 - b2) * 4.0 / (1 - b2**t)
    np.testing.assert_allclose(params["values"][1, 0], -1e-3 * m_hat / (math.sqrt(v_hat) + 1e-8), rtol=1e-14)
    assert state["step"] == 3


@given(sparse_problems(every_row=True))
def test_sparse_adam_on_dense_gradients_is_adam(problem):
    p, seq = problem
    dense_seq = [{"values": naive_densify(g), "w": np.full(2, float(i))} for i, g in enumerate(seq)]
    params = {"values": p, "w": np.ones(2)}
    got, s_got = run(sparse_adam, params, dense_seq)
    ref, s_ref = run(adam, params, dense_seq)
    for k in params:
        np.testing.assert_array_equal(got[k], ref[k])
        np.testing.assert_array_equal(s_got["m"][k], s_ref["m"][k])


def test_adam_state_continues_under_sparse_adam():
    """Same slots, same layout: a run may switch between the dense and the lazy rule."""
    params = {"values": np.arange(6.0).reshape(3, 2)}
    g_dense = {"values": np.ones((3, 2))}
    p1, s1 = adam(params, g_dense)
    p2, s2 = sparse_adam(p1, {"values": RowGrad(np.array([0, 1, 2]), np.ones((3, 2)), 3)}, s1)
    p3, s3 = adam(p1, g_dense, s1)
    np.testing.assert_array_equal(p2["values"], p3["values"])
    assert s2["step"] == s3["step"] == 2


# --------------------------------------------------------------------------- row-wise AdaGrad


@given(sparse_problems(max_steps=5), st.floats(1e-3, 1.0), st.sampled_from([1e-10, 1e-3]))
def test_rowwise_adagrad_matches_naive_loop_on_rowgrads(problem, lr, eps):
    p, seq = problem
    got, state = run(
        lambda q, g, s: rowwise_adagrad(q, g, s, lr=lr, eps=eps), {"values": p}, [{"values": g} for g in seq]
    )
    p_ref, G_ref = naive_rowwise_adagrad(p, seq, lr=lr, eps=eps)
    np.testing.assert_allclose(got["values"], p_ref, rtol=RTOL_LOOP, atol=1e-13)
    np.testing.assert_allclose(state["sum"]["values"], G_ref, rtol=RTOL_LOOP, atol=1e-13)
    assert state["sum"]["values"].shape == p.shape[:-1]


@given(st.data(), st.floats(1e-3, 1.0))
def test_rowwise_adagrad_matches_naive_loop_on_dense_gradients(data, lr):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=3))
    p = data.draw(hnp.arrays(np.float64, shape, elements=ELEMENTS))
    seq = [data.draw(hnp.arrays(np.float64, shape, elements=ELEMENTS)) for _ in range(data.draw(st.integers(1, 4)))]
    got, state = run(lambda q, g, s: rowwise_adagrad(q, g, s, lr=lr), {"w": p}, [{"w": g} for g in seq])
    p_ref, G_ref = naive_rowwise_adagrad(p, seq, lr=lr, eps=1e-10)
    np.testing.assert_allclose(got["w"], p_ref, rtol=RTOL_LOOP, atol=1e-13)
    np.testing.assert_allclose(state["sum"]["w"], G_ref, rtol=RTOL_LOOP, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_rowwise_adagrad_of_a_rowgrad_equals_it_on_the_densified_gradient(dtype, data):
    """Exact even with rows left out: a zero gradient row changes neither its accumulator nor itself."""
    p, seq = data.draw(sparse_problems(dtype=dtype))
    got, s_got = run(rowwise_adagrad, {"values": p}, [{"values": g} for g in seq])
    ref, s_ref = run(rowwise_adagrad, {"values": p}, [{"values": naive_densify(g)} for g in seq])
    assert got["values"].dtype == s_got["sum"]["values"].dtype == dtype
    np.testing.assert_array_equal(got["values"], ref["values"])
    np.testing.assert_array_equal(s_got["sum"]["values"], s_ref["sum"]["values"])


def test_rowwise_adagrad_keeps_one_scalar_per_row():
    params = {"values": np.ones((5, 4)), "bias": np.ones(4), "scale": np.array(2.0)}
    _, state = rowwise_adagrad(
        params,
        {"values": RowGrad(np.array([3]), np.full((1, 4), 2.0), 5), "bias": np.full(4, 3.0), "scale": np.array(1.0)},
    )
    np.testing.assert_array_equal(state["sum"]["values"], [0.0, 0.0, 0.0, 4.0, 0.0])
    assert state["sum"]["bias"].shape == () and float(state["sum"]["bias"]) == 9.0
    assert state["sum"]["scale"].shape == () and float(state["sum"]["scale"]) == 1.0


# --------------------------------------------------------------------------- purity and checkpoints

SPARSE_STEPS = {
    "sparse_adam": make_optimizer("sparse_adam", lr=1e-2),
    "rowwise_adagrad": make_optimizer("rowwise_adagrad", lr=1e-1),
    "combine": combine(
        {"values": make_optimizer("sparse_adam", lr=1e-2), "rest": make_optimizer("adam", lr=1e-3)},
        group_of=lambda key: "values" if key == "pkm.values" else "rest",
    ),
}


def sparse_stream(dtype, steps, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "pkm.values": rng.normal(size=(7, 3)).astype(dtype),
        "query.weight": rng.normal(size=(3, 2)).astype(dtype),
    }
    seq = []
    for _ in range(steps):
        idx = rng.integers(0, 7, size=5)
        seq.append(
            {
                "pkm.values": RowGrad(idx, rng.normal(size=(5, 3)).astype(dtype), 7),
                "query.weight": rng.normal(size=(3, 2)).astype(dtype),
            }
        )
    return params, seq


@pytest.mark.parametrize("name", sorted(SPARSE_STEPS))
def test_sparse_updates_do_not_modify_their_inputs(name):
    step = SPARSE_STEPS[name]
    params, seq = sparse_stream(np.float64, 2)
    _, state = step(params, seq[0])
    p_copy = {k: v.copy() for k, v in params.items()}
    g_copy = copy_rowgrad(seq[1]["pkm.values"])
    s_copy = state_to_arrays(state)
    new_params, _ = step(params, seq[1], state)
    for k in params:
        np.testing.assert_array_equal(params[k], p_copy[k])
        assert not np.shares_memory(new_params[k], params[k])
    np.testing.assert_array_equal(seq[1]["pkm.values"].indices, g_copy.indices)
    np.testing.assert_array_equal(seq[1]["pkm.values"].rows, g_copy.rows)
    for k, a in state_to_arrays(state).items():
        np.testing.assert_array_equal(a, s_copy[k])


@pytest.mark.parametrize("name", sorted(SPARSE_STEPS))
def test_sparse_state_round_trip_through_npz_resumes_bit_identically(name, tmp_path):
    step = SPARSE_STEPS[name]
    params, seq = sparse_stream(np.float32, 6, seed=3)
    params, state = run(step, params, seq[:3])
    path = tmp_path / "opt_state.npz"
    np.savez(path, **state_to_arrays(state))
    with np.load(path, allow_pickle=False) as npz:
        restored = state_from_arrays(npz)
    p_ref, s_ref = run(step, params, seq[3:], state)
    p_res, s_res = run(step, params, seq[3:], restored)
    for k in params:
        np.testing.assert_array_equal(p_res[k], p_ref[k])
        assert p_res[k].dtype == np.float32
    a_ref, a_res = state_to_arrays(s_ref), state_to_arrays(s_res)
    assert set(a_ref) == set(a_res) and a_ref["step"] == 6
    for k in a_ref:
        np.testing.assert_array_equal(a_res[k], a_ref[k])
        assert a_res[k].dtype == a_ref[k].dtype


# --------------------------------------------------------------------------- parameter groups


def test_combine_equals_each_optimizer_on_its_own_group():
    params, seq = sparse_stream(np.float64, 3, seed=1)
    got, state = run(SPARSE_STEPS["combine"], params, seq)
    values, _ = run(
        make_optimizer("sparse_adam", lr=1e-2),
        {"pkm.values": params["pkm.values"]},
        [{"pkm.values": g["pkm.values"]} for g in seq],
    )
    rest, _ = run(
        make_optimizer("adam", lr=1e-3),
        {"query.weight": params["query.weight"]},
        [{"query.weight": g["query.weight"]} for g in seq],
    )
    assert list(got) == list(params)
    np.testing.assert_array_equal(got["pkm.values"], values["pkm.values"])
    np.testing.assert_array_equal(got["query.weight"], rest["query.weight"])
    assert sorted(state_to_arrays(state)) == [
        "rest:m/query.weight",
        "rest:v/query.weight",
        "step",
        "values:m/pkm.values",
        "values:v/pkm.values",
    ]


def test_combine_skips_groups_without_parameters():
    step = combine({"a": make_optimizer("sgd", lr=0.1), "b": make_optimizer("adam")}, group_of=lambda key: "a")
    new, state = step({"w": np.ones(2)}, {"w": np.ones(2)})
    np.testing.assert_array_equal(new["w"], [0.9, 0.9])
    assert set(state) == {"step", "a:velocity"}


def test_combine_names_a_key_whose_group_is_unknown():
    step = combine({"a": make_optimizer("sgd", lr=0.1)}, group_of=lambda key: "b")
    with pytest.raises(ValueError, match=r"^group_of: expected one of \['a'\] for params\['w'\], got 'b'$"):
        step({"w": np.ones(2)}, {"w": np.ones(2)})


@pytest.mark.parametrize(
    ("optimizers", "group_of", "error", "match"),
    [
        ({}, str, TypeError, "optimizers"),
        ({"a/b": sgd}, str, ValueError, "optimizers: expected group names"),
        ({"a:b": sgd}, str, ValueError, "optimizers: expected group names"),
        ({"a": 1.0}, str, TypeError, r"optimizers\['a'\]"),
        ({"a": sgd}, "a", TypeError, "group_of"),
    ],
)
def test_combine_rejects_bad_groups(optimizers, group_of, error, match):
    with pytest.raises(error, match=match):
        combine(optimizers, group_of)


def test_combine_checks_keys_before_splitting():
    with pytest.raises(ValueError, match=r"grads.*missing \['b'\]"):
        SPARSE_STEPS["combine"]({"a": np.ones(1), "b": np.ones(1)}, {"a": np.ones(1)})


# --------------------------------------------------------------------------- errors name the argument

ALL_SPARSE_AWARE = [
    pytest.param(lambda p, g: sgd(p, g, lr=0.1), id="sgd"),
    pytest.param(lambda p, g: rmsprop(p, g), id="rmsprop"),
    pytest.param(lambda p, g: adam(p, g), id="adam"),
    pytest.param(lambda p, g: sparse_adam(p, g), id="sparse_adam"),
    pytest.param(lambda p, g: rowwise_adagrad(p, g), id="rowwise_adagrad"),
    pytest.param(lambda p, g: clip_global_norm(g, 1.0), id="clip_global_norm"),
    pytest.param(lambda p, g: clip_elementwise(g, 1.0), id="clip_elementwise"),
]
GOOD_IDX, GOOD_ROWS = np.array([0, 5]), np.ones((2, 3))


@pytest.mark.parametrize("fn", ALL_SPARSE_AWARE)
@pytest.mark.parametrize(
    ("grad", "error", "match"),
    [
        (RowGrad(GOOD_IDX.astype(float), GOOD_ROWS, 6), TypeError, r"grads\['values'\]\.indices: expected an integer"),
        (RowGrad(np.array([0, 6]), GOOD_ROWS, 6), ValueError, r"grads\['values'\]\.indices: expected .* \[0, 6\)"),
        (RowGrad(np.array([0, -1]), GOOD_ROWS, 6), ValueError, r"grads\['values'\]\.indices: expected .* \[0, 6\)"),
        (RowGrad(GOOD_IDX, np.array([[1.0, np.nan, 0], [0, 0, 0]]), 6), ValueError, r"grads\['values'\]\.rows.*finite"),
        (RowGrad(GOOD_IDX, GOOD_ROWS.astype(int).astype(object), 6), TypeError, r"grads\['values'\]\.rows"),
        (RowGrad(GOOD_IDX, np.ones(2), 6), ValueError, r"grads\['values'\]: expected a RowGrad with indices \(J,\)"),
        (RowGrad(GOOD_IDX, np.ones((3, 3)), 6), ValueError, r"grads\['values'\]: .*indices \(2,\) and rows \(3, 3\)"),
        (RowGrad(GOOD_IDX[None], np.ones((1, 2, 3, 1)), 6), ValueError, r"grads\['values'\]: expected a RowGrad"),
        (RowGrad(GOOD_IDX, GOOD_ROWS, 0), ValueError, r"grads\['values'\]\.num_rows: expected an int >= 1"),
        (RowGrad(GOOD_IDX, GOOD_ROWS, 6.0), TypeError, r"grads\['values'\]\.num_rows: expected an int"),
    ],
)
def test_bad_rowgrad_is_rejected_naming_key_and_field(fn, grad, error, match):
    with pytest.raises(error, match=match):
        fn({"values": np.zeros((6, 3))}, {"values": grad})


@pytest.mark.parametrize("fn", ALL_SPARSE_AWARE[:5])
@pytest.mark.parametrize(
    ("grad", "dense"),
    [(RowGrad(GOOD_IDX, GOOD_ROWS, 7), r"\(7, 3\)"), (RowGrad(GOOD_IDX[None], GOOD_ROWS[None], 6), r"\(1, 6, 3\)")],
)
def test_rowgrad_of_another_shape_is_rejected_naming_both_shapes(fn, grad, dense):
    with pytest.raises(ValueError, match=rf"^grads\['values'\]: expected a RowGrad of dense shape \(6, 3\).*{dense}$"):
        fn({"values": np.zeros((6, 3))}, {"values": grad})


def test_rowwise_adagrad_rejects_an_accumulator_of_the_wrong_shape():
    params = {"w": np.zeros((3, 2))}
    with pytest.raises(ValueError, match=r"^state\['sum'\]\['w'\]: expected shape \(3,\), got \(3, 2\)$"):
        rowwise_adagrad(params, params, {"step": 1, "sum": {"w": np.zeros((3, 2))}})


def test_combine_rejects_a_state_of_other_groups():
    params = {"w": np.ones(2)}
    _, state = adam(params, params)  # slots "m", "v": no group prefix
    with pytest.raises(ValueError, match=r"^state: expected 'step' and '<group>:<slot>' entries.*'m', 'step', 'v'"):
        SPARSE_STEPS["combine"](params, params, state)


@pytest.mark.parametrize("layout", ["table", "batch"])
def test_an_empty_rowgrad_changes_nothing_but_the_step(layout):
    params = {"values": np.ones((4, 2)) if layout == "table" else np.ones((3, 4, 2))}
    g = (
        RowGrad(np.zeros(0, np.int64), np.zeros((0, 2)), 4)
        if layout == "table"
        else RowGrad(np.zeros((3, 0), np.int64), np.zeros((3, 0, 2)), 4)
    )
    for step in (sparse_adam, rowwise_adagrad):
        new, state = step(params, {"values": g})
        np.testing.assert_array_equal(new["values"], params["values"])
        assert state["step"] == 1
    clipped, norm = clip_global_norm({"values": g}, 1.0)
    assert norm == 0.0 and clipped["values"].rows.shape == g.rows.shape


# --------------------------------------------------------------------------- the in-place lazy Adam


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), lr=st.floats(1e-4, 1e-1), beta1=st.sampled_from([0.0, 0.9]), eps=st.sampled_from([1e-8, 1e-3]))
def test_sparse_adam_inplace_equals_sparse_adam_bit_for_bit(dtype, data, lr, beta1, eps):
    """Same rule, same arithmetic: the kernel on the touched rows ≡ the pure NumPy update (and a dense key too)."""
    p, seq = data.draw(sparse_problems(max_steps=4, dtype=dtype))
    dense = data.draw(hnp.arrays(np.float64, (2, 3), elements=ELEMENTS)).astype(dtype)
    hyper = dict(lr=lr, beta1=beta1, beta2=0.999, eps=eps)
    pure, s_pure = {"values": p.copy(), "w": dense.copy()}, None
    inplace, s_in = {"values": p.copy(), "w": dense.copy()}, None
    arrays = dict(inplace)
    for g in seq:
        grads = {"values": g, "w": (g.rows.sum() * np.ones((2, 3))).astype(dtype)}
        pure, s_pure = sparse_adam(pure, grads, s_pure, **hyper)
        inplace, s_in = sparse_adam_inplace(inplace, grads, s_in, **hyper)
    assert s_in["step"] == s_pure["step"] == len(seq)
    for key in pure:
        assert inplace[key] is arrays[key]  # updated in place, not replaced
        np.testing.assert_array_equal(inplace[key], pure[key], err_msg=key)
        np.testing.assert_array_equal(s_in["m"][key], s_pure["m"][key], err_msg=key)
        np.testing.assert_array_equal(s_in["v"][key], s_pure["v"][key], err_msg=key)


def test_sparse_adam_inplace_refuses_arrays_it_cannot_update_in_place():
    p = np.zeros((4, 3))
    g = {"values": RowGrad(np.array([1]), np.ones((1, 3)), 4)}
    with pytest.raises(ValueError, match=r"params\['values'\]: expected a C-contiguous writeable ndarray"):
        sparse_adam_inplace({"values": np.asfortranarray(np.zeros((4, 3)))}, g)
    ro = p.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="C-contiguous writeable"):
        sparse_adam_inplace({"values": ro}, g)
    _, state = sparse_adam_inplace({"values": p}, g)
    state["m"]["values"] = state["m"]["values"].astype(np.float32)
    with pytest.raises(ValueError, match=r"state\['m'\]\['values'\]: expected a C-contiguous writeable float64"):
        sparse_adam_inplace({"values": p}, g, state)
