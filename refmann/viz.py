"""Pictures: learning curves and what the memory does (read/write weights over time).

Figures are drawn on standalone :class:`matplotlib.figure.Figure` objects and written to PNG: no
display is needed and pyplot's global state (the backend, a notebook's inline plots) is never touched.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ._io import atomic_write, read_jsonl


def subplots(nrows=1, ncols=1, **kwargs):
    """Like ``pyplot.subplots`` but on a standalone Figure (keyword ``figsize`` goes to the Figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None), layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write(path, lambda f: f.write(buf.getvalue()), "wb")


def figure(figsize=None):
    """A standalone Figure with one Axes, placed by matplotlib's default margins (no constrained layout)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot()


def save_png(fig, path) -> Path:
    """Write ``fig`` to ``path`` as a PNG (110 dpi, tight bounding box), atomically; returns the path."""
    return _save(fig, path)


def plot_learning_curve(
    records, path, *, title="", metric="bit_errors", metric_label="bit errors per sequence", target=1.0
) -> Path:
    """The task's metric and the loss against sequences seen, from a training log.

    Parameters
    ----------
    records : list of dict
        Log records with "sequences", "loss", ``metric`` and optionally ``"eval_" + metric``.
    path : str or Path
        Where the PNG goes.
    metric, metric_label : str
        The record key of the task's metric and its axis label (the task names both).
    target : float or None
        A dotted line at the metric's "learned" level (1 bit per sequence for the bit tasks).
    """
    seqs = np.array([r["sequences"] for r in records])
    fig, (ax1, ax2) = subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(seqs, [r[metric] for r in records], lw=0.8, alpha=0.6, label="train batch")
    ev = [(r["sequences"], r[f"eval_{metric}"]) for r in records if r.get(f"eval_{metric}") is not None]
    if ev:
        ax1.plot(*zip(*ev), "o-", ms=3, label="evaluation")
    ax1.set_xlabel("sequences seen")
    ax1.set_ylabel(metric_label)
    if metric == "bit_errors":
        ax1.set_yscale("symlog", linthresh=1.0)
    if target is not None:
        ax1.axhline(target, color="grey", lw=0.6, ls=":")
    ax1.legend()
    ax2.plot(seqs, [r["loss"] for r in records], lw=0.8)
    ax2.set_xlabel("sequences seen")
    ax2.set_ylabel("loss (cross-entropy per sequence)")
    ax2.set_yscale("log")
    fig.suptitle(title)
    return _save(fig, path)


def plot_curves(curves, path, *, title="", xlabel="sequences seen", ylabel="bit errors per sequence") -> Path:
    """Several labelled runs on one axis; each label maps to a list of (x, y) arrays (one per seed).

    The median over seeds is drawn bold with the individual seeds faint behind it.
    """
    fig, ax = subplots(figsize=(7, 4))
    for i, (label, runs) in enumerate(curves.items()):
        color = f"C{i}"
        for x, y in runs:
            ax.plot(x, y, color=color, lw=0.6, alpha=0.35)
        n = min(len(x) for x, _ in runs)
        med = np.median(np.stack([np.asarray(y)[:n] for _, y in runs]), axis=0)
        ax.plot(np.asarray(runs[0][0])[:n], med, color=color, lw=2, label=f"{label} (median of {len(runs)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def eval_curve(run_dir, metric="bit_errors"):
    """The evaluation curve of a run folder: (sequences, ``eval_<metric>``) arrays from its ``log.jsonl``."""
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        raise ValueError(f"run_dir: {run_dir} holds no log.jsonl (not a run folder)")
    points = [(r["sequences"], r[f"eval_{metric}"]) for r in read_jsonl(path) if f"eval_{metric}" in r]
    if not points:
        raise ValueError(f"run_dir: {run_dir} has no evaluation of {metric!r} yet")
    x, y = (np.array(v) for v in zip(*points))
    return x, y


def plot_runs(groups, path, *, metric="bit_errors", title="", ylabel="bit errors per sequence") -> Path:
    """:func:`plot_curves` of run folders: ``groups`` maps a label to a list of run folders (its seeds)."""
    curves = {label: [eval_curve(d, metric) for d in folders] for label, folders in groups.items()}
    return plot_curves(curves, path, title=title, ylabel=ylabel)


def _mean_sd_panel(ax, curves, colours, *, title, xlabel, ylabel, target):
    """One panel of :func:`plot_mean_sd`: per label the mean over seeds, ±1 s.d. shaded."""
    for label, runs in curves.items():
        n = min(len(x) for x, _ in runs)
        if n == 0:
            continue
        ys = np.stack([np.asarray(y, dtype=float)[:n] for _, y in runs])
        x = np.asarray(runs[0][0])[:n]
        mean, sd = ys.mean(axis=0), ys.std(axis=0)
        colour = colours[label]
        ax.fill_between(x, np.maximum(mean - sd, 0), mean + sd, color=colour, alpha=0.2, lw=0)
        ax.plot(x, mean, color=colour, lw=1.8, label=f"{label} ({len(runs)} seed{'s' if len(runs) != 1 else ''})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if target is not None:
        ax.axhline(target, color="grey", lw=0.6, ls=":")
    ax.legend(fontsize=8)
    ax.set_title(title)


def plot_mean_sd(
    curves, path, *, title="", xlabel="sequences seen", ylabel="bit errors per sequence", target=None
) -> Path:
    """Figure 2 of Rae et al. (2016) in its manner: per label, the mean over seeds with ±1 s.d. shaded.

    ``curves`` maps a label to a list of (x, y) arrays, one per seed; the seeds are cut to the
    shortest (an unfinished run), and the number of seeds is in the legend.
    """
    fig, ax = subplots(figsize=(7, 4))
    colours = {label: f"C{i}" for i, label in enumerate(curves)}
    _mean_sd_panel(ax, curves, colours, title=title, xlabel=xlabel, ylabel=ylabel, target=target)
    return _save(fig, path)


def plot_figure2(panels, path, *, xlabel="sequences seen") -> Path:
    """Figure 2 of Rae et al. (2016) as one figure: a panel per task, side by side, each as
    :func:`plot_mean_sd`, a model keeping its colour in every panel.

    ``panels`` is a list of dicts with keys ``curves`` (as :func:`plot_mean_sd`'s), ``title``,
    ``ylabel`` and ``target`` (or None).
    """
    if not panels:
        raise ValueError("panels: expected at least one panel, got none")
    labels = list(dict.fromkeys(label for panel in panels for label in panel["curves"]))
    colours = {label: f"C{i}" for i, label in enumerate(labels)}
    fig, axes = subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _mean_sd_panel(
            ax, panel["curves"], colours, title=panel["title"], xlabel=xlabel, ylabel=panel["ylabel"],
            target=panel.get("target"),
        )  # fmt: skip
    return _save(fig, path)


def plot_access(inputs, targets, outputs, read_weights, write_weights, path, *, title="") -> Path:
    """The classic NTM copy picture for one sequence and one head: inputs, targets, outputs, and
    the write and read weightings over time (slots on the vertical axis).

    Parameters
    ----------
    inputs : ndarray of shape (T, X)
    targets, outputs : ndarrays of shape (T, Y)
        ``outputs`` are probabilities (sigmoid of the logits).
    read_weights, write_weights : ndarrays of shape (T, N)
    """
    T = inputs.shape[0]
    N = read_weights.shape[1] if np.size(read_weights) else 0
    rows = 5 if N else 3
    fig, axes = subplots(rows, 1, figsize=(max(6, T * 0.18), 2 + rows * 1.3), sharex=True)
    panels = [("inputs", inputs), ("targets", targets), ("outputs", outputs)]
    if N:
        used = np.flatnonzero((read_weights.max(0) > 1e-3) | (write_weights.max(0) > 1e-3))
        hi = min(N, max(int(used.max()) + 2 if used.size else N, 8))
        panels += [
            (f"write weights (slots 0–{hi - 1})", write_weights[:, :hi]),
            (f"read weights (slots 0–{hi - 1})", read_weights[:, :hi]),
        ]
    for ax, (name, img) in zip(axes, panels):
        ax.imshow(np.asarray(img).T, aspect="auto", cmap="gray_r", interpolation="nearest", origin="lower")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
    axes[-1].set_xlabel("time step")
    fig.suptitle(title)
    return _save(fig, path)
