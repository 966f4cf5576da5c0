"""Training loop: sample a task batch, BPTT, clip, optimizer step; log, evaluate, checkpoint, plot.

A run lives in one folder::

    config.json        the TrainConfig
    log.jsonl          one record per logging interval (loss, bit errors, eval bit errors, time)
    checkpoint.npz     params, optimizer state, RNG state, curriculum, counters (no pickles)
    learning_curve.png bit errors and loss against sequences seen
    access.png         inputs, targets, outputs and read/write weights for one sequence
    summary.json       final numbers

A resumed run continues bit-identically: everything random comes from one ``np.random.Generator``
whose state is in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from .. import _io
from .._threads import single_threaded_blas
from ..models import MODELS, make_model
from ..ops import sigmoid, softmax
from ..tasks import ExponentialCurriculum, make_task
from . import optim

log = logging.getLogger(__name__)

#: Optimizers the trainer offers, with their default learning rates.
DEFAULT_LR = {"rmsprop": 1e-4, "adam": 1e-3, "sgd": 1e-2, "sparse_adam": 1e-3, "rowwise_adagrad": 1e-2}
_DEFAULT_LR = DEFAULT_LR


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
    clip: float | None = 10.0  # elementwise gradient clip (the NTM papers' ±10); None: off
    clip_norm: float | None = None  # global-norm clip; None: off
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

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def build(config: TrainConfig):
    """The task and the model a config describes."""
    task = make_task(config.task, **config.task_kwargs)
    if config.model not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {config.model!r}")
    fields = MODELS[config.model].fields()
    kwargs = dict(
        input_size=task.input_size, output_size=task.output_size, hidden_size=config.hidden_size, seed=config.seed
    )
    for name in ("memory_size", "word_size", "num_heads"):  # the shared sizes, where the model has them
        if name in fields:
            kwargs[name] = getattr(config, name)
    kwargs.update(config.model_kwargs)
    return task, make_model(config.model, **kwargs)


class Trainer:
    """Runs a :class:`TrainConfig` in ``out_dir``; ``run()`` trains until the budget is spent."""

    def __init__(self, config: TrainConfig, out_dir, *, resume=False, progress=None):
        self.config, self.out = config, Path(out_dir)
        self.task, self.model = build(config)
        c = config
        self.update = optim.make_optimizer(c.optimizer, lr=c.lr)
        self.opt_state = None
        self.rng = np.random.default_rng(c.seed)
        self.curriculum = None
        if c.curriculum:
            lo, hi = self.task.level_range
            self.curriculum = ExponentialCurriculum(lo, hi, c.curriculum_threshold, c.curriculum_window)
        self.step = 0
        self.records = []
        self.eval_batch = self.task.sample(c.eval_size, np.random.default_rng([c.seed, 1]))
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.seconds = 0.0
        ckpt = self.out / "checkpoint.npz"
        if resume and ckpt.exists():
            self._load(ckpt)
        elif resume:
            log.warning("no checkpoint in %s: starting from scratch", self.out)
        if not resume and (self.out / "log.jsonl").exists():
            raise FileExistsError(
                f"out_dir: {self.out} already holds a run; pass resume=True (--resume) or choose another folder"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        _io.atomic_write_text(self.out / "config.json", json.dumps(c.to_dict(), indent=2))

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self):
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        if self.opt_state is not None:
            arrays.update({f"opt/{k}": v for k, v in optim.state_to_arrays(self.opt_state).items()})
        if self.curriculum is not None:
            arrays.update({f"curriculum/{k}": np.asarray(v) for k, v in self.curriculum.state_dict().items()})
        arrays["rng"] = np.array(json.dumps(self.rng.bit_generator.state))
        arrays["step"] = np.array(self.step)
        arrays["seconds"] = np.array(self.seconds)
        arrays["config"] = np.array(json.dumps(self.config.to_dict()))
        _io.atomic_savez(self.out / "checkpoint.npz", **arrays)
        # the log holds exactly the records up to this checkpoint
        _io.atomic_write_text(self.out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in self.records))

    def _load(self, path):
        data = _io.load_npz(path)
        saved = json.loads(str(data["config"]))
        if saved != self.config.to_dict():
            diff = {k: (saved.get(k), v) for k, v in self.config.to_dict().items() if saved.get(k) != v}
            raise ValueError(f"resume: the checkpoint was made with another config (saved, given): {diff}")
        for key in self.model.params:
            self.model.params[key] = data[f"param/{key}"].copy()
        opt = {k[4:]: v for k, v in data.items() if k.startswith("opt/")}
        self.opt_state = optim.state_from_arrays(opt) if opt else None
        if self.curriculum is not None:
            self.curriculum.load_state_dict({k[11:]: v for k, v in data.items() if k.startswith("curriculum/")})
        self.rng.bit_generator.state = json.loads(str(data["rng"]))
        self.step = int(data["step"])
        self.seconds = float(data["seconds"])
        log_path = self.out / "log.jsonl"
        if log_path.exists():
            self.records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
            self.records = [r for r in self.records if r["step"] <= self.step]
        log.info("resumed %s at step %d", self.out, self.step)

    # -- one step ------------------------------------------------------------------------------------
    def train_step(self):
        c = self.config
        level = self.curriculum.draw(self.rng) if self.curriculum is not None else None
        batch = self.task.sample(c.batch_size, self.rng, level=level)
        loss, grads = self.model.loss_and_grads(batch.inputs, batch.targets, batch.mask, loss=self.task.loss)
        if c.clip is not None:
            grads = optim.clip_elementwise(grads, c.clip)
        if c.clip_norm is not None:
            grads, _ = optim.clip_global_norm(grads, c.clip_norm)
        self.model.params, self.opt_state = self.update(self.model.params, grads, self.opt_state)
        if self.curriculum is not None:
            self.curriculum.update(loss)
        self.step += 1
        return loss, batch

    def evaluate(self):
        logits = self.model.forward(self.eval_batch.inputs)
        return float(np.mean(self.task.metric(logits, self.eval_batch)))

    # -- the loop ------------------------------------------------------------------------------------
    def run(self):
        """Train until ``config.sequences``; returns the summary dict. Ctrl-C saves a checkpoint first."""
        from tqdm import tqdm

        c = self.config
        total_steps = -(-c.sequences // c.batch_size)
        bar = tqdm(
            total=total_steps, initial=self.step, disable=not self.progress, unit="step", desc=f"{c.model} on {c.task}"
        )
        interrupted = False
        next_eval = (self.step * c.batch_size // c.eval_every + 1) * c.eval_every
        losses = []
        metric = self.task.metric_name
        try:
            with single_threaded_blas():
                while self.step < total_steps:
                    t0 = time.perf_counter()
                    loss, batch = self.train_step()
                    self.seconds += time.perf_counter() - t0
                    losses.append(loss)
                    if self.step % c.log_every == 0 or self.step == total_steps:
                        value = float(np.mean(self.task.metric(self.model.forward(batch.inputs), batch)))
                        record = {
                            "step": self.step,
                            "sequences": self.step * c.batch_size,
                            "loss": float(np.mean(losses)),
                            metric: value,
                            "seconds": round(self.seconds, 3),
                        }
                        if self.curriculum is not None:
                            record["level"] = self.curriculum.current_max
                        if self.step * c.batch_size >= next_eval or self.step == total_steps:
                            record[f"eval_{metric}"] = self.evaluate()
                            next_eval += c.eval_every
                        self.records.append(record)
                        bar.set_postfix(
                            loss=f"{record['loss']:.3g}", metric=f"{value:.2f}", eval=record.get(f"eval_{metric}", "")
                        )
                        losses = []
                    bar.update(1)
                    if self.step % c.checkpoint_every == 0:
                        self.save_checkpoint()
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted at step %d: saving a checkpoint", self.step)
        finally:
            bar.close()
        self.save_checkpoint()
        summary = self.summary(interrupted)
        _io.atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2))
        if self.records:
            self.plot()
        return summary

    def summary(self, interrupted=False):
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
        access = viz.plot_access(
            batch.inputs[:, 0],
            targets,
            outputs,
            read,
            write,
            self.out / "access.png",
            title=f"{c.model.upper()} on {c.task}: one sequence, head 0",
        )
        return curve, access
