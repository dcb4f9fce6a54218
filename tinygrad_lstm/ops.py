"""Primitive ops: each class holds a forward and its vector-Jacobian product (VJP) side by side.

This module imports numpy only. An op works on plain ndarrays: ``forward`` computes the output and keeps in
``self.saved`` exactly the arrays its backward needs (``saves`` lists which inputs those are, so the engine can
tell when one was written in place since); ``backward(g)`` maps the gradient of the output to one gradient per
input, *in the broadcast shape of the output*: reducing it back to each input's shape happens in one place, the
engine. A backward never writes into ``g`` and never changes the op itself.

A gradient is a value: an ndarray, or one of two typed contributions that the engine adds like an array
(HIPS autograd's idea, its sparse getitem gradient among them):

- ``Outer``: a sum of matrix products sum_i a_i^T @ b_i, kept unevaluated. A weight that T matmuls share (one per
  time step) receives T terms; the engine evaluates them as ONE product of the stacked factors, BPTT's sum over
  time in one BLAS call. Its transpose swaps the factors, so ``W.T`` passes the terms on still unevaluated.
- ``SliceAdd``: ``g`` placed at ``x[idx]``. T slices of one tensor (the steps of a sequence, an LSTM's gates)
  cost one buffer and T slice-adds, not T full-size arrays of zeros.

``self.needs`` (one flag per input, set when the op is recorded; false for an input that needs no gradient) lets a
VJP skip those inputs.
"""

from __future__ import annotations

import functools

import numpy as np

Array = np.ndarray

# ------------------------------------------------------------------------------------------ gradient values


class Outer:
    """A gradient kept as sum_i a_i^T @ b_i (reshaped to ``shape``), evaluated only when it is needed."""

    __slots__ = ("pairs", "shape")

    def __init__(self, pairs: list, shape: tuple) -> None:
        self.pairs, self.shape = pairs, shape

    @property
    def T(self) -> Outer:
        """(sum a_i^T b_i)^T = sum b_i^T a_i: the terms pass through a transpose unevaluated."""
        return Outer([(b, a) for a, b in self.pairs], self.shape[::-1])

    def value(self, dtype: np.dtype, memo: dict) -> Array:
        """The sum as one fresh array: one product of the stacked factors per block of terms."""
        lhs, rhs = [a for a, _ in self.pairs], [b for _, b in self.pairs]
        out = None
        for lo, hi in _blocks(lhs, rhs):
            p = _stack_rows(lhs, lo, hi, memo).T @ _stack_rows(rhs, lo, hi, memo)
            out = p if out is None else np.add(out, p, out=out)
        return out.reshape(self.shape).astype(dtype, copy=False)


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


def _stack_rows(arrays: list, lo: int, hi: int, memo: dict) -> Array:
    """``arrays[lo:hi]`` (2-D) joined row-wise; ``memo`` stacks each distinct run once per backward: two weights
    handed the same step gradients as factors (an LSTM's W_ih and W_hh in a cell loop) share one copy."""
    if hi - lo == 1:
        return arrays[lo]
    run = arrays[lo:hi]
    key = tuple(map(id, run))
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = (run, np.concatenate(run))  # (the list keeps the ids in the key alive and valid)
    return hit[1]


class SliceAdd:
    """The gradient of ``x[idx]``: ``g`` at ``idx`` in zeros of ``shape``; repeated integer indices add up."""

    __slots__ = ("basic", "g", "idx", "shape")

    def __init__(self, shape: tuple, idx, g: Array) -> None:
        self.shape, self.idx, self.g, self.basic = shape, idx, g, _is_basic(idx)

    def add_into(self, acc: Array) -> None:
        """Add into ``acc`` (an array of ``shape`` that the engine owns) in place."""
        if self.basic:
            acc[self.idx] += self.g
        else:
            np.add.at(acc, self.idx, self.g)

    def value(self, dtype: np.dtype, memo: dict) -> Array:
        """As a fresh dense array."""
        out = np.zeros(self.shape, dtype)
        self.add_into(out)
        return out


def dense(c, dtype: np.dtype | None = None) -> Array | None:
    """Any gradient value as an ndarray (a contribution evaluated in ``dtype``, default its own); None stays None."""
    if c is None or type(c) is np.ndarray:
        return c
    if isinstance(c, Outer):
        return c.value(dtype or np.result_type(*c.pairs[0]), {})
    return c.value(dtype or c.g.dtype, {}) if isinstance(c, SliceAdd) else np.asarray(c)


def _is_basic(idx) -> bool:
    """True for an index of ints, slices, None and Ellipsis only (a view: no element is picked twice)."""
    for p in idx if type(idx) is tuple else (idx,):
        if type(p) not in _BASIC_TYPES and not isinstance(p, (int, np.integer)):
            return False
    return True


_BASIC_TYPES = frozenset({int, slice, type(None), type(Ellipsis)})

# ------------------------------------------------------------------------------------------- tangent values
#
# Forward mode (engine.DualLevel): a tangent ALWAYS has a leading axis of k directions, (k, *shape), k = 1 for a
# single JVP. One layout everywhere keeps every JVP a single numpy expression: a primal's axis a is the tangent's
# axis a + 1 (``_tax``), and a tangent meets a primal of higher rank after ``_lift`` inserts the missing axes
# after the direction axis. The one other tangent value is ``Basis``, the identity seed of RTRL.


