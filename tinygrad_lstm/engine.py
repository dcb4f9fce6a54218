"""The engine: how a graph is recorded, and the one reverse-mode loop that replays it, side by side.

The graph is made of op nodes, as PyTorch's: ``record`` gives an op its inputs as *vertices* (the node that made
each input, or the input itself when it is a leaf), which of them need a gradient, its scope, its creation
number, its output's shape and dtype, and the versions of the inputs whose arrays it saved. A node does not hold
the tensors an op read, only what its VJP saved: an intermediate that no backward needs is freed as soon as the
program drops it, as in PyTorch. ``backward`` orders the vertices iteratively (no recursion, so 100,000 unrolled
steps are fine) and walks them once in reverse, in micrograd's shape: pop a vertex's gradient, run its hooks,
keep it at a leaf, call the VJP, add each input's gradient into that input's pending sum. For a weight shared by
every time step that sum *is* backpropagation through time's sum over time.

The engine knows Tensors by a small protocol, the attributes ``data``, ``requires_grad``, ``grad``, ``_ctx``
(the node that made it), ``_hooks`` (a leaf's; an intermediate's live on its node) and ``_vc`` (its version
counter, None for version 0); it imports neither the Tensor class, nor a layer, nor an optimizer. Grad mode,
anomaly mode and the scope stack are per thread (as in PyTorch); the default dtype and the random stream are
process-wide.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .ops import Op, Outer, SliceAdd

# ------------------------------------------------------------------------------------------------ state


class _Modes(threading.local):
    """Per-thread switches read on every op; a new thread starts with grad enabled and no scope."""

    grad_enabled: bool = True
    anomaly: bool = False
    scope: tuple = ()
    # Forward mode: the active ``DualLevel`` or None. ``tensor._apply`` tests this one attribute after every op,
    # so forward mode costs nothing else when it is off (measured: tools/bench_ops.py --quick, no change).
    fwd: Any = None


class _Defaults:
    """Process-wide defaults: the float dtype of new tensors and the random stream (as torch.manual_seed)."""

    dtype: np.dtype = np.dtype(np.float32)
    rng: np.random.Generator = np.random.default_rng()


_modes = _Modes()
_defaults = _Defaults()
# In-place writes so far, in any thread (``note_write``). A node records the count; if it is unchanged at
# backward, nothing was written since and the per-input version check is skipped.
_writes = [0]


def note_write() -> None:
    """Count one in-place write to some tensor's data (the Tensor's version setter calls this)."""
    _writes[0] += 1


def manual_seed(seed: int) -> None:
    """Seed the generator behind every random factory, initializer and dropout mask (any Python int)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    # numpy's SeedSequence takes non-negative ints of any size; torch takes negative ones too, so map them.
    _defaults.rng = np.random.default_rng(int(seed) if seed >= 0 else [1, -int(seed)])


@contextmanager
def fork_rng(seed: int | None = None) -> Iterator[np.random.Generator]:
    """Inside the block, draw from a generator seeded with ``seed``; afterwards the previous stream resumes."""
    prev = _defaults.rng
    _defaults.rng = np.random.default_rng(seed)
    try:
        yield _defaults.rng
    finally:
        _defaults.rng = prev


def get_rng() -> np.random.Generator:
    """The generator seeded by ``manual_seed`` (for layers that draw random numbers)."""
    return _defaults.rng


