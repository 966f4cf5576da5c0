"""Models (LSTM, NTM, DAM): BPTT gradients against finite differences, the properties every model
shares, the LRA choice against brute force, and errors at the boundary that name the argument."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmann import models
from refmann.cores import DAMCore
from refmann.gradcheck import TOLERANCES, check_model
from tests.strategies import away_from_zero, f64

#: Every model configuration the gradient check covers: (name, options).
CONFIGS = [
    ("lstm", {}),
    ("ntm", {"memory_init": "constant"}),
    ("ntm", {"memory_init": "learned"}),
    ("dam", {"usage": "discounted", "memory_init": "constant"}),
    ("dam", {"usage": "discounted", "memory_init": "learned"}),
    ("dam", {"usage": "timestamp", "memory_init": "constant"}),
    ("dam", {"usage": "timestamp", "memory_init": "learned"}),
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
    return dict(T=draw(st.integers(1, 4)), B=draw(st.integers(1, 2)), N=N, W=draw(st.integers(min_word, 3)),
                H=draw(st.integers(1, min(2, N))), C=draw(st.integers(1, 4)), X=draw(st.integers(1, 3)),
                Y=draw(st.integers(1, 3)))


def binary(shape):
    """0/1 float64 arrays (targets and masks)."""
    return arrays(np.bool_, shape).map(lambda a: a.astype(np.float64))


@st.composite
def problems(draw, sizes=None):
    """(sizes, inputs (T,B,X), binary targets (T,B,Y), 0/1 mask (T,B,Y))."""
    sizes = draw(model_sizes()) if sizes is None else sizes
    T, B = sizes["T"], sizes["B"]
    return (sizes, draw(f64((T, B, sizes["X"]))), draw(binary((T, B, sizes["Y"]))),
            draw(binary((T, B, sizes["Y"]))))


def sigmoid_ce(logits, targets, mask):
    """The documented loss, written out: Σ_{t,y} m [softplus(z) − t z], averaged over the batch."""
    return float(np.sum(mask * (np.logaddexp(0.0, logits) - targets * logits))) / logits.shape[1]


def same_trace(a, b):
    """Two ``last_trace`` lists record the same discrete decisions."""
    def flat(trace):
        return [u for step in trace for u in (step or (None,))]
    fa, fb = flat(a), flat(b)
    return len(fa) == len(fb) and all((u is None and v is None) or (u is not None and v is not None and
                                                                    np.array_equal(u, v)) for u, v in zip(fa, fb))


# -- gradients ---------------------------------------------------------------------------------------

def move_off_the_zero_vector(model, data):
    """Draw the head biases and a learned initial memory with every entry at least 0.5 / 0.1 away from 0.

    Cosine similarity k·m / (‖k‖‖m‖ + eps) has a kink at the zero key and at a zero memory row that eps
    only smooths (its derivative there is about m/eps). At the initial parameters the head biases are 0, so
    the keys (and DAM's write words) are tiny at small C — ‖k‖ ≈ 1e-3, exactly 0 when x_1 = 0 — and the
    five-point stencil's truncation error there exceeds the tolerance (it falls as h^4; a wrong backward's
    does not). Any parameter point is as good a place to check a gradient, so check at one off the kink.
    """
    for key, margin in (("heads.bias", 0.5), ("memory.init", 0.1)):
        if key in model.params:
            model.params[key][...] = data.draw(away_from_zero(model.params[key].shape, margin), label=key)


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=8)
@given(sizes=model_sizes(min_word=2), seed=st.integers(0, 2**16), data=st.data())
def test_bptt_gradients_match_finite_differences(name, options, sizes, seed, data):
    """W >= 2: with W = 1 every cosine is ±1 except within eps of a zero row, and heads whose writes cancel
    leave a row that close to 0 in about one example in 300 (the stencil's error there falls as h^4)."""
    _, x, targets, mask = data.draw(problems(sizes))
    model = build(name, sizes, seed=seed, **options)
    move_off_the_zero_vector(model, data)
    report = check_model(model, x, targets, mask, max_entries=6, seed=seed)
    assume(not report.crossed_kink)
    assert report.ok(TOLERANCES["model"]), str(report)


class _DAMCoreWithoutMemoryGradient(DAMCore):
    """A planted bug: BPTT forgets the gradient that flows into the previous memory."""

    def step_backward(self, params, dy, dstate, cache, grads):
        dprev = super().step_backward(params, dy, dstate, cache, grads)
        return dprev._replace(memory=np.zeros_like(dprev.memory))


def test_check_model_catches_a_dropped_memory_gradient():
    sizes = dict(X=2, Y=2, C=3, N=4, W=2, H=1)
    rng = np.random.default_rng(0)
    x, targets = rng.standard_normal((3, 1, 2)), (rng.random((3, 1, 2)) > 0.5) * 1.0
    model = build("dam", sizes, memory_init="learned")
    right = check_model(model, x, targets, max_entries=6)
    model.core = _DAMCoreWithoutMemoryGradient(input_size=2, output_size=2, memory_size=4, word_size=2, num_heads=1,
                                               hidden_size=3)
    wrong = check_model(model, x, targets, max_entries=6)
    assert not right.crossed_kink and not wrong.crossed_kink
    assert right.ok(TOLERANCES["model"]), str(right)
    assert not wrong.ok(TOLERANCES["model"]), str(wrong)


# -- properties every model shares ---------------------------------------------------------------------

#: One configuration per model and per DAM usage rule, for the (cheaper) property tests.
ALL_MODELS = pytest.mark.parametrize(("name", "options"), [CONFIGS[i] for i in (0, 2, 4, 5)],
                                     ids=[CONFIG_IDS[i] for i in (0, 2, 4, 5)])


@ALL_MODELS
@given(problem=problems())
def test_forward_is_deterministic_and_its_logits_give_the_loss(name, options, problem):
    sizes, x, targets, mask = problem
    model = build(name, sizes, **options)
    logits = model.forward(x)
    assert logits.shape == (sizes["T"], sizes["B"], sizes["Y"]) and logits.dtype == np.float64
    np.testing.assert_array_equal(model.forward(x), logits)
    expected = sigmoid_ce(logits, targets, mask)
    assert model.loss(x, targets, mask) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    loss, _ = model.loss_and_grads(x, targets, mask)
    assert loss == pytest.approx(expected, rel=1e-12, abs=1e-12)


@ALL_MODELS
@given(problem=problems())
def test_loss_and_grads_leaves_params_and_arguments_alone(name, options, problem):
    sizes, x, targets, mask = problem
    model = build(name, sizes, **options)
    before = {key: value.copy() for key, value in model.params.items()}
    arguments = [a.copy() for a in (x, targets, mask)]
    model.loss_and_grads(x, targets, mask)
    assert model.params.keys() == before.keys()
    for key, value in before.items():
        np.testing.assert_array_equal(model.params[key], value, err_msg=key)
    for a, b in zip((x, targets, mask), arguments):
        np.testing.assert_array_equal(a, b)


@ALL_MODELS
@given(problem=problems())
def test_grads_have_the_params_keys_shapes_and_dtypes(name, options, problem):
    sizes, x, targets, mask = problem
    model = build(name, sizes, **options)
    _, grads = model.loss_and_grads(x, targets, mask)
    assert set(grads) == set(model.params)
    assert ("memory.init" in model.params) == (options.get("memory_init") == "learned")
    for key, value in model.params.items():
        assert grads[key].shape == value.shape and grads[key].dtype == value.dtype, key
        assert np.all(np.isfinite(grads[key])), key


@ALL_MODELS
@given(sizes=model_sizes(), data=st.data())
def test_a_batch_gives_each_sequence_the_logits_and_mean_gradient_it_gets_alone(name, options, sizes, data):
    sizes = dict(sizes, B=2)
    _, x, targets, mask = data.draw(problems(sizes))
    model = build(name, sizes, **options)
    logits = model.forward(x)
    loss, grads = model.loss_and_grads(x, targets, mask)
    alone = [model.loss_and_grads(x[:, b:b + 1], targets[:, b:b + 1], mask[:, b:b + 1]) for b in range(2)]
    for b in range(2):
        np.testing.assert_allclose(model.forward(x[:, b:b + 1])[:, 0], logits[:, b], rtol=0, atol=1e-12)
    assert loss == pytest.approx((alone[0][0] + alone[1][0]) / 2, rel=1e-12, abs=1e-12)
    # entries that are 0 up to rounding are compared against the largest gradient: a zero key (x_1 = 0)
    # amplifies rounding by ~1/eps in the cosine's backward before it cancels
    scale = max(float(np.max(np.abs(g), initial=0.0)) for g in grads.values())
    for key, g in grads.items():
        np.testing.assert_allclose(g, (alone[0][1][key] + alone[1][1][key]) / 2, rtol=1e-10, atol=1e-9 * scale,
                                   err_msg=key)


@ALL_MODELS
@settings(max_examples=10)
@given(sizes=model_sizes(), seed=st.integers(0, 2**32 - 1))
def test_the_seed_alone_fixes_the_params(name, options, sizes, seed):
    a, b = build(name, sizes, seed=seed, **options), build(name, sizes, seed=seed, **options)
    other = build(name, sizes, seed=seed + 1, **options)
    assert a.params.keys() == b.params.keys() == other.params.keys()
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key], err_msg=key)
    assert any(not np.array_equal(a.params[key], other.params[key]) for key in a.params)


