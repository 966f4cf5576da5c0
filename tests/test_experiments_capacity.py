"""E1/E6 (refmann/experiments/capacity.py): quick runs give the documented rows, every registered arm builds and
its network's gradients match finite differences, the flat-key memory selects what product keys select, FLOPs
are counted as documented and the MLP is matched to them, reruns are identical, the CLI writes JSON and refuses
bad flags with exit 2. No timing assertions."""

import json

import numpy as np
import pytest

from refmann import layers
from refmann.experiments import capacity
from refmann.experiments.capacity import FlatKeyMemory
from refmann.gradcheck import TOLERANCES, check_model, check_op
from refmann.layers.product_keys import ProductKeyMemory
from refmann.layers.sketch import simhash_buckets
from refmann.models.feedforward import FeedForwardModel
from refmann.models.hma import MemoryTokensClassifier

#: Tiny options per arm for the gradient check: a new arm must add its own here.
_PKM = {"trunk_dim": 5, "num_keys": 3, "num_heads": 2, "k": 2, "key_dim": 4, "query_norm": "batchnorm"}
TINY = {
    "mlp": [{"hidden": (5, 4)}],
    "mlp+pkm": [
        _PKM,
        {**_PKM, "query_norm": "layernorm"},
        {**_PKM, "k": 3, "query_norm": None},
        {**_PKM, "keys": "flat"},
    ],
    "sketch": [{"num_tables": 2, "num_bits": 3}, {"num_tables": 3, "num_bits": 2, "signs": True, "gate": True}],
    "mlp+hma": [
        {"hidden": (5,), "feature_dim": 2, "label_dim": 2, "num_heads": 2, "queue_size": 4, "tokens_per_class": 2},
        {"hidden": (4,), "feature_dim": 2, "label_dim": 2, "num_heads": 1, "queue_size": 3, "use_tokens": False},
        {"hidden": (4,), "feature_dim": 3, "label_dim": 1, "num_heads": 2, "queue_size": 0, "use_queue": False},
    ],
}
TINY_CASES = [(arm, options) for arm, cases in TINY.items() for options in cases]


def _without_times(rows):
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rows]


@pytest.fixture(scope="module")
def e1_rows():
    return capacity.run("e1", **capacity.QUICK["e1"])


@pytest.fixture(scope="module")
def e6_rows():
    return capacity.run("e6", **capacity.QUICK["e6"])


# --- quick runs -------------------------------------------------------------------------------------------


def test_quick_e1_gives_one_row_per_arm_and_n_with_the_documented_keys(e1_rows):
    q = capacity.QUICK["e1"]
    assert [(r["arm"], r["n"]) for r in e1_rows] == [(a, n) for n in q["sizes"] for a in q["arms"]]
    assert "mlp+hma" in q["arms"]
    for r in e1_rows:
        assert tuple(r) == capacity.ROW_KEYS["e1"]
        assert 0.0 <= r["train_accuracy"] <= 1.0 and r["final_loss"] > 0
        assert r["steps"] == q["steps"] and r["epochs"] == pytest.approx(q["steps"] * r["batch_size"] / r["n"])
        assert r["params"] > 0 and r["flops_per_row"] > 0 and r["wall_time_s"] >= 0
        if r["arm"] in ("mlp", "mlp+hma"):  # no slot memory (HMA's queue and tokens are attended, not selected)
            assert r["usage"] is r["kl_to_uniform"] is r["coverage_99"] is None
        else:
            assert 0 < r["usage"] <= 1 and r["kl_to_uniform"] >= 0 and 0 < r["coverage_99"] <= 1
        if r["arm"] == "mlp+hma":
            assert 0.0 <= r["transductive_accuracy"] <= 1.0 and r["config"].endswith("eval per sample")
        else:
            assert r["transductive_accuracy"] is None
    table = capacity.format_table(e1_rows)
    assert table.count("\n| ") == len(e1_rows) + 2  # header, separator, one line per row


def test_quick_e1_arms_cost_the_same_flops_and_the_memory_arm_holds_more_parameters(e1_rows):
    for n in capacity.QUICK["e1"]["sizes"]:
        mlp, pkm = (next(r for r in e1_rows if r["arm"] == a and r["n"] == n) for a in ("mlp", "mlp+pkm"))
        assert abs(mlp["flops_per_row"] - pkm["flops_per_row"]) <= 0.05 * pkm["flops_per_row"]
        assert pkm["params"] > 2 * mlp["params"]


