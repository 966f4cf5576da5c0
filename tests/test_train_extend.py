"""Extending a run's budget: ``Trainer(extend=True)``, ``refmann train --resume --extend``, ``refmann sweep --extend``.

An extended run takes the steps of a run given the larger budget from the start: the same
parameters, optimizer state and random draws; its log differs only by the record (and evaluation)
that each earlier budget's last step wrote.
"""

import json

import numpy as np
import pytest

from refmann import cli
from refmann.train import TrainConfig, Trainer, optim
from refmann.train import sweep as sweep_mod
from tests.trainer_helpers import TINY, stop_at


def _config(steps, **kw):
    return TrainConfig(**{"model": "dam", "sequences": 8 * steps, "seed": 2, **TINY, **kw})


def _comparable(records, dropped_steps=()):
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "loss", "budget_end")}
        for r in records
        if r["step"] not in dropped_steps
    ]


def _assert_same_state(a: Trainer, b: Trainer):
    assert a.step == b.step
    for key, value in b.model.params.items():
        np.testing.assert_array_equal(a.model.params[key], value, err_msg=key)
    sa, sb = optim.state_to_arrays(a.opt_state), optim.state_to_arrays(b.opt_state)
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    assert a.next_eval == b.next_eval


@pytest.mark.parametrize("budgets", [(7, 23), (7, 15, 23), (10, 23)], ids=["once", "twice", "at-an-eval"])
def test_an_extended_run_takes_the_steps_of_a_run_given_the_larger_budget_from_the_start(tmp_path, budgets):
    straight = Trainer(_config(budgets[-1]), tmp_path / "straight", progress=False)
    straight.run()
    first = Trainer(_config(budgets[0]), tmp_path / "extended", progress=False)
    assert not first.run()["interrupted"]
    for steps in budgets[1:]:
        extended = Trainer(_config(steps), tmp_path / "extended", resume=True, extend=True, progress=False)
        assert extended.step == first.step
        summary = extended.run()
        assert summary["steps"] == steps and not summary["interrupted"]
        first = extended
    _assert_same_state(extended, straight)
    # the log: the records of the longer run, plus each earlier budget's last-step record where that
    # step does not log anyway; an evaluation there too (step 10 is due: the same in both)
    ends = [b for b in budgets[:-1] if b % TINY["log_every"]]
    on_disk = [json.loads(line) for line in (tmp_path / "extended" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in on_disk] == sorted({*[r["step"] for r in straight.records], *ends})
    assert _comparable(on_disk, ends) == _comparable(straight.records)
    assert [r["step"] for r in on_disk if r.get("budget_end")] == list(budgets)
    assert json.loads((tmp_path / "extended" / "config.json").read_text())["sequences"] == 8 * budgets[-1]


def test_an_extended_run_interrupted_and_resumed_is_still_the_longer_run(tmp_path, monkeypatch):
    straight = Trainer(_config(23), tmp_path / "straight", progress=False)
    straight.run()
    Trainer(_config(7), tmp_path / "run", progress=False).run()
    stop_at(monkeypatch, 13)
    assert Trainer(_config(23), tmp_path / "run", resume=True, extend=True, progress=False).run()["interrupted"]
    monkeypatch.undo()
    resumed = Trainer(_config(23), tmp_path / "run", resume=True, extend=True, progress=False)
    assert resumed.step == 13
    resumed.run()
    _assert_same_state(resumed, straight)
    # once extended, a plain resume of the new budget needs no extend
    again = Trainer(_config(23), tmp_path / "run", resume=True, progress=False)
    assert again.step == 23 and [r["step"] for r in again.records if r.get("budget_end")] == [7, 23]


def test_a_larger_budget_without_extend_is_refused_with_a_hint_and_a_smaller_one_always(tmp_path):
    Trainer(_config(7), tmp_path, progress=False).run()
    with pytest.raises(ValueError, match=r"sequences \(saved 56, given 184\); .*--extend \(extend=True\)"):
        Trainer(_config(23), tmp_path, resume=True, progress=False)
    with pytest.raises(
        ValueError, match=r"extend: .* has a budget of 56 sequences; an extended budget must be at least"
    ):
        Trainer(_config(5), tmp_path, resume=True, extend=True, progress=False)
    with pytest.raises(ValueError, match=r"seed \(saved 2, given 3\)") as info:  # extend changes the budget only
        Trainer(_config(23, seed=3), tmp_path, resume=True, extend=True, progress=False)
    assert "--extend" not in str(info.value)
    with pytest.raises(ValueError, match=r"extend: only a resumed run can be extended"):
        Trainer(_config(23), tmp_path / "new", extend=True, progress=False)


def test_refmann_train_extend_on_the_command_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    flags = ["train", "--model", "lstm", "--task", "copy", "--max-length", "3", "--hidden-size", "8"]
    flags += ["--batch-size", "4", "--eval-every", "8", "--out", out, "--quiet"]
    assert cli.main([*flags, "--sequences", "8"]) == 0
    assert cli.main([*flags, "--sequences", "16", "--resume"]) == 2
    assert "--extend" in capsys.readouterr().err
    assert cli.main([*flags, "--sequences", "16", "--extend"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("--extend: only with --resume (it trains a run in --out on to a larger --sequences)")
    )
    assert cli.main([*flags, "--sequences", "16", "--resume", "--extend"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["sequences"] == 16


def test_a_sweep_finished_at_a_smaller_budget_is_not_finished_at_a_larger_one_and_plans_refuse_without_extend(
    tmp_path,
):
    small, large = _config(7).to_dict(), _config(23).to_dict()
    run = sweep_mod.Run(folder="copy/dam-s2", setting="", config=small)
    Trainer(TrainConfig.from_dict(small), tmp_path / run.folder, progress=False).run()
    assert sweep_mod.is_finished(tmp_path / run.folder)
    assert sweep_mod.is_finished(tmp_path / run.folder, 8 * 7)
    assert not sweep_mod.is_finished(tmp_path / run.folder, 8 * 23)
    sweep_mod.write_plan(tmp_path, [run])
    longer = sweep_mod.Run(folder=run.folder, setting="", config=large)
    with pytest.raises(ValueError, match=r"other settings \(e.g. copy/dam-s2\).*; --extend trains them on"):
        sweep_mod._check_plan(tmp_path, [longer])
    sweep_mod._check_plan(tmp_path, [longer], extend=True)  # accepted
    with pytest.raises(ValueError, match=r"other settings") as info:  # a shorter budget is another sweep
        sweep_mod._check_plan(
            tmp_path, [sweep_mod.Run(folder=run.folder, setting="", config=_config(5).to_dict())], True
        )
    assert "--extend" not in str(info.value)
    summary = sweep_mod.train_run(large, str(tmp_path / run.folder), True)
    assert summary["steps"] == 23 and sweep_mod.is_finished(tmp_path / run.folder, 8 * 23)
