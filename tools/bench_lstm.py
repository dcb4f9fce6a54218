"""Benchmark: one LSTM unrolled over T steps, a Linear head on every step, MSE loss, forward + backward, float32.

Contestants, all computing the same function from the same weights (checked: their losses must agree):

* ``ours LSTMCell loop``: ``tinygrad_lstm.nn.LSTMCell`` called once per step in a Python loop;
* ``ours LSTM``: ``tinygrad_lstm.nn.LSTM`` (one input-projection matmul for all steps);
* ``numpy BPTT``: the hand-written numpy LSTM of ``tools/numpy_lstm_baseline.py``;
* ``numpy op by op``: ``tools/numpy_op_by_op.py``, the engine's own numpy calls for the cell loop with no graph:
  the floor for an engine of separate primitive ops (``cell / op by op`` is what recording and walking cost);
* ``torch LSTMCell loop`` and ``torch nn.LSTM``, when torch is installed.

Every repeat runs each contestant once, in a rotating order, so that a change in machine load hits all of them
alike; the table reports the median over repeats in milliseconds, and ratios. torch gets as many threads as
numpy's BLAS has (``--threads N`` sets both; without it, tinygrad_lstm's import-time default of one BLAS thread
applies, see ``tinygrad_lstm/threads.py``).

    python tools/bench_lstm.py            # the four standard sizes (issue 3's three and issue 10's long one)
    python tools/bench_lstm.py --quick    # tiny sizes, a few repeats: a smoke test (used by the test suite)
    python tools/bench_lstm.py --threads 1 --clock cpu   # steadier on a shared, busy machine

On a machine shared with other jobs, multi-threaded BLAS/OpenMP threads that lose their core spin and wait, which
can inflate one contestant's wall time many times over; compare with ``--threads 1 --clock cpu`` before trusting
a ratio.
"""

from __future__ import annotations

import argparse
import os
import sys

# Thread counts must be fixed before numpy (and its BLAS) is imported.
if "--threads" in sys.argv[:-1]:
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import ctypes
import importlib.util
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tinygrad_lstm import Tensor, memory, stack
from tinygrad_lstm.nn import LSTM, Linear, LSTMCell

_HERE = Path(__file__).resolve().parent
FULL_SIZES = ((1, 20, 8, 16), (32, 50, 64, 128), (64, 100, 256, 512), (8, 1000, 16, 32))  # (B, T, I, H)
FULL_REPEATS = (100, 30, 7, 7)
QUICK_SIZES = ((1, 20, 8, 16), (4, 10, 16, 32))
QUICK_REPEATS = (5, 5)
OUT = 1  # the head predicts one number per step, as the numpy baseline's timing does


def _load_baseline(name: str = "numpy_lstm_baseline"):
    """Import tools/<name>.py by path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, _HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def blas_threads() -> tuple[int, str]:
    """How many threads numpy's BLAS uses, and how we know."""
    for line in Path("/proc/self/maps").read_text().splitlines() if Path("/proc/self/maps").exists() else []:
        path = line.split()[-1]
        if "openblas" in path.lower() and (path.endswith(".so") or ".so." in path):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for sym in ("openblas_get_num_threads64_", "scipy_openblas_get_num_threads64_", "openblas_get_num_threads"):
                fn = getattr(lib, sym, None)
                if fn is not None:
                    fn.restype = ctypes.c_int
                    return int(fn()), f"{sym}() in {Path(path).name}"
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var]), f"${var}"
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return n, "CPU count (BLAS default)"


