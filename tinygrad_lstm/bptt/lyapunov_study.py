"""Lyapunov spectra of RNN, LSTM and GRU cells on the same inputs, and of an LSTM as its forget gates open."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.rnn import GRUCell, LSTMCell, RNNCell
from ..tensor import manual_seed, no_grad
from .spectra import lyapunov_spectrum

CELLS = "cells"
FORGET = "LSTM forget bias"


def _check_positive(value: Any, name: str, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{fn}: {name} must be an int >= 1, got {value!r}")
    return int(value)


def compare_lyapunov(
    hidden_size: int = 32,
    steps: int = 1000,
    *,
    input_size: int = 8,
    forget_biases: Sequence[float] = (0.0, 1.0, 3.0),
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Lyapunov spectra (``lyapunov_spectrum``, all exponents) of fresh float64 cells driven by the same inputs.

    Inputs are standard normal, (steps, 1, input_size). Returns two panels: ``"cells"`` with ``"RNN (tanh)"``,
    ``"LSTM"`` and ``"GRU"`` at PyTorch's initialization (each built after ``manual_seed(seed)``), and
    ``"LSTM forget bias"`` with the same LSTM, its forget-gate bias (``bias_ih``'s f block; ``bias_hh``'s set to
    0) set to each value of ``forget_biases``.
    """
    fn = "compare_lyapunov"
    H = _check_positive(hidden_size, "hidden_size", fn)
    T = _check_positive(steps, "steps", fn)
    n_in = _check_positive(input_size, "input_size", fn)
    biases = list(forget_biases)
    if not biases or not all(isinstance(b, (int, float, np.integer, np.floating)) and np.isfinite(b) for b in biases):
        raise ValueError(f"{fn}: forget_biases must be a non-empty sequence of finite numbers, got {forget_biases!r}")
    xs = np.random.default_rng(seed).standard_normal((T, 1, n_in))
    cells: dict[str, dict[str, np.ndarray]] = {CELLS: {}, FORGET: {}}
    for label, kind in (("RNN (tanh)", RNNCell), ("LSTM", LSTMCell), ("GRU", GRUCell)):
        manual_seed(seed)
        cells[CELLS][label] = lyapunov_spectrum(kind(n_in, H, dtype=np.float64), xs)
    for b in biases:
        manual_seed(seed)
        lstm = LSTMCell(n_in, H, dtype=np.float64)
        with no_grad():
            lstm.bias_ih.data[H : 2 * H] = b  # gate order (i, f, g, o), as PyTorch
            lstm.bias_hh.data[H : 2 * H] = 0.0
            lstm.bias_ih._version += 1
            lstm.bias_hh._version += 1
        cells[FORGET][f"forget bias {b:g}"] = lyapunov_spectrum(lstm, xs)
    return cells


def plot_lyapunov(
    spectra: Mapping[str, Any], path: str | os.PathLike | None = None, *, title: str | None = None
) -> Any:
    """Draw Lyapunov spectra: exponent i against its index, one line per label.

    ``spectra`` maps a label to a spectrum (a 1-D array, descending, as ``lyapunov_spectrum`` returns), drawn in
    one panel, or a panel title to such a mapping (``compare_lyapunov``'s result), one panel each. Returns the
    matplotlib Figure without ``path``; with one, writes it (.png, .svg or .pdf) and returns the path.
    """
    from .figures import check_path, finish, new_figure

    fn = "plot_lyapunov"
    check_path(path, fn)
    if not isinstance(spectra, Mapping) or not spectra:
        raise ValueError(f"{fn}: spectra must be a non-empty mapping label -> spectrum (or panel -> such a mapping)")
    nested = all(isinstance(v, Mapping) for v in spectra.values())
    panels = dict(spectra) if nested else {"": spectra}
    checked: dict[str, dict[str, np.ndarray]] = {}
    for name, group in panels.items():
        if not isinstance(group, Mapping) or not group:
            raise ValueError(f"{fn}: panel {name!r} must be a non-empty mapping label -> spectrum")
        checked[name] = {}
        for label, s in group.items():
            arr = np.asarray(s, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(f"{fn}: the spectrum {label!r} must be a non-empty 1-D array, got shape {arr.shape}")
            checked[name][str(label)] = arr
    fig = new_figure((5.2 * len(checked) + 0.6, 4.4))
    axes = np.atleast_1d(fig.subplots(1, len(checked), sharey=True))
    n = 0  # one colour per line across all panels: a colour never means two things in one figure
    for ax, (name, group) in zip(axes, checked.items()):
        for label, arr in group.items():
            finite = np.where(np.isfinite(arr), arr, np.nan)  # -inf (a direction killed exactly) is not drawn
            ax.plot(
                np.arange(1, arr.size + 1),
                finite,
                marker="o",
                ms=2.5,
                lw=1.6,
                color=f"C{n % 10}",
                label=f"{label}: $\\lambda_1$ = {arr[0]:.3f}, k = {arr.size}",
            )
            n += 1
        ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
        ax.set_xlabel("exponent index i")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        if name:
            ax.set_title(name)
    axes[0].set_ylabel(r"Lyapunov exponent $\lambda_i$ (per step, natural log)")
    fig.suptitle("Lyapunov spectra of the state trajectory" + (f": {title}" if title else ""))
    result = finish(fig, path, fn)
    return Path(result) if path is not None else result
