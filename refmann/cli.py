"""The ``refmann`` command line: ``refmann gradcheck``, ``refmann demo``, ``refmann info``.

Results go to stdout; logs go to stderr. Exit codes: 0 ok, 1 a check failed, 2 usage error.
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
    try:
        import numba

        numba_version = numba.__version__
    except ImportError:
        numba_version = "not installed"
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
        report = gradcheck.check_op(getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward"), *arrays,
                                    seed=args.seed, **hyper)
        results.append(report)
    if args.json:
        print(json.dumps({r.op: {"max_rel_error": r.max_rel_error, "ok": r.ok(tol),
                                 "inputs": {i.name: i.max_rel_error for i in r.inputs}} for r in results},
                         indent=2))
    else:
        print(f"{'op':<24} {'max rel error':>14}  {'inputs':<40} status   (float64, tolerance {tol:g})")
        for r in results:
            inputs = ", ".join(i.name for i in r.inputs)
            print(f"{r.op:<24} {r.max_rel_error:>14.2e}  {inputs:<40} {'ok' if r.ok(tol) else 'FAIL'}")
    return 0 if all(r.ok(tol) for r in results) else 1


def _cmd_demo(args) -> int:
    from . import gradcheck, ops

    print("refmann demo: every hand-written backward in refmann.ops against central finite differences")
    print("(five-point stencil, float64, random upstream gradient). A model-training demo follows once")
    print("the models land; see the README.\n")
    rng = np.random.default_rng(args.seed)
    worst = 0.0
    for name in ops.OP_NAMES:
        arrays, hyper = gradcheck.op_example(name, rng)
        report = gradcheck.check_op(getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward"), *arrays,
                                    seed=args.seed, **hyper)
        worst = max(worst, report.max_rel_error)
        print(report)
    ok = worst <= gradcheck.TOLERANCES["op"]
    print(f"\nworst relative error {worst:.2e} -> {'all gradients agree' if ok else 'MISMATCH'}")
    return 0 if ok else 1


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

    p = sub.add_parser("demo", help="the main job of the quick start")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
