"""Draw the engine's own graph with Graphviz: clusters per module call and time step, gradients on top.

``to_dot`` reads the recorded graph (``tensor._ctx`` nodes, their ``parents``, ``scope``, ``grad_out`` and
``grads_in``) and returns DOT text; it needs no Graphviz. ``draw`` wraps that text in a ``graphviz.Digraph``
(shown inline by Jupyter) and ``render`` writes an SVG or PNG file. Both find a layout engine in this order:
the ``TINYGRAD_LSTM_DOT`` environment variable, a system ``dot`` on PATH, then the ``graphviz-pure`` executable
that the ``graphviz-pure`` wheel installs, so rendering works right after ``pip install`` with no system package.

Two views of one graph:

* ``view="forward"``: leaves (parameters by dotted name, inputs) and ops, nested in one cluster per scope tag
  (``lstm`` > ``t=3`` > ``cell``). A weight used at every time step is one node whose edges fan out to each step.
* ``view="backward"``: what BPTT runs: one node per op's VJP (``TanhBackward``), edges in the direction the
  gradient flows, a ``+= (k terms)`` node wherever gradients from several uses are summed, and one
  ``AccumulateGrad`` node per leaf at the end.

After ``backward(retain_graph=True)`` nodes and edges carry gradient norms, coloured on a log scale (NaN and Inf
in red), so vanishing and exploding gradients can be seen. Big graphs are shortened: ``steps=(k1, k2)`` keeps
the first and last steps, ``collapse`` turns a scope level into single nodes, and above ``max_nodes`` the
renderer picks those by itself and says so.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_path
from .tensor import Tensor, get_default_dtype, walk

__all__ = ["draw", "find_engine", "render", "to_dot"]

_STEP = re.compile(r"^t=(-?\d+)$")
_RANKDIRS = ("TB", "LR", "BT", "RL")
_VIEWS = ("forward", "backward")
# Viridis-like stops for the log-scale gradient colours (small norms dark, large bright); NaN/Inf get red.
_PALETTE = ((0x44, 0x01, 0x54), (0x3B, 0x52, 0x8B), (0x21, 0x91, 0x8C), (0x5E, 0xC9, 0x62), (0xFD, 0xE7, 0x25))
_BAD = "#d62728"
_NO_GRAD = "#eeeeee"
_ENV = "TINYGRAD_LSTM_DOT"


# ------------------------------------------------------------------------------------------------ small helpers


def _esc(text: str) -> str:
    """Quote a string for DOT: backslashes and quotes escaped, lines joined by DOT's centred line break."""
    lines = str(text).split("\n")
    return '"' + "\\n".join(s.replace("\\", "\\\\").replace('"', '\\"') for s in lines) + '"'


def _shape(shape: tuple) -> str:
    return "scalar" if shape == () else str(tuple(shape))


def _norm(g: Any) -> float | None:
    """The 2-norm of a gradient in float64 (NaN if any entry is NaN, Inf if any is infinite), None if absent."""
    if g is None:
        return None
    a = np.asarray(g, dtype=np.float64).ravel()
    v = float(a @ a)
    if math.isfinite(v):
        return math.sqrt(v)
    if np.isnan(a).any():
        return math.nan
    # Inf entries, or squares that overflow: the scaled norm tells those apart.
    return float(np.linalg.norm(a)) if np.isfinite(a).all() else math.inf


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf"
    return f"{x:.2e}"


def _bad(x: float | None) -> bool:
    return x is not None and not math.isfinite(x)


_DTYPE_NAMES: dict = {}


def _dtype_name(dt: np.dtype) -> str:
    name = _DTYPE_NAMES.get(dt)
    if name is None:
        name = _DTYPE_NAMES[dt] = str(dt)
    return name


def _summary(data: np.ndarray) -> str:
    """A one-line look at a tensor's values for ``show_values``."""
    a = np.asarray(data)
    if a.size == 0:
        return "empty"
    if a.size <= 4:
        return "[" + ", ".join(f"{v:.3g}" for v in a.ravel().tolist()) + "]"
    if a.dtype.kind == "b":
        return f"{int(a.sum())}/{a.size} true"
    f = a.astype(np.float64)
    return f"mean {f.mean():.3g} std {f.std():.3g}"


def _natural(key: tuple) -> tuple:
    """Sort scope tuples so that t=10 comes after t=9."""
    out = []
    for part in key:
        m = _STEP.match(part)
        out.append((0, int(m.group(1)), "") if m else (1, 0, part))
    return tuple(out)


# ------------------------------------------------------------------------------------------------ the graph model


