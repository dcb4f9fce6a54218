"""Time per sequence and peak memory of BPTT, RTRL, UORO and SnAp-1 against T and H (the README's cost table).

The model is an ``nn.RNNCell`` (2 inputs, H units, float64, batch 1 by default) with a loss at every step (the
squared distance of h_t to a random target), the four gradient methods of ``tinygrad_lstm.bptt`` on the same
sequence. What the table should show, and why:

* BPTT keeps every step's graph until the backward pass: memory grows as T (about H numbers per step, times the
  ops of a step), time as T H^2.
* RTRL carries the influence matrix dh_t/dtheta (H x P, P ~ H^2 parameters, so ~H^3 numbers) whatever T is, and
  multiplies it by the step's Jacobian every step: ~H^4 per step, memory constant in T.
* UORO keeps two vectors (H and P entries): memory ~H^2, per step one JVP and one VJP per batch element.
* SnAp-1 keeps one influence entry per parameter (P numbers); its one-step parameter Jacobian comes from the
  engine's forward mode in compressed directions (entries that move disjoint units share one, about
  gates x (I + H) of them), so its step costs about UORO's order, not RTRL's.

Time: ``time.perf_counter`` of one gradient, best of ``--repeats``, tracing off. Memory: ``tracemalloc``'s peak
above the baseline during one more run (numpy registers its array buffers with tracemalloc, and Python objects
are traced too), i.e. every array and graph node the method allocates, not the process's RSS. Cells whose
predicted time (from the per-step cost at the largest T measured for that method and H) exceeds ``--budget``
seconds are not run: their time is that per-step cost times T and their memory is extrapolated (linearly in T
from the two largest measured T; from one, in proportion to T for BPTT and constant for the others), and both are
marked ``~`` (estimated).

    python tools/rtrl_cost.py                 # T = 10 ... 1000, H = 8 ... 128, about three minutes
    python tools/rtrl_cost.py --quick         # a few seconds
"""

from __future__ import annotations

import os
import sys

# One BLAS thread, fixed before numpy is imported: a spinning BLAS thread on a shared machine inflates times.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402  (after the BLAS setting, as tools/bptt_memory.py)
import gc  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

import tinygrad_lstm as tg  # noqa: E402
from tinygrad_lstm import Tensor, bptt, nn  # noqa: E402
from tinygrad_lstm.bptt.forward import _bptt  # noqa: E402  (the reference BPTT through a cell, same contract as rtrl)

METHODS: dict[str, Callable[..., float]] = {
    "bptt": _bptt,
    "rtrl": bptt.rtrl,
    "uoro": lambda *a: bptt.uoro(*a, seed=0),
    "snap1": bptt.snap,
}


def _ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 1, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 1, got {text!r}")
    return sorted(set(vals))


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return v


def _sq(h: Tensor, y: Tensor) -> Tensor:
    d = h - y
    return (d * d).sum()