class Basis:
    """A tangent of k directions in which direction ``offset + i`` is the unit vector of a tensor's i-th entry
    (flat, C order) and every other direction is zero: seeding a parameter with it makes forward mode carry the
    derivative of everything downstream with respect to each of that parameter's entries (RTRL's influence).
    With ``index`` (one int per entry) entry i goes to direction ``offset + index[i]`` instead, and a direction
    is the sum of its entries' unit vectors (SnAp's compressed seed: entries that move disjoint units share one).
    Ops that can use it as it is (``Linear``) set ``takes_basis``; the engine makes it dense for the others."""

    __slots__ = ("index", "k", "offset", "shape")

    def __init__(self, k: int, offset: int, shape: tuple, index: Array | None = None) -> None:
        size = int(np.prod(shape, dtype=np.int64))
        if index is None:
            if not (0 <= offset and offset + size <= k):
                raise ValueError(f"Basis: directions {offset}..{offset + size} do not fit in k={k}")
        else:
            index = np.asarray(index)
            if index.shape != (size,) or index.dtype.kind not in "iu":
                raise ValueError(f"Basis: index must be {size} ints (one per entry), got {index.dtype} {index.shape}")
            if size and not (0 <= offset + index.min() and offset + index.max() < k):
                raise ValueError(f"Basis: index plus offset {offset} must lie in 0..{k - 1}")
        self.k, self.offset, self.shape, self.index = int(k), int(offset), tuple(shape), index

    def directions(self) -> Array:
        """Each entry's direction, (size,)."""
        n = int(np.prod(self.shape, dtype=np.int64))
        return self.offset + (np.arange(n) if self.index is None else self.index)

    def dense(self, dtype: np.dtype) -> Array:
        """As an array (k, *shape): zeros, with a 1 at [direction of entry i, entry i]."""
        n = int(np.prod(self.shape, dtype=np.int64))
        out = np.zeros((self.k, n), dtype)
        out[self.directions(), np.arange(n)] = 1
        return out.reshape((self.k, *self.shape))


def dense_tangent(t, dtype: np.dtype):
    """A tangent value as an array (a ``Basis`` made dense in ``dtype``); None and arrays pass through."""
    return t.dense(dtype) if isinstance(t, Basis) else t


def _lift(t: Array, n: int) -> Array:
    """A tangent (k, *s) with axes of length 1 inserted after the direction axis until it has 1 + n axes."""
    m = t.ndim - 1
    return t if m >= n else t.reshape(t.shape[:1] + (1,) * (n - m) + t.shape[1:])


def _tax(axis, ndim: int):
    """A primal's reduction axis (None, int or tuple) as the same axes of its tangent (direction axis first)."""
    if axis is None:
        return tuple(range(1, ndim + 1))
    if isinstance(axis, tuple):
        return tuple(a % ndim + 1 for a in axis)
    return axis % ndim + 1


def _no_ellipsis(idx, ndim: int):
    """``idx`` as a tuple with any Ellipsis written out as full slices (for a tensor of ``ndim`` axes), so that it
    never reaches an axis appended after those."""
    parts = idx if type(idx) is tuple else (idx,)
    if not any(p is Ellipsis for p in parts):
        return parts
    used = 0
    for p in parts:
        if p is None or p is Ellipsis or isinstance(p, (bool, np.bool_)):
            continue
        used += p.ndim if isinstance(p, np.ndarray) and p.dtype == bool else 1
    out = []
    for p in parts:
        out.extend([slice(None)] * (ndim - used) if p is Ellipsis else [p])
    return tuple(out)


# --------------------------------------------------------------------------------------------------- the op


class Op:
    """Base class of a recorded op: the graph node the engine walks and the renderer reads.

    Set when recorded: ``parents`` (per input, its vertex: the node that made it, or the input tensor itself if
    it is a leaf; None once released), ``needs`` (per input: ``engine.NO``, ``LEAF`` or ``NODE``), ``scope``
    (the enclosing scope names), ``seq`` (creation number, a topological order), ``out_shape``, ``out_dtype``
    and ``versions`` (the inputs' versions then). A node never holds the tensors an op read or made, only the
    arrays its VJP saved: ``saved`` is the arrays of the inputs listed in ``saves``, in order, then the output
    when ``saves_output`` (so the renderer can show a value wherever backward kept one, as torchviz's
    show_saved). Set through the output tensor: ``out_name`` (its name), ``_hooks`` (``register_hook``) and
    ``retained`` (a weak reference, ``retain_grad``). After ``backward(retain_graph=True)``: ``grad_out`` (the
    gradient of the output) and ``grads_in`` (per input, in its shape).
    """

    saves: tuple = ()  # the inputs whose arrays ``saved`` holds (a prefix): writing one in place invalidates the VJP
    saves_output = False  # True if ``saved`` ends with the output: writing it in place (through a detached alias)
    # invalidates the VJP
    takes_lazy = False  # True if backward accepts an unevaluated ``Outer`` gradient (a 2-D transpose)
    takes_basis = False  # True if jvp accepts a ``Basis`` tangent (else the engine hands it a dense array)
    saved: tuple = ()
    needs: tuple = ()
    parents: tuple | None = ()
    out_shape: tuple = ()
    out_dtype = None
    out_name: str | None = None
    retained = None  # weakref to the output tensor once it called retain_grad()
    _hooks: list | None = None
    out_version = None  # (counter, value at the first detach) once a detached tensor shares the output's data
    versions: tuple = ()
    epoch = 0
    _grad_out = None
    _grads_in = None

    @property
    def name(self) -> str:
        """The op's name, e.g. ``Tanh``."""
        return type(self).__name__

    @property
    def backward_name(self) -> str:
        """The name of this op's VJP node, e.g. ``TanhBackward``."""
        return type(self).__name__ + "Backward"

    @property
    def saved_shapes(self) -> tuple:
        """Shapes of the arrays kept for backward (empty once the graph is released)."""
        return tuple(np.shape(a) for a in (self.saved or ()))

    @property
    def grad_out(self) -> Array | None:
        """After ``backward(retain_graph=True)``: the gradient of this node's output."""
        return dense(self._grad_out)

    @property
    def grads_in(self) -> tuple | None:
        """After ``backward(retain_graph=True)``: the gradient sent to each input, as arrays in its shape."""
        if self._grads_in is None or self.parents is None:
            return None
        dtypes = [p.out_dtype if isinstance(p, Op) else p.data.dtype for p in self.parents]
        return tuple(dense(c, dt) for c, dt in zip(self._grads_in, dtypes))

    def keep_grads(self, g: Array, grads_in: list) -> None:
        """Keep this node's gradients for drawing and a later backward (``retain_graph=True``)."""
        self._grad_out, self._grads_in = g, grads_in

    def release(self) -> None:
        """Drop the inputs and saved arrays: frees the graph behind this node."""
        self.saved = self.parents = None

    def forward(self, *args: Array, **kwargs) -> Array:  # pragma: no cover - interface
        """Compute the output from input arrays."""
        raise NotImplementedError

    def backward(self, g: Array) -> tuple:  # pragma: no cover - interface
        """Map the output gradient to one gradient value (or None) per input."""
        raise NotImplementedError

    def jvp(self, *tangents: Array | None) -> Array | None:
        """Forward mode: map one tangent per input (k directions on a leading axis, (k, *input.shape); None is
        zero) to the output's tangent, in (k, *output.shape) or a shape that broadcasts to it."""
        raise NotImplementedError(f"{self.name}: no forward-mode JVP")


