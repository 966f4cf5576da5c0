"""The outputs of ``refmann bench scaling``: points.csv, points.json, table.md and the two plots
(Figure 1: figure1a_time.png, figure1b_memory.png; Figure 7: figure7_time.png, figure7_memory.png).

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


def _figure_lines(config):
    """The lines of the config's figure, in the registry's order."""
    from .scaling import FIGURE_MODELS

    return FIGURE_MODELS[config.figure]


#: The two plots of each figure.
PLOT_FILES = {1: ("figure1a_time.png", "figure1b_memory.png"), 7: ("figure7_time.png", "figure7_memory.png")}


def write_outputs(out, rows, machine, config, table) -> dict:
    """points.csv, points.json, table.md and the figure's two plots (:data:`PLOT_FILES`), all written atomically."""
    out = Path(out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in CSV_FIELDS})
    files = {"csv": atomic_write_text(out / "points.csv", buf.getvalue())}
    units = {"seconds_per_step": "s, one time step forward+backward", "*_mib": "MiB", "*_gib": "GiB"}
    if config.figure == 7:
        units["memory"] = (
            f"total over a {config.memory_steps}-step forward+backward at batch {config.memory_batch_size}, "
            "including the start state (from just before the model is built to the end of the call)"
        )
    doc = {"machine": machine, "config": dataclasses.asdict(config), "units": units, "points": rows}
    files["json"] = atomic_write_text(out / "points.json", json.dumps(doc, indent=1) + "\n")
    files["table"] = atomic_write_text(out / "table.md", table + "\n")
    time_png, memory_png = PLOT_FILES[config.figure]
    files["time_png"] = plot_time(rows, out / time_png, config=config, machine=machine)
    files["memory_png"] = plot_memory(rows, out / memory_png, config=config, machine=machine)
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


def _plot_lines(ax, rows, kind, key, scale, *, models, style="-", label_suffix="", extrapolate=True):
    """One line per model: measured points joined, then dotted from the last measured to the extrapolated."""
    _, spec, _ = _model_table()
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
    _plot_lines(ax, measured + skipped, "time", "_t", 1.0, models=_figure_lines(config))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memory size N (words)")
    ax.set_ylabel("wall time of one step, forward + backward (s)")
    sizes = f"batch {config.batch_size}, W = {config.word_size}, {config.num_heads} heads, K = {config.k}"
    if config.figure == 7:
        ax.set_title(f"Figure 7, SDNC against DNC: time per step\n{sizes}, K_L = {config.link_k}", fontsize=10)
        _mark_2048(ax, config.sizes)
    else:
        ax.set_title(f"Time per step, {sizes}", fontsize=10)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, title="dotted: extrapolated, not run", title_fontsize=7)
    _caption(fig, machine, config)
    return viz.save_png(fig, path)


