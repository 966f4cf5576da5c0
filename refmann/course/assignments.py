"""The eight assignments: what each asks the student to write, and how it is graded.

Every op is graded on inputs drawn by :func:`refmann.gradcheck.op_example` (kept away from kinks: no
top-k ties, separated usages, indices with forced repeats), against refmann's own op, with a random
upstream gradient. The notebooks that go with them are ``course/assignments/NN_<name>.ipynb``.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np

from .. import ops
from ..gradcheck import op_example
from ..layers.sketch import simhash_buckets as _ref_simhash
from .grader import Case, Check, CheckError, compare, diagnose, op_checks, student

__all__ = ["ASSIGNMENTS", "Assignment"]


class Assignment(NamedTuple):
    name: str  # the slug: `refmann course check NAME`
    notebook: str  # the stem of course/assignments/<notebook>.ipynb
    title: str
    functions: tuple  # what the student writes
    checks: tuple  # of Check


def _cases(op: str, seeds=(0, 1, 2), factors=None, mistakes=None, drop=("norm_eps",), **sizes):
    """Cases of ``op`` from op_example, one per seed, with a random upstream gradient each.

    The keyword arguments in ``drop`` (refmann's extras, such as the cosine's ``norm_eps``) are left at
    refmann's defaults and not passed to the student's function."""

    @cache
    def make():
        out = []
        for seed in seeds:
            rng = np.random.default_rng(1000 + seed)
            inputs, hyper = op_example(op, rng, **sizes)
            hyper = {key: value for key, value in hyper.items() if key not in drop}
            result, _ = getattr(ops, f"{op}_forward")(*inputs, **hyper)
            dout = (
                tuple(rng.standard_normal(r.shape) for r in result)
                if isinstance(result, tuple)
                else (rng.standard_normal(result.shape))
            )
            case = Case(tuple(inputs), dict(hyper), dout, {}, {})
            out.append(case._replace(
                factors=factors(case) if factors else {}, mistakes=mistakes(case) if mistakes else {}
            ))  # fmt: skip
        return out

    return lambda: make()


# -- 1. content addressing -------------------------------------------------------------------------------


def _beta_factors(case):
    memory, keys, strengths = case.inputs
    beta = [("β (the key strength)", strengths[..., None])]
    one_head = [("β (the key strength)", strengths[..., None])] if strengths.shape[1] == 1 else []
    return {"dkeys": beta, "dmemory": one_head}


def _softmax_mistakes(case):
    """The backward without the softmax's −⟨g, w⟩ term (the Jacobian's off-diagonal part)."""
    memory, keys, strengths = case.inputs
    weights, _ = ops.content_weights_forward(memory, keys, strengths)
    sim, cos_cache = ops.cosine_similarity_forward(memory, keys)
    dz = weights * case.dout
    dmemory, dkeys = ops.cosine_similarity_backward(strengths[..., None] * dz, cos_cache)
    sentence = "the softmax's VJP lost its −⟨g, w⟩ term: dz = w ⊙ (g − Σ_j g_j w_j), not w ⊙ g"
    return {
        "dmemory": [(sentence, dmemory)],
        "dkeys": [(sentence, dkeys)],
        "dstrengths": [(sentence, np.sum(dz * sim, axis=-1))],
    }


CONTENT = Assignment(
    "content_addressing",
    "01_content_addressing",
    "Content addressing: the cosine similarity and the softmax over slots",
    ("cosine_similarity_forward", "cosine_similarity_backward", "content_weights_forward", "content_weights_backward"),
    (
        *op_checks("cosine_similarity", _cases("cosine_similarity"), out_names=("sim",)),
        *op_checks(
            "content_weights",
            _cases("content_weights", factors=_beta_factors, mistakes=_softmax_mistakes, seeds=(0, 1, 2, 3), H=1),
            out_names=("weights",),
            points=(2, 4, 1, 1),
        ),
    ),
)

# -- 2. NTM location addressing --------------------------------------------------------------------------

LOCATION = Assignment(
    "ntm_addressing",
    "02_ntm_addressing",
    "NTM location addressing: interpolation, circular shift, sharpening",
    tuple(f"{op}_{part}" for op in ("interpolate", "circular_shift", "sharpen") for part in ("forward", "backward")),
    (
        *op_checks("interpolate", _cases("interpolate"), out_names=("gated",), points=(1, 2, 1, 1)),
        *op_checks("circular_shift", _cases("circular_shift"), out_names=("shifted",), points=(2, 3, 1, 1)),
        *op_checks("sharpen", _cases("sharpen"), out_names=("sharpened",), points=(1, 3, 1, 1)),
    ),
)

# -- 3. the dense write with several heads ---------------------------------------------------------------

DENSE_WRITE = Assignment(
    "dense_write",
    "03_dense_write",
    "The NTM's dense write with several heads: erase, then add",
    ("dense_write_forward", "dense_write_backward"),
    (
        *op_checks("dense_write", _cases("dense_write", H=1), out_names=("new_memory",), label="one head"),
        *op_checks(
            "dense_write",
            _cases("dense_write", H=3, seeds=(3, 4)),
            out_names=("new_memory",),
            label="three heads",
            points=(1, 4, 1, 1),
        ),
    ),
)

# -- 4. LSTM BPTT by hand --------------------------------------------------------------------------------


class _SeqCache(NamedTuple):
    steps: list  # the LSTMCache of each step


def _lstm_sequence_forward(xs, h0, c0, weight, bias):
    """Reference: h_t, c_t = lstm_step(x_t, h_{t-1}, c_{t-1}); returns hs (T, B, C)."""
    h, c, steps, hs = h0, c0, [], []
    for x in xs:
        (h, c), step = ops.lstm_step_forward(x, h, c, weight, bias)
        steps.append(step)
        hs.append(h)
    return np.stack(hs), _SeqCache(steps)


def _lstm_sequence_backward(dhs, cache, *, last_only=False):
    dh, dc = np.zeros_like(dhs[0]), np.zeros_like(dhs[0])
    dxs, dweight, dbias = [], 0.0, 0.0
    for t in reversed(range(len(cache.steps))):
        dx, dh, dc, dw, db = ops.lstm_step_backward((dhs[t] + dh, dc), cache.steps[t])
        dxs.append(dx)
        if not last_only or t == len(cache.steps) - 1:
            dweight, dbias = dweight + dw, dbias + db
    return np.stack(dxs[::-1]), dh, dc, dweight, dbias


@cache
def _lstm_sequence_cases():
    out = []
    for seed in (0, 1):
        rng = np.random.default_rng(2000 + seed)
        T, B, X, C = 4, 2, 3, 4
        xs = rng.standard_normal((T, B, X))
        h0, c0 = 0.5 * rng.standard_normal((B, C)), 0.5 * rng.standard_normal((B, C))
        weight, bias = 0.5 * rng.standard_normal((X + C, 4 * C)), 0.1 * rng.standard_normal(4 * C)
        dhs = rng.standard_normal((T, B, C))
        inputs = (xs, h0, c0, weight, bias)
        hs, cache_ = _lstm_sequence_forward(*inputs)
        last = _lstm_sequence_backward(dhs, cache_, last_only=True)
        mistakes = {
            "dweight": [
                ("holds only the last step's gradient: the weight is shared, so add dW over every step", last[3])
            ],
            "dbias": [("holds only the last step's gradient: the bias is shared, so add db over every step", last[4])],
        }
        out.append(Case(inputs, {}, dhs, {}, mistakes))
    return out


LSTM = Assignment(
    "lstm_bptt",
    "04_lstm_bptt",
    "An LSTM by hand: one step's backward, then backpropagation through time",
    ("lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward"),
    (
        *op_checks("lstm_step", _cases("lstm_step"), out_names=("h", "c"), points=(1, 4, 1, 1)),
        *op_checks(
            "lstm_sequence",
            _lstm_sequence_cases,
            forward="lstm_forward",
            backward="lstm_backward",
            reference=(_lstm_sequence_forward, _lstm_sequence_backward),
            out_names=("hs",),
            points=(1, 4, 1, 1),
            label="BPTT",
        ),
    ),
)

# -- 5. the sparse write and rollback --------------------------------------------------------------------


def _sparse_write_mistakes(case):
    memory, weights, add = case.inputs
    return {"dmemory": [("erased rows got a gradient: an erased row's old contents never reach the output", case.dout)]}


def _write_sequence(seed, N=4096, W=3, B=2, H=2, J=3, T=6):
    """T writes on a large memory that keep hitting the same few rows (so the order of the undo matters)."""
    rng = np.random.default_rng(3000 + seed)
    memory = rng.standard_normal((B, N, W))
    hot = rng.choice(N, size=6, replace=False)  # the rows every step draws from
    steps = []
    for _ in range(T):
        indices = rng.choice(hot, size=(B, H, J))
        erase = indices[:, :, 0]  # SAM erases (and rewrites) one row per head: the least recently accessed
        steps.append((rng.uniform(0.1, 1.0, (B, H, J)), rng.standard_normal((B, H, W)), indices, erase))
    return memory, steps


def _array_sizes(obj) -> int:
    if isinstance(obj, np.ndarray):
        return obj.size
    if isinstance(obj, (tuple, list)):
        return sum(_array_sizes(x) for x in obj)
    if isinstance(obj, dict):
        return sum(_array_sizes(x) for x in obj.values())
    return 0


def _check_write_inplace(ns):
    write = student(ns, "sparse_write_inplace")
    for seed in (0, 1):
        memory, steps = _write_sequence(seed)
        for weights, add, indices, erase in steps:
            want, _ = ops.sparse_write_forward(memory, weights, add, indices=indices, erase_indices=erase)
            write(memory, weights, add, indices=indices, erase_indices=erase)
            msg = diagnose("the memory after sparse_write_inplace", memory, want)
            if msg:
                raise CheckError(msg)
            memory = want.copy()


def _check_journal_small(ns):
    write = student(ns, "sparse_write_inplace")
    memory, steps = _write_sequence(0)
    weights, add, indices, erase = steps[0]
    journal = write(memory, weights, add, indices=indices, erase_indices=erase)
    held, limit = _array_sizes(journal), 4 * indices.size * (memory.shape[2] + 2)
    if held == 0:
        raise CheckError(
            "sparse_write_inplace returned no arrays: return the journal (the written rows and their old contents)"
        )
    if held > limit:
        raise CheckError(
            f"the journal holds {held} numbers for a write of {indices.size} rows in a memory of {memory.shape[1]}: "
            "a rollback journal keeps only the written rows and their old contents, never a copy of the memory"
        )


def _check_revert(ns):
    write, revert = student(ns, "sparse_write_inplace"), student(ns, "revert_inplace")
    memory, steps = _write_sequence(1)
    for weights, add, indices, erase in steps:
        before = memory.copy()
        journal = write(memory, weights, add, indices=indices, erase_indices=erase)
        revert(memory, journal)
        if not np.array_equal(memory, before):
            raise CheckError(
                diagnose("the memory after revert_inplace", memory, before)
                or "not bit for bit the memory before the write"
            )
        write(memory, weights, add, indices=indices, erase_indices=erase)


def _check_rollback(ns):
    write, rollback = student(ns, "sparse_write_inplace"), student(ns, "rollback_inplace")
    revert = ns.get("revert_inplace")
    memory, steps = _write_sequence(2)
    original = memory.copy()
    journals = [write(memory, w, a, indices=i, erase_indices=e) for w, a, i, e in steps]
    rollback(memory, journals)
    if np.array_equal(memory, original):
        return
    hint = ""
    if callable(revert):  # would undoing oldest first have given this?
        m2, _ = _write_sequence(2)
        js = [write(m2, w, a, indices=i, erase_indices=e) for w, a, i, e in steps]
        for j in js:
            revert(m2, j)
        if np.array_equal(memory, m2):
            hint = ": it matches undoing the steps oldest first; undo the newest step first"
    raise CheckError("after rolling back all six steps the memory is not bit for bit the original" + hint)


SPARSE = Assignment(
    "sparse_write",
    "05_sparse_write",
    "SAM's sparse write, its backward, and rollback",
    ("sparse_write_forward", "sparse_write_backward", "sparse_write_inplace", "revert_inplace", "rollback_inplace"),
    (
        *op_checks("sparse_write", _cases("sparse_write", mistakes=_sparse_write_mistakes), out_names=("new_memory",)),
        Check("in place: the same write", 1, _check_write_inplace),
        Check("in place: the journal holds only written rows", 1, _check_journal_small),
        Check("revert one step, bit for bit", 2, _check_revert),
        Check("roll back six steps, bit for bit", 2, _check_rollback),
    ),
)

# -- 6. the DNC's allocation and links -------------------------------------------------------------------


def _links_mistakes(case):
    link, precedence, w = case.inputs
    _, new_precedence = ops.dnc_links_forward(link, precedence, w)[0]
    wrong, _ = ops.dnc_links_forward(link, new_precedence, w)  # the link built from the *new* precedence
    return {"dlink": [], "link": [("uses the new precedence p_t; the link update reads p_{t-1}", wrong[0])]}


def _links_forward_check(ns):
    f = student(ns, "dnc_links_forward")
    for case in _cases("dnc_links", mistakes=_links_mistakes, seeds=(0, 1, 2, 3))():
        got = f(*case.inputs)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise CheckError(f"`dnc_links_forward` must return ((link, precedence), cache), got {type(got).__name__}")
        want, _ = ops.dnc_links_forward(*case.inputs)
        compare(("link", "precedence"), got[0], want, mistakes=case.mistakes)


_links = op_checks("dnc_links", _cases("dnc_links", seeds=(0, 1, 2, 3)), out_names=("link", "precedence"))
DNC = Assignment(
    "dnc_memory",
    "06_dnc_memory",
    "The DNC's dynamic allocation and temporal links",
    ("dnc_allocation_forward", "dnc_allocation_backward", "dnc_links_forward", "dnc_links_backward"),
    (
        *op_checks(
            "dnc_allocation",
            _cases("dnc_allocation", seeds=(0, 1, 2, 3, 4)),
            out_names=("allocation",),
            points=(2, 4, 1, 1),
        ),
        Check("dnc_links: forward", 2, _links_forward_check),
        *_links[1:],
    ),
)

# -- 7. product keys -------------------------------------------------------------------------------------


def _value_read_forward(values, weights, *, slots):
    return ops.embedding_bag_forward(values, weights, indices=slots)


def _value_read_backward(dout, cache_):
    return ops.embedding_bag_backward(dout, cache_)


def _value_read_mistakes(case):
    values, weights = case.inputs
    slots = case.hyper["slots"]
    lost = np.zeros_like(values)
    lost[slots.reshape(-1)] += (weights[..., None] * case.dout[..., None, :]).reshape(-1, values.shape[1])
    return {
        "dvalues": [
            (
                "slots read more than once got only one contribution: `a[idx] += v` drops repeats, np.add.at adds them",
                lost,
            )
        ]
    }


@cache
def _value_read_cases():
    out = []
    for seed in (0, 1, 2):
        (table, weights), hyper = op_example("embedding_bag", np.random.default_rng(4000 + seed))
        dout = np.random.default_rng(seed).standard_normal(weights.shape[:-1] + (table.shape[1],))
        case = Case((table, weights), {"slots": hyper["indices"]}, dout, {}, {})
        out.append(case._replace(mistakes=_value_read_mistakes(case)))
    return out


def _slots_check(ns):
    f, slots = student(ns, "product_key_topk_forward"), student(ns, "product_key_slots")
    for case in _cases("product_key_topk", seeds=(0, 1, 2))():
        _, cache_ = f(*case.inputs, **case.hyper)
        _, ref = ops.product_key_topk_forward(*case.inputs, **case.hyper)
        got = np.asarray(slots(cache_))
        if got.shape != ref.slots.shape:
            raise CheckError(f"product_key_slots returned shape {got.shape}, expected {ref.slots.shape}")
        if not np.array_equal(got, ref.slots):
            if np.array_equal(np.sort(got, -1), np.sort(ref.slots, -1)):
                raise CheckError("the right slots in the wrong order: best score first")
            n = case.inputs[1].shape[2]
            if np.array_equal(np.sort(got, -1), np.sort((ref.slots % n) * n + ref.slots // n, -1)):
                raise CheckError(
                    "slot i·n + j is sub-key i of the first half and j of the second: yours are transposed"
                )
            raise CheckError("different slots than refmann's exact top k of the n² product keys")


PKM = Assignment(
    "product_keys",
    "07_product_keys",
    "Product-key search and the value backward",
    (
        "product_key_topk_forward",
        "product_key_topk_backward",
        "product_key_slots",
        "value_read_forward",
        "value_read_backward",
    ),
    (
        *op_checks("product_key_topk", _cases("product_key_topk"), out_names=("scores",), points=(2, 3, 1, 1)),
        Check("product_key_topk: the slots", 2, _slots_check),
        *op_checks(
            "value_read",
            _value_read_cases,
            reference=(_value_read_forward, _value_read_backward),
            out_names=("out",),
            points=(1, 3, 1, 1),
        ),
    ),
)

# -- 8. a sketch memory read -----------------------------------------------------------------------------


def _sketch_rows(x, planes):
    T, b = planes.shape[0], planes.shape[2]
    buckets, _ = _ref_simhash(x, planes)
    return buckets + (np.arange(T) << b)[None, :]  # (B, T) row t·2^b + bucket


def _sketch_read_forward(values, *, x, planes):
    rows = _sketch_rows(x, planes)
    weights = np.full(rows.shape, 1.0 / planes.shape[0])
    return ops.embedding_bag_forward(values, weights, indices=rows)


def _sketch_read_backward(dy, cache_):
    dvalues, _ = ops.embedding_bag_backward(dy, cache_)
    return (dvalues,)


@cache
def _sketch_cases():
    out = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(5000 + seed)
        B, X, Y, T, b = 12, 5, 3, 3, 2  # 12 inputs in 4 buckets per table: rows are shared
        planes = rng.standard_normal((T, X, b))
        while True:
            x = rng.standard_normal((B, X))
            if _ref_simhash(x, planes)[1].min() > 1e-3:
                break
        values = rng.standard_normal((T << b, Y))
        dy = rng.standard_normal((B, Y))
        rows = _sketch_rows(x, planes)
        lost = np.zeros_like(values)
        lost[rows.reshape(-1)] += np.repeat(dy / T, T, axis=0)
        mistakes = {
            "dvalues": [("rows hit by several inputs got one contribution: use np.add.at, not `a[idx] += v`", lost)]
        }
        out.append(
            Case(
                (values,),
                {"x": x, "planes": planes},
                dy,
                {"dvalues": [("T (the number of tables)", 1.0 / T)]},
                mistakes,
            )
        )
    return out


def _buckets_check(ns):
    f = student(ns, "simhash_buckets")
    for case in _sketch_cases():
        x, planes = case.hyper["x"], case.hyper["planes"]
        got = f(x, planes)
        got = got[0] if isinstance(got, tuple) else got
        want, _ = _ref_simhash(x, planes)
        got = np.asarray(got)
        if got.shape != want.shape:
            raise CheckError(
                f"simhash_buckets returned shape {got.shape}, expected {want.shape} (one bucket per input and table)"
            )
        if not np.array_equal(got, want):
            b = planes.shape[2]
            flipped = sum(((want >> j) & 1) << (b - 1 - j) for j in range(b))
            if np.array_equal(got, flipped):
                raise CheckError("the bits are read in the wrong order: plane j gives bit j, worth 2^j")
            raise CheckError(f"{int(np.sum(got != want))} of {want.size} buckets differ from refmann's")


SKETCH = Assignment(
    "sketch_memory",
    "08_sketch_memory",
    "A sketch memory read: SimHash buckets and the value tables' gradient",
    ("simhash_buckets", "sketch_read_forward", "sketch_read_backward"),
    (
        Check("simhash_buckets", 2, _buckets_check),
        *op_checks(
            "sketch_read",
            _sketch_cases,
            reference=(_sketch_read_forward, _sketch_read_backward),
            out_names=("y",),
            points=(2, 3, 1, 1),
        ),
    ),
)

#: name -> Assignment, in the course's order.
ASSIGNMENTS: dict[str, Assignment] = {
    a.name: a for a in (CONTENT, LOCATION, DENSE_WRITE, LSTM, SPARSE, DNC, PKM, SKETCH)
}
