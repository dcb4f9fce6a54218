"""A fully connected binary classifier on a 2-D toy set, trained by plain (full-batch) gradient descent.

What it teaches (source material: fully connected layers, activation functions, losses, gradient descent,
regularisation, weight initialisation):

* A fully connected layer computes y = f(Wx + b): ``nn.Linear`` holds W and b, an activation module holds f
  (``--activation relu|tanh|sigmoid|leaky_relu``). Several such layers are stacked with ``nn.Sequential``.
* A binary classifier ends in one sigmoid unit, p = sigmoid(w.h + b) = P(class 1 | x), and is trained with
  binary cross-entropy, -[y log p + (1 - y) log(1 - p)], averaged over the data.
* Plain gradient descent: every step uses the gradient over the WHOLE training set, theta <- theta - lr * grad
  (``optim.SGD`` without momentum, one batch = the full set).
* Regularisation: ``--l1 LAMBDA`` adds LAMBDA * sum|w| (pushes weights to exactly zero), ``--l2 LAMBDA`` adds
  LAMBDA * sum w^2 (shrinks all weights); both only on weight matrices, not biases. ``--dropout P`` zeroes
  hidden units at random while training; ``--batchnorm`` normalises every hidden pre-activation over the batch.
* Initialisation: ``--init xavier`` (Glorot: Var(w) = 2 / (fan_in + fan_out), made for tanh/sigmoid) or
  ``--init he`` (Var(w) = 2 / fan_in, made for ReLU). ``--compare-init`` trains both from the same data and
  draws both loss curves, so the effect of the starting point on the speed of training is visible.

Run ``python examples/fc_classifier.py --help`` for all options. Writes ``decision_boundary.png`` (the learned
probability over the plane with the data on top, and the loss curves) into ``--out``.
"""

from __future__ import annotations

import argparse
import math
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
from tinygrad_lstm.nn import init

NAME = "fc_classifier"
TARGET_LOSS = 0.3
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}


# ------------------------------------------------------------------------------------------------ data


def make_moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles: class 0 on the upper arc, class 1 on the lower, shifted one."""
    n0 = n // 2
    t0, t1 = rng.uniform(0, math.pi, n0), rng.uniform(0, math.pi, n - n0)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    x = np.concatenate([upper, lower]) + noise * rng.standard_normal((n, 2))
    x -= np.array([0.5, 0.25])  # centre the pair of moons on the origin
    y = np.concatenate([np.zeros(n0), np.ones(n - n0)])
    return x, y


def make_circles(n: int, noise: float, rng: np.random.Generator, factor: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles: class 0 outside (radius 1), class 1 inside (radius ``factor``)."""
    n0 = n // 2
    t = rng.uniform(0, 2 * math.pi, n)
    r = np.concatenate([np.ones(n0), np.full(n - n0, factor)])
    x = np.stack([r * np.cos(t), r * np.sin(t)], axis=1) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0), np.ones(n - n0)])
    return x, y


