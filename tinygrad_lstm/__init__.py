"""tinygrad_lstm: a small reverse-mode autodiff engine on numpy for studying backpropagation through time."""

from .gradcheck import GradcheckError, gradcheck
from .tensor import (
    AnomalyError,
    Tensor,
    cat,
    default_dtype,
    detect_anomaly,
    enable_grad,
    get_default_dtype,
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

__version__ = "0.1.0"

__all__ = [
    "AnomalyError",
    "GradcheckError",
    "Tensor",
    "cat",
    "default_dtype",
    "detect_anomaly",
    "enable_grad",
    "get_default_dtype",
    "gradcheck",
    "manual_seed",
    "maximum",
    "minimum",
    "no_grad",
    "scope",
    "set_default_dtype",
    "stack",
    "unbroadcast",
    "where",
]
