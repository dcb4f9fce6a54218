"""Primitive ops: each class holds a forward and its vector-Jacobian product (VJP) side by side.

This module imports numpy only. An op works on plain ndarrays: ``forward`` computes the output and keeps in
``self.saved`` exactly the arrays its backward needs; ``backward(g)`` maps the gradient of the output to one
gradient per input, *in the broadcast shape of the output*. Reducing those back to each input's shape
("unbroadcast") happens in one place only, the engine in ``tensor.py``. A backward never writes into ``g``
and keeps no reference to the arrays it returns: the engine may add into a fresh one in place or keep it as
a leaf's ``.grad``.

``self.needs`` (one bool per input, set by the engine when it records the op) lets expensive VJPs skip
inputs that do not require a gradient, e.g. the data side of a matmul.
"""

from __future__ import annotations

import functools

import numpy as np

Array = np.ndarray


class Op:
    """Base class of a recorded op: the graph node the engine walks and the visualizer reads.

    Attributes set by the engine: ``seq`` (creation number), ``parents`` (ordered input Tensors; None once
    released), ``needs``, ``scope`` (tuple of enclosing scope names), and, after a
    ``backward(retain_graph=True)``, ``grad_out`` (gradient of the output) and ``grads_in`` (per parent). A node
    does not point back to its output: the graph is walked from tensors (``tensor.grad_fn``), and every object a
    node holds is one more the garbage collector visits while a long unrolled graph is being built.
    """

    saved: tuple = ()
    needs: tuple = (True, True)
    # Ops whose VJP scatters into a part of their single input define ``backward_into(g, acc)``; see GetItem.
    backward_into = None
    # Ops with matrix-product VJPs define ``outer_vjp(g) -> [(input index, A, B), ...]``, that input's gradient
    # being A^T @ B (reshaped to the input's shape), and then skip those inputs in ``backward``; the engine sums
    # such terms lazily.
    outer_vjp = None
    # True for a 2-D transpose, which the engine lets deferred product terms pass through unevaluated.
    swaps_2d = False
    grad_out: Array | None = None
    grads_in: tuple | None = None

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

    def forward(self, *args: Array, **kwargs) -> Array:  # pragma: no cover - interface
        """Compute the output from input arrays."""
        raise NotImplementedError

    def backward(self, g: Array) -> tuple:  # pragma: no cover - interface
        """Map the output gradient to one gradient (or None) per input."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------------- binary elementwise


class Add(Op):
    """d(a+b) = (g, g)"""

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Op):
    """d(a-b) = (g, -g)"""

    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, (-g if self.needs[1] else None)


class Mul(Op):
    """d(a*b) = (g*b, g*a)"""

    def forward(self, a, b):
        self.saved = (a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        return (g * b if self.needs[0] else None), (g * a if self.needs[1] else None)


class Div(Op):
    """d(a/b) = (g/b, -g*a/b^2)"""

    def forward(self, a, b):
        self.saved = (a, b)
        return a / b

    def backward(self, g):
        a, b = self.saved
        ga = g / b if self.needs[0] else None
        gb = -g * a / (b * b) if self.needs[1] else None
        return ga, gb


class Pow(Op):
    """d(a**b) = (g*b*a^(b-1), g*a^b*log(a)); the second term is 0 where a == 0 and b >= 0 (as PyTorch)."""

    def forward(self, a, b):
        out = a**b
        self.saved = (a, b, out)
        return out

    def backward(self, g):
        a, b, out = self.saved
        with np.errstate(divide="ignore", invalid="ignore"):
            ga = g * b * a ** (b - 1) if self.needs[0] else None
            if ga is not None:
                ga = np.where(b == 0, 0.0, ga).astype(ga.dtype, copy=False)
            gb = None
            if self.needs[1]:
                gb = np.where((a == 0) & (b >= 0), 0.0, g * out * np.log(a)).astype(out.dtype, copy=False)
        return ga, gb


class Maximum(Op):
    """d max(a,b) = g where a wins, split evenly on ties (as PyTorch)."""

    def forward(self, a, b):
        self.saved = (a, b)
        return np.maximum(a, b)

    def backward(self, g):
        a, b = self.saved
        wa = (a > b) + 0.5 * (a == b)
        return g * wa.astype(g.dtype, copy=False), g * (1 - wa).astype(g.dtype, copy=False)


class Minimum(Op):
    """d min(a,b) = g where a wins, split evenly on ties (as PyTorch)."""

    def forward(self, a, b):
        self.saved = (a, b)
        return np.minimum(a, b)

    def backward(self, g):
        a, b = self.saved
        wa = (a < b) + 0.5 * (a == b)
        return g * wa.astype(g.dtype, copy=False), g * (1 - wa).astype(g.dtype, copy=False)


class Where(Op):
    """d where(c, a, b) = (g where c, g where not c); the condition gets no gradient."""

    def forward(self, c, a, b):
        self.saved = (c,)
        return np.where(c, a, b)

    def backward(self, g):
        (c,) = self.saved
        zero = np.zeros((), g.dtype)
        return None, np.where(c, g, zero), np.where(c, zero, g)


def _rows(a: Array) -> Array:
    """``a`` as a matrix of rows (leading axes folded); a 2-D array itself, so the engine can tell that two
    weights were handed the very same gradient array."""
    return a if a.ndim == 2 else a.reshape(-1, a.shape[-1])


@functools.lru_cache(maxsize=8)
def _ones_column(n: int, dtype: np.dtype) -> Array:
    """A read-only (n, 1) column of ones, shared: a bias's deferred gradient is g^T @ 1."""
    ones = np.ones((n, 1), dtype)
    ones.flags.writeable = False
    return ones


