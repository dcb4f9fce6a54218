"""Gradient flow through time per cell type on the same inputs: ``python -m tinygrad_lstm bptt``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from ..nn.module import Module
from ..tensor import Tensor, default_dtype, fork_rng
from .recording import CELL_KINDS, record


def _task(task: str, steps: int, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (T, B, I) and the target of the last step (B, O) for a built-in task, float64."""
    from ..data import adding_problem, sine_waves

    if task == "adding":
        if steps < 2:
            raise ValueError(f"bptt: the adding task needs at least 2 steps, got {steps}")
        return adding_problem(batch, steps, rng=rng, dtype=np.float64)
    if task == "sine":
        x, y = sine_waves(batch, steps, rng=rng, dtype=np.float64)
        return x, y[-1]
    raise ValueError(f"bptt: unknown task {task!r} (choose 'adding' or 'sine')")


def _make_layer(kind: str, input_size: int, hidden: int, forget_bias: float | None) -> Module:
    from .. import nn

    layers = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
    if kind not in layers:
        raise ValueError(f"bptt: unknown cell {kind!r} (choose from {', '.join(CELL_KINDS)})")
    layer = getattr(nn, layers[kind])(input_size, hidden)
    if kind == "lstm" and forget_bias is not None:
        # PyTorch's gate order is i, f, g, o: the forget gate's bias is rows H..2H of both bias vectors.
        layer.bias_ih_l0.data[hidden : 2 * hidden] = forget_bias
        layer.bias_hh_l0.data[hidden : 2 * hidden] = 0.0
    return layer


def measure_gradient_flow(
    kind: str,
    xs: np.ndarray,
    target: np.ndarray,
    hidden: int = 32,
    seed: int = 0,
    forget_bias: float | None = None,
) -> np.ndarray:
    """||dL/dh_t|| for t = 0..T-1 of a fresh (seeded) one-layer ``kind`` layer with a Linear head on the last
    output and an MSE loss against ``target``; computed in float64. Nothing is trained."""
    from .. import nn

    with default_dtype(np.float64):
        with fork_rng(seed):  # the caller's random stream (e.g. the demo's) is left alone
            layer = _make_layer(kind, xs.shape[-1], hidden, forget_bias)
            head = nn.Linear(hidden, target.shape[-1])
        with record(param_grads=False) as rec:  # only dL/dh_t is read
            out, _ = layer(Tensor(xs))
            diff = head(out[-1]) - Tensor(target)
            loss = (diff * diff).mean()
            loss.backward()
        return rec.grad_norms("h", 0, 0)


def compare_cells(
    cells: Sequence[str] = CELL_KINDS,
    steps: int = 100,
    task: str = "adding",
    hidden: int = 32,
    batch: int = 16,
    seed: int = 0,
    forget_bias: float | None = None,
    path: str | os.PathLike | None = "bptt.png",
) -> dict[str, Any]:
    """Gradient norm through time for each cell type on the same inputs; a table and (if ``path``) a plot.

    Every cell gets the same task batch (drawn from ``seed``) and the same seed for its initialization.
    ``forget_bias`` (LSTM only) sets the forget gate's total bias; None keeps PyTorch's initialization.
    Returns ``{"norms": {cell: (T,) array}, "table": str, "path": Path or None}``.
    """
    cells = [c.strip().lower() for c in cells if c.strip()]
    if not cells:
        raise ValueError("bptt: give at least one cell (rnn, lstm, gru)")
    bad = [c for c in cells if c not in CELL_KINDS]
    if bad:
        raise ValueError(f"bptt: unknown cell(s) {bad} (choose from {', '.join(CELL_KINDS)})")
    for name, v in (("steps", steps), ("hidden", hidden), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"bptt: {name} must be a positive int, got {v!r}")
    xs, target = _task(task, steps, batch, np.random.default_rng(seed))
    norms = {c: measure_gradient_flow(c, xs, target, hidden, seed, forget_bias) for c in cells}
    table = format_table(norms)
    written = None
    if path is not None:
        title = f"{task} task, T={steps}, hidden={hidden}, batch={batch}" + (
            f", LSTM forget bias {forget_bias:g}" if forget_bias is not None and "lstm" in cells else ""
        )
        written = plot_gradient_flow(norms, path, title=title)
    return {"norms": norms, "table": table, "path": written}


def format_table(norms: dict[str, np.ndarray]) -> str:
    """One row per cell: ||dL/dh_t|| at t = 0, T/2 and T-1, and the decay ratio norm[0] / norm[T-1]."""
    w = max(6, *(len(c) for c in norms))
    head = f"{'cell':<{w}} {'t=0':>11} {'t=T/2':>11} {'t=T-1':>11} {'norm[0]/norm[T-1]':>18}"
    rows = [head, "-" * len(head)]
    for cell, n in norms.items():
        T = len(n)
        ratio = n[0] / n[-1] if n[-1] != 0 else float("nan")
        rows.append(f"{cell:<{w}} {n[0]:>11.3e} {n[T // 2]:>11.3e} {n[-1]:>11.3e} {ratio:>18.3e}")
    return "\n".join(rows)


