"""E7 (refmann/experiments/few_labels.py): the spurious colour's rate, the few-label draw, the frozen encoders,
the head-only HMA host's gradients, the quick runs of (a), (b) and the transductivity measurement (with its
invariants: a batch of one is per sample, a whole-set batch does not depend on the order), the CLI (JSON, bad
flags exit 2). No hard-coded results, no timing assertions."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann import _checks, layers
from refmann.experiments import few_labels, longtail
from refmann.models.hma import MemoryTokensClassifier
from tests.helpers import assert_gradients_match


def _without_times(rows):
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


@pytest.fixture(scope="module")
def a_rows():
    return few_labels.run("a", **few_labels.QUICK["a"])


@pytest.fixture(scope="module")
def b_rows():
    return few_labels.run("b", **few_labels.QUICK["b"])


@pytest.fixture(scope="module")
def t_rows():
    return few_labels.run("transductive", **few_labels.QUICK["transductive"])


# --- the spurious colour -------------------------------------------------------------------------------


@settings(max_examples=15)
@given(p=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_the_colour_matches_the_label_at_rate_p_and_is_otherwise_another_colour(p, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, 4000)
    colours, onehot = few_labels.colour_feature(labels, p=p, rng=rng)
    rate = np.mean(colours == labels)
    assert abs(rate - p) <= 5 * np.sqrt(p * (1 - p) / 4000) + 1e-3  # five binomial s.d.
    np.testing.assert_array_equal(onehot.argmax(axis=1), colours)
    assert np.all(onehot.sum(axis=1) == 1)
    off = colours[colours != labels]
    if len(off) > 500:  # the other colours: roughly uniform over the nine that are not the label
        shift = (off - labels[colours != labels]) % 10
        counts = np.bincount(shift, minlength=10)
        assert counts[0] == 0 and counts[1:].min() > 0.5 * len(off) / 9


def test_a_random_colour_matches_the_label_one_time_in_ten():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 20000)
    colours, _ = few_labels.colour_feature(labels, p=None, rng=rng)
    assert abs(np.mean(colours == labels) - 0.1) < 5 * np.sqrt(0.09 / 20000)
    with pytest.raises(ValueError, match=r"p: expected a value in \[0, 1\]"):
        few_labels.colour_feature(labels, p=1.5, rng=rng)
    with pytest.raises(ValueError, match=r"labels: expected indices in \[0, 10\)"):
        few_labels.colour_feature(np.array([3, 10]), p=0.5, rng=rng)
    with pytest.raises(TypeError, match="rng: expected a np.random.Generator"):
        few_labels.colour_feature(labels, p=0.5, rng=None)


def test_the_training_set_of_b_carries_a_colour_that_is_the_label_with_p_and_a_random_one_at_test():
    px, py, tx, ty = longtail.digits_split()
    data = few_labels._b_data(px, py, tx, ty, per_class=100, p_train=0.9, seed=3, dtype=np.float32)
    n = len(data["y"])
    assert n == 1000 and np.all(np.bincount(data["y"]) == 100)
    train_colour = data["x"][:, 64:].argmax(axis=1)
    np.testing.assert_array_equal(train_colour, data["colours"])
    assert abs(np.mean(train_colour == data["y"]) - 0.9) <= 5 * np.sqrt(0.09 / n)
    np.testing.assert_array_equal(
        data["x"][:, :64],
        px[few_labels.few_label_indices(py, 100, rng=np.random.default_rng(longtail._seeds(3, 2000)[0]))],
    )
    id_rate = np.mean(data["id_x"][:, 64:].argmax(axis=1) == ty)
    ood_rate = np.mean(data["ood_colours"] == ty)
    assert abs(id_rate - 0.9) <= 5 * np.sqrt(0.09 / len(ty)) and abs(ood_rate - 0.1) <= 5 * np.sqrt(0.09 / len(ty))
    np.testing.assert_array_equal(data["ood_x"][:, 64:].argmax(axis=1), data["ood_colours"])


# --- few labels and the encoders -------------------------------------------------------------------------


@given(k=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_few_label_indices_draws_k_distinct_examples_of_each_class(k, seed):
    labels = np.repeat(np.arange(4), 25)[np.random.default_rng(seed).permutation(100)]
    idx = few_labels.few_label_indices(labels, k, rng=np.random.default_rng(seed))
    assert len(np.unique(idx)) == len(idx) == 4 * k and np.all(np.bincount(labels[idx]) == k)


def test_few_label_indices_refuses_too_many():
    with pytest.raises(ValueError, match="per_class: class 1 has only 2 examples, 3 were asked"):
        few_labels.few_label_indices(np.array([0, 0, 0, 1, 1]), 3, rng=np.random.default_rng(0))


def test_the_random_encoder_is_its_initialisation_and_the_pretrained_one_sees_only_the_source_classes():
    px, py, _, _ = longtail.digits_split()
    x = px[:7]
    features, network, params = few_labels.frozen_encoder("random", px, py, hidden=6, feature_dim=4, seed=2)
    h = network.children["enc"].forward(x)[0]
    np.testing.assert_allclose(features(x), np.maximum(h, 0), rtol=1e-6)
    trained, net2, p2 = few_labels.frozen_encoder("pretrained", px, py, hidden=6, feature_dim=4, steps=3, seed=2)
    assert any(not np.array_equal(p2[k], params[k]) for k in params)  # same init, then trained
    noisy = px.copy()
    target = np.isin(py, few_labels.TARGET_CLASSES)
    noisy[target] = np.random.default_rng(0).random(noisy[target].shape)  # change every image of 5-9
    again, _, p3 = few_labels.frozen_encoder("pretrained", noisy, py, hidden=6, feature_dim=4, steps=3, seed=2)
    for key in p2:
        np.testing.assert_array_equal(p3[key], p2[key])
    assert np.all(trained(x) >= 0)
    with pytest.raises(ValueError, match="encoder: expected one of"):
        few_labels.frozen_encoder("imagenet", px, py)


def test_the_identity_passes_features_and_gradients_through():
    layer = few_labels.Identity(dim=3)
    x = np.arange(6.0).reshape(2, 3)
    y, cache = layer.forward(x)
    assert y is x and layer.params == {}
    dx, grads = layer.backward(2 * x, cache)
    np.testing.assert_array_equal(dx, 2 * x)
    assert grads == {}


@pytest.mark.parametrize("mode", ["transductive", "per_sample"])
def test_the_head_only_hma_host_gradients_match_finite_differences(mode):
    """The features and the head's E, G and W_o, a filled queue held fixed (the blocks: tests/test_layers_hma.py)."""
    head = {"feature_dim": 2, "label_dim": 2, "num_heads": 2, "queue_size": 3, "tokens_per_class": 2}
    network, _ = few_labels.build_head("hma", 2, 3, seed=1, dtype=np.float64, head=head)
    assert isinstance(network, MemoryTokensClassifier) and isinstance(network.encoder, few_labels.Identity)
    rng = np.random.default_rng(2)
    network.update_memory(rng.standard_normal((2, 2)), np.array([0, 2]))
    np.testing.assert_array_equal(network.head.queue_contents()[1], [0, 2])
    params = {k: v + 0.5 * rng.standard_normal(v.shape) for k, v in network.params.items()}
    keys = ["head.labels", "head.tokens", "head.head.weight", "head.head.bias"]

    def forward(x, *arrays):
        return network.forward(x, params=params | dict(zip(keys, arrays)), mode=mode)

    def backward(dout, cache):
        dx, grads = network.backward(dout, cache)
        return (dx, *(grads[k] for k in keys))

    with _checks.unchecked():
        assert_gradients_match((forward, backward), rng.standard_normal((4, 2)), *(params[k] for k in keys))


