r"""The Sparse DNC's temporal link tables (Rae et al. 2016, Supp. D), exactly undoable.

The DNC's temporal links (Graves et al. 2016) remember the order of writes: with the write weighting
w and the precedence p (how recently each slot was written),

.. math::

    L_t(i, j) = (1 - w_t(i) - w_t(j))\, L_{t-1}(i, j) + w_t(i)\, p_{t-1}(j), \qquad
    p_t = \Big(1 - \sum_i w_t(i)\Big)\, p_{t-1} + w_t,

so row i of L lists the slots written before i, and column i the slots written after it. The Sparse
DNC keeps two sparse N × K_L tables instead of the dense N × N matrix, each with **its own row's
decay only** (our reading, ``docs/sdnc.md``), so that every update is local to the rows it changes:

- ``pred`` ≈ L (the paper's N_t): pred(i, j) ← (1 − w(i))·pred(i, j) + w(i)·p(j), rows i ∈ supp(w);
- ``succ`` ≈ Lᵀ (the paper's P_t): succ(i, j) ← (1 − w(i))·succ(i, j) + p(i)·w(j), rows
  supp(w) ∪ supp(p);
- p ← (1 − Σ w)·p + w;

each with a zero diagonal, and every changed row and p truncated to its K_L largest values (ties to
the lower index; exact zeros dropped). One structure per batch element; B of them side by side.

:meth:`SparseLinks.update` returns a :class:`LinkJournal` (the changed rows before and after, and the
old precedence), so :meth:`SparseLinks.revert` restores the tables bit for bit, newest first, and
:meth:`SparseLinks.reapply` redoes a step. :meth:`SparseLinks.follow` turns read weights into the
forward or backward weights over the k best slots, reading succ rows (forward) or pred rows
(backward) only: O(K·K_L) per head, never O(N). Only :meth:`SparseLinks.prepare` is O(N).

Backward through the tables (ours: the paper does not differentiate the links): a :class:`LinkGrads`
holds ∂L/∂ the live tables' stored entries, aligned with their positions; :meth:`SparseLinks.follow_backward`
adds a follow's VJP into it, :meth:`SparseLinks.update_backward` carries it back through one update
(to the old rows, the old precedence and the write weights), then :meth:`SparseLinks.revert` restores the
rows it is aligned with. O(J·K_L·(K_L + log J)) per step, never O(N).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import (
    as_float_array,
    as_index_array,
    check_dtype,
    check_footprint,
    check_positive_int,
    check_shape,
    enabled,
)
from ..kernels.links import (
    links_follow_backward_kernel,
    links_follow_kernel,
    links_restore_kernel,
    links_update_backward_kernel,
    links_update_kernel,
)
from .accumulator import RowGradAccumulator

#: How far past 1 a merged write weight w(i) or the total Σ w may be (rounding) before update refuses it;
#: the decays 1 − w(i) and 1 − Σ w are clamped at 0.
WEIGHT_SLACK = 1e-12
#: dense() refuses past this many slots: it builds (B, N, N) arrays.
DENSE_MAX_SLOTS = 4096
DIRECTIONS = ("forward", "backward")


class LinkRows(NamedTuple):
    """The rows of one link table that one step changed, before and after (R rows, −1 = padding)."""

    rows: np.ndarray  # int64 (B, R)        the changed rows, ascending, −1 = padding
    old_idx: np.ndarray  # int32 (B, R, K_L)   their columns before the step (−1 = empty)
    old_val: np.ndarray  # (B, R, K_L)         their values before the step (0 where empty)
    new_idx: np.ndarray  # int32 (B, R, K_L)   their columns after the step
    new_val: np.ndarray  # (B, R, K_L)         their values after the step


class LinkJournal(NamedTuple):
    """What one :meth:`SparseLinks.update` changed: enough to revert it, redo it, or differentiate it."""

    slots: np.ndarray  # int64 (B, J)    the support S of the write weighting, ascending, −1 = padding
    weights: np.ndarray  # float64 (B, J)  the merged w(i) on those slots (0 on padding)
    pred: LinkRows  # R = J:           the rows of S
    succ: LinkRows  # R = J + K_L:     the rows of S ∪ supp(p)
    old_prec_idx: np.ndarray  # int32 (B, K_L)  the precedence before the step (−1 = empty)
    old_prec_val: np.ndarray  # (B, K_L)
    new_prec_idx: np.ndarray  # int32 (B, K_L)  the precedence after the step
    new_prec_val: np.ndarray  # (B, K_L)


class LinkGrads:
    r"""∂L/∂ the stored entries of the live link tables, entry by entry; never N-sized.

    It stands for three dense gradients shaped like the tables' value arrays — ``pred_val`` and
    ``succ_val`` (B, N, K_L) and ``prec_val`` (B, K_L) — aligned with the entries the tables hold **now**:
    ``pred.gather(rows)[b, r, e]`` is ∂L/∂``pred_val[b, rows[b, r], e]``. After a step's backward
    (:meth:`SparseLinks.update_backward`) the tables must be reverted (:meth:`SparseLinks.revert`) so
    that they hold the rows the gradient is now aligned with. Empty entries (column −1) keep a zero
    gradient; rows never given one read as zero.

    Parameters
    ----------
    batch_size, link_k : int
        B and K_L of the tables.
    dtype : numpy dtype
        The tables' dtype (float32 or float64).
    num_slots : int, optional
        N: rows must lie in ``[0, N)`` (checked at the boundary).
    capacity : int
        Initial rows held per batch element by each table's hash (it grows as needed).

    Attributes
    ----------
    pred, succ : RowGradAccumulator
        Width K_L: the gradient of each table row that was given one, a hash from row to pool row.
    prec : ndarray, shape (B, K_L)
        The gradient of the precedence's entries.
    """

    def __init__(self, batch_size: int, link_k: int, dtype, *, num_slots: int | None = None, capacity: int = 64):
        self.B = check_positive_int(batch_size, "batch_size")
        self.K = check_positive_int(link_k, "link_k")
        self.dtype = check_dtype(dtype)
        self.pred = RowGradAccumulator(self.B, self.K, self.dtype, capacity, num_rows=num_slots)
        self.succ = RowGradAccumulator(self.B, self.K, self.dtype, capacity, num_rows=num_slots)
        self.prec = np.zeros((self.B, self.K), self.dtype)

    def clear(self) -> None:
        """Every gradient back to zero (O(rows held), not N)."""
        self.pred.clear()
        self.succ.clear()
        self.prec.fill(0)

    def nbytes(self) -> int:
        return self.pred.nbytes() + self.succ.nbytes() + self.prec.nbytes


class SparseLinks:
    r"""The Sparse DNC's temporal link tables ``pred`` ≈ L and ``succ`` ≈ Lᵀ and its precedence, per batch element.

    Arrays (after :meth:`prepare`), each row in canonical order — value descending, equal values by
    column ascending, then the empty entries (column −1, value 0):

    - ``pred_idx`` int32 (B, N, K_L), ``pred_val`` (B, N, K_L): row i = up to K_L slots written before i;
    - ``succ_idx``, ``succ_val``: row i = up to K_L slots written after i;
    - ``prec_idx`` int32 (B, K_L), ``prec_val`` (B, K_L): the precedence's up to K_L slots.

    Every stored value is > 0; the values have the model's dtype (float32 or float64).

    Every method checks its arguments (shapes, indices in range, weights finite and within bounds) before
    a kernel sees them, unless called inside :func:`refmann._checks.unchecked` (a model's steps).

    Parameters
    ----------
    num_slots : int
        N (fewer than 2**31: the columns are int32).
    link_k : int
        K_L, the entries kept per row and in the precedence (default 8, the paper's). With
        K_L ≥ N nothing is ever truncated.

    Notes
    -----
    With p the precedence before the step and w the step's write weighting (support S):

    .. math::

        \mathrm{pred}(i, j) &\leftarrow (1 - w(i))\,\mathrm{pred}(i, j) + w(i)\,p(j), \quad i \in S,\ j \ne i \\
        \mathrm{succ}(i, j) &\leftarrow (1 - w(i))\,\mathrm{succ}(i, j) + p(i)\,w(j), \quad j \ne i \\
        p &\leftarrow \Big(1 - \sum_{i \in S} w(i)\Big)\, p + w

    then every changed row and p keep their K_L largest values (ties to the lower index). The dense
    rule, its two decays and why each table keeps only its own row's: ``docs/sdnc.md``.

    References
    ----------
    Rae et al. 2016, "Scaling memory-augmented neural networks with sparse reads and writes",
    Supplementary D. Graves et al. 2016, "Hybrid computing using a neural network with dynamic
    external memory" (the dense links).
    """

    def __init__(self, num_slots: int, link_k: int = 8):
        self.N = check_positive_int(num_slots, "num_slots")
        if self.N >= 2**31:
            raise ValueError(f"num_slots: expected fewer than 2**31 slots (the columns are int32), got {self.N}")
        self.K = check_positive_int(link_k, "link_k")
        self.B = None
        self.pred_idx = self.pred_val = self.succ_idx = self.succ_val = self.prec_idx = self.prec_val = None
        self.pending = 0  # steps applied and not reverted (0: the tables are empty)

    # -- set-up -----------------------------------------------------------------------------------------
    @staticmethod
    def footprint_for(batch_size: int, num_slots: int, link_k: int, dtype) -> dict[str, int]:
        """Bytes of each part :meth:`prepare` allocates (int32 columns, values in ``dtype``), by part."""
        per_entry = 4 + np.dtype(dtype).itemsize
        table = batch_size * num_slots * link_k * per_entry
        return {"pred table": table, "succ table": table, "precedence": batch_size * link_k * per_entry}

    @staticmethod
    def nbytes_for(batch_size: int, num_slots: int, link_k: int, dtype) -> int:
        """Bytes the link tables of this size hold, computed before building them (a footprint guard)."""
        return sum(SparseLinks.footprint_for(batch_size, num_slots, link_k, dtype).values())

    def prepare(self, B: int, dtype) -> None:
        """Allocate the tables for batch size B, all empty (O(N): only here).

        Returns at once if the tables already have this batch size and dtype and every step was
        reverted (they are empty). Before allocating, the footprint is checked against the memory
        budget: a :class:`~refmann._checks.FootprintError` naming ``num_slots`` refuses a plan past it.
        """
        B = check_positive_int(B, "batch_size")
        dtype = check_dtype(dtype)
        if self.B == B and self.pred_val.dtype == dtype:
            if self.pending == 0:
                return
            for arr in (self.pred_idx, self.succ_idx, self.prec_idx):
                arr.fill(-1)
            for arr in (self.pred_val, self.succ_val, self.prec_val):
                arr.fill(0)
            self.pending = 0
            return
        parts = self.footprint_for(B, self.N, self.K, dtype)
        what = f"sparse link tables of {self.N:,} slots × {self.K} entries ({dtype.name}) for batch size {B}"
        check_footprint(parts, "num_slots", what=what)
        self.B = self.pred_idx = self.pred_val = self.succ_idx = self.succ_val = None  # free the old ones first
        shape = (B, self.N, self.K)
        self.pred_idx = np.full(shape, -1, np.int32)
        self.pred_val = np.zeros(shape, dtype)
        self.succ_idx = np.full(shape, -1, np.int32)
        self.succ_val = np.zeros(shape, dtype)
        self.prec_idx = np.full((B, self.K), -1, np.int32)
        self.prec_val = np.zeros((B, self.K), dtype)
        self.B, self.pending = B, 0

    def _ready(self) -> None:
        if self.pred_idx is None:
            raise RuntimeError("SparseLinks: call prepare(B, dtype) before using the link tables")

    def nbytes(self) -> int:
        """Bytes held by the tables and the precedence (after :meth:`prepare`)."""
        self._ready()
        arrays = (self.pred_idx, self.pred_val, self.succ_idx, self.succ_val, self.prec_idx, self.prec_val)
        return sum(a.nbytes for a in arrays)

    # -- one step -----------------------------------------------------------------------------------------
    def update(self, indices, weights) -> LinkJournal:
        """Apply one step's write weighting to pred, succ and the precedence (in place), journalled.

        Parameters
        ----------
        indices : int ndarray, shape (B, J)
            The written slots, in ``[0, N)``; a slot listed more than once has its weights added up
            (in the order given).
        weights : ndarray, shape (B, J)
            w on those slots: finite and ≥ 0, each merged w(i) ≤ 1 and Σ_i w(i) ≤ 1 per batch element
            (up to :data:`WEIGHT_SLACK`). Entries of weight 0 change nothing.

        Returns
        -------
        LinkJournal
            The step's changes, for :meth:`revert` and :meth:`reapply`. It holds O(B·(J + K_L)·K_L)
            numbers, whatever N is.

        Notes
        -----
        The rows that change are pred's rows of supp(w) and succ's rows of supp(w) ∪ supp(p): at most
        2J + K_L rows of K_L entries, each rebuilt from its old entries and at most max(K_L, J)
        additions in O(K_L·(K_L + J)).
        """
        self._ready()
        B, K = self.B, self.K
        if enabled():
            indices, weights = self._check_write(indices, weights)
        slots = np.ascontiguousarray(indices, dtype=np.int64)
        w = np.ascontiguousarray(weights, dtype=np.float64)
        J = slots.shape[1]
        R = J + K
        vdt = self.pred_val.dtype
        i32 = np.int32
        journal = LinkJournal(
            np.empty((B, J), np.int64),
            np.empty((B, J), np.float64),
            LinkRows(
                np.empty((B, J), np.int64),
                np.empty((B, J, K), i32),
                np.empty((B, J, K), vdt),
                np.empty((B, J, K), i32),
                np.empty((B, J, K), vdt),
            ),
            LinkRows(
                np.empty((B, R), np.int64),
                np.empty((B, R, K), i32),
                np.empty((B, R, K), vdt),
                np.empty((B, R, K), i32),
                np.empty((B, R, K), vdt),
            ),
            np.empty((B, K), i32),
            np.empty((B, K), vdt),
            np.empty((B, K), i32),
            np.empty((B, K), vdt),
        )
        links_update_kernel(
            self.pred_idx,
            self.pred_val,
            self.succ_idx,
            self.succ_val,
            self.prec_idx,
            self.prec_val,
            slots,
            w,
            journal.slots,
            journal.weights,
            *journal.pred,
            *journal.succ,
            journal.old_prec_idx,
            journal.old_prec_val,
            journal.new_prec_idx,
            journal.new_prec_val,
        )
        self.pending += 1
        return journal

    def _check_write(self, indices, weights):
        """update's arguments: slots in range, one row per batch element, weights within the promised bounds."""
        indices = as_index_array(indices, "indices", upper=self.N, shape=(self.B, None))
        weights = as_float_array(weights, "weights", ndim=2)
        check_shape(weights, "weights", indices.shape)
        if weights.size and weights.min() < 0:
            raise ValueError(f"weights: expected write weights >= 0, got a minimum of {weights.min():.6g}")
        limit = 1.0 + WEIGHT_SLACK
        if weights.size:  # each slot's merged weight: sort each row by slot, sum the runs of equal slots
            order = np.argsort(indices, axis=1, kind="stable")
            si = np.take_along_axis(indices, order, axis=1)
            sw = np.take_along_axis(weights.astype(np.float64), order, axis=1)
            starts = np.ones(si.shape, bool)
            starts[:, 1:] = si[:, 1:] != si[:, :-1]
            first = np.flatnonzero(starts)
            merged = np.add.reduceat(sw.ravel(), first)
            worst = int(np.argmax(merged))
            if merged[worst] > limit:
                b, j = divmod(int(first[worst]), si.shape[1])
                raise ValueError(
                    f"weights: expected each slot's total write weight <= 1, got {merged[worst]:.17g} on slot "
                    f"{int(si[b, j])} of batch element {b}"
                )
            totals = sw.sum(axis=1)
            b = int(np.argmax(totals))
            if totals[b] > limit:
                raise ValueError(
                    f"weights: expected the write weights of each batch element to sum to at most 1, got "
                    f"{totals[b]:.17g} for batch element {b}"
                )
        return indices, weights

    # -- reading ------------------------------------------------------------------------------------------
    def follow(self, indices, weights, k: int, direction: str):
        """The forward or backward weights of read weights, over the k slots where they are largest.

        Parameters
        ----------
        indices : int ndarray, shape (B, H, J)
            The slots each head read, in ``[0, N)`` (duplicates allowed).
        weights : ndarray, shape (B, H, J)
            Their read weights, finite and ≥ 0.
        k : int
            Slots to return per head, 1 <= k <= N.
        direction : {"forward", "backward"}
            ``"forward"``: f(i) = Σ_j w(j)·succ(slot_j, i) (the slots written after those read);
            ``"backward"``: b(i) = Σ_j w(j)·pred(slot_j, i) (those written before).

        Returns
        -------
        out_idx : int64 ndarray, shape (B, H, k)
            The k slots of highest value, value descending, equal values by slot ascending. With fewer
            than k slots of positive value, the rest are the lowest-numbered slots not listed yet
            (value 0), so with k = N every slot is listed once.
        coef : ndarray, shape (B, H, k, J)
            ``coef[b, h, a, j]`` = table(slot_j, out_idx[a]) (0 where row slot_j lacks it), so the
            values are ``np.einsum("bhaj,bhj->bha", coef, weights)``: a linear map of the read weights,
            which is what a caller differentiates through.

        Notes
        -----
        Read literally, f = L·w needs column j of L for every slot j read, spread over all N rows; that
        column is row j of succ (≈ Lᵀ), and b's is row j of pred. So only the J rows read are visited, and
        a small hash table merges their equal columns: O(H·J·K_L + H·k·J) per batch element, never O(N)
        (Rae et al. 2016, Supp. D; ``docs/sdnc.md``, ambiguity 8).
        """
        self._ready()
        if enabled():
            indices = as_index_array(indices, "indices", upper=self.N, shape=(self.B, None, None))
            weights = as_float_array(weights, "weights", ndim=3)
            check_shape(weights, "weights", indices.shape)
            if weights.size and weights.min() < 0:
                raise ValueError(f"weights: expected read weights >= 0, got a minimum of {weights.min():.6g}")
            k = check_positive_int(k, "k")
            if k > self.N:
                raise ValueError(f"k: expected 1 <= k <= N = {self.N} (the number of slots), got {k}")
        if direction == "forward":
            tab_idx, tab_val = self.succ_idx, self.succ_val
        elif direction == "backward":
            tab_idx, tab_val = self.pred_idx, self.pred_val
        else:
            raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
        slots = np.ascontiguousarray(indices, dtype=np.int64)
        w = np.ascontiguousarray(weights, dtype=np.float64)
        B, H, J = slots.shape
        out_idx = np.empty((B, H, k), np.int64)
        coef = np.empty((B, H, k, J), tab_val.dtype)
        links_follow_kernel(tab_idx, tab_val, slots, w, out_idx, coef)
        return out_idx, coef

    # -- backward (link_grads) ------------------------------------------------------------------------------
    def follow_backward(self, dvalues, *, indices, weights, out_idx, direction: str, grads: LinkGrads):
        r"""The VJP of :meth:`follow`: returns ∂L/∂ its read weights, adds ∂L/∂ the entries it read into ``grads``.

        Parameters
        ----------
        dvalues : ndarray, shape (B, H, k)
            ∂L/∂ the values :meth:`follow` returned on ``out_idx``.
        indices : int ndarray, shape (B, H, J)
            The slots follow was given.
        weights : ndarray, shape (B, H, J)
            The read weights follow was given.
        out_idx : int ndarray, shape (B, H, k)
            The slots it returned. The tables must still be the ones it read.
        direction : {"forward", "backward"}
        grads : LinkGrads
            Receives ∂L/∂ the stored entries of the rows read: succ's (forward) or pred's (backward).

        Returns
        -------
        dweights : ndarray, shape (B, H, J)

        Notes
        -----
        The values are :math:`v(a) = \sum_j w(j)\,\mathrm{table}(\mathrm{slot}_j, \mathrm{out}_a)` over the
        stored entries (a slot of ``out_idx`` that row slot_j does not hold adds 0 and gets nothing):

        .. math::

            \frac{\partial L}{\partial w(j)} = \sum_a \mathrm{table}(\mathrm{slot}_j, \mathrm{out}_a)\,dv(a),
            \qquad
            \frac{\partial L}{\partial\,\mathrm{table}(\mathrm{slot}_j, \mathrm{out}_a)} \mathrel{+}= w(j)\,dv(a).

        Each entry of the rows read looks its column up in ``out_idx``, in one kernel
        (:func:`refmann.kernels.links._links_follow_backward_loops`): O(H·J·K_L·k) per batch element,
        never O(N) (``docs/sdnc.md``, Gradients).
        """
        self._ready()
        if direction == "forward":
            tab_idx, tab_val, acc = self.succ_idx, self.succ_val, getattr(grads, "succ", None)
        elif direction == "backward":
            tab_idx, tab_val, acc = self.pred_idx, self.pred_val, getattr(grads, "pred", None)
        else:
            raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
        if enabled():
            self._check_grads(grads)
            indices = as_index_array(indices, "indices", upper=self.N, shape=(self.B, None, None))
            weights = as_float_array(weights, "weights", ndim=3)
            check_shape(weights, "weights", indices.shape)
            out_idx = as_index_array(out_idx, "out_idx", upper=self.N, shape=(self.B, indices.shape[1], None))
            dvalues = as_float_array(dvalues, "dvalues", ndim=3)
            check_shape(dvalues, "dvalues", out_idx.shape)
        slots = np.ascontiguousarray(indices, dtype=np.int64)
        B, H, J = slots.shape
        dentry = np.empty((B, H, J, self.K))  # w(j)·dv(a) on each entry of the rows read
        dweights = np.empty((B, H, J))
        links_follow_backward_kernel(
            tab_idx,
            tab_val,
            slots,
            np.ascontiguousarray(weights),
            np.ascontiguousarray(out_idx, dtype=np.int64),
            np.ascontiguousarray(dvalues),
            dentry,
            dweights,
        )
        acc.add(slots.reshape(B, H * J), dentry.reshape(B, H * J, self.K))
        return dweights.astype(grads.dtype, copy=False)

    def update_backward(self, journal: LinkJournal, *, indices, grads: LinkGrads):
        r"""The VJP of one :meth:`update`: returns ∂L/∂ its weights and turns ``grads`` into the gradient of
        the tables before the step. Call :meth:`revert` with the same journal next.

        Parameters
        ----------
        journal : LinkJournal
            What the update returned; the tables hold its new side (checked unless unchecked).
        indices : int ndarray, shape (B, J)
            The slots the update was given (duplicates allowed).
        grads : LinkGrads
            In: ∂L/∂ the tables after the step (aligned with the journal's new rows and new precedence).
            Out: ∂L/∂ the tables before it (aligned with its old rows and old precedence); the rows the
            step did not change keep their gradient (they pass it through unchanged).

        Returns
        -------
        dweights : ndarray, shape (B, J)
            ∂L/∂ the weights the update was given: each entry gets the gradient of its slot's merged
            weight w(i); 0 where the merged weight is 0 (such a slot is outside the support and changes
            nothing).

        Notes
        -----
        With w on the support S, p the old precedence, :math:`d(i) = \max(1 - w(i), 0)`,
        :math:`D = \max(1 - \sum_S w, 0)` (a clamped decay has zero derivative), and every sum over the
        entries the tables store (truncated entries and padding get no gradient):

        .. math::

            \text{pred}, i \in S:&\quad d\mathrm{old}(i,c) \mathrel{+}= d(i)\,d\mathrm{new}(i,c),\
            dw(i) \mathrel{+}= \textstyle\sum_c d\mathrm{new}(i,c)\,(p(c) - \mathrm{old}(i,c)),\
            dp(c) \mathrel{+}= w(i)\,d\mathrm{new}(i,c) \\
            \text{succ}, i \in S \cup \mathrm{supp}\,p:&\quad d\mathrm{old}(i,c) \mathrel{+}= d(i)\,d\mathrm{new}(i,c),\
            dw(i) \mathrel{-}= \textstyle\sum_c d\mathrm{new}(i,c)\,\mathrm{old}(i,c),\
            dp(i) \mathrel{+}= \textstyle\sum_c d\mathrm{new}(i,c)\,w(c),\
            dw(c) \mathrel{+}= p(i)\,d\mathrm{new}(i,c) \\
            \text{precedence}:&\quad dp_{old} \mathrel{+}= D\,dp_{new},\
            dw(i) \mathrel{-}= \textstyle\sum_c dp_{new}(c)\,p_{old}(c)\ (i \in S),\ dw(c) \mathrel{+}= dp_{new}(c)

        A new entry finds its old entry (and p(c), w(c)) by column, in one kernel over the journal's rows
        (:func:`refmann.kernels.links._links_update_backward_loops`): O((2J + K_L)·K_L·(K_L + log J)) per
        batch element, never O(N) (``docs/sdnc.md``, Gradients).
        """
        self._ready()
        if enabled():
            self._check_grads(grads)
            self._check_journal(journal, current="new")
            indices = as_index_array(indices, "indices", upper=self.N, shape=(self.B, None))
        pred, succ = journal.pred, journal.succ
        B, J = journal.slots.shape
        given = np.ascontiguousarray(indices, dtype=np.int64)
        d_pred = np.empty(pred.old_idx.shape)  # (B, J, K_L) on the old entries
        d_succ = np.empty(succ.old_idx.shape)  # (B, R, K_L)
        d_prec = np.empty((B, self.K))
        dw = np.empty((B, J))  # on the support S
        dweights = np.empty(given.shape)
        links_update_backward_kernel(
            journal.slots,
            journal.weights,
            pred.rows,
            pred.old_idx,
            pred.old_val,
            pred.new_idx,
            succ.rows,
            succ.old_idx,
            succ.old_val,
            succ.new_idx,
            journal.old_prec_idx,
            journal.old_prec_val,
            journal.new_prec_idx,
            grads.pred.gather(pred.rows),  # (B, J, K_L) on the new entries
            grads.succ.gather(succ.rows),  # (B, R, K_L)
            grads.prec,
            given,
            d_pred,
            d_succ,
            d_prec,
            dw,
            dweights,
        )
        # hand the old side's gradient back, aligned with the rows revert will restore
        grads.pred.zero(pred.rows)
        grads.pred.add(pred.rows, d_pred)
        grads.succ.zero(succ.rows)
        grads.succ.add(succ.rows, d_succ)
        grads.prec[...] = d_prec
        return dweights.astype(grads.dtype, copy=False)

    def _check_grads(self, grads) -> None:
        if not isinstance(grads, LinkGrads):
            raise TypeError(f"grads: expected a LinkGrads, got {type(grads).__name__}")
        if (grads.B, grads.K, grads.dtype) != (self.B, self.K, self.pred_val.dtype):
            raise ValueError(
                f"grads: expected a LinkGrads of batch size {self.B}, link_k {self.K} and dtype "
                f"{self.pred_val.dtype}, got {grads.B}, {grads.K} and {grads.dtype}"
            )

    def precedence(self):
        """The precedence as ``(idx, val)``: int64 (B, K_L) slots (−1 = empty) and (B, K_L) values, copies,
        largest first (ties by slot ascending)."""
        self._ready()
        return self.prec_idx.astype(np.int64), self.prec_val.copy()

    def dense(self):
        """``(pred, succ, precedence)`` as dense (B, N, N), (B, N, N) and (B, N) arrays, for tests and pictures.

        Refused past N = :data:`DENSE_MAX_SLOTS` (the arrays grow as N²).
        """
        self._ready()
        if self.N > DENSE_MAX_SLOTS:
            raise ValueError(
                f"num_slots: dense() builds (B, N, N) arrays and is refused past N = {DENSE_MAX_SLOTS}, "
                f"got N = {self.N}; read the sparse tables (pred_idx, pred_val, succ_idx, succ_val) instead"
            )
        B, N = self.B, self.N
        tables = []
        for idx, val in ((self.pred_idx, self.pred_val), (self.succ_idx, self.succ_val)):
            out = np.zeros((B, N, N), val.dtype)
            b, i, e = np.nonzero(idx >= 0)
            out[b, i, idx[b, i, e]] = val[b, i, e]
            tables.append(out)
        prec = np.zeros((B, N), self.prec_val.dtype)
        b, e = np.nonzero(self.prec_idx >= 0)
        prec[b, self.prec_idx[b, e]] = self.prec_val[b, e]
        return tables[0], tables[1], prec

    # -- rollback -----------------------------------------------------------------------------------------
    def revert(self, journal: LinkJournal) -> None:
        """Undo one :meth:`update` exactly (its changed rows and the precedence); steps are undone newest first."""
        self._ready()
        if enabled():
            self._check_journal(journal, current="new")
        self._restore(journal, "old")
        self.pending -= 1

    def reapply(self, journal: LinkJournal) -> None:
        """Redo one reverted :meth:`update` exactly (its new rows); steps are redone oldest first."""
        self._ready()
        if enabled():
            self._check_journal(journal, current="old")
        self._restore(journal, "new")
        self.pending += 1

    def _restore(self, journal: LinkJournal, which: str) -> None:
        pred, succ = journal.pred, journal.succ
        if which == "old":
            sources = (pred.old_idx, pred.old_val, succ.old_idx, succ.old_val, journal.old_prec_idx)
            prec_val = journal.old_prec_val
        else:
            sources = (pred.new_idx, pred.new_val, succ.new_idx, succ.new_val, journal.new_prec_idx)
            prec_val = journal.new_prec_val
        links_restore_kernel(
            self.pred_idx,
            self.pred_val,
            self.succ_idx,
            self.succ_val,
            self.prec_idx,
            self.prec_val,
            pred.rows,
            sources[0],
            sources[1],
            succ.rows,
            sources[2],
            sources[3],
            sources[4],
            prec_val,
        )

    def _check_journal(self, journal, *, current: str) -> None:
        """A journal of this structure's shapes and dtypes, its rows in range (what the restore kernel
        indexes with), the side it writes back well formed (columns in range, values finite and >= 0),
        and its ``current`` side ("new" for revert, "old" for reapply) what the tables hold now."""
        if not isinstance(journal, LinkJournal):
            raise TypeError(f"journal: expected the LinkJournal an update returned, got {type(journal).__name__}")
        B, N, K = self.B, self.N, self.K
        target = "old" if current == "new" else "new"
        tables = {"pred": (self.pred_idx, self.pred_val), "succ": (self.succ_idx, self.succ_val)}
        for name, (table_idx, table_val) in tables.items():
            part = getattr(journal, name)
            if not isinstance(part, LinkRows):
                raise TypeError(f"journal.{name}: expected LinkRows, got {type(part).__name__}")
            rows = _journal_array(part.rows, f"journal.{name}.rows", np.int64, (B, None))
            as_index_array(rows, f"journal.{name}.rows", upper=N, padding=True)
            shape = rows.shape + (K,)
            for side in ("old", "new"):
                _journal_array(getattr(part, f"{side}_idx"), f"journal.{name}.{side}_idx", np.int32, shape)
                _journal_array(getattr(part, f"{side}_val"), f"journal.{name}.{side}_val", table_val.dtype, shape)
            used = rows >= 0
            bb = np.broadcast_to(np.arange(B)[:, None], rows.shape)[used]
            now_idx, now_val = table_idx[bb, rows[used]], table_val[bb, rows[used]]
            if not (
                np.array_equal(now_idx, getattr(part, f"{current}_idx")[used])
                and np.array_equal(now_val, getattr(part, f"{current}_val")[used])
            ):
                self._out_of_order(current)
            _check_entries(getattr(part, f"{target}_idx"), getattr(part, f"{target}_val"), f"journal.{name}", N)
        for side in ("old", "new"):
            _journal_array(getattr(journal, f"{side}_prec_idx"), f"journal.{side}_prec_idx", np.int32, (B, K))
            _journal_array(
                getattr(journal, f"{side}_prec_val"), f"journal.{side}_prec_val", self.prec_val.dtype, (B, K)
            )
        if not (
            np.array_equal(self.prec_idx, getattr(journal, f"{current}_prec_idx"))
            and np.array_equal(self.prec_val, getattr(journal, f"{current}_prec_val"))
        ):
            self._out_of_order(current)
        _check_entries(
            getattr(journal, f"{target}_prec_idx"), getattr(journal, f"{target}_prec_val"), "journal.precedence", N
        )

    @staticmethod
    def _out_of_order(current: str):
        if current == "new":
            what, fix = "left", "revert steps newest first"
        else:
            what, fix = "found", "reapply reverted steps oldest first"
        raise ValueError(f"journal: the link tables are not in the state this journal's step {what} them in; {fix}")


def _journal_array(arr, name: str, dtype, shape: tuple) -> np.ndarray:
    """A journal field: a C-contiguous ndarray of exactly ``dtype`` (what the kernels were compiled for) and shape."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name}: expected an ndarray, got {type(arr).__name__}")
    if arr.dtype != dtype or not arr.flags.c_contiguous:
        raise TypeError(f"{name}: expected a C-contiguous {np.dtype(dtype)} array, got {arr.dtype}")
    check_shape(arr, name, shape)
    return arr


def _check_entries(idx: np.ndarray, val: np.ndarray, name: str, N: int) -> None:
    """Entries about to be written into a table: columns in [0, N) or −1, values finite and >= 0."""
    as_index_array(idx, f"{name} columns", upper=N, padding=True)
    if val.size and not (np.all(np.isfinite(val)) and val.min() >= 0):
        raise ValueError(f"{name} values: expected finite values >= 0")
