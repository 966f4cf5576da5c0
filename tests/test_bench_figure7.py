"""Figure 7 of Rae et al. 2016 (the Sparse DNC against the DNC) in the scaling harness: its lines in the
registry, its config, its memory unit (the total including the start state), its table, its CLI and
a quick run end to end — and Figure 1 left as it was.

Nothing here asserts a timing: runs use small models and only what they write is checked; the table
and the predictor are tested on hand-written rows.
"""

import csv
import json

import numpy as np
import pytest

from refmann import cli, models
from refmann.bench import budget, report, scaling
from refmann.bench.report import CSV_FIELDS, format_table
from refmann.bench.scaling import FIGURE7_MODELS, FIGURE7_SIZES, MODELS, ScalingConfig, quick_config

FIGURE7_LINES = ["dnc", "sdnc-linear", "sdnc-lsh"]


# -- the lines ---------------------------------------------------------------------------------------


def test_bench_variants_select_by_figure_and_figure_1_is_the_default():
    assert list(models.bench_variants()) == ["ntm", "dam", "sam-linear", "sam-lsh", "sam-kdforest"]
    assert list(models.bench_variants(figure=1)) == ["ntm", "dam", "sam-linear", "sam-lsh", "sam-kdforest"]
    assert list(models.bench_variants(figure=7)) == FIGURE7_LINES
    figure1 = ["ntm", "dam", "sam-linear", "sam-lsh", "sam-kdforest"]
    assert list(models.bench_variants(figure=None)) == [*figure1, *FIGURE7_LINES]
    for figure in (0, 2, True, "7"):
        with pytest.raises(ValueError, match="figure: expected one of"):
            models.bench_variants(figure=figure)


def test_figure7_lines_are_the_dense_dnc_and_the_sdnc_with_each_index():
    lines = models.bench_variants(figure=7)
    (dnc_spec, dnc), (lin_spec, lin), (lsh_spec, lsh) = (lines[m] for m in FIGURE7_LINES)
    assert (dnc_spec.name, lin_spec.name, lsh_spec.name) == ("dnc", "sdnc", "sdnc")
    assert dnc.dense and (dnc.time_exponent, dnc.memory_exponent) == (2.0, 2.0) and dnc.options == {}
    assert not lin.dense and lin.options == {"index": "linear"} and lin.time_exponent == 1.0
    assert not lsh.dense and lsh.options == {"index": "lsh"} and lsh.time_exponent == 0.0
    assert {v.figure for v in (dnc, lin, lsh)} == {7}


def test_the_harness_keeps_figure_1_as_its_default_table_and_knows_figure_7():
    assert MODELS == ("ntm", "dam", "sam-linear", "sam-lsh", "sam-kdforest") == scaling.FIGURE_MODELS[1]
    assert list(FIGURE7_MODELS) == FIGURE7_LINES
    assert set(scaling.FIGURE7_REFERENCES) == {"sdnc-linear", "sdnc-lsh"}
    assert scaling._model_spec("dnc").dense and scaling._model_spec("dnc").figure == 7
    assert "dnc" not in scaling.LABELS  # the Figure 1 dicts stay Figure 1's


def test_build_model_makes_the_dnc_and_the_sdnc_with_k_and_link_k():
    config = ScalingConfig(
        figure=7, word_size=4, num_heads=2, k=3, link_k=5, hidden_size=8, input_size=3, output_size=3
    )
    dnc = scaling.build_model("dnc", 16, config)
    lin, lsh = (scaling.build_model(m, 16, config) for m in ("sdnc-linear", "sdnc-lsh"))
    assert type(dnc).__name__ == "DNC" and dnc.config.num_heads == 2 and dnc.config.memory_size == 16
    assert type(lin).__name__ == type(lsh).__name__ == "SDNC"
    assert (lin.config.index, lsh.config.index) == ("linear", "lsh")
    assert lin.config.k == lsh.config.k == 3 and lin.config.link_k == lsh.config.link_k == 5


# -- the config --------------------------------------------------------------------------------------


