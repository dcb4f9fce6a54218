"""The flow matrix: how much of step t's loss reaches the state of every earlier step s, ||dL_t/dh_s||.

``Recording.grads`` gives dL/dh_s for the whole loss, a sum over the steps t >= s that read h_s; the flow matrix
takes that sum apart. Row t is one backward pass from L_t alone (the graph is kept between them), read off the
recorded states: entry [t, s] is the norm over batch and units of the gradient reaching h_s from L_t, which is
the direct gradient on the diagonal and the gradient carried back through the recurrence below it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..engine import leaves as tensor_leaves
from ..engine import retained as retained_tensors
from ..tensor import Tensor, backward
from ._sequence import SeqData
from .recording import NotRecordedError, _quiet, record


def flow_matrix(
    model: Callable,
    xs: Any,
    ys: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    state: Any = None,
    *,
    time_axis: int | None = None,
    layer: int | None = None,
    direction: int = 0,
    module: Any = None,
) -> np.ndarray:
    """(T, T) matrix of ||dL_t/dh_s||: L_t = ``loss_fn(out[t], ys[t])``, h_s the state the step at s produced.

    ``model(x, state) -> (out, state)`` as ``tbptt``'s, run once over the whole sequence; ``out[t]`` and
    ``ys[t]`` are step t along the time axis (0, or 1 for ``batch_first``; ``time_axis`` overrides). The states
    are those of the model's recurrent layer (an ``nn`` RNN/LSTM/GRU layer or cell, observed as ``record()``
    does): its last layer by default (the one whose h is the output), ``layer``, ``direction`` and ``module``
    pick another. Entry [t, s] is the Frobenius norm over batch and units of the gradient of L_t with respect
    to h_s; it is 0 for s > t in a forward direction (nothing flows back in time). One backward per t: the
    cost grows as T^2. Parameters' ``.grad`` are left as they were.
    """
    fn = "flow_matrix"
    seq = SeqData(model, xs, ys, fn, time_axis)
    if ys is None:
        raise ValueError(f"{fn}: ys is None; the flow matrix needs a target (and a loss) at every step")
    with _quiet(), record(param_grads=False) as rec:
        out, _ = seq.call(model, seq.X, state)
    if out.ndim <= seq.axis or out.shape[seq.axis] != seq.T:
        raise ValueError(
            f"{fn}: the model's output of shape {out.shape} does not have the T={seq.T} steps of xs along time "
            f"axis {seq.axis}"
        )
    streams = [s for s in rec._streams.values() if module is None or s.module is module]
    if not streams:
        raise NotRecordedError(
            f"{fn}: the model ran no recurrent layer or cell of tinygrad_lstm.nn"
            + ("" if module is None else " that is the given module")
            + ", so there is no state h_s to measure"
        )
    if layer is None:
        layer = max(s.layer for s in streams)
        top = [s for s in streams if s.layer == layer and s.direction == direction]
        if module is None and len(top) > 1:
            # Several modules: the one that ran last is the one whose states feed the output.
            module = max(top, key=_last_seq).module
    _, steps = rec._steps(layer, direction, module, -1)
    if len(steps) != seq.T:
        raise ValueError(
            f"{fn}: the selected states have {len(steps)} steps, not the T={seq.T} of xs; pick the layer with "
            "layer=, direction= or module="
        )
    hs = [s.h for s in steps]
    if not any(h.requires_grad for h in hs):
        raise RuntimeError(f"{fn}: the states do not require grad (no parameter or input requires it)")
    losses = []
    for t in range(seq.T):
        idx = seq.index(t)
        loss = seq.loss(loss_fn, out[idx], seq.Y[idx], f"step {t}")
        losses.append(loss)
    leaves = tensor_leaves(*[x for x in losses if x.requires_grad])
    saved = [(t, t.grad) for t in leaves]
    retained = retained_tensors(*[x for x in losses if x.requires_grad])
    M = np.zeros((seq.T, seq.T))
    try:
        last = max((t for t, x in enumerate(losses) if x.requires_grad), default=-1)
        for t, loss in enumerate(losses):
            if not loss.requires_grad:
                continue  # nothing of the model reaches this step's loss: a zero row
            for x in retained:
                x.grad = None
            backward([loss], retain_graph=t < last)  # the last pass may release the graph
            for s, h in enumerate(hs):
                if h.grad is not None:
                    g = np.asarray(h.grad, np.float64)
                    M[t, s] = np.sqrt((g * g).sum())
    finally:
        for x, g in saved:
            x.grad = g
        for x in retained:
            x.grad = None
    return M


def _last_seq(stream: Any) -> int:
    """When a stream's latest step ran (the recording's running count)."""
    return max(step.seq for step in stream.runs[-1].values())


def plot_flow_matrix(
    matrices: Mapping[str, np.ndarray], path: str | os.PathLike | None = None, *, title: str = "", decades: int = 12
) -> Any:
    """Flow matrices side by side (log colour, one scale for all, ``decades`` below the largest entry), and the
    mean flow against the lag t - s for each: the diagonal is lag 0, the vanishing band the fall-off with lag.

    Returns a matplotlib ``Figure``, or writes it to ``path`` atomically (PNG, SVG or PDF, from the suffix)
    and returns the path.
    """
    from matplotlib.colors import LogNorm

    from .figures import check_path, finish, new_figure

    check_path(path, "plot_flow_matrix")

    if not matrices:
        raise ValueError("plot_flow_matrix: matrices is empty; give at least one label -> (T, T) array")
    mats = {}
    for label, m in matrices.items():
        a = np.asarray(m, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"plot_flow_matrix: matrices[{label!r}] must be (T, T), got shape {a.shape}")
        mats[label] = a
    top = max((a.max() for a in mats.values()), default=0.0)
    if not top > 0:
        raise ValueError("plot_flow_matrix: every entry is zero; nothing flowed")
    norm = LogNorm(vmin=top * 10.0**-decades, vmax=top)
    n = len(mats)
    rows = 2 if n > 3 else 1  # four cells read better as a 2 x 2 block than as a long strip
    cols = -(-n // rows)
    fig = new_figure((3.3 * cols + 5.2, 3.1 * rows + 1.2))
    left, right = fig.subfigures(1, 2, width_ratios=[3.3 * cols + 0.9, 4.3])
    axes = np.atleast_1d(left.subplots(rows, cols, squeeze=False)).ravel()
    im = None
    for ax, (label, a) in zip(axes, mats.items()):
        ax.set_facecolor("0.85")
        im = ax.imshow(
            np.ma.masked_less_equal(a, 0),
            origin="lower",
            cmap="viridis",
            norm=norm,
            interpolation="nearest",
            extent=(-0.5, a.shape[1] - 0.5, -0.5, a.shape[0] - 0.5),
        )
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("state's step s")
        ax.set_ylabel("loss's step t")
    for ax in axes[n:]:
        ax.set_visible(False)
    left.colorbar(
        im, ax=list(axes[:n]), label=r"$\|\partial L_t / \partial h_s\|$  (grey: 0)", shrink=0.9, extend="min"
    )
    ax = right.subplots()
    for label, a in mats.items():
        T = a.shape[0]
        lags = np.arange(T)
        prof = np.array([np.mean(np.diagonal(a, -k)) for k in lags])
        ax.plot(lags, np.where(prof > 0, prof, np.nan), lw=1.8, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("lag t - s (steps back in time)")
    ax.set_ylabel(r"mean over t of $\|\partial L_t / \partial h_{t-\mathrm{lag}}\|$")
    ax.set_title("the band below the diagonal: flow against lag", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("gradient flow between every pair of steps" + (f": {title}" if title else ""))
    return finish(fig, path, "plot_flow_matrix")
