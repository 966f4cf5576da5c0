r"""The curriculum at scale: SAM on associative recall with the exponential curriculum, beside DAM and NTM.

Rae et al. (2016), §4.3 and Figure 3: each model trains on associative recall (NTM form, level = the
number of items) under :class:`refmann.tasks.ExponentialCurriculum`. The maximum level :math:`h`
starts at 2 and doubles whenever the mean training loss of the last ``window`` batches is under
``threshold``; each batch's level is drawn uniformly from ``2 .. h``. A sequence of level n lasts
``4 (n + 2)`` steps, so a model can only climb as far as its memory and its step time let it. The
dense models get a small memory (the paper's 64 words, so that all models use about the same
physical memory), SAM a large one with the LSH index (the paper's 2 × 10⁶ words; ``--sam-memory``).

Each model trains for ``--minutes`` of training time (the trainer's own clock, which a resume
continues; evaluation and checkpoints are not counted), or until its level has not doubled for
``--stall-minutes``, or (with ``--sequences``) until it has seen that many sequences, a budget that
does not depend on the machine. The report is the level against training time and against sequences: a table
of the time and sequences at which each level was first reached, and ``levels.png``.

Run ``python -m refmann.experiments.curriculum --out DIR`` (about ``minutes × models`` of one core;
``--quick`` for the CI sizes, seconds). ``run(**config) -> rows`` (keys :data:`ROW_KEYS`),
``format_table(rows) -> str``, ``main(argv=None)``. Every model's run folder (config, log with the
level every 5 steps, checkpoint) goes under ``--out``; an interrupted run continues with
``--resume`` bit-identically up to the point where the clock decides to stop, which depends on the
machine.

References
----------
Rae, Hunt, Harley, Danihelka, Senior, Wayne, Graves, Lillicrap (2016), *Scaling Memory-Augmented
Neural Networks with Sparse Reads and Writes*, arXiv:1610.09027, §4.3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._io import atomic_write_text, read_jsonl
from ._common import RunRecord, positive_float, positive_int, seed_int

__all__ = ["DEFAULTS", "LEVELS", "MODELS", "QUICK", "ROW_KEYS", "format_table", "level_times", "main", "run"]

#: The recurrent models the experiment can train.
MODELS = ("sam", "dam", "ntm", "sdnc", "dnc", "lstm")
#: Levels whose first time and sequence count the table reports.
LEVELS = tuple(2**k for k in range(2, 13))  # 4, 8, ..., 4096
ROW_KEYS = ("model", "memory_size", "level", "sequences", "seconds", "stopped", "reached")

#: The full runs: an hour per model at most.
DEFAULTS = {
    "models": ("sam", "dam", "ntm"), "minutes": 60.0, "stall_minutes": 15.0, "max_items": 8192,
    "sam_memory": 2**17, "dense_memory": 64, "index": "lsh", "k": 8, "word_size": 20, "num_heads": 1,
    "hidden_size": 100,
    "batch_size": 1, "lr": 3e-4, "threshold": 1.0, "window": 50, "seed": 0, "sequences": None,
}  # fmt: skip
#: The CI sizes (seconds): a budget in sequences, so that the result does not depend on the machine's speed.
QUICK = {
    **DEFAULTS, "minutes": 60.0, "stall_minutes": 60.0, "sequences": 40, "max_items": 16, "sam_memory": 256,
    "dense_memory": 16, "word_size": 8, "hidden_size": 16, "threshold": 50.0, "window": 2,
}  # fmt: skip


def _config(model: str, cfg: dict):
    from ..train import TrainConfig

    sparse = model in ("sam", "sdnc")
    return TrainConfig(
        model=model,
        task="associative_recall",
        task_kwargs={"min_items": 2, "max_items": cfg["max_items"]},
        sequences=10**9,  # the clock stops the run
        batch_size=cfg["batch_size"],
        optimizer="rmsprop",
        lr=cfg["lr"],
        clip=10.0,
        memory_size=cfg["sam_memory"] if sparse else cfg["dense_memory"],
        word_size=cfg["word_size"],
        num_heads=cfg["num_heads"],
        hidden_size=cfg["hidden_size"],
        model_kwargs={"index": cfg["index"], "k": cfg["k"]} if sparse else {},
        curriculum=True,
        curriculum_threshold=cfg["threshold"],
        curriculum_window=cfg["window"],
        eval_every=10**9,  # the level is the measure; no evaluation set of 8,192-item sequences
        eval_size=1,
        seed=cfg["seed"],
    )


def level_times(records, levels=LEVELS) -> dict[int, tuple[float, int]]:
    """``{level: (training seconds, sequences)}`` at the first log record whose level is at least each of ``levels``."""
    out = {}
    for level in levels:
        for r in records:
            if r.get("level", 0) >= level:
                out[level] = (float(r["seconds"]), int(r["sequences"]))
                break
    return out


def _train(trainer, budget: float, stall: float, progress: bool, sequences: int | None = None) -> str:
    """Step ``trainer`` until its clock passes ``budget`` seconds, its level stalls for ``stall`` seconds or it
    has seen ``sequences`` sequences; the reason ("budget", "stalled" or "sequences")."""
    from tqdm import tqdm

    from .._threads import single_threaded_blas

    c = trainer.config
    level, since = trainer.curriculum.current_max, trainer.seconds
    for r in trainer.records:  # a resumed run: when did the level last change?
        if r["level"] != level:
            continue
        since = min(since, r["seconds"])
    bar = tqdm(total=round(budget), initial=round(min(trainer.seconds, budget)), unit="s", disable=not progress,
               desc=f"{c.model} curriculum", file=sys.stderr)  # fmt: skip
    stopped = "budget"
    try:
        with single_threaded_blas():
            while trainer.seconds < budget:
                if sequences is not None and trainer.step * c.batch_size >= sequences:
                    stopped = "sequences"
                    break
                if trainer.seconds - since >= stall:
                    stopped = "stalled"
                    break
                before = trainer.seconds
                trainer.train_step()
                if trainer.curriculum.current_max != level:
                    level, since = trainer.curriculum.current_max, trainer.seconds
                    bar.set_postfix(level=level)
                bar.update(round(min(trainer.seconds, budget)) - round(min(before, budget)))
                if trainer.step % c.checkpoint_every == 0:
                    trainer.save_checkpoint()
    finally:
        bar.close()
        trainer.save_checkpoint()
    return stopped


def run(*, out, resume=False, progress=True, on_row=None, **config) -> list[dict]:
    """Train each model of ``config["models"]`` under the curriculum; one row per model.

    Parameters
    ----------
    out : path
        Run folders go to ``out/MODEL``; a folder that already holds a run needs ``resume``.
    resume : bool
        Continue the runs in ``out`` from their checkpoints.
    progress : bool
        A progress bar per model (training seconds against the budget).
    on_row : callable, optional
        Called with the rows so far after every model.
    **config
        :data:`DEFAULTS`'s keys (missing ones take the default).

    Returns
    -------
    list of dict
        :data:`ROW_KEYS`: ``level`` is the highest :math:`h` reached, ``stopped`` is "budget",
        "stalled" or "sequences", ``reached`` maps each level of :data:`LEVELS` reached to [seconds, sequences].
    """
    from ..train import Trainer

    cfg = {**DEFAULTS, **config}
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"run: unknown options {unknown}; expected keys of DEFAULTS")
    for name in cfg["models"]:
        if name not in MODELS:
            raise ValueError(f"models: expected names from {', '.join(MODELS)}, got {name!r}")
    for name in ("minutes", "stall_minutes"):
        value = cfg[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name}: expected a positive number, got {value!r}")
    budget = cfg["sequences"]
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise ValueError(f"sequences: expected a positive int or None, got {budget!r}")
    out = Path(out)
    rows = []
    for model in cfg["models"]:
        folder = out / model
        config_ = _config(model, cfg)
        if (folder / "checkpoint.npz").exists() and not resume:
            raise FileExistsError(f"--out: {folder} holds a run already; continue it with --resume or pick another")
        trainer = Trainer(config_, folder, resume=resume and (folder / "checkpoint.npz").exists(), progress=False)
        stopped = _train(trainer, 60.0 * cfg["minutes"], 60.0 * cfg["stall_minutes"], progress, budget)
        reached = level_times(trainer.records)
        rows.append(
            {
                "model": model,
                "memory_size": config_.memory_size,
                "level": trainer.curriculum.current_max,
                "sequences": trainer.step * config_.batch_size,
                "seconds": round(trainer.seconds, 1),
                "stopped": stopped,
                "reached": {str(k): list(v) for k, v in reached.items()},
            }
        )
        if on_row is not None:
            on_row(rows)
    return rows


def plot(out, rows, path) -> Path:
    """The level against training minutes and against sequences, one line per model (from the run logs)."""
    from .. import viz

    fig, axes = viz.subplots(1, 2, figsize=(10, 3.8))
    for i, row in enumerate(rows):
        log = Path(out) / row["model"] / "log.jsonl"
        records = read_jsonl(log)
        minutes = [r["seconds"] / 60 for r in records]
        seqs = [r["sequences"] for r in records]
        levels = [r["level"] for r in records]
        label = f"{row['model'].upper()} (N = {row['memory_size']:,})"
        axes[0].step(minutes, levels, where="post", color=f"C{i}", label=label)
        axes[1].step(seqs, levels, where="post", color=f"C{i}", label=label)
    for ax, xlabel in zip(axes, ("training minutes", "sequences")):
        ax.set_yscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("curriculum level h (items)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Associative recall, exponential curriculum (Rae et al. 2016, §4.3)")
    return viz.save_png(fig, path)


def format_table(rows) -> str:
    """The rows as a Markdown table: the level reached, and when (minutes / sequences) each level was first reached."""
    shown = [lv for lv in LEVELS if any(str(lv) in r["reached"] for r in rows)]
    head = "| model | N | level reached | sequences | minutes | stopped | " + " | ".join(f"level {lv}" for lv in shown)
    lines = [head + " |", "|" + " --- |" * (6 + len(shown))]
    for r in rows:
        cells = [
            r["model"].upper(), f"{r['memory_size']:,}", str(r["level"]), f"{r['sequences']:,}",
            f"{r['seconds'] / 60:.1f}", r["stopped"],
        ]  # fmt: skip
        for lv in shown:
            hit = r["reached"].get(str(lv))
            cells.append("—" if hit is None else f"{hit[0] / 60:.1f} min / {hit[1]:,}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parser():
    p = argparse.ArgumentParser(prog="python -m refmann.experiments.curriculum", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=None, help="default: sam dam ntm")
    p.add_argument("--minutes", type=positive_float, default=None, help="training minutes per model (60)")
    p.add_argument("--stall-minutes", type=positive_float, default=None, help="stop a model whose level has not "
                   "doubled for this long (15)")  # fmt: skip
    p.add_argument("--sequences", type=positive_int, default=None, help="stop a model after this many sequences "
                   "(no cap)")  # fmt: skip
    p.add_argument("--max-items", type=positive_int, default=None, help="the curriculum's cap on the level (8192)")
    p.add_argument("--sam-memory", type=positive_int, default=None, help="SAM's and SDNC's memory rows (131072)")
    p.add_argument("--dense-memory", type=positive_int, default=None, help="the dense models' memory rows (64)")
    p.add_argument("--index", choices=("lsh", "linear"), default=None, help="SAM's index (lsh)")
    p.add_argument(
        "--k",
        type=positive_int,
        default=None,
        help="SAM's and SDNC's K, slots read per head (8, the associative-recall regime's)",
    )
    p.add_argument("--lr", type=positive_float, default=None, help="RMSProp's step size (3e-4)")
    p.add_argument("--threshold", type=positive_float, default=None, help="mean loss per sequence under which the "
                   "level doubles (1.0)")  # fmt: skip
    p.add_argument("--window", type=positive_int, default=None, help="batches averaged (50)")
    p.add_argument("--hidden-size", type=positive_int, default=None, help="controller units (100)")
    p.add_argument("--heads", type=positive_int, default=None, help="heads (1)")
    p.add_argument("--seed", type=seed_int, default=None, help="(0)")
    p.add_argument("--quick", action="store_true", help="the CI sizes (seconds)")
    p.add_argument("--out", required=True, metavar="DIR", help="the run folders, rows.json, table.md, levels.png")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    config = dict(QUICK if args.quick else DEFAULTS)
    if args.models is not None:
        if len(set(args.models)) != len(args.models):
            p.error(f"--models: expected distinct names, got {' '.join(args.models)}")
        config["models"] = tuple(args.models)
    for name in ("minutes", "stall_minutes", "sequences", "max_items", "sam_memory", "dense_memory", "index", "k",
                 "lr", "threshold", "window", "hidden_size", "seed"):  # fmt: skip
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if args.heads is not None:
        config["num_heads"] = args.heads
    if config["max_items"] < 2:
        p.error("--max-items: expected at least 2 (the curriculum starts at 2 items)")
    out = Path(args.out)
    record = RunRecord("curriculum", argv, config, out)
    try:
        rows = run(**config, out=out, resume=args.resume, progress=not args.quiet, on_row=record.write_rows)
    except (FileExistsError, ValueError) as err:
        p.error(str(err))
    table = format_table(rows)
    atomic_write_text(out / "table.md", table + "\n")
    plot(out, rows, out / "levels.png")
    print(table)
    print(record.footer())
    print(f"Figure: {out / 'levels.png'}")
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
