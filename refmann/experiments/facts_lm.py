r"""E5: capacity at fixed compute — a small transformer on a synthetic language with a table of facts.

Lample et al. (2019) claim that a product-key memory adds capacity at almost no compute: a shallow
model with a memory beats a deeper one. Here the capacity is a table of S·R arbitrary facts
(:class:`refmann.tasks.Facts`), so the two things a language model can get right are separate: the
grammar (cheap) and the facts (memorised). The arms, each trained by ``refmann train`` with the same
budget, optimiser and seed:

- ``depth2`` — a 2-block transformer;
- ``depth4`` — 4 blocks (about twice the compute);
- ``depth2+pkm`` — 2 blocks, block 1's MLP replaced by a product-key memory (XLM's layer);
- ``depth2+memory+`` — the same with Memory+'s SiLU-gated output.

Reported per arm: held-out perplexity (per token), **fact recall** (accuracy of the object after
``subject relation``: what memory should add) and the accuracy on the other tokens (the grammar),
parameters (dense ones, and memory values), multiply-adds per token, training tokens per second,
and for the memory arms the slot usage and KL to uniform of the reads on the held-out set.

Run ``python -m refmann.experiments.facts_lm`` (``--quick`` for CI sizes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import _io, ops
from ..layers.pkm_diagnostics import LayerDiagnostics
from ..tasks import Facts
from ..train import TrainConfig, Trainer

#: The arms: transformer options on top of :data:`BASE`.
ARMS = {
    "depth2": dict(num_layers=2),
    "depth4": dict(num_layers=4),
    "depth2+pkm": dict(num_layers=2, memory_layers=[1]),
    "depth2+memory+": dict(num_layers=2, memory_layers=[1], memory_output="swilu"),
}

#: Full-size settings: the world, the model, the memory, the budget.
FULL = dict(
    world=dict(num_subjects=512, num_relations=4, num_objects=128, num_words=64, length=16),
    model_dim=32,
    heads=4,
    memory=dict(memory_keys=32, memory_heads=4, memory_k=8, memory_key_dim=32),
    sequences=48_000,
    batch_size=32,
    lr=3e-3,
    eval_size=512,
)
#: CI sizes (seconds).
QUICK = dict(
    world=dict(num_subjects=16, num_relations=2, num_objects=8, num_words=8, length=8),
    model_dim=8,
    heads=2,
    memory=dict(memory_keys=4, memory_heads=2, memory_k=2, memory_key_dim=4),
    sequences=320,
    batch_size=16,
    lr=3e-3,
    eval_size=32,
)


def multiply_adds_per_token(config) -> int:
    """Multiply-adds per token of a :class:`~refmann.models.TransformerConfig`'s forward, at the full context.

    Per block: the 4 attention projections 4D², the scores and the weighted sum 2·T·D (T the context,
    counted in full though causal attention uses half), and either the MLP 2·D·M (M = 4D) or the
    memory: its query D·H·dk, the sub-key scores H·n·dk, the k² candidate sums H·k², the read H·k·D
    (plus 2D² with Memory+'s two projections). Plus the head D·V. Norms and softmaxes are left out.
    """
    D, T, V = config.model_dim, config.max_len, config.output_size
    M = config.mlp_dim or 4 * D
    H, n, k, dk = config.memory_heads, config.memory_keys, config.memory_k, config.memory_key_dim
    total = D * V
    for i in range(config.num_layers):
        total += 4 * D * D + 2 * T * D
        if i in config.memory_layers:
            total += (
                D * H * dk + H * n * dk + H * k * k + H * k * D + (2 * D * D if config.memory_output == "swilu" else 0)
            )
        else:
            total += 2 * D * M
    return total


def _evaluate(model, task, eval_size, seed):
    """Held-out metrics over ``eval_size`` fresh sequences (rng ``[seed, 99]``), in batches of 64."""
    rng = np.random.default_rng([seed, 99])
    ce = tokens = facts = facts_right = other = other_right = 0.0
    diags = {}
    net = model.network
    for start in range(0, eval_size, 64):
        batch = task.sample(min(64, eval_size - start), rng)
        logits, cache = net.forward(batch.inputs, params=model.params)  # (T, B, V): one forward for everything
        summed, _ = ops.softmax_cross_entropy_forward(logits, targets=batch.targets, mask=batch.mask)
        ce, tokens = ce + float(summed), tokens + batch.targets.size
        right = np.argmax(logits, axis=-1) == batch.targets
        f = task.fact_positions(batch)
        facts, facts_right = facts + f.sum(), facts_right + (right & f).sum()
        other, other_right = other + (~f).sum(), other_right + (right & ~f).sum()
        for name, memory_cache in net.memory_caches(cache).items():
            diags.setdefault(name, LayerDiagnostics(model.config.memory_keys**2)).update(memory_cache)
    out = {
        "perplexity": float(np.exp(ce / tokens)),
        "fact_recall": float(facts_right / facts),
        "other_accuracy": float(other_right / other),
    }
    if diags:
        results = [d.result() for d in diags.values()]
        out["memory_usage"] = float(np.mean([r["usage"] for r in results]))
        out["memory_kl"] = float(np.mean([r["kl_to_uniform"] for r in results]))
    return out


def run(arms=tuple(ARMS), *, quick=False, seed=0, optimizer="adam", progress=True, workdir=None) -> list[dict]:
    """Train every arm with the same budget and return one row per arm (see the module docstring).

    Parameters
    ----------
    arms : sequence of str
        Names from :data:`ARMS`.
    quick : bool
        :data:`QUICK` sizes instead of :data:`FULL`.
    seed : int
        The models' and the batches' seed (the world is ``world_seed=0`` in every arm).
    optimizer : str
        Any of ``refmann train --optimizer``; the memory values share the step size.
    progress : bool
        A tqdm bar per run.
    workdir : path, optional
        Where the run folders go (default: a temporary folder, removed afterwards).
    """
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"arms: expected some of {list(ARMS)}, got {unknown}")
    s = QUICK if quick else FULL
    task = Facts(**s["world"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        for arm in arms:
            kwargs = {**ARMS[arm], **(s["memory"] if "memory_layers" in ARMS[arm] else {}), "max_len": task.length}
            config = TrainConfig(
                model="transformer",
                task="facts",
                task_kwargs=s["world"],
                sequences=s["sequences"],
                batch_size=s["batch_size"],
                optimizer=optimizer,
                lr=s["lr"],
                clip=None,
                clip_norm=1.0,
                hidden_size=s["model_dim"],
                num_heads=s["heads"],
                model_kwargs=kwargs,
                eval_every=s["sequences"],
                eval_size=64,
                log_every=50,
                checkpoint_every=10**6,
                seed=seed,
            )
            trainer = Trainer(config, root / arm, progress=progress)
            t0 = time.perf_counter()
            trainer.run()
            seconds = time.perf_counter() - t0
            model = trainer.model
            values = sum(v.size for key, v in model.params.items() if key.endswith("values"))
            row = {
                "arm": arm,
                "params_dense": int(sum(v.size for v in model.params.values()) - values),
                "params_values": int(values),
                "madds_per_token": multiply_adds_per_token(model.config),
                "train_tokens_per_s": s["sequences"] * task.length / seconds,
                "train_seconds": seconds,
                **_evaluate(model, task, s["eval_size"], seed),
            }
            rows.append(row)
    return rows


def format_table(rows) -> str:
    """The rows as a Markdown table."""
    head = (
        "| arm | dense params | memory values | madds/token | tokens/s | perplexity | fact recall | other tokens "
        "| memory usage | KL to uniform |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        usage = f"{r['memory_usage']:.1%}" if "memory_usage" in r else "–"
        kl = f"{r['memory_kl']:.2f}" if "memory_kl" in r else "–"
        lines.append(
            f"| {r['arm']} | {r['params_dense']:,} | {r['params_values']:,} | {r['madds_per_token']:,} "
            f"| {r['train_tokens_per_s']:,.0f} | {r['perplexity']:.3f} | {r['fact_recall']:.3f} "
            f"| {r['other_accuracy']:.3f} | {usage} | {kl} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refmann.experiments.facts_lm", description=__doc__.split("\n")[0])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--quick", action="store_true", help="CI sizes (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sparse_adam", "rmsprop", "sgd"])
    parser.add_argument("--out", help="write the rows to this JSON file (atomically)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed: expected a non-negative int, got {args.seed}")
    rows = run(args.arms, quick=args.quick, seed=args.seed, optimizer=args.optimizer, progress=not args.quiet)
    print(format_table(rows))
    if args.out:
        _io.atomic_write_text(args.out, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
