"""Every public boundary refuses bad input with an error that names the argument (issue 11).

The kernels behind the memory classes and the row helpers trust their arguments (an index past N is
a write outside the array), so the Python layer checks them. One table per area: each row is a bad
call, the exception it must raise and a pattern naming the argument. The hostile cases of the issue
(segfaults and silent out-of-bounds writes before) also run in a subprocess, so a crash would show as
a signal instead of killing the test run. Size guards and the ``dout`` of every op's backward and
every layer's backward are covered too.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from refmann import layers, ops
from refmann._checks import FootprintError, check_dout, memory_budget, unchecked
from refmann.memory import LinearIndex, LSHIndex, RowGradAccumulator, SparseMemory, UsageRing, make_index_factory
from refmann.memory.sparse_memory import StepJournal
from refmann.models import DAM, NTM, SAM

B, N, W, H = 2, 5, 3, 2


# -- fixtures built fresh for every case (a refused call must not depend on an earlier one) --------------
def ring():
    return UsageRing(B, N)


def lsh():
    memory = np.random.default_rng(0).standard_normal((B, 40, W))
    index = LSHIndex(memory, num_bits=4, probes=2)
    index.rebuild()
    return index


def linear():
    return LinearIndex(np.random.default_rng(0).standard_normal((B, N, W)))


def acc():
    return RowGradAccumulator(B, W, np.float64, num_rows=N)


def smem():
    mem = SparseMemory(N, W, make_index_factory("linear"))
    mem.prepare(B, np.float64, np.zeros((N, W)))
    return mem


def write_args(**over):
    """Arguments of a good write of 2 rows per head on the (B, N, W) memory (erase: row 4 of each head)."""
    args = dict(
        weights=np.full((B, H, 2), 0.5),
        add=np.ones((B, H, W)),
        indices=np.array([[[0, 4], [1, 4]], [[2, 4], [3, 4]]]),
        erase_indices=np.array([[4, 4], [4, 4]]),
    )
    args.update(over)
    return args


def smem_write(**over):
    mem = smem()
    a = write_args(**over)
    return mem.write(a.pop("weights"), a.pop("add"), **a)


def journal_of_one_step():
    mem = smem()
    journal, _ = mem.write(**write_args())
    return mem, journal


def ok_rows():
    return np.array([[0, 1], [2, -1]])


# (id, call, exception, pattern naming the argument)
MEMORY_CASES = [
    # UsageRing: touch takes (B, J) slots in [0, N), −1 = padding
    ("ring.touch slot 10**6", lambda: ring().touch(np.array([[10**6], [0]]), 1.0), ValueError, r"slots: .*\[0, 5\)"),
    (
        "ring.touch slot N",
        lambda: ring().touch(np.array([[5], [0]]), 1.0),
        ValueError,
        r"slots: .*got values in \[0, 5\]",
    ),
    ("ring.touch slot -2", lambda: ring().touch(np.array([[-2], [0]]), 1.0), ValueError, r"slots: .*-1 \(padding\)"),
    (
        "ring.touch B+1 rows",
        lambda: ring().touch(np.zeros((3, 1), int), 1.0),
        ValueError,
        r"slots: expected shape \(2, ·\)",
    ),
    ("ring.touch 1-d", lambda: ring().touch(np.array([0, 1]), 1.0), ValueError, r"slots: expected shape"),
    ("ring.touch float slots", lambda: ring().touch(np.zeros((2, 1)), 1.0), TypeError, r"slots: expected an integer"),
    ("ring.touch nan t", lambda: ring().touch(np.zeros((2, 1), int), np.nan), ValueError, r"t: expected a finite"),
    ("ring.touch str t", lambda: ring().touch(np.zeros((2, 1), int), "1"), TypeError, r"t: expected a number"),
    ("ring.oldest 0", lambda: ring().oldest(0), ValueError, r"count: expected an int >= 1"),
    ("ring.oldest N+1", lambda: ring().oldest(N + 1), ValueError, r"count: expected 1 <= count <= 5"),
    ("ring.oldest float", lambda: ring().oldest(2.0), TypeError, r"count: expected an int"),
    ("ring.undo not a journal", lambda: ring().undo((np.zeros((2, 1), int),) * 5), TypeError, r"journal: expected"),
    (
        "ring.undo forged slots",
        lambda: (lambda r, j: r.undo(j._replace(slots=j.slots + 10**6)))(ring(), ring().touch(ok_rows(), 1.0)),
        ValueError,
        r"journal\.slots: expected indices in \[0, 5\)",
    ),
    (
        "ring.undo forged links",
        lambda: (lambda r, j: r.undo(j._replace(prev=j.prev + 10**6)))(ring(), ring().touch(ok_rows(), 1.0)),
        ValueError,
        r"journal\.prev: expected indices",
    ),
    ("ring.order b=B", lambda: ring().order(2), ValueError, r"b: expected a batch element in \[0, 2\)"),
    ("UsageRing(0, N)", lambda: UsageRing(0, N), ValueError, r"batch_size: expected an int >= 1"),
    ("UsageRing(B, 2**31)", lambda: UsageRing(1, 2**31), ValueError, r"num_slots: expected fewer than 2\*\*31"),
    # LSHIndex and LinearIndex: update rows (B, J) in [0, N) or −1; query keys (B, H, W), 1 <= k <= N
    (
        "lsh.update row N",
        lambda: lsh().update(np.array([[40], [0]])),
        ValueError,
        r"rows: expected indices in \[0, 40\)",
    ),
    ("lsh.update B+1 rows", lambda: lsh().update(np.zeros((3, 1), int)), ValueError, r"rows: expected shape \(2, ·\)"),
    ("lsh.update float rows", lambda: lsh().update(np.zeros((2, 1))), TypeError, r"rows: expected an integer"),
    ("lsh.query B+1 keys", lambda: lsh().query(np.ones((3, 1, W)), 2), ValueError, r"keys: expected shape \(2, ·, 3\)"),
    ("lsh.query wrong W", lambda: lsh().query(np.ones((2, 1, W + 1)), 2), ValueError, r"keys: expected shape"),
    ("lsh.query 2-d keys", lambda: lsh().query(np.ones((2, W)), 2), ValueError, r"keys: expected a 3-d"),
    ("lsh.query k = N+1", lambda: lsh().query(np.ones((2, 1, W)), 41), ValueError, r"k: expected 1 <= k <= N = 40"),
    ("lsh.query k = 0", lambda: lsh().query(np.ones((2, 1, W)), 0), ValueError, r"k: expected an int >= 1"),
    ("lsh.query k float", lambda: lsh().query(np.ones((2, 1, W)), 2.0), TypeError, r"k: expected an int"),
    ("lsh.query nan keys", lambda: lsh().query(np.full((2, 1, W), np.nan), 2), ValueError, r"keys: expected finite"),
    ("lsh.query complex", lambda: lsh().query(np.ones((2, 1, W), complex), 2), TypeError, r"keys: expected dtype"),
    ("linear.update row N", lambda: linear().update(np.array([[5], [0]])), ValueError, r"rows: expected indices"),
    ("linear.update B+1", lambda: linear().update(np.zeros((3, 1), int)), ValueError, r"rows: expected shape"),
    ("linear.query B+1 keys", lambda: linear().query(np.ones((3, 1, W)), 2), ValueError, r"keys: expected shape"),
    ("linear.query k = N+1", lambda: linear().query(np.ones((2, 1, W)), 6), ValueError, r"k: expected 1 <= k <= N = 5"),
    # RowGradAccumulator: indices (B, J) in [0, num_rows) or −1, rows (B, J, W)
    (
        "acc.add row 10**6",
        lambda: acc().add(np.array([[10**6], [0]]), np.ones((2, 1, W))),
        ValueError,
        r"indices: .*\[0, 5\)",
    ),
    (
        "acc.add B+1",
        lambda: acc().add(np.zeros((3, 1), int), np.ones((3, 1, W))),
        ValueError,
        r"indices: expected shape \(2",
    ),
    (
        "acc.add B-1",
        lambda: acc().add(np.zeros((1, 1), int), np.ones((1, 1, W))),
        ValueError,
        r"indices: expected shape \(2",
    ),
    (
        "acc.add rows shape",
        lambda: acc().add(ok_rows(), np.ones((2, 2, W + 1))),
        ValueError,
        r"rows: expected shape \(2, 2, 3\)",
    ),
    (
        "acc.add complex rows",
        lambda: acc().add(ok_rows(), np.ones((2, 2, W), complex)),
        TypeError,
        r"rows: expected dtype",
    ),
    (
        "acc.add nan rows",
        lambda: acc().add(ok_rows(), np.full((2, 2, W), np.nan)),
        ValueError,
        r"rows: expected finite",
    ),
    (
        "acc.add float idx",
        lambda: acc().add(np.zeros((2, 1)), np.ones((2, 1, W))),
        TypeError,
        r"indices: expected an integer",
    ),
    (
        "acc.gather B+1",
        lambda: acc().gather(np.zeros((3, 1), int)),
        ValueError,
        r"indices: expected shape \(2, \.\.\.\)",
    ),
    (
        "acc.gather row N",
        lambda: acc().gather(np.array([[5], [0]])),
        ValueError,
        r"indices: expected indices in \[0, 5\)",
    ),
    ("acc.zero B+1", lambda: acc().zero(np.zeros((3, 1), int)), ValueError, r"indices: expected shape \(2, ·\)"),
    ("acc.zero row -2", lambda: acc().zero(np.array([[-2], [0]])), ValueError, r"indices: expected indices"),
    (
        "acc.to_rowgrad too few rows",
        lambda: (lambda a: (a.add(np.array([[4], [0]]), np.ones((2, 1, W))), a.to_rowgrad(3)))(acc()),
        ValueError,
        r"num_rows: expected more than the largest row held, 4",
    ),
    ("RowGradAccumulator dtype", lambda: RowGradAccumulator(B, W, np.int64), TypeError, r"dtype: expected float32"),
    ("RowGradAccumulator B=0", lambda: RowGradAccumulator(0, W, np.float64), ValueError, r"batch_size: expected"),
    # SparseMemory: every method checks before its kernels
    ("smem before prepare", lambda: SparseMemory(N, W, LinearIndex).least_recent(1), RuntimeError, r"call prepare"),
    ("smem.prepare B=0", lambda: SparseMemory(N, W, LinearIndex).prepare(0, np.float64, 0.0), ValueError, "batch_size"),
    (
        "smem.prepare memory0 shape",
        lambda: SparseMemory(N, W, LinearIndex).prepare(B, np.float64, np.zeros((N + 1, W))),
        ValueError,
        r"memory0: expected shape \(5, 3\)",
    ),
    (
        "smem.prepare complex memory0",
        lambda: SparseMemory(N, W, LinearIndex).prepare(B, np.float64, np.zeros((N, W), complex)),
        TypeError,
        r"memory0: expected real values",
    ),
    (
        "smem.prepare int dtype",
        lambda: SparseMemory(N, W, LinearIndex).prepare(B, int, 0.0),
        TypeError,
        r"dtype: expected",
    ),
    ("SparseMemory(0, W)", lambda: SparseMemory(0, W, LinearIndex), ValueError, r"num_slots: expected an int >= 1"),
    ("SparseMemory factory", lambda: SparseMemory(N, W, "linear"), TypeError, r"index_factory: expected a callable"),
    (
        "smem.gather row N",
        lambda: smem().gather(np.array([[5], [0]])),
        ValueError,
        r"indices: expected indices in \[0, 5\)",
    ),
    (
        "smem.gather row -1",
        lambda: smem().gather(np.array([[-1], [0]])),
        ValueError,
        r"indices: expected indices in \[0, 5\)",
    ),
    (
        "smem.gather B+1",
        lambda: smem().gather(np.zeros((3, 1), int)),
        ValueError,
        r"indices: expected shape \(2, \.\.\.\)",
    ),
    ("smem.least_recent N+1", lambda: smem().least_recent(N + 1), ValueError, r"count: expected 1 <= count <= 5"),
    ("smem.query k = N+1", lambda: smem().query(np.ones((2, 1, W)), N + 1), ValueError, r"k: expected 1 <= k <= N = 5"),
    ("smem.query B+1", lambda: smem().query(np.ones((3, 1, W)), 2), ValueError, r"keys: expected shape \(2, ·, 3\)"),
    (
        "smem.write row 10**6",
        lambda: smem_write(indices=np.full((B, H, 2), 10**6)),
        ValueError,
        r"indices: expected indices in \[0, 5\)",
    ),
    (
        "smem.write erase not written",
        lambda: smem_write(erase_indices=np.array([[3, 3], [0, 0]])),
        ValueError,
        r"erase_indices: expected every erased row to be among the written",
    ),
    ("smem.write B+1 weights", lambda: smem_write(weights=np.ones((3, H, 2))), ValueError, r"weights: expected shape"),
    (
        "smem.touch slot N",
        lambda: (lambda m, j: m.touch(np.array([[5], [0]]), np.ones((2, 1)), 0.005, 1.0, j))(*journal_of_one_step()),
        ValueError,
        r"slots: expected indices in \[0, 5\)",
    ),
    (
        "smem.touch values shape",
        lambda: (lambda m, j: m.touch(np.zeros((2, 3), int), np.ones((2, 1)), 0.005, 1.0, j))(*journal_of_one_step()),
        ValueError,
        r"values: expected shape \(2, 3\)",
    ),
    (
        "smem.touch delta < 0",
        lambda: (lambda m, j: m.touch(np.zeros((2, 1), int), np.ones((2, 1)), -1.0, 1.0, j))(*journal_of_one_step()),
        ValueError,
        r"delta: expected a finite number >= 0",
    ),
    (
        "smem.touch journal",
        lambda: smem().touch(np.zeros((2, 1), int), np.ones((2, 1)), 0.005, 1.0, None),
        TypeError,
        r"journal: expected the StepJournal",
    ),
    ("smem.revert not a journal", lambda: smem().revert((1, 2)), TypeError, r"journal: expected the StepJournal"),
    (
        "smem.revert forged rows",
        lambda: (lambda m, j: m.revert(j._replace(rows=j.rows + 10**6)))(*journal_of_one_step()),
        ValueError,
        r"journal\.rows: expected indices in \[0, 5\)",
    ),
    (
        "smem.revert forged old_rows",
        lambda: (lambda m, j: m.revert(j._replace(old_rows=j.old_rows[:, :1])))(*journal_of_one_step()),
        ValueError,
        r"journal\.old_rows: expected shape \(2, 4, 3\)",
    ),
    (
        "smem.reapply without new_rows",
        lambda: (lambda m, j: m.reapply(j, 1.0))(*journal_of_one_step()),
        ValueError,
        r"journal\.new_rows: expected the rows of the write, got None",
    ),
    (
        "smem.revert journal of another memory",
        lambda: smem().revert(StepJournal(np.zeros((3, 1), int), np.zeros((3, 1, W)), None, None, None)),
        ValueError,
        r"journal\.rows: expected shape \(2, ·\)",
    ),
]

OUT = np.zeros((1, 3, 2))
ROWGRAD = ops.RowGrad(np.array([[0, 2]]), np.ones((1, 2, 2)), 3)
OPS_CASES = [
    # scatter_add_rows_inplace: out (B, N, W) float, written in place; indices (B, J) in [0, N)
    (
        "scatter index 10**6",
        lambda: ops.scatter_add_rows_inplace(OUT.copy(), np.array([[10**6]]), np.ones((1, 1, 2))),
        ValueError,
        r"indices: expected indices in \[0, 3\)",
    ),
    (
        "scatter index -1",
        lambda: ops.scatter_add_rows_inplace(OUT.copy(), np.array([[-1]]), np.ones((1, 1, 2))),
        ValueError,
        r"indices: expected indices in \[0, 3\)",
    ),
    (
        "scatter B+1 indices",
        lambda: ops.scatter_add_rows_inplace(OUT.copy(), np.zeros((2, 1), int), np.ones((2, 1, 2))),
        ValueError,
        r"indices: expected shape \(1, ·\)",
    ),
    (
        "scatter rows shape",
        lambda: ops.scatter_add_rows_inplace(OUT.copy(), np.zeros((1, 2), int), np.ones((1, 1, 2))),
        ValueError,
        r"rows: expected shape \(1, 2, 2\)",
    ),
    (
        "scatter complex rows",
        lambda: ops.scatter_add_rows_inplace(OUT.copy(), np.zeros((1, 1), int), np.ones((1, 1, 2), complex)),
        TypeError,
        r"rows: expected dtype",
    ),
    (
        "scatter float indices",
        lambda: ops.scatter_add_rows_inplace(OUT.copy(), np.zeros((1, 1)), np.ones((1, 1, 2))),
        TypeError,
        r"indices: expected an integer",
    ),
    (
        "scatter read-only out",
        lambda: ops.scatter_add_rows_inplace(
            np.broadcast_to(0.0, (1, 3, 2)), np.zeros((1, 1), int), np.ones((1, 1, 2))
        ),
        ValueError,
        r"out: expected a writeable array",
    ),
    (
        "scatter int out",
        lambda: ops.scatter_add_rows_inplace(np.zeros((1, 3, 2), int), np.zeros((1, 1), int), np.ones((1, 1, 2))),
        TypeError,
        r"out: expected a float32/float64 ndarray",
    ),
    (
        "scatter 2-d out",
        lambda: ops.scatter_add_rows_inplace(np.zeros((3, 2)), np.zeros((1, 1), int), np.ones((1, 1, 2))),
        TypeError,
        r"out: expected a float32/float64 ndarray of shape \(B, N, W\)",
    ),
    # densify_rows: the RowGrad's indices in [0, num_rows), shaped like its rows
    (
        "densify index N",
        lambda: ops.densify_rows(ROWGRAD._replace(num_rows=2)),
        ValueError,
        r"grad\.indices: .*\[0, 2\)",
    ),
    (
        "densify index 10**6",
        lambda: ops.densify_rows(ROWGRAD._replace(indices=np.array([[0, 10**6]]))),
        ValueError,
        r"grad\.indices: expected indices in \[0, 3\)",
    ),
    (
        "densify table index -1",
        lambda: ops.densify_rows(ops.RowGrad(np.array([-1]), np.ones((1, 2)), 3)),
        ValueError,
        r"grad\.indices: expected indices in \[0, 3\)",
    ),
    (
        "densify indices shape",
        lambda: ops.densify_rows(ROWGRAD._replace(indices=np.array([[0]]))),
        ValueError,
        r"grad\.indices: expected shape \(1, 2\)",
    ),
    ("densify num_rows 0", lambda: ops.densify_rows(ROWGRAD._replace(num_rows=0)), ValueError, r"grad\.num_rows"),
    (
        "densify not a RowGrad",
        lambda: ops.densify_rows((ROWGRAD.indices, ROWGRAD.rows, 3)),
        TypeError,
        r"grad: expected",
    ),
    (
        "densify 4-d rows",
        lambda: ops.densify_rows(ROWGRAD._replace(rows=np.ones((1, 2, 2, 1)))),
        ValueError,
        r"grad\.rows",
    ),
    # sparse_write_inplace: the journal can only undo a write whose erased rows are written
    (
        "sparse_write_inplace row 10**6",
        lambda: ops.sparse_write_inplace(np.zeros((B, N, W)), **write_args(indices=np.full((B, H, 2), 10**6))),
        ValueError,
        r"indices: expected indices in \[0, 5\)",
    ),
    (
        "sparse_write_inplace erase not written",
        lambda: ops.sparse_write_inplace(np.zeros((B, N, W)), **write_args(erase_indices=np.array([[3, 3], [0, 0]]))),
        ValueError,
        r"erase_indices: expected every erased row",
    ),
    (
        "sparse_write_inplace read-only memory",
        lambda: ops.sparse_write_inplace(np.broadcast_to(0.0, (B, N, W)), **write_args()),
        ValueError,
        r"memory: expected a writeable array",
    ),
    (
        "sparse_write_inplace erase 10**6",
        lambda: ops.sparse_write_inplace(np.zeros((B, N, W)), **write_args(erase_indices=np.full((B, 1), 10**6))),
        ValueError,
        r"erase_indices: expected indices in \[0, 5\)",
    ),
    (
        "sparse_write_inplace complex add",
        lambda: ops.sparse_write_inplace(np.zeros((B, N, W)), **write_args(add=np.ones((B, H, W), complex))),
        TypeError,
        r"add: expected dtype",
    ),
]


@pytest.mark.parametrize(
    "call, exc, pattern", [c[1:] for c in MEMORY_CASES + OPS_CASES], ids=[c[0] for c in MEMORY_CASES + OPS_CASES]
)
def test_bad_input_at_a_public_boundary_is_refused_naming_the_argument(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_the_ring_takes_minus_one_padded_slot_lists_and_undo_restores_it():
    r = ring()
    before = [r.order(b).copy() for b in range(B)], r.stamps.copy()
    journal = r.touch(np.array([[3, -1, 1], [-1, -1, -1]]), 7.0)
    assert list(r.order(0)[-2:]) == [3, 1] and list(r.order(1)) == list(range(N))
    assert r.stamps[0, 3] == r.stamps[0, 1] == 7.0
    r.undo(journal)
    assert all((r.order(b) == before[0][b]).all() for b in range(B)) and (r.stamps == before[1]).all()


def test_a_refused_touch_leaves_every_batch_elements_ring_as_it_was():
    # before issue 11, touching slot N of element 0 silently corrupted element 1's ring
    r = ring()
    with pytest.raises(ValueError, match="slots"):
        r.touch(np.array([[5], [0]]), 1.0)
    assert (r.oldest(5) == np.arange(5)).all()


def test_checks_are_skipped_inside_unchecked_so_models_pay_nothing():
    # a good call behaves the same checked and unchecked; a bad one is only refused when checked
    r = ring()
    with unchecked():
        journal = r.touch(np.array([[1], [2]]), 1.0)
        r.undo(journal)
    with unchecked():  # the shape check is off: only a model's own validated indices may come here
        check_dout(np.ones(3), (2, 2))


# -- every op's backward checks its dout ----------------------------------------------------------------
OP_NAMES = tuple(ops.OPS)


def _forward(name):
    spec = ops.OPS[name]
    arrays, hyper = spec.example(np.random.default_rng(1), ops.ExampleSizes())
    out, cache = spec.forward(*arrays, **hyper)
    return spec, out, cache


def _dout_name(spec):
    import inspect

    return list(inspect.signature(spec.backward).parameters)[0]


def test_the_registry_covers_at_least_the_ops_of_the_issue():
    assert len(OP_NAMES) >= 21


@pytest.mark.parametrize("name", OP_NAMES)
def test_backward_accepts_a_dout_of_the_forward_outputs_shape(name):
    spec, out, cache = _forward(name)
    if isinstance(out, tuple):
        spec.backward(tuple(np.ones(np.shape(o)) for o in out), cache)
    else:
        spec.backward(np.ones(np.shape(out)), cache)


def _bad_douts(out):
    """(label, dout, exception, pattern) for one output array."""
    shape = np.shape(out)
    wrong = [("extra axis", np.ones(shape + (1,)))]
    if shape:
        wrong.append(("one axis short", np.ones(shape[1:])))
        wrong.append(("batch + 1", np.ones((shape[0] + 1,) + shape[1:])))
        wrong.append(("broadcastable last axis", np.ones(shape[:-1] + (1,))))
    else:
        wrong.append(("a vector for a scalar loss", np.ones(2)))
    cases = [(label, d, ValueError, r"expected shape .* got") for label, d in wrong]
    cases += [
        ("NaN", np.full(shape, np.nan), ValueError, r"expected finite values"),
        ("inf", np.full(shape, np.inf), ValueError, r"expected finite values"),
        ("complex", np.ones(shape, complex), TypeError, r"expected dtype float32 or float64 \(a real"),
        ("integer", np.ones(shape, int), TypeError, r"expected dtype float32 or float64"),
        ("bool", np.ones(shape, bool), TypeError, r"expected dtype float32 or float64"),
        ("a list", np.ones(shape).tolist() if shape else [1.0], TypeError, r"expected a float32/float64 ndarray"),
        ("None", None, TypeError, r"expected"),
    ]
    return cases


BACKWARD_CASES = []
for _name in OP_NAMES:
    _spec, _out, _ = _forward(_name)
    _outs = _out if isinstance(_out, tuple) else (_out,)
    for _i in range(len(_outs)):
        for _label, *_ in _bad_douts(_outs[_i]):
            BACKWARD_CASES.append((_name, _i, _label))


@pytest.mark.parametrize("name, part, label", BACKWARD_CASES, ids=[f"{n}[{i}]-{lab}" for n, i, lab in BACKWARD_CASES])
def test_backward_refuses_a_bad_dout_naming_it(name, part, label):
    spec, out, cache = _forward(name)
    outs = out if isinstance(out, tuple) else (out,)
    (_, bad, exc, pattern), *_ = [c for c in _bad_douts(outs[part]) if c[0] == label]
    if isinstance(out, tuple):
        dout = tuple(bad if i == part else np.ones(np.shape(o)) for i, o in enumerate(outs))
        if bad is None and name == "lstm_step":
            spec.backward(dout, cache)  # documented: dh or dc may be None (zero)
            return
        argname = {
            "lstm_step": ("dh", "dc"),
            "sparse_content_read": ("dweights", "dreads"),
            "dnc_links": ("dlink_t", "dprecedence_t"),
            "dnc_directional": ("dforward", "dbackward"),
        }[name][part]
        pattern = rf"{argname} \(dout\[{part}\]\): {pattern}"
    else:
        dout = bad
        pattern = rf"{_dout_name(spec)}: {pattern}"
    with pytest.raises(exc, match=pattern):
        spec.backward(dout, cache)


TUPLE_OPS = [n for n in OP_NAMES if isinstance(_forward(n)[1], tuple)]


@pytest.mark.parametrize("name", TUPLE_OPS)
@pytest.mark.parametrize("arity", ["array", "one", "three"])
def test_backward_of_a_tuple_output_op_refuses_the_wrong_arity(name, arity):
    # before issue 11, lstm_step_backward unpacked one (2, C) array as (dh, dc)
    spec, out, cache = _forward(name)
    douts = [np.ones(np.shape(o)) for o in out]
    dout = {"array": np.stack(douts) if len({d.shape for d in douts}) == 1 else douts[0], "one": (douts[0],)}.get(
        arity, (*douts, douts[0])
    )
    exc = TypeError if arity == "array" else ValueError
    with pytest.raises(exc, match=r"dout: expected a tuple \(\w+, \w+\) of 2 arrays"):
        spec.backward(dout, cache)


def test_lstm_gates_backward_and_sparse_write_rows_backward_check_their_dout_too():
    spec, _, cache = _forward("lstm_step")
    with pytest.raises(TypeError, match=r"dout: expected a tuple \(dh, dc\)"):
        ops.lstm_gates_backward(np.ones((2, 2, 4)), cache)
    _, _, cache = _forward("sparse_write")
    B_, H_, J_ = cache.weights.shape
    with pytest.raises(ValueError, match=r"drows: expected shape \(2, 2, 4, 4\)"):
        ops.sparse_write_rows_backward(np.ones((B_, H_, J_, 5)), cache)


def test_a_wrong_dout_is_not_checked_inside_unchecked():
    spec, out, cache = _forward("tanh")
    with unchecked():
        spec.backward(np.ones(np.shape(out)), cache)  # the good call still works; checks cost nothing


# -- every layer's backward checks dy -----------------------------------------------------------------------
def _layers():
    x3 = np.random.default_rng(2).standard_normal((2, 3, 8))
    idx = np.array([[0, 3, 3], [1, 2, 0]])
    return [
        ("Linear", layers.Linear(input_dim=8, output_dim=4), x3),
        ("GELU", layers.GELU(), x3),
        ("SiLU", layers.SiLU(), x3),
        ("ReLU", layers.ReLU(), x3 + 0.05),
        ("Tanh", layers.Tanh(), x3),
        ("LayerNorm", layers.LayerNorm(dim=8), x3),
        ("RMSNorm", layers.RMSNorm(dim=8), x3),
        ("BatchNorm", layers.BatchNorm(dim=8), x3),
        ("Embedding", layers.Embedding(num_embeddings=5, embedding_dim=4), idx),
        ("MLP", layers.MLP(input_dim=8, hidden_dims=6), x3),
        ("MultiHeadAttention", layers.MultiHeadAttention(model_dim=8, num_heads=2), x3),
        ("TransformerBlock", layers.TransformerBlock(model_dim=8, num_heads=2), x3),
        (
            "Sequential",
            layers.Sequential(layers={"fc": layers.Linear(input_dim=8, output_dim=4), "act": layers.Tanh()}),
            x3,
        ),
    ]


LAYER_NAMES = [name for name, _, _ in _layers()]
DY_CASES = [
    ("wrong shape", lambda y: np.ones(y.shape[:-1] + (y.shape[-1] + 1,)), ValueError, r"dy: expected shape .* got"),
    ("broadcastable", lambda y: np.ones(y.shape[-1:]), ValueError, r"dy: expected shape .* got"),
    ("NaN", lambda y: np.full(y.shape, np.nan), ValueError, r"dy: expected finite values"),
    ("complex", lambda y: np.ones(y.shape, complex), TypeError, r"dy: expected dtype float32 or float64"),
    ("list", lambda y: np.ones(y.shape).tolist(), TypeError, r"dy: expected a float32/float64 ndarray"),
]


@pytest.mark.parametrize("name", LAYER_NAMES)
@pytest.mark.parametrize("label, make, exc, pattern", DY_CASES, ids=[c[0] for c in DY_CASES])
def test_layer_backward_refuses_a_bad_dy_naming_it(name, label, make, exc, pattern):
    (layer, x), *_ = [(lay, x) for n, lay, x in _layers() if n == name]
    y, cache = layer.forward(x)
    layer.backward(np.ones(y.shape), cache)  # the right dy is fine
    with pytest.raises(exc, match=pattern):
        layer.backward(make(y), cache)


# -- the issue's hostile cases, in a subprocess: a crash would be a signal, not a Python exception -----
HOSTILE = {
    "ring touch 10**6": "UsageRing(2, 5).touch(np.array([[10**6], [0]]), 1.0)",
    "ring touch N then oldest": "r = UsageRing(2, 5); r.touch(np.array([[5], [0]]), 1.0); r.oldest(5)",
    "scatter 10**6": "ops.scatter_add_rows_inplace(np.zeros((1, 3, 2)), np.array([[10**6]]), np.ones((1, 1, 2)))",
    "lsh query B+1": "lsh.query(np.ones((3, 1, 4)), 2)",
    "lsh query k=N+1": "lsh.query(np.ones((2, 1, 4)), 51)",
    "lsh update B+1": "lsh.update(np.zeros((3, 2), np.int64))",
    "lsh update row 10**6": "lsh.update(np.full((2, 2), 10**6))",
    "linear query B+1": "LinearIndex(m).query(np.ones((3, 1, 4)), 2)",
    "accumulator add B+1": "RowGradAccumulator(2, 4, np.float64).add(np.zeros((3, 1), np.int64), np.ones((3, 1, 4)))",
    "accumulator zero B+1": "RowGradAccumulator(2, 4, np.float64).zero(np.zeros((3, 1), np.int64))",
    "densify 10**6": "ops.densify_rows(ops.RowGrad(np.array([[10**6]]), np.ones((1, 1, 2)), 3))",
    "lstm backward array": (
        "a = [np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 4)), np.ones((7, 16)), np.ones(16)]\n"
        "out, cache = ops.lstm_step_forward(*a)\nops.lstm_step_backward(np.ones((2, 4)), cache)"
    ),
    "sparse memory gather 10**6": "smem.gather(np.full((2, 1), 10**6))",
    "sparse memory revert forged": "j, _ = smem.write(**wargs); smem.revert(j._replace(rows=j.rows + 10**6))",
    "sparse_write_inplace 10**6": "ops.sparse_write_inplace(np.zeros((2, 50, 4)), **dict(wargs, indices=idx + 10**6))",
}
PRELUDE = """
import numpy as np
from refmann import ops
from refmann.memory import LinearIndex, LSHIndex, RowGradAccumulator, SparseMemory, UsageRing
m = np.random.default_rng(0).standard_normal((2, 50, 4))
lsh = LSHIndex(m); lsh.rebuild()
smem = SparseMemory(50, 4, LinearIndex); smem.prepare(2, np.float64, np.zeros((50, 4)))
idx = np.array([[[0, 9], [1, 9]], [[2, 9], [3, 9]]])
wargs = dict(weights=np.full((2, 2, 2), 0.5), add=np.ones((2, 2, 4)), indices=idx, erase_indices=idx[..., -1])
"""


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_calls_raise_a_clean_python_exception_in_a_subprocess(name):
    code = PRELUDE + textwrap.dedent(HOSTILE[name])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.returncode == 1, f"expected an uncaught exception (exit 1), got {proc.returncode}: {proc.stderr}"
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(("ValueError:", "TypeError:")), proc.stderr[-2000:]
    assert "expected" in last and "got" in last, last


# -- size guards: refused before anything is allocated, naming the argument and the bytes ----------------
def _peak_bytes(call, exc, pattern):
    tracemalloc.start()
    try:
        with pytest.raises(exc, match=pattern):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cls", [SAM, DAM, NTM])
def test_a_huge_memory_size_is_refused_at_construction_naming_it_and_the_bytes(cls):
    peak = _peak_bytes(
        lambda: cls(input_size=3, output_size=3, memory_size=10**12),
        FootprintError,
        r"memory_size: .*1,000,000,000,000 slots.* needs about 146 TiB \(160,000,000,000,000 bytes\)",
    )
    assert peak < 50 * 2**20  # nothing N-sized was attempted


def test_footprint_errors_are_memory_errors_and_value_errors():
    assert issubclass(FootprintError, MemoryError) and issubclass(FootprintError, ValueError)


def test_the_sparse_memory_refuses_before_allocating_memory_index_and_ring(monkeypatch):
    monkeypatch.setenv("REFMANN_MEMORY_BUDGET", "64M")
    mem = SparseMemory(10**6, 16, make_index_factory("lsh"))
    peak = _peak_bytes(
        lambda: mem.prepare(8, np.float64, 0.0),
        MemoryError,
        r"memory_size: a sparse memory of 1,000,000 slots .* batch size 8 needs about .*\(memory .*index .*usage ring",
    )
    assert peak < 16 * 2**20 and mem.memory is None


def test_a_model_whose_batch_does_not_fit_is_refused_at_the_first_forward(monkeypatch):
    model = SAM(input_size=3, output_size=3, memory_size=20_000, word_size=16, num_heads=1, hidden_size=4)
    monkeypatch.setenv("REFMANN_MEMORY_BUDGET", "8M")
    peak = _peak_bytes(lambda: model.forward(np.zeros((2, 8, 3))), ValueError, r"memory_size: .*batch size 8")
    assert peak < 8 * 2**20
    monkeypatch.setenv("REFMANN_MEMORY_BUDGET", "off")
    assert model.forward(np.zeros((2, 8, 3))).shape == (2, 8, 3)  # the same call runs under a larger budget


def test_dense_models_refuse_t_steps_of_caches_past_the_budget_naming_inputs(monkeypatch):
    monkeypatch.setenv("REFMANN_MEMORY_BUDGET", "32M")
    model = DAM(input_size=3, output_size=3, memory_size=4096, word_size=20, num_heads=1, hidden_size=4)
    x = np.zeros((2000, 1, 3))
    # the lower bound T·B·N·W·8 = 1.3 GB, before the first step
    peak = _peak_bytes(
        lambda: model.loss_and_grads(x, x), FootprintError, r"inputs: a 2000-step pass of DAM .*T·B·N·W·itemsize"
    )
    assert peak < 16 * 2**20
    # the measured size of a step: 40 steps fit the lower bound (26 MB) but not what a step really keeps
    x = np.zeros((40, 1, 3))
    with pytest.raises(
        FootprintError, match=r"inputs: a 40-step pass of DAM at batch size 1 \(.* kept per step, measured\)"
    ):
        model.loss_and_grads(x, x)
    assert model.forward(x).shape == (40, 1, 3)  # forward keeps no caches: it fits


def test_a_large_plan_under_the_budget_logs_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("REFMANN_MEMORY_BUDGET", "160M")
    model = NTM(input_size=3, output_size=3, memory_size=4096, word_size=20, hidden_size=4)
    x = np.zeros((40, 1, 3))
    with caplog.at_level(logging.WARNING, logger="refmann"):
        model.loss_and_grads(x, x)
    assert any(
        "inputs: a 40-step pass of NTM" in r.getMessage() and "memory budget" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    "raw, value",
    [
        (None, 8 * 2**30),
        ("", 8 * 2**30),
        ("123", 123),
        ("512M", 512 * 2**20),
        ("1.5GiB", 1.5 * 2**30),
        ("2t", 2 * 2**40),
        ("off", np.inf),
    ],
)
def test_the_memory_budget_reads_refmann_memory_budget(monkeypatch, raw, value):
    if raw is None:
        monkeypatch.delenv("REFMANN_MEMORY_BUDGET", raising=False)
    else:
        monkeypatch.setenv("REFMANN_MEMORY_BUDGET", raw)
    assert memory_budget() == value


@pytest.mark.parametrize("raw", ["lots", "-1G", "8 X"])
def test_a_bad_memory_budget_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("REFMANN_MEMORY_BUDGET", raw)
    with pytest.raises(ValueError, match="REFMANN_MEMORY_BUDGET: expected a number of bytes"):
        memory_budget()
