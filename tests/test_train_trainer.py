"""Training: the loss falls, runs resume bit-identically, Ctrl-C saves, files are what they claim."""

import json
import shutil

import numpy as np
import pytest

from refmann import _io, cli
from refmann.train import TrainConfig, Trainer
from tests.trainer_helpers import TINY, stop_at


@pytest.mark.parametrize("model", ["lstm", "ntm", "dam"])
def test_a_few_hundred_steps_on_tiny_copy_make_the_loss_fall(tmp_path, model):
    config = TrainConfig(model=model, sequences=8 * 150, optimizer="adam", lr=1e-2, seed=0, **TINY)
    trainer = Trainer(config, tmp_path / model, progress=False)
    summary = trainer.run()
    losses = [r["loss"] for r in trainer.records]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.8 * first, f"{model}: loss {first:.3f} -> {last:.3f}"
    assert summary["steps"] == 150 and not summary["interrupted"]
    for name in ("config.json", "log.jsonl", "checkpoint.npz", "summary.json", "learning_curve.png", "access.png"):
        assert (tmp_path / model / name).stat().st_size > 0


def _without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_a_resumed_run_continues_bit_identically(tmp_path, monkeypatch):
    config = TrainConfig(model="dam", sequences=8 * 12, optimizer="rmsprop", seed=3, **TINY)
    straight = Trainer(config, tmp_path / "straight", progress=False)
    straight.run()

    original = Trainer.train_step

    def stop_at_step_5(self):  # step 5: no log record, no checkpoint; one loss awaits the next record
        if self.step == 5:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", stop_at_step_5)
    assert Trainer(config, tmp_path / "split", progress=False).run()["interrupted"]
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = Trainer(config, tmp_path / "split", resume=True, progress=False)
    assert resumed.step == 5 and len(resumed.losses_since_log) == 1
    resumed.run()
    for key, value in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[key], value, err_msg=key)
    assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
    assert _without_seconds(resumed.records) == _without_seconds(straight.records)
    on_disk = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert _without_seconds(on_disk) == _without_seconds(straight.records)


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, monkeypatch):
    config = TrainConfig(model="ntm", sequences=8 * 10, seed=1, **TINY)
    trainer = Trainer(config, tmp_path, progress=False)
    original = Trainer.train_step

    def interrupt_at_step_4(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupt_at_step_4)
    summary = trainer.run()
    assert summary["interrupted"] and summary["steps"] == 4
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = Trainer(config, tmp_path, resume=True, progress=False)
    assert resumed.step == 4
    assert resumed.run()["steps"] == 10