def test_figure_7_has_its_own_defaults_and_figure_1_keeps_its_own():
    seven = ScalingConfig(figure=7)
    assert seven.models == FIGURE7_MODELS
    assert seven.sizes == seven.memory_sizes == (64, 128, 256, 512, 1024, 2048, 4096, 10**4, 10**5, 10**6)
    assert FIGURE7_SIZES == seven.sizes
    assert (seven.memory_steps, seven.memory_batch_size, seven.batch_size, seven.steps) == (10, 1, 8, 10)
    assert (seven.time_budget, seven.trials, seven.link_k, seven.k) == (300.0, 3, 8, 4)
    one = ScalingConfig()
    assert one.figure == 1 and one.models == MODELS
    assert one.sizes == scaling.DEFAULT_SIZES and one.memory_sizes == scaling.DEFAULT_MEMORY_SIZES
    assert (one.memory_steps, one.time_budget, one.trials) == (100, 30.0, 1)
    given = ScalingConfig(figure=7, models=("sdnc-lsh",), sizes=(64,), memory_steps=4, trials=1, time_budget=5.0)
    assert (given.models, given.sizes, given.memory_steps, given.trials, given.time_budget) == (
        ("sdnc-lsh",),
        (64,),
        4,
        1,
        5.0,
    )


@pytest.mark.parametrize("figure", [0, 2, 8, True, "7", 7.0, None])
def test_figure_must_be_1_or_7(figure):
    with pytest.raises(ValueError) as info:
        ScalingConfig(figure=figure)
    assert str(info.value) == f"figure: expected 1 or 7, got {figure!r}"


def test_each_figure_accepts_only_its_own_lines():
    with pytest.raises(ValueError) as info:
        ScalingConfig(figure=7, models=("dnc", "sam-lsh"))
    assert str(info.value) == (
        "models: expected names from ['dnc', 'sdnc-linear', 'sdnc-lsh'] (Figure 7's lines), got ['sam-lsh']"
    )
    with pytest.raises(ValueError, match=r"models: expected names from \['ntm'"):
        ScalingConfig(models=("dnc",))
    with pytest.raises(ValueError, match="link_k"):
        ScalingConfig(figure=7, link_k=0)


def test_quick_config_of_figure_7_is_small_and_one_process_per_point():
    config = quick_config(figure=7)
    assert config.figure == 7 and config.models == FIGURE7_MODELS
    assert config.sizes == config.memory_sizes == (64, 128)
    assert (config.steps, config.repeats, config.trials, config.memory_steps) == (2, 2, 1, 10)
    assert quick_config().sizes == scaling.QUICK_SIZES and quick_config().figure == 1


# -- the memory unit -----------------------------------------------------------------------------------

SMALL = dict(figure=7, word_size=4, num_heads=2, k=2, link_k=4, hidden_size=8, input_size=3, output_size=3)


def test_figure_7_memory_counts_the_start_state_that_figure_1_leaves_out():
    N = 50_000
    config = ScalingConfig(**SMALL, memory_steps=3, sizes=(N,), memory_sizes=(N,))
    total = scaling.measure_total_memory("sdnc-linear", N, config)
    unroll = scaling.measure_memory("sdnc-linear", N, config)
    memory_bytes = N * config.word_size * config.itemsize  # the (1, N, W) memory alone
    links_bytes = 2 * N * config.link_k * (4 + config.itemsize)  # the two (1, N, K_L) link tables
    extra = (total["tracemalloc_peak_mib"] - unroll["tracemalloc_peak_mib"]) * scaling.MIB
    assert extra >= memory_bytes + links_bytes
    assert total["kind"] == "memory" and total["steps"] == 3 and total["batch"] == 1
    assert total["base_rss_mib"] > 0 and total["setup_seconds"] >= 0 and total["skipped"] == ""


