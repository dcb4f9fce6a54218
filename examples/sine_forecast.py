"""Time-series prediction with an Elman RNN, an LSTM and a GRU: next-step sine forecasting, then free running.

What it teaches (source material: the Elman RNN, LSTM, GRU, the MSE loss, Adam, time-series prediction):

* Next-step prediction: at every step t the network reads x_t and predicts x_{t+1}. The recurrent layer
  turns the sequence (T, B, 1) into hidden states (T, B, H); one ``nn.Linear(H, 1)`` maps each of them to a
  prediction (the same weights at every step). The loss is the mean squared error over all steps, and its
  gradient flows back through time into the recurrent weights (BPTT). Data: ``tinygrad_lstm.data.sine_waves``
  (random frequency, phase and amplitude, a little input noise; the targets are the clean next values).
* The three cells, side by side (``--cells rnn,lstm,gru``): the Elman RNN h_t = tanh(W x_t + U h_{t-1} + b);
  the LSTM with its input, forget and output gates and its cell state; the GRU with update and reset gates.
  All three are trained the same way (Adam, same size, same steps), and the validation MSE is printed for each.
* Free-running (closed-loop) forecast: the network reads a warm-up window of true values, which sets its
  state; from then on each prediction is fed back as the next input. Errors can now accumulate, which is the
  real test of what the network has learned about the signal, not just how to copy its last input.
* A baseline to compare with: "persistence", predicting x_{t+1} = x_t, the best a model without any notion of
  the wave's dynamics can do at one step.

Run ``python examples/sine_forecast.py --help`` for all options. Writes ``forecast.png`` (truth, warm-up and
free-running forecast for each cell) and ``training_curves.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

import tinygrad_lstm as tg
import tinygrad_lstm.nn as nn
import tinygrad_lstm.nn.functional as F
from tinygrad_lstm import Tensor, data, no_grad, optim

NAME = "sine_forecast"
CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TITLES = {"rnn": "Elman RNN", "lstm": "LSTM", "gru": "GRU"}


class Forecaster(nn.Module):
    """A recurrent layer (RNN, LSTM or GRU) and a Linear read-out applied at every step."""

    def __init__(self, cell: str, hidden_size: int, num_layers: int = 1) -> None:
        self.rnn = CELLS[cell](1, hidden_size, num_layers=num_layers)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """x: (T, B, 1) -> predictions (T, B, 1) and the final state (h_n, or (h_n, c_n) for the LSTM)."""
        hs, state = self.rnn(x, state)
        return self.head(hs), state


def mse(model: Forecaster, x: np.ndarray, y: np.ndarray) -> float:
    """Next-step validation MSE (teacher forcing: every input is a true value)."""
    with no_grad():
        pred, _ = model(Tensor(x))
    return float(np.mean((pred.numpy() - y) ** 2))


def free_run(model: Forecaster, warmup: np.ndarray, horizon: int) -> np.ndarray:
    """Read ``warmup`` (W, B, 1), then feed each prediction back as the next input for ``horizon`` steps.

    Returns the forecast (horizon, B, 1): element k predicts the value k+1 steps after the warm-up's last one.
    """
    with no_grad():
        pred, state = model(Tensor(warmup))
        step = pred[-1:]  # (1, B, 1): the prediction of the first value after the warm-up
        out = [step.numpy()]
        for _ in range(horizon - 1):
            # The state carries everything the network knows; only the one new input is run.
            step, state = model(step, state)
            out.append(step.numpy())
    return np.concatenate(out)


def train_cell(cell: str, args: argparse.Namespace, sets: dict[str, np.ndarray]) -> dict:
    """Train one Forecaster with Adam on mini-batches of whole sequences; returns the model and its history."""
    tg.manual_seed(args.seed)  # every cell starts from the same seed (their shapes differ, so not the same numbers)
    model = Forecaster(cell, args.hidden, args.layers)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    x_tr, y_tr = sets["x_train"], sets["y_train"]
    n = x_tr.shape[1]
    hist: dict[str, list[float]] = {"train_loss": [], "val_mse": []}
    bar = tqdm(range(args.epochs), desc=f"{NAME} ({cell})", disable=None, leave=False)
    for _epoch in bar:
        order = rng.permutation(n)
        losses = []
        for i in range(0, n, args.batch):
            idx = order[i : i + args.batch]
            pred, _ = model(Tensor(x_tr[:, idx]))  # time-major: the batch is axis 1
            loss = F.mse_loss(pred, Tensor(y_tr[:, idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        hist["train_loss"].append(float(np.mean(losses)))
        hist["val_mse"].append(mse(model, sets["x_val"], sets["y_val"]))
        bar.set_postfix(train=f"{hist['train_loss'][-1]:.5f}", val=f"{hist['val_mse'][-1]:.5f}")
    return {"model": model, "hist": hist}


# ------------------------------------------------------------------------------------------------ pictures


def plot_forecasts(results: dict[str, dict], sets: dict[str, np.ndarray], args: argparse.Namespace, path: Path) -> None:
    """One row per cell: the true wave, the warm-up region and the free-running forecast of a few sequences."""
    W, Hz = args.warmup, args.horizon
    wave = np.concatenate([sets["x_fc"][:1], sets["y_fc"]])[:, :, 0]  # clean-ish wave at steps 0..W+H
    t_all = np.arange(wave.shape[0])
    t_fc = np.arange(W, W + Hz)
    shown = min(2, wave.shape[1])
    fig, axes = plt.subplots(len(results), 1, figsize=(11, 2.8 * len(results)), sharex=True, squeeze=False)
    for ax, (cell, res) in zip(axes[:, 0], results.items()):
        ax.axvspan(0, W - 1, color="0.92", label="warm-up (true inputs)")
        for j in range(shown):
            ax.plot(t_all, wave[:, j], color=f"C{j}", lw=1.2, alpha=0.6, label="truth" if j == 0 else None)
            ax.plot(t_fc, res["forecast"][:, j, 0], "--", color=f"C{j}", lw=2, label="forecast" if j == 0 else None)
        ax.set_title(f"{TITLES[cell]}: free-running forecast, MSE {res['free_run_mse']:.4f} over {Hz} steps")
        ax.set_ylabel("value")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8, ncol=3)
    axes[-1, 0].set_xlabel("time step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(results: dict[str, dict], persistence: float, path: Path) -> None:
    """Training loss and validation MSE per epoch for every cell, with the persistence baseline."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, (cell, res) in enumerate(results.items()):
        epochs = np.arange(1, len(res["hist"]["train_loss"]) + 1)
        ax.plot(epochs, res["hist"]["train_loss"], color=f"C{i}", label=f"{TITLES[cell]}: training loss")
        ax.plot(epochs, res["hist"]["val_mse"], "--", color=f"C{i}", label=f"{TITLES[cell]}: validation MSE")
    ax.axhline(persistence, color="gray", linestyle=":", label=f"persistence x(t+1) = x(t): {persistence:.4f}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error (next step)")
    ax.set_title("Next-step sine prediction")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated subset of rnn,lstm,gru")
    ap.add_argument("--hidden", type=int, default=32, help="hidden units (default 32)")
    ap.add_argument("--layers", type=int, default=1, help="stacked recurrent layers (default 1)")
    ap.add_argument("--train", type=int, default=256, help="training sequences (default 256)")
    ap.add_argument("--val", type=int, default=64, help="validation sequences (default 64)")
    ap.add_argument("--length", type=int, default=40, help="steps per training sequence (default 40)")
    ap.add_argument("--noise", type=float, default=0.02, help="std of the noise on the inputs (default 0.02)")
    ap.add_argument("--warmup", type=int, default=30, help="true values read before free running (default 30)")
    ap.add_argument("--horizon", type=int, default=50, help="free-running steps (default 50)")
    ap.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    ap.add_argument("--batch", type=int, default=32, help="sequences per mini-batch (default 32)")
    ap.add_argument("--epochs", type=int, default=150, help="passes over the training set (default 150)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", type=Path, default=Path("example_outputs") / NAME, help="output directory")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (same code path)")
    args = ap.parse_args(argv)
    args.cells = [c.strip().lower() for c in args.cells.split(",") if c.strip()]
    unknown = [c for c in args.cells if c not in CELLS]
    if unknown or not args.cells:
        ap.error(f"--cells takes a comma-separated subset of {','.join(CELLS)}, got {unknown or 'nothing'}")
    args.cells = list(dict.fromkeys(args.cells))  # drop repeats, keep order
    if min(args.hidden, args.layers, args.train, args.val, args.batch, args.epochs, args.warmup, args.horizon) < 1:
        ap.error("sizes, --warmup, --horizon and --epochs must be positive")
    if args.length < 2 or args.lr <= 0 or args.noise < 0:
        ap.error("need --length >= 2, --lr > 0 and --noise >= 0")
    if args.quick:
        args.hidden, args.train, args.val, args.length = 16, 64, 16, 24
        args.epochs = min(args.epochs, 8)
        args.warmup, args.horizon = 16, 16
    return args


