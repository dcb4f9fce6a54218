"""Stateless neural-network functions: activations, losses, dropout, one-hot, penalties (``import ... as F``).

Everything on the graph path is written with Tensor ops only, so the engine differentiates it; the names,
arguments and reduction conventions follow ``torch.nn.functional``. Targets, class weights and index arrays
are data, not graph inputs: they never receive a gradient (except the ``target`` of the regression losses
and of the probability-target cross entropy, which are ordinary Tensor operands).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import ops
from ..tensor import Tensor, _apply, get_rng, maximum, where

_REDUCTIONS = ("mean", "sum", "none")


# ------------------------------------------------------------------------------------------------ helpers


def _is_torch_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor`` (found by its type's module: torch is never imported here)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "requires_grad") and hasattr(x, "numpy")


def _tensor(x: Any, fn: str, arg: str) -> Tensor:
    """``x`` as a Tensor, or a TypeError naming the function: the one input policy of every layer in ``nn``.

    A Tensor is used as is. Anything else is a constant input: ndarrays, numbers and nested lists become
    ``Tensor(x)``; a torch tensor becomes the ndarray it holds (its dtype kept, as ``torch.from_numpy`` would).
    A torch tensor that requires grad is refused: no gradient could flow back into torch's graph.
    """
    if isinstance(x, Tensor):
        return x
    if _is_torch_tensor(x):
        if x.requires_grad:
            raise TypeError(
                f"{fn}: {arg} is a torch tensor that requires grad, and no gradient can flow back into torch; "
                f"pass {arg}.detach() (or Tensor({arg}.detach().numpy(), requires_grad=True) to differentiate here)"
            )
        x = x.detach().cpu().numpy()
    try:
        return Tensor(x)
    except TypeError as e:
        raise TypeError(
            f"{fn}: {arg} must be a Tensor, ndarray or torch tensor, got {type(x).__name__} ({e})"
        ) from None


def _like(x: Any, ref: Tensor, fn: str, arg: str) -> Tensor:
    """``x`` as a Tensor; raw floating arrays and numbers take ``ref``'s float dtype (no silent upcast)."""
    if isinstance(x, Tensor):
        return x
    t = _tensor(x, fn, arg)
    if t.dtype.kind in "fiub" and ref.dtype.kind == "f" and t.dtype != ref.dtype:
        t = Tensor(t.data.astype(ref.dtype))
    return t


def _array(x: Any) -> np.ndarray:
    """Plain data of a Tensor or array-like (for targets, weights and indices, which take no gradient)."""
    return np.asarray(x.data if isinstance(x, Tensor) else x)