def make_problem(B: int, T: int, I: int, H: int, seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
    """Weights (PyTorch's default init), input (T, B, I) and target (T, B, OUT), all float32."""
    rng = np.random.default_rng(seed)
    params = _load_baseline().init_params(I, H, OUT, rng, dtype=np.float32)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    target = rng.standard_normal((T, B, OUT)).astype(np.float32)
    return params, x, target


def contestants(params: dict, x: np.ndarray, target: np.ndarray) -> dict[str, Callable[[], float]]:
    """One zero-argument function per contestant: forward, loss, zero the grads, backward; returns the loss."""
    T, _, I = x.shape
    H = params["weight_hh"].shape[1]
    lstm_sd = {k: params[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    head_sd = {"weight": params["head_w"], "bias": params["head_b"]}
    X, TGT = Tensor(x), Tensor(target)

    cell, head_c = LSTMCell(I, H), Linear(H, OUT)
    cell.load_state_dict(lstm_sd)
    head_c.load_state_dict(head_sd)
    cell_params = cell.parameters() + head_c.parameters()

    def ours_cell() -> float:
        hc = None
        hs = []
        for t in range(T):
            hc = cell(X[t], hc)
            hs.append(hc[0])
        loss = ((head_c(stack(hs)) - TGT) ** 2).mean()
        for p in cell_params:
            p.grad = None
        loss.backward()
        return float(loss.item())

    layer, head_l = LSTM(I, H), Linear(H, OUT)
    layer.load_state_dict({k + "_l0": v for k, v in lstm_sd.items()})
    head_l.load_state_dict(head_sd)
    layer_params = layer.parameters() + head_l.parameters()

    def ours_layer() -> float:
        out, _ = layer(X)
        loss = ((head_l(out) - TGT) ** 2).mean()
        for p in layer_params:
            p.grad = None
        loss.backward()
        return float(loss.item())

    nb = _load_baseline()

    def numpy_bptt() -> float:
        loss, _ = nb.forward_backward(params, x, target)
        return loss

    floor = _load_baseline("numpy_op_by_op")

    def numpy_op_by_op() -> float:
        loss, _ = floor.forward_backward(params, x, target)
        return loss

    fns: dict[str, Callable[[], float]] = {
        "ours LSTMCell loop": ours_cell,
        "ours LSTM": ours_layer,
        "numpy BPTT": numpy_bptt,
        "numpy op by op": numpy_op_by_op,
    }
    try:
        import torch
    except ImportError:
        return fns

    tcell, tlstm = torch.nn.LSTMCell(I, H), torch.nn.LSTM(I, H)
    thead_c, thead_l = torch.nn.Linear(H, OUT), torch.nn.Linear(H, OUT)
    with torch.no_grad():
        tcell.load_state_dict({k: torch.from_numpy(v) for k, v in lstm_sd.items()})
        tlstm.load_state_dict({k + "_l0": torch.from_numpy(v) for k, v in lstm_sd.items()})
        for hd in (thead_c, thead_l):
            hd.load_state_dict({k: torch.from_numpy(v) for k, v in head_sd.items()})
    tx, tt = torch.from_numpy(x), torch.from_numpy(target)

    def torch_cell() -> float:
        hc = None
        hs = []
        for t in range(T):
            hc = tcell(tx[t], hc)
            hs.append(hc[0])
        loss = ((thead_c(torch.stack(hs)) - tt) ** 2).mean()
        tcell.zero_grad()
        thead_c.zero_grad()
        loss.backward()
        return float(loss.item())

    def torch_lstm() -> float:
        out, _ = tlstm(tx)
        loss = ((thead_l(out) - tt) ** 2).mean()
        tlstm.zero_grad()
        thead_l.zero_grad()
        loss.backward()
        return float(loss.item())

    fns["torch LSTMCell loop"] = torch_cell
    fns["torch nn.LSTM"] = torch_lstm
    return fns


def measure(fns: dict[str, Callable[[], float]], repeats: int, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Median milliseconds per call; each repeat runs every contestant once, in a rotating order."""
    losses = {name: fn() for name, fn in fns.items()}  # warm-up, and a check that all compute the same thing
    ref = losses["numpy BPTT"]
    for name, loss in losses.items():
        if not abs(loss - ref) <= 1e-4 * max(1.0, abs(ref)):
            raise RuntimeError(f"bench_lstm: {name} gives loss {loss}, the numpy baseline {ref}")
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            t0 = clock()
            fns[name]()
            times[name].append(clock() - t0)
    return {n: 1000.0 * float(np.median(ts)) for n, ts in times.items()}


TARGETS = (  # (numerator, denominator, limit, sizes it applies to (indices into FULL_SIZES), label)
    ("ours LSTMCell loop", "torch LSTMCell loop", 1.0, (0, 1, 2), "LSTMCell loop <= 1.0x torch LSTMCell loop"),
    ("ours LSTMCell loop", "numpy BPTT", 1.15, (1, 2), "LSTMCell loop <= 1.15x numpy baseline"),
    ("ours LSTM", "torch nn.LSTM", 1.5, (1,), "LSTM layer <= 1.5x torch nn.LSTM"),
    ("ours LSTMCell loop", "numpy op by op", 2.5, (0,), "LSTMCell loop <= 2.5x the op-by-op numpy floor"),
    ("ours LSTM", "numpy BPTT", 2.0, (3,), "LSTM layer <= 2.0x numpy baseline (long sequence)"),
)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (a smoke test)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per size (default: 100/30/7, quick: 5)")
    ap.add_argument("--threads", type=int, default=None, help="BLAS and torch threads (default: tinygrad_lstm's, one)")
    ap.add_argument(
        "--sizes",
        nargs="+",
        default=None,
        metavar="B,T,I,H",
        help="only these sizes, e.g. --sizes 1,20,8,16 8,1000,16,32 (default: the four standard ones)",
    )
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time summed over its threads, which a busy "
        "shared machine disturbs far less (with --threads 1 it is the compute time of each contestant)",
    )
    args = ap.parse_args(argv)
    malloc_note = memory.policy()
    sizes, repeats = (QUICK_SIZES, QUICK_REPEATS) if args.quick else (FULL_SIZES, FULL_REPEATS)
    if args.sizes:
        try:
            picked = [tuple(int(v) for v in spec.split(",")) for spec in args.sizes]
        except ValueError:
            picked = []
        if not picked or any(len(p) != 4 or min(p) < 1 for p in picked):
            ap.error(f"--sizes: each size is four positive ints B,T,I,H, got {' '.join(args.sizes)}")
        rep_of = dict(zip(FULL_SIZES, FULL_REPEATS))
        sizes, repeats = tuple(picked), tuple(rep_of.get(p, 10) for p in picked)
    if args.repeats is not None:
        repeats = (args.repeats,) * len(sizes)

    threads, how = blas_threads()
    torch_note = "torch not installed"
    try:
        import torch

        torch.set_num_threads(threads)
        torch_note = f"torch {torch.__version__} with {torch.get_num_threads()} threads"
    except ImportError:
        pass
    print(f"# LSTM fwd+bwd benchmark (float32, Linear head on every step, MSE), median {args.clock}-clock ms\n")
    print(f"numpy {np.__version__}, BLAS threads {threads} ({how}); {torch_note}; Python {platform.python_version()}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {malloc_note}\n")

    rows = []
    for (B, T, I, H), rep in zip(sizes, repeats):
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        ms = measure(contestants(*make_problem(B, T, I, H)), rep, clock)
        rows.append(((B, T, I, H), rep, ms))

    cols = ["ours LSTMCell loop", "ours LSTM", "numpy BPTT", "numpy op by op", "torch LSTMCell loop", "torch nn.LSTM"]
    cols = [c for c in cols if c in rows[0][2]]
    ratios = [
        ("cell / torch cell", "ours LSTMCell loop", "torch LSTMCell loop"),
        ("cell / numpy", "ours LSTMCell loop", "numpy BPTT"),
        ("cell / op by op", "ours LSTMCell loop", "numpy op by op"),
        ("LSTM / nn.LSTM", "ours LSTM", "torch nn.LSTM"),
        ("LSTM / numpy", "ours LSTM", "numpy BPTT"),
    ]
    ratios = [r for r in ratios if r[1] in cols and r[2] in cols]
    header = ["B, T, I, H", "repeats"] + [f"{c} (ms)" for c in cols] + [r[0] for r in ratios]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * (2 + len(cols) + len(ratios)))
    for size, rep, ms in rows:
        cells = [f"{ms[c]:.2f}" for c in cols] + [f"{ms[a] / ms[b]:.2f}x" for _, a, b in ratios]
        print(f"| {', '.join(map(str, size))} | {rep} | " + " | ".join(cells) + " |")

    if not args.quick:
        print("\nTargets:")
        measured = {size: ms for size, _, ms in rows}
        for num, den, limit, which, label in TARGETS:
            for i in which:
                size = FULL_SIZES[i]
                if size not in measured:
                    continue
                ms = measured[size]
                if num in ms and den in ms:
                    ratio = ms[num] / ms[den]
                    verdict = "met" if ratio <= limit else "MISSED"
                    print(f"- {label} at B, T, I, H = {size}: {ratio:.2f}x -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
