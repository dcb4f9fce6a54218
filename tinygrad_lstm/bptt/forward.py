"""Gradients through time without backpropagating through time: RTRL, SnAp-1 and UORO, by forward mode.

A recurrent cell maps (state s_{t-1}, input x_t) to s_t with parameters theta. The gradient of a loss summed over
steps needs, at every step, the *influence* M_t = ds_t/dtheta (for an LSTM s = (h, c)), which obeys

    M_t = J_s M_{t-1} + J_theta,    J_s = ds_t/ds_{t-1},  J_theta = the immediate ds_t/dtheta,

and dL/dtheta = sum_t dL_t/dh_t M_t[h] (+ the ordinary gradient of parameters used in the loss, a readout).

* ``rtrl`` (Williams & Zipser 1989) carries M_t exactly: one forward-mode pass per step with one tangent direction
  per parameter entry (P directions), the state's tangent seeded with M_{t-1} and each parameter's with an
  ``ops.Basis`` (its own block of directions). No graph is kept across steps: memory is P x B x S whatever T is,
  time per step grows as S^2 P, i.e. H^4.
* ``snap`` (SnAp-1, Menick et al. 2021) keeps M only where a parameter acts on the state within one step (the
  pattern of J_theta, at most n entries per parameter: one unit for an RNN or GRU weight, (h_i, c_i) for an LSTM's);
  exact when units do not interact (a diagonal recurrent weight). Per step: J_s from S tangent directions and J_theta
  from C compressed directions (entries that move disjoint units share one, about gates x (I + H) of them): no
  H^4 product and no P x S array, so time and memory per step are O(S^2 B + P B).
* ``uoro`` (Tallec & Ollivier 2018) keeps a random rank-one M ~ s~ theta~^T per batch element, unbiased: one JVP
  (J_s s~) and one VJP per batch element (nu^T J_theta) per step.

Each leaves the gradient in the parameters' ``.grad`` (accumulating, as ``backward()``) and returns the total loss.
``compare_gradient_methods`` measures them against BPTT (the exact gradient) on one problem.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import engine, ops
from ..tensor import Tensor, backward, enable_grad, get_tangent, leaves, no_grad, set_tangent
from .jacobians import _parameters, _prepare, _state_parts
from .recording import _quiet

LossFn = Callable[[Tensor, Any], Tensor]


# ------------------------------------------------------------------------------------------------ the problem


class _Problem:
    """One call's inputs, checked: xs as (T, B, I), the initial state's parts, targets per step, parameters."""

    def __init__(self, cell: Callable, xs: Any, ys: Any, loss_fn: Any, state: Any, fn: str) -> None:
        if not callable(loss_fn):
            raise TypeError(f"{fn}: loss_fn must be callable as loss_fn(h_t, y_t), got {type(loss_fn).__name__}")
        self.fn, self.cell, self.loss_fn = fn, cell, loss_fn
        self.x, self.init, self.is_tuple = _prepare(cell, xs, state, fn)
        T = self.x.shape[0]
        if isinstance(ys, (Tensor, np.ndarray)):
            arr = ys.data if isinstance(ys, Tensor) else ys
            if arr.ndim < 1 or arr.shape[0] != T:
                raise ValueError(f"{fn}: ys needs one entry per step ({T}), got shape {arr.shape}")
            self.ys = [arr[t] for t in range(T)]
        elif isinstance(ys, (list, tuple)):
            if len(ys) != T:
                raise ValueError(f"{fn}: ys needs one entry per step ({T}), got {len(ys)}")
            self.ys = [None if y is None else (y.data if isinstance(y, Tensor) else y) for y in ys]
        else:
            raise TypeError(f"{fn}: ys must be a Tensor, an ndarray or a list with one entry (or None) per step")
        self.params = [p for p in _parameters(cell) if p.requires_grad]
        self.sizes = [p.data.size for p in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int).tolist()
        self.P = int(self.offsets[-1])
        self.dtype = self.init[0].dtype

    def state(self, arrays: Sequence[np.ndarray]) -> Any:
        """Arrays as the state the cell takes (fresh leaves)."""
        ts = [Tensor(a) for a in arrays]
        return tuple(ts) if self.is_tuple else ts[0]

    def parts(self, s: Any) -> list[Tensor]:
        """The cell's output state as its parts [h, (c)], checked against the initial state's shapes."""
        return _state_parts(s, self.init, self.fn)

    def step_loss(self, t: int, h: np.ndarray) -> tuple[float, np.ndarray | None]:
        """Loss at step t and dL_t/dh_t; parameters used inside loss_fn (a readout) get their gradient here."""
        if self.ys[t] is None:
            return 0.0, None
        leaf = Tensor(h, requires_grad=True)
        y = self.ys[t]
        with enable_grad():
            loss = self.loss_fn(leaf, Tensor(y) if isinstance(y, np.ndarray) else y)
            if not isinstance(loss, Tensor) or loss.data.size != 1:
                raise TypeError(f"{self.fn}: loss_fn must return a one-element Tensor, got {type(loss).__name__}")
            if loss.requires_grad:
                loss.backward()
        return float(loss.item()), leaf.grad

    def add_grad(self, flat: np.ndarray) -> None:
        """Accumulate a flat gradient (P,) into the parameters' ``.grad``."""
        for p, lo, hi in zip(self.params, self.offsets, self.offsets[1:]):
            g = flat[lo:hi].reshape(p.shape).astype(p.dtype)
            p.grad = g if p.grad is None else p.grad + g


