"""Training: the loss falls, runs resume bit-identically, Ctrl-C saves, files are what they claim."""

import json

import numpy as np
import pytest

from refmann import _io, cli
from refmann.train import TrainConfig, Trainer

TINY = dict(
    task="copy",
    task_kwargs={"max_length": 3, "bits": 4},
    batch_size=8,
    memory_size=8,
    word_size=6,
    hidden_size=16,
    eval_every=80,
    eval_size=16,
    log_every=2,
    checkpoint_every=5,
)


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


def test_a_resumed_run_continues_bit_identically(tmp_path):
    config = TrainConfig(model="dam", sequences=8 * 12, optimizer="rmsprop", seed=3, **TINY)
    straight = Trainer(config, tmp_path / "straight", progress=False)
    straight.run()

    first = Trainer(TrainConfig(**{**config.to_dict(), "sequences": 8 * 5}), tmp_path / "split", progress=False)
    first.run()
    # the budget is part of the config, so resume the split run under the full budget's config
    ckpt = _io.load_npz(tmp_path / "split" / "checkpoint.npz")
    ckpt["config"] = np.array(json.dumps(config.to_dict()))
    _io.atomic_savez(tmp_path / "split" / "checkpoint.npz", **ckpt)
    resumed = Trainer(config, tmp_path / "split", resume=True, progress=False)
    assert resumed.step == 5
    resumed.run()
    for key, value in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[key], value, err_msg=key)
    # log records whose averaging window lies wholly after the resume point are identical too
    after = lambda records: [(r["step"], r["loss"], r["bit_errors"]) for r in records if r["step"] > 6]  # noqa: E731
    assert after(resumed.records) == after(straight.records) and after(straight.records)


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
    with pytest.raises(ValueError, match="resume: the checkpoint was made with another config"):
        Trainer(TrainConfig(model="lstm", sequences=8 * 3, seed=1, **TINY), tmp_path, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        Trainer(config, tmp_path, progress=False)


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