def set_default_dtype(dtype: Any) -> None:
    """Set the float dtype of tensors made from Python numbers and of factories (float32 by default)."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"set_default_dtype: need a floating dtype, got {dt}")
    _defaults.dtype = dt


def get_default_dtype() -> np.dtype:
    """The current default float dtype."""
    return _defaults.dtype


@contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """Use ``dtype`` as the default float dtype inside the block."""
    prev = _defaults.dtype
    set_default_dtype(dtype)
    try:
        yield
    finally:
        _defaults.dtype = prev


class _Switch:
    """A context manager that is also a decorator: sets one per-thread mode, restores it on exit."""

    attr = ""
    value: Any = None

    def __new__(cls, fn: Callable | None = None) -> Any:
        # ``@no_grad`` (bare) hands the function straight to the class: return the decorated function.
        self = super().__new__(cls)
        return self if fn is None else self(fn)

    def __enter__(self) -> None:
        self._prev = getattr(_modes, self.attr)
        setattr(_modes, self.attr, self.value)

    def __exit__(self, *exc: object) -> None:
        setattr(_modes, self.attr, self._prev)

    def __call__(self, fn: Callable) -> Callable:
        switch = type(self)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with switch():
                return fn(*args, **kwargs)

        return functools.wraps(fn)(wrapped)


class no_grad(_Switch):
    """Record nothing inside (in this thread): results need no gradient (context manager or decorator)."""

    attr, value = "grad_enabled", False


class enable_grad(_Switch):
    """Record again inside a ``no_grad`` region (context manager or decorator)."""

    attr, value = "grad_enabled", True


class detect_anomaly(_Switch):
    """Raise as soon as an op's forward or backward produces NaN or Inf, naming the op, scope and shapes."""

    attr, value = "anomaly", True


def is_grad_enabled() -> bool:
    """True unless this thread is inside ``no_grad()``."""
    return _modes.grad_enabled


class DualLevel:
    """Forward mode in this thread (``with DualLevel(k):``, as ``torch.autograd.forward_ad.dual_level``).

    Inside, every op whose inputs carry tangents of this level computes its output's tangent with its ``jvp``.
    A tangent always has a leading axis of ``k`` directions (k = 1 for a single JVP): an array of shape
    ``(k, *t.shape)``, or an ``ops.Basis``. Tangents are tagged with their level, so a tangent left on a tensor
    by an earlier level is ignored (it reads as zero) instead of leaking into a later computation. Levels do
    not nest: forward-over-forward is not supported.
    """

    def __init__(self, k: int = 1) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"DualLevel: k (the number of tangent directions) must be an int >= 1, got {k!r}")
        self.k = int(k)

    def __enter__(self) -> DualLevel:
        if _modes.fwd is not None:
            raise RuntimeError("DualLevel: forward mode is already on in this thread (levels do not nest)")
        _modes.fwd = self
        return self

    def __exit__(self, *exc: object) -> None:
        _modes.fwd = None


def forward_level() -> DualLevel | None:
    """The forward-mode level in force in this thread, or None."""
    return _modes.fwd


