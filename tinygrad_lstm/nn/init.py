"""Parameter initializers with PyTorch's names, fan and gain rules.

Each function fills ``t.data`` in place (same array, same dtype) and returns ``t``. Random draws come from
``tinygrad_lstm.tensor.get_rng()``, so ``manual_seed`` makes them reproducible. No graph is recorded.
"""

from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor, get_rng

_LINEAR_LIKE = (
    "linear",
    "identity",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)


def _check(t: Tensor, fn: str) -> np.ndarray:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: expected a Tensor, got {type(t).__name__}")
    if t.dtype.kind != "f":
        raise TypeError(f"{fn}: can only fill floating tensors, got dtype {t.dtype}")
    return t.data


def _fill(t: Tensor, values: np.ndarray) -> Tensor:
    """Write ``values`` into the tensor's own array, keeping its dtype (views of it see the change)."""
    if t.data.flags.writeable:
        t.data[...] = values
    else:  # e.g. a broadcast view: replace the array instead
        t.data = np.array(np.broadcast_to(values, t.shape), dtype=t.dtype)
    t._version += 1
    return t


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table).

    linear/conv/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2/(1+slope^2)) (slope 0.01 by default),
    selu 3/4.
    """
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(t: Tensor, fn: str = "init") -> tuple[int, int]:
    """fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field (receptive = prod(shape[2:]))."""
    if t.ndim < 2:
        raise ValueError(f"{fn}: fan in and fan out need a tensor with at least 2 dimensions, got shape {t.shape}")
    receptive = int(np.prod(t.shape[2:])) if t.ndim > 2 else 1
    return t.shape[1] * receptive, t.shape[0] * receptive


def _fan(t: Tensor, mode: str, fn: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{fn}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t, fn)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with samples from U(a, b)."""
    _check(t, "uniform_")
    if a > b:
        raise ValueError(f"uniform_: need a <= b, got a={a}, b={b}")
    return _fill(t, get_rng().uniform(a, b, t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with samples from N(mean, std^2)."""
    _check(t, "normal_")
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std}")
    return _fill(t, get_rng().normal(mean, std, t.shape))


def constant_(t: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    _check(t, "constant_")
    return _fill(t, np.asarray(val))


def zeros_(t: Tensor) -> Tensor:
    """Fill with zeros."""
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    """Fill with ones."""
    return constant_(t, 1.0)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    _check(t, "xavier_uniform_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t, "xavier_uniform_")
    if fan_in + fan_out == 0:
        return t
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _fill(t, get_rng().uniform(-bound, bound, t.shape))


def xavier_normal_(t: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    _check(t, "xavier_normal_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t, "xavier_normal_")
    if fan_in + fan_out == 0:
        return t
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _fill(t, get_rng().normal(0.0, std, t.shape))


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """He uniform: U(-b, b) with b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a)."""
    _check(t, "kaiming_uniform_")
    if t.data.size == 0:  # nothing to fill (PyTorch warns and returns too)
        return t
    fan = _fan(t, mode, "kaiming_uniform_")
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return _fill(t, get_rng().uniform(-bound, bound, t.shape))


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """He normal: N(0, std^2) with std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a)."""
    _check(t, "kaiming_normal_")
    if t.data.size == 0:
        return t
    fan = _fan(t, mode, "kaiming_normal_")
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return _fill(t, get_rng().normal(0.0, std, t.shape))


def orthogonal_(t: Tensor, gain: float = 1.0) -> Tensor:
    """A (semi-)orthogonal matrix scaled by ``gain``; >2-D tensors are flattened to (shape[0], rest).

    QR of a Gaussian matrix with the signs of R's diagonal folded into Q, so Q is uniformly distributed.
    """
    _check(t, "orthogonal_")
    if t.ndim < 2:
        raise ValueError(f"orthogonal_: need a tensor with at least 2 dimensions, got shape {t.shape}")
    if t.data.size == 0:
        return t
    rows = t.shape[0]
    cols = t.data.size // rows
    flat = get_rng().standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    d = np.sign(np.diag(r))
    d[d == 0] = 1.0
    q = q * d
    if rows < cols:
        q = q.T
    return _fill(t, gain * q.reshape(t.shape))
