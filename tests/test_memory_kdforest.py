"""The k-d forest index: its leaf lists stay in step with the memory (equal to a fresh build with the
same trees after any history of writes, undos and rebuilds), update then undo restores it bit for bit,
with unlimited checks it is the exact index, it recalls noisy copies, its kernels equal their
plain-Python twins, and bad arguments are refused by name."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann.kernels import kdforest as kd
from refmann.memory import INDEXES, KDForestIndex, LinearIndex, LSHIndex, make_index_factory
from refmann.memory.sparse_memory import index_nbytes


def _twin(index):
    """A fresh index over the same memory with the same trees: what ``index`` must equal."""
    fresh = KDForestIndex(
        index.memory, num_trees=index.num_trees, checks=index.checks, leaf_size=index.leaf_size, seed=index.seed
    )
    fresh.rebuild(trees=index.trees)
    return fresh


def _state(index):
    return (index.dims, index.thresholds, index._codes, index.heads, index._nxt, index._prv, index._seen, index._sizes)


def _assert_same_state(index, fresh):
    for a, b in zip(_state(index), _state(fresh)):
        np.testing.assert_array_equal(a, b)


def _lists(index):
    """Every leaf's list, walked from its head."""
    B, T, leaves = index.heads.shape
    out = [[[] for _ in range(T)] for _ in range(B)]
    for b in range(B):
        for t in range(T):
            for leaf in range(leaves):
                rows, i = [], index.heads[b, t, leaf]
                while i >= 0:
                    rows.append(int(i))
                    i = index.nxt[b, t, i]
                out[b][t].append(rows)
    return out


def _naive_leaf(x, dims, thresholds, depth):
    """The leaf a row falls in, by the documented rule (unit vector; ≥ threshold goes right)."""
    u = np.empty(len(x))
    kd._unit_loops(np.asarray(x, np.float64), u)
    n = 0
    for _ in range(depth):
        n = 2 * n + (2 if u[dims[n]] >= thresholds[n] else 1)
    return n - (2**depth - 1)


def _contents(rng, protos, count, W):
    """Rows as a SAM writes them: copies of a few prototypes, perturbed copies, random rows, zeros."""
    kind = rng.integers(0, 4, count)
    rows = protos[rng.integers(0, len(protos), count)].copy()
    rows[kind == 1] += 1e-3 * rng.standard_normal((int(np.sum(kind == 1)), W))
    rows[kind == 2] = rng.standard_normal((int(np.sum(kind == 2)), W))
    rows[kind == 3] = 0.0
    return rows


def test_kdforest_is_registered_for_the_models():
    assert INDEXES["kdforest"] is KDForestIndex
    factory = make_index_factory("kdforest", seed=3, num_trees=2, leaf_size=4)
    index = factory(np.zeros((2, 100, 5)))
    assert isinstance(index, KDForestIndex) and index.seed == 3 and index.num_trees == 2
    assert index_nbytes(factory, 2, 100, 5) == index.nbytes()


@pytest.mark.parametrize("shape", [(1, 10, 3), (2, 1_000, 8), (3, 7_000, 5)])
def test_kdforest_nbytes_for_equals_what_an_index_holds(shape):
    B, N, W = shape
    assert KDForestIndex.nbytes_for(B, N, W) == KDForestIndex(np.zeros(shape)).nbytes()
    index = KDForestIndex(np.zeros(shape), num_trees=3, leaf_size=2)
    assert KDForestIndex.nbytes_for(B, N, W, num_trees=3, leaf_size=2) == index.nbytes()