def test_build_head_and_the_variants():
    for kind in few_labels.HEADS:
        network, step = few_labels.build_head(kind, 4, 3, head={"label_dim": 4, "num_heads": 2, "queue_size": 5})
        assert isinstance(network, layers.Layer) and callable(step)
        if kind.startswith("hma"):
            h = network.head
            expected = {**{"use_queue": True, "use_tokens": True}, **few_labels.HMA_VARIANTS[kind]}
            assert (h.use_queue, h.use_tokens) == (expected["use_queue"], expected["use_tokens"])
            assert h.tokens_per_class == expected.get("tokens_per_class", 8)
    with pytest.raises(ValueError, match="head: expected one of"):
        few_labels.build_head("svm", 4, 3)
    with pytest.raises(ValueError, match="variant: expected one of"):
        few_labels.build_hma(few_labels.Identity(dim=2), 3, feature_dim=2, variant="hma-x")


# --- the quick runs -------------------------------------------------------------------------------------


def test_the_quick_a_run_has_a_row_per_encoder_k_and_head_and_the_ablations(a_rows):
    q = few_labels.QUICK["a"]
    want = []
    for e in q["encoders"]:
        for k in q["labels_per_class"]:
            for h in q["heads"]:
                want += [("grid", e, k, h)] * (2 if h.startswith("hma") else 1)
    e, k = q["ablation_at"]
    for h in q["ablations"]:
        want += [("ablation", e, k, h)] * 2
    assert [(r["group"], r["encoder"], r["labels_per_class"], r["arm"]) for r in a_rows] == want
    for r in a_rows:
        assert tuple(r) == few_labels.ROW_KEYS["a"] and 0 <= r["accuracy"] <= 1
        assert r["train_size"] == 5 * r["labels_per_class"] and r["batch_size"] == min(q["batch_size"], r["train_size"])
        assert (r["encoder_accuracy"] is None) == (r["encoder"] == "random")
    table = few_labels.format_table(a_rows)
    assert "| ablation | pretrained |" in table and "pretrained encoder's accuracy" in table


