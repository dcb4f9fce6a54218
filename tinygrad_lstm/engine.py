"""The engine: process-wide switches (grad mode, anomaly mode, scopes, dtype, random stream) and the one
reverse-mode loop.

``backward`` orders the graph iteratively (no recursion, so 100,000 unrolled steps are fine), runs each node's
VJP once in reverse order, reduces broadcast gradients in one place (``unbroadcast``) and sums gradients that
meet at a tensor used more than once: that sum is backpropagation through time's sum over time steps for
weights shared by every step. This module knows Tensors only by their attributes (``data``, ``_ctx``,
``requires_grad``, ``grad``, ``_hooks``, ``_retain``); it imports neither the Tensor class nor any layer.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # for annotations only: the engine never imports the Tensor class at run time
    from .tensor import Tensor

# ------------------------------------------------------------------------------------------------ global state


class _State:
    """Process-wide switches read on every op: kept as plain attributes so that reading them is cheap."""

    grad_enabled: bool = True
    anomaly: bool = False
    scope: tuple = ()
    default_dtype: np.dtype = np.dtype(np.float32)
    rng: np.random.Generator = np.random.default_rng()


_state = _State()


def manual_seed(seed: int) -> None:
    """Seed the generator behind every random factory, initializer and dropout mask."""
    _state.rng = np.random.default_rng(seed)


@contextmanager
def fork_rng(seed: int | None = None) -> Iterator[np.random.Generator]:
    """Inside the block, draw from a generator seeded with ``seed``; afterwards the previous stream resumes."""
    prev = _state.rng
    _state.rng = np.random.default_rng(seed)
    try:
        yield _state.rng
    finally:
        _state.rng = prev


def get_rng() -> np.random.Generator:
    """The generator seeded by ``manual_seed`` (for layers that draw random numbers)."""
    return _state.rng


def set_default_dtype(dtype: Any) -> None:
    """Set the float dtype of tensors made from Python numbers and of factories (float32 by default)."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"set_default_dtype: need a floating dtype, got {dt}")
    _state.default_dtype = dt


def get_default_dtype() -> np.dtype:
    """The current default float dtype."""
    return _state.default_dtype


class _Switch:
    """A context manager that is also a decorator: sets one ``_State`` attribute, restores it on exit."""

    attr = ""
    value: Any = None

    def __new__(cls, fn: Callable | None = None) -> Any:
        # ``@no_grad`` (bare) hands the function straight to the class: return the decorated function.
        self = super().__new__(cls)
        return self if fn is None else self(fn)

    def __enter__(self) -> None:
        self._prev = getattr(_state, self.attr)
        setattr(_state, self.attr, self.value)

    def __exit__(self, *exc: object) -> None:
        setattr(_state, self.attr, self._prev)

    def __call__(self, fn: Callable) -> Callable:
        switch = type(self)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with switch():
                return fn(*args, **kwargs)

        return functools.wraps(fn)(wrapped)


class no_grad(_Switch):
    """Record nothing inside: results need no gradient (context manager or decorator)."""

    attr, value = "grad_enabled", False


class enable_grad(_Switch):
    """Record again inside a ``no_grad`` region (context manager or decorator)."""

    attr, value = "grad_enabled", True


class detect_anomaly(_Switch):
    """Raise as soon as an op's forward or backward produces NaN or Inf, naming the op, scope and shapes."""

    attr, value = "anomaly", True


