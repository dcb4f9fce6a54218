"""The recurrent layers learn: next-step prediction of sine waves (LSTM, GRU, RNN) and the adding problem (LSTM).

Each run is seeded and takes a few seconds at most. The optimizer is ``tinygrad_lstm.optim.Adam`` when that
module exists, else a minimal Adam written here (same update rule), so these tests do not depend on it.
"""

import importlib.util
import time

import numpy as np
import pytest

from tinygrad_lstm import Tensor, manual_seed
from tinygrad_lstm.nn import GRU, LSTM, RNN, Module, Parameter


class _TinyAdam:
    """Adam with bias correction (Kingma & Ba), for when tinygrad_lstm.optim is not available."""

    def __init__(self, params, lr):
        self.params, self.lr, self.t = list(params), lr, 0
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.t += 1
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m *= 0.9
            m += 0.1 * p.grad
            v *= 0.999
            v += 0.001 * p.grad * p.grad
            mhat, vhat = m / (1 - 0.9**self.t), v / (1 - 0.999**self.t)
            p.data = p.data - (self.lr * mhat / (np.sqrt(vhat) + 1e-8)).astype(p.dtype)


def _adam(params, lr):
    if importlib.util.find_spec("tinygrad_lstm.optim") is not None:
        from tinygrad_lstm.optim import Adam

        return Adam(params, lr=lr)
    return _TinyAdam(params, lr)


class Seq2One(Module):
    """A recurrent layer followed by a linear read-out of every step (written with Tensor ops)."""

    def __init__(self, rnn: Module, hidden: int, out: int = 1) -> None:
        self.rnn = rnn
        k = 1 / np.sqrt(hidden)
        rng = np.random.default_rng(0)
        self.w = Parameter(rng.uniform(-k, k, (hidden, out)).astype(np.float32))
        self.b = Parameter(np.zeros(out, np.float32))

    def forward(self, x: Tensor) -> Tensor:
        out = self.rnn(x)[0]  # (T, B, H)
        return out @ self.w + self.b


def _sine_batch(rng, B, T):
    """x_t = sin(w t + phi) with a random frequency and phase per sequence; the target is x_{t+1}."""
    w = rng.uniform(0.3, 0.7, (1, B, 1))
    phi = rng.uniform(0, 2 * np.pi, (1, B, 1))
    t = np.arange(T + 1).reshape(-1, 1, 1)
    s = np.sin(w * t + phi).astype(np.float32)
    return s[:-1], s[1:]


@pytest.mark.parametrize("kind,threshold", [("lstm", 0.005), ("gru", 0.005), ("rnn", 0.02)])
def test_sine_next_step_prediction(kind, threshold):
    manual_seed(0)
    rng = np.random.default_rng(1)
    H, T, B = 24, 20, 32
    layer = {"lstm": LSTM, "gru": GRU, "rnn": RNN}[kind](1, H)
    model = Seq2One(layer, H)
    opt = _adam(model.parameters(), lr=0.02)
    start = time.perf_counter()
    losses = []
    for _ in range(200):
        x, y = _sine_batch(rng, B, T)
        loss = ((model(Tensor(x)) - Tensor(y)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Held-out sequences; the predictor must beat "repeat the last value" (a strong baseline for slow sines).
    x, y = _sine_batch(np.random.default_rng(99), 64, T)
    test = float(((model(Tensor(x)).data - y) ** 2)[5:].mean())  # after a few warm-up steps
    repeat_last = float(((x - y) ** 2)[5:].mean())
    assert test < threshold, (kind, losses[0], losses[-1], test)
    assert test < 0.1 * repeat_last, (test, repeat_last)  # repeat_last is about 0.13 here
    assert np.mean(losses[-10:]) < 0.1 * losses[0]
    assert time.perf_counter() - start < 60  # a few seconds normally; generous for a loaded machine


def test_lstm_learns_the_adding_problem():
    """Sum of the two numbers marked in a sequence of 20 (Hochreiter & Schmidhuber's adding problem, short)."""
    manual_seed(0)
    rng = np.random.default_rng(2)
    H, T, B = 32, 20, 64
    layer = LSTM(2, H)
    model = Seq2One(layer, H)
    opt = _adam(model.parameters(), lr=0.01)

    def batch(n):
        vals = rng.uniform(0, 1, (T, n))
        marks = np.zeros((T, n))
        for b in range(n):
            i, j = rng.choice(T, 2, replace=False)
            marks[[i, j], b] = 1
        target = (vals * marks).sum(axis=0).reshape(n, 1)
        return np.stack([vals, marks], axis=-1).astype(np.float32), target.astype(np.float32)

    for _ in range(400):
        x, y = batch(B)
        pred = model(Tensor(x))[-1]  # read out after the last step
        loss = ((pred - Tensor(y)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = batch(256)
    test = float(((model(Tensor(x)).data[-1] - y) ** 2).mean())
    # Always answering the mean (1.0) gives MSE = Var(u1 + u2) = 1/6 ≈ 0.167.
    assert test < 0.02, test
