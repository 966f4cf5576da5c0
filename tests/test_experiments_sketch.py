"""E2/E3 (refmann/experiments/sketch.py): rotated queries sit at angle θ, explicit writes recall exactly when n ≪ 2^b
and read what a naive per-table vote reads, the measured collision rates follow SimHash's curves, the arms'
gradients match finite differences and their FLOPs are the documented formulas, the graph task is f^h, quick
runs give the documented rows, reruns are identical, the CLI writes JSON and a figure and refuses bad flags with
exit 2. No timing assertions."""

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refmann import layers
from refmann.experiments import capacity, sketch
from refmann.layers.sketch import SketchMemory, simhash_buckets
from tests.helpers import assert_gradients_match


def _without_times(rows):
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rows]


@pytest.fixture(scope="module")
def e2_rows():
    return sketch.run("e2", **sketch.QUICK["e2"])


@pytest.fixture(scope="module")
def e3_rows():
    return sketch.run("e3", **sketch.QUICK["e3"])


# --- the bits rule and the curves ------------------------------------------------------------------------------


@given(n=st.integers(1, 10**6), factor=st.integers(1, 8))
def test_bits_for_is_the_smallest_b_with_2_to_the_b_at_least_factor_times_n(n, factor):
    b = sketch.bits_for(n, factor=factor)
    assert 2**b >= factor * n and (b == 1 or 2 ** (b - 1) < factor * n)
    assert sketch.bits_for(n, factor=factor, max_bits=3) == min(3, b)


@given(theta=st.floats(0.0, math.pi), b=st.integers(1, 20), T=st.integers(2, 32))
def test_more_tables_only_raise_the_chance_of_a_shared_bucket_and_one_table_is_the_collision_curve(theta, b, T):
    p = sketch.collision_curve(theta, b)
    assert sketch.tables_curve(theta, b, 1) == pytest.approx(p, abs=1e-15)
    assert p - 1e-15 <= sketch.tables_curve(theta, b, T) <= sketch.tables_curve(theta, b, T + 1) + 1e-15 <= 1 + 1e-15
    assert sketch.collision_curve(0.0, b) == 1.0 and sketch.collision_curve(math.pi, b) == 0.0


# --- E2: rotated queries and explicit writes --------------------------------------------------------------------


@given(theta=st.floats(0.0, 90.0), seed=st.integers(0, 2**16), d=st.integers(2, 40))
def test_rotated_queries_are_unit_vectors_at_angle_theta_from_their_keys(theta, seed, d):
    rng = np.random.default_rng(seed)
    keys, _ = capacity.key_value_pairs(7, dim=d, rng=rng)
    u = sketch.orthogonal_directions(keys, rng=rng)
    np.testing.assert_allclose(np.sum(u * keys, axis=1), 0.0, atol=1e-12)
    q = sketch.rotate(keys, u, theta)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-12)
    cos = np.sum(q * keys, axis=1)
    sin = np.linalg.norm(q - cos[:, None] * keys, axis=1)
    np.testing.assert_allclose(np.degrees(np.arctan2(sin, cos)), theta, atol=1e-9)


