"""The graph object the renderer and the explorer draw: nodes, edges and clusters as plain data.

``build`` reads the recorded graph once, in the engine's own creation order (``op.seq``), into a full ``Graph``
(one node per op, VJP, leaf, sum or seed). ``shorten`` maps it onto the drawn ``Graph`` (groups for collapsed
scopes, one ellipsis per run of hidden steps, merged edges with gradient norms as floats). ``estimate_size``
guesses the size dot will give a drawn graph, so that the default shortening can be picked by size.
Nothing here knows DOT: ``viz.dot`` writes the text.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine import vertex
from ..tensor import Tensor, get_default_dtype, walk

STEP = re.compile(r"^t=(-?\d+)$")


# ------------------------------------------------------------------------------------------------ plain data


@dataclass
class Node:
    """One node: an op, a VJP, a leaf, a ``+=`` sum, a seed, a collapsed group or an ellipsis of hidden steps."""

    id: str
    kind: str  # op | leaf | vjp | acc | sum | seed | detached | group | ellipsis
    scope: tuple  # the cluster path it is drawn in
    lines: list  # label lines, without the gradient line (the emitter adds it)
    grad: float | None = None  # norm of the gradient of the tensor it stands for
    root: bool = False
    order: int = 0  # minus the longest distance to an output: smallest = farthest from the loss
    tkey: int | None = None  # id() of the vertex (node or leaf) whose gradient ``grad`` is (full graph only)
    shape: str = ""
    members: list = field(default_factory=list)  # full-graph nodes a group or ellipsis stands for


@dataclass
class Edge:
    """One edge, drawn from ``src`` to ``dst`` (forward: data flow; backward: gradient flow)."""

    src: str
    dst: str
    tkey: int  # id() of the vertex whose value travels along it (forward) or whose gradient does (backward)
    shape: str
    grad: float | None = None  # its gradient's norm (drawn graph)
    raw: Any = None  # the gradient array itself (full graph; its norm is taken only if drawn)
    style: str = "solid"
    label: str = ""
    uses: int = 1  # full-graph edges merged into this one
    tensors: dict = field(default_factory=dict)  # tkey -> shape of the tensors merged into it
    constraint: bool = True  # False: left out of dot's ranking (a weight's fan-out to later steps)


@dataclass
class Graph:
    """A whole drawing: nodes in creation order, edges, and what was left out (``notes``)."""

    view: str
    nodes: dict  # id -> Node
    edges: list
    total: int = 0  # nodes of the full (unshortened) graph
    notes: list = field(default_factory=list)

    def clusters(self) -> dict[tuple, list[str]]:
        """Cluster path -> ids of the nodes drawn directly inside it (``()`` is the top level)."""
        out: dict[tuple, list[str]] = {}
        for k, n in self.nodes.items():
            out.setdefault(tuple(n.scope), []).append(k)
        return out


# ------------------------------------------------------------------------------------------------ small helpers


def shape_text(shape: tuple) -> str:
    """A shape as drawn: ``scalar`` or ``(2, 4)``."""
    return "scalar" if shape == () else str(tuple(shape))


def norm(g: Any) -> float | None:
    """The 2-norm of a gradient in float64 (NaN if any entry is NaN, Inf if any is infinite), None if absent."""
    if g is None:
        return None
    a = np.asarray(g, dtype=np.float64).ravel()
    # A plain reduction, not BLAS's dot: on a busy machine a threaded ddot took 16 ms for 32k entries (a
    # 1000-step sequence has a thousand such slice gradients), the reduction 0.02 ms.
    v = float(np.square(a).sum())
    if math.isfinite(v):
        return math.sqrt(v)
    if np.isnan(a).any():
        return math.nan
    # Inf entries, or squares that overflow: the scaled norm tells those apart.
    return float(np.linalg.norm(a)) if np.isfinite(a).all() else math.inf


def is_bad(x: float | None) -> bool:
    """A NaN or infinite norm."""
    return x is not None and not math.isfinite(x)


def summary(data: np.ndarray) -> str:
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


def natural(key: tuple) -> tuple:
    """Sort scope tuples so that t=10 comes after t=9."""
    out = []
    for part in key:
        m = STEP.match(part)
        out.append((0, int(m.group(1)), "") if m else (1, 0, part))
    return tuple(out)


def step_of(scope: tuple) -> tuple[int, int] | None:
    """(index of the first ``t=k`` tag in the scope, k), or None."""
    for i, part in enumerate(scope):
        m = STEP.match(part)
        if m:
            return i, int(m.group(1))
    return None


def is_leaf(v: Any) -> bool:
    """True for a leaf tensor; the graph's other vertices are op nodes."""
    return isinstance(v, Tensor)


