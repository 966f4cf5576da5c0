"""The BPTT engine: the step API, memory_init arrays, the readable SAM ≡ the fast SAM, the gradient sinks,
and the softmax loss; BPTT gradients against finite differences, the properties every model shares, errors
at the boundary that name the argument, and make_model."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refmann import models
from refmann.cores import DAMCore
from refmann.gradcheck import TOLERANCES, check_model
from tests.model_cases import CONFIG_IDS, CONFIGS, build, model_sizes, problems
from tests.strategies import away_from_zero, f64

KW = dict(input_size=3, output_size=4, memory_size=7, word_size=3, hidden_size=5, seed=2)
BUILD = {
    "lstm": lambda **kw: models.LSTM(
        **{k: v for k, v in {**KW, **kw}.items() if k not in ("memory_size", "word_size", "memory_init")}
    ),
    "ntm": lambda **kw: models.NTM(**{**KW, "num_heads": 2, **kw}),
    "dam": lambda **kw: models.DAM(**{**KW, "num_heads": 2, **kw}),
    "sam": lambda **kw: models.SAM(**{**KW, "num_heads": 2, "k": 3, "index": "lsh", **kw}),
    "dnc": lambda **kw: models.DNC(**{**KW, "num_heads": 2, **kw}),
    "sdnc": lambda **kw: models.SDNC(**{**KW, "num_heads": 2, "k": 3, "index": "lsh", **kw}),
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
    np.testing.assert_array_equal(model.forward(x), whole)  # after steps, forward starts from memory0 again


@pytest.mark.parametrize("name", ["ntm", "dam", "sam"])
def test_memory_init_accepts_an_array_and_copies_it(name):
    memory0 = np.random.default_rng(1).uniform(-0.5, 0.5, (7, 3))
    given_ = memory0.copy()
    model = BUILD[name](memory_init=given_)
    given_ += 1.0  # the caller's later edits change nothing
    np.testing.assert_array_equal(model.memory0, memory0)
    x, _ = _data()
    np.testing.assert_array_equal(model.forward(x), BUILD[name](memory_init=memory0).forward(x))


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (np.zeros((6, 3)), ValueError, r"memory_init: expected shape \(7, 3\)"),
        (np.full((7, 3), np.nan), ValueError, "memory_init: expected finite values"),
        ("ones", ValueError, "memory_init: expected one of"),
        (np.zeros((7, 3), dtype=complex), TypeError, "memory_init: expected dtype float32 or float64"),
    ],
)
def test_a_bad_memory_init_is_refused_naming_it(value, error, message):
    with pytest.raises(error, match=message):
        BUILD["dam"](memory_init=value)


@settings(max_examples=15)
@given(
    index=st.sampled_from(["linear", "lsh"]),
    bptt=st.sampled_from(["rollback", "cache"]),
    k=st.integers(1, 7),
    seed=st.integers(0, 2**31),
)
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
    for a, b in zip(fast.last_trace, slow.last_trace):  # the same discrete decisions
        np.testing.assert_array_equal(a.read_idx, b.read_idx)


@pytest.mark.parametrize("name", sorted(BUILD))
def test_the_deferred_gradient_sink_equals_the_plain_one(name):
    model = BUILD[name]()
    x, y = _data(T=20)  # past the 16-step flush
    loss_d, grads_d = model.loss_and_grads(x, y, grads="deferred")
    loss_p, grads_p = model.loss_and_grads(x, y, grads="plain")
    assert loss_d == loss_p
    for key in grads_d:
        np.testing.assert_allclose(grads_d[key], grads_p[key], rtol=1e-12, atol=1e-14, err_msg=key)


@pytest.mark.parametrize("name", ["lstm", "ntm", "dam", "dnc"])
def test_softmax_cross_entropy_over_integer_targets_is_gradient_checked(name):
    extra = {"usage_stop_gradient": False} if name == "dnc" else {}  # the exact gradient (docs/dnc.md)
    model = BUILD[name](memory_init="random", **extra) if name != "lstm" else BUILD[name]()
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
    assert list(models.MODELS)[:6] == ["lstm", "ntm", "dam", "sam", "dnc", "sdnc"]
    assert list(models.bench_variants()) == ["ntm", "dam", "sam-linear", "sam-lsh", "sam-kdforest"]


# -- every model, built from the cases of tests/model_cases.py -----------------------------------------


def sigmoid_ce(logits, targets, mask):
    """The documented loss, written out: Σ_{t,y} m [softplus(z) − t z], averaged over the batch."""
    return float(np.sum(mask * (np.logaddexp(0.0, logits) - targets * logits))) / logits.shape[1]


def same_trace(a, b):
    """Two ``last_trace`` lists record the same discrete decisions."""

    def flat(trace):
        return [u for step in trace for u in (step or (None,))]

    fa, fb = flat(a), flat(b)
    return len(fa) == len(fb) and all(
        (u is None and v is None) or (u is not None and v is not None and np.array_equal(u, v)) for u, v in zip(fa, fb)
    )


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
    model.core = _DAMCoreWithoutMemoryGradient(
        input_size=2, output_size=2, memory_size=4, word_size=2, num_heads=1, hidden_size=3
    )
    wrong = check_model(model, x, targets, max_entries=6)
    assert not right.crossed_kink and not wrong.crossed_kink
    assert right.ok(TOLERANCES["model"]), str(right)
    assert not wrong.ok(TOLERANCES["model"]), str(wrong)


# -- properties every model shares ---------------------------------------------------------------------

#: One configuration per model and per DAM usage rule, for the (cheaper) property tests.
ALL_MODELS = pytest.mark.parametrize(
    ("name", "options"), [CONFIGS[i] for i in (0, 2, 4, 5)], ids=[CONFIG_IDS[i] for i in (0, 2, 4, 5)]
)


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
    alone = [model.loss_and_grads(x[:, b : b + 1], targets[:, b : b + 1], mask[:, b : b + 1]) for b in range(2)]
    for b in range(2):
        np.testing.assert_allclose(model.forward(x[:, b : b + 1])[:, 0], logits[:, b], rtol=0, atol=1e-12)
    assert loss == pytest.approx((alone[0][0] + alone[1][0]) / 2, rel=1e-12, abs=1e-12)
    # entries that are 0 up to rounding are compared against the largest gradient: a zero key (x_1 = 0)
    # amplifies rounding by ~1/eps in the cosine's backward before it cancels. The scale has a floor of
    # 1e-6 (the loss is O(1)): with inputs near 1e-156 every gradient is ~1e-225 and 1e-9 of that would
    # demand agreement far below rounding of any meaningful number (a tolerance that collapses)
    scale = max(1e-6, max(float(np.max(np.abs(g), initial=0.0)) for g in grads.values()))
    for key, g in grads.items():
        np.testing.assert_allclose(
            g, (alone[0][1][key] + alone[1][1][key]) / 2, rtol=1e-10, atol=1e-9 * scale, err_msg=key
        )


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
        m64.params[key] = value.astype(np.float64)  # the same parameter values in both precisions
    logits32, logits64 = m32.forward(x), m64.forward(x)
    assume(same_trace(m32.last_trace, m64.last_trace))  # a near-tie may pick another LRA slot in float32
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


# -- bad input ---------------------------------------------------------------------------------------

SIZES = dict(X=2, Y=3, C=3, N=4, W=2, H=2)
X_OK, T_OK = np.ones((3, 2, 2)), np.zeros((3, 2, 3))


def _with(array, index, value):
    array = array.copy()
    array[index] = value
    return array


BAD_CALLS = {  # id: (method, arguments, error, message)
    "inputs-2d": ("forward", (np.ones((3, 2)),), ValueError, r"inputs: expected a 3-d array, got shape \(3, 2\)"),
    "inputs-feature-size": (
        "forward",
        (np.ones((3, 2, 5)),),
        ValueError,
        r"inputs: expected shape \(·, ·, 2\), got \(3, 2, 5\)",
    ),
    "inputs-no-steps": ("forward", (np.ones((0, 2, 2)),), ValueError, r"inputs: expected at least one time step"),
    "inputs-nan": (
        "forward",
        (_with(X_OK, (1, 0, 1), np.nan),),
        ValueError,
        r"inputs: expected finite values, got 1 NaN/inf",
    ),
    "inputs-bool": ("forward", (X_OK.astype(bool),), TypeError, r"inputs: expected dtype float32 or float64, got bool"),
    "inputs-inf": (
        "loss_and_grads",
        (_with(X_OK, (0, 1, 0), np.inf), T_OK),
        ValueError,
        r"inputs: expected finite values",
    ),
    "targets-shape": (
        "loss_and_grads",
        (X_OK, np.zeros((3, 2, 4))),
        ValueError,
        r"targets: expected shape \(3, 2, 3\), got \(3, 2, 4\)",
    ),
    "targets-2d": ("loss_and_grads", (X_OK, np.zeros((3, 3))), ValueError, r"targets: expected a 3-d array"),
    "targets-above-1": (
        "loss_and_grads",
        (X_OK, _with(T_OK, (2, 1, 2), 1.5)),
        ValueError,
        r"targets: expected values in \[0.0, 1.0\], got values in \[0, 1.5\]",
    ),
    "targets-below-0": (
        "loss_and_grads",
        (X_OK, _with(T_OK, (0, 0, 0), -0.5)),
        ValueError,
        r"targets: expected values in \[0.0, 1.0\]",
    ),
    "targets-nan": (
        "loss_and_grads",
        (X_OK, _with(T_OK, (0, 0, 0), np.nan)),
        ValueError,
        r"targets: expected finite values",
    ),
    "mask-shape": (
        "loss",
        (X_OK, T_OK, np.ones((2, 2, 3))),
        ValueError,
        r"mask: expected a shape that broadcasts to \(3, 2, 3\), got \(2, 2, 3\)",
    ),
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


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "message"),
    BAD_CONSTRUCTORS,
    ids=[f"{c[0]}-{next(iter(c[1]))}" for c in BAD_CONSTRUCTORS],
)
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


@pytest.mark.parametrize("name", ["gpt", "NTM", ""])
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


def test_the_sdnc_takes_softmax_outputs_over_a_vocabulary_like_its_dense_twin():
    """Nothing in the SDNC assumes sigmoid outputs: with softmax_ce over integer targets (bAbI's answers),
    SDNC(K = N, K_L = N) and its dense twin give the same loss and gradients."""
    kw = dict(KW, num_heads=2, memory_init="random")
    sparse = models.SDNC(**kw, k=KW["memory_size"], link_k=KW["memory_size"], index="linear")
    dense = models.DenseSDNC(**kw)
    rng = np.random.default_rng(4)
    x, targets = rng.standard_normal((5, 2, 3)), rng.integers(0, 4, (5, 2))
    loss_s, grads_s = sparse.loss_and_grads(x, targets, loss="softmax_ce")
    loss_d, grads_d = dense.loss_and_grads(x, targets, loss="softmax_ce")
    assert loss_s == pytest.approx(loss_d, rel=1e-12)
    for key in grads_d:
        np.testing.assert_allclose(grads_s[key], grads_d[key], rtol=1e-10, atol=1e-12, err_msg=key)
