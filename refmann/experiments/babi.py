r"""bAbI, jointly trained: per-task error rates of LSTM, DAM, SAM, DNC and SDNC, beside the published numbers.

Graves et al. (2016) and Rae et al. (2016) train one model on all 20 bAbI tasks together and report
each task's error rate (a question is wrong if any of its answer words is) and the number of failed
tasks (error above 5 %). Here every model is trained by :class:`refmann.train.Trainer` on
:class:`refmann.tasks.BabiTask` (``task="babi"``): by default on the tasks refmann's generator writes
(:data:`refmann.tasks.babi.GENERATED_TASKS`), or with ``--data DIR`` on the official files. Each trained
model is then scored on the whole test split with :meth:`~refmann.tasks.BabiTask.per_task_errors`.
The table puts the published per-task errors beside ours, with the caveats that make them not
comparable: the published models saw the real en-10k data for about 500,000 updates on a GPU; these
runs see a few thousand batches of generated stories on one CPU core.

Run ``python -m refmann.experiments.babi --out DIR`` (``--quick`` for the CI sizes, seconds; ``--help``
for the flags). ``run(**config) -> rows`` (keys :data:`ROW_KEYS`), ``format_table(rows) -> str``,
``main(argv=None)``; every run's folder (config, log, checkpoint, learning curve) goes under ``--out``,
with ``rows.json`` (written atomically after every finished run) and ``table.md``. ``--resume``
continues interrupted runs bit-identically.

References
----------
Weston et al. (2015), *Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks*,
arXiv:1502.05698.
Graves et al. (2016), *Hybrid computing using a neural network with dynamic external memory*,
Nature 538, 471–476 (the DNC's bAbI table).
Rae et al. (2016), *Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes*,
arXiv:1610.09027 (the SDNC's bAbI result).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .._io import atomic_write_text
from .._threads import single_threaded_blas
from ..tasks.babi import GENERATED_TASKS, BabiTask, summarize_errors
from ._common import RunRecord, adam_train_config, mean_sd, positive_float, positive_int, seed_int

__all__ = ["DEFAULTS", "MODELS", "PUBLISHED", "QUICK", "ROW_KEYS", "format_table", "main", "run"]

#: The recurrent models the experiment can train.
MODELS = ("lstm", "ntm", "dam", "sam", "dnc", "sdnc")

#: The full runs: 20,000 stories (1,250 batches of 16) per model.
DEFAULTS = {
    "models": ("lstm", "dam", "sam", "dnc", "sdnc"), "tasks": GENERATED_TASKS, "data": None, "family": "en-10k",
    "questions_per_task": 1000, "max_sentences": 50, "sequences": 20_000, "batch_size": 16, "lr": 1e-3,
    "hidden_size": 100, "memory_size": 64, "word_size": 20, "num_heads": 1, "seeds": (0,),
}  # fmt: skip
#: The CI sizes (seconds): three tasks, 20 questions each, 4 steps of 4 stories, tiny models.
QUICK = {
    **DEFAULTS, "tasks": (1, 6, 15), "questions_per_task": 20, "sequences": 16, "batch_size": 4, "hidden_size": 16,
    "memory_size": 16, "word_size": 8,
}  # fmt: skip

#: The keys of every row; ``errors`` maps each bAbI task (as a string, for JSON) to its test error rate.
ROW_KEYS = (
    "model", "seed", "tasks", "data", "sequences", "batch_size", "errors", "mean_error", "failed", "train_seconds",
    "out_dir",
)  # fmt: skip

#: Published test error rates in % (mean ± s.d. over runs), 20 tasks jointly on en-10k: the DNC of
#: Graves et al. (2016), per task where refmann's notes hold them, and the means and failed-task counts
#: of the DNC and of the SDNC of Rae et al. (2016), as tabulated in the ADNC README (Franke et al. 2018).
PUBLISHED = {
    "dnc": {"per_task": {1: "9.0 ± 12.6", 2: "39.2 ± 20.5", 3: "39.6 ± 16.4"}, "mean": "16.7 ± 7.6",
            "failed": "11.2 ± 5.4"},
    "sdnc": {"per_task": {}, "mean": "6.4 ± 2.5", "failed": "4.1 ± 1.6"},
}  # fmt: skip


def _task_kwargs(c: dict) -> dict:
    kwargs = {"tasks": list(c["tasks"]), "max_sentences": c["max_sentences"]}
    if c["data"] is not None:
        kwargs.update(data=str(c["data"]), family=c["family"])
    else:
        kwargs["questions_per_task"] = c["questions_per_task"]
    return kwargs


def run(*, out=None, resume=False, progress=True, on_row=None, **config) -> list[dict]:
    """Train every (model, seed) jointly on the tasks and score it per task; one row per run (:data:`ROW_KEYS`).

    Parameters
    ----------
    out : path, optional
        The folder of the run folders ``MODEL-sSEED`` (default: a temporary folder, removed).
    resume : bool
        Continue the runs in ``out`` from their checkpoints (:class:`refmann.train.Trainer`).
    progress : bool
        A tqdm bar per run.
    on_row : callable, optional
        Called with the rows so far after every run.
    **config
        Overrides of :data:`DEFAULTS` (``run(**QUICK)`` is the CI run).

    Returns
    -------
    list of dict
        ``errors`` holds each task's test error rate in [0, 1], ``mean_error`` their mean (each task
        counts once) and ``failed`` the number of tasks above 5 % (:func:`refmann.tasks.babi.summarize_errors`).
    """
    from ..train import Trainer

    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"run: unknown options {unknown}; expected keys of DEFAULTS")
    c = {**DEFAULTS, **config}
    bad = [m for m in c["models"] if m not in MODELS]
    if bad or not c["models"]:
        raise ValueError(f"models: expected names from {', '.join(MODELS)}, got {list(c['models'])}")
    kwargs = _task_kwargs(c)
    test_task = BabiTask(**kwargs)  # the stories are built once; every model is scored on the same test split
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(out) if out is not None else Path(tmp)
        for seed in c["seeds"]:
            for name in c["models"]:
                folder = root / f"{name}-s{seed}"
                config_ = adam_train_config(
                    name, "babi", kwargs, c, seed, eval_every=max(c["sequences"] // 10, 1), checkpoint_every=100
                )
                trainer = Trainer(config_, folder, resume=resume and (folder / "checkpoint.npz").exists(),
                                  progress=progress)  # fmt: skip
                summary = trainer.run()
                with single_threaded_blas():
                    errors = test_task.per_task_errors(trainer.model.forward, split="test")
                scored = summarize_errors(errors)
                rows.append(
                    {
                        "model": name, "seed": seed, "tasks": list(c["tasks"]),
                        "data": c["family"] if c["data"] is not None else "generated",
                        "sequences": summary["sequences"], "batch_size": c["batch_size"],
                        "errors": {str(t): float(e) for t, e in scored.per_task.items()},
                        "mean_error": float(scored.mean), "failed": int(scored.failed),
                        "train_seconds": summary["seconds"], "out_dir": str(folder) if out is not None else None,
                    }
                )  # fmt: skip
                if on_row is not None:
                    on_row(rows)
    return rows


def _percent(values) -> str:
    return mean_sd([100.0 * v for v in values], ".1f")


def format_table(rows) -> str:
    """The rows as a Markdown table: a row per bAbI task, a column per model (mean ± s.d. over seeds, in %),
    the published DNC column beside them, then the mean error and the failed tasks, and the caveats."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    groups: dict = {}
    for r in rows:
        groups.setdefault(r["model"], []).append(r)
    models = list(groups)
    tasks = [int(t) for t in r0["errors"]]
    seeds = sorted({len(g) for g in groups.values()})
    lines = [
        f"bAbI, {len(tasks)} tasks trained jointly on {r0['data']} stories, {r0['sequences']:,} stories per model in "
        f"batches of {r0['batch_size']}; test error rate in % (a question is wrong if any answer word is), mean ± s.d. "
        f"over {'/'.join(map(str, seeds))} seed(s); failed = tasks above 5 %",
        "",
        "| task | " + " | ".join(models) + " | DNC (published) |",
        "| ---: | " + " | ".join("---:" for _ in models) + " | ---: |",
    ]
    for t in tasks:
        cells = [_percent([r["errors"][str(t)] for r in groups[m]]) for m in models]
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {PUBLISHED['dnc']['per_task'].get(t, '—')} |")
    mean = [_percent([r["mean_error"] for r in groups[m]]) for m in models]
    failed = [mean_sd([float(r["failed"]) for r in groups[m]], ".1f") for m in models]
    lines.append("| mean | " + " | ".join(mean) + f" | {PUBLISHED['dnc']['mean']} (20 tasks) |")
    lines.append(f"| failed (of {len(tasks)}) | " + " | ".join(failed) + f" | {PUBLISHED['dnc']['failed']} (of 20) |")
    seconds = [mean_sd([r["train_seconds"] for r in groups[m]], ".0f") for m in models]
    lines.append("| train s | " + " | ".join(seconds) + " | — |")
    lines += [
        "",
        f"Published (en-10k, all 20 tasks, about 500,000 updates): DNC mean {PUBLISHED['dnc']['mean']} %, "
        f"{PUBLISHED['dnc']['failed']} failed (Graves et al. 2016); SDNC mean {PUBLISHED['sdnc']['mean']} %, "
        f"{PUBLISHED['sdnc']['failed']} failed (Rae et al. 2016). Not comparable with the columns on the left: "
        "other data (refmann's generator writes simpler stories, over a subset of the tasks), far less training, "
        "smaller models, and one run per seed rather than the best of many.",
    ]
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------------------