def vshape(v: Any) -> tuple:
    """A vertex's shape: a leaf's, or its node's output's."""
    return v.shape if isinstance(v, Tensor) else v.out_shape


def vname(v: Any) -> str | None:
    """A vertex's name: a leaf's, or the name its output tensor was given."""
    return v.name if isinstance(v, Tensor) else v.out_name


def is_const(t: Any) -> bool:
    """A Python number lifted into a one-element tensor: folded into its op's label, not drawn as a node."""
    return (
        isinstance(t, Tensor)
        and not t.requires_grad
        and t.data.size == 1
        and t.name is None
        and t.detached_from is None
    )


def leaf_label(t: Tensor) -> str:
    """A leaf's first label line: its (parameter) name, else what kind of input it is."""
    if t.name:
        return str(t.name)
    return "input (requires_grad)" if t.requires_grad else "input"


def tensor_lines(v: Any, value: np.ndarray | None, show_values: bool) -> list[str]:
    """Shape (and dtype when not the default), and a value summary when asked (where the graph kept the value)."""
    lines = [shape_text(vshape(v))]
    dtype = v.dtype if isinstance(v, Tensor) else v.out_dtype
    if dtype != get_default_dtype():
        lines[0] += " " + str(dtype)
    if show_values:
        lines.append("value not kept" if value is None else summary(value))
    return lines


# ------------------------------------------------------------------------------------------------ reading the engine


def reachable(roots: tuple, who: str = "to_dot") -> list[Any]:
    """Every vertex reachable from the roots (op nodes and leaf tensors) in creation order, leaves first,
    refusing a released graph.

    The order is the engine's own: nodes by their ``seq`` (a topological order), leaves before everything. No
    second topological sort is needed anywhere in the renderer.
    """
    vertices = list(walk(*roots))
    for v in vertices:
        if not is_leaf(v) and v.parents is None:
            raise RuntimeError(
                f"{who}: graph was released by backward() (node {v.name} in scope "
                f"{'/'.join(v.scope) or '<top level>'} has no inputs any more); "
                "pass retain_graph=True to backward() to draw it afterwards"
            )
    # A stable sort keeps walk's order among leaves.
    vertices.sort(key=lambda v: -1 if is_leaf(v) else v.seq)
    return vertices


def values(vertices: list[Any], roots: tuple) -> dict[int, np.ndarray]:
    """id(vertex) -> its value, where the graph has it: a leaf's data, a root's, an output a node saved for its
    VJP, or an input that a consumer saved (``Op.saved`` lists the ``saves`` inputs, then the output). Values
    no backward needs are not kept by the graph (as in PyTorch), so they are not here."""
    out: dict[int, np.ndarray] = {}
    for v in vertices:
        if is_leaf(v):
            out[id(v)] = v.data
            continue
        saved = v.saved or ()
        for k, p in enumerate(v.parents[: len(v.saves)]):
            if k < len(saved) and not is_leaf(p):
                out.setdefault(id(p), np.reshape(saved[k], p.out_shape))
        if v.saves_output and saved:
            out.setdefault(id(v), np.reshape(saved[-1], v.out_shape))
    for r in roots:
        out[id(vertex(r))] = r.data
    return out


