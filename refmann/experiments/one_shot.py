r"""One-shot learning of label-delayed episodes: LSTM against DAM and SAM, as in the SAM paper's Omniglot experiment.

Santoro et al. (2016) show a network a drawing and, one step late, its label; the labels are a fresh
random permutation of fresh classes in every episode, so the only way to name the 2nd drawing of a
class is to have stored the 1st with its label. Rae et al. (2016) train the LSTM, DAM and SAM on these
episodes with 5 to 15 (and more) classes. Here every model is trained by :class:`refmann.train.Trainer`
on :class:`refmann.tasks.OneShotTask` (``task="one_shot"``) and then tested on fresh episodes of the
held-out split (held-out Omniglot characters; held-out drawings of the digits stand-in): the accuracy
at the 1st, 2nd, 5th and 10th presentation of a label, over all test episodes.

Run ``python -m refmann.experiments.one_shot`` (scikit-learn's digits, nothing to download) or with
``--data images_background_small1.zip [--test-data images_background_small2.zip]`` (Omniglot);
``--quick`` for the CI sizes (seconds), ``--help`` for the flags. ``run(**config) -> rows``
(keys :data:`ROW_KEYS`), ``format_table(rows) -> str``, ``main(argv=None)``; every run's folder
(config, log, checkpoint, learning curve) goes under ``--out DIR``, with ``rows.json``, written
atomically after every finished run.

References
----------
Santoro, Bartunov, Botvinick, Wierstra, Lillicrap (2016), *One-shot Learning with Memory-Augmented
Neural Networks*, arXiv:1605.06065.
Rae, Hunt, Harley, Danihelka, Senior, Wayne, Graves, Lillicrap (2016), *Scaling Memory-Augmented
Neural Networks with Sparse Reads and Writes*, arXiv:1610.09027 (§4.4, the Omniglot experiment).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from .._threads import single_threaded_blas
from ..tasks.omniglot import OneShotTask
from ._common import RunRecord, adam_train_config, mean_sd, positive_float, positive_int, seed_int

__all__ = ["DEFAULTS", "INSTANCES", "MODELS", "QUICK", "ROW_KEYS", "format_table", "main", "run", "test_accuracy"]

#: The recurrent models the experiment trains (any of them; the SAM paper's three by default).
MODELS = ("lstm", "ntm", "dam", "sam", "dnc", "sdnc")
#: The presentations whose accuracy is reported.
INSTANCES = (1, 2, 5, 10)

#: The full runs (minutes per model on one core): 10,000 episodes of training.
DEFAULTS = {
    "models": ("lstm", "dam", "sam"), "classes": (5,), "presentations": 10, "size": 20, "data": None,
    "test_data": None, "rotate": True, "distort": False, "sequences": 10_000, "batch_size": 16, "lr": 1e-3,
    "hidden_size": 100, "memory_size": 64, "word_size": 20, "num_heads": 1, "seeds": (0,), "test_episodes": 500,
}  # fmt: skip
#: The CI sizes (seconds): 3-way, 5 presentations, the 8 × 8 digits, 6 steps of 8 episodes.
QUICK = {
    **DEFAULTS, "classes": (3,), "presentations": 5, "size": 8, "sequences": 48, "batch_size": 8, "hidden_size": 16,
    "memory_size": 16, "word_size": 8, "test_episodes": 40,
}  # fmt: skip

#: The keys of every row.
ROW_KEYS = (
    "model", "classes", "presentations", "size", "data", "test_split", "seed", "sequences", "batch_size",
    "test_episodes", "test_label_errors", *(f"accuracy_{k}" for k in INSTANCES), "train_seconds", "out_dir",
)  # fmt: skip


def test_accuracy(model, task: OneShotTask, *, episodes: int, seed: int, batch: int = 50) -> dict:
    """Accuracy by presentation and the label error rate of ``model`` on ``episodes`` fresh episodes of ``task``.

    The episodes come from ``np.random.default_rng([seed, 7])`` in batches of ``batch``; every
    episode holds each (label, instance) pair once, so the per-batch accuracies
    (:meth:`OneShotTask.accuracy_by_instance`) are averaged weighted by the batch size.

    Returns
    -------
    dict
        ``{"accuracy": {k: float for k in INSTANCES if k <= presentations}, "label_errors": float}``.
    """
    ks = [k for k in INSTANCES if k <= task.presentations]
    rng = np.random.default_rng([seed, 7])
    sums, errors, done = dict.fromkeys(ks, 0.0), 0.0, 0
    with single_threaded_blas():
        while done < episodes:
            b = min(batch, episodes - done)
            ep = task.sample_episodes(b, rng)
            logits = model.forward(ep.inputs)  # (T, b, C)
            for k, acc in task.accuracy_by_instance(logits, ep, ks).items():
                sums[k] += b * acc
            errors += float(np.sum(np.argmax(logits, axis=-1) != ep.labels)) / ep.labels.shape[0]
            done += b
    return {"accuracy": {k: sums[k] / episodes for k in ks}, "label_errors": errors / episodes}


def _task_kwargs(c: dict, classes: int) -> dict:
    kwargs = {"num_classes": classes, "presentations": c["presentations"], "size": c["size"]}
    kwargs.update(rotate=c["rotate"], distort=c["distort"])
    for name in ("data", "test_data"):
        if c[name] is not None:
            kwargs[name] = str(c[name])
    return kwargs


def run(*, out=None, resume=False, progress=True, on_row=None, **config) -> list[dict]:
    """Train every (model, classes, seed) and test it; one row per run (keys :data:`ROW_KEYS`).

    Parameters
    ----------
    out : path, optional
        The folder of the run folders ``MODEL-cC-sSEED`` (default: a temporary folder, removed).
    resume : bool
        Continue the runs in ``out`` from their checkpoints (:class:`refmann.train.Trainer`).
    progress : bool
        A tqdm bar per run.
    on_row : callable, optional
        Called with the rows so far after every run.
    **config
        Overrides of :data:`DEFAULTS` (``run(**QUICK)`` is the CI run).
    """
    from ..train import Trainer

    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"config: unknown keys {unknown} (expected some of {sorted(DEFAULTS)})")
    c = {**DEFAULTS, **config}
    bad = [m for m in c["models"] if m not in MODELS]
    if bad or not c["models"]:
        raise ValueError(f"models: expected names from {list(MODELS)}, got {list(c['models'])}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(out) if out is not None else Path(tmp)
        for classes in c["classes"]:
            kwargs = _task_kwargs(c, classes)
            test_task = OneShotTask(**kwargs, split="test")
            for seed in c["seeds"]:
                for name in c["models"]:
                    folder = root / f"{name}-c{classes}-s{seed}"
                    config_ = adam_train_config(
                        name, "one_shot", kwargs, c, seed, eval_every=max(c["sequences"] // 5, 1), checkpoint_every=200
                    )
                    trainer = Trainer(config_, folder, resume=resume, progress=progress)
                    summary = trainer.run()
                    found = test_accuracy(trainer.model, test_task, episodes=c["test_episodes"], seed=seed)
                    row = {
                        "model": name, "classes": classes, "presentations": c["presentations"], "size": c["size"],
                        "data": Path(c["data"]).name if c["data"] is not None else "digits",
                        "test_split": "held-out characters" if c["data"] is not None else "held-out drawings",
                        "seed": seed, "sequences": summary["sequences"], "batch_size": c["batch_size"],
                        "test_episodes": c["test_episodes"], "test_label_errors": found["label_errors"],
                        **{f"accuracy_{k}": found["accuracy"].get(k) for k in INSTANCES},
                        "train_seconds": summary["seconds"], "out_dir": str(folder) if out is not None else None,
                    }  # fmt: skip
                    rows.append(row)
                    if on_row is not None:
                        on_row(rows)
    return rows


def format_table(rows) -> str:
    """The rows as a Markdown table of seed means ± s.d., under a line stating the setting."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    lines = [
        f"One-shot episodes on {r0['data']} ({r0['size']} × {r0['size']}, {r0['presentations']} presentations per "
        f"class), trained on {r0['sequences']} episodes in batches of {r0['batch_size']}; accuracy at the k-th "
        f"presentation of a label on {r0['test_episodes']} fresh episodes of {r0['test_split']}; mean ± s.d. over "
        "seeds; train s = seconds of training steps",
        "",
        "| model | classes | seeds | 1st | 2nd | 5th | 10th | label errors | train s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["model"], r["classes"]), []).append(r)
    for (model, classes), g in groups.items():
        cells = [mean_sd([r[f"accuracy_{k}"] for r in g]) for k in INSTANCES]
        cells += [mean_sd([r["test_label_errors"] for r in g]), mean_sd([r["train_seconds"] for r in g], ".1f")]
        lines.append(f"| {model} | {classes} | {len(g)} | {' | '.join(cells)} |")
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------------------


