"""The BPTT study toolkit: record what flows back through time, measure Jacobians, train with truncation.

Everything here is built on the engine's own graph and VJPs; nothing differentiates by hand.

* ``record()`` observes every RNN/LSTM/GRU step (``nn.rnn.STEP_OBSERVERS``) and returns a ``Recording``: states,
  the gradients that reached them (``dL/dh_t``), gate activations, saturation, forget-gate products, the first
  non-finite gradient, an ``.npz`` dump and a plot.
* ``jacobian_norms`` / ``step_jacobian_norms`` measure the spectral norms of ``dh_T/dh_t`` and ``dh_t/dh_{t-1}``
  exactly, one backward pass per hidden unit.
* ``tbptt`` trains (or just accumulates gradients) with truncated backpropagation through time.
* ``compare_cells`` is the ``python -m tinygrad_lstm bptt`` command: gradient norm through time per cell type.

Time indices: in a ``Recording``, ``t`` is the 0-based step, and ``h_t`` is the state the step at ``t`` produced
(the layer's output at ``t``), as in PyTorch's output tensor. The Jacobian functions number states the
textbook way instead, see their docstrings.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_path
from .nn.module import Module, Parameter
from .optim import clip_grad_norm_
from .tensor import Tensor, default_dtype, fork_rng, get_default_dtype, no_grad

__all__ = [
    "NotRecordedError",
    "Recording",
    "add_cli_arguments",
    "compare_cells",
    "format_table",
    "jacobian_norms",
    "measure_gradient_flow",
    "plot_gradient_flow",
    "record",
    "run_cli",
    "step_jacobian_norms",
    "tbptt",
]

GATE_NAMES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ()}
CELL_KINDS = ("rnn", "lstm", "gru")


class NotRecordedError(KeyError, ValueError):
    """A state, gate, layer, direction or run that the recording does not hold (both a KeyError and a ValueError)."""

    def __str__(self) -> str:
        # KeyError would print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


# ------------------------------------------------------------------------------------------------ recording


class _Step:
    """One observed step: the state tensors (kept, so their retained ``.grad`` can be read) and gate arrays."""

    __slots__ = ("c", "gates", "h", "seq", "t")

    def __init__(self, t: int, seq: int, h: Tensor, c: Tensor | None, gates: dict[str, np.ndarray]) -> None:
        self.t, self.seq, self.h, self.c, self.gates = t, seq, h, c, gates


class _Stream:
    """The steps of one (module, layer, direction); a step whose ``t`` is already present starts a new run."""

    def __init__(self, module: Any, kind: str, layer: int, direction: int) -> None:
        self.module, self.kind, self.layer, self.direction = module, kind, layer, direction
        self.runs: list[dict[int, _Step]] = []
        self.calls = 0  # bare cells publish t=None: their steps are numbered in call order

    def label(self) -> str:
        name = getattr(self.module, "_scope_name", None) or ""
        who = type(self.module).__name__ + (f" {name!r}" if name else "")
        lengths = ",".join(str(len(r)) for r in self.runs)
        return f"layer={self.layer} direction={self.direction} ({who}, {self.kind}, steps per run: {lengths})"


def _as_batched(a: np.ndarray) -> np.ndarray:
    """(H,) unbatched states count as a batch of one, so every array is (T, B, H)."""
    return a.reshape(1, -1) if a.ndim == 1 else a


class Recording:
    """What ``record()`` kept: per (layer, direction) the states, their gradients and the gate activations.

    Every query takes ``layer``, ``direction`` and, when several modules published the same (layer, direction)
    (two separate LSTMs, or a bare cell beside a layer), ``module=`` to pick one. A module run several times
    inside one recording (several forward passes, TBPTT chunks) has several *runs*: ``run=-1`` (default) is the
    latest, ``run=i`` the i-th, ``run=None`` all runs concatenated along time. A bare cell numbers its calls
    0, 1, 2, ... and so forms one run. Arrays are (T, B, H); an unbatched (H,) state counts as B = 1.
    """

    def __init__(self) -> None:
        self._streams: dict[tuple[int, int, int], _Stream] = {}
        self._seq = 0

    # -- the observer
    def __call__(self, rec: Any) -> None:
        """Keep one ``StepRecord`` (called by the recurrent layers through ``STEP_OBSERVERS``)."""
        key = (id(rec.module), int(rec.layer), int(rec.direction))
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(rec.module, rec.kind, int(rec.layer), int(rec.direction))
        if rec.t is None:
            t = stream.calls
            stream.calls += 1
        else:
            t = int(rec.t)
        if not stream.runs or t in stream.runs[-1]:
            stream.runs.append({})
        for s in (rec.h, rec.c):
            # retain_grad keeps dL/dh_t on the intermediate tensor; without grad (no_grad, frozen) nothing flows.
            if s is not None and s.requires_grad:
                s.retain_grad()
        gates = {k: _as_batched(v.data) for k, v in (rec.gates or {}).items()}
        stream.runs[-1][t] = _Step(t, self._seq, rec.h, rec.c, gates)
        self._seq += 1

    # -- selection
    def _available(self) -> str:
        return "; ".join(s.label() for s in self._streams.values()) or "nothing"

    def _stream(self, layer: int, direction: int, module: Any) -> _Stream:
        if not self._streams:
            raise NotRecordedError(
                "Recording: nothing was recorded (run an RNN/LSTM/GRU cell or layer inside `with record():`)"
            )
        found = [
            s
            for s in self._streams.values()
            if s.layer == layer and s.direction == direction and (module is None or s.module is module)
        ]
        if not found:
            what = f"layer={layer} direction={direction}" + ("" if module is None else f" of {type(module).__name__}")
            raise NotRecordedError(f"Recording: no steps recorded for {what}; recorded: {self._available()}")
        if len(found) > 1:
            raise ValueError(
                f"Recording: {len(found)} modules recorded layer={layer} direction={direction}; pass module= to "
                f"pick one: {'; '.join(s.label() for s in found)}"
            )
        return found[0]

    def _steps(self, layer: int, direction: int, module: Any, run: int | None) -> tuple[_Stream, list[_Step]]:
        stream = self._stream(layer, direction, module)
        if run is None:
            runs = stream.runs
        else:
            if not -len(stream.runs) <= run < len(stream.runs):
                raise NotRecordedError(
                    f"Recording: run {run} does not exist: {len(stream.runs)} run(s) recorded for {stream.label()}"
                )
            runs = [stream.runs[run]]
        return stream, [r[t] for r in runs for t in sorted(r)]

    @staticmethod
    def _check_name(stream: _Stream, name: str) -> None:
        names = ("h", "c") if stream.kind == "lstm" else ("h",)
        if name not in names:
            raise NotRecordedError(f"Recording: no state {name!r} for {stream.label()}; recorded states: {names}")

    @staticmethod
    def _stack(arrays: list[np.ndarray], what: str) -> np.ndarray:
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(
                f"Recording.{what}: the selected steps have different shapes {sorted(shapes)} "
                "(runs with different batch sizes): select one run with run="
            )
        return np.stack(arrays)

    # -- queries
    def layers(self) -> list[tuple[int, int, str]]:
        """The recorded (layer, direction, kind) triples, in the order they were first seen."""
        return [(s.layer, s.direction, s.kind) for s in self._streams.values()]

    def num_runs(self, layer: int = 0, direction: int = 0, *, module: Any = None) -> int:
        """How many runs (forward passes) of this layer and direction were recorded."""
        return len(self._stream(layer, direction, module).runs)

    def times(self, layer: int = 0, direction: int = 0, *, module: Any = None, run: int | None = -1) -> np.ndarray:
        """The time indices of the selected steps, in the order of the arrays the other queries return."""
        return np.array([s.t for s in self._steps(layer, direction, module, run)[1]], dtype=np.int64)

    def states(
        self, name: str = "h", layer: int = 0, direction: int = 0, *, module: Any = None, run: int | None = -1
    ) -> np.ndarray:
        """The recorded states ``h`` (or ``c`` for an LSTM): (T, B, H), in time order."""
        stream, steps = self._steps(layer, direction, module, run)
        self._check_name(stream, name)
        return self._stack([_as_batched(getattr(s, name).data) for s in steps], "states")

    def grads(
        self, name: str = "h", layer: int = 0, direction: int = 0, *, module: Any = None, run: int | None = -1
    ) -> np.ndarray:
        """dL/dh_t (or dL/dc_t): the whole gradient that reached each state after ``backward``; (T, B, H).

        It includes every path from the loss (the output at t and all later steps). Zeros where nothing flowed
        (e.g. steps after the last one the loss reads). Raises RuntimeError before any backward.
        """
        stream, steps = self._steps(layer, direction, module, run)
        self._check_name(stream, name)
        tensors = [getattr(s, name) for s in steps]
        if not any(x.requires_grad for x in tensors):
            raise RuntimeError(
                f"Recording.grads: the {name!r} states of {stream.label()} do not require grad (recorded under "
                "no_grad(), or neither the inputs nor any parameter require grad): no gradient can reach them"
            )
        if all(x.grad is None for x in tensors):
            raise RuntimeError(
                f"Recording.grads: no gradient has reached the {name!r} states of {stream.label()} yet: call "
                "loss.backward() on a loss computed from the recorded steps first"
            )
        out = [
            _as_batched(x.grad) if x.grad is not None else np.zeros(_as_batched(x.data).shape, x.dtype) for x in tensors
        ]
        return self._stack(out, "grads")

    def grad_norms(
        self, name: str = "h", layer: int = 0, direction: int = 0, *, module: Any = None, run: int | None = -1
    ) -> np.ndarray:
        """||dL/dh_t|| (Frobenius norm over batch and units) for every t: (T,), float64."""
        g = self.grads(name, layer, direction, module=module, run=run).astype(np.float64)
        return np.sqrt((g * g).sum(axis=(1, 2)))

    def gates(
        self, gate: str, layer: int = 0, direction: int = 0, *, module: Any = None, run: int | None = -1
    ) -> np.ndarray:
        """Post-activation gate values (T, B, H): LSTM "i", "f", "g", "o"; GRU "r", "z", "n"."""
        stream, steps = self._steps(layer, direction, module, run)
        names = GATE_NAMES.get(stream.kind, ())
        have = tuple(g for g in names if steps and all(g in s.gates for s in steps))
        if gate not in names or gate not in have:
            raise NotRecordedError(
                f"Recording: no gate {gate!r} for {stream.label()}; recorded gates: {have or 'none'}"
                + ("" if names else f" (a plain {stream.kind.upper()} has no gates)")
            )
        return self._stack([s.gates[gate] for s in steps], "gates")

    def saturation(
        self,
        gate: str,
        low: float = 0.05,
        high: float = 0.95,
        layer: int = 0,
        direction: int = 0,
        *,
        module: Any = None,
        run: int | None = -1,
    ) -> np.ndarray:
        """Fraction of (batch, unit) entries with the gate below ``low`` or above ``high``, per step: (T,).

        For the tanh candidate ("g", "n"), whose range is (-1, 1), pass e.g. ``low=-0.95``.
        """
        if not low < high:
            raise ValueError(f"Recording.saturation: need low < high, got low={low}, high={high}")
        g = self.gates(gate, layer, direction, module=module, run=run)
        return ((g < low) | (g > high)).mean(axis=(1, 2))

    def forget_product(
        self, layer: int = 0, direction: int = 0, *, module: Any = None, run: int | None = -1
    ) -> np.ndarray:
        """How much the cell state's own path scales a gradient from the end back to step t: (T,).

        The LSTM update ``c_t = f_t * c_{t-1} + i_t * g_t`` gives, along the path that only goes through the
        cell states, ``dc_end/dc_t = prod_{s after t} f_s`` (elementwise). For the forward direction that is
        ``P[t] = mean over batch and units of prod_{s=t+1}^{T-1} f_s`` (so ``P[T-1] = 1``); for the reverse
        direction the sequence ends at t = 0, so ``P[t] = mean of prod_{s=0}^{t-1} f_s`` (``P[0] = 1``).
        This is the constant error carousel's factor: the mean is of per-unit products, not a product of means.
        """
        stream = self._stream(layer, direction, module)
        if stream.kind != "lstm":
            raise NotRecordedError(
                f"Recording.forget_product: needs an LSTM's forget gates, but {stream.label()} is a "
                f"{stream.kind.upper()}"
            )
        f = self.gates("f", layer, direction, module=module, run=run).astype(np.float64)
        ones = np.ones_like(f[:1])
        if direction == 0:
            # suffix products, shifted by one: prod_{s>t} f_s
            suffix = np.cumprod(f[::-1], axis=0)[::-1]
            p = np.concatenate([suffix[1:], ones])
        else:
            prefix = np.cumprod(f, axis=0)
            p = np.concatenate([ones, prefix[:-1]])
        return p.mean(axis=(1, 2))

    def first_nonfinite(
        self, layer: int | None = None, direction: int | None = None, *, module: Any = None
    ) -> tuple[int, str] | None:
        """``(t, name)`` of the state whose gradient became NaN/Inf first during backward, or None.

        Backward visits steps in the reverse of the order the forward ran them, so the first step to go bad is
        the bad one that ran *last* (the latest t of a forward direction; the earliest t of a reverse one); at
        one step ``h`` comes before ``c`` because ``h_t`` is computed from ``c_t``. Searches every recorded
        layer, direction and run unless ``layer``/``direction``/``module`` narrow it.
        """
        streams = [
            s
            for s in self._streams.values()
            if (layer is None or s.layer == layer)
            and (direction is None or s.direction == direction)
            and (module is None or s.module is module)
        ]
        if not streams:
            raise NotRecordedError(
                f"Recording.first_nonfinite: no steps recorded for layer={layer} direction={direction}; "
                f"recorded: {self._available()}"
            )
        seen_grad = False
        best: tuple[int, int, int, str] | None = None  # (seq, h-before-c rank, t, name)
        for stream in streams:
            for run in stream.runs:
                for step in run.values():
                    for rank, name in ((1, "h"), (0, "c")):
                        x = getattr(step, name)
                        if x is None or x.grad is None:
                            continue
                        seen_grad = True
                        if not np.isfinite(x.grad).all():
                            cand = (step.seq, rank, step.t, name)
                            if best is None or cand[:2] > best[:2]:
                                best = cand
        if not seen_grad:
            raise RuntimeError(
                "Recording.first_nonfinite: no gradient has reached any recorded state yet: call loss.backward() first"
            )
        return None if best is None else (best[2], best[3])

    # -- output
    def _arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays for ``to_npz`` (strings as unicode arrays: no pickling needed)."""
        out: dict[str, np.ndarray] = {}
        labels, kinds = [], []
        streams = list(self._streams.values())
        for i, s in enumerate(streams):
            # Streams that share a (layer, direction) (a bare cell beside a layer) get an m{i}. prefix.
            dup = sum((o.layer, o.direction) == (s.layer, s.direction) for o in streams) > 1
            base = (f"m{i}." if dup else "") + f"l{s.layer}.d{s.direction}"
            for r in range(len(s.runs)):
                prefix = base + (f".r{r}" if len(s.runs) > 1 else "")
                labels.append(prefix)
                kinds.append(s.kind)
                sel = {"layer": s.layer, "direction": s.direction, "module": s.module, "run": r}
                out[prefix + ".t"] = self.times(**sel)
                for name in ("h", "c") if s.kind == "lstm" else ("h",):
                    out[f"{prefix}.{name}"] = self.states(name, **sel)
                    # No backward yet (or no grad): the states and gates are still worth saving.
                    with suppress(RuntimeError):
                        out[f"{prefix}.{name}_grad"] = self.grads(name, **sel)
                for gate in GATE_NAMES.get(s.kind, ()):
                    with suppress(NotRecordedError):
                        out[f"{prefix}.gate_{gate}"] = self.gates(gate, **sel)
        out["streams"] = np.array(labels, dtype=str)
        out["kinds"] = np.array(kinds, dtype=str)
        return out

    def to_npz(self, path: str | os.PathLike) -> Path:
        """Write every run's states, gradients (if any) and gates to ``path`` atomically; returns the path.

        Keys: ``l{layer}.d{direction}[.r{run}].{h,c,h_grad,c_grad,gate_X,t}``, ``m{i}.`` prefixed when several
        modules share a (layer, direction); ``streams`` and ``kinds`` list them. Loads with allow_pickle=False.
        """
        arrays = self._arrays()
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would add ".npz"
            np.savez(f, **arrays)
        return Path(path)

    def plot(
        self, path: str | os.PathLike, layer: int = 0, direction: int = 0, *, module: Any = None, run: int = -1
    ) -> Path:
        """A PNG: gradient norm vs t (log) for every recorded layer/direction, a units x time heatmap of
        |dL/dh_t| (mean over the batch), gate saturation, and the forget-gate product; returns the path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import LogNorm
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        sel = {"layer": layer, "direction": direction, "module": module, "run": run}
        stream = self._stream(layer, direction, module)
        heat = np.abs(self.grads("h", **sel).astype(np.float64)).mean(axis=1).T  # (H, T)

        fig = Figure(figsize=(13, 8.5), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, 2)
        fig.suptitle(f"BPTT recording: {stream.label()}", fontsize=12)

        ax = axes[0, 0]
        for s in self._streams.values():
            ssel = {"layer": s.layer, "direction": s.direction, "module": s.module, "run": -1}
            for name, style in (("h", "-"), ("c", "--")) if s.kind == "lstm" else (("h", "-"),):
                try:
                    n = self.grad_norms(name, **ssel)
                except RuntimeError:
                    continue
                ax.plot(
                    self.times(**ssel),
                    np.where(n > 0, n, np.nan),
                    style,
                    marker="." if len(n) <= 40 else None,  # short or sparse curves stay visible
                    label=f"{s.kind} L{s.layer} D{s.direction} {name}",
                )
        ax.set_yscale("log")
        ax.set_xlabel("time step t")
        ax.set_ylabel("||dL/d state_t||")
        ax.set_title("gradient norm through time")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)

        ax = axes[0, 1]
        positive = heat[heat > 0]
        if positive.size:
            masked = np.ma.masked_less_equal(heat, 0)  # exact zeros (no gradient) show as the grey background
            ax.set_facecolor("0.85")
            im = ax.imshow(
                masked,
                aspect="auto",
                origin="lower",
                interpolation="nearest",
                cmap="magma",
                norm=LogNorm(vmin=positive.min(), vmax=positive.max()),
                extent=(-0.5, heat.shape[1] - 0.5, -0.5, heat.shape[0] - 0.5),
            )
            fig.colorbar(im, ax=ax, label="|dL/dh_t| (mean over batch; grey: 0)")
        else:
            ax.text(0.5, 0.5, "all gradients are zero", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("time step t")
        ax.set_ylabel("hidden unit")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"|dL/dh_t| per unit (layer {layer}, direction {direction})")

        ax = axes[1, 0]
        ranges = {"g": (-0.95, 0.95), "n": (-0.95, 0.95)}
        gate_names = GATE_NAMES.get(stream.kind, ())
        for gate in gate_names:
            lo, hi = ranges.get(gate, (0.05, 0.95))
            ax.plot(self.times(**sel), self.saturation(gate, lo, hi, **sel), label=f"{gate} (<{lo} or >{hi})")
        if gate_names:
            ax.set_ylim(-0.02, 1.02)
            ax.legend(fontsize=8)
        else:
            ax.text(
                0.5,
                0.5,
                f"a plain {stream.kind.upper()} has no gates",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        ax.set_xlabel("time step t")
        ax.set_ylabel("fraction saturated")
        ax.set_title("gate saturation")
        ax.grid(True, alpha=0.3)

        ax = axes[1, 1]
        if stream.kind == "lstm":
            fp = self.forget_product(**sel)
            ax.plot(self.times(**sel), np.where(fp > 0, fp, np.nan), color="tab:green")
            ax.set_yscale("log")
            ax.set_ylabel("mean prod of f after t")
            ax.set_title("forget-gate product (cell-state path gain back to t)")
        else:
            for gate in gate_names:
                ax.plot(self.times(**sel), self.gates(gate, **sel).mean(axis=(1, 2)), label=gate)
            if gate_names:
                ax.legend(fontsize=8)
            else:
                ax.plot(self.times(**sel), np.abs(self.states("h", **sel)).mean(axis=(1, 2)), label="|h|")
                ax.legend(fontsize=8)
            ax.set_title("mean gate activation" if gate_names else "mean |h_t|")
        ax.set_xlabel("time step t")
        ax.grid(True, alpha=0.3)

        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        return Path(path)


@contextmanager
def record() -> Iterator[Recording]:
    """Record every RNN/LSTM/GRU step run inside the block; yields the ``Recording``.

    The observer is removed on exit, also when the block raises, so nothing is paid outside a recording.
    Call ``loss.backward()`` inside or after the block, then query the recording.
    """
    observers = _observers()
    rec = Recording()
    observers.append(rec)
    try:
        yield rec
    finally:
        for i, obs in enumerate(observers):
            if obs is rec:
                del observers[i]
                break


def _observers() -> list:
    try:
        from .nn.rnn import STEP_OBSERVERS
    except ImportError as e:  # pragma: no cover - only while nn.rnn is missing
        raise ImportError(f"bptt.record: tinygrad_lstm.nn.rnn.STEP_OBSERVERS is not available ({e})") from None
    return STEP_OBSERVERS


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide the measuring steps from any active recording (they would retain grads and pollute it)."""
    try:
        observers = _observers()
    except ImportError:
        yield
        return
    saved = list(observers)
    observers.clear()
    try:
        yield
    finally:
        observers[:] = saved


