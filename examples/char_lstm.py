"""Character-level text generation with a 2-layer LSTM, trained by truncated BPTT with gradient clipping.

What it teaches (source material: LSTM, stacked layers, text generation, cross-entropy, Adam, gradient
clipping, truncated backpropagation through time):

* The model: each character is an index into a vocabulary; ``nn.Embedding`` turns it into a vector,
  ``nn.LSTM(num_layers=2)`` reads the sequence, and ``nn.Linear`` turns every hidden state into one score per
  character of the vocabulary: the logits of the distribution of the NEXT character. The loss is the
  cross-entropy between that distribution and the character that really comes next.
* Truncated BPTT over a long text: the text is cut into ``--batch`` parallel streams, and each stream into
  chunks of ``--bptt`` steps. The LSTM state (h, c) is CARRIED from one chunk to the next, so the network sees
  the text as one long sequence, but it is DETACHED between chunks, so the gradient flows back at most
  ``--bptt`` steps and the graph (and memory) stays small. (``tinygrad_lstm.bptt.tbptt(..., optimizer=opt,
  max_norm=clip)`` runs this same loop, clipping the global gradient norm before every step as here; the loop
  is written out here so that every line can be read, and so that it can keep each update's norm before
  clipping for the picture.)
* Gradient clipping: ``optim.clip_grad_norm_`` rescales all gradients together when their joint norm exceeds
  ``--clip``: an exploding gradient then makes a step of bounded size instead of wrecking the weights. The
  picture shows the norm before clipping at every update.
* Sampling with a temperature: the next character is drawn from softmax(logits / T). T < 1 sharpens the
  distribution (safer, more repetitive text), T > 1 flattens it (more surprising, more mistakes).
* Checkpoints: ``tinygrad_lstm.save`` writes the model and optimizer state (with the vocabulary and sizes) to
  an .npz file; ``--resume CKPT`` loads it and trains on.
* Bits per character (BPC) on a held-out tail of the text: the cross-entropy in bits; log2(vocabulary size)
  is what a uniform guess costs. The default text is the Zen of Python (``import this``), under 900
  characters, so the network mostly memorises it: expect a low training BPC and a much higher held-out BPC.
  Give it a bigger text (``--text FILE``, any UTF-8 file) to see it generalise.

Run ``python examples/char_lstm.py --help`` for all options. Writes ``char_lstm.npz`` (the checkpoint) and
``training_curves.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import math
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
from tinygrad_lstm import Tensor, no_grad, optim

NAME = "char_lstm"
LN2 = math.log(2.0)


# ------------------------------------------------------------------------------------------------ text


def zen_of_python() -> str:
    """The Zen of Python from the standard library's ``this`` module, without the poem being printed.

    ``import this`` prints the poem as a side effect (once per process) and keeps it ROT13-encoded in ``this.s``.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")


class Vocab:
    """The characters of a text, each with an index (sorted, so the same text always gives the same indices)."""

    def __init__(self, chars: str) -> None:
        self.chars = "".join(sorted(set(chars)))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Indices (len(text),) int64; a character outside the vocabulary raises a ValueError naming it."""
        missing = sorted(set(text) - set(self.index))
        if missing:
            raise ValueError(f"characters not in the vocabulary: {missing!r}")
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, ids: Any) -> str:
        """The characters of a sequence of indices."""
        return "".join(self.chars[int(i)] for i in ids)


def streams(ids: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a text into ``batch`` parallel streams: inputs and next-character targets, both (L, batch).

    Stream b is one contiguous piece of the text, so the state carried from chunk to chunk in column b
    always continues the same passage.
    """
    L = (len(ids) - 1) // batch
    if L < 1:
        raise ValueError(f"the training text ({len(ids)} characters) is too short for {batch} streams")
    x = ids[: L * batch].reshape(batch, L).T
    y = ids[1 : L * batch + 1].reshape(batch, L).T
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# ------------------------------------------------------------------------------------------------ model


