"""Golden files round-trip: written by the CLI or the function, read back with plain numpy, and
reproduced by a model rebuilt from the stored kwargs and parameters."""

import json
import zipfile

import numpy as np
import pytest

from refmann import cli, golden, models

ALL = golden.MODEL_NAMES


def _read(path):
    """What a user without refmann does: np.load without pickles, meta decoded from JSON."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {key: f[key] for key in f.files}
    return arrays, json.loads(str(arrays["meta"][()]))


def _rebuild(meta, arrays):
    """A model from the stored class and kwargs, with the file's parameters copied in."""
    kwargs = dict(meta["kwargs"], dtype=np.dtype(meta["kwargs"]["dtype"]))
    model = getattr(models, meta["model_class"])(**kwargs)
    for name in model.params:
        model.params[name][...] = arrays[f"param/{name}"]
    return model


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    assert cli.main(["golden", "--model", "all", "--seed", "0", "--out", str(out)]) == 0
    return {name: out / f"{name}_seed0.npz" for name in ALL}


@pytest.mark.parametrize("name", ALL)
def test_cli_golden_file_is_reproduced_exactly_by_a_rebuilt_model(cli_files, name):
    arrays, meta = _read(cli_files[name])
    model = _rebuild(meta, arrays)
    logits = model.forward(arrays["inputs"])
    loss, grads = model.loss_and_grads(arrays["inputs"], arrays["targets"], arrays["mask"])
    # Same process, same machine, deterministic code: the numbers are bit-identical, so exact
    # equality is asserted (a port in another framework should use the tolerances of docs/golden.md).
    np.testing.assert_array_equal(logits, arrays["logits"])
    assert loss == float(arrays["loss"])
    assert set(grads) == set(model.params)
    for key, value in grads.items():
        np.testing.assert_array_equal(value, arrays[f"grad/{key}"], err_msg=key)
    assert all(err == 0.0 for err in golden.check_golden(cli_files[name]).values())


@pytest.mark.parametrize("name", ALL)
def test_params_and_grads_have_exactly_the_model_keys_and_shapes(cli_files, name):
    arrays, meta = _read(cli_files[name])
    model = _rebuild(meta, arrays)
    params = {key.removeprefix("param/") for key in arrays if key.startswith("param/")}
    grads = {key.removeprefix("grad/") for key in arrays if key.startswith("grad/")}
    assert params == grads == set(model.params) == set(meta["param_names"])
    for key, value in model.params.items():
        assert arrays[f"param/{key}"].shape == arrays[f"grad/{key}"].shape == value.shape
        assert list(value.shape) == meta["param_shapes"][key]
    T, B, X, Y = (meta["shapes"][k] for k in "TBXY")
    assert arrays["inputs"].shape == (T, B, X)
    assert arrays["targets"].shape == arrays["mask"].shape == arrays["logits"].shape == (T, B, Y)
    assert arrays["loss"].shape == ()
    fixed = {"meta", "inputs", "targets", "mask", "logits", "loss"}
    extra = {"memory0", *meta["trace_keys"]} if model.has_memory else set()
    assert set(arrays) == fixed | extra | {f"param/{k}" for k in params} | {f"grad/{k}" for k in grads}


@pytest.mark.parametrize("name", ALL)
def test_building_from_the_stored_kwargs_and_seed_gives_the_stored_params(cli_files, name):
    arrays, meta = _read(cli_files[name])
    kwargs = dict(meta["kwargs"], dtype=np.dtype(meta["kwargs"]["dtype"]))
    assert kwargs["seed"] == meta["seed"] == 0
    model = getattr(models, meta["model_class"])(**kwargs)  # parameters from the seed alone
    for key, value in model.params.items():
        np.testing.assert_array_equal(value, arrays[f"param/{key}"], err_msg=key)
    if model.has_memory:
        np.testing.assert_array_equal(model.memory0, arrays["memory0"])