# ------------------------------------------------------------------------------------------------ Jacobians


def _split_state(s: Any, fn: str) -> tuple[Tensor, tuple[Tensor, ...]]:
    """A cell's state as (h, rest): a Tensor h, or a tuple (h, c, ...)."""
    if isinstance(s, Tensor):
        return s, ()
    if isinstance(s, (tuple, list)) and s and all(isinstance(x, Tensor) for x in s):
        return s[0], tuple(s[1:])
    raise TypeError(f"{fn}: the cell must return a Tensor h or a tuple (h, c) of Tensors, got {type(s).__name__}")


def _prepare(cell: Callable, xs: Any, state: Any, fn: str) -> tuple[np.ndarray, list[np.ndarray], bool]:
    """Inputs as (T, B, I) and the initial state as arrays [h, (c)] of shape (B, H); tuple-ness of the state."""
    if not callable(cell):
        raise TypeError(f"{fn}: cell must be callable as cell(x, state), got {type(cell).__name__}")
    x = np.asarray(xs.data if isinstance(xs, Tensor) else xs)
    if x.dtype.kind not in "fiu" or x.ndim not in (2, 3):
        raise ValueError(f"{fn}: xs must be a numeric (T, B, I) or (T, I) array or Tensor, got {x.dtype} {x.shape}")
    if x.ndim == 2:
        x = x[:, None, :]
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{fn}: xs needs at least one step and one batch element, got shape {x.shape}")
    # Compute in the cell's own dtype (an ndarray of float64 data for a float32 cell is the common case).
    params = _parameters(cell)
    dtype = params[0].dtype if params and params[0].dtype.kind == "f" else None
    if dtype is not None:
        x = x.astype(dtype, copy=False)
    elif x.dtype.kind != "f":
        x = x.astype(get_default_dtype())
    if state is None:
        with no_grad():
            probe = cell(Tensor(x[0]), None)
        h, rest = _split_state(probe, fn)
        arrays = [np.zeros_like(_as_batched(a.data)) for a in (h, *rest)]
        return x, arrays, not isinstance(probe, Tensor)
    parts = list(state) if isinstance(state, (tuple, list)) else [state]
    arrays = []
    for p in parts:
        a = np.asarray(p.data if isinstance(p, Tensor) else p)
        if a.dtype.kind != "f" or dtype is not None:
            a = a.astype(x.dtype)
        a = _as_batched(a).copy()
        if a.ndim != 2 or a.shape[0] != x.shape[1]:
            raise ValueError(f"{fn}: state of shape {np.shape(p)} does not match xs of shape {x.shape} (need (B, H))")
        arrays.append(a)
    return x, arrays, isinstance(state, (tuple, list))


