"""What the experiment scripts share: argparse types, the run arguments' check, the progress bar, "m ± s",
the training config of the episode experiments, and the record a script's run leaves (rows.json, footer)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .. import _checks
from .._checks import check_seed
from .._io import atomic_write_text

__all__ = ["RunRecord", "adam_train_config", "check_common", "mean_sd", "positive_int", "progress_bar", "seed_int"]


def positive_int(text):
    """argparse type: an int >= 1 (a bad value: a one-line message, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def seed_int(text):
    """argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def check_common(seeds, steps, batch_size, dtype):
    """The shared run arguments, checked: ``(seeds tuple, steps, batch_size, dtype type)``.

    ``batch_size`` is at least 2 (a batch norm needs two rows); ``dtype`` float32 or float64.
    """
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds: expected at least one seed, got none")
    seeds = tuple(check_seed(s) for s in seeds)
    steps = _checks.check_positive_int(steps, "steps")
    batch_size = _checks.check_positive_int(batch_size, "batch_size", minimum=2)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
    return seeds, steps, batch_size, dtype.type


def progress_bar(total, desc, progress):
    """A tqdm bar on stderr, counting steps (disabled without ``progress``)."""
    from tqdm import tqdm

    return tqdm(total=total, disable=not progress, unit="step", desc=desc, file=sys.stderr)


def mean_sd(values, fmt=".3f") -> str:
    """``"m ± s"`` (sample s.d.) of the non-None values, one value as is, none as "—"."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], fmt)
    sd = format(float(np.std(values, ddof=1)), fmt.replace("+", ""))
    return f"{format(float(np.mean(values)), fmt)} ± {sd}"


def adam_train_config(model, task, task_kwargs, c, seed, *, eval_every, checkpoint_every):
    """The TrainConfig of a run of the episode experiments (bAbI, one-shot): Adam at ``c["lr"]``, the sizes
    of ``c`` (``sequences``, ``batch_size``, ``memory_size``, ``word_size``, ``num_heads``, ``hidden_size``),
    32 evaluation sequences, a log record every 5 steps."""
    from ..train import TrainConfig

    return TrainConfig(
        model=model,
        task=task,
        task_kwargs=task_kwargs,
        sequences=c["sequences"],
        batch_size=c["batch_size"],
        optimizer="adam",
        lr=c["lr"],
        memory_size=c["memory_size"],
        word_size=c["word_size"],
        num_heads=c["num_heads"],
        hidden_size=c["hidden_size"],
        eval_every=eval_every,
        eval_size=32,
        log_every=5,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )


class RunRecord:
    """What a script's run leaves beside its table: the command, the machine, ``rows.json`` and the footer.

    Made just before the runs start (the wall time counts from here). ``write_rows(rows)`` writes
    ``out/rows.json`` atomically: ``{"command", "machine", "config", "rows"}``.
    """

    def __init__(self, module: str, argv, config: dict, out):
        from ..bench._proc import machine_info

        words = sys.argv[1:] if argv is None else argv
        self.command = f"python -m refmann.experiments.{module} {' '.join(words)}".strip()
        self.machine = machine_info()
        self.config = config
        self.out = Path(out) if out is not None else None
        self.start = time.perf_counter()

    def write_rows(self, rows) -> None:
        doc = {"command": self.command, "machine": self.machine, "config": self.config, "rows": rows}
        atomic_write_text(self.out / "rows.json", json.dumps(doc, indent=1, default=str) + "\n")

    def footer(self) -> str:
        """The lines printed under the table: the command, the wall time so far and the machine."""
        from ..bench._proc import machine_line

        return (
            f"\nCommand: {self.command}\n"
            f"Wall time {time.perf_counter() - self.start:.0f} s. Machine: {machine_line(self.machine)}."
        )
