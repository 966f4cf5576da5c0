"""refmann: memory-augmented neural networks in NumPy with hand-derived gradients.

Commands: demo, train, curves, gradcheck, golden, bench, info. Models, tasks and optimizers come
from refmann's registries; a model's options are set with --set KEY=VALUE (any field of its config).
Results go to stdout; logs go to stderr. Exit codes: 0 ok, 1 a check failed, 2 usage error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys

import numpy as np

from . import __version__


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
        print(f"unknown op(s): {', '.join(unknown)}; choose from {', '.join(ops.OP_NAMES)}", file=sys.stderr)
        return 2
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


def _train_config(args):
    from .train import TrainConfig

    task_kwargs = {}
    if args.max_length is not None:
        task_kwargs["max_length"] = args.max_length
    return TrainConfig(
        model=getattr(args, "model", "ntm"),
        task=args.task,
        task_kwargs=task_kwargs,
        sequences=args.sequences,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        clip=None if args.clip <= 0 else args.clip,
        clip_norm=None if args.clip_norm <= 0 else args.clip_norm,
        memory_size=args.memory_size,
        word_size=args.word_size,
        num_heads=args.num_heads,
        hidden_size=args.hidden_size,
        curriculum=args.curriculum,
        eval_every=args.eval_every,
        seed=getattr(args, "seed", 0),
    )


def _parse_value(text: str):
    """A --set value: int, float, true/false, none, or the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def model_overrides(pairs, models) -> dict[str, dict]:
    """--set KEY=VALUE pairs -> {model: {field: value}} for every model whose config has the field,
    on top of each model's registered training defaults. Raises ValueError for an unknown field."""
    from .models import MODELS

    out = {name: dict(MODELS[name].train) for name in models}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected KEY=VALUE, got {pair!r}")
        takers = [name for name in models if key in MODELS[name].fields()]
        if not takers:
            known = sorted({f for name in models for f in MODELS[name].fields()})
            raise ValueError(
                f"--set: no model among {', '.join(models)} has an option {key!r}; options: {', '.join(known)}"
            )
        for name in takers:
            out[name][key] = _parse_value(value)
    return out


def _report_run(summary, out):
    print(
        f"trained {summary['model']} on {summary['task']}: {summary['sequences']} sequences in "
        f"{summary['seconds']:.0f} s ({summary['seconds_per_1000_sequences']:.2f} s per 1000 sequences)"
    )
    metric = summary["metric"]
    final = summary[f"final_eval_{metric}"]
    print(f"evaluation {summary['metric_label']}: " + ("none yet" if final is None else f"{final:.3f}"))
    if summary["sequences_to_target"] is not None:
        print(f"learned (evaluation under the task's target) after {summary['sequences_to_target']} sequences")
    print(f"learning curve: {out / 'learning_curve.png'}")
    print(f"memory access:  {out / 'access.png'}")
    print(f"log, checkpoint, config: {out}/")


def _cmd_train(args) -> int:
    import dataclasses
    from pathlib import Path

    from .train import Trainer

    out = Path(args.out or f"runs/{args.model}-{args.task}-s{args.seed}")
    try:
        overrides = model_overrides(args.set, [args.model])[args.model]
    except ValueError as exc:
        print(f"refmann train: {exc}", file=sys.stderr)
        return 2
    config = dataclasses.replace(_train_config(args), model_kwargs=overrides)
    trainer = Trainer(config, out, resume=args.resume, progress=False if args.quiet else None)
    summary = trainer.run()
    _report_run(summary, out)
    if summary["interrupted"]:
        print("interrupted: checkpoint saved; continue with the same command and --resume", file=sys.stderr)
        return 130
    return 0


def _cmd_curves(args) -> int:
    from pathlib import Path

    from .train.curves import run_curves

    base = _train_config(args)
    try:
        overrides = {name: {"model_kwargs": kw} for name, kw in model_overrides(args.set, args.models).items()}
    except ValueError as exc:
        print(f"refmann curves: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/curves-{args.task}")
    run_curves(base, args.models, args.seeds, out, jobs=args.jobs, model_overrides=overrides)
    print((out / "summary.md").read_text())
    print(f"curves: {out / 'curves.png'}")
    return 0