@dataclass
class _Unit:
    """One node of the full (unshortened) drawing: an op, a VJP, a leaf, a sum, a seed."""

    kind: str  # op | leaf | vjp | acc | sum | seed | detached
    scope: tuple
    lines: list
    grad: float | None = None
    tkey: int | None = None  # id of the tensor whose gradient ``grad`` is
    shape: str = ""
    root: bool = False
    order: int = 0  # minus the longest distance to an output: smallest = the first use in the layout


@dataclass
class _Edge:
    src: str
    dst: str
    tkey: int
    shape: str
    grad: Any = None  # the gradient array that flowed along the edge (its norm is taken only if drawn)
    style: str = "solid"
    label: str = ""


@dataclass
class _Drawn:
    """A node of the final drawing (a unit, a collapsed group or an ellipsis of hidden steps)."""

    kind: str
    cluster: tuple
    lines: list
    grad: float | None = None
    root: bool = False
    members: list = field(default_factory=list)
    order: int = 0


def _walk_checked(roots: tuple) -> list[Tensor]:
    """Every tensor reachable from the roots (iteratively), refusing a graph that backward() released."""
    order = list(walk(*roots))
    for t in order:
        ctx = t._ctx
        if ctx is not None and ctx.parents is None:
            raise RuntimeError(
                f"to_dot: graph was released by backward() (node {ctx.name} in scope "
                f"{'/'.join(ctx.scope) or '<top level>'} has no inputs any more); "
                "pass retain_graph=True to backward() to draw it afterwards"
            )
    return order


def _forward_order(tensors: list[Tensor]) -> dict[int, int]:
    """Each tensor's position in a forward topological order (inputs first), by an explicit-stack DFS."""
    order: dict[int, int] = {}
    stack: list[tuple[Tensor, bool]] = [(t, False) for t in reversed(tensors)]
    visiting: set[int] = set()
    while stack:
        t, done = stack.pop()
        if done:
            order.setdefault(id(t), len(order))
            continue
        if id(t) in order or id(t) in visiting:
            continue
        visiting.add(id(t))
        stack.append((t, True))
        if t._ctx is not None:
            stack.extend((p, False) for p in reversed(t._ctx.parents) if id(p) not in order)
    return order


def _heights(tensors: list[Tensor]) -> dict[int, int]:
    """Each tensor's longest distance to an output: the layout places the farthest use of a weight first."""
    order = _forward_order(tensors)
    by_id = {id(t): t for t in tensors}
    height = dict.fromkeys(order, 0)
    for k in sorted(order, key=order.__getitem__, reverse=True):
        t = by_id[k]
        if t._ctx is not None:
            h = height[k] + 1
            for p in t._ctx.parents:
                if height.get(id(p), 0) < h:
                    height[id(p)] = h
    return height


def _is_const(t: Tensor) -> bool:
    """A Python number lifted into a one-element tensor: folded into its op's label, not drawn as a node."""
    return t._ctx is None and not t.requires_grad and t.data.size == 1 and t.name is None and t._cut is None


def _leaf_label(t: Tensor) -> str:
    if t.name:
        return str(t.name)
    return "input (requires_grad)" if t.requires_grad else "input"


def _tensor_lines(t: Tensor, show_values: bool) -> list[str]:
    lines = [_shape(t.shape)]
    if t.dtype != get_default_dtype():
        lines[0] += " " + _dtype_name(t.dtype)
    if show_values:
        lines.append(_summary(t.data))
    return lines