def heights(vertices: list[Any]) -> dict[int, int]:
    """Each vertex's longest distance to an output, from the creation order: the layout puts far uses first.

    Going through the nodes from the newest to the oldest, every consumer is final before its inputs are reached.
    """
    height: dict[int, int] = {}
    for v in reversed(vertices):
        if is_leaf(v):
            continue
        h = height.setdefault(id(v), 0) + 1
        for p in v.parents:
            if height.get(id(p), 0) < h:
                height[id(p)] = h
    return height


def build(roots: tuple, view: str, show_values: bool, vertices: list[Any] | None = None) -> Graph:
    """The full graph (nothing shortened) of one view, nodes in creation order."""
    if vertices is None:
        vertices = reachable(roots)
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    present = {id(v) for v in vertices}
    root_ids = {id(vertex(r)) for r in roots}
    height = heights(vertices)
    vals = values(vertices, roots) if show_values else {}

    def add(node: Node) -> None:
        node.order = -height.get(node.tkey, 0) if node.tkey is not None else 0
        nodes[node.id] = node

    def lines_of(v: Any) -> list[str]:
        return tensor_lines(v, vals.get(id(v)), show_values)

    def detached() -> list[tuple[Tensor, Any]]:
        """(detached leaf, the vertex it was cut from) for each cut whose source is in this graph."""
        out = []
        for v in vertices:
            src = v.detached_from if is_leaf(v) else None
            if src is not None and id(vertex(src)) in present:
                out.append((v, vertex(src)))
        return out

    if view == "forward":

        def node_of(v: Any) -> str:
            return f"leaf{id(v)}" if is_leaf(v) else f"op{v.seq}"

        for v in vertices:
            if is_leaf(v):
                if is_const(v) and id(v) not in root_ids:
                    continue
                grad = norm(v.grad) if v.requires_grad else None
                lines = [leaf_label(v), *lines_of(v)]
                add(Node(node_of(v), "leaf", (), lines, grad, id(v) in root_ids, tkey=id(v), shape=shape_text(v.shape)))
                continue
            name = v.out_name
            lines = [v.name + (f" '{name}'" if name else ""), *lines_of(v)]
            consts = [f"{p.data.item():.4g}" for p in v.parents if is_const(p)]
            if consts:
                lines.insert(1, "with " + ", ".join(consts))
            node = Node(node_of(v), "op", tuple(v.scope), lines, norm(v.grad_out), id(v) in root_ids)
            node.tkey, node.shape = id(v), shape_text(v.out_shape)
            add(node)
            gin = v.grads_in
            for i, p in enumerate(v.parents):
                if is_const(p):
                    continue
                g = gin[i] if gin is not None and i < len(gin) else None
                edges.append(Edge(node_of(p), node_of(v), id(p), shape_text(vshape(p)), raw=g))
        for t, src in detached():
            if node_of(t) in nodes:
                edges.append(
                    Edge(node_of(src), node_of(t), id(src), shape_text(t.shape), style="dashed", label="detach")
                )
        return Graph(view, nodes, edges, len(nodes))

    # ---- backward view: one node per VJP, edges along the gradient's direction
    uses: dict[int, int] = {}
    for v in vertices:
        if not is_leaf(v):
            for p, need in zip(v.parents, v.needs):
                if need:
                    uses[id(p)] = uses.get(id(p), 0) + 1

    def target(p: Any) -> str:
        if is_leaf(p):
            return f"acc{id(p)}"
        return f"sum{p.seq}" if uses.get(id(p), 0) > 1 else f"vjp{p.seq}"

    for v in vertices:
        if is_leaf(v):
            if v.requires_grad:
                lines = [leaf_label(v), "AccumulateGrad", *lines_of(v)]
                k = uses.get(id(v), 0)
                if k > 1:
                    lines.insert(2, f"+= ({k} terms)")
                add(Node(f"acc{id(v)}", "acc", (), lines, norm(v.grad), tkey=id(v), shape=shape_text(v.shape)))
            continue
        name = v.out_name
        shape = shape_text(v.out_shape)
        lines = [v.backward_name + (f" '{name}'" if name else ""), *lines_of(v)]
        grad = norm(v.grad_out)
        add(Node(f"vjp{v.seq}", "vjp", tuple(v.scope), lines, grad, tkey=id(v), shape=shape))
        k = uses.get(id(v), 0)
        if k > 1:
            sid = f"sum{v.seq}"
            add(Node(sid, "sum", tuple(v.scope), [f"+= ({k} terms)"], grad, tkey=id(v), shape=shape))
            edges.append(Edge(sid, f"vjp{v.seq}", id(v), shape, raw=v.grad_out))
        gin = v.grads_in
        for i, (p, need) in enumerate(zip(v.parents, v.needs)):
            if not need:
                continue
            g = gin[i] if gin is not None and i < len(gin) else None
            edges.append(Edge(f"vjp{v.seq}", target(p), id(p), shape_text(vshape(p)), raw=g))
    for r in roots:
        if not r.requires_grad:
            continue
        lines = [f"{r.name or 'output'}.backward()", f"seed {shape_text(r.shape)}"]
        add(Node(f"seed{id(r)}", "seed", (), lines, None, True, shape=shape_text(r.shape)))
        raw = r.grad if r._ctx is None else None
        edges.append(Edge(f"seed{id(r)}", target(vertex(r)), id(vertex(r)), shape_text(r.shape), raw=raw))
    for t, src in detached():
        nid = f"det{id(t)}"
        add(Node(nid, "detached", (), [f"{leaf_label(t)} (detached)", shape_text(t.shape)]))
        if is_leaf(src) and not src.requires_grad:
            continue
        edges.append(Edge(nid, target(src), id(src), shape_text(t.shape), style="dashed", label="detach: no gradient"))
    return Graph(view, nodes, edges, len(nodes))


