"""Command line: ``python -m tinygrad_lstm <subcommand>`` (also installed as ``tinygrad-lstm``).

Each subcommand is one entry in ``SUBCOMMANDS``: a name, a help line, a function that adds its options to an
argparse sub-parser and a function that runs it and returns the exit code. Adding a subcommand is one entry.
Bad input is one line on stderr and exit status 2 for all of them: options take ``cli``'s argument types, and
``main`` runs every subcommand through ``cli.run_guarded`` (see ``tinygrad_lstm/cli.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import cli

# ------------------------------------------------------------------------------------------------ graph


def _graph_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``graph``: which tiny model to unroll and how to draw it."""
    p.add_argument("--model", choices=("lstm", "gru", "rnn", "mlp"), default="lstm", help="the model to draw")
    p.add_argument("--steps", type=cli.positive_int, default=3, help="time steps to unroll (recurrent models)")
    p.add_argument("--hidden", type=cli.positive_int, default=4, help="hidden size")
    p.add_argument("--input", type=cli.positive_int, default=3, help="input size")
    p.add_argument("--batch", type=cli.positive_int, default=2, help="batch size")
    p.add_argument("--view", choices=("forward", "backward"), default="forward", help="forward ops or backward VJPs")
    p.add_argument("--collapse", default=None, help="scope name (e.g. cell) or depth: draw each such cluster as a node")
    p.add_argument(
        "--show-steps",
        type=cli.nonnegative_int,
        nargs=2,
        metavar=("K1", "K2"),
        default=None,
        help="draw only the first K1 and last K2 time steps",
    )
    p.add_argument("--no-grads", action="store_true", help="do not show gradient norms")
    p.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB", help="layout direction")
    p.add_argument("--seed", type=cli.seed, default=0, help="random seed for weights and data (an integer >= 0)")
    p.add_argument(
        "--out",
        type=cli.output_file(".svg", ".png"),
        default=None,
        help="output file (.svg or .png); default graph_<model>_<view>.svg",
    )
    return p


def _graph_model(args: argparse.Namespace):
    """A tiny model (inside a container so scopes and names read ``lstm``, ``lstm.weight_hh_l0``) and its loss."""
    from . import Tensor, manual_seed, nn

    manual_seed(args.seed)
    n, h, b, t = args.input, args.hidden, args.batch, args.steps

    class Model(nn.Module):
        """The drawn model: one layer named after --model, and a squared-output loss."""

        def __init__(self) -> None:
            if args.model == "mlp":
                self.fc1 = nn.Linear(n, h)
                self.fc2 = nn.Linear(h, 1)
            else:
                layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[args.model]
                setattr(self, args.model, layer(n, h))

        def forward(self, x: Tensor) -> Tensor:
            if args.model == "mlp":
                return (self.fc2(self.fc1(x).tanh()) ** 2).mean()
            out, _ = getattr(self, args.model)(x)
            return (out * out).mean()

    model = Model()
    list(model.named_parameters())  # gives every parameter its dotted name for the labels
    shape = (b, n) if args.model == "mlp" else (t, b, n)
    x = Tensor.randn(*shape, name="x")
    return x, model


def _graph_run(args: argparse.Namespace) -> int:
    """Build the tiny model, run forward and backward(retain_graph=True), render, print the file's path."""
    import numpy as np

    from . import get_default_dtype, viz

    out = args.out or cli.check_output_file(f"graph_{args.model}_{args.view}.svg")
    itemsize = np.dtype(get_default_dtype()).itemsize
    cli.check_memory(
        cli.model_memory(args.model, args.input, args.hidden, args.steps, args.batch, itemsize, retain_graph=True),
        f"--model {args.model} --hidden {args.hidden} --input {args.input} --batch {args.batch} --steps {args.steps}",
    )
    collapse = args.collapse
    if collapse is not None and collapse.isdigit():
        collapse = int(collapse)
    x, model = _graph_model(args)
    # forward() directly, not model(x): the container adds no scope, so clusters read lstm > t=k > cell.
    loss = model.forward(x)
    loss.backward(retain_graph=True)
    path = viz.render(
        loss,
        path=out,
        view=args.view,
        collapse=collapse,
        steps=tuple(args.show_steps) if args.show_steps else None,
        show_grads=not args.no_grads,
        rankdir=args.rankdir,
    )
    print(path)
    return 0