def _parameters(cell: Any) -> list[Parameter]:
    """A Module cell's parameters, without renaming them.

    Module.parameters() would relabel them with names relative to this cell, changing the labels of a cell
    that lives inside a bigger model, so the members are walked directly.
    """
    if not isinstance(cell, Module):
        return []
    found = {id(p): p for m in cell.modules() for _, p in m._named_members() if isinstance(p, Parameter)}
    return list(found.values())


@contextmanager
def _frozen(cell: Any) -> Iterator[None]:
    """Parameters stop requiring grad while measuring: their .grad stays untouched and backward is cheaper."""
    params = _parameters(cell)
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad = f


def _reduce(norms: np.ndarray, reduce: str, fn: str) -> np.ndarray:
    """(T, B) per-element norms -> (T,) (mean or max over the batch) or unchanged for "none"."""
    if reduce == "mean":
        return norms.mean(axis=1)
    if reduce == "max":
        return norms.max(axis=1)
    if reduce == "none":
        return norms
    raise ValueError(f"{fn}: reduce must be 'mean', 'max' or 'none', got {reduce!r}")


def _jacobian_rows(out: Tensor, wrt: Sequence[Tensor], H: int) -> np.ndarray:
    """J[i, b, k, :] = d out[b, k] / d wrt[i][b, :], one backward per unit k (all b and i at once).

    Batch rows never mix in a recurrent cell, so seeding unit k of every row at once gives row k of each batch
    element's Jacobian in a single pass.
    """
    B = out.shape[0]
    J = np.zeros((len(wrt), B, H, wrt[0].shape[1]), dtype=np.float64)
    if not out.requires_grad:
        return J  # the output does not depend on the state at all
    seed = np.zeros(out.shape, out.dtype)
    for k in range(H):
        for w in wrt:
            w.grad = None
        seed[:, k] = 1.0
        out.backward(seed, retain_graph=True)
        seed[:, k] = 0.0
        for i, w in enumerate(wrt):
            if w.grad is not None:
                J[i, :, k, :] = w.grad
    return J


