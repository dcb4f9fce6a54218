"""What truncation costs: the gradient ``tbptt`` accumulates for window k against full BPTT of the same loss."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..tensor import Tensor
from ._sequence import RngReplay, SeqData, chunk_bounds, chunked_loss, flat_grad, parameters_in, saved_grads
from .truncated import tbptt


def _check_ks(ks: Any, fn: str) -> list[int]:
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = [ks]
    try:
        ks = list(ks)
    except TypeError:
        raise TypeError(f"{fn}: ks must be an iterable of window lengths (ints >= 1), got {ks!r}") from None
    if not ks:
        raise ValueError(f"{fn}: ks is empty; give at least one window length k >= 1")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"{fn}: every window in ks must be an int >= 1 (k < 1 cuts nothing), got {k!r}")
    return [int(k) for k in ks]


def compare_gradients(g: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """``cosine`` of the angle between g and ref, ``rel_error`` ||g - ref|| / ||ref||, ``norm_ratio`` ||g|| / ||ref||
    (NaN where a norm it divides by is 0)."""
    ng, nr = float(np.linalg.norm(g)), float(np.linalg.norm(ref))
    nan = float("nan")
    return {
        "cosine": float(g @ ref) / (ng * nr) if ng > 0 and nr > 0 else nan,
        "rel_error": float(np.linalg.norm(g - ref)) / nr if nr > 0 else nan,
        "norm_ratio": ng / nr if nr > 0 else nan,
    }


def truncation_bias(
    model: Callable,
    xs: Any,
    ys: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    ks: Iterable[int],
    state: Any = None,
    *,
    time_axis: int | None = None,
) -> dict[int, dict[str, float]]:
    """For each window k: the gradient ``tbptt(..., k=k)`` accumulates (no optimizer) against full BPTT.

    The reference is the gradient of the same loss, the sum of ``loss_fn`` over the chunks of k steps, with the
    state carried through the chunks instead of cut: the forward values are the same, only the gradient paths
    that cross a chunk boundary differ. Over all parameters the model's graph reads, flattened:
    ``{k: {"cosine": ..., "rel_error": ..., "norm_ratio": ...}}`` (see ``compare_gradients``); for k >= T the
    cosine is 1 and the error 0 to rounding. Dropout masks are the same in both runs; the parameters' ``.grad``
    and the random stream are left as they were before the call.
    """
    fn = "truncation_bias"
    seq = SeqData(model, xs, ys, fn, time_axis)
    windows = _check_ks(ks, fn)
    rng = RngReplay()
    results: dict[int, dict[str, float]] = {}
    try:
        for k in windows:
            rng.replay()
            loss, _ = chunked_loss(seq, model, loss_fn, chunk_bounds(seq.T, k), state)
            if not loss.requires_grad:
                raise RuntimeError(f"{fn}: the loss does not require grad (no parameter or input requires it)")
            params = parameters_in(loss)
            with saved_grads(params):
                loss.backward()
                full = flat_grad(params)
                for p in params:
                    p.grad = None
                rng.replay()
                tbptt(model, seq.X, seq.Y, k, loss_fn, state=state, time_axis=seq.axis)
                truncated = flat_grad(params)
            results[k] = compare_gradients(truncated, full)
    finally:
        rng.replay()
    return results


def plot_truncation_bias(
    results: Mapping[str, Mapping[int, Mapping[str, float]]],
    path: str | os.PathLike | None = None,
    *,
    T: int | None = None,
    title: str = "",
) -> Any:
    """Cosine to the full gradient and relative error against the window k, one curve per label (a cell).

    ``results`` maps a label to what ``truncation_bias`` returned. The error axis is logarithmic (it spans
    decades, down to rounding at k >= T); so is k's when it does. Returns a matplotlib ``Figure``, or writes it to
    ``path`` atomically (PNG, SVG or PDF, from the suffix) and returns the path.
    """
    from .figures import check_path, finish, new_figure

    check_path(path, "plot_truncation_bias")
    from matplotlib.ticker import FormatStrFormatter

    if not results:
        raise ValueError("plot_truncation_bias: results is empty; give at least one label -> truncation_bias(...)")
    fig = new_figure((10, 4.4))
    ax_cos, ax_err = fig.subplots(1, 2)
    all_k: list[int] = []
    for label, res in results.items():
        ks = sorted(res)
        all_k += ks
        cos = [res[k]["cosine"] for k in ks]
        err = np.array([res[k]["rel_error"] for k in ks], dtype=np.float64)
        ax_cos.plot(ks, cos, marker="o", lw=1.8, label=label)
        ax_err.plot(ks, np.where(err > 0, err, np.nan), marker="o", lw=1.8, label=label)
    spans = len(all_k) > 1 and max(all_k) / max(min(all_k), 1) >= 20
    for ax in (ax_cos, ax_err):
        if spans:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))  # windows read 1, 10, 100, not 10^0
        ax.set_xlabel("truncation window k (steps)")
        ax.grid(True, which="major", alpha=0.3)
        if T is not None:
            ax.axvline(T, color="0.5", ls=":", lw=1)
    if T is not None:
        # At k >= T nothing is cut: the error is 0 (to rounding), which a log axis cannot show.
        ax_err.text(
            T,
            0.97,
            "k = T: exact\n(error 0) ",
            transform=ax_err.get_xaxis_transform(),
            fontsize=8,
            color="0.3",
            ha="right",
            va="top",
        )
    ax_cos.set_ylabel("cosine(truncated gradient, full gradient)")
    ax_cos.set_title("direction")
    ax_err.set_yscale("log")
    ax_err.set_ylabel(r"$\|g_k - g\| \,/\, \|g\|$  (g: full BPTT)")
    ax_err.set_title("relative error")
    ax_cos.legend(fontsize=8)
    fig.suptitle("what truncated BPTT costs in gradient quality" + (f": {title}" if title else ""))
    return finish(fig, path, "plot_truncation_bias")