def _build_units(
    tensors: list[Tensor], roots: tuple, view: str, show_values: bool
) -> tuple[dict[str, _Unit], list[_Edge]]:
    """The full drawing as units and edges, before steps/collapse shorten it."""
    units: dict[str, _Unit] = {}
    edges: list[_Edge] = []
    present = {id(t) for t in tensors}
    root_ids = {id(r) for r in roots}

    if view == "forward":

        def unit_of(t: Tensor) -> str:
            return f"op{id(t._ctx)}" if t._ctx is not None else f"leaf{id(t)}"

        for t in tensors:
            ctx = t._ctx
            if ctx is None:
                if _is_const(t) and id(t) not in root_ids:
                    continue
                lines = [_leaf_label(t), *_tensor_lines(t, show_values)]
                grad = _norm(t.grad) if t.requires_grad else None
                units[unit_of(t)] = _Unit("leaf", (), lines, grad, id(t), _shape(t.shape), id(t) in root_ids)
                continue
            lines = [ctx.name + (f" '{t.name}'" if t.name else ""), *_tensor_lines(t, show_values)]
            consts = [f"{p.data.item():.4g}" for p in ctx.parents if _is_const(p)]
            if consts:
                lines.insert(1, "with " + ", ".join(consts))
            units[unit_of(t)] = _Unit(
                "op", tuple(ctx.scope), lines, _norm(ctx.grad_out), id(t), _shape(t.shape), id(t) in root_ids
            )
            gin = ctx.grads_in
            for i, p in enumerate(ctx.parents):
                if _is_const(p):
                    continue
                g = gin[i] if gin is not None and i < len(gin) else None
                edges.append(_Edge(unit_of(p), unit_of(t), id(p), _shape(p.shape), g))
        for t in tensors:
            src = t.detached_from if t._ctx is None else None
            if src is not None and id(src) in present and unit_of(t) in units:
                edges.append(_Edge(unit_of(src), unit_of(t), id(src), _shape(t.shape), style="dashed", label="detach"))
        return units, edges

    # ---- backward view: one node per VJP, edges along the gradient's direction
    uses: dict[int, int] = {}
    for t in tensors:
        if t._ctx is not None:
            for p in t._ctx.parents:
                if p.requires_grad:
                    uses[id(p)] = uses.get(id(p), 0) + 1

    def target(p: Tensor) -> str:
        if p._ctx is None:
            return f"acc{id(p)}"
        return f"sum{id(p)}" if uses.get(id(p), 0) > 1 else f"vjp{id(p._ctx)}"

    for t in tensors:
        ctx = t._ctx
        if ctx is None:
            if t.requires_grad:
                lines = [_leaf_label(t), "AccumulateGrad", *_tensor_lines(t, show_values)]
                k = uses.get(id(t), 0)
                if k > 1:
                    lines.insert(2, f"+= ({k} terms)")
                units[f"acc{id(t)}"] = _Unit("acc", (), lines, _norm(t.grad), id(t), _shape(t.shape))
            continue
        lines = [ctx.backward_name + (f" '{t.name}'" if t.name else ""), *_tensor_lines(t, show_values)]
        units[f"vjp{id(ctx)}"] = _Unit("vjp", tuple(ctx.scope), lines, _norm(ctx.grad_out), id(t), _shape(t.shape))
        k = uses.get(id(t), 0)
        if k > 1:
            units[f"sum{id(t)}"] = _Unit(
                "sum", tuple(ctx.scope), [f"+= ({k} terms)"], _norm(ctx.grad_out), id(t), _shape(t.shape)
            )
            edges.append(_Edge(f"sum{id(t)}", f"vjp{id(ctx)}", id(t), _shape(t.shape), ctx.grad_out))
        gin = ctx.grads_in
        for i, p in enumerate(ctx.parents):
            if not p.requires_grad:
                continue
            g = gin[i] if gin is not None and i < len(gin) else None
            edges.append(_Edge(f"vjp{id(ctx)}", target(p), id(p), _shape(p.shape), g))
    for r in roots:
        if not r.requires_grad:
            continue
        lines = [f"{r.name or 'output'}.backward()", f"seed {_shape(r.shape)}"]
        units[f"seed{id(r)}"] = _Unit("seed", (), lines, None, None, _shape(r.shape), True)
        dst = f"acc{id(r)}" if r._ctx is None else (f"sum{id(r)}" if uses.get(id(r), 0) > 1 else f"vjp{id(r._ctx)}")
        edges.append(_Edge(f"seed{id(r)}", dst, id(r), _shape(r.shape), r.grad if r._ctx is None else None))
    for t in tensors:
        src = t.detached_from if t._ctx is None else None
        if src is not None and id(src) in present:
            uid = f"det{id(t)}"
            units[uid] = _Unit("detached", (), [f"{_leaf_label(t)} (detached)", _shape(t.shape)], None, None)
            if src.requires_grad:
                edges.append(
                    _Edge(uid, target(src), id(src), _shape(t.shape), style="dashed", label="detach: no gradient")
                )
    return units, edges


# ------------------------------------------------------------------------------------------------ shortening


def _step_of(scope: tuple) -> tuple[int, int] | None:
    """(index of the first ``t=k`` tag in the scope, k), or None."""
    for i, part in enumerate(scope):
        m = _STEP.match(part)
        if m:
            return i, int(m.group(1))
    return None


def _hidden_steps(units: dict[str, _Unit], steps: tuple[int, int] | None) -> dict[tuple, list[int]]:
    """For each scope prefix that holds ``t=k`` clusters: the sorted steps that ``steps`` hides."""
    if steps is None:
        return {}
    per: dict[tuple, set[int]] = {}
    for u in units.values():
        s = _step_of(u.scope)
        if s is not None:
            per.setdefault(u.scope[: s[0]], set()).add(s[1])
    k1, k2 = steps
    out = {}
    for prefix, ks in per.items():
        order = sorted(ks)
        if len(order) > k1 + k2:
            out[prefix] = order[k1 : len(order) - k2]
    return out


def _group_depth(scope: tuple, collapse: int | str | None) -> int | None:
    if collapse is None:
        return None
    if isinstance(collapse, int):
        return collapse if len(scope) >= collapse else None
    for i, part in enumerate(scope):
        if fnmatch.fnmatchcase(part, collapse):
            return i + 1
    return None


