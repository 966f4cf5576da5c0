"""A gradient table that exists only for the rows it was given: per batch element an open-addressing
hash from slot to a row of a small pool (linear probing). SAM's backward keeps ∂L/∂M here, so its space
is O(rows touched by the sequence), never O(N).

Layout per batch element b: ``keys[b, h]`` a slot or −1 (empty), ``where[b, h]`` its pool row,
``slot_of[b, p]`` the slot of pool row p (insertion order), ``count[b]`` the pool rows in use.
The table size is a power of two, at least twice the pool's, so probes stay short.
"""

from __future__ import annotations

from .._jit import njit

_GOLDEN = 2654435761  # Knuth's multiplicative hash; slot * _GOLDEN fits int64 for any slot < 2**33


def _probe_loops(keys, b, slot):
    """Position of ``slot`` in table b, or of the empty cell where it would go."""
    mask = keys.shape[1] - 1
    h = (slot * _GOLDEN) & mask
    while keys[b, h] != -1 and keys[b, h] != slot:
        h = (h + 1) & mask
    return h


_probe = njit(_probe_loops)


def _rowacc_add_loops(keys, where, slot_of, count, pool, idx, rows):
    """pool[row of idx[b, j]] += rows[b, j]; a new slot gets a zeroed pool row (−1 = padding, skipped).
    The caller guarantees room for every new slot."""
    B, J = idx.shape
    W = pool.shape[2]
    for b in range(B):
        for j in range(J):
            s = idx[b, j]
            if s < 0:
                continue
            h = _probe(keys, b, s)
            if keys[b, h] == -1:
                p = count[b]
                count[b] = p + 1
                keys[b, h] = s
                where[b, h] = p
                slot_of[b, p] = s
                for c in range(W):
                    pool[b, p, c] = 0.0
            p = where[b, h]
            for c in range(W):
                pool[b, p, c] += rows[b, j, c]


def _rowacc_gather_loops(keys, where, pool, idx, out):
    """out[b, j] = the row of idx[b, j], or zeros for a slot never added."""
    B, J = idx.shape
    W = pool.shape[2]
    for b in range(B):
        for j in range(J):
            s = idx[b, j]
            h = _probe(keys, b, s) if s >= 0 else -1
            if h >= 0 and keys[b, h] == s:
                p = where[b, h]
                for c in range(W):
                    out[b, j, c] = pool[b, p, c]
            else:
                for c in range(W):
                    out[b, j, c] = 0.0


def _rowacc_zero_loops(keys, where, pool, idx):
    """Set the rows of the listed slots to zero (slots never added are zero already)."""
    B, J = idx.shape
    W = pool.shape[2]
    for b in range(B):
        for j in range(J):
            s = idx[b, j]
            if s < 0:
                continue
            h = _probe(keys, b, s)
            if keys[b, h] == s:
                p = where[b, h]
                for c in range(W):
                    pool[b, p, c] = 0.0


def _rowacc_rehash_loops(keys, where, slot_of, count):
    """Re-insert pool rows 0..count[b]−1 into an empty (all −1) table ``keys``."""
    B = keys.shape[0]
    for b in range(B):
        for p in range(count[b]):
            h = _probe(keys, b, slot_of[b, p])
            keys[b, h] = slot_of[b, p]
            where[b, h] = p


rowacc_add_kernel = njit(_rowacc_add_loops)
rowacc_gather_kernel = njit(_rowacc_gather_loops)
rowacc_zero_kernel = njit(_rowacc_zero_loops)
rowacc_rehash_kernel = njit(_rowacc_rehash_loops)
