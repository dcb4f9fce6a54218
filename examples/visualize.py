"""Draw the graphs that backpropagation through time walks: one LSTM step, five steps, and two hundred.

What it teaches (source material: the LSTM cell and its gates, the unrolled recurrent network, BPTT):

* The forward graph (``view="forward"``) of an LSTM is the cell's equations drawn as ops: the gate
  pre-activations W x_t + U h_{t-1} + b, the sigmoids and the tanh, and the update c_t = f * c_{t-1} + i * g,
  h_t = o * tanh(c_t). Unrolled over T steps it is T copies of that cell in a chain, and every copy uses the SAME
  weight tensors: one weight node whose edges fan out to every step.
* The backward graph (``view="backward"``) is what ``loss.backward()`` runs: one VJP node per op, edges in the
  direction the gradient flows (from the loss back to step 0), and a ``+=`` node where the gradients of a
  weight's T uses are summed: that sum over time steps is BPTT's weight gradient. After
  ``backward(retain_graph=True)`` nodes are coloured by gradient norm (log scale), so the decay of
  dL/dh_t back through time is visible.
* Expanded graphs show every op; ``collapse="cell"`` draws each step's cell as one box with its in/out shapes,
  and ``steps=(2, 2)`` keeps only the first two and the last two steps of a long sequence (one "..." node for
  the rest), so a 200-step graph still fits on a page.

It draws a small ``nn.LSTM`` (input 3, hidden 4, batch 2) and the same computation written as an ``nn.LSTMCell``
in a Python loop, each for 1 and 5 steps, forward and backward, expanded and collapsed, plus a 200-step
``nn.LSTM`` with ``steps=(2, 2)`` and ``collapse="cell"``. The loss reads only the last hidden state, as a
sequence classifier would. Files go into ``--out`` as SVG, and as PNG when the Graphviz engine can write PNG.
Run ``python examples/visualize.py --help`` for the options.

Things to look for: in the 1-step graphs ``weight_hh`` is grey (gradient exactly 0): the initial state h_0 is
zero, so U h_0 does not depend on U. In the 5-step backward graphs each weight's gradient arrives through a
``+= (5 terms)`` node, one term per step. In the 200-step drawing the gradient at t = 0 is ~1e-41 against ~0.2
at the last step: it vanishes on the way back through time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tqdm import tqdm

import tinygrad_lstm as tg
import tinygrad_lstm.nn as nn
from tinygrad_lstm import Tensor, scope, viz

NAME = "visualize"
INPUT, HIDDEN, BATCH = 3, 4, 2


class LayerModel(nn.Module):
    """An ``nn.LSTM`` layer; the loss is the mean square of the last hidden state."""

    def __init__(self) -> None:
        self.lstm = nn.LSTM(INPUT, HIDDEN)

    def forward(self, x: Tensor) -> Tensor:
        """x (T, B, 3) -> scalar loss."""
        out, _ = self.lstm(x)
        h = out[-1]  # the last step's hidden state (B, 4)
        return (h * h).mean()


class CellLoopModel(nn.Module):
    """The same recurrence written by hand: an ``nn.LSTMCell`` called once per step in a Python loop."""

    def __init__(self) -> None:
        self.cell = nn.LSTMCell(INPUT, HIDDEN)

    def forward(self, x: Tensor) -> Tensor:
        """x (T, B, 3) -> scalar loss; every step is tagged ``t=k`` so the drawing has one cluster per step."""
        state = None  # zeros, as the layer starts
        for t in range(x.shape[0]):
            with scope(f"t={t}"):
                state = self.cell(x[t], state)
        h = state[0]
        return (h * h).mean()


MODELS = {"lstm": LayerModel, "lstmcell_loop": CellLoopModel}


def build_graph(kind: str, steps: int, seed: int) -> Tensor:
    """Run the model forward and backward (keeping the graph and its gradients for the drawing); returns the loss."""
    tg.manual_seed(seed)
    model = MODELS[kind]()
    list(model.named_parameters())  # gives every parameter its dotted name (lstm.weight_hh_l0) for the labels
    x = Tensor.randn(steps, BATCH, INPUT, name="x")
    # forward() directly rather than model(x): the container would add one more cluster level around everything.
    loss = model.forward(x)
    loss.backward(retain_graph=True)  # retain: the drawing reads each node's gradients after backward
    return loss


def render_both(loss: Tensor, stem: Path, want_png: bool, **kwargs: object) -> tuple[Path, Path | None]:
    """Write ``stem``.svg, and ``stem``.png if wanted and the engine can; returns the paths (png None if not)."""
    svg = viz.render(loss, path=stem.with_suffix(".svg"), **kwargs)
    png = None
    if want_png:
        try:
            png = viz.render(loss, path=stem.with_suffix(".png"), **kwargs)
        except RuntimeError as e:  # an engine without a PNG writer says so on stderr: keep the SVGs
            print(f"note: no PNG for {stem.name}: {e}")
    return svg, png


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; ``--quick`` shortens the long run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--long", type=int, default=200, help="length of the long run drawn with steps=(2, 2)")
    p.add_argument("--no-png", action="store_true", help="write SVG only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("example_outputs") / NAME, help="directory for the drawings")
    p.add_argument("--quick", action="store_true", help="a shorter long run (20 steps), same drawings otherwise")
    if p.parse_known_args(argv)[0].quick:  # a smaller default; --long given explicitly still wins
        p.set_defaults(long=20)
    args = p.parse_args(argv)
    if args.long < 5:
        p.error("--long must be >= 5 so that steps=(2, 2) leaves something out")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Draw every graph, print the paths, return them."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    # (model, steps, view, collapse, steps window): the small graphs in every combination, then the long one.
    jobs = [
        (kind, T, view, collapse, None)
        for kind in MODELS
        for T in (1, 5)
        for collapse in (None, "cell")
        for view in ("forward", "backward")
    ]
    jobs += [("lstm", args.long, view, "cell", (2, 2)) for view in ("forward", "backward")]

    svgs, pngs = [], []
    want_png = not args.no_png
    for kind, T, view, collapse, window in tqdm(jobs, desc=NAME, disable=None, leave=False):
        loss = build_graph(kind, T, args.seed)
        shape = "collapsed" if collapse else "expanded"
        stem = args.out / f"{kind}_{T}step{'s' if T > 1 else ''}_{view}_{shape}"
        svg, png = render_both(loss, stem, want_png, view=view, collapse=collapse, steps=window)
        svgs.append(svg)
        if png is not None:
            pngs.append(png)
        else:
            want_png = False  # the engine cannot write PNG: do not try (and fail) for every graph
        print(f"wrote {svg}" + (f" and {png.name}" if png else ""))

    print(f"{len(svgs)} SVG and {len(pngs)} PNG drawings in {args.out} ({time.perf_counter() - start:.1f} s)")
    return {"svgs": svgs, "pngs": pngs, "jobs": jobs}


if __name__ == "__main__":
    main()
