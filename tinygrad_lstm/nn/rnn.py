"""Recurrent layers (Elman RNN, LSTM, GRU) written only with Tensor ops, with PyTorch's names and conventions.

The equations of one time step are written once, as the functions ``rnn_step``, ``lstm_step`` and ``gru_step``
that take the weights as arguments; the cells (``RNNCell``, ``LSTMCell``, ``GRUCell``) and the multi-layer,
optionally bidirectional layers (``RNN``, ``LSTM``, ``GRU``) both call them. Each affine map ``x @ W^T + b`` is one
``Linear`` node (as PyTorch's addmm). The layers compute the input projection of all time steps with ONE such node
per layer and direction, and then one per step for ``W_hh``: the same function as the step-by-step formulation,
with fewer, larger nodes.

Backpropagation through time is nothing special here: the loop below unrolls the recurrence into an ordinary
graph in which the same weight tensors are used at every step, and the engine's backward sums their gradient
contributions over the steps.

Studying BPTT: every executed step (in cells and in layers) is reported to the callables in ``STEP_OBSERVERS``
as a ``StepRecord`` holding the new state and the post-activation gates; with no observer it costs one list
test per step. An observer with ``wants_param_uses = True`` (``bptt.record()``) also gets, per step, an alias
of every parameter the step used (``_use``: a ``p[...]`` node, so its gradient is that step's term of p's) and,
for a layer, the input projection of all steps (whose step-t rows give W_ih's term). Layers also accept
``return_states=True`` in ``forward`` to get every step's states back.

Variable-length batches: the layers take a ``PackedSequence`` (``nn.utils.rnn``) and run step t on the rows of
the sequences that have a step t only (torch's per-step batch sizes), so padding never enters the recurrence.

What cells and layers share (sizes and dtype checks, parameter creation, activations, peepholes, the LSTM
projection, input conversion, ``extra_repr``) is written once, in ``_Recurrent`` and the ``_RNNKind`` /
``_LSTMKind`` / ``_GRUKind`` mixins that hold each kind's options and its ``_step``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..tensor import Tensor, cat, get_default_dtype, get_rng, scope, stack
from .functional import _tensor, affine
from .module import Module, Parameter
from .utils.rnn import PackedSequence, _check_packed

Activation = Callable[[Tensor], Tensor]

# --------------------------------------------------------------------------------------------- step observers


@dataclass
class StepRecord:
    """One executed recurrent step, as passed to every callable in ``STEP_OBSERVERS``."""

    module: Module  # the cell or the layer that ran the step
    kind: str  # "rnn" | "lstm" | "gru"
    layer: int  # 0 for a bare cell
    direction: int  # 0 forward, 1 reverse
    t: int | None  # time index inside the layer's sequence (None for a bare cell call)
    h: Tensor  # new hidden state (B, H) (or (H,) unbatched)
    c: Tensor | None  # new cell state (LSTM) else None
    gates: dict[str, Tensor]  # post-activation gates: LSTM "i","f","g","o"; GRU "r","z","n"; RNN {}
    # Packed (variable-length) input: the rows of h are the sequences rows[0], rows[1], ... of the caller's batch
    # of batch_size sequences (those that have a step t). None: every row, in the caller's order.
    rows: np.ndarray | None = None
    batch_size: int | None = None
    # Only when an observer has ``wants_param_uses = True``: the per-step aliases of the parameters this step used,
    # by parameter name (an alias's gradient is the step's own term of that parameter's gradient), and for a layer
    # the input projection computed for all steps at once (its step-t rows' gradient gives W_ih's and the
    # projected biases' step-t terms).
    params: dict[str, Tensor] | None = None
    projection: StepProjection | None = None


@dataclass
class StepProjection:
    """A layer's input projection ``out = x @ W_ih^T + b`` of all steps, seen from step ``t``.

    ``out.grad[index]`` (retained) is the gradient g_t reaching step t's rows: W_ih's step-t term is
    g_t^T x[index], and each bias in ``biases`` (added into the projection) has the term g_t summed over the batch.
    """

    out: Tensor  # (T, [B,] nH), or packed rows (N, nH)
    x: Tensor  # the layer's input (T, [B,] I), or packed rows (N, I)
    t: int
    weight: str  # the name of W_ih, e.g. "weight_ih_l0"
    biases: tuple[str, ...]  # the biases folded into the projection, e.g. ("bias_ih_l0", "bias_hh_l0")
    rows: slice | None = None  # packed input: the rows of ``out`` and ``x`` that are step t's (None: ``[t]``)

    @property
    def index(self) -> int | slice:
        """Where step t sits in ``out`` and ``x``: ``t`` (time-major input) or the packed rows' slice."""
        return self.t if self.rows is None else self.rows