def jacobian_norms(cell: Callable, xs: Any, state: Any = None, *, reduce: str = "mean") -> np.ndarray:
    """Spectral norm of dh_T/dh_t for t = 0..T-1: how much the whole remaining recurrence can amplify a gradient.

    States are numbered the textbook way: ``h_0`` is the initial state (``state``, zeros by default), ``h_t`` the
    state after t steps, ``h_T`` the last one, so entry t spans the T - t steps ``xs[t:]`` (for a linear RNN
    ``h_t = W h_{t-1} + U x_t`` it is ``||W^(T-t)||_2``). In a ``Recording`` that ``h_t`` is ``states()[t-1]``.

    ``cell(x, state) -> state`` with state a Tensor h, or a tuple (h, c) for an LSTM cell; ``xs`` is (T, B, I)
    (or (T, I)), Tensor or ndarray. For an LSTM the Jacobian is of h_T with respect to h_t with c_t held fixed,
    through the whole (h, c) recurrence after t (h_t feeds the gates, which feed both c and h).

    Exact: the full Jacobian of every batch element is built row by row with the engine's VJPs, one backward
    pass through the unrolled graph per hidden unit (H passes in all, every t and batch element at once), then
    its largest singular value is taken with numpy. Memory is T x B x H x H floats. ``reduce`` combines the
    batch elements: "mean" (default), "max", or "none" for a (T, B) array. A Module cell's parameters are
    frozen during the measurement (their ``.grad`` is left alone) and its steps are hidden from ``record()``.
    """
    fn = "jacobian_norms"
    with _quiet(), _frozen(cell):
        x, init, is_tuple = _prepare(cell, xs, state, fn)
        leaves = [Tensor(a, requires_grad=True) for a in init]
        s: Any = tuple(leaves) if is_tuple else leaves[0]
        incoming = [leaves[0]]  # incoming[t] = h_t: the state entering step t (0-based)
        for t in range(x.shape[0]):
            s = cell(Tensor(x[t]), s)
            h, _ = _split_state(s, fn)
            if h.shape != init[0].shape:
                raise ValueError(f"{fn}: the cell returned h of shape {h.shape} for a state of shape {init[0].shape}")
            if t < x.shape[0] - 1:
                if h.requires_grad:
                    h.retain_grad()
                incoming.append(h)
        J = _jacobian_rows(h, incoming, h.shape[1])
    return _reduce(np.linalg.norm(J, ord=2, axis=(-2, -1)), reduce, fn)


