"""The engine's own arithmetic for an LSTMCell loop, written out op by op in numpy: no Tensor, no graph.

Each line below is one of the numpy calls the engine makes for the model of ``tools/bench_lstm.py`` (an
``LSTMCell`` called T times, a Linear head on every step, MSE loss): forward, each VJP, the per-step slice adds
into a gradient buffer, and the stacked weight-gradient products. It is the floor of any engine that runs a step
as separate primitive ops on numpy: what the cell loop would cost if recording and walking the graph were free.
The benchmark runs it next to the engine, so "engine overhead" is measured, not guessed.

API as ``tools/numpy_lstm_baseline.py``: ``forward_backward(params, x, target) -> (loss, grads)``.
"""

from __future__ import annotations

import numpy as np

from tinygrad_lstm.ops import sigmoid  # the engine's own kernel: the same passes over memory


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ops.Linear's forward: x @ w.T + b, with its layout choice for a few rows times a big weight."""
    if 1 < x.shape[0] <= 64 and w.size >= 1 << 16:
        t = (w @ x.T).T
        return np.add(t, b, out=np.empty(t.shape, t.dtype))
    y = x @ w.T
    y += b
    return y


def forward_backward(
    params: dict[str, np.ndarray], x: np.ndarray, target: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of every parameter, computed as the engine computes them for the cell loop."""
    w_ih, w_hh, b_ih, b_hh = params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"]
    head_w, head_b = params["head_w"], params["head_b"]
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dt = w_hh.dtype
    h, c = np.zeros((B, H), dt), np.zeros((B, H), dt)
    steps, hs = [], []
    for t in range(T):
        z = _linear(x[t], w_ih, b_ih) + _linear(h, w_hh, b_hh)
        a = sigmoid(z)
        i, f, o = a[:, :H], a[:, H : 2 * H], a[:, 3 * H :]
        g = np.tanh(z[:, 2 * H : 3 * H])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        steps.append((a, i, f, o, g, c, tc, x[t], h))
        h, c = o * tc, c_new
        hs.append(h)
    hseq = np.stack(hs)
    diff = hseq @ head_w.T + head_b - target
    loss = float((diff * diff).mean())

    gy = diff * (2.0 / diff.size)
    gy2 = gy.reshape(-1, gy.shape[-1])
    grads = {"head_w": gy2.T @ hseq.reshape(-1, H), "head_b": gy2.sum(axis=0)}
    g_hseq = gy @ head_w
    gz_steps, xs, hprev = [], [], []
    gh_next = gc_next = None
    for t in range(T - 1, -1, -1):
        a, i, f, o, g, c, tc, xt, ht = steps[t]
        gh = g_hseq[t] if gh_next is None else g_hseq[t] + gh_next
        g_o, g_tc = gh * tc, gh * o
        d = tc * tc
        np.subtract(1, d, out=d)
        d *= g_tc
        gc = d if gc_next is None else gc_next.__iadd__(d)
        g_f, gc_prev, g_i, g_g = gc * c, gc * f, gc * g, gc * i
        ga = np.zeros(a.shape, dt)  # the gate block's slices add into one buffer
        ga[:, :H] += g_i
        ga[:, H : 2 * H] += g_f
        ga[:, 3 * H :] += g_o
        gz = 1 - a
        gz *= a
        gz *= ga
        dg = g * g
        np.subtract(1, dg, out=dg)
        dg *= g_g
        gz[:, 2 * H : 3 * H] += dg
        gz_steps.append(gz)
        xs.append(xt)
        hprev.append(ht)
        gh_next, gc_next = gz @ w_hh, gc_prev
    G = np.concatenate(gz_steps)  # BPTT's sum over time as one product per weight
    grads["weight_ih"] = G.T @ np.concatenate(xs)
    grads["weight_hh"] = G.T @ np.concatenate(hprev)
    grads["bias_ih"] = G.sum(axis=0)
    grads["bias_hh"] = grads["bias_ih"].copy()
    return loss, grads