STEP_OBSERVERS: list[Callable[[StepRecord], None]] = []  # empty = zero cost


def _notify(
    module: Module,
    kind: str,
    layer: int,
    direction: int,
    t: int | None,
    h: Tensor,
    c: Tensor | None,
    gates: dict,
    rows: np.ndarray | None = None,
    batch_size: int | None = None,
    params: dict[str, Tensor] | None = None,
    projection: StepProjection | None = None,
) -> None:
    """Hand one step to every observer (called only when ``STEP_OBSERVERS`` is not empty)."""
    record = StepRecord(module, kind, layer, direction, t, h, c, gates, rows, batch_size, params, projection)
    for observer in list(STEP_OBSERVERS):  # a copy: an observer may remove itself
        observer(record)


def _param_uses() -> dict[str, Tensor] | None:
    """A fresh dict for one step's parameter aliases if an observer wants them, else None (call only when
    ``STEP_OBSERVERS`` is not empty)."""
    return {} if any(getattr(o, "wants_param_uses", False) for o in STEP_OBSERVERS) else None


def _use(p: Tensor | None, name: str, uses: dict[str, Tensor] | None) -> Tensor | None:
    """The parameter ``p`` as this step uses it: ``p`` itself, or, when ``uses`` collects them, a new graph node
    with p's value (``p[...]``, a view) whose gradient is this step's use alone; it flows on into ``p.grad``."""
    if uses is None or p is None:
        return p
    alias = p[...]
    alias.name = name
    uses[name] = alias
    return alias


# --------------------------------------------------------------------------------------------- activations


def _hard_sigmoid(x: Tensor) -> Tensor:
    """PyTorch's hardsigmoid: clip(x/6 + 1/2, 0, 1)."""
    return (x / 6.0 + 0.5).clip(0.0, 1.0)


def _leaky_relu(x: Tensor) -> Tensor:
    """Leaky ReLU with PyTorch's default slope 0.01."""
    return x.leaky_relu(0.01)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Tensor.sigmoid,
    "tanh": Tensor.tanh,
    "relu": Tensor.relu,
    "leaky_relu": _leaky_relu,
    "hard_sigmoid": _hard_sigmoid,
}


def _activation(spec: str | Activation, arg: str, owner: str) -> tuple[Activation, bool]:
    """Resolve an activation name or callable; also say whether it is known to be elementwise."""
    if isinstance(spec, str):
        if spec not in ACTIVATIONS:
            valid = ", ".join(repr(k) for k in ACTIVATIONS)
            raise ValueError(
                f"{owner}: unknown {arg} {spec!r}; valid names are {valid}, or a callable Tensor -> Tensor"
            )
        return ACTIVATIONS[spec], True
    if callable(spec):
        return spec, False
    raise TypeError(f"{owner}: {arg} must be an activation name or a callable Tensor -> Tensor, got {spec!r}")


# --------------------------------------------------------------------------------------------- step equations
#
# ``xw`` is the input's contribution to the pre-activations, x_t @ W_ih^T (+ biases), computed by the caller:
# a cell does it per call, a layer for all steps at once. ``w_hh`` is W_hh, (nH, H). Slices use ``[..., a:b]`` so that
# unbatched (1-D) states work unchanged. A missing initial state is a zero tensor, as in PyTorch, so every weight
# takes part in every step and gets a (possibly zero) gradient exactly when PyTorch's does.


def _label(**tensors: Tensor) -> None:
    """Name a step's gates and states (``i``, ``f``, ``c``, ``h``...): drawn graphs show them as ``Sigmoid 'i'``."""
    for name, t in tensors.items():
        t.name = name


