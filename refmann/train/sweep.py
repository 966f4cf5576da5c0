"""Sweeps: models × tasks × seeds × settings, one training run per point, on Dask distributed.

``refmann sweep`` is the command line of :func:`run_sweep`. A sweep is a list of :class:`Run`\\ s
(:func:`plan`), each a whole :class:`~refmann.train.TrainConfig` and a folder of its own under the
sweep's folder::

    OUT/sweep.json                          the plan: every run's folder and config
    OUT/TASK/MODEL[-SETTING]-sSEED/         one Trainer run (config, log, checkpoint, summary, plots)
    OUT/results.json, OUT/results.md        one row per run, gathered from the run folders
    OUT/archived.json                       (a merge only) the rows of merged results.json files
    OUT/figure2-TASK.png                    mean ± s.d. over seeds of each model's evaluation curve

Each run is one Dask task. The task is :func:`train_run`, a plain function of a JSON config and a
folder: it resumes the folder's checkpoint if there is one, so

- a finished run (its ``summary.json`` says it reached its budget) is not submitted again;
- an interrupted run (Ctrl-C, a killed worker, a lost machine) continues from its last checkpoint,
  bit-identically (the Trainer's guarantee, docs/training.md);
- the result depends on the config and the seed only, never on which worker ran it, on workers with
  the same kind of CPU (OpenBLAS picks its kernels by CPU; docs/sweeps.md).

By default the runs go to a :class:`distributed.LocalCluster` of ``workers`` single-threaded
processes on this machine; ``scheduler="tcp://HOST:PORT"`` sends the same runs to any Dask cluster
whose workers have refmann installed and see ``OUT`` at the same path (docs/sweeps.md).
Dask is an optional dependency (the ``sweep`` extra); nothing else in refmann imports it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
from pathlib import Path

import numpy as np

from .. import _io
from .trainer import TrainConfig

log = logging.getLogger(__name__)

#: The TrainConfig fields a sweep's grid may vary (the rest are the sweep's identity: model, task, seed).
GRID_FIELDS = tuple(
    f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("model", "task", "seed", "model_kwargs")
)

PLAN_FILE = "sweep.json"
ARCHIVE_FILE = "archived.json"
#: The keys a row of results.json must have to be merged without its run folder (an archived run).
ROW_KEYS = (
    "task", "model", "setting", "seed", "folder", "finished", "budget", "sequences", "metric", "target",
    "sequences_to_target", "final", "worst_after_target", "collapsed", "level", "seconds",
    "seconds_per_1000_sequences", "curve", "config",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Run:
    """One point of a sweep: where it lives (relative to the sweep folder) and its whole config."""

    folder: str  # TASK/MODEL[-SETTING]-sSEED
    setting: str  # "" or "lr=0.0003,batch_size=8": the grid values of this run
    config: dict  # TrainConfig.to_dict()

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def seed(self) -> int:
        return self.config["seed"]


def _setting_label(values: dict) -> str:
    return ",".join(f"{k}={_format_value(v)}" for k, v in values.items())


def _format_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return str(v)


def _folder_part(label: str) -> str:
    """A setting label as a folder-name part: only letters, digits and ``=.,_+-``."""
    safe = "".join(ch if ch.isalnum() or ch in "=.,_+-" else "_" for ch in label)
    return safe.replace(",", "_")


def plan(base: TrainConfig, *, models, tasks, seeds, grid=None, regimes=None, model_options=None) -> list[Run]:
    """Every run of the sweep ``models × tasks × seeds × product(grid)``, in that order.

    Parameters
    ----------
    base : TrainConfig
        The fields every run shares (its ``model``, ``task`` and ``seed`` are replaced).
    models, tasks : sequence of str
        Names in :data:`refmann.models.MODELS` and :data:`refmann.tasks.TASKS`.
    seeds : sequence of int
    grid : dict of str to sequence, optional
        TrainConfig field (:data:`GRID_FIELDS`) or model option -> the values to try. A key that is
        not a TrainConfig field goes into ``model_kwargs`` of the models whose config has it.
    regimes : callable, optional
        ``regimes(model, task) -> dict`` of TrainConfig fields applied before the grid (the CLI
        passes :func:`refmann.train.regimes.regime` restricted to the flags the user did not give).
    model_options : dict of str to dict, optional
        Model name -> ``model_kwargs`` (``--set``).

    Raises
    ------
    ValueError
        A repeated model, task or seed, a grid key no TrainConfig field or model has, an empty or
        repeated list of grid values, or a config that TrainConfig refuses.
    """
    from ..models import MODELS
    from ..tasks import TASKS

    models, tasks, seeds = list(models), list(tasks), list(seeds)
    for name, values, known in (("models", models, MODELS), ("tasks", tasks, TASKS), ("seeds", seeds, None)):
        if not values:
            raise ValueError(f"{name}: expected at least one, got none")
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{name}: expected no repeats, got {', '.join(repeated)} more than once")
        if known is not None:
            unknown = [v for v in values if v not in known]
            if unknown:
                raise ValueError(f"{name}: expected names from {', '.join(known)}, got {', '.join(unknown)}")
    grid = dict(grid or {})
    for key, values in grid.items():
        values = list(values)
        if not values:
            raise ValueError(f"grid: {key} has no values")
        if len({_format_value(v) for v in values}) != len(values):
            raise ValueError(f"grid: {key} repeats a value ({', '.join(map(_format_value, values))})")
        if key not in GRID_FIELDS and not any(key in MODELS[m].fields() for m in models):
            raise ValueError(
                f"grid: {key!r} is neither a training field ({', '.join(GRID_FIELDS)}) nor an option of "
                f"{', '.join(models)}"
            )
        grid[key] = values
    model_options = model_options or {}
    keys = list(grid)
    runs = []
    for task, model in itertools.product(tasks, models):
        for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            values = dict(zip(keys, combo))
            label = _setting_label(values)
            for seed in seeds:
                fields = dict(regimes(model, task)) if regimes is not None else {}
                kwargs = dict(model_options.get(model, {}))
                for k, v in values.items():
                    if k in GRID_FIELDS:
                        fields[k] = v
                    elif k in MODELS[model].fields():
                        kwargs[k] = v
                if "optimizer" in values and "lr" not in values:
                    fields["lr"] = None  # each optimizer's own default rate
                merged = {**base.model_kwargs, **dict(fields.pop("model_kwargs", {}) or {}), **kwargs}
                config = dataclasses.replace(base, model=model, task=task, seed=seed, model_kwargs=merged, **fields)
                name = model + (f"-{_folder_part(label)}" if label else "") + f"-s{seed}"
                runs.append(Run(folder=f"{task}/{name}", setting=label, config=config.to_dict()))
    return runs


def is_finished(run_dir, sequences=None) -> bool:
    """True if ``run_dir`` holds a run that reached its budget (an uninterrupted summary), and at least
    ``sequences`` sequences when given (a budget extended since, ``extend=True``)."""
    path = Path(run_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not (isinstance(summary, dict) and summary.get("interrupted") is False):
        return False
    return sequences is None or (isinstance(summary.get("sequences"), int) and summary["sequences"] >= sequences)


def train_run(config: dict, out: str, extend: bool = False) -> dict:
    """The task a worker runs: train ``config`` into ``out``, resuming its checkpoint; returns the summary.

    ``extend``: the run may have been started with a smaller budget (``Trainer(extend=True)``).
    A plain function of JSON data, importable on any worker with refmann installed.
    """
    from .trainer import Trainer

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    trainer = Trainer(TrainConfig.from_dict(config), out, resume=True, progress=False, extend=extend)
    return trainer.run()


def write_plan(out_dir, runs) -> Path:
    """Write ``sweep.json`` (the runs, their folders and configs)."""
    doc = {"format": 1, "runs": [dataclasses.asdict(r) for r in runs]}
    return _io.atomic_write_text(Path(out_dir) / PLAN_FILE, json.dumps(doc, indent=1))


def read_plan(out_dir) -> list[Run]:
    """The runs of a sweep folder's ``sweep.json``; raises ValueError if it is missing or malformed."""
    path = Path(out_dir) / PLAN_FILE
    try:
        doc = json.loads(path.read_text())
        return [Run(folder=r["folder"], setting=r["setting"], config=dict(r["config"])) for r in doc["runs"]]
    except FileNotFoundError:
        raise ValueError(f"out: {out_dir} holds no sweep ({PLAN_FILE} is missing)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"out: {path} is not a sweep plan ({type(exc).__name__}: {exc})") from None


def _check_plan(out_dir, runs, extend=False):
    """Refuse to reuse a sweep folder whose existing runs were planned with other configs (with
    ``extend``, a larger ``sequences`` is not another config)."""
    path = Path(out_dir) / PLAN_FILE
    if not path.exists():
        return

    def longer(old, new):  # the same config but for a larger budget
        return (
            isinstance(old.get("sequences"), int)
            and new["sequences"] >= old["sequences"]
            and {**old, "sequences": None} == {**new, "sequences": None}
        )

    old = {r.folder: r.config for r in read_plan(out_dir)}
    clash = [
        r
        for r in runs
        if r.folder in old and old[r.folder] != r.config and not (extend and longer(old[r.folder], r.config))
    ]
    if clash:
        only_longer = all(longer(old[r.folder], r.config) for r in clash)
        clash = [r.folder for r in clash]
        raise ValueError(
            f"out: {out_dir} already holds {len(clash)} run(s) with other settings (e.g. {clash[0]}); "
            "choose another --out, or give the flags of the earlier sweep"
            + ("; --extend trains them on to the larger --sequences" if only_longer and not extend else "")
        )


def run_sweep(runs, out_dir, *, workers=2, scheduler=None, client=None, progress=None, extend=False) -> list[dict]:
    """Train every run not finished yet on Dask; then gather the table and draw the figures.

    Parameters
    ----------
    runs : list of Run
        From :func:`plan`.
    out_dir : path
        The sweep folder (created; runs go to ``out_dir/run.folder``).
    workers : int
        Processes of the LocalCluster started when neither ``scheduler`` nor ``client`` is given.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://HOST:PORT``).
    client : distributed.Client, optional
        A client of your own (kept open).
    progress : bool or None
        A progress bar over runs (None: when stderr is a terminal).
    extend : bool
        Let the runs' ``sequences`` be larger than those the folder's runs were planned with: the
        finished runs train on to the new budget (``Trainer(extend=True)``).

    Returns
    -------
    list of dict
        :func:`gather`'s rows.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C: the workers are stopped; every run keeps its last checkpoint, and running the
        same sweep again continues each one bit-identically.
    """
    out_dir = Path(out_dir)
    _check_plan(out_dir, runs, extend)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_plan(out_dir, runs)
    todo = [r for r in runs if not is_finished(out_dir / r.folder, r.config["sequences"])]
    if len(todo) < len(runs):
        log.info("%d of %d runs already finished: skipped", len(runs) - len(todo), len(runs))
    if todo:
        _submit(todo, out_dir, workers=workers, scheduler=scheduler, client=client, progress=progress, extend=extend)
    return write_report(out_dir, runs)


def _submit(todo, out_dir, *, workers, scheduler, client, progress, extend=False):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - the sweep extra is part of the test extra
        raise ImportError("refmann sweep needs Dask distributed: pip install 'refmann[sweep]'") from None
    from tqdm import tqdm

    # Dask logs its cluster's life at INFO on its own handler; shown only when refmann's log is (-v)
    logging.getLogger("distributed").setLevel(logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING)
    own = client is None
    cluster = None
    if own:
        if scheduler is not None:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # an HTTP server starts anyway: on a free port, never a clash
                worker_dashboard_address=":0",
                silence_logs=logging.ERROR,
                env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            )
            client = Client(cluster)
    bar = tqdm(total=len(todo), unit="run", desc="sweep", disable=None if progress is None else not progress)
    try:
        futures = {
            client.submit(
                train_run, r.config, str(out_dir / r.folder), extend, key=f"refmann-{r.folder}", pure=False
            ): r
            for r in todo
        }
        for future in as_completed(futures):
            run = futures[future]
            summary = future.result()  # a failed run raises here, with the worker's traceback
            metric = summary.get("metric", "bit_errors")
            final = summary.get(f"final_eval_{metric}")
            bar.set_postfix_str(f"{run.folder}: {'—' if final is None else f'{final:.3g}'}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


# -- gathering -------------------------------------------------------------------------------------


def _records(run_dir):
    path = Path(run_dir) / "log.jsonl"
    return _io.read_jsonl(path) if path.exists() else []


def collapsed_after(evals, target) -> bool:
    """True if an evaluation after the first one under ``target`` is back above half the first
    evaluation (the untrained level): the run learned and then lost it."""
    if not evals:
        return False
    first = evals[0][1]
    hit = next((i for i, (_, e) in enumerate(evals) if e < target), None)
    return hit is not None and any(e > first / 2 for _, e in evals[hit + 1 :])


def gather(out_dir, runs=None) -> list[dict]:
    """One row per run of the sweep (finished or not): config, sequences to the target, final metric,
    the worst evaluation after reaching the target, whether it collapsed, seconds per 1,000 sequences."""
    from ..tasks import make_task

    out_dir = Path(out_dir)
    runs = read_plan(out_dir) if runs is None else runs
    archived = _read_archive(out_dir)
    rows = []
    for r in runs:
        if r.folder in archived and not (out_dir / r.folder).is_dir():  # merged from a results.json
            rows.append(dict(archived[r.folder]))
            continue
        config = TrainConfig.from_dict(r.config)
        task = make_task(config.task, **config.task_kwargs)
        metric, target = task.metric_name, task.metric_target
        records = _records(out_dir / r.folder)
        evals = [(rec["sequences"], rec[f"eval_{metric}"]) for rec in records if f"eval_{metric}" in rec]
        reached = next((s for s, e in evals if e < target), None)
        after = [e for s, e in evals if reached is not None and s > reached]
        seqs = records[-1]["sequences"] if records else 0
        seconds = records[-1].get("seconds") if records else None
        level = next((rec["level"] for rec in reversed(records) if "level" in rec), None)
        rows.append(
            {
                "task": r.task,
                "model": r.model,
                "setting": r.setting,
                "seed": r.seed,
                "folder": r.folder,
                "finished": is_finished(out_dir / r.folder, config.sequences),
                "budget": config.sequences,
                "sequences": seqs,
                "metric": metric,
                "target": target,
                "sequences_to_target": reached,
                "final": evals[-1][1] if evals else None,
                "worst_after_target": max(after) if after else None,
                "collapsed": collapsed_after(evals, target),
                "level": level,
                "seconds": seconds,
                "seconds_per_1000_sequences": None if not seconds or not seqs else 1000 * seconds / seqs,
                "curve": evals,
                "config": r.config,
            }
        )
    return rows


def _read_archive(out_dir) -> dict[str, dict]:
    path = Path(out_dir) / ARCHIVE_FILE
    if not path.exists():
        return {}
    return {row["folder"]: row for row in read_rows(path)}


def read_rows(path) -> list[dict]:
    """The rows of a sweep's ``results.json`` (or of a merged folder's ``archived.json``), checked:
    each a dict with every key of :data:`ROW_KEYS`, its curve a list of (sequences, metric) pairs.
    Raises ValueError naming the file and what is wrong."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a sweep's results.json ({type(exc).__name__}: {exc})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(
                f"{path}: row {i} lacks {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} "
                "(a results.json written before refmann kept each run's config cannot be merged)"
            )
        curve = row["curve"]
        if not isinstance(curve, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in curve
        ):
            raise ValueError(f"{path}: row {i} ({row['folder']}): curve is not a list of [sequences, value] pairs")
        if not isinstance(row["config"], dict) or not isinstance(row["folder"], str):
            raise ValueError(f"{path}: row {i}: expected a config dict and a folder string")
    return rows


def group_rows(rows):
    """Rows grouped by (task, model, setting), in first-seen order."""
    groups = {}
    for row in rows:
        groups.setdefault((row["task"], row["model"], row["setting"]), []).append(row)
    return groups


def median_to_target(group) -> float | None:
    """The median over seeds of the sequences to the target, a seed that never got there counting as
    more than its budget (so the median exists when most seeds got there)."""
    budget = max(r["budget"] for r in group) + 1
    med = float(np.median([budget if r["sequences_to_target"] is None else r["sequences_to_target"] for r in group]))
    return None if med >= budget else med


def format_table(rows) -> str:
    """The sweep's table in Markdown: per task, model and setting, the per-seed numbers and the median."""
    lines = [
        "| task | model | setting | seeds | sequences to target (per seed) | median | final (per seed) | "
        "median final | collapsed | s / 1000 seq |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def num(v, fmt):
        return "—" if v is None else format(v, fmt)

    for (task, model, setting), group in group_rows(rows).items():
        finals = [r["final"] for r in group if r["final"] is not None]
        speeds = [r["seconds_per_1000_sequences"] for r in group if r["seconds_per_1000_sequences"]]
        unfinished = sum(not r["finished"] for r in group)
        seeds = ", ".join(str(r["seed"]) for r in group) + (f" ({unfinished} unfinished)" if unfinished else "")
        med = median_to_target(group)
        lines.append(
            f"| {task} | {model} | {setting or 'default'} | {seeds} | "
            f"{', '.join(num(r['sequences_to_target'], 'd') for r in group)} | {num(med, '.0f')} | "
            f"{', '.join(num(r['final'], '.2f') for r in group)} | "
            f"{num(float(np.median(finals)) if finals else None, '.2f')} | "
            f"{sum(r['collapsed'] for r in group)} | {num(float(np.median(speeds)) if speeds else None, '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def write_report(out_dir, runs=None) -> list[dict]:
    """Gather the rows, write ``results.json`` and ``results.md``, and draw ``figure2-TASK.png`` per task."""
    from .. import viz
    from ..models import MODELS
    from ..tasks import make_task

    out_dir = Path(out_dir)
    rows = gather(out_dir, runs)
    _io.atomic_write_text(out_dir / "results.json", json.dumps(rows, indent=1))
    _io.atomic_write_text(out_dir / "results.md", format_table(rows))
    by_task = {}
    for (task, model, setting), group in group_rows(rows).items():
        curves = [r["curve"] for r in group if r["curve"]]
        if curves:
            label = MODELS[model].label + (f" ({setting})" if setting else "")
            by_task.setdefault(task, {})[label] = [
                (np.array([s for s, _ in c]), np.array([e for _, e in c])) for c in curves
            ]
    panels = []
    for task, curves in by_task.items():
        t = make_task(task)
        labels = dict(ylabel=t.metric_label, target=t.metric_target)
        title = f"{task}: evaluation {t.metric_label}, mean ± s.d. over seeds"
        viz.plot_mean_sd(curves, out_dir / f"figure2-{task}.png", title=title, **labels)
        panels.append({"curves": curves, "title": task, **labels})
    if len(panels) > 1:  # the paper's Figure 2: the tasks side by side, a model one colour throughout
        viz.plot_figure2(panels, out_dir / "figure2.png")
    return rows


def merge_sweeps(out_dir, sources) -> list[Run]:
    """Gather the runs of several sweeps into one folder, ``out_dir``, for one table and one Figure 2.

    A source is a sweep folder or a sweep's ``results.json`` (a run's row, curve and config, kept
    where its run folder is not: docs/data/sweeps holds those of the runs docs/results.md quotes).
    Each source folder's run folders are linked (relative symbolic links, nothing copied) under the
    same names, a results.json's rows go into ``out_dir/archived.json``, and ``out_dir/sweep.json``
    lists every run; :func:`write_report` then draws the table and the figures. A run that two sources
    both hold must have the same config in both (else ValueError naming it); a run folder wins over an
    archived row of it. ``out_dir`` must not be one of the sources. Merging again with more sources
    adds their runs. Returns the merged runs.
    """
    out_dir = Path(out_dir)
    sources = [Path(s) for s in sources]
    if not sources:
        raise ValueError("merge: expected at least one sweep folder to merge, got none")
    runs: dict[str, Run] = {}
    origin: dict[str, Path] = {}  # run folder -> the sweep folder to link it from
    seen_in: dict[str, Path] = {}  # run folder -> the source it came from (a folder or a results.json)
    archived = _read_archive(out_dir)
    if (out_dir / PLAN_FILE).exists():
        for r in read_plan(out_dir):
            runs[r.folder] = r

    def add(r: Run, src: Path) -> None:
        if r.folder in runs and runs[r.folder].config != r.config:
            raise ValueError(
                f"merge: {r.folder} is in more than one sweep with other settings ({seen_in.get(r.folder, out_dir)} "
                f"and {src}); merge sweeps whose runs differ in model, task, seed or setting"
            )
        seen_in[r.folder] = src

    for src in sources:
        if src.resolve() == out_dir.resolve() or src.resolve().parent == out_dir.resolve():
            raise ValueError(f"merge: {src} is the output folder itself or in it; merge into another --out")
        if src.is_file():
            try:
                rows = read_rows(src)
            except ValueError as exc:
                raise ValueError(f"merge: {exc}") from None
            for row in rows:
                r = Run(folder=row["folder"], setting=row["setting"], config=row["config"])
                add(r, src)
                runs.setdefault(r.folder, r)  # a run folder merged before it wins over its archived row
                archived[r.folder] = row
            continue
        try:
            planned = read_plan(src)
        except ValueError as exc:  # a folder that holds no sweep, named as a --merge folder
            raise ValueError("merge: " + str(exc).removeprefix("out: ")) from None
        for r in planned:
            add(r, src)
            runs[r.folder] = r
            origin[r.folder] = src
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder, src in origin.items():
        link, target = out_dir / folder, (src / folder).resolve()
        if not target.is_dir():
            raise ValueError(f"merge: {src / folder} is listed in {src / PLAN_FILE} but is not there")
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.resolve() == target:
                continue
            if not link.is_symlink():
                raise ValueError(f"merge: {link} is a run folder of {out_dir} itself; merge into another --out")
            link.unlink()
        link.symlink_to(os.path.relpath(target, link.parent))
    merged = list(runs.values())
    if archived:
        _io.atomic_write_text(out_dir / ARCHIVE_FILE, json.dumps(list(archived.values()), indent=1))
    write_plan(out_dir, merged)
    return merged
