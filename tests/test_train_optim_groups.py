"""AdamW, dense Adam against lazy sparse Adam on value tables, and parameter groups (param_groups, clipped).

The dense ≡ lazy property (DESIGN decision 12): with every row of a value table touched at every step
and no weight decay, dense Adam (and AdamW with weight_decay=0) and lazy row-sparse Adam are the same
function; a row that a step skips is where they part (dense Adam keeps moving it on old momentum).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmann.ops import RowGrad
from refmann.train import TrainConfig, Trainer, optim
from refmann.train.optim import (
    adam,
    adamw,
    clip_global_norm,
    clipped,
    combine,
    make_optimizer,
    param_groups,
    sparse_adam,
    state_from_arrays,
    state_to_arrays,
)

RTOL = 1e-12  # two transcriptions of the same float64 rule, operations in another order

HYPER = [
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2),
    dict(lr=3e-2, beta1=0.5, beta2=0.9, eps=1e-3, weight_decay=0.5),
    dict(lr=1e-1, beta1=0.0, beta2=0.0, eps=1e-6, weight_decay=0.0),
]


def run(step, params, grads_seq, state=None):
    for grads in grads_seq:
        params, state = step(params, grads, state)
    return params, state


def dense_stream(steps, *, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(4, 3)).astype(dtype), "b": rng.normal(size=3).astype(dtype)}
    seq = [{k: rng.normal(size=p.shape).astype(dtype) for k, p in params.items()} for _ in range(steps)]
    return params, seq


def naive_adamw(p, grads, *, lr, beta1, beta2, eps, weight_decay):
    """PyTorch's AdamW algorithm box, one scalar at a time, in plain Python floats."""
    theta = [float(x) for x in p.reshape(-1)]
    m, v = [0.0] * len(theta), [0.0] * len(theta)
    for t, g in enumerate(grads, start=1):
        for i, gi in enumerate(g.reshape(-1)):
            theta[i] -= lr * weight_decay * theta[i]
            m[i] = beta1 * m[i] + (1 - beta1) * gi
            v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
            m_hat, v_hat = m[i] / (1 - beta1**t), v[i] / (1 - beta2**t)
            theta[i] -= lr * m_hat / (v_hat**0.5 + eps)
    return np.array(theta).reshape(p.shape), np.array(m).reshape(p.shape), np.array(v).reshape(p.shape)


def every_row_grad(rng, N, D):
    """A RowGrad naming every one of N rows, shuffled, with a repeated row (repeats add up)."""
    idx = np.concatenate([rng.permutation(N), rng.integers(0, N, size=2)])
    return RowGrad(idx, rng.normal(size=(idx.size, D)), N)


# --------------------------------------------------------------------------- AdamW


@pytest.mark.parametrize("hyper", HYPER)
def test_adamw_matches_torch_adamw(hyper):
    torch = pytest.importorskip("torch")
    params, seq = dense_stream(8, seed=1)
    got, state = run(lambda p, g, s: adamw(p, g, s, **hyper), params, seq)
    tensors = {k: torch.tensor(p, dtype=torch.float64, requires_grad=True) for k, p in params.items()}
    opt = torch.optim.AdamW(
        list(tensors.values()),
        lr=hyper["lr"],
        betas=(hyper["beta1"], hyper["beta2"]),
        eps=hyper["eps"],
        weight_decay=hyper["weight_decay"],
        foreach=False,
    )
    for grads in seq:
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k], dtype=torch.float64)
        opt.step()
    for k, t in tensors.items():
        np.testing.assert_allclose(got[k], t.detach().numpy(), rtol=RTOL, atol=1e-15)
        torch_state = opt.state[t]
        np.testing.assert_allclose(state["m"][k], torch_state["exp_avg"].numpy(), rtol=RTOL, atol=1e-15)
        np.testing.assert_allclose(state["v"][k], torch_state["exp_avg_sq"].numpy(), rtol=RTOL, atol=1e-15)
    assert state["step"] == len(seq)