class scope:
    """Tag every op recorded inside (in this thread) with this name: ``with scope("lstm"), scope("t=3"): ...``.

    Ops keep the tuple of enclosing names as ``node.scope``; the graph renderer draws one cluster per scope.
    """

    def __init__(self, name: str) -> None:
        self.name = str(name)

    def __enter__(self) -> scope:
        self._prev = _modes.scope
        _modes.scope = (*self._prev, self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        _modes.scope = self._prev


def current_scope() -> tuple:
    """The tuple of scope names in force now, in this thread."""
    return _modes.scope


class AnomalyError(RuntimeError):
    """Raised under ``detect_anomaly()`` when an op produces NaN or Inf."""


def _check_finite(arr: np.ndarray, what: str, shapes: Sequence[tuple], scope_: tuple | None = None) -> None:
    """Under detect_anomaly(): raise AnomalyError naming the op, its scope and its inputs' shapes."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        shapes = ", ".join(map(str, shapes))
        where = "/".join(_modes.scope if scope_ is None else scope_) or "<top level>"
        bad = "NaN" if np.isnan(arr).any() else "Inf"
        raise AnomalyError(f"{what} produced {bad} (scope {where}, input shapes {shapes})")


# ------------------------------------------------------------------------------------------------ recording

# Recorded ops are numbered as they are created. An op's inputs exist before it runs, so creation order is a
# topological order: sorting the reachable nodes by it replaces a post-order walk (and is done in C).
_op_counter = itertools.count()
# ``needs[i]`` says what input i is: NO (a tensor that needs no gradient), LEAF (a leaf tensor that does) or NODE
# (an op's output: ``parents[i]`` is that op). A VJP reads it as a bool (skip inputs that need no gradient); the
# engine reads which kind of vertex it sends a gradient to without testing types.
NO, LEAF, NODE = 0, 1, 2
# One shared ``needs`` tuple per pattern: a node should own as few objects as possible, as the garbage collector
# walks every one of them, again and again, while a long unrolled graph is being built.
_NEEDS: dict[tuple, tuple] = {}
_PAIRS = [(i, j) for i in range(3) for j in range(3)]  # needs of a two-input op, at index 3 * kind_a + kind_b
_ONE = [(0,), (1,), (2,)]


def _kind(t: Any) -> int:
    return NODE if t._ctx is not None else (LEAF if t.requires_grad else NO)


def record(node: Op, args: tuple, out: np.ndarray) -> Op | None:
    """Make ``node`` (an op that has just run forward on ``args``) a graph node, or return None if nothing it
    read needs a gradient or grad mode is off in this thread."""
    modes = _modes
    if modes.anomaly:
        _check_finite(out, node.name, [a.data.shape for a in args])
    if not modes.grad_enabled:
        return None
    # Nearly every op has one or two inputs: picking their ``needs`` from constants, and testing for version
    # counters without building lists, takes about 0.7 us off each recorded op (a small Mul: 3.4 -> 2.7 us, A/B).
    if len(args) == 2:
        a, b = args
        ca, cb = a._ctx, b._ctx
        ka = NODE if ca is not None else (LEAF if a.requires_grad else NO)
        kb = NODE if cb is not None else (LEAF if b.requires_grad else NO)
        if not (ka or kb):
            return None
        node.needs = _PAIRS[3 * ka + kb]
        node.parents = (a if ca is None else ca, b if cb is None else cb)
        if node.saves and (a._vc is not None or b._vc is not None):
            node.versions = (0 if a._vc is None else a._vc[0], 0 if b._vc is None else b._vc[0])
    elif len(args) == 1:
        a = args[0]
        ca = a._ctx
        if ca is None and not a.requires_grad:
            return None
        node.needs = _ONE[NODE if ca is not None else LEAF]
        node.parents = (a if ca is None else ca,)
        if node.saves and a._vc is not None:
            node.versions = (a._vc[0],)
    else:
        needs = tuple([_kind(a) for a in args])
        if not any(needs):
            return None
        node.needs = _NEEDS.setdefault(needs, needs)
        node.parents = tuple([a if a._ctx is None else a._ctx for a in args])
        if node.saves and any(a._vc is not None for a in args):
            node.versions = tuple([0 if a._vc is None else a._vc[0] for a in args])
    node.out_shape, node.out_dtype = out.shape, out.dtype
    node.scope = modes.scope
    node.seq = next(_op_counter)
    node.epoch = _writes[0]
    return node


def _check_versions(node: Op) -> None:
    """Raise if an array this node saved was written in place after it was recorded (PyTorch's version check).

    A leaf input's version is its own counter. An op's output can only be written through a detached alias,
    and ``detach`` puts the counter it shares with the alias on the op (``out_version``): that is where an
    intermediate input's version is read, so a node needs to hold no tensor to check it."""
    for i in node.saves:
        p = node.parents[i]
        vc = (p.out_version and p.out_version[0]) if isinstance(p, Op) else p._vc
        now = 0 if vc is None else vc[0]
        then = node.versions[i] if node.versions else 0  # no versions recorded: every input was at version 0
        if now != then:
            raise RuntimeError(_modified(node, f"its input {i} ({_describe(p)})", then, now))
    if node.saves_output and node.out_version is not None and node.out_version[0][0] != node.out_version[1]:
        raise RuntimeError(
            _modified(node, f"its output ({_describe(node)})", node.out_version[1], node.out_version[0][0])
        )


def _modified(node: Op, what: str, then: int, now: int) -> str:
    where = "/".join(node.scope) or "<top level>"
    return (
        f"backward: {node.backward_name} (scope {where}) needs {what} as it was, but it was modified in place "
        f"since: version {then} when recorded, {now} now (e.g. by an optimizer step or +=); run backward before "
        "changing it, or change a copy (x = x + y instead of x += y)"
    )


def vertex(t: Any) -> Any:
    """A tensor's vertex in the graph: the node that made it, or the tensor itself for a leaf."""
    return t if t._ctx is None else t._ctx


def shape_dtype(v: Any) -> tuple[tuple, np.dtype]:
    """The shape and dtype of a vertex's value (a leaf's data, or a node's output)."""
    return (v.out_shape, v.out_dtype) if isinstance(v, Op) else (v.data.shape, v.data.dtype)


def _describe(v: Any) -> str:
    """A tensor or vertex for an error message: its name if it has one, and its shape."""
    if isinstance(v, Op):
        return f"{v.out_name!r}, shape {v.out_shape}" if v.out_name else f"shape {v.out_shape}"
    return f"{v.name!r}, shape {v.data.shape}" if v.name else f"shape {v.data.shape}"


# ------------------------------------------------------------------------------------------------ replay


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient over the axes that broadcasting added or stretched, so it has ``shape`` again."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


def _send(pending: dict, node: Op, grads: Sequence[Any], anomaly: bool) -> list:
    """Add each input's gradient into that input's pending sum; returns them as added (in the inputs' shapes)."""
    sent = []
    for p, c, need in zip(node.parents, grads, node.needs):
        if c is None or not need:
            sent.append(None)
            continue
        if need is NODE:
            shape, dtype = p.out_shape, p.out_dtype
        else:
            shape, dtype = p.data.shape, p.data.dtype
        if type(c) is not np.ndarray or c.shape != shape or c.dtype != dtype or anomaly:
            c = _fit(c, shape, dtype, node, anomaly)
        sent.append(c)
        k = id(p)
        prev = pending.get(k)
        if prev is None:
            pending[k] = c  # the first term, held as it is: not the engine's to write into
        elif type(prev) is _Grad:
            prev.add(c)
        else:
            pending[k] = _Grad(prev, c)
    return sent


def _fit(c: Any, shape: tuple, dtype: np.dtype, node: Op, anomaly: bool) -> Any:
    """One VJP output, made the gradient of an input of ``shape`` and ``dtype``: broadcast axes summed away (the
    one place that does it), shape checked, cast. Contributions (``Outer``, ``SliceAdd``) come in shape already."""
    if type(c) is not np.ndarray:
        if isinstance(c, (Outer, SliceAdd)):
            return c
        c = np.asarray(c)  # a 0-d result is a numpy scalar
    if c.shape != shape:
        with contextlib.suppress(ValueError):  # no broadcast maps it back: a bug in that op's VJP, named below
            c = unbroadcast(c, shape)
        if c.shape != shape:
            raise RuntimeError(f"{node.backward_name}: gradient of shape {c.shape} for an input of shape {shape}")
    if c.dtype != dtype:
        c = c.astype(dtype)
    if anomaly:
        _check_finite(c, node.backward_name, [shape_dtype(p)[0] for p in node.parents], node.scope)
    return c


class _Grad:
    """A tensor's gradient once two or more terms reached it (HIPS autograd's ``add_outgrads``).

    ``dense`` is an array or None. ``mine`` is the explicit ownership fact: True once the engine allocated the
    array and handed it to no one, so ``+=`` into it cannot change an array anybody else holds (a VJP may hand
    one array to several inputs, as Add does, or return a view of a saved array). ``lazy`` is an ``Outer`` the
    engine owns, whose list of terms grows in place until the sum is needed.
    """

    __slots__ = ("dense", "lazy", "mine")

    def __init__(self, *terms: Any) -> None:
        self.dense = self.lazy = None
        self.mine = False
        for c in terms:
            self.add(c)

    def add(self, c: Any) -> None:
        """Add one gradient value (an array, an ``Outer`` or a ``SliceAdd``)."""
        if type(c) is np.ndarray:
            if self.dense is None:
                self.dense = c
            elif self.mine:
                self.dense += c  # this += is BPTT's sum over time: a weight used at every step gets a term per step
            else:
                self.dense = np.add(self.dense, c, out=np.empty(c.shape, c.dtype))
                self.mine = True
        elif type(c) is Outer:
            if self.lazy is None:
                self.lazy = Outer(list(c.pairs), c.shape)
            else:
                self.lazy.pairs += c.pairs
        else:
            if not self.mine:  # a buffer of our own to add the slice into
                d = self.dense
                self.dense = np.zeros(c.shape, c.g.dtype) if d is None else np.array(d)
                self.mine = True
            c.add_into(self.dense)

    def value(self, dtype: np.dtype, memo: dict, lazy_ok: bool) -> tuple[Any, bool]:
        """The sum and whether the engine owns it; still an ``Outer`` when that is all there is and the caller
        can take one (a transpose passing it on unevaluated)."""
        lazy = self.lazy
        if lazy is not None:
            if lazy_ok and self.dense is None:
                return lazy, False
            v = lazy.value(dtype, memo)  # BPTT's sum over time as one product of the stacked factors
            if self.dense is not None:
                v += self.dense
            self.dense, self.lazy, self.mine = v, None, True
        return self.dense, self.mine


def _toposort(roots: Sequence[Any]) -> tuple[list[Op], list[Any]]:
    """The nodes that lead to ``roots``, in creation order (each after everything it depends on), and the leaf
    tensors that need a gradient among their inputs (no recursion)."""
    nodes, leaves = [], []
    seen = set()
    for r in roots:
        v = vertex(r)
        if id(v) not in seen:
            seen.add(id(v))
            (leaves if v is r else nodes).append(v)
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node.parents is None:
            raise RuntimeError(_freed(node, roots))
        for p, need in zip(node.parents, node.needs):
            if need and id(p) not in seen:
                seen.add(id(p))
                if need is NODE:
                    nodes.append(p)
                    stack.append(p)
                else:
                    leaves.append(p)
    nodes.sort(key=_SEQ)
    return nodes, leaves


_SEQ = operator.attrgetter("seq")


def _freed(node: Op, roots: Sequence[Any]) -> str:
    """The error for a path into a graph that an earlier backward released, with the fix that fits."""
    where = "/".join(node.scope) or "<top level>"
    what = f"{node.name} in scope {where}, output {_describe(node)}"
    if any(r._ctx is node for r in roots):
        return (
            f"backward: trying to backward through a graph a second time ({what}): the first backward freed its "
            "saved arrays; pass retain_graph=True to the first call if you need to walk it again"
        )
    return (
        f"backward: this graph reaches a tensor made in a graph that an earlier backward already freed ({what}). "
        "If it is a state carried over from an earlier batch or chunk (an RNN's h or c), detach() it where the new "
        "one starts (truncated BPTT); only to backpropagate into the old graph on purpose, pass retain_graph=True "
        "to the earlier backward"
    )


def _run_hooks(v: Any, g: np.ndarray) -> np.ndarray:
    """Call each hook on the complete gradient; a returned array (or Tensor) of the same shape and dtype replaces it."""
    for hook in list(v._hooks):
        new = hook(g)
        if new is None:
            continue
        arr = new if isinstance(new, np.ndarray) else getattr(new, "data", new)  # (an ndarray's .data is a buffer)
        if not isinstance(arr, np.ndarray) or arr.shape != g.shape or arr.dtype != g.dtype:
            got = f"shape {arr.shape}, dtype {arr.dtype}" if isinstance(arr, np.ndarray) else type(new).__name__
            name = getattr(hook, "__qualname__", repr(hook))
            raise RuntimeError(
                f"backward: hook {name} registered on the tensor {_describe(v)} returned {got}; "
                f"it must return None or an array of shape {g.shape} and dtype {g.dtype}"
            )
        g = arr
    return g


def _keep_grad(t: Any, g: np.ndarray, mine: bool) -> None:
    """Accumulate into ``t.grad``: the array itself when the engine owns it, else a private copy."""
    if t.grad is not None:
        t.grad = np.asarray(t.grad + g)  # (0-d + 0-d gives a numpy scalar)
    else:
        t.grad = g if mine else np.array(g)


def backward(roots: Sequence[Any], seeds: Sequence[np.ndarray], retain_graph: bool = False) -> None:
    """The chain rule over the graph behind ``roots``: d(sum_i <seeds_i, roots_i>)/d(leaf) into every leaf's
    ``.grad`` (and every retained tensor's). The graph is released unless ``retain_graph``."""
    nodes, leaves = _toposort(roots)
    pending: dict[int, Any] = {}  # id(vertex) -> its gradient so far: one term as it came, or a _Grad
    for r, s in zip(roots, seeds):
        k = id(vertex(r))
        pending[k] = _Grad(pending[k], s) if k in pending else s
    memo: dict = {}  # stacked factors shared by several weights' sums (see ops._stack_rows)
    anomaly = _modes.anomaly
    while nodes:  # newest first: every consumer of a node has sent its gradient before the node is reached
        # Popping (not iterating) drops the list's reference: once its consumers have run, a node and the arrays
        # it saved are freed during the walk, so backward reuses that memory instead of growing.
        node = nodes.pop()
        g = pending.pop(id(node), None)
        if g is None:
            continue
        if type(g) is not np.ndarray:  # a sum of terms, or one contribution: evaluate (or pass on an Outer)
            lazy_ok = node.takes_lazy and not node._hooks and node.retained is None
            g = (g if type(g) is _Grad else _Grad(g)).value(node.out_dtype, memo, lazy_ok)[0]
        if node._hooks:
            g = _run_hooks(node, g)
        if node.retained is not None and (t := node.retained()) is not None:
            _keep_grad(t, g, False)
        if node.epoch != _writes[0]:
            _check_versions(node)
        sent = _send(pending, node, node.backward(g), anomaly)
        if retain_graph:
            node.keep_grads(g, sent)
        else:
            node.release()  # frees the saved arrays and, with them, the graph
    for leaf in leaves:  # and each leaf keeps the sum that reached it
        g = pending.pop(id(leaf), None)
        if g is None:
            continue
        mine = False
        if type(g) is not np.ndarray:
            g, mine = (g if type(g) is _Grad else _Grad(g)).value(leaf.data.dtype, memo, False)
        if leaf._hooks:
            g, mine = _run_hooks(leaf, g), False  # a hook may have kept the array: it is no longer ours alone
        _keep_grad(leaf, g, mine)


def walk(*roots: Any) -> Iterator[Any]:
    """Every vertex reachable from the tensors ``roots`` (nodes, and leaf tensors), each once, depth-first with
    each node's inputs in order (no recursion). A released graph (after backward) ends at the released nodes."""
    seen: set[int] = set()
    stack = [vertex(r) for r in reversed(roots)]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        yield v
        if isinstance(v, Op) and v.parents is not None:
            stack.extend(reversed(v.parents))


def leaves(*roots: Any) -> list[Any]:
    """The leaf tensors that require grad and that the graph of the tensors ``roots`` reads, in walk order."""
    return [v for v in walk(*roots) if not isinstance(v, Op) and v.requires_grad]


def retained(*roots: Any) -> list[Any]:
    """The intermediate tensors in the graph of ``roots`` that called ``retain_grad()`` and still exist."""
    refs = [v.retained for v in walk(*roots) if isinstance(v, Op) and v.retained is not None]
    return [t for t in (r() for r in refs) if t is not None]
