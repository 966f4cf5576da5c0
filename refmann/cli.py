"""refmann: memory-augmented neural networks in NumPy with hand-derived gradients.

Commands: demo, train, sweep, curves, gradcheck, golden, bench, info. Models, tasks and optimizers come
from refmann's registries; a model's options are set with --set KEY=VALUE (any field of its config).
Results go to stdout; logs go to stderr. Every argument is checked before any work starts: a bad one,
or an error while running (a run folder that already holds a run, a corrupt or mismatched
checkpoint, ...), prints one line ``refmann COMMAND: message`` on stderr and exits 2 (-v/--verbose
also logs the traceback). Ctrl-C exits 130; train and demo save a checkpoint first (continue with the
same command and --resume), sweep and curves resume their runs when run again.
Exit codes: 0 ok, 1 a check failed, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from . import __version__

log = logging.getLogger(__name__)

#: What train and demo print on stderr after Ctrl-C once a checkpoint is on disk.
RESUME_HINT = "interrupted: checkpoint saved; continue with the same command and --resume"


class CommandError(Exception):
    """A bad argument, or an error the user can act on, found after parsing: one line on stderr, exit 2."""


# -- argument types: each raises ArgumentTypeError with one line (argparse then exits 2) ----------------


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)  # 1e5 is a count too
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value.is_integer():
        return int(value)
    raise argparse.ArgumentTypeError(f"expected an int, got {text!r}")


def positive_int(text: str) -> int:
    """A count: an int >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def decay_factor(text: str) -> float:
    """A learning-rate factor in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def seed_int(text: str) -> int:
    """A seed: an int >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative int (a seed), got {text!r}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A learning rate, a budget, a timeout: a finite number > 0."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def off_or_positive_float(text: str) -> float:
    """A clip threshold: a finite number > 0, or 0 for off."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, or 0 for off, got {text!r}")
    return value


def out_dir(text: str) -> str:
    """A folder that exists or can be created (nothing is created here)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder, got ''")
    path = Path(text)
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"expected a folder, but {text!r} exists and is not one")
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"no permission to write in {text!r}")
        return text
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {text!r}: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create {text!r}: no permission to write in {str(parent)!r}")
    return text


