"""SparseMemory's three-kernel step (kernels/sam_step.py) equals the readable ops it replaces.

Two memories start equal; one runs least_recent + ops.lra_interpolate_forward + write, query, the
sparse content read + touch, then the read's and the write's VJP through the gradient table (the
readable path of SAMCore(fused=False)); the other runs lra_write, query, read_touch,
read_write_backward. Everything each returns, and every array each memory holds (rows, index,
ring, gradient table), must agree after several steps — and again after reverting them all: bit
for bit, except the read's weights and words and the gradients, which the readable path sums in
another order (to 1e-12).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refmann.memory.sparse_memory as sm
from refmann import ops
from refmann.kernels import sam_step
from refmann.memory import make_index_factory
from refmann.memory.sparse_memory import SparseMemory


def _memories(N, W, B, index, rng):
    memory0 = rng.uniform(-1, 1, (N, W))
    pair = []
    for _ in range(2):
        mem = SparseMemory(N, W, make_index_factory(index, seed=0))
        mem.prepare(B, np.float64, memory0)
        pair.append(mem)
    return pair


def _state(mem):
    """Every array of the memory, its ring, index and the gradient table's layout (its rows: see the test)."""
    g = mem.grad
    parts = [mem.memory, mem.ring.nxt, mem.ring.prv, mem.ring.head, mem.ring.stamps, g.count, g.slot_of]
    index = mem.index
    parts += [getattr(index, name) for name in ("codes", "heads", "norms") if getattr(index, name, None) is not None]
    return [np.array(p, copy=True) for p in parts]


def _readable_step(mem, read_idx, read_w, alpha, gate, add, q, beta, K, delta, t):
    B, H = alpha.shape
    lra = mem.least_recent(H)
    write_idx = np.concatenate([read_idx, lra[..., None]], axis=-1)
    ww, ww_cache = ops.lra_interpolate_forward(read_w, alpha, gate)
    journal, write_cache = mem.write(ww, add, indices=write_idx, erase_indices=lra, fused=False)
    idx = mem.query(q, K, fill=journal.rows[:, ::-1])
    (w, reads), read_cache = ops.sparse_content_read_forward(mem.memory, q, beta, indices=idx, eps=1e-6)
    slots = np.concatenate([journal.rows, idx.reshape(B, -1)], axis=1)
    access = np.concatenate([ww.reshape(B, -1), w.reshape(B, -1)], axis=1)
    touched, journal = mem.touch(slots, access, delta, t, journal)
    return (lra, write_idx, ww, ww_cache, idx, w, reads, touched), (journal, write_cache, read_cache)


def _fused_step(mem, read_idx, read_w, alpha, gate, add, q, beta, K, delta, t):
    lra, write_idx, ww, ww_cache, journal, write_cache = mem.lra_write(read_idx, read_w, alpha, gate, add)
    idx = mem.query(q, K, fill=journal.rows[:, ::-1])
    (w, reads), read_cache, touched, journal = mem.read_touch(q, beta, idx, journal, ww, eps=1e-6, delta=delta, t=t)
    return (lra, write_idx, ww, ww_cache, idx, w, reads, touched), (journal, write_cache, read_cache)


def _readable_backward(mem, read_cache, write_cache, dw, dreads):
    dmem, dq, dbeta = ops.sparse_content_read_backward((dw, dreads), read_cache)
    mem.grad.add(dmem.indices, dmem.rows)
    dww, dadd = ops.sparse_write_rows_backward(mem.grad.gather(write_cache.indices), write_cache)
    mem.grad.zero(write_cache.erase_indices)
    return dq, dbeta, dww, dadd


