"""DOT text from a drawn ``Graph``: nested clusters from the scope tags, nodes styled by kind and gradient."""

from __future__ import annotations

import math

from .graph import Graph, Node, is_bad, natural

# Viridis-like stops for the log-scale gradient colours (small norms dark, large bright); NaN/Inf get red.
PALETTE = ((0x44, 0x01, 0x54), (0x3B, 0x52, 0x8B), (0x21, 0x91, 0x8C), (0x5E, 0xC9, 0x62), (0xFD, 0xE7, 0x25))
BAD = "#d62728"
NO_GRAD = "#eeeeee"
ZERO = "#bbbbbb"


def esc(text: str) -> str:
    """Quote a string for DOT: backslashes and quotes escaped, lines joined by DOT's centred line break."""
    lines = str(text).split("\n")
    return '"' + "\\n".join(s.replace("\\", "\\\\").replace('"', '\\"') for s in lines) + '"'


def fmt(x: float) -> str:
    """A norm as drawn: ``1.23e-02``, ``NaN``, ``Inf``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf"
    return f"{x:.2e}"


def colour(x: float, lo: float, hi: float) -> tuple[str, str]:
    """(fill colour, font colour) for a norm on the drawing's log scale from 10**lo to 10**hi."""
    if not math.isfinite(x):
        return BAD, "white"
    if x <= 0.0:
        return ZERO, "black"
    t = 0.5 if hi <= lo else (math.log10(x) - lo) / (hi - lo)
    t = min(1.0, max(0.0, t)) * (len(PALETTE) - 1)
    i = min(int(t), len(PALETTE) - 2)
    f = t - i
    rgb = [a + (b - a) * f for a, b in zip(PALETTE[i], PALETTE[i + 1])]
    # A light tint of the palette keeps black labels legible on every fill.
    rgb = [round(255 - (255 - c) * 0.6) for c in rgb]
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return "#{:02x}{:02x}{:02x}".format(*rgb), ("white" if lum < 120 else "black")


def log_range(values: list) -> tuple[float, float]:
    """(lo, hi) of log10 of the finite positive norms, widened to two decades when they are all equal."""
    finite = [math.log10(x) for x in values if x is not None and math.isfinite(x) and x > 0]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    return lo, hi


def legend(lo: float, hi: float) -> str:
    """The colour scale as an HTML-label node."""
    cells = []
    n = 5
    for i in range(n):
        v = 10 ** (lo + (hi - lo) * i / (n - 1)) if hi > lo else 10**lo
        fill, font = colour(v, lo, hi)
        cells.append(f'<td bgcolor="{fill}"><font color="{font}">{v:.0e}</font></td>')
    cells.append(f'<td bgcolor="{BAD}"><font color="white">NaN/Inf</font></td>')
    cells.append(f'<td bgcolor="{ZERO}">0</td>')
    return (
        'legend [shape=plaintext, fontsize=10, label=<<table border="0" cellborder="1" cellspacing="0" '
        f'cellpadding="3"><tr><td colspan="{len(cells)}">gradient norm |g| (log scale)</td></tr>'
        f"<tr>{''.join(cells)}</tr></table>>];"
    )


def node_attrs(d: Node, use_grads: bool, lo: float, hi: float) -> tuple[list[str], dict[str, str]]:
    """(label lines, DOT attributes) of one drawn node."""
    lines = list(d.lines)
    attrs: dict[str, str] = {}
    if d.kind in ("leaf", "acc"):
        attrs.update(shape="box", style='"rounded,filled"', fillcolor='"#dbe9f6"')
    elif d.kind in ("op", "vjp"):
        attrs.update(shape="ellipse", fontsize="9")
    elif d.kind == "sum":
        attrs.update(shape="circle", fontsize="9", fillcolor='"#fff3c4"')
    elif d.kind == "seed":
        attrs.update(shape="box", fillcolor='"#d9f2d9"')
    elif d.kind == "group":
        attrs.update(shape="box3d", fillcolor='"#f3f3f3"')
    elif d.kind == "ellipsis":
        attrs.update(shape="note", fillcolor='"#ffffff"', style='"filled,dashed"')
    elif d.kind == "detached":
        attrs.update(shape="box", style='"dashed,filled"', fillcolor='"#f7f7f7"')
    if d.root:
        attrs["peripheries"] = "2"
        if d.kind != "seed":
            lines.append("(output)")
    if use_grads and d.kind not in ("seed", "detached"):
        if d.grad is None:
            if d.kind in ("op", "vjp", "acc", "group", "ellipsis"):
                attrs["fillcolor"] = f'"{NO_GRAD}"'
        else:
            fill, font = colour(d.grad, lo, hi)
            attrs["fillcolor"] = f'"{fill}"'
            attrs["fontcolor"] = f'"{font}"'
            lines.append(f"|g| {fmt(d.grad)}")
            if is_bad(d.grad):
                attrs["color"] = f'"{BAD}"'
                attrs["penwidth"] = "2"
    return lines, attrs


