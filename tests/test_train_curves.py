"""Learning curves over models and seeds: the report speaks the task's metric; Ctrl-C stops the whole sweep."""

import json

import pytest

from refmann.train import TrainConfig, curves

BASE = TrainConfig(
    model="lstm",
    task="copy",
    task_kwargs={"bits": 2, "max_length": 2},
    sequences=32,
    batch_size=8,
    hidden_size=4,
    memory_size=4,
    word_size=2,
    eval_every=16,
    eval_size=4,
    log_every=2,
)


def test_a_sweep_writes_one_row_per_model_in_the_tasks_metric(tmp_path):
    summaries = curves.run_curves(BASE, ["lstm", "ntm"], [0], tmp_path, jobs=1)
    assert [s["model"] for s in summaries] == ["lstm", "ntm"]
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["model"] for r in rows] == ["lstm", "ntm"] and all(r["metric"] == "bit_errors" for r in rows)
    table = (tmp_path / "summary.md").read_text()
    assert "bit errors per sequence" in table and (tmp_path / "curves.png").exists()


def test_an_interrupted_run_stops_the_sweep_and_the_report_still_comes(tmp_path, monkeypatch):
    calls = []
    real = curves._train_one

    def first_interrupted(work):
        calls.append(work[1])
        summary = real(work)
        return dict(summary, interrupted=True) if len(calls) == 1 else summary

    monkeypatch.setattr(curves, "_train_one", first_interrupted)
    with pytest.raises(KeyboardInterrupt):
        curves.run_curves(BASE, ["lstm", "ntm"], [0, 1], tmp_path, jobs=1)
    assert len(calls) == 1  # the three other runs never started
    assert (tmp_path / "summary.md").exists()