@pytest.mark.parametrize("hyper", HYPER)
def test_adamw_matches_plain_scalar_transcription(hyper):
    params, seq = dense_stream(8, seed=2)
    got, state = run(lambda p, g, s: adamw(p, g, s, **hyper), params, seq)
    for k, p in params.items():
        theta, m, v = naive_adamw(p, [g[k] for g in seq], **hyper)
        np.testing.assert_allclose(got[k], theta, rtol=RTOL, atol=1e-15)
        np.testing.assert_allclose(state["m"][k], m, rtol=RTOL, atol=1e-15)
        np.testing.assert_allclose(state["v"][k], v, rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adamw_without_weight_decay_is_adam(dtype):
    """Bit for bit: θ·(1 - γ·0) is θ, and the rest is Adam's own rule."""
    params, seq = dense_stream(6, seed=3, dtype=dtype)
    got, s_got = run(lambda p, g, s: adamw(p, g, s, lr=1e-2, weight_decay=0.0), params, seq)
    ref, s_ref = run(lambda p, g, s: adam(p, g, s, lr=1e-2), params, seq)
    for k in params:
        assert got[k].dtype == dtype
        np.testing.assert_array_equal(got[k], ref[k])
        np.testing.assert_array_equal(s_got["m"][k], s_ref["m"][k])
        np.testing.assert_array_equal(s_got["v"][k], s_ref["v"][k])


def test_adamw_decay_is_decoupled_from_the_moments():
    """A zero gradient leaves the moments at zero and shrinks θ by exactly 1 - γλ."""
    p = {"w": np.array([2.0, -4.0])}
    new, state = adamw(p, {"w": np.zeros(2)}, lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(new["w"], [2.0 * 0.95, -4.0 * 0.95], rtol=1e-15)
    np.testing.assert_array_equal(state["m"]["w"], 0.0)
    np.testing.assert_array_equal(state["v"]["w"], 0.0)


def test_adamw_takes_a_rowgrad_as_its_densified_gradient_and_decays_every_row():
    rng = np.random.default_rng(4)
    params = {"values": rng.normal(size=(6, 3))}
    g = RowGrad(np.array([1, 4, 1]), rng.normal(size=(3, 3)), 6)
    dense = np.zeros((6, 3))
    np.add.at(dense, g.indices, g.rows)
    got, s_got = adamw(params, {"values": g}, lr=1e-2, weight_decay=0.1)
    ref, s_ref = adamw(params, {"values": dense}, lr=1e-2, weight_decay=0.1)
    np.testing.assert_array_equal(got["values"], ref["values"])
    np.testing.assert_array_equal(s_got["m"]["values"], s_ref["m"]["values"])
    untouched = [0, 2, 3, 5]  # dense semantics: decayed although the gradient skips them
    np.testing.assert_allclose(got["values"][untouched], params["values"][untouched] * (1 - 1e-3), rtol=1e-15)


def test_adamw_does_not_modify_its_inputs():
    params, seq = dense_stream(2, seed=5)
    _, state = adamw(params, seq[0])
    copies = {k: v.copy() for k, v in params.items()}, state_to_arrays(state)
    adamw(params, seq[1], state)
    for k in params:
        np.testing.assert_array_equal(params[k], copies[0][k])
    for k, a in state_to_arrays(state).items():
        np.testing.assert_array_equal(a, copies[1][k])


# --------------------------------------------------------------------------- dense ≡ lazy


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dense", ["adam", "adamw_no_decay"])
def test_dense_adam_equals_lazy_sparse_adam_when_every_row_is_touched(dense, dtype):
    """60 steps of a value table whose RowGrads name every row (shuffled, with repeats): the dense
    and the lazy rule agree to 1e-12 (here, bit for bit). No weight decay: lazy Adam has none."""
    rng = np.random.default_rng(6)
    N, D = 7, 3
    params = {"values": rng.normal(size=(N, D)).astype(dtype)}
    seq = [{"values": every_row_grad(rng, N, D)} for _ in range(60)]
    seq = [{"values": g["values"]._replace(rows=g["values"].rows.astype(dtype))} for g in seq]
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8)
    step = (lambda p, g, s: adam(p, g, s, **hyper)) if dense == "adam" else partial(adamw, weight_decay=0.0, **hyper)
    got, s_got = run(lambda p, g, s: sparse_adam(p, g, s, **hyper), params, seq)
    ref, s_ref = run(step, params, seq)
    np.testing.assert_allclose(got["values"], ref["values"], rtol=RTOL, atol=0)
    np.testing.assert_array_equal(got["values"], ref["values"])
    for slot in ("m", "v"):
        np.testing.assert_array_equal(s_got[slot]["values"], s_ref[slot]["values"])
    assert s_got["step"] == s_ref["step"] == 60


@given(st.integers(0, 4), st.integers(1, 5))
def test_dense_and_lazy_adam_differ_exactly_on_a_skipped_row(skipped, warmup):
    """After ``warmup`` steps touching every row, one step skips row ``skipped``: lazy Adam leaves it
    and its moments as they were (PyTorch SparseAdam); dense Adam moves it on its old momentum and
    decays its moments. Every other row still agrees bit for bit."""
    rng = np.random.default_rng(7)
    N, D = 5, 2
    params = {"values": rng.normal(size=(N, D))}
    seq = [{"values": every_row_grad(rng, N, D)} for _ in range(warmup)]
    rest = np.delete(np.arange(N), skipped)
    seq.append({"values": RowGrad(rest, rng.normal(size=(N - 1, D)), N)})
    lazy, s_lazy = run(sparse_adam, params, seq)
    dense, s_dense = run(adam, params, seq)
    before, s_before = run(sparse_adam, params, seq[:-1])
    np.testing.assert_array_equal(lazy["values"][skipped], before["values"][skipped])
    np.testing.assert_array_equal(s_lazy["m"]["values"][skipped], s_before["m"]["values"][skipped])
    assert np.all(dense["values"][skipped] != before["values"][skipped])  # the "ghost" step
    np.testing.assert_array_equal(s_dense["m"]["values"][skipped], 0.9 * s_before["m"]["values"][skipped])
    np.testing.assert_array_equal(lazy["values"][rest], dense["values"][rest])


# --------------------------------------------------------------------------- parameter groups


def group_stream(steps, *, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = {
        "pkm.values": rng.normal(size=(8, 3)).astype(dtype),
        "pkm.query.weight": rng.normal(size=(3, 2)).astype(dtype),
        "out.bias": rng.normal(size=2).astype(dtype),
    }
    seq = []
    for _ in range(steps):
        idx = rng.integers(0, 8, size=4)
        seq.append(
            {
                "pkm.values": RowGrad(idx, (10 * rng.normal(size=(4, 3))).astype(dtype), 8),
                "pkm.query.weight": (10 * rng.normal(size=(3, 2))).astype(dtype),
                "out.bias": rng.normal(size=2).astype(dtype),
            }
        )
    return params, seq


def subset(params, seq, keys):
    return {k: params[k] for k in keys}, [{k: g[k] for k in keys} for g in seq]


def test_param_groups_route_each_parameter_to_its_first_matching_group():
    params, seq = group_stream(4, seed=1)
    values, query, rest = (
        make_optimizer("sparse_adam", lr=1e-2),
        make_optimizer("adam", lr=1e-3),
        partial(adamw, lr=1e-4, weight_decay=0.1),
    )
    # "pkm.*" would also take pkm.values; "values" comes first, so it wins
    step = param_groups({"values": values, "pkm.*": query, "*": rest})
    got, state = run(step, params, seq)
    for keys, opt in ((["pkm.values"], values), (["pkm.query.weight"], query), (["out.bias"], rest)):
        ref, _ = run(opt, *subset(params, seq, keys))
        np.testing.assert_array_equal(got[keys[0]], ref[keys[0]])
    assert list(got) == list(params)
    assert sorted(state_to_arrays(state)) == [
        "*:m/out.bias",
        "*:v/out.bias",
        "pkm.*:m/pkm.query.weight",
        "pkm.*:v/pkm.query.weight",
        "step",
        "values:m/pkm.values",
        "values:v/pkm.values",
    ]


def test_param_groups_is_combine_with_a_first_match_group_of():
    params, seq = group_stream(3, seed=2)
    opts = {"values": make_optimizer("rowwise_adagrad"), "*": partial(adamw)}
    got, s_got = run(param_groups(opts), params, seq)
    ref, s_ref = run(combine(opts, lambda k: "values" if k.endswith(".values") else "*"), params, seq)
    a_got, a_ref = state_to_arrays(s_got), state_to_arrays(s_ref)
    assert set(a_got) == set(a_ref)
    for k in params:
        np.testing.assert_array_equal(got[k], ref[k])
    for k in a_got:
        np.testing.assert_array_equal(a_got[k], a_ref[k])


@pytest.mark.parametrize(
    ("key", "pattern", "matches"),
    [
        ("values", "values", True),
        ("pkm.values", "values", True),
        ("layers.3.pkm.values", "values", True),
        ("layers.3.pkm.values", "pkm.values", True),
        ("myvalues", "values", False),
        ("pkm.values.scale", "values", False),
        ("myvalues", "*values", True),
        ("controller.weight", "*", True),
        ("controller.weight", "controller.*", True),
        ("out.controller.weight", "controller.*", True),
        ("controller.bias", "*.weight", False),
        ("Values", "values", False),
    ],
)
def test_param_groups_pattern_matches_the_key_or_a_dotted_suffix(key, pattern, matches):
    # "**" is a catch-all under another name than "*" (two dict keys, even for the pattern "*")
    step = param_groups({pattern: make_optimizer("sgd", lr=1.0), "**": make_optimizer("sgd", lr=0.5)})
    new, _ = step({key: np.zeros(1)}, {key: np.ones(1)})
    assert new[key][0] == (-1.0 if matches else -0.5)


def test_param_groups_give_each_group_its_own_lr_and_clip():
    params, seq = group_stream(3, seed=3)
    step = param_groups(
        {
            "values": clipped(make_optimizer("sparse_adam", lr=1e-2), max_norm=1.0),
            "*": clipped(make_optimizer("sgd", lr=1e-3), value=0.5, max_norm=1.0),
        }
    )
    got, _ = run(step, params, seq)
    # values: clipped by the norm of the value gradient alone
    ref_values, _ = run(
        lambda q, g, s: sparse_adam(q, clip_global_norm(g, 1.0)[0], s, lr=1e-2), *subset(params, seq, ["pkm.values"])
    )
    np.testing.assert_array_equal(got["pkm.values"], ref_values["pkm.values"])
    # the rest: entries clipped to ±0.5, then the joint norm of its two gradients to 1.0, then sgd at 1e-3
    rest = ["pkm.query.weight", "out.bias"]
    theta = {k: params[k].copy() for k in rest}
    for g in seq:
        c = {k: np.clip(g[k], -0.5, 0.5) for k in rest}
        norm = np.sqrt(sum(np.sum(a * a) for a in c.values()))
        scale = min(1.0, 1.0 / norm)
        theta = {k: theta[k] - 1e-3 * (c[k] * scale) for k in rest}
        assert norm > 1.0  # the norm clip acts, on this group's gradients alone
    for k in rest:
        np.testing.assert_allclose(got[k], theta[k], rtol=RTOL, atol=1e-15)


def test_clipped_keeps_the_state_of_its_optimizer():
    params, seq = group_stream(2, seed=4)
    _, s_clipped = run(clipped(partial(adamw), max_norm=np.inf), params, seq)
    _, s_plain = run(partial(adamw), params, seq)
    assert set(s_clipped) == set(s_plain) == {"step", "m", "v"}
    for k, a in state_to_arrays(s_plain).items():
        np.testing.assert_array_equal(state_to_arrays(s_clipped)[k], a)


def test_param_groups_name_a_parameter_no_group_matches():
    step = param_groups({"values": make_optimizer("sparse_adam"), "*.weight": partial(adamw)})
    with pytest.raises(
        ValueError, match=r"^params\['out\.bias'\]: no parameter group matches.*\['values', '\*\.weight'\]"
    ):
        step(
            {"out.bias": np.ones(2), "pkm.values": np.ones((2, 2))},
            {"out.bias": np.ones(2), "pkm.values": np.ones((2, 2))},
        )


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("hyper", "error", "match"),
    [
        (dict(weight_decay=-0.1), ValueError, r"^weight_decay: expected a finite number >= 0, got -0.1$"),
        (dict(weight_decay=float("nan")), ValueError, "^weight_decay"),
        (dict(weight_decay=float("inf")), ValueError, "^weight_decay"),
        (dict(weight_decay=True), TypeError, "^weight_decay"),
        (dict(weight_decay="0.1"), TypeError, "^weight_decay"),
        (dict(lr=0.0), ValueError, "^lr"),
        (dict(beta1=1.0), ValueError, "^beta1"),
        (dict(beta2=-0.1), ValueError, "^beta2"),
        (dict(eps=0.0), ValueError, "^eps"),
        (dict(momentum=0.9), TypeError, "momentum"),
    ],
)
def test_adamw_refuses_bad_hyperparameters_naming_them(hyper, error, match):
    with pytest.raises(error, match=match):
        adamw({"w": np.ones(2)}, {"w": np.ones(2)}, **hyper)


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        ({}, TypeError, "^groups: expected a non-empty dict"),
        ([("*", adam)], TypeError, "^groups"),
        ({"": adam}, ValueError, "^groups: expected non-empty patterns"),
        ({"a/b": adam}, ValueError, "^groups: expected non-empty patterns"),
        ({"a:b": adam}, ValueError, "^groups: expected non-empty patterns"),
        ({1: adam}, ValueError, "^groups: expected non-empty patterns"),
        ({"*": 0.1}, TypeError, r"^groups\['\*'\]: expected an update function, got float$"),
    ],
)
def test_param_groups_refuse_bad_groups_naming_them(groups, error, match):
    with pytest.raises(error, match=match):
        param_groups(groups)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0.1,), dict(max_norm=1.0), TypeError, "^step: expected an update function"),
        ((adam,), {}, ValueError, "^clipped: expected value=, max_norm= or both"),
        ((adam,), dict(max_norm=0.0), ValueError, "^max_norm"),
        ((adam,), dict(max_norm=-1.0), ValueError, "^max_norm"),
        ((adam,), dict(value="1"), TypeError, "^value"),
        ((adam,), dict(value=float("nan")), ValueError, "^value"),
    ],
)
def test_clipped_refuses_bad_arguments_naming_them(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        clipped(*args, **kwargs)


def test_a_bound_adamw_is_an_update_step():
    step = partial(adamw, lr=1e-2, weight_decay=0.0)
    params, seq = dense_stream(2)
    np.testing.assert_array_equal(
        run(step, params, seq)[0]["w"], run(make_optimizer("adam", lr=1e-2), params, seq)[0]["w"]
    )


# --------------------------------------------------------------------------- checkpoints


def test_param_groups_state_round_trips_through_npz_and_resumes_bit_identically(tmp_path):
    step = param_groups(
        {
            "values": clipped(make_optimizer("sparse_adam", lr=1e-2), max_norm=1.0),
            "*": partial(adamw, lr=1e-3, weight_decay=0.1),
        }
    )
    params, seq = group_stream(6, seed=5, dtype=np.float32)
    params, state = run(step, params, seq[:3])
    path = tmp_path / "opt_state.npz"
    np.savez(path, **{f"opt/{k}": v for k, v in state_to_arrays(state).items()})  # the trainer's entries
    with np.load(path, allow_pickle=False) as npz:
        restored = state_from_arrays({k[len("opt/") :]: npz[k] for k in npz.files})
    p_ref, s_ref = run(step, params, seq[3:], state)
    p_res, s_res = run(step, params, seq[3:], restored)
    for k in params:
        assert p_res[k].dtype == np.float32
        np.testing.assert_array_equal(p_res[k], p_ref[k])
    a_ref, a_res = state_to_arrays(s_ref), state_to_arrays(s_res)
    assert set(a_ref) == set(a_res) and a_ref["step"] == 6
    for k in a_ref:
        np.testing.assert_array_equal(a_res[k], a_ref[k])


def test_a_trainer_with_param_groups_reloads_its_optimizer_state_from_its_checkpoint(tmp_path, monkeypatch):
    """The trainer's own checkpoint (format unchanged) holds a grouped state and its resume check
    accepts it: the restored state is the saved one, array for array."""
    groups = lambda name, lr: param_groups(  # noqa: E731
        {"bias": partial(adamw, lr=lr, weight_decay=0.1), "*": partial(adam, lr=lr)}
    )
    monkeypatch.setattr(optim, "make_optimizer", groups)
    config = TrainConfig(
        model="lstm",
        task="copy",
        task_kwargs={"max_length": 3, "bits": 4},
        batch_size=4,
        hidden_size=8,
        optimizer="adam",
        lr=1e-2,
        eval_every=8,
        eval_size=4,
        log_every=3,
        checkpoint_every=2,
        sequences=4 * 4,
        seed=1,
    )
    first = Trainer(config, tmp_path, progress=False)
    first.run()
    assert {"bias:m", "*:m"} <= set(first.opt_state)
    second = Trainer(config, tmp_path, resume=True, progress=False)
    assert second.step == first.step == 4
    a_first, a_second = state_to_arrays(first.opt_state), state_to_arrays(second.opt_state)
    assert set(a_first) == set(a_second)
    for k in a_first:
        np.testing.assert_array_equal(a_second[k], a_first[k])
