"""User-facing models: ``forward(inputs (T,B,X)) -> logits (T,B,Y)`` and
``loss_and_grads(inputs, targets, mask=None) -> (loss, grads)`` with ``grads`` keyed like ``params``.
"""

from .models import DAM, LSTM, MODELS, NTM, SAM, make_model

__all__ = ["DAM", "LSTM", "MODELS", "NTM", "SAM", "make_model"]
