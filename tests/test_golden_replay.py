"""Behaviour kept across the house refactor: files written *before* it are reproduced to 1e-12.

``fixtures/golden_before`` holds ``refmann golden --model all --seed 0`` from commit a626289 (before
the refactor); ``fixtures/variants_before`` more configurations (LSH index, cache BPTT, timestamp
usage, no strengths, float32), written by ``fixtures/make_variants.py`` at the same commit. Each model
is rebuilt through the public API from the file's kwargs with ``memory_init=<the file's memory0>``,
its params loaded, and ``loss_and_grads`` run.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import refmann.models as M
from refmann.golden import load_golden

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = sorted((FIXTURES / "golden_before").glob("*.npz"))
VARIANTS = sorted((FIXTURES / "variants_before").glob("*.npz"))
TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6}  # float32: rounding of reordered sums


def _max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def test_the_fixtures_are_there():
    assert len(GOLDEN) == 4 and len(VARIANTS) == 9


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_files_written_before_the_refactor_are_reproduced(path):
    g = load_golden(path)
    meta = g["meta"]
    kwargs = dict(meta["kwargs"])
    if g["memory0"] is not None:
        kwargs["memory_init"] = g["memory0"]
    model = M.MODELS[meta["model"]].cls(**kwargs)
    assert set(model.params) == set(g["params"])
    model.params = {k: np.array(v) for k, v in g["params"].items()}
    logits = model.forward(g["inputs"])
    loss, grads = model.loss_and_grads(g["inputs"], g["targets"], g["mask"])
    assert _max_rel(logits, g["logits"]) <= 1e-12
    assert abs(loss - float(g["loss"])) <= 1e-12 * max(1.0, abs(loss))
    for key, value in g["grads"].items():
        assert _max_rel(grads[key], value) <= 1e-12, key


@pytest.mark.parametrize("path", VARIANTS, ids=lambda p: p.stem)
def test_variant_files_written_before_the_refactor_are_reproduced(path):
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    meta = json.loads(str(data["meta"]))
    kwargs = dict(meta["kwargs"])
    if "memory0" in data:
        kwargs["memory_init"] = data["memory0"]
    model = getattr(M, meta["class"])(**kwargs)
    model.params = {k[len("param/") :]: v for k, v in data.items() if k.startswith("param/")}
    tol = TOL[model.dtype]
    logits = model.forward(data["inputs"])
    loss, grads = model.loss_and_grads(data["inputs"], data["targets"], data["mask"])
    assert _max_rel(logits, data["logits"]) <= tol
    assert abs(loss - float(data["loss"])) <= tol * max(1.0, abs(loss))
    assert set(grads) == {k[len("grad/") :] for k in data if k.startswith("grad/")}
    for key, value in grads.items():
        assert _max_rel(value, data[f"grad/{key}"]) <= tol, key