@ALL_MODELS
@given(problem=problems(), seed=st.integers(0, 2**16))
def test_float32_logits_are_within_1e_4_of_float64(name, options, problem, seed):
    sizes, x, targets, mask = problem
    m64 = build(name, sizes, seed=seed, **options)
    m32 = build(name, sizes, seed=seed, dtype=np.float32, **options)
    for key, value in m32.params.items():
        assert value.dtype == np.float32, key
        np.testing.assert_array_equal(value, m64.params[key].astype(np.float32), err_msg=key)
        m64.params[key] = value.astype(np.float64)   # the same parameter values in both precisions
    logits32, logits64 = m32.forward(x), m64.forward(x)
    assume(same_trace(m32.last_trace, m64.last_trace))   # a near-tie may pick another LRA slot in float32
    assert logits32.dtype == np.float32
    scale = max(1.0, float(np.max(np.abs(logits64))))
    np.testing.assert_allclose(logits32, logits64, rtol=0, atol=1e-4 * scale)
    loss, grads = m32.loss_and_grads(x, targets, mask)
    assert np.isfinite(loss)
    assert all(g.dtype == np.float32 and np.all(np.isfinite(g)) for g in grads.values())


@ALL_MODELS
@given(problem=problems(), data=st.data())
def test_targets_where_the_mask_is_zero_change_nothing(name, options, problem, data):
    sizes, x, targets, mask = problem
    model = build(name, sizes, **options)
    other = np.where(mask == 0, data.draw(f64(targets.shape, 0.0, 1.0)), targets)
    loss, grads = model.loss_and_grads(x, targets, mask)
    loss_other, grads_other = model.loss_and_grads(x, other, mask)
    assert loss_other == loss
    for key in grads:
        np.testing.assert_array_equal(grads_other[key], grads[key], err_msg=key)


