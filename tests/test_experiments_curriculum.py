"""refmann/experiments/curriculum.py: SAM, DAM and NTM climb the exponential curriculum on associative recall."""

import json

import pytest

from refmann.experiments import curriculum


def test_the_quick_run_climbs_and_reports_the_levels(tmp_path, capsys):
    rows = curriculum.main(["--quick", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert [r["model"] for r in rows] == ["sam", "dam", "ntm"]
    assert "| model | N | level reached | sequences | minutes | stopped |" in out
    for r in rows:
        assert set(r) == set(curriculum.ROW_KEYS)
        assert r["stopped"] == "sequences" and r["sequences"] == curriculum.QUICK["sequences"]
        # QUICK's threshold (50 nats a sequence) is met at once: every model doubles from 2 past 8
        assert r["level"] >= 8 and "8" in r["reached"]
        log = [json.loads(line) for line in (tmp_path / r["model"] / "log.jsonl").read_text().splitlines()]
        levels = [rec["level"] for rec in log]
        assert levels == sorted(levels) and levels[-1] == r["level"]
        assert all(b in (a, 2 * a, 16) for a, b in zip(levels, levels[1:]))  # doubling, capped at max_items 16
        seconds, sequences = r["reached"]["8"]
        first = next(rec for rec in log if rec["level"] >= 8)
        assert (seconds, sequences) == (first["seconds"], first["sequences"])
    assert rows[0]["memory_size"] == curriculum.QUICK["sam_memory"]
    assert rows[1]["memory_size"] == rows[2]["memory_size"] == curriculum.QUICK["dense_memory"]
    assert (tmp_path / "levels.png").stat().st_size > 0
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert saved["rows"] == rows and (tmp_path / "table.md").read_text().strip() == curriculum.format_table(rows)
    with pytest.raises(SystemExit) as exc:  # the runs exist: only --resume continues them
        curriculum.main(["--quick", "--quiet", "--out", str(tmp_path)])
    assert exc.value.code == 2
    # the budget is the trainer's own clock, saved in the checkpoint: a finished run resumes to itself
    again = curriculum.main(["--quick", "--quiet", "--out", str(tmp_path), "--resume", "--models", "dam"])
    assert again[0]["level"] == rows[1]["level"] and again[0]["sequences"] == rows[1]["sequences"]


def test_level_times_gives_the_first_record_at_or_above_each_level():
    records = [
        {"seconds": 1.0, "sequences": 5, "level": 2},
        {"seconds": 2.0, "sequences": 10, "level": 8},
        {"seconds": 3.0, "sequences": 15, "level": 32},
        {"seconds": 4.0, "sequences": 20, "level": 32},
    ]
    assert curriculum.level_times(records, levels=(4, 8, 16, 32, 64)) == {
        4: (2.0, 10),
        8: (2.0, 10),
        16: (3.0, 15),
        32: (3.0, 15),
    }


def _error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--minutes", "0"], "--minutes"),
        (["--sequences", "0"], "--sequences"),
        (["--max-items", "1"], "--max-items"),
        (["--models", "sam", "sam"], "--models"),
        (["--models", "transformer"], "--models"),
        (["--window", "-3"], "--window"),
        (["--index", "kd"], "--index"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as exc:
        curriculum.main(["--quick", "--quiet", "--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and flag in lines[0]
    assert not (tmp_path / "sam").exists()


def test_run_refuses_unknown_options_and_models(tmp_path):
    with pytest.raises(TypeError, match="unknown options"):
        curriculum.run(out=tmp_path, **{**curriculum.QUICK, "minute": 1})
    with pytest.raises(ValueError, match="models"):
        curriculum.run(out=tmp_path, **{**curriculum.QUICK, "models": ("gru",)})
    with pytest.raises(ValueError, match="stall_minutes"):
        curriculum.run(out=tmp_path, **{**curriculum.QUICK, "stall_minutes": float("nan")})
    with pytest.raises(ValueError, match="sequences"):
        curriculum.run(out=tmp_path, **{**curriculum.QUICK, "sequences": 0})
