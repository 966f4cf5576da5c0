"""kernels/lsh.py: each compiled LSH kernel equals its plain-Python ``_…_loops`` twin, and both equal the
references of tests/naive.py (codes from sums in the documented order, buckets as sorted Python lists,
the query spelled out with ``sorted``).

Under NUMBA_DISABLE_JIT=1 the kernels *are* the twins, and the comparison with naive.py is what counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann.kernels import lsh
from refmann.testing import f64, indices
from tests.naive import (
    naive_lsh_buckets,
    naive_lsh_codes,
    naive_lsh_projections,
    naive_lsh_query,
    naive_lsh_update,
)

pytestmark = pytest.mark.kernel

CODES = {"compiled": lsh.lsh_codes_from_projections_kernel, "twin": lsh._lsh_codes_from_projections_loops}
LINK = {"compiled": lsh.lsh_link_kernel, "twin": lsh._lsh_link_loops}
UPDATE_UNDO = {
    "compiled": (lsh.lsh_update_kernel, lsh.lsh_undo_kernel),
    "twin": (lsh._lsh_update_loops, lsh._lsh_undo_loops),
}
QUERY = {"compiled": lsh.lsh_query_kernel, "twin": lsh._lsh_query_loops}


def planes_t_of(planes):
    """(W, L·bits) layout of the kernels, as memory/index.py builds it."""
    L, nbits, W = planes.shape
    return np.ascontiguousarray(planes.reshape(L * nbits, W).T)


def segment_heads(buckets, N):
    """``sheads`` of bucket lists: the first row listed in each index range q = 1..SEGMENTS−1 (−1: none)."""
    B, L, C = len(buckets), len(buckets[0]), len(buckets[0][0])
    seg = -(-N // lsh.SEGMENTS)
    sheads = np.full((B, L, C, lsh.SEGMENTS - 1), -1, np.int32)
    for b in range(B):
        for t in range(L):
            for c, rows in enumerate(buckets[b][t]):
                for i in reversed(rows):
                    if i // seg >= 1:
                        sheads[b, t, c, i // seg - 1] = i
    return sheads


def bucket_arrays(buckets, N):
    """(heads, sheads, nxt, prv) — int32, kernels' layout — of bucket lists ``buckets[b][t][code]``."""
    B, L, C = len(buckets), len(buckets[0]), len(buckets[0][0])
    heads = np.full((B, L, C), -1, np.int32)
    nxt, prv = np.full((B, N, L), -1, np.int32), np.full((B, N, L), -1, np.int32)
    for b in range(B):
        for t in range(L):
            for c, rows in enumerate(buckets[b][t]):
                if rows:
                    heads[b, t, c] = rows[0]
                for a, n in zip(rows, rows[1:]):
                    nxt[b, a, t], prv[b, n, t] = n, a
    return heads, segment_heads(buckets, N), nxt, prv


def bucket_lists(heads, sheads, nxt, prv):
    """The bucket lists walked from ``heads``, checking that each is acyclic, that ``prv`` mirrors ``nxt``
    and that ``sheads`` names each list's first row in every index range."""
    B, L, C = heads.shape
    N = nxt.shape[1]
    out = []
    for b in range(B):
        tables = []
        for t in range(L):
            table = []
            for c in range(C):
                rows, i, p = [], int(heads[b, t, c]), -1
                while i >= 0:
                    assert len(rows) < N, "a bucket list has a cycle"
                    assert prv[b, i, t] == p
                    rows.append(i)
                    p, i = i, int(nxt[b, i, t])
                table.append(rows)
            tables.append(table)
        out.append(tables)
    np.testing.assert_array_equal(sheads, segment_heads(out, N))
    return out


def shuffled_buckets(codes, num_buckets, order):
    """Bucket lists in an arbitrary order (rows listed as they come in ``order[b]``), as after many moves."""
    B, L, _ = codes.shape
    return [
        [[[i for i in order[b] if codes[b, t, i] == c] for c in range(num_buckets)] for t in range(L)] for b in range(B)
    ]


def memories(shape):
    """Random rows, or rows from {−1, 0, 1}: equal rows (score ties) and exact zeros (on every hyperplane)."""
    return st.one_of(f64(shape), arrays(np.float64, shape, elements=st.sampled_from([-1.0, 0.0, 1.0])))


def centres(B, W):
    """The point rows are hashed relative to: zero (an uncentred index), or any (B, W)."""
    return st.one_of(st.just(np.zeros((B, W))), f64((B, W), -1.0, 1.0))


@st.composite
def lsh_sizes(draw):
    """(B, N, W, L, nbits) with small sizes."""
    return (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 10)),
        draw(st.integers(1, 4)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
    )


