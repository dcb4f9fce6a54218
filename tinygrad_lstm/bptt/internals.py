"""The BPTT-internals studies on the adding task: per-step weight gradients, the flow matrix, what truncation
costs, checkpointed BPTT's memory, and the gradient methods without BPTT (``study_methods``, in
``methods_study``). Each returns its numbers, a printable table and (if asked) its figure; the ``bptt --study``
command and ``examples/bptt_internals.py`` run them.

The models are fresh (seeded, untrained) one-layer RNN/LSTM/GRU layers with a Linear head on every step, in
float64. The weights study uses the adding task's own loss, on the last step; the flow and truncation studies
need a loss at every step and use the running version of the task: at step t, the sum of the marked numbers
seen so far.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import nn
from ..tensor import Tensor, default_dtype, fork_rng
from .flow import flow_matrix, plot_flow_matrix
from .memory_study import format_memory_table, measure_bptt_memory, plot_memory
from .methods_study import study_methods  # noqa: F401  (re-exported: every study is reached from here)
from .param_grads import plot_param_grads
from .recording import CELL_KINDS, record
from .truncation import plot_truncation_bias, truncation_bias

STUDIES = {
    "weights": (
        "which steps W_hh learns from: the norm of each step's term of dL/dW_hh",
        "(Recording.param_grads); adding task, loss on the last step",
    ),
    "flow": (
        "the flow matrix ||dL_t/dh_s|| for every pair of steps (bptt.flow_matrix):",
        "the diagonal and the vanishing band below it; running adding task",
    ),
    "truncation": (
        "cosine and relative error of tbptt's gradient to full BPTT's for each",
        "window k (bptt.truncation_bias); running adding task",
    ),
    "memory": (
        "peak traced memory and CPU time of full vs checkpointed BPTT",
        "(bptt.checkpoint_bptt) against T; an LSTM on random sequences",
    ),
    "methods": (
        "cosine to BPTT, time and peak memory of tbptt, RTRL, UORO and SnAp-1",
        "(bptt.compare_gradient_methods) against T; running adding task",
    ),
}

Variant = tuple[str, str, "float | None"]  # (label, cell kind, LSTM forget-gate bias or None)


class StepHead(nn.Module):
    """A recurrent layer with a Linear head on every step: ``model(x, state) -> (head(out), state)``."""

    def __init__(self, kind: str, hidden: int, forget_bias: float | None = None) -> None:
        if kind not in CELL_KINDS:
            raise ValueError(f"bptt: unknown cell {kind!r} (choose from {', '.join(CELL_KINDS)})")
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](2, hidden)
        self.head = nn.Linear(hidden, 1)
        if forget_bias is not None and kind == "lstm":
            # Gate order (i, f, g, o): rows H..2H of the two bias vectors, which add up, are the forget gate's.
            self.rnn.bias_ih_l0.data[hidden : 2 * hidden] = forget_bias
            self.rnn.bias_hh_l0.data[hidden : 2 * hidden] = 0.0

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        out, state = self.rnn(x, state)
        return self.head(out), state


def variants_from(cells: Sequence[str], forget_bias: float | None) -> list[Variant]:
    """``--cells`` and ``--forget-bias`` as study variants: one per cell, the LSTM with the given bias."""
    cells = [c.strip().lower() for c in cells if c.strip()]
    if not cells:
        raise ValueError("bptt: give at least one cell (rnn, lstm, gru)")
    bad = [c for c in cells if c not in CELL_KINDS]
    if bad:
        raise ValueError(f"bptt: unknown cell(s) {bad} (choose from {', '.join(CELL_KINDS)})")
    out: list[Variant] = []
    for c in cells:
        fb = forget_bias if c == "lstm" else None
        out.append((c.upper() + (f" (forget bias {fb:g})" if fb is not None else ""), c, fb))
    return out


def running_adding_task(steps: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Adding-task inputs (T, B, 2) and, at every step, the sum of the marked values so far (T, B, 1)."""
    from ..data import adding_problem

    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"bptt: the adding task needs steps >= 2, got {steps!r}")
    x, _ = adding_problem(batch, steps, rng=np.random.default_rng(seed), dtype=np.float64)
    return x, np.cumsum(x[..., :1] * x[..., 1:], axis=0)


def _model(variant: Variant, hidden: int, seed: int) -> StepHead:
    with default_dtype(np.float64), fork_rng(seed):  # every variant gets the same seed, and the caller's stream stays
        return StepHead(variant[1], hidden, variant[2])


def _mse_sum(out: Tensor, y: Tensor) -> Tensor:
    """Squared error summed over steps, averaged over the batch: a sum over t, so chunks add up to the whole."""
    d = out - y
    return (d * d).sum() / float(out.shape[-2])


def _check(**values: Any) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"bptt: {name} must be a positive int, got {v!r}")


