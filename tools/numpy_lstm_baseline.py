"""Hand-written pure-numpy LSTM with backpropagation through time (speed baseline).

Model (PyTorch conventions, single layer, time-major):
    x: (T, B, I), h0 = c0 = 0
    gates = x_t @ weight_ih.T + bias_ih + h_{t-1} @ weight_hh.T + bias_hh   (gate order i, f, g, o)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
    y_t = h_t @ head_w.T + head_b,   loss = mean((y - target) ** 2)

Speed tricks: one matmul for the input projection of all steps, one matmul per step for the recurrence
(forward) and for dh (backward), one matmul each for dW_ih and dW_hh over all steps. Internally the gate
rows are permuted to (i, f, o, g) and the sigmoid rows pre-scaled by 0.5, so each step needs a single
contiguous tanh over all gates (sigmoid(z) = 0.5 * tanh(z/2) + 0.5, stable for any z); gradients are
permuted back before they are returned. Scratch buffers are reused across calls of the same sizes.
Everything stays in the params' dtype (float32 stays float32).

Run ``python tools/numpy_lstm_baseline.py`` for a finite-difference check and timings.
"""

from __future__ import annotations

import time

import numpy as np

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "head_w", "head_b")


def sigmoid_(x: np.ndarray) -> np.ndarray:
    """Numerically stable in-place sigmoid, ``0.5 * (1 + tanh(x / 2))``; never overflows."""
    x *= 0.5
    np.tanh(x, out=x)
    x += 1
    x *= 0.5
    return x


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable sigmoid returning a new array."""
    return sigmoid_(np.array(x, copy=True))


def _gate_perm(H: int) -> np.ndarray:
    """Row permutation mapping PyTorch order (i, f, g, o) to internal order (i, f, o, g).

    It swaps two blocks, so it is its own inverse.
    """
    return np.concatenate([np.arange(0, 2 * H), np.arange(3 * H, 4 * H), np.arange(2 * H, 3 * H)])


def init_params(I: int, H: int, O: int, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """PyTorch-style default init: every LSTM and head parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
    k = 1.0 / np.sqrt(H)
    shapes = {
        "weight_ih": (4 * H, I),
        "weight_hh": (4 * H, H),
        "bias_ih": (4 * H,),
        "bias_hh": (4 * H,),
        "head_w": (O, H),
        "head_b": (O,),
    }
    return {name: rng.uniform(-k, k, size=shape).astype(dtype) for name, shape in shapes.items()}


_WORKSPACES: dict[tuple, dict[str, np.ndarray]] = {}
_MAX_WORKSPACES = 4


def _workspace(T: int, B: int, I: int, H: int, O: int, dtype: np.dtype) -> dict[str, np.ndarray]:
    """Scratch buffers reused across calls with the same sizes.

    Reusing them avoids re-allocating (and page-faulting in) tens of MB per call at large sizes.
    Nothing returned by ``forward_backward`` aliases these buffers. Not thread-safe.
    """
    key = (T, B, I, H, O, np.dtype(dtype).str)
    ws = _WORKSPACES.get(key)
    if ws is None:
        if len(_WORKSPACES) >= _MAX_WORKSPACES:
            _WORKSPACES.clear()
        shapes = {
            "acts": (T * B, 4 * H),  # gate pre-activations, then activations (internal order i, f, o, g)
            "hs": (T + 1, B, H),  # hs[0] = h0 = 0
            "cs": (T + 1, B, H),  # cs[0] = c0 = 0
            "tcs": (T, B, H),  # tanh(c_t)
            "y": (T * B, O),
            "dH": (T * B, H),
            "dgates": (T, B, 4 * H),
            "rec": (B, 4 * H),
            "tmp": (B, H),
            "tmp3": (B, 3 * H),
            "dh": (B, H),
            "dc": (B, H),
            "dw_ih": (4 * H, I),
            "dw_hh": (4 * H, H),
        }
        ws = {name: np.empty(shape, dtype=dtype) for name, shape in shapes.items()}
        ws["hs"][0] = 0  # only hs[1:] and cs[1:] are ever written afterwards
        ws["cs"][0] = 0
        _WORKSPACES[key] = ws
    return ws