def _preactivation(xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """xw + h @ W_hh^T + b_hh. A layer has folded b_hh into xw: then xw is Linear's addend, one node where two
    would be (and one (B, nH) array fewer kept per step: 1.98x -> 1.70x at the large size, tools/bench_memory.py)."""
    return affine(h, w_hh, xw) if b_hh is None else xw + affine(h, w_hh, b_hh)


def rnn_step(xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, act: Activation) -> Tensor:
    """Elman step: h' = act(xw + h @ W_hh^T + b_hh)."""
    z = _preactivation(xw, h, w_hh, b_hh)
    h_new = act(z)
    _label(h=h_new)
    return h_new


def lstm_step(
    xw: Tensor,
    h: Tensor,
    c: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None = None,
    peephole: tuple[Tensor, Tensor, Tensor] | None = None,
    gate_act: Activation = Tensor.sigmoid,
    cell_act: Activation = Tensor.tanh,
    elementwise: bool = True,
    w_hr: Tensor | None = None,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """LSTM step, gate order (i, f, g, o): returns (h', c', (i, f, g, o)) with post-activation gates.

    i = σ(z_i [+ w_ci*c]), f = σ(z_f [+ w_cf*c]), g = φ(z_g), c' = f*c + i*g, o = σ(z_o [+ w_co*c']),
    h' = o*φ(c'), where z = xw + h @ W_hh^T + b_hh, σ = ``gate_act``, φ = ``cell_act`` and the bracketed
    peephole terms (Gers & Schmidhuber) are present when ``peephole = (w_ci, w_cf, w_co)`` is given.
    ``elementwise`` says gate_act acts elementwise, so it may run once over all 4H pre-activations.
    ``w_hr`` (P, H), when given, projects the new hidden state: h' = (o*φ(c')) @ W_hr^T (torch's ``proj_size``).
    """
    H = xw.shape[-1] // 4
    z = _preactivation(xw, h, w_hh, b_hh)
    if peephole is None and elementwise:
        # One activation node over the whole (.., 4H) block instead of three: fewer nodes, same values.
        a = gate_act(z)
        i, f, o = a[..., :H], a[..., H : 2 * H], a[..., 3 * H :]
        g = cell_act(z[..., 2 * H : 3 * H])
        c_new = f * c + i * g
    else:
        zi, zf, zg, zo = z[..., :H], z[..., H : 2 * H], z[..., 2 * H : 3 * H], z[..., 3 * H :]
        if peephole is not None:
            zi = zi + peephole[0] * c
            zf = zf + peephole[1] * c
        i, f, g = gate_act(zi), gate_act(zf), cell_act(zg)
        c_new = f * c + i * g
        if peephole is not None:
            zo = zo + peephole[2] * c_new  # the output gate looks at the new cell state
        o = gate_act(zo)
    h_new = o * cell_act(c_new)
    if w_hr is not None:
        h_new = affine(h_new, w_hr)
    _label(i=i, f=f, g=g, o=o, c=c_new, h=h_new)
    return h_new, c_new, (i, f, g, o)


def gru_step(
    xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None = None
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """GRU step as PyTorch, gate order (r, z, n): returns (h', (r, z, n)).

    r = σ(xw_r + W_hr h + b_hr), z = σ(xw_z + W_hz h + b_hz), n = tanh(xw_n + r*(W_hn h + b_hn)),
    h' = (1 - z)*n + z*h, where xw = x @ W_ih^T + b_ih.
    """
    H = xw.shape[-1] // 3
    gh = affine(h, w_hh, b_hh)
    rz = (xw[..., : 2 * H] + gh[..., : 2 * H]).sigmoid()
    r, z = rz[..., :H], rz[..., H:]
    n = (xw[..., 2 * H :] + r * gh[..., 2 * H :]).tanh()
    # (1 - z)*n + z*h written as n + z*(h - n): one node fewer, the same function.
    h_new = n + z * (h - n)
    _label(r=r, z=z, n=n, h=h_new)
    return h_new, (r, z, n)


# --------------------------------------------------------------------------------------------- shared helpers


def _check_size(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _uniform(shape: tuple, k: float, dtype: np.dtype) -> Parameter:
    """PyTorch's default recurrent init: U(-k, k) with k = 1/sqrt(hidden_size), from the seeded generator."""
    return Parameter(get_rng().uniform(-k, k, shape).astype(dtype))


def _check_dtype(owner: str, what: str, t: Tensor, dtype: np.dtype) -> None:
    if t.dtype != dtype:
        raise TypeError(
            f"{owner}: {what} has dtype {t.dtype} but the parameters are {dtype}; cast one of them "
            f"(e.g. {what}.astype(np.{dtype}))"
        )


def _rows(state: Any, start: int, stop: int) -> Any:
    """Rows start..stop-1 of a state, h or (h, c)."""
    if isinstance(state, tuple):
        return tuple(s[start:stop] for s in state)
    return state[start:stop]


def _join(*states: Any) -> Any:
    """States of several row blocks, h or (h, c), concatenated along the batch axis."""
    if isinstance(states[0], tuple):
        return tuple(cat(list(parts), axis=0) for parts in zip(*states))
    return cat(list(states), axis=0)


# Options shown by ``extra_repr`` when they differ from their default, in PyTorch's order (ours after torch's).
_REPR_OPTIONS = (
    ("proj_size", 0),
    ("num_layers", 1),
    ("bias", True),
    ("batch_first", False),
    ("dropout", 0.0),
    ("bidirectional", False),
    ("nonlinearity", "tanh"),
    ("peephole", False),
    ("gate_activation", "sigmoid"),
    ("cell_activation", "tanh"),
)
_PEEPHOLES = ("weight_ci", "weight_cf", "weight_co")


class _Recurrent(Module):
    """What cells and layers share: sizes, dtype, parameter creation, input conversion and ``extra_repr``.

    A kind mixin (``_RNNKind``, ``_LSTMKind``, ``_GRUKind``) supplies ``_kind``, ``_chunks`` (gate blocks),
    its options and ``_step``; a cell's parameters are those of a layer's with the suffix "".
    """

    _kind = ""
    _chunks = 1
    _fold_bias = True  # b_hh may be added to the input projection once (not for GRU: b_hn sits inside r*(...))

    def _setup(self, input_size: int, hidden_size: int, bias: bool, dtype: Any) -> np.dtype:
        owner = type(self).__name__
        self.input_size = _check_size(owner, "input_size", input_size)
        self.hidden_size = _check_size(owner, "hidden_size", hidden_size)
        self.bias = bool(bias)
        return np.dtype(dtype) if dtype is not None else get_default_dtype()

    def _out_size(self) -> int:
        """Size of h: hidden_size, or proj_size for a projected LSTM."""
        return getattr(self, "proj_size", 0) or self.hidden_size

    def _make_parameters(self, sfx: str, in_size: int, dtype: np.dtype) -> None:
        """weight_ih, weight_hh, bias_ih, bias_hh (+ the kind's extras) with suffix ``sfx``, PyTorch's order."""
        n, H = self._chunks, self.hidden_size
        k = 1.0 / math.sqrt(H)
        setattr(self, "weight_ih" + sfx, _uniform((n * H, in_size), k, dtype))
        setattr(self, "weight_hh" + sfx, _uniform((n * H, self._out_size()), k, dtype))
        if self.bias:
            setattr(self, "bias_ih" + sfx, _uniform((n * H,), k, dtype))
            setattr(self, "bias_hh" + sfx, _uniform((n * H,), k, dtype))
        else:  # None says "no bias" (a cell reads self.bias_ih)
            setattr(self, "bias_ih" + sfx, None)
            setattr(self, "bias_hh" + sfx, None)
        self._extra_parameters(sfx, k, dtype)

    def _extra_parameters(self, sfx: str, k: float, dtype: np.dtype) -> None:
        """Hook for a kind's parameters beyond W_ih, W_hh and the biases (LSTM projection and peepholes)."""

    def _step(
        self, xw: Tensor, state: Any, w_hh: Tensor, b_hh: Tensor | None, sfx: str, uses: dict | None = None
    ) -> tuple[Any, dict]:
        """One step with the parameters of suffix ``sfx``: returns (new state, gates dict); state is h or (h, c).
        Parameters it fetches itself (peepholes, W_hr) go through ``_use(p, name, uses)`` (``StepRecord.params``)."""
        raise NotImplementedError

    def _state_sizes(self) -> tuple[int, ...]:
        """Sizes of the state parts: (H,) for h, (P or H, H) for an LSTM's (h, c)."""
        return (self._out_size(),)

    def _hx_parts(self, hx: Any, names: tuple[str, str]) -> list[tuple[str, Any]]:
        """Split a user's initial state into named parts: [h] or, for an LSTM, the pair [h, c]."""
        if len(self._state_sizes()) == 1:
            return [(names[0], hx)]
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(
                f"{type(self).__name__}: hx must be a pair ({names[0]}, {names[1]}), got {type(hx).__name__}"
            )
        return list(zip(names, hx))

    def _tensor(self, x: Any, what: str) -> Tensor:
        """The input policy of every layer in nn (``functional._tensor``): Tensors as is, arrays and torch
        tensors without grad as constants."""
        return _tensor(x, type(self).__name__, what)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in _REPR_OPTIONS:
            value = self.__dict__.get(name, default)
            if value != default:
                s += f", {name}={value!r}"
        return s


# --------------------------------------------------------------------------------------------- the three kinds


class _RNNKind:
    """Elman options (``nonlinearity``) and step, for RNNCell and RNN."""

    _kind = "rnn"
    _chunks = 1

    def _options(self, owner: str, nonlinearity: str) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"{owner}: unknown nonlinearity {nonlinearity!r}; valid names are 'tanh', 'relu'")
        self.nonlinearity = nonlinearity
        self._act = ACTIVATIONS[nonlinearity]

    def _step(
        self, xw: Tensor, state: Any, w_hh: Tensor, b_hh: Tensor | None, sfx: str, uses: dict | None = None
    ) -> tuple[Any, dict]:
        return rnn_step(xw, state, w_hh, b_hh, self._act), {}


class _GRUKind:
    """GRU step, for GRUCell and GRU (no options)."""

    _kind = "gru"
    _chunks = 3
    _fold_bias = False

    def _step(
        self, xw: Tensor, state: Any, w_hh: Tensor, b_hh: Tensor | None, sfx: str, uses: dict | None = None
    ) -> tuple[Any, dict]:
        h, (r, z, n) = gru_step(xw, state, w_hh, b_hh)
        return h, {"r": r, "z": z, "n": n}


class _LSTMKind:
    """LSTM options (peepholes, activations, projection) and step, for LSTMCell and LSTM."""

    _kind = "lstm"
    _chunks = 4

    def _options(
        self, owner: str, peephole: bool, gate_activation: str | Activation, cell_activation: str | Activation
    ) -> None:
        self._gate_fn, self._elementwise = _activation(gate_activation, "gate_activation", owner)
        self._cell_fn, _ = _activation(cell_activation, "cell_activation", owner)
        self.peephole = bool(peephole)
        self.gate_activation, self.cell_activation = gate_activation, cell_activation

    def _extra_parameters(self, sfx: str, k: float, dtype: np.dtype) -> None:
        if getattr(self, "proj_size", 0):  # torch's order: weight_hr_l{k} right after the biases
            setattr(self, "weight_hr" + sfx, _uniform((self.proj_size, self.hidden_size), k, dtype))
        if self.peephole:
            for name in _PEEPHOLES:
                setattr(self, name + sfx, _uniform((self.hidden_size,), k, dtype))

    def _state_sizes(self) -> tuple[int, ...]:
        return (self._out_size(), self.hidden_size)

    def _step(
        self, xw: Tensor, state: Any, w_hh: Tensor, b_hh: Tensor | None, sfx: str, uses: dict | None = None
    ) -> tuple[Any, dict]:
        h, c = state
        peep = tuple(_use(getattr(self, n + sfx), n + sfx, uses) for n in _PEEPHOLES) if self.peephole else None
        w_hr = _use(getattr(self, "weight_hr" + sfx, None), "weight_hr" + sfx, uses)
        h, c, (i, f, g, o) = lstm_step(
            xw, h, c, w_hh, b_hh, peep, self._gate_fn, self._cell_fn, self._elementwise, w_hr
        )
        return (h, c), {"i": i, "f": f, "g": g, "o": o}


# --------------------------------------------------------------------------------------------- cells


class _CellBase(_Recurrent):
    """One step of a recurrent kind on (B, I) or (I,) input (PyTorch's RNNCellBase)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, dtype: Any) -> None:
        dt = self._setup(input_size, hidden_size, bias, dtype)
        self._make_parameters("", self.input_size, dt)

    def _input(self, x: Any) -> Tensor:
        owner = type(self).__name__
        x = self._tensor(x, "input")
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{owner}: expected input of shape (batch, {self.input_size}) or ({self.input_size},), got {x.shape}"
            )
        _check_dtype(owner, "input", x, self.weight_ih.dtype)
        return x

    def _state(self, s: Any, x: Tensor, what: str) -> Tensor:
        owner = type(self).__name__
        s = self._tensor(s, what)
        want = (*x.shape[:-1], self.hidden_size)
        if s.shape != want:
            raise ValueError(f"{owner}: {what} must have shape {want} for an input of shape {x.shape}, got {s.shape}")
        _check_dtype(owner, what, s, self.weight_ih.dtype)
        return s

    def _zeros(self, x: Tensor, name: str) -> Tensor:
        """The default initial state, named ``h0`` or ``c0``: zeros of shape (B, H) or (H,)."""
        return Tensor(np.zeros((*x.shape[:-1], self.hidden_size), x.dtype), name=name)

    def _xw(self, x: Tensor, uses: dict | None = None) -> Tensor:
        return affine(x, _use(self.weight_ih, "weight_ih", uses), _use(self.bias_ih, "bias_ih", uses))

    def _cell_forward(self, x: Any, hx: Any) -> Any:
        """Check the input and state (zeros when None), run one ``_step`` and tell the observers."""
        x = self._input(x)
        names = ("h", "c")
        if hx is None:
            parts = [self._zeros(x, n + "0") for n in names[: len(self._state_sizes())]]
        else:
            parts = [self._state(s, x, n) for n, s in self._hx_parts(hx, names)]
        state = parts[0] if len(parts) == 1 else tuple(parts)
        # Per-step aliases of the parameters (bptt.record): a cell call is one step, so each call gets its own.
        uses = _param_uses() if STEP_OBSERVERS else None
        w_hh, b_hh = _use(self.weight_hh, "weight_hh", uses), _use(self.bias_hh, "bias_hh", uses)
        state, gates = self._step(self._xw(x, uses), state, w_hh, b_hh, "", uses)
        if STEP_OBSERVERS:
            h, c = state if isinstance(state, tuple) else (state, None)
            _notify(self, self._kind, 0, 0, None, h, c, gates, params=uses)
        return state


class RNNCell(_RNNKind, _CellBase):
    """Elman RNN cell: h' = act(x @ W_ih^T + b_ih + h @ W_hh^T + b_hh), act = tanh or relu."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh", dtype: Any = None
    ) -> None:
        self._options("RNNCell", nonlinearity)
        super().__init__(input_size, hidden_size, bias, dtype)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """One step: x (B, I) or (I,), h (B, H) or (H,) (zeros if None) -> h' of h's shape."""
        return self._cell_forward(x, h)


class LSTMCell(_LSTMKind, _CellBase):
    """LSTM cell, gate order (i, f, g, o) as PyTorch, with optional peepholes and pluggable activations.

    ``peephole=True`` adds ``weight_ci``, ``weight_cf``, ``weight_co`` (H each): i and f see c_{t-1}, o sees
    c_t. ``gate_activation`` (for i, f, o) and ``cell_activation`` (for g and for the output φ(c)) are one of
    "sigmoid", "tanh", "relu", "leaky_relu", "hard_sigmoid" or any callable Tensor -> Tensor.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        peephole: bool = False,
        gate_activation: str | Activation = "sigmoid",
        cell_activation: str | Activation = "tanh",
        dtype: Any = None,
    ) -> None:
        self._options("LSTMCell", peephole, gate_activation, cell_activation)
        super().__init__(input_size, hidden_size, bias, dtype)

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """One step: x (B, I) or (I,), hx = (h, c) each (B, H) or (H,) (zeros if None) -> (h', c')."""
        return self._cell_forward(x, hx)


class GRUCell(_GRUKind, _CellBase):
    """GRU cell with PyTorch's equations and gate order (r, z, n)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, dtype)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """One step: x (B, I) or (I,), h (B, H) or (H,) (zeros if None) -> h'."""
        return self._cell_forward(x, h)


# --------------------------------------------------------------------------------------------- layers


class _RNNBase(_Recurrent):
    """Multi-layer, optionally bidirectional recurrent layer with PyTorch's parameter names and call signature."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = None,
    ) -> None:
        owner = type(self).__name__
        dt = self._setup(input_size, hidden_size, bias, dtype)
        self.num_layers = _check_size(owner, "num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
            raise ValueError(f"{owner}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(
                f"{owner}: dropout={dropout} acts between layers only, so it does nothing with num_layers=1",
                stacklevel=3,
            )
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        D = 2 if self.bidirectional else 1
        # Assignment order is the parameter order: PyTorch's (weight_ih, weight_hh, bias_ih, bias_hh per layer
        # and direction), so parameters() lines up with torch's.
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else self._out_size() * D
            for d in range(D):
                self._make_parameters(self._suffix(layer, d), in_size, dt)

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    # -- the unrolled loop
    def forward(self, input: Any, hx: Any = None, return_states: bool = False) -> tuple:
        """Run the sequence: like PyTorch, ``(output, h_n)`` (RNN, GRU) or ``(output, (h_n, c_n))`` (LSTM).

        input: (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I), or a ``PackedSequence`` of
        variable-length sequences (``nn.utils.rnn``). hx: initial state(s) of shape (num_layers*num_directions,
        B, H) (unbatched: (num_layers*num_directions, H)); zeros when omitted. H is proj_size for a projected
        LSTM's h. output: (T, B, D*H) (batch_first: (B, T, D*H); unbatched: (T, D*H)), the last layer's h at every
        step, the two directions concatenated; a PackedSequence for a packed input. h_n (and c_n): the final
        state of every layer and direction, in the order l0, l0_reverse, l1, ...; for a packed input, each
        sequence's state after its own last step (reverse direction: after step 0), in the caller's batch order.

        With ``return_states=True`` a third item is returned: ``states[layer][direction][t]`` is the state after
        input step t (h for RNN/GRU, (h, c) for LSTM), each (B, H) or (H,) and part of the graph, so one can
        ``retain_grad()`` on it before ``backward`` to study how gradients flow back through time. For a packed
        input it holds the rows of the sequences that have a step t, in sorted order (``sorted_indices``).
        """
        owner = type(self).__name__
        dtype = self.weight_ih_l0.dtype
        packed = input if isinstance(input, PackedSequence) else None
        if packed is not None:
            x, sizes, order, unorder = _check_packed(packed, owner)
            if x.ndim != 2:
                raise ValueError(f"{owner}: a PackedSequence's data must be 2-D (rows, features), got {x.shape}")
            batched, B = True, int(sizes[0])
            if order is None:
                order = np.arange(B)
        else:
            x = self._tensor(input, "input")
            if x.ndim not in (2, 3):
                raise ValueError(f"{owner}: expected a 2-D (unbatched) or 3-D input, got shape {x.shape}")
            batched, sizes, order, unorder = x.ndim == 3, None, None, None
            shape = x.shape
            if batched and self.batch_first:
                x = x.transpose(1, 0, 2)
            if x.shape[0] == 0:
                raise ValueError(f"{owner}: the input sequence is empty (shape {shape})")
            B = x.shape[1] if batched else None
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{owner}: input has {x.shape[-1]} features, expected input_size={self.input_size}")
        _check_dtype(owner, "input", x, dtype)
        D, L = (2 if self.bidirectional else 1), self.num_layers
        init = self._initial_states(hx, B, dtype, None if packed is None or unorder is None else order)

        split_scopes = L > 1 or D > 1
        finals: list[Any] = []
        all_states: list[list[list[Any]]] = []
        layer_in = x
        for layer in range(L):
            outs, layer_states = [], []
            for d in range(D):
                sfx = self._suffix(layer, d)
                with scope(f"l{layer}" + ("_reverse" if d else "")) if split_scopes else nullcontext():
                    hs, states, final = self._run_direction(layer_in, init, layer, d, sfx, return_states, sizes, order)
                outs.append(hs)
                finals.append(final)
                layer_states.append(states)
            all_states.append(layer_states)
            layer_out = outs[0] if D == 1 else cat(outs, axis=-1)
            if self.training and self.dropout > 0 and layer < L - 1:
                layer_out = layer_out * self._dropout_mask(layer_out)
            layer_in = layer_out

        if packed is not None:
            output: Any = PackedSequence(layer_in, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        else:
            output = layer_in.transpose(1, 0, 2) if batched and self.batch_first else layer_in
        final = self._final(finals)
        if unorder is not None:  # back to the caller's batch order
            final = tuple(f[:, unorder] for f in final) if isinstance(final, tuple) else final[:, unorder]
        result = (output, final)
        return (*result, all_states) if return_states else result

    def _initial_states(self, hx: Any, batch: int | None, dtype: np.dtype, order: np.ndarray | None) -> list[Any]:
        """Split hx into one initial state per layer/direction (zeros when hx is None); ``order`` sorts the
        batch of a packed input."""
        n = self.num_layers * (2 if self.bidirectional else 1)
        lead = (n,) if batch is None else (n, batch)
        names = ("h0", "c0")
        sizes = self._state_sizes()
        if hx is None:
            # one read-only array per size behind every named initial state
            zeros = {size: np.zeros((*lead[1:], size), dtype) for size in set(sizes)}
            parts = [Tensor(zeros[size], name=name) for name, size in zip(names, sizes)]
            return [parts[0] if len(parts) == 1 else tuple(parts)] * n
        owner = type(self).__name__
        checked = []
        for (name, s), size in zip(self._hx_parts(hx, names), sizes):
            s = self._tensor(s, name)
            shape = (*lead, size)
            if s.shape != shape:
                kind = "batched 3-D" if batch is not None else "unbatched 2-D"
                raise ValueError(f"{owner}: {name} must have shape {shape} for a {kind} input, got {s.shape}")
            _check_dtype(owner, name, s, dtype)
            checked.append(s if order is None else s[:, order])
        if len(checked) == 1:
            return [checked[0][k] for k in range(n)]
        return [(checked[0][k], checked[1][k]) for k in range(n)]

    def _final(self, finals: list[Any]) -> Any:
        if isinstance(finals[0], tuple):
            return stack([s[0] for s in finals], axis=0), stack([s[1] for s in finals], axis=0)
        return stack(finals, axis=0)

    def _dropout_mask(self, like: Tensor) -> Tensor:
        """Inverted-dropout mask (a constant): keep with probability 1-p, scale the kept units by 1/(1-p)."""
        p = self.dropout
        if p >= 1:
            return Tensor(np.zeros(like.shape, like.dtype))
        keep = get_rng().random(like.shape) >= p
        return Tensor((keep / (1.0 - p)).astype(like.dtype))

    def _run_direction(
        self,
        x: Tensor,
        init: list[Any],
        layer: int,
        d: int,
        sfx: str,
        keep_states: bool,
        sizes: np.ndarray | None = None,
        order: np.ndarray | None = None,
    ) -> tuple[Tensor, list[Any], Any]:
        """Unroll one layer in one direction over x (T, [B,] I_l), or over packed rows (N, I_l) whose step t has
        ``sizes[t]`` rows (the sequences ``order[:sizes[t]]`` of the caller's batch).

        Returns (h at every step: stacked (T, [B,] H), or packed rows (N, H); the state after each step if
        ``keep_states`` else []; the final state).
        """
        T = x.shape[0] if sizes is None else len(sizes)
        w_ih = getattr(self, "weight_ih" + sfx)
        w_hh = getattr(self, "weight_hh" + sfx)
        b_ih = getattr(self, "bias_ih" + sfx, None)
        b_hh = getattr(self, "bias_hh" + sfx, None)
        # The input projection of every step at once: one (T*B, I) @ (I, nH) matmul instead of T small ones.
        xw_all = affine(x, w_ih, b_ih + b_hh if b_ih is not None and self._fold_bias else b_ih)
        step_b_hh = None if self._fold_bias else b_hh
        # Names for the per-step parameter aliases (bptt.record): W_hh's and b_hh's, and the biases in xw_all.
        w_name, b_name = "weight_hh" + sfx, "bias_hh" + sfx
        folded = () if b_ih is None else ("bias_ih" + sfx, b_name) if self._fold_bias else ("bias_ih" + sfx,)
        state = init[layer * (2 if self.bidirectional else 1) + d]
        if sizes is not None:
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            init_state, ended = state, []
            if d:  # the reverse pass starts at the last step, which only the longest sequences have
                state = _rows(state, 0, int(sizes[-1]))
        hs: list[Any] = [None] * T
        states: list[Any] = [None] * T if keep_states else []
        for t in range(T - 1, -1, -1) if d else range(T):
            with scope(f"t={t}"):  # the step's slice of the input projection belongs to the step too
                if sizes is None:
                    span = None
                    xw = xw_all[t]
                else:
                    n, have = int(sizes[t]), (state[0] if isinstance(state, tuple) else state).shape[0]
                    span = slice(int(starts[t]), int(starts[t]) + n)
                    xw = xw_all[span]
                    if n < have:  # forward: the sequences of length t ended at step t-1; keep their final state
                        ended.append(_rows(state, n, have))
                        state = _rows(state, 0, n)
                    elif n > have:  # reverse: the sequences of length t+1 start here, from their initial state
                        state = _join(state, _rows(init_state, have, n))
                uses = _param_uses() if STEP_OBSERVERS else None
                w, b = (w_hh, step_b_hh) if uses is None else (_use(w_hh, w_name, uses), _use(step_b_hh, b_name, uses))
                with scope("cell"):
                    state, gates = self._step(xw, state, w, b, sfx, uses)
            h = state[0] if isinstance(state, tuple) else state
            hs[t] = h
            if keep_states:
                states[t] = state
            if STEP_OBSERVERS:
                c = state[1] if isinstance(state, tuple) else None
                rows = None if sizes is None else order[: int(sizes[t])]
                proj = None
                if uses is not None and xw_all.requires_grad:
                    proj = StepProjection(xw_all, x, t, "weight_ih" + sfx, folded, span)
                batch = None if sizes is None else len(order)
                _notify(self, self._kind, layer, d, t, h, c, gates, rows, batch, uses, proj)
        if sizes is None:
            return stack(hs, axis=0), states, state
        if ended:  # rows back in sorted order: the longest sequences (still running) first
            state = _join(state, *reversed(ended))
        return cat(hs, axis=0), states, state


class RNN(_RNNKind, _RNNBase):
    """Multi-layer Elman RNN (tanh or relu), PyTorch's ``nn.RNN``; see ``_RNNBase.forward`` for the call."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = None,
    ) -> None:
        self._options("RNN", nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype)


class GRU(_GRUKind, _RNNBase):
    """Multi-layer GRU, PyTorch's ``nn.GRU``; see ``_RNNBase.forward`` for the call."""


class LSTM(_LSTMKind, _RNNBase):
    """Multi-layer LSTM, PyTorch's ``nn.LSTM`` (with ``proj_size``), plus optional peepholes and pluggable activations.

    ``proj_size=P > 0`` projects each layer's h to P units with ``weight_hr_l{k}`` (P, H), as PyTorch: h_n is
    (L*D, B, P), c_n (L*D, B, H), the output (T, B, D*P), and ``weight_hh_l{k}`` is (4H, P); a torch
    ``nn.LSTM(..., proj_size=P)`` state dict loads as is. ``peephole``, ``gate_activation`` and
    ``cell_activation`` mean what they mean for ``LSTMCell``; peephole weights are named ``weight_ci_l0``,
    ``weight_cf_l0``, ``weight_co_l0`` (``..._reverse``). The call returns ``(output, (h_n, c_n))``; see
    ``_RNNBase.forward``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        peephole: bool = False,
        gate_activation: str | Activation = "sigmoid",
        cell_activation: str | Activation = "tanh",
        dtype: Any = None,
    ) -> None:
        self._options("LSTM", peephole, gate_activation, cell_activation)
        self.proj_size = _check_size("LSTM", "proj_size", proj_size, minimum=0)
        if self.proj_size and isinstance(hidden_size, numbers.Integral) and self.proj_size >= hidden_size:
            raise ValueError(f"LSTM: proj_size must be smaller than hidden_size, got {proj_size} >= {hidden_size}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype)
