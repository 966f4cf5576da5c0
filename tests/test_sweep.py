"""refmann sweep: the plan, resuming, the table, and a tiny sweep on a 2-worker Dask LocalCluster."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refmann import cli
from refmann.train import TrainConfig, Trainer, sweep
from refmann.train.regimes import REGIMES, describe, regime

pytest.importorskip("distributed")

TINY = dict(sequences=32, batch_size=8, eval_every=16, eval_size=4, memory_size=6, word_size=4, hidden_size=8)
TINY_FLAGS = [
    "--sequences", "32", "--batch-size", "8", "--eval-every", "16", "--memory-size", "6",
    "--word-size", "4", "--hidden-size", "8", "--max-length", "3", "--quiet",
]  # fmt: skip


def _base(**kw):
    return TrainConfig(**{**TINY, "task_kwargs": {"max_length": 3}, **kw})


def test_plan_is_the_product_in_order_with_one_folder_each():
    runs = sweep.plan(_base(), models=["lstm", "dam"], tasks=["copy"], seeds=[0, 1], grid={"lr": [1e-3, 3e-3]})
    assert len(runs) == 2 * 2 * 2
    assert len({r.folder for r in runs}) == len(runs)
    assert [(r.model, r.config["lr"], r.seed) for r in runs[:4]] == [
        ("lstm", 1e-3, 0),
        ("lstm", 1e-3, 1),
        ("lstm", 3e-3, 0),
        ("lstm", 3e-3, 1),
    ]
    assert runs[0].folder == "copy/lstm-lr=0.001-s0" and runs[0].setting == "lr=0.001"
    for r in runs:  # every run is a whole TrainConfig
        assert TrainConfig.from_dict(r.config).to_dict() == r.config


def test_plan_puts_a_model_option_into_model_kwargs_of_the_models_that_have_it():
    runs = sweep.plan(_base(), models=["lstm", "sam"], tasks=["copy"], seeds=[0], grid={"k": [2, 4]})
    by_model = {(r.model, r.setting): r.config["model_kwargs"] for r in runs}
    assert by_model[("sam", "k=2")] == {"k": 2} and by_model[("sam", "k=4")] == {"k": 4}
    assert by_model[("lstm", "k=2")] == {}  # the LSTM has no k: the setting is a no-op for it


def test_plan_keeps_the_base_model_options_and_gives_a_gridded_optimizer_its_own_rate():
    base = _base(model_kwargs={"index": "linear"}, optimizer="rmsprop", lr=3e-4)
    runs = sweep.plan(base, models=["sam"], tasks=["copy"], seeds=[0], grid={"optimizer": ["adam", "sgd"]})
    assert all(r.config["model_kwargs"] == {"index": "linear"} for r in runs)
    assert [r.config["lr"] for r in runs] == [1e-3, 1e-2]  # not the base's RMSProp rate


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(models=["lstm", "lstm"]), "models: expected no repeats"),
        (dict(models=["nope"]), "models: expected names"),
        (dict(tasks=[]), "tasks: expected at least one"),
        (dict(seeds=[1, 1]), "seeds: expected no repeats"),
        (dict(grid={"lr": []}), "grid: lr has no values"),
        (dict(grid={"lr": [1e-3, 1e-3]}), "repeats a value"),
        (dict(grid={"nonsense": [1]}), "neither a training field"),
    ],
)
def test_plan_refuses_bad_sweeps(kwargs, match):
    args = {**dict(models=["lstm"], tasks=["copy"], seeds=[0]), **kwargs}
    with pytest.raises(ValueError, match=match):
        sweep.plan(_base(), **args)


def test_collapse_is_learning_then_losing_it():
    assert not sweep.collapsed_after([(1, 30.0), (2, 0.5), (3, 0.0)], 1.0)
    assert sweep.collapsed_after([(1, 30.0), (2, 0.5), (3, 20.0)], 1.0)
    assert not sweep.collapsed_after([(1, 30.0), (2, 20.0)], 1.0)  # never learned
    assert not sweep.collapsed_after([], 1.0)


def test_median_to_target_counts_a_seed_that_never_got_there_as_past_the_budget():
    rows = [dict(budget=100, sequences_to_target=s) for s in (10, 30, None)]
    assert sweep.median_to_target(rows) == 30
    rows = [dict(budget=100, sequences_to_target=s) for s in (10, None, None)]
    assert sweep.median_to_target(rows) is None


def test_finished_runs_are_skipped_and_an_interrupted_one_resumes_bit_identically(tmp_path):
    """Without Dask: run_sweep's own bookkeeping with a client stand-in that runs tasks in this process."""
    runs = sweep.plan(_base(), models=["lstm"], tasks=["copy"], seeds=[0, 1])
    # the reference: seed 1 trained in one go
    ref = Trainer(TrainConfig.from_dict(runs[1].config), tmp_path / "ref")
    ref.run()
    # seed 0 finished already; seed 1 stopped after 2 of its 4 steps (a checkpoint at step 2)
    out = tmp_path / "sweep"
    sweep.train_run(runs[0].config, str(out / runs[0].folder))
    t = Trainer(TrainConfig.from_dict(runs[1].config), out / runs[1].folder)
    for _ in range(2):
        t.train_step()
    t.save_checkpoint()
    submitted = []

    class InProcess:
        def submit(self, fn, *args, key, pure):
            submitted.append(key)
            return _Done(fn(*args))

    class _Done:
        def __init__(self, value):
            self.value = value

        def result(self):
            return self.value

    import distributed

    original = distributed.as_completed
    distributed.as_completed = lambda futures: list(futures)
    try:
        rows = sweep.run_sweep(runs, out, client=InProcess(), progress=False)
    finally:
        distributed.as_completed = original
    assert submitted == [f"refmann-{runs[1].folder}"]  # seed 0 was not trained again
    a = np.load(ref.out / "checkpoint.npz")
    b = np.load(out / runs[1].folder / "checkpoint.npz")
    params = [k for k in a.files if k.startswith("param")]
    assert params and all(np.array_equal(a[k], b[k]) for k in params)
    assert [r["finished"] for r in rows] == [True, True]
    assert (out / "results.md").exists() and (out / "figure2-copy.png").exists()


