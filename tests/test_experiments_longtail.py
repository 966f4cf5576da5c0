"""E4 (refmann/experiments/longtail.py): the long-tail profile and its draw, the buckets and their scores, the
training loop's memory hook and the evaluation modes, every arm's gradients against finite differences, the
quick run's rows, the CLI (JSON, bad flags exit 2). No hard-coded results, no timing assertions."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann import _checks, layers
from refmann.experiments import longtail
from refmann.gradcheck import TOLERANCES, check_model
from refmann.layers.sketch import simhash_buckets
from refmann.models.feedforward import FeedForwardModel
from refmann.models.hma import MemoryTokensClassifier
from refmann.train.optim import make_optimizer

#: Tiny options per arm for the gradient checks: a new arm must add its own here.
TINY = {
    "mlp": {"hidden": (5, 4)},
    "mlp+sketch": {"hidden": (5, 4), "num_tables": 2, "num_bits": 3},
    "mlp+sketch-all": {"hidden": (5, 4), "num_tables": 2, "num_bits": 2, "read_dim": 3},
    "mlp+hma": {
        "hidden": (4,),
        "feature_dim": 2,
        "label_dim": 2,
        "num_heads": 2,
        "queue_size": 3,
        "tokens_per_class": 2,
    },
}


def _without_times(rows):
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


@pytest.fixture(scope="module")
def quick_rows():
    return longtail.run(**longtail.QUICK)


# --- the long-tail profile --------------------------------------------------------------------------------


@given(
    C=st.integers(2, 120),
    n_max=st.integers(1, 500),
    rho=st.floats(1.0, 200.0),
    profile=st.sampled_from(["exponential", "zipf"]),
)
def test_the_profile_runs_from_n_max_down_to_n_max_over_the_ratio(C, n_max, rho, profile):
    counts = longtail.long_tail_counts(C, max_count=n_max, imbalance=rho, profile=profile)
    assert counts.shape == (C,) and counts.dtype == np.int64
    assert counts[0] == n_max and np.all(np.diff(counts) <= 0) and counts.min() >= 1
    assert counts[-1] == max(1, round(n_max / rho)) or abs(counts[-1] - n_max / rho) <= 0.5 + 1e-9
    r = np.arange(C)
    ideal = (
        n_max * rho ** (-r / (C - 1)) if profile == "exponential" else n_max * (r + 1.0) ** (-np.log(rho) / np.log(C))
    )
    assert np.all(np.abs(counts - np.maximum(ideal, 1)) <= 0.5 + 1e-9)  # each the rounded profile


def test_the_digits_profile_has_the_ratio_and_the_documented_buckets():
    counts = longtail.long_tail_counts(10, max_count=120, imbalance=50)
    assert counts[0] / counts[-1] == pytest.approx(50, rel=0.25)  # 120 / 2 after rounding
    few, many = longtail.DEFAULTS["thresholds"]
    kinds = longtail.buckets(counts, few_below=few, many_above=many)
    assert [kinds.count(b) for b in longtail.BUCKETS] == [3, 3, 4]  # as the module docstring states
    assert int(counts.sum()) == 337


def test_the_profile_refuses_bad_arguments():
    with pytest.raises(ValueError, match="imbalance: expected a finite number >= 1"):
        longtail.long_tail_counts(10, max_count=5, imbalance=0.5)
    with pytest.raises(ValueError, match="num_classes: expected an int >= 2"):
        longtail.long_tail_counts(1, max_count=5, imbalance=2)
    with pytest.raises(ValueError, match="profile: expected one of"):
        longtail.long_tail_counts(3, max_count=5, imbalance=2, profile="linear")
    with pytest.raises(ValueError, match="imbalance: expected a finite number"):
        longtail.long_tail_counts(3, max_count=5, imbalance=float("nan"))


# --- the data ---------------------------------------------------------------------------------------------


def test_the_digits_split_is_fixed_balanced_and_disjoint():
    px, py, tx, ty = longtail.digits_split(40)
    assert np.all(np.bincount(ty, minlength=10) == 40) and len(py) + len(ty) == 1797
    assert px.shape[1] == tx.shape[1] == 64 and 0.0 <= px.min() and px.max() <= 1.0
    again = longtail.digits_split(40)
    for a, b in zip((px, py, tx, ty), again):
        np.testing.assert_array_equal(a, b)
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)  # every image once: the pool and the test set partition the data
    whole = np.concatenate([px, tx]) * 16
    key = lambda a: np.lexsort(a.T[::-1])  # noqa: E731
    np.testing.assert_array_equal(whole[key(whole)], x[key(x)])
    np.testing.assert_array_equal(np.bincount(np.concatenate([py, ty])), np.bincount(y))


def test_the_mixture_split_is_balanced_and_standardised():
    px, py, tx, ty = longtail.mixture_split(6, 2, num_classes=12, dim=8, informative=4)
    assert np.all(np.bincount(py) == 6) and np.all(np.bincount(ty) == 2) and px.shape == (72, 8)
    np.testing.assert_allclose(px.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(px.std(axis=0), 1, atol=1e-4)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), rho=st.floats(1.0, 60.0))
def test_a_long_tailed_draw_has_the_profile_under_a_random_ranking(seed, rho):
    px, py, _, _ = longtail.digits_split(40)
    counts = longtail.long_tail_counts(10, max_count=120, imbalance=rho)
    idx, class_counts = longtail.long_tail_indices(py, counts, rng=np.random.default_rng(seed))
    assert len(np.unique(idx)) == len(idx) == counts.sum()
    np.testing.assert_array_equal(np.bincount(py[idx], minlength=10), class_counts)
    np.testing.assert_array_equal(np.sort(class_counts)[::-1], counts)  # the profile, permuted over classes


def test_the_ranking_changes_with_the_seed_and_a_small_pool_is_refused():
    _, py, _, _ = longtail.digits_split(40)
    counts = longtail.long_tail_counts(10, max_count=120, imbalance=50)
    rankings = {tuple(longtail.long_tail_indices(py, counts, rng=np.random.default_rng(s))[1]) for s in range(5)}
    assert len(rankings) > 1
    with pytest.raises(ValueError, match=r"counts: class \d has \d+ examples in the pool, 500 were asked"):
        longtail.long_tail_indices(py, np.full(10, 500), rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng: expected a np.random.Generator"):
        longtail.long_tail_indices(py, counts, rng=0)


# --- buckets and scores -----------------------------------------------------------------------------------


@given(counts=st.lists(st.integers(1, 300), min_size=1, max_size=30), few=st.integers(1, 50), gap=st.integers(0, 100))
def test_a_bucket_is_decided_by_the_two_thresholds(counts, few, gap):
    many = few + gap
    kinds = longtail.buckets(counts, few_below=few, many_above=many)
    for n, kind in zip(counts, kinds):
        assert kind == ("many" if n > many else "few" if n < few else "medium")


def test_bucket_accuracy_averages_per_class_accuracies():
    labels = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 0, 1, 0, 0])  # per class: 1/2, 3/4, 0
    out = longtail.bucket_accuracy(preds, labels, ["many", "few", "few"])
    assert out["per_class"] == [0.5, 0.75, 0.0]
    assert out["many"] == 0.5 and out["few"] == pytest.approx(0.375) and out["medium"] is None
    assert out["macro"] == pytest.approx(1.25 / 3)
    with pytest.raises(ValueError, match="labels: class 3 has no test example"):
        longtail.bucket_accuracy(preds, labels, ["many", "few", "few", "few"])
    with pytest.raises(ValueError, match="predictions: expected the labels' shape"):
        longtail.bucket_accuracy(preds[:3], labels, ["many", "few", "few"])
    with pytest.raises(ValueError, match="few_below: expected at most many_above = 3"):
        longtail.buckets([1, 2], few_below=5, many_above=3)


# --- training and evaluation --------------------------------------------------------------------------------


def _hma(seed=0, **kw):
    return longtail.build_mlp_hma(5, 3, seed=seed, dtype=np.float64, **{**TINY["mlp+hma"], **kw})


def test_fit_calls_update_memory_after_every_step_with_the_trained_params():
    network, step = _hma()
    seen = []
    original = network.update_memory

    def spy(x, y, *, params):
        seen.append((x.copy(), y.copy(), {k: v.copy() for k, v in params.items()}))
        original(x, y, params=params)

    network.update_memory = spy
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((7, 5)), rng.integers(0, 3, 7)
    params = longtail.fit(network, step, x, y, steps=4, batch_size=3, seed=2)
    assert len(seen) == 4 and all(b.shape == (3, 5) for b, _, _ in seen)
    for key in params:  # the last call had the final trained arrays, and the host holds them now
        np.testing.assert_array_equal(seen[-1][2][key], params[key])
        assert network.params[key] is params[key]
    assert any(not np.array_equal(seen[0][2][k], seen[-1][2][k]) for k in params)
    _, stored = network.head.queue_contents()
    np.testing.assert_array_equal(stored, seen[-1][1])  # a ring of 3 holds the last batch of 3


def test_fit_per_sample_is_the_host_loss_in_that_mode():
    network, step = _hma(seed=3, momentum=0.0)
    twin, _ = _hma(seed=3, momentum=0.0)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    params = longtail.fit(network, step, x, y, steps=2, batch_size=6, seed=0, mode="per_sample")
    adam, state = make_optimizer("adam", lr=1e-3), None
    for _ in range(2):  # batch = all 6 rows each step (the order does not matter per sample)
        order = np.random.default_rng(0).permutation(6)
        _, grads = twin.loss_and_grads(x[order], y[order], mode="per_sample")
        twin.params, state = adam(twin.params, grads, state)
        twin.update_memory(x[order], y[order])
    for key in params:
        np.testing.assert_allclose(params[key], twin.params[key], rtol=1e-10, atol=1e-12, err_msg=key)
    with pytest.raises(ValueError, match="mode: only HMA's host has training modes"):
        longtail.fit(*longtail.build_mlp(5, 3, hidden=(2,)), x, y, steps=1, batch_size=2, seed=0, mode="per_sample")


def test_predict_per_sample_ignores_the_batch_and_transductive_restores_the_order():
    network, step = _hma(seed=5)
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((9, 5)), rng.integers(0, 3, 9)
    params = longtail.fit(network, step, x, y, steps=3, batch_size=4, seed=1)
    network.params.update({k: v + 0.5 * rng.standard_normal(v.shape) for k, v in params.items()})
    params = network.params
    whole = np.argmax(network.forward(x, mode="per_sample")[0], axis=1)
    np.testing.assert_array_equal(longtail.predict(network, params, x), whole)
    order = np.random.default_rng(7).permutation(9)
    got = longtail.predict(network, params, x, mode="transductive", batch_size=4, rng=np.random.default_rng(7))
    for i in range(0, 9, 4):  # each chunk of the permuted order, evaluated as one set, put back in place
        idx = order[i : i + 4]
        np.testing.assert_array_equal(got[idx], np.argmax(network.forward(x[idx])[0], axis=1))
    with pytest.raises(ValueError, match="mode: only HMA's host has evaluation modes"):
        longtail.predict(*longtail.build_mlp(5, 3, hidden=(2,)), x, mode="per_sample")


def _kink_distance(network, cache):
    """The smallest distance of an input to a ReLU kink or a hash hyperplane (a bit flip)."""
    if isinstance(network, MemoryTokensClassifier):
        return _kink_distance(network.encoder, cache.encoder)
    out = np.inf
    for child, c in zip(network.children.values(), cache):
        if isinstance(child, layers.ReLU):
            out = min(out, float(np.min(np.abs(c.x))))
        elif isinstance(child, layers.SketchMemory):
            out = min(out, float(simhash_buckets(c.x, child.buffers["planes"])[1].min()))
    return out


def test_every_arm_has_tiny_options():
    assert set(TINY) == set(longtail.ARMS), "add tiny options for the new arm to TINY"


@pytest.mark.parametrize("arm", sorted(TINY))
def test_every_arm_builds_and_its_gradients_match_finite_differences(arm):
    network, step = longtail.ARMS[arm](5, 3, seed=1, dtype=np.float64, **TINY[arm])
    assert isinstance(network, layers.Layer) and callable(step)
    if hasattr(network, "update_memory"):  # a queue with written rows, held fixed by the check
        network.update_memory(np.random.default_rng(8).standard_normal((2, 5)), np.array([0, 2]))
    model = FeedForwardModel(network, loss="softmax_ce")
    for data_seed in range(100):
        rng = np.random.default_rng(data_seed)
        x, y = rng.standard_normal((5, 5)), rng.integers(0, 3, 5)
        if _kink_distance(network, network.forward(x, params=model.params)[1]) > 1e-3:
            break
    else:
        pytest.fail("no input away from the kinks")
    entries = 6 if arm == "mlp+hma" else None  # ~40 arrays: a sample of each (every entry: tests/test_models_hma.py)
    with _checks.unchecked():
        report = check_model(model, x, y, max_entries=entries)
    assert not report.crossed_kink and report.ok(TOLERANCES["model"]), str(report)
    assert {row.name for row in report.inputs} == set(network.params)


# --- the quick run ----------------------------------------------------------------------------------------


def test_the_quick_run_has_a_row_per_arm_and_seed_and_hma_twice(quick_rows):
    q = longtail.QUICK
    expected = []
    for seed in q["seeds"]:
        for arm in q["arms"]:
            expected += [(arm, seed)] * (2 if arm == "mlp+hma" else 1)
    assert [(r["arm"], r["seed"]) for r in quick_rows] == expected
    counts = longtail.long_tail_counts(10, max_count=q["max_per_class"], imbalance=q["imbalance"])
    few, many = q["thresholds"]
    for r in quick_rows:
        assert tuple(r) == longtail.ROW_KEYS
        assert sorted(r["class_counts"], reverse=True) == counts.tolist() and r["train_size"] == counts.sum()
        assert r["bucket_of_class"] == longtail.buckets(r["class_counts"], few_below=few, many_above=many)
        assert r["macro"] == pytest.approx(np.mean(r["per_class"])) and len(r["per_class"]) == 10
        for name in longtail.BUCKETS:
            mine = [a for a, b in zip(r["per_class"], r["bucket_of_class"]) if b == name]
            assert r[name] == (pytest.approx(np.mean(mine)) if mine else None)
        assert r["eval"] in ("—", "per-sample", f"transductive@{r['batch_size']}")
    assert [r["eval"] for r in quick_rows if r["arm"] == "mlp+hma"] == ["per-sample", f"transductive@{q['batch_size']}"]


def test_a_rerun_gives_identical_rows_and_another_seed_another_draw(quick_rows):
    assert _without_times(longtail.run(**longtail.QUICK)) == _without_times(quick_rows)
    other = longtail.run(**{**longtail.QUICK, "seeds": (1,), "arms": ("mlp",)})
    assert (
        other[0]["class_counts"] != quick_rows[0]["class_counts"] or other[0]["per_class"] != quick_rows[0]["per_class"]
    )


def test_summarise_and_the_table_give_the_seed_means_and_the_paired_differences():
    rows = longtail.run(**{**longtail.QUICK, "seeds": (0, 1), "arms": ("mlp", "mlp+sketch")})
    mlp, sketch = longtail.summarise(rows)
    mine = [r for r in rows if r["arm"] == "mlp"]
    assert mlp["seeds"] == [0, 1] and mlp["macro_mean"] == pytest.approx(np.mean([r["macro"] for r in mine]))
    assert mlp["macro_sd"] == pytest.approx(np.std([r["macro"] for r in mine], ddof=1))
    assert mlp["macro_delta_mean"] == 0 and mlp["macro_delta_sd"] == 0
    by_seed = {r["seed"]: r["macro"] for r in mine}
    deltas = [r["macro"] - by_seed[r["seed"]] for r in rows if r["arm"] == "mlp+sketch"]
    assert sketch["macro_delta_mean"] == pytest.approx(np.mean(deltas))
    assert sketch["macro_delta_sd"] == pytest.approx(np.std(deltas, ddof=1))
    assert longtail.summarise(rows, reference="mlp+hma")[0]["macro_delta_mean"] is None  # no reference rows
    table = longtail.format_table(rows)
    assert table.count("\n| ") == 4 and longtail.mean_sd([r["macro"] for r in mine]) in table
    assert longtail.mean_sd(deltas, "+.3f") in table


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"dataset": "cifar"}, ValueError, "dataset: expected one of"),
        ({"arms": ("mlp", "tree")}, ValueError, "arms: expected distinct names from"),
        ({"arms": ("mlp", "mlp")}, ValueError, "arms: expected distinct names from"),
        ({"thresholds": (30, 10)}, ValueError, "few_below: expected at most many_above"),
        ({"thresholds": 5}, ValueError, "thresholds: expected"),
        ({"arm_options": {"svm": {}}}, ValueError, r"arm_options: unknown arms \['svm'\]"),
        ({"batch_size": 1}, ValueError, "batch_size: expected an int >= 2"),
        ({"seeds": ()}, ValueError, "seeds: expected at least one seed"),
        ({"imbalance": 0.3}, ValueError, "imbalance: expected a finite number >= 1"),
    ],
)
def test_run_refuses_a_bad_configuration_naming_it(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        longtail.run(**{**longtail.QUICK, **kwargs})


# --- command line ----------------------------------------------------------------------------------------


def test_main_quick_writes_the_rows_the_summary_and_the_command(tmp_path, capsys):
    out = tmp_path / "e4.json"
    argv = ["--quick", "--quiet", "--arms", "mlp", "mlp+sketch", "--bits", "3", "--out", str(out)]
    rows = longtail.main(argv)
    doc = json.loads(out.read_text())
    assert doc["rows"] == json.loads(json.dumps(rows)) and [r["arm"] for r in rows] == ["mlp", "mlp+sketch"]
    assert doc["command"] == "python -m refmann.experiments.longtail " + " ".join(argv)
    assert {"cores", "numpy"} <= set(doc["machine"]) and doc["summary"] == longtail.summarise(rows)
    assert doc["config"]["arm_options"]["mlp+sketch"]["num_bits"] == 3 and "b=3" in rows[1]["config"]
    assert longtail.format_table(rows) in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["--steps", "0"],
        ["--batch-size", "1"],
        ["--seeds", "-1"],
        ["--imbalance", "0.5"],
        ["--imbalance", "many"],
        ["--arms", "mlp+nothing"],
        ["--arms", "mlp", "mlp"],
        ["--dataset", "cifar"],
        ["--quick", "--dataset", "mixture"],
        ["--bits", "30"],
        ["--dtype", "float16"],
    ],
)
def test_a_bad_flag_exits_2_with_a_one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        longtail.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("python -m refmann.experiments.longtail: error: ")


def test_registering_an_arm_twice_is_refused():
    with pytest.raises(ValueError, match="the arm 'mlp' is already registered"):
        longtail.register_arm("mlp")(longtail.build_mlp)