@ALL_MODELS
@settings(max_examples=5)
@given(problem=problems())
def test_an_all_zero_mask_gives_zero_loss_and_zero_grads(name, options, problem):
    sizes, x, targets, _ = problem
    loss, grads = build(name, sizes, **options).loss_and_grads(x, targets, np.zeros_like(targets))
    assert loss == 0.0
    assert all(not np.any(g) for g in grads.values())


# -- DAM's least-used slots ------------------------------------------------------------------------

@given(problem=problems(), seed=st.integers(0, 2**16), delta=st.sampled_from([0.005, 0.05, 0.3]))
def test_dam_timestamp_lra_is_the_argmin_of_the_last_access_times(problem, seed, delta):
    """Brute force from the trace: times start at −N..−1, slots accessed at step t get time t, and the
    H least-used slots are the H smallest times (ties by index)."""
    sizes, x, _, _ = problem
    N, H = sizes["N"], sizes["H"]
    model = build("dam", sizes, seed=seed, usage="timestamp", delta=delta)
    model.forward(x)
    times = np.tile(np.arange(-N, 0, dtype=float), (sizes["B"], 1))     # (B, N)
    for t, (lra, accessed) in enumerate(model.last_trace, start=1):
        assert accessed.shape == (sizes["B"], N) and accessed.dtype == np.bool_
        np.testing.assert_array_equal(lra, np.argsort(times, axis=1, kind="stable")[:, :H], err_msg=f"step {t}")
        times = np.where(accessed, float(t), times)


