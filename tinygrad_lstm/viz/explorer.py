"""An interactive page of the unrolled graph and its gradients: one self-contained HTML file, no network.

``Explorer`` reads the recorded graph once (through ``viz.graph``, the renderer's own graph object, both views)
and writes it into the page as compressed JSON beside a vendored WebAssembly build of Graphviz
(``vendor/viz-global.js``) and the page's script (``explorer.js``). The browser lays out only what is unfolded:
a long sequence opens as one box per time step, and unfolding a step lays out that step's ops.

Importing ``tinygrad_lstm`` or ``tinygrad_lstm.viz`` does not import this module; ``viz.explore`` does.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import vertex
from ..io import atomic_path
from ..ops import Op
from ..tensor import Tensor
from . import graph as _graph

__all__ = ["Explorer"]

_OPTIONS = ("view", "show_values", "rankdir", "show_grads")
# to_dot options that choose a static shortening: the page folds and unfolds by itself instead.
_IGNORED = ("collapse", "steps", "max_nodes", "max_size", "full")
_RANKDIRS = ("TB", "LR", "BT", "RL")
_KINDS = ("op", "leaf", "vjp", "acc", "sum", "seed", "detached")


def _num(x: float | None, digits: int = 12) -> Any:
    """A float for JSON: ``digits`` significant digits, NaN/Inf as strings, None as null."""
    if x is None:
        return None
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return float(f"{x:.{digits}g}")


def _stats(a: np.ndarray) -> tuple[Any, Any, Any]:
    """(min, mean, max) of a tensor's values, in float64, for the info panel."""
    if a.size == 0 or a.dtype.kind not in "biuf":
        return None, None, None
    f = np.asarray(a, dtype=np.float64)
    with np.errstate(all="ignore"):
        return _num(float(f.min()), 6), _num(float(f.mean()), 6), _num(float(f.max()), 6)


