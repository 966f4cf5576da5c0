"""The Figure 1 harness (refmann.bench.scaling): the model table, the config, a whole run and its files, the CLI.

Nothing here asserts a timing: the runs use tiny models and only the shape of what they write is checked.
The predictor is tested in test_bench_budget.py, the table and plots in test_bench_report.py.
"""

import csv
import json

import pytest

from refmann import cli
from refmann.bench import _proc, budget, report, scaling
from refmann.bench.scaling import (
    CSV_FIELDS,
    MODELS,
    ScalingConfig,
    quick_config,
    run_scaling,
)

TINY = dict(
    sizes=(8, 16),
    memory_sizes=(8, 16),
    steps=2,
    repeats=1,
    memory_steps=3,
    batch_size=2,
    word_size=4,
    num_heads=2,
    k=2,
    hidden_size=8,
    input_size=3,
    output_size=3,
)


def test_the_model_table_names_each_model_once_and_the_public_dicts_follow_it():
    assert MODELS == ("ntm", "dam", "sam-linear", "sam-lsh", "sam-kdforest")
    for m in MODELS:
        spec = scaling._model_spec(m)
        assert (scaling.LABELS[m], scaling.COLORS[m]) == (spec.label, spec.color)
        assert (scaling.TIME_EXPONENT[m], scaling.MEMORY_EXPONENT[m]) == (spec.time_exponent, spec.memory_exponent)
    assert [m for m in MODELS if scaling._model_spec(m).dense] == ["ntm", "dam"]
    assert scaling.RATIO_REFERENCE in MODELS
    with pytest.raises(ValueError, match="model: expected one of"):
        scaling._model_spec("lstm")


def test_build_model_makes_each_model_through_the_public_constructors_sam_with_k():
    config = ScalingConfig(**dict(TINY, k=3))
    built = {m: scaling.build_model(m, 16, config) for m in MODELS}
    assert {m: type(model).__name__ for m, model in built.items()} == {
        "ntm": "NTM",
        "dam": "DAM",
        "sam-linear": "SAM",
        "sam-lsh": "SAM",
        "sam-kdforest": "SAM",
    }
    assert built["sam-lsh"].core.K == built["sam-linear"].core.K == built["sam-kdforest"].core.K == 3
    assert (built["sam-lsh"].config.index, built["sam-kdforest"].config.index) == ("lsh", "kdforest")


def test_the_names_that_moved_out_stay_importable_from_scaling():
    for module, names in (
        (budget, ("Prediction", "extrapolate", "predict_point", "prior_peak_gib", "skipped_row")),
        (report, ("CSV_FIELDS", "format_table", "plot_memory", "plot_time", "write_outputs")),
        (_proc, ("GIB", "MIB", "machine_info")),
    ):
        for name in names:
            assert getattr(scaling, name) is getattr(module, name), name
    assert set(scaling.__all__) <= set(dir(scaling))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling")
    lines = []
    result = run_scaling(out, ScalingConfig(**TINY), isolate=False, progress=lines.append)
    return out, result, lines


def test_quick_run_writes_a_row_per_model_size_and_kind_with_the_csv_schema(tiny_run):
    out, result, lines = tiny_run
    with open(out / "points.csv") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_FIELDS
        rows = list(reader)
    keys = {(r["model"], int(r["N"]), r["kind"]) for r in rows}
    assert keys == {(m, N, kind) for m in MODELS for N in (8, 16) for kind in ("time", "memory")}
    assert len(rows) == len(keys) == len(lines) == 4 * len(MODELS)
    for r in rows:
        assert r["skipped"] == "" and r["dtype"] == "float64" and r["jit"] in ("on", "off") and r["cpu"]
        assert float(r["setup_seconds"]) >= 0 and float(r["seconds_per_step"]) > 0
        if r["kind"] == "time":
            assert int(r["batch"]) == 2 and int(r["steps"]) == 2 and r["tracemalloc_peak_mib"] == ""
        else:
            assert int(r["batch"]) == 1 and int(r["steps"]) == 3
            assert float(r["tracemalloc_peak_mib"]) > 0
            assert r["rss_method"] in ("clear_refs", "sampled", "unavailable")


def test_quick_run_writes_json_with_machine_config_and_points(tiny_run):
    out, result, _ = tiny_run
    doc = json.loads((out / "points.json").read_text())
    for key in ("cpu", "cores", "numpy", "numba", "jit", "python"):
        assert key in doc["machine"]
    assert doc["config"]["sizes"] == [8, 16] and doc["config"]["word_size"] == 4
    assert len(doc["points"]) == 4 * len(MODELS)
    assert set(CSV_FIELDS) <= set(doc["points"][0])


