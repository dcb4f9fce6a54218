"""Sequence classification with two stacked LSTMs: LSTM(128) -> LSTM(64) -> Linear -> softmax.

What it teaches (source material: stacked recurrent layers, LSTM, dropout, Adam, categorical cross-entropy,
sequence classification):

* Stacking: the first LSTM returns its hidden state at EVERY step (the whole sequence, "return_sequences"),
  which is the input sequence of the second LSTM; only the second LSTM's LAST hidden state goes to the
  classifier. The two layers are two separate ``nn.LSTM`` modules, as in the source material (one
  ``nn.LSTM(num_layers=2)`` would compute the same kind of thing).
* Dropout between the layers and before the classifier, active only in training mode (``model.train()``),
  switched off for evaluation (``model.eval()``).
* Categorical cross-entropy: the classifier's K scores go through softmax to give class probabilities;
  ``F.cross_entropy`` applies log-softmax and the negative log-likelihood in one stable step, so the model
  returns the raw scores (logits) and ``predict_proba`` applies the softmax for reading.
* A task that NEEDS memory. Each sequence shows a random symbol (one of K, one-hot, plus Gaussian noise) at
  every step; one step near the start carries a marker, and the label is the symbol seen at that marked
  step. The marked symbol is long gone when the sequence ends, and every other symbol is random, so a model
  that looks at one step at a time without a state is at chance (1/K). To show this, a memoryless baseline
  (a linear softmax classifier on the last step) is trained too. The LSTM must learn to store the symbol in
  its cell when the marker appears and hold it: the forget gate near 1 carries it to the end.

Run ``python examples/sequence_classification.py --help`` for all options. Writes ``training_curves.png``
(loss and accuracy per epoch, with the chance level) into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

import tinygrad_lstm as tg
import tinygrad_lstm.nn as nn
import tinygrad_lstm.nn.functional as F
from tinygrad_lstm import Tensor, no_grad, optim

NAME = "sequence_classification"


# ------------------------------------------------------------------------------------------------ the task


def marked_symbol_task(
    n: int, T: int, K: int, window: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of ``T`` steps, time-major ``x`` (T, n, K + 1) float32, and labels ``y`` (n,) int64.

    Channels 0..K-1 one-hot the symbol of each step; channel K is 1 at one step chosen in the first
    ``window`` steps (the marker). Label = the symbol at the marked step. Gaussian ``noise`` on everything.
    """
    steps, cols = np.arange(T)[:, None], np.arange(n)[None, :]
    symbols = rng.integers(0, K, size=(T, n))
    marked = rng.integers(0, window, size=n)
    x = np.zeros((T, n, K + 1))
    x[steps, cols, symbols] = 1.0
    x[marked, np.arange(n), K] = 1.0
    x += noise * rng.standard_normal(x.shape)
    y = symbols[marked, np.arange(n)]
    return x.astype(np.float32), y.astype(np.int64)


# ------------------------------------------------------------------------------------------------ models