def test_run_point_measures_figure_7_memory_by_the_total_and_figure_1_by_the_unroll(monkeypatch):
    monkeypatch.setattr(scaling, "measure_total_memory", lambda m, N, c: {"kind": "memory", "unit": "total"})
    monkeypatch.setattr(scaling, "measure_memory", lambda m, N, c: {"kind": "memory", "unit": "unroll"})
    monkeypatch.setattr(scaling, "measure_time", lambda m, N, c: {"kind": "time"})
    seven = ScalingConfig(**SMALL, sizes=(16,), memory_sizes=(16,))
    one = ScalingConfig(models=("sam-lsh",), sizes=(16,), memory_sizes=(16,))
    assert scaling.run_point("dnc", 16, ["memory", "time"], seven) == [
        {"kind": "memory", "unit": "total"},
        {"kind": "time"},
    ]
    assert scaling.run_point("sam-lsh", 16, ["memory"], one) == [{"kind": "memory", "unit": "unroll"}]


def test_a_figure_7_memory_row_has_the_columns_of_a_figure_1_row():
    config = ScalingConfig(**SMALL, memory_steps=2, sizes=(16,), memory_sizes=(16,))
    total = scaling.measure_total_memory("dnc", 16, config)
    assert list(total) == list(scaling.measure_memory("dnc", 16, config))
    assert total["tracemalloc_peak_mib"] > 0 and total["rss_method"] in ("clear_refs", "sampled", "unavailable")


# -- the predictor ----------------------------------------------------------------------------------


def _measured(N, seconds_per_step, peak_mib, base_mib=100.0):
    return {
        "N": N,
        "seconds_per_step": seconds_per_step,
        "measured_seconds": 1.0,
        "process_peak_mib": peak_mib,
        "base_rss_mib": base_mib,
    }


def test_the_dnc_is_extrapolated_quadratically_through_its_last_two_points():
    two = [{"N": 1_000, "v": 1.0}, {"N": 2_000, "v": 4.0}]
    assert budget.extrapolate(two, 4_000, "v", 2.0) == pytest.approx(16.0)
    assert budget.extrapolate(two, 4_000, "v", 1.0) == pytest.approx(10.0)  # Figure 1's rule, unchanged
    assert budget.extrapolate(two[:1], 4_000, "v", 2.0) == pytest.approx(16.0)
    config = ScalingConfig(figure=7, memory_budget=1e6, time_budget=1.0)
    history = [_measured(1_024, 0.25, 1_124.0), _measured(2_048, 1.0, 4_196.0)]  # rises 1 GiB, 4 GiB (×4)
    p = budget.predict_point("dnc", "time", 4_096, history, config)
    assert p.seconds_per_step == pytest.approx(4.0)
    assert p.peak_gib == pytest.approx((100 + 4_096 + 3 * 4_096) / 1_024)  # rise quadratic: 16 GiB
    assert p.reason.startswith("time budget: predicted 4 s/step") and "quadratic in N from N = 1,024" in p.reason
    tight = budget.predict_point("dnc", "time", 4_096, history, ScalingConfig(figure=7, memory_budget=8.0))
    assert "memory budget" in tight.reason and "quadratic in N" in tight.reason
    lsh = budget.predict_point("sdnc-lsh", "time", 10**6, history, config)
    assert lsh.seconds_per_step == 1.0 and "(flat from" in lsh.reason


def test_the_prior_of_the_dnc_counts_a_link_matrix_per_step():
    config = ScalingConfig(figure=7)
    N, T = 4_096, config.steps
    links = (T + 1) * config.batch_size * N * N * 8 / 2**30
    assert budget.prior_peak_gib("dnc", "time", N, config) >= links
    assert budget.prior_peak_gib("sdnc-lsh", "time", N, config) < 1.0


# -- the table, from hand-written rows ------------------------------------------------------------------

MACHINE = {
    "cpu": "test CPU",
    "cores": 2,
    "numpy": "2",
    "numba": "0",
    "jit": "off",
    "load_average_1min": 0.5,
    "load_average_1min_end": 0.75,
}
TABLE_CONFIG = ScalingConfig(figure=7, sizes=(1_024, 2_048, 10**6), memory_sizes=(2_048,), steps=2, repeats=1)


def _row(kind, model, N, **values):
    row = dict.fromkeys(CSV_FIELDS)
    row.update(kind=kind, model=model, N=N, skipped="", dtype="float64", trials=1)
    row.update(values)
    return row