# ------------------------------------------------------------------------------------------------ shortening


def hidden_steps(full: Graph, steps: tuple[int, int] | None) -> dict[tuple, list[int]]:
    """For each scope prefix that holds ``t=k`` clusters: the sorted steps that ``steps`` hides."""
    if steps is None:
        return {}
    per: dict[tuple, set[int]] = {}
    for u in full.nodes.values():
        s = step_of(u.scope)
        if s is not None:
            per.setdefault(u.scope[: s[0]], set()).add(s[1])
    k1, k2 = steps
    out = {}
    for prefix, ks in per.items():
        order = sorted(ks)
        if len(order) > k1 + k2:
            out[prefix] = order[k1 : len(order) - k2]
    return out


def group_depth(scope: tuple, collapse: int | str | None) -> int | None:
    """How many scope levels the group a node falls into keeps, or None when ``collapse`` leaves it alone."""
    if collapse is None:
        return None
    if isinstance(collapse, int):
        return collapse if len(scope) >= collapse else None
    for i, part in enumerate(scope):
        if fnmatch.fnmatchcase(part, collapse):
            return i + 1
    return None


def _worst(a: float | None, b: float | None) -> float | None:
    """Combine two edge norms for a merged edge: NaN/Inf win, else the larger."""
    if a is None:
        return b
    if b is None:
        return a
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def shape_list(shapes: list[str], limit: int = 4) -> str:
    """Shapes with repeats counted: ``(2, 4) x2, (2, 12)``."""
    counts: dict[str, int] = {}
    for s in shapes:
        counts[s] = counts.get(s, 0) + 1
    parts = [s + (f" x{c}" if c > 1 else "") for s, c in counts.items()]
    return ", ".join(parts[:limit]) + (f", +{len(parts) - limit} more" if len(parts) > limit else "")