def plot_memory(rows, path, *, config, machine=None) -> Path:
    """Figure 1b: memory of a T-step forward+backward (excluding initialisation) against N, log-log.
    Solid: tracemalloc peak; dashed: RSS increase; dotted: extrapolated (tracemalloc)."""
    fig, ax = viz.figure(FIGSIZE)
    models = _figure_lines(config)
    _plot_lines(ax, rows, "memory", "tracemalloc_peak_mib", 1.0, models=models)
    _plot_lines(
        ax, rows, "memory", "rss_peak_mib", 1.0, models=models, style="--", label_suffix=None, extrapolate=False
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memory size N (words)")
    if config.figure == 7:
        ax.set_ylabel("total memory, start state included (MiB)")
        ax.set_title(
            f"Figure 7, SDNC against DNC: total memory of a {config.memory_steps}-step\n"
            f"forward + backward, batch {config.memory_batch_size}, including the start state",
            fontsize=10,
        )
    else:
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
    if config.figure == 7:
        _mark_2048(ax, config.memory_sizes)
    elif config.memory_sizes and min(config.memory_sizes) <= 65_536 <= max(config.memory_sizes):
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


def _mark_2048(ax, sizes):
    """Figure 7: a vertical line at N = 2,048, where the paper compares (its DNC stopped there)."""
    if sizes and min(sizes) <= 2_048 <= max(sizes):
        ax.axvline(2_048, color="0.6", lw=0.6, ls="-.")
        ax.text(
            2_048,
            0.02,
            " 2,048 (quoted in the paper)",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            color="0.4",
            rotation=90,
            va="bottom",
        )


def machine_line(machine, config) -> str:
    """The machine, the versions that decide the speed, the dtype and the threads, on one line."""
    return (
        f"{machine['cpu']}, {machine['cores']} cores; numpy {machine['numpy']}, numba "
        f"{machine['numba']} (JIT {machine['jit']}); {config.dtype}, one BLAS thread"
    )


def _caption(fig, machine, config):
    if machine:
        fig.text(0.01, -0.02, machine_line(machine, config), fontsize=6.5, color="0.35", va="top")


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


def format_table(rows, config: ScalingConfig, *, machine=None) -> str:
    """Markdown: time per step and memory against N for every model, and the ratios of one run.

    Figure 1: the ratios are taken against the reference model (SAM LSH): in the time table for the dense
    models, in the memory ratios for every other model. Figure 7: see :func:`format_figure7_table`
    (``machine``, the dict of :func:`~refmann.bench._proc.machine_info`, goes into its headline).
    """
    if config.figure == 7:
        return format_figure7_table(rows, config, machine=machine)
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


# -- Figure 7: the Sparse DNC against the DNC ------------------------------------------------------

#: Figure 7's headline numbers in the paper (Supplementary D.2, N = 2,048, an SDNC with a linear KNN).
PAPER_FIGURE7 = {"N": 2_048, "time": 440, "memory": 240}
#: The SDNC's flatness is read over N >= this.
FLAT_FROM = 1_000


def _figure7_models(config):
    """(models, dense, references) of the run: the lines asked for, the dense ones (the DNC), the
    references the dense ones are divided by (SDNC linear and SDNC LSH)."""
    from .scaling import FIGURE7_REFERENCES

    _, spec, _ = _model_table()
    models = [m for m in _figure_lines(config) if m in config.models]
    return models, [m for m in models if spec(m).dense], [m for m in FIGURE7_REFERENCES if m in models]


def _memory_of(row):
    """(tracemalloc MiB, RSS MiB, extrapolated?) of a memory row, or (None, None, False)."""
    if row is None:
        return None, None, False
    return row["tracemalloc_peak_mib"], row["rss_peak_mib"], bool(row["skipped"])


def _headline_n(rows, sizes, kind, dense):
    """2,048 (the paper's) if the run has it, else the largest N at which a dense line was measured."""
    if not sizes:
        return None
    if PAPER_FIGURE7["N"] in sizes:
        return PAPER_FIGURE7["N"]
    measured = [N for N in sizes for m in dense if (r := _lookup(rows, kind, m, N)) is not None and not r["skipped"]]
    return max(measured) if measured else max(sizes)


def format_figure7_table(rows, config: ScalingConfig, *, machine=None) -> str:
    """Figure 7 in Markdown: the headline (the DNC over each SDNC at N = 2,048, the SDNC's flatness),
    then time per step and total memory against N with the DNC / SDNC ratios at every N."""
    _, spec, _ = _model_table()
    models, dense, refs = _figure7_models(config)
    pairs = [(d, r) for d in dense for r in refs]
    lines = ["### Figure 7 of Rae et al. 2016, the Sparse DNC against the DNC: headline", ""]
    if machine:
        load = machine.get("load_average_1min")
        end = machine.get("load_average_1min_end")
        loads = (
            ""
            if load is None
            else f"; 1-minute load {load:g} at the start" + ("" if end is None else f", {end:g} at the end")
        )
        lines += [f"Machine: {machine_line(machine, config)}{loads}.", ""]
    lines += _figure7_headline(rows, config, models, pairs)
    lines += [
        "",
        f"### Time per step, forward + backward (ms; batch {config.batch_size}, T = {config.steps}, "
        f"median of {config.repeats} after a warm-up"
        + (f", median of {config.trials} processes" if config.trials > 1 else "")
        + f"; W = {config.word_size}, {config.num_heads} heads, LSTM {config.hidden_size}, K = {config.k}, "
        f"K_L = {config.link_k}; {config.dtype})",
        "",
    ]
    header = ["N"] + [spec(m).label for m in models] + [f"{spec(d).label} / {spec(r).label}" for d, r in pairs]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(["---:"] * len(header)) + " |"]
    for N in config.sizes:
        cells = [f"{N:,}"] + [_fmt_ms(*_time_of(_lookup(rows, "time", m, N))) for m in models]
        for d, r in pairs:
            (a, ga), (b, gb) = _time_of(_lookup(rows, "time", d, N)), _time_of(_lookup(rows, "time", r, N))
            cells.append(_fmt_ratio(a, b, ga or gb))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"### Total memory of a {config.memory_steps}-step forward + backward, batch {config.memory_batch_size}, "
        "including the start state (MiB: tracemalloc peak / RSS increase; ratios likewise)",
        "",
    ]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(["---:"] * len(header)) + " |"]
    for N in config.memory_sizes:
        cells = [f"{N:,}"]
        for m in models:
            tm, rss, g = _memory_of(_lookup(rows, "memory", m, N))
            cells.append("–" if tm is None and rss is None else f"{_fmt_mib(tm, g)} / {_fmt_mib(rss, g)}")
        for d, r in pairs:
            (ta, ra, ga), (tb, rb, gb) = (
                _memory_of(_lookup(rows, "memory", d, N)),
                _memory_of(_lookup(rows, "memory", r, N)),
            )
            cells.append(f"{_fmt_ratio(ta, tb, ga or gb)} / {_fmt_ratio(ra, rb, ga or gb)}")
        lines.append("| " + " | ".join(cells) + " |")
    skipped = [r for r in rows if r["skipped"]]
    if skipped:
        lines += ["", "~ marks a value extrapolated from the model's last measured points (not run):", ""]
        for r in skipped:
            lines.append(f"- {spec(r['model']).label}, N = {r['N']:,}, {r['kind']}: {r['skipped']}")
    return "\n".join(lines)


