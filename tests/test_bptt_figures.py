"""The toolkit's plots: a Figure without a path (shown inline by Jupyter), a file (png/svg/pdf) with one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinygrad_lstm import Tensor, bptt, manual_seed, nn

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rec() -> bptt.Recording:
    manual_seed(0)
    lstm, head = nn.LSTM(2, 4, num_layers=2), nn.Linear(4, 1)
    with bptt.record() as r:
        out, _ = lstm(Tensor.randn(6, 3, 2))
        (head(out[-1]) ** 2).mean().backward()
    return r


def test_recording_plot_without_a_path_returns_a_figure_that_renders_itself(rec, tmp_path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    fig = rec.plot(layer=1)
    assert isinstance(fig, Figure) and len(fig.axes) >= 4
    assert fig.axes[0].get_title() == "gradient norm through time" and fig.axes[0].get_lines()
    png = fig._repr_png_()  # what IPython calls to display it
    assert png[:8] == PNG and len(png) > 20_000
    assert not list(tmp_path.iterdir())  # nothing written
    # Two figures are independent objects (no pyplot state shared between calls).
    assert rec.plot() is not fig


@pytest.mark.parametrize(("suffix", "magic"), [(".png", PNG), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_recording_plot_with_a_path_writes_that_format(rec, tmp_path, suffix, magic) -> None:
    path = rec.plot(tmp_path / f"rec{suffix}")
    assert isinstance(path, Path) and path.read_bytes()[: len(magic)] == magic
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # written atomically


def test_plot_paths_are_checked_before_any_drawing(rec, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"Recording.plot: cannot write .*the suffix must be .png, .svg or .pdf"):
        rec.plot(tmp_path / "rec.jpg")
    with pytest.raises(TypeError, match=r"Recording\.plot: path must be a str, a path or None"):
        rec.plot(3)
    with pytest.raises(ValueError, match="plot_gradient_flow: cannot write"):
        bptt.plot_gradient_flow({"rnn": np.ones(3)}, tmp_path / "x.gif")
    with pytest.raises(ValueError, match="compare_cells: cannot write"):
        bptt.compare_cells(["rnn"], steps=3, hidden=2, batch=1, path=tmp_path / "x.gif")
    assert not list(tmp_path.iterdir())


def test_gradient_flow_plot_and_compare_cells_return_figures(tmp_path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    norms = {"rnn": np.geomspace(1e-6, 1.0, 10), "mine": np.linspace(0.1, 1.0, 10)}
    fig = bptt.plot_gradient_flow(norms, title="t")
    assert isinstance(fig, Figure) and [ln.get_label() for ln in fig.axes[0].get_lines()] == ["RNN", "mine"]
    assert fig._repr_png_()[:8] == PNG
    assert bptt.plot_gradient_flow(norms, tmp_path / "g.svg").read_bytes()[:5] == b"<?xml"
    res = bptt.compare_cells(["rnn", "lstm"], steps=6, hidden=3, batch=2)
    assert res["path"] is None and isinstance(res["figure"], Figure)  # no path: no file, as the other helpers
    assert [p.name for p in tmp_path.iterdir()] == ["g.svg"]
    line = res["figure"].axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), res["norms"]["rnn"])
    with pytest.raises(ValueError, match="plot_gradient_flow: norms must be a non-empty dict"):
        bptt.plot_gradient_flow({})
    with pytest.raises(ValueError, match="bptt: forget_bias must be a finite number"):
        bptt.compare_cells(["lstm"], steps=3, hidden=2, batch=1, forget_bias=float("nan"))
    with pytest.raises(ValueError, match="bptt: seed must be an int >= 0"):
        bptt.compare_cells(["lstm"], steps=3, hidden=2, batch=1, seed=-1)