def _check_n(n: Any, fn: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n != 1:
        raise ValueError(f"{fn}: only SnAp-1 (n=1) is implemented, got n={n!r}")
    return 1


# ------------------------------------------------------------------------------------------------ RTRL


def rtrl(cell: Callable, xs: Any, ys: Any, loss_fn: LossFn, state: Any = None) -> float:
    """Real-time recurrent learning: the exact gradient of sum_t loss_fn(h_t, ys[t]), carried forward in time.

    ``cell(x, state) -> state`` (``RNNCell``, ``LSTMCell``, ``GRUCell`` or any cell of Tensor ops with parameters);
    ``xs`` (T, B, I) (or (T, I)); ``ys`` one target per step (a (T, ...) array or Tensor, or a list with None to skip
    a step); ``loss_fn(h_t, y_t)`` a scalar Tensor, h_t of shape (B, H). The influence matrices dh_t/dtheta (and
    dc_t/dtheta for an LSTM) are propagated with one forward-mode pass per step in P directions (P = the number
    of parameter entries); no graph is kept across steps. Gradients accumulate into the parameters' ``.grad``;
    returns the total loss.
    """
    prob = _Problem(cell, xs, ys, loss_fn, state, "rtrl")
    P = prob.P
    arrays = list(prob.init)
    M = [np.zeros((P, *a.shape), prob.dtype) for a in arrays]  # the influence of every parameter on each part
    grad = np.zeros(P, np.float64)
    total = 0.0
    with _quiet():
        for t in range(prob.x.shape[0]):
            with no_grad(), engine.DualLevel(max(P, 1)):
                s_in = prob.state(arrays)
                for part, m in zip([s_in] if not prob.is_tuple else s_in, M):
                    set_tangent(part, m)
                for p, off in zip(prob.params, prob.offsets):
                    set_tangent(p, ops.Basis(P, off, p.shape))
                try:
                    parts = prob.parts(cell(Tensor(prob.x[t]), s_in))
                    arrays = [p.data for p in parts]
                    M = [_tangent_or_zeros(p, P) for p in parts]
                finally:
                    for p in prob.params:
                        p._tan = None
            loss, c = prob.step_loss(t, arrays[0])
            total += loss
            if c is not None and P:
                grad += M[0].reshape(P, -1) @ c.reshape(-1).astype(np.float64)
    prob.add_grad(grad)
    return total


def _tangent_or_zeros(t: Tensor, k: int) -> np.ndarray:
    tan = get_tangent(t)
    return np.zeros((k, *t.shape), t.dtype) if tan is None else tan


# ------------------------------------------------------------------------------------------------ SnAp-1


def _immediate(
    prob: _Problem, x_t: np.ndarray, arrays: list[np.ndarray], seeds: list, k: int
) -> tuple[list[Tensor], list[np.ndarray]]:
    """One step with only the parameters seeded, each by its tangent of k directions in ``seeds`` (SnAp's
    compressed ``Basis``): the new state's parts and J_theta per part, (k, B, S_i)."""
    with no_grad(), engine.DualLevel(max(k, 1)):
        for p, seed in zip(prob.params, seeds):
            set_tangent(p, seed)
        try:
            parts = prob.parts(prob.cell(Tensor(x_t), prob.state(arrays)))
            return parts, [_tangent_or_zeros(p, max(k, 1)) for p in parts]
        finally:
            for p in prob.params:
                p._tan = None


def _state_jacobian(prob: _Problem, x_t: np.ndarray, arrays: list[np.ndarray]) -> np.ndarray:
    """J_s = ds_t/ds_{t-1} of every batch element, (B, S, S), all parts joined: S forward-mode directions."""
    widths = [a.shape[1] for a in arrays]
    S, B = sum(widths), arrays[0].shape[0]
    eye = np.eye(S, dtype=prob.dtype)
    with no_grad(), engine.DualLevel(S):
        s_in = prob.state(arrays)
        lo = 0
        for part, w in zip([s_in] if not prob.is_tuple else s_in, widths):
            set_tangent(part, np.broadcast_to(eye[:, None, lo : lo + w], (S, B, w)))
            lo += w
        parts = prob.parts(prob.cell(Tensor(x_t), s_in))
        tans = np.concatenate([_tangent_or_zeros(p, S) for p in parts], axis=2)  # (S in, B, S out)
    return np.transpose(tans, (1, 2, 0))


def snap(cell: Callable, xs: Any, ys: Any, loss_fn: LossFn, state: Any = None, *, n: int = 1) -> float:
    """SnAp-1: RTRL with the influence kept only where each parameter acts on the state within one step.

    Same arguments and effect as ``rtrl``. The pattern (the units each parameter entry moves in one step: unit i
    for row i of an RNN's or GRU's weights, and all of a unit's state, h_i and c_i, for an LSTM's) is found once,
    from the immediate Jacobian at a random state and input; M is stored compressed, (P, B, n) for at most n
    entries per parameter. Per step: the state Jacobian from S forward-mode directions and J_theta from C
    compressed directions (``_colors``: an indexed ``Basis`` per parameter), M_t = pattern * (J_s M_{t-1} +
    J_theta), with no S^2 P product and no (P, B, S) array.
    Exact when units do not interact (a diagonal recurrent weight); a biased approximation otherwise.
    Only ``n=1`` is implemented.
    """
    fn = "snap"
    _check_n(n, fn)
    prob = _Problem(cell, xs, ys, loss_fn, state, fn)
    P = prob.P
    arrays = list(prob.init)
    S = sum(a.shape[1] for a in arrays)
    total = 0.0
    grad = np.zeros(P, np.float64)
    with _quiet():
        units, valid = _pattern(prob, S)
        width = units.shape[1]
        M = np.zeros((P, arrays[0].shape[0], width), np.float64)  # M[p, b, a] = ds[units[p, a]]/dtheta_p
        color, C = _colors(units, valid)
        seeds = _compressed_seeds(prob, color, C)
        H = arrays[0].shape[1]
        for t in range(prob.x.shape[0]):
            x_t = prob.x[t]
            if P:
                Js = _state_jacobian(prob, x_t, arrays)  # (B, S, S)
                # The pattern's block of J_s for each parameter: Js[b, units[p, a'], units[p, a]] -> (P, B, n, n)
                blk = Js[:, units[:, :, None], units[:, None, :]].transpose(1, 0, 2, 3)
                prop = np.einsum("pbij,pbj->pbi", blk, M)
            parts, Jth = _immediate(prob, x_t, arrays, seeds, C)
            arrays = [p.data for p in parts]
            if P:
                J = np.concatenate(Jth, axis=2).astype(np.float64)  # (C, B, S), compressed
                # Parameter p alone moves its units within its colour's direction: read them off there.
                M = (prop + J[color[:, None], :, units].transpose(0, 2, 1)) * valid[:, None, :]
            loss, c = prob.step_loss(t, arrays[0])
            total += loss
            if c is not None and P:
                sel = units < H  # entries of h (the loss sees h only)
                ch = c.astype(np.float64)[:, np.where(sel, units, 0)].transpose(1, 0, 2)  # (P, B, n)
                grad += np.sum(M * ch * sel[:, None, :], axis=(1, 2))
    prob.add_grad(grad)
    return total


def _pattern(prob: _Problem, S: int) -> tuple[np.ndarray, np.ndarray]:
    """For each parameter entry, the state entries it moves in one step: (units (P, n) padded with 0, valid mask).

    Read off one step's graph by S backward passes (row s of J_theta each), so memory stays O(P) where the P
    forward directions of RTRL would take P x B x S. Probed at a random state and input, so a zero in the data
    does not hide an entry of the pattern. Parameters' ``.grad`` is left alone."""
    P = prob.P
    if not P:
        return np.zeros((0, 1), int), np.zeros((0, 1))
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(a.shape).astype(prob.dtype) for a in prob.init]
    x = rng.standard_normal(prob.x[0].shape).astype(prob.dtype)
    ps, ss = [], []  # the pattern's (parameter entry, state entry) pairs
    with _grads_kept(prob.params), enable_grad():
        parts = prob.parts(prob.cell(Tensor(x), prob.state(arrays)))
        lo = 0
        for part in parts:
            for j in range(part.shape[1]):
                if part.requires_grad:
                    seed = np.zeros(part.shape, part.dtype)
                    seed[:, j] = 1
                    hit = np.flatnonzero(_flat_vjp(prob, [part], [seed], retain_graph=lo + j < S - 1))
                    ps.append(hit)
                    ss.append(np.full(hit.size, lo + j))
            lo += part.shape[1]
    ps = np.concatenate(ps or [np.zeros(0, int)])
    ss = np.concatenate(ss or [np.zeros(0, int)])
    widths = {a.shape[1] for a in prob.init}
    if len(prob.init) > 1 and len(widths) == 1:
        # A unit is all of its state: an LSTM's unit i is (h_i, c_i). A parameter that moves c_i in one step reaches
        # h_i in the same step, but one that moves only h_i (the output gate's) reaches c_i one step later: keeping
        # whole units keeps SnAp-1 exact whenever units do not interact.
        H, n_parts = widths.pop(), len(prob.init)
        pairs = np.unique(np.stack([ps, ss % H]), axis=1)
        ps = np.tile(pairs[0], n_parts)
        ss = np.concatenate([pairs[1] + i * H for i in range(n_parts)])
    order = np.lexsort((ss, ps))  # by parameter entry, then state entry
    ps, ss = ps[order], ss[order]
    counts = np.bincount(ps, minlength=P)
    width = max(1, int(counts.max(initial=0)))
    rank = np.arange(ps.size) - (np.cumsum(counts) - counts)[ps]
    units, valid = np.zeros((P, width), int), np.zeros((P, width))
    units[ps, rank], valid[ps, rank] = ss, 1.0
    return units, valid