def _check_reduction(fn: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    """Apply an unweighted reduction ("mean" divides by the number of elements, as PyTorch)."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _same_shape(fn: str, a: Tensor, b: Tensor, what: str = "target") -> None:
    if a.shape != b.shape:
        raise ValueError(f"{fn}: {what} shape {b.shape} differs from input shape {a.shape}")


def _broadcastable(fn: str, arg: str, shape: tuple, to: tuple) -> None:
    try:
        if np.broadcast_shapes(shape, to) != to:
            raise ValueError
    except ValueError:
        raise ValueError(f"{fn}: {arg} of shape {shape} does not broadcast to the input shape {to}") from None


# ------------------------------------------------------------------------------------------------ activations


def sigmoid(input: Tensor) -> Tensor:
    """Logistic function 1/(1+exp(-x)), no overflow for any x."""
    return _tensor(input, "sigmoid", "input").sigmoid()


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return _tensor(input, "tanh", "input").tanh()


def relu(input: Tensor) -> Tensor:
    """max(x, 0)."""
    return _tensor(input, "relu", "input").relu()


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x for x > 0, else ``negative_slope * x``."""
    return _tensor(input, "leaky_relu", "input").leaky_relu(negative_slope)


def hard_sigmoid(input: Tensor) -> Tensor:
    """PyTorch's hardsigmoid: relu6(x + 3) / 6, i.e. 0 below -3, 1 above 3, linear in between.

    Built from ``clip``; the gradient is 1/6 on [-3, 3] (PyTorch uses the open interval: they differ only
    exactly at x = +-3).
    """
    x = _tensor(input, "hard_sigmoid", "input")
    return (x + 3.0).clip(0.0, 6.0) / 6.0


hardsigmoid = hard_sigmoid


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim`` (stable for any logits)."""
    return _tensor(input, "softmax", "input").softmax(axis=dim)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    """x - logsumexp(x) along ``dim`` (stable for any logits)."""
    return _tensor(input, "log_softmax", "input").log_softmax(axis=dim)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` for any number of leading dimensions; weight is (out, in)."""
    x = _tensor(input, "linear", "input")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input shape {x.shape} does not end in in_features={weight.shape[1]} (weight {weight.shape})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias shape {bias.shape} should be ({weight.shape[0]},)")
    return affine(x, weight, bias)


def affine(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` as one graph node (``ops.Linear``), without ``linear``'s friendlier checks: for
    inner loops whose shapes are checked once outside (the recurrent cells call it twice per step)."""
    return _apply(ops.Linear, x, weight) if bias is None else _apply(ops.Linear, x, weight, bias)


def _log1p(u: Tensor) -> Tensor:
    """log(1 + u) accurate for tiny u, from log/div/where only (Goldberg's trick).

    With w = fl(1 + u), log(w) * u / (w - 1) cancels the rounding of 1 + u; where w == 1 exactly,
    log1p(u) = u to working precision. The division is made safe first so that the unused branch of
    ``where`` never produces 0/0 in backward.
    """
    w = u + 1.0
    d = w - 1.0
    tiny = d.data == 0
    d_safe = where(tiny, 1.0, d)
    return where(tiny, u, w.log() * u / d_safe)


# ------------------------------------------------------------------------------------------------ regression losses


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error (x - y)^2 with PyTorch's reductions; shapes must match."""
    _check_reduction("mse_loss", reduction)
    x = _tensor(input, "mse_loss", "input")
    y = _like(target, x, "mse_loss", "target")
    _same_shape("mse_loss", x, y)
    d = x - y
    return _reduce(d * d, reduction)


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean absolute error |x - y| with PyTorch's reductions; shapes must match."""
    _check_reduction("l1_loss", reduction)
    x = _tensor(input, "l1_loss", "input")
    y = _like(target, x, "l1_loss", "target")
    _same_shape("l1_loss", x, y)
    return _reduce((x - y).abs(), reduction)


# ------------------------------------------------------------------------------------------------ binary losses


def _clamped_log(x: Tensor) -> Tensor:
    """log(x) floored at -100 as PyTorch's BCE does, finite (value and gradient) even at x == 0."""
    pos = x.data > 0
    safe = where(pos, x, 1.0)  # log is never evaluated at 0, so backward never divides 0 by 0
    return where(pos, safe.log(), -100.0).clip(lo=-100.0)


def binary_cross_entropy(input: Tensor, target: Any, weight: Any = None, reduction: str = "mean") -> Tensor:
    """-w [y log(x) + (1-y) log(1-x)] for probabilities x in [0, 1]; each log is clamped at -100 as PyTorch.

    ``weight`` broadcasts to the input's shape; "mean" divides by the number of elements (not by the weights).
    Where a log is clamped (x or 1-x below e^-100, including exactly 0) its gradient is 0, the gradient of the
    clamped function; PyTorch's hand-written backward uses (x - y) / max(x (1-x), 1e-12) there instead.
    Elsewhere values and gradients agree with PyTorch.
    """
    fn = "binary_cross_entropy"
    _check_reduction(fn, reduction)
    x = _tensor(input, fn, "input")
    y = _like(target, x, fn, "target")
    _same_shape(fn, x, y)
    xd = x.data
    if xd.size and (np.nanmin(xd) < 0 or np.nanmax(xd) > 1):
        raise ValueError(f"{fn}: input must be probabilities in [0, 1] (got values in [{xd.min()}, {xd.max()}])")
    loss = -(y * _clamped_log(x) + (1.0 - y) * _clamped_log(1.0 - x))
    if weight is not None:
        w = _like(weight, x, fn, "weight")
        _broadcastable(fn, "weight", w.shape, x.shape)
        loss = loss * w
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor, target: Any, weight: Any = None, reduction: str = "mean", pos_weight: Any = None
) -> Tensor:
    """Sigmoid + binary cross entropy in one stable expression (finite for logits of any size).

    loss = max(x, 0) - x*y + log1p(exp(-|x|)); with ``pos_weight`` p (broadcast along the last, class, axis)
    loss = (1-y) x + (1 + (p-1) y) (log1p(exp(-|x|)) + max(-x, 0)), as PyTorch.
    """
    fn = "binary_cross_entropy_with_logits"
    _check_reduction(fn, reduction)
    x = _tensor(input, fn, "input")
    y = _like(target, x, fn, "target")
    _same_shape(fn, x, y)
    softplus_neg_abs = _log1p((-x.abs()).exp())  # log(1 + e^-|x|) in (0, log 2], never overflows
    if pos_weight is None:
        loss = maximum(x, 0.0) - x * y + softplus_neg_abs
    else:
        pw = _like(pos_weight, x, fn, "pos_weight")
        _broadcastable(fn, "pos_weight", pw.shape, x.shape)
        log_weight = (pw - 1.0) * y + 1.0
        loss = (1.0 - y) * x + log_weight * (softplus_neg_abs + maximum(-x, 0.0))
    if weight is not None:
        w = _like(weight, x, fn, "weight")
        _broadcastable(fn, "weight", w.shape, x.shape)
        loss = loss * w
    return _reduce(loss, reduction)


# ------------------------------------------------------------------------------------------------ class losses


def _class_layout(fn: str, x: Tensor, tgt: np.ndarray) -> tuple[Tensor, np.ndarray, tuple]:
    """Move the class axis (1, or 0 for an unbatched (C,) input) last and flatten: (M, C) input, (M,) targets.

    Returns the flat input, flat targets and the shape a "none" reduction has (the target's shape).
    """
    if x.ndim == 0:
        raise ValueError(f"{fn}: input must have a class axis, got a 0-d input")
    if x.ndim == 1:  # unbatched: (C,) input, () target
        if tgt.shape != ():
            raise ValueError(f"{fn}: for an unbatched input of shape {x.shape} the target must be 0-d, got {tgt.shape}")
        return x.reshape(1, x.shape[0]), tgt.reshape(1), ()
    expected = (x.shape[0], *x.shape[2:])
    if tgt.shape != expected:
        raise ValueError(
            f"{fn}: target shape {tgt.shape} does not match input shape {x.shape} (expected {expected}: "
            "the class axis is axis 1)"
        )
    if x.ndim > 2:
        perm = (0, *range(2, x.ndim), 1)
        x = x.transpose(*perm)
    return x.reshape(-1, x.shape[-1]), tgt.reshape(-1), expected


def _class_weight(fn: str, weight: Any, n_classes: int, dtype: np.dtype) -> np.ndarray | None:
    if weight is None:
        return None
    w = _array(weight)
    if w.shape != (n_classes,):
        raise ValueError(f"{fn}: weight must have shape ({n_classes},) (one per class), got {w.shape}")
    return w.astype(dtype, copy=False)


def _index_targets(fn: str, tgt: np.ndarray, n_classes: int, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Check class-index targets; return (targets with ignored entries replaced by 0, mask of kept entries)."""
    if tgt.dtype.kind not in "iu":
        raise TypeError(f"{fn}: class-index targets must be integers, got dtype {tgt.dtype}")
    keep = tgt != ignore_index
    bad = keep & ((tgt < 0) | (tgt >= n_classes))
    if bad.any():
        raise ValueError(f"{fn}: target {int(tgt[bad][0])} is out of bounds for {n_classes} classes")
    return np.where(keep, tgt, 0).astype(np.intp), keep


def _nll_flat(
    fn: str, logp: Tensor, tgt: np.ndarray, w: np.ndarray | None, ignore_index: int, reduction: str, out_shape: tuple
) -> Tensor:
    """Negative log-likelihood on a flat (M, C) input: the shared core of nll_loss and cross_entropy."""
    n_classes = logp.shape[-1]
    safe, keep = _index_targets(fn, tgt, n_classes, ignore_index)
    coef = keep.astype(logp.dtype) if w is None else np.where(keep, w[safe], 0).astype(logp.dtype)
    picked = logp[np.arange(safe.shape[0]), safe]
    loss = -(picked * coef)
    if reduction == "none":
        return loss.reshape(out_shape)
    total = loss.sum()
    if reduction == "sum":
        return total
    # PyTorch's weighted mean: divide by the sum of the kept targets' weights (0/0 = nan when all are ignored).
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.asarray(coef.sum(), logp.dtype)


def nll_loss(
    input: Tensor, target: Any, weight: Any = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Negative log-likelihood of class-index targets given log-probabilities.

    input (C,), (N, C) or (N, C, d1, ...); target (), (N,) or (N, d1, ...). ``weight`` (C,) rescales classes;
    "mean" divides by the summed weights of the targets that are not ``ignore_index`` (as PyTorch).
    """
    fn = "nll_loss"
    _check_reduction(fn, reduction)
    x = _tensor(input, fn, "input")
    flat, tgt, out_shape = _class_layout(fn, x, _array(target))
    w = _class_weight(fn, weight, flat.shape[-1], x.dtype)
    return _nll_flat(fn, flat, tgt, w, ignore_index, reduction, out_shape)


def cross_entropy(
    input: Tensor,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross entropy of logits (class axis 1) against class indices or class probabilities, as PyTorch.

    Class-index targets: (N,) or (N, d1, ...) integers (``ignore_index`` skipped). Probability targets: a
    float array of the input's shape. ``label_smoothing`` mixes the target with the uniform distribution.
    """
    fn = "cross_entropy"
    _check_reduction(fn, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing}")
    x = _tensor(input, fn, "input")
    if x.ndim == 0:
        raise ValueError(f"{fn}: input must have a class axis, got a 0-d input")
    class_axis = 0 if x.ndim == 1 else 1
    n_classes = x.shape[class_axis]
    tdata = _array(target)
    logp = x.log_softmax(axis=class_axis)
    w = _class_weight(fn, weight, n_classes, x.dtype)
    wshape = [1] * x.ndim
    wshape[class_axis] = n_classes

    if tdata.dtype.kind == "f":  # probability targets
        y = _like(target, x, fn, "target")
        if y.shape != x.shape:
            raise ValueError(
                f"{fn}: probability targets must have the input's shape {x.shape}, got {y.shape} "
                "(class-index targets must be integers)"
            )
        if label_smoothing > 0:
            y = y * (1.0 - label_smoothing) + label_smoothing / n_classes
        prod = logp * y if w is None else logp * y * w.reshape(wshape)
        if reduction == "none":
            return -prod.sum(axis=class_axis)
        total = -prod.sum()
        if reduction == "sum":
            return total
        return total / float(x.data.size // n_classes) if x.data.size else total * math.nan

    flat, tgt, out_shape = _class_layout(fn, logp, tdata)
    nll = _nll_flat(fn, flat, tgt, w, ignore_index, reduction, out_shape)
    if label_smoothing == 0:
        return nll
    # Smoothing term: -sum_c w_c log p_c per element, zero where the target is ignored; its mean uses the
    # same denominator as the nll term (PyTorch's convention).
    safe, keep = _index_targets(fn, tgt, n_classes, ignore_index)
    per = -(flat.sum(axis=1) if w is None else (flat * w).sum(axis=1))
    smooth = per * keep.astype(x.dtype)
    if reduction == "none":
        smooth = smooth.reshape(out_shape)
    elif reduction == "sum":
        smooth = smooth.sum()
    else:
        denom = keep.sum() if w is None else w[safe][keep].sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            smooth = smooth.sum() / np.asarray(denom, x.dtype)
    return nll * (1.0 - label_smoothing) + smooth * (label_smoothing / n_classes)


# ------------------------------------------------------------------------------------------------ misc


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by 1/(1-p).

    Identity when not training or p == 0; masks come from ``get_rng()`` (seeded by ``manual_seed``).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p}")
    x = _tensor(input, "dropout", "input")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * np.zeros(x.shape, x.dtype)
    keep = get_rng().random(x.shape) >= p
    return x * (keep * (1.0 / (1.0 - p))).astype(x.dtype)


def one_hot(indices: Any, num_classes: int = -1) -> Tensor:
    """Integer class indices of any shape -> an int64 Tensor with a trailing axis of ``num_classes``.

    ``num_classes=-1`` uses max(indices) + 1, as PyTorch.
    """
    idx = _array(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: indices must be integers, got dtype {idx.dtype}")
    if num_classes == -1:
        if idx.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty index tensor; pass num_classes")
        num_classes = int(idx.max()) + 1
    if num_classes < 0 and num_classes != -1:
        raise ValueError(f"one_hot: num_classes must be -1 or >= 0, got {num_classes}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise ValueError(f"one_hot: indices must be in [0, {num_classes}), got values in [{idx.min()}, {idx.max()}]")
    out = np.zeros((*idx.shape, num_classes), np.int64)
    np.put_along_axis(out, idx[..., None].astype(np.intp), 1, axis=-1)
    return Tensor(out)


def _param_list(params: Any, fn: str) -> list[Tensor]:
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    if isinstance(params, Tensor):
        return [params]
    if not isinstance(params, Iterable):
        raise TypeError(
            f"{fn}: params must be a Module, a Tensor or an iterable of Tensors, got {type(params).__name__}"
        )
    out = list(params)
    for i, p in enumerate(out):
        if not isinstance(p, Tensor):
            raise TypeError(f"{fn}: params[{i}] is a {type(p).__name__}, not a Tensor")
    return out


def l1_penalty(params: Any) -> Tensor:
    """sum_i sum |p_i| over the given parameters (or a Module's), a differentiable scalar to add to a loss."""
    ps = _param_list(params, "l1_penalty")
    if not ps:
        raise ValueError("l1_penalty: no parameters given")
    total = ps[0].abs().sum()
    for p in ps[1:]:
        total = total + p.abs().sum()
    return total


def l2_penalty(params: Any) -> Tensor:
    """sum_i sum p_i^2 (squared L2 norm, not halved) over the given parameters, a differentiable scalar.

    Adding ``lam * l2_penalty(params)`` to the loss equals SGD's ``weight_decay=2*lam``.
    """
    ps = _param_list(params, "l2_penalty")
    if not ps:
        raise ValueError("l2_penalty: no parameters given")
    total = (ps[0] * ps[0]).sum()
    for p in ps[1:]:
        total = total + (p * p).sum()
    return total