def forward_backward(
    params: dict[str, np.ndarray], x: np.ndarray, target: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Run the LSTM + linear head forward, compute the MSE loss, and backpropagate through time.

    Returns ``(loss, grads)`` where ``grads`` has the same keys, shapes and dtype as ``params``.
    """
    dtype = params["weight_hh"].dtype
    x = np.asarray(x, dtype=dtype)
    target = np.asarray(target, dtype=dtype)
    T, B, I = x.shape
    H = params["weight_hh"].shape[1]
    O = params["head_w"].shape[0]
    H2, H3 = 2 * H, 3 * H
    ws = _workspace(T, B, I, H, O, dtype)
    hs, cs, tcs, rec, tmp, tmp3 = ws["hs"], ws["cs"], ws["tcs"], ws["rec"], ws["tmp"], ws["tmp3"]

    perm = _gate_perm(H)
    # Rows of the sigmoid gates are pre-scaled by 0.5 (exact in floating point), so one contiguous tanh
    # over all 4H pre-activations gives tanh(z/2) for i, f, o and tanh(z) for g; then
    # sigmoid(z) = 0.5 * tanh(z/2) + 0.5, which never overflows.
    half = np.ones((4 * H, 1), dtype=dtype)
    half[:H3] = 0.5
    w_ih_t = np.ascontiguousarray((params["weight_ih"][perm] * half).T)  # (I, 4H)
    w_hh = params["weight_hh"][perm]  # (4H, H), unscaled, used in the backward pass
    w_hh_t = np.ascontiguousarray((w_hh * half).T)  # (H, 4H), scaled, used in the forward pass
    bias = (params["bias_ih"] + params["bias_hh"])[perm] * half[:, 0]
    head_w = params["head_w"]

    # ---- forward ----
    x2 = x.reshape(T * B, I)
    # One matmul for the input projection of all steps; each step turns its slice into activations.
    np.matmul(x2, w_ih_t, out=ws["acts"])
    ws["acts"] += bias
    acts = ws["acts"].reshape(T, B, 4 * H)
    for t in range(T):
        a = acts[t]
        if t > 0:  # h0 = 0: no recurrent term at the first step
            np.matmul(hs[t], w_hh_t, out=rec)
            a += rec
        np.tanh(a, out=a)
        s = a[:, :H3]
        s *= 0.5
        s += 0.5
        i, f, o, g = a[:, :H], a[:, H:H2], a[:, H2:H3], a[:, H3:]
        np.multiply(f, cs[t], out=cs[t + 1])
        np.multiply(i, g, out=tmp)
        cs[t + 1] += tmp
        np.tanh(cs[t + 1], out=tcs[t])
        np.multiply(o, tcs[t], out=hs[t + 1])

    hflat = hs[1:].reshape(T * B, H)
    diff = np.matmul(hflat, head_w.T, out=ws["y"])
    diff += params["head_b"]
    diff -= target.reshape(T * B, O)
    n = diff.size
    loss = float(np.vdot(diff, diff)) / n

    # ---- backward ----
    dy = diff
    dy *= 2.0 / n  # Python float: keeps the array dtype (NEP 50)
    grads: dict[str, np.ndarray] = {
        "head_w": dy.T @ hflat,
        "head_b": dy.sum(axis=0),
    }
    # Loss gradient reaching each h_t directly through the head.
    dH = np.matmul(dy, head_w, out=ws["dH"]).reshape(T, B, H)

    dgates = ws["dgates"]
    dh = ws["dh"]  # dL/dh_t arriving from step t+1, then the total
    dc = ws["dc"]  # dL/dc_t arriving from step t+1, then the total
    dh.fill(0)
    dc.fill(0)
    for t in range(T - 1, -1, -1):
        a = acts[t]
        i, f, o, g = a[:, :H], a[:, H:H2], a[:, H2:H3], a[:, H3:]
        tc = tcs[t]
        dg = dgates[t]
        dh += dH[t]
        # dc += dh * o * (1 - tanh(c)^2)
        np.multiply(tc, tc, out=tmp)
        np.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        # Gradients w.r.t. the gate activations, then through the nonlinearities.
        np.multiply(dc, g, out=dg[:, :H])  # d i
        np.multiply(dc, cs[t], out=dg[:, H:H2])  # d f
        np.multiply(dh, tc, out=dg[:, H2:H3])  # d o
        s = a[:, :H3]
        np.subtract(1, s, out=tmp3)
        tmp3 *= s
        dg[:, :H3] *= tmp3  # sigmoid' = s (1 - s)
        np.multiply(g, g, out=tmp)
        np.subtract(1, tmp, out=tmp)
        tmp *= i
        np.multiply(tmp, dc, out=dg[:, H3:])  # d g * tanh' = dc * i * (1 - g^2)
        dc *= f
        if t > 0:
            np.matmul(dg, w_hh, out=dh)

    # Weight gradients: one matmul each over all steps (h0 = 0, so step 0 adds nothing to dW_hh).
    dg2 = dgates.reshape(T * B, 4 * H)
    np.matmul(dgates[1:].reshape((T - 1) * B, 4 * H).T, hs[1:T].reshape((T - 1) * B, H), out=ws["dw_hh"])
    np.matmul(dg2.T, x2, out=ws["dw_ih"])
    db = dg2.sum(axis=0)
    grads["weight_ih"] = ws["dw_ih"][perm]  # fancy indexing: fresh arrays, back in PyTorch gate order
    grads["weight_hh"] = ws["dw_hh"][perm]
    grads["bias_ih"] = db[perm]
    grads["bias_hh"] = db[perm]
    return loss, {k: grads[k] for k in PARAM_NAMES}


def loss_only(params: dict[str, np.ndarray], x: np.ndarray, target: np.ndarray) -> float:
    """Loss of the same model, written directly (used by the finite-difference check)."""
    T, B, _ = x.shape
    H = params["weight_hh"].shape[1]
    h = np.zeros((B, H), dtype=x.dtype)
    c = np.zeros((B, H), dtype=x.dtype)
    total = 0.0
    for t in range(T):
        z = x[t] @ params["weight_ih"].T + params["bias_ih"] + h @ params["weight_hh"].T + params["bias_hh"]
        i, f, g, o = (
            sigmoid(z[:, :H]),
            sigmoid(z[:, H : 2 * H]),
            np.tanh(z[:, 2 * H : 3 * H]),
            sigmoid(z[:, 3 * H :]),
        )
        c = f * c + i * g
        h = o * np.tanh(c)
        y = h @ params["head_w"].T + params["head_b"]
        total += float(np.sum((y - target[t]) ** 2))
    return total / target.size


def finite_difference_check(
    T: int = 3, B: int = 2, I: int = 3, H: int = 4, O: int = 2, seed: int = 0, eps: float = 1e-6
) -> float:
    """Compare analytic gradients with central finite differences in float64.

    Returns the max over parameters of ``||g_analytic - g_fd|| / (||g_analytic|| + ||g_fd||)``.
    """
    rng = np.random.default_rng(seed)
    params = init_params(I, H, O, rng, dtype=np.float64)
    x = rng.standard_normal((T, B, I))
    target = rng.standard_normal((T, B, O))
    loss, grads = forward_backward(params, x, target)
    if abs(loss - loss_only(params, x, target)) > 1e-12:
        raise AssertionError("forward_backward loss disagrees with the reference loss")
    worst = 0.0
    for name in PARAM_NAMES:
        p = params[name]
        num = np.empty_like(p)
        flat, nflat = p.reshape(-1), num.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            lp = loss_only(params, x, target)
            flat[k] = old - eps
            lm = loss_only(params, x, target)
            flat[k] = old
            nflat[k] = (lp - lm) / (2 * eps)
        ana = grads[name]
        denom = np.linalg.norm(ana) + np.linalg.norm(num)
        err = float(np.linalg.norm(ana - num) / denom) if denom > 0 else 0.0
        worst = max(worst, err)
    return worst


def time_forward_backward(B: int, T: int, I: int, H: int, O: int = 1, repeats: int = 10, seed: int = 0) -> float:
    """Median wall time of ``forward_backward`` in milliseconds (float32, head size O), after a warm-up."""
    rng = np.random.default_rng(seed)
    params = init_params(I, H, O, rng, dtype=np.float32)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    target = rng.standard_normal((T, B, O)).astype(np.float32)
    forward_backward(params, x, target)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        forward_backward(params, x, target)
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def main() -> None:
    """Finite-difference check, then float32 timings at three sizes."""
    err = finite_difference_check()
    print(f"finite-difference check (float64, T=3 B=2 I=3 H=4 O=2): max rel error = {err:.3e}")
    for B, T, I, H, repeats in ((1, 20, 8, 16, 50), (32, 50, 64, 128, 20), (64, 100, 256, 512, 5)):
        ms = time_forward_backward(B, T, I, H, repeats=repeats)
        print(f"forward_backward float32 B={B:<3d} T={T:<4d} I={I:<4d} H={H:<4d}: {ms:9.3f} ms/call")


if __name__ == "__main__":
    main()
