"""Checkpointed BPTT (Gruslys et al. 2016, Chen et al. 2016): keep only segment-boundary states, recompute the rest.

Full BPTT keeps every step's activations until the backward pass: memory grows with T. Here the forward pass runs
without a graph and keeps only the state at each segment boundary; the backward pass then goes through the
segments from the last to the first, recomputing one segment's graph from its boundary state and back-propagating
from two roots at once: the segment's loss, and its final state with the gradient that the segment after it sent
back (``tinygrad_lstm.backward(tensors, grads)``). The gradient reaching the boundary state is handed to the
segment before. Peak memory is one segment's graph plus the boundary states (about sqrt(T) of each with
sqrt(T) segments) for one extra forward pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..tensor import Tensor, backward, no_grad
from ._sequence import RngReplay, SeqData, rebuild, state_parts


def segment_bounds(T: int, segments: int) -> list[tuple[int, int]]:
    """[a, b) of ``segments`` consecutive chunks of T steps whose lengths differ by at most one."""
    edges = [round(i * T / segments) for i in range(segments + 1)]
    return list(itertools.pairwise(edges))


def _check_segments(segments: Any, T: int, fn: str) -> int:
    if segments is None:
        return max(1, round(math.sqrt(T)))
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
        raise ValueError(f"{fn}: segments must be a positive int (or None for about sqrt(T)), got {segments!r}")
    if segments > T:
        raise ValueError(f"{fn}: segments={segments} is more than the T={T} time steps of xs")
    return int(segments)


def checkpoint_bptt(
    model: Callable,
    xs: Any,
    ys: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    *,
    segments: int | None = None,
    state: Any = None,
    time_axis: int | None = None,
) -> tuple[float, Any]:
    """Backward through the whole sequence, keeping only the states at ``segments`` boundaries in memory.

    ``model(x_chunk, state) -> (out, state)`` and ``loss_fn(out, y_chunk)`` as for ``tbptt``; the loss is the sum
    of ``loss_fn`` over the segments (``segments`` nearly equal chunks, None for about sqrt(T)), and unlike
    ``tbptt`` its gradient crosses every chunk boundary: every parameter's ``.grad`` receives what a full
    ``backward()`` of the same summed loss would add (and so does ``state``, if it requires grad). Dropout
    masks are replayed exactly in the recomputation. Returns (the total loss, the final state, detached).
    """
    fn = "checkpoint_bptt"
    seq = SeqData(model, xs, ys, fn, time_axis)
    n = _check_segments(segments, seq.T, fn)
    bounds = segment_bounds(seq.T, n)
    state_parts(state, fn)

    # Forward without a graph: per segment, its input state and the random stream's position (for dropout).
    starts: list[tuple[Any, RngReplay]] = []
    total = 0.0
    s = state
    with no_grad():
        for a, b in bounds:
            starts.append((s, RngReplay()))
            x, y = seq.chunk(a, b)
            out, s = seq.call(model, x, s)
            total += float(seq.loss(loss_fn, out, y, f"steps {a}..{b - 1}").item())
    final, after = s, RngReplay()

    # Backward, last segment first: recompute its graph from the boundary state, then back-propagate from its
    # loss and from its final state (with the gradient the later segments sent back) in one walk.
    carried: list[np.ndarray | None] | None = None
    for i in range(len(bounds) - 1, -1, -1):
        (a, b), (s_in, rng) = bounds[i], starts[i]
        if i > 0:
            s_in = rebuild(s_in, [Tensor(p.data, requires_grad=p.dtype.kind == "f") for p in state_parts(s_in, fn)])
        rng.replay()
        x, y = seq.chunk(a, b)
        out, s_out = seq.call(model, x, s_in)
        loss = seq.loss(loss_fn, out, y, f"steps {a}..{b - 1}")
        roots, grads = [loss], [None]
        if carried is not None:
            for part, g in zip(state_parts(s_out, fn), carried):
                if g is not None and part.requires_grad:
                    roots.append(part)
                    grads.append(g)
        if not any(r.requires_grad for r in roots):
            raise RuntimeError(f"{fn}: the loss of steps {a}..{b - 1} does not require grad (nothing requires it)")
        backward([r for r in roots if r.requires_grad], [g for r, g in zip(roots, grads) if r.requires_grad])
        if i > 0:
            carried = [p.grad if p.requires_grad else None for p in state_parts(s_in, fn)]
    after.replay()  # the stream continues as after one forward pass
    return total, final
