"""Exact resume after any interrupt: a run interrupted anywhere, then resumed, ends bit for bit where an
uninterrupted run ends (parameters, optimizer state, RNG, curriculum, counters, the log, the checkpoint).

Three ways in:

- in process, every phase of a step is made to raise ``KeyboardInterrupt`` once at its n-th call, to
  send a real SIGINT to this process there, or to "die" (an exception the trainer does not catch,
  which stands for SIGKILL: nothing after it runs);
- in a subprocess, a real SIGKILL at chosen phases (the run is then resumed from its files);
- in a subprocess, real SIGINTs and SIGKILLs at fixed pseudo-random times, resumed until done.

``log.jsonl`` records carry wall-clock ``seconds``; those (and the checkpoint's ``seconds``) are the
only numbers left out of the comparisons.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tqdm

from refmann import _io
from refmann.tasks import ExponentialCurriculum, make_task
from refmann.train import TrainConfig, Trainer, build, optim

SMALL = dict(
    task="copy",
    task_kwargs={"max_length": 3, "bits": 4},
    batch_size=4,
    memory_size=8,
    word_size=6,
    hidden_size=8,
    optimizer="adam",
    lr=1e-2,
    eval_every=20,  # evaluations at steps 6, 12 and 13 (the last)
    eval_size=8,
    log_every=3,  # records at steps 3, 6, 9, 12, 13: checkpoints at 5 and 10 carry unlogged losses
    checkpoint_every=5,
    sequences=4 * 13,
    seed=1,
)
CONFIGS = {
    "lstm": TrainConfig(model="lstm", **SMALL),
    # the level doubles every 3 steps (1, 2, 4, 8): a resume that forgot it would draw other batches
    "curriculum": TrainConfig(
        model="lstm",
        curriculum=True,
        curriculum_threshold=1e9,
        curriculum_window=3,
        **{**SMALL, "task_kwargs": {"max_length": 8, "bits": 4}},
    ),
    "ntm": TrainConfig(model="ntm", **SMALL),
    "sam": TrainConfig(model="sam", **SMALL),  # an in-place memory
}


class Killed(BaseException):
    """Stands for SIGKILL in process: the trainer catches only KeyboardInterrupt, so nothing runs after it
    but ``finally`` blocks."""


class Shot:
    """One interrupt of ``kind`` at the ``n``-th call of a phase."""

    def __init__(self, kind: str, n: int):
        self.kind, self.n, self.calls, self.fired = kind, n, 0, False

    def __call__(self):
        self.calls += 1
        if self.calls != self.n:
            return
        self.fired = True
        if self.kind == "KeyboardInterrupt":
            raise KeyboardInterrupt
        if self.kind == "kill":
            raise Killed
        os.kill(os.getpid(), getattr(signal, self.kind))  # a real signal: SIGINT or SIGKILL


def _named(name):
    return lambda *args, **kwargs: Path(args[0]).name == name


#: phase -> (where it lives, attribute, which calls count, n-th calls to interrupt (in the 13-step runs))
PHASES = {
    "draw": (lambda c: type(make_task(c.task, **c.task_kwargs)), "sample", None, (1, 4, 6)),
    "curriculum draw": (lambda c: ExponentialCurriculum, "draw", None, (3, 9)),
    "loss_and_grads": (lambda c: type(build(c)[1]), "loss_and_grads", None, (1, 5, 13)),
    "clip": (lambda c: optim, "clip_elementwise", None, (2, 10)),
    "update": (lambda c: optim, "make_optimizer", None, (1, 5, 13)),  # the optimizer it makes
    "curriculum update": (lambda c: ExponentialCurriculum, "update", None, (3, 9)),
    "commit": (lambda c: Trainer, "_commit", None, (3, 5, 13)),
    "log forward": (lambda c: type(build(c)[1]), "forward", None, (1, 3, 8)),  # 3, 8: evaluations
    "metric": (lambda c: type(make_task(c.task, **c.task_kwargs)), "metric", None, (2, 8)),
    "evaluate": (lambda c: Trainer, "evaluate", None, (1, 3)),
    "progress bar": (lambda c: tqdm.tqdm, "update", None, (5, 13)),
    # writes: 1 at step 0 (checkpoint first: no records yet), 2 and 3 at steps 5 and 10, 4 at the end
    "log write": (lambda c: _io, "atomic_write_text", _named("log.jsonl"), (1, 2, 4)),
    "checkpoint write": (lambda c: _io, "atomic_savez", None, (1, 2, 4)),
    "checkpoint replace": (lambda c: os, "replace", lambda *a, **k: Path(a[-1]).name == "checkpoint.npz", (1, 2, 4)),
    "plot": (lambda c: Trainer, "plot", None, (1,)),
    "summary write": (lambda c: _io, "atomic_write_text", _named("summary.json"), (1,)),
}
BEFORE_AND_AFTER = {"commit", "log write", "checkpoint write", "checkpoint replace"}  # the others: before


def install(monkeypatch, config, phase, shot, after=False):
    """Make ``phase`` call ``shot`` before (or after) its real work; the pictures become a no-op."""
    monkeypatch.setattr(Trainer, "plot", lambda self: None)  # not state, and 0.5 s a run
    where, name, counts, _ = PHASES[phase]
    owner = where(config)
    real = getattr(owner, name)

    def interrupting(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            counted = counts is None or counts(*args, **kwargs)
            if counted and not after:
                shot()
            out = fn(*args, **kwargs)
            if counted and after:
                shot()
            return out

        return wrapper

    if phase == "update":  # the trainer keeps the function make_optimizer returns

        def make_optimizer(*args, **kwargs):
            return interrupting(real(*args, **kwargs))

        monkeypatch.setattr(owner, name, make_optimizer)
    else:
        monkeypatch.setattr(owner, name, interrupting(real))


def finish(config, out, trainer=None, snapshot=None):
    """Run (a fresh Trainer with resume=True, as a new process would, when ``trainer`` is None) until the
    budget is spent, across interrupts. With ``snapshot``, the folder is copied there at the first
    interrupt the trainer survived, to be resumed from disk too. Returns (trainer, interrupts)."""
    interrupts = 0
    for _ in range(8):
        try:
            if trainer is None:
                trainer = Trainer(config, out, resume=True, progress=False)
            if not trainer.run()["interrupted"]:
                return trainer, interrupts
        except KeyboardInterrupt:  # in Trainer(), or out of run()'s final writes
            pass
        except Killed:
            trainer = None
        interrupts += 1
        if trainer is not None and snapshot is not None and not snapshot.exists():
            shutil.copytree(out, snapshot)
    raise AssertionError(f"{out}: the run did not finish")


def _checkpoint(path):
    return {k: v for k, v in _io.load_npz(path).items() if k != "seconds"}


def _records(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@dataclasses.dataclass
class Reference:
    trainer: Trainer
    checkpoint: dict
    log: list


_REFERENCES: dict[str, Reference] = {}


def reference(name, tmp_path_factory) -> Reference:
    """The uninterrupted run of CONFIGS[name] (once per session)."""
    if name not in _REFERENCES:
        out = tmp_path_factory.mktemp(f"reference-{name}")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Trainer, "plot", lambda self: None)
            trainer = Trainer(CONFIGS[name], out, progress=False)
            assert not trainer.run()["interrupted"]
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        _REFERENCES[name] = Reference(trainer, _checkpoint(out / "checkpoint.npz"), _records(log))
    return _REFERENCES[name]


def assert_same_run(trainer: Trainer, ref: Reference):
    """Bit for bit: the trainer in memory and its folder on disk against the uninterrupted run."""
    want = ref.trainer
    assert trainer.step == want.step
    assert list(trainer.model.params) == list(want.model.params)
    for key, value in want.model.params.items():
        np.testing.assert_array_equal(trainer.model.params[key], value, err_msg=key, strict=True)
    got_opt, want_opt = optim.state_to_arrays(trainer.opt_state), optim.state_to_arrays(want.opt_state)
    assert got_opt.keys() == want_opt.keys()
    for key, value in want_opt.items():
        np.testing.assert_array_equal(got_opt[key], value, err_msg=f"opt/{key}", strict=True)
    assert trainer.rng.bit_generator.state == want.rng.bit_generator.state
    if want.curriculum is not None:
        got_c, want_c = trainer.curriculum.state_dict(), want.curriculum.state_dict()
        assert got_c["current_max"] == want_c["current_max"], "the curriculum level"
        assert got_c["losses"].tolist() == want_c["losses"].tolist()
    assert (trainer.losses_since_log, trainer.next_eval) == (want.losses_since_log, want.next_eval)
    assert _records(trainer.records) == _records(want.records)
    # and the folder: what the next resume would start from
    log = [json.loads(line) for line in (trainer.out / "log.jsonl").read_text().splitlines()]
    assert _records(log) == ref.log
    got = _checkpoint(trainer.out / "checkpoint.npz")
    assert got.keys() == ref.checkpoint.keys()
    for key, value in ref.checkpoint.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key, strict=True)


# -- in process: every phase × {KeyboardInterrupt, a real SIGINT, death} --------------------------------------

KINDS = ("KeyboardInterrupt", "SIGINT", "kill")


def _cells(config_name, phases, *, every_n=True):
    """The matrix's cells; with ``every_n=False`` only one n per phase is fast, the others are slow."""
    for phase in phases:
        ns = PHASES[phase][3]
        for n in ns:
            marks = [] if every_n or n == ns[len(ns) // 2] else [pytest.mark.slow]
            for after in (False, True) if phase in BEFORE_AND_AFTER else (False,):
                where = f"{phase} ({'after' if after else 'before'})" if phase in BEFORE_AND_AFTER else phase
                for kind in KINDS:
                    cell = f"{config_name}: {where} #{n} {kind}"
                    yield pytest.param(config_name, phase, n, after, kind, id=cell, marks=marks)


CELLS = [
    *_cells("lstm", [p for p in PHASES if not p.startswith("curriculum")]),
    *_cells("curriculum", ["draw", "curriculum draw", "curriculum update", "commit", "checkpoint write"]),
    *_cells("ntm", ["loss_and_grads", "commit", "log forward", "checkpoint write"], every_n=False),
    *_cells("sam", ["loss_and_grads", "update", "log forward", "evaluate"], every_n=False),
]


def _skip_unless_sigint_works():
    """A real SIGINT needs the main thread and Python's default handler: a process started in the
    background by a non-interactive shell inherits SIGINT ignored (and so would its children)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("a real SIGINT needs the main thread")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("a real SIGINT needs Python's default handler (SIGINT is ignored in this process)")


@pytest.mark.parametrize(("config_name", "phase", "n", "after", "kind"), CELLS)
def test_an_interrupt_at_any_phase_of_a_step_resumes_bit_identically(
    config_name, phase, n, after, kind, tmp_path, tmp_path_factory
):
    if kind == "SIGINT" and (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        pytest.skip("a real SIGINT needs the main thread and Python's default handler")
    ref = reference(config_name, tmp_path_factory)
    config = CONFIGS[config_name]
    shot = Shot(kind, n)
    with pytest.MonkeyPatch.context() as mp:
        install(mp, config, phase, shot, after)
        # in place: the same Trainer object runs on, so the rollback in memory must be exact
        trainer, interrupts = finish(config, tmp_path / "run", snapshot=tmp_path / "copy")
    assert shot.fired, f"{phase} was called {shot.calls} times, never interrupted"
    # a Ctrl-C while the summary of a finished run is written is deferred and then moot
    assert interrupts >= 1 or (phase, kind) == ("summary write", "SIGINT")
    assert_same_run(trainer, ref)
    if (tmp_path / "copy").exists():  # and from the files it left, as a new process would
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Trainer, "plot", lambda self: None)
            resumed, _ = finish(config, tmp_path / "copy")
        assert_same_run(resumed, ref)


def test_the_resumed_curriculum_level_equals_the_uninterrupted_one(tmp_path, tmp_path_factory):
    ref = reference("curriculum", tmp_path_factory)
    levels = [r["level"] for r in ref.trainer.records]
    assert levels == [2, 4, 8, 8, 8], "the level must change during the run for this test to mean anything"
    config = CONFIGS["curriculum"]
    for stop in (4, 7, 11):  # level 2, 4, 8 at the interrupt
        out = tmp_path / f"stop-{stop}"
        shot = Shot("KeyboardInterrupt", stop + 1)
        with pytest.MonkeyPatch.context() as mp:
            install(mp, config, "loss_and_grads", shot)
            Trainer(config, out, progress=False).run()
        resumed = Trainer(config, out, resume=True, progress=False)
        assert resumed.step == stop
        assert resumed.curriculum.current_max == 2 ** min(stop // 3, 3)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Trainer, "plot", lambda self: None)
            resumed.run()
        assert [r["level"] for r in resumed.records] == levels
        assert resumed.curriculum.state_dict()["current_max"] == ref.trainer.curriculum.current_max
        assert_same_run(resumed, ref)


def test_a_sigint_during_a_standalone_train_step_waits_for_the_commit(tmp_path, monkeypatch):
    """Outside run() too: Ctrl-C during the commit is raised once the step is whole."""
    _skip_unless_sigint_works()
    config = CONFIGS["lstm"]
    trainer = Trainer(config, tmp_path, progress=False)
    install(monkeypatch, config, "commit", Shot("SIGINT", 2))
    trainer.train_step()
    with pytest.raises(KeyboardInterrupt):
        trainer.train_step()
    assert trainer.step == 2 and len(trainer.losses_since_log) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- subprocesses: real SIGKILL at chosen phases, real SIGINT/SIGKILL at random times -------------------------

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import pytest
from test_train_resume import Shot, Trainer, TrainConfig, install

config = TrainConfig(**json.loads(sys.argv[1]))
out, phase, n, after = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "after"
with pytest.MonkeyPatch.context() as mp:
    mp.setattr(Trainer, "plot", lambda self: None)
    if phase != "none":
        install(mp, config, phase, Shot("SIGKILL", n), after)
    trainer = Trainer(config, out, resume=True, progress=False)
    print("ready", trainer.step, flush=True)
    summary = trainer.run()
print("done", summary["steps"], flush=True)
sys.exit(130 if summary["interrupted"] else 0)
"""


def _start(script, config, out, phase="none", n=0, after=False):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    args = [sys.executable, str(script), json.dumps(config.to_dict()), str(out), phase, str(n)]
    args.append("after" if after else "before")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("script") / "train.py"
    path.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    return path


KILL_CELLS = [
    ("commit", 5, True),  # the step is committed, its checkpoint not yet written
    ("log write", 2, True),  # between the log and the checkpoint that covers it
    ("checkpoint replace", 2, False),  # a whole temporary checkpoint beside the old one
    ("checkpoint write", 3, True),
    ("summary write", 1, False),  # the run is done, its summary is not written
]
SLOW_KILL_CELLS = [
    ("draw", 4, False),
    ("loss_and_grads", 5, False),
    ("update", 13, False),
    ("log forward", 3, False),
    ("evaluate", 3, False),
    ("checkpoint replace", 1, False),  # the very first checkpoint, at step 0
    ("log write", 1, True),  # after the first checkpoint
    ("log write", 3, False),
    ("checkpoint write", 4, False),
    ("checkpoint replace", 4, True),
    ("plot", 1, False),
]


@pytest.mark.parametrize("cells", [pytest.param(KILL_CELLS), pytest.param(SLOW_KILL_CELLS, marks=pytest.mark.slow)])
def test_a_real_sigkill_at_each_phase_resumes_bit_identically(script, tmp_path, tmp_path_factory, cells):
    ref = reference("lstm", tmp_path_factory)
    config = CONFIGS["lstm"]
    runs = {cell: _start(script, config, tmp_path / "-".join(map(str, cell)), *cell) for cell in cells}
    for cell, proc in runs.items():  # all at once: the cost is the interpreter's start
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, f"{cell}: exit {proc.returncode}\n{err}"
    for cell in cells:
        out = tmp_path / "-".join(map(str, cell))
        if cell[0] == "checkpoint replace" and not cell[2]:  # killed before the move
            assert list(out.glob(".checkpoint.npz.*.tmp")), "the kill should have left a temporary file"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Trainer, "plot", lambda self: None)
            trainer, _ = finish(config, out)
        assert not list(out.glob(".*.tmp"))
        assert_same_run(trainer, ref)