def _figure7_headline(rows, config, models, pairs):
    _, spec, _ = _model_table()
    lines = []
    paper = (
        f"the paper: ≈ {PAPER_FIGURE7['time']}× faster and ≈ {PAPER_FIGURE7['memory']}× less memory at "
        f"N = {PAPER_FIGURE7['N']:,}, against an SDNC with a linear KNN"
    )
    n_time = _headline_n(rows, config.sizes, "time", [d for d, _ in pairs])
    n_mem = _headline_n(rows, config.memory_sizes, "memory", [d for d, _ in pairs])
    for d, r in pairs:
        parts = []
        if n_time is not None:
            (a, ga), (b, gb) = _time_of(_lookup(rows, "time", d, n_time)), _time_of(_lookup(rows, "time", r, n_time))
            parts.append(
                f"time per step at N = {n_time:,}: {_fmt_ratio(a, b, ga or gb)} "
                f"({_fmt_ms(a, ga)} ms against {_fmt_ms(b, gb)} ms)"
            )
        if n_mem is not None:
            (ta, ra, ga), (tb, rb, gb) = (
                _memory_of(_lookup(rows, "memory", d, n_mem)),
                _memory_of(_lookup(rows, "memory", r, n_mem)),
            )
            parts.append(
                f"total memory at N = {n_mem:,}: {_fmt_ratio(ta, tb, ga or gb)} tracemalloc "
                f"({_fmt_mib(ta, ga)} MiB against {_fmt_mib(tb, gb)} MiB), {_fmt_ratio(ra, rb, ga or gb)} RSS "
                f"({_fmt_mib(ra, ga)} MiB against {_fmt_mib(rb, gb)} MiB)"
            )
        if parts:
            lines.append(f"- {spec(d).label} / {spec(r).label}: " + "; ".join(parts))
    if pairs:
        lines.append(f"- ({paper})")
    else:
        lines.append("- (no ratio: the DNC and an SDNC are not both in this run)")
    for m in (m for m in models if not spec(m).dense):
        lines += _flatness_line(rows, config, m)
    return lines


def _flatness_line(rows, config, model):
    """Max / min of the measured per-step times over N >= FLAT_FROM (over every measured N if fewer than two)."""
    _, spec, _ = _model_table()
    measured = []
    for N in config.sizes:
        t, guessed = _time_of(_lookup(rows, "time", model, N))
        if t is not None and not guessed:
            measured.append((N, t))
    wide = [(N, t) for N, t in measured if N >= FLAT_FROM]
    where = f"N ≥ {FLAT_FROM:,}"
    if len(wide) < 2:
        wide, where = measured, f"every measured N (fewer than two at N ≥ {FLAT_FROM:,})"
    if len(wide) < 2:
        return []
    (n_lo, lo), (n_hi, hi) = min(wide, key=lambda p: p[1]), max(wide, key=lambda p: p[1])
    span = f"{wide[0][0]:,} … {wide[-1][0]:,}, {len(wide)} measured points"
    return [
        f"- {spec(model).label} flatness over {where} ({span}): max / min per-step time = {hi / lo:.3g}× "
        f"(min {_fmt_ms(lo, False)} ms at N = {n_lo:,}, max {_fmt_ms(hi, False)} ms at N = {n_hi:,})"
    ]
