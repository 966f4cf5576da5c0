"""The BPTT engine: the step API, memory_init arrays, the readable SAM ≡ the fast SAM, the gradient sinks,
and the softmax loss."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann import models
from refmann.gradcheck import TOLERANCES, check_model

KW = dict(input_size=3, output_size=4, memory_size=7, word_size=3, hidden_size=5, seed=2)
BUILD = {
    "lstm": lambda **kw: models.LSTM(**{k: v for k, v in {**KW, **kw}.items() if k not in ("memory_size", "word_size",
                                                                                             "memory_init")}),
    "ntm": lambda **kw: models.NTM(**{**KW, "num_heads": 2, **kw}),
    "dam": lambda **kw: models.DAM(**{**KW, "num_heads": 2, **kw}),
    "sam": lambda **kw: models.SAM(**{**KW, "num_heads": 2, "k": 3, "index": "lsh", **kw}),
}


def _data(T=5, B=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, 3)), (rng.random((T, B, 4)) > 0.5) * 1.0


@pytest.mark.parametrize("name", sorted(BUILD))
def test_stepping_one_step_at_a_time_gives_the_logits_of_forward_and_leaves_forward_unchanged(name):
    model = BUILD[name](memory_init="random") if name != "lstm" else BUILD[name]()
    x, _ = _data()
    whole = model.forward(x)
    state = model.initial_state(2)
    steps = []
    for t in range(x.shape[0]):
        y, state = model.step(x[t], state)
        steps.append(y)
    np.testing.assert_array_equal(np.stack(steps), whole)
    np.testing.assert_array_equal(model.forward(x), whole)        # after steps, forward starts from memory0 again


@pytest.mark.parametrize("name", ["ntm", "dam", "sam"])
def test_memory_init_accepts_an_array_and_copies_it(name):
    memory0 = np.random.default_rng(1).uniform(-0.5, 0.5, (7, 3))
    given_ = memory0.copy()
    model = BUILD[name](memory_init=given_)
    given_ += 1.0                                                   # the caller's later edits change nothing
    np.testing.assert_array_equal(model.memory0, memory0)
    x, _ = _data()
    np.testing.assert_array_equal(model.forward(x), BUILD[name](memory_init=memory0).forward(x))


@pytest.mark.parametrize(("value", "error", "message"), [
    (np.zeros((6, 3)), ValueError, r"memory_init: expected shape \(7, 3\)"),
    (np.full((7, 3), np.nan), ValueError, "memory_init: expected finite values"),
    ("ones", ValueError, "memory_init: expected one of"),
    (np.zeros((7, 3), dtype=complex), TypeError, "memory_init: expected dtype float32 or float64"),
])
def test_a_bad_memory_init_is_refused_naming_it(value, error, message):
    with pytest.raises(error, match=message):
        BUILD["dam"](memory_init=value)


@settings(max_examples=15)
@given(index=st.sampled_from(["linear", "lsh"]), bptt=st.sampled_from(["rollback", "cache"]),
       k=st.integers(1, 7), seed=st.integers(0, 2**31))
def test_the_readable_sam_equals_the_fused_sam_in_logits_loss_and_every_gradient(index, bptt, k, seed):
    x, y = _data(seed=seed)
    fast = BUILD["sam"](index=index, bptt=bptt, k=k, memory_init="random", fused=True)
    slow = BUILD["sam"](index=index, bptt=bptt, k=k, memory_init="random", fused=False)
    np.testing.assert_allclose(slow.forward(x), fast.forward(x), rtol=1e-12, atol=1e-13)
    loss_f, grads_f = fast.loss_and_grads(x, y)
    loss_s, grads_s = slow.loss_and_grads(x, y)
    assert loss_s == pytest.approx(loss_f, rel=1e-12)
    for key in grads_f:
        np.testing.assert_allclose(grads_s[key], grads_f[key], rtol=1e-10, atol=1e-12, err_msg=key)
    for a, b in zip(fast.last_trace, slow.last_trace):                # the same discrete decisions
        np.testing.assert_array_equal(a.read_idx, b.read_idx)


@pytest.mark.parametrize("name", sorted(BUILD))
def test_the_deferred_gradient_sink_equals_the_plain_one(name):
    model = BUILD[name]()
    x, y = _data(T=20)                                                 # past the 16-step flush
    loss_d, grads_d = model.loss_and_grads(x, y, grads="deferred")
    loss_p, grads_p = model.loss_and_grads(x, y, grads="plain")
    assert loss_d == loss_p
    for key in grads_d:
        np.testing.assert_allclose(grads_d[key], grads_p[key], rtol=1e-12, atol=1e-14, err_msg=key)


@pytest.mark.parametrize("name", ["lstm", "ntm", "dam"])
def test_softmax_cross_entropy_over_integer_targets_is_gradient_checked(name):
    model = BUILD[name](memory_init="random") if name != "lstm" else BUILD[name]()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 3))
    targets = rng.integers(0, 4, (4, 2))
    mask = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    report = check_model(model, x, targets, mask, loss="softmax_ce")
    assert report.ok(TOLERANCES["model"]), str(report)
    value = model.loss(x, targets, mask, loss="softmax_ce")
    logits = model.forward(x)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.sum(mask * np.take_along_axis(logp, targets[..., None], -1)[..., 0]) / 2
    assert value == pytest.approx(expected, rel=1e-12)


def test_softmax_targets_must_be_class_indices():
    model = BUILD["lstm"]()
    x, y = _data()
    with pytest.raises(TypeError, match="targets: expected integer class indices"):
        model.loss_and_grads(x, y, loss="softmax_ce")
    with pytest.raises(ValueError, match=r"targets: expected indices in \[0, 4\)"):
        model.loss_and_grads(x, np.full((5, 2), 4), loss="softmax_ce")
    with pytest.raises(ValueError, match="loss: expected one of"):
        model.loss_and_grads(x, y, loss="mse")


def test_a_model_is_built_from_its_config_and_the_registry_knows_it():
    config = models.SAMConfig(**KW, k=2)
    model = models.SAM(config=config)
    assert model.config is config and model.config.k == 2
    assert models.MODELS["sam"].cls is models.SAM and models.MODELS["sam"].config is models.SAMConfig
    assert "k" in models.MODELS["sam"].fields() and "k" not in models.MODELS["dam"].fields()
    with pytest.raises(TypeError, match="config: expected a SAMConfig"):
        models.SAM(config=models.DAMConfig(**KW))


def test_the_registry_lists_the_models_in_their_documented_order():
    assert list(models.MODELS)[:4] == ["lstm", "ntm", "dam", "sam"]
    assert list(models.bench_variants()) == ["ntm", "dam", "sam-linear", "sam-lsh"]
