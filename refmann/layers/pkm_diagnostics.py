r"""Diagnostics of a product-key memory's selections: slot usage, KL to uniform, Gini, coverage, score margins.

XLM logs the usage, the KL to uniform, a Gini-like score and the top-50/90/99 coverage of the
weight-summed access distribution over slots; UltraMem logs the mean top-1 and k-th score (a
score-margin collapse detector). Definitions: ``docs/derivations/layers.md`` ("Diagnostics").

Import from here (``from refmann.layers.pkm_diagnostics import LayerDiagnostics``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _checks
from .product_keys import ProductKeyMemoryCache

__all__ = ["LayerDiagnostics", "ScoreMargins", "SlotStatistics", "score_margins", "selected_scores", "slot_statistics"]

#: The access-mass fractions whose coverage is reported (XLM's top50 / top90 / top99).
COVERAGE_FRACTIONS = (0.5, 0.9, 0.99)
#: Relative slack on "the top m slots hold a fraction q of the mass", so that rounding in the
#: cumulative sum cannot push a set that holds exactly q (e.g. 99 of 100 equal slots) out.
_COVERAGE_RTOL = 1e-9


class SlotStatistics(NamedTuple):
    usage: float  # fraction of the N slots with positive access mass, in [1/N, 1]
    kl_to_uniform: float  # KL(p ‖ uniform) in nats, in [0, log N]
    gini: float  # discrete Gini coefficient of p, in [0, 1 − 1/N]
    coverage_50: float  # smallest fraction of slots holding 50% of the mass
    coverage_90: float  # ... 90%
    coverage_99: float  # ... 99%


class ScoreMargins(NamedTuple):
    top1: float  # mean over (b, h) of the best selected score
    kth: float  # mean over (b, h) of the k-th best selected score
    gap: float  # top1 − kth (≥ 0)


# --- validation -------------------------------------------------------------------------------------


def _check_selections(slots, weights, num_slots):
    num_slots = _checks.check_positive_int(num_slots, "num_slots")
    weights = _checks.as_float_array(weights, "weights")
    slots = _checks.as_index_array(slots, "slots", upper=num_slots)
    if slots.shape != weights.shape:
        raise ValueError(f"weights: expected the shape of slots {slots.shape}, got {weights.shape}")
    if weights.size and weights.min() < 0:
        raise ValueError(f"weights: expected non-negative weights, got a minimum of {weights.min():.6g}")
    return slots, weights, num_slots


def _check_scores(scores):
    scores = _checks.as_float_array(scores, "scores", ndim=3)
    if scores.shape[-1] == 0 or scores.size == 0:
        raise ValueError(f"scores: expected a non-empty (B, H, k) array, got shape {scores.shape}")
    return scores


# --- the statistics of one access-mass vector ----------------------------------------------------------


def _add_mass_inplace(mass, slots, weights):
    """``mass[i] += Σ_{entries e: slots[e] = i} weights[e]``, with temporaries only of the selections' size."""
    unique, inverse = np.unique(slots.ravel(), return_inverse=True)  # (U,), (S,)
    mass[unique] += np.bincount(inverse.ravel(), weights=weights.ravel().astype(np.float64), minlength=unique.size)


def _coverage(desc_cumsum, total, num_slots, fraction):
    """Smallest m / N such that the m largest masses sum to ≥ fraction · total (up to the rounding slack)."""
    m = int(np.searchsorted(desc_cumsum, fraction * total * (1.0 - _COVERAGE_RTOL), side="left")) + 1
    return min(m, desc_cumsum.size) / num_slots


