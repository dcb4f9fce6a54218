"""Spectral norms of dh_T/dh_t and dh_t/dh_{t-1}, exact, from the engine's own VJPs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..nn.module import Module, Parameter
from ..tensor import Tensor, get_default_dtype, no_grad
from .recording import _as_batched, _quiet


def _split_state(s: Any, fn: str) -> tuple[Tensor, tuple[Tensor, ...]]:
    """A cell's state as (h, rest): a Tensor h, or a tuple (h, c, ...)."""
    if isinstance(s, Tensor):
        return s, ()
    if isinstance(s, (tuple, list)) and s and all(isinstance(x, Tensor) for x in s):
        return s[0], tuple(s[1:])
    raise TypeError(f"{fn}: the cell must return a Tensor h or a tuple (h, c) of Tensors, got {type(s).__name__}")


def _state_parts(s: Any, init: list[np.ndarray], fn: str) -> list[Tensor]:
    """A cell's output state as its parts [h, (c)], checked against the initial state's shapes."""
    h, rest = _split_state(s, fn)
    parts = [h, *rest]
    if len(parts) != len(init) or any(p.shape != a.shape for p, a in zip(parts, init)):
        got = [p.shape for p in parts]
        raise ValueError(f"{fn}: the cell returned a state of shapes {got} for one of {[a.shape for a in init]}")
    return parts


def _prepare(cell: Callable, xs: Any, state: Any, fn: str) -> tuple[np.ndarray, list[np.ndarray], bool]:
    """Inputs as (T, B, I) and the initial state as arrays [h, (c)] of shape (B, H); tuple-ness of the state."""
    if not callable(cell):
        raise TypeError(f"{fn}: cell must be callable as cell(x, state), got {type(cell).__name__}")
    x = np.asarray(xs.data if isinstance(xs, Tensor) else xs)
    if x.dtype.kind not in "fiu" or x.ndim not in (2, 3):
        raise ValueError(f"{fn}: xs must be a numeric (T, B, I) or (T, I) array or Tensor, got {x.dtype} {x.shape}")
    if x.ndim == 2:
        x = x[:, None, :]
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{fn}: xs needs at least one step and one batch element, got shape {x.shape}")
    # Compute in the cell's own dtype (an ndarray of float64 data for a float32 cell is the common case).
    params = _parameters(cell)
    dtype = params[0].dtype if params and params[0].dtype.kind == "f" else None
    if dtype is not None:
        x = x.astype(dtype, copy=False)
    elif x.dtype.kind != "f":
        x = x.astype(get_default_dtype())
    if state is None:
        with no_grad():
            probe = cell(Tensor(x[0]), None)
        h, rest = _split_state(probe, fn)
        arrays = [np.zeros_like(_as_batched(a.data)) for a in (h, *rest)]
        return x, arrays, not isinstance(probe, Tensor)
    parts = list(state) if isinstance(state, (tuple, list)) else [state]
    arrays = []
    for p in parts:
        a = np.asarray(p.data if isinstance(p, Tensor) else p)
        if a.dtype.kind != "f" or dtype is not None:
            a = a.astype(x.dtype)
        a = _as_batched(a).copy()
        if a.ndim != 2 or a.shape[0] != x.shape[1]:
            raise ValueError(f"{fn}: state of shape {np.shape(p)} does not match xs of shape {x.shape} (need (B, H))")
        arrays.append(a)
    return x, arrays, isinstance(state, (tuple, list))


def _parameters(cell: Any) -> list[Parameter]:
    """A Module cell's parameters, without renaming them.

    Module.parameters() would relabel them with names relative to this cell, changing the labels of a cell
    that lives inside a bigger model, so the members are walked directly.
    """
    if not isinstance(cell, Module):
        return []
    found = {id(p): p for m in cell.modules() for _, p in m._named_members() if isinstance(p, Parameter)}
    return list(found.values())