def study_weights(
    variants: Sequence[Variant], steps: int = 100, hidden: int = 32, batch: int = 16, seed: int = 0, path: Any = None
) -> dict[str, Any]:
    """Per-step terms of dL/dW_hh on the adding task (loss on the last step): their norms per variant, a table
    (the norm at t = 1, T/2 and T-1; at t = 0 the term is g^T h_{-1} = 0; and how many of the latest steps hold
    90% of the terms' total norm), a figure."""
    _check(steps=steps, hidden=hidden, batch=batch)
    x, y = running_adding_task(steps, batch, seed)
    target = Tensor(y[-1])
    norms = {}
    for v in variants:
        model = _model(v, hidden, seed)
        with record() as rec:
            out, _ = model(Tensor(x))
            d = out[-1] - target
            ((d * d).mean()).backward()
        norms[v[0]] = rec.param_grad_norms("weight_hh_l0")
    w = max(8, *(len(k) for k in norms))
    head = f"{'cell':<{w}} {'t=1':>10} {'t=T/2':>10} {'t=T-1':>10} {'steps for 90%':>14}"
    rows = [head, "-" * len(head)]
    for label, n in norms.items():
        share = np.cumsum(n[::-1]) / n.sum() if n.sum() > 0 else np.ones_like(n)
        k90 = int(np.searchsorted(share, 0.9) + 1)
        rows.append(f"{label:<{w}} {n[min(1, len(n) - 1)]:>10.2e} {n[len(n) // 2]:>10.2e} {n[-1]:>10.2e} {k90:>14d}")
    fig = plot_param_grads(
        {f"{k}: W_hh": n for k, n in norms.items()},
        path,
        title=f"adding task, T={steps}, H={hidden}, B={batch}, at initialization; loss on the last step",
    )
    return {"norms": norms, "table": "\n".join(rows), "figure": fig}


def study_flow(
    variants: Sequence[Variant], steps: int = 60, hidden: int = 32, batch: int = 16, seed: int = 0, path: Any = None
) -> dict[str, Any]:
    """Flow matrices on the running adding task, a table (mean flow at lag 0, 10 and T/2, relative to lag 0), a
    figure."""
    _check(steps=steps, hidden=hidden, batch=batch)
    x, y = running_adding_task(steps, batch, seed)
    mats = {v[0]: flow_matrix(_model(v, hidden, seed), x, y, _mse_sum) for v in variants}
    lags = sorted({0, min(10, steps - 1), steps // 2})
    w = max(8, *(len(k) for k in mats))
    head = f"{'cell':<{w}} " + " ".join(f"{'lag ' + str(k):>11}" for k in lags) + f" {'lag T/2 / lag 0':>16}"
    rows = [head, "-" * len(head)]
    for label, M in mats.items():
        prof = [float(np.mean(np.diagonal(M, -k))) for k in lags]
        ratio = prof[-1] / prof[0] if prof[0] > 0 else float("nan")
        rows.append(f"{label:<{w}} " + " ".join(f"{p:>11.2e}" for p in prof) + f" {ratio:>16.2e}")
    fig = plot_flow_matrix(mats, path, title=f"running adding task, T={steps}, H={hidden}, B={batch}, at init")
    return {"matrices": mats, "table": "\n".join(rows), "figure": fig}


def study_truncation(
    variants: Sequence[Variant],
    steps: int = 100,
    hidden: int = 32,
    batch: int = 16,
    seed: int = 0,
    ks: Sequence[int] | None = None,
    path: Any = None,
) -> dict[str, Any]:
    """``truncation_bias`` per variant on the running adding task, a table of the cosine per window, a figure."""
    _check(steps=steps, hidden=hidden, batch=batch)
    x, y = running_adding_task(steps, batch, seed)
    if ks is None:
        ks = sorted({k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500) if k < steps} | {steps})
    results = {v[0]: truncation_bias(_model(v, hidden, seed), x, y, _mse_sum, ks) for v in variants}
    w = max(8, *(len(k) for k in results))
    head = f"{'cosine':<{w}} " + " ".join(f"{'k=' + str(k):>8}" for k in ks)
    rows = [head, "-" * len(head)]
    for label, res in results.items():
        rows.append(f"{label:<{w}} " + " ".join(f"{res[k]['cosine']:>8.4f}" for k in ks))
    fig = plot_truncation_bias(results, path, T=steps, title=f"running adding task, T={steps}, H={hidden}, at init")
    return {"results": results, "table": "\n".join(rows), "figure": fig}


def study_memory(
    lengths: Sequence[int] = (100, 200, 400, 800),
    hidden: int = 128,
    batch: int = 16,
    repeats: int = 3,
    seed: int = 0,
    path: Any = None,
    progress: Any = None,
) -> dict[str, Any]:
    """``measure_bptt_memory`` for an LSTM over ``lengths``: the rows, a markdown table and a figure."""
    _check(hidden=hidden, batch=batch, repeats=repeats)
    rows = measure_bptt_memory(lengths, hidden=hidden, batch=batch, repeats=repeats, seed=seed, progress=progress)
    fig = plot_memory(rows, path, title=f"LSTM, B={batch}, H={hidden}, float32, about sqrt(T) segments")
    return {"rows": rows, "table": format_memory_table(rows), "figure": fig}


def default_path(study: str, out: str | os.PathLike | None) -> str | os.PathLike:
    """``--out`` or ``bptt_<study>.png``."""
    return out if out is not None else f"bptt_{study}.png"