def _check_out(text: str, flag: str = "--out") -> Path:
    """:func:`out_dir` for a folder computed after parsing."""
    try:
        return Path(out_dir(text))
    except argparse.ArgumentTypeError as exc:
        raise CommandError(f"{flag}: {exc}") from None


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``refmann train: argument --lr: ... (see refmann train --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _message(exc: BaseException) -> str:
    text = _one_line(exc)
    if isinstance(exc, MemoryError):
        return f"out of memory{': ' + text if text else ''}"
    return text or type(exc).__name__


#: What a library call may raise because of what the user asked for (caught by :func:`_user_errors`).
_USER_ERRORS = (ValueError, TypeError, OSError, zipfile.BadZipFile, MemoryError)


@contextlib.contextmanager
def _user_errors(checkpoint: Path | None = None, pairs=()):
    """Turn the errors a library call raises on bad input into a :class:`CommandError` (one line, exit 2).
    ``checkpoint`` names the file a resume reads, for an unreadable one; an error about a field given
    with --set (``pairs``) names the --set."""
    try:
        yield
    except zipfile.BadZipFile as exc:
        where = f"the checkpoint {checkpoint}" if checkpoint is not None else "a .npz file"
        raise CommandError(f"{where} is corrupt or truncated ({_message(exc)})") from exc
    except _USER_ERRORS as exc:
        message = _message(exc)
        raise CommandError(_blame_set(message, pairs) or message) from exc


def _blame_set(message: str, pairs, where: str = "") -> str | None:
    """``"k: expected ..."`` -> ``"--set k=0: expected ..."`` when ``k`` was given with --set, else None."""
    field, sep, rest = message.partition(": ")
    given = [pair for pair in pairs if sep and pair.partition("=")[0] == field]
    return f"--set {given[-1]}{where}: {rest}" if given else None


def _name_flag(message: str, flags) -> str:
    """``"batch_size: expected ..."`` -> ``"--batch-size: expected ..."`` when ``--batch-size`` is in ``flags``."""
    field, sep, rest = message.partition(": ")
    flag = "--" + field.replace("_", "-")
    return f"{flag}: {rest}" if sep and " " not in field and flag in flags else message


# -- commands -----------------------------------------------------------------------------------------


def _cmd_info(args) -> int:
    from . import _jit

    print(f"refmann {__version__}")
    print(f"python {platform.python_version()}  numpy {np.__version__}")
    numba_version = _jit.NUMBA_VERSION or "not installed"
    print(f"numba {numba_version}  (JIT {'on' if _jit.JIT_ENABLED else 'off'})")
    return 0


def _cmd_gradcheck(args) -> int:
    from . import gradcheck, ops

    names = args.ops or list(ops.OP_NAMES)
    unknown = sorted(set(names) - set(ops.OP_NAMES))
    if unknown:
        raise CommandError(f"unknown op(s): {', '.join(unknown)}; choose from {', '.join(ops.OP_NAMES)}")
    rng = np.random.default_rng(args.seed)
    tol = gradcheck.TOLERANCES["op"]
    results = []
    for name in names:
        arrays, hyper = gradcheck.op_example(name, rng)
        report = gradcheck.check_op(
            getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward"), *arrays, seed=args.seed, **hyper
        )
        results.append(report)
    if args.json:
        print(
            json.dumps(
                {
                    r.op: {
                        "max_rel_error": r.max_rel_error,
                        "ok": r.ok(tol),
                        "inputs": {i.name: i.max_rel_error for i in r.inputs},
                    }
                    for r in results
                },
                indent=2,
            )
        )
    else:
        print(f"{'op':<24} {'max rel error':>14}  {'inputs':<40} status   (float64, tolerance {tol:g})")
        for r in results:
            inputs = ", ".join(i.name for i in r.inputs)
            print(f"{r.op:<24} {r.max_rel_error:>14.2e}  {inputs:<40} {'ok' if r.ok(tol) else 'FAIL'}")
    return 0 if all(r.ok(tol) for r in results) else 1


#: TrainConfig fields set by their own flag; --set must not set them behind the flag's back.
_OWN_FLAGS = {
    "hidden_size": "--hidden-size",
    "memory_size": "--memory-size",
    "word_size": "--word-size",
    "num_heads": "--num-heads",
    "seed": "--seed (--seeds for curves)",
}
_FROM_TASK = ("input_size", "output_size")
_TRAIN_FLAGS = (
    "--optimizer-options",
    "--sequences",
    "--batch-size",
    "--optimizer",
    "--lr",
    "--clip",
    "--clip-norm",
    "--lr-decay",
    "--lr-decay-below",
    "--value-optimizer",
    "--value-lr",
    "--memory-size",
    "--word-size",
    "--num-heads",
    "--hidden-size",
    "--eval-every",
    "--seed",
    "--model",
    "--task",
)


def _regime_fields(args, model: str, task: str) -> dict:
    """The training fields of ``model`` on ``task``: each flag the user gave, else the regime's
    (:mod:`refmann.train.regimes`); a regime's learning rate only with the regime's optimizer."""
    from .train.regimes import REGIME_FIELDS, regime

    r = regime(model, task)
    given = {name: getattr(args, name, None) for name in REGIME_FIELDS if name != "optimizer_options"}
    out = {name: (r.get(name) if value is None else value) for name, value in given.items()}
    own = given["optimizer"] is None or given["optimizer"] == r.get("optimizer")  # the regime's optimizer
    if given["lr"] is None and not own:
        out["lr"] = None  # the optimizer's own default (TrainConfig)
    options = dict(r.get("optimizer_options", {})) if own else {}
    options.update(parse_pairs(getattr(args, "optimizer_options", None) or [], "--optimizer-options"))
    out["optimizer_options"] = options
    if given["clip"] is not None:
        out["clip"] = None if given["clip"] == 0 else given["clip"]  # 0 is documented as off
    if given["clip_norm"] is not None:
        out["clip_norm"] = None if given["clip_norm"] == 0 else given["clip_norm"]
    if given["lr_decay"] is not None:
        out["lr_decay"] = None if given["lr_decay"] == 1 else given["lr_decay"]  # 1 is documented as off
    return out


def _task_kwargs(args) -> dict:
    out = {}
    if args.max_length is not None:
        out["max_length"] = args.max_length
    if getattr(args, "data", None) is not None:
        out["data"] = str(Path(args.data).expanduser().resolve())  # absolute: a sweep's workers may run elsewhere
    return out


def _train_config(args, model: str | None = None, task: str | None = None):
    from .train import TrainConfig

    model = model or getattr(args, "model", "ntm")
    task = task or args.task
    task_kwargs = _task_kwargs(args)
    return TrainConfig(
        model=model,
        task=task,
        task_kwargs=task_kwargs,
        **_regime_fields(args, model, task),
        value_optimizer=args.value_optimizer,
        value_lr=args.value_lr,
        memory_size=args.memory_size,
        word_size=args.word_size,
        hidden_size=args.hidden_size,
        curriculum=args.curriculum,
        eval_every=args.eval_every,
        seed=getattr(args, "seed", 0),
    )


def _parse_value(text: str):
    """A --set value: int, float, true/false, none, JSON (``{...}``, ``[...]``), or the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected JSON ({exc.msg} at character {exc.pos}), got {text!r}") from None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def model_overrides(pairs, models, task=None) -> dict[str, dict]:
    """--set KEY=VALUE pairs -> {model: {field: value}} for every model whose config has the field,
    on top of each model's registered training defaults and, given ``task``, the model options of
    its regime on it (:func:`refmann.train.regimes.model_options`). Raises ValueError for an unknown
    field, for a field that has its own flag (``memory_size``: use --memory-size) or that the task
    fixes (``input_size``, ``output_size``), and for a value that does not parse."""
    from .models import MODELS
    from .train.regimes import model_options

    out = {name: {**MODELS[name].train, **(model_options(name, task) if task else {})} for name in models}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected KEY=VALUE, got {pair!r}")
        if key in _OWN_FLAGS:
            raise ValueError(f"--set {pair}: {key} has its own flag; use {_OWN_FLAGS[key]}")
        if key in _FROM_TASK:
            raise ValueError(f"--set {pair}: {key} is fixed by the task (--task)")
        takers = [name for name in models if key in MODELS[name].fields()]
        if not takers:
            known = sorted({f for name in models for f in MODELS[name].fields()} - set(_OWN_FLAGS) - set(_FROM_TASK))
            raise ValueError(
                f"--set: no model among {', '.join(models)} has an option {key!r}; options: {', '.join(known)}"
            )
        try:
            parsed = _parse_value(value)
        except ValueError as exc:
            raise ValueError(f"--set {pair}: {exc}") from None
        for name in takers:
            out[name][key] = parsed
    return out


def _checked_configs(args, models) -> dict:
    """The TrainConfig of each model, every part checked up front (the task, TrainConfig, the model's
    config built once from the sizes and --set); raises CommandError naming the flag."""
    import inspect

    from .models import MODELS
    from .tasks import TASKS, make_task
    from .train.trainer import model_kwargs

    parameters = inspect.signature(TASKS[args.task]).parameters
    if args.max_length is not None and "max_length" not in parameters:
        raise CommandError(f"--max-length: task {args.task} has no maximum length (it applies to copy tasks)")
    if getattr(args, "data", None) is not None:
        takers = [name for name, cls in TASKS.items() if "data" in inspect.signature(cls).parameters]
        if "data" not in parameters:
            raise CommandError(f"--data: task {args.task} reads no data (tasks that do: {', '.join(takers)})")
        if not Path(args.data).expanduser().exists():
            raise CommandError(f"--data: expected an existing folder or file, got {args.data!r}")
    try:
        task = make_task(args.task, **_task_kwargs(args))
    except (ValueError, TypeError) as exc:
        raise CommandError(_name_flag(_message(exc), ("--max-length", "--data"))) from exc
    try:
        overrides = model_overrides(args.set, models, args.task)
        bases = {name: _train_config(args, name, args.task) for name in models}
    except (ValueError, TypeError) as exc:
        raise CommandError(_name_flag(_message(exc), _TRAIN_FLAGS)) from exc
    configs = {}
    for name in models:
        spec = MODELS[name]
        config = dataclasses.replace(bases[name], model_kwargs=overrides[name])
        try:
            spec.config(**model_kwargs(config, task))  # what refmann.train.trainer.build passes
        except (ValueError, TypeError) as exc:
            message = _message(exc)
            where = f" (model {name})" if len(models) > 1 else ""
            raise CommandError(
                _blame_set(message, args.set, where) or _name_flag(message, _TRAIN_FLAGS) + where
            ) from exc
        configs[name] = config
    return configs


def _report_run(summary, out):
    """The run summary for people; copes with a run interrupted before its first evaluation or log record."""
    out = Path(out)
    seconds = summary.get("seconds") or 0.0
    per_1000 = summary.get("seconds_per_1000_sequences")
    speed = "" if not per_1000 else f" ({per_1000:.2f} s per 1000 sequences)"
    stopped = " (interrupted)" if summary.get("interrupted") else ""
    print(
        f"trained {summary['model']} on {summary['task']}: {summary['sequences']} sequences in "
        f"{seconds:.0f} s{speed}{stopped}"
    )
    metric = summary.get("metric", "bit_errors")
    final = summary.get(f"final_eval_{metric}")
    label = summary.get("metric_label", metric)
    print(f"evaluation {label}: " + ("none yet" if final is None else f"{final:.3f}"))
    if summary.get("sequences_to_target") is not None:
        print(f"learned (evaluation under the task's target) after {summary['sequences_to_target']} sequences")
    pictures = [
        (name, out / file)
        for name, file in (("learning curve:", "learning_curve.png"), ("memory access: ", "access.png"))
    ]
    if any(path.exists() for _, path in pictures):
        for name, path in pictures:
            print(f"{name} {path}")
    else:
        print("pictures: none yet (no log record)")
    print(f"log, checkpoint, config: {out}/")


def _train_or_resume(config, out: Path, args) -> int:
    """Train/demo: build the Trainer (resuming if asked), run it, report; 130 after Ctrl-C."""
    from .train import Trainer

    extend = getattr(args, "extend", False)
    if extend and not args.resume:
        raise CommandError("--extend: only with --resume (it trains a run in --out on to a larger --sequences)")
    if not args.resume and (out / "log.jsonl").exists():
        raise CommandError(f"--out: {out} already holds a run; add --resume to continue it, or choose another --out")
    checkpoint = out / "checkpoint.npz"
    if args.resume and checkpoint.exists() and not zipfile.is_zipfile(checkpoint):
        raise CommandError(f"--resume: the checkpoint {checkpoint} is corrupt or truncated (not an .npz file)")
    with _user_errors(checkpoint if args.resume else None, getattr(args, "set", ())):
        trainer = Trainer(config, out, resume=args.resume, progress=False if args.quiet else None, extend=extend)
    with _user_errors():
        summary = trainer.run()
    if args.command == "demo":
        print()
    _report_run(summary, out)
    if summary["interrupted"]:
        print(RESUME_HINT, file=sys.stderr)
        return 130
    return 0


def _cmd_train(args) -> int:
    args.out = str(_check_out(args.out or f"runs/{args.model}-{args.task}-s{args.seed}"))
    config = _checked_configs(args, [args.model])[args.model]
    return _train_or_resume(config, Path(args.out), args)


def _cmd_curves(args) -> int:
    """``refmann curves --task T``: ``refmann sweep --tasks T`` with ``--jobs`` Dask workers (one LocalCluster)."""
    for flag, values in (("--models", args.models), ("--seeds", args.seeds)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise CommandError(f"{flag}: expected no repeats, got {' '.join(map(str, repeated))} more than once")
    args.out = args.out or f"runs/curves-{args.task}"
    args.tasks, args.workers, args.grid, args.scheduler, args.report = [args.task], args.jobs, [], None, False
    return _cmd_sweep(args)


def parse_pairs(pairs, flag: str) -> dict:
    """KEY=VALUE pairs -> {key: value} (values parsed like --set's); ValueError names the flag and the pair."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag}: expected KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = _parse_value(value)
        except ValueError as exc:
            raise ValueError(f"{flag} {pair}: {exc}") from None
    return out


def parse_grid(pairs) -> dict:
    """--grid KEY=V1,V2 pairs -> {key: [values]} (values parsed like --set's); ValueError names the pair."""
    grid = {}
    for pair in pairs or []:
        key, sep, values = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not values:
            raise ValueError(f"--grid: expected KEY=V1,V2,..., got {pair!r}")
        if key in grid:
            raise ValueError(f"--grid: {key} is given twice; give all its values in one --grid {key}=V1,V2")
        if key in ("model", "task", "seed"):
            raise ValueError(f"--grid {pair}: use --{key}s")
        try:
            grid[key] = [_parse_value(v) for v in values.split(",")]
        except ValueError as exc:
            raise ValueError(f"--grid {pair}: {exc}") from None
    return grid


def _cmd_sweep(args) -> int:
    from .train import sweep

    out = _check_out(args.out or "runs/sweep")
    merge = getattr(args, "merge", None)  # (refmann curves runs through here too, without --merge)
    if merge is not None:
        if args.report or getattr(args, "extend", False):
            raise CommandError("--merge: expected it without --report or --extend (it draws the report itself)")
        with _user_errors():
            runs = sweep.merge_sweeps(out, merge)
            sweep.write_report(out)
        print(f"refmann sweep: {len(runs)} runs of {len(merge)} sweep(s) merged into {out}/")
        print((out / "results.md").read_text())
        print(f"table: {out / 'results.md'}; figures: {', '.join(str(p) for p in sorted(out.glob('figure2*.png')))}")
        return 0
    if args.report:
        with _user_errors():
            sweep.read_plan(out)
            sweep.write_report(out)
        print((out / "results.md").read_text())
        return 0
    if args.scheduler is not None and not args.scheduler.strip():
        raise CommandError("--scheduler: expected an address such as tcp://HOST:8786, got an empty string")
    try:
        grid = parse_grid(args.grid)
    except ValueError as exc:
        raise CommandError(_one_line(exc)) from exc
    import inspect

    from .tasks import TASKS

    data, readers = args.data, [t for t in args.tasks if "data" in inspect.signature(TASKS[t]).parameters]
    if data is not None and not readers:
        args.task = args.tasks[0]
        _checked_configs(args, args.models)  # the one-line refusal of --data for a task without data
    runs_by_task = []
    for task in args.tasks:
        args.task, args.data = task, (data if task in readers else None)  # --data goes to the tasks that read data
        runs_by_task.append(_checked_configs(args, args.models))
    try:
        runs = []
        for configs in runs_by_task:
            for name, config in configs.items():
                # a grid key the user set goes into the config; a regime field that the grid varies is the grid's
                runs += sweep.plan(config, models=[name], tasks=[config.task], seeds=args.seeds, grid=grid)
        order = {(t, m): i for i, (t, m) in enumerate((t, m) for t in args.tasks for m in args.models)}
        runs.sort(key=lambda r: order[(r.task, r.model)])
        for r in runs:  # every config built once, so a bad grid value fails before any work
            from .train import TrainConfig
            from .train.trainer import build

            build(TrainConfig.from_dict(r.config))
    except (ValueError, TypeError) as exc:
        raise CommandError(_name_flag(_message(exc), ("--grid", "--models", "--tasks", "--seeds"))) from exc
    print(f"refmann sweep: {len(runs)} runs into {out}/", flush=True)
    started = time.perf_counter()
    with _user_errors():
        try:
            sweep.run_sweep(
                runs,
                out,
                workers=args.workers,
                scheduler=args.scheduler,
                progress=False if args.quiet else None,
                extend=getattr(args, "extend", False),
            )
        except (OSError, TimeoutError) as exc:
            if args.scheduler is None:
                raise
            raise CommandError(f"--scheduler: cannot reach {args.scheduler} ({_one_line(exc)})") from exc
    print((out / "results.md").read_text())
    from .bench._proc import machine_info, machine_line

    print(f"sweep wall time: {time.perf_counter() - started:.0f} s; machine: {machine_line(machine_info())}")
    print(f"table: {out / 'results.md'}; figures: {', '.join(str(p) for p in sorted(out.glob('figure2-*.png')))}")
    return 0


#: bench flags (dest) -> the benchmarks that read them; any other benchmark refuses them.
_BENCH_FLAGS = {
    "models": ("steps", "scaling"),
    "sizes": ("steps", "scaling", "footprint", "pkm", "sketch", "hma"),
    "batch_size": ("steps", "scaling", "footprint"),
    "memory_sizes": ("scaling",),
    "steps": ("scaling",),
    "repeats": ("scaling",),
    "trials": ("scaling",),
    "memory_steps": ("scaling",),
    "time_budget": ("scaling",),
    "memory_budget": ("scaling",),
    "point_timeout": ("scaling",),
    "figure": ("scaling",),
    "out": ("scaling", "pkm", "sketch", "hma"),
    "dtype": ("scaling", "footprint", "pkm", "sketch", "hma"),
    "rounds": ("pkm", "sketch", "hma"),
    "versus_lstm": ("steps",),
    "breakdown": ("steps",),
    "count_calls": ("steps",),
    "updates": ("footprint",),
    "length": ("footprint",),
}


def _check_bench_flags(args):
    for dest, takers in _BENCH_FLAGS.items():
        value = getattr(args, dest)
        if value not in (None, False) and args.what not in takers:
            flag = "--" + dest.replace("_", "-")
            raise CommandError(f"{flag}: applies to bench {' and '.join(takers)}, not to bench {args.what}")


def _cmd_bench(args) -> int:
    _check_bench_flags(args)
    if args.what == "lsh":
        from .bench.lsh import format_index_table, format_table, index_table, lsh_table

        sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
        queries = 50 if args.quick else 200
        with _user_errors():
            table = lsh_table(sizes, queries=queries)
            index_sizes = sizes if args.quick else (*sizes, 1_000_000)
            indexes = index_table(index_sizes, queries=queries, rounds=2 if args.quick else 3)
        print(format_table(table))
        print()
        print("The three indexes side by side (defaults; interleaved rounds, minimum kept):")
        print()
        print(format_index_table(indexes))
    elif args.what == "steps":
        return _bench_steps(args)
    elif args.what == "scaling":
        return _bench_scaling(args)
    elif args.what == "footprint":
        return _bench_footprint(args)
    elif args.what == "pkm":
        return _bench_pkm(args)
    elif args.what == "sketch":
        return _bench_sketch(args)
    elif args.what == "hma":
        return _bench_hma(args)
    return 0


def _one_dtype(args):
    """The one --dtype of bench scaling and footprint (None if not given)."""
    if args.dtype is not None and len(args.dtype) != 1:
        raise CommandError(f"--dtype: bench {args.what} takes one dtype, got {len(args.dtype)}")
    return None if args.dtype is None else args.dtype[0]


def _json_out(text: str) -> Path:
    """--out of bench pkm: a JSON file whose folder exists or can be created (nothing is created here)."""
    path = Path(text)
    if not text or path.is_dir():
        raise CommandError(f"--out: expected a JSON file, but {text!r} is a folder")
    _check_out(str(path.absolute().parent))
    return path


def _bench_pkm(args) -> int:
    from ._io import atomic_write_text
    from .bench._proc import machine_info, machine_line
    from .bench.pkm import QUICK, format_pkm_table, pkm_table, pkm_targets

    out = None if args.out is None else _json_out(args.out)
    kwargs = dict(QUICK) if args.quick else {}
    if args.sizes is not None:
        kwargs["sizes"] = args.sizes
    if args.rounds is not None:
        kwargs["rounds"] = args.rounds
    try:
        rows = pkm_table(**kwargs, dtypes=args.dtype, progress=not args.quiet)
    except (ValueError, TypeError, MemoryError) as exc:
        raise CommandError(_name_flag(_message(exc), ("--sizes", "--dtype", "--rounds"))) from exc
    machine = machine_info()
    print(format_pkm_table(rows))
    print(f"\nmachine: {machine_line(machine)}")
    if out is not None:
        with _user_errors():
            atomic_write_text(
                out, json.dumps({"machine": machine, "rows": rows, "targets": pkm_targets(rows)}, indent=1)
            )
        print(f"rows: {out}")
    return 0


def _bench_sketch(args) -> int:
    from .bench.memory_layers import SKETCH_QUICK, format_sketch_table, sketch_ratios, sketch_table

    return _bench_memory_layer(args, SKETCH_QUICK, sketch_table, format_sketch_table, sketch_ratios)


def _bench_hma(args) -> int:
    from .bench.memory_layers import HMA_QUICK, format_hma_table, hma_ratios, hma_table

    return _bench_memory_layer(args, HMA_QUICK, hma_table, format_hma_table, hma_ratios)


def _bench_memory_layer(args, quick, table, format_table, ratios) -> int:
    """bench sketch and bench hma: the table (--quick: its small sizes), the machine line, and --out's JSON."""
    from ._io import atomic_write_text
    from .bench._proc import machine_info, machine_line

    out = None if args.out is None else _json_out(args.out)
    kwargs = dict(quick) if args.quick else {}
    for key, value in (("sizes", args.sizes), ("rounds", args.rounds), ("dtypes", args.dtype)):
        if value is not None:
            kwargs[key] = value
    try:
        rows = table(**kwargs, progress=not args.quiet)
    except (ValueError, TypeError, MemoryError) as exc:
        raise CommandError(_name_flag(_message(exc), ("--sizes", "--dtype", "--rounds"))) from exc
    machine = machine_info()
    print(format_table(rows))
    print(f"\nmachine: {machine_line(machine)}")
    if out is not None:
        with _user_errors():
            atomic_write_text(out, json.dumps({"machine": machine, "rows": rows, "ratios": ratios(rows)}, indent=1))
        print(f"rows: {out}")
    return 0


def _bench_steps(args) -> int:
    from .bench import scaling

    models = args.models or ["sam-lsh"]
    known = [m for f in scaling.FIGURES for m in scaling.FIGURE_MODELS[f]]  # every benchmark line
    unknown = [m for m in models if m not in known and m != "sam"]
    if unknown:
        raise CommandError(
            f"--models: expected names from {', '.join(known)} (sam means sam-lsh), got {' '.join(unknown)}"
        )
    if args.count_calls:
        sizes = args.sizes or ([1_000] if args.quick else [100_000])
        batch = args.batch_size or 8
    elif args.versus_lstm or args.breakdown:
        sizes = args.sizes or ([1_000] if args.quick else [1_000_000])
        batch = args.batch_size or 8
    else:
        sizes = args.sizes or ([100, 1_000] if args.quick else [1_000, 100_000, 1_000_000])
        batch = args.batch_size or (2 if args.quick else 8)
    try:  # the configurations step_time and controller_ratio build, checked before the first point
        names = tuple(dict.fromkeys("sam-lsh" if m == "sam" else m for m in models))
        for figure in scaling.FIGURES:
            lines = tuple(m for m in names if m in scaling.FIGURE_MODELS[figure])
            if lines:
                scaling.ScalingConfig(
                    models=lines, figure=figure, sizes=tuple(sizes), memory_sizes=(), batch_size=batch
                )
    except (ValueError, TypeError) as exc:
        raise CommandError(_name_flag(_message(exc), ("--models", "--sizes", "--batch-size"))) from exc
    if args.breakdown and args.versus_lstm:
        raise CommandError("--breakdown: expected either --breakdown or --versus-lstm, not both")
    if args.count_calls and (args.breakdown or args.versus_lstm):
        raise CommandError("--count-calls: expected it alone, not with --breakdown or --versus-lstm")
    if args.count_calls:
        from .bench.steps import step_calls

        calls = 2 if args.quick else 10
        print(
            f"calls per forward+backward step, counted by cProfile over {calls} 10-step calls after a warm-up, "
            f"batch {batch}, W=32, 4 heads, LSTM 100, k=4, float64"
        )
        print("| model | N | Python-level calls | Numba kernel calls | NumPy C calls | array constructors and copies |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for model in models:
            for N in sizes:
                with _user_errors():
                    r = step_calls(model, N, batch_size=batch, calls=calls)
                print(
                    f"| {r['model']} | {N:,} | {r['python_calls']:.0f} | {r['numba_calls']:.0f} | "
                    f"{r['numpy_calls']:.0f} | {r['constructors']:.0f} |",
                    flush=True,
                )
        return 0
    if args.breakdown:
        from .bench.steps import step_breakdown

        calls = 5 if args.quick else 100
        print(
            f"where a forward+backward step's time goes (inclusive ms per step of each part; parts nest), "
            f"batch {batch}, W=32, 4 heads, LSTM 100, k=4, float64, one BLAS thread; fastest of 3 rounds "
            f"of {calls} 10-step calls, instrumented"
        )
        for model in models:
            for N in sizes:
                with _user_errors():
                    r = step_breakdown(model, N, batch_size=batch, calls=calls)
                print(f"\n{r['model']}, N = {N:,}: {r['ms_per_step']:.3f} ms / step (instrumented)\n")
                print("| part | ms / step | share of the step |")
                print("| --- | ---: | ---: |")
                for part, ms in r["parts"].items():
                    print(f"| {part} | {ms:.3f} | {ms / r['ms_per_step']:.0%} |", flush=True)
        return 0
    if args.versus_lstm:
        from .bench.steps import controller_ratio

        rounds, calls = (3, 2) if args.quick else (15, 10)
        print(
            f"per-step forward+backward against LSTM-only steps of the same controller, measured side by side "
            f"(the fastest call of {rounds} interleaved rounds of {calls} calls per model), batch {batch}, W=32, "
            f"4 heads, LSTM 100, k=4, float64, one BLAS thread"
        )
        print("| model | N | model ms | LSTM (X + H·W inputs) ms | LSTM (X inputs) ms | ratio | ratio (X inputs) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for model in models:
            for N in sizes:
                with _user_errors():
                    r = controller_ratio(model, N, batch_size=batch, rounds=rounds, calls=calls)
                print(
                    f"| {r['model']} | {N:,} | {r['model_ms']:.3f} | {r['lstm_same_input_ms']:.3f} | "
                    f"{r['lstm_task_input_ms']:.3f} | {r['ratio_same_input']:.2f} | {r['ratio_task_input']:.2f} |",
                    flush=True,
                )
        return 0
    from .bench.steps import step_time

    print(f"per-step forward+backward, batch {batch}, W=32, 4 heads, LSTM 100, k=4, float64, one BLAS thread")
    print("| model | N | ms / step | ratio to the smallest N | set-up s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for model in models:
        first = None
        for N in sizes:
            with _user_errors():
                r = step_time(model, N, batch_size=batch, repeats=2 if args.quick else 5)
            first = first or r["seconds_per_step"]
            print(
                f"| {r['model']} | {N:,} | {1e3 * r['seconds_per_step']:.2f} | "
                f"{r['seconds_per_step'] / first:.2f} | {r['setup_seconds']:.1f} |",
                flush=True,
            )
    return 0


def _bench_footprint(args) -> int:
    from .bench.footprint import footprint_run, format_footprint

    if args.sizes is not None and len(args.sizes) != 1:
        raise CommandError(f"--sizes: bench footprint takes one memory size, got {len(args.sizes)}")
    N = args.sizes[0] if args.sizes else (10_000 if args.quick else 10_000_000)

    def report(u, total, loss, seconds):
        if not args.quiet:
            print(f"update {u}/{total}: loss {loss:.3f}, {seconds:.2f} s", file=sys.stderr, flush=True)

    with _user_errors():
        result = footprint_run(
            N,
            batch_size=args.batch_size or 1,
            dtype=_one_dtype(args) or "float32",
            updates=args.updates or (3 if args.quick else 10),
            length=args.length or 10,
            progress=report,
        )
    print(format_footprint(result))
    return 0


def _bench_scaling(args) -> int:
    from .bench import scaling

    fields = {
        "models": args.models,
        "sizes": args.sizes,
        "memory_sizes": args.memory_sizes,
        "steps": args.steps,
        "repeats": args.repeats,
        "trials": args.trials,
        "memory_steps": args.memory_steps,
        "batch_size": args.batch_size,
        "time_budget": args.time_budget,
        "memory_budget": args.memory_budget,
        "dtype": _one_dtype(args),
        "point_timeout": args.point_timeout,
        "figure": args.figure,
    }
    if args.sizes is not None and args.memory_sizes is None:
        fields["memory_sizes"] = args.sizes
    fields = {key: value for key, value in fields.items() if value is not None}
    try:
        config = scaling.quick_config(**fields) if args.quick else scaling.ScalingConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise CommandError(_name_flag(_message(exc), ["--" + key.replace("_", "-") for key in fields])) from exc
    out = _check_out(args.out) if args.out else scaling.default_out(config.figure)
    with _user_errors():
        result = scaling.run_scaling(
            out, config, progress=None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
        )
    print(result.table)
    print(f"\npoints: {result.files['csv']}, {result.files['json']}")
    print(f"plots:  {result.files['time_png']}, {result.files['memory_png']}")
    return 0


def _cmd_golden(args) -> int:
    from . import golden

    try:
        paths = golden.write_golden(
            args.model, out=args.out, seed=args.seed, steps=args.steps, batch_size=args.batch_size
        )
    except _USER_ERRORS as exc:
        flags = ("--model", "--seed", "--out", "--steps", "--batch-size")
        raise CommandError(_name_flag(_message(exc), flags)) from exc
    for path in paths:
        meta = golden.load_golden(path)["meta"]
        sizes = " ".join(f"{key}={value}" for key, value in meta["shapes"].items())
        print(f"{path}  ({meta['model_class']}, {sizes}, {len(meta['param_names'])} params)")
    print("format: docs/golden.md; load with np.load(path, allow_pickle=False)")
    return 0


def _cmd_course(args) -> int:
    from . import course

    if args.action == "list":
        width = max(len(name) for name in course.ASSIGNMENTS)
        for i, (name, a) in enumerate(course.ASSIGNMENTS.items(), 1):
            points = sum(c.points for c in a.checks)
            print(f"{i}. {name:<{width}}  {points:>2g} points  {a.title}")
        print("grade one: refmann course check NAME --path YOUR.ipynb (docs/course.md)")
        return 0
    if args.action == "build":
        if args.out is None:
            raise CommandError("--out: expected the folder to write the build into")
        source = Path(args.source) if args.source else course.course_dir()
        tutorials = source.parent / "tutorials"
        try:
            written = course.build(
                source, Path(args.out), teacher=args.teacher, tutorials=tutorials if tutorials.is_dir() else None
            )
        except ValueError as exc:
            raise CommandError(_name_flag(_message(exc), ("--source", "--out"))) from exc
        kind = (
            "teacher's build (solutions and answer keys)" if args.teacher else "student build (stubs, no answer keys)"
        )
        print(f"{args.out}: {kind}, {len(written)} notebooks")
        return 0
    if not args.assignment:
        raise CommandError(f"assignment: expected one of {list(course.ASSIGNMENTS)} (refmann course list)")
    try:
        report = course.check(args.assignment, args.path)
    except (ValueError, TypeError) as exc:
        raise CommandError(_name_flag(_message(exc), ("--path",))) from exc
    print(report)
    return 0 if report.passed else 1


def _cmd_demo(args) -> int:
    from .train import TrainConfig

    out = _check_out(args.out)
    print("refmann demo: an NTM (Graves et al. 2014) learns to copy sequences of up to 5 random 8-bit vectors.")
    print("Every gradient comes from hand-written backward passes in refmann.ops.\n", flush=True)
    with _user_errors():
        config = TrainConfig(
            model="ntm",
            task="copy",
            task_kwargs={"max_length": 5},
            sequences=args.sequences,
            batch_size=1,  # the regime that learns copy (docs/results.md): one sequence per update
            optimizer="rmsprop",
            lr=1e-3,
            clip=10.0,
            memory_size=16,
            word_size=8,
            num_heads=1,
            hidden_size=64,
            eval_every=1000,
            log_every=5,
            seed=args.seed,
        )
    return _train_or_resume(config, out, args)


# -- the parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="refmann",
        description=__doc__.splitlines()[0],
        epilog="A bad argument or an error while running prints one line on stderr and exits 2 (-v: with its "
        "traceback); Ctrl-C exits 130 (train, demo: continue with the same command and --resume; sweep, curves: run "
        "it again). Exit codes: 0 ok, 1 a check failed, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"refmann {__version__}")
    verbose_help = "log at INFO level to stderr, and the traceback of an error"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    common = argparse.ArgumentParser(add_help=False)  # -v also after the command
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, **kwargs):
        return sub.add_parser(name, parents=[common], **kwargs)

    p = add("info", help="versions and whether the Numba JIT is on")
    p.set_defaults(func=_cmd_info)

    p = add("gradcheck", help="table of every op's max relative gradient error (float64)")
    p.add_argument("ops", nargs="*", help="op names (default: all)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_gradcheck)

    p = add("demo", help="the quick start's main job: train a small NTM on copy and plot it")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--sequences", type=positive_int, default=5_000, help="training budget (default: 5000)")
    p.add_argument("--out", type=out_dir, default="refmann-demo", help="run folder (default: ./refmann-demo)")
    p.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    p.add_argument(
        "--extend",
        action="store_true",
        help="with --resume: train the run on to a larger --sequences than it was started with",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = add("course", help="the graded assignments: list them, build the student or teacher version, grade work")
    p.add_argument("action", choices=["list", "build", "check"], help="list | build | check")
    p.add_argument("assignment", nargs="?", help="check: the assignment (refmann course list)")
    p.add_argument("--path", help="check: the notebook (.ipynb) or module (.py) to grade (default: the solution)")
    p.add_argument("--out", type=out_dir, help="build: the folder to write (assignments/, tutorials/)")
    p.add_argument("--teacher", action="store_true", help="build: keep the solutions and append the answer keys")
    p.add_argument("--source", help="build: the course folder (default: the checkout's course/)")
    p.set_defaults(func=_cmd_course)

    p = add("golden", help="write golden .npz files (inputs, params, logits, loss, every gradient)")
    p.add_argument(
        "--model",
        nargs="+",
        default=["all"],
        choices=[*_model_names(), "all"],
        metavar="MODEL",
        help=f"{', '.join(_model_names())} or all (default: all); several may be given",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seeds the parameters and the data (default 0)")
    p.add_argument("--out", type=out_dir, required=True, help="folder for MODEL_seedSEED.npz (created if missing)")
    p.add_argument("--steps", type=positive_int, default=5, help="T (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=2, help="B (default 2)")
    p.set_defaults(func=_cmd_golden)

    p = add("bench", help="benchmarks that print tables measured in one run")
    p.add_argument(
        "what",
        choices=["lsh", "steps", "scaling", "footprint", "pkm", "sketch", "hma"],
        help="lsh: recall and speed of the LSH index and the k-d forest against the exact index; "
        "steps: per-step forward+backward time against N; "
        "scaling: Figure 1 of Rae et al. 2016 (time and memory against N, four models), or with --figure 7 "
        "its Figure 7 (the DNC against the Sparse DNC); "
        "footprint: SAM trained at N = 1e7 (--sizes) with the bytes of each part; "
        "pkm: one training step of a product-key memory layer (forward, backward, lazy Adam) by part, against "
        "N = n² slots, with its floors and the dense-Adam step; "
        "sketch: forward + backward per row of a sketch memory against its table size, beside dense layers of the "
        "same parameters and of the same multiply-adds (and lazy against dense Adam); "
        "hma: forward + backward per sample of HMA's memory tokens against the queue length, in both modes, beside "
        "a dense head of the same parameters. "
        "A flag that the chosen benchmark does not read is an error",
    )
    p.add_argument("--quick", action="store_true", help="small sizes (for CI)")
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="steps, scaling: models (Figure 1: sam-lsh, sam-linear, dam, ntm; Figure 7: dnc, sdnc-linear, "
        "sdnc-lsh; steps takes any of them; default sam-lsh for steps, all the figure's for scaling)",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        type=positive_int,
        default=None,
        help="steps, scaling: memory sizes N (at least k = 4); footprint: the one N (default 1e7; quick 1e4); "
        "pkm: num_keys n, not N: N = n² slots (default 128 256 512 1024, N = 2^14 ... 2^20; quick 16 32; "
        "each n >= k = 32, quick 8); sketch: num_bits b, 2^b buckets per table (default 8 10 ... 20; quick 4 6 8); "
        "hma: queue lengths S (default 64 256 1024 4096 16384; quick 8 32)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="steps, scaling: batch of the time points (default 8; steps --quick 2); footprint: batch (default 1)",
    )
    p.add_argument(
        "--memory-sizes",
        nargs="+",
        type=positive_int,
        default=None,
        help="scaling: N of the memory points (default: --sizes, else 1e2..1e7 and 65536; --figure 7: its sizes)",
    )
    p.add_argument("--steps", type=positive_int, default=None, help="scaling: T of a timed call (default 10; quick 2)")
    p.add_argument(
        "--repeats", type=positive_int, default=None, help="scaling: timed calls after the warm-up (default 3)"
    )
    p.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        help="scaling: fresh processes per time point, median taken (default 1; --figure 7: 3, quick 1)",
    )
    p.add_argument(
        "--memory-steps",
        type=positive_int,
        default=None,
        help="scaling: T of the memory points (default 100, the paper's; quick and --figure 7: 10)",
    )
    p.add_argument(
        "--time-budget",
        type=positive_float,
        default=None,
        help="scaling: skip a point predicted to take longer than this many seconds (default 30; --figure 7: 300)",
    )
    p.add_argument(
        "--memory-budget",
        type=positive_float,
        default=None,
        help="scaling: skip a point whose process is predicted to peak above this many GiB (default 8)",
    )
    p.add_argument(
        "--dtype",
        nargs="+",
        choices=["float64", "float32"],
        default=None,
        help="scaling: default float64; footprint: default float32 (these two take one); pkm: one or both "
        "(default float32, and float64 too when its largest N fits in the memory available); sketch, hma: one or "
        "both (default float32)",
    )
    p.add_argument(
        "--point-timeout",
        type=positive_float,
        default=None,
        help="scaling: kill a point after this many seconds (default 3600)",
    )
    p.add_argument(
        "--figure",
        type=int,
        default=None,
        metavar="{1,7}",
        help="scaling: 1 (default: NTM, DAM, SAM; memory of a 100-step unroll excluding initialisation) or 7 "
        "(DNC, SDNC linear, SDNC LSH at N = 2^6 ... 2^12, 1e4, 1e5, 1e6; memory: the total over 10 steps "
        "including the start state; 3 processes per time point, time budget 300 s)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="scaling: output folder (default runs/bench-scaling; --figure 7: runs/bench-scaling-figure7); "
        "pkm: a JSON file for the rows, the targets and the machine (written atomically; default none); "
        "sketch, hma: likewise, with the ratios",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=None,
        help="pkm, sketch, hma: interleaved rounds, the minimum kept per cell (default 5; quick 3)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="scaling, footprint: no progress lines on stderr; pkm, sketch, hma: no progress bar",
    )
    p.add_argument(
        "--versus-lstm",
        action="store_true",
        help="steps: each model against LSTM-only steps of its controller, side by side (batch default 8)",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="steps: where each model's step time goes, part by part (instrumented; batch default 8, N 1e6)",
    )
    p.add_argument(
        "--count-calls",
        action="store_true",
        help="steps: the Python-level, Numba and NumPy calls of one step, counted by cProfile (batch default 8, N 1e5)",
    )
    p.add_argument("--updates", type=positive_int, default=None, help="footprint: Adam updates (default 10; quick 3)")
    p.add_argument("--length", type=positive_int, default=None, help="footprint: copy sequence length (default 10)")
    p.set_defaults(func=_cmd_bench)

    p = add("curves", help="the learning curves of several models over seeds on one task: a refmann sweep (Dask)")
    _train_arguments(p, default_out="runs/curves-TASK")
    p.add_argument("--models", nargs="+", default=["ntm", "dam", "lstm"], choices=_model_names())
    p.add_argument("--seeds", nargs="+", type=seed_int, default=[0, 1, 2], help="non-negative ints (default 0 1 2)")
    p.add_argument("--jobs", type=positive_int, default=2, help="Dask workers: parallel trainings (default 2)")
    p.set_defaults(func=_cmd_curves)

    p = add(
        "sweep",
        help="train models × tasks × seeds × settings on Dask (a LocalCluster, or --scheduler); resumable",
        description="Every run writes its own folder OUT/TASK/MODEL[-SETTING]-sSEED; running the same "
        "command again skips the finished runs and resumes the interrupted ones bit-identically. "
        "The table (results.md, results.json) and the mean ± s.d. curves (figure2-TASK.png) go to OUT.",
    )
    _train_arguments(p, default_out="runs/sweep", several_tasks=True)
    p.add_argument("--models", nargs="+", default=["ntm", "dam", "sam"], choices=_model_names())
    p.add_argument("--seeds", nargs="+", type=seed_int, default=[0, 1, 2, 3, 4], help="(default 0 1 2 3 4)")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a setting to vary: a training field (lr, batch_size, optimizer, clip, clip_norm, hidden_size, "
        "num_heads, ...) or a model option; repeatable (the runs are the product)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="processes of the LocalCluster (default 2; not with --scheduler)",
    )
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="a running Dask scheduler")
    p.add_argument("--report", action="store_true", help="only gather the table and draw the figures of OUT")
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="DIR|JSON",
        help="gather the runs of these sweep folders (linked, not copied) and sweeps' results.json files "
        "(their rows and curves, e.g. docs/data/sweeps/*.json) into OUT, then draw one table, each task's "
        "figure and Figure 2 with the tasks side by side",
    )
    p.add_argument(
        "--extend",
        action="store_true",
        help="the runs of OUT train on to a larger --sequences than the sweep was started with",
    )
    p.set_defaults(func=_cmd_sweep)

    p = add("train", help="train a model on a task; log, checkpoints and plots go to --out")
    _train_arguments(p, default_out="runs/MODEL-TASK-sSEED")
    p.add_argument("--model", choices=_model_names(), default="ntm")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    p.add_argument(
        "--extend",
        action="store_true",
        help="with --resume: train the run on to a larger --sequences than it was started with",
    )
    p.set_defaults(func=_cmd_train)
    return parser


def _model_names():
    from .models import MODELS

    return list(MODELS)


def _train_arguments(p, default_out, *, several_tasks=False):
    from .tasks import TASKS
    from .train.trainer import DEFAULT_LR

    if several_tasks:
        p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=["copy"], help="(default: copy)")
    else:
        p.add_argument("--task", choices=list(TASKS), default="copy")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model option (a field of its config, e.g. k=8, index=linear, usage=timestamp; JSON for a dict "
        "or a list); repeatable; applies to every model that has the field; the sizes and the seed have "
        "their own flags",
    )
    regime = "default: the model's regime on the task (refmann.train.regimes, docs/results.md)"
    p.add_argument("--sequences", type=positive_int, default=None, help=f"training budget in sequences ({regime})")
    p.add_argument("--batch-size", type=positive_int, default=None, help=f"sequences per update ({regime})")
    p.add_argument("--optimizer", choices=list(DEFAULT_LR), default=None, help=f"({regime})")
    lrs = ", ".join(f"{lr:g} {name}" for name, lr in DEFAULT_LR.items())
    p.add_argument(
        "--lr", type=positive_float, default=None, help=f"learning rate ({regime}; another --optimizer's: {lrs})"
    )
    p.add_argument(
        "--optimizer-options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyperparameter of the optimizer besides lr, e.g. centered=false, momentum=0.9, decay=0.95 "
        "(rmsprop), beta2=0.99 (adam); repeatable",
    )
    p.add_argument(
        "--value-optimizer",
        choices=list(DEFAULT_LR),
        default=None,
        help="a separate optimizer for the value tables (parameters named *values, e.g. a product-key memory's)",
    )
    p.add_argument(
        "--value-lr", type=positive_float, default=None, help="the value tables' learning rate (a group of their own)"
    )
    p.add_argument(
        "--clip",
        type=off_or_positive_float,
        default=None,
        help="elementwise gradient clip; 0 turns it off (default: the regime's, ±10 for every model today)",
    )
    p.add_argument(
        "--clip-norm",
        type=off_or_positive_float,
        default=None,
        help="global-norm gradient clip; 0 is off (default: the regime's)",
    )
    p.add_argument(
        "--lr-decay",
        type=decay_factor,
        default=None,
        metavar="FACTOR",
        help="multiply the learning rate by FACTOR in (0, 1] once, from the first evaluation under "
        "--lr-decay-below on (the log marks it); 1 is off (default: the regime's)",
    )
    p.add_argument(
        "--lr-decay-below",
        type=positive_float,
        default=None,
        metavar="VALUE",
        help="the evaluation metric (bits, errors) that starts --lr-decay (default: 1.0)",
    )
    p.add_argument("--memory-size", type=positive_int, default=128)
    p.add_argument("--word-size", type=positive_int, default=20)
    p.add_argument(
        "--num-heads", type=positive_int, default=None, help=f"read (and write) heads ({regime}; 1 for most)"
    )
    p.add_argument("--hidden-size", type=positive_int, default=100)
    p.add_argument("--max-length", type=positive_int, default=None, help="task's maximum length (copy tasks)")
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="the data a task reads: bAbI's files (babi), an Omniglot folder or zip (one_shot); "
        "default: refmann's generator / scikit-learn's digits",
    )
    p.add_argument("--curriculum", action="store_true", help="exponential curriculum (Rae et al. 2016)")
    p.add_argument("--eval-every", type=positive_int, default=1000, help="sequences between evaluations")
    p.add_argument("--out", type=out_dir, default=None, help=f"output folder (default: {default_out})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _command(args) -> str:
    name = getattr(args, "command", None)
    if name == "bench" and getattr(args, "what", None):
        return f"refmann bench {args.what}"
    return f"refmann {name}" if name else "refmann"


def _interrupt_hint(args) -> str:
    command = getattr(args, "command", None)
    out = getattr(args, "out", None)
    if command in ("train", "demo") and out:
        if (Path(out) / "checkpoint.npz").exists() or (Path(out) / "log.jsonl").exists():
            return RESUME_HINT
        return "interrupted before the first checkpoint: nothing saved; run the same command again"
    if command in ("sweep", "curves"):
        return "interrupted: every run keeps its last checkpoint; run the same command again to continue"
    return "interrupted"


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (argparse's own errors and --help exit through SystemExit)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            stream=sys.stderr,
            format="%(levelname)s %(name)s: %(message)s",
        )
        return args.func(args)
    except KeyboardInterrupt:
        if args is None:
            print("refmann: interrupted", file=sys.stderr)
        else:
            print(_interrupt_hint(args), file=sys.stderr)
        return 130
    except CommandError as exc:
        if args.verbose and exc.__cause__ is not None:
            log.error("the error below came from", exc_info=exc.__cause__)
        print(f"{_command(args)}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout left (``refmann sweep --report | head``): no traceback
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
