"""Per-step parameter gradients: BPTT's sum over time, one term per step (``Recording.param_grads``).

A recurrent weight is shared by every step, so its gradient is a sum of one term per step. While ``record()`` is
active, each step uses its own alias of every parameter (a graph node with the parameter's value, see
``nn.rnn._use``) and the recording retains the alias's gradient: that is the step's term, computed by the engine.
A layer's input projection is one node for all steps; the gradient reaching its step-t slice, g_t, gives W_ih's
term g_t^T x_t and the projected biases' term sum_b g_t exactly, with the engine's own gradient g_t.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..nn.rnn import _RNNBase
from .recording import NotRecordedError, _as_batched

_NAME = re.compile(r"^(?:.*\.)?(weight_(?:ih|hh|hr|ci|cf|co)|bias_(?:ih|hh))(?:_l(\d+)(_reverse)?)?$")


def parse_param_name(name: str) -> tuple[str, int | None, int | None]:
    """``"lstm.weight_hh_l1_reverse"`` -> ``("weight_hh", 1, 1)``; ``"weight_ih"`` -> ``("weight_ih", None, None)``."""
    m = _NAME.match(name)
    if m is None:
        raise NotRecordedError(
            f"Recording.param_grads: {name!r} is not a recurrent parameter name (weight_ih, weight_hh, bias_ih, "
            "bias_hh, weight_hr, weight_ci, weight_cf, weight_co, with a layer's _l{k}[_reverse] suffix, optionally "
            "dotted)"
        )
    short, layer, rev = m.group(1), m.group(2), m.group(3)
    if layer is None:
        return short, None, None
    return short, int(layer), 1 if rev else 0


def param_key(short: str, stream: Any) -> str:
    """The name a stream's steps use for a parameter: a layer's carries the ``_l{k}[_reverse]`` suffix."""
    if not isinstance(stream.module, _RNNBase):
        return short  # a bare cell
    return short + f"_l{stream.layer}" + ("_reverse" if stream.direction else "")


def _used_names(steps: list) -> list[str]:
    names: dict[str, None] = {}
    for s in steps:
        names.update(dict.fromkeys(s.params))
        if s.projection is not None:
            names.update(dict.fromkeys((s.projection.weight, *s.projection.biases)))
    return list(names)


def step_terms(stream: Any, steps: list, key: str) -> np.ndarray:
    """The (T, *shape) per-step gradient terms of parameter ``key`` over the selected ``steps`` of ``stream``."""
    fn = "Recording.param_grads"
    used = _used_names(steps)
    if not used:
        raise NotRecordedError(
            f"{fn}: no per-step parameter uses were recorded for {stream.label()}: record with "
            "record(param_grads=True) (the default), with gradients enabled and parameters that require grad"
        )
    if key not in used:
        raise NotRecordedError(f"{fn}: {stream.label()} did not use a parameter {key!r}; it used: {', '.join(used)}")
    terms: list[np.ndarray | None] = []
    shape, dtype, reached = None, None, False
    for s in steps:
        alias = s.params.get(key)
        if alias is not None:
            shape, dtype = alias.shape, alias.dtype
            if not alias.requires_grad:
                raise RuntimeError(f"{fn}: {key!r} of {stream.label()} does not require grad: no gradient flows to it")
            terms.append(None if alias.grad is None else np.array(alias.grad))
            reached = reached or alias.grad is not None
            continue
        proj = s.projection
        if proj is None or key not in (proj.weight, *proj.biases):
            terms.append(None)
            continue
        g = proj.out.grad
        weight = key == proj.weight
        x = proj.x.data[proj.index]  # step t's input: x[t], or its packed rows
        nh = proj.out.shape[-1]
        shape, dtype = ((nh, x.shape[-1]) if weight else (nh,)), proj.out.dtype
        if g is None:
            terms.append(None)
            continue
        reached = True
        g_t = _as_batched(g[proj.index])  # (B, nH), or (rows of step t, nH) for a packed input
        terms.append(g_t.T @ _as_batched(x) if weight else g_t.sum(axis=0))
    if not reached:
        raise RuntimeError(
            f"{fn}: no gradient has reached {key!r} of {stream.label()} yet: call loss.backward() on a loss "
            "computed from the recorded steps first"
        )
    # A step that did not use the parameter (a GRU layer's folded bias, a missing step) contributes zero.
    return np.stack([np.zeros(shape, dtype) if t is None else t.astype(dtype, copy=False) for t in terms])


def plot_param_grads(terms: Mapping[str, np.ndarray], path: str | os.PathLike | None = None, *, title: str = "") -> Any:
    """The norm of every per-step term against t, one curve per entry (a cell, a weight), log scale.

    ``terms`` maps a label to a (T, *shape) array of terms (``Recording.param_grads``) or to (T,) norms
    (``Recording.param_grad_norms``). Returns a matplotlib ``Figure``, or writes it to
    ``path`` atomically (PNG, SVG or PDF, from the suffix) and returns the path.
    """
    from .figures import check_path, finish, new_figure

    check_path(path, "plot_param_grads")

    if not terms:
        raise ValueError("plot_param_grads: terms is empty; give at least one label -> array")
    fig = new_figure((8, 4.8))
    ax = fig.subplots()
    for label, arr in terms.items():
        a = np.asarray(arr, dtype=np.float64)
        if a.ndim == 0:
            raise ValueError(f"plot_param_grads: terms[{label!r}] must be (T, ...) or (T,), got a scalar")
        n = np.sqrt((a * a).reshape(len(a), -1).sum(axis=1)) if a.ndim > 1 else np.abs(a)
        ax.plot(
            np.arange(len(n)), np.where(n > 0, n, np.nan), lw=1.8, marker="." if len(n) <= 40 else None, label=label
        )
    ax.set_yscale("log")
    ax.set_xlabel("time step t of the weight's use")
    ax.set_ylabel(r"$\|$term t of $\partial L/\partial W\|$ (Frobenius)")
    ax.set_title("which steps a shared weight learns from" + (f"\n{title}" if title else ""))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return finish(fig, path, "plot_param_grads")