@settings(max_examples=10)
@given(T=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_explicit_writes_recall_every_key_exactly_at_theta_zero_when_n_is_much_smaller_than_2_to_the_b(T, seed):
    """n = 32 keys in 2^16 buckets per table: no two keys share a row, so every key reads its own class."""
    rng = np.random.default_rng(seed)
    keys, labels = capacity.key_value_pairs(32, rng=rng)
    memory = sketch.explicit_memory(keys, labels, num_tables=T, num_bits=16, seed=seed, dtype=np.float64)
    rows = memory.rows(keys)
    assume(all(len(np.unique(rows[:, t])) == 32 for t in range(T)))  # (fails with probability < 1e-2)
    np.testing.assert_array_equal(sketch.explicit_predict(memory, keys), labels)


def _naive_votes(keys, labels, queries, planes, num_classes):
    """Per table, the mean one-hot class of the keys in the query's bucket (zero if none), summed over the tables."""
    kb, _ = simhash_buckets(keys, planes)  # (n, T)
    qb, _ = simhash_buckets(queries, planes)
    votes = np.zeros((len(queries), num_classes))
    for i in range(len(queries)):
        for t in range(planes.shape[0]):
            same = labels[kb[:, t] == qb[i, t]]
            if len(same):
                votes[i] += np.bincount(same, minlength=num_classes) / len(same)
    return votes


@settings(max_examples=10)
@given(T=st.integers(1, 4), b=st.integers(2, 6), theta=st.sampled_from([0.0, 10.0, 40.0]), seed=st.integers(0, 999))
def test_explicit_recall_is_the_naive_per_table_vote_of_the_keys_in_the_query_buckets(T, b, theta, seed):
    """Few buckets (2^b ≤ 64 for 60 keys): collisions, ties and empty buckets all occur."""
    rng = np.random.default_rng(seed)
    keys, labels = capacity.key_value_pairs(60, num_classes=5, rng=rng)
    queries = sketch.rotate(keys, sketch.orthogonal_directions(keys, rng=rng), theta)
    memory = sketch.explicit_memory(keys, labels, num_tables=T, num_bits=b, num_classes=5, seed=seed, dtype=np.float64)
    votes = _naive_votes(keys, labels, queries, memory.buffers["planes"], 5)  # (60, 5)
    np.testing.assert_allclose(memory.forward(queries)[0], votes / T, rtol=1e-12, atol=1e-14)
    got = sketch.explicit_predict(memory, queries)
    empty = votes.max(axis=1) == 0
    np.testing.assert_array_equal(got[empty], -1)
    top2 = -np.sort(-votes, axis=1)[:, :2]
    clear = ~empty & (top2[:, 0] - top2[:, 1] > 1e-9)  # ties may go either way under rounding
    np.testing.assert_array_equal(got[clear], np.argmax(votes[clear], axis=1))


def test_an_empty_read_is_a_miss_not_class_zero():
    keys = np.eye(4)[:1]  # one key, e1
    memory = sketch.explicit_memory(keys, np.array([0]), num_tables=2, num_bits=12, num_classes=3, seed=0)
    assert sketch.explicit_predict(memory, keys)[0] == 0
    assert sketch.explicit_predict(memory, -keys)[0] == -1  # the antipode flips every bit: nothing stored there


def test_quick_e2_gives_one_row_per_seed_arm_and_angle_with_the_documented_keys(e2_rows):
    q = sketch.QUICK["e2"]
    runs = [("explicit", T) for T in q["tables"]] + [(a, None) for a in q["arms"] if a != "explicit"]
    expected = [(s, a, T, th) for s in q["seeds"] for a, T in runs for th in q["thetas"]]
    got = [(r["seed"], r["arm"], r["num_tables"] if r["arm"] == "explicit" else None, r["theta_deg"]) for r in e2_rows]
    assert got == expected
    for r in e2_rows:
        assert tuple(r) == sketch.ROW_KEYS["e2"] and 0.0 <= r["accuracy"] <= 1.0 and r["n"] == q["n"]
        assert r["flops_per_row"] > 0 and r["params"] > 0 and r["wall_time_s"] >= 0
        if r["arm"] == "explicit":
            assert r["steps"] is None and r["num_bits"] == sketch.bits_for(q["n"])
            assert 0 <= r["collision_rate"] <= r["hit_rate"] <= 1 and 0 < r["alone_rate"] <= 1
            assert r["alone_uniform"] == pytest.approx((1 - 2.0 ** -r["num_bits"]) ** (q["n"] - 1))
            if r["num_tables"] == 1 and r["theta_deg"] == 0:
                assert r["accuracy"] >= r["alone_rate"]  # a key alone in its one bucket reads its own class
        else:
            assert r["steps"] == q["steps"] and r["hit_rate"] is r["collision_curve"] is r["alone_rate"] is None
    table = sketch.format_table(e2_rows)
    assert table.count("\n| ") == 2 + len(runs) + len(q["tables"]) + 2 + 3 * len(q["tables"])


def test_at_theta_zero_every_query_hits_its_key_and_misses_grow_with_the_angle(e2_rows):
    explicit = [r for r in e2_rows if r["arm"] == "explicit"]
    for r in explicit:
        if r["theta_deg"] == 0:
            assert r["hit_rate"] == r["collision_rate"] == 1.0
    for (seed, T), group in sketch._groups(explicit, lambda r: (r["seed"], r["num_tables"])).items():
        hits = [r["hit_rate"] for r in sorted(group, key=lambda r: r["theta_deg"])]
        assert hits == sorted(hits, reverse=True), (seed, T, hits)  # the same directions at every θ


def test_the_measured_collision_rates_follow_the_simhash_curves(e2_rows):
    """Seed means against (1 − θ/π)^b and the T-table curve: 5 binomial s.d. of the n·seeds queries, plus 0.01."""
    q = sketch.QUICK["e2"]
    m = q["n"] * len(q["seeds"])
    explicit = [r for r in e2_rows if r["arm"] == "explicit"]
    for _, group in sketch._groups(explicit, lambda r: (r["num_tables"], r["theta_deg"])).items():
        for measured, curve in (("collision_rate", "collision_curve"), ("hit_rate", "tables_curve")):
            p = group[0][curve]
            mean = np.mean([r[measured] for r in group])
            assert abs(mean - p) <= 5 * math.sqrt(p * (1 - p) / m) + 0.01, (group[0]["num_tables"], measured, mean, p)
    summary = sketch.e2_summary(e2_rows)
    assert [s["num_tables"] for s in summary] == list(q["tables"])
    assert all(s["max_hit_gap"] <= s["max_accuracy_gap"] + 1e-12 or s["max_hit_gap"] < 0.05 for s in summary)


def test_quick_e2_learned_arms_cost_about_e1s_flops(e2_rows):
    budget = capacity.pkm_arm_flops(32, 100, **capacity.QUICK_PKM_OPTIONS)
    for arm in ("mlp", "mlp+sketch", "mlp+pkm"):
        r = next(r for r in e2_rows if r["arm"] == arm)
        assert abs(r["flops_per_row"] - budget) <= 0.1 * budget, (arm, r["flops_per_row"], budget)
    sk, mlp = (next(r for r in e2_rows if r["arm"] == a) for a in ("mlp+sketch", "mlp"))
    assert sk["params"] > 2 * mlp["params"]  # a memory adds parameters, not FLOPs


# --- FLOPs and widths -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("hidden, layers_", [((7,), "all"), ((6, 5, 4), "all"), ((6, 5, 4), (2,))])
def test_the_counted_flops_of_a_sketch_mlp_are_the_documented_formula(hidden, layers_, gate):
    T, b, Y = 3, 5, 2
    mem = {"num_tables": T, "num_bits": b, "output_dim": Y, "gate": gate}
    network, _ = sketch.build_mlp_sketch(9, 11, hidden=hidden, memory=mem, memory_layers=layers_)
    chosen = range(1, len(hidden) + 1) if layers_ == "all" else layers_
    want, width = 0, 9
    for i, w in enumerate(hidden, start=1):
        want += width * w
        width = w
        if i in chosen:
            want += T * b * w + T * Y + (w if gate else 0)
            width = w + Y
    want += width * 11
    assert sketch.count_flops(network) == want


def test_the_sketch_width_is_the_one_closest_to_the_flop_budget():
    for flops in (500, 29_824, 123_457):
        w = sketch.sketch_width_for_flops(32, 100, flops, num_tables=4, num_bits=14)
        network, _ = sketch.build_mlp_sketch(32, 100, hidden=(w,), memory={"num_tables": 4, "num_bits": 14})
        cost = sketch.count_flops(network)
        for v in (w - 1, w + 1):
            other, _ = sketch.build_mlp_sketch(32, 100, hidden=(v,), memory={"num_tables": 4, "num_bits": 14})
            assert abs(cost - flops) <= abs(sketch.count_flops(other) - flops)


# --- the arms' gradients ----------------------------------------------------------------------------------------


def _kink_distance(network, cache):
    """The smallest |ReLU input| and the smallest hash margin over the network's layers."""
    out = np.inf
    for child, c in zip(network.children.values(), cache):
        if isinstance(child, layers.ReLU):
            out = min(out, float(np.min(np.abs(c.x))))
        elif isinstance(child, SketchMemory):
            out = min(out, float(simhash_buckets(c.x, child.buffers["planes"])[1].min()))
    return out


@pytest.mark.parametrize(
    "hidden, memory",
    [
        ((5,), {"num_tables": 2, "num_bits": 3}),  # E2's arm: one hidden layer, the read as wide
        ((3, 3), {"num_tables": 2, "num_bits": 2, "output_dim": 2}),  # E3's: a memory at every layer
    ],
)
@settings(max_examples=8)
@given(B=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_the_sketch_arms_gradients_match_finite_differences(hidden, memory, B, seed):
    network, _ = sketch.build_mlp_sketch(4, 3, seed=seed % 7, hidden=hidden, memory=memory)
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(v.shape) for k, v in network.params.items()}  # values away from the zero init
    x = rng.standard_normal((B, 4))
    _, cache = network.forward(x, params=params)
    assume(_kink_distance(network, cache) > 1e-3)  # a central difference never crosses a ReLU kink or a bit flip
    assert_gradients_match(layers.as_op(network), x, *params.values(), seed=seed % 5)


def test_a_sketch_arm_step_moves_only_the_value_rows_it_read():
    network, step = sketch.build_mlp_sketch(4, 3, seed=0, hidden=(5,), memory={"num_tables": 2, "num_bits": 4})
    x = np.random.default_rng(0).standard_normal((3, 4))
    params = sketch.fit(network, step, x, np.array([0, 1, 2]), steps=1, batch_size=3, seed=0)
    read = np.unique(network.children["mem1"].rows(np.maximum(x @ params["fc1.weight"] + params["fc1.bias"], 0)))
    moved = np.flatnonzero(np.any(params["mem1.values"] != 0, axis=1))
    assert len(moved) > 0 and set(moved) <= set(read)


# --- E3: the graph task -----------------------------------------------------------------------------------------


@given(N=st.integers(1, 40), hops=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_hop_targets_are_the_successor_applied_h_times(N, hops, seed):
    f = sketch.functional_graph(N, rng=np.random.default_rng(seed))
    assert f.shape == (N,) and f.min() >= 0 and f.max() < N
    targets = sketch.hop_targets(f, hops)
    for v in range(N):
        u = v
        for h in range(hops):
            u = f[u]
            assert targets[h, v] == u


def test_the_hop_dataset_is_embedding_then_hop_one_hot_for_every_node_and_hop():
    rng = np.random.default_rng(0)
    f = sketch.functional_graph(9, rng=rng)
    e = sketch.node_embeddings(9, rng=rng, dtype=np.float64)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-12)
    inputs, targets, hop = sketch.hop_dataset(f, e, 3)
    assert inputs.shape == (27, 35) and targets.shape == hop.shape == (27,)
    for h in range(1, 4):
        for v in range(9):
            i = (h - 1) * 9 + v
            np.testing.assert_array_equal(inputs[i, :32], e[v])
            np.testing.assert_array_equal(inputs[i, 32:], np.eye(3)[h - 1])
            assert hop[i] == h and targets[i] == sketch.hop_targets(f, 3)[h - 1, v]


def test_quick_e3_gives_one_row_per_size_and_arm_with_the_documented_keys(e3_rows):
    q = sketch.QUICK["e3"]
    assert [(r["num_nodes"], r["arm"]) for r in e3_rows] == [(N, a) for N in q["sizes"] for a in q["arms"]]
    for r in e3_rows:
        assert tuple(r) == sketch.ROW_KEYS["e3"] and len(r["accuracy_by_hop"]) == r["hops"] == q["hops"]
        assert r["accuracy"] == pytest.approx(np.mean(r["accuracy_by_hop"]))  # every h has N pairs
        assert r["epochs"] == pytest.approx(q["steps"] * q["batch_size"] / (q["hops"] * r["num_nodes"]))
        if r["arm"] == "mlp+sketch":
            assert len(r["bucket_stability"]) == q["depth"] and all(0 <= f <= 1 for f in r["bucket_stability"])
        else:
            assert r["bucket_stability"] is None
        fr = r["image_fraction_by_hop"]
        assert all(0 < a <= 1 for a in fr) and fr == sorted(fr, reverse=True)  # f^(h+1)(V) = f^h(f(V)) ⊆ f^h(V)
    assert sketch.format_table(e3_rows).count("\n| ") == 2 + len(e3_rows)


def test_quick_e3_arms_cost_about_the_same_flops_and_the_memory_arm_holds_more_parameters(e3_rows):
    for N in sketch.QUICK["e3"]["sizes"]:
        mlp, mem = (next(r for r in e3_rows if r["arm"] == a and r["num_nodes"] == N) for a in ("mlp", "mlp+sketch"))
        assert abs(mlp["flops_per_row"] - mem["flops_per_row"]) <= 0.1 * mem["flops_per_row"]
        assert mem["params"] > 2 * mlp["params"] and mem["num_bits"] == sketch.bits_for(4 * N)


def test_a_rerun_with_the_same_seed_gives_identical_rows_except_times(e2_rows, e3_rows):
    assert _without_times(sketch.run("e2", **sketch.QUICK["e2"])) == _without_times(e2_rows)
    assert _without_times(sketch.run("e3", **sketch.QUICK["e3"])) == _without_times(e3_rows)


def test_another_seed_draws_other_pairs_and_other_results(e3_rows):
    other = sketch.run("e3", **{**sketch.QUICK["e3"], "seeds": (5,)})
    assert [r["seed"] for r in other] == [5] * len(other)
    assert [r["image_fraction_by_hop"] for r in other] != [r["image_fraction_by_hop"] for r in e3_rows]


# --- command line and errors --------------------------------------------------------------------------------------


def test_main_quick_e2_writes_the_rows_as_json_and_the_figure(tmp_path, capsys):
    out, png = tmp_path / "e2.json", tmp_path / "e2.png"
    argv = ["--experiment", "e2", "--quick", "--quiet", "--seeds", "0", "--arms", "explicit", "mlp"]
    argv += ["--tables", "1", "4", "--out", str(out), "--plot", str(png)]
    rows = sketch.main(argv)
    doc = json.loads(out.read_text())
    assert doc["rows"] == json.loads(json.dumps(rows)) and len(rows) == 3 * len(sketch.THETAS)
    assert doc["command"] == "python -m refmann.experiments.sketch " + " ".join(argv)
    assert {"cores", "numpy"} <= set(doc["machine"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert sketch.format_table(rows) in printed and "max |hit − curve|" in printed


def test_main_quick_e3_applies_its_flags(tmp_path):
    rows = sketch.main(["--experiment", "e3", "--quick", "--quiet", "--sizes", "16", "--hops", "2", "--width", "8"])
    assert [(r["num_nodes"], r["hops"]) for r in rows] == [(16, 2), (16, 2)]
    assert "4×8" in rows[1]["config"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--experiment", "e9"],
        ["--experiment", "e2", "--bogus"],
        ["--experiment", "e2", "--steps", "0"],
        ["--experiment", "e2", "--batch-size", "1"],
        ["--experiment", "e2", "--seeds", "-1"],
        ["--experiment", "e2", "--thetas", "95"],
        ["--experiment", "e2", "--thetas", "nan"],
        ["--experiment", "e2", "--bits", "25"],
        ["--experiment", "e2", "--arms", "mlp+nothing"],
        ["--experiment", "e2", "--arms", "mlp", "mlp"],
        ["--experiment", "e3", "--arms", "explicit"],
        ["--experiment", "e2", "--sizes", "100"],
        ["--experiment", "e3", "--plot", "x.png"],
        ["--experiment", "e3", "--n", "100"],
        ["--experiment", "e2", "--dtype", "float16"],
    ],
)
def test_a_bad_flag_exits_2_with_a_one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        sketch.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("python -m refmann.experiments.sketch: error: ")


@pytest.mark.parametrize(
    "experiment, kwargs, error, pattern",
    [
        ("e7", {}, ValueError, r"experiment: expected one of \['e2', 'e3'\]"),
        ("e2", {"arms": ("mlp", "tree")}, ValueError, r"arms: expected distinct names from"),
        ("e2", {"thetas": (100,)}, ValueError, r"thetas: expected"),
        ("e2", {"thetas": (float("nan"),)}, ValueError, r"thetas: expected"),
        ("e2", {"tables": ()}, ValueError, r"tables: expected at least one T"),
        ("e2", {"bits": 30}, ValueError, r"bits: expected at most 24"),
        ("e2", {"batch_size": 1}, ValueError, "batch_size: expected an int >= 2"),
        ("e2", {"dtype": "float16"}, ValueError, r"dtype: expected float32 or float64"),
        ("e2", {"seeds": ()}, ValueError, r"seeds: expected at least one seed"),
        ("e3", {"sizes": ()}, ValueError, r"sizes: expected at least one N"),
        ("e3", {"arms": ("explicit",)}, ValueError, r"arms: expected distinct names from"),
        ("e3", {"values_lr": float("nan")}, ValueError, r"values_lr"),
        ("e3", {"hops": 0}, ValueError, r"hops: expected an int >= 1"),
    ],
)
def test_run_refuses_a_bad_configuration_naming_it(experiment, kwargs, error, pattern):
    config = dict(sketch.QUICK.get(experiment, {}))
    with pytest.raises(error, match=pattern):
        sketch.run(experiment, **{**config, **kwargs})


def test_bad_data_is_refused_naming_the_argument():
    keys = np.ones((3, 4)) / 2
    with pytest.raises(ValueError, match="keys"):
        sketch.explicit_memory(np.full((3, 4), np.nan), np.zeros(3, int), num_tables=1, num_bits=4)
    with pytest.raises(ValueError, match="labels"):
        sketch.explicit_memory(keys, np.array([0, 1, 100]), num_tables=1, num_bits=4)
    with pytest.raises(ValueError, match="theta_deg"):
        sketch.rotate(keys, keys, 200.0)
    with pytest.raises(TypeError, match="rng: expected a np.random.Generator"):
        sketch.functional_graph(5, rng=0)
    with pytest.raises(ValueError, match="successor"):
        sketch.hop_targets(np.array([0, 7, 1]), 2)
    with pytest.raises(ValueError, match="directions: expected shape"):
        sketch.rotate(keys, keys[:2], 5.0)
    with pytest.raises(ValueError, match="rows: expected E2 rows"):
        sketch.plot_e2([], "x.png")
    network, step = sketch.build_mlp_sketch(4, 3, hidden=(5,), memory={"num_tables": 1, "num_bits": 3})
    with pytest.raises(ValueError, match="inputs"):
        sketch.fit(network, step, np.full((3, 4), np.nan), np.zeros(3, int), steps=1, batch_size=3, seed=0)
    with pytest.raises(ValueError, match=r"labels: expected indices in \[0, 3\)"):
        sketch.fit(network, step, np.ones((3, 4)), np.array([0, 1, 3]), steps=1, batch_size=3, seed=0)
