"""refmann.layers.hma: the MAB and HMA's memory-tokens head — gradients, the queue, transductivity, arguments.

Finite differences run over thousands of entries, so the sizes are small (D = d + d_l = 4 in the gradient
checks; D = 8 elsewhere) and the checks run with the boundary validation off (``_checks.unchecked``: the
same arithmetic, without re-scanning every array at every one of the ~4·n evaluations).
"""

import logging
from collections import deque

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.special import erf

from refmann import _checks, layers
from refmann.gradcheck import check_op
from refmann.layers.hma import MemoryTokens, MultiheadAttentionBlock
from tests.helpers import assert_gradients_match, assert_linear_in_dout, assert_pure

# -- helpers ------------------------------------------------------------------------------------------------


def _mab(Dq=4, Dkv=3, H=2, **kw):
    return MultiheadAttentionBlock(query_dim=Dq, kv_dim=Dkv, num_heads=H, **kw)


def _mab_op(mab, parts):
    """The MAB as an op over ``(x, *y parts, *params)``; ``parts`` = 0: y is one array, else a tuple of that many."""
    keys = tuple(mab.params)
    n = max(parts, 1)

    def forward(x, *arrays):
        y = arrays[:n] if parts else arrays[0]
        return mab.forward(x, y, params=dict(zip(keys, arrays[n:])))

    def backward(dout, cache):
        dx, dy, grads = mab.backward(dout, cache)
        return (dx, *(dy if parts else (dy,)), *(grads[k] for k in keys))

    return forward, backward


def _tokens(d=2, dl=2, C=3, m=2, S=5, H=2, **kw):
    return MemoryTokens(feature_dim=d, num_classes=C, label_dim=dl, tokens_per_class=m, queue_size=S, num_heads=H, **kw)


def _filled(layer, rng, n=3):
    """The layer with n real rows enqueued (labels in [0, C)), the rest of the ring still the initial noise."""
    layer.enqueue(rng.standard_normal((n, layer.feature_dim)), rng.integers(0, layer.num_classes, n))
    return layer


def _random_params(layer, rng):
    """Every parameter drawn N(0, 1): away from the zero tokens and the small label init (a generic point)."""
    return {key: rng.standard_normal(value.shape) for key, value in layer.params.items()}


def _subset_op(layer, params, keys, **options):
    """The layer as an op over ``(f, *params[keys])``, the other parameters held at ``params``."""

    def forward(f, *arrays):
        return layer.forward(f, params=params | dict(zip(keys, arrays)), **options)

    def backward(dout, cache):
        df, grads = layer.backward(dout, cache)
        return (df, *(grads[k] for k in keys))

    return forward, backward


def _naive_layernorm(z, w, b, eps):
    mu = z.mean(axis=-1, keepdims=True)
    return (z - mu) / np.sqrt(((z - mu) ** 2).mean(axis=-1, keepdims=True) + eps) * w + b


def _naive_mab(mab, p, X, Y):
    """MAB(X, Y) for one set, head by head with explicit loops: X (Tq, Dq), Y (Tk, Dkv)."""
    eps, H = mab.eps, mab.num_heads
    xn = _naive_layernorm(X, p["ln_q.weight"], p["ln_q.bias"], eps)
    yn = _naive_layernorm(Y, p["ln_kv.weight"], p["ln_kv.bias"], eps)
    Q = xn @ p["query.weight"] + p["query.bias"]
    K = yn @ p["key.weight"] + p["key.bias"]
    V = yn @ p["value.weight"] + p["value.bias"]
    dh = mab.query_dim // H
    c = 1 / np.sqrt(mab.kv_dim) if mab.scale == "kv_width" else 1 / np.sqrt(dh)
    out = np.zeros_like(Q)
    for h in range(H):
        cols = slice(h * dh, (h + 1) * dh)
        for i in range(X.shape[0]):
            s = np.array([c * Q[i, cols] @ K[j, cols] for j in range(Y.shape[0])])
            a = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            out[i, cols] = a @ V[:, cols]
    Hd = out + X
    m = _naive_layernorm(Hd, p["ln_ff.weight"], p["ln_ff.bias"], eps)
    u = m @ p["ff.fc1.weight"] + p["ff.fc1.bias"]
    g = 0.5 * u * (1 + erf(u / np.sqrt(2)))  # exact GELU
    return Hd + g @ p["ff.fc2.weight"] + p["ff.fc2.bias"]