def test_quick_e6_runs_every_ablation_group_with_the_documented_keys(e6_rows):
    q = capacity.QUICK["e6"]
    groups = {}
    for r in e6_rows:
        assert tuple(r) == capacity.ROW_KEYS["e6"]
        assert 0.0 <= r["train_accuracy"] <= 1.0 and r["n"] == q["n"]
        assert 0 < r["usage"] <= 1 and r["kl_to_uniform"] >= 0 and 0 < r["coverage_99"] <= 1
        groups.setdefault(r["ablation"], []).append(r)
    assert list(groups) == list(capacity.ABLATIONS)
    assert [r["query_norm"] for r in groups["query_norm"]] == list(q["query_norms"])
    assert [(r["num_heads"], r["k"]) for r in groups["heads_k"]] == [(h, k) for h in q["heads"] for k in q["ks"]]
    assert [r["num_slots"] for r in groups["num_keys"]] == [m * m for m in q["num_keys"]]
    assert [(r["keys"], r["num_slots"]) for r in groups["keys"]] == [
        ("product", q["flat_num_keys"] ** 2), ("flat", q["flat_num_keys"] ** 2)
    ]  # fmt: skip
    assert capacity.format_table(e6_rows).count("\n| ") == len(e6_rows) + 2


def test_e6_trains_a_configuration_shared_by_two_groups_once(e6_rows):
    """The base configuration is in the query-norm, heads × k and N groups: the same numbers, one wall time."""
    base = capacity.QUICK["e6"]["base"]
    same = [
        r for r in e6_rows
        if (r["query_norm"], r["num_heads"], r["k"], r["num_slots"], r["keys"])
        == (base["query_norm"], base["num_heads"], base["k"], base["num_keys"] ** 2, "product")
    ]  # fmt: skip
    assert {r["ablation"] for r in same} == {"query_norm", "heads_k", "num_keys"}
    assert len({json.dumps({k: v for k, v in r.items() if k != "ablation"}) for r in same}) == 1


def test_a_rerun_with_the_same_seed_gives_identical_rows_except_times(e1_rows, e6_rows):
    assert _without_times(capacity.run("e1", **capacity.QUICK["e1"])) == _without_times(e1_rows)
    assert _without_times(capacity.run("e6", **capacity.QUICK["e6"])) == _without_times(e6_rows)


def test_another_seed_draws_other_pairs_and_other_results(e1_rows):
    other = capacity.run("e1", **{**capacity.QUICK["e1"], "seeds": (1,)})
    assert [r["seed"] for r in other] == [1] * len(other)
    assert [r["final_loss"] for r in other] != [r["final_loss"] for r in e1_rows]


def test_on_row_sees_the_rows_after_every_run():
    seen = []
    capacity.run_e1(**{**capacity.QUICK["e1"], "sizes": (64,)}, on_row=lambda rows: seen.append(len(rows)))
    assert seen == list(range(1, len(capacity.QUICK["e1"]["arms"]) + 1))


# --- the task, FLOPs and widths ---------------------------------------------------------------------------


