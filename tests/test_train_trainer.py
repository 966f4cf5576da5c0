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
