"""``jvp`` and ``vjp`` as functions of a function, in the shape of ``torch.func.jvp`` and ``torch.func.vjp``.

``jvp`` runs ``fn`` once in forward mode (``engine.DualLevel``): every op computes its output's tangent from its
inputs' with its ``jvp`` (ops.py, beside its VJP), so J u comes out with the values, without a graph, under
``no_grad`` as well. With ``directions=True`` every tangent carries a leading axis of k directions and one pass
gives J u_1 ... J u_k. ``vjp`` records ``fn`` and hands back a function that runs the engine's backward from the
outputs as many times as asked (the graph is retained), returning the gradients with respect to the primals
only: the ``.grad`` of every other tensor ``fn`` reaches (a Module's parameters) is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import engine
from .tensor import Tensor, backward, enable_grad, get_tangent, leaves, retained, set_tangent


def _primals(primals: Any, fn_name: str) -> list[np.ndarray]:
    if not isinstance(primals, (tuple, list)):
        raise TypeError(f"{fn_name}: primals must be a tuple of Tensors or arrays, got {type(primals).__name__}")
    out = []
    for i, p in enumerate(primals):
        a = np.asarray(p.data if isinstance(p, Tensor) else p)
        if a.dtype.kind != "f":
            raise TypeError(f"{fn_name}: primals[{i}] must be floating, got dtype {a.dtype}")
        out.append(a)
    return out


def _outputs(out: Any, fn_name: str) -> tuple[list[Tensor], bool]:
    if isinstance(out, Tensor):
        return [out], False
    if isinstance(out, (tuple, list)) and out and all(isinstance(o, Tensor) for o in out):
        return list(out), True
    raise TypeError(f"{fn_name}: fn must return a Tensor or a tuple of Tensors, got {type(out).__name__}")


def jvp(
    fn: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any], *, directions: bool = False
) -> tuple[Any, Any]:
    """(fn(*primals), J_fn(primals) @ tangents), as ``torch.func.jvp``, in one forward pass.

    ``primals`` and ``tangents`` are tuples of Tensors or arrays, tangent i of primal i's shape (with
    ``directions=True``: of shape (k, *primal.shape), k directions at once, the same k for all, and every
    tangent output has that leading axis too). ``fn`` returns a Tensor or a tuple of Tensors; the outputs come
    back the same way, tangents as Tensors (zeros for an output that does not depend on the primals). Works
    through Modules and recurrent layers (they are Tensor ops) and under ``no_grad``; the primals are new leaf
    tensors holding copies of the data.
    """
    fn_name = "jvp"
    arrays = _primals(primals, fn_name)
    if not isinstance(tangents, (tuple, list)) or len(tangents) != len(arrays):
        n = len(tangents) if isinstance(tangents, (tuple, list)) else type(tangents).__name__
        raise ValueError(f"{fn_name}: need one tangent per primal, got {len(arrays)} primals and {n} tangents")
    tans = [np.asarray(t.data if isinstance(t, Tensor) else t) for t in tangents]
    k = 1
    if directions:
        if any(t.ndim == 0 for t in tans):
            raise ValueError(f"{fn_name}: with directions=True every tangent needs a leading axis of directions")
        k = tans[0].shape[0] if tans else 1
    for i, (a, t) in enumerate(zip(arrays, tans)):
        want = (k, *a.shape) if directions else a.shape
        if t.shape != want:
            raise ValueError(
                f"{fn_name}: tangents[{i}] has shape {t.shape}, primals[{i}] of shape {a.shape} needs {want}"
            )
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{fn_name}: tangents[{i}] of dtype {t.dtype} is not numeric")
    if k < 1:
        raise ValueError(f"{fn_name}: need at least one tangent direction, got {k}")
    with engine.DualLevel(k):
        xs = [Tensor(a) for a in arrays]
        for x, t in zip(xs, tans):
            set_tangent(x, t if directions else t[None])
        outs, is_tuple = _outputs(fn(*xs), fn_name)
        touts = []
        for o in outs:
            t = get_tangent(o)
            if t is None:
                t = np.zeros((k, *o.shape), o.dtype if o.dtype.kind == "f" else np.float64)
            touts.append(Tensor._make(np.array(t if directions else t[0]), None))
    return (tuple(outs), tuple(touts)) if is_tuple else (outs[0], touts[0])


def vjp(fn: Callable[..., Any], primals: Sequence[Any]) -> tuple[Any, Callable[..., Any]]:
    """(fn(*primals), vjp_fn), as ``torch.func.vjp``: ``vjp_fn(*cotangents)`` (one per output, of its shape)
    returns the tuple of gradients of sum_i <cotangent_i, output_i> with respect to each primal (zeros where an
    output does not depend on one). ``vjp_fn`` may be called any number of times; it leaves every other
    tensor's ``.grad`` untouched. Records a graph even inside ``no_grad`` (it is what a VJP needs)."""
    fn_name = "vjp"
    arrays = _primals(primals, fn_name)
    xs = [Tensor(a, requires_grad=True) for a in arrays]
    with enable_grad():
        outs, is_tuple = _outputs(fn(*xs), fn_name)

    def vjp_fn(*cotangents: Any) -> tuple[np.ndarray | Tensor, ...]:
        if len(cotangents) == 1 and is_tuple and isinstance(cotangents[0], (tuple, list)):
            cotangents = tuple(cotangents[0])
        if len(cotangents) != len(outs):
            raise ValueError(f"vjp_fn: need one cotangent per output ({len(outs)}), got {len(cotangents)}")
        roots, seeds = [], []
        for i, (o, c) in enumerate(zip(outs, cotangents)):
            arr = np.asarray(c.data if isinstance(c, Tensor) else c)
            if arr.shape != o.shape:
                raise ValueError(f"vjp_fn: cotangent {i} has shape {arr.shape}, output {i} has shape {o.shape}")
            if o.requires_grad:
                roots.append(o)
                seeds.append(arr.astype(o.dtype, copy=False))
        grads: list[Any] = [None] * len(xs)
        if roots:
            ids = {id(x) for x in xs}
            others = [t for t in leaves(*roots) + retained(*roots) if id(t) not in ids]
            kept = [t.grad for t in others]  # put back afterwards: vjp_fn is a pure function of its cotangents
            for x in xs:
                x.grad = None
            try:
                backward(roots, seeds, retain_graph=True)
                grads = [x.grad for x in xs]
            finally:
                for t, g in zip(others, kept):
                    t.grad = g
                for x in xs:
                    x.grad = None
        return tuple(Tensor._make(np.zeros_like(a) if g is None else g, None) for g, a in zip(grads, arrays))

    return (tuple(outs) if is_tuple else outs[0]), vjp_fn
