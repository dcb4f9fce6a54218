"""tinygrad_lstm: a small reverse-mode autodiff engine on numpy for studying backpropagation through time."""

from . import memory, threads
from .func import jvp, vjp
from .gradcheck import GradcheckError, gradcheck
from .io import load, save
from .tensor import (
    AnomalyError,
    Tensor,
    backward,
    cat,
    default_dtype,
    detect_anomaly,
    enable_grad,
    fork_rng,
    get_default_dtype,
    get_rng,
    is_grad_enabled,
    manual_seed,
    maximum,
    minimum,
    no_grad,
    scope,
    set_default_dtype,
    stack,
    unbroadcast,
    where,
)
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

# Keep the memory each freed graph leaves behind for the next step, instead of page-faulting it back in (see
# memory.py; TINYGRAD_LSTM_MALLOC=system opts out).
memory.apply_default()
# One BLAS thread unless the environment chose (see threads.py: thread hand-offs cost more than they save at these
# matrix sizes, and far more on a busy machine; TINYGRAD_LSTM_NUM_THREADS=N or =blas overrides).
threads.apply_default()

__all__ = [
    "AnomalyError",
    "GradcheckError",
    "Tensor",
    "backward",
    "cat",
    "default_dtype",
    "detect_anomaly",
    "enable_grad",
    "fork_rng",
    "get_default_dtype",
    "get_num_threads",
    "get_rng",
    "gradcheck",
    "is_grad_enabled",
    "jvp",
    "load",
    "manual_seed",
    "maximum",
    "minimum",
    "no_grad",
    "save",
    "scope",
    "set_default_dtype",
    "set_num_threads",
    "stack",
    "unbroadcast",
    "vjp",
    "where",
]


def __getattr__(name: str):
    """``tinygrad_lstm.nn`` and ``tinygrad_lstm.optim`` without importing them eagerly (PEP 562)."""
    if name in ("nn", "optim"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