class CharLSTM(nn.Module):
    """Embedding -> LSTM(num_layers) -> Linear: next-character logits at every step."""

    def __init__(self, vocab_size: int, embed: int, hidden: int, layers: int = 2, dropout: float = 0.0) -> None:
        self.embedding = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, dropout=dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids: np.ndarray, state: Any = None) -> tuple[Tensor, Any]:
        """ids: (T, B) integer indices -> logits (T, B, vocab_size) and the new state (h_n, c_n)."""
        out, state = self.lstm(self.embedding(ids), state)
        return self.head(out), state


def detach_state(state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The same (h, c) values, cut from the graph: the next chunk's gradient stops here (truncated BPTT)."""
    return tuple(s.detach() for s in state)


def bits_per_char(model: CharLSTM, ids: np.ndarray, start: int) -> float:
    """Mean cross-entropy in bits of predicting ``ids[start:]``, reading the whole text from the beginning.

    The characters before ``start`` only warm up the state, so the held-out tail is read in context.
    """
    model.eval()
    with no_grad():
        logits, _ = model(ids[:-1, None])  # one stream, all steps
        logp = F.log_softmax(logits[:, 0], dim=-1).numpy()
    targets = ids[1:]
    nats = -logp[np.arange(len(targets)), targets]
    return float(nats[start - 1 :].mean() / LN2)


def sample(model: CharLSTM, vocab: Vocab, prime: str, n: int, temperature: float, rng: np.random.Generator) -> str:
    """``prime`` followed by ``n`` characters drawn one at a time from softmax(logits / temperature)."""
    model.eval()
    out = []
    with no_grad():
        logits, state = model(vocab.encode(prime)[:, None])  # read the prime; its last logits give char 1
        for _ in range(n):
            z = logits.numpy()[-1, 0].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(vocab), p=p / p.sum()))
            out.append(nxt)
            logits, state = model(np.array([[nxt]]), state)  # one step, the state carries the rest
    return prime + vocab.decode(out)


# ------------------------------------------------------------------------------------------------ checkpoints


def save_checkpoint(
    path: Path, model: CharLSTM, optimizer: optim.Optimizer, vocab: Vocab, config: dict, epoch: int
) -> None:
    """Model and optimizer state, vocabulary, sizes and epoch count in one .npz (written atomically)."""
    tg.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "vocab": vocab.chars,
            "config": config,
            "epoch": epoch,
        },
        path,
    )


