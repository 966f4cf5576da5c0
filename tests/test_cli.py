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
    assert "| copy | lstm | default | 0, 1 |" in table and "| copy | sam | default | 0, 1 |" in table
    # curves is a sweep of one task: its table, its figure, and the runs in TASK/MODEL-sSEED
    assert (tmp_path / "figure2-copy.png").exists() and (tmp_path / "copy" / "sam-s1" / "summary.json").exists()
    assert (tmp_path / "results.md").read_text() in table
    assert cli.main(args) == 0  # run again: every run is finished, nothing retrains
    assert "4 of 4 runs" not in capsys.readouterr().err


def test_bench_lsh_quick_prints_a_recall_table(capsys):
    assert cli.main(["bench", "lsh", "--quick"]) == 0
    first_table = capsys.readouterr().out.split("\n\n")[0]  # the recall table (then the bucket table)
    lines = [line for line in first_table.splitlines() if line.startswith("| 1,000")]
    assert len(lines) == 4
    recalls = [float(line.split("|")[5]) for line in lines]
    assert all(0.0 <= r <= 1.0 for r in recalls)


def test_bench_steps_quick_prints_per_step_times(capsys):
    assert cli.main(["bench", "steps", "--quick", "--models", "sam-lsh"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sam-lsh")]
    assert len(rows) == 2 and all(float(r.split("|")[3]) > 0 for r in rows)


def test_bench_steps_takes_the_figure_7_lines_too(capsys):
    assert cli.main(["bench", "steps", "--quick", "--sizes", "64", "--models", "dnc", "sdnc-lsh", "sam"]) == 0
    out = capsys.readouterr().out
    for name in ("dnc", "sdnc-lsh", "sam-lsh"):
        rows = [line for line in out.splitlines() if line.startswith(f"| {name} ")]
        assert len(rows) == 1 and float(rows[0].split("|")[3]) > 0, name


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


def test_bench_steps_count_calls_prints_the_per_step_counts_that_step_calls_returns(capsys):
    from refmann.bench.steps import step_calls

    assert cli.main(["bench", "steps", "--count-calls", "--quick", "--sizes", "200", "--models", "sam-lsh"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sam-lsh")]
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    python_calls, numba_calls, numpy_calls, constructors = (float(c) for c in cells[2:6])
    assert python_calls > numpy_calls >= constructors > 0 and numba_calls > 0
    # the counts follow the code: one step of SAM calls the index's update and query and the three
    # step kernels (the revert adds the ring's and the rows' kernels and the index's undo)
    fused = step_calls("sam-lsh", 200, batch_size=2, steps=4, calls=2)
    assert fused["numba_calls"] == pytest.approx(numba_calls, abs=1)
    assert fused["numba_calls"] >= 5
    assert fused["python_calls"] > fused["numpy_calls"]


def test_bench_steps_breakdown_times_the_parts_inside_the_step_and_restores_them(capsys):
    from refmann.bench.steps import BREAKDOWN_PARTS
    from refmann.memory import LSHIndex
    from refmann.memory.sparse_memory import SparseMemory

    before = {
        (c, m): getattr(LSHIndex if c == "LSHIndex" else SparseMemory, m)
        for c, m in [("LSHIndex", "update"), ("SparseMemory", "lra_write")]
    }
    assert cli.main(["bench", "steps", "--breakdown", "--quick", "--sizes", "200", "--models", "sam-lsh"]) == 0
    out = capsys.readouterr().out
    step = float(out.split("N = 200: ")[1].split(" ms")[0])
    rows = {
        cells[0]: float(cells[1])
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in out.splitlines())
        if len(cells) == 3 and "." in cells[0] and cells[1][:1].isdigit()
    }
    assert {"SAMCore.step_forward", "SAMCore.step_backward", "LSHIndex.update", "LSHIndex.query"} <= set(rows)
    assert rows["SAMCore.step_forward"] + rows["SAMCore.step_backward"] <= step  # parts of the step
    assert rows["LSHIndex.update"] <= rows["SparseMemory.lra_write"] <= rows["SAMCore.step_forward"]  # they nest
    assert {(c, m): getattr(LSHIndex if c == "LSHIndex" else SparseMemory, m) for c, m in before} == before
    assert all(len(part) == 3 for part in BREAKDOWN_PARTS)


# -- bad arguments: one line naming the flag, exit 2, no traceback, nothing run ------------------------

SMALL = ["--max-length", "2", "--sequences", "16", "--batch-size", "8", "--memory-size", "5", "--word-size", "3"]
SMALL += ["--hidden-size", "4", "--eval-every", "8", "--quiet"]
TRAIN = ["train", *SMALL, "--out", "{tmp}/new"]
CURVES = ["curves", *SMALL, "--models", "lstm", "--seeds", "0", "--jobs", "1", "--out", "{tmp}/new"]
DEMO = ["demo", "--quiet", "--out", "{tmp}/new"]

# (command line, text the one-line message must hold: the flag, or the thing that is wrong)
BAD_ARGUMENTS = [
    (TRAIN + ["--sequences", "0"], "--sequences"),
    (TRAIN + ["--sequences", "-5"], "--sequences"),
    (TRAIN + ["--sequences", "abc"], "--sequences"),
    (TRAIN + ["--batch-size", "0"], "--batch-size"),
    (TRAIN + ["--lr", "nan"], "--lr"),
    (TRAIN + ["--lr", "0"], "--lr"),
    (TRAIN + ["--lr", "-1"], "--lr"),
    (TRAIN + ["--lr", "inf"], "--lr"),
    (TRAIN + ["--clip", "-1"], "--clip"),
    (TRAIN + ["--clip", "nan"], "--clip"),
    (TRAIN + ["--clip-norm", "-1"], "--clip-norm"),
    (TRAIN + ["--clip-norm", "inf"], "--clip-norm"),
    (TRAIN + ["--memory-size", "0"], "--memory-size"),
    (TRAIN + ["--word-size", "0"], "--word-size"),
    (TRAIN + ["--num-heads", "0"], "--num-heads"),
    (TRAIN + ["--hidden-size", "0"], "--hidden-size"),
    (TRAIN + ["--max-length", "0"], "--max-length"),
    (TRAIN + ["--eval-every", "0"], "--eval-every"),
    (TRAIN + ["--seed", "-1"], "--seed"),
    (TRAIN + ["--model", "nosuch"], "--model"),
    (TRAIN + ["--task", "nosuch"], "--task"),
    (TRAIN + ["--optimizer", "nosuch"], "--optimizer"),
    (TRAIN + ["--out", "{afile}"], "--out"),
    (TRAIN + ["--out", "{afile}/sub"], "--out"),
    (TRAIN + ["--model", "sam", "--set", "k"], "--set"),
    (TRAIN + ["--set", "nosuch=1"], "--set"),
    (TRAIN + ["--model", "sam", "--set", "k=0"], "--set k=0"),
    (TRAIN + ["--model", "sam", "--set", "k=100"], "--set k=100"),
    (TRAIN + ["--model", "sam", "--set", "index=nosuch"], "--set index=nosuch"),
    (TRAIN + ["--model", "sam", "--set", "index_kwargs={num_tables: 8}"], "--set index_kwargs"),
    (TRAIN + ["--set", "dtype=float16"], "--set dtype=float16"),
    (TRAIN + ["--set", "memory_init=bogus"], "--set memory_init=bogus"),
    (TRAIN + ["--set", "memory_size=7"], "--memory-size"),
    (TRAIN + ["--set", "input_size=3"], "--set input_size=3"),
    (TRAIN + ["--task", "associative_recall", "--max-length", "3"], "--max-length"),
    (TRAIN + ["--out", "{run}", "--resume", "--lr", "0.5"], "another config"),
    (TRAIN + ["--out", "{truncated}", "--resume"], "truncated"),
    (TRAIN + ["--out", "{garbage}", "--resume"], "corrupt"),
    (TRAIN + ["--out", "{negative}", "--resume"], "step"),
    (TRAIN + ["--out", "{run}"], "--resume"),
    (DEMO + ["--sequences", "0"], "--sequences"),
    (DEMO + ["--sequences", "1.5"], "--sequences"),
    (DEMO + ["--seed", "-1"], "--seed"),
    (DEMO + ["--out", "{afile}"], "--out"),
    (DEMO + ["--out", "{run}"], "--resume"),
    (DEMO + ["--out", "{run}", "--resume"], "another config"),
    (DEMO + ["--out", "{truncated}", "--resume"], "truncated"),
    (CURVES + ["--jobs", "0"], "--jobs"),
    (CURVES + ["--jobs", "-1"], "--jobs"),
    (CURVES + ["--seeds", "-1"], "--seeds"),
    (CURVES + ["--seeds", "0", "0"], "--seeds"),
    (CURVES + ["--models", "nosuch"], "--models"),
    (CURVES + ["--models", "lstm", "lstm"], "--models"),
    (CURVES + ["--models", "lstm", "sam", "--set", "k=0"], "--set k=0 (model sam)"),
    (CURVES + ["--sequences", "0"], "--sequences"),
    (CURVES + ["--lr", "nan"], "--lr"),
    (CURVES + ["--out", "{afile}"], "--out"),
    (CURVES + ["--task", "associative_recall", "--max-length", "3"], "--max-length"),
    (["gradcheck", "no_such_op"], "no_such_op"),
    (["gradcheck", "--seed", "-1"], "--seed"),
    (["gradcheck", "--seed", "x"], "--seed"),
    (["golden", "--out", "{tmp}/g", "--model", "nosuch"], "--model"),
    (["golden", "--out", "{tmp}/g", "--steps", "0"], "--steps"),
    (["golden", "--out", "{tmp}/g", "--batch-size", "0"], "--batch-size"),
    (["golden", "--out", "{tmp}/g", "--seed", "-1"], "--seed"),
    (["golden", "--out", "{afile}"], "--out"),
    (["golden"], "--out"),
    (["bench", "nosuch"], "nosuch"),
    (["bench", "lsh", "--quick", "--sizes", "100"], "--sizes"),
    (["bench", "lsh", "--quick", "--steps", "3"], "--steps"),
    (["bench", "steps", "--quick", "--batch-size", "0"], "--batch-size"),
    (["bench", "steps", "--quick", "--sizes", "0"], "--sizes"),
    (["bench", "steps", "--quick", "--sizes", "2"], "--sizes"),
    (["bench", "steps", "--quick", "--models", "nosuch"], "--models"),
    (["bench", "steps", "--quick", "--repeats", "7"], "--repeats"),
    (["bench", "steps", "--quick", "--updates", "7"], "--updates"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--steps", "0"], "--steps"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--repeats", "0"], "--repeats"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--trials", "0"], "--trials"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--time-budget", "nan"], "--time-budget"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--memory-budget", "0"], "--memory-budget"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--point-timeout", "-1"], "--point-timeout"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--models", "nosuch"], "--models"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--sizes", "2"], "--sizes"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--memory-sizes", "0"], "--memory-sizes"),
    (["bench", "scaling", "--quick", "--out", "{tmp}/s", "--memory-steps", "0"], "--memory-steps"),
    (["bench", "scaling", "--quick", "--out", "{afile}"], "--out"),
    (["bench", "footprint", "--quick", "--updates", "0"], "--updates"),
    (["bench", "footprint", "--quick", "--length", "0"], "--length"),
    (["bench", "footprint", "--quick", "--sizes", "0"], "--sizes"),
    (["bench", "footprint", "--quick", "--sizes", "100", "200"], "--sizes"),
    (["bench", "footprint", "--quick", "--batch-size", "0"], "--batch-size"),
    (["bench", "footprint", "--quick", "--dtype", "float16"], "--dtype"),
    (["bench", "footprint", "--quick", "--versus-lstm"], "--versus-lstm"),
    (["bench", "footprint", "--quick", "--breakdown"], "--breakdown"),
    (["bench", "steps", "--quick", "--breakdown", "--versus-lstm"], "--breakdown"),
    (["bench", "steps", "--quick", "--count-calls", "--versus-lstm"], "--count-calls"),
    (["bench", "footprint", "--quick", "--count-calls"], "--count-calls"),
    (["info", "--bogus"], "--bogus"),
    (["info", "extra"], "extra"),
    ([], "command"),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A small finished training run (log, checkpoint, config, summary)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["train", *SMALL, "--out", str(out)]) == 0
    return out


