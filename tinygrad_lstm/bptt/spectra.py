"""Jacobian spectra by forward and reverse mode: ||dh_T/dh_t||_2 by a Krylov iteration, and Lyapunov exponents.

``power_norms`` is ``jacobian_norms(method="power")``. It never builds a Jacobian. For every t and batch element b
it runs a locally optimal block iteration (LOBPCG's three-term recurrence) on J_t J_t^T, J_t = dh_T/dh_t, with
the two products it needs made by the engine:

* J_t w_t for every t at once is one forward-mode sweep over the trajectory: the tangent of target t is injected
  at h_t and carried with the others (one leading-axis direction per target still running), so the sweep costs
  one pass with up to T directions, not T passes.
* J_t^T z for every t at once is one backward sweep through small per-step graphs of the trajectory replicated
  in the batch (rows do not mix in a recurrent cell), one row block per target's vector, each dropped below the
  earliest step that uses it; the gradient at every h_t gives J_t^T z_s for all t and s nearby.

The Jacobians share the suffix of the recurrence, so their top left singular vectors (at h_T) are close for
neighbouring t: the new vector z_s = J_s J_s^T q_s / sigma_s of every target s is pushed back through the one
backward sweep, and target t's Rayleigh-Ritz subspace holds, besides its own Ritz vector q_t and LOBPCG's
previous direction, the new vectors of the targets within ``_WINDOW`` steps of it. A target stops (and leaves
both sweeps) when its Ritz triple (sigma, q, w), J^T q = sigma w, passes ``_converged``: a Temple-type estimate
of the relative error from the residual ||J w - sigma q|| and the gap to the next Ritz value, or Weyl's bound.
Each round costs two sweeps of about T^2/2 directions x steps (every vector crosses its own suffix).

``lyapunov_spectrum`` propagates k orthonormal tangent directions of the whole state (h and c for an LSTM) with
one forward-mode pass per step and re-orthonormalizes them by QR (Benettin et al. 1980; Shimada and Nagashima
1979): the k largest exponents are the averages of log |R_ii|.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import engine
from ..tensor import Tensor, backward, enable_grad, get_tangent, no_grad, set_tangent
from .jacobians import _frozen, _prepare, _split_state, _state_parts
from .recording import _quiet

_WINDOW = 3  # neighbours on each side whose new vectors join a target's Ritz subspace
_ROWS = 64  # trajectory copies in the backward graph: cotangents per backward pass


def _check_tol(tol: Any, max_iter: Any, fn: str) -> tuple[float, int]:
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer)) or not 0 < tol < 1:
        raise ValueError(f"{fn}: tol must be a number in (0, 1), got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"{fn}: max_iter must be an int >= 1, got {max_iter!r}")
    return float(tol), int(max_iter)


def _tangent_or_zeros(t: Tensor, k: int) -> np.ndarray:
    tan = get_tangent(t)
    return np.zeros((k, *t.shape), t.dtype) if tan is None else tan


def _normalize(v: np.ndarray, *images: np.ndarray) -> tuple[np.ndarray, ...]:
    """v / ||v|| along the last axis (0 where v is 0), and the same scaling applied to its images."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    scale = np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)
    return (v * scale, *(y * scale for y in images))


