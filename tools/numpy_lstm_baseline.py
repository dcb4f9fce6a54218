"""Hand-written pure-numpy LSTM with backpropagation through time (speed baseline).

Model (PyTorch conventions, single layer, time-major):
    x: (T, B, I), h0 = c0 = 0
    gates = x_t @ weight_ih.T + bias_ih + h_{t-1} @ weight_hh.T + bias_hh   (gate order i, f, g, o)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
    y_t = h_t @ head_w.T + head_b,   loss = mean((y - target) ** 2)

Internally the gate rows are permuted to (i, f, o, g) so the three sigmoid gates form one contiguous
block; gradients are permuted back before they are returned. Everything stays in the params' dtype.

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
    H3 = 3 * H

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
    # acts starts as the input projection + bias for all steps; each step turns its slice into activations.
    acts = x2 @ w_ih_t
    acts += bias
    acts = acts.reshape(T, B, 4 * H)
    hs = np.empty((T + 1, B, H), dtype=dtype)  # hs[0] = h0
    cs = np.empty((T + 1, B, H), dtype=dtype)  # cs[0] = c0
    tcs = np.empty((T, B, H), dtype=dtype)  # tanh(c_t)
    hs[0] = 0
    cs[0] = 0
    rec = np.empty((B, 4 * H), dtype=dtype)
    tmp = np.empty((B, H), dtype=dtype)
    for t in range(T):
        a = acts[t]
        if t > 0:  # h0 = 0: no recurrent term at the first step
            np.matmul(hs[t], w_hh_t, out=rec)
            a += rec
        np.tanh(a, out=a)
        s = a[:, :H3]
        s *= 0.5
        s += 0.5
        i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : H3], a[:, H3:]
        np.multiply(f, cs[t], out=cs[t + 1])
        np.multiply(i, g, out=tmp)
        cs[t + 1] += tmp
        np.tanh(cs[t + 1], out=tcs[t])
        np.multiply(o, tcs[t], out=hs[t + 1])

    hflat = hs[1:].reshape(T * B, H)
    y = hflat @ head_w.T
    y += params["head_b"]
    diff = y
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
    dH = (dy @ head_w).reshape(T, B, H)  # loss gradient reaching each h_t through the head

    dgates = np.empty((T, B, 4 * H), dtype=dtype)
    dh = np.zeros((B, H), dtype=dtype)  # holds dL/dh_t coming from step t+1, then the total
    dc = np.zeros((B, H), dtype=dtype)
    tmp3 = np.empty((B, H3), dtype=dtype)
    for t in range(T - 1, -1, -1):
        a = acts[t]
        i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : H3], a[:, H3:]
        tc = tcs[t]
        dg = dgates[t]
        dh += dH[t]
        # dc += dh * o * (1 - tanh(c)^2)
        np.multiply(tc, tc, out=tmp)
        np.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        # gradients w.r.t. gate activations, then through the nonlinearities
        np.multiply(dc, g, out=dg[:, :H])  # d i
        np.multiply(dc, cs[t], out=dg[:, H : 2 * H])  # d f
        np.multiply(dh, tc, out=dg[:, 2 * H : H3])  # d o
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

    dg2 = dgates.reshape(T * B, 4 * H)
    # h0 = 0, so step 0 contributes nothing to dW_hh.
    dw_hh = dgates[1:].reshape((T - 1) * B, 4 * H).T @ hs[1:T].reshape((T - 1) * B, H)
    dw_ih = dg2.T @ x2
    db = dg2.sum(axis=0)
    grads["weight_ih"] = dw_ih[perm]
    grads["weight_hh"] = dw_hh[perm]
    grads["bias_ih"] = db[perm]
    grads["bias_hh"] = grads["bias_ih"].copy()
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
        i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H : 2 * H]), np.tanh(z[:, 2 * H : 3 * H]), sigmoid(z[:, 3 * H :])
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
    assert abs(loss - loss_only(params, x, target)) < 1e-12
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
    """Median wall time of ``forward_backward`` in milliseconds (float32), after one warm-up call."""
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