def _parser():
    p = argparse.ArgumentParser(prog="python -m refmann.experiments.one_shot", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, metavar="PATH", help="an Omniglot folder or zip (default: the digits)")
    p.add_argument("--test-data", default=None, metavar="PATH", help="Omniglot characters to test on (new ones only)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=None, help="default: lstm dam sam")
    p.add_argument("--classes", type=positive_int, nargs="+", default=None, help="classes per episode (5)")
    p.add_argument("--presentations", type=positive_int, default=None, help="drawings per class (10)")
    p.add_argument("--size", type=positive_int, default=None, help="drawings resized to SIZE × SIZE (20)")
    p.add_argument("--distort", action="store_true", help="a small random rotation, stretch and shift per drawing")
    p.add_argument("--no-rotate", action="store_true", help="no random quarter turns per class")
    p.add_argument("--sequences", type=positive_int, default=None, help="training episodes per run (10000)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="episodes per step (16)")
    p.add_argument("--lr", type=positive_float, default=None, help="Adam's step size (1e-3)")
    p.add_argument("--hidden-size", type=positive_int, default=None, help="controller units (100)")
    p.add_argument("--memory-size", type=positive_int, default=None, help="memory rows N (64)")
    p.add_argument("--word-size", type=positive_int, default=None, help="memory word size W (20)")
    p.add_argument("--heads", type=positive_int, default=None, help="read heads (1)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=None, help="one run per seed (0)")
    p.add_argument("--test-episodes", type=positive_int, default=None, help="fresh test episodes (500)")
    p.add_argument("--quick", action="store_true", help="the CI sizes (seconds)")
    p.add_argument("--out", default=None, metavar="DIR", help="keep the run folders and rows.json here")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    config = dict(QUICK if args.quick else DEFAULTS)
    for name in ("models", "classes", "seeds"):
        if getattr(args, name) is not None:
            values = tuple(getattr(args, name))
            if len(set(values)) != len(values):
                p.error(f"--{name}: expected distinct values, got {' '.join(map(str, values))}")
            config[name] = values
    for name in ("data", "test_data", "presentations", "size", "sequences", "batch_size", "lr", "hidden_size",
                 "memory_size", "word_size", "test_episodes"):  # fmt: skip
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if args.heads is not None:
        config["num_heads"] = args.heads
    config["distort"] = args.distort
    config["rotate"] = not args.no_rotate
    if args.resume and args.out is None:
        p.error("--resume: needs --out DIR (the folder of the runs to continue)")
    for classes in config["classes"]:  # every task, both splits, checked (and its data read) before any training
        for split in ("train", "test"):
            try:
                _ = OneShotTask(**_task_kwargs(config, classes), split=split).pool
            except (ValueError, TypeError, ImportError) as err:
                p.error(f"{split} split with --classes {classes}: {err}")
    out = Path(args.out) if args.out is not None else None
    record = RunRecord("one_shot", argv, config, out)
    on_row = record.write_rows if out is not None else None
    try:
        rows = run(**config, out=out, resume=args.resume, progress=not args.quiet, on_row=on_row)
    except FileExistsError as err:
        p.error(str(err))
    print(format_table(rows))
    print(record.footer())
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
