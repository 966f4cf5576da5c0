"""refmann/experiments/babi.py: LSTM, DAM, SAM, DNC and SDNC trained jointly on bAbI, scored per task."""

import json

import numpy as np
import pytest

from refmann.experiments import babi
from refmann.tasks.babi import write_family

# two models keep the CI run short; the quick defaults train all five (the docs' run)
_FAST = ["--quick", "--quiet", "--models", "lstm", "sdnc"]


def _check_row(r, tasks):
    assert set(r) == set(babi.ROW_KEYS)
    assert r["tasks"] == list(tasks) and list(r["errors"]) == [str(t) for t in tasks]
    errors = np.array(list(r["errors"].values()))
    assert np.all((errors >= 0) & (errors <= 1))
    assert r["mean_error"] == pytest.approx(errors.mean())
    assert r["failed"] == int(np.sum(errors > 0.05))
    assert r["sequences"] == babi.QUICK["sequences"] and r["batch_size"] == babi.QUICK["batch_size"]


def test_the_quick_run_scores_every_task_and_writes_the_table(tmp_path, capsys):
    rows = babi.main([*_FAST, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert [r["model"] for r in rows] == ["lstm", "sdnc"]
    for r in rows:
        _check_row(r, babi.QUICK["tasks"])
        assert r["data"] == "generated" and r["out_dir"] == str(tmp_path / f"{r['model']}-s0")
        assert (tmp_path / f"{r['model']}-s0" / "checkpoint.npz").exists()
    assert "| task | lstm | sdnc | DNC (published) |" in out and "| 1 |" in out and "9.0 ± 12.6" in out
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert saved["rows"] == rows and saved["command"].startswith("python -m refmann.experiments.babi")
    assert (tmp_path / "table.md").read_text().strip() == babi.format_table(rows)
    with pytest.raises(SystemExit) as exc:  # the runs exist: only --resume continues them
        babi.main([*_FAST, "--out", str(tmp_path)])
    assert exc.value.code == 2
    # a finished run resumes to itself: same model, same test errors
    again = babi.main([*_FAST, "--out", str(tmp_path), "--resume"])
    assert again == rows


def test_the_official_files_give_the_generated_run(tmp_path):
    """--data on the files write_family writes trains and scores exactly as the generator does."""
    tasks = (1, 6)
    config = {**babi.QUICK, "models": ("lstm",), "tasks": tasks}
    write_family(tmp_path / "data", tasks, num_questions=config["questions_per_task"], seed=0, family="en")
    generated = babi.run(progress=False, **config)
    official = babi.run(progress=False, **{**config, "data": str(tmp_path / "data"), "family": "en"})
    assert [r["data"] for r in generated + official] == ["generated", "en"]
    _check_row(official[0], tasks)
    assert official[0]["errors"] == generated[0]["errors"]


def _row(model, seed, errors):
    return {
        "model": model, "seed": seed, "tasks": [1, 2], "data": "generated", "sequences": 100, "batch_size": 4,
        "errors": {"1": errors[0], "2": errors[1]}, "mean_error": float(np.mean(errors)),
        "failed": int(sum(e > 0.05 for e in errors)), "train_seconds": 10.0 + seed, "out_dir": None,
    }  # fmt: skip


def test_format_table_gives_mean_and_sd_over_seeds_beside_the_published_column():
    rows = [_row("dam", 0, [0.1, 0.5]), _row("dam", 1, [0.3, 0.5]), _row("sam", 0, [0.0, 0.02])]
    lines = babi.format_table(rows).splitlines()
    assert lines[2] == "| task | dam | sam | DNC (published) |"
    assert lines[4] == "| 1 | 20.0 ± 14.1 | 0.0 | 9.0 ± 12.6 |"
    assert lines[5] == "| 2 | 50.0 ± 0.0 | 2.0 | 39.2 ± 20.5 |"
    assert lines[6].startswith("| mean | 35.0 ± 7.1 | 1.0 | 16.7 ± 7.6")
    assert lines[7].startswith("| failed (of 2) | 2.0 ± 0.0 | 0.0 |")
    assert "1/2 seed(s)" in lines[0] and "SDNC mean 6.4 ± 2.5" in lines[-1]
    assert babi.format_table([]) == "(no rows)"


def _error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--sequences", "0"], "--sequences"),
        (["--lr", "nan"], "--lr"),
        (["--models", "sam", "sam"], "--models"),
        (["--models", "transformer"], "--models"),
        (["--tasks", "0"], "--tasks"),
        (["--tasks", "7"], "bAbI task"),  # not one our generator writes
        (["--data", "/nonexistent/babi"], "bAbI task"),
        (["--family", "klingon", "--data", "."], "bAbI task"),
        (["--resume"], "--resume"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(tmp_path, capsys, argv, flag):
    out = [] if argv == ["--resume"] else ["--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        babi.main(["--quick", "--quiet", *out, *argv])
    assert exc.value.code == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and flag in lines[0]
    assert not list(tmp_path.iterdir())


def test_run_refuses_unknown_options_and_models():
    with pytest.raises(TypeError, match="unknown options"):
        babi.run(**{**babi.QUICK, "sequence": 10})
    with pytest.raises(ValueError, match="models"):
        babi.run(**{**babi.QUICK, "models": ("gru",)})
    with pytest.raises(ValueError, match="models"):
        babi.run(**{**babi.QUICK, "models": ()})