class _Sweeps:
    """The trajectory of one call and the two products on it: J_t w_t (forward) and J_t^T z (backward).

    The backward side is one small graph per step, each step's input state replicated in the batch (rows do not
    mix in a recurrent cell) as fresh leaves, one row per source z still alive at that step: the cotangent of
    source s flows from h_T down to h_{s - _WINDOW}, the earliest target that uses it, and no further. A sweep
    carries the cotangents down step by step with the engine's backward of each step's graph. The graphs are
    retained and reused while most of their rows are still wanted, and recorded afresh for the sources left.
    """

    def __init__(self, cell: Callable, x: np.ndarray, init: list[np.ndarray], is_tuple: bool, fn: str) -> None:
        self.cell, self.x, self.is_tuple, self.fn = cell, x, is_tuple, fn
        T, B = x.shape[:2]
        self.T, self.B, self.H = T, B, init[0].shape[1]
        self.states = [[a.copy() for a in init]]  # states[t]: the parts entering step t, (B, ·) each
        with no_grad():
            s: Any = tuple(Tensor(a) for a in init) if is_tuple else Tensor(init[0])
            for t in range(T):
                s = cell(Tensor(x[t]), s)
                parts = _state_parts(s, init, fn)
                self.states.append([p.data.copy() for p in parts])
        self._graph: tuple[list[int], dict[int, tuple[list[Tensor], list[Tensor]]]] | None = None

    def _record(self, sources: list[int]) -> dict[int, tuple[list[Tensor], list[Tensor]]]:
        """Step graphs for sorted ``sources``: step s gets one row block per source <= s + _WINDOW."""
        steps = {}
        n = len(sources)
        for s in range(self.T - 1, max(sources[0] - _WINDOW, 0) - 1, -1):
            while n and sources[n - 1] > s + _WINDOW:
                n -= 1
            leaves = [Tensor(np.tile(a, (n, 1)), requires_grad=True) for a in self.states[s]]
            with enable_grad():
                out = self.cell(Tensor(np.tile(self.x[s], (n, 1))), tuple(leaves) if self.is_tuple else leaves[0])
            h, rest = _split_state(out, self.fn)
            steps[s] = (leaves, [h, *rest])
        return steps

    def _graph_for(self, sources: list[int]) -> tuple[list[int], dict]:
        """The retained graphs if they hold every source and at most half their rows are idle; else new ones."""
        if self._graph is not None:
            have, steps = self._graph
            if set(sources) <= set(have) and 2 * len(sources) >= len(have):
                return have, steps
        self._graph = None  # free the old graphs before recording new ones
        graph = (sources, self._record(sources))
        if len(sources) <= _ROWS:
            self._graph = graph
        return graph

    def backward(self, z: np.ndarray, sources: list[int]) -> np.ndarray:
        """img[t, o] = J_t^T z[t + o - _WINDOW] (T, 2 _WINDOW + 1, B, H) for the sources within the window of t."""
        T, B, W = self.T, self.B, _WINDOW
        img = np.zeros((T, 2 * W + 1, B, self.H))
        for lo in range(0, len(sources), _ROWS):
            have, steps = self._graph_for(sources[lo : lo + _ROWS])
            wanted = set(sources)
            grads: list[np.ndarray] | None = None
            for s in range(T - 1, max(have[0] - W, 0) - 1, -1):
                leaves, outs = steps[s]
                n = leaves[0].shape[0] // B
                if grads is None:  # the seeds at h_T: z of each source (zeros for one no longer wanted)
                    grads = [np.zeros((n, B, a.shape[1]), a.dtype) for a in self.states[0]]
                    for r, src in enumerate(have):
                        if src in wanted:
                            grads[0][r] = z[src]
                grads = [g[:n] for g in grads]
                roots = [(o, g.reshape(n * B, -1)) for o, g in zip(outs, grads) if o.requires_grad and g.any()]
                for leaf in leaves:
                    leaf.grad = None
                if not roots:
                    break  # nothing flows further back: the remaining images are zero
                backward([o for o, _ in roots], [g for _, g in roots], retain_graph=True)
                grads = [
                    np.zeros((n, B, leaf.shape[1]), leaf.dtype) if leaf.grad is None else leaf.grad.reshape(n, B, -1)
                    for leaf in leaves
                ]
                for r in range(n):
                    if s - W <= have[r] <= s + W:
                        img[s, have[r] - s + W] = grads[0][r]
        return img

    def forward(self, w: np.ndarray, active: np.ndarray) -> np.ndarray:
        """z[t] = J_t w[t] (T, B, H) for every active t, in one sweep: target t's direction joins at step t."""
        z = np.zeros((self.T, self.B, self.H))
        live: list[int] = []
        tans: list[np.ndarray] = []
        for s in range(int(np.argmax(active)) if active.any() else self.T, self.T):
            if active[s]:
                live.append(s)
                new = [w[s], *(np.zeros_like(a) for a in self.states[s][1:])]
                tans = [n[None] for n in new] if not tans else [np.concatenate([a, n[None]]) for a, n in zip(tans, new)]
            if not live:
                continue
            with no_grad(), engine.DualLevel(len(live)):
                parts = [Tensor(a) for a in self.states[s]]
                for p, tan in zip(parts, tans):
                    set_tangent(p, tan.astype(p.dtype, copy=False))
                out = self.cell(Tensor(self.x[s]), tuple(parts) if self.is_tuple else parts[0])
                h, rest = _split_state(out, self.fn)
                tans = [_tangent_or_zeros(p, len(live)) for p in (h, *rest)]
        if live:
            z[live] = tans[0]
        return z