def _row_std(a):
    return float(a.std(axis=-1).min())


# -- the MAB ------------------------------------------------------------------------------------------------

FORMS = {"one array": 0, "pair (own rows, shared rows)": 2}


@pytest.mark.parametrize("scale", ["kv_width", "head_dim"])
@pytest.mark.parametrize("form", list(FORMS))
@settings(max_examples=2)
@given(
    S=st.integers(1, 2),
    Tq=st.integers(1, 2),
    Tk=st.integers(1, 3),
    H=st.sampled_from([1, 2, 4]),
    Dkv=st.integers(2, 3),
    shared=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_mab_gradients_match_for_x_y_and_every_param(scale, form, S, Tq, Tk, H, Dkv, shared, seed):
    """x, every part of y (own rows (S, ·), rows shared by every set (1, ·)) and all params, FD-checked.

    LayerNorm inputs are kept away from constant rows (where LN is ill-conditioned)."""
    mab = _mab(Dq=4, Dkv=Dkv, H=H, scale=scale, seed=seed % 7)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((S, Tq, 4))
    if FORMS[form]:
        ys = (rng.standard_normal((S, Tk, Dkv)), rng.standard_normal((1, 2, Dkv)))
    else:
        ys = (rng.standard_normal((1 if shared else S, Tk, Dkv)),)  # a leading 1 broadcasts over the sets
    assume(min(_row_std(a) for a in (x, *ys)) > 0.1)
    params = _random_params(mab, rng)
    with _checks.unchecked():
        assert_gradients_match(_mab_op(mab, FORMS[form]), x, *ys, *params.values(), seed=seed % 5)


@pytest.mark.parametrize("scale", ["kv_width", "head_dim"])
def test_mab_equals_a_loop_over_sets_heads_and_queries(scale):
    """The forward against the equations written out per set, head and query (scale 1/√Dkv or 1/√(De/H))."""
    mab = _mab(Dq=6, Dkv=5, H=3, scale=scale, seed=2)
    rng = np.random.default_rng(3)
    p = _random_params(mab, rng)
    x, y = rng.standard_normal((2, 3, 6)), rng.standard_normal((2, 4, 5))
    out, _ = mab.forward(x, y, params=p)
    want = np.stack([_naive_mab(mab, p, x[s], y[s]) for s in range(2)])
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def test_a_shared_kv_part_equals_copying_it_into_every_set():
    """y = (own (S, T1), shared (1, T2)) ≡ one array with the shared rows repeated per set: output and gradients."""
    mab = _mab(Dq=4, Dkv=4, H=2, seed=5)
    rng = np.random.default_rng(6)
    x, own, shared = rng.standard_normal((3, 1, 4)), rng.standard_normal((3, 1, 4)), rng.standard_normal((1, 5, 4))
    full = np.concatenate([own, np.repeat(shared, 3, axis=0)], axis=1)  # (3, 6, 4), the code's copy
    out_pair, c_pair = mab.forward(x, (own, shared))
    out_full, c_full = mab.forward(x, full)
    np.testing.assert_allclose(out_pair, out_full, rtol=1e-13, atol=1e-13)
    dout = rng.standard_normal(out_pair.shape)
    dx_p, (dy_own, dy_shared), g_p = mab.backward(dout, c_pair)
    dx_f, dy_full, g_f = mab.backward(dout, c_full)
    np.testing.assert_allclose(dx_p, dx_f, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dy_own, dy_full[:, :1], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dy_shared[0], dy_full[:, 1:].sum(axis=0), rtol=1e-12, atol=1e-13)
    for key in mab.params:
        np.testing.assert_allclose(g_p[key], g_f[key], rtol=1e-12, atol=1e-13, err_msg=key)
    assert c_pair.ln_kv[1].x.shape == (1, 5, 4)  # the shared rows were normalised once, not once per set


def test_mab_is_pure_and_linear_in_dout():
    mab = _mab(Dq=4, Dkv=3, H=2, seed=1)
    rng = np.random.default_rng(2)
    arrays = (rng.standard_normal((2, 2, 4)), rng.standard_normal((2, 1, 3)), rng.standard_normal((1, 3, 3)))
    op = _mab_op(mab, 2)
    params = [np.array(v) for v in mab.params.values()]
    assert_pure(op, *arrays, *params)
    assert_linear_in_dout(op, *arrays, *params)


@pytest.mark.parametrize(
    "kwargs, call, error, match",
    [
        (dict(Dq=6, H=4), None, ValueError, "num_heads: expected a divisor of query_dim = 6"),
        (dict(scale="sqrt"), None, ValueError, "scale: expected one of"),
        (dict(eps=0.0), None, ValueError, "eps: expected a finite value > 0"),
        ({}, dict(x=(2, 1, 3)), ValueError, r"x: expected shape \(·, ·, 4\)"),
        ({}, dict(y=(3, 2, 3)), ValueError, r"y: expected a leading axis of 2 .* or 1 \(shared\)"),
        ({}, dict(y=(2, 2, 4)), ValueError, r"y: expected shape \(·, ·, 3\)"),
        ({}, dict(y=()), ValueError, "y: expected an array or a non-empty tuple"),
        ({}, dict(y=(2, 0, 3)), ValueError, "y: expected at least one key row"),
        ({}, dict(nan=True), ValueError, "x: expected finite values"),
    ],
)
def test_mab_refuses_bad_arguments_naming_them(kwargs, call, error, match):
    with pytest.raises(error, match=match):
        mab = _mab(**kwargs)
        x, y = np.ones((2, 1, 4)), np.random.default_rng(0).standard_normal((2, 2, 3))
        call = call or {}
        if "x" in call:
            x = np.ones(call["x"])
        if "y" in call:
            y = () if call["y"] == () else np.ones(call["y"])
        if call.get("nan"):
            x = np.full((2, 1, 4), np.nan)
        mab.forward(x, y)


def test_mab_backward_refuses_a_wrong_dout():
    mab = _mab()
    out, cache = mab.forward(np.ones((2, 1, 4)) * np.arange(4), np.random.default_rng(0).standard_normal((2, 2, 3)))
    with pytest.raises(ValueError, match=r"dout: expected shape \(2, 1, 4\)"):
        mab.backward(np.ones((2, 4)), cache)


# -- MemoryTokens: gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["transductive", "per_sample"])
@settings(max_examples=1)
@given(B=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_memory_tokens_gradients_match_for_f_and_every_parameter(mode, B, seed):
    """f and all 37 parameters, FD-checked with the queue held fixed (3 real rows and 2 initial ones)."""
    rng = np.random.default_rng(seed)
    layer = _filled(_tokens(seed=seed % 7), rng)
    f = rng.standard_normal((B, 2))
    params = _random_params(layer, rng)
    with _checks.unchecked():
        assert_gradients_match(layers.as_op(layer, mode=mode), f, *params.values(), seed=seed % 5)


ABLATIONS = [  # (options, mode): stage 1's flag needs one mode, stage 2's and the head's are tried in both
    (dict(use_queue=False), "per_sample"),
    (dict(use_tokens=False), "transductive"),
    (dict(use_queue=False, use_tokens=False), "per_sample"),
    (dict(logits_from="label"), "transductive"),
    (dict(logits_from="feature"), "per_sample"),
    (dict(scale="head_dim", token_init="normal", use_tokens=False), "per_sample"),
]


@pytest.mark.parametrize(
    "options, mode", ABLATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) if isinstance(o, dict) else o
)
def test_memory_tokens_gradients_match_in_every_ablation(options, mode):
    """f, E, G, the head and both blocks' key/value paths (LN_kv, key, value): what the flags re-route, FD-checked.

    The other parameters are held fixed here; every one is checked in both modes by the test above."""
    rng = np.random.default_rng(11)
    layer = _filled(_tokens(seed=3, **options), rng)
    params = _random_params(layer, rng)
    keys = [k for k in params if "." not in k or k.startswith("head.") or k.split(".")[1] in ("ln_kv", "key", "value")]
    f = rng.standard_normal((3, 2))
    with _checks.unchecked():
        assert_gradients_match(_subset_op(layer, params, keys, mode=mode), f, *(params[k] for k in keys))


def test_the_queue_gets_no_gradient_and_E_none_through_its_rows():
    """The queue is a constant: no gradient key; E's gradient is the FD of E with the queue fixed, which differs
    (by a measured amount) from the FD of a forward that recomputes the queue's label parts from E."""
    rng = np.random.default_rng(4)
    layer = _filled(_tokens(S=4, seed=1), rng, n=4)  # every row real
    params = _random_params(layer, rng)
    f = rng.standard_normal((3, 2))
    logits, cache = layer.forward(f, params=params)
    dlogits = rng.standard_normal(logits.shape)
    _, grads = layer.backward(dlogits, cache)
    assert set(grads) == set(layer.params) and not any("queue" in key for key in grads)

    queue, stored = layer.queue_contents()
    ptr = int(layer.buffers["queue_pointer"])
    order = (ptr - 4 + np.arange(4)) % 4  # slot of each row of queue_contents

    def live(E):
        """The forward with the queue's label part tied to E (what a gradient through the queue would see)."""
        q = layer.buffers["queue"].copy()
        q[order, 2:] = E[stored]
        saved = layer.buffers
        layer.load_buffers({"queue": q})
        try:
            return layer.forward(f, params=params | {"labels": E})
        finally:
            layer.load_buffers(saved)

    with _checks.unchecked():
        fixed = _subset_op(layer, params, ["labels"])
        check = check_op(*fixed, f, params["labels"], dout=dlogits)
        assert check.ok(1e-7), str(check)
        tied = check_op(live, lambda d, c: (layer.backward(d, c)[1]["labels"],), params["labels"], dout=dlogits)
    assert not tied.ok(1e-3), "tying the queue rows to E should change E's gradient (else the test proves nothing)"


def test_the_stored_labels_are_metadata_only():
    """Changing queue_labels (not the rows) changes neither the logits nor any gradient."""
    rng = np.random.default_rng(8)
    layer = _filled(_tokens(seed=2), rng, n=4)
    f = rng.standard_normal((2, 2))
    dlogits = rng.standard_normal((2, 3))
    y1, c1 = layer.forward(f)
    g1 = layer.backward(dlogits, c1)
    layer.load_buffers({"queue_labels": np.array([2.0, 2.0, 2.0, 2.0, 2.0])})
    y2, c2 = layer.forward(f)
    g2 = layer.backward(dlogits, c2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(g1[0], g2[0])
    for key in layer.params:
        np.testing.assert_array_equal(g1[1][key], g2[1][key])


def test_memory_tokens_is_pure_and_linear_in_dout():
    rng = np.random.default_rng(9)
    layer = _filled(_tokens(seed=4), rng)
    params = [np.array(v) for v in _random_params(layer, rng).values()]
    f = rng.standard_normal((3, 2))
    queue = layer.buffers["queue"].copy()
    for mode in ("transductive", "per_sample"):
        assert_pure(layers.as_op(layer, mode=mode), f, *params)
        assert_linear_in_dout(layers.as_op(layer, mode=mode), f, *params)
    np.testing.assert_array_equal(layer.buffers["queue"], queue)  # forward and backward never write the queue


# -- MemoryTokens: the queue -------------------------------------------------------------------------------


def _written_rows(layer, feats, labels):
    return np.concatenate([feats, layer.params["labels"][labels]], axis=1)


@settings(max_examples=30)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=12), S=st.sampled_from([1, 4, 5, 6]))
def test_the_queue_is_a_fifo_of_the_last_S_rows_written(sizes, S):
    """Default rule ≡ ``deque(maxlen=S)`` extended by every batch (batches larger than S, S not divisible by B)."""
    layer = _tokens(d=4, dl=4, S=S)
    rng = np.random.default_rng(len(sizes))
    fifo = deque(maxlen=S)
    for B in sizes:
        feats, labels = rng.standard_normal((B, 4)), rng.integers(0, 3, B)
        layer.enqueue(feats, labels)
        fifo.extend(zip(_written_rows(layer, feats, labels), labels))
        rows, stored = layer.queue_contents()
        assert len(rows) == len(fifo) <= S
        np.testing.assert_array_equal(rows, np.array([r for r, _ in fifo]))
        np.testing.assert_array_equal(stored, np.array([y for _, y in fifo]))


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@settings(max_examples=30)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=12), S=st.sampled_from([4, 6, 8]))
def test_the_quirks_queue_writes_a_batch_only_if_S_mod_B_is_zero(sizes, S):
    """quirks=True ≡ its own brute-force rule: skip unless S mod B = 0, else extend the FIFO; one warning logged."""
    layer = _tokens(d=4, dl=4, S=S, quirks=True)
    rng = np.random.default_rng(sum(sizes))
    fifo, skipped = deque(maxlen=S), 0
    handler, logger = _Records(), logging.getLogger("refmann.layers.hma")
    logger.addHandler(handler)
    try:
        for B in sizes:
            feats, labels = rng.standard_normal((B, 4)), rng.integers(0, 3, B)
            layer.enqueue(feats, labels)
            if S % B == 0:
                fifo.extend(zip(_written_rows(layer, feats, labels), labels))
            else:
                skipped += 1
            rows, stored = layer.queue_contents()
            np.testing.assert_array_equal(rows.reshape(-1, 8), np.array([r for r, _ in fifo]).reshape(-1, 8))
            np.testing.assert_array_equal(stored, np.array([y for _, y in fifo], dtype=np.int64))
    finally:
        logger.removeHandler(handler)
    assert len(handler.records) == min(skipped, 1)
    assert all("not written" in r.getMessage() for r in handler.records)


