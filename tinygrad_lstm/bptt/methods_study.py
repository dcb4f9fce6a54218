"""The gradient-methods study: BPTT, truncated BPTT, RTRL, UORO and SnAp-1 on the same model as T grows.

For each cell (a fresh, seeded RNN/LSTM/GRU cell with a Linear readout, float64) and each sequence length T, the
running adding task (at step t, the sum of the marked numbers so far; a loss at every step) is given to
``compare_gradient_methods``: per method, the cosine and relative error of its gradient to BPTT's (the exact
one), its time and its peak memory (tracemalloc: numpy's buffers and Python objects). ``python -m tinygrad_lstm
bptt --study methods`` prints the tables and plots cosine and memory against T.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import nn
from ..tensor import Tensor, default_dtype, fork_rng, no_grad
from .forward import METHODS, compare_gradient_methods
from .recording import CELL_KINDS

LENGTHS = (10, 20, 50, 100, 200)
_CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_STYLE = {  # one look per method, so the same method reads the same in every panel
    "bptt": ("black", "-", "o"),
    "rtrl": ("tab:blue", "--", "s"),
    "uoro": ("tab:red", "-", "v"),
    "snap1": ("tab:green", "-", "^"),
}


def method_model(kind: str, hidden: int, seed: int, forget_bias: float | None = None) -> tuple[nn.Module, nn.Linear]:
    """A fresh float64 ``kind`` cell (2 inputs, the adding task's) and a Linear(hidden, 1) readout, from ``seed``.

    ``forget_bias`` (LSTM only) sets the forget gate's total bias: rows H..2H of ``bias_ih`` to it, of ``bias_hh``
    to zero (the two add up)."""
    if kind not in _CELLS:
        raise ValueError(f"study_methods: unknown cell {kind!r} (choose from {', '.join(CELL_KINDS)})")
    with default_dtype(np.float64), fork_rng(seed):
        cell = _CELLS[kind](2, hidden, dtype=np.float64)
        head = nn.Linear(hidden, 1)
    if forget_bias is not None and kind == "lstm":
        with no_grad():
            b_ih, b_hh = cell.bias_ih.data.copy(), cell.bias_hh.data.copy()
            b_ih[hidden : 2 * hidden], b_hh[hidden : 2 * hidden] = forget_bias, 0.0
            cell.bias_ih.copy_(Tensor(b_ih))
            cell.bias_hh.copy_(Tensor(b_hh))
    return cell, head


def readout_loss(head: nn.Module, batch: int) -> Callable[[Tensor, Any], Tensor]:
    """``loss_fn(h_t, y_t)``: the readout's squared error summed over the batch and divided by it."""

    def loss_fn(h: Tensor, y: Tensor) -> Tensor:
        d = head(h) - y
        return (d * d).sum() / float(batch)

    return loss_fn


def rtrl_memory(kind: str, input_size: int, hidden: int, batch: int, itemsize: int = 8) -> int:
    """Estimated bytes of RTRL's influence matrices for one ``kind`` cell: P parameters x B x S state entries,
    and a few copies of that size while a step's tangents flow (the largest cost of the study)."""
    P = _GATES[kind] * hidden * (input_size + hidden + 2)
    S = 2 * hidden if kind == "lstm" else hidden
    return 6 * P * batch * S * itemsize


def study_methods(
    variants: Sequence[tuple[str, str, float | None]],
    lengths: Sequence[int] = LENGTHS,
    hidden: int = 16,
    batch: int = 16,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    path: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``compare_gradient_methods`` per cell variant ((label, kind, forget bias), as ``internals.variants_from``)
    and per T in ``lengths`` on the running adding task; returns ``results[label][T][method]`` (cosine,
    rel_error, seconds, peak_mib, loss), a printable ``table`` and the ``figure`` (a Figure, or ``path`` written).

    The model is the same at every T (one seed); the data is the first T steps of one seeded draw per T.
    ``progress(text)``, if given, is called before each measurement.
    """
    from .figures import check_path
    from .internals import running_adding_task

    check_path(path, "study_methods")
    for name, v in (("hidden", hidden), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"study_methods: {name} must be a positive int, got {v!r}")
    lengths = sorted({int(T) for T in lengths})
    if not lengths or lengths[0] < 2:
        raise ValueError(f"study_methods: lengths must be integers >= 2 (the adding task), got {lengths!r}")
    if not variants:
        raise ValueError("study_methods: give at least one cell variant")
    results: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    for label, kind, fb in variants:
        results[label] = {}
        for T in lengths:
            if progress is not None:
                progress(f"{label} T={T}")
            cell, head = method_model(kind, hidden, seed, fb)
            x, y = running_adding_task(T, batch, seed)
            results[label][T] = compare_gradient_methods(
                cell, x, y, readout_loss(head, batch), methods=methods, seed=seed
            )
    fig = plot_gradient_methods(results, path, title=f"running adding task, H={hidden}, B={batch}, at init")
    return {"results": results, "table": format_methods_table(results), "figure": fig}


_COLUMNS = (
    ("cosine", "cosine to BPTT's gradient", "{:>9.4f}"),
    ("rel_error", "relative error |g - g_bptt| / |g_bptt|", "{:>9.2e}"),
    ("peak_mib", "peak traced memory (MiB)", "{:>9.3f}"),
    ("seconds", "seconds per sequence", "{:>9.3f}"),
)


def format_methods_table(results: Mapping[str, Mapping[int, Mapping[str, Mapping[str, float]]]]) -> str:
    """One block per measure (cosine, relative error, peak memory, seconds): a row per (cell, method), a column
    per T."""
    if not results:
        raise ValueError("format_methods_table: results is empty; give what study_methods returned")
    labels = list(results)
    Ts = sorted(next(iter(results.values())))
    methods = list(next(iter(results[labels[0]].values())))
    w = max(10, *(len(k) + 1 + max(len(m) for m in methods) for k in labels))
    blocks = []
    for key, title, fmt in _COLUMNS:
        head = f"{'cell, method':<{w}} " + " ".join(f"{'T=' + str(T):>9}" for T in Ts)
        rows = [title + ":", head, "-" * len(head)]
        for label in labels:
            for m in methods:
                vals = " ".join(fmt.format(results[label][T][m][key]) for T in Ts)
                rows.append(f"{label + ' ' + m:<{w}} {vals}")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def plot_gradient_methods(
    results: Mapping[str, Mapping[int, Mapping[str, Mapping[str, float]]]],
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
) -> Any:
    """Cosine to BPTT's gradient and peak memory against T, one row of two panels per cell, one line per method.

    ``results`` is ``study_methods``'s (``results[label][T][method]`` with "cosine" and "peak_mib"). Returns a
    matplotlib ``Figure``, or writes it to ``path`` atomically (PNG, SVG or PDF, from the suffix) and returns
    the path.
    """
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, FuncFormatter, NullFormatter

    from .figures import check_path, finish, new_figure
    from .memory_study import _two_and_five

    check_path(path, "plot_gradient_methods")
    if not results or not all(results.values()):
        raise ValueError("plot_gradient_methods: results is empty; give what study_methods returned")
    fig = new_figure((10.5, 3.3 * len(results) + 0.4))
    axes = np.atleast_2d(fig.subplots(len(results), 2, squeeze=False))
    extra = iter(["tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    styles: dict[str, tuple[str, str, str]] = {}
    for row, (label, by_T) in zip(axes, results.items()):
        Ts = np.array(sorted(by_T))
        ax_c, ax_m = row
        for m in by_T[int(Ts[0])]:
            if m not in styles:
                styles[m] = _STYLE.get(m) or _STYLE.get(m + "1") or (next(extra, "gray"), ":", "D")
            color, ls, marker = styles[m]
            cos = np.array([by_T[int(T)][m]["cosine"] for T in Ts])
            mem = np.array([by_T[int(T)][m]["peak_mib"] for T in Ts])
            kw = {"color": color, "ls": ls, "marker": marker, "lw": 1.6, "ms": 5, "label": m}
            ax_c.plot(Ts, cos, **kw)
            ax_m.plot(Ts, mem, **kw)
        ax_c.set_ylabel("cosine to BPTT's gradient")
        ax_c.set_title(f"{label}: gradient quality")
        ax_m.set_ylabel("peak traced memory (MiB)")
        ax_m.set_yscale("log")
        ax_m.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax_m.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
        ax_m.set_title(f"{label}: memory of one gradient")
        for ax in row:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(Ts))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("sequence length T")
            ax.grid(True, which="major", alpha=0.3)
        # Zoom on the cosines (most sit near 1); the zero line only when one falls below it.
        lows = [r["cosine"] for by_m in by_T.values() for r in by_m.values() if np.isfinite(r["cosine"])]
        low = min(lows, default=0.0)
        ax_c.set_ylim(max(-1.02, low - 0.1 * (1.0 - low) - 0.005), 1.0 + 0.05 * (1.0 - low) + 0.002)
        if low < 0:
            ax_c.axhline(0.0, color="gray", lw=0.8)
    if title:
        fig.suptitle(title)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=9, frameon=False)
    return finish(fig, path, "plot_gradient_methods")