def emit(g: Graph, rankdir: str = "TB", use_grads: bool = True) -> str:
    """The DOT text of a drawn graph; ``g.notes`` go into the title (say what was left out) and comments."""
    ids = {k: f"n{i}" for i, k in enumerate(g.nodes)}
    lo, hi = log_range([d.grad for d in g.nodes.values()] + [e.grad for e in g.edges])
    title = f"{g.view} graph: {g.total} {'nodes' if g.view == 'forward' else 'backward nodes'}"
    if len(g.nodes) != g.total:
        title += f" ({len(g.nodes)} drawn)"
    out = [
        "digraph tinygrad_lstm {",
        f"  // tinygrad_lstm.viz {g.view} view",
        *[f"  // note: {n}" for n in g.notes],
        f'  graph [rankdir={rankdir}, compound=true, concentrate=true, labelloc=t, fontsize=12, fontname="Helvetica",'
        f" label={esc(chr(10).join([title, *g.notes]))}];",
        '  node [fontname="Helvetica", fontsize=10, style=filled, fillcolor=white, margin="0.06,0.03", height=0.3];',
        '  edge [fontname="Helvetica", fontsize=8, arrowsize=0.6];',
    ]
    by_cluster: dict[tuple, list[str]] = {}
    for k, d in g.nodes.items():
        lines, attrs = node_attrs(d, use_grads, lo, hi)
        attr_text = ", ".join(f"{a}={v}" for a, v in attrs.items())
        by_cluster.setdefault(tuple(d.scope), []).append(f"{ids[k]} [label={esc(chr(10).join(lines))}, {attr_text}];")
    children: dict[tuple, set] = {}
    for c in list(by_cluster):
        for i in range(len(c)):
            children.setdefault(c[:i], set()).add(c[: i + 1])
    # Clusters as a tree, by an explicit stack (no recursion: scopes can nest deeply).
    counter = 0
    stack: list[tuple[tuple, bool]] = [((), False)]
    while stack:
        c, closing = stack.pop()
        pad = "  " * (len(c) + 1)
        if closing:
            out.append(pad[:-2] + "}")
            continue
        if c:
            counter += 1
            out.append(pad[:-2] + f'subgraph "cluster_{counter}" {{')
            out.append(pad + f'label={esc(c[-1])}; labeljust=l; style="rounded"; color="#888888"; fontsize=11;')
            stack.append((c, True))
        out.extend(pad + line for line in by_cluster.get(c, ()))
        for ch in sorted(children.get(c, ()), key=natural, reverse=True):
            stack.append((ch, False))
    for e in g.edges:
        a, b = g.nodes[e.src], g.nodes[e.dst]
        attrs = []
        label = e.label
        if a.kind in ("group", "ellipsis") or b.kind in ("group", "ellipsis"):
            label = (label + "\n" if label else "") + e.shape
        if e.uses > len(e.tensors):
            label = (label + "\n" if label else "") + f"{e.uses} uses"
        if use_grads and e.grad is not None and (g.view == "backward" or label):
            label = (label + "\n" if label else "") + f"|g| {fmt(e.grad)}"
        if label:
            attrs.append(f"label={esc(label)}")
        if e.style != "solid":
            attrs.append(f"style={e.style}")
        if use_grads and e.grad is not None:
            attrs.append(f'color="{colour(e.grad, lo, hi)[0]}"')
            if is_bad(e.grad):
                attrs.append("penwidth=2")
        if not e.constraint:
            attrs.append("constraint=false")
        out.append(f"  {ids[e.src]} -> {ids[e.dst]}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    if use_grads:
        out.append("  " + legend(lo, hi))
    out.append("}")
    return "\n".join(out) + "\n"