class _Table:
    """Strings stored once: the page refers to them by index (labels, shapes and scopes repeat every step)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.items: list[str] = []

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.items)
            self.items.append(s)
        return i


class Explorer:
    """The interactive page of a graph: ``save(path)`` writes it, ``_repr_html_`` shows it inline in Jupyter.

    Built by ``viz.explore(*roots, recording=None, **options)`` after ``backward(retain_graph=True)``; the
    graph is read once, when the Explorer is made. ``options``: ``view`` (the view the page opens in),
    ``show_values`` (value summaries in the labels),
    ``rankdir`` ("TB", "LR", ...), ``show_grads`` (gradient colours); ``to_dot``'s shortening options
    (``collapse``, ``steps``, ``max_nodes``, ``max_size``, ``full``) are accepted and have no effect, since the
    page folds and unfolds by itself. In the page, ``window.graphExplorer`` scripts it (see the README).
    """

    def __init__(self, *roots: Tensor, recording: Any = None, **options: Any) -> None:
        if not roots:
            raise ValueError("explore: give at least one Tensor to draw")
        for i, r in enumerate(roots):
            if not isinstance(r, Tensor):
                raise TypeError(f"explore: root {i} is a {type(r).__name__}, not a Tensor")
        unknown = sorted(set(options) - set(_OPTIONS) - set(_IGNORED))
        if unknown:
            raise TypeError(
                f"explore: unknown option(s) {unknown}; options are {', '.join(_OPTIONS + _IGNORED)} (as to_dot's)"
            )
        view = options.get("view", "forward")
        if view not in ("forward", "backward"):
            raise ValueError(f"explore: view must be 'forward' or 'backward', got {view!r}")
        rankdir = options.get("rankdir", "TB")
        if rankdir not in _RANKDIRS:
            raise ValueError(f"explore: rankdir must be one of {_RANKDIRS}, got {rankdir!r}")
        if recording is not None and not all(hasattr(recording, m) for m in ("layers", "grad_norms", "times")):
            raise TypeError(
                f"explore: recording must be a tinygrad_lstm.bptt Recording (from `with bptt.record() as rec:`), "
                f"got {type(recording).__name__}"
            )
        self._tensors = _graph.reachable(roots, "explore")
        self._ids: dict[tuple[str, int], str] = {}
        self._data = self._collect(roots, bool(options.get("show_values", False)), rankdir, recording)
        self._data["showGrads"] = bool(options.get("show_grads", True))
        self._data["view"] = view
        self._html: str | None = None

    # -- reading the graph
    def _collect(self, roots: tuple, show_values: bool, rankdir: str, recording: Any) -> dict:
        strings = _Table()
        scopes = _Table()
        scopes("")
        tensors = self._tensors  # the graph's vertices: op nodes and leaf tensors, in creation order
        tindex = {id(v): i for i, v in enumerate(tensors)}
        vals = _graph.values(tensors, roots)  # where the graph kept a value (no backward needs the others)
        keys = ("name", "op", "shape", "dtype", "min", "mean", "max", "kept", "grad", "seq")
        tcols: dict[str, list] = {k: [] for k in keys}
        for v in tensors:
            leaf = _graph.is_leaf(v)
            value = vals.get(id(v))
            lo, mean, hi = (None, None, None) if value is None else _stats(value)
            g = _graph.norm((v.grad if v.requires_grad else None) if leaf else v.grad_out)
            tcols["name"].append(strings(_graph.vname(v) or ""))
            tcols["op"].append(strings("leaf" if leaf else v.name))
            tcols["shape"].append(strings(_graph.shape_text(_graph.vshape(v))))
            tcols["dtype"].append(strings(str(v.dtype if leaf else v.out_dtype)))
            tcols["min"].append(lo)
            tcols["mean"].append(mean)
            tcols["max"].append(hi)
            tcols["kept"].append(0 if value is None else 1)
            tcols["grad"].append(_num(g))
            tcols["seq"].append(-1 if leaf else v.seq)

        # The two views' edges carry the same gradient arrays (an op's grads_in): take each norm once.
        norms: dict[int, Any] = {}

        def edge_norm(raw: Any) -> Any:
            if raw is None:
                return None
            k = id(raw)
            if k not in norms:
                norms[k] = _num(_graph.norm(raw))
            return norms[k]

        views = {}
        for view in ("forward", "backward"):
            full = _graph.build(roots, view, show_values, tensors)
            _graph.mark_fans(full)
            ids = list(full.nodes)
            pos = {k: i for i, k in enumerate(ids)}
            ncols: dict[str, list] = {k: [] for k in ("id", "kind", "scope", "label", "grad", "tensor", "root")}
            for k, n in full.nodes.items():
                ncols["id"].append(k)
                ncols["kind"].append(_KINDS.index(n.kind))
                ncols["scope"].append(scopes("/".join(n.scope)))
                ncols["label"].append(strings("\n".join(n.lines)))
                ncols["grad"].append(_num(n.grad))
                ncols["tensor"].append(tindex.get(n.tkey, -1) if n.kind != "seed" else -1)
                ncols["root"].append(1 if n.root else 0)
                if n.tkey is not None and n.kind in ("op", "leaf", "vjp", "acc"):
                    self._ids[(view, n.tkey)] = k
            ecols: dict[str, list] = {k: [] for k in ("src", "dst", "grad", "shape", "style", "label", "constraint")}
            for e in full.edges:
                ecols["src"].append(pos[e.src])
                ecols["dst"].append(pos[e.dst])
                ecols["grad"].append(edge_norm(e.raw))
                ecols["shape"].append(strings(e.shape))
                ecols["style"].append(0 if e.style == "solid" else 1)
                ecols["label"].append(strings(e.label))
                ecols["constraint"].append(1 if e.constraint else 0)
            views[view] = {"nodes": ncols, "edges": ecols, "total": full.total}

        data = {
            "version": 1,
            "rankdir": rankdir,
            "kinds": list(_KINDS),
            "strings": strings.items,
            "scopes": scopes.items,
            "tensors": tcols,
            "views": views,
            "series": self._states(tindex),
            "recording": self._recording(recording),
        }
        return data

    def _states(self, tindex: dict[int, int]) -> list[dict]:
        """Recurrent states: tensors made in one ``t=k`` step and read by a later step of the same sequence.

        The i-th such tensor of every step (in creation order) is the same state through time (an LSTM's h
        and c), so each forms one series: its gradient norm at every step, for the info panel's plot.
        """
        step_of: dict[int, tuple] = {}
        nodes = [v for v in self._tensors if not _graph.is_leaf(v)]
        for v in nodes:
            s = _graph.step_of(tuple(v.scope))
            if s is not None:
                step_of[id(v)] = (tuple(v.scope[: s[0]]), s[1])
        crossing: dict[tuple, dict[int, list]] = {}
        seen: set[int] = set()
        for v in nodes:
            if id(v) not in step_of:
                continue
            prefix, k = step_of[id(v)]
            for p in v.parents:
                sp = step_of.get(id(p))
                if sp is not None and sp[0] == prefix and sp[1] < k and id(p) not in seen:
                    seen.add(id(p))
                    crossing.setdefault(prefix, {}).setdefault(sp[1], []).append(p)
        series = []
        for prefix, per_step in crossing.items():
            slots: dict[int, list] = {}
            for k in sorted(per_step):
                for i, p in enumerate(sorted(per_step[k], key=lambda x: x.seq)):
                    slots.setdefault(i, []).append((k, p))
            for i, items in slots.items():
                first = items[0][1]
                name = first.out_name or f"{first.name} #{i}"
                series.append(
                    {
                        "name": name,
                        "prefix": "/".join(prefix),
                        "t": [k for k, _ in items],
                        "tensor": [tindex[id(p)] for _, p in items],
                    }
                )
        return series

    @staticmethod
    def _recording(rec: Any) -> list[dict] | None:
        """The gradient norms through time from a bptt Recording, per recorded layer and state."""
        if rec is None:
            return None
        out = []
        for layer, direction, kind in rec.layers():
            for name in ("h", "c") if kind == "lstm" else ("h",):
                try:
                    norms = rec.grad_norms(name, layer=layer, direction=direction)
                    times = rec.times(layer, direction)
                except (RuntimeError, KeyError, ValueError) as e:
                    raise ValueError(f"explore: recording has no gradients for {name!r} of layer {layer}: {e}") from e
                out.append(
                    {
                        "label": f"{kind} layer {layer}{' reverse' if direction else ''}: ||dL/d{name}_t||",
                        "t": [int(x) for x in times],
                        "norm": [_num(float(x)) for x in norms],
                    }
                )
        return out

    # -- public
    def node_id(self, tensor: Any, view: str = "forward") -> str:
        """The page's id (``data-node``) of the node standing for ``tensor`` (or a graph node) in ``view``."""
        if view not in ("forward", "backward"):
            raise ValueError(f"Explorer.node_id: view must be 'forward' or 'backward', got {view!r}")
        v = vertex(tensor) if isinstance(tensor, Tensor) else tensor
        key = self._ids.get((view, id(v)))
        if key is None:
            shape = _graph.vshape(v) if isinstance(v, (Tensor, Op)) else "?"
            raise KeyError(f"Explorer.node_id: tensor of shape {tuple(shape)} is not drawn in the {view} view")
        return key

    @property
    def num_nodes(self) -> dict[str, int]:
        """How many nodes each view has unfolded (forward ops and leaves; backward VJPs, sums, leaves)."""
        return {v: d["total"] for v, d in self._data["views"].items()}

    def html(self) -> str:
        """The whole page: one HTML document with every script, style and datum inside."""
        if self._html is None:
            self._html = _page(self._data)
        return self._html

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` (atomically: readers never see half a file); returns the path."""
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"Explorer.save: {path} is a directory; give a file name such as graph.html")
        text = self.html()
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        # An iframe keeps the page's script and its window.graphExplorer apart from the notebook's. srcdoc (not
        # a data: URL, where the WebAssembly loader finds no base URL); the page's characters stay raw, so the
        # host document must be UTF-8, as Jupyter's is (character references to U+0080-U+009F would be
        # remapped by HTML parsers, and the vendored script embeds its WebAssembly in such characters).
        return (
            f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" '
            'style="width:100%;height:720px;border:1px solid #ccc" sandbox="allow-scripts" '
            'title="tinygrad_lstm graph explorer"></iframe>'
        )


def _asset(*parts: str) -> str:
    return resources.files(__package__).joinpath(*parts).read_text(encoding="utf-8")


def _page(data: dict) -> str:
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")
    packed = base64.b64encode(gzip.compress(payload, compresslevel=9, mtime=0)).decode("ascii")
    parts = {
        "STYLE": _asset("explorer.css"),
        "VIZJS": _asset("vendor", "viz-global.js"),
        "EXPLORER": _asset("explorer.js"),
        "DATA": packed,
    }
    # The template marks each insertion point as <!--@NAME@-->; each piece goes in once, as is (the refresh
    # tool checks that the vendored script holds no "</script").
    out = []
    for i, chunk in enumerate(_asset("explorer.html").split("<!--@")):
        if i == 0:
            out.append(chunk)
            continue
        name, rest = chunk.split("@-->", 1)
        out.append(parts[name])
        out.append(rest)
    return "".join(out)
