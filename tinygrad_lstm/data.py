"""Small built-in sequence tasks (generated, no download), time-major like the recurrent layers: (T, B, F)."""

from __future__ import annotations

import numpy as np

from .tensor import get_default_dtype, get_rng


def _check(n: int, T: int, fn: str, min_T: int = 1) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{fn}: n must be a positive int, got {n!r}")
    if not isinstance(T, (int, np.integer)) or T < min_T:
        raise ValueError(f"{fn}: T must be an int >= {min_T}, got {T!r}")


def sine_waves(
    n: int, T: int, noise: float = 0.0, rng: np.random.Generator | None = None, dtype: object = None
) -> tuple[np.ndarray, np.ndarray]:
    """Next-step forecasting of sines with random frequency, phase and amplitude.

    Returns ``x`` (T, n, 1), the wave (plus Gaussian ``noise``) at steps 0..T-1, and ``y`` (T, n, 1), the clean
    wave at steps 1..T: the target at every step is the next value.
    """
    _check(n, T, "sine_waves")
    rng = rng if rng is not None else get_rng()
    freq = rng.uniform(0.05, 0.2, size=(1, n, 1))  # cycles per step: 5 to 20 steps per period
    phase = rng.uniform(0, 2 * np.pi, size=(1, n, 1))
    amp = rng.uniform(0.5, 1.0, size=(1, n, 1))
    t = np.arange(T + 1, dtype=np.float64).reshape(-1, 1, 1)
    wave = amp * np.sin(2 * np.pi * freq * t + phase)
    x = wave[:-1] + noise * rng.standard_normal((T, n, 1))
    dt = np.dtype(dtype) if dtype is not None else get_default_dtype()
    return x.astype(dt), wave[1:].astype(dt)


def adding_problem(
    n: int, T: int, rng: np.random.Generator | None = None, dtype: object = None
) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997): remember two marked numbers over T steps, add them.

    Returns ``x`` (T, n, 2): channel 0 holds uniform [0, 1) values, channel 1 marks exactly two steps (one in
    each half of the sequence) with 1; and ``y`` (n, 1): the sum of the two marked values.
    """
    _check(n, T, "adding_problem", min_T=2)
    rng = rng if rng is not None else get_rng()
    values = rng.random((T, n))
    marks = np.zeros((T, n))
    half = T // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, T, size=n)
    cols = np.arange(n)
    marks[first, cols] = 1.0
    marks[second, cols] = 1.0
    dt = np.dtype(dtype) if dtype is not None else get_default_dtype()
    x = np.stack([values, marks], axis=-1).astype(dt)
    y = (values[first, cols] + values[second, cols]).reshape(n, 1).astype(dt)
    return x, y