def test_checkpoints_hold_no_pickles_and_refuse_another_config(tmp_path):
    config = TrainConfig(model="lstm", sequences=8 * 3, seed=0, **TINY)
    Trainer(config, tmp_path, progress=False).run()
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
        assert {"step", "rng", "config"} <= set(data.files)
    with pytest.raises(ValueError, match=r"written with another configuration: seed \(saved 0, given 1\)"):
        Trainer(TrainConfig(model="lstm", sequences=8 * 3, seed=1, **TINY), tmp_path, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        Trainer(config, tmp_path, progress=False)


@pytest.fixture(scope="module")
def _stopped_run_once(tmp_path_factory):
    config = TrainConfig(model="lstm", sequences=8 * 6, seed=0, **TINY)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(Trainer, "plot", lambda self: None)
        stop_at(monkeypatch, 3)
        run = tmp_path_factory.mktemp("stopped") / "run"
        assert Trainer(config, run, progress=False).run()["interrupted"]
    return config, run


@pytest.fixture
def stopped_run(_stopped_run_once, tmp_path):
    """A copy of an LSTM run of 6 steps stopped at step 3: optimizer state, one loss awaiting the next record."""
    config, run = _stopped_run_once
    shutil.copytree(run, tmp_path / "run")
    return config, tmp_path / "run"


def _edit_checkpoint(run, edit):
    path = run / "checkpoint.npz"
    arrays = _io.load_npz(path)
    edit(arrays)
    _io.atomic_savez(path, **arrays)


def _rng_of_another_kind(a):
    a["rng"] = np.array(json.dumps(np.random.MT19937(0).state, default=lambda x: x.tolist()))


CORRUPTIONS = {
    "truncated": (None, r"is unreadable \(BadZipFile"),
    "negative step": (lambda a: a.update(step=np.array(-5)), r"'step' = -5: expected an integer in \[0, 6\]"),
    "step past the budget": (lambda a: a.update(step=np.array(7)), r"'step' = 7"),
    "float step": (lambda a: a.update(step=np.array(3.0)), r"'step': expected a scalar"),
    "no rng": (lambda a: a.pop("rng"), r"missing entries \['rng'\]"),
    "rng not json": (lambda a: a.update(rng=np.array("{")), r"'rng': not JSON"),
    "rng of another kind": (_rng_of_another_kind, r"'rng': not the state of a PCG64"),
    "nan seconds": (lambda a: a.update(seconds=np.array(np.nan)), r"'seconds' = nan"),
    "param shape": (lambda a: a.update({"param/output.weight": np.zeros((1, 1))}), r"param/output.weight: expected"),
    "param missing": (lambda a: a.pop("param/output.weight"), r"parameters: missing \['output.weight'\]"),
    "param unknown": (lambda a: a.update({"param/extra": np.zeros(1)}), r"unknown \['extra'\]"),
    "opt step": (lambda a: a.update({"opt/step": np.array(2)}), r"optimizer state: 'step' = 2, expected 3"),
    "opt slot": (
        lambda a: [a.pop(k) for k in list(a) if k.startswith("opt/n/")],
        r"optimizer state: expected the slots",
    ),
    "opt dtype": (lambda a: a.update({"opt/n/output.weight": a["opt/n/output.weight"].astype(np.float32)}), r"opt/n/"),
    "losses": (lambda a: a.update(losses_since_log=np.zeros(2)), r"'losses_since_log': expected float64 shape \(1,\)"),
    "next_eval": (lambda a: a.update(next_eval=np.array(0)), r"'next_eval' = 0"),
    "unknown entry": (lambda a: a.update(surprise=np.array(1)), r"unknown entries \['surprise'\]"),
    "format": (lambda a: a.update(format=np.array(3)), r"format 3: this refmann reads formats 1 and 2"),
    "curriculum": (lambda a: a.update({"curriculum/current_max": np.array(2)}), r"a curriculum state, but"),
    "config": (
        lambda a: a.update(config=np.array(json.dumps({**json.loads(str(a["config"])), "seed": 7}))),
        r"checkpoint.npz was written with another configuration: seed \(saved 7, given 0\)",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_damaged_or_foreign_checkpoint_is_refused_with_a_message_that_says_what_is_wrong(stopped_run, case):
    config, run = stopped_run
    edit, message = CORRUPTIONS[case]
    if edit is None:
        data = (run / "checkpoint.npz").read_bytes()
        (run / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    else:
        _edit_checkpoint(run, edit)
    with pytest.raises(ValueError, match=message) as info:
        Trainer(config, run, resume=True, progress=False)
    assert str(info.value).startswith(f"resume: {run / 'checkpoint.npz'}")


def test_a_resumed_curriculum_keeps_its_level_and_a_wrong_level_is_refused(tmp_path, monkeypatch):
    config = TrainConfig(
        model="lstm",
        sequences=8 * 12,
        curriculum=True,
        curriculum_threshold=1e9,
        curriculum_window=2,
        seed=0,
        **{**TINY, "task_kwargs": {"max_length": 8, "bits": 4}},
    )
    stop_at(monkeypatch, 7)
    stopped = Trainer(config, tmp_path, progress=False)
    stopped.run()
    monkeypatch.undo()
    resumed = Trainer(config, tmp_path, resume=True, progress=False)
    assert resumed.curriculum.current_max == stopped.curriculum.current_max == 8
    assert resumed.curriculum.state_dict()["losses"].tolist() == stopped.curriculum.state_dict()["losses"].tolist()
    _edit_checkpoint(tmp_path, lambda a: a.update({"curriculum/current_max": np.array(9)}))
    with pytest.raises(ValueError, match=r"curriculum: state\['current_max'\]: expected an integer in \[1, 8\]"):
        Trainer(config, tmp_path, resume=True, progress=False)


def test_resume_refuses_another_configuration_than_config_json_naming_the_fields(stopped_run):
    config, run = stopped_run
    other = TrainConfig(**{**config.to_dict(), "seed": 1, "lr": 0.5})
    with pytest.raises(ValueError, match=r"config.json was written with another configuration: ") as info:
        Trainer(other, run, resume=True, progress=False)
    assert "lr (saved 0.0001, given 0.5); seed (saved 0, given 1)" in str(info.value)
    (run / "checkpoint.npz").unlink()  # config.json alone decides too
    with pytest.raises(ValueError, match=r"seed \(saved 0, given 1\)"):
        Trainer(other, run, resume=True, progress=False)
    (run / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json is unreadable \(JSONDecodeError"):
        Trainer(config, run, resume=True, progress=False)


def test_resume_drops_log_records_past_the_checkpoint_from_the_file_too(stopped_run):
    config, run = stopped_run
    log_path = run / "log.jsonl"
    kept = log_path.read_text()
    assert [json.loads(line)["step"] for line in kept.splitlines()] == [2]
    # what a kill between the log write and the checkpoint write leaves: records ahead of the checkpoint
    ahead = {"step": 4, "sequences": 32, "loss": 0.5, "bit_errors": 1.0, "seconds": 0.1}
    log_path.write_text(kept + json.dumps(ahead) + "\n")
    (run / ".checkpoint.npz.abc123.tmp").write_bytes(b"half a checkpoint")
    resumed = Trainer(config, run, resume=True, progress=False)
    assert [r["step"] for r in resumed.records] == [2]
    assert log_path.read_text() == kept
    assert not list(run.glob(".*.tmp"))


def test_resume_without_a_checkpoint_starts_afresh_and_empties_the_log(stopped_run):
    config, run = stopped_run
    (run / "checkpoint.npz").unlink()  # killed after the first log write, before the first checkpoint
    resumed = Trainer(config, run, resume=True, progress=False)
    assert resumed.step == 0 and resumed.records == [] and (run / "log.jsonl").read_text() == ""


def test_resume_refuses_a_log_that_does_not_belong_to_the_checkpoint(stopped_run):
    config, run = stopped_run
    (run / "log.jsonl").write_text('{"step": 2}\nnot json\n')
    with pytest.raises(ValueError, match=r"log.jsonl, line 2: not a JSON record"):
        Trainer(config, run, resume=True, progress=False)
    (run / "log.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(ValueError, match=r"log.jsonl does not belong to the checkpoint at step 3"):
        Trainer(config, run, resume=True, progress=False)


def test_a_format_1_checkpoint_still_resumes(tmp_path, monkeypatch):
    """Checkpoints written before losses_since_log and next_eval were saved: at a logging step
    (every checkpoint an uninterrupted older run wrote) they resume bit-identically too."""
    config = TrainConfig(model="lstm", sequences=8 * 8, seed=0, **TINY)
    straight = Trainer(config, tmp_path / "straight", progress=False)
    straight.run()
    stop_at(monkeypatch, 4)
    Trainer(config, tmp_path / "old", progress=False).run()
    monkeypatch.undo()
    _edit_checkpoint(tmp_path / "old", lambda a: [a.pop(k) for k in ("format", "losses_since_log", "next_eval")])
    resumed = Trainer(config, tmp_path / "old", resume=True, progress=False)
    resumed.run()
    for key, value in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[key], value, err_msg=key)
    assert _without_seconds(resumed.records) == _without_seconds(straight.records)


def test_the_summary_of_a_run_stopped_before_its_first_evaluation(tmp_path, monkeypatch):
    config = TrainConfig(model="lstm", sequences=8 * 20, seed=0, **TINY)
    stop_at(monkeypatch, 1)
    summary = Trainer(config, tmp_path, progress=False).run()
    assert summary["interrupted"] and summary["steps"] == 1 and summary["sequences"] == 8
    assert summary["final_eval_bit_errors"] is None
    assert summary["sequences_to_target"] is None and summary["sequences_to_under_1_bit"] is None
    assert isinstance(summary["seconds"], float) and isinstance(summary["seconds_per_1000_sequences"], float)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="batch_size: expected a positive int, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        TrainConfig(optimizer="lbfgs")


def test_cli_train_writes_the_run_and_reports_it(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(
        [
            "train",
            "--model",
            "dam",
            "--task",
            "copy",
            "--max-length",
            "2",
            "--sequences",
            "32",
            "--batch-size",
            "8",
            "--memory-size",
            "6",
            "--word-size",
            "4",
            "--hidden-size",
            "8",
            "--eval-every",
            "16",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "learning curve:" in text and str(out) in text
    assert (out / "learning_curve.png").exists()


def test_curriculum_runs_and_logs_its_level(tmp_path):
    config = TrainConfig(
        model="lstm", sequences=8 * 6, curriculum=True, curriculum_threshold=1e9, curriculum_window=2, seed=0, **TINY
    )
    trainer = Trainer(config, tmp_path, progress=False)
    trainer.run()
    levels = [r["level"] for r in trainer.records]
    assert levels == sorted(levels) and levels[-1] > levels[0]


# -- a task that names its own loss and metric ------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

from refmann.tasks import TASKS, Batch, Task, error_rate  # noqa: E402


@dataclass(frozen=True)
class EchoClass(Task):
    """Classify each step's input: class = the input's first bit (softmax CE, error rate)."""

    loss = "softmax_ce"
    metric_name = "error_rate"
    metric_label = "errors per scored step"
    metric_target = 0.05

    @property
    def input_size(self):
        return 2

    @property
    def output_size(self):
        return 2

    @property
    def level_range(self):
        return (1, 1)

    def sample(self, batch_size, rng, *, level=None):
        x = rng.integers(0, 2, (3, batch_size, 2)).astype(np.float64)
        return Batch(x, x[..., 0].astype(np.int64), np.ones((3, batch_size)))

    def metric(self, logits, batch):
        return error_rate(logits, batch)


def test_the_trainer_trains_on_the_tasks_loss_and_logs_the_tasks_metric(tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "echo_class", EchoClass)
    config = TrainConfig(
        model="lstm",
        task="echo_class",
        sequences=64,
        batch_size=8,
        optimizer="adam",
        lr=1e-2,
        hidden_size=4,
        eval_every=32,
        eval_size=8,
        log_every=2,
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    batch = trainer.task.sample(8, np.random.default_rng(0))
    expected = trainer.model.loss(batch.inputs, batch.targets, batch.mask, loss="softmax_ce")
    loss, _ = trainer.model.loss_and_grads(batch.inputs, batch.targets, batch.mask, loss=trainer.task.loss)
    assert loss == pytest.approx(expected, rel=1e-12)
    summary = trainer.run()
    assert summary["metric"] == "error_rate" and 0.0 <= summary["final_eval_error_rate"] <= 1.0
    records = trainer.records
    assert all("error_rate" in r and "bit_errors" not in r for r in records)
    assert any("eval_error_rate" in r for r in records)
    assert (tmp_path / "run" / "learning_curve.png").exists()


def _interrupted_then_resumed(config, out, monkeypatch, *, at):
    """Run ``config`` in ``out`` with Ctrl-C before step ``at``, then resume it to the end; the resumed trainer."""
    original = Trainer.train_step

    def stop(self):
        if self.step == at:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", stop)
    assert Trainer(config, out, progress=False).run()["interrupted"]
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = Trainer(config, out, resume=True, progress=False)
    assert resumed.step == at
    resumed.run()
    return resumed


def _assert_same_params(a, b):
    for key, value in b.model.params.items():
        np.testing.assert_array_equal(a.model.params[key], value, err_msg=key)


FACTS = dict(
    task="facts",
    task_kwargs=dict(num_subjects=8, num_relations=2, num_objects=4, num_words=6, length=10),
    batch_size=8,
    hidden_size=8,
    num_heads=2,
    eval_every=40,
    eval_size=8,
    log_every=2,
    checkpoint_every=3,
)
MEMORY = dict(num_layers=2, memory_layers=[1], memory_keys=4, memory_heads=2, memory_k=2, memory_key_dim=4)


@pytest.mark.parametrize("optimizer", ["adam", "sparse_adam"])
def test_the_transformer_with_a_product_key_memory_trains_on_facts_and_resumes_bit_identically(
    tmp_path, monkeypatch, optimizer
):
    config = TrainConfig(
        model="transformer", sequences=8 * 10, optimizer=optimizer, seed=2, model_kwargs=MEMORY, **FACTS
    )
    straight = Trainer(config, tmp_path / "straight", progress=False)
    assert straight.model.config.tokens and straight.model.config.model_dim == 8
    assert straight.model.default_loss == "softmax_ce" and "block1.memory.values" in straight.model.params
    summary = straight.run()
    assert summary["metric"] == "fact_errors" and 0.0 <= summary["final_eval_fact_errors"] <= 1.0
    resumed = _interrupted_then_resumed(config, tmp_path / "split", monkeypatch, at=4)
    _assert_same_params(resumed, straight)
    assert _without_seconds(resumed.records) == _without_seconds(straight.records)


def test_sparse_adam_leaves_the_memory_rows_no_step_read_untouched(tmp_path):
    config = TrainConfig(
        model="transformer", sequences=8 * 2, optimizer="sparse_adam", seed=1, model_kwargs=MEMORY, **FACTS
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    before = trainer.model.params["block1.memory.values"].copy()
    trainer.run()
    changed = np.any(trainer.model.params["block1.memory.values"] != before, axis=1)
    assert 0 < changed.sum() < len(changed)  # rows were read and updated, others never read and left alone


def test_a_token_task_is_refused_by_a_model_that_reads_vectors(tmp_path):
    with pytest.raises(ValueError, match="task facts gives int tokens; models that read them: transformer"):
        Trainer(TrainConfig(model="lstm", sequences=8, **FACTS), tmp_path / "run", progress=False)


def test_value_tables_can_have_their_own_optimizer_and_learning_rate_and_resume_bit_identically(tmp_path, monkeypatch):
    config = TrainConfig(
        model="transformer", sequences=8 * 8, optimizer="adam", lr=1e-3, value_optimizer="sparse_adam", value_lr=1e-2,
        seed=4, model_kwargs=MEMORY, **FACTS,
    )  # fmt: skip
    straight = Trainer(config, tmp_path / "straight", progress=False)
    straight.run()
    assert any(slot.startswith("*values:") for slot in straight.opt_state) and "*:m" in straight.opt_state
    # the value group is sparse_adam at its own lr: the first step moves a read row by about value_lr
    fresh = Trainer(config, tmp_path / "fresh", progress=False)
    before = fresh.model.params["block1.memory.values"].copy()
    fresh.train_step()
    moved = np.abs(fresh.model.params["block1.memory.values"] - before).max()
    assert 0.5e-2 < moved <= 1.01e-2
    _assert_same_params(_interrupted_then_resumed(config, tmp_path / "split", monkeypatch, at=3), straight)


def test_bad_value_optimizer_settings_are_refused():
    with pytest.raises(ValueError, match="value_optimizer: expected one of"):
        TrainConfig(value_optimizer="lion")
    with pytest.raises(ValueError, match="value_lr: expected a positive number"):
        TrainConfig(value_lr=-1.0)
