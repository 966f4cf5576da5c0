"""refmann bench pkm: one product-key memory training step by part, its floors and the dense-Adam step."""

import json

import numpy as np
import pytest

from refmann.bench import pkm
from refmann.bench.pkm import PARTS, QUICK, format_pkm_table, pkm_forward_backward, pkm_table, pkm_targets
from refmann.cli import main
from refmann.layers import ProductKeyMemory
from refmann.ops import densify_rows


@pytest.fixture(scope="module")
def quick_rows():
    return pkm_table(**{**QUICK, "rounds": 2}, dtypes=("float32", "float64"))


def test_quick_rows_have_every_part_and_the_totals_are_their_sums(quick_rows):
    assert [(r["dtype"], r["num_keys"]) for r in quick_rows] == [
        ("float32", 16),
        ("float32", 32),
        ("float64", 16),
        ("float64", 32),
    ]
    for r in quick_rows:
        assert r["N"] == r["num_keys"] ** 2 and r["note"] is None
        for parts, total in ((r["parts"], r["total_ms"]), (r["dense_parts"], r["dense_total_ms"])):
            assert set(parts) == set(PARTS) and all(v > 0 for v in parts.values())
            assert total == pytest.approx(sum(parts.values()))
        assert r["ratio_dense"] == pytest.approx(r["dense_total_ms"] / r["total_ms"])
        floor = r["floor_gather_ms"] + r["floor_sum_ms"]
        assert r["ratio_floor"] == pytest.approx((r["parts"]["gather"] + r["parts"]["scatter"]) / floor)
        assert r["copy_ms"] > 0 and 0 < r["distinct_slots"] <= min(r["N"], r["tokens"] * r["num_heads"] * r["k"])
    assert [r["ratio_step"] for r in quick_rows if r["num_keys"] == 16] == [1.0, 1.0]  # against each dtype's first


def test_targets_and_table_name_every_target_per_dtype(quick_rows):
    targets = pkm_targets(quick_rows)
    assert [(t["dtype"], t["target"]) for t in targets] == [
        (d, name) for d in ("float32", "float64") for name in ("step", "floor", "dense")
    ]
    for t in targets:
        assert t["status"] in ("PASS", "MISS") and t["value"] > 0
        assert bool(t["bound"]) == (t["status"] == "MISS")  # a miss says what bounds it
    text = format_pkm_table(quick_rows)
    assert text.count("\n| float32 |") == 2 and text.count("\n| float64 |") == 2
    assert "Targets:" in text and text.count("\n- [") == 6


def test_the_timed_step_is_the_layers_step():
    layer = ProductKeyMemory(input_dim=12, output_dim=10, num_keys=9, num_heads=2, k=3, key_dim=8, seed=1)
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((7, 12)), rng.standard_normal((7, 10))
    y, grads, seconds, _ = pkm_forward_backward(layer, x, dy)
    y_ref, cache = layer.forward(x)
    _, ref = layer.backward(dy, cache)
    np.testing.assert_array_equal(y, y_ref)
    assert set(grads) == set(ref) and set(seconds) == set(PARTS[:-1])
    for key in ref:
        dense = [densify_rows(g) if not isinstance(g, np.ndarray) else g for g in (grads[key], ref[key])]
        np.testing.assert_array_equal(*dense)


def test_a_timed_step_advances_the_parameters_and_the_adam_state():
    config = pkm._config(**{k: v for k, v in QUICK.items() if k not in ("sizes", "rounds")})
    fx = pkm._build(16, np.dtype(np.float32), config, 0)
    assert fx.state["adam"]["step"] == 1  # the fixture's warm-up step
    before = {key: value.copy() for key, value in fx.layer.params.items()}
    for dense, step in ((False, 2), (True, 3)):
        pkm._step(fx, config, dense=dense)
        assert fx.state["adam"]["step"] == step
    assert all(not np.array_equal(before[key], fx.layer.params[key]) for key in before)
    assert all(value.dtype == np.float32 for value in fx.layer.params.values())


def test_a_cell_that_does_not_fit_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setattr(pkm, "mem_available", lambda: 0)
    rows = pkm_table(**{**QUICK, "rounds": 1}, dtypes="float32")
    assert all(r["parts"] is None and r["total_ms"] is None and "skipped: needs" in r["note"] for r in rows)
    assert all(t["status"] == "not measured" for t in pkm_targets(rows))
    assert "skipped: needs" in format_pkm_table(rows)


def test_pkm_table_refuses_bad_arguments():
    with pytest.raises(ValueError, match="sizes: .*>= k"):
        pkm_table(sizes=(4,), k=8)
    with pytest.raises(ValueError, match="dtype"):
        pkm_table(**QUICK, dtypes=("float16",))
    with pytest.raises(ValueError, match="rounds"):
        pkm_table(**{**QUICK, "rounds": 0})
    with pytest.raises(ValueError, match="query_norm"):
        pkm_table(**QUICK, query_norm="nosuch")


def test_cli_quick_prints_the_table_and_writes_the_json(tmp_path, capsys):
    out = tmp_path / "sub" / "pkm.json"
    argv = ["bench", "pkm", "--quick", "--quiet", "--rounds", "1", "--dtype", "float32", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "| float32 | 16 |" in captured.out and "Targets:" in captured.out and "machine:" in captured.out
    assert captured.err == ""  # --quiet: no progress bar
    data = json.loads(out.read_text())
    assert set(data) == {"machine", "rows", "targets"} and len(data["rows"]) == 2


def test_python_m_refmann_bench_pkm_quick_quiet():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "refmann", "bench", "pkm", "--quick", "--quiet", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Targets:" in done.stdout


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--sizes", "4"], "--sizes"),
        (["--sizes", "0"], "--sizes"),
        (["--rounds", "0"], "--rounds"),
        (["--dtype", "float16"], "--dtype"),
        (["--out", "{tmp}"], "--out"),
        (["--steps", "3"], "--steps"),
        (["--updates", "3"], "--updates"),
        (["--versus-lstm"], "--versus-lstm"),
    ],
)
def test_cli_bad_flags_exit_2_with_one_line(argv, flag, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(["bench", "pkm", "--quick", "--quiet", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refmann bench") and flag in lines[0], captured.err
    assert "Targets:" not in captured.out  # refused before any measurement


@pytest.mark.parametrize("what", ["lsh", "steps", "footprint"])
def test_other_benchmarks_refuse_the_pkm_flags(what, capsys):
    assert main(["bench", what, "--quick", "--rounds", "2"]) == 2
    assert "--rounds: applies to bench pkm" in capsys.readouterr().err


def test_scaling_and_footprint_take_one_dtype(capsys):
    assert main(["bench", "footprint", "--quick", "--dtype", "float32", "float64"]) == 2
    assert "--dtype: bench footprint takes one dtype" in capsys.readouterr().err