def _colors(units: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """Group parameter entries whose units are disjoint into one tangent direction (Curtis-Powell-Reid compression).

    An RNN's or GRU's weight row i all moves unit i alone, so about I + H entries per gate share a unit and the
    colours number that many, not P = (I + H) x gates x H: J_theta costs one step with C directions. When any two
    entries' unit sets are equal or disjoint (the built-in cells), an entry's colour is its rank among the
    entries of its set; otherwise greedy: the first colour above every colour already used on its units."""
    P = units.shape[0]
    if not P:
        return np.zeros(0, int), 0
    sets = np.where(valid > 0, units, -1)
    distinct, group = np.unique(sets, axis=0, return_inverse=True)
    group = group.reshape(-1)
    members = distinct[distinct >= 0]
    if np.unique(members).size == members.size:  # the distinct sets are disjoint
        order = np.argsort(group, kind="stable")
        counts = np.bincount(group)
        color = np.empty(P, int)
        color[order] = np.arange(P) - (np.cumsum(counts) - counts)[group[order]]
    else:
        nxt = np.zeros(int(units.max()) + 1, int)  # per unit, the lowest colour still free there
        color = np.zeros(P, int)
        for p, us in enumerate(units[p][valid[p] > 0].tolist() for p in range(P)):
            c = max((nxt[u] for u in us), default=0)
            color[p] = c
            nxt[us] = c + 1
    return color, int(color.max()) + 1


def _compressed_seeds(prob: _Problem, color: np.ndarray, C: int) -> list[ops.Basis]:
    """Each parameter's tangent: entry p is 1 in its colour's direction (a ``Basis`` with an index, never dense
    for ``Linear``, so J_theta costs O(P B) per step, not O(C P))."""
    return [
        ops.Basis(max(C, 1), 0, p.shape, index=color[lo:hi])
        for p, lo, hi in zip(prob.params, prob.offsets, prob.offsets[1:])
    ]


# ------------------------------------------------------------------------------------------------ UORO


def uoro(cell: Callable, xs: Any, ys: Any, loss_fn: LossFn, state: Any = None, *, seed: int | None = None) -> float:
    """Unbiased online recurrent optimization: M_t ~ s~_t theta~_t^T, a random rank-one estimate per batch element.

    Same arguments and effect as ``rtrl``; ``seed`` seeds the random signs (numpy's default_rng). Per step:
    J_s s~ by one forward-mode pass, nu^T J_theta by one VJP through the step per batch element (nu a random
    +-1 vector), then s~ <- rho0 J_s s~ + rho1 nu and theta~ <- theta~/rho0 + nu^T J_theta/rho1 with the
    variance-minimising rho0 = sqrt(|theta~| / |J_s s~|), rho1 = sqrt(|nu^T J_theta| / |nu|). E[s~ theta~^T]
    equals M_t, so the gradient is unbiased; its variance is what the method pays for O(P) memory.
    """
    fn = "uoro"
    prob = _Problem(cell, xs, ys, loss_fn, state, fn)
    rng = np.random.default_rng(seed)
    P, B = prob.P, prob.x.shape[1]
    arrays = list(prob.init)
    widths = [a.shape[1] for a in arrays]
    s_t = np.zeros((B, sum(widths)))  # s~ per batch element, all parts joined
    th_t = np.zeros((B, P))  # theta~ per batch element
    grad = np.zeros(P, np.float64)
    total, eps = 0.0, 1e-7
    cuts = np.cumsum(widths)[:-1]
    with _quiet():
        for t in range(prob.x.shape[0]):
            x_t = prob.x[t]
            with no_grad(), engine.DualLevel(1):  # J_s s~
                s_in = prob.state(arrays)
                for part, piece in zip([s_in] if not prob.is_tuple else s_in, np.split(s_t, cuts, axis=1)):
                    set_tangent(part, piece[None])
                parts = prob.parts(cell(Tensor(x_t), s_in))
                js = np.concatenate([_tangent_or_zeros(p, 1)[0] for p in parts], axis=1).astype(np.float64)
            nu = rng.choice([-1.0, 1.0], size=s_t.shape)
            nuj = _per_example_vjp(prob, x_t, arrays, nu, cuts)  # (B, P)
            arrays = [p.data for p in parts]
            r0 = np.sqrt((np.linalg.norm(th_t, axis=1) + eps) / (np.linalg.norm(js, axis=1) + eps))[:, None]
            r1 = np.sqrt((np.linalg.norm(nuj, axis=1) + eps) / (np.linalg.norm(nu, axis=1) + eps))[:, None]
            s_t = r0 * js + r1 * nu
            th_t = th_t / r0 + nuj / r1
            loss, c = prob.step_loss(t, arrays[0])
            total += loss
            if c is not None and P:
                grad += np.sum(th_t * np.sum(c.astype(np.float64) * s_t[:, : widths[0]], axis=1)[:, None], axis=0)
    prob.add_grad(grad)
    return total


def _per_example_vjp(prob: _Problem, x_t: np.ndarray, arrays: list[np.ndarray], nu: np.ndarray, cuts) -> np.ndarray:
    """nu_b^T dJ s_t[b]/dtheta for each batch element b, (B, P): one backward through the step per element (the
    parameters are shared by the batch, so one backward would sum them). Parameters' ``.grad`` is left alone."""
    P, B = prob.P, nu.shape[0]
    out = np.zeros((B, P))
    if not P:
        return out
    with _grads_kept(prob.params), enable_grad():
        parts = prob.parts(prob.cell(Tensor(x_t), prob.state(arrays)))
        roots = [p for p in parts if p.requires_grad]
        pieces = [piece for p, piece in zip(parts, np.split(nu, cuts, axis=1)) if p.requires_grad]
        for b in range(B):
            if not roots:
                break
            seeds = []
            for piece, r in zip(pieces, roots):
                s = np.zeros(r.shape, r.dtype)
                s[b] = piece[b]
                seeds.append(s)
            out[b] = _flat_vjp(prob, roots, seeds, retain_graph=b < B - 1)
    return out


@contextmanager
def _grads_kept(params: list[Tensor]):
    """Backward passes inside leave the parameters' ``.grad`` as it was before."""
    kept = [p.grad for p in params]
    try:
        yield
    finally:
        for p, g in zip(params, kept):
            p.grad = g


def _flat_vjp(prob: _Problem, roots: list[Tensor], seeds: list[np.ndarray], retain_graph: bool) -> np.ndarray:
    """sum_i <seed_i, d root_i / dtheta> as a flat (P,) array (inside ``_grads_kept``: it overwrites ``.grad``)."""
    for p in prob.params:
        p.grad = None
    backward(roots, seeds, retain_graph=retain_graph)
    flat = np.zeros(prob.P)
    for p, lo, hi in zip(prob.params, prob.offsets, prob.offsets[1:]):
        if p.grad is not None:
            flat[lo:hi] = p.grad.reshape(-1)
    return flat


# ------------------------------------------------------------------------------------------------ BPTT


def _bptt(cell: Callable, xs: Any, ys: Any, loss_fn: LossFn, state: Any = None, *, k: int | None = None) -> float:
    """Backpropagation through time over the whole sequence (k None) or truncated to chunks of k steps; the same
    contract as ``rtrl`` (gradients accumulate into ``.grad``; returns the total loss)."""
    fn = "bptt" if k is None else f"tbptt:{k}"
    prob = _Problem(cell, xs, ys, loss_fn, state, fn)
    T = prob.x.shape[0]
    k = T if k is None else k
    total = 0.0
    s = prob.state(prob.init)
    with _quiet(), enable_grad():
        for lo in range(0, T, k):
            chunk = None
            for t in range(lo, min(lo + k, T)):
                s = cell(Tensor(prob.x[t]), s)
                h = prob.parts(s)[0]
                if prob.ys[t] is None:
                    continue
                y = prob.ys[t]
                loss = loss_fn(h, Tensor(y) if isinstance(y, np.ndarray) else y)
                if not isinstance(loss, Tensor) or loss.data.size != 1:
                    raise TypeError(f"{fn}: loss_fn must return a one-element Tensor, got {type(loss).__name__}")
                total += float(loss.item())
                chunk = loss if chunk is None else chunk + loss
            if chunk is not None and chunk.requires_grad:
                chunk.backward()
            parts = prob.parts(s)
            s = tuple(p.detach() for p in parts) if prob.is_tuple else parts[0].detach()
    return total


# ------------------------------------------------------------------------------------------------ the study

METHODS = ("bptt", "tbptt:10", "rtrl", "uoro", "snap1")


def _method(name: str, fn: str) -> Callable[..., float]:
    if name == "bptt":
        return _bptt
    if name.startswith("tbptt:"):
        try:
            k = int(name.split(":", 1)[1])
        except ValueError:
            k = 0
        if k < 1:
            raise ValueError(f"{fn}: method {name!r}: the truncation must be a positive int, as in 'tbptt:10'")
        return lambda *a, **kw: _bptt(*a, k=k, **kw)
    if name == "rtrl":
        return rtrl
    if name == "uoro":
        return uoro
    if name in ("snap", "snap1"):
        return snap
    raise ValueError(f"{fn}: unknown method {name!r}; valid: 'bptt', 'tbptt:K', 'rtrl', 'uoro', 'snap1'")


def compare_gradient_methods(
    cell: Callable,
    xs: Any,
    ys: Any,
    loss_fn: LossFn,
    methods: Sequence[str] = METHODS,
    *,
    state: Any = None,
    params: Sequence[Tensor] | None = None,
    seed: int | None = 0,
) -> dict[str, dict[str, float]]:
    """Each method's gradient on one problem against BPTT's (the exact one): per method, ``cosine`` (to the exact
    gradient), ``rel_error`` (|g - g_exact| / |g_exact|), ``seconds`` and ``peak_mib`` (peak memory allocated
    during the call, numpy arrays included, by tracemalloc), and ``loss``.

    Methods: "bptt", "tbptt:K" (truncated to chunks of K steps), "rtrl", "uoro" (seeded by ``seed``), "snap1".
    The gradient compared is over ``params`` (default: the cell's parameters and the loss's own, a readout's,
    found by evaluating the loss once); every one of those parameters' ``.grad`` is restored afterwards.
    """
    fn = "compare_gradient_methods"
    if isinstance(methods, str) or not methods:
        raise ValueError(f"{fn}: methods must be a non-empty sequence of names, got {methods!r}")
    runners = {m: _method(m, fn) for m in methods}
    watched = list(params) if params is not None else _parameters(cell) + _readout(cell, xs, ys, loss_fn, state, fn)
    watched = list({id(p): p for p in watched}.values())
    kept = {id(p): (p, p.grad) for p in watched}

    def run(name: str, runner: Callable[..., float]) -> tuple[dict[str, float], dict[int, np.ndarray]]:
        for p, _ in kept.values():
            p.grad = None
        kw = {"seed": seed} if runner is uoro else {}
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            loss = runner(cell, xs, ys, loss_fn, state, **kw)
            seconds = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
        grads = {id(p): (np.zeros(p.shape) if p.grad is None else np.asarray(p.grad, np.float64)) for p in watched}
        return {"loss": loss, "seconds": seconds, "peak_mib": peak}, grads

    try:
        _, exact = run("bptt", _bptt)
        g0 = np.concatenate([g.reshape(-1) for g in exact.values()]) if exact else np.zeros(0)
        out: dict[str, dict[str, float]] = {}
        for name, runner in runners.items():
            stats, grads = run(name, runner)
            g = np.concatenate([grads[i].reshape(-1) for i in exact]) if exact else np.zeros(0)
            n0, n1 = float(np.linalg.norm(g0)), float(np.linalg.norm(g))
            stats["cosine"] = float(g @ g0 / (n0 * n1)) if n0 > 0 and n1 > 0 else math.nan
            stats["rel_error"] = float(np.linalg.norm(g - g0) / n0) if n0 > 0 else math.nan
            out[name] = stats
    finally:
        for p, g in kept.values():
            p.grad = g
    return out


def _readout(cell: Callable, xs: Any, ys: Any, loss_fn: LossFn, state: Any, fn: str) -> list[Tensor]:
    """The leaves that need a gradient in the loss at its first scored step (a readout's parameters), found by
    evaluating loss_fn once at a zero state (nothing is backpropagated)."""
    prob = _Problem(cell, xs, ys, loss_fn, state, fn)
    t = next((i for i, y in enumerate(prob.ys) if y is not None), None)
    if t is None:
        return []
    h = Tensor(np.zeros_like(prob.init[0]), requires_grad=True)
    y = prob.ys[t]
    with enable_grad(), _quiet():
        loss = loss_fn(h, Tensor(y) if isinstance(y, np.ndarray) else y)
    if not isinstance(loss, Tensor):
        return []
    return [v for v in leaves(loss) if v is not h]