@contextmanager
def _frozen(cell: Any) -> Iterator[None]:
    """Parameters stop requiring grad while measuring: their .grad stays untouched and backward is cheaper."""
    params = _parameters(cell)
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad = f


def _reduce(norms: np.ndarray, reduce: str, fn: str) -> np.ndarray:
    """(T, B) per-element norms -> (T,) (mean or max over the batch) or unchanged for "none"."""
    if reduce == "mean":
        return norms.mean(axis=1)
    if reduce == "max":
        return norms.max(axis=1)
    if reduce == "none":
        return norms
    raise ValueError(f"{fn}: reduce must be 'mean', 'max' or 'none', got {reduce!r}")


def _jacobian_rows(out: Tensor, wrt: Sequence[Tensor], H: int) -> np.ndarray:
    """J[i, b, k, :] = d out[b, k] / d wrt[i][b, :], one backward per unit k (all b and i at once).

    Batch rows never mix in a recurrent cell, so seeding unit k of every row at once gives row k of each batch
    element's Jacobian in a single pass.
    """
    B = out.shape[0]
    J = np.zeros((len(wrt), B, H, wrt[0].shape[1]), dtype=np.float64)
    if not out.requires_grad:
        return J  # the output does not depend on the state at all
    seed = np.zeros(out.shape, out.dtype)
    for k in range(H):
        for w in wrt:
            w.grad = None
        seed[:, k] = 1.0
        out.backward(seed, retain_graph=True)
        seed[:, k] = 0.0
        for i, w in enumerate(wrt):
            if w.grad is not None:
                J[i, :, k, :] = w.grad
    return J


METHODS = ("exact", "power")