def plot_gradient_flow(norms: dict[str, np.ndarray], path: str | os.PathLike, title: str = "") -> Path:
    """One curve per cell of ||dL/dh_t|| against t on a log scale; written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for cell, n in norms.items():
        label = cell.upper() if cell in CELL_KINDS else cell  # "lstm" -> "LSTM"; a caller's own label as is
        ax.plot(np.arange(len(n)), np.where(n > 0, n, np.nan), lw=2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("time step t (the loss reads the last step)")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title("gradient norm through time" + (f"\n{title}" if title else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)


def add_cli_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``python -m tinygrad_lstm bptt`` (added to ``parser``, which is returned)."""
    from .internals import STUDIES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Without --study: ||dL/dh_t|| through time for each cell on the same inputs (the cell comparison).\n"
        "Studies (--study NAME, each prints its table and writes its figure):\n"
        + "\n".join(f"  {name:<11} {one}\n  {'':<11} {two}" for name, (one, two) in STUDIES.items())
    )
    parser.add_argument("--study", choices=tuple(STUDIES), default=None, help="run one BPTT-internals study")
    parser.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cell types (rnn, lstm, gru)")
    parser.add_argument("--steps", type=int, default=None, help="sequence length T (default 100; flow: 60)")
    parser.add_argument("--windows", default=None, help="truncation: comma-separated windows k (default 1,2,5,...,T)")
    parser.add_argument("--lengths", default="100,200,400,800", help="memory: comma-separated sequence lengths T")
    parser.add_argument("--repeats", type=int, default=3, help="memory: measurements per length and method")
    parser.add_argument("--task", choices=("adding", "sine"), default="adding", help="input sequences")
    parser.add_argument("--hidden", type=int, default=None, help="hidden units (default 32; memory: 128)")
    parser.add_argument("--batch", type=int, default=16, help="sequences in the batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and of every cell's weights")
    parser.add_argument(
        "--forget-bias", type=float, default=None, help="LSTM forget-gate bias (default: PyTorch's init)"
    )
    parser.add_argument("--out", default=None, help="where to write the plot (PNG; default bptt.png, bptt_STUDY.png)")
    return parser


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"bptt: {option} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"bptt: {option} is empty")
    return values


def _run_study(args: argparse.Namespace) -> int:
    from . import internals

    study = args.study
    path = internals.default_path(study, args.out)
    hidden = args.hidden if args.hidden is not None else (128 if study == "memory" else 32)
    common = {"hidden": hidden, "batch": args.batch, "seed": args.seed, "path": path}
    if study == "memory":
        res = internals.study_memory(
            _ints(args.lengths, "--lengths"),
            hidden=hidden,
            batch=args.batch,
            repeats=args.repeats,
            seed=args.seed,
            path=path,
        )
        print(
            "full vs checkpointed BPTT: tracemalloc peak (numpy arrays and Python objects) and CPU seconds "
            "of one forward + backward"
        )
    else:
        variants = internals.variants_from(args.cells.split(","), args.forget_bias)
        steps = args.steps if args.steps is not None else (60 if study == "flow" else 100)
        if study == "weights":
            res = internals.study_weights(variants, steps=steps, **common)
            print(f"||term t of dL/dW_hh|| (Recording.param_grads), adding task, T={steps}, loss on the last step")
        elif study == "flow":
            res = internals.study_flow(variants, steps=steps, **common)
            print(f"mean ||dL_t/dh_s|| at lag t-s (bptt.flow_matrix), running adding task, T={steps}")
        else:
            ks = None if args.windows is None else _ints(args.windows, "--windows")
            res = internals.study_truncation(variants, steps=steps, ks=ks, **common)
            print(f"cosine of tbptt's gradient to full BPTT's (bptt.truncation_bias), running adding task, T={steps}")
    print(res["table"])
    print(f"wrote {res['figure']}")
    return 0


def run_cli(args: argparse.Namespace) -> int:
    """Run the ``bptt`` subcommand: print the table, write the plot; 0 on success, 2 on a bad argument."""
    try:
        if getattr(args, "study", None) is not None:
            return _run_study(args)
        steps = args.steps if args.steps is not None else 100
        res = compare_cells(
            args.cells.split(","),
            steps=steps,
            task=args.task,
            hidden=args.hidden if args.hidden is not None else 32,
            batch=args.batch,
            seed=args.seed,
            forget_bias=args.forget_bias,
            path=args.out if args.out is not None else "bptt.png",
        )
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"||dL/dh_t|| through time, {args.task} task, T={steps} (loss on the last step's output)")
    print(res["table"])
    print(f"wrote {res['path']}")
    return 0
