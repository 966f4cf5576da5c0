"""refmann/experiments/one_shot.py: the quick run trains LSTM, DAM and SAM and prints the accuracy table."""

import json

import numpy as np
import pytest

from refmann.experiments import one_shot
from refmann.tasks import OneShotTask


def test_the_quick_run_trains_every_model_and_prints_a_table(tmp_path, capsys):
    rows = one_shot.main(["--quick", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert [r["model"] for r in rows] == ["lstm", "dam", "sam"]
    assert "| model | classes | seeds | 1st | 2nd | 5th | 10th | label errors | train s |" in out
    for r in rows:
        assert set(r) == set(one_shot.ROW_KEYS)
        assert f"| {r['model']} | 3 | 1 |" in out
        assert r["sequences"] == 48 and r["test_episodes"] == 40 and r["data"] == "digits"
        for k in (1, 2, 5):
            assert 0.0 <= r[f"accuracy_{k}"] <= 1.0
        assert r["accuracy_10"] is None  # 5 presentations: there is no 10th
        assert 0.0 <= r["test_label_errors"] <= 1.0 and r["train_seconds"] > 0
        assert (tmp_path / f"{r['model']}-c3-s0" / "summary.json").is_file()
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert saved["rows"] == rows and saved["command"].endswith("--quick --quiet --out " + str(tmp_path))
    with pytest.raises(SystemExit) as exc:  # the runs exist: only --resume continues them
        one_shot.main(["--quick", "--quiet", "--out", str(tmp_path)])
    assert exc.value.code == 2
    again = one_shot.main(["--quick", "--quiet", "--out", str(tmp_path), "--resume", "--models", "lstm"])
    assert again[0]["accuracy_1"] == rows[0]["accuracy_1"]  # a finished run resumes to the same model


class _SaysZero:
    """A model that always names label 0."""

    def __init__(self, classes):
        self.classes = classes

    def forward(self, inputs):
        logits = np.zeros(inputs.shape[:2] + (self.classes,))
        logits[..., 0] = 1.0
        return logits


def test_test_accuracy_weighs_every_episode_once():
    task = OneShotTask(num_classes=4, presentations=5, size=4, split="test")
    found = one_shot.test_accuracy(_SaysZero(4), task, episodes=23, seed=0, batch=10)  # batches of 10, 10, 3
    assert set(found["accuracy"]) == {1, 2, 5}
    for acc in found["accuracy"].values():  # each episode shows label 0 once at every instance: 1 of 4
        assert acc == pytest.approx(0.25, abs=1e-12)
    assert found["label_errors"] == pytest.approx(0.75, abs=1e-12)


def _error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--classes", "0"], "--classes: expected a positive integer"),
        (["--models", "gru"], "--models: invalid choice"),
        (["--seeds", "1", "1"], "--seeds: expected distinct values"),
        (["--lr", "-1"], "--lr: expected a positive number"),
        (["--classes", "11"], "num_classes: expected at most 10"),
        (["--data", "/no/such/omniglot.zip"], "data: '/no/such/omniglot.zip' does not exist"),
        (["--test-data", "."], "test_data: expected None without data"),
        (["--presentations", "400"], "num_classes: expected at most 0"),
        (["--resume"], "--resume: needs --out DIR"),
    ],
)
def test_bad_flags_exit_2_with_a_one_line_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        one_shot.main(["--quick", "--quiet", *argv])
    assert exc.value.code == 2
    (line,) = _error_lines(capsys)
    assert message in line


def test_run_refuses_unknown_models_and_keys():
    with pytest.raises(ValueError, match="models: expected names from"):
        one_shot.run(**{**one_shot.QUICK, "models": ("gru",)})
    with pytest.raises(ValueError, match="config: unknown keys"):
        one_shot.run(**one_shot.QUICK, steps=3)
    assert one_shot.format_table([]) == "(no rows)"