def _statistics_from_mass(mass):
    """The :class:`SlotStatistics` of an access-mass vector ``mass`` (N,), zeros allowed."""
    N = mass.size
    positive = mass[mass > 0]  # (M,), M ≤ min(N, selections)
    total = positive.sum()
    if positive.size == 0 or not total > 0:
        raise ValueError("slots: no access mass yet (no selection with a positive weight), so p is undefined")
    p = np.sort(positive / total)  # (M,) ascending: the N − M zeros come first
    kl = float(np.log(N) + np.sum(p * np.log(p)))
    ranks = np.arange(N - p.size + 1, N + 1, dtype=np.float64)  # (M,) the positives' ascending ranks 1..N
    gini = float(np.sum((2.0 * ranks - N - 1.0) * p) / N)
    desc_cumsum = np.cumsum(p[::-1])  # (M,)
    cover = [_coverage(desc_cumsum, 1.0, N, q) for q in COVERAGE_FRACTIONS]
    return SlotStatistics(p.size / N, max(kl, 0.0), min(max(gini, 0.0), 1.0 - 1.0 / N), *cover)


# --- public functions -------------------------------------------------------------------------------


def slot_statistics(slots, weights, num_slots):
    r"""Usage, KL to uniform, Gini and coverage of the weight-summed access distribution over slots.

    Parameters
    ----------
    slots : int ndarray, shape (B, H, k)
        The selected slots (any shape: every entry is one selection), in ``[0, num_slots)``.
    weights : ndarray, shape (B, H, k)
        Each selection's weight (the softmax over a head's k scores), finite and ≥ 0.
    num_slots : int
        N, the memory's slots (n² for a product-key memory).

    Returns
    -------
    SlotStatistics
        ``usage``, ``kl_to_uniform``, ``gini``, ``coverage_50``, ``coverage_90``, ``coverage_99``.

    Notes
    -----
    With the access mass :math:`z_i = \sum_{e : \sigma_e = i} w_e` and :math:`p = z / \lVert z \rVert_1`,
    and :math:`p_{(1)} \le \dots \le p_{(N)}` sorted ascending:

    .. math::
        \mathrm{usage} = \tfrac{1}{N} \lvert\{i : z_i > 0\}\rvert, \qquad
        \mathrm{KL}(p \,\Vert\, u) = \log N + \sum_{i : p_i > 0} p_i \log p_i, \\
        G = \frac{1}{N} \sum_{r=1}^N (2r - N - 1)\, p_{(r)} = \frac{1}{2N} \sum_{i,j} \lvert p_i - p_j \rvert, \qquad
        \mathrm{cov}_q = \tfrac{1}{N} \min\{m : p_{(N)} + \dots + p_{(N-m+1)} \ge q\}

    A selection whose weight underflowed to 0 reads nothing and is not counted as used. G is 0 for the
    uniform p and 1 − 1/N for one slot; XLM's score :math:`1 - 2\,\mathrm{mean}(\mathrm{cumsum}(p_{(\cdot)}))`
    is G − 1/N. Only one (N,) float vector is allocated; the rest is of the selections' size.

    References
    ----------
    Lample, Sablayrolles, Ranzato, Denoyer, Jégou. Large Memory Layers with Product Keys. NeurIPS 2019
    (§4.4, memory usage and KL).
    """
    slots, weights, num_slots = _check_selections(slots, weights, num_slots)
    mass = np.zeros(num_slots)  # (N,)
    _add_mass_inplace(mass, slots, weights)
    return _statistics_from_mass(mass)


def score_margins(scores):
    """Mean best and mean k-th selected score over the batch and heads, and their gap.

    Parameters
    ----------
    scores : ndarray, shape (B, H, k)
        Each head's k selected scores (in any order).

    Returns
    -------
    ScoreMargins
        ``top1`` = mean of ``max_r scores[b, h, r]``, ``kth`` = mean of ``min_r scores[b, h, r]``,
        ``gap = top1 − kth``. A gap that shrinks towards 0 means the softmax over the k turns uniform.
    """
    scores = _check_scores(scores)
    top1 = float(scores.max(axis=-1).mean())
    kth = float(scores.min(axis=-1).mean())
    return ScoreMargins(top1, kth, top1 - kth)