def _shorten(
    units: dict[str, _Unit], edges: list[_Edge], view: str, collapse: int | str | None, steps: tuple | None
) -> tuple[dict[str, _Drawn], dict[tuple, dict]]:
    """Map units onto drawn nodes (groups for collapsed scopes, one ellipsis per run of hidden steps)."""
    hidden = {prefix: set(ks) for prefix, ks in _hidden_steps(units, steps).items()}
    hidden_count = {prefix: len(ks) for prefix, ks in hidden.items()}
    hidden_span = {prefix: (min(ks), max(ks)) for prefix, ks in hidden.items()}
    rep: dict[str, str] = {}
    drawn: dict[str, _Drawn] = {}
    for uid, u in units.items():
        s = _step_of(u.scope) if hidden else None
        if s is not None and s[1] in hidden.get(u.scope[: s[0]], ()):
            prefix = u.scope[: s[0]]
            key = "ell" + "\x1f".join(prefix)
            if key not in drawn:
                lo, hi = hidden_span[prefix]
                n = hidden_count[prefix]
                drawn[key] = _Drawn(
                    "ellipsis",
                    prefix,
                    [f"... {n} step{'s' if n != 1 else ''} ...", f"(t={lo} .. t={hi})"],
                    order=u.order,
                )
            drawn[key].members.append(u)
            drawn[key].order = min(drawn[key].order, u.order)
            rep[uid] = key
            continue
        d = _group_depth(u.scope, collapse)
        if d is not None:
            gscope = u.scope[:d]
            key = "grp" + "\x1f".join(gscope)
            if key not in drawn:
                drawn[key] = _Drawn("group", gscope[:-1], [" / ".join(gscope)], order=u.order)
            drawn[key].members.append(u)
            drawn[key].order = min(drawn[key].order, u.order)
            rep[uid] = key
            continue
        drawn[uid] = _Drawn(u.kind, u.scope, list(u.lines), u.grad, u.root, [u], u.order)
        rep[uid] = uid

    if hidden:
        # A leaf used only inside hidden steps (that step's input slice) disappears into the ellipsis too.
        near: dict[str, set] = {}
        for e in edges:
            if e.src in rep and e.dst in rep:
                near.setdefault(e.src, set()).add(rep[e.dst])
                near.setdefault(e.dst, set()).add(rep[e.src])
        for uid, u in units.items():
            if u.kind in ("leaf", "acc", "detached") and not u.root and rep.get(uid) == uid:
                targets = near.get(uid, set())
                if len(targets) == 1:
                    (key,) = targets
                    if key.startswith("ell"):
                        del drawn[uid]
                        rep[uid] = key
                        drawn[key].members.append(u)

    # Merge edges between drawn nodes: one edge per (source, target, tensor, style); internal edges vanish.
    merged: dict[tuple, dict] = {}
    crossing: dict[str, set[int]] = {}
    ins: dict[str, dict[int, str]] = {}
    outs: dict[str, dict[int, str]] = {}
    for e in edges:
        if e.dst not in rep or e.src not in rep:
            continue
        a, b = rep[e.src], rep[e.dst]
        if a == b:
            continue
        crossing.setdefault(a, set()).add(e.tkey)
        crossing.setdefault(b, set()).add(e.tkey)
        # In the forward view tensors flow src -> dst; in the backward view their gradients flow dst-ward.
        prod, cons = (a, b) if view == "forward" else (b, a)
        outs.setdefault(prod, {})[e.tkey] = e.shape
        ins.setdefault(cons, {})[e.tkey] = e.shape
        # Edges into or out of hidden steps merge into one per pair (no norms: their steps are not drawn).
        hid = a.startswith("ell") or b.startswith("ell")
        k = (a, b, 0 if hid else e.tkey, e.style)
        m = merged.get(k)
        if m is None:
            m = merged[k] = {"shape": e.shape, "raw": [], "n": 0, "t": {}, "style": e.style, "label": e.label}
        m["n"] += 1
        m["t"][e.tkey] = e.shape
        if not hid and e.grad is not None:
            m["raw"].append(e.grad)
    for m in merged.values():
        g = None
        for raw in m.pop("raw"):
            g = _worst(g, _norm(raw))
        m["grad"] = g
        if len(m["t"]) > 1:
            m["shape"] = _shape_list(list(m["t"].values()))

    for key, d in drawn.items():
        if d.kind not in ("group", "ellipsis"):
            continue
        n_ops = sum(u.kind in ("op", "vjp", "sum") for u in d.members)
        d.lines.append(f"{n_ops} {'ops' if view == 'forward' else 'VJPs'}")
        for tag, table in (("in", ins.get(key, {})), ("out", outs.get(key, {}))):
            if table:
                d.lines.append(f"{tag}: " + _shape_list(list(table.values())))
        # The group's gradient: the gradients crossing its boundary (one per tensor); red if any member is bad.
        gs: dict[int, float] = {}
        cross = crossing.get(key, set())
        for u in d.members:
            if u.grad is not None and u.tkey in cross:
                gs[u.tkey] = u.grad
        bad = [u for u in d.members if _bad(u.grad)]
        if bad:
            d.grad = math.nan if any(math.isnan(u.grad) for u in bad) else math.inf
            d.lines.append(f"NaN/Inf in {len(bad)} node{'s' if len(bad) != 1 else ''}")
        elif gs:
            d.grad = math.sqrt(sum(v * v for v in gs.values()))
    return drawn, merged