@pytest.mark.parametrize("name", ALL)
def test_file_holds_no_object_arrays_and_everything_is_float64_or_int64(cli_files, name):
    arrays, meta = _read(cli_files[name])  # allow_pickle=False would raise on an object array
    assert all(value.dtype != object for value in arrays.values())
    assert arrays["meta"].shape == () and arrays["meta"].dtype.kind == "U"
    for key, value in arrays.items():
        if key.startswith("trace/") and value.dtype.kind == "i":
            assert value.dtype == np.int64, key
        elif key != "meta":
            assert value.dtype == np.float64, key
    with zipfile.ZipFile(cli_files[name]) as z:  # plain .npy members only
        assert all(info.filename.endswith(".npy") for info in z.infolist())


@pytest.mark.parametrize("name", ALL)
def test_meta_records_what_a_port_needs(cli_files, name):
    _, meta = _read(cli_files[name])
    assert meta["format"] == golden.FORMAT and meta["format_version"] == golden.FORMAT_VERSION
    assert meta["model"] == name and meta["dtype"] == "float64" and meta["seed"] == 0
    assert meta["refmann_version"] and meta["numpy_version"] == np.__version__
    assert "averaged over the batch" in meta["loss_convention"] and "summed over time" in meta["loss_convention"]
    assert {"linear", "lstm", "cosine"} <= set(meta["conventions"])
    if name == "sam":
        assert meta["kwargs"]["index"] == "linear"
        assert {"trace/read_idx", "trace/lra", "trace/touched"} <= set(meta["trace_keys"])


def test_loss_follows_the_documented_convention(cli_files):
    arrays, meta = _read(cli_files["dam"])
    z, t, m = arrays["logits"], arrays["targets"], arrays["mask"]
    expected = np.sum(m * (np.logaddexp(0.0, z) - t * z)) / meta["shapes"]["B"]
    assert float(arrays["loss"]) == pytest.approx(expected, rel=1e-12)
    assert 0 < m.sum() < m.size  # the mask really ignores some entries


def test_sam_trace_is_consistent_with_its_read_and_write_weights(cli_files):
    arrays, meta = _read(cli_files["sam"])
    T, B, H, N, K = (meta["shapes"][k] for k in "TBHNK")
    read_idx, read_w = arrays["trace/read_idx"], arrays["trace/read_weights"]
    lra, write_w = arrays["trace/lra"], arrays["trace/write_weights"]
    assert read_idx.shape == (T, B, H, K) and lra.shape == (T, B, H)
    assert np.all(np.diff(read_idx, axis=-1) > 0)  # K distinct slots, ascending
    np.testing.assert_allclose(read_w.sum(axis=-1), 1.0, rtol=1e-12)
    off_support = np.ones_like(read_w, dtype=bool)
    np.put_along_axis(off_support, read_idx, False, axis=-1)
    assert np.all(read_w[off_support] == 0.0)  # reads only the K chosen slots
    assert np.all((lra >= 0) & (lra < N))
    for t in range(T):  # writes hit only w^R_{t-1}'s slots and the LRA
        allowed = np.zeros((B, H, N), bool)
        np.put_along_axis(allowed, lra[t][..., None], True, axis=-1)
        if t > 0:
            np.put_along_axis(allowed, read_idx[t - 1], True, axis=-1)
        assert np.all(write_w[t][~allowed] == 0.0)
    touched = arrays["trace/touched"]
    assert touched.shape[:2] == (T, B) and np.all(touched >= -1)


def test_function_and_cli_write_the_same_numbers(cli_files, tmp_path):
    paths = golden.write_golden(["lstm", "sam"], out=tmp_path / "new", seed=0)
    assert [p.name for p in paths] == ["lstm_seed0.npz", "sam_seed0.npz"]
    for path in paths:
        mine, _ = _read(path)
        theirs, _ = _read(cli_files[path.name.split("_")[0]])
        assert set(mine) == set(theirs)
        for key in mine:
            if key != "meta":
                np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)


