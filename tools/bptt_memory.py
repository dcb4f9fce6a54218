"""Peak memory and time of full vs checkpointed BPTT against T (the README's table): ``bptt.measure_bptt_memory``.

One LSTM layer (B=16, H=128, input 8, float32) reads random sequences; the loss is the summed squared error of
every step's output. "full" is one call over the sequence and one ``backward()``; "checkpointed" is
``bptt.checkpoint_bptt`` with about sqrt(T) segments. Peak memory is tracemalloc's peak above the baseline during
one forward + backward: numpy registers its array buffers with tracemalloc (domain ``np.lib.tracemalloc_domain``),
and Python's objects are traced as well; the script first checks that tracemalloc does see numpy's buffers, and
reports which share of the traced memory they are at the end of a full forward pass. Time is this process's CPU
time (default) in separate runs with tracing off.

    python tools/bptt_memory.py                       # T = 250 ... 4000, 3 repeats, one BLAS thread
    python tools/bptt_memory.py --lengths 100,200 --repeats 1 --hidden 32   # a quick look
"""

from __future__ import annotations

import os
import sys

# One BLAS thread, fixed before numpy is imported: on a shared machine a spinning BLAS thread that loses its core
# inflates times many times over.
if "--threads" in sys.argv[:-1] or "OPENBLAS_NUM_THREADS" not in os.environ:
    _n = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1] else "1"
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import argparse
import platform
import tracemalloc
from pathlib import Path

import numpy as np

from tinygrad_lstm import Tensor, nn
from tinygrad_lstm.bptt import format_memory_table, measure_bptt_memory, plot_memory


def check_numpy_is_traced() -> int:
    """Bytes tracemalloc saw for a fresh 8 MB array (raises if it saw none: then the peaks would miss numpy)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        a = np.ones(1 << 20)  # 8 MiB
        seen = tracemalloc.get_traced_memory()[0] - before
        del a
    finally:
        tracemalloc.stop()
    if seen < (1 << 23):
        raise SystemExit(f"tracemalloc saw {seen} bytes for an 8 MiB numpy array: this numpy does not report to it")
    return seen


def numpy_share(T: int, hidden: int, batch: int) -> float:
    """numpy's share of the traced memory held at the end of a full forward pass (before backward)."""
    rng = np.random.default_rng(0)
    model = nn.LSTM(8, hidden)
    X = Tensor(rng.standard_normal((T, batch, 8)).astype(np.float32))
    tracemalloc.start()
    try:
        out, _ = model(X)
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    domain = np.lib.tracemalloc_domain
    total = sum(s.size for s in snap.statistics("filename"))
    ours = sum(s.size for s in snap.filter_traces([tracemalloc.DomainFilter(True, domain)]).statistics("filename"))
    del out
    return ours / total


def main(argv: list[str] | None = None) -> int:
    """Measure, print the machine and the markdown table, write the figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="250,500,1000,2000,4000", help="comma-separated sequence lengths T")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="runs per T and method (the table shows the range)")
    p.add_argument("--segments", type=int, default=None, help="checkpoint segments (default about sqrt(T))")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--threads", default="1", help="BLAS threads (default 1)")
    p.add_argument("--out", type=Path, default=Path("bptt_memory.png"), help="where to write the figure")
    args = p.parse_args(argv)
    try:
        lengths = [int(v) for v in args.lengths.split(",")]
    except ValueError:
        p.error(f"--lengths must be comma-separated integers, got {args.lengths!r}")
    seen = check_numpy_is_traced()
    print(
        f"numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}, {args.clock} clock"
    )
    print(f"tracemalloc sees numpy's buffers: {seen} bytes traced for an 8 MiB array")
    share = numpy_share(min(lengths[-1], 1000), args.hidden, args.batch)
    print(f"numpy's share of the traced memory after a full forward pass: {share:.1%}")
    rows = measure_bptt_memory(
        lengths,
        hidden=args.hidden,
        batch=args.batch,
        segments=args.segments,
        repeats=args.repeats,
        clock=args.clock,
        progress=lambda line: print("measured", line, flush=True),
    )
    print()
    print(format_memory_table(rows))
    path = plot_memory(rows, args.out, title=f"LSTM, B={args.batch}, H={args.hidden}, float32, ~sqrt(T) segments")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