def _worst(a: float | None, b: float | None) -> float | None:
    """Combine two edge norms for a merged edge: NaN/Inf win, else the larger."""
    if a is None:
        return b
    if b is None:
        return a
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def _shape_list(shapes: list[str], limit: int = 4) -> str:
    counts: dict[str, int] = {}
    for s in shapes:
        counts[s] = counts.get(s, 0) + 1
    parts = [s + (f" x{c}" if c > 1 else "") for s, c in counts.items()]
    return ", ".join(parts[:limit]) + (f", +{len(parts) - limit} more" if len(parts) > limit else "")


def _truncate(drawn: dict[str, _Drawn], merged: dict[tuple, dict], keep: int, first: list[str]) -> int:
    """Last resort above max_nodes: keep the ``keep`` nodes nearest the roots (breadth first), drop the rest."""
    adj: dict[str, list[str]] = {}
    for a, b, *_ in merged:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    kept: list[str] = []
    seen = set()
    queue = [k for k in first if k in drawn] or list(drawn)[:1]
    i = 0
    while queue and len(kept) < keep:
        nxt = []
        for k in queue:
            if k in seen:
                continue
            seen.add(k)
            kept.append(k)
            if len(kept) >= keep:
                break
            nxt.extend(adj.get(k, ()))
        queue = nxt
        i += 1
    keep_set = set(kept)
    dropped = len(drawn) - len(keep_set)
    for k in list(drawn):
        if k not in keep_set:
            del drawn[k]
    for k in list(merged):
        if k[0] not in keep_set or k[1] not in keep_set:
            del merged[k]
    return dropped


# ------------------------------------------------------------------------------------------------ colours


def _colour(x: float, lo: float, hi: float) -> tuple[str, str]:
    """(fill colour, font colour) for a norm on the drawing's log scale."""
    if not math.isfinite(x):
        return _BAD, "white"
    if x <= 0.0:
        return "#bbbbbb", "black"
    t = 0.5 if hi <= lo else (math.log10(x) - lo) / (hi - lo)
    t = min(1.0, max(0.0, t)) * (len(_PALETTE) - 1)
    i = min(int(t), len(_PALETTE) - 2)
    f = t - i
    rgb = [a + (b - a) * f for a, b in zip(_PALETTE[i], _PALETTE[i + 1])]
    # A light tint of the palette keeps black labels legible on every fill.
    rgb = [round(255 - (255 - c) * 0.6) for c in rgb]
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return "#{:02x}{:02x}{:02x}".format(*rgb), ("white" if lum < 120 else "black")


def _legend(lo: float, hi: float) -> str:
    cells = []
    n = 5
    for i in range(n):
        v = 10 ** (lo + (hi - lo) * i / (n - 1)) if hi > lo else 10**lo
        fill, font = _colour(v, lo, hi)
        cells.append(f'<td bgcolor="{fill}"><font color="{font}">{v:.0e}</font></td>')
    cells.append(f'<td bgcolor="{_BAD}"><font color="white">NaN/Inf</font></td>')
    cells.append('<td bgcolor="#bbbbbb">0</td>')
    return (
        'legend [shape=plaintext, fontsize=10, label=<<table border="0" cellborder="1" cellspacing="0" '
        f'cellpadding="3"><tr><td colspan="{len(cells)}">gradient norm |g| (log scale)</td></tr>'
        f"<tr>{''.join(cells)}</tr></table>>];"
    )


# ------------------------------------------------------------------------------------------------ to_dot