# ----------------------------------------------------------------------------------------- binary elementwise


class Add(Op):
    """d(a+b) = (g, g); JVP t_a + t_b"""

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g

    def jvp(self, ta, tb):
        if ta is None or tb is None:
            return tb if ta is None else ta  # (the engine broadcasts it to the output)
        n = max(ta.ndim, tb.ndim) - 1
        return _lift(ta, n) + _lift(tb, n)


class Sub(Op):
    """d(a-b) = (g, -g); JVP t_a - t_b"""

    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, (-g if self.needs[1] else None)

    def jvp(self, ta, tb):
        if tb is None:
            return ta
        if ta is None:
            return -tb
        n = max(ta.ndim, tb.ndim) - 1
        return _lift(ta, n) - _lift(tb, n)


class Mul(Op):
    """d(a*b) = (g*b, g*a); JVP t_a*b + a*t_b"""

    saves = (0, 1)

    def forward(self, a, b):
        self.saved = (a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        return (g * b if self.needs[0] else None), (g * a if self.needs[1] else None)

    def jvp(self, ta, tb):
        a, b = self.saved
        n = max(a.ndim, b.ndim)
        out = None if ta is None else _lift(ta, n) * b
        if tb is not None:
            out = a * _lift(tb, n) if out is None else out + a * _lift(tb, n)
        return out


class Div(Op):
    """d(a/b) = (g/b, -g*a/b^2); JVP (t_a - (a/b)*t_b)/b"""

    saves = (0, 1)

    def forward(self, a, b):
        self.saved = (a, b)
        return a / b

    def backward(self, g):
        a, b = self.saved
        return (g / b if self.needs[0] else None), (-g * a / (b * b) if self.needs[1] else None)

    def jvp(self, ta, tb):
        a, b = self.saved
        n = max(a.ndim, b.ndim)
        out = None if ta is None else _lift(ta, n) / b
        if tb is not None:
            term = -(a / (b * b)) * _lift(tb, n)
            out = term if out is None else out + term
        return out


class Pow(Op):
    """d(a**b) = (g*b*a^(b-1), g*a^b*log(a)); the second term is 0 where a == 0 and b >= 0 (as PyTorch)

    JVP t_a*b*a^(b-1) + t_b*a^b*log(a), with the same zeros
    """

    saves_output = True

    saves = (0, 1)

    def forward(self, a, b):
        out = a**b
        self.saved = (a, b, out)
        return out

    def backward(self, g):
        a, b, out = self.saved
        ga = gb = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.needs[0]:
                ga = np.where(b == 0, 0.0, g * b * a ** (b - 1)).astype(out.dtype, copy=False)
            if self.needs[1]:
                gb = np.where((a == 0) & (b >= 0), 0.0, g * out * np.log(a)).astype(out.dtype, copy=False)
        return ga, gb

    def jvp(self, ta, tb):
        a, b, out = self.saved
        n = out.ndim
        res = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if ta is not None:
                res = np.where(b == 0, 0.0, b * a ** (b - 1)).astype(out.dtype, copy=False) * _lift(ta, n)
            if tb is not None:
                cb = np.where((a == 0) & (b >= 0), 0.0, out * np.log(a)).astype(out.dtype, copy=False)
                res = cb * _lift(tb, n) if res is None else res + cb * _lift(tb, n)
        return res


class Maximum(Op):
    """d max(a,b) = g where a wins, split evenly on ties (as PyTorch)

    JVP w*t_a + (1-w)*t_b with w = 1 where a wins, 1/2 on ties (the VJP's split, so the two agree)
    """

    saves = (0, 1)
    pick = staticmethod(np.maximum)
    wins = staticmethod(np.greater)

    def forward(self, a, b):
        self.saved = (a, b)
        return self.pick(a, b)

    def backward(self, g):
        a, b = self.saved
        wa = (self.wins(a, b) + 0.5 * (a == b)).astype(g.dtype, copy=False)
        return g * wa, g * (1 - wa)

    def jvp(self, ta, tb):
        a, b = self.saved
        wa = (self.wins(a, b) + 0.5 * (a == b)).astype(np.result_type(a, b), copy=False)
        n = wa.ndim
        out = None if ta is None else wa * _lift(ta, n)
        if tb is not None:
            out = (1 - wa) * _lift(tb, n) if out is None else out + (1 - wa) * _lift(tb, n)
        return out


class Minimum(Maximum):
    """d min(a,b) = g where a wins, split evenly on ties (as PyTorch); JVP w*t_a + (1-w)*t_b, w as for Maximum"""

    pick = staticmethod(np.minimum)
    wins = staticmethod(np.less)


class Where(Op):
    """d where(c, a, b) = (-, g where c, g where not c); the condition gets no gradient; JVP where(c, t_a, t_b)"""

    saves = (0,)

    def forward(self, c, a, b):
        self.saved = (c,)
        return np.where(c, a, b)

    def backward(self, g):
        (c,) = self.saved
        zero = np.zeros((), g.dtype)
        return None, np.where(c, g, zero), np.where(c, zero, g)

    def jvp(self, tc, ta, tb):
        (c,) = self.saved
        ref = ta if ta is not None else tb
        n = max(c.ndim, *(t.ndim - 1 for t in (ta, tb) if t is not None))
        zero = np.zeros((), ref.dtype)
        return np.where(c, zero if ta is None else _lift(ta, n), zero if tb is None else _lift(tb, n))


def _rows(a: Array) -> Array:
    """``a`` as a matrix of rows (leading axes folded); a 2-D array itself, so that two weights handed the same
    gradient array share its stacked copy."""
    return a if a.ndim == 2 else a.reshape(-1, a.shape[-1])


@functools.lru_cache(maxsize=8)
def _ones_column(n: int, dtype: np.dtype) -> Array:
    """A read-only (n, 1) column of ones, shared: a bias's deferred gradient is g^T @ 1."""
    ones = np.ones((n, 1), dtype)
    ones.flags.writeable = False
    return ones


class MatMul(Op):
    """d(a@b) = (g @ b^T, a^T @ g), with numpy's 1-D promotion rules undone; a 2-D b's term stays an ``Outer``

    JVP t_a @ b + a @ t_b, with the same 1-D rules
    """

    saves = (0, 1)

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"MatMul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
        k = b.shape[-2 if b.ndim > 1 else 0]
        if a.shape[-1] != k:
            raise ValueError(f"MatMul: inner dimensions differ: {a.shape} @ {b.shape} ({a.shape[-1]} != {k})")
        self.saved = (a, b)
        return a @ b

    def backward(self, g):
        a, b = self.saved
        if b.ndim == 2 and a.ndim >= 2:  # every layer's case: (..., n, k) @ (k, m)
            ga = g @ b.T if self.needs[0] else None
            return ga, (Outer([(_rows(a), _rows(g))], b.shape) if self.needs[1] else None)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        # Restore the dimensions numpy dropped; b's trailing one first, so that 1-D @ 1-D (a 0-d g) works too.
        if b.ndim == 1:
            g = np.expand_dims(g, -1)
        if a.ndim == 1:
            g = np.expand_dims(g, -2)
        ga = gb = None
        if self.needs[0]:
            ga = g @ np.swapaxes(b2, -1, -2)
            ga = ga[..., 0, :] if a.ndim == 1 else ga
        if self.needs[1]:
            gb = np.swapaxes(a2, -1, -2) @ g
            gb = gb[..., 0] if b.ndim == 1 else gb
        return ga, gb

    def jvp(self, ta, tb):
        a, b = self.saved
        # As the VJP: promote 1-D operands to matrices, then lift every tangent to the common batch rank (the
        # direction axis leads, before the batch axes) and drop the promoted axes again at the end.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        n = max(a2.ndim, b2.ndim)
        out = None
        if ta is not None:
            out = _lift(ta[..., None, :] if a.ndim == 1 else ta, n) @ b2
        if tb is not None:
            term = a2 @ _lift(tb[..., :, None] if b.ndim == 1 else tb, n)
            out = term if out is None else out + term
        if b.ndim == 1:
            out = out[..., 0]
        if a.ndim == 1:
            out = out[..., 0] if b.ndim == 1 else out[..., 0, :]
        return out


class Linear(Op):
    """d(x @ w^T + b) = (g @ w, g^T @ x, g^T @ 1); x is (..., in), w (out, in), b (out,); w's and b's as ``Outer``.

    JVP t_x @ w^T + x @ t_w^T + t_b. A ``Basis`` tangent of w or b (RTRL's seed) is not made dense: its block of
    directions is written straight into the result (direction (o, j) of w moves output o by x_j).

    One node for a layer's affine map, as PyTorch's addmm: the recurrent cells call it twice per step, so it
    saves them a transpose node and a bias node on each call. ``b`` may also be an addend of any shape that
    broadcasts to the output (addmm's ``input``; its gradient is g, summed over the broadcast axes): a recurrent
    layer passes a step's input projection there, so h @ W_hh^T is never a node (and an array) of its own.
    """

    saves = (0, 1)
    addend = False  # True when b is an addend of the output's shape rather than a bias vector

    def forward(self, x, w, b=None):
        if x.ndim == 0 or w.ndim != 2 or x.shape[-1] != w.shape[1]:
            raise ValueError(f"Linear: need input (..., in) and weight (out, in), got {x.shape} and {w.shape}")
        if b is not None and b.shape != (w.shape[0],):
            out = (*x.shape[:-1], w.shape[0])
            try:
                fits = np.broadcast_shapes(b.shape, out) == out
            except ValueError:
                fits = False
            if not fits:
                raise ValueError(f"Linear: bias of shape {b.shape} does not broadcast to the output's {out}")
        self.saved = (x, w)
        self.addend = b is not None and b.shape != (w.shape[0],)
        if x.ndim == 2 and 1 < x.shape[0] <= 64 and w.size >= 1 << 16:
            # A few rows times a big weight (a batch at one time step): OpenBLAS computes (W @ x^T)^T up to 2x
            # faster than x @ W^T, and copying it into a C-order result, with the bias added on the way, costs
            # less than that saves (B=32 by a (512, 128) weight: 62 instead of 77 us; with more rows it loses).
            t = (w @ x.T).T
            y = np.empty(t.shape, t.dtype if b is None or b.dtype == t.dtype else np.result_type(t, b))
            if b is None:
                np.copyto(y, t)
                return y
            return np.add(t, b, out=y)
        # Leading axes folded into rows: one BLAS call for a whole (T, B, in) sequence, not T small ones.
        y = x @ w.T if x.ndim <= 2 else (_rows(x) @ w.T).reshape(*x.shape[:-1], w.shape[0])
        if b is not None:
            y = np.add(y, b, out=y) if b.dtype == y.dtype else y + b  # in place when the dtypes allow
        return y

    def backward(self, g):
        x, w = self.saved
        needs = self.needs
        g2 = _rows(g)
        gx = (g2 @ w).reshape(x.shape) if needs[0] else None
        gw = Outer([(g2, _rows(x))], w.shape) if needs[1] else None
        if len(needs) == 2:
            return gx, gw
        if not needs[2]:
            return gx, gw, None
        if self.addend:  # the engine sums it over b's broadcast axes
            return gx, gw, g
        return gx, gw, Outer([(g2, _ones_column(g2.shape[0], g2.dtype))], w.shape[:1])

    takes_basis = True

    def jvp(self, tx, tw, tb=None):
        x, w = self.saved
        O, I_ = w.shape
        k = next(t for t in (tx, tw, tb) if t is not None)
        k = k.k if isinstance(k, Basis) else k.shape[0]
        x2 = _rows(x)
        N = x2.shape[0]
        if isinstance(tx, Basis):
            tx = tx.dense(x.dtype)
        if isinstance(tb, Basis) and self.addend:
            tb = tb.dense(x.dtype)
        out = None
        if tx is not None:  # every direction and row in one product: (k*N, in) @ (in, O)
            out = (tx.reshape(k * N, I_) @ w.T).reshape(k, N, O)
        if tw is not None and not isinstance(tw, Basis):
            term = np.matmul(x2, np.swapaxes(tw, -1, -2))  # (N, in) @ (k, in, O)
            out = term if out is None else np.add(out, term, out=out if out.dtype == term.dtype else None)
        if tb is not None and not isinstance(tb, Basis):
            tb = _lift(tb, x.ndim)  # (k, out) or an addend's (k, *b.shape): against (k, *lead, out)
            lead = x.shape[:-1]
            out = np.broadcast_to(tb, (k, *lead, O)) if out is None else out.reshape(k, *lead, O) + tb
        if isinstance(tw, Basis) or isinstance(tb, Basis):
            if out is None or not out.flags.writeable:
                dt = np.result_type(x, w) if out is None else out.dtype
                out = np.zeros((k, N, O), dt) if out is None else np.array(out)
            ar = np.arange(O)
            if isinstance(tw, Basis) and tw.index is None:
                blk = out[tw.offset : tw.offset + O * I_].reshape(O, I_, N, O)
                blk[ar, :, :, ar] += x2.T  # (O, I_, N): direction (o, j), every row n, output o
            elif isinstance(tw, Basis):  # entry (o, j) in direction d[o, j]; add.at sums entries sharing one
                np.add.at(out, (tw.directions().reshape(O, I_), slice(None), ar[:, None]), x2.T)
            if isinstance(tb, Basis):
                np.add.at(out, (tb.directions(), slice(None), ar), 1)
        return out.reshape(k, *x.shape[:-1], O)


# --------------------------------------------------------------------------------------------- unary


class Neg(Op):
    """d(-x) = -g; JVP -t"""

    def forward(self, x):
        return -x

    def backward(self, g):
        return (-g,)

    def jvp(self, t):
        return -t


class Exp(Op):
    """d exp(x) = g*exp(x); JVP t*exp(x)"""

    saves_output = True

    def forward(self, x):
        y = np.exp(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        return (g * self.saved[0],)

    def jvp(self, t):
        return t * self.saved[0]


class Log(Op):
    """d log(x) = g/x; JVP t/x"""

    saves = (0,)

    def forward(self, x):
        self.saved = (x,)
        return np.log(x)

    def backward(self, g):
        return (g / self.saved[0],)

    def jvp(self, t):
        return t / self.saved[0]


class Sqrt(Op):
    """d sqrt(x) = g/(2 sqrt(x)); JVP t/(2 sqrt(x))"""

    saves_output = True

    def forward(self, x):
        y = np.sqrt(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        return (g / (2 * self.saved[0]),)

    def jvp(self, t):
        return t / (2 * self.saved[0])


class Abs(Op):
    """d|x| = g*sign(x) (0 at x == 0, as PyTorch); JVP t*sign(x)"""

    saves = (0,)

    def forward(self, x):
        self.saved = (x,)
        return np.abs(x)

    def backward(self, g):
        return (g * np.sign(self.saved[0]),)

    def jvp(self, t):
        return t * np.sign(self.saved[0])


class Sin(Op):
    """d sin(x) = g*cos(x); JVP t*cos(x)"""

    saves = (0,)

    def forward(self, x):
        self.saved = (x,)
        return np.sin(x)

    def backward(self, g):
        return (g * np.cos(self.saved[0]),)

    def jvp(self, t):
        return t * np.cos(self.saved[0])


class Cos(Op):
    """d cos(x) = -g*sin(x); JVP -t*sin(x)"""

    saves = (0,)

    def forward(self, x):
        self.saved = (x,)
        return np.cos(x)

    def backward(self, g):
        return (-g * np.sin(self.saved[0]),)

    def jvp(self, t):
        return -t * np.sin(self.saved[0])


class Tanh(Op):
    """d tanh(x) = g*(1 - tanh(x)^2); JVP t*(1 - tanh(x)^2)"""

    saves_output = True

    def forward(self, x):
        y = np.tanh(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        y = self.saved[0]
        d = np.asarray(y * y)  # one array, updated in place: these run on every gate of every step
        np.subtract(1, d, out=d)
        d *= g
        return (d,)

    def jvp(self, t):
        y = self.saved[0]
        return t * (1 - y * y)


@functools.lru_cache(maxsize=8)
def _exp_cap(dtype: np.dtype) -> float:
    """The largest x with exp(x) finite in ``dtype`` (88.72 for float32)."""
    return float(np.log(np.finfo(dtype).max)) * (1 - 1e-7)


def sigmoid(x: Array) -> Array:
    """Logistic function 1/(1+exp(-x)), accurate in relative terms, with no overflow for any x.

    exp(-x) is capped where it would overflow (x below about -88.7 in float32, -709.8 in float64): there the
    result stays at sigmoid(-88.7), about 3e-39 (5e-309 in float64), a subnormal number. The cap costs one
    pass; ``np.errstate`` would cost 2.8 us per call, more than the whole sigmoid of a (B, 4H) gate block.
    """
    e = np.asarray(np.negative(x if x.dtype.kind == "f" else x.astype(np.float64)))
    np.minimum(e, _exp_cap(e.dtype), out=e)
    np.exp(e, out=e)
    e += 1
    return np.divide(1, e, out=e)


class Sigmoid(Op):
    """d sigmoid(x) = g*s*(1-s); JVP t*s*(1-s)"""

    saves_output = True

    def forward(self, x):
        y = sigmoid(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        y = self.saved[0]
        d = 1 - y  # one array, updated in place
        d *= y
        d *= g
        return (d,)

    def jvp(self, t):
        y = self.saved[0]
        return t * (y * (1 - y))


class Relu(Op):
    """d relu(x) = g*(x > 0); JVP t*(x > 0)"""

    saves_output = True

    def forward(self, x):
        y = np.maximum(x, 0)
        self.saved = (y,)
        return y

    def backward(self, g):
        return (g * (self.saved[0] > 0),)

    def jvp(self, t):
        return t * (self.saved[0] > 0)


class LeakyRelu(Op):
    """d leaky_relu(x) = g where x > 0, else g*slope (slope at 0, as PyTorch); JVP t where x > 0, else t*slope"""

    saves = (0,)

    def forward(self, x, slope=0.01):
        self.slope = slope
        self.saved = (x,)
        return np.where(x > 0, x, x * np.asarray(slope, x.dtype))

    def backward(self, g):
        return (np.where(self.saved[0] > 0, g, g * np.asarray(self.slope, g.dtype)),)

    def jvp(self, t):
        return np.where(self.saved[0] > 0, t, t * np.asarray(self.slope, t.dtype))


class PowScalar(Op):
    """d x**p = g*p*x^(p-1) (0 when p == 0); JVP t*p*x^(p-1) (0 when p == 0)"""

    saves = (0,)

    def forward(self, x, p=2.0):
        self.p = p
        self.saved = (x,)
        return x**p

    def backward(self, g):
        x, p = self.saved[0], self.p
        return (np.zeros_like(g) if p == 0 else g * (p * x ** (p - 1)),)

    def jvp(self, t):
        x, p = self.saved[0], self.p
        return None if p == 0 else t * (p * x ** (p - 1))


class Clip(Op):
    """d clip(x, lo, hi) = g where lo <= x <= hi, else 0 (as PyTorch's clamp); JVP t where lo <= x <= hi, else 0"""

    saves = (0,)

    def forward(self, x, lo=None, hi=None):
        self.saved = (x,)
        self.lo, self.hi = lo, hi
        return np.clip(x, lo, hi)

    def backward(self, g):
        x = self.saved[0]
        keep = np.ones(x.shape, bool)
        if self.lo is not None:
            keep &= x >= self.lo
        if self.hi is not None:
            keep &= x <= self.hi
        return (g * keep,)

    def jvp(self, t):
        x = self.saved[0]
        keep = np.ones(x.shape, bool)
        if self.lo is not None:
            keep &= x >= self.lo
        if self.hi is not None:
            keep &= x <= self.hi
        return t * keep


class Cast(Op):
    """d x.astype(t) = g.astype(x.dtype); JVP t (the engine casts it to the output's dtype)"""

    def forward(self, x, dtype=None):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return (g.astype(self.in_dtype),)

    def jvp(self, t):
        return t


class Clone(Op):
    """d copy(x) = g; JVP t"""

    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return (g,)

    def jvp(self, t):
        return t


# --------------------------------------------------------------------------------------------- reductions


def _keep(shape: tuple, axis) -> tuple:
    """The shape a reduction over ``axis`` has with keepdims=True."""
    if axis is None:
        return (1,) * len(shape)
    axes = {a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis)} if shape else set()
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _drop(shape: tuple, axis) -> tuple:
    """The shape a reduction over ``axis`` has with keepdims=False."""
    if axis is None:
        return ()
    axes = {a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis)}
    return tuple(s for i, s in enumerate(shape) if i not in axes)


class Sum(Op):
    """d sum(x) = g broadcast back over the reduced axes; JVP sum(t) over the same axes"""

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape, self.keep = x.shape, _keep(x.shape, axis)
        self.axis, self.keepdims = axis, keepdims  # (for the JVP)
        return np.sum(x, axis=axis, keepdims=keepdims)

    def backward(self, g):
        return (np.broadcast_to(g.reshape(self.keep), self.in_shape),)

    def jvp(self, t):
        return np.sum(t, axis=_tax(self.axis, len(self.in_shape)), keepdims=self.keepdims)


class Mean(Op):
    """d mean(x) = g/n broadcast back over the reduced axes; JVP mean(t) over the same axes"""

    def forward(self, x, axis=None, keepdims=False):
        out = np.mean(x, axis=axis, keepdims=keepdims)
        self.in_shape, self.keep = x.shape, _keep(x.shape, axis)
        self.n = max(x.size // max(out.size, 1), 1)
        self.axis, self.keepdims = axis, keepdims  # (for the JVP)
        return out

    def backward(self, g):
        return (np.broadcast_to(g.reshape(self.keep) / self.n, self.in_shape),)

    def jvp(self, t):
        return np.sum(t, axis=_tax(self.axis, len(self.in_shape)), keepdims=self.keepdims) / self.n


class Max(Op):
    """d max(x) = g at the maxima, split evenly among ties (as PyTorch's amax)

    JVP mean of t over the maxima (the VJP's even split)
    """

    saves_output = True

    saves = (0,)
    reduce = staticmethod(np.max)

    def forward(self, x, axis=None, keepdims=False):
        out = self.reduce(x, axis=axis, keepdims=True)
        self.saved, self.axis = (x, out), axis
        self.keepdims = keepdims  # (for the JVP)
        return out if keepdims else out.reshape(_drop(x.shape, axis))

    def backward(self, g):
        x, out = self.saved
        mask = x == out
        count = mask.sum(axis=self.axis, keepdims=True)
        return (mask * (g.reshape(out.shape) / count).astype(g.dtype, copy=False),)

    def jvp(self, t):
        x, out = self.saved
        mask = x == out
        axes = _tax(self.axis, x.ndim)
        res = np.sum(t * mask, axis=axes, keepdims=True) / mask.sum(axis=self.axis, keepdims=True)
        return res if self.keepdims else res.reshape(t.shape[:1] + _drop(x.shape, self.axis))


class Min(Max):
    """d min(x) = g at the minima, split evenly among ties (as PyTorch's amin); JVP mean of t over the minima"""

    reduce = staticmethod(np.min)


class Softmax(Op):
    """d softmax(x) = y*(g - sum(g*y)); JVP y*(t - sum(y*t))"""

    saves_output = True

    def forward(self, x, axis=-1):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        self.saved, self.axis = (y,), axis
        return y

    def backward(self, g):
        y = self.saved[0]
        gy = g * y
        return (gy - y * gy.sum(axis=self.axis, keepdims=True),)

    def jvp(self, t):
        y = self.saved[0]
        yt = y * t
        return yt - y * np.sum(yt, axis=_tax(self.axis, y.ndim), keepdims=True)


def _logsumexp(x: Array, axis) -> Array:
    """log(sum(exp(x))) with keepdims, shifted by the max so it never overflows."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


class LogSoftmax(Op):
    """d log_softmax(x) = g - softmax(x)*sum(g); JVP t - sum(softmax(x)*t)"""

    saves_output = True

    def forward(self, x, axis=-1):
        y = x - _logsumexp(x, axis)
        self.saved, self.axis = (y,), axis
        return y

    def backward(self, g):
        return (g - np.exp(self.saved[0]) * g.sum(axis=self.axis, keepdims=True),)

    def jvp(self, t):
        y = self.saved[0]
        return t - np.sum(np.exp(y) * t, axis=_tax(self.axis, y.ndim), keepdims=True)


class LogSumExp(Op):
    """d logsumexp(x) = g*softmax(x); JVP sum(softmax(x)*t)"""

    saves_output = True

    saves = (0,)

    def forward(self, x, axis=None, keepdims=False):
        out = _logsumexp(x, axis)
        self.saved = (x, out)
        self.axis, self.keepdims = axis, keepdims  # (for the JVP)
        return out if keepdims else out.reshape(_drop(x.shape, axis))

    def backward(self, g):
        x, out = self.saved
        return (g.reshape(out.shape) * np.exp(x - out),)

    def jvp(self, t):
        x, out = self.saved
        res = np.sum(np.exp(x - out) * t, axis=_tax(self.axis, x.ndim), keepdims=True)
        return res if self.keepdims else res.reshape(t.shape[:1] + _drop(x.shape, self.axis))


# --------------------------------------------------------------------------------------------- movement


class Reshape(Op):
    """d reshape(x) = g reshaped back; JVP t reshaped the same way"""

    def forward(self, x, shape=()):
        self.in_shape = x.shape
        y = x.reshape(shape)
        self.out_shape = y.shape  # (for the JVP)
        return y

    def backward(self, g):
        return (g.reshape(self.in_shape),)

    def jvp(self, t):
        return t.reshape(t.shape[:1] + self.out_shape)


class Transpose(Op):
    """d transpose(x, axes) = g transposed by the inverse permutation (an unevaluated ``Outer`` for 2-D)

    JVP t transposed the same way
    """

    def forward(self, x, axes=None):
        self.axes = tuple(range(x.ndim))[::-1] if axes is None else tuple(axes)
        self.takes_lazy = self.axes == (1, 0)
        return np.transpose(x, self.axes)

    def backward(self, g):
        if self.takes_lazy:
            return (g.T,)
        inv = [0] * len(self.axes)  # the inverse permutation (np.argsort costs more than a small g's transpose)
        for i, a in enumerate(self.axes):
            inv[a] = i
        return (np.transpose(g, inv),)

    def jvp(self, t):
        return np.transpose(t, (0, *(a + 1 for a in self.axes)))


class Expand(Op):
    """d broadcast_to(x) = g; the engine's unbroadcast sums it back to x's shape; JVP t broadcast the same way"""

    def forward(self, x, shape=()):
        self.shape = tuple(shape)  # (for the JVP)
        return np.broadcast_to(x, shape)

    def backward(self, g):
        return (g,)

    def jvp(self, t):
        return np.broadcast_to(_lift(t, len(self.shape)), t.shape[:1] + self.shape)


class GetItem(Op):
    """d x[idx] = g scattered into zeros, as a ``SliceAdd``; repeated integer indices add up

    JVP t[idx] (the direction axis kept in front)
    """

    def forward(self, x, idx=None):
        self.in_shape, self.idx = x.shape, idx
        return x[idx]

    def backward(self, g):
        return (SliceAdd(self.in_shape, self.idx, g),)

    def jvp(self, t):
        idx = self.idx
        if _is_basic(idx):  # ints, slices, None, Ellipsis: a leading full slice keeps the direction axis first
            return t[(slice(None), *(idx if type(idx) is tuple else (idx,)))]
        # Advanced indices: numpy moves their axes to the front when they are separated, so a leading slice would
        # not stay in front. With the direction axis last instead (and Ellipsis spelled out, so the index never
        # reaches that axis), the index picks the same entries for every direction, whatever its kind.
        moved = np.moveaxis(t, 0, -1)
        return np.moveaxis(moved[_no_ellipsis(idx, len(self.in_shape))], -1, 0)


class Gather(Op):
    """d take_along_axis(x, index, axis) = g scatter-added into zeros at index along axis

    JVP take_along_axis(t, index, axis)
    """

    def forward(self, x, index=None, axis=0):
        self.in_shape, self.index, self.axis = x.shape, index, axis
        return np.take_along_axis(x, index, axis=axis)

    def backward(self, g):
        out = np.zeros(self.in_shape, g.dtype)
        # The full index of every element of g: the gathered axis from ``index``, the others from a grid.
        grid = list(np.indices(self.index.shape, sparse=True))
        grid[self.axis] = self.index
        np.add.at(out, tuple(grid), g)
        return (out,)

    def jvp(self, t):
        return np.take_along_axis(t, self.index[None], axis=self.axis + 1)


class Cat(Op):
    """d cat(xs) = g split back into the pieces; JVP cat(ts) (a missing tangent is zeros of its piece's shape)"""

    def forward(self, *xs, axis=0):
        self.axis = axis
        self.bounds = np.cumsum([x.shape[axis] for x in xs[:-1]])
        self.last = xs[-1].shape[axis]  # (for the JVP)
        return np.concatenate(xs, axis=axis)

    def backward(self, g):
        return tuple(np.split(g, self.bounds, axis=self.axis))

    def jvp(self, *ts):
        ref = next(t for t in ts if t is not None)
        ax = self.axis + 1
        sizes = [*np.diff(self.bounds, prepend=0).tolist(), self.last]
        parts = [
            t if t is not None else np.zeros((*ref.shape[:ax], int(n), *ref.shape[ax + 1 :]), ref.dtype)
            for t, n in zip(ts, sizes)
        ]
        return np.concatenate(parts, axis=ax)


class Stack(Op):
    """d stack(xs) = g unstacked along the new axis; JVP stack(ts) along the same new axis"""

    def forward(self, *xs, axis=0):
        out = np.stack(xs, axis=axis)
        self.axis = axis % out.ndim
        return out

    def backward(self, g):
        lead = (slice(None),) * self.axis
        return tuple(g[(*lead, i)] for i in range(g.shape[self.axis]))

    def jvp(self, *ts):
        ref = next(t for t in ts if t is not None)
        zero = None
        parts = []
        for t in ts:
            if t is None:
                zero = np.zeros_like(ref) if zero is None else zero
                t = zero
            parts.append(t)
        return np.stack(parts, axis=self.axis + 1)