@settings(max_examples=40, deadline=None)
@given(
    N=st.integers(4, 40),
    W=st.integers(1, 5),
    B=st.integers(1, 3),
    H=st.integers(1, 3),
    K=st.integers(1, 3),
    steps=st.integers(1, 5),
    index=st.sampled_from(["linear", "lsh", "kdforest"]),
    delta=st.sampled_from([0.0, 0.005, 0.3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_three_kernel_step_equals_the_readable_ops_forward_backward_and_revert(
    N, W, B, H, K, steps, index, delta, seed
):
    H = min(H, N)
    K = min(K, N)
    rng = np.random.default_rng(seed)
    slow, fast = _memories(N, W, B, index, rng)
    before = _state(slow)
    read_idx = np.broadcast_to(np.arange(K), (B, H, K)).copy()
    read_w = np.zeros((B, H, K))
    records = []
    for t in range(1, steps + 1):
        args = (
            rng.uniform(0.05, 0.95, (B, H)),  # alpha
            rng.uniform(0.05, 0.95, (B, H)),  # gate
            rng.standard_normal((B, H, W)),  # add
            rng.standard_normal((B, H, W)),  # q
            1 + 3 * rng.random((B, H)),  # beta
        )
        out_s, keep_s = _readable_step(slow, read_idx, read_w, *args, K, delta, t)
        out_f, keep_f = _fused_step(fast, read_idx, read_w, *args, K, delta, t)
        for name, a, b in zip(("lra", "write_idx", "ww", "ww_cache", "idx", "w", "reads", "touched"), out_s, out_f):
            if name == "ww_cache":
                for x, y in zip(a, b):
                    if x is not None:
                        np.testing.assert_array_equal(x, y)
            elif name in ("w", "reads"):  # the readable read is two ops (softmax, then sum): last-bit rounding
                np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15, err_msg=name)
            else:  # the write is the same arithmetic; the decisions the same
                np.testing.assert_array_equal(a, b, err_msg=name)
        for a, b in zip(_state(slow), _state(fast)):
            np.testing.assert_array_equal(a, b)
        js, jf = keep_s[0], keep_f[0]
        np.testing.assert_array_equal(js.rows, jf.rows)
        np.testing.assert_array_equal(js.old_rows, jf.old_rows)
        np.testing.assert_array_equal(js.ring.slots, jf.ring.slots)
        used = js.ring.slots >= 0  # the journal's padding entries are never written
        for a, b in zip(js.ring[1:], jf.ring[1:]):
            np.testing.assert_array_equal(a[used], b[used])
        records.append((keep_s, keep_f))
        read_idx, read_w = out_s[4], out_s[5]
    # backward, newest first: the VJPs against M_t, then revert
    for keep_s, keep_f in reversed(records):
        (js, wcs, rcs), (jf, wcf, rcf) = keep_s, keep_f
        dw = rng.standard_normal(rcs.weights.shape)
        dreads = rng.standard_normal(rcs.keys.shape)
        rcs = rcs._replace(rows=slow.gather(rcs.indices))
        got_s = _readable_backward(slow, rcs, wcs, dw, dreads)
        got_f = fast.read_write_backward(rcf, dw, dreads, wcf)
        for a, b in zip(got_s, got_f):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(slow.grad.pool, fast.grad.pool, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(slow.grad.slot_of, fast.grad.slot_of)
        slow.revert(js)
        fast.revert(jf)
    for b, c in zip(_state(slow), _state(fast)):
        np.testing.assert_array_equal(b, c)
    np.testing.assert_array_equal(fast.memory, before[0])  # rollback restored M_0 exactly


@pytest.mark.parametrize("name", ["lra_write", "read_touch", "read_write_backward"])
def test_each_fused_kernel_equals_its_plain_python_twin(name):
    N, W, B, H, K = 30, 4, 2, 2, 3
    runs = []
    for twin in (False, True):
        mem = SparseMemory(N, W, make_index_factory("lsh", seed=0))
        mem.prepare(B, np.float64, np.random.default_rng(0).uniform(-1, 1, (N, W)))
        kernel_name, loops = name + "_kernel", getattr(sam_step, f"_{name}_loops")
        original = getattr(sm, kernel_name)
        if twin:
            setattr(sm, kernel_name, loops)
        try:
            r = np.random.default_rng(1)
            read_idx, read_w = r.integers(0, N, (B, H, K)), r.dirichlet(np.ones(K), (B, H))
            alpha, gate, add = r.random((B, H)), r.random((B, H)), r.standard_normal((B, H, W))
            q, beta = r.standard_normal((B, H, W)), 1 + r.random((B, H))
            _, _, ww, _, journal, wc = mem.lra_write(read_idx, read_w, alpha, gate, add)
            idx = mem.query(q, K, fill=journal.rows[:, ::-1])
            (w, reads), rc, touched, journal = mem.read_touch(q, beta, idx, journal, ww, eps=1e-6, delta=0.01, t=1)
            grads = mem.read_write_backward(rc, r.standard_normal((B, H, K)), r.standard_normal((B, H, W)), wc)
            runs.append([mem.memory.copy(), ww, w, reads, touched, mem.ring.nxt.copy(), mem.grad.pool.copy(), *grads])
        finally:
            setattr(sm, kernel_name, original)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def _ready_memory():
    mem = SparseMemory(10, 3, make_index_factory("lsh", seed=0))
    mem.prepare(2, np.float64, np.random.default_rng(0).uniform(-1, 1, (10, 3)))
    return mem


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(read_idx=np.full((2, 1, 2), 10)), r"read_idx: expected .*\[0, 10\)"),
        (dict(read_idx=np.zeros((2, 11, 1), int)), "read_idx: expected at most N = 10 heads"),
        (dict(read_weights=np.zeros((2, 1, 3))), r"read_weights: expected shape \(2, 1, 2\)"),
        (dict(alpha=np.zeros((2, 2))), r"alpha: expected shape \(2, 1\)"),
        (dict(add=np.full((2, 1, 3), np.nan)), "add: expected finite values"),
    ],
)
def test_lra_write_refuses_bad_arguments_naming_them(change, message):
    mem = _ready_memory()
    args = dict(
        read_idx=np.zeros((2, 1, 2), int),
        read_weights=np.zeros((2, 1, 2)),
        alpha=np.zeros((2, 1)),
        gate=np.zeros((2, 1)),
        add=np.zeros((2, 1, 3)),
    )
    args.update(change)
    before = mem.memory.copy()
    with pytest.raises((ValueError, TypeError), match=message):
        mem.lra_write(**args)
    np.testing.assert_array_equal(mem.memory, before)  # refused before anything was written


