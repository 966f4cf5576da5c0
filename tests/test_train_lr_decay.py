"""``lr_decay``: the learning rate × a factor, once, from the first evaluation under a threshold on.

Whether a run has decayed is a fact of its log (the record of that evaluation holds ``lr_decay``), so a
resumed run knows it from the records it keeps, and an interrupt anywhere resumes bit-identically.
"""

import copy
import json

import numpy as np
import pytest

from refmann import cli
from refmann.train import TrainConfig, Trainer, optim
from tests.trainer_helpers import TINY, stop_at

TINY = {**TINY, "lr": 1e-3}
ALWAYS = 1e9  # a threshold every evaluation is under: the decay starts at the first one (step 10)


def _config(steps=25, **kw):
    return TrainConfig(**{"model": "dam", "sequences": 8 * steps, "seed": 3, **TINY, **kw})


def _params(trainer):
    return {k: v.copy() for k, v in trainer.model.params.items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_first_evaluation_under_the_threshold_is_marked_and_only_it(tmp_path):
    t = Trainer(_config(lr_decay=0.5, lr_decay_below=ALWAYS), tmp_path / "run", progress=False)
    t.run()
    marked = [r["step"] for r in t.records if "lr_decay" in r]
    assert marked == [10]
    assert t.lr_decayed
    never = Trainer(_config(lr_decay=0.5, lr_decay_below=1e-12), tmp_path / "never", progress=False)
    never.run()
    assert not never.lr_decayed and not any("lr_decay" in r for r in never.records)


def test_the_run_is_the_undecayed_run_up_to_the_mark_and_a_slower_one_after(tmp_path):
    """Steps 1-10 are identical; step 11 on, the update is the one of lr × lr_decay on the same state."""
    plain = Trainer(_config(steps=10), tmp_path / "plain", progress=False)
    plain.run()
    decayed = Trainer(_config(steps=10, lr_decay=0.25, lr_decay_below=ALWAYS), tmp_path / "decayed", progress=False)
    decayed.run()
    assert _same(_params(plain), _params(decayed))
    assert decayed.lr_decayed and not plain.lr_decayed
    # one step more, by hand: the same batch and gradients, the update of lr / 4
    rng = copy.deepcopy(decayed.rng)
    batch = decayed.task.sample(8, rng)
    _, grads = decayed.model.loss_and_grads(batch.inputs, batch.targets, batch.mask, loss=decayed.task.loss)
    grads = optim.clip_elementwise(grads, 10.0)
    expected, _ = TrainConfig(**{**_config().to_dict(), "lr": 2.5e-4}).make_update()(
        decayed.model.params, grads, decayed.opt_state
    )
    decayed.train_step()
    assert _same(_params(decayed), expected)


@pytest.mark.parametrize("stop", [4, 10, 11, 17])
def test_an_interrupt_before_or_after_the_mark_resumes_bit_identically(tmp_path, monkeypatch, stop):
    config = _config(lr_decay=0.5, lr_decay_below=ALWAYS)
    straight = Trainer(config, tmp_path / "straight", progress=False)
    straight.run()
    stop_at(monkeypatch, stop)
    assert Trainer(config, tmp_path / "resumed", progress=False).run()["interrupted"]
    monkeypatch.undo()
    resumed = Trainer(config, tmp_path / "resumed", resume=True, progress=False)
    assert resumed.lr_decayed == (stop >= 10)  # step 10 wrote the mark
    resumed.run()
    assert _same(_params(straight), _params(resumed))
    strip = [{k: v for k, v in r.items() if k not in ("seconds",)} for r in straight.records]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds",)} for r in resumed.records]


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("lr_decay", 0.0, "lr_decay: expected a factor in"),
        ("lr_decay", 1.5, "lr_decay: expected a factor in"),
        ("lr_decay", True, "lr_decay: expected a factor in"),
        ("lr_decay_below", -1.0, "lr_decay_below: expected a positive number"),
        ("lr_decay_below", float("nan"), "lr_decay_below: expected a positive number"),
    ],
)
def test_bad_settings_are_refused_with_their_name(field, value, words):
    with pytest.raises(ValueError, match=words):
        _config(**{field: value})


def test_the_cli_reads_the_flags_and_refuses_bad_ones(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "lstm", "--task", "copy", "--sequences", "16", "--batch-size", "8", "--quiet"]
    assert cli.main([*argv, "--lr-decay", "0.5", "--lr-decay-below", "2", "--out", str(out)]) == 0
    saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert (saved.lr_decay, saved.lr_decay_below) == (0.5, 2.0)
    assert cli.main([*argv, "--lr-decay", "1", "--out", str(tmp_path / "off")]) == 0
    off = json.loads((tmp_path / "off" / "config.json").read_text())
    assert off["lr_decay"] is None
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--lr-decay", "0", "--out", str(tmp_path / "bad")])
    assert exc.value.code == 2
    assert "--lr-decay: expected a number in (0, 1]" in capsys.readouterr().err