# ------------------------------------------------------------------------------------------------ explore


def _explore_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``explore``: which tiny model to unroll, and where to write the page."""
    p.add_argument("--model", choices=("lstm", "gru", "rnn", "mlp"), default="lstm", help="the model to explore")
    p.add_argument("--steps", type=cli.positive_int, default=50, help="time steps to unroll (recurrent models)")
    p.add_argument("--hidden", type=cli.positive_int, default=4, help="hidden size")
    p.add_argument("--input", type=cli.positive_int, default=3, help="input size")
    p.add_argument("--batch", type=cli.positive_int, default=2, help="batch size")
    p.add_argument("--seed", type=cli.seed, default=0, help="random seed for weights and data (an integer >= 0)")
    p.add_argument(
        "--out",
        type=cli.output_file(".html"),
        default=None,
        help="output file (one self-contained .html); default graph_<model>.html",
    )
    return p


def _explore_run(args: argparse.Namespace) -> int:
    """Build the tiny model, record its steps, run forward and backward(retain_graph=True), write the page."""
    from . import bptt, viz

    out = args.out or cli.check_output_file(f"graph_{args.model}.html")
    need = cli.model_memory(args.model, args.input, args.hidden, args.steps, args.batch, 4, retain_graph=True)
    cli.check_memory(need, f"--hidden {args.hidden} --steps {args.steps} --batch {args.batch}")
    x, model = _graph_model(args)
    with bptt.record() as rec:
        # forward() directly, not model(x): the container adds no scope, so clusters read lstm > t=k > cell.
        loss = model.forward(x)
        loss.backward(retain_graph=True)
    print(viz.explore(loss, recording=rec if args.model != "mlp" else None).save(out))
    return 0


# ------------------------------------------------------------------------------------------------ bptt


def _bptt_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .bptt import add_cli_arguments

    return add_cli_arguments(p)


def _bptt_run(args: argparse.Namespace) -> int:
    from .bptt import run_cli

    return run_cli(args)


# ------------------------------------------------------------------------------------------------ demo


def _demo_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``demo``: where to write, and a quick mode for smoke tests."""
    p.add_argument(
        "--out", type=cli.output_dir, default="tinygrad_lstm_demo", help="output folder (default ./tinygrad_lstm_demo)"
    )
    p.add_argument("--quick", action="store_true", help="a few seconds: tiny training, short sequences")
    p.add_argument("--seed", type=cli.seed, default=0, help="random seed (an integer >= 0)")
    return p


def _demo_run(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, quick=args.quick, seed=args.seed)
    return 0


# ------------------------------------------------------------------------------------------------ registry

Subcommand = tuple[str, str, Callable[[argparse.ArgumentParser], object], Callable[[argparse.Namespace], int]]

SUBCOMMANDS: list[Subcommand] = [
    (
        "demo",
        "train a small LSTM forecaster, draw its graphs, plot gradients through time, save the weights",
        _demo_arguments,
        _demo_run,
    ),
    (
        "graph",
        "draw a tiny model's computation graph (forward ops or backward VJPs) with gradients",
        _graph_arguments,
        _graph_run,
    ),
    (
        "bptt",
        "compare gradient flow through time for RNN, LSTM and GRU cells, or run a BPTT-internals --study",
        _bptt_arguments,
        _bptt_run,
    ),
    (
        "explore",
        "write an interactive page of a tiny model's graph: fold/unfold steps, forward/backward, gradients",
        _explore_arguments,
        _explore_run,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per entry of ``SUBCOMMANDS``."""
    parser = cli.ArgumentParser(prog=cli.PROG, description="tinygrad_lstm: study backpropagation through time")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text, add_arguments, run in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run, _command=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (``sys.argv[1:]`` by default), run the subcommand, return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:  # argparse exits on --help and on bad arguments: report that as a return code
        return int(e.code) if isinstance(e.code, int) else 2
    # One error handler for every subcommand: bad input is one line on stderr and exit status 2 (cli.py).
    return cli.run_guarded(args._command, args._run, args)


if __name__ == "__main__":
    sys.exit(main())
