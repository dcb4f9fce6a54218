"""Gradient flow through time per cell type on the same inputs: ``python -m tinygrad_lstm bptt``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..nn.module import Module
from ..tensor import Tensor, default_dtype, fork_rng
from .recording import CELL_KINDS, record

if TYPE_CHECKING:  # matplotlib is imported only when something is plotted
    from matplotlib.figure import Figure


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
    path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Gradient norm through time for each cell type on the same inputs: a table and a plot.

    Every cell gets the same task batch (drawn from ``seed``) and the same seed for its initialization.
    ``forget_bias`` (LSTM only) sets the forget gate's total bias; None keeps PyTorch's initialization.
    Returns ``{"norms": {cell: (T,) array}, "table": str, "figure": Figure, "path": Path or None}``: the plot
    (``plot_gradient_flow``) is always in ``figure`` (a notebook shows it inline) and is also written to
    ``path`` unless that is None.
    """
    from .figures import check_path

    check_path(path, "compare_cells")
    cells = [c.strip().lower() for c in cells if c.strip()]
    if not cells:
        raise ValueError("bptt: give at least one cell (rnn, lstm, gru)")
    bad = [c for c in cells if c not in CELL_KINDS]
    if bad:
        raise ValueError(f"bptt: unknown cell(s) {bad} (choose from {', '.join(CELL_KINDS)})")
    for name, v in (("steps", steps), ("hidden", hidden), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"bptt: {name} must be a positive int, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"bptt: seed must be an int >= 0, got {seed!r}")
    if forget_bias is not None and not (isinstance(forget_bias, (int, float, np.number)) and np.isfinite(forget_bias)):
        raise ValueError(f"bptt: forget_bias must be a finite number or None, got {forget_bias!r}")
    xs, target = _task(task, steps, batch, np.random.default_rng(seed))
    norms = {c: measure_gradient_flow(c, xs, target, hidden, seed, forget_bias) for c in cells}
    table = format_table(norms)
    title = f"{task} task, T={steps}, hidden={hidden}, batch={batch}" + (
        f", LSTM forget bias {forget_bias:g}" if forget_bias is not None and "lstm" in cells else ""
    )
    figure = plot_gradient_flow(norms, title=title)
    written = None
    if path is not None:
        from .figures import finish

        written = finish(figure, path, "compare_cells")
    return {"norms": norms, "table": table, "figure": figure, "path": written}


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


def plot_gradient_flow(
    norms: dict[str, np.ndarray], path: str | os.PathLike | None = None, title: str = ""
) -> Figure | Path:
    """One curve per cell of ||dL/dh_t|| against t on a log scale.

    Without ``path``, returns the matplotlib ``Figure`` (a notebook shows it inline); with a path, writes it
    atomically (PNG, or SVG/PDF from the suffix) and returns the path.
    """
    from .figures import check_path, finish, new_figure

    check_path(path, "plot_gradient_flow")
    if not isinstance(norms, dict) or not norms:
        raise ValueError(f"plot_gradient_flow: norms must be a non-empty dict label -> (T,) array, got {norms!r:.50}")
    fig = new_figure((9, 5.5))
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
    return finish(fig, path, "plot_gradient_flow")


def _positive_ints(text: str) -> list[int]:
    """An argparse type: comma-separated integers >= 1 (``--windows``, ``--lengths``)."""
    from .. import cli

    parts = [v.strip() for v in text.split(",") if v.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 1, got {text!r}")
    try:
        return [cli.positive_int(v) for v in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 1, got {text!r}") from None


_positive_ints.__name__ = "list of integers"  # argparse names the type in its own messages


def add_cli_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``python -m tinygrad_lstm bptt`` (added to ``parser``, which is returned)."""
    from .. import cli
    from .internals import STUDIES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Without --study: ||dL/dh_t|| through time for each cell on the same inputs (the cell comparison).\n"
        "Studies (--study NAME, each prints its table and writes its figure):\n"
        + "\n".join(f"  {name:<11} {one}\n  {'':<11} {two}" for name, (one, two) in STUDIES.items())
    )
    parser.add_argument("--study", choices=tuple(STUDIES), default=None, help="run one BPTT-internals study")
    parser.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cell types (rnn, lstm, gru)")
    parser.add_argument(
        "--steps",
        type=cli.positive_int,
        default=None,
        help="sequence length T (default 100; flow: 60; methods: the largest T, see --lengths)",
    )
    parser.add_argument(
        "--windows",
        type=_positive_ints,
        default=None,
        help="truncation: comma-separated windows k (default 1,2,5,...,T)",
    )
    parser.add_argument(
        "--lengths",
        type=_positive_ints,
        default=None,
        help="memory, methods: comma-separated sequence lengths T (default 100,200,400,800; methods: 10,20,50,100,200)",
    )
    parser.add_argument(
        "--methods",
        default="bptt,tbptt:10,rtrl,uoro,snap1",
        help="methods: comma-separated gradient methods (bptt, tbptt:K, rtrl, uoro, snap1)",
    )
    parser.add_argument(
        "--repeats", type=cli.positive_int, default=3, help="memory: measurements per length and method"
    )
    parser.add_argument("--task", choices=("adding", "sine"), default="adding", help="input sequences")
    parser.add_argument(
        "--hidden", type=cli.positive_int, default=None, help="hidden units (default 32; memory: 128; methods: 16)"
    )
    parser.add_argument("--batch", type=cli.positive_int, default=16, help="sequences in the batch")
    parser.add_argument(
        "--seed", type=cli.seed, default=0, help="seed of the inputs and of every cell's weights (an integer >= 0)"
    )
    parser.add_argument(
        "--forget-bias",
        type=cli.finite_float,
        default=None,
        help="LSTM forget-gate bias, any finite number (default: PyTorch's init)",
    )
    parser.add_argument(
        "--out",
        type=cli.output_file(".png", ".svg", ".pdf"),
        default=None,
        help="where to write the plot (.png, .svg or .pdf; default bptt.png, with --study bptt_STUDY.png)",
    )
    return parser


def _run_study(args: argparse.Namespace) -> int:
    from .. import cli
    from . import internals

    study = args.study
    path = args.out if args.out is not None else cli.check_output_file(internals.default_path(study, None))
    hidden = args.hidden if args.hidden is not None else {"memory": 128, "methods": 16}.get(study, 32)
    sizes = f"--hidden {hidden} --batch {args.batch}"
    common = {"hidden": hidden, "batch": args.batch, "seed": args.seed, "path": path}
    if study == "memory":
        args.lengths = args.lengths or [100, 200, 400, 800]
        T = max(args.lengths)
        # measure_bptt_memory's LSTM: 8 inputs, float32; the full-BPTT run is the larger one.
        cli.check_memory(cli.model_memory("lstm", 8, hidden, T, args.batch, 4), f"{sizes} --lengths ...{T}")
        res = internals.study_memory(
            args.lengths, hidden=hidden, batch=args.batch, repeats=args.repeats, seed=args.seed, path=path
        )
        print(
            "full vs checkpointed BPTT: tracemalloc peak (numpy arrays and Python objects) and CPU seconds "
            "of one forward + backward"
        )
    elif study == "methods":
        from .methods_study import LENGTHS, rtrl_memory

        variants = internals.variants_from(args.cells.split(","), args.forget_bias)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.lengths is not None:
            lengths = args.lengths
        elif args.steps is not None:  # --steps T: the default lengths below T, and T
            lengths = sorted({T for T in LENGTHS if T < args.steps} | {args.steps})
        else:
            lengths = list(LENGTHS)
        T = max(lengths)
        need = max(
            max(cli.model_memory(v[1], 2, hidden, T, args.batch, 8), rtrl_memory(v[1], 2, hidden, args.batch))
            for v in variants
        )
        cli.check_memory(need, f"{sizes} --lengths ...{T}")
        res = internals.study_methods(
            variants, lengths, hidden=hidden, batch=args.batch, seed=args.seed, methods=methods, path=path
        )
        print(
            "gradient methods against BPTT's exact gradient (bptt.compare_gradient_methods), running adding task "
            f"with a Linear readout, H={hidden}, B={args.batch}; memory: tracemalloc peak (numpy and Python)"
        )
    else:
        variants = internals.variants_from(args.cells.split(","), args.forget_bias)
        steps = args.steps if args.steps is not None else (60 if study == "flow" else 100)
        # The weights study keeps one W_hh-sized gradient per step and the flow matrix keeps the graph between
        # its T backward passes: both cost about what a retained graph does.
        retained = study in ("weights", "flow")
        need = max(cli.model_memory(v[1], 2, hidden, steps, args.batch, 8, retain_graph=retained) for v in variants)
        cli.check_memory(need, f"{sizes} --steps {steps}")
        if study == "weights":
            res = internals.study_weights(variants, steps=steps, **common)
            print(f"||term t of dL/dW_hh|| (Recording.param_grads), adding task, T={steps}, loss on the last step")
        elif study == "flow":
            res = internals.study_flow(variants, steps=steps, **common)
            print(f"mean ||dL_t/dh_s|| at lag t-s (bptt.flow_matrix), running adding task, T={steps}")
        else:
            res = internals.study_truncation(variants, steps=steps, ks=args.windows, **common)
            print(f"cosine of tbptt's gradient to full BPTT's (bptt.truncation_bias), running adding task, T={steps}")
    print(res["table"])
    print(f"wrote {res['figure']}")
    return 0


def _run_cli(args: argparse.Namespace) -> int:
    from .. import cli

    if getattr(args, "study", None) is not None:
        return _run_study(args)
    steps = args.steps if args.steps is not None else 100
    hidden = args.hidden if args.hidden is not None else 32
    out = args.out if args.out is not None else cli.check_output_file("bptt.png")
    cells = [c.strip().lower() for c in args.cells.split(",") if c.strip()]
    input_size = 2 if args.task == "adding" else 1
    need = max(
        (cli.model_memory(c, input_size, hidden, steps, args.batch, 8) for c in cells if c in CELL_KINDS),
        default=0,
    )
    cli.check_memory(need, f"--hidden {hidden} --steps {steps} --batch {args.batch}")
    res = compare_cells(
        cells,
        steps=steps,
        task=args.task,
        hidden=hidden,
        batch=args.batch,
        seed=args.seed,
        forget_bias=args.forget_bias,
        path=out,
    )
    print(f"||dL/dh_t|| through time, {args.task} task, T={steps} (loss on the last step's output)")
    print(res["table"])
    print(f"wrote {res['path']}")
    return 0


def run_cli(args: argparse.Namespace) -> int:
    """Run the ``bptt`` subcommand: print the table, write the plot; 0 on success, 2 on bad input (one line on
    stderr, see ``tinygrad_lstm.cli``)."""
    from .. import cli

    return cli.run_guarded("bptt", _run_cli, args)