def test_quick_run_draws_both_figures_and_tabulates_the_ratios(tiny_run):
    out, result, _ = tiny_run
    for name in ("figure1a_time.png", "figure1b_memory.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text()
    assert table.strip() == result.table.strip()
    assert "| NTM | DAM | SAM linear | SAM LSH | SAM k-d forest | NTM / SAM LSH | DAM / SAM LSH |" in table
    assert "Memory at N = 16: NTM / SAM LSH" in table
    assert "SAM LSH time per step from N = 8 to 16" in table
    assert sum(line.startswith("| 8 |") for line in table.splitlines()) == 2  # time and memory tables


def test_a_tiny_time_budget_skips_every_point_after_the_first_with_the_reason(tmp_path):
    config = ScalingConfig(
        **dict(TINY, models=("dam", "sam-lsh"), sizes=(8, 16, 32), memory_sizes=(8,)), time_budget=1e-9
    )
    result = run_scaling(tmp_path, config, isolate=False, progress=lambda line: None)
    time_rows = {(r["model"], r["N"]): r for r in result.rows if r["kind"] == "time"}
    for model in ("dam", "sam-lsh"):
        assert time_rows[model, 8]["skipped"] == ""
        for N in (16, 32):
            row = time_rows[model, N]
            assert row["skipped"].startswith("time budget: predicted")
            assert row["seconds_per_step"] is None and row["predicted_seconds_per_step"] > 0
    # DAM is extrapolated linearly in N, SAM-LSH flat
    dam8 = time_rows["dam", 8]["seconds_per_step"]
    assert time_rows["dam", 32]["predicted_seconds_per_step"] == pytest.approx(4 * dam8)
    assert time_rows["sam-lsh", 32]["predicted_seconds_per_step"] == time_rows["sam-lsh", 8]["seconds_per_step"]
    assert "~" in result.table and "time budget" in result.table
    assert (tmp_path / "figure1a_time.png").exists()


@pytest.mark.parametrize(
    "field, value",
    [
        ("models", ("ntm", "lstm")),
        ("models", ()),
        ("models", "ntm"),
        ("sizes", (100, 0)),
        ("sizes", (2,)),
        ("memory_sizes", (100.5,)),
        ("steps", 0),
        ("repeats", 0),
        ("memory_steps", -1),
        ("batch_size", 1.5),
        ("time_budget", 0.0),
        ("memory_budget", -1.0),
        ("memory_budget", float("inf")),
        ("dtype", "int32"),
        ("dtype", "float16"),
        ("word_size", True),
        ("point_timeout", "60"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(field, value):
    with pytest.raises(ValueError, match=field):
        ScalingConfig(**{field: value})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("steps", 0, "steps: expected an int >= 1, got 0"),
        ("batch_size", 1.5, "batch_size: expected an int >= 1, got 1.5"),
        ("seed", -1, "seed: expected an int >= 0, got -1"),
        ("sizes", (2,), "sizes: expected memory sizes N >= k = 4, got 2"),
        ("point_timeout", "60", "point_timeout: expected a positive finite number, got '60'"),
    ],
)
def test_bad_arguments_say_what_was_expected_and_what_came(field, value, message):
    with pytest.raises(ValueError) as info:
        ScalingConfig(**{field: value})
    assert str(info.value) == message


def test_run_scaling_refuses_a_config_of_the_wrong_type(tmp_path):
    with pytest.raises(TypeError, match="config"):
        run_scaling(tmp_path, {"sizes": (8,)})


def test_quick_config_is_the_ci_run():
    config = quick_config()
    assert config.sizes == (100, 1_000, 10_000) and config.memory_sizes == config.sizes
    assert config.models == MODELS and config.repeats == 2 and config.steps <= 10
    assert 65_536 in ScalingConfig().memory_sizes and max(ScalingConfig().sizes) == 10**7


def test_cli_runs_one_isolated_point_and_reports_the_files(tmp_path, capsys):
    assert (
        cli.main(
            ["bench", "scaling", "--quick", "--models", "sam-lsh", "--sizes", "16", "--out", str(tmp_path), "--quiet"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| 16 |" in out and "points:" in out and "plots:" in out
    rows = json.loads((tmp_path / "points.json").read_text())["points"]
    assert {(r["kind"], r["N"]) for r in rows} == {("time", 16), ("memory", 16)}
    assert all(r["skipped"] == "" for r in rows)


def test_cli_bad_argument_exits_two_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse's own errors exit 2 through SystemExit
        cli.main(["bench", "scaling", "--quick", "--steps", "0", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "steps" in capsys.readouterr().err
    assert not (tmp_path / "points.csv").exists()


def test_a_failing_point_is_recorded_and_its_larger_sizes_skipped(tmp_path, monkeypatch):
    def boom(model, N, kinds, config):
        raise RuntimeError("killed: RSS 99 GiB passed 12 GiB")

    monkeypatch.setattr(scaling, "run_point", boom)
    config = ScalingConfig(**dict(TINY, models=("ntm",), memory_sizes=()))
    rows = run_scaling(tmp_path, config, isolate=False, progress=lambda line: None).rows
    assert [r["skipped"] for r in rows] == [
        "killed: RSS 99 GiB passed 12 GiB",
        "not run: N = 8 killed: RSS 99 GiB passed 12 GiB",
    ]


def test_trials_take_the_median_of_several_processes_and_keep_the_spread(tmp_path):
    config = scaling.quick_config(models=("sam-lsh",), sizes=(100,), memory_sizes=(100,), trials=3)
    result = scaling.run_scaling(tmp_path, config, isolate=False, progress=lambda line: None)
    (row,) = [r for r in result.rows if r["kind"] == "time"]
    assert row["trials"] == 3
    assert row["seconds_per_step_min"] <= row["seconds_per_step"] <= row["seconds_per_step_max"]
    with pytest.raises(ValueError, match="trials"):
        scaling.ScalingConfig(trials=0)
