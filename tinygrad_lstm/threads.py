"""BLAS threads: how many threads numpy's BLAS may use, and the default tinygrad_lstm sets on import.

The engine's matrices are small to medium (an LSTM step is a few (B, H) x (H, 4H) products). On an idle machine a
second BLAS thread saves little there (up to 11% on the char-LSTM example's step) and at most about a third at
H = 512; on a busy one it costs far more than that: a BLAS worker thread that loses its core to another process
spins and waits, and every product waits for it (1.4-3.5x slower medians, slowest steps up to 18x slower, with a
busy process on each of 2 cores). The README's "Threads" paragraph has the numbers, from ``tools/bench_threads.py``.
One thread's cost is bounded; the other's is not.

So, on import, tinygrad_lstm limits numpy's BLAS to **one thread**, unless the user already chose:

* ``TINYGRAD_LSTM_NUM_THREADS=N`` sets N threads instead; ``TINYGRAD_LSTM_NUM_THREADS=blas`` leaves the BLAS
  library's own default alone;
* ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` or ``BLIS_NUM_THREADS`` set in the
  environment are respected as they are (the BLAS library read them when numpy loaded it).

``set_num_threads(n)`` changes it at any time (through ``threadpoolctl``); it is process-wide, like the BLAS
setting it changes, so it applies to all of the process's numpy code, not only to tinygrad_lstm's. Only BLAS
libraries are limited (not OpenMP runtimes, so a torch imported beside keeps its own threads).
"""

from __future__ import annotations

import os

ENV_VAR = "TINYGRAD_LSTM_NUM_THREADS"
BLAS_ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
DEFAULT_THREADS = 1
_policy = "BLAS threads not changed"


def _blas_libraries(fn: str) -> list[dict]:
    """threadpoolctl's description of every loaded BLAS library; raises if there is none it can control."""
    import numpy  # noqa: F401  (numpy loads its BLAS; threadpoolctl only sees loaded libraries)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # a dependency, but an environment can lack it: say how to fix it rather than crash
        raise RuntimeError(f"{fn}: needs the threadpoolctl package (pip install threadpoolctl)") from None

    libs = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    if not libs:
        raise RuntimeError(
            f"{fn}: numpy's BLAS is not a library threadpoolctl can control (none of OpenBLAS, MKL, BLIS, FlexiBLAS "
            "is loaded), so its thread count cannot be read or set from Python"
        )
    return libs


def get_num_threads() -> int:
    """How many threads numpy's BLAS may use now (the largest count among the loaded BLAS libraries)."""
    return max(int(lib["num_threads"]) for lib in _blas_libraries("get_num_threads"))


def set_num_threads(n: int) -> None:
    """Let numpy's BLAS use ``n`` threads (n >= 1), process-wide, from now on (as ``torch.set_num_threads``).

    One thread is tinygrad_lstm's default (see the module docstring); more can pay off for large matrices
    (hidden sizes in the thousands) on a machine with idle cores.
    """
    global _policy
    import numpy as np

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: n must be an int >= 1, got {n!r}")
    _blas_libraries("set_num_threads")
    from threadpoolctl import threadpool_limits

    # Called as a function, not as a context manager: the limit stays until the next call.
    threadpool_limits(limits=int(n), user_api="blas")
    _policy = f"BLAS limited to {int(n)} thread(s) by set_num_threads"


def policy() -> str:
    """What this process's BLAS threads were told, in words (for benchmark headers and bug reports)."""
    return _policy


def apply_default() -> None:
    """The import-time default: one BLAS thread, unless the environment says otherwise (module docstring)."""
    global _policy
    choice = os.environ.get(ENV_VAR, "").strip().lower()
    if choice == "blas":
        _policy = f"BLAS's own thread default ({ENV_VAR}=blas)"
        return
    if choice:
        if not choice.isdigit() or int(choice) < 1:
            raise ValueError(f"{ENV_VAR} must be a positive integer or 'blas', got {choice!r}")
        n, why = int(choice), f"{ENV_VAR}={choice}"
    else:
        chosen = [v for v in BLAS_ENV_VARS if os.environ.get(v, "").strip()]
        if chosen:
            _policy = f"BLAS threads as the environment set them ({', '.join(f'{v}={os.environ[v]}' for v in chosen)})"
            return
        n, why = DEFAULT_THREADS, "tinygrad_lstm's default"
    try:
        set_num_threads(n)
    except RuntimeError as e:  # no controllable BLAS (e.g. Apple's Accelerate) or no threadpoolctl: say so
        _policy = f"BLAS threads not changed: {e}"
        return
    _policy = f"BLAS limited to {n} thread(s) ({why})"