def _check_args(view: str, collapse: Any, steps: Any, rankdir: str, max_nodes: Any) -> tuple:
    if view not in _VIEWS:
        raise ValueError(f"to_dot: view must be 'forward' or 'backward', got {view!r}")
    if rankdir not in _RANKDIRS:
        raise ValueError(f"to_dot: rankdir must be one of {_RANKDIRS}, got {rankdir!r}")
    if collapse is not None:
        if isinstance(collapse, bool) or not isinstance(collapse, (int, str)):
            raise TypeError(f"to_dot: collapse must be None, a scope name (pattern) or an int depth, got {collapse!r}")
        if isinstance(collapse, int) and collapse < 1:
            raise ValueError(f"to_dot: collapse depth must be >= 1, got {collapse}")
        if isinstance(collapse, str) and not collapse:
            raise ValueError("to_dot: collapse must not be an empty string")
    if steps is not None:
        ok = isinstance(steps, (tuple, list)) and len(steps) == 2
        ok = ok and all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 0 for k in steps)
        if not ok or sum(steps) < 1:
            raise ValueError(f"to_dot: steps must be a pair (k1, k2) of ints >= 0 with k1 + k2 >= 1, got {steps!r}")
        steps = (int(steps[0]), int(steps[1]))
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1:
        raise ValueError(f"to_dot: max_nodes must be a positive int, got {max_nodes!r}")
    return steps


def to_dot(
    *roots: Tensor,
    view: str = "forward",
    collapse: int | str | None = None,
    steps: tuple[int, int] | None = None,
    show_grads: bool = True,
    show_values: bool = False,
    rankdir: str = "TB",
    max_nodes: int = 2000,
) -> str:
    """DOT text for the graph that produced ``roots``, read from the recorded nodes (no Graphviz needed).

    ``view``: "forward" (tensors and ops) or "backward" (one node per VJP, gradient direction).
    ``collapse``: a scope name (an fnmatch pattern such as "cell" or "t=*") or an int depth: every scope
    cluster at that level becomes one node showing its in/out shapes. ``steps=(k1, k2)``: draw the first k1
    and last k2 ``t=k`` steps and one ellipsis node for the rest. ``show_grads``: gradient norms after
    ``backward(retain_graph=True)`` (``grad_out`` is the latest backward's; leaf ``.grad`` accumulates).
    ``show_values``: a short value summary per node. Above ``max_nodes`` drawn nodes the graph is shortened
    automatically (fewer steps, then coarser collapse, then a cut), with a warning and a note in the label.
    """
    if not roots:
        raise ValueError("to_dot: give at least one Tensor to draw")
    for i, r in enumerate(roots):
        if not isinstance(r, Tensor):
            raise TypeError(f"to_dot: root {i} is a {type(r).__name__}, not a Tensor")
    steps = _check_args(view, collapse, steps, rankdir, max_nodes)
    tensors = _walk_checked(roots)
    units, edges = _build_units(tensors, roots, view, show_values)
    height = _heights(tensors)
    for u in units.values():
        if u.tkey is not None:
            u.order = -height.get(u.tkey, 0)
    notes: list[str] = []

    # Try the requested plan, then progressively shorter ones until the drawing fits max_nodes.
    plans: list[tuple] = [(collapse, steps)]
    has_steps = any(_step_of(u.scope) for u in units.values())
    if has_steps:
        for k in (3, 2, 1):
            if steps is None or k < min(steps[0], steps[1]) or steps[0] + steps[1] > 2 * k:
                plans.append((collapse, (k, k)))
    depth = max((len(u.scope) for u in units.values()), default=0)
    last_steps = plans[-1][1]
    for d in range(depth, 0, -1):
        plans.append((d, last_steps))
    drawn = merged = None
    chosen = plans[0]
    for i, plan in enumerate(plans):
        if plan == (None, None) and len(units) > max_nodes and i + 1 < len(plans):
            continue  # nothing to shorten: every unit would be drawn
        drawn, merged = _shorten(units, edges, view, *plan)
        chosen = plan
        if len(drawn) <= max_nodes:
            break
    full = len(units)
    if chosen != plans[0]:
        what = []
        if chosen[1] is not None and chosen[1] != steps:
            what.append(f"steps={chosen[1]}")
        if chosen[0] != collapse:
            what.append(f"collapse={chosen[0]}")
        msg = f"{full} nodes exceed max_nodes={max_nodes}: drawn with {', '.join(what)}"
        notes.append(msg)
        warnings.warn(f"to_dot: {msg}", stacklevel=2)
    if len(drawn) > max_nodes:
        first = [k for k, d in drawn.items() if d.root]
        dropped = _truncate(drawn, merged, max_nodes, first)
        msg = f"{dropped} nodes farthest from the outputs are not drawn (max_nodes={max_nodes})"
        notes.append(msg)
        warnings.warn(f"to_dot: {msg}", stacklevel=2)

    has_grads = any(u.grad is not None for u in units.values() if u.kind in ("op", "vjp", "acc", "leaf"))
    if show_grads and not has_grads:
        msg = "no gradients recorded: call backward(retain_graph=True) first to see gradient norms"
        notes.append(msg)
        warnings.warn(f"to_dot: {msg}", stacklevel=2)
    use_grads = show_grads and has_grads
    return _emit(drawn, merged, view, rankdir, use_grads, notes, full)


