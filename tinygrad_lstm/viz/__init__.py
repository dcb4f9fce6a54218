"""Draw the engine's own graph with Graphviz: clusters per module call and time step, gradients on top.

``to_dot`` reads the recorded graph (op nodes and leaf tensors: a node's ``parents``, ``scope``, ``seq``,
``out_shape``, ``out_name``, ``saved``, ``grad_out`` and ``grads_in``) into a graph object (``viz.graph``: nodes,
edges, clusters as plain data, in the engine's creation order) and writes DOT text from it (``viz.dot``); it
needs no Graphviz. ``draw`` wraps that text in a
``graphviz.Digraph`` (shown inline by Jupyter) and ``render`` writes an SVG or PNG file. Both run the layout
program that ``viz.layout.find_engine`` finds: ``TINYGRAD_LSTM_DOT``, a system ``dot``, then the executable of
the ``graphviz-pure`` wheel, so rendering works right after ``pip install`` with no system package.
``explore`` writes an interactive page of the same graph (``viz.explorer``, imported only when called).

Two views of one graph:

* ``view="forward"``: leaves (parameters by dotted name, inputs) and ops, nested in one cluster per scope tag
  (``lstm`` > ``t=3`` > ``cell``). A weight used at every time step is one node whose edges fan out to each step.
* ``view="backward"``: what BPTT runs: one node per op's VJP (``TanhBackward``), edges in the direction the
  gradient flows, a ``+= (k terms)`` node wherever gradients from several uses are summed, and one
  ``AccumulateGrad`` node per leaf at the end.

After ``backward(retain_graph=True)`` nodes and edges carry gradient norms, coloured on a log scale (NaN and Inf
in red), so vanishing and exploding gradients can be seen. A drawing is readable by default: when the whole
graph would be larger than ``max_size`` pixels (estimated before layout) or has more than ``max_nodes`` nodes,
the renderer keeps the first and last steps, then collapses scope levels, and says on the drawing what it left
out; ``full=True`` draws every node. ``steps=(k1, k2)`` and ``collapse`` choose the shortening by hand.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..tensor import Tensor
from . import graph as _graph
from .dot import emit
from .layout import digraph_class, find_engine, run_engine

if TYPE_CHECKING:
    from .explorer import Explorer

__all__ = ["Explorer", "draw", "explore", "find_engine", "render", "to_dot"]

_RANKDIRS = ("TB", "LR", "BT", "RL")
_VIEWS = ("forward", "backward")
# A drawing up to this size (px, as the SVG is shown at 100%) is drawn whole by default: a few steps of an
# LSTM or GRU, both views. Width is the tighter bound: long unrolls grow sideways, and a tall drawing scrolls.
MAX_SIZE = (6000, 12000)


def _check_args(view: str, collapse: Any, steps: Any, rankdir: str, max_nodes: Any, max_size: Any) -> tuple:
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
    if max_size is not None:
        ok = isinstance(max_size, (tuple, list)) and len(max_size) == 2
        ok = ok and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and v > 0 for v in max_size
        )
        if not ok:
            raise ValueError(f"to_dot: max_size must be None or a pair (width, height) of px > 0, got {max_size!r}")
    return steps


def _plans(full: _graph.Graph, collapse: Any, steps: tuple | None) -> list[tuple]:
    """The requested shortening, then progressively shorter ones: fewer steps, then coarser collapse."""
    plans: list[tuple] = [(collapse, steps)]
    if any(_graph.step_of(u.scope) for u in full.nodes.values()):
        for k in (3, 2, 1):
            if steps is None or k < min(steps[0], steps[1]) or steps[0] + steps[1] > 2 * k:
                plans.append((collapse, (k, k)))
    depth = max((len(u.scope) for u in full.nodes.values()), default=0)
    last_steps = plans[-1][1]
    for d in range(depth, 0, -1):
        plans.append((d, last_steps))
    return plans


def _size_text(size: tuple[float, float]) -> str:
    return f"{size[0]:,.0f} x {size[1]:,.0f} px"


def layout_graph(
    *roots: Tensor,
    view: str = "forward",
    collapse: int | str | None = None,
    steps: tuple[int, int] | None = None,
    show_grads: bool = True,
    show_values: bool = False,
    rankdir: str = "TB",
    max_nodes: int = 2000,
    max_size: tuple[int, int] | None = MAX_SIZE,
    full: bool = False,
    who: str = "to_dot",
) -> tuple[_graph.Graph, bool]:
    """The drawn graph object ``to_dot`` writes (and whether gradients are shown); arguments as ``to_dot``."""
    if not roots:
        raise ValueError(f"{who}: give at least one Tensor to draw")
    for i, r in enumerate(roots):
        if not isinstance(r, Tensor):
            raise TypeError(f"{who}: root {i} is a {type(r).__name__}, not a Tensor")
    steps = _check_args(view, collapse, steps, rankdir, max_nodes, max_size)
    whole = _graph.build(roots, view, show_values, _graph.reachable(roots, who))
    has_grads = any(u.grad is not None for u in whole.nodes.values() if u.kind in ("op", "vjp", "acc", "leaf"))
    use_grads = show_grads and has_grads
    notes: list[str] = []

    def size_of(g: _graph.Graph) -> tuple[float, float]:
        w, h = _graph.estimate_size(g, use_grads)
        return (h, w) if rankdir in ("LR", "RL") else (w, h)

    def fits(g: _graph.Graph) -> bool:
        if len(g.nodes) > max_nodes:
            return False
        if max_size is None:
            return True
        w, h = size_of(g)
        return w <= max_size[0] and h <= max_size[1]

    if full:
        drawn = _graph.shorten(whole, collapse, steps)
    else:
        plans = _plans(whole, collapse, steps)
        drawn, chosen, first_size = None, plans[0], None
        for i, plan in enumerate(plans):
            if plan == (None, None) and len(whole.nodes) > max_nodes and i + 1 < len(plans):
                continue  # nothing to shorten: every node would be drawn
            drawn, chosen = _graph.shorten(whole, *plan), plan
            if i == 0 and len(drawn.nodes) <= max_nodes and max_size is not None:
                first_size = size_of(drawn)
            if fits(drawn):
                break
        if chosen != plans[0]:
            what = []
            if chosen[1] is not None and chosen[1] != steps:
                hidden = _graph.hidden_steps(whole, chosen[1])
                n_hidden = sum(len(v) for v in hidden.values())
                what.append(f"steps={chosen[1]} ({n_hidden} steps hidden)")
            if chosen[0] != collapse:
                what.append(f"collapse={chosen[0]}")
            if first_size is None:
                why = f"{whole.total} nodes exceed max_nodes={max_nodes}"
            else:
                why = f"the whole drawing would be about {_size_text(first_size)}, over max_size={tuple(max_size)}"
            msg = f"{why}: drawn with {', '.join(what)}; full=True draws every node"
            notes.append(msg)
            warnings.warn(f"{who}: {msg}", stacklevel=3)
        if len(drawn.nodes) > max_nodes:
            dropped = _graph.truncate(drawn, max_nodes)
            msg = f"{dropped} nodes farthest from the outputs are not drawn (max_nodes={max_nodes})"
            notes.append(msg)
            warnings.warn(f"{who}: {msg}", stacklevel=3)
    if show_grads and not has_grads:
        msg = "no gradients recorded: call backward(retain_graph=True) first to see gradient norms"
        notes.append(msg)
        warnings.warn(f"{who}: {msg}", stacklevel=3)
    drawn.notes = notes
    return drawn, use_grads


def to_dot(
    *roots: Tensor,
    view: str = "forward",
    collapse: int | str | None = None,
    steps: tuple[int, int] | None = None,
    show_grads: bool = True,
    show_values: bool = False,
    rankdir: str = "TB",
    max_nodes: int = 2000,
    max_size: tuple[int, int] | None = MAX_SIZE,
    full: bool = False,
) -> str:
    """DOT text for the graph that produced ``roots``, read from the recorded nodes (no Graphviz needed).

    ``view``: "forward" (tensors and ops) or "backward" (one node per VJP, gradient direction).
    ``collapse``: a scope name (an fnmatch pattern such as "cell" or "t=*") or an int depth: every scope
    cluster at that level becomes one node showing its in/out shapes. ``steps=(k1, k2)``: draw the first k1
    and last k2 ``t=k`` steps and one ellipsis node for the rest. ``show_grads``: gradient norms after
    ``backward(retain_graph=True)`` (``grad_out`` is the latest backward's; leaf ``.grad`` accumulates).
    ``show_values``: a short value summary per node. When the drawing would be wider or taller than
    ``max_size`` (width, height) px (estimated before layout; None: no size limit) or have more than
    ``max_nodes`` nodes, it is shortened automatically (fewer steps, then coarser collapse, then a cut), with a
    warning and a note in the drawing's title. ``full=True`` turns all automatic shortening off.
    """
    drawn, use_grads = layout_graph(
        *roots,
        view=view,
        collapse=collapse,
        steps=steps,
        show_grads=show_grads,
        show_values=show_values,
        rankdir=rankdir,
        max_nodes=max_nodes,
        max_size=max_size,
        full=full,
    )
    return emit(drawn, rankdir, use_grads)


def draw(*roots: Tensor, **kwargs: Any) -> Any:
    """The graph as a ``graphviz`` object (displayed inline in Jupyter); keyword arguments as ``to_dot``.

    It is a ``graphviz.Digraph`` holding ``to_dot``'s statements, with ``pipe``/``render`` running the engine
    that ``find_engine`` picks (a system ``dot`` or the bundled ``graphviz-pure``).
    """
    lines = to_dot(*roots, **kwargs).splitlines()
    # to_dot writes "digraph tinygrad_lstm {", the statements, "}": the Digraph re-adds the frame itself.
    return digraph_class()(name="tinygrad_lstm", body=[line + "\n" for line in lines[1:-1]])


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
    return run_engine(src, path, fmt)


def explore(*roots: Tensor, path: str | os.PathLike | None = None, recording: Any = None, **options: Any) -> Explorer:
    """An interactive page of the graph (forward and backward, foldable, with per-step gradients).

    Call after ``backward(retain_graph=True)``. ``options`` as ``to_dot``'s where they apply (``view``: the view
    the page opens in, ``show_values``, ``show_grads``, ``rankdir``; the shortening options have no effect: the
    page folds by itself). ``recording``: a ``bptt`` Recording whose gradient-norm-through-time plot goes beside the
    graph. ``path``: save the page there at once. See ``viz.explorer.Explorer``.
    """
    from .explorer import Explorer

    ex = Explorer(*roots, recording=recording, **options)
    if path is not None:
        ex.save(path)
    return ex


def __getattr__(name: str) -> Any:
    # ``viz.Explorer`` without importing the explorer module when the package is imported.
    if name == "Explorer":
        from .explorer import Explorer

        return Explorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