@pytest.mark.parametrize("usage", ["discounted", "timestamp"])
@given(problem=problems(), seed=st.integers(0, 2**16))
def test_dam_lra_slots_are_valid_and_distinct_per_sequence(usage, problem, seed):
    sizes, x, _, _ = problem
    model = build("dam", sizes, seed=seed, usage=usage)
    model.forward(x)
    assert len(model.last_trace) == sizes["T"]
    for lra, _ in model.last_trace:
        assert lra.shape == (sizes["B"], sizes["H"])
        assert np.all((lra >= 0) & (lra < sizes["N"]))
        assert all(len(set(row)) == sizes["H"] for row in lra.tolist())


# -- NTM with a zero memory ------------------------------------------------------------------------

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
    P = model.core.interface.layout.groups[0].width          # a read head: key, β, g, shift, γ
    read_addressing, write_addressing = grads["heads.bias"][:P], grads["heads.bias"][P:2 * P]   # k, β, g, s, γ
    assert np.max(np.abs(read_addressing)) > 1e-6 and np.max(np.abs(write_addressing)) > 1e-6


# -- bad input ---------------------------------------------------------------------------------------

SIZES = dict(X=2, Y=3, C=3, N=4, W=2, H=2)
X_OK, T_OK = np.ones((3, 2, 2)), np.zeros((3, 2, 3))


def _with(array, index, value):
    array = array.copy()
    array[index] = value
    return array


BAD_CALLS = {   # id: (method, arguments, error, message)
    "inputs-2d": ("forward", (np.ones((3, 2)),), ValueError, r"inputs: expected a 3-d array, got shape \(3, 2\)"),
    "inputs-feature-size": ("forward", (np.ones((3, 2, 5)),), ValueError,
                            r"inputs: expected shape \(·, ·, 2\), got \(3, 2, 5\)"),
    "inputs-no-steps": ("forward", (np.ones((0, 2, 2)),), ValueError, r"inputs: expected at least one time step"),
    "inputs-nan": ("forward", (_with(X_OK, (1, 0, 1), np.nan),), ValueError,
                   r"inputs: expected finite values, got 1 NaN/inf"),
    "inputs-bool": ("forward", (X_OK.astype(bool),), TypeError, r"inputs: expected dtype float32 or float64, got bool"),
    "inputs-inf": ("loss_and_grads", (_with(X_OK, (0, 1, 0), np.inf), T_OK), ValueError,
                   r"inputs: expected finite values"),
    "targets-shape": ("loss_and_grads", (X_OK, np.zeros((3, 2, 4))), ValueError,
                      r"targets: expected shape \(3, 2, 3\), got \(3, 2, 4\)"),
    "targets-2d": ("loss_and_grads", (X_OK, np.zeros((3, 3))), ValueError, r"targets: expected a 3-d array"),
    "targets-above-1": ("loss_and_grads", (X_OK, _with(T_OK, (2, 1, 2), 1.5)), ValueError,
                        r"targets: expected values in \[0.0, 1.0\], got values in \[0, 1.5\]"),
    "targets-below-0": ("loss_and_grads", (X_OK, _with(T_OK, (0, 0, 0), -0.5)), ValueError,
                        r"targets: expected values in \[0.0, 1.0\]"),
    "targets-nan": ("loss_and_grads", (X_OK, _with(T_OK, (0, 0, 0), np.nan)), ValueError,
                    r"targets: expected finite values"),
    "mask-shape": ("loss", (X_OK, T_OK, np.ones((2, 2, 3))), ValueError,
                   r"mask: expected a shape that broadcasts to \(3, 2, 3\), got \(2, 2, 3\)"),
}


