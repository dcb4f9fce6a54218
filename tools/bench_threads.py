"""Benchmark: numpy's BLAS with its default thread count against one thread, on an idle and on a loaded machine.

Workloads, each one training step (forward, backward; the char-LSTM step also clips and steps Adam), float32:

* ``cell B,T,I,H``: the LSTMCell loop of ``tools/bench_lstm.py`` at its sizes (a Linear head on every step, MSE);
* ``char-LSTM``: the default model of ``examples/char_lstm.py`` (Embedding 32, a 2-layer LSTM of 128 units,
  a Linear head, cross-entropy) on 8 streams of 32 steps, with gradient clipping and Adam.

Both thread settings run in the same process, switched with ``tinygrad_lstm.set_num_threads`` before each call,
alternating which goes first, so that a change in load hits both alike. "Loaded" starts one busy-loop Python
process per core (each ends by itself after a bounded time, and is stopped when the measurement ends): what a
user's script meets on a machine that also runs a test suite, a data loader or another job. Wall-clock time,
since that is what the user waits for.

    python tools/bench_threads.py            # the bench_lstm sizes and the char-LSTM step, idle then loaded
    python tools/bench_threads.py --quick    # tiny sizes, a few repeats: a smoke test (used by the test suite)
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

# The BLAS library's own default, read before tinygrad_lstm's import-time policy changes it.
BLAS_DEFAULT = max([int(lib["num_threads"]) for lib in threadpool_info() if lib.get("user_api") == "blas"] or [1])

import tinygrad_lstm as tl  # noqa: E402
from tinygrad_lstm import Tensor, nn, optim  # noqa: E402
from tinygrad_lstm.nn import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_lstm  # noqa: E402

FULL_SIZES = bench_lstm.FULL_SIZES
FULL_REPEATS = (60, 20, 5)
QUICK_SIZES = ((1, 5, 4, 8), (2, 5, 8, 16))
QUICK_REPEATS = (3, 3)


def cell_step(B: int, T: int, I: int, H: int) -> Callable[[], float]:
    """bench_lstm's LSTMCell-loop contestant at one size."""
    return bench_lstm.contestants(*bench_lstm.make_problem(B, T, I, H))["ours LSTMCell loop"]


def char_lstm_step(quick: bool) -> Callable[[], float]:
    """One truncated-BPTT training step of examples/char_lstm.py's default model (vocabulary of 40 characters)."""
    vocab, embed, hidden, batch, steps = (12, 8, 16, 2, 8) if quick else (40, 32, 128, 8, 32)
    with tl.fork_rng(0):
        emb, lstm = nn.Embedding(vocab, embed), nn.LSTM(embed, hidden, num_layers=2, dropout=0.1)
        head = nn.Linear(hidden, vocab)
        text = tl.get_rng().integers(0, vocab, size=(steps + 1, batch))
    params = emb.parameters() + lstm.parameters() + head.parameters()
    opt = optim.Adam(params, lr=3e-3)
    x, y = Tensor(text[:-1]), Tensor(text[1:])

    def step() -> float:
        out, _ = lstm(emb(x))
        loss = F.cross_entropy(head(out).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(params, 0.5)
        opt.step()
        return float(loss.item())

    return step


@contextmanager
def busy_cores(n: int, limit_s: float) -> Iterator[None]:
    """``n`` busy-loop Python processes, each ending by itself after ``limit_s`` seconds at most."""
    code = f"import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        time.sleep(0.3)  # let them reach their loop
        yield
        if any(p.poll() is not None for p in procs):
            print(f"warning: a busy loop ended (after {limit_s:.0f} s) before the measurement: loaded times are low")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def measure(fn: Callable[[], float], repeats: int, settings: tuple[int, ...]) -> dict[int, list[float]]:
    """Milliseconds per call for each thread count; every repeat runs each setting once, rotating the order."""
    for n in settings:  # warm-up (and the memory policy's first allocation) outside the timing
        tl.set_num_threads(n)
        fn()
    times: dict[int, list[float]] = {n: [] for n in settings}
    for r in range(repeats):
        for k in range(len(settings)):
            n = settings[(r + k) % len(settings)]
            tl.set_num_threads(n)
            t0 = time.perf_counter()
            fn()
            times[n].append(1000.0 * (time.perf_counter() - t0))
    return times


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one markdown table (idle and loaded, default threads and one thread)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (a smoke test)")
    ap.add_argument("--load", type=int, default=None, help="busy processes when loaded (default: one per core)")
    ap.add_argument("--no-idle", action="store_true", help="measure the loaded machine only")
    args = ap.parse_args(argv)
    # A plain kill must still stop the busy loops (the finally in busy_cores), not leave them running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = cores if args.load is None else args.load
    if load < 0:
        ap.error(f"--load must be >= 0, got {load}")
    sizes, repeats = (QUICK_SIZES, QUICK_REPEATS) if args.quick else (FULL_SIZES, FULL_REPEATS)
    workloads = [(f"cell {','.join(map(str, s))}", cell_step(*s), r) for s, r in zip(sizes, repeats)]
    workloads.append(("char-LSTM step", char_lstm_step(args.quick), repeats[1]))
    settings = (BLAS_DEFAULT, 1) if BLAS_DEFAULT != 1 else (1,)

    print("# BLAS threads: default vs one, idle vs loaded; wall-clock ms per training step, median [p10-p90]\n")
    print(f"numpy {np.__version__}, BLAS default {BLAS_DEFAULT} thread(s); Python {platform.python_version()}")
    print(f"machine: {platform.machine()}, {cores} usable cores; loaded = {load} busy process(es)")
    print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())}\n")

    results: dict[tuple[str, str], dict[int, list[float]]] = {}
    conditions = ([] if args.no_idle else ["idle"]) + (["loaded"] if load > 0 else [])
    for cond in conditions:
        for name, fn, rep in workloads:
            if cond == "idle":
                results[name, cond] = measure(fn, rep, settings)
            else:
                # Bounded, so the loops end by themselves even if this process is killed outright (SIGKILL).
                with busy_cores(load, limit_s=600.0 if not args.quick else 30.0):
                    results[name, cond] = measure(fn, rep, settings)
    tl.set_num_threads(1)

    def cell(ts: list[float]) -> str:
        p10, p50, p90 = np.percentile(ts, (10, 50, 90))
        return f"{p50:.1f} [{p10:.1f}-{p90:.1f}]"

    head = ["workload", "machine"] + [f"{n} thread(s)" for n in settings]
    if len(settings) == 2:
        head.append(f"{settings[0]} / 1 (median)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (name, cond), times in results.items():
        row = [name, cond] + [cell(times[n]) for n in settings]
        if len(settings) == 2:
            row.append(f"{np.median(times[settings[0]]) / np.median(times[1]):.2f}x")
        print("| " + " | ".join(row) + " |")
    print(f"\nload average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; {tl.threads.policy()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