def problem(H: int, T: int, batch: int, seed: int):
    """A fresh RNN cell of H units and a random sequence of T steps with a target at every step."""
    with tg.fork_rng(seed):
        cell = nn.RNNCell(2, H, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return cell, rng.standard_normal((T, batch, 2)), rng.standard_normal((T, batch, H))


def measure(method: str, H: int, T: int, batch: int, repeats: int, seed: int) -> tuple[float, float]:
    """(seconds, peak MiB) of one gradient by ``method``: best time of ``repeats`` runs, then one traced run."""
    cell, xs, ys = problem(H, T, batch, seed)
    fn = METHODS[method]
    fn(cell, xs[: min(T, 2)], ys[: min(T, 2)], _sq)  # warm-up: first-call costs are not the method's
    best = float("inf")
    for _ in range(repeats):
        for p in cell.parameters():
            p.grad = None
        t0 = time.perf_counter()
        fn(cell, xs, ys, _sq)
        best = min(best, time.perf_counter() - t0)
    for p in cell.parameters():
        p.grad = None
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn(cell, xs, ys, _sq)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return best, peak / 2**20


def run(
    hiddens: list[int],
    lengths: list[int],
    methods: list[str],
    batch: int,
    repeats: int,
    budget: float,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """``cells[(method, H, T)] = (seconds, MiB, estimated)``: measured while the predicted time stays within
    ``budget``, estimated after (see the module's docstring)."""
    cells: dict[tuple[str, int, int], tuple[float, float, bool]] = {}
    for H in hiddens:
        for m in methods:
            done: list[tuple[int, float, float]] = []  # measured (T, seconds, MiB)
            for T in lengths:
                if done and done[-1][1] / done[-1][0] * T > budget:
                    T1, s1, m1 = done[-1]
                    if len(done) > 1:  # memory linear in T through the two largest measured lengths
                        T0, _, m0 = done[-2]
                        mem = m1 + (m1 - m0) / (T1 - T0) * (T - T1)
                    else:  # one point: BPTT's graph grows in proportion to T, the forward methods' state does not
                        mem = m1 * T / T1 if m == "bptt" else m1
                    cells[(m, H, T)] = (s1 / T1 * T, max(mem, m1), True)
                    continue
                if progress is not None:
                    progress(f"{m} H={H} T={T}")
                s, mib = measure(m, H, T, batch, repeats, seed)
                done.append((T, s, mib))
                cells[(m, H, T)] = (s, mib, False)
    return cells


def _fmt(value: float, est: bool, unit: str) -> str:
    text = f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return ("~" if est else "") + text


def format_table(cells: dict, hiddens: list[int], lengths: list[int], methods: list[str]) -> str:
    """A markdown table: a row per (H, T), time per sequence then peak memory per method."""
    head = ["H", "T", *(f"{m} time" for m in methods), *(f"{m} MiB" for m in methods)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for H in hiddens:
        for T in lengths:
            t = [_fmt(cells[(m, H, T)][0], cells[(m, H, T)][2], "s") for m in methods]
            mem = [_fmt(cells[(m, H, T)][1], cells[(m, H, T)][2], "").strip() for m in methods]
            rows.append(f"| {H} | {T} | " + " | ".join(t + mem) + " |")
    return "\n".join(rows)


def verdicts(cells: dict, hiddens: list[int], lengths: list[int], methods: list[str]) -> list[str]:
    """Where each method wins: per H, the T from which RTRL needs less memory than BPTT, and the time ratios."""
    out = []
    T_max = lengths[-1]
    for H in hiddens:
        line = f"H={H}:"
        if "bptt" in methods and "rtrl" in methods:
            less = [T for T in lengths if cells[("rtrl", H, T)][1] < cells[("bptt", H, T)][1]]
            where = f"from T={less[0]}" if less else f"at no T <= {T_max}"
            ratio = cells[("rtrl", H, T_max)][0] / cells[("bptt", H, T_max)][0]
            line += f" RTRL needs less memory than BPTT {where}; RTRL takes {ratio:.3g}x BPTT's time at T={T_max}."
        if "bptt" in methods and "uoro" in methods:
            less = [T for T in lengths if cells[("uoro", H, T)][1] < cells[("bptt", H, T)][1]]
            where = f"from T={less[0]}" if less else f"at no T <= {T_max}"
            ratio = cells[("uoro", H, T_max)][0] / cells[("bptt", H, T_max)][0]
            line += f" UORO needs less memory {where}, at {ratio:.3g}x BPTT's time."
        out.append(line)
    return out


def per_step_growth(cells: dict, hiddens: list[int], lengths: list[int], method: str) -> tuple[float, int] | None:
    """(k, T): time per step ~ H^k between the two largest H, at the largest T measured (not estimated) for both."""
    if len(hiddens) < 2:
        return None
    h0, h1 = hiddens[-2:]
    both = [T for T in lengths if not cells[(method, h0, T)][2] and not cells[(method, h1, T)][2]]
    if not both:
        return None
    T = both[-1]
    t0, t1 = cells[(method, h0, T)][0], cells[(method, h1, T)][0]
    return float(np.log(t1 / t0) / np.log(h1 / h0)), T


def main(argv: list[str] | None = None) -> dict:
    """Measure, print the table and the verdicts, return the cells."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=_ints, default=[8, 16, 32, 64, 128], help="hidden sizes H (default 8,...,128)")
    p.add_argument("--lengths", type=_ints, default=[10, 30, 100, 300, 1000], help="lengths T (default 10,...,1000)")
    p.add_argument("--methods", default="bptt,rtrl,uoro,snap1", help="comma-separated: bptt, rtrl, uoro, snap1")
    p.add_argument("--batch", type=_positive, default=1, help="sequences per gradient (default 1)")
    p.add_argument("--repeats", type=_positive, default=2, help="timed runs per cell, best kept (default 2)")
    p.add_argument("--budget", type=float, default=3.0, help="seconds: longer cells are estimated (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="H = 4, 8; T = 5, 10, 40; a 0.01 s budget")
    args = p.parse_args(argv)
    if args.quick:
        args.hidden, args.lengths, args.repeats, args.budget = [4, 8], [5, 10, 40], 1, 0.01
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        p.error(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}")
    if not (args.budget > 0):
        p.error("--budget must be a positive number of seconds")
    batch, repeats = args.batch, args.repeats
    cells = run(
        args.hidden,
        args.lengths,
        methods,
        batch,
        repeats,
        args.budget,
        args.seed,
        progress=lambda s: print("  measuring", s, file=sys.stderr, flush=True),
    )
    print(
        f"RNNCell (2 inputs, float64), batch {batch}, a loss at every step; time per sequence (best of {repeats}); "
        "memory: tracemalloc peak MiB (numpy buffers and Python objects); ~ = estimated (time: measured per-step "
        f"cost x T; memory: linear in T from the two largest measured T), for cells predicted over {args.budget:g} s"
    )
    print(format_table(cells, args.hidden, args.lengths, methods))
    print()
    for line in verdicts(cells, args.hidden, args.lengths, methods):
        print(line)
    for m in methods:
        growth = per_step_growth(cells, args.hidden, args.lengths, m)
        if growth is not None:
            (k, T), (h0, h1) = growth, args.hidden[-2:]
            print(f"{m}: time per step grows as H^{k:.2f} from H={h0} to H={h1} (T={T})")
    return {"cells": cells, "hidden": args.hidden, "lengths": args.lengths, "methods": methods}


if __name__ == "__main__":
    main()