def _exit_code(argv):
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


def _fill(argv, tmp_path, finished_run):
    """Replace {tmp}, {afile} (a file), {run} (a copy of the finished run) and {truncated}/{garbage}/{negative}
    (copies whose checkpoint is cut in half / not an .npz / says step = -5) in ``argv``."""
    import shutil

    import numpy as np

    paths = {"tmp": tmp_path, "afile": tmp_path / "afile"}
    paths["afile"].write_text("a file, not a folder")
    text = " ".join(argv)
    for name in ("run", "truncated", "garbage", "negative"):
        if "{" + name + "}" in text:
            paths[name] = shutil.copytree(finished_run, tmp_path / name)
    if "truncated" in paths:
        checkpoint = paths["truncated"] / "checkpoint.npz"
        checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    if "garbage" in paths:
        (paths["garbage"] / "checkpoint.npz").write_bytes(b"not an npz file")
    if "negative" in paths:
        checkpoint = paths["negative"] / "checkpoint.npz"
        with np.load(checkpoint, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        np.savez(checkpoint, **{**arrays, "step": np.array(-5)})
    out = []
    for arg in argv:
        for name, path in paths.items():
            arg = arg.replace("{" + name + "}", str(path))
        out.append(arg)
    return out


@pytest.mark.parametrize("argv, names", BAD_ARGUMENTS, ids=[" ".join(a[:1] + a[-3:]) for a, _ in BAD_ARGUMENTS])
def test_a_bad_argument_gives_one_line_naming_it_and_exit_2(argv, names, tmp_path, finished_run, capsys):
    argv = _fill(argv, tmp_path, finished_run)
    assert _exit_code(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("refmann") and names in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert "trained " not in captured.out  # refused up front: nothing ran
    assert not (tmp_path / "new" / "log.jsonl").exists()


def test_verbose_logs_the_traceback_of_a_refused_resume(finished_run, tmp_path, capsys, caplog):
    argv = _fill(TRAIN + ["--out", "{run}", "--resume", "--lr", "0.5", "-v"], tmp_path, finished_run)
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().startswith("refmann train: resume: ")
    assert any(record.exc_info for record in caplog.records)


def test_zero_turns_the_clips_off_and_bad_values_are_not_replaced(capsys):
    args = cli.build_parser().parse_args(["train", "--clip", "0", "--clip-norm", "0"])
    config = cli._train_config(args)
    assert config.clip is None and config.clip_norm is None
    args = cli.build_parser().parse_args(["train", "--clip", "2.5", "--sequences", "1e3"])
    assert cli._train_config(args).clip == 2.5 and args.sequences == 1000


def test_bench_steps_quick_honours_batch_size(capsys):
    assert cli.main(["bench", "steps", "--quick", "--sizes", "100", "--batch-size", "3"]) == 0
    assert "batch 3," in capsys.readouterr().out


def test_bench_footprint_quick_honours_updates(capsys):
    assert cli.main(["bench", "footprint", "--quick", "--sizes", "100", "--updates", "2", "--length", "2"]) == 0
    assert "update 2/2:" in capsys.readouterr().err


# -- the run report and interrupts ----------------------------------------------------------------------


def _small_config():
    from refmann.train import TrainConfig

    return TrainConfig(
        model="ntm",
        task="copy",
        task_kwargs={"max_length": 2},
        sequences=16,
        batch_size=8,
        memory_size=5,
        word_size=3,
        hidden_size=4,
    )


def test_run_report_of_a_run_interrupted_before_its_first_evaluation(tmp_path, capsys):
    from refmann.train import Trainer

    summary = Trainer(_small_config(), tmp_path / "run").summary(interrupted=True)
    assert summary[f"final_eval_{summary['metric']}"] is None and summary["sequences_to_target"] is None
    cli._report_run(summary, tmp_path / "run")
    out = capsys.readouterr().out
    assert "0 sequences" in out and "(interrupted)" in out
    assert "none yet" in out and "pictures: none yet" in out


def test_ctrl_c_in_the_first_step_exits_130_with_the_report_and_the_hint(tmp_path, capsys, monkeypatch):
    from refmann.train import trainer

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.Trainer, "train_step", interrupted)
    for command in (["train", *SMALL], ["demo", "--quiet"]):
        out = tmp_path / command[0]
        assert cli.main([*command, "--out", str(out)]) == 130
        captured = capsys.readouterr()
        assert "evaluation bit errors per sequence: none yet" in captured.out
        assert captured.err.strip().splitlines()[-1] == cli.RESUME_HINT
        assert (out / "checkpoint.npz").exists()


def test_ctrl_c_escaping_the_trainer_exits_130_with_the_hint(tmp_path, capsys, monkeypatch):
    from refmann.train import trainer

    def run_then_interrupted(self):
        self.save_checkpoint()
        raise KeyboardInterrupt  # e.g. while plotting, after the trainer's own handler

    monkeypatch.setattr(trainer.Trainer, "run", run_then_interrupted)
    assert cli.main(["train", *SMALL, "--out", str(tmp_path / "run")]) == 130
    captured = capsys.readouterr()
    assert captured.err.strip() == cli.RESUME_HINT and "Traceback" not in captured.err


def test_ctrl_c_during_set_up_exits_130_and_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    from refmann.train import trainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.Trainer, "__init__", interrupted)
    assert cli.main(["demo", "--quiet", "--out", str(tmp_path / "demo")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "interrupted before the first checkpoint: nothing saved; run the same command again"


@pytest.mark.parametrize("command", ["curves", "sweep"])
def test_ctrl_c_in_curves_or_a_sweep_exits_130_and_says_to_run_it_again(tmp_path, capsys, monkeypatch, command):
    from refmann.train import sweep

    def interrupted(*args, **kwargs):  # what run_sweep raises when Ctrl-C reaches it (the workers are stopped)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    argv = [command, *SMALL, "--models", "lstm", "--seeds", "0", "--out", str(tmp_path)]
    if command == "sweep":
        argv += ["--tasks", "copy"]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert "run the same command again to continue" in err and "Traceback" not in err


def test_ctrl_c_in_a_benchmark_exits_130(capsys, monkeypatch):
    from refmann.bench import steps

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(steps, "step_time", interrupted)
    assert cli.main(["bench", "steps", "--quick", "--sizes", "100"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGINT") or __import__("os").name != "posix", reason="POSIX")
@pytest.mark.parametrize("when", ["training", "set-up"])
def test_a_real_sigint_to_demo_exits_130_with_the_hint(tmp_path, when):
    """SIGINT to ``python -m refmann demo``: during training (once the Trainer wrote config.json) or
    right after the first line (most likely while setting up). Never a traceback, always 130."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "demo"
    env = dict(os.environ, PYTHONPATH=str(Path(cli.__file__).parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "refmann", "demo", "--quiet", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell may ignore it
    )
    try:
        assert proc.stdout.readline().startswith("refmann demo:")
        if when == "training":
            deadline = time.monotonic() + 300
            while not (out / "config.json").exists():
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.05)
            time.sleep(1.0)  # into training: the first evaluation comes after ~60 steps
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    if when == "training":
        assert last == cli.RESUME_HINT and (out / "checkpoint.npz").exists()
        assert "evaluation bit errors per sequence:" in stdout
    else:
        assert last.startswith("interrupted") and "same command" in last


def test_a_reader_that_leaves_the_pipe_gets_no_traceback():
    """``refmann ... | head``: stdout's reader closes the pipe before the output is written."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "refmann", "course", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # before the interpreter has even imported refmann
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err