def _parser():
    p = argparse.ArgumentParser(prog="python -m refmann.experiments.babi", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, metavar="DIR", help="the official files (default: refmann's generator)")
    p.add_argument("--family", default=None, help="the family read from --data (en-10k)")
    p.add_argument("--tasks", type=positive_int, nargs="+", default=None, help="bAbI tasks (default: the generated "
                   "twelve)")  # fmt: skip
    p.add_argument("--models", nargs="+", choices=MODELS, default=None, help="default: lstm dam sam dnc sdnc")
    p.add_argument("--questions", type=positive_int, default=None, help="generated questions per task and split "
                   "(1000)")  # fmt: skip
    p.add_argument("--sequences", type=positive_int, default=None, help="training stories per run (20000)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="stories per step (16)")
    p.add_argument("--lr", type=positive_float, default=None, help="Adam's step size (1e-3)")
    p.add_argument("--hidden-size", type=positive_int, default=None, help="controller units (100)")
    p.add_argument("--memory-size", type=positive_int, default=None, help="memory rows N (64)")
    p.add_argument("--word-size", type=positive_int, default=None, help="memory word size W (20)")
    p.add_argument("--heads", type=positive_int, default=None, help="read heads (1)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=None, help="one run per seed (0)")
    p.add_argument("--quick", action="store_true", help="the CI sizes (seconds)")
    p.add_argument("--out", default=None, metavar="DIR", help="keep the run folders, rows.json and table.md here")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    config = dict(QUICK if args.quick else DEFAULTS)
    for name in ("models", "tasks", "seeds"):
        if getattr(args, name) is not None:
            values = tuple(getattr(args, name))
            if len(set(values)) != len(values):
                p.error(f"--{name}: expected distinct values, got {' '.join(map(str, values))}")
            config[name] = values
    for name in ("data", "family", "sequences", "batch_size", "lr", "hidden_size", "memory_size", "word_size"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if args.questions is not None:
        config["questions_per_task"] = args.questions
    if args.heads is not None:
        config["num_heads"] = args.heads
    if args.resume and args.out is None:
        p.error("--resume: needs --out DIR (the folder of the runs to continue)")
    if args.out is not None and not args.resume and any(Path(args.out).glob("*/checkpoint.npz")):
        p.error(f"--out: {args.out} holds runs already; continue them with --resume or pick another")
    try:  # the tasks checked (and the stories read or generated) before any training
        BabiTask(**_task_kwargs(config))
    except (ValueError, TypeError, FileNotFoundError) as err:
        p.error(f"the bAbI task: {err}")
    out = Path(args.out) if args.out is not None else None
    record = RunRecord("babi", argv, config, out)
    on_row = record.write_rows if out is not None else None
    rows = run(**config, out=out, resume=args.resume, progress=not args.quiet, on_row=on_row)
    table = format_table(rows)
    if out is not None:
        atomic_write_text(out / "table.md", table + "\n")
    print(table)
    print(record.footer())
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