def load_checkpoint(path: Path, vocab: Vocab) -> dict:
    """Read a checkpoint written by ``save_checkpoint`` and check it fits this text's vocabulary."""
    ckpt = tg.load(path)
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "vocab", "config", "epoch"} <= set(ckpt):
        raise ValueError(
            f"{path} is not a char_lstm checkpoint (keys: {sorted(ckpt) if isinstance(ckpt, dict) else ckpt})"
        )
    if ckpt["vocab"] != vocab.chars:
        raise ValueError(
            f"{path} was trained on a text with a different vocabulary ({len(ckpt['vocab'])} characters, this text "
            f"has {len(vocab)}): resume with the same --text"
        )
    return ckpt


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", type=Path, default=None, help="a UTF-8 text file (default: the Zen of Python)")
    ap.add_argument("--val-frac", type=float, default=0.1, help="held-out tail for BPC (default 0.1)")
    ap.add_argument("--embed", type=int, default=32, help="embedding size (default 32)")
    ap.add_argument("--hidden", type=int, default=128, help="LSTM units per layer (default 128)")
    ap.add_argument("--layers", type=int, default=2, help="stacked LSTM layers (default 2)")
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout between the LSTM layers (default 0.1)")
    ap.add_argument("--batch", type=int, default=8, help="parallel streams (default 8)")
    ap.add_argument("--bptt", type=int, default=32, help="steps per truncated-BPTT chunk (default 32)")
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    ap.add_argument("--clip", type=float, default=0.5, help="max joint gradient norm (default 0.5)")
    ap.add_argument("--epochs", type=int, default=150, help="passes over the text (default 150)")
    ap.add_argument("--eval-every", type=int, default=10, help="epochs between held-out BPC measurements")
    ap.add_argument("--temperature", type=float, default=0.8, help="sampling temperature, > 0 (default 0.8)")
    ap.add_argument("--prime", default=None, help="text the sample starts from (default: the text's first 10 chars)")
    ap.add_argument("--sample-len", type=int, default=300, help="characters to generate (default 300)")
    ap.add_argument("--resume", type=Path, default=None, metavar="CKPT", help="continue from a checkpoint")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", type=Path, default=Path("example_outputs") / NAME, help="output directory")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (same code path)")
    args = ap.parse_args(argv)
    if args.temperature <= 0:
        ap.error(f"--temperature must be > 0, got {args.temperature}")
    if not 0 < args.val_frac < 0.5:
        ap.error(f"--val-frac must be in (0, 0.5), got {args.val_frac}")
    if min(args.embed, args.hidden, args.layers, args.batch, args.bptt, args.epochs, args.eval_every) < 1:
        ap.error("sizes, --bptt, --epochs and --eval-every must be positive")
    if args.lr <= 0 or args.clip <= 0 or args.sample_len < 0 or not 0 <= args.dropout < 1:
        ap.error("need --lr > 0, --clip > 0, --sample-len >= 0 and --dropout in [0, 1)")
    if args.quick:
        args.embed, args.hidden, args.eval_every = 16, 32, 4
        args.epochs = min(args.epochs, 12)
        args.sample_len = min(args.sample_len, 60)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Train (or resume), report BPC, print a sample, save the checkpoint and the picture; returns the metrics."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.text is None:
        text, source = zen_of_python(), "the Zen of Python"
    else:
        try:
            text, source = args.text.read_text(encoding="utf-8"), str(args.text)
        except (OSError, UnicodeDecodeError) as e:
            raise SystemExit(f"char_lstm: cannot read --text {args.text}: {e}") from None
    vocab = Vocab(text)
    ids = vocab.encode(text)
    n_train = int(len(ids) * (1 - args.val_frac))
    if n_train < 2 * args.batch or len(ids) - n_train < 2:
        raise SystemExit(f"char_lstm: the text is too short ({len(ids)} characters) for {args.batch} streams")
    print(f"text: {source}, {len(ids)} characters, vocabulary {len(vocab)}; held out: the last {len(ids) - n_train}")

    tg.manual_seed(args.seed)
    config = {"embed": args.embed, "hidden": args.hidden, "layers": args.layers, "dropout": args.dropout}
    ckpt = None
    if args.resume is not None:
        try:
            ckpt = load_checkpoint(args.resume, vocab)
        except (OSError, ValueError) as e:
            raise SystemExit(f"char_lstm: --resume: {e}") from None
    if ckpt is not None:
        config = ckpt["config"]  # the checkpoint decides the sizes
    model = CharLSTM(len(vocab), config["embed"], config["hidden"], config["layers"], config["dropout"])
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    first_epoch = 1
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        first_epoch = int(ckpt["epoch"]) + 1
        print(f"resumed from {args.resume} after epoch {ckpt['epoch']}")
    bpc_start = bits_per_char(model, ids, n_train)

    uniform = math.log2(len(vocab))
    counts = np.bincount(ids[:n_train], minlength=len(vocab)) + 1.0  # add-one: unseen characters cost finite bits
    unigram = float(-np.log2(counts / counts.sum())[ids[n_train:]].mean())
    print(f"baselines on the held-out tail: uniform {uniform:.3f} bpc, character frequencies {unigram:.3f} bpc")

    hist: dict[str, list] = {"epoch": [], "train_bpc": [], "eval_epoch": [], "val_bpc": [], "grad_norm": []}
    ckpt_path = args.out / "char_lstm.npz"
    start = time.perf_counter()
    last_epoch = first_epoch + args.epochs - 1
    bar = tqdm(range(first_epoch, last_epoch + 1), desc=NAME, disable=None, leave=False)
    data_rng = np.random.default_rng(args.seed)
    for epoch in bar:
        model.train()
        # Start the streams at a random offset every epoch: with fixed cuts, a small text gets memorised
        # "from the start of a stream", which does not carry over to reading the text as a whole.
        offset = int(data_rng.integers(0, args.bptt)) if n_train - args.bptt > 2 * args.batch else 0
        x_train, y_train = streams(ids[offset:n_train], args.batch)
        state = None  # each pass starts from a zero state
        nats, steps = 0.0, 0
        for s in range(0, x_train.shape[0], args.bptt):
            xb, yb = x_train[s : s + args.bptt], y_train[s : s + args.bptt]
            logits, state = model(xb, state)
            loss = F.cross_entropy(logits.reshape(-1, len(vocab)), yb.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            hist["grad_norm"].append(float(optim.clip_grad_norm_(model.parameters(), args.clip)))
            optimizer.step()
            state = detach_state(state)  # carry the values, cut the history
            nats += loss.item() * yb.size
            steps += yb.size
        hist["epoch"].append(epoch)
        hist["train_bpc"].append(nats / steps / LN2)
        if (epoch - first_epoch + 1) % args.eval_every == 0 or epoch == last_epoch:
            hist["eval_epoch"].append(epoch)
            hist["val_bpc"].append(bits_per_char(model, ids, n_train))
            bar.set_postfix(train_bpc=f"{hist['train_bpc'][-1]:.3f}", val_bpc=f"{hist['val_bpc'][-1]:.3f}")
    elapsed = time.perf_counter() - start
    save_checkpoint(ckpt_path, model, optimizer, vocab, config, last_epoch)

    train_bpc = bits_per_char(model, ids[: n_train + 1], 1)  # eval mode (no dropout), whole training text
    val_bpc = hist["val_bpc"][-1]
    best = int(np.argmin(hist["val_bpc"]))
    prime = args.prime if args.prime is not None else text[:10]
    try:
        text_out = sample(model, vocab, prime, args.sample_len, args.temperature, np.random.default_rng(args.seed))
    except ValueError as e:
        raise SystemExit(f"char_lstm: --prime: {e}") from None
    print(f"\n--- sample (temperature {args.temperature}) ---\n{text_out}\n---")
    print(f"training BPC (eval mode): {train_bpc:.3f}; before training: {bpc_start:.3f} on the held-out tail")
    print(f"best held-out BPC {hist['val_bpc'][best]:.3f} after epoch {hist['eval_epoch'][best]}")
    print(f"final held-out bits per character: {val_bpc:.3f} (uniform {uniform:.3f}, frequencies {unigram:.3f})")
    print(f"wrote {ckpt_path} (epoch {last_epoch}; {elapsed:.1f} s of training)")

    path = args.out / "training_curves.png"
    plot(hist, uniform, unigram, args.clip, source, path)
    print(f"wrote {path}")
    return {
        "vocab_size": len(vocab),
        "train_bpc_first_epoch": hist["train_bpc"][0],
        "train_bpc_last_epoch": hist["train_bpc"][-1],
        "train_bpc": train_bpc,
        "val_bpc": val_bpc,
        "val_bpc_before": bpc_start,
        "val_bpc_best": hist["val_bpc"][best],
        "val_bpc_best_epoch": hist["eval_epoch"][best],
        "uniform_bpc": uniform,
        "unigram_bpc": unigram,
        "epoch": last_epoch,
        "sample": text_out,
        "checkpoint": str(ckpt_path),
        "seconds": elapsed,
        "pictures": [str(path)],
    }


def plot(hist: dict[str, list], uniform: float, unigram: float, clip: float, source: str, path: Path) -> None:
    """Bits per character per epoch (training and held-out, with baselines) and the gradient norm per update."""
    fig, (ax, ax_g) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax.plot(hist["epoch"], hist["train_bpc"], label="training (mean over the epoch's chunks)")
    ax.plot(hist["eval_epoch"], hist["val_bpc"], "o--", label="held-out tail")
    ax.axhline(uniform, color="gray", linestyle=":", label=f"uniform guess: {uniform:.2f}")
    ax.axhline(unigram, color="C3", linestyle="-.", label=f"character frequencies: {unigram:.2f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per character")
    ax.set_ylim(bottom=0)
    ax.set_title(f"2-layer LSTM on {source}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

    ax_g.plot(np.arange(1, len(hist["grad_norm"]) + 1), hist["grad_norm"], lw=0.8, label="norm before clipping")
    ax_g.axhline(clip, color="C3", linestyle="--", label=f"clip threshold {clip}")
    ax_g.set_yscale("log")
    ax_g.set_xlabel("update (one truncated-BPTT chunk)")
    ax_g.set_ylabel("joint gradient norm")
    ax_g.set_title("gradient clipping")
    ax_g.grid(True, which="both", alpha=0.3)
    ax_g.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