class scope:
    """Tag every op recorded inside with this name: ``with scope("lstm"), scope("t=3"): ...``.

    Ops keep the tuple of enclosing names as ``node.scope``; the graph renderer draws one cluster per scope.
    """

    def __init__(self, name: str) -> None:
        self.name = str(name)

    def __enter__(self) -> scope:
        self._prev = _state.scope
        _state.scope = (*self._prev, self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        _state.scope = self._prev


def current_scope() -> tuple:
    """The tuple of scope names in force now."""
    return _state.scope


class AnomalyError(RuntimeError):
    """Raised under ``detect_anomaly()`` when an op produces NaN or Inf."""


def _check_finite(arr: np.ndarray, what: str, args: Sequence[Tensor], scope_: tuple | None = None) -> None:
    """Under detect_anomaly(): raise AnomalyError naming the op, its scope and its inputs' shapes."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        shapes = ", ".join(str(a.shape) for a in args)
        where = "/".join(scope_ if scope_ is not None else _state.scope) or "<top level>"
        bad = "NaN" if np.isnan(arr).any() else "Inf"
        raise AnomalyError(f"{what} produced {bad} (scope {where}, input shapes {shapes})")


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient over the axes that broadcasting added or stretched, so it has ``shape`` again."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


# Recorded ops are numbered as they are created. An op's inputs exist before it runs, so creation order is a
# topological order: sorting the reachable tensors by it replaces a post-order walk (and is done in C).
_op_counter = itertools.count()


def _creation_order(t: Any) -> int:
    ctx = t._ctx
    return -1 if ctx is None else ctx.seq  # leaves first: they are reached last going backwards


def _toposort(roots: Sequence[Tensor]) -> list[Tensor]:
    """Tensors that need a gradient and lead to ``roots``, each after everything it depends on (no recursion)."""
    seen = {id(r) for r in roots}
    order = list({id(r): r for r in roots}.values())
    stack = list(order)
    while stack:
        ctx = stack.pop()._ctx
        if ctx is None:
            continue
        if ctx.parents is None:
            raise RuntimeError(
                "backward: trying to backward through a graph a second time: its saved arrays were "
                "released by the first backward; pass retain_graph=True to the first call"
            )
        for p in ctx.parents:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                order.append(p)
                stack.append(p)
    order.sort(key=_creation_order)
    return order


_refcount = getattr(sys, "getrefcount", None)  # (CPython; elsewhere gradients are never updated in place)


def _sole(a: np.ndarray, holders: int) -> bool:
    """True if ``a`` owns its memory, is writeable and is held by nothing but the caller's ``holders`` references.

    Python counts references exactly, so an in-place update of such an array cannot be seen by anyone else: not a
    user's variable, a hook, another tensor's pending gradient, a deferred product or a view of it. This is what
    lets the sum over time add each step's term in place instead of allocating a new array per step.
    """
    # The two extra references: this function's parameter and getrefcount's argument.
    return _refcount is not None and a.base is None and _refcount(a) == holders + 2 and a.flags.writeable


class _Products:
    """A gradient kept as a sum of matrix products, sum_i A_i^T @ B_i, computed only when it is needed.

    A weight that T matmuls share (one per time step) receives one term per step. Stacking the factors and
    taking ONE product gives the same sum over time in one BLAS call, instead of T products of the weight's
    full size and T - 1 additions (BPTT's sum over time, batched). Transposing the sum swaps the factors, so
    ``W.T`` used at every step passes its terms on to ``W`` still unevaluated.
    """

    __slots__ = ("lhs", "rhs")

    def __init__(self, lhs: list, rhs: list) -> None:
        self.lhs, self.rhs = lhs, rhs

    def add(self, other: _Products) -> None:
        """Append another sum's terms."""
        self.lhs += other.lhs
        self.rhs += other.rhs

    def transposed(self) -> _Products:
        """(sum A_i^T B_i)^T = sum B_i^T A_i."""
        return _Products(self.rhs, self.lhs)

    def value(self, dtype: np.dtype, stacked: dict) -> np.ndarray:
        """The sum as one array of ``dtype``: one product of the stacked factors per block of terms."""
        out = None
        for lo, hi in _blocks(self.lhs, self.rhs):
            p = _stack_rows(self.lhs, lo, hi, stacked).T @ _stack_rows(self.rhs, lo, hi, stacked)
            if out is None:
                out = p
            else:
                out += p
        return out.astype(dtype, copy=False)


# Stacked factors are built in blocks of at most this many bytes: below glibc's largest heap block (32 MiB), so
# they reuse freed heap memory instead of being fresh mmaps that page-fault on every backward.
_BLOCK_BYTES = 16 << 20


def _blocks(lhs: list, rhs: list) -> list[tuple[int, int]]:
    """Ranges [lo, hi) of terms whose stacked factors stay under ``_BLOCK_BYTES`` (at least one term each)."""
    out, lo, size = [], 0, 0
    for i, (a, b) in enumerate(zip(lhs, rhs)):
        n = max(a.nbytes, b.nbytes)
        if i > lo and size + n > _BLOCK_BYTES:
            out.append((lo, i))
            lo, size = i, 0
        size += n
    out.append((lo, len(lhs)))
    return out


def _stack_rows(arrays: list, lo: int, hi: int, stacked: dict) -> np.ndarray:
    """``arrays[lo:hi]`` (2-D) joined row-wise, each distinct run once per backward (``stacked`` remembers them).

    An LSTM's W_ih and W_hh receive the same gate gradient at every step as a factor, so they share one copy.
    """
    if hi - lo == 1:
        return arrays[lo]
    run = arrays[lo:hi]
    key = tuple(map(id, run))
    hit = stacked.get(key)
    if hit is None:
        hit = stacked[key] = (run, np.concatenate(run))  # (the list keeps the ids in the key valid)
    return hit[1]


def _reduce_to(gp: np.ndarray, shape: tuple, ctx: Any) -> np.ndarray:
    """Unbroadcast a VJP's output to its input's shape, or name the op whose VJP returned a wrong shape."""
    try:
        out = unbroadcast(gp, shape)
    except ValueError:  # a gradient no broadcast can map back: a bug in that op's VJP
        out = None
    if out is None or out.shape != shape:
        raise RuntimeError(f"{ctx.backward_name}: gradient of shape {gp.shape} for an input of shape {shape}")
    return out


def _backward(roots: Sequence[Tensor], seeds: Sequence[np.ndarray], retain_graph: bool) -> None:
    """The one chain-rule loop: VJPs in reverse topological order, gradients summed where paths meet."""
    grads: dict[int, np.ndarray] = {}
    for r, g in zip(roots, seeds):
        grads[id(r)] = g if id(r) not in grads else grads[id(r)] + g
    # Matmul weight gradients not computed yet (see _Products). Not with retain_graph or anomaly mode, which
    # need every node's own gradient (for drawing it, or for checking it) as the loop passes.
    lazy: dict[int, _Products] = {}
    stacked: dict[tuple, tuple] = {}
    defer = not retain_graph and not _state.anomaly
    order = _toposort(roots)
    while order:
        # Popping (not iterating) drops the list's reference: once its consumers have run, an intermediate
        # tensor and its data are freed during the walk, so backward reuses that memory instead of growing.
        t = order.pop()
        k = id(t)
        g = grads.pop(k, None)
        prods = lazy.pop(k, None)
        if prods is not None:
            ctx = t._ctx
            if g is None and ctx is not None and ctx.swaps_2d and not t._hooks and not t._retain:
                # W.T at every step: hand the terms to W unevaluated, so all steps become one product there.
                p = ctx.parents[0]
                if p.requires_grad:
                    _add_products(lazy, p, prods.transposed())
                ctx.saved, ctx.parents = None, None
                continue
            v = prods.value(t.data.dtype, stacked)
            if v.shape != t.data.shape:
                v = v.reshape(t.data.shape)  # a bias's sum comes as a column
            if g is None:
                g, v = v, None  # (one name only: an array held once may become a leaf's .grad as it is)
            else:
                g = g + v
        if g is None:
            continue
        if t._hooks:
            for hook in list(t._hooks):
                new = hook(g)
                if new is not None:
                    g = np.asarray(new.data if hasattr(new, "data") else new, dtype=t.dtype)
        ctx = t._ctx
        if ctx is None or t._retain:
            # A leaf (or a retained intermediate) keeps a private copy unless the array is already private to it.
            if t.grad is not None:
                t.grad = np.asarray(t.grad + g)  # (0-d + 0-d gives a numpy scalar)
            elif ctx is None and not retain_graph and _sole(g, 1):
                t.grad = g
            else:
                t.grad = g.copy()
        if ctx is None:
            continue
        if ctx.backward_into is not None and not retain_graph:
            # A slice's VJP: add it into the input's own gradient buffer instead of scattering into fresh zeros.
            p = ctx.parents[0]
            if p.requires_grad:
                if _state.anomaly:
                    _check_finite(g, ctx.backward_name, ctx.parents, ctx.scope)
                k = id(p)
                buf = grads.get(k)
                if buf is None or not _sole(buf, 2):
                    new = np.zeros(p.data.shape, p.data.dtype)
                    if buf is not None:
                        new += buf
                    grads[k] = buf = new
                ctx.backward_into(g, buf)
            ctx.saved, ctx.parents = None, None
            continue
        deferred = ctx.outer_vjp(g) if defer and ctx.outer_vjp is not None else None
        in_grads = ctx.backward(g)  # (an input whose VJP was deferred gets None here)
        parents = ctx.parents
        if deferred is not None:
            for i, a, b in deferred:
                _add_products(lazy, parents[i], _Products([a], [b]))
        if retain_graph:
            ctx.grad_out = g
        for p, gp in zip(parents, in_grads):
            if gp is None or not p.requires_grad:
                continue
            if type(gp) is not np.ndarray:  # a 0-d result is a numpy scalar, which += would not update in place
                gp = np.asarray(gp)
            data = p.data
            if gp.shape != data.shape:
                gp = _reduce_to(gp, data.shape, ctx)
            if gp.dtype != data.dtype:
                gp = gp.astype(data.dtype)
            if _state.anomaly:
                _check_finite(gp, ctx.backward_name, parents, ctx.scope)
            k = id(p)
            prev = grads.get(k)
            if prev is None:
                grads[k] = gp
            elif _sole(prev, 2):
                # This += is BPTT's sum over time: a weight used at every step gets one term per step.
                prev += gp
            else:
                grads[k] = np.asarray(prev + gp)  # (0-d + 0-d gives a numpy scalar, and += must be in place)
        if retain_graph:
            ctx.grads_in = tuple(None if x is None else unbroadcast(x, p.shape) for x, p in zip(in_grads, parents))
        else:
            ctx.saved, ctx.parents = None, None  # release: frees the arrays and, with them, the graph


def _add_products(lazy: dict[int, _Products], p: Any, prods: _Products) -> None:
    """Add deferred product terms to tensor ``p``'s pending sum."""
    pending = lazy.get(id(p))
    if pending is None:
        lazy[id(p)] = prods
    else:
        pending.add(prods)


def walk(*roots: Any) -> Iterator[Any]:
    """Every tensor reachable from ``roots`` through recorded ops, each once, depth-first with each op's inputs
    in order (no recursion). A released graph (after backward) ends at the released nodes."""
    seen: set[int] = set()
    stack = list(reversed(roots))
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        yield t
        if t._ctx is not None and t._ctx.parents is not None:
            stack.extend(reversed(t._ctx.parents))


@contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """Use ``dtype`` as the default float dtype inside the block."""
    prev = _state.default_dtype
    set_default_dtype(dtype)
    try:
        yield
    finally:
        _state.default_dtype = prev
