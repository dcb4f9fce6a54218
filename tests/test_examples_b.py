"""Smoke tests of four examples (adding problem, gate activations, RNN + FC head, graph drawings).

Each runs its ``--quick`` path end to end through the same code as the default run, and the tests assert on
what ``main`` returns: losses that must fall, accuracies above chance, gradients that must vanish for the plain
RNN and not for the others, bounded gates that never exceed 1, and real PNG/SVG files. The examples are
scripts, not a package: they are loaded from ``examples/`` by path.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from example_helpers import assert_png, load_example


@pytest.mark.parametrize("name", ["adding_problem", "gate_activations", "rnn_fc_head", "visualize"])
def test_help_exits_cleanly(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_example(name).main(["--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ adding problem


def test_adding_problem_quick(tmp_path: Path) -> None:
    m = load_example("adding_problem").main(["--quick", "--out", str(tmp_path)])
    steps = sorted(m["final_mse"])
    assert len(steps) == 2
    for T in steps:
        # The constant answer 1.0 scores Var(u1 + u2) = 1/6 up to sampling noise of the validation set.
        assert abs(m["baseline_mse"][T] - 1 / 6) < 0.04
        assert set(m["final_mse"][T]) == {"rnn", "lstm", "gru"}
        for cell, norms in m["grad_norms"][T].items():
            assert norms.shape == (T,), cell
            assert np.all(np.isfinite(norms)) and norms[-1] > 0, cell
    # The GRU solves the short task within the quick budget: far below the constant-answer baseline.
    T0 = steps[0]
    assert m["final_mse"][T0]["gru"] < 0.2 * m["baseline_mse"][T0]
    assert m["final_mse"][T0]["gru"] < m["initial_mse"][T0]["gru"]
    # Before training the tanh RNN's gradient vanishes back through time, and the LSTM (forget gate opened by
    # the example's forget bias) keeps more of it at the first step.
    T1 = steps[-1]
    ratio = {c: n[0] / n[-1] for c, n in m["grad_norms"][T1].items()}
    assert ratio["rnn"] < 1e-2
    assert ratio["lstm"] > ratio["rnn"]
    assert [Path(p).name for p in m["paths"]] == ["training_curves.png", "gradient_norms.png"]
    for p in m["paths"]:
        assert_png(p)


def test_adding_problem_rejects_bad_arguments(tmp_path: Path) -> None:
    mod = load_example("adding_problem")
    for argv in (["--cells", "lstm,transformer"], ["--steps", "1"], ["--steps", "a,b"]):
        with pytest.raises(SystemExit) as exc:
            mod.main([*argv, "--quick", "--out", str(tmp_path)])
        assert exc.value.code == 2, argv


def test_adding_problem_forget_bias_sets_the_forget_rows() -> None:
    mod = load_example("adding_problem")
    model = mod.LastStepRegressor("lstm", 5, forget_bias=1.5)
    b = model.rnn.bias_ih_l0.numpy() + model.rnn.bias_hh_l0.numpy()
    np.testing.assert_allclose(b[5:10], 1.5)  # gate order (i, f, g, o): rows H..2H are f
    assert not np.allclose(b[:5], 1.5)


# ------------------------------------------------------------------------------------------------ gate activations


def test_gate_activations_quick(tmp_path: Path) -> None:
    m = load_example("gate_activations").main(["--quick", "--out", str(tmp_path)])
    variants = m["variants"]
    acts = ("sigmoid", "hard_sigmoid", "relu", "leaky_relu")
    assert set(variants) == {a + p for a in acts for p in ("", "+peephole")}
    for name, r in variants.items():
        for key in ("sat_i", "sat_f", "sat_o", "f_above_1"):
            assert 0.0 <= r[key] <= 1.0, (name, key)
        # NaN marks exactly the runs stopped at a non-finite loss or gradient.
        assert math.isnan(r["final_mse"]) == (r["diverged_at"] is not None), name
    for name in ("sigmoid", "hard_sigmoid", "sigmoid+peephole", "hard_sigmoid+peephole"):
        r = variants[name]
        assert r["f_above_1"] == 0.0, name  # a bounded gate can never amplify the cell state
        assert r["diverged_at"] is None, name
        assert r["final_mse"] < r["val_mse"][0], name
    # A ReLU gate is unbounded above: some forget-gate values exceed 1, which a sigmoid can never do.
    assert variants["relu"]["f_above_1"] > 0.0
    assert m["paths"][0].name == "gate_activations.png"
    assert_png(m["paths"][0])


# ------------------------------------------------------------------------------------------------ RNN + FC head


def test_rnn_fc_head_classifies_above_chance(tmp_path: Path) -> None:
    m = load_example("rnn_fc_head").main(["--quick", "--cell", "gru", "--out", str(tmp_path)])
    assert m["val_accuracy"] > 0.5  # three balanced-ish bands: chance is 1/3
    assert m["val_loss"] < 0.9 * m["initial_val_loss"]
    assert m["train_loss"][-1] < m["train_loss"][0]
    assert_png(m["paths"][0])


def test_rnn_fc_head_default_cell_and_regression(tmp_path: Path) -> None:
    mod = load_example("rnn_fc_head")
    m = mod.main(["--quick", "--out", str(tmp_path / "lstm")])  # the default encoder, an LSTM
    assert m["val_loss"] < m["initial_val_loss"]
    r = mod.main(["--quick", "--task", "regress", "--cell", "rnn", "--out", str(tmp_path / "reg")])
    assert r["val_loss"] < r["initial_val_loss"]
    assert r["val_mae"] is not None and math.isfinite(r["val_mae"])
    assert_png(r["paths"][0])


def test_rnn_fc_head_windows_match_their_labels() -> None:
    mod = load_example("rnn_fc_head")
    x, labels, freq = mod.make_windows(300, 40, 0.0, np.random.default_rng(0))
    assert x.shape == (40, 300, 1) and labels.shape == freq.shape == (300,)
    lo, hi = np.array(mod.BANDS).T
    assert np.all((freq >= lo[labels]) & (freq <= hi[labels]))
    assert set(np.unique(labels)) == {0, 1, 2}


# ------------------------------------------------------------------------------------------------ visualize


def _nodes(svg: Path) -> int:
    return len(re.findall(r'class="node"', svg.read_text()))


def test_visualize_quick_draws_every_graph(tmp_path: Path) -> None:
    m = load_example("visualize").main(["--quick", "--out", str(tmp_path)])
    svgs = {Path(p).name: Path(p) for p in m["svgs"]}
    assert len(svgs) == 18
    for p in svgs.values():
        text = p.read_text()
        assert "<svg" in text and "</svg>" in text, p
    # PNG is optional (depends on the Graphviz engine), but all or nothing, and real PNGs when present.
    assert len(m["pngs"]) in (0, 18)
    for p in m["pngs"]:
        assert_png(p, min_bytes=1000)
    for kind in ("lstm", "lstmcell_loop"):
        for view in ("forward", "backward"):
            expanded = _nodes(svgs[f"{kind}_5steps_{view}_expanded.svg"])
            collapsed = _nodes(svgs[f"{kind}_5steps_{view}_collapsed.svg"])
            one_step = _nodes(svgs[f"{kind}_1step_{view}_expanded.svg"])
            assert collapsed < expanded, (kind, view)  # one box per step instead of every op
            assert one_step < expanded, (kind, view)  # five unrolled copies of the cell
    # The long run keeps 2 + 2 steps and folds the other 16 into one "..." node.
    long_fwd = svgs["lstm_20steps_forward_collapsed.svg"].read_text()
    assert "16 steps" in long_fwd
    assert _nodes(svgs["lstm_20steps_backward_collapsed.svg"]) < _nodes(svgs["lstm_5steps_backward_expanded.svg"])
