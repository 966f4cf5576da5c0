"""What users build: recurrent models on one BPTT engine, each a config, a core and a registry entry,
and feed-forward hosts (an MLP, a small transformer with optional product-key memories).

``model.forward(inputs (T, B, X)) -> logits (T, B, Y)``; ``model.loss_and_grads(inputs, targets,
mask=None) -> (loss, grads)`` with ``grads`` keyed like ``model.params``; ``model.initial_state(B)``
and ``model.step(x_t, state)`` walk one step at a time. :data:`MODELS` is the registry the CLI,
golden files, benchmarks and the trainer read.
"""

from .configs import (
    DAMConfig,
    DenseSDNCConfig,
    DNCConfig,
    LSTMConfig,
    MemoryConfig,
    ModelConfig,
    NTMConfig,
    SAMConfig,
    SDNCConfig,
)
from .losses import LOSSES, Loss, get_loss
from .recurrent import RecurrentModel, Unroll
from .registry import MODELS, BenchVariant, ModelSpec, bench_variants, make_model, register_model

# isort: off
# The registry's order is the order of these imports: the order of `refmann golden --model all`,
# of the CLI's choices and of the benchmark's lines.
from .lstm import LSTM
from .ntm import NTM
from .dam import DAM
from .sam import SAM
from .dnc import DNC
from .sdnc import SDNC, DenseSDNC
from .feedforward import FeedForwardModel, MLPClassifier, Transformer
# isort: on

__all__ = [
    "DAM",
    "DNC",
    "DNCConfig",
    "DenseSDNC",
    "DenseSDNCConfig",
    "SDNC",
    "SDNCConfig",
    "LOSSES",
    "LSTM",
    "MODELS",
    "NTM",
    "SAM",
    "BenchVariant",
    "DAMConfig",
    "FeedForwardModel",
    "LSTMConfig",
    "Loss",
    "MLPClassifier",
    "MemoryConfig",
    "ModelConfig",
    "ModelSpec",
    "NTMConfig",
    "RecurrentModel",
    "SAMConfig",
    "Transformer",
    "Unroll",
    "bench_variants",
    "get_loss",
    "make_model",
    "register_model",
]