def test_the_queue_starts_as_unit_norm_noise_with_no_rows_written():
    layer = _tokens(d=4, dl=4, S=6, seed=3)
    q = layer.buffers["queue"]
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(layer.buffers["queue_labels"], -1.0)
    rows, labels = layer.queue_contents()
    assert rows.shape == (0, 8) and labels.shape == (0,)
    assert _tokens(S=0, use_queue=False).queue_contents()[0].shape == (0, 4)


def test_enqueued_rows_hold_a_snapshot_of_the_label_embedding():
    layer = _tokens(d=4, dl=4, S=6)
    feats, labels = np.random.default_rng(0).standard_normal((2, 4)), np.array([2, 0])
    E = layer.params["labels"].copy()
    layer.enqueue(feats, labels)
    layer.params["labels"] += 1.0  # an optimizer step after the write
    rows, stored = layer.queue_contents()
    np.testing.assert_array_equal(rows, np.concatenate([feats, E[labels]], axis=1))
    np.testing.assert_array_equal(stored, labels)


# -- MemoryTokens: transductive and per-sample ---------------------------------------------------------------


@settings(max_examples=10)
@given(B=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_per_sample_predictions_do_not_depend_on_the_batch(B, seed):
    """Permuting the batch permutes the logits; each sample alone gets the same logits (to rounding)."""
    rng = np.random.default_rng(seed)
    layer = _filled(_tokens(d=4, dl=4, seed=seed % 5), rng)
    layer.params.update(_random_params(layer, rng))
    f = rng.standard_normal((B, 4))
    logits, _ = layer.forward(f, mode="per_sample")
    perm = rng.permutation(B)
    np.testing.assert_allclose(layer.forward(f[perm], mode="per_sample")[0], logits[perm], rtol=1e-12, atol=1e-12)
    alone = np.concatenate([layer.forward(f[i : i + 1], mode="per_sample")[0] for i in range(B)])
    np.testing.assert_allclose(alone, logits, rtol=1e-12, atol=1e-12)


@settings(max_examples=10)
@given(B=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_transductive_predictions_change_with_the_rest_of_the_batch(B, seed):
    """Same first sample, different companions: a measured difference far above rounding. Permutations still
    only permute the logits (stage 2 is a set operation)."""
    rng = np.random.default_rng(seed)
    layer = _filled(_tokens(d=4, dl=4, seed=seed % 5), rng)
    layer.params.update(_random_params(layer, rng))
    f = rng.standard_normal((B, 4))
    g = np.concatenate([f[:1], rng.standard_normal((B - 1, 4))])  # sample 0 kept, the rest replaced
    logits, _ = layer.forward(f)
    change = np.abs(layer.forward(g)[0][0] - logits[0]).max()
    rounding = 1e-12 * max(1.0, np.abs(logits).max())
    assert change > 1e3 * rounding, (change, rounding)
    perm = rng.permutation(B)
    np.testing.assert_allclose(layer.forward(f[perm])[0], logits[perm], rtol=1e-12, atol=1e-12)


def test_a_batch_of_one_is_the_same_in_both_modes():
    rng = np.random.default_rng(2)
    layer = _filled(_tokens(d=4, dl=4, seed=1), rng)
    f = rng.standard_normal((1, 4))
    np.testing.assert_allclose(layer.forward(f)[0], layer.forward(f, mode="per_sample")[0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("mode", ["transductive", "per_sample"])
def test_attention_mass_splits_each_stage_and_follows_the_ablations(mode):
    rng = np.random.default_rng(3)
    f = rng.standard_normal((4, 4))
    full = _filled(_tokens(d=4, dl=4, seed=1), rng)
    mass = full.attention_mass(full.forward(f, mode=mode)[1])
    assert mass["stage1_self"] + mass["stage1_queue"] == pytest.approx(1.0, abs=1e-12)
    assert mass["stage2_batch"] + mass["stage2_tokens"] == pytest.approx(1.0, abs=1e-12)
    assert 0 < mass["stage2_self"] <= mass["stage2_batch"] < 1 and 0 < mass["stage1_queue"] < 1
    _, cache = full.forward(f, mode=mode)
    A1 = cache.stage1.attn.weights  # (B, H, 1, 1 + S)
    np.testing.assert_allclose(cache.mass["stage1_self"], A1[:, :, 0, 0].mean(axis=1), rtol=1e-14)
    bare = _tokens(d=4, dl=4, use_queue=False, use_tokens=False, seed=1)
    mass = bare.attention_mass(bare.forward(f, mode=mode)[1])
    assert mass["stage1_self"] == 1.0 and mass["stage1_queue"] == 0.0
    assert mass["stage2_tokens"] == 0.0 and mass["stage2_batch"] == pytest.approx(1.0, abs=1e-12)


def test_parameters_start_as_documented():
    zero = _tokens(d=4, dl=4, m=3, C=4)
    assert zero.params["tokens"].shape == (12, 4) and not zero.params["tokens"].any()
    np.testing.assert_array_equal(zero.token_classes, np.repeat(np.arange(4), 3))  # token j has class j // m_s
    assert zero.params["labels"].shape == (5, 4) and zero.params["head.weight"].shape == (8, 4)
    normal = _tokens(d=4, dl=4, token_init="normal")
    assert normal.params["tokens"].any()
    assert "tokens" not in _tokens(use_tokens=False).params
    assert _tokens(d=4, dl=4, logits_from="label").params["head.weight"].shape == (4, 3)
    assert _tokens(d=4, dl=2, logits_from="feature").params["head.weight"].shape == (4, 3)


# -- MemoryTokens: bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(d=4, dl=3, H=2), ValueError, r"num_heads: expected a divisor of D = feature_dim \+ label_dim = 4 \+ 3"),
        (dict(logits_from="labels"), ValueError, "logits_from: expected one of"),
        (dict(token_init="uniform"), ValueError, "token_init: expected one of"),
        (dict(S=0), ValueError, "queue_size: expected an int >= 1 with use_queue=True"),
        (dict(C=1), ValueError, "num_classes: expected an int >= 2"),
        (dict(quirks="yes"), TypeError, "quirks: expected True or False"),
        (dict(scale="none"), ValueError, "scale: expected one of"),
    ],
)
def test_memory_tokens_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        _tokens(**kwargs)


def test_memory_tokens_refuses_bad_calls_naming_the_argument():
    layer = _tokens()
    f = np.ones((2, 2)) * [1.0, -1.0]
    with pytest.raises(ValueError, match="mode: expected one of"):
        layer.forward(f, mode="inductive")
    with pytest.raises(ValueError, match=r"f: expected shape \(·, 2\)"):
        layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"f: expected shape \(·, 2\)"):
        layer.forward(np.ones(2))
    with pytest.raises(ValueError, match="f: expected finite values"):
        layer.forward(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"f: expected at least one row"):
        layer.forward(np.ones((0, 2)))
    with pytest.raises(ValueError, match=r"params\['tokens'\]: expected finite values"):
        layer.forward(f, params=layer.params | {"tokens": np.full((6, 2), np.nan)})
    with pytest.raises(ValueError, match=r"params\['labels'\]: expected shape \(4, 2\)"):
        layer.forward(f, params=layer.params | {"labels": np.ones((3, 2))})
    _, cache = layer.forward(f)
    with pytest.raises(ValueError, match=r"dlogits: expected shape \(2, 3\)"):
        layer.backward(np.ones((2, 4)), cache)
    with pytest.raises(ValueError, match=r"labels: expected indices in \[0, 3\)"):
        layer.enqueue(np.ones((2, 2)), np.array([0, 3]))
    with pytest.raises(TypeError, match="labels: expected an integer array"):
        layer.enqueue(np.ones((2, 2)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels: expected shape \(2\), got \(3,\)"):
        layer.enqueue(np.ones((2, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"features: expected shape \(·, 2\)"):
        layer.enqueue(np.ones((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="features: expected finite values"):
        layer.enqueue(np.full((1, 2), np.inf), np.array([0]))
    np.testing.assert_array_equal(layer.buffers["queue_labels"], -1.0)  # nothing was written by a refused call


def test_float32_in_float32_out():
    layer = _tokens(d=4, dl=4, dtype=np.float32)
    f = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    layer.enqueue(f, np.array([0, 1, 2]))
    logits, cache = layer.forward(f)
    df, grads = layer.backward(np.ones_like(logits), cache)
    assert logits.dtype == df.dtype == np.float32
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    assert {b.dtype for b in layer.buffers.values()} == {np.dtype(np.float32)}


@settings(max_examples=15, deadline=None)
@given(
    S=st.integers(2, 4), Tq=st.integers(1, 3), T_own=st.integers(1, 3), T_shared=st.integers(1, 6),
    scale=st.sampled_from(["kv_width", "head_dim"]), masked=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_fused_shared_part_attention_equals_the_concatenated_reference(S, Tq, T_own, T_shared, scale, masked, seed):
    """fused=True attends to a shared part without copying it into every set; fused=False (the readable path)
    concatenates the parts and calls ops.attention_forward. Outputs and every gradient agree to rounding."""
    block = MultiheadAttentionBlock(query_dim=4, kv_dim=3, num_heads=2, scale=scale, seed=seed % 7)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((S, Tq, 4))
    y = (rng.standard_normal((S, T_own, 3)), rng.standard_normal((1, T_shared, 3)))
    mask = None
    if masked:
        mask = rng.random((S, 1, Tq, T_own + T_shared)) < 0.7
        mask[..., 0] = True  # every query keeps a key
    dout = rng.standard_normal((S, Tq, 4))
    results = {}
    for fused in (True, False):
        out, cache = block.forward(x, y, mask=mask, fused=fused)
        results[fused] = (out, *block.backward(dout, cache))
    (o1, dx1, dy1, g1), (o0, dx0, dy0, g0) = results[True], results[False]
    np.testing.assert_allclose(o1, o0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-11, atol=1e-12)
    for a, b in zip(dy1, dy0):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    for key in g0:
        np.testing.assert_allclose(g1[key], g0[key], rtol=1e-11, atol=1e-12, err_msg=key)