def test_the_quick_b_run_reports_both_test_sets(b_rows):
    q = few_labels.QUICK["b"]
    assert [(r["group"], r["arm"], r["eval"]) for r in b_rows] == [
        ("main", "mlp", "—"), ("main", "hma", "per-sample"), ("main", "hma", f"transductive@{q['batch_size']}"),
        ("ablation", "hma-queue", "per-sample"), ("ablation", "hma-queue", f"transductive@{q['batch_size']}"),
    ]  # fmt: skip
    for r in b_rows:
        assert tuple(r) == few_labels.ROW_KEYS["b"] and r["train_size"] == 10 * q["labels_per_class"]
        assert 0 <= r["id_accuracy"] <= 1 and 0 <= r["ood_accuracy"] <= 1 and 0 <= r["follows_colour"] <= 1
    assert few_labels.format_table(b_rows).count("\n| ") == len(b_rows) + 2


def test_transductivity_a_batch_of_one_is_per_sample_and_a_whole_set_does_not_depend_on_the_order(t_rows):
    q = few_labels.QUICK["transductive"]
    assert {(r["setting"], r["test_set"]) for r in t_rows} == {("a", "test"), ("b", "id"), ("b", "shifted")}
    for r in t_rows:
        assert tuple(r) == few_labels.ROW_KEYS["transductive"] and r["orders"] == q["orders"]
        if r["eval_batch"] == 1:  # stage 2 over a set of one is the per-sample computation
            assert r["changed_vs_per_sample"] == 0 and r["accuracy"] == r["per_sample_accuracy"]
        if r["eval_batch"] == r["test_size"]:  # attention over a set is permutation-equivariant
            assert r["changed_between_orders"] == 0
    sizes = [r["eval_batch"] for r in t_rows if r["setting"] == "a"]
    assert sizes == [1, 4, t_rows[0]["test_size"]] * len(q["seeds"])


def test_transductivity_counts_changed_predictions_against_per_sample():
    network, step = few_labels.build_head(
        "hma", 3, 2, seed=4, dtype=np.float64, head={"feature_dim": 3, "label_dim": 1, "num_heads": 2, "queue_size": 4}
    )
    rng = np.random.default_rng(5)
    network.params.update({k: v + rng.standard_normal(v.shape) for k, v in network.params.items()})
    x, y = rng.standard_normal((12, 3)), rng.integers(0, 2, 12)
    per_sample, rows = few_labels.transductivity(
        network, network.params, x, y, eval_batches=(1, 5, None), orders=2, rng=np.random.default_rng(6)
    )
    base = np.argmax(network.forward(x, mode="per_sample")[0], axis=1)
    assert per_sample == np.mean(base == y)
    order_rng = np.random.default_rng(6)
    for _ in range(2):  # the batch-1 orders come first in the shared rng
        order_rng.permutation(12)
    changed = []
    for _ in range(2):
        got = longtail.predict(network, network.params, x, mode="transductive", batch_size=5, rng=order_rng)
        changed.append(np.mean(got != base))
    assert rows[1]["eval_batch"] == 5 and rows[1]["changed_vs_per_sample"] == pytest.approx(np.mean(changed))
    assert rows[2]["eval_batch"] == 12 and rows[2]["changed_between_orders"] == 0


def test_a_rerun_is_identical(a_rows, b_rows):
    assert _without_times(few_labels.run("a", **few_labels.QUICK["a"])) == _without_times(a_rows)
    assert _without_times(few_labels.run("b", **few_labels.QUICK["b"])) == _without_times(b_rows)