def selected_scores(cache):
    r"""The (B, H, k) selected scores of a :class:`ProductKeyMemoryCache`, recomputed from its search cache.

    :math:`s_{b,h,r} = q^1_{b,h} \cdot C_{h,0,i_r} + q^2_{b,h} \cdot C_{h,1,j_r}` (the forward's scores up to rounding).
    """
    search = cache.search
    half = search.queries.shape[-1] // 2
    H = search.keys.shape[0]
    heads = np.arange(H)[None, :, None]  # (1, H, 1)
    c1 = search.keys[heads, 0, search.rows]  # (B, H, k, D/2)
    c2 = search.keys[heads, 1, search.cols]  # (B, H, k, D/2)
    s1 = np.einsum("bhd,bhkd->bhk", search.queries[..., :half], c1)  # (B, H, k)
    s2 = np.einsum("bhd,bhkd->bhk", search.queries[..., half:], c2)  # (B, H, k)
    return s1 + s2


class LayerDiagnostics:
    """Accumulates :func:`slot_statistics` and :func:`score_margins` over ProductKeyMemory forwards.

    Accumulating several batches equals one call on their concatenation (up to rounding).

    Parameters
    ----------
    num_slots : int
        N = ``layer.num_keys ** 2``.

    Attributes
    ----------
    mass : ndarray, shape (N,)
        The access mass :math:`z_i` accumulated so far (the weight-summed reads of each slot); divide
        by its sum for the access distribution p that the statistics describe (a usage histogram).

    Examples
    --------
    >>> diag = LayerDiagnostics(layer.num_keys**2)        # doctest: +SKIP
    >>> for x in batches:                                 # doctest: +SKIP
    ...     y, cache = layer.forward(x)
    ...     diag.update(cache)
    >>> diag.result()["kl_to_uniform"]                    # doctest: +SKIP
    """

    def __init__(self, num_slots):
        self.num_slots = _checks.check_positive_int(num_slots, "num_slots")
        self.reset()

    def reset(self):
        """Forget every update."""
        self.mass = np.zeros(self.num_slots)  # (N,) the access mass z
        self.top1_sum = 0.0  # Σ_{b,h} max_r s
        self.kth_sum = 0.0  # Σ_{b,h} min_r s
        self.heads_seen = 0  # the number of (b, h) pairs

    def update(self, cache):
        """Add one forward's selections; ``cache`` is the :class:`ProductKeyMemoryCache` it returned."""
        if not isinstance(cache, ProductKeyMemoryCache):
            raise TypeError(f"cache: expected a ProductKeyMemoryCache, got {type(cache).__name__}")
        n = cache.search.keys.shape[2]
        if n * n != self.num_slots:
            raise ValueError(f"cache: expected a memory of num_slots = {self.num_slots} slots, got {n}² = {n * n}")
        weights = cache.softmax.out  # (B, H, k)
        slots, weights, _ = _check_selections(cache.search.slots, weights, self.num_slots)
        _add_mass_inplace(self.mass, slots, weights)
        if weights.size:
            scores = _check_scores(selected_scores(cache))  # (B, H, k)
            self.top1_sum += float(scores.max(axis=-1).sum())
            self.kth_sum += float(scores.min(axis=-1).sum())
            self.heads_seen += scores.shape[0] * scores.shape[1]

    def result(self):
        """A dict: the :class:`SlotStatistics` fields, ``top1_score``, ``kth_score``, ``score_gap``, ``heads_seen``."""
        if self.heads_seen == 0:
            raise ValueError("LayerDiagnostics: no selections yet (call update(cache) first)")
        out = dict(_statistics_from_mass(self.mass)._asdict())
        top1, kth = self.top1_sum / self.heads_seen, self.kth_sum / self.heads_seen
        out.update(top1_score=top1, kth_score=kth, score_gap=top1 - kth, heads_seen=self.heads_seen)
        return out
