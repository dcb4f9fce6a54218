"""What the sequence studies share: a ``model(x, state) -> (out, state)`` run over time chunks, as ``tbptt``'s.

Checks the arguments once (with errors naming the calling function), cuts inputs and targets along the time
axis, runs chunks while carrying (or cutting) the state, and saves and restores the parameters' gradients and the
random stream around a measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..engine import leaves
from ..nn.module import Parameter
from ..tensor import Tensor, get_rng


class SeqData:
    """Inputs ``X`` and targets ``Y`` (or None) as Tensors, their time ``axis`` and length ``T``."""

    def __init__(self, model: Any, xs: Any, ys: Any, fn: str, time_axis: int | None = None) -> None:
        if not callable(model):
            raise TypeError(f"{fn}: model must be callable as model(x, state) -> (out, state), got {model!r:.60}")
        self.fn = fn
        self.X = xs if isinstance(xs, Tensor) else Tensor(xs)
        axis = time_axis if time_axis is not None else (1 if getattr(model, "batch_first", False) else 0)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not 0 <= axis < self.X.ndim:
            raise ValueError(f"{fn}: time axis {axis!r} is out of range for xs of shape {self.X.shape}")
        self.axis = int(axis)
        self.T = self.X.shape[self.axis]
        if self.T < 1:
            raise ValueError(f"{fn}: xs has no time steps (shape {self.X.shape}, time axis {self.axis})")
        self.Y = None if ys is None else (ys if isinstance(ys, Tensor) else Tensor(ys))
        if self.Y is not None and (self.Y.ndim <= self.axis or self.Y.shape[self.axis] != self.T):
            raise ValueError(
                f"{fn}: ys of shape {self.Y.shape} is not aligned with xs of shape {self.X.shape} along time "
                f"axis {self.axis}"
            )

    def index(self, t: int | slice) -> tuple:
        """The index of time step(s) ``t`` along the time axis."""
        return (*(slice(None),) * self.axis, t)

    def chunk(self, a: int, b: int) -> tuple[Tensor, Tensor | None]:
        """Inputs and targets of steps [a, b)."""
        idx = self.index(slice(a, b))
        return self.X[idx], None if self.Y is None else self.Y[idx]

    def call(self, model: Callable, x: Tensor, state: Any) -> tuple[Any, Any]:
        """``model(x, state)``, checked to return (out, state)."""
        result = model(x, state)
        if not isinstance(result, tuple) or len(result) != 2:
            raise TypeError(
                f"{self.fn}: model(x, state) must return (out, state) (a recurrent layer, or a function returning "
                f"its output and its state), got {type(result).__name__}"
            )
        out, new_state = result
        if not isinstance(out, Tensor):
            raise TypeError(f"{self.fn}: model(x, state) must return a Tensor output, got {type(out).__name__}")
        state_parts(new_state, self.fn)
        return out, new_state

    def loss(self, loss_fn: Callable, out: Any, y: Any, what: str) -> Tensor:
        """``loss_fn(out, y)``, checked to be a one-element Tensor."""
        loss = loss_fn(out, y)
        if not isinstance(loss, Tensor) or loss.data.size != 1:
            raise TypeError(f"{self.fn}: loss_fn must return a one-element Tensor, got {loss!r:.80} for {what}")
        return loss


def chunk_bounds(T: int, k: int) -> list[tuple[int, int]]:
    """[a, b) of chunks of k steps, the last one shorter when k does not divide T (as ``tbptt``)."""
    return [(a, min(a + k, T)) for a in range(0, T, k)]


def state_parts(state: Any, fn: str) -> list[Tensor]:
    """A state (None, a Tensor, or a tuple of Tensors) as a list of Tensors."""
    if state is None:
        return []
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, (tuple, list)) and state and all(isinstance(s, Tensor) for s in state):
        return list(state)
    raise TypeError(
        f"{fn}: the state must be a Tensor or a tuple of Tensors (what model(x, state) returns), got "
        f"{type(state).__name__}"
    )


def rebuild(state: Any, parts: list[Tensor]) -> Any:
    """A state of ``state``'s structure made of ``parts``."""
    if state is None:
        return None
    return parts[0] if isinstance(state, Tensor) else tuple(parts)


def chunked_loss(
    seq: SeqData, model: Callable, loss_fn: Callable, bounds: list[tuple[int, int]], state: Any
) -> tuple[Tensor, Any]:
    """The sum of ``loss_fn`` over the chunks, the state carried through (not cut): full BPTT of that loss."""
    total = None
    for a, b in bounds:
        x, y = seq.chunk(a, b)
        out, state = seq.call(model, x, state)
        loss = seq.loss(loss_fn, out, y, f"steps {a}..{b - 1}")
        total = loss if total is None else total + loss
    return total, state


def parameters_in(*roots: Tensor) -> list[Tensor]:
    """The Parameters (leaves that require grad) the graph of ``roots`` reads, in a stable order."""
    return [t for t in leaves(*roots) if isinstance(t, Parameter)]


@contextmanager
def saved_grads(params: list[Tensor]) -> Iterator[None]:
    """Set the parameters' ``.grad`` to None for a measurement and put the old values back afterwards."""
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        yield
    finally:
        for p, g in zip(params, saved):
            p.grad = g


def flat_grad(params: list[Tensor]) -> np.ndarray:
    """All the parameters' gradients as one float64 vector (zeros where a gradient is None)."""
    parts = [np.zeros(p.data.size) if p.grad is None else np.asarray(p.grad, np.float64).ravel() for p in params]
    return np.concatenate(parts) if parts else np.zeros(0)


class RngReplay:
    """Remembers the random stream's position, to replay a forward pass with the same dropout masks."""

    def __init__(self) -> None:
        self.rng = get_rng()
        self.state = self.rng.bit_generator.state

    def replay(self) -> None:
        """Put the stream back where it was when this was made."""
        self.rng.bit_generator.state = self.state