def shorten(full: Graph, collapse: int | str | None, steps: tuple | None) -> Graph:
    """Map the full graph onto drawn nodes (groups for collapsed scopes, one ellipsis per run of hidden steps)."""
    view = full.view
    hidden = {prefix: set(ks) for prefix, ks in hidden_steps(full, steps).items()}
    span = {prefix: (min(ks), max(ks), len(ks)) for prefix, ks in hidden.items()}
    rep: dict[str, str] = {}
    drawn: dict[str, Node] = {}
    for uid, u in full.nodes.items():
        s = step_of(u.scope) if hidden else None
        if s is not None and s[1] in hidden.get(u.scope[: s[0]], ()):
            prefix = u.scope[: s[0]]
            key = "ell" + "\x1f".join(prefix)
            if key not in drawn:
                lo, hi, n = span[prefix]
                lines = [f"... {n} step{'s' if n != 1 else ''} ...", f"(t={lo} .. t={hi})"]
                drawn[key] = Node(key, "ellipsis", prefix, lines, order=u.order)
            drawn[key].members.append(u)
            drawn[key].order = min(drawn[key].order, u.order)
            rep[uid] = key
            continue
        d = group_depth(u.scope, collapse)
        if d is not None:
            gscope = u.scope[:d]
            key = "grp" + "\x1f".join(gscope)
            if key not in drawn:
                drawn[key] = Node(key, "group", gscope[:-1], [" / ".join(gscope)], order=u.order)
            drawn[key].members.append(u)
            drawn[key].order = min(drawn[key].order, u.order)
            rep[uid] = key
            continue
        drawn[uid] = Node(uid, u.kind, u.scope, list(u.lines), u.grad, u.root, u.order, u.tkey, u.shape, [u])
        rep[uid] = uid

    if hidden:
        # A leaf used only inside hidden steps (that step's input slice) disappears into the ellipsis too.
        near: dict[str, set] = {}
        for e in full.edges:
            if e.src in rep and e.dst in rep:
                near.setdefault(e.src, set()).add(rep[e.dst])
                near.setdefault(e.dst, set()).add(rep[e.src])
        for uid, u in full.nodes.items():
            if u.kind in ("leaf", "acc", "detached") and not u.root and rep.get(uid) == uid:
                targets = near.get(uid, set())
                if len(targets) == 1:
                    (key,) = targets
                    if key.startswith("ell"):
                        del drawn[uid]
                        rep[uid] = key
                        drawn[key].members.append(u)

    # Merge edges between drawn nodes: one edge per (source, target, tensor, style); internal edges vanish.
    merged: dict[tuple, Edge] = {}
    raws: dict[tuple, list] = {}
    crossing: dict[str, set[int]] = {}
    ins: dict[str, dict[int, str]] = {}
    outs: dict[str, dict[int, str]] = {}
    for e in full.edges:
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
            m = merged[k] = Edge(a, b, k[2], e.shape, style=e.style, label=e.label, uses=0)
            raws[k] = []
        m.uses += 1
        m.tensors[e.tkey] = e.shape
        if not hid and e.raw is not None:
            raws[k].append(e.raw)
    for k, m in merged.items():
        g = None
        for raw in raws[k]:
            g = _worst(g, norm(raw))
        m.grad = g
        if len(m.tensors) > 1:
            m.shape = shape_list(list(m.tensors.values()))

    for key, d in drawn.items():
        if d.kind not in ("group", "ellipsis"):
            continue
        n_ops = sum(u.kind in ("op", "vjp", "sum") for u in d.members)
        d.lines.append(f"{n_ops} {'ops' if view == 'forward' else 'VJPs'}")
        for tag, table in (("in", ins.get(key, {})), ("out", outs.get(key, {}))):
            if table:
                d.lines.append(f"{tag}: " + shape_list(list(table.values())))
        # The group's gradient: the gradients crossing its boundary (one per tensor); red if any member is bad.
        gs: dict[int, float] = {}
        cross = crossing.get(key, set())
        for u in d.members:
            if u.grad is not None and u.tkey in cross:
                gs[u.tkey] = u.grad
        bad = [u for u in d.members if is_bad(u.grad)]
        if bad:
            d.grad = math.nan if any(math.isnan(u.grad) for u in bad) else math.inf
            d.lines.append(f"NaN/Inf in {len(bad)} node{'s' if len(bad) != 1 else ''}")
        elif gs:
            d.grad = math.sqrt(sum(v * v for v in gs.values()))

    out = Graph(view, drawn, list(merged.values()), full.total)
    mark_fans(out)
    return out