class MatMul(Op):
    """d(a@b) = (g @ b^T, a^T @ g), with numpy's 1-D promotion rules undone."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"MatMul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"MatMul: inner dimensions differ: {a.shape} @ {b.shape} "
                f"({a.shape[-1]} != {b.shape[-2 if b.ndim > 1 else 0]})"
            )
        self.saved = (a, b)
        return a @ b

    def outer_vjp(self, g):
        """The VJP for a 2-D ``b`` as the factors (a, g) of a^T @ g (rows of a batched ``a`` folded)."""
        a, b = self.saved
        if b.ndim != 2 or a.ndim < 2 or not self.needs[1]:
            return None
        self.needs = (self.needs[0], False)
        return [(1, _rows(a), _rows(g))]

    def backward(self, g):
        a, b = self.saved
        if a.ndim == 2 and b.ndim == 2:  # the hot path of every layer
            ga = g @ b.T if self.needs[0] else None
            gb = a.T @ g if self.needs[1] else None
            return ga, gb
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
            if b2.ndim == 2 and a2.ndim > 2:  # (..., n, k) @ (k, m): fold the batch into one matmul
                gb = a2.reshape(-1, a2.shape[-1]).T @ g.reshape(-1, g.shape[-1])
            else:
                gb = np.swapaxes(a2, -1, -2) @ g
            gb = gb[..., 0] if b.ndim == 1 else gb
        return ga, gb


class Linear(Op):
    """d(x @ w^T + b) = (g @ w, g^T @ x, g summed over x's leading axes); x is (..., in), w (out, in), b (out,)

    One node for a layer's affine map, as PyTorch's addmm: the recurrent cells call it twice per step, so it
    saves them a transpose node and a bias node on each call.
    """

    def forward(self, x, w, b=None):
        if x.ndim == 0 or w.ndim != 2 or x.shape[-1] != w.shape[1]:
            raise ValueError(f"Linear: need input (..., in) and weight (out, in), got {x.shape} and {w.shape}")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"Linear: bias must have shape ({w.shape[0]},) for weight {w.shape}, got {b.shape}")
        self.saved = (x, w)
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
            # (in place when b's dtype is y's: np.result_type would say so too, but costs a microsecond)
            y = np.add(y, b, out=y) if b.dtype == y.dtype else y + b
        return y

    def outer_vjp(self, g):
        """The weight's VJP as the factors (g, x) of g^T @ x, the bias's as (g, 1) of g^T @ 1 (a column sum)."""
        needs = self.needs
        g2 = _rows(g)
        out = [(1, g2, _rows(self.saved[0]))] if needs[1] else []
        if len(needs) > 2 and needs[2]:
            out.append((2, g2, _ones_column(g2.shape[0], g2.dtype)))
        self.needs = (needs[0], False, False)[: len(needs)]
        return out

    def backward(self, g):
        x, w = self.saved
        needs = self.needs
        g2 = _rows(g)
        gx = (g2 @ w).reshape(x.shape) if needs[0] else None
        gw = g2.T @ _rows(x) if needs[1] else None
        gb = g2.sum(axis=0) if len(needs) > 2 and needs[2] else None
        return gx, gw, gb


# --------------------------------------------------------------------------------------------- unary


class Neg(Op):
    """d(-x) = -g"""

    def forward(self, x):
        return -x

    def backward(self, g):
        return (-g,)


class Exp(Op):
    """d exp(x) = g*exp(x)"""

    def forward(self, x):
        y = np.exp(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        return (g * self.saved[0],)


class Log(Op):
    """d log(x) = g/x"""

    def forward(self, x):
        self.saved = (x,)
        return np.log(x)

    def backward(self, g):
        return (g / self.saved[0],)


class Sqrt(Op):
    """d sqrt(x) = g/(2 sqrt(x))"""

    def forward(self, x):
        y = np.sqrt(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        return (g / (2 * self.saved[0]),)


class Abs(Op):
    """d|x| = g*sign(x) (0 at x == 0, as PyTorch)"""

    def forward(self, x):
        self.saved = (x,)
        return np.abs(x)

    def backward(self, g):
        return (g * np.sign(self.saved[0]),)


class Tanh(Op):
    """d tanh(x) = g*(1 - tanh(x)^2)"""

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


def sigmoid(x: Array) -> Array:
    """Logistic function 1/(1+exp(-x)), accurate in relative terms, with no overflow warning for any x.

    Where exp(-x) overflows to inf (x below about -88 in float32) the result is 0, the value rounded: sigmoid
    has already fallen below the dtype's smallest normal number there.
    """
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    e = np.negative(x)
    if type(e) is not np.ndarray:  # a ufunc gives a scalar for 0-d input
        e = np.asarray(e)
    with np.errstate(over="ignore"):
        np.exp(e, out=e)
    e += 1
    return np.divide(1, e, out=e)


class Sigmoid(Op):
    """d sigmoid(x) = g*s*(1-s)"""

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


class Relu(Op):
    """d relu(x) = g*(x > 0)"""

    def forward(self, x):
        y = np.maximum(x, 0)
        self.saved = (y,)
        return y

    def backward(self, g):
        return (g * (self.saved[0] > 0),)


class LeakyRelu(Op):
    """d leaky_relu(x) = g where x > 0, else g*slope (slope at 0, as PyTorch)"""

    def forward(self, x, slope=0.01):
        self.slope = slope
        self.saved = (x,)
        return np.where(x > 0, x, x * np.asarray(slope, x.dtype))

    def backward(self, g):
        x = self.saved[0]
        return (np.where(x > 0, g, g * np.asarray(self.slope, g.dtype)),)


class PowScalar(Op):
    """d x**p = g*p*x^(p-1) (0 when p == 0)"""

    def forward(self, x, p=2.0):
        self.p = p
        self.saved = (x,)
        return x**p

    def backward(self, g):
        x, p = self.saved[0], self.p
        if p == 0:
            return (np.zeros_like(g),)
        return (g * (p * x ** (p - 1)),)


class Clip(Op):
    """d clip(x, lo, hi) = g where lo <= x <= hi, else 0 (as PyTorch's clamp)"""

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


class Cast(Op):
    """d x.astype(t) = g.astype(x.dtype)"""

    def forward(self, x, dtype=None):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return (g.astype(self.in_dtype),)


# --------------------------------------------------------------------------------------------- reductions


def _keep(shape: tuple, axis) -> tuple:
    """The shape a reduction over ``axis`` has with keepdims=True."""
    if axis is None:
        return (1,) * len(shape)
    axes = (axis,) if isinstance(axis, int) else axis
    axes = {a % len(shape) for a in axes} if shape else set()
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


class Sum(Op):
    """d sum(x) = g broadcast back over the reduced axes"""

    def forward(self, x, axis=None, keepdims=False):
        out = np.sum(x, axis=axis, keepdims=keepdims)
        self.in_shape, self.keep = x.shape, _keep(x.shape, axis)
        return out

    def backward(self, g):
        return (np.broadcast_to(g.reshape(self.keep), self.in_shape),)


class Mean(Op):
    """d mean(x) = g/n broadcast back over the reduced axes"""

    def forward(self, x, axis=None, keepdims=False):
        out = np.mean(x, axis=axis, keepdims=keepdims)
        self.in_shape, self.keep = x.shape, _keep(x.shape, axis)
        self.n = x.size // max(out.size, 1) if x.size else 0
        return out

    def backward(self, g):
        return (np.broadcast_to(g.reshape(self.keep) / max(self.n, 1), self.in_shape),)


class Max(Op):
    """d max(x) = g at the maxima, split evenly among ties (as PyTorch's amax)"""

    reduce = staticmethod(np.max)

    def forward(self, x, axis=None, keepdims=False):
        out = self.reduce(x, axis=axis, keepdims=True)
        self.saved = (x, out)
        self.axis = axis
        return out if keepdims else out.reshape(_drop(x.shape, axis))

    def backward(self, g):
        x, out = self.saved
        mask = x == out
        count = mask.sum(axis=self.axis, keepdims=True)
        return (mask * (g.reshape(out.shape) / count).astype(g.dtype, copy=False),)


class Min(Max):
    """d min(x) = g at the minima, split evenly among ties (as PyTorch's amin)"""

    reduce = staticmethod(np.min)


def _drop(shape: tuple, axis) -> tuple:
    """The shape a reduction over ``axis`` has with keepdims=False."""
    if axis is None:
        return ()
    axes = {a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis)}
    return tuple(s for i, s in enumerate(shape) if i not in axes)


class Softmax(Op):
    """d softmax(x) = y*(g - sum(g*y))"""

    def forward(self, x, axis=-1):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        self.saved, self.axis = (y,), axis
        return y

    def backward(self, g):
        y = self.saved[0]
        gy = g * y
        return (gy - y * gy.sum(axis=self.axis, keepdims=True),)


def _logsumexp(x: Array, axis) -> Array:
    """log(sum(exp(x))) with keepdims, shifted by the max so it never overflows."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


class LogSoftmax(Op):
    """d log_softmax(x) = g - softmax(x)*sum(g)"""

    def forward(self, x, axis=-1):
        y = x - _logsumexp(x, axis)
        self.saved, self.axis = (y,), axis
        return y

    def backward(self, g):
        y = self.saved[0]
        return (g - np.exp(y) * g.sum(axis=self.axis, keepdims=True),)


class LogSumExp(Op):
    """d logsumexp(x) = g*softmax(x)"""

    def forward(self, x, axis=None, keepdims=False):
        out = _logsumexp(x, axis)
        self.saved = (x, out)
        return out if keepdims else out.reshape(_drop(x.shape, axis))

    def backward(self, g):
        x, out = self.saved
        return (g.reshape(out.shape) * np.exp(x - out),)


# --------------------------------------------------------------------------------------------- movement


class Reshape(Op):
    """d reshape(x) = g reshaped back"""

    def forward(self, x, shape=()):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return (g.reshape(self.in_shape),)


class Transpose(Op):
    """d transpose(x, axes) = g transposed by the inverse permutation"""

    def forward(self, x, axes=None):
        self.axes = tuple(range(x.ndim))[::-1] if axes is None else tuple(axes)
        self.swaps_2d = self.axes == (1, 0)
        return np.transpose(x, self.axes)

    def backward(self, g):
        # The inverse permutation in plain Python: np.argsort costs more than the transpose of a small g.
        inv = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inv[a] = i
        return (np.transpose(g, inv),)


class Expand(Op):
    """d broadcast_to(x) = g; the engine's unbroadcast sums it back to x's shape"""

    def forward(self, x, shape=()):
        return np.broadcast_to(x, shape)

    def backward(self, g):
        return (g,)


def _is_basic(idx) -> bool:
    """True for an index of ints, slices, None and Ellipsis only (a view: no element is picked twice)."""
    # A plain loop on exact types first: this runs for every slice's VJP (each step of an unrolled sequence).
    for p in idx if type(idx) is tuple else (idx,):
        if type(p) not in _BASIC_TYPES and not isinstance(p, (int, np.integer)):
            return False
    return True


_BASIC_TYPES = frozenset({int, slice, type(None), type(Ellipsis)})


class GetItem(Op):
    """d x[idx] = g scattered into zeros; repeated integer indices add up (np.add.at)"""

    def forward(self, x, idx=None):
        self.in_shape, self.idx = x.shape, idx
        return x[idx]

    def backward(self, g):
        out = np.zeros(self.in_shape, g.dtype)
        self.backward_into(g, out)
        return (out,)

    def backward_into(self, g, acc):
        """Add the VJP into ``acc``, the input's gradient buffer, in place (a sparse VJP).

        The engine uses this instead of ``backward`` so that T slices of one tensor (the steps of an unrolled
        sequence, the gates of an LSTM) cost one buffer plus T slice-adds, not T full-size zero arrays.
        """
        if _is_basic(self.idx):
            acc[self.idx] += g
        else:
            np.add.at(acc, self.idx, g)


class Cat(Op):
    """d cat(xs) = g split back into the pieces"""

    def forward(self, *xs, axis=0):
        self.axis = axis
        self.bounds = np.cumsum([x.shape[axis] for x in xs[:-1]])
        return np.concatenate(xs, axis=axis)

    def backward(self, g):
        return tuple(np.split(g, self.bounds, axis=self.axis))


class Stack(Op):
    """d stack(xs) = g unstacked along the new axis"""

    def forward(self, *xs, axis=0):
        out = np.stack(xs, axis=axis)
        self.axis = axis % out.ndim
        return out

    def backward(self, g):
        lead = (slice(None),) * self.axis
        return tuple(g[(*lead, i)] for i in range(g.shape[self.axis]))
