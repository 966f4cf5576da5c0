"""Learning curves over models and seeds: run many trainings (in parallel processes), then one plot
and one table. ``refmann curves`` is the command line of :func:`run_curves`."""

from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .. import _io
from .trainer import TrainConfig, Trainer


def _train_one(args):
    config_dict, out = args
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    trainer = Trainer(
        TrainConfig.from_dict(config_dict), out, resume=(Path(out) / "checkpoint.npz").exists(), progress=False
    )
    return trainer.run()


def run_curves(base: TrainConfig, models, seeds, out_dir, *, jobs=2, model_overrides=None):
    """Train ``base`` for every model and seed into ``out_dir/MODEL-sSEED``; returns the summaries.

    Runs that already finished are resumed (and so return at once). Writes ``curves.png``,
    ``summary.json`` and ``summary.md`` into ``out_dir``.
    """
    out_dir = Path(out_dir)
    model_overrides = model_overrides or {}
    work = []
    for model in models:
        for seed in seeds:
            cfg = dataclasses.replace(base, model=model, seed=seed, **model_overrides.get(model, {}))
            work.append((cfg.to_dict(), str(out_dir / f"{model}-s{seed}")))
    summaries, interrupted = [], False
    # Ctrl-C reaches every run (one process group): each saves its checkpoint and returns "interrupted";
    # the runs not started yet are cancelled, the report covers what finished, and the interrupt goes on
    if jobs > 1:
        pool = ProcessPoolExecutor(max_workers=jobs)
        try:
            futures = [pool.submit(_train_one, w) for w in work]
            for future in futures:
                summary = future.result()
                summaries.append(summary)
                if summary["interrupted"]:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        try:
            for w in work:
                summaries.append(_train_one(w))
                if summaries[-1]["interrupted"]:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
    write_report(out_dir, models, seeds, base)
    if interrupted:
        raise KeyboardInterrupt("curves: interrupted; the finished runs are in the report, rerun to continue")
    return summaries


def _records(run_dir):
    path = Path(run_dir) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_report(out_dir, models, seeds, base: TrainConfig):
    """Plot and tabulate the evaluation curves of ``out_dir/MODEL-sSEED`` runs, in the task's metric."""
    from .. import viz
    from ..models import MODELS
    from ..tasks import make_task

    task = make_task(base.task, **base.task_kwargs)
    metric, label, target = task.metric_name, task.metric_label, task.metric_target
    out_dir = Path(out_dir)
    curves, rows = {}, []
    for model in models:
        runs, reached, final, speed = [], [], [], []
        done_seeds = [seed for seed in seeds if (out_dir / f"{model}-s{seed}" / "summary.json").exists()]
        if not done_seeds:
            continue
        for seed in done_seeds:
            run = out_dir / f"{model}-s{seed}"
            ev = [(r["sequences"], r[f"eval_{metric}"]) for r in _records(run) if f"eval_{metric}" in r]
            runs.append((np.array([s for s, _ in ev]), np.array([e for _, e in ev])))
            summary = json.loads((run / "summary.json").read_text())
            reached.append(summary["sequences_to_target"])
            final.append(summary[f"final_eval_{metric}"])
            speed.append(summary["seconds_per_1000_sequences"])
        curves[MODELS[model].label if model in MODELS else model.upper()] = runs
        done = [r for r in reached if r is not None]
        # the median over seeds, counting a seed that never got there as "more than the budget"
        budget = base.sequences + 1
        median = float(np.median([budget if r is None else r for r in reached]))
        row = {
            "model": model,
            "seeds": done_seeds,
            "metric": metric,
            "sequences_to_target": reached,
            "median_sequences_to_target": None if median >= budget else median,
            "runs_reaching_target": len(done),
            f"final_eval_{metric}": final,
            "seconds_per_1000_sequences": float(np.median(speed)),
        }
        if metric == "bit_errors":  # the names of the bit tasks' reports (under 1 bit per sequence)
            row.update(
                sequences_to_under_1_bit=reached,
                median_sequences_to_under_1_bit=row["median_sequences_to_target"],
                runs_under_1_bit=len(done),
            )
        rows.append(row)
    viz.plot_curves(curves, out_dir / "curves.png", title=f"{base.task}: evaluation {label}", ylabel=label)
    _io.atomic_write_text(out_dir / "summary.json", json.dumps(rows, indent=2))
    lines = [
        f"| model | seeds | sequences to {label} < {target:g} (per seed) | median | final {label} (per seed) | "
        "s / 1000 seq |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        per_seed = ", ".join("—" if s is None else str(s) for s in r["sequences_to_target"])
        med = r["median_sequences_to_target"]
        seeds_text = ", ".join(str(s) for s in r["seeds"])
        lines.append(
            f"| {r['model'].upper()} | {seeds_text} | {per_seed} | {'—' if med is None else int(med)} | "
            f"{', '.join('—' if e is None else f'{e:.2f}' for e in r[f'final_eval_{metric}'])} | "
            f"{r['seconds_per_1000_sequences']:.1f} |"
        )
    _io.atomic_write_text(out_dir / "summary.md", "\n".join(lines) + "\n")
    return rows
