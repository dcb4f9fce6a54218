"""Write docs/lyapunov.png: Lyapunov spectra of RNN, LSTM and GRU cells, and of an LSTM as its forget gates open.

python tools/lyapunov_figure.py                 # H = 32, T = 1000 (a few seconds)
python tools/lyapunov_figure.py --quick --out /tmp/lyapunov.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinygrad_lstm.bptt.lyapunov_study import compare_lyapunov, plot_lyapunov

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Compute the spectra, print lambda_1 and the sum of each, and write the figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=32, help="hidden size H (default 32)")
    p.add_argument("--steps", type=int, default=1000, help="sequence length T (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "docs" / "lyapunov.png"), help="the figure (.png, .svg or .pdf)")
    p.add_argument("--quick", action="store_true", help="H = 8, T = 100: a few seconds")
    args = p.parse_args(argv)
    if args.quick:
        args.hidden, args.steps = 8, 100
    if args.hidden < 1 or args.steps < 1:
        print("lyapunov_figure.py: --hidden and --steps must be >= 1", file=sys.stderr)
        return 2
    if Path(args.out).suffix.lower() not in (".png", ".svg", ".pdf"):
        print(f"lyapunov_figure.py: --out must end in .png, .svg or .pdf, got {args.out!r}", file=sys.stderr)
        return 2
    panels = compare_lyapunov(args.hidden, args.steps, seed=args.seed)
    for panel, group in panels.items():
        for label, s in group.items():
            print(f"{panel:>17} | {label:<16} lambda_1 = {s[0]:+.4f}  lambda_k = {s[-1]:+.4f}  k = {s.size}")
    out = plot_lyapunov(panels, args.out, title=f"H = {args.hidden}, T = {args.steps}, inputs N(0, 1)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