class StackedLSTMClassifier(nn.Module):
    """LSTM(hidden1) -> Dropout -> LSTM(hidden2) -> last step -> Dropout -> Linear(K); returns logits (B, K)."""

    def __init__(self, input_size: int, num_classes: int, hidden1: int = 128, hidden2: int = 64, dropout: float = 0.2):
        self.lstm1 = nn.LSTM(input_size, hidden1)
        self.drop1 = nn.Dropout(dropout)
        self.lstm2 = nn.LSTM(hidden1, hidden2)
        self.drop2 = nn.Dropout(dropout)
        self.head = nn.Linear(hidden2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x: (T, B, input_size) -> class scores (B, num_classes)."""
        seq1, _ = self.lstm1(x)  # (T, B, hidden1): every step, the next layer's input sequence
        seq2, _ = self.lstm2(self.drop1(seq1))  # (T, B, hidden2)
        return self.head(self.drop2(seq2[-1]))  # only the state after the whole sequence is classified

    def predict_proba(self, x: Tensor) -> np.ndarray:
        """Softmax class probabilities (B, K) in evaluation mode, without a graph."""
        self.eval()
        with no_grad():
            return F.softmax(self(x), dim=-1).numpy()


def batch_accuracy(logits: Tensor, y: np.ndarray) -> float:
    """Fraction of argmax predictions equal to the labels."""
    return float((logits.numpy().argmax(axis=-1) == y).mean())


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a data set, in evaluation mode (dropout off)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with no_grad():
        for i in range(0, len(y), batch):
            logits = model(Tensor(x[:, i : i + batch]))
            yb = y[i : i + batch]
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += int((logits.numpy().argmax(axis=-1) == yb).sum())
    return loss_sum / len(y), correct / len(y)


def memoryless_baseline(data: dict[str, np.ndarray], K: int, steps: int = 300) -> float:
    """Validation accuracy of a softmax classifier that sees only the LAST step's input (no memory)."""
    head = nn.Linear(data["x_train"].shape[-1], K)
    opt = optim.Adam(head.parameters(), lr=0.05)
    x_last = Tensor(data["x_train"][-1])
    for _ in range(steps):
        loss = F.cross_entropy(head(x_last), data["y_train"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with no_grad():
        return batch_accuracy(head(Tensor(data["x_val"][-1])), data["y_val"])


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=4, help="number of classes K (default 4)")
    ap.add_argument("--length", type=int, default=16, help="sequence length T (default 16)")
    ap.add_argument("--window", type=int, default=4, help="the marker falls in the first WINDOW steps (default 4)")
    ap.add_argument("--noise", type=float, default=0.1, help="std of the Gaussian input noise (default 0.1)")
    ap.add_argument("--train", type=int, default=4000, help="training sequences (default 4000)")
    ap.add_argument("--val", type=int, default=1000, help="validation sequences (default 1000)")
    ap.add_argument("--hidden1", type=int, default=128, help="units of the first LSTM (default 128)")
    ap.add_argument("--hidden2", type=int, default=64, help="units of the second LSTM (default 64)")
    ap.add_argument("--dropout", type=float, default=0.2, help="dropout probability (default 0.2)")
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    ap.add_argument("--batch", type=int, default=32, help="mini-batch size (default 32)")
    ap.add_argument("--epochs", type=int, default=10, help="passes over the training set (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", type=Path, default=Path("example_outputs") / NAME, help="output directory")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (same code path)")
    args = ap.parse_args(argv)
    if args.symbols < 2 or args.length < 2 or not 1 <= args.window <= args.length:
        ap.error("need --symbols >= 2, --length >= 2 and 1 <= --window <= --length")
    if min(args.train, args.val, args.hidden1, args.hidden2, args.batch, args.epochs) < 1 or args.lr <= 0:
        ap.error("sizes, --epochs and --lr must be positive")
    if not 0 <= args.dropout < 1 or args.noise < 0:
        ap.error("--dropout must be in [0, 1) and --noise >= 0")
    if args.quick:
        # Smaller layers and an easier task so a few seconds suffice; the code path is the same.
        args.length, args.window, args.train, args.val = 8, 2, 1024, 256
        args.hidden1, args.hidden2, args.lr = 32, 16, 1e-2
        args.epochs = min(args.epochs, 6)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Train the stacked LSTM, report chance level and validation accuracy, draw the curves."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tg.manual_seed(args.seed)  # weights and dropout masks
    rng = np.random.default_rng(args.seed)  # the data
    K = args.symbols
    data = {}
    data["x_train"], data["y_train"] = marked_symbol_task(args.train, args.length, K, args.window, args.noise, rng)
    data["x_val"], data["y_val"] = marked_symbol_task(args.val, args.length, K, args.window, args.noise, rng)

    chance = 1.0 / K
    majority = float(np.bincount(data["y_val"], minlength=K).max() / len(data["y_val"]))
    baseline = memoryless_baseline(data, K)
    print(f"chance level: {chance:.3f} (majority class on validation: {majority:.3f})")
    print(f"memoryless baseline (softmax on the last step only): validation accuracy {baseline:.3f}")

    model = StackedLSTMClassifier(K + 1, K, args.hidden1, args.hidden2, args.dropout)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    hist: dict[str, list[float]] = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    n_batches = -(-args.train // args.batch)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = rng.permutation(args.train)
        loss_sum, acc_sum = 0.0, 0.0
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}/{args.epochs}", disable=None, leave=False)
        for b in bar:
            idx = order[b * args.batch : (b + 1) * args.batch]
            logits = model(Tensor(data["x_train"][:, idx]))  # batch along axis 1: time-major
            loss = F.cross_entropy(logits, data["y_train"][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            acc_sum += batch_accuracy(logits, data["y_train"][idx])
            bar.set_postfix(loss=f"{loss.item():.3f}")
        # Training figures are averages over the epoch's batches, measured with dropout on.
        hist["train_loss"].append(loss_sum / n_batches)
        hist["train_acc"].append(acc_sum / n_batches)
        val_loss, val_acc = evaluate(model, data["x_val"], data["y_val"])
        hist["val_loss"].append(val_loss)
        hist["val_acc"].append(val_acc)
        print(
            f"epoch {epoch:2d}: train loss {hist['train_loss'][-1]:.4f} acc {hist['train_acc'][-1]:.3f} | "
            f"validation loss {val_loss:.4f} acc {val_acc:.3f}"
        )
    elapsed = time.perf_counter() - start

    path = args.out / "training_curves.png"
    plot(hist, chance, baseline, args, path)
    print(f"wrote {path}")
    print(f"final validation accuracy: {hist['val_acc'][-1]:.3f} (chance {chance:.3f}) after {elapsed:.1f} s")
    return {
        "chance": chance,
        "memoryless_val_accuracy": baseline,
        "val_accuracy": hist["val_acc"][-1],
        "val_loss": hist["val_loss"][-1],
        "train_loss_first": hist["train_loss"][0],
        "train_loss_final": hist["train_loss"][-1],
        "history": hist,
        "seconds": elapsed,
        "pictures": [str(path)],
    }


def plot(hist: dict[str, list[float]], chance: float, baseline: float, args: argparse.Namespace, path: Path) -> None:
    """Loss and accuracy per epoch, training and validation, with the chance level and the memoryless baseline."""
    epochs = np.arange(1, len(hist["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_loss.plot(epochs, hist["train_loss"], "o-", label="training (dropout on)")
    ax_loss.plot(epochs, hist["val_loss"], "s--", label="validation")
    ln_k = np.log(args.symbols)
    ax_loss.axhline(ln_k, color="gray", linestyle=":", label=f"chance: ln K = {ln_k:.2f}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("categorical cross-entropy")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)

    ax_acc.plot(epochs, hist["train_acc"], "o-", label="training (dropout on)")
    ax_acc.plot(epochs, hist["val_acc"], "s--", label="validation")
    ax_acc.axhline(chance, color="gray", linestyle=":", label=f"chance: 1/K = {chance:.2f}")
    ax_acc.axhline(baseline, color="C3", linestyle="-.", label=f"memoryless baseline: {baseline:.2f}")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy")
    ax_acc.legend(loc="center left")
    ax_acc.grid(alpha=0.3)
    fig.suptitle(
        f"LSTM({args.hidden1}) -> LSTM({args.hidden2}) -> Linear({args.symbols}): which symbol was marked "
        f"(T={args.length}, marker in the first {args.window} steps)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
