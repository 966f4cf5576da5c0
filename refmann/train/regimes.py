"""The training regime of each model on each task: the defaults of ``refmann train`` and ``refmann sweep``.

A regime is a dict of :class:`~refmann.train.TrainConfig` fields (batch size, optimizer, learning
rate, clipping, budget, and the number of heads, which is a size of the model but one that decides how
it learns a task). :func:`regime` merges the entries that match a (model, task) pair, the
most specific last: ``("*", "*")``, then ``("*", task)``, then ``(model, "*")``, then
``(model, task)``. A flag given on the command line wins over the regime; a learning rate given by
the regime applies only with the regime's own optimizer (``--optimizer adam`` alone gets Adam's
default rate, not the regime's RMSProp rate).

A regime may also hold ``model_options``: options of the model's config (SAM's ``k``, say), which
go into :attr:`~refmann.train.TrainConfig.model_kwargs` on top of the model's registered training
defaults and under the command line's ``--set``. The ``model_options`` of the matching entries
merge key by key, the most specific last.

Every entry was measured: docs/results.md gives the table of each change's effect and the command
that produced it.
"""

from __future__ import annotations

#: The TrainConfig fields a regime may set (and ``model_options``, the model's own).
REGIME_FIELDS = (
    "sequences", "batch_size", "optimizer", "lr", "optimizer_options", "clip", "clip_norm",
    "lr_decay", "lr_decay_below", "num_heads",
)  # fmt: skip

#: (model or "*", task or "*") -> TrainConfig fields.
REGIMES: dict[tuple[str, str], dict] = {
    # the NTM papers' optimizer: centred RMSProp (Graves 2013), elementwise clip ±10
    ("*", "*"): {
        "sequences": 30_000,
        "batch_size": 16,
        "optimizer": "rmsprop",
        "lr": 1e-4,
        "clip": 10.0,
        "num_heads": 1,
    },
    # pytorch-ntm's regime, batch 1 (docs/results.md, "The training regime": the probes and the 5 seeds)
    ("ntm", "copy"): {"batch_size": 1},
    # DAM: the rate falls tenfold at the first evaluation under 1 bit (docs/results.md: without it four
    # seeds of five learned copy and then swung back to chance; with it none did)
    ("dam", "copy"): {"batch_size": 1, "lr": 3e-4, "lr_decay": 0.1},
    # SAM likewise: without the drop every seed swung back to chance after learning; with it none did
    ("sam", "copy"): {"batch_size": 1, "lr": 3e-4, "lr_decay": 0.1},
    ("dnc", "copy"): {"batch_size": 1, "lr": 3e-4},
    ("sdnc", "copy"): {"batch_size": 1, "lr": 3e-4},
    # repeat copy: the copy regime with the drop at 10 bits (up to 80 to output); 2 seeds of 3 learned it
    ("dam", "repeat_copy"): {"batch_size": 1, "lr": 3e-4, "lr_decay": 0.1, "lr_decay_below": 10.0, "sequences": 60_000},
    # priority sort: the drop at 20 bits (128 to output); four heads: a median final of 6.2 bits over three
    # seeds against one head's 10.2 (docs/results.md, "More heads, DAM"), not under 1
    ("dam", "priority_sort"): {
        "num_heads": 4,
        "batch_size": 1,
        "lr": 3e-4,
        "lr_decay": 0.1,
        "lr_decay_below": 20.0,
        "sequences": 40_000,
    },
    # associative recall: batch 1 as on copy; the 100,000-sequence budget of the target (docs/results.md)
    ("*", "associative_recall"): {"batch_size": 1, "sequences": 100_000},
    ("dam", "associative_recall"): {"lr": 3e-4},
    # K = 8, not the paper's 4: under 1 bit within 100,000 sequences only with it (docs/results.md, "SAM's K")
    ("sam", "associative_recall"): {"lr": 3e-4, "model_options": {"k": 8}},
}


def regime(model: str, task: str) -> dict:
    """The TrainConfig fields of ``model`` on ``task`` (a new dict)."""
    out: dict = {}
    options: dict = {}
    for key in (("*", "*"), ("*", task), (model, "*"), (model, task)):
        entry = dict(REGIMES.get(key, {}))
        options.update(entry.pop("model_options", {}))
        out.update(entry)
    if options:
        out["model_options"] = options
    return out


def model_options(model: str, task: str) -> dict:
    """The model options (``TrainConfig.model_kwargs``) the regime of ``model`` on ``task`` sets (a new dict)."""
    return dict(regime(model, task).get("model_options", {}))


def describe(model: str, task: str) -> str:
    """One line for ``--help`` and logs, e.g. ``batch 1, rmsprop 1e-4, clip ±10, 30000 sequences``."""
    r = regime(model, task)
    parts = [f"batch {r['batch_size']}", f"{r['optimizer']} {r['lr']:g}"]
    if r.get("clip"):
        parts.append(f"clip ±{r['clip']:g}")
    if r.get("clip_norm"):
        parts.append(f"norm clip {r['clip_norm']:g}")
    if r.get("num_heads", 1) != 1:
        parts.append(f"{r['num_heads']} heads")
    if r.get("lr_decay"):
        parts.append(f"lr × {r['lr_decay']:g} under {r.get('lr_decay_below') or 1.0:g}")
    parts.append(f"{r['sequences']} sequences")
    parts += [f"{k}={v}" for k, v in r.get("model_options", {}).items()]
    return ", ".join(parts)
