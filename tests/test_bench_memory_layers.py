"""refmann bench sketch and refmann bench hma: the tables' structure and invariants at tiny sizes (no timing
assertions), the timed calls being the layers' own, and the CLI's refusals and JSON."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmann.bench import memory_layers as ml
from refmann.bench.memory_layers import (
    HMA_MODES,
    HMA_QUICK,
    HMA_VARIANTS,
    SKETCH_QUICK,
    SKETCH_VARIANTS,
    format_hma_table,
    format_sketch_table,
    hma_ratios,
    hma_table,
    sketch_ratios,
    sketch_table,
)
from refmann.cli import main
from refmann.layers.base import unscope

# -- sketch ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sketch_rows():
    return sketch_table(**{**SKETCH_QUICK, "rounds": 2}, dtypes=("float32", "float64"))


def test_sketch_rows_have_every_variant_and_consistent_ratios(sketch_rows):
    assert [(r["dtype"], r["num_bits"]) for r in sketch_rows] == [
        (d, b) for d in ("float32", "float64") for b in SKETCH_QUICK["sizes"]
    ]
    for r in sketch_rows:
        us = r["us_per_row"]
        assert r["note"] is None and set(us) == set(SKETCH_VARIANTS) and all(v > 0 for v in us.values())
        assert r["buckets"] == 2 ** r["num_bits"] and r["table_rows"] == r["num_tables"] * r["buckets"]
        assert r["params"] == r["table_rows"] * r["output_dim"]
        assert r["ratio_dense_params"] == pytest.approx(us["dense_params"] / us["sketch"])
        assert r["ratio_dense_flops"] == pytest.approx(us["dense_flops"] / us["sketch"])
        assert r["ratio_adam"] == pytest.approx(us["dense_adam"] / us["lazy_adam"])
        assert r["hash_share"] == pytest.approx(us["hash"] / us["sketch"])
        assert 0 < r["distinct_rows"] <= min(r["table_rows"], r["tokens"] * r["num_tables"])
    for dtype in ("float32", "float64"):
        mine = [r for r in sketch_rows if r["dtype"] == dtype]
        assert mine[0]["ratio_sketch"] == mine[0]["ratio_sketch_again"] == mine[0]["ratio_dense_params_growth"] == 1.0
        for r in mine:
            assert r["ratio_sketch"] == pytest.approx(r["us_per_row"]["sketch"] / mine[0]["us_per_row"]["sketch"])


@settings(max_examples=50)
@given(X=st.integers(1, 64), Y=st.integers(1, 64), T=st.integers(1, 8), b=st.integers(1, 24))
def test_the_dense_layers_have_the_sketchs_parameters_and_multiply_adds(X, Y, T, b):
    """The nearest whole hidden widths (at least 1): H (X + Y) within (X + Y) / 2 of T·2^b·Y, h (X + Y) of
    T (b X + Y)."""
    sizes = ml._sketch_sizes(b, ml._sketch_config(input_dim=X, output_dim=Y, num_tables=T))
    H, h = sizes["dense_params_hidden"], sizes["dense_flops_hidden"]
    assert sizes["params"] == T * 2**b * Y and sizes["sketch_macs_per_row"] == T * (b * X + Y)
    assert H >= 1 and (H == 1 or abs(H * (X + Y) - sizes["params"]) <= (X + Y) / 2)
    assert h >= 1 and (h == 1 or abs(h * (X + Y) - sizes["sketch_macs_per_row"]) <= (X + Y) / 2)
    assert sizes["dense_params_count"] == H * (X + Y) + H + Y


def test_the_dense_mlps_have_the_counted_parameters():
    config = ml._sketch_config(input_dim=8, output_dim=8, num_tables=3, tokens=4)
    for b in (2, 5):
        sizes = ml._sketch_sizes(b, config)
        assert sizes["dense_params_hidden"] * 16 == sizes["params"]  # X = Y: exactly T·2^b·Y weights
        for width, count in (("dense_params_hidden", "dense_params_count"), ("dense_flops_hidden", None)):
            mlp = ml._mlp(8, sizes[width], 8, np.float64, 0)
            total = sum(v.size for v in mlp.params.values())
            assert total == (sizes[count] if count else ml._mlp_params(8, sizes[width], 8))


def test_the_timed_sketch_call_is_the_layers_step_and_adam_advances_the_table():
    config = ml._sketch_config(**{k: v for k, v in SKETCH_QUICK.items() if k not in ("sizes", "rounds")})
    rng = np.random.default_rng(0)
    B, X, Y = config.tokens, config.input_dim, config.output_dim
    batches = [(rng.standard_normal((B, X)), rng.standard_normal((B, Y))) for _ in range(2)]
    fx = ml._build_sketch(5, np.dtype(np.float64), config, 0, batches, [])
    assert fx.state["step"] == 1 and fx.dense_params is not None  # the warm-up step
    before = fx.layer.params["values"].copy()
    x, dy = batches[1]
    _, cache = fx.layer.forward(x)
    _, ref = fx.layer.backward(dy, cache)
    seconds = ml._sketch_light(fx, config, x, dy, (batches[0][0],) * 3)
    assert seconds.pop("distinct_rows") == ref["values"].indices.size
    assert fx.state["step"] == 2 and not np.array_equal(before, fx.layer.params["values"])  # the lazy step
    touched = np.zeros(fx.layer.num_rows, bool)
    touched[ref["values"].indices] = True  # the rows of the layer's own gradient of the same batch
    np.testing.assert_array_equal(before[~touched], fx.layer.params["values"][~touched])  # lazy: only those rows
    heavy = ml._sketch_dense_params(fx, config, x, dy) | ml._sketch_dense_adam(fx, config, x, dy)
    assert fx.state["step"] == 3 and set(seconds) | set(heavy) == set(SKETCH_VARIANTS)
    assert not np.array_equal(before[~touched], fx.layer.params["values"][~touched])  # dense: every row moves


def test_sizes_above_the_caps_are_not_run_and_say_so():
    rows = sketch_table(**{**SKETCH_QUICK, "rounds": 1, "dense_max_bits": 4, "optimizer_max_bits": 6})
    by_b = {r["num_bits"]: r for r in rows}
    assert by_b[4]["note"] is None and by_b[4]["us_per_row"]["dense_params"] is not None
    assert by_b[6]["us_per_row"]["dense_params"] is None and by_b[6]["us_per_row"]["lazy_adam"] is not None
    assert by_b[8]["us_per_row"]["lazy_adam"] is None and by_b[8]["us_per_row"]["dense_adam"] is None
    assert "dense_max_bits" in by_b[6]["note"] and "optimizer_max_bits" in by_b[8]["note"]
    assert all(r["us_per_row"]["sketch"] is not None and r["us_per_row"]["dense_flops"] is not None for r in rows)
    text = format_sketch_table(rows)
    assert "not run above b = 4" in text and "not run above b = 6" in text


def test_a_sketch_size_that_does_not_fit_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setattr(ml, "mem_available", lambda: 0)
    rows = sketch_table(**{**SKETCH_QUICK, "rounds": 1})
    assert all(r["note"].startswith("skipped: needs") for r in rows)
    assert all(v is None for r in rows for v in r["us_per_row"].values())
    assert all(q["value"] is None for q in sketch_ratios(rows))
    assert "skipped: needs" in format_sketch_table(rows)


def test_sketch_ratios_and_table_name_every_ratio(sketch_rows):
    ratios = sketch_ratios(sketch_rows)
    names = (
        "flat",
        "flat_again",
        "dense_params",
        "dense_params_growth",
        "dense_flops",
        "hash_share",
        "gather_bare",
        "adam",
    )
    assert [(q["dtype"], q["name"]) for q in ratios] == [(d, n) for d in ("float32", "float64") for n in names]
    assert all(q["value"] > 0 for q in ratios)
    flat = ratios[0]
    assert flat["value"] == sketch_rows[len(SKETCH_QUICK["sizes"]) - 1]["ratio_sketch"]
    text = format_sketch_table(sketch_rows)
    assert text.count("\n| float32 |") == 3 and text.count("\n| float64 |") == 3
    assert text.count("\n- float") == len(ratios)


def test_sketch_table_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"sizes: expected each num_bits b in \[1, 24\], got 25"):
        sketch_table(sizes=(8, 25))
    with pytest.raises(ValueError, match="sizes: expected an int >= 1, got 0"):
        sketch_table(sizes=(0,))
    with pytest.raises(TypeError, match="sizes"):
        sketch_table(sizes=(4.5,))
    with pytest.raises(ValueError, match="dtype"):
        sketch_table(**SKETCH_QUICK | {"rounds": 1}, dtypes=("float16",))
    with pytest.raises(ValueError, match="rounds"):
        sketch_table(**SKETCH_QUICK | {"rounds": 0})
    with pytest.raises(ValueError, match="tokens"):
        sketch_table(**SKETCH_QUICK | {"tokens": 0})
    with pytest.raises(ValueError, match="lr"):
        sketch_table(**SKETCH_QUICK, lr=float("nan"))


# -- HMA ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hma_rows():
    return hma_table(**{**HMA_QUICK, "rounds": 2}, dtypes=("float32", "float64"))


def test_hma_rows_have_every_variant_and_consistent_ratios(hma_rows):
    assert [(r["dtype"], r["queue_size"]) for r in hma_rows] == [
        (d, S) for d in ("float32", "float64") for S in HMA_QUICK["sizes"]
    ]
    for r in hma_rows:
        us = r["us_per_sample"]
        assert r["note"] is None and set(us) == set(HMA_VARIANTS) | set(HMA_MODES)
        assert all(v > 0 for v in us.values())
        for mode in HMA_MODES:
            assert us[mode] == pytest.approx(us[f"{mode}_forward"] + us[f"{mode}_backward"])
            assert r["ratio_dense"][mode] == pytest.approx(us[mode] / us["dense"])
        assert r["ratio_modes"] == pytest.approx(us["transductive"] / us["per_sample"])
        assert r["dim"] == r["feature_dim"] + r["label_dim"]
        assert abs(r["dense_params"] - r["params"]) <= r["feature_dim"] + r["num_classes"] + 1  # one hidden unit
    for dtype in ("float32", "float64"):
        first = next(r for r in hma_rows if r["dtype"] == dtype)
        assert first["ratio_S"] == {"transductive": 1.0, "per_sample": 1.0, "stage1": 1.0}


def test_the_hma_parameter_count_does_not_depend_on_the_queue(hma_rows):
    for dtype in ("float32", "float64"):
        counts = {r["params"] for r in hma_rows if r["dtype"] == dtype}
        assert len(counts) == 1  # the queue is a buffer


def test_the_timed_stage_1_is_the_layers_stage_1():
    config = ml._hma_config(**{k: v for k, v in HMA_QUICK.items() if k not in ("sizes", "rounds")})
    rng = np.random.default_rng(0)
    f = rng.standard_normal((config.batch, config.feature_dim))
    dlogits = rng.standard_normal((config.batch, config.num_classes))
    fx = ml._build_hma(16, np.dtype(np.float64), config, 0, (f, dlogits))
    assert (fx.layer.buffers["queue_labels"] >= 0).all()  # the queue is full of written rows
    _, cache = fx.layer.forward(f, mode="per_sample")
    x1, y1 = ml._stage1_inputs(fx.layer, f)
    np.testing.assert_array_equal(x1, cache.stage1.x)
    c1, _ = fx.layer.children["stage1"].forward(x1, y1, params=unscope("stage1", fx.layer.params))
    np.testing.assert_array_equal(c1, cache.stage2.x)  # per sample, stage 2's queries are stage 1's output
    assert set(ml._hma_round(fx, f, dlogits)) == set(HMA_VARIANTS)


def test_an_hma_size_that_does_not_fit_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setattr(ml, "mem_available", lambda: 0)
    rows = hma_table(**{**HMA_QUICK, "rounds": 1})
    assert all(r["note"].startswith("skipped: needs") and r["us_per_sample"]["stage1"] is None for r in rows)
    assert all(q["value"] is None for q in hma_ratios(rows))
    assert "skipped: needs" in format_hma_table(rows)


def test_hma_ratios_and_table_name_every_ratio(hma_rows):
    ratios = hma_ratios(hma_rows)
    names = (
        "growth_transductive",
        "growth_per_sample",
        "growth_stage1",
        "dense_transductive",
        "dense_per_sample",
        "modes",
        "stage1_share",
    )
    assert [(q["dtype"], q["name"]) for q in ratios] == [(d, n) for d in ("float32", "float64") for n in names]
    assert all(q["value"] > 0 for q in ratios)
    text = format_hma_table(hma_rows)
    assert text.count("\n| float32 |") == 2 and text.count("\n| float64 |") == 2
    assert text.count("\n- float") == len(ratios)


def test_hma_table_refuses_bad_arguments():
    with pytest.raises(ValueError, match="sizes: expected an int >= 1, got 0"):
        hma_table(sizes=(0, 8))
    with pytest.raises(ValueError, match="num_heads: expected a divisor of D"):
        hma_table(**HMA_QUICK | {"num_heads": 3})
    with pytest.raises(ValueError, match="num_classes"):
        hma_table(**HMA_QUICK | {"num_classes": 1})
    with pytest.raises(ValueError, match="dtype"):
        hma_table(**HMA_QUICK, dtypes="float16")
    with pytest.raises(ValueError, match="rounds"):
        hma_table(**HMA_QUICK | {"rounds": 0})


# -- the CLI -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("what, first", [("sketch", "| float32 | 4 |"), ("hma", "| float32 | 8 |")])
def test_cli_quick_prints_the_table_and_writes_the_json(what, first, tmp_path, capsys):
    out = tmp_path / "sub" / f"{what}.json"
    argv = ["bench", what, "--quick", "--quiet", "--rounds", "1", "--dtype", "float32", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert first in captured.out and "Ratios (measured side by side):" in captured.out
    assert "machine:" in captured.out and captured.err == ""  # --quiet: no progress bar
    data = json.loads(out.read_text())
    quick = {"sketch": SKETCH_QUICK, "hma": HMA_QUICK}[what]
    assert set(data) == {"machine", "rows", "ratios"} and len(data["rows"]) == len(quick["sizes"])
    assert all(q["value"] is not None for q in data["ratios"])


def test_cli_sizes_choose_the_sizes(capsys):
    assert main(["bench", "sketch", "--quick", "--quiet", "--rounds", "1", "--sizes", "3", "5"]) == 0
    out = capsys.readouterr().out
    assert "| float32 | 3 |" in out and "| float32 | 5 |" in out and "| float32 | 4 |" not in out


@pytest.mark.parametrize("what", ["sketch", "hma"])
@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--sizes", "0"], "--sizes"),
        (["--rounds", "0"], "--rounds"),
        (["--dtype", "float16"], "--dtype"),
        (["--out", "{tmp}"], "--out"),
        (["--steps", "3"], "--steps"),
        (["--batch-size", "3"], "--batch-size"),
        (["--versus-lstm"], "--versus-lstm"),
        (["--figure", "7"], "--figure"),
    ],
)
def test_cli_bad_flags_exit_2_with_one_line(what, argv, flag, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(["bench", what, "--quick", "--quiet", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refmann bench") and flag in lines[0], captured.err
    assert "Ratios" not in captured.out  # refused before any measurement


def test_cli_sketch_refuses_more_than_24_bits(capsys):
    assert main(["bench", "sketch", "--quick", "--quiet", "--sizes", "25"]) == 2
    assert "--sizes: expected each num_bits b in [1, 24], got 25" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["lsh", "steps", "footprint"])
def test_other_benchmarks_still_refuse_rounds(what, capsys):
    assert main(["bench", what, "--quick", "--rounds", "2"]) == 2
    assert "--rounds: applies to bench pkm and sketch and hma" in capsys.readouterr().err


def test_python_m_refmann_bench_sketch_quick_quiet():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "refmann", "bench", "sketch", "--quick", "--quiet", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Ratios (measured side by side):" in done.stdout
