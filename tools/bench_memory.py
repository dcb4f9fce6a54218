"""Benchmark memory: peak extra RSS of one forward + backward, and RSS over many training iterations.

Each contestant of ``bench_lstm.py`` (same problem: one LSTM, a Linear head on every step, MSE, float32) runs in
a fresh subprocess, so no contestant inherits another's heap. "Peak extra" is the process's peak resident set
(``ru_maxrss``) during one forward + backward minus its resident set just before (weights and data already
built); the ratio column divides by the numpy baseline's. The flatness run repeats forward + backward + an SGD
step ``--iterations`` times and reports RSS after the first, the middle and the last iteration: a graph freed
after backward leaves RSS flat.

    python tools/bench_memory.py                       # B, T, I, H = 64, 100, 256, 512 (the large size)
    python tools/bench_memory.py --quick               # a tiny size, a few iterations (used by the test suite)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
NAMES = ("numpy BPTT", "numpy op by op", "ours LSTMCell loop", "ours LSTM", "torch LSTMCell loop", "torch nn.LSTM")

_CHILD = r"""
import gc, importlib.util, json, resource, sys
spec = importlib.util.spec_from_file_location("bench_lstm", sys.argv[1])
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
B, T, I, H, iters = (int(v) for v in sys.argv[3].split(","))
fns = bench.contestants(*bench.make_problem(B, T, I, H))
if sys.argv[2] not in fns:
    print(json.dumps(None)); sys.exit(0)
fn = fns[sys.argv[2]]

def rss():  # resident set now, in bytes
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

gc.collect()
before = rss()
fn()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
trace = []
for i in range(iters):
    fn()
    trace.append(rss())
print(json.dumps({"before": before, "peak_extra": peak - before, "trace": trace}))
"""


def run(name: str, size: tuple, iterations: int) -> dict | None:
    """One contestant in a fresh interpreter."""
    arg = ",".join(map(str, (*size, iterations)))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(_HERE / "bench_lstm.py"), name, arg],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Measure every contestant and print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tiny size and 5 iterations (a smoke test)")
    ap.add_argument("--iterations", type=int, default=100, help="training iterations for the flatness run")
    args = ap.parse_args(argv)
    size = (4, 10, 16, 32) if args.quick else (64, 100, 256, 512)
    iters = 5 if args.quick else args.iterations
    rows = {n: r for n in NAMES if (r := run(n, size, iters)) is not None}
    base = rows["numpy BPTT"]["peak_extra"]
    mib = 1 / (1 << 20)
    print(f"# Memory, B, T, I, H = {', '.join(map(str, size))}, float32, {iters} iterations\n")
    print("| contestant | peak extra RSS (MiB) | / numpy BPTT | RSS after 1st / middle / last iteration (MiB) |")
    print("|---|---|---|---|")
    for n, r in rows.items():
        tr = r["trace"]
        flat = " / ".join(f"{tr[i] * mib:.0f}" for i in (0, len(tr) // 2, -1))
        print(f"| {n} | {r['peak_extra'] * mib:.1f} | {r['peak_extra'] / base:.2f}x | {flat} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