def _cmd_bench(args) -> int:
    if args.what == "lsh":
        from .bench.lsh import format_table, lsh_table

        sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
        print(format_table(lsh_table(sizes, queries=50 if args.quick else 200)))
    elif args.what == "steps" and args.versus_lstm:
        from .bench.steps import controller_ratio

        sizes = args.sizes or ([1_000] if args.quick else [1_000_000])
        rounds = 3 if args.quick else 15
        print(
            f"per-step forward+backward against LSTM-only steps of the same controller, measured side by side "
            f"(minimum of {rounds} interleaved rounds), batch 8, W=32, 4 heads, LSTM 100, k=4, float64, one BLAS "
            f"thread"
        )
        print("| model | N | model ms | LSTM (X + H·W inputs) ms | LSTM (X inputs) ms | ratio | ratio (X inputs) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for model in args.models or ["sam-lsh"]:
            for N in sizes:
                r = controller_ratio(model, N, rounds=rounds)
                print(
                    f"| {r['model']} | {N:,} | {r['model_ms']:.3f} | {r['lstm_same_input_ms']:.3f} | "
                    f"{r['lstm_task_input_ms']:.3f} | {r['ratio_same_input']:.2f} | {r['ratio_task_input']:.2f} |",
                    flush=True,
                )
    elif args.what == "steps":
        from .bench.steps import step_time

        sizes = args.sizes or ([100, 1_000] if args.quick else [1_000, 100_000, 1_000_000])
        batch = 2 if args.quick else (args.batch_size or 8)
        print(f"per-step forward+backward, batch {batch}, W=32, 4 heads, LSTM 100, k=4, float64, one BLAS thread")
        print("| model | N | ms / step | ratio to the smallest N | set-up s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for model in args.models or ["sam-lsh"]:
            first = None
            for N in sizes:
                r = step_time(model, N, batch_size=batch, repeats=2 if args.quick else 5)
                first = first or r["seconds_per_step"]
                print(
                    f"| {r['model']} | {N:,} | {1e3 * r['seconds_per_step']:.2f} | "
                    f"{r['seconds_per_step'] / first:.2f} | {r['setup_seconds']:.1f} |",
                    flush=True,
                )
    elif args.what == "scaling":
        return _bench_scaling(args)
    elif args.what == "footprint":
        from .bench.footprint import footprint_run, format_footprint

        N = (args.sizes or [10_000 if args.quick else 10_000_000])[0]

        def report(u, total, loss, seconds):
            if not args.quiet:
                print(f"update {u}/{total}: loss {loss:.3f}, {seconds:.2f} s", file=sys.stderr, flush=True)

        result = footprint_run(
            N,
            batch_size=args.batch_size or 1,
            dtype=args.dtype or "float32",
            updates=3 if args.quick else args.updates,
            length=args.length,
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
        "dtype": args.dtype,
        "point_timeout": args.point_timeout,
    }
    if args.sizes is not None and args.memory_sizes is None:
        fields["memory_sizes"] = args.sizes
    fields = {key: value for key, value in fields.items() if value is not None}
    try:
        config = scaling.quick_config(**fields) if args.quick else scaling.ScalingConfig(**fields)
    except (TypeError, ValueError) as exc:
        print(f"refmann bench scaling: {exc}", file=sys.stderr)
        return 2
    out = args.out or "runs/bench-scaling"
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
    except (TypeError, ValueError) as exc:
        print(f"refmann golden: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        meta = golden.load_golden(path)["meta"]
        sizes = " ".join(f"{key}={value}" for key, value in meta["shapes"].items())
        print(f"{path}  ({meta['model_class']}, {sizes}, {len(meta['param_names'])} params)")
    print("format: docs/golden.md; load with np.load(path, allow_pickle=False)")
    return 0


def _cmd_demo(args) -> int:
    from pathlib import Path

    from .train import TrainConfig, Trainer

    out = Path(args.out)
    print("refmann demo: an NTM (Graves et al. 2014) learns to copy sequences of up to 5 random 8-bit vectors.")
    print("Every gradient comes from hand-written backward passes in refmann.ops.\n")
    config = TrainConfig(
        model="ntm",
        task="copy",
        task_kwargs={"max_length": 5},
        sequences=args.sequences,
        batch_size=16,
        optimizer="adam",
        lr=3e-3,
        clip=10.0,
        memory_size=16,
        word_size=8,
        num_heads=1,
        hidden_size=64,
        eval_every=1000,
        log_every=5,
        seed=args.seed,
    )
    trainer = Trainer(config, out, resume=args.resume, progress=False if args.quiet else None)
    summary = trainer.run()
    print()
    _report_run(summary, out)
    return 130 if summary["interrupted"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refmann", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"refmann {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions and whether the Numba JIT is on")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("gradcheck", help="table of every op's max relative gradient error (float64)")
    p.add_argument("ops", nargs="*", help="op names (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_gradcheck)

    p = sub.add_parser("demo", help="the quick start's main job: train a small NTM on copy and plot it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sequences", type=int, default=12_000, help="training budget (default: 12000)")
    p.add_argument("--out", default="refmann-demo", help="run folder (default: ./refmann-demo)")
    p.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("golden", help="write golden .npz files (inputs, params, logits, loss, every gradient)")
    p.add_argument(
        "--model",
        nargs="+",
        default=["all"],
        metavar="MODEL",
        help=f"{', '.join(_model_names())} or all (default: all); several may be given",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the parameters and the data (default 0)")
    p.add_argument("--out", required=True, help="directory for MODEL_seedSEED.npz (created if missing)")
    p.add_argument("--steps", type=int, default=5, help="T (default 5)")
    p.add_argument("--batch-size", type=int, default=2, help="B (default 2)")
    p.set_defaults(func=_cmd_golden)

    p = sub.add_parser("bench", help="benchmarks that print tables measured in one run")
    p.add_argument(
        "what",
        choices=["lsh", "steps", "scaling", "footprint"],
        help="lsh: recall and speed of the LSH index against the exact index; "
        "steps: per-step forward+backward time against N; "
        "scaling: Figure 1 of Rae et al. 2016 (time and memory against N, four models); "
        "footprint: SAM trained at N = 1e7 (--sizes) with the bytes of each part",
    )
    p.add_argument("--quick", action="store_true", help="small sizes (for CI)")
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="steps, scaling: models (sam-lsh, sam-linear, dam, ntm; default sam-lsh for steps, all four for scaling)",
    )
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="steps, scaling: memory sizes N")
    p.add_argument("--batch-size", type=int, default=None, help="batch of the time points (default 8)")
    p.add_argument(
        "--memory-sizes",
        nargs="+",
        type=int,
        default=None,
        help="scaling: N of the memory points (default: --sizes, else 1e2..1e7 and 65536)",
    )
    p.add_argument("--steps", type=int, default=None, help="scaling: T of a timed call (default 10; quick 2)")
    p.add_argument("--repeats", type=int, default=None, help="scaling: timed calls after the warm-up (default 3)")
    p.add_argument(
        "--trials", type=int, default=None, help="scaling: fresh processes per time point, median taken (default 1)"
    )
    p.add_argument(
        "--memory-steps",
        type=int,
        default=None,
        help="scaling: T of the memory points (default 100, the paper's; quick 10)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="scaling: skip a point predicted to take longer than this many seconds (default 30)",
    )
    p.add_argument(
        "--memory-budget",
        type=float,
        default=None,
        help="scaling: skip a point whose process is predicted to peak above this many GiB (default 8)",
    )
    p.add_argument(
        "--dtype",
        choices=["float64", "float32"],
        default=None,
        help="scaling: default float64; footprint: default float32",
    )
    p.add_argument(
        "--point-timeout", type=float, default=None, help="scaling: kill a point after this many seconds (default 3600)"
    )
    p.add_argument("--out", default=None, help="scaling: output folder (default runs/bench-scaling)")
    p.add_argument("--quiet", action="store_true", help="scaling, footprint: no progress lines on stderr")
    p.add_argument(
        "--versus-lstm",
        action="store_true",
        help="steps: each model against LSTM-only steps of its controller, side by side",
    )
    p.add_argument("--updates", type=int, default=10, help="footprint: Adam updates (default 10)")
    p.add_argument("--length", type=int, default=10, help="footprint: copy sequence length (default 10)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("curves", help="train several models over seeds (in parallel) and plot their curves")
    _train_arguments(p, default_out=None)
    p.add_argument("--models", nargs="+", default=["ntm", "dam", "lstm"], choices=_model_names())
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="parallel trainings (default 2)")
    p.set_defaults(func=_cmd_curves)

    p = sub.add_parser("train", help="train a model on a task; log, checkpoints and plots go to --out")
    _train_arguments(p, default_out=None)
    p.add_argument("--model", choices=_model_names(), default="ntm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    p.set_defaults(func=_cmd_train)
    return parser


def _model_names():
    from .models import MODELS

    return list(MODELS)


def _train_arguments(p, default_out):
    from .tasks import TASKS
    from .train.trainer import DEFAULT_LR

    p.add_argument("--task", choices=list(TASKS), default="copy")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model option (a field of its config, e.g. k=8, index=linear, usage=timestamp); "
        "repeatable; applies to every model that has the field",
    )
    p.add_argument("--sequences", type=int, default=30_000, help="training budget in sequences")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--optimizer", choices=list(DEFAULT_LR), default="rmsprop")
    p.add_argument("--lr", type=float, default=None, help="default: 1e-4 rmsprop, 1e-3 adam, 1e-2 sgd")
    p.add_argument("--clip", type=float, default=10.0, help="elementwise gradient clip; 0 turns it off")
    p.add_argument("--clip-norm", type=float, default=0.0, help="global-norm gradient clip; 0 (default) is off")
    p.add_argument("--memory-size", type=int, default=128)
    p.add_argument("--word-size", type=int, default=20)
    p.add_argument("--num-heads", type=int, default=1)
    p.add_argument("--hidden-size", type=int, default=100)
    p.add_argument("--max-length", type=int, default=None, help="task's maximum length (copy tasks)")
    p.add_argument("--curriculum", action="store_true", help="exponential curriculum (Rae et al. 2016)")
    p.add_argument("--eval-every", type=int, default=1000, help="sequences between evaluations")
    p.add_argument("--out", default=default_out, help="output folder (default: runs/MODEL-TASK-sSEED)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
