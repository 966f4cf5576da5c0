"""Pictures from run folders: the evaluation curves of several runs on one axis."""

import json

import pytest

from refmann import viz


def test_plot_runs_reads_each_folders_evaluations_and_refuses_a_folder_without_them(tmp_path):
    for name, values in (("a", [9.0, 4.0, 0.5]), ("b", [8.0, 2.0, 0.25])):
        run = tmp_path / name
        run.mkdir()
        lines = [{"step": i, "sequences": 100 * i, "loss": 1.0} for i in range(1, 4)]
        lines += [{"step": 10 * i, "sequences": 1000 * i, "eval_bit_errors": v} for i, v in enumerate(values, 1)]
        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    x, y = viz.eval_curve(tmp_path / "a")
    assert x.tolist() == [1000, 2000, 3000] and y.tolist() == [9.0, 4.0, 0.5]
    out = viz.plot_runs({"both": [tmp_path / "a", tmp_path / "b"]}, tmp_path / "runs.png", title="t")
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="holds no log.jsonl"):
        viz.eval_curve(tmp_path / "missing")
    with pytest.raises(ValueError, match="no evaluation of 'loss'"):
        viz.eval_curve(tmp_path / "a", metric="loss")