def test_the_cli_sweeps_on_a_two_worker_local_cluster_and_a_rerun_skips_everything(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", "--models", "lstm", "dam", "--tasks", "copy", "--seeds", "0", "1", "--workers", "2"]
    argv += TINY_FLAGS + ["--grid", "lr=1e-3,3e-3", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "refmann sweep: 8 runs" in printed and "| copy | dam | lr=0.003 | 0, 1 |" in printed
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 8 and all(r["finished"] and r["sequences"] == 32 for r in rows)
    assert all(r["curve"] and r["curve"][-1][0] == 32 for r in rows)  # the last evaluation at the budget
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("copy/*/checkpoint.npz")}
    assert cli.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("copy/*/checkpoint.npz")} == mtimes  # nothing retrained
    assert cli.main(["sweep", "--report", "--out", str(out)]) == 0


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--grid", "lr"], "--grid: expected KEY=V1,V2"),
        (["--grid", "lr=1e-3", "--grid", "lr=2e-3"], "given twice"),
        (["--grid", "seed=1,2"], "use --seeds"),
        (["--grid", "wat=1,2"], "neither a training field"),
        (["--grid", "batch_size=0,2"], "batch_size"),
    ],
)
def test_the_cli_refuses_a_bad_grid_with_one_line(tmp_path, capsys, extra, match):
    argv = ["sweep", "--models", "lstm", "--seeds", "0", *TINY_FLAGS, "--out", str(tmp_path / "x"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refmann sweep:") and match in err and "\n" not in err
    assert not (tmp_path / "x" / "copy").exists()  # nothing ran


def test_a_sweep_folder_is_not_reused_with_other_settings(tmp_path, capsys):
    out = tmp_path / "sw"
    runs = sweep.plan(_base(), models=["lstm"], tasks=["copy"], seeds=[0])
    sweep.write_plan(out, runs)
    argv = ["sweep", "--models", "lstm", "--seeds", "0", *TINY_FLAGS, "--lr", "0.5", "--out", str(out)]
    assert cli.main(argv) == 2
    assert "other settings" in capsys.readouterr().err


def test_report_of_a_folder_without_a_sweep_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["sweep", "--report", "--out", str(tmp_path)]) == 2
    assert "holds no sweep" in capsys.readouterr().err


def _tiny_sweep(out, models, task, seeds):
    """A finished sweep folder, each run trained in this process (a few steps)."""
    task_kwargs = {"max_length": 3} if task == "copy" else {"max_items": 3, "bits": 3}
    runs = []
    for model in models:
        runs += sweep.plan(_base(task=task, task_kwargs=task_kwargs), models=[model], tasks=[task], seeds=seeds)
    for r in runs:
        sweep.train_run(r.config, str(out / r.folder))
    sweep.write_plan(out, runs)
    return runs


def test_merge_gathers_sweeps_of_other_tasks_into_one_table_and_one_figure2(tmp_path, capsys):
    a = _tiny_sweep(tmp_path / "a", ["lstm"], "copy", [0, 1])
    b = _tiny_sweep(tmp_path / "b", ["lstm", "dam"], "associative_recall", [0])
    out = tmp_path / "all"
    assert cli.main(["sweep", "--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 runs of 2 sweep(s) merged" in printed
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["folder"] for r in rows) == sorted(r.folder for r in a + b)
    assert all(r["finished"] for r in rows)  # read through the links
    for r in a + b:  # linked, not copied: the same files
        assert (out / r.folder).is_symlink()
        assert (out / r.folder / "log.jsonl").samefile(tmp_path / ("a" if r in a else "b") / r.folder / "log.jsonl")
    for name in ("figure2.png", "figure2-copy.png", "figure2-associative_recall.png"):
        assert (out / name).stat().st_size > 0
    # merging again (the same sources) changes nothing; a report of the merged folder works as any
    assert cli.main(["sweep", "--merge", str(tmp_path / "a"), "--out", str(out)]) == 0
    assert len(sweep.read_plan(out)) == 4
    assert cli.main(["sweep", "--report", "--out", str(out)]) == 0


def test_merge_takes_a_results_json_whose_run_folders_are_gone(tmp_path, capsys):
    """A sweep's results.json is its archive: merged without the run folders, it gives the same rows."""
    import shutil

    _tiny_sweep(tmp_path / "a", ["lstm"], "copy", [0, 1])
    b = _tiny_sweep(tmp_path / "b", ["dam"], "associative_recall", [0])
    sweep.write_report(tmp_path / "a")
    live = json.loads((tmp_path / "a" / "results.json").read_text())
    assert all(row["config"] == r.config for row, r in zip(live, sweep.read_plan(tmp_path / "a")))
    kept = tmp_path / "kept.json"
    shutil.copy(tmp_path / "a" / "results.json", kept)
    shutil.rmtree(tmp_path / "a")  # the run folders are gone (another machine, another session)
    out = tmp_path / "all"
    assert cli.main(["sweep", "--merge", str(kept), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert "3 runs of 2 sweep(s) merged" in capsys.readouterr().out
    rows = {r["folder"]: r for r in json.loads((out / "results.json").read_text())}
    assert [rows[r["folder"]] for r in live] == live  # the archived rows, as they were
    assert rows[b[0].folder]["finished"] and (out / b[0].folder).is_symlink()
    assert (out / "figure2.png").stat().st_size > 0
    assert cli.main(["sweep", "--report", "--out", str(out)]) == 0  # the archive stays with the merged folder
    assert json.loads((out / "results.json").read_text()) == list(rows.values())
    # another config under a folder name the archive holds is refused
    other = [{**live[0], "config": {**live[0]["config"], "lr": 0.5}}]
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert cli.main(["sweep", "--merge", str(tmp_path / "other.json"), "--out", str(out)]) == 2
    assert "in more than one sweep with other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, match",
    [
        ("not json", "is not a sweep's results.json"),
        ('{"a": 1}', "expected a JSON list of rows"),
        ('[{"folder": "copy/lstm-s0"}]', "row 0 lacks task"),
        (json.dumps([{**dict.fromkeys(sweep.ROW_KEYS), "folder": "copy/x", "curve": "x"}]), "curve is not a list"),
        (json.dumps([{**dict.fromkeys(sweep.ROW_KEYS), "folder": "copy/x", "curve": []}]), "expected a config dict"),
    ],
)
def test_merge_refuses_a_file_that_is_not_a_results_json_with_one_line(tmp_path, capsys, text, match):
    (tmp_path / "bad.json").write_text(text)
    assert cli.main(["sweep", "--merge", str(tmp_path / "bad.json"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err


def test_merge_refuses_clashing_runs_a_missing_folder_and_itself(tmp_path, capsys):
    _tiny_sweep(tmp_path / "a", ["lstm"], "copy", [0])
    other = sweep.plan(_base(lr=0.5), models=["lstm"], tasks=["copy"], seeds=[0])
    sweep.write_plan(tmp_path / "c", other)  # the same folder name, another config
    (tmp_path / "c" / other[0].folder).mkdir(parents=True)
    cases = [
        ([str(tmp_path / "a"), str(tmp_path / "c")], "in more than one sweep with other settings"),
        ([str(tmp_path / "nothing")], "merge: " + str(tmp_path / "nothing") + " holds no sweep"),
        ([str(tmp_path / "out")], "is the output folder itself"),
    ]
    (tmp_path / "out").mkdir()
    sweep.write_plan(tmp_path / "out", [])
    for sources, match in cases:
        assert cli.main(["sweep", "--merge", *sources, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and "\n" not in err
    assert cli.main(["sweep", "--merge", str(tmp_path / "a"), "--report", "--out", str(tmp_path / "o2")]) == 2
    assert "--merge" in capsys.readouterr().err


def test_regimes_merge_from_general_to_specific():
    assert regime("anything", "anything") == REGIMES[("*", "*")]
    for (model, task), fields in REGIMES.items():
        if "*" not in (model, task):
            assert regime(model, task).items() >= fields.items()


# -- the regime defaults and the optimizer options (refmann train, refmann curves) -----------------------


def test_train_takes_unset_flags_from_the_regime_and_given_flags_over_it(tmp_path, monkeypatch):
    monkeypatch.setitem(
        REGIMES, ("lstm", "copy"), {"batch_size": 2, "lr": 5e-4, "optimizer_options": {"centered": False}}
    )
    small = ["--model", "lstm", "--sequences", "4", "--hidden-size", "4", "--max-length", "2", "--quiet"]
    assert cli.main(["train", *small, "--out", str(tmp_path / "a")]) == 0
    a = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (a["batch_size"], a["optimizer"], a["lr"], a["optimizer_options"]) == (
        2,
        "rmsprop",
        5e-4,
        {"centered": False},
    )
    assert cli.main(["train", *small, "--batch-size", "4", "--lr", "1e-3", "--out", str(tmp_path / "b")]) == 0
    b = json.loads((tmp_path / "b" / "config.json").read_text())
    assert (b["batch_size"], b["lr"], b["optimizer_options"]) == (4, 1e-3, {"centered": False})
    # another optimizer: neither the regime's rate nor its RMSProp options
    assert cli.main(["train", *small, "--optimizer", "adam", "--out", str(tmp_path / "c")]) == 0
    c = json.loads((tmp_path / "c" / "config.json").read_text())
    assert (c["optimizer"], c["lr"], c["optimizer_options"]) == ("adam", 1e-3, {})


def test_a_regimes_model_options_reach_model_kwargs_under_set_and_merge_key_by_key(tmp_path, monkeypatch):
    monkeypatch.setitem(REGIMES, ("*", "copy"), {"model_options": {"k": 2, "delta": 0.01}})
    monkeypatch.setitem(REGIMES, ("sam", "copy"), {"model_options": {"k": 3}})
    assert regime("sam", "copy")["model_options"] == {"k": 3, "delta": 0.01}
    assert "k=3, delta=0.01" in describe("sam", "copy")
    small = ["--model", "sam", "--sequences", "2", "--hidden-size", "4", "--max-length", "2", "--memory-size", "8"]
    assert cli.main(["train", *small, "--quiet", "--out", str(tmp_path / "a")]) == 0
    a = json.loads((tmp_path / "a" / "config.json").read_text())
    assert a["model_kwargs"] == {"index": "lsh", "k": 3, "delta": 0.01}  # the registry's index, the regime's k
    assert cli.main(["train", *small, "--set", "k=1", "--quiet", "--out", str(tmp_path / "b")]) == 0
    b = json.loads((tmp_path / "b" / "config.json").read_text())
    assert b["model_kwargs"] == {"index": "lsh", "k": 1, "delta": 0.01}  # --set wins
    assert "model_options" not in regime("lstm", "priority_sort")  # no entry sets any for it


def test_the_number_of_heads_comes_from_the_regime_unless_given(tmp_path, monkeypatch):
    assert regime("dam", "priority_sort")["num_heads"] == 4  # docs/results.md, "More heads, DAM"
    assert regime("sam", "priority_sort")["num_heads"] == 1 == regime("dam", "copy")["num_heads"]
    assert "4 heads" in describe("dam", "priority_sort") and "heads" not in describe("dam", "copy")
    monkeypatch.setitem(REGIMES, ("dam", "copy"), {"num_heads": 3})
    small = ["--sequences", "2", "--hidden-size", "4", "--max-length", "2", "--memory-size", "8", "--quiet"]
    assert cli.main(["train", "--model", "dam", *small, "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["num_heads"] == 3
    assert cli.main(["train", "--model", "dam", *small, "--num-heads", "2", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["num_heads"] == 2  # the flag wins
    # a sweep takes each model's own: three heads for DAM, one for SAM
    argv = ["sweep", "--models", "dam", "sam", "--seeds", "0", "--workers", "1", *small, "--out", str(tmp_path / "s")]
    assert cli.main(argv) == 0
    heads = {r.model: r.config["num_heads"] for r in sweep.read_plan(tmp_path / "s")}
    assert heads == {"dam": 3, "sam": 1}


def test_optimizer_options_reach_the_update(tmp_path):
    plain = TrainConfig(**{**TINY, "optimizer_options": {"centered": False}})
    update = plain.make_update()
    assert update.keywords["centered"] is False
    t = Trainer(plain, tmp_path / "p")
    t.train_step()
    assert "gbar" not in t.opt_state  # the plain form keeps no running mean
    with pytest.raises(ValueError, match="optimizer_options: decay"):
        TrainConfig(optimizer_options={"decay": 1.5})
    with pytest.raises(TypeError, match="optimizer_options: .*unexpected keyword"):
        TrainConfig(optimizer="adam", optimizer_options={"centered": False})
    with pytest.raises(ValueError, match="the learning rate is lr"):
        TrainConfig(optimizer_options={"lr": 1.0})


def test_a_run_saved_before_optimizer_options_existed_still_resumes(tmp_path):
    t = Trainer(TrainConfig(**TINY), tmp_path / "old")
    t.train_step()
    t.save_checkpoint()
    saved = json.loads((tmp_path / "old" / "config.json").read_text())
    del saved["optimizer_options"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    assert Trainer(TrainConfig(**TINY), tmp_path / "old", resume=True).step == 1


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--optimizer-options", "centered"], "--optimizer-options: expected KEY=VALUE"),
        (["--optimizer-options", "wat=1"], "--optimizer-options: rmsprop() got an unexpected keyword"),
        (["--data", "nowhere"], "--data: task copy reads no data"),
    ],
)
def test_train_refuses_bad_optimizer_options_and_data_with_one_line(tmp_path, capsys, flags, match):
    argv = ["train", "--model", "lstm", "--sequences", "4", "--quiet", "--out", str(tmp_path / "x"), *flags]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err
