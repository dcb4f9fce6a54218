"""Time ``bptt.jacobian_norms`` exact vs power (the README's "Jacobian spectra" numbers) and check they agree.

For RNNCell, LSTMCell and GRUCell (float64, PyTorch's initialization, input 8, standard normal inputs) at H = 256,
T = 50, batch 1 and 4: the wall time of each method (median and range over the repeats, interleaved), the ratio of
the medians, the power method's rounds and the largest relative difference between the two over all t and batch
elements (reduce="none"). One BLAS thread, fixed before numpy is imported (a spinning BLAS thread that loses its
core on a shared machine inflates times).

    python tools/bench_jacobian.py                  # H = 256, T = 50, B = 1 and 4, 3 repeats
    python tools/bench_jacobian.py --quick          # H = 16, T = 8, one repeat: seconds
"""

from __future__ import annotations

import os
import sys

if "OPENBLAS_NUM_THREADS" not in os.environ:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import time
import warnings

import numpy as np

import tinygrad_lstm as tl
from tinygrad_lstm import bptt, nn
from tinygrad_lstm.bptt.spectra import power_norms

CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


def _ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"need comma-separated ints, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"need ints >= 1, got {text!r}")
    return vals


def bench(kind: str, H: int, T: int, B: int, repeats: int, tol: float) -> dict:
    """One row: times of both methods (lists), rounds, max relative difference."""
    tl.manual_seed(0)
    cell = CELLS[kind](8, H, dtype=np.float64)
    xs = np.random.default_rng(1).standard_normal((T, B, 8))
    t_exact, t_power = [], []
    for _ in range(repeats):  # interleaved, so a slow spell of the machine hits both
        t0 = time.perf_counter()
        exact = bptt.jacobian_norms(cell, xs, reduce="none")
        t_exact.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unconverged estimate is a failure here, not a footnote
            power, rounds = power_norms(cell, xs, None, tol=tol, max_iter=100)
        t_power.append(time.perf_counter() - t0)
    rel = np.abs(power - exact) / np.maximum(np.abs(exact), 1e-300)
    return {"exact": t_exact, "power": t_power, "rounds": rounds, "max_rel": float(rel.max())}


def main(argv: list[str] | None = None) -> int:
    """Print one table row per cell and batch size."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=_ints, default=[1, 4], help="comma-separated batch sizes (default 1,4)")
    p.add_argument("--cells", default="rnn,lstm,gru")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tol", type=float, default=1e-5, help="the power method's tol (default, as jacobian_norms)")
    p.add_argument("--quick", action="store_true", help="H = 16, T = 8, one repeat")
    args = p.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        print(f"bench_jacobian.py: unknown cell {bad or args.cells!r}; choose from {', '.join(CELLS)}", file=sys.stderr)
        return 2
    if args.quick:
        args.hidden, args.steps, args.repeats = 16, 8, 1
    if min(args.hidden, args.steps, args.repeats) < 1 or not 0 < args.tol < 1:
        print("bench_jacobian.py: --hidden, --steps, --repeats must be >= 1 and --tol in (0, 1)", file=sys.stderr)
        return 2
    print(
        f"jacobian_norms exact vs power, H = {args.hidden}, T = {args.steps}, float64, tol = {args.tol:g}, "
        f"{args.repeats} repeats, wall s (median [min-max]), BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}"
    )
    print("| cell | B | exact s | power s | speed-up | rounds | max rel diff |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for kind in cells:
        for B in args.batch:
            r = bench(kind, args.hidden, args.steps, B, args.repeats, args.tol)
            me, mp = np.median(r["exact"]), np.median(r["power"])
            worst = max(worst, r["max_rel"])
            spans = [f"{np.median(ts):.3f} [{min(ts):.3f}-{max(ts):.3f}]" for ts in (r["exact"], r["power"])]
            print(
                f"| {kind} | {B} | {spans[0]} | {spans[1]} | {me / mp:.1f}x | {r['rounds']} | {r['max_rel']:.1e} |",
                flush=True,
            )
    print(f"largest relative difference over all rows: {worst:.1e}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
