"""Architecture diagrams of refmann's models, drawn by code: one figure per model.

Each diagram is data (:data:`DIAGRAMS`): boxes placed on a grid, and arrows between them. A solid
arrow carries a gradient; a dashed one does not (an index, a usage rule, a hash, a queue written
after the step). ``python -m refmann.diagrams --out DIR`` writes ``DIR/arch-NAME.png`` for every
model; the docs pages show them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

__all__ = ["DIAGRAMS", "Arrow", "Box", "Diagram", "draw", "draw_all", "main", "overlaps"]

#: Box colours by role.
COLORS = {
    "io": "#e8e8e8",  # inputs and outputs
    "net": "#cfe2f3",  # trained networks: controller, linear maps
    "addr": "#fff2cc",  # addressing: weights computed from the interface
    "mem": "#d9ead3",  # the memory and its tables
    "rule": "#f4cccc",  # non-differentiable bookkeeping: usage, index, hash, queue
}


class Box(NamedTuple):
    key: str
    label: str
    x: float  # centre, grid units
    y: float
    role: str = "net"
    w: float = 2.2
    h: float = 0.9


class Arrow(NamedTuple):
    src: str
    dst: str
    label: str = ""
    grad: bool = True  # False: drawn dashed, no gradient along it
    bend: float = 0.0  # arc3 curvature; 0 is straight


class Diagram(NamedTuple):
    title: str
    boxes: tuple
    arrows: tuple
    size: tuple = (10.0, 6.0)  # grid width, height
    note: str = ""


def _ntm():
    return Diagram(
        "NTM (Graves et al. 2014): one step",
        (
            Box("x", "input $x_t$", 1.2, 5.2, "io", 1.6),
            Box("ctrl", "controller LSTM\non $[x_t; r_{t-1}]$", 1.2, 3.4, "net", 1.8, 1.1),
            Box("iface", "interface\n$k, \\beta, g, s, \\gamma, e, a$", 3.9, 3.4, "net", 2.4, 1.1),
            Box("addr", "content → interpolate\n→ shift → sharpen", 6.6, 4.6, "addr", 2.8, 1.0),
            Box("mem", "memory $M_t$\n(N × W)", 6.6, 2.2, "mem", 2.2, 1.1),
            Box("read", "read $r_t = w^R M_t$", 9.0, 3.4, "addr", 1.8),
            Box("out", "output\n$y_t$", 9.0, 1.0, "io", 1.6),
        ),
        (
            Arrow("x", "ctrl"),
            Arrow("ctrl", "iface"),
            Arrow("iface", "addr", "per head"),
            Arrow("addr", "mem", "write: erase, add"),
            Arrow("mem", "addr", "cosine to each row", bend=0.35),
            Arrow("addr", "read", "$w^R$"),
            Arrow("mem", "read"),
            Arrow("read", "out"),
            Arrow("ctrl", "out", "$h_t$", bend=0.25),
        ),
        note="Every slot is scored and blended at every step: O(N) time, and a copy of M per step for BPTT.",
    )


def _dam(sparse: bool):
    name = "SAM (Rae et al. 2016)" if sparse else "DAM (Rae et al. 2016)"
    read = (
        "sparse read: softmax over\nthe K rows the index returns" if sparse else "dense read: softmax\nover all N rows"
    )
    usage = "usage ring $U^{(2)}$\n(timestamps, δ)" if sparse else "usage $U^{(1)}$\n(discounted sum)"
    boxes = [
        Box("x", "input $x_t$", 1.2, 5.2, "io", 1.6),
        Box("ctrl", "controller LSTM\non $[x_t; r_{t-1}]$", 1.2, 3.4, "net", 1.8, 1.1),
        Box("iface", "interface per head\n$q, a, \\alpha, \\gamma, \\beta$", 3.9, 3.4, "net", 2.5, 1.1),
        Box("write", "write weights\n$\\alpha(\\gamma w^R_{t-1} + (1-\\gamma) 1_{LRA})$", 6.7, 5.0, "addr", 3.2, 1.0),
        Box("mem", "memory $M_t$ (N × W)\nerase LRA row, add $a$", 6.7, 3.2, "mem", 2.9, 1.0),
        Box("read", read, 6.7, 1.3, "addr", 2.9, 1.0),
        Box("usage", usage, 9.4, 5.0, "rule", 1.9, 1.0),
        Box("out", "output $y_t$", 1.2, 1.3, "io", 1.6),
    ]
    arrows = [
        Arrow("x", "ctrl"),
        Arrow("ctrl", "iface"),
        Arrow("iface", "write", "$a, \\alpha, \\gamma$"),
        Arrow("write", "mem"),
        Arrow("mem", "read"),
        Arrow("iface", "read", "$q, \\beta$", bend=0.25),
        Arrow("write", "usage", "$w^W + w^R$", grad=False),
        Arrow("usage", "write", "LRA slot", grad=False, bend=0.4),
        Arrow("read", "out", "$r_t$"),
        Arrow("ctrl", "out", "$h_t$"),
    ]
    if sparse:
        boxes.append(Box("index", "ANN index\n(LSH or exact)", 9.4, 2.3, "rule", 1.9, 1.0))
        boxes.append(Box("journal", "journal: rows, index\nand ring moves", 4.0, 5.3, "rule", 2.3, 0.8))
        arrows += [
            Arrow("mem", "index", "rows written", grad=False),
            Arrow("index", "read", "K candidates", grad=False),
            Arrow("mem", "journal", "old rows", grad=False, bend=-0.3),
        ]
        note = "Per step: H·(K+1) rows written, K read, one index query; backward reverts the journal (rollback)."
    else:
        note = "The dense twin: every slot read and scored; usage over all N slots."
    return Diagram(f"{name}: one step", tuple(boxes), tuple(arrows), note=note)


def _dnc():
    return Diagram(
        "DNC (Graves et al. 2016): one step",
        (
            Box("x", "input $x_t$", 1.2, 5.2, "io", 1.6),
            Box("ctrl", "controller LSTM\non $[x_t; r_{t-1}]$", 1.2, 3.4, "net", 1.8, 1.1),
            Box(
                "iface",
                "interface\nkeys, strengths, erase, write,\nfree gates, gates, read modes",
                4.0,
                3.4,
                "net",
                2.8,
                1.3,
            ),
            Box(
                "usage",
                "usage $u_t$ from $w^W_{t-1}, w^R_{t-1}$,\nfree gates → allocation $a_t$",
                4.0,
                5.3,
                "addr",
                3.1,
                0.9,
            ),
            Box("write", "write weights\n$g^w(g^a a_t + (1-g^a) c^w_t)$", 7.2, 5.3, "addr", 2.7, 0.9),
            Box("mem", "memory $M_t$\n(N × W)", 7.2, 3.4, "mem", 2.0, 1.0),
            Box("links", "links $L_t$ (N × N),\nprecedence $p_t$", 9.3, 4.4, "mem", 1.9, 1.0),
            Box("read", "read weights\n$\\pi_b b + \\pi_c c + \\pi_f f$", 7.2, 1.4, "addr", 2.6, 0.9),
            Box("out", "output $y_t$", 1.2, 1.4, "io", 1.6),
        ),
        (
            Arrow("x", "ctrl"),
            Arrow("ctrl", "iface"),
            Arrow("iface", "usage", "free gates"),
            Arrow("usage", "write", "$a_t$"),
            Arrow("iface", "write", "$c^w$ key, gates"),
            Arrow("write", "mem", "erase, add"),
            Arrow("write", "links"),
            Arrow("links", "read", "forward $f$,\nbackward $b$", bend=-0.3),
            Arrow("mem", "read", "content $c$"),
            Arrow("iface", "read", "read keys, modes", bend=0.3),
            Arrow("ctrl", "out", "$h_t$"),
            Arrow("read", "out", "$r_t$"),
        ),
        note="The usage's sort and the N × N link matrix make a step O(N²) in the links, O(N log N) in allocation.",
    )


def _sdnc():
    return Diagram(
        "Sparse DNC (Rae et al. 2016, Supp. D): one step",
        (
            Box("x", "input $x_t$", 1.2, 5.2, "io", 1.6),
            Box("ctrl", "controller LSTM\non $[x_t; r_{t-1}]$", 1.2, 3.4, "net", 1.8, 1.1),
            Box("iface", "interface per head\nSAM's + read modes $\\pi$", 3.9, 3.4, "net", 2.5, 1.1),
            Box("write", "SAM's write: rows read at\n$t-1$ and the LRA row", 6.8, 5.3, "addr", 2.8, 0.9),
            Box("mem", "memory $M_t$ (N × W)", 6.8, 3.4, "mem", 2.6, 0.9),
            Box("links", "sparse link tables\n$K_L$ per row, journalled", 9.4, 4.4, "mem", 1.9, 1.0),
            Box("read", "read over 3K rows:\n$\\pi_c c + \\pi_f f + \\pi_b b$", 6.8, 1.4, "addr", 2.8, 0.9),
            Box("index", "ANN index", 9.4, 2.4, "rule", 1.6, 0.8),
            Box("ring", "usage ring", 4.0, 5.3, "rule", 1.6, 0.8),
            Box("out", "output $y_t$", 1.2, 1.4, "io", 1.6),
        ),
        (
            Arrow("x", "ctrl"),
            Arrow("ctrl", "iface"),
            Arrow("iface", "write"),
            Arrow("ring", "write", "LRA row", grad=False),
            Arrow("write", "mem"),
            Arrow("write", "links", "mean $\\bar w^W$", grad=False),
            Arrow("links", "read", "$f, b$ (K largest)", bend=-0.3),
            Arrow("mem", "index", grad=False),
            Arrow("index", "read", "K content rows", grad=False),
            Arrow("mem", "read"),
            Arrow("iface", "read", "$q, \\beta, \\pi$", bend=0.3),
            Arrow("ctrl", "out", "$h_t$"),
            Arrow("read", "out", "$r_t$"),
        ),
        note="No gradient through the link tables by default (the paper's choice); link_grads=True adds it.",
    )


def _pkm():
    return Diagram(
        "Product-key memory layer (Lample et al. 2019)",
        (
            Box("x", "input $x$ (d)", 1.2, 5.2, "io", 1.6),
            Box("query", "query network\nlinear (+ BatchNorm)", 1.2, 3.4, "net", 2.1, 1.0),
            Box("split", "split $q = [q_1; q_2]$", 3.9, 3.4, "addr", 2.1),
            Box(
                "sub",
                "sub-keys $C_1, C_2$ (n each):\ntop-k of $q_1 \\cdot C_1$, of $q_2 \\cdot C_2$",
                3.9,
                1.4,
                "net",
                3.0,
                1.0,
            ),
            Box("cand", "k × k sums → top-k\n(exact over n² slots)", 6.9, 1.4, "addr", 2.6, 1.0),
            Box("soft", "softmax over\nthe k scores", 6.9, 3.4, "addr", 2.0, 0.9),
            Box("values", "values (n² × $d_v$)\nk rows read", 9.2, 3.4, "mem", 1.9, 1.0),
            Box("out", "read $\\sum_k w_k v_{i_k}$\n(the host adds it to x)", 9.2, 5.2, "io", 2.3),
        ),
        (
            Arrow("x", "query"),
            Arrow("query", "split"),
            Arrow("split", "sub"),
            Arrow("sub", "cand", "2 × k scores"),
            Arrow("cand", "soft", "k slots $i_k$"),
            Arrow("soft", "values", "$w_k$"),
            Arrow("values", "out", "row gradient\n(k rows)"),
        ),
        note="2n sub-key scores and k² candidate sums instead of n² scores; the values' gradient is a RowGrad.",
    )


def _sketch():
    return Diagram(
        "Sketch memory layer (Panigrahy, Wang & Zaheer 2021, as refmann builds it)",
        (
            Box("h", "activation $x$ of layer $l$", 1.6, 5.2, "io", 2.4),
            Box("hash", "SimHash: b sign bits\nin each of T tables", 1.6, 3.2, "rule", 2.5, 1.0),
            Box("bucket", "T bucket ids\n$t\\,2^b + \\beta_t(x)$", 4.6, 3.2, "rule", 2.2, 1.0),
            Box("values", "values (T·2^b × Y)\nT rows read", 7.4, 3.2, "mem", 2.2, 1.0),
            Box("mean", "mean of the T rows", 7.4, 1.3, "addr", 2.2),
            Box("gate", "gate σ(w·x + b)\n(optional)", 4.6, 1.3, "net", 2.0),
            Box("out", "combine: $x + y$ or $[x; y]$\n→ next layer", 7.4, 5.2, "io", 2.8),
        ),
        (
            Arrow("h", "hash", grad=False),
            Arrow("hash", "bucket", grad=False),
            Arrow("bucket", "values", "rows", grad=False),
            Arrow("values", "mean", "row gradient"),
            Arrow("gate", "mean", "×"),
            Arrow("h", "gate", bend=0.3),
            Arrow("mean", "out", "$y$", bend=0.45),
            Arrow("h", "out", "identity"),
        ),
        note="No gradient reaches the hash: the read is piecewise constant in x.",
    )


def _hma():
    return Diagram(
        "HMA head (Qiu et al. 2023, as refmann builds it)",
        (
            Box("x", "backbone features $f_i$", 1.6, 5.2, "io", 2.4),
            Box("tok", "token $[f_i; E_{unknown}]$", 1.6, 3.4, "addr", 2.4),
            Box("queue", "queue R: past samples\n$[\\tilde f(x); E_y]$, FIFO", 4.6, 5.2, "rule", 2.6, 1.0),
            Box("s1", "stage 1 attention (MAB)\nover $[c^0_i; R]$", 4.6, 3.4, "net", 2.6, 1.0),
            Box("synth", "class tokens $\\hat G$\n($m_s$ per class, learned)", 7.6, 5.2, "mem", 2.6, 1.0),
            Box("s2", "stage 2 attention (MAB)\nover $[c^1; \\hat G]$, the batch", 7.6, 3.4, "net", 2.8, 1.0),
            Box("out", "linear → logits", 7.6, 1.4, "io", 2.0),
            Box("mom", "momentum encoder\n(after the step)", 1.6, 1.4, "rule", 2.2, 0.9),
        ),
        (
            Arrow("x", "tok"),
            Arrow("tok", "s1"),
            Arrow("queue", "s1", "constants", grad=False),
            Arrow("s1", "s2", "$c^1$ of every sample"),
            Arrow("synth", "s2"),
            Arrow("s2", "out"),
            Arrow("mom", "queue", "write $[\\tilde f; E_y]$", grad=False, bend=-0.35),
        ),
        note="Stage 2 mixes the samples of a batch: a prediction depends on the others in its batch.",
    )


#: name -> Diagram, for every model refmann builds.
DIAGRAMS = {
    "ntm": _ntm(),
    "dam": _dam(sparse=False),
    "sam": _dam(sparse=True),
    "dnc": _dnc(),
    "sdnc": _sdnc(),
    "pkm": _pkm(),
    "sketch": _sketch(),
    "hma": _hma(),
}


#: Horizontal stretch of the grid: the layouts are placed on a 10-wide grid, drawn 12 wide.
XSCALE = 1.2


def _placed(d: Diagram) -> Diagram:
    """``d`` with its x coordinates stretched by :data:`XSCALE`."""
    return d._replace(boxes=tuple(b._replace(x=b.x * XSCALE) for b in d.boxes), size=(d.size[0] * XSCALE, d.size[1]))


def overlaps(d: Diagram, margin: float = 0.05) -> list[tuple[str, str]]:
    """The pairs of boxes of ``d`` (as drawn) that overlap, or come closer than ``margin``."""
    boxes = _placed(d).boxes
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if abs(a.x - b.x) < (a.w + b.w) / 2 + margin and abs(a.y - b.y) < (a.h + b.h) / 2 + margin:
                out.append((a.key, b.key))
    return out


def _check(d: Diagram):
    keys = [b.key for b in d.boxes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"diagram {d.title!r}: repeated box keys")
    clash = overlaps(d)
    if clash:
        raise ValueError(f"diagram {d.title!r}: boxes overlap: {clash}")
    for a in d.arrows:
        for end in (a.src, a.dst):
            if end not in keys:
                raise ValueError(f"diagram {d.title!r}: arrow {a.src} -> {a.dst} names no box {end!r}")


def draw(name: str, path) -> Path:
    """Draw the diagram ``name`` (a key of :data:`DIAGRAMS`) to the PNG ``path``; returns the path."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    from .viz import figure, save_png

    if name not in DIAGRAMS:
        raise ValueError(f"name: expected one of {sorted(DIAGRAMS)}, got {name!r}")
    _check(DIAGRAMS[name])
    d = _placed(DIAGRAMS[name])
    W, H = d.size
    fig, ax = figure(figsize=(W * 1.05, H * 1.05))
    ax.set_xlim(-0.2, W + 0.4)
    ax.set_ylim(-0.2, H + 0.5)
    ax.set_axis_off()
    ax.set_aspect("equal")  # arc3 bends in display space: equal units keep the labels on their arcs
    patches = {}
    for b in d.boxes:
        patch = FancyBboxPatch(
            (b.x - b.w / 2, b.y - b.h / 2),
            b.w,
            b.h,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor=COLORS[b.role],
            edgecolor="#555555",
            linewidth=1.0,
            zorder=2,
        )
        ax.add_patch(patch)
        patches[b.key] = patch
        ax.text(b.x, b.y, b.label, ha="center", va="center", fontsize=8.5, zorder=3)
    for a in d.arrows:
        arrow = FancyArrowPatch(
            posA=(0, 0),
            posB=(0, 0),
            patchA=patches[a.src],
            patchB=patches[a.dst],
            arrowstyle="-|>",
            mutation_scale=11,
            connectionstyle=f"arc3,rad={a.bend}",
            linestyle="-" if a.grad else (0, (4, 3)),
            color="#333333" if a.grad else "#aa3333",
            linewidth=1.1,
            shrinkA=2,
            shrinkB=2,
            zorder=1,
        )
        arrow.set_positions(_centre(d, a.src), _centre(d, a.dst))
        ax.add_patch(arrow)
        if a.label:
            mx, my = _label_point(d, a)
            ax.text(
                mx,
                my,
                a.label,
                fontsize=7.5,
                ha="center",
                va="center",
                color="#333333" if a.grad else "#aa3333",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.85},
                zorder=4,
            )
    ax.set_title(d.title, fontsize=11)
    legend = [Patch(facecolor=COLORS[r], edgecolor="#555555", label=label) for r, label in _ROLE_LABELS.items()]
    legend += [
        Line2D([], [], color="#333333", label="gradient flows"),
        Line2D([], [], color="#aa3333", linestyle=(0, (4, 3)), label="no gradient"),
    ]
    ax.legend(handles=legend, loc="lower center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=7.5, frameon=False)
    if d.note:
        ax.text(W / 2, -0.05, d.note, ha="center", va="top", fontsize=8, style="italic", transform=ax.transData)
    return save_png(fig, path)


_ROLE_LABELS = {
    "io": "input / output",
    "net": "trained map",
    "addr": "weights, reads",
    "mem": "memory, tables",
    "rule": "bookkeeping",
}


def _label_point(d: Diagram, a: Arrow):
    """Where an arrow's label goes: a curved arrow's apex (arc3's Bézier midpoint, half the control
    point's offset from the chord), or the middle of a straight arrow's visible part, between the
    points where the chord leaves its boxes."""
    A = next(b for b in d.boxes if b.key == a.src)
    B = next(b for b in d.boxes if b.key == a.dst)
    dx, dy = B.x - A.x, B.y - A.y
    if a.bend:
        return A.x + dx / 2 + a.bend * dy / 2, A.y + dy / 2 - a.bend * dx / 2

    def exit_fraction(box):  # the chord's fraction inside the box, from its centre
        tx = (box.w / 2) / abs(dx) if dx else float("inf")
        ty = (box.h / 2) / abs(dy) if dy else float("inf")
        return min(tx, ty)

    t = (exit_fraction(A) + 1 - exit_fraction(B)) / 2
    return A.x + t * dx, A.y + t * dy


def _centre(d: Diagram, key: str):
    b = next(b for b in d.boxes if b.key == key)
    return (b.x, b.y)


def draw_all(out_dir, names=None) -> list[Path]:
    """Write ``out_dir/arch-NAME.png`` for each of ``names`` (default: every diagram); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [draw(name, out / f"arch-{name}.png") for name in names or DIAGRAMS]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m refmann.diagrams", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, metavar="DIR", help="folder for arch-NAME.png")
    p.add_argument("names", nargs="*", help=f"diagrams to draw (default: all of {', '.join(DIAGRAMS)})")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in DIAGRAMS]
    if unknown:
        p.error(f"names: expected some of {', '.join(DIAGRAMS)}, got {', '.join(unknown)}")
    for path in draw_all(args.out, args.names):
        print(path)  # the command's output: the files written
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
