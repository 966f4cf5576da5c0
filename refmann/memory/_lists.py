"""What the LSH index and the k-d forest share: rows filed into sorted linked lists, per table.

Both indexes file every row of a (B, N, W) memory into one list per table (an LSH bucket, a k-d
leaf), kept sorted by row index (``refmann/kernels/lists.py``), and both rebuild after N insertions.
:class:`ListIndex` holds that state, its checks and its views, so each index only adds how a row
finds its list (hyperplanes, or trees) and how a query walks them.
"""

from __future__ import annotations

import numpy as np


class ListIndex:
    """The shared state of :class:`~refmann.memory.LSHIndex` and :class:`~refmann.memory.KDForestIndex`.

    ``_codes``, ``_nxt``, ``_prv`` are (B, N, T) int32, row-major per row (a row's entries for all
    tables share a cache line); ``heads`` is (B, T, lists); ``_seen`` (B, N) is the query's scratch
    mark, −1 between queries.
    """

    #: what a list is called in the views' docstrings
    LIST_NAME = "list"

    @staticmethod
    def _check_memory_and_seed(memory, seed) -> None:
        """Raise unless ``memory`` is a (B, N, W) ndarray and ``seed`` an int (before a shape is read)."""
        from .._checks import check_seed

        if not isinstance(memory, np.ndarray):
            raise TypeError(f"memory: expected an ndarray of shape (B, N, W), got {type(memory).__name__}")
        if memory.ndim != 3:
            raise ValueError(f"memory: expected a 3-d array (B, N, W), got shape {memory.shape}")
        check_seed(seed)

    def _init_lists(self, memory, num_tables: int, num_lists: int, seed) -> None:
        """Keep the memory (checked by :meth:`_check_memory_and_seed`), allocate the lists, all empty."""
        B, N, _ = memory.shape
        self.memory = memory
        self.seed = int(seed)
        i32 = np.int32  # N < 2**31 rows: int32 halves the index's footprint
        self._codes = np.zeros((B, N, num_tables), i32)
        self.heads = np.full((B, num_tables, num_lists), -1, i32)
        self._nxt = np.full((B, N, num_tables), -1, i32)
        self._prv = np.full((B, N, num_tables), -1, i32)
        self._seen = np.full((B, N), -1, i32)
        self.last_counts = None  # int (B, H): the rows each query of the last query() scored
        self.insertions = 0
        self.rebuilds = 0

    @property
    def codes(self) -> np.ndarray:
        """The list (LSH: bucket; k-d forest: leaf) of every row in every table, a (B, T, N) view."""
        return self._codes.transpose(0, 2, 1)

    @property
    def nxt(self) -> np.ndarray:
        """The next row in the same list (−1: last), a (B, T, N) view."""
        return self._nxt.transpose(0, 2, 1)

    @property
    def prv(self) -> np.ndarray:
        """The previous row in the same list (−1: first), a (B, T, N) view."""
        return self._prv.transpose(0, 2, 1)

    def maybe_rebuild(self):
        """Rebuild when N insertions have accumulated since the last rebuild (call between sequences).

        Insertions that were rolled back do not count: undo restores the lists exactly, so after a
        sequence that was fully rolled back the index already *is* its rebuilt state."""
        if self.insertions >= self.memory.shape[1]:
            self.rebuild()