def _ritz(raw: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Rayleigh-Ritz for max ||J^T q|| over q in span(raw vectors), batched over the leading axes.

    ``raw`` holds pairs (v, J^T v), (..., H) each; the first pair, if it is the current Ritz vector, gives the
    LOBPCG direction. Vectors are orthonormalized by two rounds of Gram-Schmidt, their images transformed alike
    (J^T is linear); a vector with almost nothing left is dropped. Returns sigma, the second Ritz value, q,
    J^T q, and the new direction p = q - (q . v_0) v_0 with its image (both normalized; zero where there is none).
    """
    basis: list[np.ndarray] = []
    images: list[np.ndarray] = []
    for v, y in raw:
        norm0 = np.linalg.norm(v, axis=-1, keepdims=True)
        v, y = v.copy(), y.copy()
        for _ in range(2):
            for b, yb in zip(basis, images):
                c = np.sum(v * b, axis=-1, keepdims=True)
                v -= c * b
                y -= c * yb
        n = np.linalg.norm(v, axis=-1, keepdims=True)
        keep = n > 1e-8 * np.maximum(norm0, 1e-300)
        scale = np.divide(1.0, n, out=np.zeros_like(n), where=keep)
        basis.append(v * scale)
        images.append(y * scale)
    V = np.stack(basis, axis=-2)  # (..., p, H)
    Y = np.stack(images, axis=-2)
    vals, vecs = np.linalg.eigh(Y @ np.swapaxes(Y, -1, -2))
    c = vecs[..., -1]  # (..., p): the top Ritz vector's coordinates
    sigma = np.sqrt(np.maximum(vals[..., -1], 0.0))
    sigma2 = np.sqrt(np.maximum(vals[..., -2], 0.0)) if vals.shape[-1] > 1 else np.zeros_like(sigma)
    q, yq = _normalize(np.einsum("...p,...ph->...h", c, V), np.einsum("...p,...ph->...h", c, Y))
    p, yp = _normalize(q - c[..., :1] * V[..., 0, :], yq - c[..., :1] * Y[..., 0, :])
    return sigma, sigma2, q, yq, p, yp


def _converged(z: np.ndarray, sigma: np.ndarray, sigma2: np.ndarray, q: np.ndarray, tol: float) -> np.ndarray:
    """Whether each Ritz triple (sigma, q, w), J^T q = sigma w, has sigma within tol (relative) of ||J||_2.

    z = J w gives the residual r = ||J w - sigma q||. Temple's bound for J J^T (residual sigma r) says
    sigma_1^2 - sigma^2 <= sigma^2 r^2 / (sigma^2 - sigma_2^2), i.e. a relative error of at most about
    r^2 / (2 (sigma^2 - sigma_2^2)); the second Ritz value stands in for sigma_2. Weyl's bound, r <= tol sigma,
    also suffices (it is the only test when the Ritz values are too close to give a gap).
    """
    r = np.linalg.norm(z - sigma[..., None] * q, axis=-1)
    gap = sigma**2 - sigma2**2
    est = np.divide(r**2, 2 * gap, out=np.full_like(r, np.inf), where=gap > 0)
    return (est <= tol) | (r <= tol * sigma)


def power_norms(
    cell: Callable, xs: Any, state: Any, *, tol: float, max_iter: int, fn: str = "jacobian_norms"
) -> tuple[np.ndarray, int]:
    """||dh_T/dh_t||_2, (T, B), for every t and batch element by the shared block iteration; and the rounds run."""
    tol, max_iter = _check_tol(tol, max_iter, fn)
    with _quiet(), _frozen(cell):
        x, init, is_tuple = _prepare(cell, xs, state, fn)
        sw = _Sweeps(cell, x, init, is_tuple, fn)
        T, B, H, W = sw.T, sw.B, sw.H, _WINDOW
        rng = np.random.default_rng(0)  # a fixed start: the same inputs give the same estimates
        (w,) = _normalize(rng.standard_normal((T, B, H)))
        active = np.ones(T, bool)
        sigma = np.zeros((T, B))
        q = p = yp = None
        sigma2 = np.zeros((T, B))
        rounds = 0
        while rounds < max_iter:
            rounds += 1
            z = sw.forward(w, active)  # the power step J_t J_t^T q_t / sigma_t (a random range vector first)
            if q is not None:
                # Stop a target once every batch element's Ritz triple is good enough (see _converged).
                active &= ~_converged(z, sigma, sigma2, q, tol).all(axis=1)
                if not active.any():
                    break
            idx = np.flatnonzero(active)
            (zn,) = _normalize(z * active[:, None, None])
            img = sw.backward(zn, [int(s) for s in idx])[idx]
            raw = [] if q is None else [(q[idx], sigma[idx, :, None] * w[idx]), (p[idx], yp[idx])]
            for o in range(2 * W + 1):
                shifted = np.zeros_like(zn)  # target t's neighbour t + o - W
                lo, hi = max(0, W - o), min(T, T + W - o)
                shifted[lo:hi] = zn[lo + o - W : hi + o - W]
                raw.append((shifted[idx], img[:, o]))
            s_new, s2_new, q_new, yq_new, p_new, yp_new = _ritz(raw)
            w_new = np.divide(yq_new, s_new[..., None], out=np.zeros_like(yq_new), where=s_new[..., None] > 0)
            if q is None:
                q, w, p, yp = (np.zeros((T, B, H)) for _ in range(4))
            sigma[idx], sigma2[idx], q[idx], w[idx], p[idx], yp[idx] = s_new, s2_new, q_new, w_new, p_new, yp_new
        if active.any():
            warnings.warn(
                f"{fn}: the power method had not converged to tol={tol:g} after max_iter={max_iter} rounds for "
                f"{int(active.sum())} of {T} steps t",
                RuntimeWarning,
                stacklevel=3,
            )
    return sigma, rounds


# ------------------------------------------------------------------------------------------------ Lyapunov


def lyapunov_spectrum(
    cell: Callable, xs: Any, state: Any = None, *, k: int | None = None, reduce: str = "mean", seed: int = 0
) -> np.ndarray:
    """The k largest Lyapunov exponents of the state trajectory driven by ``xs``: per step, natural log, descending.

    ``cell(x, state) -> state`` (``RNNCell``, ``LSTMCell``, ``GRUCell`` or any cell of Tensor ops; the state a
    Tensor h or a tuple such as (h, c)); ``xs`` (T, B, I) or (T, I), Tensor or ndarray; ``state`` the initial
    state (zeros by default). The tangent space is the whole state (h and c joined for an LSTM: size 2H), and
    ``k`` (1 .. state size, default all of it) directions of it are propagated through each step with one
    forward-mode pass (k JVP directions at once), then re-orthonormalized by QR; exponent i is the average over
    the T steps of log |R_ii| (the QR method of Benettin et al. 1980 and Shimada and Nagashima 1979). The start
    is a random orthonormal k-frame drawn from ``np.random.default_rng(seed)`` (the same for every batch
    element). The estimate carries an O(1/T) bias from that start and from the transient of the trajectory:
    use a long ``xs`` (hundreds of steps) for a stationary spectrum. A direction the dynamics kill exactly
    (a dead ReLU unit, a state part the cell ignores) gives -inf.

    Each batch element is its own trajectory: ``reduce="mean"`` (default) averages their spectra (k,), which is
    the estimate for the distribution of inputs ``xs`` samples; ``reduce="none"`` returns them all, (B, k).
    A Module cell's parameters are left untouched (no ``.grad``) and its steps are hidden from ``record()``.
    """
    fn = "lyapunov_spectrum"
    if reduce not in ("mean", "none"):
        raise ValueError(f"{fn}: reduce must be 'mean' or 'none', got {reduce!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{fn}: seed must be an int, got {type(seed).__name__}")
    with _quiet(), _frozen(cell):
        x, init, is_tuple = _prepare(cell, xs, state, fn)
        T, B = x.shape[:2]
        widths = [a.shape[1] for a in init]
        S = sum(widths)
        if k is None:
            k = S
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= S:
            raise ValueError(
                f"{fn}: k must be an int in 1..{S} (the state size {' + '.join(map(str, widths))}), got {k!r}"
            )
        k = int(k)
        dtype = init[0].dtype
        frame = np.linalg.qr(np.random.default_rng(seed).standard_normal((S, k)))[0]
        Q = np.broadcast_to(frame, (B, S, k)).astype(np.float64)
        logs = np.zeros((B, k))
        arrays = [a for a in init]
        bounds = np.cumsum([0, *widths])
        for t in range(T):
            tan = np.transpose(Q, (2, 0, 1))  # (k, B, S): direction j of batch element b
            with no_grad(), engine.DualLevel(k):
                parts = [Tensor(a) for a in arrays]
                for p, lo, hi in zip(parts, bounds, bounds[1:]):
                    set_tangent(p, tan[:, :, lo:hi].astype(dtype))
                out = cell(Tensor(x[t]), tuple(parts) if is_tuple else parts[0])
                new = _state_parts(out, init, fn)
                M = np.concatenate([_tangent_or_zeros(p, k) for p in new], axis=2).astype(np.float64)
                arrays = [p.data for p in new]
            Q, R = np.linalg.qr(np.transpose(M, (1, 2, 0)))  # (B, S, k) = (B, S, k) (B, k, k)
            with np.errstate(divide="ignore"):
                logs += np.log(np.abs(np.diagonal(R, axis1=1, axis2=2)))
        spectra = -np.sort(-logs / T, axis=1)
    return spectra.mean(axis=0) if reduce == "mean" else spectra