@given(data=st.data(), sizes=lsh_sizes())
def test_codes_from_projections_equal_the_exact_order_codes_even_when_the_given_projections_are_off(data, sizes):
    """Rows are put on hyperplanes, and the projections handed in are off by up to the bound on a BLAS
    sum's rounding (W·2⁻⁵³·‖row‖‖plane‖): the kernel must re-project those rows and give exact-order codes."""
    B, N, W, L, nbits = sizes
    planes = data.draw(f64((L, nbits, W)))
    memory = data.draw(memories((B, N, W)))
    centre = data.draw(centres(B, W))
    for b, i in np.ndindex(B, N):  # some rows onto a hyperplane through the centre (up to rounding)
        t, j = data.draw(st.integers(0, L - 1)), data.draw(st.integers(0, nbits - 1))
        plane = planes[t, j]
        if data.draw(st.booleans()) and plane @ plane > 0:
            d = memory[b, i] - centre[b]
            memory[b, i] = centre[b] + (d - (d @ plane) / (plane @ plane) * plane)
    exact = naive_lsh_projections(memory, planes, centre).reshape(B, N, L * nbits)
    planes_t = planes_t_of(planes)
    plane_norms = np.linalg.norm(planes_t, axis=0)
    bound = W * 2.0**-53 * np.linalg.norm(memory - centre[:, None], axis=-1)[..., None] * plane_norms
    off = data.draw(f64((B, N, L * nbits), -1.0, 1.0))
    given_proj = exact + off * bound
    b = data.draw(st.integers(0, B - 1))
    start = data.draw(st.integers(0, N - 1))
    n = data.draw(st.integers(1, N - start))
    expected = np.full((B, N, L), -5, np.int32)
    expected[b, start : start + n] = naive_lsh_codes(memory, planes, centre).transpose(0, 2, 1)[b, start : start + n]
    for kernel in CODES.values():
        codes = np.full((B, N, L), -5, np.int32)
        kernel(
            memory,
            b,
            start,
            np.ascontiguousarray(given_proj[b, start : start + n]),
            centre[b],
            planes_t,
            plane_norms,
            nbits,
            codes,
        )
        np.testing.assert_array_equal(codes, expected)  # only rows start..start+n−1 of batch element b


@given(data=st.data(), sizes=lsh_sizes())
def test_link_kernel_and_twin_list_every_bucket_in_index_order(data, sizes):
    B, N, W, L, nbits = sizes
    codes = data.draw(arrays(np.int32, (B, N, L), elements=st.integers(0, 2**nbits - 1)))
    expected = naive_lsh_buckets(codes.transpose(0, 2, 1), 2**nbits)
    for kernel in LINK.values():
        heads = np.full((B, L, 2**nbits), 7, np.int32)  # stale contents: all overwritten
        sheads = np.full((B, L, 2**nbits, lsh.SEGMENTS - 1), 7, np.int32)
        nxt, prv = np.full((B, N, L), 7, np.int32), np.full((B, N, L), 7, np.int32)
        for b in range(B):
            kernel(b, codes, heads, sheads, nxt, prv)
        assert bucket_lists(heads, sheads, nxt, prv) == expected


def check_update_and_undo(memory, planes, centre, codes, rows, new_contents):
    """Update ``rows`` after writing ``new_contents`` into them (sorted lists before and after, equal to
    the list model's), then undo: codes and lists restored array for array; compiled ≡ twin."""
    B, N, W = memory.shape
    L, nbits, _ = planes.shape
    J = rows.shape[1]
    buckets = naive_lsh_buckets(codes, 2**nbits)  # the invariant: every list sorted
    memory = memory.copy()
    for b, j in zip(*np.nonzero(rows >= 0)):
        memory[b, rows[b, j]] = new_contents[b, j]
    expected_codes, expected_buckets = naive_lsh_update(memory, planes, rows, codes, buckets, centre)
    assert expected_buckets == naive_lsh_buckets(expected_codes, 2**nbits)  # still sorted
    results = {}
    for name, (update, undo) in UPDATE_UNDO.items():
        state = (np.ascontiguousarray(codes.transpose(0, 2, 1), dtype=np.int32),) + bucket_arrays(buckets, N)
        before = tuple(a.copy() for a in state)
        journal = tuple(np.full((B, J, L), -9, np.int32) for _ in range(3))
        planes_t = planes_t_of(planes)
        update(
            memory,
            centre,
            planes_t,
            planes_t.astype(np.float32),
            np.linalg.norm(planes_t, axis=0),
            nbits,
            rows,
            *state,
            *journal,
        )
        np.testing.assert_array_equal(state[0].transpose(0, 2, 1), expected_codes)
        assert bucket_lists(*state[1:]) == expected_buckets
        after = tuple(a.copy() for a in state)
        undo(rows, *state, *journal)
        for x, y in zip(state, before):
            np.testing.assert_array_equal(x, y)
        results[name] = after + journal
    for x, y in zip(results["compiled"], results["twin"]):
        np.testing.assert_array_equal(x, y)


