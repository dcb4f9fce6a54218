"""Memory policy: keep the memory a freed graph leaves behind, so the next step can reuse it (glibc only).

An unrolled graph allocates every step's activations afresh and ``backward`` frees them all at once. With glibc's
default policy that freed memory goes straight back to the OS (the heap top is trimmed above 128 KiB, and blocks
from 128 KiB up are separate mmaps), so the next training step page-faults its whole graph in again. On the
medium LSTM benchmark (B=32, T=50, H=128) that was about 7,000 page faults and 41 ms per training step instead of
26 ms; at H=512, 98,000 faults and 960 ms instead of 750 ms.

So, on import, tinygrad_lstm asks glibc (``mallopt``) to keep up to 1 GiB of freed heap and to serve blocks of up
to 32 MiB from the heap. This is a process-wide setting: a process that once held a large graph keeps that memory
(up to 1 GiB) for reuse instead of returning it. Set ``TINYGRAD_LSTM_MALLOC=system`` in the environment before
the import to leave malloc as it is. Elsewhere (macOS, Windows, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ENV_VAR = "TINYGRAD_LSTM_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
_MMAP_MAX = 32 << 20  # glibc refuses a larger mmap threshold on 64-bit systems
_policy = "system malloc settings (not changed)"


def keep_freed_memory(trim_threshold: int = 1 << 30, mmap_threshold: int = _MMAP_MAX) -> bool:
    """Ask glibc to keep up to ``trim_threshold`` bytes of freed heap and to mmap only blocks over
    ``mmap_threshold`` bytes (glibc caps this at 32 MiB). Returns False where there is no glibc ``mallopt``."""
    global _policy
    if trim_threshold < 0 or not 0 <= mmap_threshold <= _MMAP_MAX:
        raise ValueError(
            f"keep_freed_memory: need trim_threshold >= 0 and 0 <= mmap_threshold <= 32 MiB, "
            f"got {trim_threshold} and {mmap_threshold}"
        )
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
        ok = ok and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    except (OSError, AttributeError):
        return False
    if ok:
        _policy = (
            f"glibc keeps freed memory (trim threshold {trim_threshold >> 20} MiB, "
            f"mmap threshold {mmap_threshold >> 20} MiB)"
        )
    return ok


def policy() -> str:
    """What this process's malloc was told, in words (for benchmark headers and bug reports)."""
    return _policy


def apply_default() -> None:
    """The import-time default: keep freed memory, unless ``TINYGRAD_LSTM_MALLOC=system``."""
    global _policy
    choice = os.environ.get(ENV_VAR, "keep").strip().lower()
    if choice == "system":
        _policy = f"system malloc settings ({ENV_VAR}=system)"
    elif choice == "keep":
        keep_freed_memory()
    else:
        raise ValueError(f"{ENV_VAR} must be 'keep' (the default) or 'system', got {choice!r}")
