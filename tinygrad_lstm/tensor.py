"""The Tensor: an ndarray that records the ops applied to it, so that ``backward()`` can find gradients.

Every op on Tensors that need a gradient records one node (an ``ops.Op``) holding the op's inputs and what
its VJP needs: the graph is built while the program runs (define-by-run). The reverse pass itself lives in
``engine.py``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import engine, ops
from .engine import (  # noqa: F401 - re-exported: the public names live here too
    AnomalyError,
    current_scope,
    default_dtype,
    detect_anomaly,
    enable_grad,
    fork_rng,
    get_default_dtype,
    get_rng,
    is_grad_enabled,
    leaves,
    manual_seed,
    no_grad,
    retained,
    scope,
    set_default_dtype,
    unbroadcast,
    walk,
)

# ------------------------------------------------------------------------------------------------ the Tensor

_OK_KINDS = "fiub"


def _to_array(data: Any, dtype: Any, copy: bool) -> np.ndarray:
    """Turn user data into an ndarray: Python floats take the default dtype, ndarrays keep theirs."""
    if isinstance(data, Tensor):
        data = data.data
    dt = None if dtype is None else np.dtype(dtype)
    if isinstance(data, np.ndarray):
        arr = np.array(data, dtype=dt, copy=copy or None)
    elif type(data).__module__.startswith("torch"):
        raise TypeError(
            f"Tensor: got a {type(data).__module__}.{type(data).__name__}; convert it with .detach().numpy() first"
        )
    else:
        try:
            arr = np.array(data, dtype=dt)
        except (ValueError, TypeError) as e:
            raise TypeError(f"Tensor: cannot make an array from {type(data).__name__}: {e}") from None
        if dt is None and arr.dtype.kind == "f":
            arr = arr.astype(engine.get_default_dtype(), copy=False)
    if arr.dtype.kind not in _OK_KINDS:
        raise TypeError(f"Tensor: data of dtype {arr.dtype} is not numeric (need float, int or bool)")
    return arr


class RemovableHandle:
    """What ``register_hook`` returns: ``handle.remove()`` takes the hook off again (calling it does too)."""

    def __init__(self, hooks: list, fn: Callable) -> None:
        self._hooks, self._fn = hooks, fn

    def remove(self) -> None:
        """Remove the hook (a second call does nothing)."""
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)

    __call__ = remove


class Tensor:
    """An n-dimensional array that records the ops applied to it, so ``backward()`` can find gradients."""

    # ``_tan``: the forward-mode tangent, (level, array or ops.Basis) or None. A slot rather than a per-call table:
    # the tangent lives and dies with its tensor (a table keyed by id() would have to keep every tensor alive
    # to keep ids from being reused), and reading it is one attribute load per input.
    __slots__ = (
        "__weakref__",
        "_ctx",
        "_cut",
        "_hooks",
        "_name",
        "_tan",
        "_vc",
        "data",
        "grad",
        "requires_grad",
    )
    __array_ufunc__ = None  # ndarray + Tensor defers to Tensor.__radd__ instead of looping elementwise

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None, name: str | None = None):
        """A leaf tensor holding a copy of ``data`` (as ``torch.tensor``; ``Tensor.from_numpy`` shares memory)."""
        self._init(_to_array(data, dtype, copy=True), None)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"Tensor: only floating tensors can require grad, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.name = name

    def _init(self, data: np.ndarray, ctx: ops.Op | None) -> None:
        """Every field of a Tensor, set in this one place (the constructor and op outputs both come here)."""
        self.data = data
        self._ctx = ctx
        self.requires_grad = ctx is not None
        self.grad: np.ndarray | None = None
        self._name: str | None = None
        self._hooks: list | None = None  # a leaf's hooks (an intermediate's are kept on its node)
        self._cut: weakref.ref | None = None
        self._vc: list | None = None  # the version counter, shared with detached aliases; None means version 0
        self._tan: tuple | None = None  # forward mode: (level, tangent); see engine.DualLevel

    @staticmethod
    def _make(data: np.ndarray, ctx: ops.Op | None) -> Tensor:
        """An op's output: no validation, the data is already an ndarray."""
        t = object.__new__(Tensor)
        t._init(data, ctx)
        return t

    @staticmethod
    def from_numpy(a: np.ndarray, requires_grad: bool = False) -> Tensor:
        """A leaf that shares ``a``'s memory (as ``torch.from_numpy``): writes to either show in both."""
        if not isinstance(a, np.ndarray):
            raise TypeError(f"from_numpy: expected an ndarray, got {type(a).__name__}")
        t = Tensor._make(_to_array(a, None, copy=False), None)
        return t.requires_grad_(requires_grad)

    # -- properties
    @property
    def shape(self) -> tuple:
        """The shape of the data."""
        return self.data.shape

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the data."""
        return self.data.dtype

    @property
    def name(self) -> str | None:
        """A label for drawings and messages (a Parameter's dotted name, a gate's ``i``...); None by default."""
        return self._name

    @name.setter
    def name(self, value: str | None) -> None:
        # An intermediate's name is kept on its node too: the graph draws it after the tensor itself is gone.
        self._name = value
        if self._ctx is not None:
            self._ctx.out_name = value

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user (not by an op): only they keep ``.grad`` by default."""
        return self._ctx is None

    @property
    def grad_fn(self) -> ops.Op | None:
        """The graph node that produced this tensor, or None for a leaf."""
        return self._ctx

    @property
    def detached_from(self) -> Tensor | None:
        """For a tensor made by ``detach()``: the tensor it was cut from, while that still exists."""
        return self._cut() if self._cut is not None else None

    @property
    def _version(self) -> int:
        """How many times this tensor's data was written in place (shared with its detached aliases)."""
        return 0 if self._vc is None else self._vc[0]

    @_version.setter
    def _version(self, value: int) -> None:
        engine.note_write()
        if self._vc is None:
            self._vc = [value]
        else:
            self._vc[0] = value

    @property
    def T(self) -> Tensor:
        """All axes reversed (numpy's ``.T``)."""
        return self.transpose()

    def numel(self) -> int:
        """Number of elements."""
        return self.data.size

    def size(self, axis: int | None = None) -> tuple | int:
        """The shape, or the length of one axis (as torch's ``size``)."""
        return self.shape if axis is None else self.shape[self._axis("size", axis)]

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The data as an ndarray (shared, not copied)."""
        return self.data

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python number, got shape {self.shape}")
        return self.data.item()

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(f"bool: the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __repr__(self) -> str:
        extra = f", name={self.name!r}" if self.name else ""
        if self._ctx is not None:
            extra += f", grad_fn={self._ctx.backward_name}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        body = np.array2string(self.data, separator=", ", threshold=20, edgeitems=2)
        return f"Tensor({body}, shape={self.shape}, dtype={self.dtype}{extra})"

    __hash__ = object.__hash__

    def detach(self) -> Tensor:
        """A new leaf sharing this data and its version counter, cut from the graph (it remembers the cut)."""
        if self._vc is None:
            self._vc = [0]
        t = Tensor._make(self.data, None)
        t.name, t._vc = self.name, self._vc
        if self.requires_grad:
            t._cut = weakref.ref(self)
        if self._ctx is not None and self._ctx.out_version is None:
            # The alias can write this output's data: its op (if it saved it) and every op that saved it as an
            # input read the shared counter from here, and the value now is what they saw.
            self._ctx.out_version = (self._vc, self._vc[0])
        return t

    def clone(self) -> Tensor:
        """A copy of the data, in the graph (the gradient flows back unchanged)."""
        return _apply(ops.Clone, self)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` on a leaf in place; returns self."""
        if not self.is_leaf:
            raise RuntimeError("requires_grad_: only leaf tensors can change requires_grad")
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"requires_grad_: only floating tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this intermediate tensor after backward (leaves keep it anyway)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: this tensor does not require grad")
        if self._ctx is not None:
            self._ctx.retained = weakref.ref(self)  # weak: the graph must not keep the tensor's data alive

    @property
    def retains_grad(self) -> bool:
        """True for an intermediate tensor on which ``retain_grad()`` was called."""
        ref = None if self._ctx is None else self._ctx.retained
        return ref is not None and ref() is self

    def register_hook(self, fn: Callable[[np.ndarray], Any]) -> RemovableHandle:
        """Call ``fn(grad)`` with this tensor's complete gradient (an ndarray) during backward; an ndarray or
        Tensor it returns replaces the gradient. Returns a handle whose ``remove()`` takes the hook off."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad")
        if not callable(fn):
            raise TypeError(f"register_hook: expected a callable, got {type(fn).__name__}")
        holder = self if self._ctx is None else self._ctx  # an intermediate's hooks live on its node
        if holder._hooks is None:
            holder._hooks = []
        holder._hooks.append(fn)
        return RemovableHandle(holder._hooks, fn)

    def astype(self, dtype: Any) -> Tensor:
        """Cast to ``dtype``; the gradient is cast back."""
        dt = np.dtype(dtype)
        return self if dt == self.dtype else _apply(ops.Cast, self, dtype=dt)

    def float(self) -> Tensor:
        """Cast to float32."""
        return self.astype(np.float32)

    def double(self) -> Tensor:
        """Cast to float64."""
        return self.astype(np.float64)

    # -- the engine
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` that requires grad.

        ``grad`` is the gradient of some scalar with respect to self (needed unless self has one element).
        The graph is released afterwards unless ``retain_graph=True``.
        """
        backward(self, grad, retain_graph=retain_graph)

    # -- in-place writes: on the data, each bumps the version, so a graph that saved the old values can tell
    def _write(self, op: str, fn: Callable[[np.ndarray], None], out_of_place: str) -> Tensor:
        if self.requires_grad and engine.is_grad_enabled():
            if self._ctx is None:
                raise RuntimeError(
                    f"{op}: a leaf tensor that requires grad cannot be changed in place while gradients are "
                    "recorded (PyTorch's rule); do it inside `with no_grad():`, as an optimizer step does"
                )
            raise RuntimeError(
                f"{op}: cannot change a tensor recorded in the graph in place (its op's backward may need it); "
                f"write it out of place: {out_of_place}"
            )
        if self._ctx is not None:
            raise RuntimeError(f"{op}: cannot change a tensor recorded in the graph in place; write {out_of_place}")
        if not self.data.flags.writeable:
            raise ValueError(f"{op}: the tensor's data (shape {self.shape}) is a read-only array; clone() it first")
        try:
            fn(self.data)
        except (ValueError, TypeError) as e:
            kind = TypeError if isinstance(e, TypeError) else ValueError
            raise kind(f"{op}: {e} (tensor of shape {self.shape}, dtype {self.dtype})") from None
        self._version += 1
        return self

    def _inplace(self, op: str, ufunc: np.ufunc, x: Any, sym: str) -> Tensor:
        other = x.data if isinstance(x, Tensor) else np.asarray(x)
        try:
            fits = np.broadcast_shapes(self.shape, other.shape) == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{op}: an operand of shape {np.shape(other)} cannot update a tensor of shape {self.shape}"
            )
        return self._write(op, lambda d: ufunc(d, other, out=d, casting="same_kind"), f"x = x {sym} y")

    def __iadd__(self, x: Any) -> Tensor:
        return self._inplace("+=", np.add, x, "+")

    def __isub__(self, x: Any) -> Tensor:
        return self._inplace("-=", np.subtract, x, "-")

    def __imul__(self, x: Any) -> Tensor:
        return self._inplace("*=", np.multiply, x, "*")

    def __itruediv__(self, x: Any) -> Tensor:
        return self._inplace("/=", np.true_divide, x, "/")

    def copy_(self, src: Any) -> Tensor:
        """Copy ``src`` (broadcast to this shape, cast to this dtype) into this tensor's data; returns self."""
        arr = src.data if isinstance(src, Tensor) else np.asarray(src)
        try:
            arr = np.broadcast_to(arr, self.shape)
        except ValueError:
            raise ValueError(f"copy_: cannot copy a source of shape {arr.shape} into shape {self.shape}") from None
        return self._write("copy_", lambda d: np.copyto(d, arr, casting="unsafe"), "x = src.clone()")

    def zero_(self) -> Tensor:
        """Set every element to 0 in place; returns self."""
        return self.fill_(0)

    def fill_(self, value: float) -> Tensor:
        """Set every element to ``value`` in place; returns self."""
        return self._write("fill_", lambda d: d.fill(value), "Tensor.full_like(x, value)")

    # -- binary ops
    def _lift(self, x: Any) -> Tensor:
        """Make ``x`` a Tensor; a Python number takes this tensor's dtype where numpy's rule says so."""
        if isinstance(x, Tensor):
            return x
        if isinstance(x, (int, float, bool)):
            # Python numbers are "weak" as in numpy (NEP 50): float32 + 2.5 and int32 + 1 keep the tensor's dtype.
            kind = self.data.dtype.kind
            if kind == "f" or (kind in "iu" and isinstance(x, int) and not isinstance(x, bool)):
                try:
                    return Tensor._make(np.asarray(x, self.data.dtype), None)
                except OverflowError:
                    pass  # an int the tensor's dtype cannot hold: promote as a Python int does
        return Tensor._make(_to_array(x, None, copy=False), None)  # a constant operand: never written, not copied

    def __add__(self, x: Any) -> Tensor:
        return _apply(ops.Add, self, self._lift(x))

    def __radd__(self, x: Any) -> Tensor:
        return _apply(ops.Add, self._lift(x), self)

    def __sub__(self, x: Any) -> Tensor:
        return _apply(ops.Sub, self, self._lift(x))

    def __rsub__(self, x: Any) -> Tensor:
        return _apply(ops.Sub, self._lift(x), self)

    def __mul__(self, x: Any) -> Tensor:
        return _apply(ops.Mul, self, self._lift(x))

    def __rmul__(self, x: Any) -> Tensor:
        return _apply(ops.Mul, self._lift(x), self)

    def __truediv__(self, x: Any) -> Tensor:
        return _apply(ops.Div, self, self._lift(x))

    def __rtruediv__(self, x: Any) -> Tensor:
        return _apply(ops.Div, self._lift(x), self)

    def __pow__(self, x: Any) -> Tensor:
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return _apply(ops.PowScalar, self, p=x)
        return _apply(ops.Pow, self, self._lift(x))

    def __rpow__(self, x: Any) -> Tensor:
        return _apply(ops.Pow, self._lift(x), self)

    def __matmul__(self, x: Any) -> Tensor:
        return _apply(ops.MatMul, self, self._lift(x))

    def __rmatmul__(self, x: Any) -> Tensor:
        return _apply(ops.MatMul, self._lift(x), self)

    def __neg__(self) -> Tensor:
        return _apply(ops.Neg, self)

    def matmul(self, other: Any) -> Tensor:
        """Matrix product with numpy's rules (1-D, 2-D and batched)."""
        return self @ other

    # -- comparisons: results carry no gradient
    def _cmp(self, x: Any, fn: Callable) -> Tensor:
        other = x.data if isinstance(x, Tensor) else x
        try:
            return Tensor._make(fn(self.data, other), None)
        except ValueError as e:
            raise ValueError(f"{fn.__name__}: shapes {self.shape} and {np.shape(other)}: {e}") from None

    def __lt__(self, x: Any) -> Tensor:
        return self._cmp(x, np.less)

    def __le__(self, x: Any) -> Tensor:
        return self._cmp(x, np.less_equal)

    def __gt__(self, x: Any) -> Tensor:
        return self._cmp(x, np.greater)

    def __ge__(self, x: Any) -> Tensor:
        return self._cmp(x, np.greater_equal)

    def __eq__(self, x: Any) -> Tensor:  # type: ignore[override]
        return self._cmp(x, np.equal)

    def __ne__(self, x: Any) -> Tensor:  # type: ignore[override]
        return self._cmp(x, np.not_equal)

    # -- unary ops
    def exp(self) -> Tensor:
        """e**x."""
        return _apply(ops.Exp, self)

    def log(self) -> Tensor:
        """Natural logarithm."""
        return _apply(ops.Log, self)

    def sqrt(self) -> Tensor:
        """Square root."""
        return _apply(ops.Sqrt, self)

    def abs(self) -> Tensor:
        """Absolute value."""
        return _apply(ops.Abs, self)

    def sin(self) -> Tensor:
        """Sine."""
        return _apply(ops.Sin, self)

    def cos(self) -> Tensor:
        """Cosine."""
        return _apply(ops.Cos, self)

    def tanh(self) -> Tensor:
        """Hyperbolic tangent (one node)."""
        return _apply(ops.Tanh, self)

    def sigmoid(self) -> Tensor:
        """Logistic function 1/(1+exp(-x)) (one node, no overflow for any x)."""
        return _apply(ops.Sigmoid, self)

    def relu(self) -> Tensor:
        """max(x, 0)."""
        return _apply(ops.Relu, self)

    def leaky_relu(self, slope: float = 0.01) -> Tensor:
        """x for x > 0, else slope*x."""
        return _apply(ops.LeakyRelu, self, slope=float(slope))

    def clip(self, lo: float | None = None, hi: float | None = None) -> Tensor:
        """Clamp values into [lo, hi] (either bound may be None)."""
        if lo is None and hi is None:
            raise ValueError("clip: give at least one of lo and hi")
        return _apply(ops.Clip, self, lo=lo, hi=hi)

    # -- reductions
    def _axis(self, op: str, axis: Any) -> Any:
        """Check ``axis`` (None, int or tuple of ints) against ndim, with a clear error."""
        if axis is None:
            return None
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        nd = self.ndim
        for a in axes:
            if not isinstance(a, (int, np.integer)) or not -nd <= a < max(nd, 1) or nd == 0:
                raise ValueError(f"{op}: axis {axis} is out of range for a tensor of shape {self.shape}")
        if len({a % nd for a in axes}) != len(axes):
            raise ValueError(f"{op}: repeated axis in {axis}")
        return int(axis) if isinstance(axis, (int, np.integer)) else tuple(int(a) for a in axes)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """Sum over ``axis`` (all axes by default)."""
        return _apply(ops.Sum, self, axis=self._axis("sum", axis), keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """Mean over ``axis`` (all axes by default)."""
        return _apply(ops.Mean, self, axis=self._axis("mean", axis), keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """Maximum over ``axis``; the gradient is split evenly among ties."""
        if self.data.size == 0:
            raise ValueError(f"max: cannot reduce an empty tensor of shape {self.shape}")
        return _apply(ops.Max, self, axis=self._axis("max", axis), keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """Minimum over ``axis``; the gradient is split evenly among ties."""
        if self.data.size == 0:
            raise ValueError(f"min: cannot reduce an empty tensor of shape {self.shape}")
        return _apply(ops.Min, self, axis=self._axis("min", axis), keepdims=keepdims)

    def var(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Tensor:
        """Variance over ``axis`` with numpy's ``ddof`` (default 0, the biased estimate; torch's default is 1)."""
        ax = self._axis("var", axis)
        n = self.data.size if ax is None else math.prod(self.shape[a] for a in ((ax,) if isinstance(ax, int) else ax))
        if n - ddof <= 0:
            raise ValueError(f"var: ddof={ddof} leaves no degrees of freedom for {n} elements (shape {self.shape})")
        d = self - self.mean(ax, keepdims=True)
        return (d * d).sum(ax, keepdims=keepdims) / float(n - ddof)

    def std(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Tensor:
        """Standard deviation over ``axis``: sqrt(var) with numpy's ``ddof`` (default 0; torch's default is 1)."""
        return self.var(axis, ddof=ddof, keepdims=keepdims).sqrt()

    def _arg(self, fn: Callable, op: str, axis: int | None, keepdims: bool) -> Tensor:
        if self.data.size == 0:
            raise ValueError(f"{op}: cannot reduce an empty tensor of shape {self.shape}")
        if axis is not None and not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{op}: axis must be an int or None, got {axis!r}")
        ax = self._axis(op, axis)
        return Tensor._make(np.asarray(fn(self.data, axis=ax, keepdims=keepdims), np.int64), None)

    def argmax(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        """Index of the maximum (of the flattened tensor when ``axis`` is None), as int64; no gradient."""
        return self._arg(np.argmax, "argmax", axis, keepdims)

    def argmin(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        """Index of the minimum (of the flattened tensor when ``axis`` is None), as int64; no gradient."""
        return self._arg(np.argmin, "argmin", axis, keepdims)

    def topk(self, k: int, axis: int = -1, largest: bool = True, sorted: bool = True) -> tuple[Tensor, Tensor]:
        """The ``k`` largest (or smallest) entries along ``axis``: (values with gradient, int64 indices)."""
        if self.ndim == 0:
            raise ValueError("topk: needs a tensor with at least one axis")
        ax = self._axis("topk", axis) % self.ndim
        n = self.shape[ax]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
            raise ValueError(f"topk: k={k!r} must be an int in [0, {n}] for axis {axis} of shape {self.shape}")
        key = -self.data if largest else self.data
        idx = np.argsort(key, axis=ax, kind="stable")
        idx = np.take(idx, np.arange(k), axis=ax)
        return self.gather(ax, idx), Tensor._make(idx.astype(np.int64), None)

    def softmax(self, axis: int = -1) -> Tensor:
        """exp(x)/sum(exp(x)) along ``axis`` (one node, shifted by the max so it never overflows)."""
        return _apply(ops.Softmax, self, axis=self._axis("softmax", axis))

    def log_softmax(self, axis: int = -1) -> Tensor:
        """x - logsumexp(x) along ``axis`` (one node, stable)."""
        return _apply(ops.LogSoftmax, self, axis=self._axis("log_softmax", axis))

    def logsumexp(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """log(sum(exp(x))) over ``axis`` (one node, stable)."""
        return _apply(ops.LogSumExp, self, axis=self._axis("logsumexp", axis), keepdims=keepdims)

    # -- movement
    def reshape(self, *shape: Any) -> Tensor:
        """Same data, new shape (one entry may be -1)."""
        shape = _shape_arg(shape)
        if shape == self.shape:
            return self
        return _apply(ops.Reshape, self, shape=shape)

    def transpose(self, *axes: Any) -> Tensor:
        """Two axes: swap them (as ``torch.transpose``). None: reverse all axes. Otherwise a full permutation of
        three or more axes (as numpy's ``transpose``)."""
        axes = _shape_arg(axes) if axes else None  # (reshape's check: ints, negative ones allowed)
        nd = self.ndim
        if axes is not None and len(axes) == 2:
            a, b = (self._axis("transpose", x) % nd for x in axes)
            perm = list(range(nd))
            perm[a], perm[b] = perm[b], perm[a]
            axes = tuple(perm)
        elif axes is not None:
            if sorted(a % max(nd, 1) for a in axes) != list(range(nd)) or any(not -nd <= a < nd for a in axes):
                raise ValueError(f"transpose: axes {axes} are not a permutation for a tensor of shape {self.shape}")
            axes = tuple(a % nd for a in axes)
        if axes is not None and axes == tuple(range(nd)):
            return self
        return _apply(ops.Transpose, self, axes=axes)

    def swapaxes(self, a: int, b: int) -> Tensor:
        """Swap two axes (numpy's ``swapaxes``, torch's ``transpose``)."""
        return self.transpose(a, b)

    def permute(self, *axes: Any) -> Tensor:
        """Permute axes into the given order."""
        if not axes:
            raise ValueError("permute: give the new order of all axes")
        return self.transpose(*axes)

    def expand(self, *shape: Any) -> Tensor:
        """Broadcast to ``shape`` without copying (-1 keeps a dimension)."""
        shape = _shape_arg(shape)
        if len(shape) < self.ndim:
            raise ValueError(f"expand: cannot expand shape {self.shape} to fewer dimensions {shape}")
        lead = len(shape) - self.ndim
        shape = tuple(self.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(shape))
        if shape == self.shape:
            return self
        return _apply(ops.Expand, self, shape=shape)

    broadcast_to = expand

    def view(self, *shape: Any) -> Tensor:
        """The same as ``reshape`` (numpy arrays have no strides to keep)."""
        return self.reshape(*shape)

    def flatten(self, start_axis: int = 0, end_axis: int = -1) -> Tensor:
        """Merge axes ``start_axis`` .. ``end_axis`` (inclusive) into one."""
        if self.ndim == 0:
            return self.reshape(1)
        a, b = self._axis("flatten", start_axis) % self.ndim, self._axis("flatten", end_axis) % self.ndim
        if a > b:
            raise ValueError(f"flatten: start_axis {start_axis} comes after end_axis {end_axis} for shape {self.shape}")
        return (
            self.reshape(*self.shape[:a], -1, *self.shape[b + 1 :])
            if self.data.size
            else self.reshape(*self.shape[:a], math.prod(self.shape[a : b + 1]), *self.shape[b + 1 :])
        )

    def squeeze(self, axis: Any = None) -> Tensor:
        """Drop axes of length 1 (all of them, or those in ``axis``; as torch, a listed axis of another length
        is left alone)."""
        if axis is None:
            axes = {i for i, s in enumerate(self.shape) if s == 1}
        else:
            ax = self._axis("squeeze", axis)
            axes = {a % self.ndim for a in ((ax,) if isinstance(ax, int) else ax) if self.shape[a] == 1}
        return self.reshape(*(s for i, s in enumerate(self.shape) if i not in axes))

    def unsqueeze(self, axis: int) -> Tensor:
        """Insert an axis of length 1 at ``axis`` (-1 appends one)."""
        nd = self.ndim + 1
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -nd <= axis < nd:
            raise ValueError(f"unsqueeze: axis {axis!r} is out of range for a tensor of shape {self.shape}")
        a = int(axis) % nd
        return self.reshape(*self.shape[:a], 1, *self.shape[a:])

    def gather(self, axis: int, index: Any) -> Tensor:
        """Pick entries along ``axis`` at ``index`` (an int array of this tensor's rank), as ``torch.gather`` /
        numpy's ``take_along_axis``; the gradient scatter-adds back."""
        idx = np.asarray(index.data if isinstance(index, Tensor) else index)
        ax = self._axis("gather", axis) % max(self.ndim, 1)
        if idx.dtype.kind not in "iu" or idx.ndim != self.ndim:
            raise ValueError(f"gather: index must be an int array of rank {self.ndim}, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < -self.shape[ax] or idx.max() >= self.shape[ax]):
            raise IndexError(f"gather: index out of range for axis {ax} of length {self.shape[ax]}")
        return _apply(ops.Gather, self, index=idx, axis=ax)

    def __getitem__(self, idx: Any) -> Tensor:
        return _apply(ops.GetItem, self, idx=_index_arg(idx))

    def split(self, size_or_sizes: int | Sequence[int], axis: int = 0) -> list[Tensor]:
        """Pieces of ``size`` along ``axis`` (the last may be smaller), or of the listed sizes."""
        axis = self._axis("split", axis) % self.ndim
        n = self.shape[axis]
        if isinstance(size_or_sizes, (int, np.integer)):
            if size_or_sizes <= 0:
                raise ValueError(f"split: size must be positive, got {size_or_sizes}")
            sizes = [min(size_or_sizes, n - s) for s in range(0, n, int(size_or_sizes))]
        else:
            sizes = [int(s) for s in size_or_sizes]
            if sum(sizes) != n or any(s < 0 for s in sizes):
                raise ValueError(f"split: sizes {sizes} do not add up to {n} (axis {axis} of shape {self.shape})")
        lead, out, start = (slice(None),) * axis, [], 0
        for s in sizes:
            out.append(self[(*lead, slice(start, start + s))])
            start += s
        return out

    def chunk(self, n: int, axis: int = 0) -> list[Tensor]:
        """Split into ``n`` pieces of equal size along ``axis`` (the last may be smaller, as PyTorch)."""
        if n <= 0:
            raise ValueError(f"chunk: number of chunks must be positive, got {n}")
        size = self.shape[self._axis("chunk", axis)]
        return self.split(max(1, math.ceil(size / n)), axis)

    # -- factories
    @staticmethod
    def _factory(data: np.ndarray, dtype: Any, requires_grad: bool, name: str | None) -> Tensor:
        dt = np.dtype(dtype) if dtype is not None else engine.get_default_dtype()
        if requires_grad and dt.kind != "f":
            raise TypeError(f"Tensor: only floating tensors can require grad, got dtype {dt}")
        t = Tensor._make(data.astype(dt, copy=False), None)
        t.requires_grad, t.name = bool(requires_grad), name
        return t

    @staticmethod
    def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False, name: str | None = None) -> Tensor:
        """A tensor of zeros."""
        return Tensor._factory(np.zeros(_shape_arg(shape, "zeros")), dtype, requires_grad, name)

    @staticmethod
    def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False, name: str | None = None) -> Tensor:
        """A tensor of ones."""
        return Tensor._factory(np.ones(_shape_arg(shape, "ones")), dtype, requires_grad, name)

    @staticmethod
    def full(
        shape: Any, fill_value: float, dtype: Any = None, requires_grad: bool = False, name: str | None = None
    ) -> Tensor:
        """A tensor filled with ``fill_value``."""
        return Tensor._factory(np.full(_shape_arg((shape,), "full"), fill_value), dtype, requires_grad, name)

    @staticmethod
    def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False, name: str | None = None) -> Tensor:
        """Standard normal samples (seeded by ``manual_seed``)."""
        return Tensor._factory(engine.get_rng().standard_normal(_shape_arg(shape, "randn")), dtype, requires_grad, name)

    @staticmethod
    def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False, name: str | None = None) -> Tensor:
        """Uniform samples in [0, 1) (seeded by ``manual_seed``)."""
        return Tensor._factory(engine.get_rng().random(_shape_arg(shape, "rand")), dtype, requires_grad, name)

    @staticmethod
    def uniform(
        *shape: Any,
        low: float = 0.0,
        high: float = 1.0,
        dtype: Any = None,
        requires_grad: bool = False,
        name: str | None = None,
    ) -> Tensor:
        """Uniform samples in [low, high) (seeded by ``manual_seed``)."""
        data = engine.get_rng().uniform(low, high, _shape_arg(shape, "uniform"))
        return Tensor._factory(data, dtype, requires_grad, name)

    @staticmethod
    def eye(
        n: int, m: int | None = None, dtype: Any = None, requires_grad: bool = False, name: str | None = None
    ) -> Tensor:
        """An n x m identity matrix."""
        _shape_arg((n, n if m is None else m), "eye")
        return Tensor._factory(np.eye(n, m), dtype, requires_grad, name)

    @staticmethod
    def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        """Zeros of ``t``'s shape and dtype."""
        return Tensor.zeros(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)

    @staticmethod
    def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        """Ones of ``t``'s shape and dtype."""
        return Tensor.ones(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)

    @staticmethod
    def full_like(t: Tensor, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        """``fill_value`` in ``t``'s shape and dtype."""
        return Tensor.full(t.shape, fill_value, dtype=dtype or t.dtype, requires_grad=requires_grad)

    @staticmethod
    def randn_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        """Standard normal samples in ``t``'s shape and dtype."""
        return Tensor.randn(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)

    @staticmethod
    def rand_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        """Uniform [0, 1) samples in ``t``'s shape and dtype."""
        return Tensor.rand(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)

    @staticmethod
    def uniform_like(
        t: Tensor, low: float = 0.0, high: float = 1.0, dtype: Any = None, requires_grad: bool = False
    ) -> Tensor:
        """Uniform [low, high) samples in ``t``'s shape and dtype."""
        return Tensor.uniform(t.shape, low=low, high=high, dtype=dtype or t.dtype, requires_grad=requires_grad)


def _shape_arg(shape: tuple, op: str = "reshape") -> tuple:
    """Accept ``f(2, 3)`` and ``f((2, 3))`` alike; every entry must be an int."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"{op}: shape must be ints, got {shape}")
    if op != "reshape" and any(s < 0 for s in shape):
        raise ValueError(f"{op}: negative dimension in shape {shape}")
    return tuple(int(s) for s in shape)


def _index_arg(idx: Any) -> Any:
    """Replace Tensors inside an index by their arrays; lists become integer (or bool) arrays."""
    if isinstance(idx, tuple):
        for i in idx:  # the common case, slicing (every gate of every step): nothing to replace
            if type(i) not in ops._BASIC_TYPES:
                return tuple(_index_arg(i) for i in idx)
        return idx
    if isinstance(idx, Tensor):
        return idx.data
    if isinstance(idx, list):
        return np.asarray(idx)
    return idx


# ------------------------------------------------------------------------------------------------ recording


def _apply(op_cls: type, *args: Tensor, **kwargs: Any) -> Tensor:
    """Run one op forward on the inputs' arrays; the engine records it when any input needs a gradient."""
    fn = op_cls()
    try:
        # By arity, not through a list of arrays, and the Tensor made inline below: together 0.1-0.4 us of an
        # op's ~2.5 us (tanh, mul on (4, 8), A/B in one run).
        n = len(args)
        if n == 2:
            out = fn.forward(args[0].data, args[1].data, **kwargs)
        elif n == 1:
            out = fn.forward(args[0].data, **kwargs)
        else:
            out = fn.forward(*[a.data for a in args], **kwargs)
    except (ValueError, IndexError, TypeError) as e:
        raise _op_error(op_cls.__name__, e, args) from None
    if type(out) is not np.ndarray:  # numpy ufuncs return scalars for 0-d inputs; .data is always an array
        out = np.asarray(out)
    t = _new(Tensor)  # Tensor._make, inlined: one call fewer on every op
    t._init(out, engine.record(fn, args, out))
    # Forward mode costs this one attribute test per op when it is off (tools/bench_ops.py --quick: no change).
    if _modes.fwd is not None:
        _tangent_out(fn, args, t, _modes.fwd)
    return t


_new = object.__new__
_modes = engine._modes  # (one object for the life of the process; per-thread attributes)


def _tangent_out(fn: ops.Op, args: Sequence[Tensor], out: Tensor, level: engine.DualLevel) -> None:
    """Forward mode: set ``out``'s tangent from its inputs' by the op's JVP. Inputs without a tangent of this
    level are zero (None); the JVP's result is fitted here, in one place: broadcast to (k, *out.shape) (an op may
    return a tangent in the broadcast-compatible shape of its inputs) and cast to the output's dtype."""
    tans = [a._tan[1] if a._tan is not None and a._tan[0] is level else None for a in args]
    if all(t is None for t in tans) or out.data.dtype.kind != "f":
        return
    if not fn.takes_basis:
        tans = [ops.dense_tangent(t, a.data.dtype) for t, a in zip(tans, args)]
    tan = fn.jvp(*tans)
    if tan is None:
        return
    want = (level.k, *out.data.shape)
    if tan.shape != want:
        try:
            tan = np.broadcast_to(ops._lift(tan, out.data.ndim), want)
        except ValueError:
            raise RuntimeError(f"{fn.name}.jvp: tangent of shape {tan.shape} for an output of shape {want}") from None
    if tan.dtype != out.data.dtype:
        tan = tan.astype(out.data.dtype)
    if _modes.anomaly:
        engine._check_finite(tan, fn.name + ".jvp", [a.data.shape for a in args])
    out._tan = (level, tan)


def set_tangent(t: Tensor, tangent: Any) -> Tensor:
    """Give ``t`` a tangent in the forward-mode level in force: an array of shape (k, *t.shape) (k directions) or
    an ``ops.Basis``; None removes it. Returns ``t``. Needs an active ``engine.DualLevel``."""
    level = _modes.fwd
    if level is None:
        raise RuntimeError("set_tangent: forward mode is off; enter `with engine.DualLevel(k):` first")
    if not isinstance(t, Tensor):
        raise TypeError(f"set_tangent: expected a Tensor, got {type(t).__name__}")
    if tangent is None:
        t._tan = None
        return t
    if t.data.dtype.kind != "f":
        raise TypeError(f"set_tangent: only floating tensors can carry a tangent, got dtype {t.data.dtype}")
    want = (level.k, *t.data.shape)
    if isinstance(tangent, ops.Basis):
        if (tangent.k, *tangent.shape) != want:
            raise ValueError(f"set_tangent: Basis for shape {(tangent.k, *tangent.shape)}, tensor needs {want}")
        t._tan = (level, tangent)
        return t
    arr = np.asarray(tangent.data if isinstance(tangent, Tensor) else tangent)
    if arr.shape != want:
        raise ValueError(f"set_tangent: tangent of shape {arr.shape} for a tensor of shape {t.shape} needs {want}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"set_tangent: tangent of dtype {arr.dtype} is not numeric")
    t._tan = (level, arr.astype(t.data.dtype, copy=False))
    return t


def get_tangent(t: Tensor) -> np.ndarray | None:
    """``t``'s tangent in the forward-mode level in force, as an array (k, *t.shape), or None (zero)."""
    level = _modes.fwd
    if t._tan is None or level is None or t._tan[0] is not level:
        return None
    return ops.dense_tangent(t._tan[1], t.data.dtype)


def _op_error(name: str, e: Exception, args: Sequence[Tensor]) -> Exception:
    """Name the op and its input shapes in an error numpy raised (ours already start with the op name)."""
    if str(e).startswith(name + ":"):
        return e
    shapes = ", ".join(str(a.shape) for a in args)
    return type(e)(f"{name}: {e} (input shapes {shapes})")


# ------------------------------------------------------------------------------------------------ functions


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool = False) -> None:
    """Backward from several roots at once, as ``torch.autograd.backward``: sum_i <grad_i, d tensors_i / d leaf>.

    ``tensors`` is a Tensor or a sequence of them; ``grad_tensors`` one gradient per tensor (arrays or Tensors of
    the same shapes; None for a one-element tensor means 1). One walk of the graph serves all roots.
    """
    ts = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is None:
        gs: list[Any] = [None] * len(ts)
    elif isinstance(grad_tensors, (Tensor, np.ndarray)):
        gs = [grad_tensors]
    else:
        gs = list(grad_tensors)
    if not ts or len(gs) != len(ts):
        raise ValueError(f"backward: need one gradient per tensor, got {len(ts)} tensors and {len(gs)} gradients")
    seeds = []
    for i, (t, g) in enumerate(zip(ts, gs)):
        which = "a tensor" if len(ts) == 1 else f"tensors[{i}]"
        if not isinstance(t, Tensor):
            raise TypeError(f"backward: tensors[{i}] must be a Tensor, got {type(t).__name__}")
        if not t.requires_grad:
            raise RuntimeError(f"backward: {which} does not require grad and has no graph to walk")
        if g is None:
            if t.data.size != 1:
                raise RuntimeError(
                    f"backward: grad must be given for a non-scalar output of shape {t.shape} "
                    "(or reduce it to one element first, e.g. .sum())"
                )
            seeds.append(np.ones(t.shape, t.dtype))
            continue
        arr = np.asarray(g.data if isinstance(g, Tensor) else g, dtype=t.dtype)
        if arr.shape != t.shape:
            raise ValueError(f"backward: grad of shape {arr.shape} given for {which} of shape {t.shape}")
        seeds.append(arr)
    engine.backward(ts, seeds, retain_graph)


def _tensors(values: Sequence[Any], op: str) -> list[Tensor]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{op}: need a non-empty list of tensors")
    first = next((v for v in values if isinstance(v, Tensor)), None)
    return [v if isinstance(v, Tensor) else (first._lift(v) if first is not None else Tensor(v)) for v in values]


def cat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    ts = _tensors(tensors, "cat")
    nd = ts[0].ndim
    if nd == 0 or any(t.ndim != nd for t in ts) or not -nd <= axis < nd:
        raise ValueError(
            f"cat: need tensors of one rank >= 1 and a valid axis {axis}, got shapes {[t.shape for t in ts]}"
        )
    ax = axis % nd
    if any(t.shape[:ax] + t.shape[ax + 1 :] != ts[0].shape[:ax] + ts[0].shape[ax + 1 :] for t in ts):
        raise ValueError(f"cat: shapes {[t.shape for t in ts]} differ outside axis {axis}")
    return _apply(ops.Cat, *ts, axis=ax)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors of one shape along a new axis."""
    ts = _tensors(tensors, "stack")
    if any(t.shape != ts[0].shape for t in ts):
        raise ValueError(f"stack: all shapes must be equal, got {[t.shape for t in ts]}")
    if not -ts[0].ndim - 1 <= axis <= ts[0].ndim:
        raise ValueError(f"stack: axis {axis} is out of range for shapes {ts[0].shape}")
    return _apply(ops.Stack, *ts, axis=axis)


def _pair(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Two operands as Tensors; a Python number takes the dtype of the Tensor beside it."""
    if not isinstance(a, Tensor):
        a = b._lift(a) if isinstance(b, Tensor) else Tensor(a)
    return a, a._lift(b)


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """Elementwise ``a`` where ``cond`` is true, else ``b``; ``cond`` gets no gradient."""
    c = Tensor(np.asarray(cond.data if isinstance(cond, Tensor) else cond, dtype=bool))
    return _apply(ops.Where, c, *_pair(a, b))


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum; ties split the gradient evenly."""
    return _apply(ops.Maximum, *_pair(a, b))


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum; ties split the gradient evenly."""
    return _apply(ops.Minimum, *_pair(a, b))