def step_jacobian_norms(cell: Callable, xs: Any, state: Any = None, *, reduce: str = "mean") -> np.ndarray:
    """Spectral norm of the one-step Jacobian dh_t/dh_{t-1} for t = 1..T (entry t-1): shape (T,).

    Same numbering and arguments as ``jacobian_norms``: entry i is the Jacobian of step i (0-based, reading
    ``xs[i]``) with respect to the state entering it (for an LSTM: w.r.t. h with c fixed). The states are run
    forward once without a graph; then all T steps are evaluated again as one batch of T*B rows, so H backward
    passes through a single step give every Jacobian exactly.
    """
    fn = "step_jacobian_norms"
    with _quiet(), _frozen(cell):
        x, init, is_tuple = _prepare(cell, xs, state, fn)
        T, B = x.shape[:2]
        incoming = [[a] for a in init]  # per state part: the value entering each step
        with no_grad():
            s: Any = tuple(Tensor(a) for a in init) if is_tuple else Tensor(init[0])
            for t in range(T - 1):
                s = cell(Tensor(x[t]), s)
                h, rest = _split_state(s, fn)
                for store, part in zip(incoming, (h, *rest)):
                    store.append(_as_batched(part.data))
        flat = [np.concatenate(parts) for parts in incoming]  # (T*B, ·), time-major
        h_in = Tensor(flat[0], requires_grad=True)
        s_in = (h_in, *(Tensor(a) for a in flat[1:])) if is_tuple else h_in
        out, _ = _split_state(cell(Tensor(x.reshape(T * B, -1)), s_in), fn)
        if out.shape != h_in.shape:
            raise ValueError(f"{fn}: the cell returned h of shape {out.shape} for a state of shape {h_in.shape}")
        J = _jacobian_rows(out, [h_in], out.shape[1])[0].reshape(T, B, out.shape[1], h_in.shape[1])
    return _reduce(np.linalg.norm(J, ord=2, axis=(-2, -1)), reduce, fn)


