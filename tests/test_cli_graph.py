"""The ``graph`` subcommand of the command line."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tinygrad_lstm.__main__ import main


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn", "mlp"])
def test_graph_writes_svg(tmp_path, capsys, model):
    out = tmp_path / f"{model}.svg"
    assert main(["graph", "--model", model, "--steps", "2", "--hidden", "3", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    ET.parse(out)


def test_graph_backward_collapsed_png(tmp_path):
    out = tmp_path / "g.png"
    rc = main(["graph", "--view", "backward", "--collapse", "cell", "--steps", "5", "--out", str(out)])
    assert rc == 0 and out.read_bytes()[:4] == b"\x89PNG"


def test_graph_bad_arguments(tmp_path, capsys):
    assert main(["graph", "--steps", "0", "--out", str(tmp_path / "g.svg")]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["graph", "--out", str(tmp_path / "g.pdf")]) == 2
    assert main(["graph", "--model", "transformer"]) == 2
    assert main([]) == 2