def _emit(
    drawn: dict[str, _Drawn],
    merged: dict[tuple, dict],
    view: str,
    rankdir: str,
    use_grads: bool,
    notes: list[str],
    full: int,
) -> str:
    """Write the DOT text: nested clusters from the scope tags, nodes styled by kind and gradient."""
    ids = {k: f"n{i}" for i, k in enumerate(drawn)}
    finite = [
        math.log10(x)
        for x in [d.grad for d in drawn.values()] + [m["grad"] for m in merged.values()]
        if x is not None and math.isfinite(x) and x > 0
    ]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    if use_grads and hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0

    # A leaf shared by many steps (a weight) is drawn once with edges fanning out (in the backward view: in).
    # Only the edge to its first use constrains the ranking, so the leaf sits beside that use; the other
    # edges are left out of the ranking, which keeps dot's layout time from exploding on long unrolls.
    ranked: dict[str, tuple] = {}
    for key in merged:
        a, b = key[0], key[1]
        if drawn[a].kind in ("leaf", "detached"):
            cand = (drawn[b].order, key)
            if a not in ranked or cand < ranked[a]:
                ranked[a] = cand
        if drawn[b].kind == "acc":
            cand = (drawn[a].order, key)
            if b not in ranked or cand < ranked[b]:
                ranked[b] = cand
    constrained = {v[1] for v in ranked.values()}

    title = f"{view} graph: {full} {'nodes' if view == 'forward' else 'backward nodes'}"
    if len(drawn) != full:
        title += f" ({len(drawn)} drawn)"
    out = [
        "digraph tinygrad_lstm {",
        f"  // tinygrad_lstm.viz {view} view",
        *[f"  // note: {n}" for n in notes],
        f'  graph [rankdir={rankdir}, compound=true, concentrate=true, labelloc=t, fontsize=12, fontname="Helvetica",'
        f" label={_esc(chr(10).join([title, *notes]))}];",
        '  node [fontname="Helvetica", fontsize=10, style=filled, fillcolor=white, margin="0.06,0.03", height=0.3];',
        '  edge [fontname="Helvetica", fontsize=8, arrowsize=0.6];',
    ]
    # Nodes by cluster path; clusters emitted as a tree (explicit stack, no recursion).
    by_cluster: dict[tuple, list[str]] = {}
    for k, d in drawn.items():
        by_cluster.setdefault(tuple(d.cluster), []).append(_node_line(ids[k], d, view, use_grads, lo, hi))
    children: dict[tuple, set] = {}
    for c in list(by_cluster):
        for i in range(len(c)):
            children.setdefault(c[:i], set()).add(c[: i + 1])
    counter = [0]
    stack: list[tuple[tuple, bool]] = [((), False)]
    while stack:
        c, closing = stack.pop()
        pad = "  " * (len(c) + 1)
        if closing:
            out.append(pad[:-2] + "}")
            continue
        if c:
            counter[0] += 1
            out.append(pad[:-2] + f'subgraph "cluster_{counter[0]}" {{')
            out.append(pad + f'label={_esc(c[-1])}; labeljust=l; style="rounded"; color="#888888"; fontsize=11;')
            stack.append((c, True))
        out.extend(pad + line for line in by_cluster.get(c, ()))
        for ch in sorted(children.get(c, ()), key=_natural, reverse=True):
            stack.append((ch, False))
    for (a, b, _tk, style), m in merged.items():
        attrs = []
        label = m["label"]
        if drawn[a].kind in ("group", "ellipsis") or drawn[b].kind in ("group", "ellipsis"):
            label = (label + "\n" if label else "") + m["shape"]
        if m["n"] > len(m["t"]):
            label = (label + "\n" if label else "") + f"{m['n']} uses"
        if use_grads and m["grad"] is not None and (view == "backward" or label):
            label = (label + "\n" if label else "") + f"|g| {_fmt(m['grad'])}"
        if label:
            attrs.append(f"label={_esc(label)}")
        if style != "solid":
            attrs.append(f"style={style}")
        if use_grads and m["grad"] is not None:
            colour, _ = _colour(m["grad"], lo, hi)
            attrs.append(f'color="{colour}"')
            if _bad(m["grad"]):
                attrs.append("penwidth=2")
        fan = drawn[a].kind in ("leaf", "detached") or drawn[b].kind == "acc"
        if fan and (a, b, _tk, style) not in constrained:
            attrs.append("constraint=false")
        out.append(f"  {ids[a]} -> {ids[b]}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    if use_grads:
        out.append("  " + _legend(lo, hi))
    out.append("}")
    return "\n".join(out) + "\n"


def _node_line(nid: str, d: _Drawn, view: str, use_grads: bool, lo: float, hi: float) -> str:
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
                attrs["fillcolor"] = f'"{_NO_GRAD}"'
        else:
            fill, font = _colour(d.grad, lo, hi)
            attrs["fillcolor"] = f'"{fill}"'
            attrs["fontcolor"] = f'"{font}"'
            lines.append(f"|g| {_fmt(d.grad)}")
            if _bad(d.grad):
                attrs["color"] = f'"{_BAD}"'
                attrs["penwidth"] = "2"
    attr_text = ", ".join(f"{k}={v}" for k, v in attrs.items())
    return f"{nid} [label={_esc(chr(10).join(lines))}, {attr_text}];"


# ------------------------------------------------------------------------------------------------ engines


def find_engine() -> str:
    """The Graphviz layout program to run: ``$TINYGRAD_LSTM_DOT``, else a system ``dot``, else ``graphviz-pure``."""
    env = os.environ.get(_ENV)
    if env:
        found = shutil.which(env)
        if found is None:
            raise RuntimeError(f"{_ENV}={env!r} is not an executable file or a command on PATH")
        return found
    found = shutil.which("dot")
    if found:
        return found
    found = shutil.which("graphviz-pure")
    if found:
        return found
    # pip may install scripts into a directory that is not on PATH (a venv used without activating it).
    for d in {sysconfig.get_path("scripts"), str(Path(sys.executable).parent)}:
        for name in ("graphviz-pure", "graphviz-pure.exe"):
            p = Path(d) / name
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    raise RuntimeError(
        "no Graphviz layout engine found: `pip install graphviz-pure` (no system package needed), install "
        f"Graphviz so that `dot` is on PATH, or set {_ENV} to the path of a dot-compatible program"
    )


_patch_lock = threading.Lock()


@contextmanager
def _engine_for_graphviz() -> Iterator[None]:
    """Point the ``graphviz`` package at our engine for the duration of one call, then put it back.

    The ``graphviz`` package runs ``graphviz.backend.dot_command.DOT_BINARY`` ("dot" from PATH); when that is
    not what ``find_engine`` chose, swap it in only while a call runs, so the user's environment and other
    ``graphviz`` users in the process are left alone afterwards.
    """
    from graphviz.backend import dot_command

    engine = find_engine()
    with _patch_lock:
        prev = dot_command.DOT_BINARY
        dot_command.DOT_BINARY = Path(engine)
        try:
            yield
        finally:
            dot_command.DOT_BINARY = prev


def _digraph_class() -> type:
    import graphviz

    class Digraph(graphviz.Digraph):
        """A ``graphviz.Digraph`` whose pipe/render use the engine ``find_engine`` picks (shows in Jupyter)."""

        def pipe(self, *args: Any, **kwargs: Any) -> Any:
            with _engine_for_graphviz():
                return super().pipe(*args, **kwargs)

        def render(self, *args: Any, **kwargs: Any) -> Any:
            with _engine_for_graphviz():
                return super().render(*args, **kwargs)

    return Digraph


def draw(*roots: Tensor, **kwargs: Any) -> Any:
    """The graph as a ``graphviz`` object (displayed inline in Jupyter); keyword arguments as ``to_dot``.

    It is a ``graphviz.Digraph`` holding ``to_dot``'s statements, with ``pipe``/``render`` running the engine
    that ``find_engine`` picks (a system ``dot`` or the bundled ``graphviz-pure``).
    """
    lines = to_dot(*roots, **kwargs).splitlines()
    # to_dot writes "digraph tinygrad_lstm {", the statements, "}": the Digraph re-adds the frame itself.
    return _digraph_class()(name="tinygrad_lstm", body=[line + "\n" for line in lines[1:-1]])


def render(*roots: Tensor, path: str | os.PathLike, format: str | None = None, **kwargs: Any) -> Path:
    """Lay out and write the graph to ``path`` (svg or png, from ``format`` or the suffix); returns the path.

    The file is written to a temporary name beside it and moved into place, so readers never see half a file.
    Other keyword arguments are ``to_dot``'s.
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in ("svg", "png"):
        raise ValueError(f"render: format must be 'svg' or 'png' (from format= or the file suffix), got {fmt!r}")
    src = to_dot(*roots, **kwargs)
    return _run_engine(src, path, fmt)


def _run_engine(src: str, path: Path, fmt: str) -> Path:
    """Run the layout engine on DOT text and write its output atomically to ``path``."""
    engine = find_engine()
    with atomic_path(path) as tmp:
        proc = subprocess.run(
            [engine, "-Kdot", f"-T{fmt}", "-o", str(tmp)], input=src.encode("utf-8"), capture_output=True, check=False
        )
        if proc.returncode != 0 or os.path.getsize(tmp) == 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise RuntimeError(f"render: {engine} -T{fmt} failed (exit {proc.returncode}): {err}")
    return path