RANDOM_CONFIG = TrainConfig(
    model="ntm", **{**SMALL, "sequences": 4 * 1000, "eval_every": 44, "log_every": 4, "checkpoint_every": 9}
)


def _random_schedule(seed=11, sigints=4, sigkills=2):
    rng = np.random.default_rng(seed)
    kinds = ["SIGINT"] * sigints + ["SIGKILL"] * sigkills
    rng.shuffle(kinds)
    return [(kind, float(rng.uniform(0.0, 0.25))) for kind in kinds]


def _interrupt_at_random_times(script, config, out, schedule):
    """Start, wait for "ready", sleep, signal; repeat; then run to the end. Returns what each attempt did."""
    attempts = []
    for kind, delay in [*schedule, (None, 0.0)]:
        proc = _start(script, config, out)
        first = proc.stdout.readline().split()
        assert first[:1] == ["ready"], proc.communicate()[1]
        if kind is not None:
            time.sleep(delay)
            proc.send_signal(getattr(signal, kind))
        rest, err = proc.communicate(timeout=120)
        attempts.append((kind, int(first[1]), proc.returncode, rest.split()))
        if kind is None:
            assert proc.returncode == 0, err
    return attempts


def test_real_sigints_and_sigkills_at_random_times_resume_bit_identically(script, tmp_path, tmp_path_factory):
    _skip_unless_sigint_works()  # the children inherit the handler
    config = RANDOM_CONFIG
    ref_out = tmp_path_factory.mktemp("reference-random")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "plot", lambda self: None)
        straight = Trainer(config, ref_out, progress=False)
        straight.run()
    log = [json.loads(line) for line in (ref_out / "log.jsonl").read_text().splitlines()]
    ref = Reference(straight, _checkpoint(ref_out / "checkpoint.npz"), _records(log))

    attempts = _interrupt_at_random_times(script, config, tmp_path / "run", _random_schedule())
    # the signals must have landed in the training loop, not only around it
    assert sum(1 for kind, _, code, _ in attempts if kind == "SIGINT" and code == 130) >= 3, attempts
    assert sum(1 for kind, _, code, _ in attempts if kind == "SIGKILL" and code == -signal.SIGKILL) == 2, attempts
    assert attempts[-1][3] == ["done", str(straight.step)]
    # the folder, and the state a resume restores from it
    assert_same_run(Trainer(config, tmp_path / "run", resume=True, progress=False), ref)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_many_real_interrupts_at_random_times_resume_bit_identically(script, tmp_path, tmp_path_factory, seed):
    _skip_unless_sigint_works()
    config = dataclasses.replace(RANDOM_CONFIG, sequences=4 * 600, seed=seed)
    ref_out = tmp_path_factory.mktemp(f"reference-random-{seed}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "plot", lambda self: None)
        straight = Trainer(config, ref_out, progress=False)
        straight.run()
    log = [json.loads(line) for line in (ref_out / "log.jsonl").read_text().splitlines()]
    ref = Reference(straight, _checkpoint(ref_out / "checkpoint.npz"), _records(log))
    schedule = [(kind, 3 * delay) for kind, delay in _random_schedule(seed, sigints=10, sigkills=6)]
    _interrupt_at_random_times(script, config, tmp_path / "run", schedule)
    assert_same_run(Trainer(config, tmp_path / "run", resume=True, progress=False), ref)