def mark_fans(g: Graph) -> None:
    """A leaf shared by many steps (a weight) keeps only the edge to its first use in dot's ranking.

    The other edges are drawn but left out of the ranking (``constraint=false``), so the leaf sits beside that
    use and dot's layout time does not explode on long unrolls. In the backward view the same holds for the
    ``AccumulateGrad`` end of the fan.
    """
    ranked: dict[str, tuple] = {}
    for i, e in enumerate(g.edges):
        a, b = g.nodes[e.src], g.nodes[e.dst]
        if a.kind in ("leaf", "detached"):
            cand = (b.order, i)
            if e.src not in ranked or cand < ranked[e.src]:
                ranked[e.src] = cand
        if b.kind == "acc":
            cand = (a.order, i)
            if e.dst not in ranked or cand < ranked[e.dst]:
                ranked[e.dst] = cand
    keep = {v[1] for v in ranked.values()}
    for i, e in enumerate(g.edges):
        fan = g.nodes[e.src].kind in ("leaf", "detached") or g.nodes[e.dst].kind == "acc"
        e.constraint = not fan or i in keep


def truncate(g: Graph, keep: int) -> int:
    """Last resort above max_nodes: keep the ``keep`` nodes nearest the roots (breadth first), drop the rest."""
    adj: dict[str, list[str]] = {}
    for e in g.edges:
        adj.setdefault(e.src, []).append(e.dst)
        adj.setdefault(e.dst, []).append(e.src)
    kept: list[str] = []
    seen: set[str] = set()
    queue = [k for k, d in g.nodes.items() if d.root] or list(g.nodes)[:1]
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
    keep_set = set(kept)
    dropped = len(g.nodes) - len(keep_set)
    g.nodes = {k: d for k, d in g.nodes.items() if k in keep_set}
    g.edges = [e for e in g.edges if e.src in keep_set and e.dst in keep_set]
    return dropped


# ------------------------------------------------------------------------------------------------ size estimate

# Points per character and per label line at the fonts the emitter uses (Helvetica 9-10 pt), dot's default
# separations, and the padding of a cluster frame; compared with graphviz-pure renders of LSTM, GRU and RNN
# graphs (3 to 50 steps, both views).
_CHAR_PT = 5.4
_LINE_PT = 11.0
_NODESEP_PT = 18.0
_RANKSEP_PT = 36.0
_CLUSTER_PAD_PT = 16.0
_PX_PER_PT = 4.0 / 3.0
_FLAT_RUN = 9  # from this many consecutive steps on, dot lays the steps out side by side
_FLAT_STEPS = 4.5  # ... and the drawing is then about this many steps tall


def node_box(n: Node, with_grad: bool) -> tuple[float, float]:
    """(width, height) in points dot will give the node, from its label and shape."""
    lines = list(n.lines) + (["|g| 0.00e+00"] if with_grad and n.grad is not None else [])
    w = max((len(s) for s in lines), default=1) * _CHAR_PT + 16.0
    h = len(lines) * _LINE_PT + 8.0
    if n.kind in ("op", "vjp"):  # ellipses enclose the text box
        w, h = w * 1.3, h * 1.3
    elif n.kind == "sum":  # circles
        w = h = max(w, h) * 1.1
    return w, h


