"""The main job: train a small LSTM forecaster, then draw its graphs and measure its gradients through time.

``python -m tinygrad_lstm demo`` runs ``run_demo()``: no download, under a minute on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import nn, optim
from .data import sine_waves
from .io import save
from .nn import functional as F
from .tensor import Tensor, get_rng, manual_seed, no_grad


class SineForecaster(nn.Module):
    """An LSTM reads a wave one value per step; a Linear head predicts the next value at every step."""

    def __init__(self, hidden: int = 32) -> None:
        self.lstm = nn.LSTM(1, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x (T, B, 1) -> predictions (T, B, 1)."""
        out, _ = self.lstm(x)
        return self.head(out)


def _train(model: SineForecaster, epochs: int, batch: int, T: int, quick: bool) -> tuple[float, float]:
    """Adam on freshly drawn waves; returns the last epoch's train loss and the validation loss."""
    from tqdm import tqdm

    x_train, y_train = sine_waves(8 * batch if quick else 32 * batch, T)
    x_val, y_val = sine_waves(2 * batch, T)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    n = x_train.shape[1]
    train_loss = val_loss = float("nan")
    bar = tqdm(range(epochs), desc="training LSTM on sine waves", unit="epoch")
    for _ in bar:
        order = get_rng().permutation(n)
        losses = []
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            loss = F.mse_loss(model(Tensor(x_train[:, idx])), Tensor(y_train[:, idx]))
            opt.zero_grad()
            loss.backward()
            optim.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        train_loss = float(np.mean(losses))
        with no_grad():
            val_loss = F.mse_loss(model(Tensor(x_val)), Tensor(y_val)).item()
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
    return train_loss, val_loss


def run_demo(out: str | Path = "tinygrad_lstm_demo", quick: bool = False, seed: int = 0) -> dict:
    """Train, draw and measure; write everything into ``out`` and return the paths and losses."""
    from . import bptt, viz

    start = time.perf_counter()
    manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    model = SineForecaster(hidden=16 if quick else 32)
    x, y = sine_waves(256, 40)
    baseline = float(np.mean((x - y) ** 2))  # "tomorrow looks like today": predict the current value
    train_loss, val_loss = _train(model, epochs=3 if quick else 40, batch=32, T=40, quick=quick)
    print(f"train MSE {train_loss:.5f}, validation MSE {val_loss:.5f} (repeating the current value: {baseline:.4f})")
    written = {"model": out / "model.npz"}
    save(model.state_dict(), written["model"])

    # A 3-step unroll of the trained model, kept (retain_graph) so both views can be drawn with gradient norms.
    x, y = sine_waves(1, 3)
    loss = F.mse_loss(model(Tensor(x)), Tensor(y))
    loss.backward(retain_graph=True)
    written["graph"] = viz.render(loss, path=out / "graph.svg", view="forward")
    written["graph_backward"] = viz.render(loss, path=out / "graph_backward.svg", view="backward")

    # Gradient flow through time on the adding problem, same inputs for each: a tanh RNN, an LSTM with PyTorch's
    # initialization, and an LSTM whose forget gates start open (bias 3), the classic remedy.
    steps = 25 if quick else 100
    flow = bptt.compare_cells(cells=("rnn", "lstm"), steps=steps, path=None, seed=seed)["norms"]
    flow = {"RNN": flow["rnn"], "LSTM": flow["lstm"]}
    opened = bptt.compare_cells(cells=("lstm",), steps=steps, path=None, seed=seed, forget_bias=3.0)
    flow["LSTM, forget bias 3"] = opened["norms"]["lstm"]
    print(bptt.format_table(flow))
    title = f"adding task, T={steps}, hidden 32: how much of the loss gradient reaches step t"
    written["bptt"] = bptt.plot_gradient_flow(flow, out / "bptt.png", title=title)
    model.zero_grad()

    for name, path in written.items():
        print(f"wrote {name}: {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return {"train_loss": train_loss, "val_loss": val_loss, "baseline": baseline, **written}
