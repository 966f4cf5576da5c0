"""The outputs of ``refmann bench scaling``: points.csv, points.json, table.md and the two Figure 1 plots.

Every function here is pure in the rows it is given (one dict per (kind, model, N), measured or skipped;
the columns are :data:`CSV_FIELDS`). A skipped row's values are extrapolations (see
:mod:`refmann.bench.budget`): the plots draw them dotted and the table marks them "~".
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .. import viz
from .._io import atomic_write_text

if TYPE_CHECKING:
    from .scaling import ScalingConfig

#: The columns of points.csv, in order (every row of points.json has these keys).
CSV_FIELDS = (
    "kind",
    "model",
    "N",
    "batch",
    "steps",
    "repeats",
    "trials",
    "seconds_per_step",
    "seconds_per_step_min",
    "seconds_per_step_max",
    "setup_seconds",
    "measured_seconds",
    "tracemalloc_peak_mib",
    "rss_peak_mib",
    "rss_method",
    "process_peak_mib",
    "base_rss_mib",
    "skipped",
    "predicted_seconds_per_step",
    "predicted_peak_gib",
    "dtype",
    "cpu",
    "cores",
    "numpy",
    "numba",
    "jit",
)


def _model_table():
    """(MODELS, _model_spec, RATIO_REFERENCE): the model table lives in scaling.py, which imports this module
    (hence the late import)."""
    from .scaling import MODELS, RATIO_REFERENCE, _model_spec

    return MODELS, _model_spec, RATIO_REFERENCE


def write_outputs(out, rows, machine, config, table) -> dict:
    """points.csv, points.json, table.md, figure1a_time.png, figure1b_memory.png (all written atomically)."""
    out = Path(out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in CSV_FIELDS})
    files = {"csv": atomic_write_text(out / "points.csv", buf.getvalue())}
    doc = {
        "machine": machine,
        "config": dataclasses.asdict(config),
        "units": {"seconds_per_step": "s, one time step forward+backward", "*_mib": "MiB", "*_gib": "GiB"},
        "points": rows,
    }
    files["json"] = atomic_write_text(out / "points.json", json.dumps(doc, indent=1) + "\n")
    files["table"] = atomic_write_text(out / "table.md", table + "\n")
    files["time_png"] = plot_time(rows, out / "figure1a_time.png", config=config, machine=machine)
    files["memory_png"] = plot_memory(rows, out / "figure1b_memory.png", config=config, machine=machine)
    return files


# -- the plots --------------------------------------------------------------------------------------

FIGSIZE = (6.4, 4.4)


def _series(rows, kind, model, key, skipped):
    pts = [
        (r["N"], r[key])
        for r in rows
        if r["kind"] == kind
        and r["model"] == model
        and bool(r["skipped"]) == skipped
        and r.get(key) is not None
        and r[key] > 0
    ]
    return sorted(pts)


def _plot_lines(ax, rows, kind, key, scale, *, style="-", label_suffix="", extrapolate=True):
    """One line per model: measured points joined, then dotted from the last measured to the extrapolated."""
    models, spec, _ = _model_table()
    for model in models:
        measured = _series(rows, kind, model, key, False)
        color, label = spec(model).color, spec(model).label
        if measured:
            ax.plot(
                [n for n, _ in measured],
                [v * scale for _, v in measured],
                style,
                marker="o" if style == "-" else "x",
                ms=4,
                color=color,
                label=None if label_suffix is None else label + label_suffix,
            )
        if extrapolate:
            guessed = _series(rows, kind, model, key, True)
            if guessed:
                line = measured[-1:] + guessed
                ax.plot(
                    [n for n, _ in line],
                    [v * scale for _, v in line],
                    ":",
                    marker="o",
                    ms=4,
                    mfc="none",
                    color=color,
                    label=None if measured else label + " (extrapolated)",
                )


def plot_time(rows, path, *, config, machine=None) -> Path:
    """Figure 1a: seconds per step (forward + backward) against N, log-log; extrapolations dotted."""
    fig, ax = viz.figure(FIGSIZE)
    skipped = [dict(r, _t=r["predicted_seconds_per_step"]) for r in rows if r["kind"] == "time" and r["skipped"]]
    measured = [dict(r, _t=r["seconds_per_step"]) for r in rows if r["kind"] == "time" and not r["skipped"]]
    _plot_lines(ax, measured + skipped, "time", "_t", 1.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memory size N (words)")
    ax.set_ylabel("wall time of one step, forward + backward (s)")
    ax.set_title(
        f"Time per step, batch {config.batch_size}, W = {config.word_size}, {config.num_heads} heads, K = {config.k}",
        fontsize=10,
    )
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, title="dotted: extrapolated, not run", title_fontsize=7)
    _caption(fig, machine, config)
    return viz.save_png(fig, path)


def plot_memory(rows, path, *, config, machine=None) -> Path:
    """Figure 1b: memory of a T-step forward+backward (excluding initialisation) against N, log-log.
    Solid: tracemalloc peak; dashed: RSS increase; dotted: extrapolated (tracemalloc)."""
    fig, ax = viz.figure(FIGSIZE)
    _plot_lines(ax, rows, "memory", "tracemalloc_peak_mib", 1.0)
    _plot_lines(ax, rows, "memory", "rss_peak_mib", 1.0, style="--", label_suffix=None, extrapolate=False)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memory size N (words)")
    ax.set_ylabel("memory of the unroll (MiB)")
    ax.set_title(
        f"Memory of a {config.memory_steps}-step forward + backward, batch {config.memory_batch_size}, "
        "excluding initialisation",
        fontsize=10,
    )
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            fontsize=8, title="solid: tracemalloc; dashed (x): RSS;\ndotted: extrapolated, not run", title_fontsize=7
        )
    if config.memory_sizes and min(config.memory_sizes) <= 65_536 <= max(config.memory_sizes):
        ax.axvline(65_536, color="0.6", lw=0.6, ls="-.")
        ax.text(
            65_536,
            0.02,
            " 64K (quoted in the paper)",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            color="0.4",
            rotation=90,
            va="bottom",
        )
    _caption(fig, machine, config)
    return viz.save_png(fig, path)


def _caption(fig, machine, config):
    if machine:
        fig.text(
            0.01,
            -0.02,
            f"{machine['cpu']}, {machine['cores']} cores; numpy {machine['numpy']}, numba "
            f"{machine['numba']} (JIT {machine['jit']}); {config.dtype}, one BLAS thread",
            fontsize=6.5,
            color="0.35",
            va="top",
        )


# -- the table --------------------------------------------------------------------------------------


def _lookup(rows, kind, model, N):
    for r in rows:
        if r["kind"] == kind and r["model"] == model and r["N"] == N:
            return r
    return None


def _time_of(row):
    """(seconds per step, extrapolated?) of a time row, or (None, False)."""
    if row is None:
        return None, False
    if row["skipped"]:
        return row.get("predicted_seconds_per_step"), True
    return row["seconds_per_step"], False


def _fmt_ms(seconds, guessed):
    if seconds is None:
        return "–"
    ms = 1e3 * seconds
    text = f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"
    return f"~{text}" if guessed else text


def _fmt_ratio(num, den, guessed):
    if num is None or den is None or den <= 0:
        return "–"
    ratio = num / den
    text = f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.3g}×"
    return f"~{text}" if guessed else text


def _fmt_mib(value, guessed=False):
    if value is None:
        return "–"
    text = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return f"~{text}" if guessed else text


def format_table(rows, config: ScalingConfig) -> str:
    """Markdown: time per step and memory against N for every model, and the ratios of one run.

    The ratios are taken against the reference model (SAM LSH): in the time table for the dense models,
    in the memory ratios for every other model.
    """
    all_models, spec, ref = _model_table()
    models = [m for m in all_models if m in config.models]
    lines = [
        f"### Time per step, forward + backward (ms; batch {config.batch_size}, T = {config.steps}, "
        f"median of {config.repeats} after a warm-up"
        + (f", median of {config.trials} processes" if config.trials > 1 else "")
        + f"; {config.dtype})",
        "",
    ]
    ratio_models = [m for m in models if spec(m).dense] if ref in models else []
    header = ["N"] + [spec(m).label for m in models] + [f"{spec(m).label} / {spec(ref).label}" for m in ratio_models]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(["---:"] * len(header)) + " |"]
    for N in config.sizes:
        cells = [f"{N:,}"]
        for m in models:
            cells.append(_fmt_ms(*_time_of(_lookup(rows, "time", m, N))))
        base, base_guessed = _time_of(_lookup(rows, "time", ref, N))
        for m in ratio_models:
            t, guessed = _time_of(_lookup(rows, "time", m, N))
            cells.append(_fmt_ratio(t, base, guessed or base_guessed))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"### Memory of a {config.memory_steps}-step forward + backward, batch "
        f"{config.memory_batch_size}, excluding initialisation (MiB: tracemalloc peak / RSS increase)",
        "",
    ]
    header = ["N"] + [spec(m).label for m in models]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(["---:"] * len(header)) + " |"]
    for N in config.memory_sizes:
        cells = [f"{N:,}"]
        for m in models:
            r = _lookup(rows, "memory", m, N)
            if r is None:
                cells.append("–")
            else:
                g = bool(r["skipped"])
                cells.append(f"{_fmt_mib(r['tracemalloc_peak_mib'], g)} / {_fmt_mib(r['rss_peak_mib'], g)}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Ratios measured in this run", ""]
    lines += _ratio_lines(rows, config, models)
    skipped = [r for r in rows if r["skipped"]]
    if skipped:
        lines += ["", "~ marks a value extrapolated from the model's last measured points (not run):", ""]
        for r in skipped:
            lines.append(f"- {spec(r['model']).label}, N = {r['N']:,}, {r['kind']}: {r['skipped']}")
    return "\n".join(lines)


def _ratio_lines(rows, config, models):
    _, spec, ref = _model_table()
    name = spec(ref).label
    lines = []
    n_mem = 65_536 if 65_536 in config.memory_sizes else (max(config.memory_sizes) if config.memory_sizes else None)
    if ref in models and n_mem is not None:
        base = _lookup(rows, "memory", ref, n_mem)
        for m in (m for m in models if m != ref):
            r = _lookup(rows, "memory", m, n_mem)
            if r is None or base is None:
                continue
            g = bool(r["skipped"] or base["skipped"])
            lines.append(
                f"- Memory at N = {n_mem:,}: {spec(m).label} / {name} = "
                f"{_fmt_ratio(r['tracemalloc_peak_mib'], base['tracemalloc_peak_mib'], g)} (tracemalloc), "
                f"{_fmt_ratio(r['rss_peak_mib'], base['rss_peak_mib'], g)} (RSS)"
            )
    if ref in models:
        lo, hi = 1_000, 1_000_000
        if lo not in config.sizes or hi not in config.sizes:
            measured = [N for N in config.sizes if _time_of(_lookup(rows, "time", ref, N))[0] is not None]
            lo, hi = (min(measured), max(measured)) if measured else (None, None)
        if lo is not None and hi is not None and hi > lo:
            (a, ga), (b, gb) = (_time_of(_lookup(rows, "time", ref, N)) for N in (lo, hi))
            lines.append(
                f"- {name} time per step from N = {lo:,} to {hi:,} (batch {config.batch_size}): "
                f"{_fmt_ms(a, ga)} → {_fmt_ms(b, gb)} ms, growth {_fmt_ratio(b, a, ga or gb)}"
            )
        mems = [
            r["tracemalloc_peak_mib"]
            for r in rows
            if r["kind"] == "memory"
            and r["model"] == ref
            and not r["skipped"]
            and r["tracemalloc_peak_mib"] is not None
        ]
        if len(mems) > 1:
            mid = 0.5 * (max(mems) + min(mems))
            lines.append(
                f"- {name} memory over the measured N: {min(mems):.3g} – {max(mems):.3g} MiB "
                f"(tracemalloc; ±{100 * (max(mems) - mid) / mid:.0f}% about the midpoint)"
            )
    return lines or [f"- (no ratio: {name} was not in this run)"]