def test_keys_are_unit_vectors_and_classes_are_in_range_and_reproducible():
    keys, labels = capacity.key_value_pairs(500, rng=np.random.default_rng(3))
    np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, rtol=1e-12)
    assert keys.shape == (500, 32) and labels.min() >= 0 and labels.max() < 100 and len(set(labels)) > 90
    again, _ = capacity.key_value_pairs(500, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(keys, again)
    assert abs(keys.mean()) < 0.01  # no preferred direction


@pytest.mark.parametrize("keys", ["product", "flat"])
@pytest.mark.parametrize("options", [capacity.PKM_OPTIONS, capacity.QUICK_PKM_OPTIONS])
def test_the_counted_flops_of_the_memory_arm_are_the_documented_formula(options, keys):
    network, _ = capacity.build_mlp_pkm(32, 100, **{**options, "keys": keys})
    H, n, k, dk, T = options["num_heads"], options["num_keys"], options["k"], options["key_dim"], options["trunk_dim"]
    search = H * (n if keys == "product" else n * n) * dk
    assert capacity.count_flops(network) == 32 * T + T * H * dk + search + H * k * 100
    assert capacity.count_flops(network) == capacity.pkm_arm_flops(32, 100, **{**options, "keys": keys})


def test_the_default_mlp_is_sized_to_the_default_memory_arm_flops():
    mlp, _ = capacity.build_mlp(32, 100)
    pkm, _ = capacity.build_mlp_pkm(32, 100)
    assert abs(capacity.count_flops(mlp) - capacity.count_flops(pkm)) < 0.01 * capacity.count_flops(pkm)
    assert mlp.hidden_dims[0] == mlp.hidden_dims[1]


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("flops", [500, 29_824, 123_457])
def test_the_mlp_width_is_the_one_closest_to_the_flop_budget(depth, flops):
    w = capacity.mlp_width_for_flops(32, 100, flops, depth=depth)

    def cost(width):
        return 32 * width + (depth - 1) * width * width + width * 100

    assert all(abs(cost(w) - flops) <= abs(cost(v) - flops) for v in (w - 1, w + 1) if v >= 1)


def test_the_hma_head_flops_are_the_documented_formula_and_the_arm_is_sized_to_the_budget():
    network, _ = capacity.build_mlp_hma(32, 100, batch_size=256)
    head = network.head
    D, S, G, B = 16, 256, 100, 256
    assert (head.dim, head.queue_size, head.num_classes * head.tokens_per_class) == (D, S, G)
    formula = 11 * D * D + 2 * S * D * D / B + 2 * (1 + S) * D + 11 * D * D + 2 * G * D * D / B + 2 * (B + G) * D
    assert capacity.hma_head_flops(head, batch_size=B) == int(formula + D * 100)
    per_sample = formula - 2 * (B - 1) * D
    assert capacity.hma_head_flops(head, batch_size=B, mode="per_sample") == int(per_sample + D * 100)
    w = network.encoder.hidden_dims[0]
    assert capacity.count_flops(network, batch_size=B) == 32 * w + w * 12 + int(formula + D * 100)
    budget = capacity.pkm_arm_flops(32, 100, **capacity.PKM_OPTIONS)
    assert abs(capacity.count_flops(network, batch_size=B) - budget) <= (32 + 12) / 2
    # without a queue or tokens their terms vanish
    bare, _ = capacity.build_mlp_hma(32, 100, hidden=(8,), queue_size=0, use_queue=False, use_tokens=False)
    assert capacity.hma_head_flops(bare.head, batch_size=B) == int(22 * D * D + 2 * D + 2 * B * D + D * 100)


def test_count_flops_of_an_hma_head_needs_the_batch_size():
    network, _ = capacity.build_mlp_hma(4, 3, **TINY["mlp+hma"][0])
    with pytest.raises(ValueError, match="batch_size: an HMA head's FLOPs per row depend on the batch"):
        capacity.count_flops(network)
    with pytest.raises(TypeError, match="head: expected a MemoryTokens layer"):
        capacity.hma_head_flops(network, batch_size=4)
    with pytest.raises(ValueError, match="mode: expected 'transductive' or 'per_sample'"):
        capacity.hma_head_flops(network.head, batch_size=4, mode="batch")


def test_train_and_evaluate_writes_the_hma_queue_after_every_step_and_scores_per_sample():
    network, step = capacity.build_mlp_hma(4, 3, seed=2, **TINY["mlp+hma"][0])  # queue of 4 rows
    calls = []
    original = network.update_memory

    def spy(x, y, *, params):
        calls.append((x.copy(), y.copy(), {k: v.copy() for k, v in params.items()}))
        assert set(params) == set(network.params) and all(np.all(np.isfinite(v)) for v in params.values())
        original(x, y, params=params)

    network.update_memory = spy
    rng = np.random.default_rng(0)
    keys, labels = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    before = {k: np.array(v) for k, v in network.params.items()}
    result = capacity.train_and_evaluate(network, step, keys, labels, steps=3, batch_size=4, seed=1)
    assert len(calls) == 3 and all(x.shape == (4, 4) and y.shape == (4,) for x, y, _ in calls)
    assert any(not np.array_equal(calls[0][2][k], before[k]) for k in before)  # called with the stepped params
    rows, stored = network.head.queue_contents()
    np.testing.assert_array_equal(stored, calls[-1][1])  # the ring of 4 holds the last batch's labels
    assert any(not np.array_equal(network.params[k], before[k]) for k in before)  # trained arrays were copied in
    per_sample = network.forward(keys, mode="per_sample")[0]
    assert result["train_accuracy"] == pytest.approx(np.mean(np.argmax(per_sample, axis=1) == labels))
    transductive = np.concatenate([network.forward(keys[i : i + 4])[0] for i in range(0, 10, 4)])
    assert result["transductive_accuracy"] == pytest.approx(np.mean(np.argmax(transductive, axis=1) == labels))
    assert result["flops_per_row"] == capacity.count_flops(network, batch_size=4)


def test_count_flops_refuses_a_layer_it_cannot_count():
    class Opaque(layers.LayerBase):
        def __init__(self):
            self.params, self.children = {"w": np.ones(3)}, {}

    with pytest.raises(TypeError, match="count_flops: no rule for a Opaque"):
        capacity.count_flops(layers.Sequential(layers=[("a", layers.ReLU()), ("b", Opaque())]))
    assert capacity.count_flops(layers.ReLU()) == 0


# --- the arms: registry and gradient checks ----------------------------------------------------------------


def test_every_registered_arm_has_tiny_options_for_the_gradient_check():
    assert set(capacity.ARMS) == set(TINY), "add tiny options for the new arm to TINY"


def _kink_distance(layer, cache):
    """The smallest distance to a kink: a ReLU input at 0, or a tie between a memory's k-th and (k+1)-th score."""
    if isinstance(layer, layers.ReLU):
        return float(np.min(np.abs(cache.x)))
    if isinstance(layer, ProductKeyMemory):
        q, keys, half = cache.search.queries, cache.search.keys, cache.search.queries.shape[-1] // 2
        s1 = np.einsum("bhd,hnd->bhn", q[..., :half], keys[:, 0])
        s2 = np.einsum("bhd,hnd->bhn", q[..., half:], keys[:, 1])
        scores = (s1[..., :, None] + s2[..., None, :]).reshape(*s1.shape[:2], -1)  # (B, H, n²)
    elif isinstance(layer, FlatKeyMemory):
        scores = np.einsum("bhd,hnd->bhn", cache.queries, cache.keys)  # (B, H, N)
    elif isinstance(layer, layers.SketchMemory):  # the distance to the nearest hash hyperplane
        return float(simhash_buckets(cache.x, layer.buffers["planes"])[1].min())
    elif isinstance(layer, layers.Sequential):
        return min(_kink_distance(c, cc) for c, cc in zip(layer.children.values(), cache))
    elif isinstance(layer, MemoryTokensClassifier):  # the ReLU encoder's kinks (the head is smooth: LN, softmax, GELU)
        return _kink_distance(layer.encoder, cache.encoder)
    else:
        return np.inf
    s = -np.sort(-scores, axis=-1)
    return float(np.min(s[..., layer.k - 1] - s[..., layer.k])) if s.shape[-1] > layer.k else np.inf


@pytest.mark.parametrize("arm, options", TINY_CASES, ids=[f"{a}-{i}" for i, (a, _) in enumerate(TINY_CASES)])
def test_every_arm_builds_and_its_network_gradients_match_finite_differences(arm, options):
    network, step = capacity.ARMS[arm](4, 3, seed=1, dtype=np.float64, **options)
    assert isinstance(network, layers.Layer) and callable(step)
    if hasattr(network, "update_memory"):  # HMA's host: a queue with written rows, then held fixed by the check
        rng = np.random.default_rng(9)
        network.update_memory(rng.standard_normal((2, 4)), np.array([0, 2]))
    model = FeedForwardModel(network, loss="softmax_ce")
    for data_seed in range(100):  # inputs at least 1e-3 from every kink (the stencil moves params by 2e-5)
        rng = np.random.default_rng(data_seed)
        x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
        _, cache = network.forward(x, params=model.params)
        if _kink_distance(network, cache) > 1e-3:
            break
    else:
        pytest.fail("no input away from the kinks")
    # HMA's host has ~40 parameter arrays (two attention blocks): a sample of entries in each keeps this fast
    # (every entry of every array: tests/test_models_hma.py and tests/test_layers_hma.py)
    entries = None if arm != "mlp+hma" else 12 if options is TINY[arm][0] else 4
    report = check_model(model, x, y, max_entries=entries)
    assert not report.crossed_kink and report.ok(TOLERANCES["model"]), str(report)
    assert {row.name for row in report.inputs} == set(network.params)


def test_a_memory_arm_step_updates_only_the_value_rows_it_read():
    network, step = capacity.build_mlp_pkm(4, 3, seed=0, **TINY["mlp+pkm"][0])
    model = FeedForwardModel(network, loss="softmax_ce")
    x, y = np.random.default_rng(0).standard_normal((2, 4)), np.array([0, 2])
    _, cache = network.forward(x, params=model.params)
    read = np.unique(cache[2].search.slots)
    _, grads = model.loss_and_grads(x, y, row_grads=True)
    new, _ = step(model.params, grads, None)
    changed = np.flatnonzero(np.any(new["memory.values"] != model.params["memory.values"], axis=1))
    assert set(changed) <= set(read) and len(changed) > 0
    assert not np.array_equal(new["memory.keys"], model.params["memory.keys"])


# --- flat keys --------------------------------------------------------------------------------------------


def test_flat_keys_made_of_the_concatenated_sub_keys_select_and_read_what_product_keys_do():
    n, H, dk = 4, 2, 6
    pkm = ProductKeyMemory(input_dim=5, output_dim=3, num_keys=n, num_heads=H, k=3, key_dim=dk, seed=2)
    flat = FlatKeyMemory(input_dim=5, output_dim=3, num_slots=n * n, num_heads=H, k=3, key_dim=dk, seed=9)
    sub = pkm.params["keys"]  # (H, 2, n, dk/2)
    concat = np.concatenate(
        [np.repeat(sub[:, 0], n, axis=1), np.tile(sub[:, 1], (1, n, 1))], axis=-1
    )  # (H, n², dk): slot i·n + j is [C¹_i; C²_j]
    params = {**flat.params, "keys": concat, "values": pkm.params["values"]}
    params.update({k: v for k, v in pkm.params.items() if k.startswith("query")})
    x = np.random.default_rng(4).standard_normal((7, 5))
    y_product, c_product = pkm.forward(x)
    y_flat, c_flat = flat.forward(x, params=params)
    np.testing.assert_array_equal(c_flat.topk.indices, c_product.search.slots)
    np.testing.assert_allclose(y_flat, y_product, rtol=1e-12, atol=1e-14)


def test_flat_memory_gradients_match_for_the_input_and_every_parameter():
    layer = FlatKeyMemory(input_dim=3, output_dim=2, num_slots=6, num_heads=2, k=2, key_dim=4, seed=3)
    x = np.random.default_rng(0).standard_normal((4, 3))
    _, cache = layer.forward(x)
    assert _kink_distance(layer, cache) > 1e-3
    report = check_op(*layers.as_op(layer), x, *layer.params.values(), seed=1)
    assert report.ok(TOLERANCES["op"]), str(report)


def test_flat_memory_counts_its_flops_and_refuses_bad_arguments():
    layer = FlatKeyMemory(input_dim=3, output_dim=2, num_slots=6, num_heads=2, k=2, key_dim=4)
    assert capacity.count_flops(layer) == 3 * 8 + 2 * 6 * 4 + 2 * 2 * 2
    with pytest.raises(ValueError, match="k: expected 1 <= k <= num_slots = 6"):
        FlatKeyMemory(input_dim=3, output_dim=2, num_slots=6, num_heads=2, k=7, key_dim=4)
    with pytest.raises(ValueError, match="key_dim: expected an even"):
        FlatKeyMemory(input_dim=3, output_dim=2, num_slots=6, num_heads=2, k=2, key_dim=5)
    with pytest.raises(ValueError, match="query_norm: expected None or one of"):
        FlatKeyMemory(input_dim=3, output_dim=2, num_slots=6, num_heads=2, k=2, key_dim=4, query_norm="rms")


def test_memory_selections_finds_the_memory_layer_and_nothing_in_an_mlp():
    network, _ = capacity.build_mlp_pkm(4, 3, **TINY["mlp+pkm"][0])
    _, cache = network.forward(np.random.default_rng(0).standard_normal((5, 4)))
    [(num_slots, slots, weights)] = capacity.memory_selections(network, cache)
    assert num_slots == 9 and slots.shape == weights.shape == (5, 2, 2)
    np.testing.assert_allclose(weights.sum(-1), 1.0)
    mlp, _ = capacity.build_mlp(4, 3, hidden=(3,))
    assert capacity.memory_selections(mlp, mlp.forward(np.ones((2, 4)))[1]) == []


# --- command line and errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("experiment", ["e1", "e6"])
def test_main_quick_writes_the_rows_as_json(experiment, tmp_path, capsys):
    out = tmp_path / f"{experiment}.json"
    argv = ["--experiment", experiment, "--quick", "--quiet", "--out", str(out)]
    argv += ["--sizes", "64"] if experiment == "e1" else ["--ablations", "keys"]
    rows = capacity.main(argv)
    doc = json.loads(out.read_text())
    assert doc["rows"] == json.loads(json.dumps(rows)) and len(rows) == (4 if experiment == "e1" else 2)
    assert doc["command"] == "python -m refmann.experiments.capacity " + " ".join(argv)
    assert {"cores", "numpy"} <= set(doc["machine"])
    assert capacity.format_table(rows) in capsys.readouterr().out


def test_main_applies_the_memory_arm_flags_and_sizes_the_mlp_to_them():
    rows = capacity.main(
        [
            "--experiment",
            "e1",
            "--quick",
            "--quiet",
            "--sizes",
            "64",
            "--heads",
            "1",
            "--k",
            "2",
            "--query-norm",
            "none",
        ]
    )
    mlp, pkm, sketch, hma = rows
    assert sketch["arm"] == "sketch" and sketch["flops_per_row"] < pkm["flops_per_row"]
    assert hma["arm"] == "mlp+hma"
    assert "H=1 k=2" in pkm["config"] and pkm["config"].endswith("none")
    assert abs(mlp["flops_per_row"] - pkm["flops_per_row"]) <= 0.1 * pkm["flops_per_row"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--experiment", "e9"],
        ["--experiment", "e1", "--bogus"],
        ["--experiment", "e1", "--steps", "0"],
        ["--experiment", "e1", "--batch-size", "1"],
        ["--experiment", "e1", "--seeds", "-1"],
        ["--experiment", "e1", "--arms", "mlp+nothing"],
        ["--experiment", "e1", "--quick", "--k", "20"],
        ["--experiment", "e1", "--n", "100"],
        ["--experiment", "e6", "--sizes", "100"],
        ["--experiment", "e6", "--ablations", "depth"],
        ["--experiment", "e1", "--dtype", "float16"],
    ],
)
def test_a_bad_flag_exits_2_with_a_one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        capacity.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("python -m refmann.experiments.capacity: error: ")


@pytest.mark.parametrize(
    "experiment, kwargs, error, pattern",
    [
        ("e7", {}, ValueError, r"experiment: expected one of \['e1', 'e6'\]"),
        ("e1", {"arms": ("mlp", "tree")}, ValueError, r"arms: expected names from"),
        ("e1", {"batch_size": 1}, ValueError, "batch_size: expected an int >= 2"),
        ("e1", {"dtype": "float16"}, ValueError, r"dtype: expected float32 or float64"),
        ("e1", {"seeds": ()}, ValueError, r"seeds: expected at least one seed"),
        ("e6", {"ablations": ("depth",)}, ValueError, r"ablations: expected names from"),
        ("e6", {"query_norms": ("rmsnorm",)}, ValueError, r"query_norms: expected None or one of"),
    ],
)
def test_run_refuses_a_bad_configuration_naming_it(experiment, kwargs, error, pattern):
    config = dict(capacity.QUICK.get(experiment, {}))
    with pytest.raises(error, match=pattern):
        capacity.run(experiment, **{**config, **kwargs})


def test_registering_an_arm_twice_is_refused():
    with pytest.raises(ValueError, match="the arm 'mlp' is already registered"):
        capacity.register_arm("mlp")(capacity.build_mlp)