def test_kdforest_contents_equal_a_fresh_build_after_ten_thousand_random_writes():
    """Long random write sequences with periodic rebuilds: codes equal the documented descent of every
    row, every leaf lists exactly its rows sorted by index, every internal node counts the rows under
    it, and everything equals a fresh build with the same trees."""
    rng = np.random.default_rng(0)
    B, N, W = 2, 300, 8
    memory = rng.standard_normal((B, N, W))
    index = KDForestIndex(memory, num_trees=3, leaf_size=4, seed=1)
    index.rebuild()
    assert index.depth == 6
    for step in range(10_000 // 5):
        rows = rng.integers(0, N, (B, 5))
        for b in range(B):
            memory[b, rows[b]] = rng.standard_normal((5, W))
        index.update(rows)
        if step % 20 == 0:
            index.maybe_rebuild()
    assert index.rebuilds > 1  # rebuilt after every N insertions
    _assert_same_state(index, _twin(index))
    lists = _lists(index)
    for b in range(B):
        for t in range(3):
            for i in range(N):
                assert index.codes[b, t, i] == _naive_leaf(memory[b, i], index.dims[b, t], index.thresholds[b, t], 6)
            for leaf, rows in enumerate(lists[b][t]):
                assert rows == sorted(rows) and all(index.codes[b, t, i] == leaf for i in rows)
            assert sorted(sum(lists[b][t], [])) == list(range(N))
            for level in range(6):  # node n at this level covers 2**(6 − level) consecutive leaves
                for n in range(2**level - 1, 2 ** (level + 1) - 1):
                    lo = (n - (2**level - 1)) * 2 ** (6 - level)
                    under = np.sum((index.codes[b, t] >= lo) & (index.codes[b, t] < lo + 2 ** (6 - level)))
                    assert index._sizes[b, t, n] == under


def test_kdforest_rebuild_splits_at_the_median_of_a_high_variance_dimension():
    """After a rebuild, the leaves of a tree of random rows hold about leaf_size rows (median splits),
    and the root splits on one of the 5 dimensions of highest variance of the unit rows."""
    rng = np.random.default_rng(2)
    memory = rng.standard_normal((1, 1024, 12)) * np.linspace(0.1, 3.0, 12)
    index = KDForestIndex(memory, num_trees=4, leaf_size=8, seed=0)
    index.rebuild()
    sizes = np.bincount(index.codes[0, 0], minlength=2**index.depth)
    assert sizes.min() >= 7 and sizes.max() <= 9, (sizes.min(), sizes.max())
    units = memory[0] / np.linalg.norm(memory[0], axis=1, keepdims=True)
    top5 = set(np.argsort(-units.var(axis=0))[:5])
    assert set(index.dims[0, :, 0]) <= top5


@st.composite
def write_histories(draw):
    """A forest over a small memory and a history: writes (prototype copies, zeros, −1 padding and
    repeated rows within a step), undos of the newest pending write, rebuilds and maybe_rebuild."""
    B, N, W = draw(st.integers(1, 2)), draw(st.integers(1, 40)), draw(st.integers(1, 5))
    kwargs = dict(
        num_trees=draw(st.integers(1, 3)),
        checks=draw(st.integers(1, 12)),
        leaf_size=draw(st.integers(1, 4)),
        seed=draw(st.integers(0, 3)),
    )
    ops = draw(st.lists(st.sampled_from(["write", "write", "write", "undo", "rebuild", "maybe_rebuild"]), max_size=25))
    return (B, N, W), kwargs, draw(st.integers(1, 3)), ops, draw(st.integers(0, 2**32 - 1))


@given(case=write_histories())
def test_kdforest_answers_equal_a_fresh_build_after_any_write_history(case):
    (B, N, W), kwargs, n_protos, ops, seed = case
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((n_protos, W))
    memory = _contents(rng, protos, B * N, W).reshape(B, N, W)
    index = KDForestIndex(memory, **kwargs)
    index.rebuild()
    pending = []
    for op in ops:
        if op == "write":
            rows = rng.integers(-1, N, (B, int(rng.integers(1, 7))))  # −1 padding; repeats happen
            before = memory.copy()
            for b, j in zip(*np.nonzero(rows >= 0)):
                memory[b, rows[b, j]] = _contents(rng, protos, 1, W)[0]
            pending.append((before, index.update(rows)))
        elif op == "undo" and pending:
            before, journal = pending.pop()
            memory[:] = before
            index.undo(journal)
        elif op in ("rebuild", "maybe_rebuild"):
            getattr(index, op)()
            pending.clear()
    fresh = _twin(index)
    _assert_same_state(index, fresh)
    at_protos = np.broadcast_to(protos, (B, n_protos, W))  # keys that tie with every copy
    keys = np.concatenate([rng.standard_normal((B, 3, W)), memory[:, rng.integers(0, N, 2)], at_protos], axis=1)
    k = int(rng.integers(1, N + 1))
    np.testing.assert_array_equal(index.query(keys, k), fresh.query(keys, k))
    np.testing.assert_array_equal(index.last_counts, fresh.last_counts)
    fill = rng.integers(-1, N, (B, 3))
    np.testing.assert_array_equal(index.query(keys, k, fill), fresh.query(keys, k, fill))


@given(N=st.integers(2, 30), J=st.integers(1, 8), steps=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_kdforest_update_then_undo_newest_first_restores_every_array_bit_for_bit(N, J, steps, seed):
    """Several steps of writes, each with repeated rows, undone newest first: every array as before."""
    rng = np.random.default_rng(seed)
    B, W = 2, 4
    memory = rng.standard_normal((B, N, W))
    index = KDForestIndex(memory, num_trees=3, leaf_size=2, seed=seed % 5)
    index.rebuild()
    snapshot = [a.copy() for a in _state(index)]
    m0, journals = memory.copy(), []
    for _ in range(steps):
        rows = rng.integers(0, min(N, 3), (B, J))  # few distinct rows: repeats within a step
        before = memory.copy()
        for b, j in zip(*np.nonzero(rows >= 0)):
            memory[b, rows[b, j]] = rng.standard_normal(W)
        journals.append((before, index.update(rows)))
    for before, journal in reversed(journals):
        memory[:] = before
        index.undo(journal)
    np.testing.assert_array_equal(memory, m0)
    for a, b in zip(snapshot, _state(index)):
        np.testing.assert_array_equal(a, b)
    assert index.insertions == 0


@given(N=st.integers(1, 60), W=st.integers(1, 6), trees=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_kdforest_with_checks_at_least_n_equals_the_linear_index(N, W, trees, seed):
    rng = np.random.default_rng(seed)
    distinct = rng.standard_normal((2, max(1, N // 3), W))
    memory = np.ascontiguousarray(distinct[:, rng.integers(0, distinct.shape[1], N)])  # ties
    memory[:, : N // 5] = 0.0
    keys = np.concatenate([rng.standard_normal((2, 5, W)), distinct[:, :2]], axis=1)
    index = KDForestIndex(memory, num_trees=trees, checks=N, leaf_size=2, seed=seed)
    index.rebuild()
    for k in sorted({1, min(4, N), N}):
        np.testing.assert_array_equal(index.query(keys, k), LinearIndex(memory).query(keys, k))


def test_kdforest_constant_memory_answers_rows_from_zero_as_the_exact_index():
    memory = np.full((2, 1_000, 6), 1e-6)  # SAM's memory_init="constant": every row ties
    index = KDForestIndex(memory)
    index.rebuild()
    keys = np.random.default_rng(0).standard_normal((2, 5, 6))
    np.testing.assert_array_equal(index.query(keys, 4), np.broadcast_to(np.arange(4), (2, 5, 4)))


def test_kdforest_fill_ins_are_the_callers_rows_then_rows_from_zero():
    memory = np.random.default_rng(1).standard_normal((1, 40, 3))
    index = KDForestIndex(memory, num_trees=1, checks=1, leaf_size=1, seed=0)
    index.rebuild()
    key = memory[:, 7:8] * 2.0  # its own leaf holds row 7 (and checks = 1 stops there)
    assert index.query(key, 1)[0, 0, 0] == 7 and index.last_counts[0, 0] == 1
    got = index.query(key, 3, np.array([[30, -1, 7, 12]]))
    assert got[0, 0, 0] == 7 and set(got[0, 0]) == {7, 30, 12}
    got = index.query(key, 3)
    assert set(got[0, 0]) == {7, 0, 1} or (7 in {0, 1} and len(set(got[0, 0])) == 3)
    with pytest.raises(ValueError, match="fill"):
        index.query(key, 2, np.array([[40]]))


@pytest.mark.parametrize("N, floor_top4", [(1_000, 0.7), (20_000, 0.35)])
def test_kdforest_recall_at_the_defaults_on_noisy_copies(N, floor_top4):
    """Noisy copies of stored rows (noise 0.5 per component, W = 32): the source row comes first for
    most queries (measured 0.99 at N = 1000, 0.875 at 20 000; the exact index: 1.00), and a share of
    the exact top 4 is found (measured 0.77 and 0.44: the other three are far, random data)."""
    rng = np.random.default_rng(5)
    memory = rng.standard_normal((1, N, 32))
    index = KDForestIndex(memory, seed=0)
    index.rebuild()
    source = rng.integers(0, N, 200)
    keys = memory[:, source] + 0.5 * rng.standard_normal((1, 200, 32))
    got = index.query(keys, 4)
    exact = LinearIndex(memory).query(keys, 4)
    assert np.mean(got[0, :, 0] == source) >= 0.8
    recall = np.mean([len(set(got[0, q]) & set(exact[0, q])) / 4 for q in range(200)])
    assert recall >= floor_top4, recall
    assert index.last_counts.max() <= index.checks  # bounded work, whatever N


def test_kdforest_after_many_sam_steps_equals_a_fresh_build():
    from refmann.models import SAM

    N, B = 500, 2
    sam = SAM(input_size=9, output_size=8, memory_size=N, word_size=16, num_heads=2, k=4, index="kdforest", seed=0)
    rng = np.random.default_rng(0)
    state = sam.initial_state(B)
    for _ in range(400):
        _, state = sam.step((rng.random((B, 9)) < 0.5).astype(float), state)
    index = sam.core.memory.index
    _assert_same_state(index, _twin(index))


def _random_forest(seed, B=2, N=50, W=5, T=3, leaf_size=2, checks=9):
    rng = np.random.default_rng(seed)
    memory = rng.standard_normal((B, N, W))
    memory[:, :4] = memory[:, 4:8]  # duplicates
    index = KDForestIndex(memory, num_trees=T, leaf_size=leaf_size, checks=checks, seed=seed)
    index.rebuild()
    return rng, memory, index


@pytest.mark.kernel
@pytest.mark.parametrize("seed", [0, 1])
def test_kdforest_kernels_equal_their_python_twins(seed):
    rng, memory, index = _random_forest(seed)
    B, N, W = memory.shape
    twin_state = [a.copy() for a in _state(index)]
    args = (index.dims, index.thresholds, index.depth)
    codes = np.empty_like(index._codes)
    kd._kd_codes_loops(memory, *args, codes)
    np.testing.assert_array_equal(codes, index._codes)
    units, units_twin = np.empty((N, W)), np.empty((N, W))
    kd.kd_unit_rows_kernel(memory, 1, units)
    kd._kd_unit_rows_loops(memory, 1, units_twin)
    np.testing.assert_array_equal(units, units_twin)
    for _ in range(5):  # updates (with repeats and padding), then queries, each both ways
        rows = rng.integers(-1, N, (B, 6))
        rows[:, 1] = rows[:, 0]
        memory[0, rows[0, rows[0] >= 0]] = rng.standard_normal((int(np.sum(rows[0] >= 0)), W))
        journals = []
        for state, update in ((_state(index), kd.kd_update_kernel), (twin_state, kd._kd_update_loops)):
            journal = [np.empty((B, 6, index.num_trees), np.int32) for _ in range(3)]
            update(memory, *args, rows, state[2], state[3], state[4], state[5], state[7], *journal)
            journals.append(journal)
        for a, b in zip(journals[0], journals[1]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(_state(index), twin_state):
            np.testing.assert_array_equal(a, b)
    keys = np.concatenate([rng.standard_normal((B, 4, W)), memory[:, :3]], axis=1)
    fill = rng.integers(-1, N, (B, 2))
    outs = []
    for state, query in ((_state(index), kd.kd_query_kernel), (twin_state, kd._kd_query_loops)):
        out, counts = np.empty((B, 7, 4), np.int64), np.empty((B, 7), np.int64)
        query(memory, *args, keys, 4, index.checks, state[3], state[4], state[7], fill, out, state[6], counts)
        outs.append((out, counts))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    undo_rows = rng.integers(0, N, (B, 3))
    journal = [np.empty((B, 3, index.num_trees), np.int32) for _ in range(3)]
    memory[:, undo_rows[0]] = rng.standard_normal((3, W))
    before = [a.copy() for a in twin_state]
    lists = (twin_state[2], twin_state[3], twin_state[4], twin_state[5], twin_state[7])
    kd._kd_update_loops(memory, *args, undo_rows, *lists, *journal)
    kd._kd_undo_loops(undo_rows, *lists, index.depth, *journal)
    for a, b in zip(before, twin_state):
        np.testing.assert_array_equal(a, b)
    lists = (*_state(index)[2:6], index._sizes)
    kd.kd_update_kernel(memory, *args, undo_rows, *lists, *journal)
    kd.kd_undo_kernel(undo_rows, *lists, index.depth, *journal)
    for a, b in zip(before, _state(index)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"num_trees": 0}, ValueError, "num_trees"),
        ({"checks": 0}, ValueError, "checks"),
        ({"checks": 2.5}, TypeError, "checks"),
        ({"leaf_size": -1}, ValueError, "leaf_size"),
        ({"seed": 1.0}, TypeError, "seed"),
    ],
)
def test_kdforest_bad_arguments_raise_naming_them(kwargs, error, name):
    with pytest.raises(error, match=name):
        KDForestIndex(np.zeros((1, 10, 3)), **kwargs)


def test_kdforest_bad_queries_updates_and_trees_raise_naming_them():
    index = KDForestIndex(np.zeros((2, 10, 3)))
    index.rebuild()
    with pytest.raises(ValueError, match="k"):
        index.query(np.zeros((2, 1, 3)), 11)
    with pytest.raises(ValueError, match="keys"):
        index.query(np.zeros((2, 1, 4)), 1)
    with pytest.raises(ValueError, match="rows"):
        index.update(np.array([[10], [0]]))
    with pytest.raises(TypeError, match="trees"):
        index.rebuild(trees=(index.dims, index.thresholds))
    other = KDForestIndex(np.zeros((2, 10, 3)), num_trees=2)
    with pytest.raises(ValueError, match="trees"):
        index.rebuild(trees=other.trees)
    with pytest.raises(ValueError, match="memory"):
        KDForestIndex(np.zeros((10, 3)))


@settings(max_examples=5)
@given(seed=st.integers(0, 2**16))
def test_sam_with_the_kdforest_rolls_back_to_a_fresh_build(seed):
    """A SAM's rollback leaves its k-d forest as a fresh build with the same trees (the index undoes too)."""
    from refmann.models import SAM

    rng = np.random.default_rng(seed)
    sam = SAM(input_size=3, output_size=2, memory_size=12, word_size=3, num_heads=2, k=2, index="kdforest", seed=seed)
    x = rng.standard_normal((4, 2, 3))
    y = (rng.random((4, 2, 2)) > 0.5).astype(float)
    sam.forward(x[:1])
    sam.loss_and_grads(x, y, np.ones((4, 2, 1)))
    index = sam.core.memory.index
    _assert_same_state(index, _twin(index))


def test_index_table_compares_the_three_indexes_on_the_same_queries():
    """`refmann bench lsh`'s side-by-side table: the exact scan is its own reference (recall 1, speed-up 1),
    every index answers the same queries, and the k-d forest scores at most ``checks`` rows."""
    from refmann.bench.lsh import format_index_table, index_table

    rows = index_table((300,), queries=20, rounds=1, wide_checks=64)
    assert {(r["data"], r["index"]) for r in rows} == {
        (d, i) for d in ("random", "noisy copy") for i in ("linear", "lsh", "kdforest", "kdforest, checks 64")
    }
    for r in rows:
        assert 0.0 <= r["recall"] <= 1.0
        if r["index"] == "linear":
            assert r["recall"] == 1.0 and r["speedup"] == 1.0 and r["candidates"] == 300
        if r["index"] == "kdforest, checks 64":
            assert r["candidates"] <= 64
        assert (r["recall_source"] is None) == (r["data"] == "random")
    assert format_index_table(rows).count("\n") == len(rows) + 1


@pytest.mark.parametrize("cls", [LSHIndex, KDForestIndex])
@pytest.mark.parametrize(
    "memory, seed, error, message",
    [
        (np.zeros((4, 3)), 0, ValueError, r"memory: expected a 3-d array \(B, N, W\), got shape \(4, 3\)"),
        ([[[0.0]]], 0, TypeError, "memory: expected an ndarray of shape"),
        (np.zeros((1, 4, 3)), -1, TypeError, "seed: expected a non-negative int, got -1"),
        (np.zeros((1, 4, 3)), True, TypeError, "seed: expected a non-negative int, got True"),
    ],
)
def test_both_list_indexes_name_a_bad_memory_or_seed(cls, memory, seed, error, message):
    with pytest.raises(error, match=message):
        cls(memory, seed=seed)


def test_the_shared_list_edits_keep_a_sorted_list_and_undo_exactly():
    from refmann.kernels.lists import _insert_after_loops, _unlink_loops

    heads = np.full((1, 1, 2), -1, np.int32)
    nxt = np.full((1, 5, 1), -1, np.int32)
    prv = np.full((1, 5, 1), -1, np.int32)
    for i, p in [(1, -1), (3, 1), (4, 3), (2, 1)]:  # list 0: 1, 2, 3, 4 (2 goes after 1)
        _insert_after_loops(heads, nxt, prv, 0, 0, 0, i, p)

    def walk(s):
        out, i = [], heads[0, 0, s]
        while i >= 0:
            out.append(int(i))
            assert nxt[0, i, 0] < 0 or prv[0, nxt[0, i, 0], 0] == i
            i = nxt[0, i, 0]
        return out

    assert walk(0) == [1, 2, 3, 4] and prv[0, 1, 0] == -1
    before = (heads.copy(), nxt.copy(), prv.copy())
    p = prv[0, 3, 0]
    _unlink_loops(heads, nxt, prv, 0, 0, 0, 3)
    _insert_after_loops(heads, nxt, prv, 0, 0, 1, 3, -1)  # 3 moves to list 1
    assert walk(0) == [1, 2, 4] and walk(1) == [3]
    _unlink_loops(heads, nxt, prv, 0, 0, 1, 3)  # the undo: back after its journalled predecessor
    _insert_after_loops(heads, nxt, prv, 0, 0, 0, 3, p)
    assert walk(0) == [1, 2, 3, 4] and walk(1) == []
    for a, b in zip((heads, nxt, prv), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.kernel
@pytest.mark.parametrize("clustered", [False, True])
def test_kdforest_level_kernels_equal_bincount_and_lexsort_and_grow_the_same_trees(clustered):
    from refmann.memory.kdforest import level_medians_kernel, level_medians_numpy, level_stats_kernel, level_stats_numpy

    rng = np.random.default_rng(3)
    B, N, W = 2, 500, 7
    memory = rng.standard_normal((B, N, W))
    if clustered:  # ties and empty nodes: copies of three rows, some zeros
        memory = memory[:, rng.integers(0, 3, N)]
        memory[:, ::7] = 0.0
    units = np.empty((N, W))
    kd.kd_unit_rows_kernel(memory, 0, units)
    local = rng.integers(0, 9, N)
    local[local == 4] = 5  # node 4 empty
    fast, twin, ref = level_stats_kernel(units, local, 9), [np.empty(9), np.empty((9, W)), np.empty((9, W))], None
    kd._kd_level_stats_loops(units, local, *twin)
    ref = level_stats_numpy(units, local, 9)
    for a, b, c in zip(fast, twin, ref):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
    values = units[np.arange(N), rng.integers(0, W, N)]
    counts = np.bincount(local, minlength=9).astype(np.float64)
    thr_twin = np.empty(9)
    kd._kd_level_medians_loops(values, local, counts.astype(np.int64), thr_twin)
    for thr in (level_medians_kernel(values, local, counts, 9), thr_twin):
        np.testing.assert_array_equal(thr, level_medians_numpy(values, local, counts, 9))
    assert thr_twin[4] == 0.0 and thr_twin[0] == np.sort(values[local == 0])[np.sum(local == 0) // 2]
    one = KDForestIndex(memory, num_trees=3, leaf_size=4, seed=5)
    other = KDForestIndex(memory.copy(), num_trees=3, leaf_size=4, seed=5)
    one.rebuild()
    other.rebuild(reference=True)
    np.testing.assert_array_equal(one.dims, other.dims)
    np.testing.assert_array_equal(one.thresholds, other.thresholds)
    _assert_same_state(one, other)
    with pytest.raises(TypeError, match="reference"):
        one.rebuild(reference="yes")