def test_load_golden_and_model_from_golden_round_trip(tmp_path):
    (path,) = golden.write_golden("dam", out=tmp_path, seed=3, steps=3, batch_size=1, memory_size=8)
    g = golden.load_golden(path)
    assert g["meta"]["shapes"]["T"] == 3 and g["meta"]["shapes"]["N"] == 8 and g["meta"]["seed"] == 3
    assert g["inputs"].shape == (3, 1, 4) and isinstance(g["loss"], float)
    assert set(g["params"]) == set(g["grads"]) and g["memory0"].shape == (8, 6)
    model = golden.model_from_golden(g)
    loss, grads = model.loss_and_grads(g["inputs"], g["targets"], g["mask"])
    assert golden.max_rel_diff(loss, g["loss"]) <= 1e-12
    assert all(golden.max_rel_diff(grads[k], v) <= 1e-12 for k, v in g["grads"].items())


def test_different_seeds_give_different_parameters_and_data(tmp_path):
    a = golden.golden_arrays("lstm", seed=0)
    b = golden.golden_arrays("lstm", seed=1)
    assert not np.array_equal(a["param/controller.weight"], b["param/controller.weight"])
    assert not np.array_equal(a["inputs"], b["inputs"])


def test_check_golden_reports_a_tampered_gradient(tmp_path):
    (path,) = golden.write_golden("lstm", out=tmp_path)
    g = golden.load_golden(path)
    g["grads"]["output.bias"] = g["grads"]["output.bias"] * (1 + 1e-6)
    errors = golden.check_golden(g)
    assert errors["grad/output.bias"] == pytest.approx(1e-6, rel=1e-3)
    assert errors["grad/controller.weight"] == 0.0


# -- bad arguments -------------------------------------------------------------------------------------


def _exit_code(argv):
    """The CLI's exit code, whether main returns it or argparse exits with it (bad flag values)."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def test_unknown_model_is_refused_by_the_function_and_the_cli(tmp_path, capsys):
    with pytest.raises(ValueError, match="model: expected one of"):
        golden.write_golden("ntmx", out=tmp_path)
    with pytest.raises(TypeError, match="model:"):
        golden.write_golden(3, out=tmp_path)
    assert _exit_code(["golden", "--model", "lstm", "gru", "--out", str(tmp_path)]) == 2
    assert "'gru'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written when any name is bad


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "not_a_dir"
    afile.write_text("x")
    with pytest.raises(ValueError, match="out: expected a directory"):
        golden.write_golden("lstm", out=afile)
    assert _exit_code(["golden", "--model", "lstm", "--out", str(afile)]) == 2
    assert "not_a_dir" in capsys.readouterr().err
    assert afile.read_text() == "x"


def test_bad_sizes_and_seeds_name_the_argument(tmp_path, capsys):
    with pytest.raises(ValueError, match="steps"):
        golden.write_golden("lstm", out=tmp_path, steps=0)
    with pytest.raises(TypeError, match="batch_size"):
        golden.write_golden("lstm", out=tmp_path, batch_size=1.5)
    with pytest.raises(TypeError, match="seed"):
        golden.write_golden("lstm", out=tmp_path, seed=-1)
    with pytest.raises(TypeError, match="sizes: unexpected"):
        golden.write_golden("lstm", out=tmp_path, memory_sise=8)
    with pytest.raises(ValueError, match="k: expected 1 <= k <= memory_size"):
        golden.write_golden("all", out=tmp_path, k=20)
    assert not list(tmp_path.iterdir())  # the LSTM's file was not written before SAM failed
    with pytest.raises(TypeError, match="out:"):
        golden.write_golden("lstm", out=None)
    assert _exit_code(["golden", "--model", "lstm", "--seed", "-1", "--out", str(tmp_path)]) == 2
    assert "seed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # --out is required
        cli.main(["golden", "--model", "lstm"])
    assert exc.value.code == 2


def test_load_golden_refuses_other_files(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a refmann golden file"):
        golden.load_golden(tmp_path / "plain.npz")
    np.savez(tmp_path / "pickled.npz", meta=np.array([{"format": golden.FORMAT}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        golden.load_golden(tmp_path / "pickled.npz")
    meta = json.dumps({"format": golden.FORMAT, "format_version": 999})
    np.savez(tmp_path / "future.npz", meta=np.array(meta))
    with pytest.raises(ValueError, match="format_version"):
        golden.load_golden(tmp_path / "future.npz")
