"""Lazy Adam on the touched rows of a table, in place: :func:`refmann.train.optim.sparse_adam_inplace`'s loop.

For each touched row r (``keys[u]``) and column c, Algorithm 1 of Kingma & Ba on that entry, in the
order and precision of NumPy's ``_adam_rule`` (the hyper-parameters arrive as an array of the
table's dtype, so a float32 table is updated in float32 arithmetic, as NumPy does):

    m = β₁ m + (1 − β₁) g;   v = β₂ v + ((1 − β₂) g) g;   θ = θ − (α (m / c₁)) / (√(v / c₂) + ε)

Only the U touched rows are read and written.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit


def _adam_rows_loops(theta, m, v, keys, grads, hyper):
    """In place: rows ``keys`` of ``theta``, ``m``, ``v`` (all (R, F), one dtype) take one Adam step.

    keys : int (U,) distinct rows in [0, R);  grads : (U, F);  hyper : (8,) of the tables' dtype,
    ``[lr, beta1, 1 - beta1, beta2, 1 - beta2, eps, c1, c2]``.
    """
    lr, b1, ob1, b2, ob2 = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4]
    eps, c1, c2 = hyper[5], hyper[6], hyper[7]
    F = theta.shape[1]
    for u in range(keys.shape[0]):
        r = keys[u]
        for c in range(F):
            g = grads[u, c]
            mm = b1 * m[r, c] + ob1 * g
            vv = b2 * v[r, c] + (ob2 * g) * g
            m[r, c] = mm
            v[r, c] = vv
            theta[r, c] = theta[r, c] - (lr * (mm / c1)) / (np.sqrt(vv / c2) + eps)


adam_rows_kernel = njit(_adam_rows_loops)
