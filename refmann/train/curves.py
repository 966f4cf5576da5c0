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
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            summaries = list(pool.map(_train_one, work))
    else:
        summaries = [_train_one(w) for w in work]
    write_report(out_dir, models, seeds, base)
    return summaries


def _records(run_dir):
    path = Path(run_dir) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_report(out_dir, models, seeds, base: TrainConfig):
    """Plot and tabulate the evaluation curves of ``out_dir/MODEL-sSEED`` runs."""
    from .. import viz

    out_dir = Path(out_dir)
    curves, rows = {}, []
    for model in models:
        runs, reached, final, speed = [], [], [], []
        done_seeds = [seed for seed in seeds if (out_dir / f"{model}-s{seed}" / "summary.json").exists()]
        if not done_seeds:
            continue
        for seed in done_seeds:
            run = out_dir / f"{model}-s{seed}"
            ev = [(r["sequences"], r["eval_bit_errors"]) for r in _records(run) if "eval_bit_errors" in r]
            runs.append((np.array([s for s, _ in ev]), np.array([e for _, e in ev])))
            summary = json.loads((run / "summary.json").read_text())
            reached.append(summary["sequences_to_under_1_bit"])
            final.append(summary["final_eval_bit_errors"])
            speed.append(summary["seconds_per_1000_sequences"])
        curves[model.upper()] = runs
        done = [r for r in reached if r is not None]
        # the median over seeds, counting a seed that never got there as "more than the budget"
        budget = base.sequences + 1
        median = float(np.median([budget if r is None else r for r in reached]))
        rows.append(
            {
                "model": model,
                "seeds": done_seeds,
                "sequences_to_under_1_bit": reached,
                "median_sequences_to_under_1_bit": None if median >= budget else median,
                "runs_under_1_bit": len(done),
                "final_eval_bit_errors": final,
                "seconds_per_1000_sequences": float(np.median(speed)),
            }
        )
    viz.plot_curves(curves, out_dir / "curves.png", title=f"{base.task}: evaluation bit errors per sequence")
    _io.atomic_write_text(out_dir / "summary.json", json.dumps(rows, indent=2))
    lines = [
        "| model | seeds | sequences to < 1 bit (per seed) | median | final bit errors (per seed) | s / 1000 seq |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        per_seed = ", ".join("—" if s is None else str(s) for s in r["sequences_to_under_1_bit"])
        med = r["median_sequences_to_under_1_bit"]
        seeds_text = ", ".join(str(s) for s in r["seeds"])
        lines.append(
            f"| {r['model'].upper()} | {seeds_text} | {per_seed} | {'—' if med is None else int(med)} | "
            f"{', '.join(f'{e:.2f}' for e in r['final_eval_bit_errors'])} | "
            f"{r['seconds_per_1000_sequences']:.1f} |"
        )
    _io.atomic_write_text(out_dir / "summary.md", "\n".join(lines) + "\n")
    return rows
