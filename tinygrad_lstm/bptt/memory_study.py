"""Peak memory and time of full against checkpointed BPTT as the sequence grows.

Peak memory is what ``tracemalloc`` sees above the baseline during one forward + backward: numpy registers every
array buffer it allocates with tracemalloc (in its own allocator domain), and Python objects (graph nodes) are
traced too, so the peak is the whole graph's and the gradients' memory. Time is measured in separate runs with
tracing off (tracing slows every allocation down), as this process's CPU time by default: on a shared machine
that is far steadier than wall time (run with one BLAS thread, ``OPENBLAS_NUM_THREADS=1``, to make it the
compute time).
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..tensor import Tensor, default_dtype, fork_rng
from .checkpoint import _check_segments, checkpoint_bptt

METHODS = ("full", "checkpoint")


def _sum_sq(out: Tensor, y: Tensor) -> Tensor:
    """The summed squared error: a sum over steps, so the chunked and the one-call losses are one function."""
    d = out - y
    return (d * d).sum()


def _runner(method: str, model: Any, X: Tensor, Y: Tensor, segments: int | None) -> Callable[[], float]:
    params = model.parameters()

    def run() -> float:
        for p in params:
            p.grad = None
        if method == "full":
            out, _ = model(X)
            loss = _sum_sq(out, Y)
            loss.backward()
            return float(loss.item())
        return checkpoint_bptt(model, X, Y, _sum_sq, segments=segments)[0]

    return run


def _peak(run: Callable[[], float]) -> int:
    """Bytes above the baseline at the peak of one run, as tracemalloc traced them."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _seconds(run: Callable[[], float], clock: Callable[[], float]) -> float:
    t0 = clock()
    run()
    return clock() - t0


def measure_bptt_memory(
    Ts: Iterable[int],
    *,
    kind: str = "lstm",
    batch: int = 16,
    hidden: int = 128,
    input_size: int = 8,
    segments: int | None = None,
    repeats: int = 3,
    dtype: Any = np.float32,
    seed: int = 0,
    clock: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """For every T: peak traced bytes and seconds of one forward + backward, full BPTT vs ``checkpoint_bptt``.

    A one-layer ``kind`` layer (B=``batch``, H=``hidden``) reads random inputs; the loss is the summed squared
    error of its output against random targets. Each measurement is repeated ``repeats`` times; a row holds,
    for each method, lists ``peak_bytes`` and ``seconds`` of all repeats, and ``segments`` used. ``clock``:
    "cpu" (this process's CPU time) or "wall". ``progress`` receives each row as a table line when measured.
    """
    from .. import nn

    fn = "measure_bptt_memory"
    Ts = [int(T) for T in Ts]
    if not Ts or any(T < 1 for T in Ts):
        raise ValueError(f"{fn}: Ts must be positive ints, got {Ts}")
    if kind not in ("rnn", "lstm", "gru"):
        raise ValueError(f"{fn}: kind must be 'rnn', 'lstm' or 'gru', got {kind!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"{fn}: repeats must be a positive int, got {repeats!r}")
    if clock not in ("cpu", "wall"):
        raise ValueError(f"{fn}: clock must be 'cpu' or 'wall', got {clock!r}")
    timer = time.process_time if clock == "cpu" else time.perf_counter
    rows = []
    with default_dtype(dtype), fork_rng(seed) as rng:
        model = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](input_size, hidden)
        for T in Ts:
            n = _check_segments(segments, T, fn)
            X = Tensor(rng.standard_normal((T, batch, input_size)).astype(dtype))
            Y = Tensor(rng.standard_normal((T, batch, hidden)).astype(dtype))
            row: dict[str, Any] = {"T": T, "segments": n, "clock": clock}
            for method in METHODS:
                run = _runner(method, model, X, Y, n)
                run()  # warm-up
                row[method] = {
                    "peak_bytes": [_peak(run) for _ in range(repeats)],
                    "seconds": [_seconds(run, timer) for _ in range(repeats)],
                }
            rows.append(row)
            if progress is not None:
                progress(format_memory_table([row], header=False))
    return rows


def _range(values: Sequence[float], scale: float, fmt: str) -> str:
    lo, hi = min(values) / scale, max(values) / scale
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def format_memory_table(rows: Sequence[Mapping[str, Any]], header: bool = True) -> str:
    """A markdown table: per T the peak MiB and seconds of both methods (min-max over repeats) and the ratios
    checkpoint / full (of the medians)."""
    lines = []
    if header:
        lines += [
            "| T | segments | full peak MiB | checkpointed peak MiB | peak ratio | full s | checkpointed s "
            "| time ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
    mib = float(1 << 20)
    for r in rows:
        f, c = r["full"], r["checkpoint"]
        pr = np.median(c["peak_bytes"]) / np.median(f["peak_bytes"])
        tr = np.median(c["seconds"]) / np.median(f["seconds"])
        lines.append(
            f"| {r['T']} | {r['segments']} | {_range(f['peak_bytes'], mib, '.1f')} | "
            f"{_range(c['peak_bytes'], mib, '.1f')} | {pr:.3f}x | {_range(f['seconds'], 1.0, '.2f')} | "
            f"{_range(c['seconds'], 1.0, '.2f')} | {tr:.2f}x |"
        )
    return "\n".join(lines)


def _two_and_five(value: float, _pos: int) -> str:
    """Label a minor log tick only at 2 and 5 times a power of ten."""
    mantissa = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
    return f"{value:g}" if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""


def plot_memory(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike | None = None, *, title: str = "") -> Any:
    """Peak memory and time against T for both methods (log-log, the range over repeats as error bars).

    Returns a matplotlib ``Figure``, or writes it to ``path`` atomically (PNG, SVG or PDF, from the suffix)
    and returns the path.
    """
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, FuncFormatter, NullFormatter

    from .figures import check_path, finish, new_figure

    check_path(path, "plot_memory")

    if not rows:
        raise ValueError("plot_memory: rows is empty; give what measure_bptt_memory returned")
    fig = new_figure((10, 4.4))
    ax_m, ax_t = fig.subplots(1, 2)
    Ts = np.array([r["T"] for r in rows])
    for method, label in (("full", "full BPTT"), ("checkpoint", "checkpointed BPTT")):
        for ax, key, scale in ((ax_m, "peak_bytes", float(1 << 20)), (ax_t, "seconds", 1.0)):
            vals = [np.asarray(r[method][key], dtype=np.float64) / scale for r in rows]
            med = np.array([np.median(v) for v in vals])
            err = np.array([[m - v.min() for m, v in zip(med, vals)], [v.max() - m for m, v in zip(med, vals)]])
            ax.errorbar(Ts, med, yerr=err, marker="o", capsize=3, lw=1.8, label=label)
    for ax in (ax_m, ax_t):
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Plain numbers (200, 0.3) rather than 2 x 10^2; T ticks at the measured lengths; 2 and 5 between decades.
        ax.xaxis.set_major_locator(FixedLocator(Ts))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
        ax.set_xlabel("sequence length T")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    ax_m.set_ylabel("peak traced memory (MiB)")
    ax_m.set_title("peak memory of forward + backward")
    cpu = rows[0].get("clock", "cpu") == "cpu"
    ax_t.set_ylabel(("CPU seconds" if cpu else "wall seconds") + " per forward + backward")
    ax_t.set_title("time")
    if title:
        fig.suptitle(title)
    return finish(fig, path, "plot_memory")
