r"""The sequence losses the engines train on; each task names the one it is scored with.

A loss takes the logits of a whole batch, (T, B, Y) for a recurrent model or (B, Y) for a
feed-forward one, the targets and an optional mask, and is **summed over time and outputs,
averaged over the batch B** (entries with mask 0 count for nothing):

- ``"sigmoid_ce"``: independent bits, targets in [0, 1] of the logits' shape (copy, recall, sort):
  :math:`L = \frac1B \sum_{t,b,y} m\,[\mathrm{softplus}(z) - y^* z]`;
- ``"softmax_ce"``: one class per position, integer targets of the logits' shape without the last
  axis (bAbI answers, episode labels, next tokens): :math:`L = \frac1B \sum_{t,b} m\,[\log\sum_j e^{z_j} - z_{y^*}]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import _checks, ops


def _check_mask(mask, shape, dtype):
    if mask is None:
        return None
    if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
        mask = mask.astype(dtype)  # a 0/1 mask is the natural thing to pass
    mask = _checks.as_float_array(mask, "mask")
    _checks.check_range(mask, "mask", 0.0)
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"mask: expected a shape that broadcasts to {shape}, got {mask.shape}") from None


def _sigmoid_targets(targets, mask, logits_shape, dtype):
    targets = _checks.as_float_array(targets, "targets", ndim=len(logits_shape))
    _checks.check_shape(targets, "targets", logits_shape)
    _checks.check_range(targets, "targets", 0.0, 1.0)
    return targets.astype(dtype, copy=False), _check_mask(mask, logits_shape, dtype)


def _softmax_targets(targets, mask, logits_shape, dtype):
    Y = logits_shape[-1]
    targets = np.asarray(targets)
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"targets: expected integer class indices for softmax_ce, got dtype {targets.dtype}")
    targets = _checks.as_index_array(targets, "targets", upper=Y, shape=logits_shape[:-1])
    return targets, _check_mask(mask, logits_shape[:-1], dtype)


@dataclass(frozen=True)
class Loss:
    """A loss by name: target validation, the summed loss (an op) and its backward."""

    name: str
    #: ``(targets, mask, logits_shape, dtype) -> (targets, mask)``, raising errors that name the argument
    check_targets: Callable
    forward: Callable  # ops.<name>_forward(logits, *, targets, mask) -> (loss summed, cache)
    backward: Callable  # ops.<name>_backward(dloss, cache) -> (dlogits,)

    def target_shape(self, logits_shape: tuple) -> tuple:
        """The shape targets must have for logits of ``logits_shape``."""
        return tuple(logits_shape) if self.name == "sigmoid_ce" else tuple(logits_shape[:-1])


LOSSES = {
    "sigmoid_ce": Loss(
        "sigmoid_ce", _sigmoid_targets, ops.sigmoid_cross_entropy_forward, ops.sigmoid_cross_entropy_backward
    ),
    "softmax_ce": Loss(
        "softmax_ce", _softmax_targets, ops.softmax_cross_entropy_forward, ops.softmax_cross_entropy_backward
    ),
}


def get_loss(loss) -> Loss:
    """A :class:`Loss` from its name (or the Loss itself)."""
    if isinstance(loss, Loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {sorted(LOSSES)}, got {loss!r}")
    return LOSSES[loss]
