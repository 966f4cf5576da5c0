"""The model cases the model tests share: the configurations the gradient check covers, ``build`` and
the hypothesis strategies of sizes and problems (imported by test_models_recurrent/dam/ntm.py)."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann import models
from tests.strategies import f64

#: Every model configuration the gradient check covers: (name, options).
CONFIGS = [
    ("lstm", {}),
    ("ntm", {"memory_init": "constant"}),
    ("ntm", {"memory_init": "learned"}),
    ("dam", {"usage": "discounted", "memory_init": "constant"}),
    ("dam", {"usage": "discounted", "memory_init": "learned"}),
    ("dam", {"usage": "timestamp", "memory_init": "constant"}),
    ("dam", {"usage": "timestamp", "memory_init": "learned"}),
    # the DNC's default stops the usage's gradient into the previous write weights (DeepMind's code): not the
    # derivative of the loss, so finite differences check the exact form; tests/test_torch_dnc.py checks both
    ("dnc", {"memory_init": "constant", "usage_stop_gradient": False}),
    ("dnc", {"memory_init": "learned", "variant": "nature", "usage_stop_gradient": False}),
    (
        "dnc",
        {
            "memory_init": "random",
            "num_write_heads": 2,
            "links": "recompute",
            "link_checkpoint": 2,
            "usage_stop_gradient": False,
        },
    ),
]
CONFIG_IDS = [name + "".join(f"-{v}" for v in options.values()) for name, options in CONFIGS]


def build(name, sizes, *, seed=0, dtype=np.float64, **options):
    """A model of kind ``name`` with the drawn ``sizes`` (a dict with X, Y, C, N, W, H)."""
    kw = dict(input_size=sizes["X"], output_size=sizes["Y"], hidden_size=sizes["C"], seed=seed, dtype=dtype)
    if name != "lstm":
        kw.update(memory_size=sizes["N"], word_size=sizes["W"], num_heads=sizes["H"])
    return models.make_model(name, **kw, **options)


@st.composite
def model_sizes(draw, min_word=1):
    """T in 1..4, B in 1..2, N in 2..6, W in min_word..3, H in 1..2 (H <= N), C in 1..4, X and Y in 1..3."""
    N = draw(st.integers(2, 6))
    return dict(
        T=draw(st.integers(1, 4)),
        B=draw(st.integers(1, 2)),
        N=N,
        W=draw(st.integers(min_word, 3)),
        H=draw(st.integers(1, min(2, N))),
        C=draw(st.integers(1, 4)),
        X=draw(st.integers(1, 3)),
        Y=draw(st.integers(1, 3)),
    )


def binary(shape):
    """0/1 float64 arrays (targets and masks)."""
    return arrays(np.bool_, shape).map(lambda a: a.astype(np.float64))


@st.composite
def problems(draw, sizes=None):
    """(sizes, inputs (T,B,X), binary targets (T,B,Y), 0/1 mask (T,B,Y))."""
    sizes = draw(model_sizes()) if sizes is None else sizes
    T, B = sizes["T"], sizes["B"]
    return (sizes, draw(f64((T, B, sizes["X"]))), draw(binary((T, B, sizes["Y"]))), draw(binary((T, B, sizes["Y"]))))