@given(data=st.data(), sizes=lsh_sizes())
def test_update_kernel_and_twin_insert_rows_in_index_order_like_the_list_model_and_undo_restores_the_lists(data, sizes):
    """Rows listed for update (with −1 padding and repeats) get new contents; each row whose code changed
    leaves its bucket and is inserted in its new bucket at its sorted place; undo restores codes and
    lists array for array."""
    B, N, W, L, nbits = sizes
    planes = data.draw(f64((L, nbits, W)))
    memory = data.draw(memories((B, N, W)))
    centre = data.draw(centres(B, W))
    codes = naive_lsh_codes(memory, planes, centre)  # (B, L, N)
    J = data.draw(st.integers(1, 6))
    rows = data.draw(indices(N + 1, (B, J), force_duplicates=True).map(lambda a: a - 1))  # −1 = padding
    check_update_and_undo(memory, planes, centre, codes, rows, data.draw(memories((B, J, W))))


@given(data=st.data())
def test_update_kernel_and_twin_keep_big_buckets_sorted(data):
    """Few distinct rows (copies of 1–3 prototypes, as SAM writes) in up to 80 rows and 1–2 bits: buckets
    of tens of rows, where the insertion point is found by walking an index range or by scanning the
    codes, whichever is first, and rows move between the ranges' first positions."""
    B, N, W = data.draw(st.integers(1, 2)), data.draw(st.integers(2, 80)), data.draw(st.integers(1, 4))
    L, nbits = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    planes = data.draw(f64((L, nbits, W)))
    protos = data.draw(f64((data.draw(st.integers(1, 3)), W)))
    pick = data.draw(arrays(np.int64, (B, N), elements=st.integers(0, len(protos) - 1)))
    memory = protos[pick]
    centre = np.zeros((B, W))
    codes = naive_lsh_codes(memory, planes, centre)
    J = data.draw(st.integers(1, 12))
    rows = data.draw(arrays(np.int64, (B, J), elements=st.integers(-1, N - 1)))
    new_pick = data.draw(arrays(np.int64, (B, J), elements=st.integers(0, len(protos) - 1)))
    check_update_and_undo(memory, planes, centre, codes, rows, protos[new_pick])


@given(data=st.data(), sizes=lsh_sizes())
def test_query_kernel_and_twin_equal_the_spelled_out_query(data, sizes):
    B, N, W, L, nbits = sizes
    H = data.draw(st.integers(1, 3))
    k = data.draw(st.integers(1, N))
    max_per_bucket = data.draw(st.integers(1, 3))
    probes = data.draw(st.integers(0, nbits))
    planes = data.draw(f64((L, nbits, W)))
    memory = data.draw(memories((B, N, W)))
    keys = data.draw(memories((B, H, W)))
    centre = data.draw(centres(B, W))
    fill = data.draw(arrays(np.int64, (B, data.draw(st.integers(1, 3))), elements=st.integers(-1, N - 1)))
    codes = naive_lsh_codes(memory, planes, centre)
    # the query takes whatever list order it finds (the index keeps them sorted: see the update test)
    buckets = shuffled_buckets(codes, 2**nbits, [data.draw(st.permutations(range(N))) for _ in range(B)])
    heads, _, nxt, _ = bucket_arrays(buckets, N)
    expected, expected_counts = naive_lsh_query(memory, planes, keys, k, max_per_bucket, probes, buckets, centre, fill)
    for kernel in QUERY.values():
        out, counts = np.full((B, H, k), -9, np.int64), np.full((B, H), -9, np.int64)
        seen = np.full((B, N), -1, np.int32)
        kernel(
            memory,
            centre,
            planes_t_of(planes),
            nbits,
            keys,
            k,
            max_per_bucket,
            probes,
            heads,
            nxt,
            fill,
            out,
            seen,
            counts,
        )
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(counts, expected_counts)
        np.testing.assert_array_equal(seen, -1)  # left as found, for the next query


@given(seed=st.integers(0, 2**32 - 1), sign=st.sampled_from([-1.0, 1.0]), size=st.sampled_from([1e-13, 1e-10, 1e-8]))
def test_update_kernel_gives_the_exact_codes_of_rows_a_float32_sum_cannot_place(seed, sign, size):
    """Rows that lie within float32 rounding of a hyperplane, on a known side of it (|projection| of
    1e-13..1e-8 against a float32 error of ~1e-6): the update's float32 pass must see that it cannot
    tell, and fall back to the exact float64 order, so the codes are the exact ones."""
    rng = np.random.default_rng(seed)
    B, N, W, L, nbits = 1, 6, 8, 2, 3
    planes = rng.standard_normal((L, nbits, W))
    memory = rng.standard_normal((B, N, W))
    centre = np.zeros((B, W))
    codes = naive_lsh_codes(memory, planes, centre)
    new = rng.standard_normal((B, N, W))
    for i in range(N):  # row i: onto plane (t, j), then moved `size` off it to the side `sign`
        t, j = i % L, i % nbits
        p = planes[t, j]
        new[0, i] -= (new[0, i] @ p) / (p @ p) * p
        new[0, i] += sign * size * p / (p @ p)
    assert np.all(np.abs(np.einsum("iw,lbw->ilb", new[0], planes)) > 0)
    rows = np.arange(N)[None, :]
    check_update_and_undo(memory, planes, centre, codes, rows, new)