@pytest.mark.parametrize("name", ["lstm", "ntm", "dam"])
@pytest.mark.parametrize(("method", "args", "error", "message"), BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_inputs_are_refused_naming_the_argument(name, method, args, error, message):
    model = build(name, SIZES)
    with pytest.raises(error, match=message):
        getattr(model, method)(*args)


@pytest.mark.parametrize("name", ["lstm", "ntm", "dam"])
@pytest.mark.parametrize("method", ["forward", "loss", "loss_and_grads"])
def test_a_nan_planted_in_a_param_is_refused_naming_the_param(name, method):
    model = build(name, SIZES)
    model.params["output.weight"][1, 0] = np.nan
    args = (X_OK,) if method == "forward" else (X_OK, T_OK)
    with pytest.raises(ValueError, match=r"params\['output.weight'\]: expected finite values, got 1 NaN/inf"):
        getattr(model, method)(*args)


BAD_CONSTRUCTORS = [
    ("ntm", dict(memory_size=0), ValueError, r"memory_size: expected an int >= 1, got 0"),
    ("dam", dict(memory_size=0), ValueError, r"memory_size: expected an int >= 1, got 0"),
    ("dam", dict(memory_size=3, num_heads=4), ValueError, r"num_heads: expected at most memory_size = 3"),
    ("dam", dict(usage="bogus"), ValueError, r"usage: expected one of \('discounted', 'timestamp'\), got 'bogus'"),
    ("ntm", dict(memory_init="bogus"), ValueError, r"memory_init: expected one of .*, got 'bogus'"),
    ("dam", dict(memory_init="bogus"), ValueError, r"memory_init: expected one of .*, got 'bogus'"),
    ("lstm", dict(dtype=np.int32), TypeError, r"dtype: expected float32 or float64, got int32"),
    ("ntm", dict(dtype=np.int32), TypeError, r"dtype: expected float32 or float64, got int32"),
    ("dam", dict(dtype=np.float16), TypeError, r"dtype: expected float32 or float64, got float16"),
    ("dam", dict(discount=1.5), ValueError, r"discount: expected a value in \[0, 1\], got 1.5"),
    ("dam", dict(discount=float("nan")), ValueError, r"discount: expected a value in \[0, 1\], got nan"),
    ("dam", dict(delta=-0.1), ValueError, r"delta: expected a value >= 0, got -0.1"),
    ("ntm", dict(shift_range=-1), ValueError, r"shift_range: expected an int >= 0, got -1"),
    ("ntm", dict(word_size=2.0), TypeError, r"word_size: expected an int, got float"),
    ("lstm", dict(input_size=0), ValueError, r"input_size: expected an int >= 1, got 0"),
    ("lstm", dict(hidden_size=True), TypeError, r"hidden_size: expected an int, got bool"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "message"), BAD_CONSTRUCTORS,
                         ids=[f"{c[0]}-{next(iter(c[1]))}" for c in BAD_CONSTRUCTORS])
def test_bad_constructor_arguments_are_refused_naming_the_argument(name, kwargs, error, message):
    base = dict(input_size=2, output_size=3, hidden_size=3)
    if name != "lstm":
        base.update(memory_size=4, word_size=2, num_heads=1)
    with pytest.raises(error, match=message):
        models.make_model(name, **{**base, **kwargs})


# -- make_model ----------------------------------------------------------------------------------------

def test_make_model_builds_the_named_model():
    model = models.make_model("ntm", input_size=2, output_size=3, memory_size=5, word_size=2, hidden_size=4, seed=7)
    assert type(model) is models.NTM
    assert (model.core.N, model.core.W, model.core.C) == (5, 2, 4)
    direct = models.NTM(input_size=2, output_size=3, memory_size=5, word_size=2, hidden_size=4, seed=7)
    np.testing.assert_array_equal(model.forward(X_OK), direct.forward(X_OK))
    assert {"lstm", "ntm", "dam"} <= set(models.MODELS)


@pytest.mark.parametrize("name", ["transformer", "NTM", ""])
def test_make_model_refuses_an_unknown_name(name):
    with pytest.raises(ValueError, match=r"name: expected one of \[.*'ntm'.*\], got " + repr(name)):
        models.make_model(name, input_size=2, output_size=3)


def test_option_types_and_masks_are_checked_naming_the_argument():
    kw = dict(input_size=2, output_size=2, memory_size=4, word_size=2, num_heads=1, hidden_size=2)
    with pytest.raises(TypeError, match="discount: expected a number, got str"):
        models.DAM(discount="0.5", **kw)
    with pytest.raises(TypeError, match="strength: expected True or False"):
        models.DAM(strength="no", **kw)
    with pytest.raises(TypeError, match="seed: expected a non-negative int"):
        models.DAM(seed="a", **kw)
    lstm = models.LSTM(input_size=2, output_size=2, hidden_size=2)
    x, y = np.zeros((2, 1, 2)), np.zeros((2, 1, 2))
    assert lstm.loss_and_grads(x, y, mask=np.ones((2, 1, 2), bool))[0] == lstm.loss_and_grads(x, y)[0]
    with pytest.raises(ValueError, match=r"mask: expected values in \[0.0, inf\]"):
        lstm.loss_and_grads(x, y, mask=-np.ones((2, 1, 2)))
