import json

import pytest

from refmann import cli, ops


def test_gradcheck_prints_a_row_for_every_op_and_exits_zero(capsys):
    assert cli.main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for name in ops.OP_NAMES:
        assert f"\n{name} " in out
    assert "FAIL" not in out


def test_gradcheck_json_selects_ops(capsys):
    assert cli.main(["gradcheck", "softmax", "dense_write", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"softmax", "dense_write"}
    assert all(entry["ok"] and entry["max_rel_error"] < 1e-7 for entry in data.values())


def test_gradcheck_rejects_an_unknown_op(capsys):
    assert cli.main(["gradcheck", "no_such_op"]) == 2
    assert "unknown op" in capsys.readouterr().err


def test_info_and_version(capsys):
    assert cli.main(["info"]) == 0
    assert "numba" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0


def test_usage_errors_exit_two():
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2


def test_demo_trains_and_says_where_its_pictures_are(tmp_path, capsys):
    assert cli.main(["demo", "--sequences", "64", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "learning curve:" in out and "memory access:" in out
    assert (tmp_path / "demo" / "learning_curve.png").stat().st_size > 0


def test_curves_trains_every_model_and_seed_and_tabulates(tmp_path, capsys):
    args = [
        "curves",
        "--task",
        "copy",
        "--max-length",
        "2",
        "--sequences",
        "16",
        "--batch-size",
        "8",
        "--memory-size",
        "5",
        "--word-size",
        "3",
        "--hidden-size",
        "4",
        "--eval-every",
        "8",
        "--models",
        "lstm",
        "sam",
        "--seeds",
        "0",
        "1",
        "--jobs",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(args) == 0
    table = capsys.readouterr().out
    assert "| LSTM |" in table and "| SAM |" in table
    assert (tmp_path / "curves.png").exists() and (tmp_path / "sam-s1" / "summary.json").exists()


def test_bench_lsh_quick_prints_a_recall_table(capsys):
    assert cli.main(["bench", "lsh", "--quick"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1,000")]
    assert len(lines) == 4
    recalls = [float(line.split("|")[5]) for line in lines]
    assert all(0.0 <= r <= 1.0 for r in recalls)


def test_bench_steps_quick_prints_per_step_times(capsys):
    assert cli.main(["bench", "steps", "--quick", "--models", "sam-lsh"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sam-lsh")]
    assert len(rows) == 2 and all(float(r.split("|")[3]) > 0 for r in rows)


def test_train_sam_with_an_lsh_index(tmp_path, capsys):
    out = tmp_path / "sam"
    assert (
        cli.main(
            [
                "train",
                "--model",
                "sam",
                "--set",
                "k=2",
                "--set",
                "index=lsh",
                "--task",
                "copy",
                "--max-length",
                "2",
                "--sequences",
                "16",
                "--batch-size",
                "8",
                "--memory-size",
                "8",
                "--word-size",
                "4",
                "--hidden-size",
                "8",
                "--eval-every",
                "8",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    import json

    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "sam" and config["model_kwargs"] == {"k": 2, "index": "lsh"}


def test_set_rejects_an_option_no_model_has_with_exit_2(capsys):
    assert cli.main(["train", "--model", "ntm", "--set", "k=2", "--sequences", "4", "--out", "/nonexistent"]) == 2
    assert "no model among ntm has an option 'k'" in capsys.readouterr().err


def test_set_values_are_parsed_and_reach_only_models_with_the_field():
    overrides = cli.model_overrides(["k=8", "index=linear", "strength=false"], ["sam", "dam", "lstm"])
    assert overrides["sam"] == {"index": "linear", "k": 8, "strength": False}
    assert overrides["dam"] == {"strength": False}
    assert overrides["lstm"] == {}


def test_bench_steps_versus_lstm_prints_one_row_per_model_with_both_ratios(capsys):
    assert cli.main(["bench", "steps", "--versus-lstm", "--quick", "--sizes", "200", "--models", "sam-lsh", "dam"]) == 0
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| sam-lsh") or line.startswith("| dam")
    ]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        model_ms, same_ms, ratio = float(cells[2]), float(cells[3]), float(cells[5])
        assert ratio == pytest.approx(model_ms / same_ms, rel=0.02)  # the ratio is of the printed minima
