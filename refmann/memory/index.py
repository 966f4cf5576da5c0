"""Nearest-neighbour indexes over the rows of a memory, one per batch element (Rae et al. 2016, §3.5).

Every index has the same interface::

    index = SomeIndex(memory, ...)      # memory: the (B, N, W) array the model writes in place
    index.rebuild()                     # re-index every row (O(N): initialisation and periodic rebuilds)
    index.update(rows)                  # rows (B, J) were modified in place: re-index them (O(J))
    index.query(keys, k)                # (B, H, W) -> (B, H, k) candidate rows, best first

Similarity is cosine (DESIGN decision 3), so the index and the read rank candidates alike.
:class:`LinearIndex` is exact (the oracle); :class:`LSHIndex` is approximate and never scans N.
"""

from __future__ import annotations

import numpy as np

from ..ops import top_k


def cosine_scores(memory, keys, eps=1e-6):
    """Cosine similarity of each key with every row, (B, H, N) — the formula of ``cosine_similarity_forward``."""
    key_norm = np.sqrt(np.sum(keys * keys, axis=-1, keepdims=True))            # (B, H, 1)
    mem_norm = np.sqrt(np.sum(memory * memory, axis=-1))[:, None, :]           # (B, 1, N)
    return (keys @ memory.transpose(0, 2, 1)) / (key_norm * mem_norm + eps)


class LinearIndex:
    """Exact cosine top-k by a scan of every row: O(N·W) per query. The oracle for the other indexes."""

    def __init__(self, memory: np.ndarray):
        self.memory = memory

    def rebuild(self):
        """Nothing to build: every query scans the memory."""

    def update(self, rows):
        """Nothing to update: every query scans the memory."""

    def query(self, keys, k):
        """The k rows of highest cosine similarity per key, (B, H, k): score descending, ties by index."""
        return top_k(cosine_scores(self.memory, keys), k)[0]

    def nbytes(self) -> int:
        return 0
