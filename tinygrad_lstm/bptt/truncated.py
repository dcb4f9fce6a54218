"""Truncated backpropagation through time: chunks of k steps, the state detached between them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..optim import clip_grad_norm_
from ..tensor import Tensor


def _detach_state(state: Any, fn: str) -> Any:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)) and all(isinstance(s, Tensor) for s in state):
        return tuple(s.detach() for s in state)
    raise TypeError(f"{fn}: the state must be a Tensor or a tuple of Tensors, got {type(state).__name__}")


def tbptt(
    model: Callable,
    xs: Any,
    ys: Any,
    k: int,
    loss_fn: Callable[[Any, Any], Tensor],
    optimizer: Any = None,
    state: Any = None,
    *,
    time_axis: int | None = None,
    max_norm: float | None = None,
) -> tuple[list[float], Any]:
    """Truncated BPTT: run chunks of ``k`` steps, each with its own backward and optimizer step.

    ``model(x_chunk, state) -> (out, state)`` as the RNN/LSTM/GRU layers; ``loss_fn(out, y_chunk)`` returns a
    scalar Tensor. ``xs`` and ``ys`` (Tensor or ndarray; ``ys`` may be None) are cut along the time axis (0,
    or 1 for a model with ``batch_first=True``; ``time_axis`` overrides). The state is detached between chunks,
    so no gradient crosses a chunk boundary; the last chunk is shorter when k does not divide T.

    With an ``optimizer``, tbptt owns the update loop: it starts with ``optimizer.zero_grad()`` (so gradients
    left by an earlier ``backward()`` never leak into the first step), and each chunk then does ``backward()``;
    ``clip_grad_norm_(params, max_norm)`` if ``max_norm`` is given (the global norm of all the optimizer's
    gradients, clipped before every step, as the README's training loop does); ``optimizer.step()``;
    ``optimizer.zero_grad()``. With ``optimizer=None`` nothing is zeroed or stepped: the gradients of all chunks
    add up onto whatever ``.grad`` already holds, as ``backward()`` does. Returns the chunks' losses and the
    final, detached state.
    """
    fn = "tbptt"
    if max_norm is not None and optimizer is None:
        raise ValueError(f"{fn}: max_norm clips before each optimizer step, so it needs an optimizer")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{fn}: k must be a positive int, got {k!r}")
    X = xs if isinstance(xs, Tensor) else Tensor(xs)
    axis = time_axis if time_axis is not None else (1 if getattr(model, "batch_first", False) else 0)
    if not isinstance(axis, (int, np.integer)) or not 0 <= axis < X.ndim:
        raise ValueError(f"{fn}: time axis {axis} is out of range for xs of shape {X.shape}")
    T = X.shape[axis]
    if T < 1:
        raise ValueError(f"{fn}: xs has no time steps (shape {X.shape}, time axis {axis})")
    Y = None if ys is None else (ys if isinstance(ys, Tensor) else Tensor(ys))
    if Y is not None and (Y.ndim <= axis or Y.shape[axis] != T):
        raise ValueError(
            f"{fn}: ys of shape {Y.shape} is not aligned with xs of shape {X.shape} along time axis {axis}"
        )
    lead = (slice(None),) * axis
    losses: list[float] = []
    state = _detach_state(state, fn)
    if optimizer is not None:
        optimizer.zero_grad()  # each step sees exactly its own chunk's gradient, the first one too
    for i, start in enumerate(range(0, T, int(k))):
        sl = (*lead, slice(start, min(start + int(k), T)))
        result = model(X[sl], state)
        if not isinstance(result, tuple) or len(result) != 2:
            raise TypeError(f"{fn}: model(x, state) must return (out, state), got {type(result).__name__}")
        out, state = result
        loss = loss_fn(out, None if Y is None else Y[sl])
        if not isinstance(loss, Tensor) or loss.data.size != 1:
            raise TypeError(f"{fn}: loss_fn must return a one-element Tensor, got {loss!r:.80}")
        if not loss.requires_grad:
            raise RuntimeError(f"{fn}: the loss of chunk {i} does not require grad (no parameter or input requires it)")
        loss.backward()
        if optimizer is not None:
            if max_norm is not None:
                clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], max_norm)
            optimizer.step()
            optimizer.zero_grad()
        losses.append(float(loss.item()))
        # The cut: the next chunk starts from the value of the state, not from its history.
        state = _detach_state(state, fn)
    return losses, state
