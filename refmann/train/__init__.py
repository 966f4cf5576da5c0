"""Training utilities: optimizers as pure functions, gradient clipping and checkpointable state.

Every optimizer maps ``(params, grads, state) -> (params, state)`` on ``dict[str, ndarray]`` with
dotted keys and never modifies its inputs; ``state=None`` starts from zeros. A gradient may be a
row-sparse :class:`~refmann.ops.RowGrad` (lazy ``sparse_adam``, ``rowwise_adagrad``; ``combine``
gives a group of parameters its own optimizer). See
:mod:`refmann.train.optim` for the update equations and references.
"""

from .optim import (
    adam,
    adamw,
    clip_elementwise,
    clip_global_norm,
    clipped,
    combine,
    make_optimizer,
    param_groups,
    rmsprop,
    rowwise_adagrad,
    sgd,
    sparse_adam,
    sparse_adam_inplace,
    state_from_arrays,
    state_to_arrays,
)
from .trainer import TrainConfig, Trainer, build

__all__ = [
    "adam",
    "adamw",
    "clipped",
    "param_groups",
    "clip_elementwise",
    "clip_global_norm",
    "combine",
    "make_optimizer",
    "rmsprop",
    "rowwise_adagrad",
    "sgd",
    "sparse_adam",
    "sparse_adam_inplace",
    "state_from_arrays",
    "state_to_arrays",
    "TrainConfig",
    "Trainer",
    "build",
]
