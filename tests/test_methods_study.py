"""The gradient-methods study (bptt --study methods), its figure and table, and tools/rtrl_cost.py --quick."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_lstm import bptt
from tinygrad_lstm.bptt.methods_study import format_methods_table, study_methods

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = [("RNN", "rnn", None), ("LSTM (forget bias 1)", "lstm", 1.0)]


def _cli(argv):
    parser = bptt.add_cli_arguments(argparse.ArgumentParser())
    return bptt.run_cli(parser.parse_args(argv))


def test_study_methods_numbers_table_and_figure(tmp_path):
    from matplotlib.figure import Figure

    res = study_methods(VARIANTS, lengths=[4, 12], hidden=3, batch=2, methods=("bptt", "tbptt:4", "rtrl", "snap1"))
    assert list(res["results"]) == ["RNN", "LSTM (forget bias 1)"]
    for label, by_T in res["results"].items():
        assert sorted(by_T) == [4, 12]
        for T, r in by_T.items():
            assert r["rtrl"]["rel_error"] < 1e-9 and r["bptt"]["cosine"] == pytest.approx(1.0)
            assert 0.5 < r["snap1"]["cosine"] < 1.0, (label, T)  # units interact: biased, not useless
        assert by_T[4]["tbptt:4"]["rel_error"] == 0.0  # k = T cuts nothing
        assert by_T[12]["tbptt:4"]["rel_error"] > 1e-6
        # BPTT's memory grows with T; RTRL's does not (its influence matrix is the same size at every T)
        assert by_T[12]["bptt"]["peak_mib"] > 2 * by_T[4]["bptt"]["peak_mib"]
        assert by_T[12]["rtrl"]["peak_mib"] < 1.5 * by_T[4]["rtrl"]["peak_mib"]
    fig = res["figure"]
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert [len(ax.get_lines()) for ax in fig.axes[:2]] == [4, 4]  # four methods
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_xdata(), [4, 12])
    table = res["table"]
    assert table.count("T=12") == 4 and "LSTM (forget bias 1) snap1" in table
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    path = bptt.plot_gradient_methods(res["results"], tmp_path / "m.svg")
    assert path.read_bytes()[:5] == b"<?xml"
    with pytest.raises(ValueError, match="plot_gradient_methods: results is empty"):
        bptt.plot_gradient_methods({})
    with pytest.raises(ValueError, match="plot_gradient_methods: cannot write"):
        bptt.plot_gradient_methods(res["results"], tmp_path / "m.gif")
    with pytest.raises(ValueError, match="format_methods_table: results is empty"):
        format_methods_table({})
    with pytest.raises(ValueError, match="study_methods: lengths must be integers >= 2"):
        study_methods(VARIANTS, lengths=[1, 3], hidden=2, batch=1)


def test_forget_bias_reaches_the_lstm_cell():
    from tinygrad_lstm.bptt.methods_study import method_model

    cell, _ = method_model("lstm", 3, 0, forget_bias=2.5)
    np.testing.assert_array_equal(cell.bias_ih.data[3:6], 2.5)
    np.testing.assert_array_equal(cell.bias_hh.data[3:6], 0.0)


def test_cli_methods_study_prints_the_tables_and_writes_the_figure(tmp_path, capsys):
    out = tmp_path / "methods.png"
    argv = ["--study", "methods", "--lengths", "4,8", "--hidden", "3", "--batch", "2", "--cells", "gru"]
    assert _cli([*argv, "--methods", "bptt,rtrl,uoro", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cosine to BPTT's gradient" in text and "GRU uoro" in text and "GRU snap1" not in text
    assert "peak traced memory (MiB)" in text and "seconds per sequence" in text
    assert str(out) in text and out.read_bytes()[:4] == b"\x89PNG"
    # --steps T without --lengths: the default lengths below T, and T
    assert _cli(["--study", "methods", "--steps", "15", "--hidden", "2", "--batch", "1", "--cells", "rnn",
                 "--methods", "bptt,rtrl", "--out", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "T=10" in text and "T=15" in text and "T=20" not in text


def test_cli_methods_study_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    from tinygrad_lstm.__main__ import main

    out = str(tmp_path / "x.png")
    for argv in (
        ["--methods", "bptt,adjoint"],
        ["--methods", "tbptt:0"],
        ["--lengths", "1,4"],
        ["--cells", "tcn"],
        ["--hidden", "100000"],  # RTRL's influence matrices would not fit
    ):
        code = main(["bptt", "--study", "methods", "--lengths", "4", "--hidden", "2", "--batch", "1", *argv,
                     "--out", out])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2, argv
        assert err.count("\n") == 1 and "tinygrad-lstm bptt" in err and "error: " in err, err
    assert not Path(out).exists()


# ------------------------------------------------------------------------------------------------ the tool


def test_rtrl_cost_tool_quick():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "rtrl_cost.py"), "--quick"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = res.stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 6  # H = 4, 8 x T = 5, 10, 40
    assert "~" in out  # the tight budget forces estimated cells, and they are marked
    assert "tracemalloc" in out and "RTRL needs less memory than BPTT" in out and "time per step grows as H^" in out
    bad = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "rtrl_cost.py"), "--methods", "adjoint"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "unknown" in bad.stderr