def make_dataset(kind: str, n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled points (n, 2) and 0/1 labels (n,)."""
    x, y = (make_moons if kind == "moons" else make_circles)(n, noise, rng)
    perm = rng.permutation(n)
    return x[perm], y[perm]


# ------------------------------------------------------------------------------------------------ model


def build_model(hidden: list[int], activation: str, init_name: str, batchnorm: bool, dropout: float) -> nn.Sequential:
    """Linear -> [BatchNorm1d] -> f -> [Dropout] for every hidden width, then Linear -> Sigmoid."""
    layers: list[nn.Module] = []
    fan_in = 2
    for width in hidden:
        linear = nn.Linear(fan_in, width)
        init_weight(linear.weight, init_name, activation)
        init.zeros_(linear.bias)
        layers.append(linear)
        if batchnorm:
            # Normalising the pre-activation Wx + b over the batch; BatchNorm's own shift makes b redundant
            # but harmless, so the layer stays a plain Linear for the reader.
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    head = nn.Linear(fan_in, 1)
    # The output unit feeds a sigmoid, for which Glorot's variance is the right one whatever --init says.
    init.xavier_uniform_(head.weight)
    init.zeros_(head.bias)
    layers += [head, nn.Sigmoid()]
    return nn.Sequential(*layers)


def init_weight(w: nn.Parameter, init_name: str, activation: str) -> None:
    """Xavier (Glorot) uniform or He (Kaiming) normal initialisation of one weight matrix, in place."""
    if init_name == "xavier":
        init.xavier_uniform_(w)  # U(-a, a) with a = sqrt(6 / (fan_in + fan_out)): Var = 2 / (fan_in + fan_out)
    elif activation == "leaky_relu":
        init.kaiming_normal_(w, a=0.01, nonlinearity="leaky_relu")  # Var = 2 / ((1 + a^2) fan_in)
    else:
        init.kaiming_normal_(w, nonlinearity="relu")  # N(0, 2 / fan_in)


def weight_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The Linear layers' weights: the only parameters L1/L2 act on (biases and BatchNorm's scale are free)."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Linear)]


# ------------------------------------------------------------------------------------------------ training


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    """Fraction of points whose thresholded probability (p > 0.5) equals the label."""
    return float(((p.reshape(-1) > 0.5) == (y.reshape(-1) > 0.5)).mean())


def train_one(args: argparse.Namespace, init_name: str, data: dict[str, np.ndarray]) -> dict:
    """Build a fresh model with ``init_name`` and train it by full-batch gradient descent; returns its history."""
    tg.manual_seed(args.seed)  # same seed for every init: the comparison differs only in the init rule
    model = build_model(args.hidden, args.activation, init_name, args.batchnorm, args.dropout)
    optimizer = optim.SGD(model.parameters(), lr=args.lr)  # momentum=0: plain gradient descent
    weights = weight_matrices(model)
    x_tr, y_tr = Tensor(data["x_train"]), Tensor(data["y_train"].reshape(-1, 1))
    x_va = Tensor(data["x_val"])

    hist: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_acc": []}
    bar = tqdm(range(args.epochs), desc=f"{NAME} ({init_name})", disable=None, leave=False)
    for _epoch in bar:
        model.train()
        p = model(x_tr)
        loss = F.binary_cross_entropy(p, y_tr)
        total = loss
        if args.l1 > 0:
            total = total + args.l1 * F.l1_penalty(weights)
        if args.l2 > 0:
            total = total + args.l2 * F.l2_penalty(weights)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

        # Evaluation mode: dropout off, BatchNorm uses its running statistics; no graph is needed.
        model.eval()
        with no_grad():
            p_va = model(x_va)
            val_loss = F.binary_cross_entropy(p_va, Tensor(data["y_val"].reshape(-1, 1))).item()
        hist["train_loss"].append(loss.item())  # the data term only, so runs with and without L1/L2 compare
        hist["val_loss"].append(val_loss)
        hist["val_acc"].append(accuracy(p_va.numpy(), data["y_val"]))
        bar.set_postfix(loss=f"{loss.item():.4f}", val_acc=f"{hist['val_acc'][-1]:.3f}")

    model.eval()
    with no_grad():
        train_acc = accuracy(model(x_tr).numpy(), data["y_train"])
    return {"model": model, "hist": hist, "train_acc": train_acc}


# ------------------------------------------------------------------------------------------------ pictures


def plot(runs: dict[str, dict], data: dict[str, np.ndarray], args: argparse.Namespace, path: Path) -> None:
    """One decision-boundary panel per run, and one panel with every run's training and validation loss."""
    xs = np.concatenate([data["x_train"], data["x_val"]])
    lo, hi = xs.min(axis=0) - 0.5, xs.max(axis=0) + 0.5
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.stack([g0.ravel(), g1.ravel()], axis=1)

    n = len(runs)
    fig, axes = plt.subplots(1, n + 1, figsize=(5.2 * (n + 1), 4.6))
    for ax, (name, run) in zip(axes, runs.items()):
        with no_grad():
            prob = run["model"](Tensor(grid.astype(data["x_train"].dtype))).numpy().reshape(g0.shape)
        filled = ax.contourf(g0, g1, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.75)
        ax.contour(g0, g1, prob, levels=[0.5], colors="k", linewidths=1.5)
        for label, marker in ((0, "o"), (1, "s")):
            sel = data["y_train"] == label
            ax.scatter(*data["x_train"][sel].T, s=14, marker=marker, c="C0" if label == 0 else "C3",
                       edgecolors="k", linewidths=0.4, label=f"class {label} (train)")  # fmt: skip
        ax.set_title(f"{name} init: P(class 1 | x), val acc {run['hist']['val_acc'][-1]:.3f}")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.legend(loc="lower left", fontsize=8)
        fig.colorbar(filled, ax=ax, fraction=0.046, pad=0.04)

    ax = axes[-1]
    for i, (name, run) in enumerate(runs.items()):
        epochs = np.arange(1, len(run["hist"]["train_loss"]) + 1)
        ax.plot(epochs, run["hist"]["train_loss"], color=f"C{i}", label=f"{name}: train")
        ax.plot(epochs, run["hist"]["val_loss"], color=f"C{i}", linestyle="--", label=f"{name}: validation")
    ax.set_yscale("log")
    ax.set_xlabel("gradient-descent step (one step = whole training set)")
    ax.set_ylabel("binary cross-entropy")
    ax.set_title("loss curves")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    extras = [f"{args.activation}", f"hidden {args.hidden}", f"lr {args.lr}"]
    extras += [s for s, on in (("batchnorm", args.batchnorm), (f"dropout {args.dropout}", args.dropout > 0),
                               (f"L1 {args.l1}", args.l1 > 0), (f"L2 {args.l2}", args.l2 > 0)) if on]  # fmt: skip
    fig.suptitle(f"Fully connected classifier on {args.dataset}: " + ", ".join(extras))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", choices=["moons", "circles"], default="moons", help="toy set (default moons)")
    ap.add_argument("--n", type=int, default=600, help="number of points; a quarter is held out (default 600)")
    ap.add_argument(
        "--noise", type=float, default=None, help="std of the noise on the points (moons 0.25, circles 0.1)"
    )
    ap.add_argument("--hidden", type=str, default="32,32,32", help="hidden widths, comma separated (default 32,32,32)")
    ap.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu", help="f in y = f(Wx + b)")
    ap.add_argument("--init", choices=["xavier", "he"], default="he", help="weight initialisation (default he)")
    ap.add_argument("--compare-init", action="store_true", help="train with both xavier and he and compare")
    ap.add_argument("--batchnorm", action="store_true", help="BatchNorm1d after every hidden Linear")
    ap.add_argument("--dropout", type=float, default=0.0, metavar="P", help="dropout probability on hidden units")
    ap.add_argument("--l1", type=float, default=0.0, metavar="LAMBDA", help="L1 penalty LAMBDA * sum|w|")
    ap.add_argument("--l2", type=float, default=0.0, metavar="LAMBDA", help="L2 penalty LAMBDA * sum w^2")
    ap.add_argument("--lr", type=float, default=0.1, help="gradient-descent step size (default 0.1)")
    ap.add_argument("--epochs", type=int, default=2000, help="gradient-descent steps (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="random seed for data, init and dropout (default 0)")
    ap.add_argument("--out", type=Path, default=Path("example_outputs") / NAME, help="output directory")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (same code path)")
    args = ap.parse_args(argv)
    try:
        args.hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    except ValueError:
        ap.error(f"--hidden must be comma-separated integers, got {args.hidden!r}")
    if not args.hidden or min(args.hidden) < 1:
        ap.error("--hidden needs at least one positive width")
    if not 0 <= args.dropout < 1:
        ap.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.l1 < 0 or args.l2 < 0 or args.lr <= 0:
        ap.error("--l1 and --l2 must be >= 0 and --lr > 0")
    if args.n < 8 or args.epochs < 1:
        ap.error("--n must be >= 8 and --epochs >= 1")
    if args.noise is None:
        args.noise = 0.25 if args.dataset == "moons" else 0.1
    if args.noise < 0:
        ap.error(f"--noise must be >= 0, got {args.noise}")
    if args.quick:
        args.n, args.epochs, args.hidden = min(args.n, 200), min(args.epochs, 150), [16, 16]
    return args


def main(argv: list[str] | None = None) -> dict:
    """Train, print the final metrics, write the picture; returns the metrics."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    x, y = make_dataset(args.dataset, args.n, args.noise, rng)
    x, y = x.astype(np.float32), y.astype(np.float32)
    n_val = args.n // 4
    data = {"x_train": x[n_val:], "y_train": y[n_val:], "x_val": x[:n_val], "y_val": y[:n_val]}

    inits = ["xavier", "he"] if args.compare_init else [args.init]
    runs: dict[str, dict] = {}
    start = time.perf_counter()
    for name in inits:
        runs[name] = train_one(args, name, data)
    elapsed = time.perf_counter() - start

    metrics: dict = {"dataset": args.dataset, "seconds": elapsed, "runs": {}}
    for name, run in runs.items():
        h = run["hist"]
        m = {
            "train_loss_first": h["train_loss"][0],
            "train_loss_final": h["train_loss"][-1],
            "val_loss_final": h["val_loss"][-1],
            "train_accuracy": run["train_acc"],
            "val_accuracy": h["val_acc"][-1],
            "train_loss_curve": h["train_loss"],
        }
        metrics["runs"][name] = m
        print(
            f"[{name} init] training loss {m['train_loss_first']:.4f} -> {m['train_loss_final']:.4f}, "
            f"train accuracy {m['train_accuracy']:.3f}, validation loss {m['val_loss_final']:.4f}"
        )
        print(f"[{name} init] final validation accuracy: {m['val_accuracy']:.3f}")
    if args.compare_init:
        # Steps until the training loss first falls below a fixed level: a simple measure of training speed
        # (ln 2 = 0.693 is the loss of always answering 1/2).
        for name, m in metrics["runs"].items():
            below = np.nonzero(np.asarray(m["train_loss_curve"]) < TARGET_LOSS)[0]
            m["steps_to_target_loss"] = int(below[0]) + 1 if below.size else None
            print(
                f"[{name} init] steps until the training loss < {TARGET_LOSS}: {m['steps_to_target_loss'] or 'never'}"
            )
    # The headline numbers are those of the last run trained (the only one without --compare-init).
    metrics.update({k: v for k, v in metrics["runs"][inits[-1]].items() if k != "train_loss_curve"})

    path = args.out / "decision_boundary.png"
    plot(runs, data, args, path)
    metrics["pictures"] = [str(path)]
    print(f"wrote {path}")
    print(f"({elapsed:.1f} s of training)")
    return metrics


if __name__ == "__main__":
    main()
