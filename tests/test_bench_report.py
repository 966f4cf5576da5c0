"""The outputs of the Figure 1 harness (refmann.bench.report), from hand-written rows: nothing is measured here."""

import csv
import json

from refmann.bench.report import CSV_FIELDS, format_table, write_outputs
from refmann.bench.scaling import ScalingConfig

CONFIG = ScalingConfig(
    models=("ntm", "dam", "sam-linear", "sam-lsh"), sizes=(100, 1_000), memory_sizes=(100,), steps=2, repeats=1
)
MACHINE = {"cpu": "test CPU", "cores": 2, "numpy": "2", "numba": "0", "jit": "off"}


def _row(kind, model, N, **values):
    row = dict.fromkeys(CSV_FIELDS)
    row.update(
        kind=kind,
        model=model,
        N=N,
        batch=8 if kind == "time" else 1,
        steps=2,
        repeats=1,
        skipped="",
        dtype="float64",
        **{key: MACHINE[key] for key in ("cpu", "cores", "numpy", "numba", "jit")},
    )
    row.update(values)
    return row


def _rows():
    rows = []
    for model, ms in (("ntm", 10.0), ("dam", 4.0), ("sam-linear", 2.0), ("sam-lsh", 1.0)):
        rows.append(_row("time", model, 100, seconds_per_step=ms / 1e3, trials=1))
        rows.append(_row("memory", model, 100, tracemalloc_peak_mib=ms, rss_peak_mib=2 * ms, rss_method="sampled"))
    rows.append(_row("time", "ntm", 1_000, skipped="time budget: predicted", predicted_seconds_per_step=0.25))
    rows.append(_row("time", "sam-lsh", 1_000, seconds_per_step=1.5e-3, trials=1))
    return rows


def test_the_csv_has_the_columns_in_order_and_none_as_an_empty_cell(tmp_path):
    rows = _rows()
    files = write_outputs(tmp_path, rows, MACHINE, CONFIG, "table")
    with open(files["csv"]) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_FIELDS
        written = list(reader)
    assert len(written) == len(rows)
    assert written[0]["seconds_per_step"] == "0.01" and written[0]["tracemalloc_peak_mib"] == ""
    doc = json.loads(files["json"].read_text())
    assert doc["points"] == rows and doc["machine"] == MACHINE and doc["config"]["sizes"] == [100, 1_000]
    assert files["table"].read_text() == "table\n"
    for name in ("time_png", "memory_png"):
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_time_table_gives_ms_per_step_and_the_dense_models_over_sam_lsh():
    lines = format_table(_rows(), CONFIG).splitlines()
    assert "| N | NTM | DAM | SAM linear | SAM LSH | NTM / SAM LSH | DAM / SAM LSH |" in lines
    assert "| 100 | 10 | 4 | 2 | 1 | 10× | 4× |" in lines


def test_an_extrapolated_value_is_marked_with_a_tilde_and_its_reason_listed():
    table = format_table(_rows(), CONFIG)
    assert "| 1,000 | ~250 | – | – | 1.5 | ~167× | – |" in table.splitlines()
    assert "- NTM, N = 1,000, time: time budget: predicted" in table


def test_the_memory_table_and_ratios_give_tracemalloc_then_rss():
    table = format_table(_rows(), CONFIG)
    assert "| 100 | 10 / 20 | 4 / 8 | 2 / 4 | 1 / 2 |" in table.splitlines()
    assert "- Memory at N = 100: NTM / SAM LSH = 10× (tracemalloc), 10× (RSS)" in table
    assert "- SAM LSH time per step from N = 100 to 1,000 (batch 8): 1 → 1.5 ms, growth 1.5×" in table


def test_without_sam_lsh_the_table_says_there_is_no_ratio():
    config = ScalingConfig(models=("dam",), sizes=(100,), memory_sizes=(100,))
    table = format_table([r for r in _rows() if r["model"] == "dam"], config)
    assert "| N | DAM |" in table and "/ SAM LSH" not in table
    assert table.splitlines()[-1] == "- (no ratio: SAM LSH was not in this run)"
