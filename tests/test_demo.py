"""The main job: `python -m tinygrad_lstm demo` in quick mode writes everything it promises, and it is sound."""

import xml.etree.ElementTree as ET

import numpy as np

from tinygrad_lstm import Tensor, load
from tinygrad_lstm.__main__ import main
from tinygrad_lstm.data import sine_waves
from tinygrad_lstm.demo import SineForecaster, run_demo


def test_demo_cli_quick_writes_graphs_plot_and_weights(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for name in ("graph.svg", "graph_backward.svg", "bptt.png", "model.npz"):
        assert (tmp_path / name).stat().st_size > 0
        assert str(tmp_path / name) in printed  # it says what it wrote
    assert "validation MSE" in printed and "LSTM, forget bias 3" in printed
    fwd = ET.parse(tmp_path / "graph.svg").getroot().iter()
    texts = " ".join(e.text or "" for e in fwd)
    assert "t=0" in texts and "t=2" in texts and "lstm.weight_hh_l0" in texts  # one cluster per step, named weights
    bwd = " ".join(e.text or "" for e in ET.parse(tmp_path / "graph_backward.svg").getroot().iter())
    assert "LinearBackward" in bwd and "+= (3 terms)" in bwd  # BPTT's sum over the 3 steps is drawn
    assert (tmp_path / "bptt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_learns_and_saves_a_loadable_model(tmp_path):
    result = run_demo(out=tmp_path, quick=True, seed=1)
    assert result["val_loss"] < result["baseline"]  # beats "repeat the current value"
    model = SineForecaster(hidden=16)
    model.load_state_dict(load(tmp_path / "model.npz"))
    x, y = sine_waves(4, 40, rng=np.random.default_rng(5))
    pred = model(Tensor(x)).numpy()
    assert pred.shape == y.shape and np.isfinite(pred).all()
