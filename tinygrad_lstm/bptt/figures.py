"""The toolkit's figures: a matplotlib ``Figure`` that Jupyter shows inline, or a file written atomically.

Every plotting helper of ``bptt`` draws on a fresh ``Figure`` of matplotlib's object API (never pyplot's global
state, so nothing leaks from one call to the next and no GUI backend is ever started) and ends with ``finish``:
without a path the figure is returned, and a notebook displays it as a PNG through ``_repr_png_`` (no
``%matplotlib inline`` needed); with a path it is written (PNG, SVG or PDF, from the suffix) and the path is
returned.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io import atomic_path

DPI = 110
FORMATS = {"": "png", ".png": "png", ".svg": "svg", ".pdf": "pdf"}


class PlotFigure(Figure):
    """A matplotlib ``Figure`` that IPython displays as a PNG by itself (``_repr_png_``)."""

    def _repr_png_(self) -> bytes:
        """The figure as PNG bytes: what Jupyter shows when the figure is a cell's last expression."""
        buf = io.BytesIO()
        self.savefig(buf, format="png")
        return buf.getvalue()


def new_figure(figsize: tuple[float, float]) -> PlotFigure:
    """A fresh figure with an Agg canvas (renders without a display) and constrained layout."""
    fig = PlotFigure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_path(path: object, fn: str) -> None:
    """Refuse, before any work is done, a ``path`` that ``finish`` could not write: not a path, or a suffix
    that is not .png, .svg or .pdf."""
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: path must be a str, a path or None (to return the figure), got {type(path).__name__}")
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{fn}: cannot write {str(path)!r}: the suffix must be .png, .svg or .pdf, got {suffix!r}")


def finish(fig: PlotFigure, path: str | os.PathLike | None, fn: str) -> PlotFigure | Path:
    """Return ``fig`` when ``path`` is None; otherwise write it atomically (format from the suffix) and return
    the path."""
    check_path(path, fn)
    if path is None:
        return fig
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=FORMATS[path.suffix.lower()])
    return path
