"""``record()``: keep every recurrent step's states, gates and the gradients that reached them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import atomic_path
from ..nn.rnn import STEP_OBSERVERS
from ..tensor import Tensor

if TYPE_CHECKING:  # matplotlib is imported only when something is plotted
    from matplotlib.figure import Figure

GATE_NAMES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ()}
CELL_KINDS = ("rnn", "lstm", "gru")


class NotRecordedError(KeyError, ValueError):
    """A state, gate, layer, direction or run that the recording does not hold (both a KeyError and a ValueError)."""

    def __str__(self) -> str:
        # KeyError would print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


class _Step:
    """One observed step: the state tensors (kept, so their retained ``.grad`` can be read) and gate arrays."""

    __slots__ = ("batch", "c", "gates", "h", "params", "projection", "rows", "seq", "t")

    def __init__(
        self,
        t: int,
        seq: int,
        h: Tensor,
        c: Tensor | None,
        gates: dict[str, np.ndarray],
        rows: np.ndarray | None = None,
        batch: int | None = None,
        params: dict[str, Tensor] | None = None,
        projection: Any = None,
    ) -> None:
        self.t, self.seq, self.h, self.c, self.gates = t, seq, h, c, gates
        self.rows, self.batch = rows, batch  # packed input: which sequences of a batch of `batch` had this step
        self.params, self.projection = params or {}, projection

    def full(self, a: np.ndarray, fill: float) -> np.ndarray:
        """One of this step's arrays as (B, H) in the caller's batch order; sequences without the step: ``fill``."""
        a = _as_batched(a)
        if self.rows is None:
            return a
        out = np.full((self.batch, *a.shape[1:]), fill, a.dtype)
        out[self.rows] = a
        return out


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
    A packed (variable-length) batch records only the real steps of each sequence: in the (T, B, H) arrays, the
    steps a sequence does not have are NaN for states and gates and 0 for gradients (nothing flowed there), and
    ``saturation`` / ``forget_product`` average over the real steps only.
    """

    def __init__(self, param_grads: bool = True) -> None:
        self._streams: dict[tuple[int, int, int], _Stream] = {}
        self._seq = 0
        # Read by the recurrent layers: give every step its own alias of each parameter (see param_grads).
        self.wants_param_uses = bool(param_grads)

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
        params = getattr(rec, "params", None) or {}
        for alias in params.values():
            if alias.requires_grad:
                alias.retain_grad()
        proj = getattr(rec, "projection", None)
        if proj is not None and proj.out.requires_grad:
            proj.out.retain_grad()
        rows, batch = getattr(rec, "rows", None), getattr(rec, "batch_size", None)
        stream.runs[-1][t] = _Step(t, self._seq, rec.h, rec.c, gates, rows, batch, params, proj)
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
        return self._stack([s.full(getattr(s, name).data, np.nan) for s in steps], "states")

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
            s.full(x.grad if x.grad is not None else np.zeros(x.shape, x.dtype), 0.0) for s, x in zip(steps, tensors)
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
        return self._stack([s.full(s.gates[gate], np.nan) for s in steps], "gates")

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
        real = ~np.isnan(g)  # a packed batch: only the steps each sequence has
        return ((g < low) | (g > high)).sum(axis=(1, 2)) / real.sum(axis=(1, 2))

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
        # A packed batch: a step a sequence does not have scales nothing (factor 1) and is left out of the mean.
        real = ~np.isnan(f)
        f = np.where(real, f, 1.0)
        ones = np.ones_like(f[:1])
        if direction == 0:
            # suffix products, shifted by one: prod_{s>t} f_s
            suffix = np.cumprod(f[::-1], axis=0)[::-1]
            p = np.concatenate([suffix[1:], ones])
        else:
            prefix = np.cumprod(f, axis=0)
            p = np.concatenate([ones, prefix[:-1]])
        return np.where(real, p, 0.0).sum(axis=(1, 2)) / real.sum(axis=(1, 2))

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

    def param_grads(
        self, name: str, layer: int = 0, direction: int = 0, *, module: Any = None, run: int | None = -1
    ) -> np.ndarray:
        """BPTT's sum over time taken apart: term t is the gradient through the parameter's use at step t alone.

        ``name`` is a recurrent parameter's name as PyTorch spells it: a layer's ``"weight_hh_l0"``,
        ``"bias_ih_l1_reverse"``, ``"weight_ci_l0"`` (peepholes), also the dotted name the model gives it
        (``"encoder.weight_hh_l0"``), or the short ``"weight_hh"`` (a cell's, or a layer's with ``layer`` and
        ``direction`` picking the suffix). Returns (T, *parameter shape) in time order: term t is the gradient
        with respect to a copy of the parameter used at step t only, so the terms sum to what the recorded steps
        contributed to its ``.grad``. W_ih and the biases folded into a layer's input projection (computed for
        all steps at once) get their terms from the gradient reaching that projection's step-t slice (g_t^T x_t,
        and g_t summed over the batch): exact as well. Needs ``record(param_grads=True)`` (the default).
        """
        from .param_grads import param_key, parse_param_name, step_terms

        stream, steps = self._resolve_param(name, layer, direction, module, run)
        return step_terms(stream, steps, param_key(parse_param_name(name)[0], stream))

    def param_grad_norms(
        self, name: str, layer: int = 0, direction: int = 0, *, module: Any = None, run: int | None = -1
    ) -> np.ndarray:
        """The Frobenius norm of every per-step term of ``param_grads``: (T,), float64."""
        g = self.param_grads(name, layer, direction, module=module, run=run).astype(np.float64)
        return np.sqrt((g * g).reshape(len(g), -1).sum(axis=1))

    def _resolve_param(self, name: str, layer: int, direction: int, module: Any, run: int | None) -> tuple:
        """The stream and steps a parameter name (short, suffixed or dotted) refers to."""
        from .param_grads import parse_param_name

        if not isinstance(name, str):
            raise TypeError(f"Recording.param_grads: name must be a str, got {type(name).__name__}")
        _, sfx_layer, sfx_dir = parse_param_name(name)
        if sfx_layer is not None:
            if (layer, direction) not in ((0, 0), (sfx_layer, sfx_dir)):
                raise ValueError(
                    f"Recording.param_grads: name {name!r} is layer {sfx_layer} direction {sfx_dir}, but "
                    f"layer={layer} direction={direction} were given"
                )
            layer, direction = sfx_layer, sfx_dir
        if module is None and "." in name:
            # A dotted name: the module whose parameter carries that name (Module.named_parameters sets it).
            owners = [
                s.module
                for s in self._streams.values()
                if s.layer == layer
                and s.direction == direction
                and getattr(getattr(s.module, name.rsplit(".", 1)[1], None), "name", None) == name
            ]
            if len(owners) == 1:
                module = owners[0]
        return self._steps(layer, direction, module, run)

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
        self,
        path: str | os.PathLike | None = None,
        layer: int = 0,
        direction: int = 0,
        *,
        module: Any = None,
        run: int = -1,
    ) -> Figure | Path:
        """Gradient norm vs t (log) for every recorded layer/direction, a units x time heatmap of |dL/dh_t|
        (mean over the batch), gate saturation, and the forget-gate product.

        Without ``path``, returns the matplotlib ``Figure`` (a notebook shows it inline); with a path, writes
        it atomically (PNG, or SVG/PDF from the suffix) and returns the path.
        """
        from matplotlib.colors import LogNorm
        from matplotlib.ticker import MaxNLocator

        from .figures import check_path, finish, new_figure

        check_path(path, "Recording.plot")
        sel = {"layer": layer, "direction": direction, "module": module, "run": run}
        stream = self._stream(layer, direction, module)
        heat = np.abs(self.grads("h", **sel).astype(np.float64)).mean(axis=1).T  # (H, T)

        fig = new_figure((13, 8.5))
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

        for ax in axes.flat:  # time steps are whole numbers, however few there are
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        return finish(fig, path, "Recording.plot")


@contextmanager
def record(param_grads: bool = True) -> Iterator[Recording]:
    """Record every RNN/LSTM/GRU step run inside the block; yields the ``Recording``.

    The observer is removed on exit, also when the block raises, so nothing is paid outside a recording.
    Call ``loss.backward()`` inside or after the block, then query the recording. ``param_grads=True`` gives
    every step its own alias of each recurrent parameter, whose retained gradient is that step's term (for
    ``Recording.param_grads``): T gradients the size of W_hh are kept; ``False`` skips that.
    """
    observers = STEP_OBSERVERS
    rec = Recording(param_grads)
    observers.append(rec)
    try:
        yield rec
    finally:
        for i, obs in enumerate(observers):
            if obs is rec:
                del observers[i]
                break


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide the measuring steps from any active recording (they would retain grads and pollute it)."""
    try:
        observers = STEP_OBSERVERS
    except ImportError:
        yield
        return
    saved = list(observers)
    observers.clear()
    try:
        yield
    finally:
        observers[:] = saved