def test_the_per_sample_trained_variant_is_trained_in_that_mode():
    rows = few_labels.run("b", **{**few_labels.QUICK["b"], "arms": ("hma",), "ablations": ("hma-ps",)})
    [hma, ps] = [r for r in rows if r["eval"] == "per-sample"]
    assert ps["config"].endswith("trained per sample") and not hma["config"].endswith("trained per sample")


def test_plot_a_writes_a_figure(a_rows, tmp_path):
    path = few_labels.plot_a(a_rows, tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "experiment, kwargs, error, pattern",
    [
        ("c", {}, ValueError, r"experiment: expected one of \['a', 'b', 'transductive'\]"),
        ("a", {"encoders": ("imagenet",)}, ValueError, "encoders: expected names from"),
        ("a", {"heads": ("svm",)}, ValueError, "arms: expected distinct names from"),
        ("a", {"ablations": ("hma-x",)}, ValueError, "ablations: expected names from"),
        ("a", {"labels_per_class": (0,)}, ValueError, "labels_per_class: expected an int >= 1"),
        ("a", {"ablation_at": ("random", 0)}, ValueError, r"ablation_at: expected \(encoder, k\)"),
        ("b", {"p_train": 1.2}, ValueError, r"p_train: expected a value in \[0, 1\]"),
        ("b", {"arms": ("svm",)}, ValueError, "arms: expected distinct names from"),
        ("b", {"batch_size": 1}, ValueError, "batch_size: expected an int >= 2"),
        ("transductive", {"settings": ("c",)}, ValueError, "settings: expected distinct names from"),
        ("transductive", {"eval_batches": (0,)}, ValueError, "eval_batches: expected an int >= 1"),
        ("transductive", {"eval_batches": ()}, ValueError, "eval_batches: expected at least one batch size"),
    ],
)
def test_run_refuses_a_bad_configuration_naming_it(experiment, kwargs, error, pattern):
    config = dict(few_labels.QUICK.get(experiment, {}))
    with pytest.raises(error, match=pattern):
        few_labels.run(experiment, **{**config, **kwargs})


# --- command line ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, n_rows",
    [
        (["--experiment", "a", "--arms", "linear", "--ablations", "--labels", "2", "--encoders", "random"], 1),
        (["--experiment", "b", "--arms", "mlp", "--ablations", "--p-train", "0.5"], 1),
        (["--experiment", "transductive", "--eval-batches", "1", "all", "--orders", "1"], 6),
    ],
)
def test_main_quick_writes_the_rows_and_the_command(argv, n_rows, tmp_path, capsys):
    out = tmp_path / "e7.json"
    argv = [*argv, "--quick", "--quiet", "--out", str(out)]
    rows = few_labels.main(argv)
    doc = json.loads(out.read_text())
    assert doc["rows"] == json.loads(json.dumps(rows)) and len(rows) == n_rows
    assert doc["command"] == "python -m refmann.experiments.few_labels " + " ".join(argv)
    assert {"cores", "numpy"} <= set(doc["machine"]) and "base" not in doc["config"]
    assert few_labels.format_table(rows) in capsys.readouterr().out
    if "--p-train" in argv:
        assert rows[0]["p_train"] == 0.5


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--experiment", "c"],
        ["--experiment", "a", "--bogus"],
        ["--experiment", "a", "--p-train", "0.5"],
        ["--experiment", "b", "--labels", "5"],
        ["--experiment", "b", "--plot", "x.png"],
        ["--experiment", "a", "--orders", "2"],
        ["--experiment", "transductive", "--arms", "hma"],
        ["--experiment", "transductive", "--eval-batches", "0"],
        ["--experiment", "transductive", "--eval-batches", "some"],
        ["--experiment", "b", "--p-train", "1.5"],
        ["--experiment", "a", "--arms", "svm"],
        ["--experiment", "b", "--arms", "linear"],
        ["--experiment", "a", "--ablations", "hma-x"],
        ["--experiment", "a", "--batch-size", "1"],
        ["--experiment", "a", "--labels", "0"],
        ["--experiment", "a", "--encoders", "imagenet"],
        ["--experiment", "a", "--seeds", "-2"],
    ],
)
def test_a_bad_flag_exits_2_with_a_one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        few_labels.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("python -m refmann.experiments.few_labels: error: ")
