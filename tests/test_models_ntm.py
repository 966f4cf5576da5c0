"""NTM with a featureless memory: it runs, its gradients are finite, and the heads' addressing learns."""

import numpy as np
import pytest
from hypothesis import given, settings

from tests.model_cases import build, problems


@settings(max_examples=10)
@given(problem=problems())
def test_ntm_with_zero_memory_runs_and_gives_finite_grads(problem):
    sizes, x, targets, mask = problem
    model = build("ntm", sizes, memory_init="zeros")
    assert np.all(np.isfinite(model.forward(x)))
    loss, grads = model.loss_and_grads(x, targets, mask)
    assert np.isfinite(loss)
    for key, g in grads.items():
        assert np.all(np.isfinite(g)), key


@pytest.mark.parametrize("memory_init", ["constant", "zeros"])
def test_ntm_addressing_receives_a_gradient_from_a_featureless_memory(memory_init):
    """With every row alike, uniform weights would stay uniform forever; the heads' initial focus breaks the tie."""
    rng = np.random.default_rng(1)
    x, targets = rng.standard_normal((6, 2, 3)), (rng.random((6, 2, 3)) > 0.5) * 1.0
    model = build("ntm", dict(X=3, Y=3, C=5, N=8, W=3, H=1), seed=3, memory_init=memory_init)
    _, grads = model.loss_and_grads(x, targets)
    P = model.core.interface.layout.groups[0].width  # a read head: key, β, g, shift, γ
    read_addressing, write_addressing = grads["heads.bias"][:P], grads["heads.bias"][P : 2 * P]  # k, β, g, s, γ
    assert np.max(np.abs(read_addressing)) > 1e-6 and np.max(np.abs(write_addressing)) > 1e-6