def jacobian_norms(
    cell: Callable,
    xs: Any,
    state: Any = None,
    *,
    reduce: str = "mean",
    method: str = "exact",
    tol: float = 1e-5,
    max_iter: int = 100,
) -> np.ndarray:
    """Spectral norm of dh_T/dh_t for t = 0..T-1: how much the whole remaining recurrence can amplify a gradient.

    States are numbered the textbook way: ``h_0`` is the initial state (``state``, zeros by default), ``h_t`` the
    state after t steps, ``h_T`` the last one, so entry t spans the T - t steps ``xs[t:]`` (for a linear RNN
    ``h_t = W h_{t-1} + U x_t`` it is ``||W^(T-t)||_2``). In a ``Recording`` that ``h_t`` is ``states()[t-1]``.

    ``cell(x, state) -> state`` with state a Tensor h, or a tuple (h, c) for an LSTM cell; ``xs`` is (T, B, I)
    (or (T, I)), Tensor or ndarray. For an LSTM the Jacobian is of h_T with respect to h_t with c_t held fixed,
    through the whole (h, c) recurrence after t (h_t feeds the gates, which feed both c and h).

    Exact: the full Jacobian of every batch element is built row by row with the engine's VJPs, one backward
    pass through the unrolled graph per hidden unit (H passes in all, every t and batch element at once), then
    its largest singular value is taken with numpy. Memory is T x B x H x H floats.

    ``method="power"``: no Jacobian is built. A block iteration on J_t J_t^T for every t at once (LOBPCG's
    recurrence, with each target's subspace sharing the new vectors of its neighbours in time, whose Jacobians
    share most of the recurrence) makes its products with forward-mode JVPs (one sweep gives J_t w_t for all t)
    and the engine's VJPs (one sweep gives J_t^T z for all t), see ``bptt/spectra.py``. Each t stops when its
    estimated relative error is below ``tol`` (from the Ritz residual: Temple's bound, with Weyl's as a second
    test); ``max_iter`` caps the rounds (a ``RuntimeWarning`` names the steps left unconverged). No T x B x H x H
    array: memory is the graphs of up to 64 replicated rows per step, time a few rounds of two sweeps of about
    T^2/2 directions x steps each; it gains most when H is large compared with T (the SVDs cost T H^3):
    3-5x at H = 256, T = 50 (tools/bench_jacobian.py).

    ``reduce`` combines the batch elements: "mean" (default), "max", or "none" for a (T, B) array. A Module
    cell's parameters are frozen during the measurement (their ``.grad`` is left alone) and its steps are hidden
    from ``record()``.
    """
    fn = "jacobian_norms"
    if method not in METHODS:
        raise ValueError(f"{fn}: method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if reduce not in ("mean", "max", "none"):
        raise ValueError(f"{fn}: reduce must be 'mean', 'max' or 'none', got {reduce!r}")
    if method == "power":
        from .spectra import power_norms

        norms, _ = power_norms(cell, xs, state, tol=tol, max_iter=max_iter, fn=fn)
        return _reduce(norms, reduce, fn)
    from .spectra import _check_tol

    _check_tol(tol, max_iter, fn)  # refused for either method: a typo should not pass silently
    with _quiet(), _frozen(cell):
        x, init, is_tuple = _prepare(cell, xs, state, fn)
        leaves = [Tensor(a, requires_grad=True) for a in init]
        s: Any = tuple(leaves) if is_tuple else leaves[0]
        incoming = [leaves[0]]  # incoming[t] = h_t: the state entering step t (0-based)
        for t in range(x.shape[0]):
            s = cell(Tensor(x[t]), s)
            h, _ = _split_state(s, fn)
            if h.shape != init[0].shape:
                raise ValueError(f"{fn}: the cell returned h of shape {h.shape} for a state of shape {init[0].shape}")
            if t < x.shape[0] - 1:
                if h.requires_grad:
                    h.retain_grad()
                incoming.append(h)
        J = _jacobian_rows(h, incoming, h.shape[1])
    return _reduce(np.linalg.norm(J, ord=2, axis=(-2, -1)), reduce, fn)


def step_jacobian_norms(cell: Callable, xs: Any, state: Any = None, *, reduce: str = "mean") -> np.ndarray:
    """Spectral norm of the one-step Jacobian dh_t/dh_{t-1} for t = 1..T (entry t-1): shape (T,).

    Same numbering and arguments as ``jacobian_norms``: entry i is the Jacobian of step i (0-based, reading
    ``xs[i]``) with respect to the state entering it (for an LSTM: w.r.t. h with c fixed). The states are run
    forward once without a graph; then all T steps are evaluated again as one batch of T*B rows, so H backward
    passes through a single step give every Jacobian exactly.
    """
    fn = "step_jacobian_norms"
    with _quiet(), _frozen(cell):
        x, init, is_tuple = _prepare(cell, xs, state, fn)
        T, B = x.shape[:2]
        incoming = [[a] for a in init]  # per state part: the value entering each step
        with no_grad():
            s: Any = tuple(Tensor(a) for a in init) if is_tuple else Tensor(init[0])
            for t in range(T - 1):
                s = cell(Tensor(x[t]), s)
                h, rest = _split_state(s, fn)
                for store, part in zip(incoming, (h, *rest)):
                    store.append(_as_batched(part.data))
        flat = [np.concatenate(parts) for parts in incoming]  # (T*B, ·), time-major
        h_in = Tensor(flat[0], requires_grad=True)
        s_in = (h_in, *(Tensor(a) for a in flat[1:])) if is_tuple else h_in
        out, _ = _split_state(cell(Tensor(x.reshape(T * B, -1)), s_in), fn)
        if out.shape != h_in.shape:
            raise ValueError(f"{fn}: the cell returned h of shape {out.shape} for a state of shape {h_in.shape}")
        J = _jacobian_rows(out, [h_in], out.shape[1])[0].reshape(T, B, out.shape[1], h_in.shape[1])
    return _reduce(np.linalg.norm(J, ord=2, axis=(-2, -1)), reduce, fn)