# ------------------------------------------------------------------------------------------------ truncated BPTT


def _detach_state(state: Any, fn: str) -> Any:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)) and all(isinstance(s, Tensor) for s in state):
        return tuple(s.detach() for s in state)
    raise TypeError(f"{fn}: the state must be a Tensor or a tuple of Tensors, got {type(state).__name__}")


def tbptt(
    model: Callable,
    xs: Any,
    ys: Any,
    k: int,
    loss_fn: Callable[[Any, Any], Tensor],
    optimizer: Any = None,
    state: Any = None,
    *,
    time_axis: int | None = None,
    max_norm: float | None = None,
) -> tuple[list[float], Any]:
    """Truncated BPTT: run chunks of ``k`` steps, each with its own backward and optimizer step.

    ``model(x_chunk, state) -> (out, state)`` as the RNN/LSTM/GRU layers; ``loss_fn(out, y_chunk)`` returns a
    scalar Tensor. ``xs`` and ``ys`` (Tensor or ndarray; ``ys`` may be None) are cut along the time axis (0,
    or 1 for a model with ``batch_first=True``; ``time_axis`` overrides). The state is detached between chunks,
    so no gradient crosses a chunk boundary; the last chunk is shorter when k does not divide T. With an
    ``optimizer`` each chunk does ``backward(); optimizer.step(); optimizer.zero_grad()``; with None the
    gradients of all chunks just accumulate. ``max_norm`` clips the optimizer's gradients to that global norm
    before each step (``clip_grad_norm_``). Returns the chunks' losses and the final, detached state.
    """
    fn = "tbptt"
    if max_norm is not None and optimizer is None:
        raise ValueError(f"{fn}: max_norm clips before each optimizer step, so it needs an optimizer")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{fn}: k must be a positive int, got {k!r}")
    X = xs if isinstance(xs, Tensor) else Tensor(xs)
    axis = time_axis if time_axis is not None else (1 if getattr(model, "batch_first", False) else 0)
    if not isinstance(axis, (int, np.integer)) or not 0 <= axis < X.ndim:
        raise ValueError(f"{fn}: time axis {axis} is out of range for xs of shape {X.shape}")
    T = X.shape[axis]
    if T < 1:
        raise ValueError(f"{fn}: xs has no time steps (shape {X.shape}, time axis {axis})")
    Y = None if ys is None else (ys if isinstance(ys, Tensor) else Tensor(ys))
    if Y is not None and (Y.ndim <= axis or Y.shape[axis] != T):
        raise ValueError(
            f"{fn}: ys of shape {Y.shape} is not aligned with xs of shape {X.shape} along time axis {axis}"
        )
    lead = (slice(None),) * axis
    losses: list[float] = []
    state = _detach_state(state, fn)
    for i, start in enumerate(range(0, T, int(k))):
        sl = (*lead, slice(start, min(start + int(k), T)))
        result = model(X[sl], state)
        if not isinstance(result, tuple) or len(result) != 2:
            raise TypeError(f"{fn}: model(x, state) must return (out, state), got {type(result).__name__}")
        out, state = result
        loss = loss_fn(out, None if Y is None else Y[sl])
        if not isinstance(loss, Tensor) or loss.data.size != 1:
            raise TypeError(f"{fn}: loss_fn must return a one-element Tensor, got {loss!r:.80}")
        if not loss.requires_grad:
            raise RuntimeError(f"{fn}: the loss of chunk {i} does not require grad (no parameter or input requires it)")
        loss.backward()
        if optimizer is not None:
            if max_norm is not None:
                clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], max_norm)
            optimizer.step()
            optimizer.zero_grad()
        losses.append(float(loss.item()))
        # The cut: the next chunk starts from the value of the state, not from its history.
        state = _detach_state(state, fn)
    return losses, state