def estimate_size(g: Graph, with_grad: bool = True) -> tuple[float, float]:
    """The (width, height) in px that dot is expected to give the drawing (rankdir TB; swapped for LR).

    Height: ranks by the longest path over the ranking edges (nodes taken in their distance-to-output order,
    which comes from the creation order), each as tall as its tallest node. Width: see below. Measured against
    graphviz-pure renders the estimate is mostly within 0.7x-1.5x of the real size, larger rather than smaller
    (the tests render the default drawings and check them against the bound).
    """
    if not g.nodes:
        return 0.0, 0.0
    forward = g.view == "forward"
    # Forward edges run from far-from-output to near; backward ones the other way round.
    # (A ``+=`` node comes before the VJP of the same tensor: the sum feeds it.)
    order = sorted(
        g.nodes,
        key=lambda k: (g.nodes[k].order, 0) if forward else (-g.nodes[k].order, g.nodes[k].kind != "sum"),
    )
    pos = {k: i for i, k in enumerate(order)}
    out_edges: dict[str, list[str]] = {}
    labelled = False
    for e in g.edges:
        if e.constraint and pos[e.src] < pos[e.dst]:
            out_edges.setdefault(e.src, []).append(e.dst)
        labelled = labelled or bool(e.label) or (with_grad and e.grad is not None and g.view == "backward")
    # Edge labels make dot put a label rank between every two ranks.
    step = 2 if labelled else 1
    rank = dict.fromkeys(order, 0)
    for k in order:
        r = rank[k] + step
        for d in out_edges.get(k, ()):
            if rank[d] < r:
                rank[d] = r
    n_ranks = max(rank.values()) + 1
    boxes = {k: node_box(n, with_grad) for k, n in g.nodes.items()}
    row_h: dict[int, float] = {}
    for k, (_, h) in boxes.items():
        row_h[rank[k]] = max(row_h.get(rank[k], 0.0), h)
    height = sum(row_h.values()) + (n_ranks - len(row_h)) * 12.0 + (n_ranks - 1) / step * _RANKSEP_PT
    # The sum above came out at 0.87x-0.94x the real height of the stacked drawings measured (1 to 8 steps of
    # LSTM, GRU and RNN, both views): dot's rank gaps are a little larger than ranksep where edges bend.
    height *= 1.15

    # Width: clusters bottom-up. dot (graphviz-pure, measured on LSTM/GRU/RNN unrolls of 1 to 50 steps, both
    # views) has two regimes: up to 8 consecutive step clusters it stacks them (the drawing is one step wide
    # and grows downwards, as the rank count above says); from 9 on it lays them out side by side (the width
    # grows with every step and the height stops growing: about 4 steps' worth). Steps cut by an ellipsis
    # form separate runs.
    members = g.clusters()
    paths = set()
    for c in members:
        for i in range(len(c) + 1):
            paths.add(c[:i])
    children: dict[tuple, list[tuple]] = {}
    for p in paths:
        if p:
            children.setdefault(p[:-1], []).append(p)
    widths: dict[tuple, float] = {}
    longest = 0  # the longest run of consecutive steps laid out side by side
    for p in sorted(paths, key=len, reverse=True):
        per: dict[int, float] = {}
        for k in members.get(p, ()):
            per[rank[k]] = per.get(rank[k], 0.0) + boxes[k][0] + _NODESEP_PT
        kids = children.get(p, [])
        steps = sorted((int(m.group(1)), c) for c in kids if (m := STEP.match(c[-1])))
        others = [c for c in kids if not STEP.match(c[-1])]
        run = best = 0
        for i, (t, _) in enumerate(steps):
            run = run + 1 if i and t == steps[i - 1][0] + 1 else 1
            best = max(best, run)
        if best >= _FLAT_RUN:
            longest = max(longest, best)
            step_w = sum(widths[c] + _NODESEP_PT for _, c in steps)
        else:
            step_w = max((widths[c] + _NODESEP_PT for _, c in steps), default=0.0)
        inner = max(per.values(), default=0.0) + step_w + sum(widths[c] + _NODESEP_PT for c in others)
        label = len(p[-1]) * _CHAR_PT if p else 0.0
        widths[p] = max(inner, label) + (_CLUSTER_PAD_PT if p else 0.0)
    if longest:
        height *= min(1.0, _FLAT_STEPS / longest)
    width = widths[()]
    return width * _PX_PER_PT, height * _PX_PER_PT