def _rows():
    rows = []
    for model, ms in (("dnc", (250.0, 1_000.0)), ("sdnc-linear", (2.0, 4.0)), ("sdnc-lsh", (2.0, 2.0))):
        for N, t in zip((1_024, 2_048), ms, strict=True):
            rows.append(_row("time", model, N, seconds_per_step=t / 1e3))
    rows.append(_row("time", "dnc", 10**6, skipped="memory budget: predicted", predicted_seconds_per_step=2e5))
    rows.append(_row("time", "sdnc-linear", 10**6, seconds_per_step=2.0))
    rows.append(_row("time", "sdnc-lsh", 10**6, seconds_per_step=2.4e-3))
    for model, mib in (("dnc", 480.0), ("sdnc-linear", 2.0), ("sdnc-lsh", 4.0)):
        rows.append(_row("memory", model, 2_048, tracemalloc_peak_mib=mib, rss_peak_mib=mib / 2))
    return rows


def test_the_figure_7_table_gives_the_dnc_over_each_sdnc_at_every_n():
    lines = format_table(_rows(), TABLE_CONFIG, machine=MACHINE).splitlines()
    header = "| N | DNC | SDNC linear | SDNC LSH | DNC / SDNC linear | DNC / SDNC LSH |"
    assert lines.count(header) == 2  # time and memory
    assert "| 1,024 | 250 | 2 | 2 | 125× | 125× |" in lines
    assert "| 2,048 | 1,000 | 4 | 2 | 250× | 500× |" in lines
    assert "| 1,000,000 | ~200,000,000 | 2,000 | 2.4 | ~100,000× | ~83,333,333× |" in lines
    assert "| 2,048 | 480 / 240 | 2 / 1 | 4 / 2 | 240× / 240× | 120× / 120× |" in lines
    assert "- DNC, N = 1,000,000, time: memory budget: predicted" in lines


def test_the_figure_7_headline_states_the_ratios_at_2048_the_flatness_and_the_machine():
    text = format_table(_rows(), TABLE_CONFIG, machine=MACHINE)
    assert text.splitlines()[0] == "### Figure 7 of Rae et al. 2016, the Sparse DNC against the DNC: headline"
    assert (
        "Machine: test CPU, 2 cores; numpy 2, numba 0 (JIT off); float64, one BLAS thread; "
        "1-minute load 0.5 at the start, 0.75 at the end." in text
    )
    assert "- DNC / SDNC linear: time per step at N = 2,048: 250× (1,000 ms against 4 ms); total memory at " in text
    assert "N = 2,048: 240× tracemalloc (480 MiB against 2 MiB), 240× RSS (240 MiB against 1 MiB)" in text
    assert "- DNC / SDNC LSH: time per step at N = 2,048: 500× (1,000 ms against 2 ms)" in text
    assert "≈ 440× faster and ≈ 240× less memory at N = 2,048" in text
    assert (
        "- SDNC LSH flatness over N ≥ 1,000 (1,024 … 1,000,000, 3 measured points): max / min per-step "
        "time = 1.2× (min 2 ms at N = 1,024, max 2.4 ms at N = 1,000,000)" in text
    )
    assert "- SDNC linear flatness over N ≥ 1,000" in text and "= 1e+03×" in text


def test_without_the_dnc_the_figure_7_table_says_there_is_no_ratio():
    config = ScalingConfig(figure=7, models=("sdnc-lsh",), sizes=(1_024, 2_048), memory_sizes=(2_048,))
    text = format_table([r for r in _rows() if r["model"] == "sdnc-lsh"], config)
    assert "| N | SDNC LSH |" in text and " / SDNC" not in text
    assert "- (no ratio: the DNC and an SDNC are not both in this run)" in text and "Machine:" not in text


def test_figure_7_writes_its_own_plots_and_says_the_memory_unit(tmp_path):
    files = report.write_outputs(tmp_path, _rows(), MACHINE, TABLE_CONFIG, "table")
    assert (files["time_png"].name, files["memory_png"].name) == ("figure7_time.png", "figure7_memory.png")
    for name in ("time_png", "memory_png"):
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "figure1a_time.png").exists()
    doc = json.loads(files["json"].read_text())
    assert doc["config"]["figure"] == 7 and "including the start state" in doc["units"]["memory"]