# ------------------------------------------------------------------------------------------------ the CLI study


def _task(task: str, steps: int, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (T, B, I) and the target of the last step (B, O) for a built-in task, float64."""
    from .data import adding_problem, sine_waves

    if task == "adding":
        if steps < 2:
            raise ValueError(f"bptt: the adding task needs at least 2 steps, got {steps}")
        return adding_problem(batch, steps, rng=rng, dtype=np.float64)
    if task == "sine":
        x, y = sine_waves(batch, steps, rng=rng, dtype=np.float64)
        return x, y[-1]
    raise ValueError(f"bptt: unknown task {task!r} (choose 'adding' or 'sine')")


def _make_layer(kind: str, input_size: int, hidden: int, forget_bias: float | None) -> Module:
    from . import nn

    layers = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
    if kind not in layers:
        raise ValueError(f"bptt: unknown cell {kind!r} (choose from {', '.join(CELL_KINDS)})")
    layer = getattr(nn, layers[kind])(input_size, hidden)
    if kind == "lstm" and forget_bias is not None:
        # PyTorch's gate order is i, f, g, o: the forget gate's bias is rows H..2H of both bias vectors.
        layer.bias_ih_l0.data[hidden : 2 * hidden] = forget_bias
        layer.bias_hh_l0.data[hidden : 2 * hidden] = 0.0
    return layer


def measure_gradient_flow(
    kind: str,
    xs: np.ndarray,
    target: np.ndarray,
    hidden: int = 32,
    seed: int = 0,
    forget_bias: float | None = None,
) -> np.ndarray:
    """||dL/dh_t|| for t = 0..T-1 of a fresh (seeded) one-layer ``kind`` layer with a Linear head on the last
    output and an MSE loss against ``target``; computed in float64. Nothing is trained."""
    from . import nn

    with default_dtype(np.float64):
        with fork_rng(seed):  # the caller's random stream (e.g. the demo's) is left alone
            layer = _make_layer(kind, xs.shape[-1], hidden, forget_bias)
            head = nn.Linear(hidden, target.shape[-1])
        with record() as rec:
            out, _ = layer(Tensor(xs))
            diff = head(out[-1]) - Tensor(target)
            loss = (diff * diff).mean()
            loss.backward()
        return rec.grad_norms("h", 0, 0)


def compare_cells(
    cells: Sequence[str] = CELL_KINDS,
    steps: int = 100,
    task: str = "adding",
    hidden: int = 32,
    batch: int = 16,
    seed: int = 0,
    forget_bias: float | None = None,
    path: str | os.PathLike | None = "bptt.png",
) -> dict[str, Any]:
    """Gradient norm through time for each cell type on the same inputs; a table and (if ``path``) a plot.

    Every cell gets the same task batch (drawn from ``seed``) and the same seed for its initialization.
    ``forget_bias`` (LSTM only) sets the forget gate's total bias; None keeps PyTorch's initialization.
    Returns ``{"norms": {cell: (T,) array}, "table": str, "path": Path or None}``.
    """
    cells = [c.strip().lower() for c in cells if c.strip()]
    if not cells:
        raise ValueError("bptt: give at least one cell (rnn, lstm, gru)")
    bad = [c for c in cells if c not in CELL_KINDS]
    if bad:
        raise ValueError(f"bptt: unknown cell(s) {bad} (choose from {', '.join(CELL_KINDS)})")
    for name, v in (("steps", steps), ("hidden", hidden), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"bptt: {name} must be a positive int, got {v!r}")
    xs, target = _task(task, steps, batch, np.random.default_rng(seed))
    norms = {c: measure_gradient_flow(c, xs, target, hidden, seed, forget_bias) for c in cells}
    table = format_table(norms)
    written = None
    if path is not None:
        title = f"{task} task, T={steps}, hidden={hidden}, batch={batch}" + (
            f", LSTM forget bias {forget_bias:g}" if forget_bias is not None and "lstm" in cells else ""
        )
        written = plot_gradient_flow(norms, path, title=title)
    return {"norms": norms, "table": table, "path": written}


def format_table(norms: dict[str, np.ndarray]) -> str:
    """One row per cell: ||dL/dh_t|| at t = 0, T/2 and T-1, and the decay ratio norm[0] / norm[T-1]."""
    w = max(6, *(len(c) for c in norms))
    head = f"{'cell':<{w}} {'t=0':>11} {'t=T/2':>11} {'t=T-1':>11} {'norm[0]/norm[T-1]':>18}"
    rows = [head, "-" * len(head)]
    for cell, n in norms.items():
        T = len(n)
        ratio = n[0] / n[-1] if n[-1] != 0 else float("nan")
        rows.append(f"{cell:<{w}} {n[0]:>11.3e} {n[T // 2]:>11.3e} {n[-1]:>11.3e} {ratio:>18.3e}")
    return "\n".join(rows)


def plot_gradient_flow(norms: dict[str, np.ndarray], path: str | os.PathLike, title: str = "") -> Path:
    """One curve per cell of ||dL/dh_t|| against t on a log scale; written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for cell, n in norms.items():
        label = cell.upper() if cell in CELL_KINDS else cell  # "lstm" -> "LSTM"; a caller's own label as is
        ax.plot(np.arange(len(n)), np.where(n > 0, n, np.nan), lw=2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("time step t (the loss reads the last step)")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title("gradient norm through time" + (f"\n{title}" if title else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)


def add_cli_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``python -m tinygrad_lstm bptt`` (added to ``parser``, which is returned)."""
    parser.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cell types (rnn, lstm, gru)")
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    parser.add_argument("--task", choices=("adding", "sine"), default="adding", help="input sequences")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units")
    parser.add_argument("--batch", type=int, default=16, help="sequences in the batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and of every cell's weights")
    parser.add_argument(
        "--forget-bias", type=float, default=None, help="LSTM forget-gate bias (default: PyTorch's init)"
    )
    parser.add_argument("--out", default="bptt.png", help="where to write the plot (PNG)")
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Run the ``bptt`` subcommand: print the table, write the plot; 0 on success, 2 on a bad argument."""
    try:
        res = compare_cells(
            args.cells.split(","),
            steps=args.steps,
            task=args.task,
            hidden=args.hidden,
            batch=args.batch,
            seed=args.seed,
            forget_bias=args.forget_bias,
            path=args.out,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"||dL/dh_t|| through time, {args.task} task, T={args.steps} (loss on the last step's output)")
    print(res["table"])
    print(f"wrote {res['path']}")
    return 0