def main(argv: list[str] | None = None) -> dict:
    """Train each cell, print validation and free-running MSE, draw the pictures; returns the metrics."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    sets: dict[str, np.ndarray] = {}
    sets["x_train"], sets["y_train"] = data.sine_waves(args.train, args.length, noise=args.noise, rng=rng)
    sets["x_val"], sets["y_val"] = data.sine_waves(args.val, args.length, noise=args.noise, rng=rng)
    # Forecast sequences: W warm-up inputs, then H values to predict. y[t] is the true value at step t+1.
    sets["x_fc"], sets["y_fc"] = data.sine_waves(args.val, args.warmup + args.horizon, noise=args.noise, rng=rng)
    persistence = float(np.mean((sets["x_val"] - sets["y_val"]) ** 2))
    print(f"persistence baseline (predict x(t+1) = x(t)): validation MSE {persistence:.5f}")

    results: dict[str, dict] = {}
    metrics: dict[str, Any] = {"persistence_mse": persistence, "cells": {}}
    start = time.perf_counter()
    for cell in args.cells:
        t0 = time.perf_counter()
        res = train_cell(cell, args, sets)
        W = args.warmup
        res["forecast"] = free_run(res["model"], sets["x_fc"][:W], args.horizon)
        truth = sets["y_fc"][W - 1 : W - 1 + args.horizon]  # the value after each forecast step's input
        res["free_run_mse"] = float(np.mean((res["forecast"] - truth) ** 2))
        results[cell] = res
        h = res["hist"]
        metrics["cells"][cell] = {
            "train_loss_first": h["train_loss"][0],
            "train_loss_final": h["train_loss"][-1],
            "val_mse": h["val_mse"][-1],
            "free_run_mse": res["free_run_mse"],
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"[{cell}] final validation MSE: {h['val_mse'][-1]:.5f} (next step; training loss "
            f"{h['train_loss'][0]:.4f} -> {h['train_loss'][-1]:.5f}); free-running MSE over {args.horizon} steps: "
            f"{res['free_run_mse']:.4f}  ({metrics['cells'][cell]['seconds']:.1f} s)"
        )
    metrics["seconds"] = time.perf_counter() - start

    pictures = [args.out / "forecast.png", args.out / "training_curves.png"]
    plot_forecasts(results, sets, args, pictures[0])
    plot_training(results, persistence, pictures[1])
    for p in pictures:
        print(f"wrote {p}")
    metrics["pictures"] = [str(p) for p in pictures]
    return metrics


if __name__ == "__main__":
    main()