# -- the CLI, and a quick run end to end -------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--figure", "3"], "refmann bench scaling: --figure: expected 1 or 7, got 3"),
        (["--figure", "7", "--models", "ntm"], "refmann bench scaling: --models: expected names from ['dnc', "),
        (["--figure", "1", "--models", "dnc"], "refmann bench scaling: --models: expected names from ['ntm', "),
    ],
)
def test_cli_refuses_a_bad_figure_in_one_line_with_exit_two(argv, message, tmp_path, capsys):
    assert cli.main(["bench", "scaling", "--quick", "--out", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_cli_refuses_figure_for_other_benchmarks(capsys):
    assert cli.main(["bench", "steps", "--quick", "--figure", "7"]) == 2
    assert "--figure: applies to bench scaling, not to bench steps" in capsys.readouterr().err


@pytest.fixture(scope="module")
def quick_figure7(tmp_path_factory):
    out = tmp_path_factory.mktemp("figure7")
    code = cli.main(["bench", "scaling", "--figure", "7", "--quick", "--repeats", "1", "--out", str(out), "--quiet"])
    return code, out


def test_quick_figure_7_run_writes_every_point_and_its_files(quick_figure7):
    code, out = quick_figure7
    assert code == 0
    with open(out / "points.csv") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_FIELDS
        rows = list(reader)
    keys = {(r["model"], int(r["N"]), r["kind"]) for r in rows}
    assert keys == {(m, N, kind) for m in FIGURE7_LINES for N in (64, 128) for kind in ("time", "memory")}
    assert len(rows) == 12 and all(r["skipped"] == "" for r in rows)
    for r in rows:
        if r["kind"] == "memory":
            assert (int(r["steps"]), int(r["batch"])) == (10, 1) and float(r["tracemalloc_peak_mib"]) > 0
        else:
            assert (int(r["steps"]), int(r["batch"])) == (2, 8) and float(r["seconds_per_step"]) > 0
    for name in ("figure7_time.png", "figure7_memory.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "figure1a_time.png").exists()
    doc = json.loads((out / "points.json").read_text())
    assert doc["config"]["figure"] == 7 and doc["machine"]["load_average_1min_end"] is not None


def test_quick_figure_7_run_tabulates_the_ratio_rows_and_the_headline(quick_figure7, capsys):
    _, out = quick_figure7
    table = (out / "table.md").read_text()
    assert table.count("| N | DNC | SDNC linear | SDNC LSH | DNC / SDNC linear | DNC / SDNC LSH |") == 2
    for N in (64, 128):
        ratio_rows = [line for line in table.splitlines() if line.startswith(f"| {N} |")]
        assert len(ratio_rows) == 2 and all(line.count("×") >= 2 for line in ratio_rows)
    assert "- DNC / SDNC linear: time per step at N = 128:" in table
    assert "- DNC / SDNC LSH: time per step at N = 128:" in table
    assert "SDNC LSH flatness over every measured N (fewer than two at N ≥ 1,000)" in table
    assert table.startswith("### Figure 7 of Rae et al. 2016") and "Machine: " in table


def test_figure_1_runs_and_writes_as_before_next_to_figure_7(tmp_path):
    sizes = {k: v for k, v in SMALL.items() if k not in ("figure", "link_k")}
    config = ScalingConfig(
        models=("sam-lsh",), sizes=(8,), memory_sizes=(8,), steps=1, repeats=1, memory_steps=2, **sizes
    )
    result = scaling.run_scaling(tmp_path, config, isolate=False, progress=lambda line: None)
    assert (tmp_path / "figure1a_time.png").exists() and (tmp_path / "figure1b_memory.png").exists()
    assert not (tmp_path / "figure7_time.png").exists()
    assert result.table.startswith("### Time per step") and "load_average_1min_end" not in result.machine
    assert np.isfinite([r["seconds_per_step"] for r in result.rows]).all()
