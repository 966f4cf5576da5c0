"""Training loop: sample a task batch, BPTT, clip, optimizer step; log, evaluate, checkpoint, plot.

A run lives in one folder::

    config.json        the TrainConfig
    log.jsonl          one record per logging interval (loss, metric, eval metric, time)
    checkpoint.npz     every piece of trainer state (no pickles; see Trainer.save_checkpoint)
    learning_curve.png the task's metric and the loss against sequences seen
    access.png         inputs, targets, outputs and read/write weights for one sequence
    summary.json       final numbers

A run interrupted at any moment (Ctrl-C, or a kill) and resumed continues bit-identically:

- a step is a transaction (:meth:`Trainer.train_step`): the batch draw, the gradients, the update,
  the counters and the log record are computed into locals and committed at once, with Ctrl-C
  deferred; an interrupt before the commit leaves the trainer exactly as before the step;
- everything random comes from one ``np.random.Generator`` whose state, like every other piece of
  trainer state, is in the checkpoint;
- the log is written before the checkpoint that covers it, and resuming drops the records past
  the checkpoint's step, from the file too (docs/training.md).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import _io
from .._threads import single_threaded_blas
from ..models import MODELS, make_model
from ..models.feedforward import FeedForwardModel
from ..ops import sigmoid, softmax
from ..tasks import ExponentialCurriculum, make_task
from . import optim

log = logging.getLogger(__name__)

#: Optimizers the trainer offers, with their default learning rates.
DEFAULT_LR = {"rmsprop": 1e-4, "adam": 1e-3, "sgd": 1e-2, "sparse_adam": 1e-3, "rowwise_adagrad": 1e-2, "adamw": 1e-3}
_DEFAULT_LR = DEFAULT_LR

#: The checkpoint layout :meth:`Trainer.save_checkpoint` writes (1: unversioned, before
#: ``losses_since_log`` and ``next_eval`` were saved; still read).
CHECKPOINT_FORMAT = 2

#: The files a run folder holds (stale temporary files of theirs are removed on resume).
RUN_FILES = ("config.json", "log.jsonl", "checkpoint.npz", "learning_curve.png", "access.png", "summary.json")


@dataclasses.dataclass(kw_only=True)
class TrainConfig:
    """Everything that defines a training run (saved as config.json)."""

    model: str = "ntm"  # a name of refmann.models.MODELS (lstm | ntm | dam | sam ...)
    task: str = "copy"  # copy | repeat_copy | associative_recall | key_value_recall | priority_sort
    task_kwargs: dict = dataclasses.field(default_factory=dict)
    sequences: int = 30_000  # training budget, in sequences (steps × batch size)
    batch_size: int = 16
    optimizer: str = "rmsprop"  # rmsprop (Graves 2013) | adam | sgd
    lr: float | None = None  # default: 1e-4 for rmsprop, 1e-3 for adam, 1e-2 for sgd
    optimizer_options: dict = dataclasses.field(default_factory=dict)  # e.g. {"centered": False} for rmsprop
    clip: float | None = 10.0  # elementwise gradient clip (the NTM papers' ±10); None: off
    clip_norm: float | None = None  # global-norm clip; None: off
    lr_decay: float | None = None  # the learning rate(s) × this from the first evaluation under lr_decay_below on
    lr_decay_below: float | None = None  # the evaluation metric's threshold of lr_decay (None: 1.0)
    value_optimizer: str | None = None  # a separate optimizer for value tables ("*values" params); None: optimizer
    value_lr: float | None = None  # its learning rate (default: that optimizer's); both None: one group
    memory_size: int = 128
    word_size: int = 20
    num_heads: int = 1
    hidden_size: int = 100
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    curriculum: bool = False  # exponential curriculum of Rae et al. (2016), §4.3
    curriculum_threshold: float = 1.0  # mean loss per sequence under which the level doubles
    curriculum_window: int = 50  # batches averaged
    eval_every: int = 1000  # sequences between evaluations
    eval_size: int = 64  # sequences in the fixed evaluation set
    log_every: int = 5  # steps between log records
    checkpoint_every: int = 200  # steps between checkpoints
    seed: int = 0

    def __post_init__(self):
        for name in ("sequences", "batch_size", "eval_every", "eval_size", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.optimizer not in _DEFAULT_LR:
            raise ValueError(f"optimizer: expected one of {sorted(_DEFAULT_LR)}, got {self.optimizer!r}")
        if self.lr is None:
            self.lr = _DEFAULT_LR[self.optimizer]
        if not isinstance(self.optimizer_options, dict) or not all(isinstance(k, str) for k in self.optimizer_options):
            raise TypeError(f"optimizer_options: expected a dict of str keys, got {self.optimizer_options!r}")
        if "lr" in self.optimizer_options:
            raise ValueError("optimizer_options: the learning rate is lr, not an option")
        try:
            optim.make_optimizer(self.optimizer, lr=self.lr, **self.optimizer_options)
        except TypeError as exc:
            raise TypeError(f"optimizer_options: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"optimizer_options: {exc}") from None
        if self.value_optimizer is not None and self.value_optimizer not in _DEFAULT_LR:
            raise ValueError(f"value_optimizer: expected one of {sorted(_DEFAULT_LR)}, got {self.value_optimizer!r}")
        if self.value_lr is not None and not (isinstance(self.value_lr, (int, float)) and self.value_lr > 0):
            raise ValueError(f"value_lr: expected a positive number, got {self.value_lr!r}")

        if self.lr_decay is not None and not (
            isinstance(self.lr_decay, (int, float)) and not isinstance(self.lr_decay, bool) and 0 < self.lr_decay < 1
        ):
            raise ValueError(f"lr_decay: expected a factor in (0, 1), got {self.lr_decay!r}")
        if self.lr_decay_below is not None and not (
            isinstance(self.lr_decay_below, (int, float))
            and np.isfinite(self.lr_decay_below)
            and self.lr_decay_below > 0
        ):
            raise ValueError(f"lr_decay_below: expected a positive number, got {self.lr_decay_below!r}")

    @property
    def decay_threshold(self) -> float:
        """The evaluation metric under which ``lr_decay`` starts (``lr_decay_below``, default 1.0)."""
        return 1.0 if self.lr_decay_below is None else float(self.lr_decay_below)

    def make_update(self, scale: float = 1.0):
        """The update step: one optimizer, or with ``value_optimizer``/``value_lr`` two parameter groups —
        the value tables (keys ending in ``values``: a product-key memory's, a shared ``memory_values``)
        and the rest (:func:`refmann.train.optim.param_groups`; Memory+ gives its values lr 1e-3 apart).
        ``scale`` multiplies every learning rate (``lr_decay``'s update); the optimizer state is the same."""
        rest = optim.make_optimizer(self.optimizer, lr=self.lr * scale, **self.optimizer_options)
        if self.value_optimizer is None and self.value_lr is None:
            return rest
        name = self.value_optimizer or self.optimizer
        lr = self.value_lr if self.value_lr is not None else _DEFAULT_LR[name]
        return optim.param_groups({"*values": optim.make_optimizer(name, lr=lr * scale), "*": rest})

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def model_kwargs(config: TrainConfig, task) -> dict:
    """The keywords :func:`build` gives the model: the task's sizes, the shared sizes where the model has them.

    ``hidden_size`` is a recurrent controller's size and a transformer's ``model_dim``; ``memory_size``,
    ``word_size`` and ``num_heads`` (a transformer's attention heads) go to the models that have
    them; a token task (``task.tokens``) sets ``tokens=True`` and is refused by a model that cannot
    read tokens; a model with a ``loss`` field gets the task's; then ``config.model_kwargs``.
    """
    if config.model not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {config.model!r}")
    fields = MODELS[config.model].fields()
    kwargs = dict(input_size=task.input_size, output_size=task.output_size, seed=config.seed)
    if "hidden_size" in fields:
        kwargs["hidden_size"] = config.hidden_size
    elif "model_dim" in fields:
        kwargs["model_dim"] = config.hidden_size
    for name in ("memory_size", "word_size", "num_heads"):  # the shared sizes, where the model has them
        if name in fields:
            kwargs[name] = getattr(config, name)
    if getattr(task, "tokens", False):
        if "tokens" not in fields:
            takers = sorted(name for name, spec in MODELS.items() if "tokens" in spec.fields())
            raise ValueError(f"model: task {config.task} gives int tokens; models that read them: {', '.join(takers)}")
        kwargs["tokens"] = True
    if "loss" in fields:
        kwargs["loss"] = task.loss
    kwargs.update(config.model_kwargs)
    return kwargs


def build(config: TrainConfig):
    """The task and the model a config describes."""
    task = make_task(config.task, **config.task_kwargs)
    return task, make_model(config.model, **model_kwargs(config, task))


class _SigintGuard:
    """Ctrl-C for the training loop: SIGINT raises ``KeyboardInterrupt`` only while the guard is
    *armed* (while a step computes into locals, which an exception simply discards); anywhere else
    (a step's commit, the checkpoint and log writes, the loop's bookkeeping) it is kept pending and
    raised by :meth:`check` at the next point where the trainer's state is whole.

    The handler is installed by the outermost :meth:`deferring` block, only in the main thread and
    only over Python's default handler (a program's own SIGINT handler is left alone: the trainer
    then relies on the rollback of an interrupted step alone).
    """

    def __init__(self):
        self.armed = False
        self.pending = False
        self._depth = 0
        self._previous = None

    def _handle(self, signum, frame):
        if self.armed:
            self.armed = False  # a second Ctrl-C during the rollback waits
            raise KeyboardInterrupt
        self.pending = True

    @contextlib.contextmanager
    def deferring(self, *, raise_pending=True):
        """Defer SIGINT inside the block (nests); leaving the outermost block restores the previous
        handler and, with ``raise_pending`` and no exception in flight, raises a deferred Ctrl-C."""
        if (
            self._depth == 0
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        self._depth += 1
        completed = False
        try:
            yield self
            completed = True
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.armed = False
                if self._previous is not None:
                    signal.signal(signal.SIGINT, self._previous)
                    self._previous = None
                if raise_pending and completed:
                    self.check()
                self.pending = False

    def arm(self):
        """From here a Ctrl-C raises at once (a deferred one too)."""
        self.armed = True
        if self.pending:
            self.armed = self.pending = False
            raise KeyboardInterrupt

    def disarm(self):
        self.armed = False

    def check(self):
        """Raise a deferred Ctrl-C now."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def take_pending(self) -> bool:
        """Whether a Ctrl-C was deferred (and forget it)."""
        pending, self.pending = self.pending, False
        return pending


class _StepResult(NamedTuple):
    """Everything one step changes, computed before any of it is committed."""

    step: int
    params: dict
    opt_state: dict
    rng: np.random.Generator
    curriculum: ExponentialCurriculum | None
    seconds: float
    losses: list  # the losses since the last log record (empty after a record)
    next_eval: int
    record: dict | None


#: TrainConfig fields added after runs were first saved, with the value an older run had in effect.
_ADDED_FIELDS = {"optimizer_options": {}, "lr_decay": None, "lr_decay_below": None}


_ABSENT = "<absent>"


def _differing(saved: dict, given: dict) -> list[str]:
    names = list(given) + [k for k in saved if k not in given]
    return [k for k in names if saved.get(k, _ABSENT) != given.get(k, _ABSENT)]


def _describe_config_diff(saved: dict, given: dict) -> str:
    return "; ".join(
        f"{k} (saved {saved.get(k, _ABSENT)!r}, given {given.get(k, _ABSENT)!r})" for k in _differing(saved, given)
    )


class Trainer:
    """Runs a :class:`TrainConfig` in ``out_dir``; ``run()`` trains until the budget is spent.

    The trainer's state is ``model.params``, ``opt_state``, ``rng``, ``curriculum``, ``step``,
    ``seconds``, ``records`` (the log), ``losses_since_log`` (the training losses the next log
    record averages) and ``next_eval`` (the sequence count at which the next evaluation is due);
    the checkpoint holds all of it. ``resume=True`` continues the run in ``out_dir`` from its
    checkpoint (from scratch if it has none); a checkpoint that is damaged, or was written with
    another configuration than ``config`` (or ``out_dir/config.json``), raises a ``ValueError``
    that says what is wrong.

    ``extend=True`` (with ``resume``) lets ``config.sequences`` be larger than the run's own budget,
    every other field equal: a finished (or unfinished) run trains on to the new budget. The steps
    are those of a run given the larger budget from the start — the same parameters, optimizer
    state and random draws, tested — and its log differs only in the record and evaluation that the
    old budget's last step wrote.
    """

    def __init__(self, config: TrainConfig, out_dir, *, resume=False, progress=None, extend=False):
        if extend and not resume:
            raise ValueError("extend: only a resumed run can be extended (pass resume=True, --resume)")
        self.config, self.out, self.extend = config, Path(out_dir), extend
        self._budget_ends = set()  # the last steps of the budgets before an extension (their log records)
        self.task, self.model = build(config)
        # a feed-forward host hands tables' gradients over as RowGrads, which a lazy optimizer updates row-wise
        self._grads_options = {"row_grads": True} if isinstance(self.model, FeedForwardModel) else {}
        c = config
        self.update = c.make_update()
        # lr_decay: the second update from the first evaluation under the threshold on (a fact of the log,
        # so a resumed run knows it from the records it keeps)
        self.decayed_update = c.make_update(c.lr_decay) if c.lr_decay is not None else None
        self.opt_state = None
        self.rng = np.random.default_rng(c.seed)
        self.curriculum = None
        if c.curriculum:
            lo, hi = self.task.level_range
            self.curriculum = ExponentialCurriculum(lo, hi, c.curriculum_threshold, c.curriculum_window)
        self.step = 0
        self.seconds = 0.0
        self.records = []
        self._decay_on = False  # a record holds "lr_decay" (kept in step with self.records)
        self.losses_since_log = []
        self.next_eval = c.eval_every
        self.eval_batch = self.task.sample(c.eval_size, np.random.default_rng([c.seed, 1]))
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._sigint = _SigintGuard()
        if getattr(getattr(self.model, "config", None), "restore", None) == "final":
            log.warning(
                "restore='final' carries the memory from one batch to the next; that memory is not in the "
                "checkpoint, so a resumed run will not repeat an uninterrupted one"
            )
        ckpt = self.out / "checkpoint.npz"
        if not resume and ((self.out / "log.jsonl").exists() or ckpt.exists()):
            raise FileExistsError(
                f"out_dir: {self.out} already holds a run; pass resume=True (--resume) or choose another folder"
            )
        if resume:
            self._check_config_file(self.out / "config.json")
            if ckpt.exists():
                self._load(ckpt)
            elif (self.out / "log.jsonl").exists() or (self.out / "config.json").exists():
                log.warning("no checkpoint in %s: starting from scratch", self.out)
            self._load_log(self.out / "log.jsonl")
            for name in RUN_FILES:  # left by a kill during an atomic write
                for stale in self.out.glob(f".{name}.*.tmp"):
                    stale.unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        _io.atomic_write_text(self.out / "config.json", json.dumps(c.to_dict(), indent=2))

    @property
    def lr_decayed(self) -> bool:
        """Whether the updates run at ``lr × lr_decay``: a record of the log marks the evaluation it began at."""
        return self.decayed_update is not None and self._decay_on

    @property
    def total_steps(self) -> int:
        """Steps in the budget: ``ceil(config.sequences / config.batch_size)``."""
        return -(-self.config.sequences // self.config.batch_size)

    def _log_steps(self, upto: int, budget_ends=()) -> list[int]:
        """The steps <= ``upto`` that write a log record (``budget_ends``: the last steps of the budgets
        an extended run had before, which wrote one too)."""
        c, ends = self.config, {self.total_steps, *budget_ends}
        return [s for s in range(1, upto + 1) if s % c.log_every == 0 or s in ends]

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self):
        """Write ``log.jsonl``, then ``checkpoint.npz``, each atomically, with Ctrl-C deferred.

        The log goes first, so a kill between the two leaves a log *ahead* of the checkpoint, never
        behind it: resuming drops the records past the checkpoint's step and recomputes them. With
        no records yet the checkpoint goes first (:meth:`run` starts by saving one at step 0), so a
        folder with a log always has a checkpoint too.

        The checkpoint holds ``format``, ``config`` (JSON), ``param/<name>``, ``opt/step`` and
        ``opt/<slot>/<name>`` (:func:`~refmann.train.optim.state_to_arrays`), ``curriculum/<key>``
        (:meth:`~refmann.tasks.ExponentialCurriculum.state_dict`), ``rng`` (the generator's state as
        JSON), ``step``, ``seconds``, ``losses_since_log`` and ``next_eval``.
        """
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        if self.opt_state is not None:
            arrays.update({f"opt/{k}": v for k, v in optim.state_to_arrays(self.opt_state).items()})
        if self.curriculum is not None:
            arrays.update({f"curriculum/{k}": np.asarray(v) for k, v in self.curriculum.state_dict().items()})
        arrays["format"] = np.array(CHECKPOINT_FORMAT)
        arrays["config"] = np.array(json.dumps(self.config.to_dict()))
        arrays["rng"] = np.array(json.dumps(self.rng.bit_generator.state))
        arrays["step"] = np.array(self.step)
        arrays["seconds"] = np.array(self.seconds, dtype=np.float64)
        arrays["losses_since_log"] = np.array(self.losses_since_log, dtype=np.float64)
        arrays["next_eval"] = np.array(self.next_eval)
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        with self._sigint.deferring():
            if self.records:
                _io.atomic_write_text(self.out / "log.jsonl", text)
                _io.atomic_savez(self.out / "checkpoint.npz", **arrays)
            else:  # nothing to lose: the checkpoint first, so that a log never exists without one
                _io.atomic_savez(self.out / "checkpoint.npz", **arrays)
                _io.atomic_write_text(self.out / "log.jsonl", text)

    def _check_same_config(self, saved, where):
        given = json.loads(json.dumps(self.config.to_dict()))
        if not isinstance(saved, dict):
            raise ValueError(f"resume: {where}: expected a JSON object (a TrainConfig), got {type(saved).__name__}")
        for name, default in _ADDED_FIELDS.items():  # fields newer than the run: their defaults
            saved.setdefault(name, default)
        if self.extend and saved.get("sequences") != given["sequences"]:
            old = saved.get("sequences")
            if not isinstance(old, int) or given["sequences"] < old:
                raise ValueError(
                    f"extend: {where} has a budget of {old!r} sequences; an extended budget must be at least "
                    f"that, got {given['sequences']}"
                )
            # the old budget's last step wrote a log record; _load and _load_log expect it
            self._budget_ends.add(-(-old // given["batch_size"]))
            saved = {**saved, "sequences": given["sequences"]}
        if saved != given:
            raise ValueError(
                f"resume: {where} was written with another configuration: {_describe_config_diff(saved, given)}; "
                "resume with the run's own settings, or train into another folder"
                + (
                    ""
                    if self.extend or set(_differing(saved, given)) != {"sequences"}
                    else "; --extend (extend=True) trains a run on to a larger budget"
                )
            )

    def _check_config_file(self, path):
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"resume: {path} is unreadable ({type(exc).__name__}: {exc})") from exc
        self._check_same_config(saved, path)

    def _load(self, path):
        """Restore every piece of trainer state from ``path``, or raise a ValueError saying what is wrong."""
        try:
            with open(path, "rb") as f:  # closed even when numpy fails on a damaged file
                data = _io.load_npz(f)
        except Exception as exc:  # BadZipFile, EOFError, OSError, ValueError, zlib.error, ...
            raise ValueError(
                f"resume: {path} is unreadable ({type(exc).__name__}: {exc}): a damaged file, or not a checkpoint"
            ) from exc

        def bad(what):
            return ValueError(f"resume: {path} is not a valid checkpoint: {what}")

        def scalar(key, kind):
            a = data[key]
            if a.ndim != 0 or a.dtype.kind not in kind or a.dtype == bool:
                raise bad(f"{key!r}: expected a scalar of kind {kind!r}, got dtype {a.dtype} shape {a.shape}")
            return a.item()

        def parse_json(key):
            try:
                return json.loads(scalar(key, "U"))
            except json.JSONDecodeError as exc:
                raise bad(f"{key!r}: not JSON ({exc})") from exc

        fmt = scalar("format", "iu") if "format" in data else 1
        if fmt not in (1, CHECKPOINT_FORMAT):
            raise bad(f"format {fmt}: this refmann reads formats 1 and {CHECKPOINT_FORMAT}")
        if "config" not in data:
            raise bad("no 'config' entry")
        self._check_same_config(parse_json("config"), path)  # first: another config explains the rest
        c, total = self.config, self.total_steps
        plain = {"format", "config", "rng", "step", "seconds"} | (
            {"losses_since_log", "next_eval"} if fmt > 1 else set()
        )
        missing = sorted(plain - {"format"} - set(data))
        if missing:
            raise bad(f"missing entries {missing}")
        extra = sorted(k for k in data if k not in plain and not k.startswith(("param/", "opt/", "curriculum/")))
        if extra:
            raise bad(f"unknown entries {extra}")

        step = scalar("step", "iu")
        if not 0 <= step <= total:
            raise bad(f"'step' = {step}: expected an integer in [0, {total}] (the budget's steps)")
        seconds = scalar("seconds", "f")
        if not (np.isfinite(seconds) and seconds >= 0):
            raise bad(f"'seconds' = {seconds}: expected a finite number >= 0")
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = parse_json("rng")
        except (TypeError, ValueError, KeyError) as exc:
            raise bad(f"'rng': not the state of a {type(rng.bit_generator).__name__} generator ({exc})") from exc

        saved = {k[len("param/") :]: v for k, v in data.items() if k.startswith("param/")}
        mine = self.model.params
        if set(saved) != set(mine):
            raise bad(f"parameters: missing {sorted(set(mine) - set(saved))}, unknown {sorted(set(saved) - set(mine))}")
        for key, p in mine.items():
            if saved[key].shape != p.shape or saved[key].dtype != p.dtype:
                raise bad(
                    f"param/{key}: expected {p.dtype} {p.shape} (the model's), "
                    f"got {saved[key].dtype} {saved[key].shape}"
                )
        params = {key: saved[key].copy() for key in mine}

        opt = {k[len("opt/") :]: v for k, v in data.items() if k.startswith("opt/")}
        if step == 0:
            if opt:
                raise bad("an optimizer state at step 0")
            opt_state = None
        else:
            if not opt:
                raise bad(f"no optimizer state ('opt/...') at step {step}")
            try:
                opt_state = optim.state_from_arrays(opt)
            except (TypeError, ValueError) as exc:
                raise bad(f"optimizer state: {exc}") from exc
            self._check_opt_state(opt_state, params, step, bad)

        curriculum = None
        saved_curriculum = {k[len("curriculum/") :]: v for k, v in data.items() if k.startswith("curriculum/")}
        if self.curriculum is not None:
            curriculum = copy.deepcopy(self.curriculum)
            try:
                curriculum.load_state_dict(saved_curriculum)
            except (TypeError, ValueError) as exc:
                raise bad(f"curriculum: {exc}") from exc
        elif saved_curriculum:
            raise bad("a curriculum state, but the configuration has no curriculum")

        # losses the next log record averages (none after the record of a budget's last step)
        due = 0 if step == total or step in self._budget_ends else step % c.log_every
        if fmt > 1:
            losses = data["losses_since_log"]
            if losses.shape != (due,) or losses.dtype != np.float64:
                raise bad(
                    f"'losses_since_log': expected float64 shape ({due},) at step {step}, "
                    f"got {losses.dtype} {losses.shape}"
                )
            losses = losses.tolist()
            next_eval = scalar("next_eval", "iu")
            if next_eval < c.eval_every or next_eval % c.eval_every:
                raise bad(f"'next_eval' = {next_eval}: expected a positive multiple of eval_every = {c.eval_every}")
        else:
            losses = []
            next_eval = (step * c.batch_size // c.eval_every + 1) * c.eval_every
            if due:
                log.warning(
                    "%s: a format-1 checkpoint at step %d: the next log record averages %d fewer losses "
                    "than an uninterrupted run's",
                    path,
                    step,
                    due,
                )

        # everything is valid: commit it at once
        self.model.params, self.opt_state, self.rng, self.curriculum = params, opt_state, rng, curriculum
        self.step, self.seconds, self.losses_since_log, self.next_eval = step, float(seconds), losses, next_eval
        log.info("resumed %s at step %d", self.out, self.step)

    def _check_opt_state(self, state, params, step, bad):
        """``state`` has the layout, shapes and dtypes of this optimizer's state for ``params``, at ``step``."""
        zeros = {k: np.zeros_like(p) for k, p in params.items()}
        _, fresh = self.update(params, zeros, None)
        if set(state) != set(fresh):
            raise bad(
                f"optimizer state: expected the slots {sorted(fresh)} of {self.config.optimizer}, got {sorted(state)}"
            )
        if state["step"] != step:
            raise bad(f"optimizer state: 'step' = {state['step']}, expected {step} (the trainer's step)")
        for slot, arrays in fresh.items():
            if not isinstance(arrays, dict):
                continue
            got = state[slot]
            if not isinstance(got, dict) or set(got) != set(arrays):
                raise bad(f"optimizer state: slot {slot!r} does not hold the model's parameters")
            for k, a in arrays.items():
                if got[k].shape != a.shape or got[k].dtype != a.dtype:
                    raise bad(f"opt/{slot}/{k}: expected {a.dtype} {a.shape}, got {got[k].dtype} {got[k].shape}")

    def _load_log(self, path):
        """Keep the log records up to the restored step, in memory and on disk (a kill between the log
        and the checkpoint writes leaves records past the checkpoint: they are recomputed)."""
        records = []
        if path.exists():
            try:
                lines = path.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"resume: {path} is unreadable ({type(exc).__name__}: {exc})") from exc
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"resume: {path}, line {number}: not a JSON record ({exc})") from exc
                step = record.get("step") if isinstance(record, dict) else None
                if isinstance(step, bool) or not isinstance(step, int):
                    raise ValueError(f"resume: {path}, line {number}: expected a JSON object with an integer 'step'")
                records.append(record)
        kept = [r for r in records if r["step"] <= self.step]
        ends = self._budget_ends | {r["step"] for r in kept if r.get("budget_end") is True}
        steps, expected = [r["step"] for r in kept], self._log_steps(self.step, ends)
        if steps != expected:
            if steps == sorted(set(steps)) and set(steps) <= set(expected):
                log.warning(
                    "%s lacks the records of %d of the %d logging steps up to step %d (lost before this "
                    "refmann wrote its log ahead of its checkpoints); continuing without them",
                    path,
                    len(expected) - len(steps),
                    len(expected),
                    self.step,
                )
            else:
                shown = steps if len(steps) <= 8 else [*steps[:4], "...", *steps[-3:]]
                raise ValueError(
                    f"resume: {path} does not belong to the checkpoint at step {self.step}: records for steps "
                    f"{shown}, expected a subset of every {self.config.log_every}th step "
                    "(move the log away to resume without it)"
                )
        if len(kept) != len(records):
            log.info("%s: dropped %d records past the checkpoint's step %d", path, len(records) - len(kept), self.step)
        if path.exists() and (len(kept) != len(records) or len(lines) != len(records)):
            _io.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        self.records = kept
        self._decay_on = any("lr_decay" in r for r in kept)

    # -- one step ------------------------------------------------------------------------------------
    def train_step(self):
        """One step, as a transaction: draw a batch, BPTT, clip, update, count, log; ``(loss, batch)``.

        Everything the step changes is computed into locals first: the batch is drawn from a copy
        of the RNG, the curriculum is a copy, the optimizer returns new parameter and state dicts,
        and the log record (on a logging step) is computed with the new parameters. :meth:`_commit`
        then stores it all with Ctrl-C deferred. An exception or Ctrl-C before the commit leaves
        the trainer exactly as it was before the step; after it, exactly as after the step.
        """
        c = self.config
        with self._sigint.deferring():
            params0 = self.model.params
            try:
                self._sigint.arm()
                t0 = time.perf_counter()
                rng, curriculum = copy.deepcopy(self.rng), copy.deepcopy(self.curriculum)
                level = curriculum.draw(rng) if curriculum is not None else None
                batch = self.task.sample(c.batch_size, rng, level=level)
                loss, grads = self.model.loss_and_grads(
                    batch.inputs, batch.targets, batch.mask, loss=self.task.loss, **self._grads_options
                )
                if c.clip is not None:
                    grads = optim.clip_elementwise(grads, c.clip)
                if c.clip_norm is not None:
                    grads, _ = optim.clip_global_norm(grads, c.clip_norm)
                update = self.decayed_update if self.lr_decayed else self.update
                params, opt_state = update(params0, grads, self.opt_state)
                if curriculum is not None:
                    curriculum.update(loss)
                seconds = self.seconds + (time.perf_counter() - t0)
                new = _StepResult(
                    step=self.step + 1,
                    params=params,
                    opt_state=opt_state,
                    rng=rng,
                    curriculum=curriculum,
                    seconds=seconds,
                    losses=[*self.losses_since_log, loss],
                    next_eval=self.next_eval,
                    record=None,
                )
                if new.step % c.log_every == 0 or new.step == self.total_steps:
                    new = self._log_record(new, batch)
                self._sigint.disarm()
            except BaseException:
                self._sigint.disarm()
                self._rollback(params0)
                raise
            self._commit(new)
        return loss, batch

    def _log_record(self, new: _StepResult, batch) -> _StepResult:
        """``new`` with its log record: the batch's metric and, when due, the evaluation, both computed
        with the step's new parameters (lent to the model for the forwards, then taken back)."""
        c, metric = self.config, self.task.metric_name
        params0, self.model.params = self.model.params, new.params
        try:
            value = float(np.mean(self.task.metric(self.model.forward(batch.inputs), batch)))
            record = {
                "step": new.step,
                "sequences": new.step * c.batch_size,
                "loss": float(np.mean(new.losses)),
                metric: value,
                "seconds": round(new.seconds, 3),
            }
            if new.curriculum is not None:
                record["level"] = new.curriculum.current_max
            next_eval = new.next_eval
            due = new.step * c.batch_size >= next_eval
            if due or new.step == self.total_steps:
                record[f"eval_{metric}"] = self.evaluate()
                if c.lr_decay is not None and not self.lr_decayed and record[f"eval_{metric}"] < c.decay_threshold:
                    record["lr_decay"] = c.lr_decay  # the next steps update at lr × lr_decay
            if due:  # not at an undue budget end: an extended run keeps the schedule of a longer one
                next_eval += c.eval_every
            if new.step == self.total_steps:
                record["budget_end"] = True  # lets an extended run's log keep this record (extend=True)
        finally:
            self.model.params = params0
        return new._replace(losses=[], next_eval=next_eval, record=record)

    def _commit(self, new: _StepResult):
        """The end of a step's transaction: plain assignments (train_step runs them with Ctrl-C deferred)."""
        self.model.params, self.opt_state, self.rng, self.curriculum = (
            new.params,
            new.opt_state,
            new.rng,
            new.curriculum,
        )
        self.seconds, self.losses_since_log, self.next_eval = new.seconds, new.losses, new.next_eval
        if new.record is not None:
            self.records.append(new.record)
            self._decay_on = self._decay_on or "lr_decay" in new.record
        self.step = new.step

    def _rollback(self, params):
        """Undo an interrupted step: the old parameters, and an in-place memory (SAM) that starts from
        ``memory0`` again in case the interrupt landed inside the model's own bookkeeping."""
        self.model.params = params
        core = getattr(self.model, "core", None)
        if getattr(core, "in_place", False):
            core.forget_steps()

    def evaluate(self):
        logits = self.model.forward(self.eval_batch.inputs)
        return float(np.mean(self.task.metric(logits, self.eval_batch)))

    # -- the loop ------------------------------------------------------------------------------------
    def run(self):
        """Train until ``config.sequences``; returns the summary dict (:meth:`summary`).

        Ctrl-C ends the loop between steps (an interrupted step is rolled back, a deferred Ctrl-C
        waits for the step's commit or the checkpoint being written); the checkpoint and the log
        are then saved, the pictures drawn and ``summary["interrupted"]`` is True. A Ctrl-C during
        those final writes is noted in the summary, not raised.
        """
        c = self.config
        total = self.total_steps
        interrupted = False
        with self._sigint.deferring(raise_pending=False):
            bar = None
            try:
                from tqdm import tqdm

                bar = tqdm(
                    total=total,
                    initial=self.step,
                    disable=not self.progress,
                    unit="step",
                    desc=f"{c.model} on {c.task}",
                )
                metric = self.task.metric_name
                if not (self.out / "checkpoint.npz").exists():
                    self.save_checkpoint()  # at step 0: a kill before the next one resumes from here
                with single_threaded_blas():
                    while self.step < total:
                        logged = len(self.records)
                        self.train_step()
                        if len(self.records) > logged:
                            record = self.records[-1]
                            bar.set_postfix(
                                loss=f"{record['loss']:.3g}",
                                metric=f"{record[metric]:.2f}",
                                eval=record.get(f"eval_{metric}", ""),
                            )
                        bar.update(1)
                        if self.step % c.checkpoint_every == 0:
                            self.save_checkpoint()
                        self._sigint.check()
            except KeyboardInterrupt:
                interrupted = True
                log.warning("interrupted at step %d: saving a checkpoint", self.step)
            finally:
                if bar is not None:
                    bar.close()
            self.save_checkpoint()
            if self.records:
                try:
                    self._sigint.arm()
                    self.plot()
                except KeyboardInterrupt:
                    interrupted = True
                    self._rollback(self.model.params)
                finally:
                    self._sigint.disarm()
            summary = self.summary(interrupted or self._sigint.take_pending())
            _io.atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2))
        return summary

    def summary(self, interrupted=False):
        """The run's numbers. ``final_eval_<metric>`` and ``sequences_to_target`` (and, for bit errors,
        ``sequences_to_under_1_bit``) are None until an evaluation has happened / reached the target."""
        c = self.config
        metric = self.task.metric_name
        evals = [(r["sequences"], r[f"eval_{metric}"]) for r in self.records if f"eval_{metric}" in r]
        reached = next((s for s, e in evals if e < self.task.metric_target), None)
        seqs = self.step * c.batch_size
        out = {
            "model": c.model,
            "task": c.task,
            "seed": c.seed,
            "steps": self.step,
            "sequences": seqs,
            "metric": metric,
            "metric_label": self.task.metric_label,
            f"final_eval_{metric}": evals[-1][1] if evals else None,
            "sequences_to_target": reached,
        }
        if metric == "bit_errors":
            out["sequences_to_under_1_bit"] = reached
        return {
            **out,
            "seconds": round(self.seconds, 2),
            "seconds_per_1000_sequences": round(1000 * self.seconds / max(seqs, 1), 3),
            "interrupted": interrupted,
            "out_dir": str(self.out),
        }

    def plot(self):
        """Write learning_curve.png and access.png into the run folder; returns their paths."""
        from .. import viz

        c = self.config
        t = self.task
        curve = viz.plot_learning_curve(
            self.records,
            self.out / "learning_curve.png",
            title=f"{MODELS[c.model].label} on {c.task} (seed {c.seed})",
            metric=t.metric_name,
            metric_label=t.metric_label,
            target=t.metric_target,
        )
        lo, hi = self.task.level_range
        batch = self.task.sample(1, np.random.default_rng([c.seed, 2]), level=hi)
        logits = self.model.forward(batch.inputs)
        weights = self.model.access_weights(batch.inputs)
        if weights["read"].size:
            read, write = weights["read"][:, 0, 0], weights["write"][:, 0, 0]
        else:
            read = write = np.zeros((batch.inputs.shape[0], 0))
        if self.task.loss == "softmax_ce":  # class targets: one-hot rows beside the softmax
            targets = np.eye(logits.shape[-1])[batch.targets[:, 0]]
            outputs = softmax(logits[:, 0], axis=-1)
        else:
            targets, outputs = batch.targets[:, 0], sigmoid(logits[:, 0])
        shown = batch.inputs[:, 0]
        if np.issubdtype(shown.dtype, np.integer):  # tokens: one-hot rows
            shown = np.eye(self.task.input_size)[shown]
        access = viz.plot_access(
            shown,
            targets,
            outputs,
            read,
            write,
            self.out / "access.png",
            title=f"{c.model.upper()} on {c.task}: one sequence, head 0",
        )
        return curve, access