def test_read_touch_and_the_backward_refuse_bad_arguments_naming_them():
    mem = _ready_memory()
    _, _, ww, _, journal, wc = mem.lra_write(
        np.zeros((2, 1, 2), int), np.zeros((2, 1, 2)), np.zeros((2, 1)), np.zeros((2, 1)), np.ones((2, 1, 3))
    )
    q, beta, idx = np.ones((2, 1, 3)), np.ones((2, 1)), np.zeros((2, 1, 2), int)
    with pytest.raises(ValueError, match=r"indices: expected .*\[0, 10\)"):
        mem.read_touch(q, beta, idx + 10, journal, ww, eps=1e-6, delta=0.0, t=1)
    with pytest.raises(ValueError, match="write_weights: expected one weight per written row"):
        mem.read_touch(q, beta, idx, journal, ww[..., :1], eps=1e-6, delta=0.0, t=1)
    with pytest.raises(ValueError, match="delta: expected"):
        mem.read_touch(q, beta, idx, journal, ww, eps=1e-6, delta=np.nan, t=1)
    _, rc, _, _ = mem.read_touch(q, beta, idx, journal, ww, eps=1e-6, delta=0.0, t=1)
    with pytest.raises(ValueError, match="dreads"):
        mem.read_write_backward(rc, np.zeros((2, 1, 2)), np.zeros((2, 1, 4)), wc)
    with pytest.raises(ValueError, match="dweights"):
        mem.read_write_backward(rc, np.full((2, 1, 2), np.nan), np.zeros((2, 1, 3)), wc)
    with pytest.raises(TypeError, match="write_cache: expected a SparseWriteCache"):
        mem.read_write_backward(rc, np.zeros((2, 1, 2)), np.zeros((2, 1, 3)), None)


def test_lra_write_with_fused_false_is_the_readable_ops():
    """``lra_write(fused=False)`` (the readable path of SAM and the SDNC) is least_recent +
    ops.lra_interpolate_forward + write, and equals the kernel."""
    r = np.random.default_rng(3)
    N, W, B, H, J = 20, 4, 2, 2, 3
    slow, fast = _memories(N, W, B, "lsh", r)
    args = (r.integers(0, N, (B, H, J)), r.dirichlet(np.ones(J), (B, H)), r.random((B, H)), r.random((B, H)))
    add = r.standard_normal((B, H, W))
    got_s = slow.lra_write(*args, add, fused=False)
    got_f = fast.lra_write(*args, add)
    for a, b in zip(got_s[:3], got_f[:3]):  # lra, write_idx, write_weights
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got_s[4].old_rows, got_f[4].old_rows)
    for a, b in zip(_state(slow), _state(fast)):
        np.testing.assert_array_equal(a, b)
